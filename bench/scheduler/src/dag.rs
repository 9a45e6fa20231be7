//! What knowing the DAG before building changes (issue 16): today's queue, which runs a
//! full `spack install SPEC` per job, against a queue that concretizes in a lane beside
//! the installs, on a Spack-like stack with several users asking for overlapping things.
//!
//! Run: `cargo run --release --manifest-path bench/scheduler/Cargo.toml -- --dag [--seed N]`.
//! Deterministic with the seed; a few seconds.
//!
//! **The stack.** [`UNIVERSE`] is 47 packages with the dependencies of a real environment
//! (gmake/zlib/… at the bottom; cmake, perl, python; openmpi or mpich; hdf5, netcdf,
//! fftw, petsc, the Python stack, gromacs and lammps on top), each with a typical build
//! time. A request is a root, an MPI choice (openmpi by default, mpich, or `~mpi` where
//! the package allows it) and a spelling; concretizing it gives a DAG of nodes, a node
//! being the package and, if MPI is below it, its provider. So `hdf5`, `hdf5+mpi` and
//! `hdf5 +mpi ^openmpi` are three texts for one DAG, and `hdf5~mpi` another; zlib is
//! one node for everybody. Each node's real build time is its table time × lognormal
//! noise (σ 0.25), the same whoever builds it; estimates use the table time (what
//! Spack's `install_times.json` of an earlier install gives).
//!
//! **Today** (`today`): a job is queued as text (a text identical to a pending or
//! running job's is refused by `submit` as a duplicate, and ends with it). Ordered by
//! `spack_installer::scheduler` from the job's package, its hand-written `dependencies`
//! (20% of jobs name the earlier requests of the same user that their DAG contains;
//! the rest none) and history (the median install time of that package so far). A
//! started job holds its slot for ~6 s of concretization, then builds each node of its
//! DAG that is not installed, one at a time, deps first; a node another job is
//! building is skipped for another buildable node, and when none is left the job
//! waits on Spack's lock, holding its slot (as `spack install` does). An unsatisfiable
//! spec fails when it runs, after its ~6 s; an installed one ends after them.
//!
//! **With the DAG** (`dag-aware`): every request is concretized on arrival in one lane
//! beside the installs (first come first served, ~6 s each); unsatisfiable ones fail
//! then; one whose root node is installed ends `done` then; one whose root node is a
//! pending or running job's root is linked to it and ends with it. The rest are
//! ranked by the same scheduler, with `after` = the pending or running jobs whose root
//! node is in their DAG (hand-written `dependencies` kept), and `estimate` = the sum of
//! the table times of the nodes not yet installed (recomputed at each decision). Among
//! the ranked ready jobs, the harness skips one whose not-yet-installed nodes meet
//! those of a running job or of one started in the same decision: the scheduler has no
//! input for that rule (`dependencies` means "after the jobs of this package", not
//! "not beside"), so it is a filter over the plan's order here. A started job spends
//! 1 s (`spack install -f FILE`, 0.6 s measured) and then builds like today's, so the
//! lock-wait column checks that the filter leaves no job waiting on a lock.
//!
//! Three variants take the DAG rules apart: *sharing only into an idle slot* (a slot
//! that no disjoint ready job can use goes to the best ready job anyway), *sharing
//! allowed* (no such filter: the plan's best ready jobs start, and wait on Spack's lock
//! as today's do), and *no DAG order* (sharing allowed and no DAG-derived `after`
//! either: early refusal, skipping, linking and DAG estimates only).
//!
//! **Simplified**: one node builds at a time in a job (Spack's default; make's own
//! parallelism is inside the table time), and a node's time does not depend on how
//! many jobs run beside it (N slots are N builders that do not slow each other); no
//! build fails; concretization takes ~6 s whatever the DAG's size, also for a request
//! already installed (5.9 s measured); the `background` mode (a job not yet concretized starts as plain
//! `spack install SPEC`) is not modelled: every job waits for its concretization,
//! which is behind at most the lane's backlog; versions are not modelled (every
//! request takes the default version); a request that the site installed is not
//! uninstalled. The lower bound gives every node its own builder, starting when the
//! first request containing it arrives and its dependencies are built: no order, on
//! any number of slots, can finish a job earlier (concretization aside). A job whose
//! nodes were all built by others after it was concretized still runs its 1 s
//! `spack install -f` and counts as an install.

use crate::{BASE, Rng};
use spack_installer::job::{JobId, Priority};
use spack_installer::scheduler::{self, PendingJob, Policy, QueueState, RunningJob};
use spack_installer::time::Timestamp;
use std::collections::HashMap;

/// `(package, minutes to build, dependencies)`. `mpi` is the virtual (openmpi or
/// mpich, by the request); a `?` dependency is there only when the request has MPI.
/// The times are of the order Spack's `install_times.json` shows for these packages on
/// a 16-core node; they set the proportions, not a claim about any one machine.
const UNIVERSE: &[(&str, f64, &[&str])] = &[
    ("gcc-runtime", 0.2, &[]),
    ("gmake", 0.8, &[]),
    ("pkgconf", 0.3, &["gmake"]),
    ("zlib-ng", 0.4, &["gmake"]),
    ("bzip2", 0.3, &[]),
    ("xz", 1.0, &[]),
    ("m4", 0.6, &[]),
    ("libiconv", 1.2, &[]),
    ("libffi", 0.5, &[]),
    ("ncurses", 2.0, &["pkgconf"]),
    ("readline", 0.5, &["ncurses"]),
    ("gdbm", 0.6, &["readline"]),
    ("perl", 6.0, &["gdbm", "bzip2", "zlib-ng"]),
    ("openssl", 4.0, &["zlib-ng", "perl"]),
    ("libtool", 0.5, &["m4"]),
    ("autoconf", 0.3, &["m4", "perl"]),
    ("automake", 0.3, &["autoconf", "perl"]),
    ("libxml2", 1.5, &["libiconv", "xz", "zlib-ng", "pkgconf"]),
    ("cmake", 9.0, &["ncurses", "openssl", "zlib-ng"]),
    ("sqlite", 2.0, &["readline", "zlib-ng"]),
    ("hwloc", 1.5, &["libxml2", "ncurses", "pkgconf"]),
    ("libevent", 0.6, &["openssl"]),
    ("numactl", 0.4, &["autoconf", "automake", "libtool"]),
    ("pmix", 1.5, &["hwloc", "libevent"]),
    (
        "openmpi",
        14.0,
        &["hwloc", "libevent", "numactl", "pmix", "zlib-ng"],
    ),
    ("mpich", 10.0, &["hwloc", "libxml2", "pkgconf"]),
    ("openblas", 12.0, &["perl"]),
    (
        "python",
        12.0,
        &[
            "bzip2", "libffi", "openssl", "readline", "sqlite", "xz", "zlib-ng", "gdbm", "ncurses",
        ],
    ),
    ("boost", 20.0, &["bzip2", "zlib-ng", "xz"]),
    ("hdf5", 7.0, &["cmake", "zlib-ng", "pkgconf", "?mpi"]),
    ("netcdf-c", 3.5, &["hdf5", "m4", "zlib-ng", "?mpi"]),
    ("netcdf-fortran", 1.5, &["netcdf-c"]),
    ("fftw", 5.0, &["?mpi"]),
    ("metis", 0.8, &["cmake"]),
    ("parmetis", 1.0, &["metis", "mpi", "cmake"]),
    ("hypre", 5.0, &["mpi", "openblas"]),
    ("py-setuptools", 0.3, &["python"]),
    ("py-pip", 0.3, &["python"]),
    ("py-cython", 2.0, &["python", "py-setuptools"]),
    (
        "py-numpy",
        6.0,
        &["python", "openblas", "py-cython", "py-pip"],
    ),
    ("py-scipy", 14.0, &["py-numpy", "openblas", "py-pip"]),
    ("py-mpi4py", 2.0, &["python", "mpi", "py-cython"]),
    ("py-h5py", 3.0, &["hdf5", "py-numpy", "?py-mpi4py"]),
    (
        "petsc",
        18.0,
        &[
            "hdf5", "hypre", "metis", "parmetis", "openblas", "mpi", "python",
        ],
    ),
    ("gromacs", 25.0, &["cmake", "fftw", "openblas", "?mpi"]),
    ("lammps", 20.0, &["cmake", "fftw", "?mpi"]),
    ("netcdf-cxx4", 1.0, &["netcdf-c"]),
];

/// What the site has installed before the first request.
const BASE_INSTALLED: &[&str] = &[
    "gcc-runtime",
    "gmake",
    "pkgconf",
    "zlib-ng",
    "bzip2",
    "xz",
    "m4",
    "libiconv",
];

/// What users ask for, and how often (relative).
const ROOTS: &[(&str, u32)] = &[
    ("hdf5", 10),
    ("netcdf-fortran", 6),
    ("netcdf-c", 5),
    ("netcdf-cxx4", 2),
    ("petsc", 6),
    ("py-numpy", 8),
    ("py-scipy", 6),
    ("py-h5py", 5),
    ("py-mpi4py", 4),
    ("fftw", 5),
    ("gromacs", 4),
    ("lammps", 4),
    ("boost", 4),
    ("cmake", 3),
    ("openmpi", 2),
    ("python", 4),
    ("hypre", 2),
    ("openblas", 2),
];

/// Texts that no Spack concretizes (an unknown package, an impossible version).
const UNSATISFIABLE: &[&str] = &[
    "hdf",
    "py-nmupy",
    "zlib-ng@99.9",
    "petsc~mpi ^mpich",
    "lamps",
];

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Mpi {
    Off,
    Openmpi,
    Mpich,
}

impl Mpi {
    fn provider(self) -> Option<&'static str> {
        match self {
            Mpi::Off => None,
            Mpi::Openmpi => Some("openmpi"),
            Mpi::Mpich => Some("mpich"),
        }
    }
}

/// The concrete nodes met so far, deps before dependents (index order is topological).
struct Universe {
    key: Vec<String>,
    deps: Vec<Vec<usize>>,
    nominal: Vec<u64>,
    actual: Vec<u64>,
    by_key: HashMap<String, usize>,
    /// Closure of each (package, MPI) concretized: its DAG, deps first, root last.
    dags: HashMap<(&'static str, Mpi), Option<Vec<usize>>>,
    rng: Rng,
}

impl Universe {
    fn new(seed: u64) -> Universe {
        Universe {
            key: Vec::new(),
            deps: Vec::new(),
            nominal: Vec::new(),
            actual: Vec::new(),
            by_key: HashMap::new(),
            dags: HashMap::new(),
            rng: Rng(seed ^ 0xDA6),
        }
    }

    /// The node of `package` under `mpi`, with its dependencies; `None` if `package`
    /// needs MPI and the request has none.
    fn node(&mut self, package: &'static str, mpi: Mpi) -> Option<usize> {
        let (_, minutes, deps) = *UNIVERSE
            .iter()
            .find(|p| p.0 == package)
            .expect("a package of the table");
        let mut ds = Vec::new();
        for &d in deps {
            let (name, optional) = match d.strip_prefix('?') {
                Some(n) => (n, true),
                None => (d, false),
            };
            if optional && mpi == Mpi::Off {
                continue;
            }
            let name: &'static str = if name == "mpi" {
                mpi.provider()?
            } else {
                UNIVERSE.iter().find(|p| p.0 == name).expect("known dep").0
            };
            ds.push(self.node(name, mpi)?);
        }
        ds.sort_unstable();
        ds.dedup();
        // A node is its package, and the MPI provider when one is below it.
        let provider_below = mpi.provider().filter(|p| {
            ds.iter()
                .any(|&d| self.closure(d).iter().any(|&n| self.package_of(n) == *p))
        });
        let key = match provider_below {
            Some(p) => format!("{package}^{p}"),
            None => package.to_string(),
        };
        if let Some(&i) = self.by_key.get(&key) {
            return Some(i);
        }
        let i = self.key.len();
        let nominal = (minutes * 60.0) as u64;
        self.key.push(key.clone());
        self.deps.push(ds);
        self.nominal.push(nominal);
        let noise = self.rng.noise(0.25);
        self.actual.push(((nominal as f64 * noise) as u64).max(5));
        self.by_key.insert(key, i);
        Some(i)
    }

    fn package_of(&self, n: usize) -> &str {
        self.key[n].split('^').next().unwrap()
    }

    /// The node and everything below it, in index (topological) order.
    fn closure(&self, n: usize) -> Vec<usize> {
        let mut seen = vec![n];
        let mut stack = vec![n];
        while let Some(x) = stack.pop() {
            for &d in &self.deps[x] {
                if !seen.contains(&d) {
                    seen.push(d);
                    stack.push(d);
                }
            }
        }
        seen.sort_unstable();
        seen
    }

    fn dag(&mut self, package: &'static str, mpi: Mpi) -> Option<Vec<usize>> {
        if let Some(d) = self.dags.get(&(package, mpi)) {
            return d.clone();
        }
        let d = self.node(package, mpi).map(|n| self.closure(n));
        self.dags.insert((package, mpi), d.clone());
        d
    }
}

#[derive(Debug, Clone)]
struct Request {
    user: usize,
    arrival: u64,
    priority: Priority,
    text: String,
    /// The package as the scheduler sees it (the text's first word).
    package: String,
    /// `None`: Spack cannot concretize it.
    dag: Option<Vec<usize>>,
    /// Hand-written `dependencies` (package names).
    deps: Vec<String>,
    /// Seconds of concretization (either way: in a slot today, in the lane with DAGs).
    concretize: u64,
}

impl Request {
    fn root(&self) -> Option<usize> {
        self.dag.as_ref().map(|d| *d.last().unwrap())
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Scenario {
    /// Six users each submit their part of a new stack within the first hour.
    Rollout,
    /// Six users over three days, the install tree filling up as they go.
    Days,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Rollout => "stack rollout (6 users, 1 h)",
            Scenario::Days => "three days (6 users)",
        }
    }
}

fn generate(u: &mut Universe, rng: &mut Rng, scenario: Scenario) -> Vec<Request> {
    let users = 6;
    let mut reqs: Vec<Request> = Vec::new();
    let total: u32 = ROOTS.iter().map(|r| r.1).sum();
    let pick = |rng: &mut Rng| {
        let mut x = (rng.next() % total as u64) as u32;
        for &(name, w) in ROOTS {
            if x < w {
                return name;
            }
            x -= w;
        }
        unreachable!()
    };
    // (user, arrival) for each request.
    let mut slots: Vec<(usize, u64)> = Vec::new();
    match scenario {
        Scenario::Rollout => {
            for user in 0..users {
                let start = rng.range(0.0, 3600.0);
                for _ in 0..6 + rng.below(5) {
                    slots.push((user, (start + rng.range(0.0, 60.0)) as u64));
                }
            }
        }
        Scenario::Days => {
            let mut t = 0.0;
            for _ in 0..80 {
                t += -(3.0 * 86400.0 / 80.0) * (1.0 - rng.f()).ln();
                slots.push((rng.below(users), t as u64));
            }
        }
    }
    slots.sort_by_key(|s| s.1);
    for (user, arrival) in slots {
        let roll = rng.f();
        let priority = if roll < 0.2 {
            Priority::High
        } else if roll < 0.7 {
            Priority::Medium
        } else {
            Priority::Low
        };
        let concretize = (6.0 * rng.noise(0.15)).round().max(4.0) as u64;
        if rng.f() < 0.05 {
            let text = UNSATISFIABLE[rng.below(UNSATISFIABLE.len())].to_string();
            let package = text.split(['@', '~', '+', ' ']).next().unwrap().to_string();
            reqs.push(Request {
                user,
                arrival,
                priority,
                text,
                package,
                dag: None,
                deps: vec![],
                concretize,
            });
            continue;
        }
        let root = pick(rng);
        let (_, _, pdeps) = *UNIVERSE.iter().find(|p| p.0 == root).unwrap();
        let optional = pdeps.iter().any(|d| d.starts_with('?'));
        let roll = rng.f();
        let mpi = if optional && roll < 0.25 {
            Mpi::Off
        } else if roll > 0.85 {
            Mpi::Mpich
        } else {
            Mpi::Openmpi
        };
        let dag = u
            .dag(root, mpi)
            .expect("the generator asks for concretizable specs");
        let has_mpi = dag.iter().any(|&n| {
            let p = u.package_of(n);
            (p == "openmpi" || p == "mpich") && p != root
        });
        // The spellings people use for one DAG.
        let mut texts: Vec<String> = vec![root.to_string()];
        match (mpi, has_mpi, optional) {
            (Mpi::Off, _, _) => texts = vec![format!("{root}~mpi"), format!("{root} ~mpi")],
            (Mpi::Openmpi, true, true) => {
                texts.push(format!("{root}+mpi"));
                texts.push(format!("{root} +mpi ^openmpi"));
            }
            (Mpi::Openmpi, true, false) => texts.push(format!("{root} ^openmpi")),
            (Mpi::Mpich, true, true) => {
                texts = vec![format!("{root}+mpi ^mpich"), format!("{root} ^mpich")]
            }
            (Mpi::Mpich, true, false) => texts = vec![format!("{root} ^mpich")],
            _ => texts.push(format!("{root}@default")),
        }
        let text = texts[rng.below(texts.len())].replace("@default", "@stable");
        // A fifth of users name their earlier requests that this one builds on.
        let mut deps = Vec::new();
        if rng.f() < 0.2 {
            for r in reqs.iter().filter(|r| r.user == user) {
                if let Some(n) = r.root()
                    && n != *dag.last().unwrap()
                    && dag.contains(&n)
                    && !deps.contains(&r.package)
                {
                    deps.push(r.package.clone());
                }
            }
        }
        reqs.push(Request {
            user,
            arrival,
            priority,
            text,
            package: root.to_string(),
            dag: Some(dag),
            deps,
            concretize,
        });
    }
    reqs
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Today,
    Dag,
    /// As `Dag`, but a slot that no disjoint job can use goes to the best ready job
    /// even if it shares a node to build with a running one.
    DagFill,
    /// As `Dag`, without the rule that keeps jobs sharing a node to build apart.
    DagShared,
    /// As `DagShared`, and no job waits for another whose root is in its DAG: what
    /// concretizing early, skipping and linking give without the DAG-derived order.
    DagNoOrder,
}

const MODES: [Mode; 5] = [
    Mode::Today,
    Mode::Dag,
    Mode::DagFill,
    Mode::DagShared,
    Mode::DagNoOrder,
];

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Today => "today",
            Mode::Dag => "dag-aware",
            Mode::DagFill => "dag-aware, sharing only into an idle slot",
            Mode::DagShared => "dag-aware, sharing allowed",
            Mode::DagNoOrder => "dag-aware, sharing allowed, no DAG order",
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Phase {
    /// Concretizing (today) or reading the concrete spec (with DAGs), until then.
    Start(u64),
    Build(usize, u64),
    /// Waiting on Spack's lock since then, holding the slot.
    Lock(u64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    Open,
    Done(u64),
    Failed(u64),
    /// Ends as that job ends.
    Same(usize),
}

#[derive(Debug, Default, Clone)]
struct Outcome {
    jobs: usize,
    installs: usize,
    node_builds: usize,
    unique_nodes: usize,
    weighted_completion: f64,
    makespan: f64,
    lock_wait: f64,
    concretize_in_slot: f64,
    /// Mean seconds from submission to the failure of an unsatisfiable spec.
    refused_after: f64,
    linked: usize,
    installed_at_once: usize,
}

struct Sim<'a> {
    u: &'a Universe,
    reqs: &'a [Request],
    mode: Mode,
    slots: usize,
    installed: Vec<bool>,
    building: Vec<bool>,
    end: Vec<End>,
    pending: Vec<usize>,
    running: Vec<(usize, Phase)>,
    history: HashMap<String, Vec<u64>>,
    started: Vec<u64>,
    out: Outcome,
}

impl Sim<'_> {
    fn to_build(&self, j: usize) -> impl Iterator<Item = usize> + '_ {
        self.reqs[j]
            .dag
            .iter()
            .flatten()
            .copied()
            .filter(|&n| !self.installed[n])
    }

    /// Start the next buildable node of a running job, or wait on a lock, or finish.
    fn step(&mut self, k: usize, t: u64) -> bool {
        let (j, phase) = self.running[k];
        let mut left = false;
        let mut next = None;
        for n in self.to_build(j) {
            left = true;
            if !self.building[n] && self.u.deps[n].iter().all(|&d| self.installed[d]) {
                next = Some(n);
                break;
            }
        }
        if let Phase::Lock(since) = phase
            && (next.is_some() || !left)
        {
            self.out.lock_wait += (t - since) as f64;
        }
        match next {
            Some(n) => {
                self.building[n] = true;
                self.out.node_builds += 1;
                self.running[k].1 = Phase::Build(n, t + self.u.actual[n]);
            }
            None if left => {
                if !matches!(phase, Phase::Lock(_)) {
                    self.running[k].1 = Phase::Lock(t);
                }
            }
            None => {
                self.end[j] = End::Done(t);
                let ran = t - self.started[j];
                self.history
                    .entry(self.reqs[j].package.clone())
                    .or_default()
                    .push(ran);
                return true;
            }
        }
        false
    }

    fn queue_state(&self) -> QueueState {
        let mut q = QueueState::default();
        let live: Vec<usize> = self
            .pending
            .iter()
            .copied()
            .chain(self.running.iter().map(|r| r.0))
            .collect();
        for &i in &self.pending {
            let r = &self.reqs[i];
            let (after, estimate) = match self.mode {
                Mode::Today => (vec![], None),
                Mode::Dag | Mode::DagFill | Mode::DagShared | Mode::DagNoOrder => {
                    let dag = r.dag.as_ref().unwrap();
                    let after = live
                        .iter()
                        .filter(|&&o| {
                            o != i
                                && self.mode != Mode::DagNoOrder
                                && dag.contains(&self.reqs[o].root().unwrap())
                        })
                        .map(|&o| JobId(o as u64 + 1))
                        .collect();
                    let secs: u64 = self.to_build(i).map(|n| self.u.nominal[n]).sum();
                    (after, Some(std::time::Duration::from_secs(secs.max(1))))
                }
            };
            q.pending.push(PendingJob {
                id: JobId(i as u64 + 1),
                name: format!("{:06}-{}", i + 1, r.package),
                package: r.package.clone(),
                owner: format!("user{}", r.user),
                priority: r.priority,
                dependencies: r.deps.clone(),
                after,
                estimate,
                timeout: None,
                submitted_at: Timestamp(BASE + r.arrival),
            });
        }
        for &(i, _) in &self.running {
            q.running.push(RunningJob {
                id: JobId(i as u64 + 1),
                name: format!("{:06}-{}", i + 1, self.reqs[i].package),
                package: self.reqs[i].package.clone(),
                owner: format!("user{}", self.reqs[i].user),
            });
        }
        if self.mode == Mode::Today {
            for (p, v) in &self.history {
                let mut v = v.clone();
                v.sort_unstable();
                q.history
                    .insert(p.clone(), std::time::Duration::from_secs(v[v.len() / 2]));
            }
        }
        q
    }

    fn dispatch(&mut self, t: u64, policy: &Policy) {
        if self.running.len() >= self.slots || self.pending.is_empty() {
            return;
        }
        let q = self.queue_state();
        let plan = scheduler::plan(&q, Timestamp(BASE + t), policy);
        let chosen: Vec<usize> = match self.mode {
            Mode::Today | Mode::DagShared | Mode::DagNoOrder => plan
                .to_start(self.running.len(), self.slots)
                .iter()
                .map(|id| id.0 as usize - 1)
                .collect(),
            Mode::Dag | Mode::DagFill => {
                let mut busy: Vec<usize> = self
                    .running
                    .iter()
                    .flat_map(|r| self.to_build(r.0))
                    .collect();
                let mut chosen = Vec::new();
                for r in plan.order.iter() {
                    if self.running.len() + chosen.len() >= self.slots {
                        break;
                    }
                    if r.status != scheduler::Readiness::Ready {
                        continue;
                    }
                    let i = r.id.0 as usize - 1;
                    let mine: Vec<usize> = self.to_build(i).collect();
                    if mine.iter().any(|n| busy.contains(n)) {
                        continue;
                    }
                    busy.extend(mine);
                    chosen.push(i);
                }
                if self.mode == Mode::DagFill {
                    for r in plan.order.iter() {
                        let i = r.id.0 as usize - 1;
                        if self.running.len() + chosen.len() < self.slots
                            && r.status == scheduler::Readiness::Ready
                            && !chosen.contains(&i)
                        {
                            chosen.push(i);
                        }
                    }
                }
                chosen
            }
        };
        for &i in &chosen {
            self.pending.retain(|&p| p != i);
            self.started[i] = t;
            self.out.installs += 1;
            let overhead = match self.mode {
                Mode::Today => {
                    self.out.concretize_in_slot += self.reqs[i].concretize as f64;
                    self.reqs[i].concretize
                }
                Mode::Dag | Mode::DagFill | Mode::DagShared | Mode::DagNoOrder => 1,
            };
            self.running.push((i, Phase::Start(t + overhead)));
        }
    }

    /// Finish concretizing request `i` in the lane (DAG mode).
    fn concretized(&mut self, i: usize, t: u64) {
        let r = &self.reqs[i];
        let Some(root) = r.root() else {
            self.end[i] = End::Failed(t);
            return;
        };
        if self.installed[root] {
            self.end[i] = End::Done(t);
            self.out.installed_at_once += 1;
            return;
        }
        let same = self
            .pending
            .iter()
            .chain(self.running.iter().map(|r| &r.0))
            .find(|&&o| self.reqs[o].root() == Some(root));
        if let Some(&o) = same {
            self.end[i] = End::Same(o);
            self.out.linked += 1;
            return;
        }
        self.pending.push(i);
    }

    /// Submit request `i` today: `submit` refuses a text already pending or running.
    fn submitted(&mut self, i: usize) {
        let same = self
            .pending
            .iter()
            .chain(self.running.iter().map(|r| &r.0))
            .find(|&&o| self.reqs[o].text == self.reqs[i].text);
        if let Some(&o) = same {
            self.end[i] = End::Same(o);
            self.out.linked += 1;
        } else {
            self.pending.push(i);
        }
    }
}

fn simulate(
    u: &Universe,
    reqs: &[Request],
    mode: Mode,
    slots: usize,
    policy: &Policy,
) -> (Outcome, Vec<u64>) {
    let n = reqs.len();
    let mut s = Sim {
        u,
        reqs,
        mode,
        slots,
        installed: vec![false; u.key.len()],
        building: vec![false; u.key.len()],
        end: vec![End::Open; n],
        pending: Vec::new(),
        running: Vec::new(),
        history: HashMap::new(),
        started: vec![0; n],
        out: Outcome {
            jobs: n,
            ..Outcome::default()
        },
    };
    for (i, k) in u.key.iter().enumerate() {
        s.installed[i] = BASE_INSTALLED.contains(&k.as_str());
    }
    let mut next_arrival = 0;
    // DAG mode: the concretization lane (first come first served).
    let mut lane: std::collections::VecDeque<usize> = Default::default();
    let mut lane_busy: Option<(usize, u64)> = None;
    let mut t = reqs[0].arrival;
    loop {
        while next_arrival < n && reqs[next_arrival].arrival <= t {
            match mode {
                Mode::Today => s.submitted(next_arrival),
                Mode::Dag | Mode::DagFill | Mode::DagShared | Mode::DagNoOrder => {
                    lane.push_back(next_arrival)
                }
            }
            next_arrival += 1;
        }
        if let Some((i, until)) = lane_busy
            && until <= t
        {
            s.concretized(i, t);
            lane_busy = None;
        }
        if lane_busy.is_none()
            && let Some(i) = lane.pop_front()
        {
            lane_busy = Some((i, t + reqs[i].concretize));
        }
        let mut freed = false;
        let mut k = 0;
        while k < s.running.len() {
            let (j, phase) = s.running[k];
            let finished = match phase {
                Phase::Start(until) if until <= t => {
                    if reqs[j].dag.is_none() {
                        s.end[j] = End::Failed(t);
                        true
                    } else {
                        s.step(k, t)
                    }
                }
                Phase::Build(node, until) if until <= t => {
                    s.installed[node] = true;
                    s.building[node] = false;
                    freed = true;
                    s.step(k, t)
                }
                _ => false,
            };
            if finished {
                s.running.swap_remove(k);
                freed = true;
            } else {
                k += 1;
            }
        }
        if freed {
            // A node just installed may let a job waiting on its lock go on.
            let mut k = 0;
            while k < s.running.len() {
                if matches!(s.running[k].1, Phase::Lock(_)) && s.step(k, t) {
                    s.running.swap_remove(k);
                } else {
                    k += 1;
                }
            }
        }
        s.dispatch(t, policy);
        let next = s
            .running
            .iter()
            .filter_map(|r| match r.1 {
                Phase::Start(u) | Phase::Build(_, u) => Some(u),
                Phase::Lock(_) => None,
            })
            .chain(reqs.get(next_arrival).map(|r| r.arrival))
            .chain(lane_busy.map(|l| l.1))
            .min();
        match next {
            Some(x) => t = x.max(t),
            None => break,
        }
    }
    assert!(
        s.pending.is_empty() && s.running.is_empty(),
        "{} ended with {} pending, {} running",
        mode.name(),
        s.pending.len(),
        s.running.len()
    );
    // Completion of each job, following links.
    let mut done_at = vec![0u64; n];
    let mut failed = vec![false; n];
    for i in 0..n {
        let mut j = i;
        loop {
            match s.end[j] {
                End::Same(o) => j = o,
                End::Done(x) => {
                    done_at[i] = x;
                    break;
                }
                End::Failed(x) => {
                    done_at[i] = x;
                    failed[i] = true;
                    break;
                }
                End::Open => panic!("job {i} never ended"),
            }
        }
    }
    let (mut wsum, mut wtot, mut refused, mut nref) = (0.0, 0.0, 0.0, 0);
    for (i, r) in reqs.iter().enumerate() {
        if r.dag.is_some() {
            assert!(!failed[i], "a satisfiable request failed");
            let w = r.priority.weight() as f64;
            wsum += w * (done_at[i] - r.arrival) as f64;
            wtot += w;
        } else {
            refused += (done_at[i] - r.arrival) as f64;
            nref += 1;
        }
    }
    s.out.weighted_completion = wsum / wtot;
    s.out.refused_after = refused / nref.max(1) as f64;
    s.out.makespan = (done_at.iter().max().unwrap() - reqs[0].arrival) as f64;
    s.out.unique_nodes = unique_to_build(u, reqs).len();
    (s.out, done_at)
}

/// Nodes some satisfiable request needs that the site did not have.
fn unique_to_build(u: &Universe, reqs: &[Request]) -> Vec<usize> {
    let mut all: Vec<usize> = reqs
        .iter()
        .flat_map(|r| r.dag.iter().flatten().copied())
        .filter(|&n| !BASE_INSTALLED.contains(&u.key[n].as_str()))
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// The lower bound: every node on a builder of its own, from the first arrival of a
/// request that contains it and once its dependencies are built. Returns the weighted
/// mean completion and the makespan bound for `slots` (also ≥ the total work / slots).
fn lower_bound(u: &Universe, reqs: &[Request], slots: usize) -> (f64, f64) {
    let mut first = vec![u64::MAX; u.key.len()];
    for r in reqs {
        for &n in r.dag.iter().flatten() {
            first[n] = first[n].min(r.arrival);
        }
    }
    let mut ready = vec![0u64; u.key.len()];
    for n in 0..u.key.len() {
        if BASE_INSTALLED.contains(&u.key[n].as_str()) || first[n] == u64::MAX {
            continue;
        }
        let deps = u.deps[n].iter().map(|&d| ready[d]).max().unwrap_or(0);
        ready[n] = first[n].max(deps) + u.actual[n];
    }
    let (mut wsum, mut wtot, mut last) = (0.0, 0.0, 0u64);
    for r in reqs {
        if let Some(root) = r.root() {
            let c = r.arrival.max(ready[root]);
            wsum += r.priority.weight() as f64 * (c - r.arrival) as f64;
            wtot += r.priority.weight() as f64;
            last = last.max(c);
        }
    }
    let work: u64 = unique_to_build(u, reqs).iter().map(|&n| u.actual[n]).sum();
    let t0 = reqs[0].arrival;
    let makespan = ((last - t0) as f64).max(work as f64 / slots as f64);
    (wsum / wtot, makespan)
}

fn h(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 3600.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.2} h", s / 3600.0)
    }
}

/// Print the tables of the DAG section of BENCHMARKS-scheduler.md.
pub fn run(seed: u64, policy: &Policy) {
    const SEEDS: u64 = 3;
    println!(
        "Seeds {seed}–{}; {} packages in the table, {} installed at the start.",
        seed + SEEDS - 1,
        UNIVERSE.len(),
        BASE_INSTALLED.len()
    );
    println!(
        "Counts are summed over the {SEEDS} seeds, times are means; weighted completion is over the satisfiable requests (weights 3/2/1), refusal after over the unsatisfiable ones.\n"
    );
    println!(
        "| scenario | slots | queue | jobs | installs run | saved | node builds (unique) | weighted completion | makespan | slot time on locks | slot time concretizing | refusal after |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut notes: Vec<String> = Vec::new();
    for scenario in [Scenario::Rollout, Scenario::Days] {
        for slots in [1usize, 4] {
            let mut sums: [Outcome; 5] = Default::default();
            let mut bound = (0.0, 0.0);
            let mut gains: Vec<f64> = Vec::new();
            let mut extra = (0usize, 0usize, 0usize);
            for k in 0..SEEDS {
                let mut u = Universe::new(seed + k);
                let mut rng = Rng((seed + k) * 0x9E37 + scenario as u64);
                let reqs = generate(&mut u, &mut rng, scenario);
                let outs: Vec<Outcome> = MODES
                    .iter()
                    .map(|&m| simulate(&u, &reqs, m, slots, policy).0)
                    .collect();
                for (m, o) in outs.iter().enumerate() {
                    assert_eq!(
                        o.node_builds, o.unique_nodes,
                        "every needed node is built exactly once"
                    );
                    if MODES[m] == Mode::Dag {
                        assert_eq!(
                            o.lock_wait, 0.0,
                            "no job waits on a lock with the DAG rules"
                        );
                    }
                    let sm = &mut sums[m];
                    sm.jobs += o.jobs;
                    sm.installs += o.installs;
                    sm.node_builds += o.node_builds;
                    sm.unique_nodes += o.unique_nodes;
                    sm.weighted_completion += o.weighted_completion / SEEDS as f64;
                    sm.makespan += o.makespan / SEEDS as f64;
                    sm.lock_wait += o.lock_wait / SEEDS as f64;
                    sm.concretize_in_slot += o.concretize_in_slot / SEEDS as f64;
                    sm.refused_after += o.refused_after / SEEDS as f64;
                }
                gains.push(outs[1].weighted_completion / outs[0].weighted_completion - 1.0);
                extra.0 += outs[1].installed_at_once;
                extra.1 += outs[1].linked;
                extra.2 += outs[0].linked;
                let b = lower_bound(&u, &reqs, slots);
                bound.0 += b.0 / SEEDS as f64;
                bound.1 += b.1 / SEEDS as f64;
            }
            for (m, o) in sums.iter().enumerate() {
                let mode = MODES[m];
                if slots == 1 && (m == 2 || m == 3) {
                    // One slot: nothing runs beside anything, these are `Dag`.
                    continue;
                }
                println!(
                    "| {} | {slots} | {} | {} | {} | {} | {} ({}) | {} | {} | {} | {} | {} |",
                    scenario.name(),
                    mode.name(),
                    o.jobs,
                    o.installs,
                    if m == 0 {
                        "–".to_string()
                    } else {
                        format!("{}", sums[0].installs - o.installs)
                    },
                    o.node_builds,
                    o.unique_nodes,
                    h(o.weighted_completion),
                    h(o.makespan),
                    h(o.lock_wait),
                    h(o.concretize_in_slot),
                    h(o.refused_after)
                );
            }
            println!(
                "| {} | {slots} | lower bound | | | | | {} | {} | | | |",
                scenario.name(),
                h(bound.0),
                h(bound.1)
            );
            let rel = |m: usize| {
                (sums[m].weighted_completion / sums[0].weighted_completion - 1.0) * 100.0
            };
            let worst = gains.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let variants = if slots == 1 {
                format!("no DAG order {:+.1}%", rel(4))
            } else {
                format!(
                    "sharing only into an idle slot {:+.1}%, sharing allowed {:+.1}%, no DAG order {:+.1}%",
                    rel(2),
                    rel(3),
                    rel(4)
                )
            };
            notes.push(format!(
                "- {}, {slots} slot{}: weighted completion dag-aware {:+.1}% vs today (least favourable seed {:+.1}%), {variants}; dag-aware ended {} jobs at once as installed and linked {} to a job with the same DAG; today's `submit` refused {} as the same text.",
                scenario.name(),
                if slots == 1 { "" } else { "s" },
                rel(1),
                worst * 100.0,
                extra.0,
                extra.1,
                extra.2
            ));
        }
    }
    println!();
    for n in notes {
        println!("{n}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(u: &mut Universe, text: &str, root: &'static str, mpi: Mpi, at: u64) -> Request {
        Request {
            user: 0,
            arrival: at,
            priority: Priority::Medium,
            text: text.to_string(),
            package: root.to_string(),
            dag: u.dag(root, mpi),
            deps: vec![],
            concretize: 6,
        }
    }

    #[test]
    fn one_dag_per_root_and_mpi_choice_with_shared_nodes_below() {
        let mut u = Universe::new(1);
        let h5py = u.dag("py-h5py", Mpi::Openmpi).unwrap();
        let hdf5 = u.dag("hdf5", Mpi::Openmpi).unwrap();
        let serial = u.dag("hdf5", Mpi::Off).unwrap();
        let mpich = u.dag("hdf5", Mpi::Mpich).unwrap();
        let root = |d: &Vec<usize>| u.key[*d.last().unwrap()].clone();
        assert_eq!(root(&hdf5), "hdf5^openmpi");
        assert_eq!(root(&serial), "hdf5");
        assert_eq!(root(&mpich), "hdf5^mpich");
        assert!(
            h5py.contains(hdf5.last().unwrap()),
            "py-h5py builds on hdf5"
        );
        let zlib = u.by_key["zlib-ng"];
        assert!(hdf5.contains(&zlib) && serial.contains(&zlib) && mpich.contains(&zlib));
        assert_eq!(u.dag("petsc", Mpi::Off), None, "petsc needs MPI");
        // Index order is topological: every dependency comes before its dependent.
        for (n, ds) in u.deps.iter().enumerate() {
            assert!(ds.iter().all(|&d| d < n), "{}", u.key[n]);
        }
    }

    #[test]
    fn the_same_dag_spelled_twice_is_installed_once() {
        let mut u = Universe::new(2);
        let reqs = vec![
            request(&mut u, "hdf5", "hdf5", Mpi::Openmpi, 0),
            request(&mut u, "hdf5 +mpi ^openmpi", "hdf5", Mpi::Openmpi, 1),
        ];
        let policy = Policy::default();
        let (today, today_done) = simulate(&u, &reqs, Mode::Today, 4, &policy);
        assert_eq!(today.installs, 2, "different texts: two installs today");
        // One package: the scheduler runs them one after the other.
        assert!(today_done[1] > today_done[0], "{today_done:?}");
        assert_eq!(today.node_builds, today.unique_nodes);
        let (dag, dag_done) = simulate(&u, &reqs, Mode::Dag, 4, &policy);
        assert_eq!(dag.installs, 1);
        assert_eq!(dag.linked, 1);
        assert_eq!(dag.lock_wait, 0.0);
        assert_eq!(dag.node_builds, dag.unique_nodes);
        assert_eq!(
            dag_done[0], dag_done[1],
            "the linked job ends with the first"
        );
        // Nothing to build twice: the first job's time is the whole DAG's either way,
        // less today's concretization in the slot, plus the lane's.
        assert!(
            dag_done[0] <= today_done[0] + 2,
            "{dag_done:?} vs {today_done:?}"
        );
    }

    #[test]
    fn jobs_sharing_a_node_to_build_wait_on_a_lock_today_and_not_with_the_dag() {
        let mut u = Universe::new(4);
        let reqs = vec![
            request(&mut u, "py-scipy", "py-scipy", Mpi::Openmpi, 0),
            request(&mut u, "py-h5py~mpi", "py-h5py", Mpi::Off, 0),
        ];
        let policy = Policy::default();
        let (today, _) = simulate(&u, &reqs, Mode::Today, 2, &policy);
        assert!(today.lock_wait > 0.0, "both need python, py-numpy, ...");
        assert_eq!(today.node_builds, today.unique_nodes);
        let (dag, _) = simulate(&u, &reqs, Mode::Dag, 2, &policy);
        assert_eq!(dag.lock_wait, 0.0);
        assert_eq!(dag.node_builds, dag.unique_nodes);
        let (shared, _) = simulate(&u, &reqs, Mode::DagShared, 2, &policy);
        assert!(shared.lock_wait > 0.0);
    }

    #[test]
    fn a_job_waits_for_the_job_whose_root_is_in_its_dag_and_refusals_are_at_once() {
        let mut u = Universe::new(3);
        let reqs = vec![
            request(&mut u, "py-h5py", "py-h5py", Mpi::Openmpi, 0),
            request(&mut u, "hdf5", "hdf5", Mpi::Openmpi, 0),
            Request {
                dag: None,
                ..request(&mut u, "hdf", "hdf5", Mpi::Openmpi, 0)
            },
        ];
        let policy = Policy::default();
        let (out, done) = simulate(&u, &reqs, Mode::Dag, 2, &policy);
        assert_eq!(out.installs, 2);
        assert_eq!(out.lock_wait, 0.0);
        assert!(done[1] < done[0], "hdf5 first: {done:?}");
        assert_eq!(done[2], 18, "third in the lane, 6 s each: {done:?}");
        let (today, today_done) = simulate(&u, &reqs, Mode::Today, 2, &policy);
        assert_eq!(today.installs, 3);
        assert!(
            today_done[2] > 18,
            "today a refusal waits for a slot: {today_done:?}"
        );
    }
}
