//! The scheduler: a pure function from the queue's state and the clock to a ranked plan,
//! with a reason for every position. It never touches the disk, so it can be tested and
//! simulated with made-up queues (`bench/scheduler/` measures it against FIFO and the old
//! tool's formula).
//!
//! **Readiness.** A job is *ready* when every job named in its `after` list has finished
//! successfully, and no job for a package in its `dependencies` is pending or running.
//! If a job named in `after` failed or was cancelled, the job is *doomed* (the worker
//! fails it with that reason, or holds it, as configured): `after` names one job. A
//! package in `dependencies` is satisfied by any successful job of that package; when no
//! job of it is left to wait for, the job is doomed only by a failed or cancelled job of
//! that package that its own owner submitted, finished since the job was submitted, with
//! no successful one since. Another owner's failure only stops being waited for (one
//! member cannot fail another's job by queuing a broken variant). Waiting on a doomed job
//! dooms you too. A cycle of waiting jobs is doomed and named, so the queue never
//! deadlocks silently.
//!
//! **Ranking of ready jobs**, first difference wins:
//! 1. *overdue* first: a job that has waited `overdue_after` (48 h by default) since
//!    submission, or that such a job waits for, directly or through others; among
//!    them, the oldest submission they serve first;
//! 2. *value per hour*: the job's priority weight (high 3, medium 2, low 1) per hour
//!    of estimated build, counting the jobs it opens: the bundle of the job and the
//!    jobs waiting on it, taken best first while each raises the bundle's value
//!    (Sidney's rule for trees). This is Smith's rule, weighted shortest time first,
//!    carried along the dependency graph: priority is a weight, so a high job goes
//!    before a low one of the same length, a low job goes first only when it is over
//!    three times shorter (it then delays the high one by less than a third of the
//!    high one's own time), and a short library that a long chain waits for goes
//!    before the chain's rivals because it opens them;
//! 3. its own estimated time, shortest first;
//! 4. submission order (job ID).
//!
//! **Fair share.** Then, within each priority class, owners share the builders: a
//! usage-decayed share, as Slurm's fair-share factor. The class's ready jobs that are
//! not overdue keep the places the ranking gave the class as a whole, and each place
//! goes to the job worth most once its value per hour is divided by
//! `fair_share_base` (1.01) to the power of its owner's recent installs (running ones,
//! recent starts halved every `fair_share_half_life`, one hour, and the places dealt
//! before it in the same plan); each owner's jobs keep their ranked order. Among jobs
//! of equal worth (the same estimate, as every job without history has) owners
//! alternate: one owner's ten jobs do not push another's back. The base is gentle on
//! purpose: the simulation shows that stronger shares (2, 1.25, 1.1) cost 7–18% of
//! weighted completion time, 1.01 costs 0.5%. Ready jobs never wait on one another, so
//! the new order respects dependencies; priorities and the starvation bound are
//! untouched.
//!
//! **Estimates.** A submitter's own estimate can only lengthen what the queue knows
//! ([`QueueState::estimate`]): with history the longer of the two is used, and without
//! history an estimate is never taken below the job's own timeout ÷ the timeout
//! multiplier.
//!
//! The simulation in `bench/scheduler/` shows why priority is a weight and not a
//! strict class: on the same queues, strict classes gave a higher priority-weighted
//! completion time than the old tool's formula, which crossed classes too (through
//! its bonus for unlocked jobs).
//!
//! **Starvation bound.** A job is overdue once it has waited `overdue_after`, whatever
//! its priority, and overdue jobs go before all others, oldest submission first. So
//! once a ready job has waited `overdue_after` (48 h by default), no job submitted
//! after it starts before it, except a job that an earlier submission waits for; it
//! then waits only for the installs already running and for overdue work submitted
//! before it. [`Policy::starvation_bound`] gives the number; the reason text states it.
//! Jobs submitted in the same second (one `submit` of several specs) count as submitted
//! together. Why 48 h: the simulation shows the bound's price. With 24 h, long streams
//! of work turn into FIFO for everything overdue, and the weighted mean completion time
//! came out up to 16% worse than the old formula's on 2000-job streams; with 48 h it is
//! better on every generated stream that the builder can keep up with, and the longest
//! waits stay below the old formula's (which had no bound). Sites set `overdue_after`.
//!
//! **Cost.** `plan` is O((n + e) log n) for n pending jobs and e dependency edges:
//! lookups are by hash, each package numbered once (later sets of packages are flags
//! by number); the edges of every job lie in one flat list per kind, not a vector per job;
//! doom spreads by one walk over reverse edges; cycles are looked for by a topological
//! sort and named by an iterative Tarjan only when there is one; the inherited level
//! and chain ratio come from one pass in topological order; each job's estimate is
//! worked out once. Fair share keeps each owner's next job in a heap, O(n log k) for
//! k owners, instead of scanning the owners for every place. `reference` (tests only)
//! keeps the straightforward version, which a property test holds this one to, place
//! for place and reason for reason. BENCHMARKS-scheduler.md has the measured times.

use crate::job::{JobId, Priority};
use crate::time::Timestamp;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::time::Duration;

/// The rustc hash: plenty for job IDs and package names the planner builds itself, and
/// several times faster than SipHash (10 000 jobs are ranked in milliseconds).
type FastMap<K, V> = HashMap<K, V, rustc_hash::FxBuildHasher>;
type FastSet<K> = HashSet<K, rustc_hash::FxBuildHasher>;

/// A pending job as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct PendingJob {
    pub id: JobId,
    /// `NNNNNN-PACKAGE`, for reasons.
    pub name: String,
    pub package: String,
    /// Who submitted it (the user name): owners take turns, and only the owner's own
    /// failures doom a job that names a package.
    pub owner: String,
    pub priority: Priority,
    pub dependencies: Vec<String>,
    pub after: Vec<JobId>,
    /// The job's own estimate, if it gave one.
    pub estimate: Option<Duration>,
    /// The job's own timeout, if it gave one: an estimate is never believed below
    /// what the timeout implies.
    pub timeout: Option<Duration>,
    pub submitted_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct RunningJob {
    pub id: JobId,
    pub name: String,
    pub package: String,
    /// Each running install is a turn its owner is taking.
    pub owner: String,
}

/// How a finished job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone)]
pub struct FinishedJob {
    pub id: JobId,
    pub name: String,
    pub package: String,
    pub owner: String,
    pub outcome: Outcome,
    pub finished_at: Timestamp,
}

/// Everything the scheduler may look at.
#[derive(Debug, Default)]
pub struct QueueState {
    pub pending: Vec<PendingJob>,
    pub running: Vec<RunningJob>,
    /// Finished jobs named by a pending job's `after`, by ID.
    pub finished: HashMap<JobId, FinishedJob>,
    /// For each package named in a pending job's `dependencies`: its most recent
    /// successful job, and every failed or cancelled one (only the waiting job's own
    /// owner's failures count against it).
    pub finished_by_package: HashMap<String, Vec<FinishedJob>>,
    /// Median duration of earlier successful installs, by package.
    pub history: HashMap<String, Duration>,
    /// When each owner's most recent install started (running ones, and the newest
    /// finished ones the queue remembers): among owners otherwise equal for fair share,
    /// the one served longest ago goes first. An owner absent here has not been served
    /// lately.
    pub last_start: HashMap<String, Timestamp>,
    /// When the finished installs the queue remembers started, by owner: their recent
    /// use of the builders, for fair share (running installs count in full).
    pub recent_starts: HashMap<String, Vec<Timestamp>>,
    /// What Spack said each concretized job (pending or running) will build.
    pub dag: HashMap<JobId, Dag>,
}

/// A concretized job's DAG as the scheduler needs it. A job waits for a pending or
/// running job whose root it would build (that job builds it first, whatever its
/// outcome: a failure only means this one builds it itself), and two jobs that would
/// build a node in common never run at the same time (one would wait on Spack's lock
/// holding a slot, or, on a cluster, build it twice).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dag {
    /// The root, as `NAME@VERSION/HASH7`.
    pub root: String,
    /// The nodes not installed when it was concretized, in the same form.
    pub builds: Vec<String>,
    /// What the queue knows of its build time: the sum over `builds` of each package's
    /// estimate (this queue's history, else Spack's install times). Preferred to the
    /// package's history, which is of whole jobs that built other DAGs.
    pub estimate: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub max_parallel: usize,
    /// Estimate for a job with none of its own and no history.
    pub default_estimate: Duration,
    /// Waiting this long makes a job overdue: it goes before every later submission.
    /// Zero: no job is ever overdue (no starvation bound).
    pub overdue_after: Duration,
    /// A job without a timeout of its own is killed after its estimate × this
    /// (`JOB_TIMEOUT_MULTIPLIER`); so a job that gives a timeout is believed to take
    /// at least its timeout ÷ this.
    pub timeout_multiplier: f64,
    /// Fair share: within a priority class, a job's value per hour is divided by this to
    /// the power of the installs its owner started lately (1 or less: no fair share).
    /// 1.01: owners alternate among jobs of equal worth, and a job worth a few percent
    /// more goes first only a few times; stronger bases cost weighted completion time
    /// (BENCHMARKS-scheduler.md, *Fair share*).
    pub fair_share_base: f64,
    /// Fair share: a start counts half as much after this long.
    pub fair_share_half_life: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_parallel: 1,
            default_estimate: Duration::from_secs(30 * 60),
            overdue_after: Duration::from_secs(48 * 3600),
            timeout_multiplier: 2.0,
            fair_share_base: 1.01,
            fair_share_half_life: Duration::from_secs(3600),
        }
    }
}

impl Policy {
    /// After waiting this long a job is overdue: no later submission starts before it
    /// (except work an earlier submission waits for).
    pub fn starvation_bound(&self) -> Duration {
        self.overdue_after
    }

    /// Whether a job submitted then is overdue now.
    pub fn overdue(&self, submitted_at: Timestamp, now: Timestamp) -> bool {
        !self.overdue_after.is_zero() && submitted_at.until(now) >= self.overdue_after
    }
}

/// One pending job's place in the plan. It borrows names from the [`QueueState`] it was
/// planned from, and keeps the figures its reason is made of: the worker plans after
/// every change and reads only the first few places, so the words are written only
/// when someone asks ([`Ranked::reason`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked<'q> {
    pub id: JobId,
    pub name: &'q str,
    pub status: Readiness<'q>,
    why: Why<'q>,
}

/// The figures behind a ready or held job's place.
#[derive(Debug, Clone, PartialEq)]
struct Why<'q> {
    priority: Priority,
    /// Overdue: the overdue job it serves (`None`: itself), and how long that has
    /// waited.
    overdue: Option<(Option<&'q str>, Duration)>,
    starvation_bound: Duration,
    waiting: usize,
    /// Priority per second, with the jobs it opens.
    ratio: f64,
    chain_len: usize,
    estimate: Duration,
    estimate_from: &'static str,
    owner: &'q str,
    /// Its owner's turn in its priority class, when owners share the class.
    turn: Option<Turn>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Readiness<'q> {
    /// May start now.
    Ready,
    /// Ready, but would conflict with a running job or a better-placed ready job of the
    /// same package.
    Conflict(String),
    /// Waiting for these jobs.
    Waiting(Vec<&'q str>),
    /// Will never become ready: a dependency failed, or a cycle.
    Doomed(String),
}

#[derive(Debug, Clone, Default)]
pub struct Plan<'q> {
    /// Ready jobs first, best first; then held ones; then waiting jobs; then doomed ones.
    pub order: Vec<Ranked<'q>>,
}

impl Plan<'_> {
    /// The jobs to start now, given how many run already: the best ready jobs. Ready
    /// jobs never wait on one another, and never share a package (the later one is a
    /// `Conflict`), so any of them may run side by side.
    pub fn to_start(&self, running: usize, max_parallel: usize) -> Vec<JobId> {
        self.order
            .iter()
            .filter(|r| r.status == Readiness::Ready)
            .take(max_parallel.saturating_sub(running))
            .map(|r| r.id)
            .collect()
    }

    pub fn doomed(&self) -> impl Iterator<Item = (&Ranked<'_>, &str)> {
        self.order.iter().filter_map(|r| match &r.status {
            Readiness::Doomed(why) => Some((r, why.as_str())),
            _ => None,
        })
    }
}

impl QueueState {
    /// The estimate the scheduler uses for a job, and where it came from.
    ///
    /// A submitter's estimate can only lengthen what the queue knows: with history,
    /// the longer of the two (a longer estimate may be honest, a variant that builds
    /// more, and it only delays its own job; a shorter one would jump the queue on the
    /// submitter's word). Without history, an estimate below the job's own timeout ÷
    /// the timeout multiplier is raised to it: a job that asks to be allowed 30 days
    /// does not take one second. A short estimate without a timeout is believed: the
    /// install is then killed at estimate × the multiplier, so the lie costs the liar.
    pub fn estimate(&self, job: &PendingJob, policy: &Policy) -> (Duration, &'static str) {
        self.estimate_with(job, self.dag.get(&job.id), policy)
    }

    /// [`QueueState::estimate`], given the job's DAG (looked up once per plan).
    fn estimate_with(
        &self,
        job: &PendingJob,
        dag: Option<&Dag>,
        policy: &Policy,
    ) -> (Duration, &'static str) {
        if let Some(d) = dag.and_then(|d| d.estimate) {
            return match job.estimate {
                Some(e) if e > d => (e, "its own estimate"),
                Some(_) => (
                    d,
                    "the packages its DAG builds; its own estimate is shorter",
                ),
                None => (d, "the packages its DAG builds"),
            };
        }
        let history = self.history.get(&job.package).copied();
        let implied = job
            .timeout
            .filter(|_| policy.timeout_multiplier.is_finite() && policy.timeout_multiplier > 0.0)
            .map(|t| t.div_f64(policy.timeout_multiplier));
        match (job.estimate, history) {
            (Some(e), Some(h)) if e >= h => (e, "its own estimate"),
            (Some(_), Some(h)) => (h, "past installs; its own estimate is shorter"),
            (None, Some(h)) => (h, "past installs"),
            (Some(e), None) => match implied {
                Some(t) if t > e => (
                    t,
                    "its timeout ÷ the multiplier; its own estimate is shorter",
                ),
                _ => (e, "its own estimate"),
            },
            (None, None) => (policy.default_estimate, "the default estimate"),
        }
    }
}

fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Done => "succeeded",
        Outcome::Failed => "failed",
        Outcome::Cancelled => "was cancelled",
    }
}

/// The failure that dooms `job` through a package it depends on, when no job of the
/// package is left to wait for: the latest failed or cancelled job of that package
/// that the job's own owner submitted, finished since the job was submitted, unless
/// the package has been installed successfully since (by anyone). Another owner's
/// failure never dooms a job: the job stops waiting for it and, with nothing left to
/// wait for, is ready (Spack builds the dependency itself if it must).
fn own_failure<'f>(
    finished: Option<&'f Vec<FinishedJob>>,
    job: &PendingJob,
) -> Option<&'f FinishedJob> {
    let finished = finished?;
    let bad = finished
        .iter()
        .filter(|f| {
            f.outcome != Outcome::Done && f.owner == job.owner && f.finished_at >= job.submitted_at
        })
        .max_by_key(|f| (f.finished_at, f.id))?;
    let installed_since = finished
        .iter()
        .any(|f| f.outcome == Outcome::Done && f.finished_at >= bad.finished_at);
    (!installed_since).then_some(bad)
}

/// One list of job indices per job, all in one allocation (a plan of 10 000 jobs would
/// otherwise allocate a vector per job for each kind of edge).
struct Lists {
    /// The list of job i is `items[start[i]..start[i + 1]]`.
    start: Vec<usize>,
    items: Vec<usize>,
}

impl Lists {
    fn with_capacity(n: usize) -> Lists {
        let mut start = Vec::with_capacity(n + 1);
        start.push(0);
        Lists {
            start,
            items: Vec::new(),
        }
    }

    /// Ends the list being built (the next job's begins).
    fn close(&mut self) {
        self.start.push(self.items.len());
    }

    fn of(&self, i: usize) -> &[usize] {
        &self.items[self.start[i]..self.start[i + 1]]
    }

    /// The lists of `n` groups from (group, item) pairs given in the order each group's
    /// items should keep (a counting sort: no hashing, no vector per group).
    fn grouped(n: usize, pairs: impl Iterator<Item = (usize, usize)> + Clone) -> Lists {
        let mut start = vec![0; n + 1];
        for (g, _) in pairs.clone() {
            start[g + 1] += 1;
        }
        for g in 0..n {
            start[g + 1] += start[g];
        }
        let mut fill = start.clone();
        let mut items = vec![0; start[n]];
        for (g, item) in pairs {
            items[fill[g]] = item;
            fill[g] += 1;
        }
        Lists { start, items }
    }
}

/// The dependency graph among pending jobs, with doom decided.
struct Graph {
    /// The pending jobs each job waits for (indices, sorted, no duplicates; for a job
    /// doomed by its `after` list, the ones found before the doom, as listed).
    waits: Lists,
    /// The running jobs each job waits for (indices into `q.running`).
    on_running: Lists,
    /// The pending jobs that wait for each job, in ID order (once per edge).
    dependents: Lists,
    doom: Vec<Option<String>>,
    /// Each job's package as a number (equal numbers, equal packages), so the plan keeps
    /// sets of packages without hashing names.
    package: Vec<usize>,
    packages: usize,
}

fn graph(q: &QueueState, dags: &[Option<&Dag>]) -> Graph {
    let n = q.pending.len();
    // By ID: for `after` lists and DAG roots (most queues have neither).
    let mut index: FastMap<JobId, usize> = FastMap::default();
    if !q.dag.is_empty() || q.pending.iter().any(|p| !p.after.is_empty()) {
        index.reserve(n);
        for (i, p) in q.pending.iter().enumerate() {
            index.insert(p.id, i);
        }
    }
    let running_index: FastMap<JobId, usize> = q
        .running
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id, i))
        .collect();
    let mut package_number: FastMap<&str, usize> =
        FastMap::with_capacity_and_hasher(n, Default::default());
    let package: Vec<usize> = q
        .pending
        .iter()
        .map(|p| {
            let next = package_number.len();
            *package_number.entry(p.package.as_str()).or_insert(next)
        })
        .collect();
    let packages = package_number.len();
    let by_package = Lists::grouped(packages, package.iter().copied().zip(0..n));
    let mut running_by_package: FastMap<&str, Vec<usize>> = FastMap::default();
    for (i, r) in q.running.iter().enumerate() {
        running_by_package
            .entry(r.package.as_str())
            .or_default()
            .push(i);
    }

    // Each concretized job's root, by its `NAME@VERSION/HASH7`.
    #[derive(Clone, Copy)]
    enum Place {
        Pending(usize),
        Running(usize),
    }
    let mut roots: FastMap<&str, Vec<(JobId, Place)>> = FastMap::default();
    for (id, d) in &q.dag {
        let place = match (index.get(id), running_index.get(id)) {
            (Some(&i), _) => Place::Pending(i),
            (None, Some(&r)) => Place::Running(r),
            (None, None) => continue,
        };
        roots.entry(d.root.as_str()).or_default().push((*id, place));
    }

    let mut waits = Lists::with_capacity(n);
    let mut on_running = Lists::with_capacity(n);
    let mut doom: Vec<Option<String>> = vec![None; n];
    // The current job's edges, before sorting.
    let mut mine: Vec<usize> = Vec::new();
    let mut mine_running: Vec<usize> = Vec::new();
    for (i, job) in q.pending.iter().enumerate() {
        mine.clear();
        mine_running.clear();
        for dep in &job.after {
            if let Some(&j) = index.get(dep) {
                mine.push(j);
            } else if let Some(&r) = running_index.get(dep) {
                mine_running.push(r);
            } else if let Some(f) = q.finished.get(dep)
                && f.outcome != Outcome::Done
            {
                doom[i] = Some(format!("dependency {} {}", f.name, outcome_word(f.outcome)));
                break;
            }
        }
        if doom[i].is_none() {
            for pkg in &job.dependencies {
                let queued = package_number.get(pkg.as_str()).map(|&k| by_package.of(k));
                let running = running_by_package.get(pkg.as_str());
                if queued.is_some_and(|v| v.iter().any(|&j| j != i)) || running.is_some() {
                    mine.extend(queued.into_iter().flatten().filter(|&&j| j != i));
                    mine_running.extend(running.into_iter().flatten());
                } else if let Some(f) = own_failure(q.finished_by_package.get(pkg), job) {
                    doom[i] = Some(format!("dependency {} {}", f.name, outcome_word(f.outcome)));
                    break;
                }
            }
            // The DAG: wait for the jobs whose root this one would build.
            if let Some(d) = dags.get(i).copied().flatten() {
                for b in &d.builds {
                    for &(other, j) in roots.get(b.as_str()).into_iter().flatten() {
                        match j {
                            Place::Pending(j) if j != i => mine.push(j),
                            Place::Running(r) if other != job.id => mine_running.push(r),
                            _ => {}
                        }
                    }
                }
            }
            mine.sort_unstable();
            mine.dedup();
            mine_running.sort_unstable();
            mine_running.dedup();
        }
        waits.items.extend_from_slice(&mine);
        waits.close();
        on_running.items.extend_from_slice(&mine_running);
        on_running.close();
    }

    // Everything below walks jobs in ID order, so the plan does not depend on the order
    // of `q.pending` (names in reasons, ties in sums).
    let id = |i: &usize| q.pending[*i].id;
    let mut by_id: Vec<usize> = (0..n).collect();
    if !q.pending.is_sorted_by_key(|p| p.id) {
        by_id.sort_unstable_by_key(id);
    }
    // Filled in ID order, each job's dependents come out in ID order.
    let dependents = Lists::grouped(
        n,
        by_id
            .iter()
            .flat_map(|&i| waits.of(i).iter().map(move |&j| (j, i))),
    );

    for mut cycle in cycles(&waits, &dependents, &doom) {
        cycle.sort_unstable_by_key(id);
        const SHOWN: usize = 6;
        let names: Vec<&str> = cycle
            .iter()
            .take(SHOWN)
            .map(|&i| q.pending[i].name.as_str())
            .collect();
        let text = if cycle.len() <= SHOWN {
            format!("dependency cycle: {} → {}", names.join(" → "), names[0])
        } else {
            format!(
                "dependency cycle of {} jobs: {} → … → {}",
                cycle.len(),
                names.join(" → "),
                names[0]
            )
        };
        for &i in &cycle {
            doom[i] = Some(text.clone());
        }
    }

    // Doom spreads to everything that waits, directly or not, on a doomed job.
    let mut queue: VecDeque<usize> = by_id
        .iter()
        .copied()
        .filter(|&i| doom[i].is_some())
        .collect();
    while let Some(d) = queue.pop_front() {
        for &i in dependents.of(d) {
            if doom[i].is_none() {
                doom[i] = Some(format!(
                    "dependency {} cannot run",
                    q.pending[d].name.as_str()
                ));
                queue.push_back(i);
            }
        }
    }
    Graph {
        waits,
        on_running,
        dependents,
        doom,
        package,
        packages,
    }
}

/// Whether the jobs not doomed already wait on one another in a cycle: a topological
/// sort (Kahn's) that cannot place them all. Cheaper than finding the cycles, which
/// most plans have none of.
fn has_cycle(waits: &Lists, dependents: &Lists, doom: &[Option<String>]) -> bool {
    let n = doom.len();
    let live = |v: usize| doom[v].is_none();
    let mut missing: Vec<usize> = (0..n)
        .map(|i| waits.of(i).iter().filter(|&&w| live(w)).count())
        .collect();
    let mut ready: Vec<usize> = (0..n).filter(|&i| live(i) && missing[i] == 0).collect();
    let mut placed = 0;
    while let Some(j) = ready.pop() {
        placed += 1;
        for &i in dependents.of(j) {
            if live(i) {
                missing[i] -= 1;
                if missing[i] == 0 {
                    ready.push(i);
                }
            }
        }
    }
    placed < (0..n).filter(|&i| live(i)).count()
}

/// The cycles among waiting jobs that are not doomed already: strongly connected
/// components of more than one job, or a job waiting on itself (Tarjan's algorithm,
/// iterative so a long chain cannot overflow the stack).
fn cycles(waits: &Lists, dependents: &Lists, doom: &[Option<String>]) -> Vec<Vec<usize>> {
    const NONE: usize = usize::MAX;
    let n = doom.len();
    let live = |v: usize| doom[v].is_none();
    if !has_cycle(waits, dependents, doom) {
        return Vec::new();
    }
    let mut index = vec![NONE; n];
    let mut low = vec![0; n];
    let mut on = vec![false; n];
    let mut stack = Vec::new();
    let mut next = 0;
    let mut out = Vec::new();
    // (node, position in its edge list)
    let mut calls: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if index[root] != NONE || !live(root) {
            continue;
        }
        calls.push((root, 0));
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on[root] = true;
        while let Some(&mut (v, ref mut e)) = calls.last_mut() {
            if let Some(&w) = waits.of(v).get(*e) {
                *e += 1;
                if !live(w) {
                    continue;
                }
                if index[w] == NONE {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on[w] = true;
                    calls.push((w, 0));
                } else if on[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(parent, _)) = calls.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                // Most components are one job that is no cycle: no vector for those.
                if stack.last() == Some(&v) {
                    stack.pop();
                    on[v] = false;
                    if waits.of(v).contains(&v) {
                        out.push(vec![v]);
                    }
                    continue;
                }
                let mut comp = Vec::new();
                while let Some(w) = stack.pop() {
                    on[w] = false;
                    comp.push(w);
                    if w == v {
                        break;
                    }
                }
                out.push(comp);
            }
        }
    }
    out
}

/// What ranks a live job, computed once per plan.
#[derive(Debug, Clone, Copy)]
struct Rank {
    /// Overdue, by itself or because an overdue job waits for it (the lender; itself
    /// if none).
    overdue: bool,
    lender: usize,
    /// Submission time of the oldest overdue job this one serves (for overdue ordering).
    served_since: Timestamp,
    /// Best chain from this job through jobs waiting on it: summed weight and time.
    chain_weight: f64,
    chain_secs: f64,
    /// How many jobs lie on that chain after this one.
    chain_len: usize,
    estimate: Duration,
    estimate_from: &'static str,
}

impl Rank {
    fn ratio(&self) -> f64 {
        self.chain_weight / self.chain_secs
    }
}

/// Rank the pending jobs.
pub fn plan<'q>(q: &'q QueueState, now: Timestamp, policy: &Policy) -> Plan<'q> {
    let n = q.pending.len();
    // Each job's DAG, looked up once (the map is keyed by ID with the standard hasher);
    // empty when no job has one.
    let dags: Vec<Option<&Dag>> = if q.dag.is_empty() {
        Vec::new()
    } else {
        q.pending.iter().map(|p| q.dag.get(&p.id)).collect()
    };
    let dag = |i: usize| dags.get(i).copied().flatten();
    let g = graph(q, &dags);

    let mut rank: Vec<Rank> = q
        .pending
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (estimate, estimate_from) = q.estimate_with(p, dag(i), policy);
            Rank {
                overdue: policy.overdue(p.submitted_at, now),
                lender: i,
                served_since: p.submitted_at,
                chain_weight: p.priority.weight() as f64,
                chain_secs: estimate.as_secs_f64().max(1.0),
                chain_len: 0,
                estimate,
                estimate_from,
            }
        })
        .collect();

    // Topological order of the live jobs, dependencies first (Kahn); then one pass
    // backwards so every job sees its dependents' final values.
    let mut missing: Vec<usize> = (0..n).map(|i| g.waits.of(i).len()).collect();
    let mut topo: Vec<usize> = (0..n)
        .filter(|&i| g.doom[i].is_none() && missing[i] == 0)
        .collect();
    let mut head = 0;
    while head < topo.len() {
        let j = topo[head];
        head += 1;
        for &i in g.dependents.of(j) {
            missing[i] -= 1;
            if missing[i] == 0 && g.doom[i].is_none() {
                topo.push(i);
            }
        }
    }
    // (ratio, weight, time, jobs) of each dependent's bundle.
    let mut bundles: Vec<(f64, f64, f64, usize)> = Vec::new();
    for &j in topo.iter().rev() {
        let mine = rank[j];
        let mut best = mine;
        bundles.clear();
        for &d in g.dependents.of(j) {
            let theirs = rank[d];
            if theirs.overdue && (!best.overdue || theirs.served_since < best.served_since) {
                best.overdue = true;
                best.served_since = theirs.served_since;
                best.lender = theirs.lender;
            }
            bundles.push((
                theirs.ratio(),
                theirs.chain_weight,
                theirs.chain_secs,
                theirs.chain_len + 1,
            ));
        }
        // Sidney's rule on a tree: take the dependents' bundles, best ratio first,
        // while each raises the ratio of the whole.
        if bundles.len() > 1 {
            bundles.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        }
        for &(_, w, secs, len) in &bundles {
            if (best.chain_weight + w) / (best.chain_secs + secs) > best.ratio() {
                best.chain_weight += w;
                best.chain_secs += secs;
                best.chain_len += len;
            } else {
                break;
            }
        }
        // Shared dependents are counted once per path: keep the sums finite (the
        // ratio is what ranks).
        if best.chain_secs > 1e12 {
            best.chain_weight /= 1e6;
            best.chain_secs /= 1e6;
        }
        rank[j] = best;
    }

    let running_packages: FastSet<&str> = q.running.iter().map(|r| r.package.as_str()).collect();
    let running_nodes: FastSet<&str> = q
        .running
        .iter()
        .filter_map(|r| q.dag.get(&r.id))
        .flat_map(|d| d.builds.iter().map(String::as_str))
        .collect();
    let mut doom = g.doom;
    // The jobs one job waits for, before sorting (one buffer for all jobs).
    let mut on: Vec<(JobId, &str)> = Vec::new();
    let mut status: Vec<Readiness<'q>> = Vec::with_capacity(n);
    for (i, p) in q.pending.iter().enumerate() {
        status.push(if let Some(why) = doom[i].take() {
            Readiness::Doomed(why)
        } else if !g.waits.of(i).is_empty() || !g.on_running.of(i).is_empty() {
            // Names begin with the zero-padded ID: sorting by ID sorts the names.
            on.clear();
            on.extend(
                g.waits
                    .of(i)
                    .iter()
                    .map(|&d| (q.pending[d].id, q.pending[d].name.as_str())),
            );
            on.extend(
                g.on_running
                    .of(i)
                    .iter()
                    .map(|&r| (q.running[r].id, q.running[r].name.as_str())),
            );
            on.sort_unstable();
            on.dedup();
            Readiness::Waiting(on.iter().map(|&(_, n)| n).collect())
        } else if running_packages.contains(p.package.as_str()) {
            Readiness::Conflict(format!("another {} job is running", p.package))
        } else if let Some(node) =
            dag(i).and_then(|d| d.builds.iter().find(|b| running_nodes.contains(b.as_str())))
        {
            Readiness::Conflict(format!(
                "a running job builds {node}, which it would build too"
            ))
        } else {
            Readiness::Ready
        });
    }

    // Done with: freed before the order and the places are allocated.
    let waiting: Vec<usize> = (0..n).map(|i| g.dependents.of(i).len()).collect();
    drop(doom);
    drop(g.waits);
    drop(g.on_running);
    drop(g.dependents);
    let class = |s: &Readiness| match s {
        Readiness::Ready => 0u8,
        Readiness::Conflict(_) => 1,
        Readiness::Waiting(_) => 2,
        Readiness::Doomed(_) => 3,
    };
    // One key per job, compared as a tuple: the ranking of the module doc, in order.
    // The ratio is positive, so its IEEE bits order like the number.
    type Key = (u8, bool, u64, Reverse<u64>, Duration, JobId, usize);
    let mut keys: Vec<Key> = (0..n)
        .map(|i| {
            let r = &rank[i];
            (
                class(&status[i]),
                !r.overdue,
                if r.overdue { r.served_since.0 } else { 0 },
                Reverse(r.ratio().to_bits()),
                r.estimate,
                q.pending[i].id,
                i,
            )
        })
        .collect();
    keys.sort_unstable();
    let mut order: Vec<usize> = keys.iter().map(|k| k.6).collect();
    drop(keys);
    let turns = take_turns(
        q,
        policy,
        now,
        &mut order,
        // Ready and not overdue: overdue jobs keep their place (the starvation bound).
        |&i| (status[i] == Readiness::Ready && !rank[i].overdue).then_some(i),
        |i| rank[i].ratio(),
    );

    // Among ready jobs, two of one package may not start together: the later is held
    // for this round.
    let mut taken = vec![false; g.packages];
    let mut taken_nodes: FastSet<&str> = FastSet::default();
    let order = order
        .into_iter()
        .map(|i| {
            let p = &q.pending[i];
            let mut status = std::mem::replace(&mut status[i], Readiness::Ready);
            if status == Readiness::Ready && std::mem::replace(&mut taken[g.package[i]], true) {
                status = Readiness::Conflict(format!("an earlier {} job goes first", p.package));
            }
            // Nor two that would build a node in common.
            let builds = dag(i).map(|d| d.builds.as_slice()).unwrap_or(&[]);
            if status == Readiness::Ready {
                if let Some(node) = builds.iter().find(|b| taken_nodes.contains(b.as_str())) {
                    status = Readiness::Conflict(format!(
                        "an earlier job builds {node}, which it would build too"
                    ));
                } else {
                    taken_nodes.extend(builds.iter().map(String::as_str));
                }
            }
            let r = &rank[i];
            Ranked {
                id: p.id,
                name: p.name.as_str(),
                status,
                why: Why {
                    priority: p.priority,
                    overdue: r.overdue.then(|| {
                        let lender = &q.pending[r.lender];
                        (
                            (r.lender != i).then_some(lender.name.as_str()),
                            lender.submitted_at.until(now),
                        )
                    }),
                    starvation_bound: policy.starvation_bound(),
                    waiting: waiting[i],
                    ratio: r.ratio(),
                    chain_len: r.chain_len,
                    estimate: r.estimate,
                    estimate_from: r.estimate_from,
                    owner: p.owner.as_str(),
                    turn: turns[i],
                },
            }
        })
        .collect();
    Plan { order }
}

/// A job's fair-share standing when it was dealt its place: its owner's recent use of
/// the builders, and how many owners share its priority class.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Turn {
    usage: f64,
    factor: f64,
    owners: usize,
}

/// Each owner's recent use of the builders, in installs: one per install running now,
/// plus each recent start decayed by its age (halved every `fair_share_half_life`).
fn usage<'q>(q: &'q QueueState, policy: &Policy, now: Timestamp) -> FastMap<&'q str, f64> {
    let mut u: FastMap<&str, f64> = FastMap::default();
    for r in &q.running {
        *u.entry(r.owner.as_str()).or_default() += 1.0;
    }
    let h = policy.fair_share_half_life.as_secs_f64();
    for (owner, starts) in &q.recent_starts {
        for t in starts {
            let age = t.until(now).as_secs_f64();
            if h > 0.0 {
                *u.entry(owner.as_str()).or_default() += (-age / h).exp2();
            }
        }
    }
    u
}

/// Fair share (a usage-decayed share, as Slurm's fair-share factor): within each
/// priority class, a job's value per hour is discounted by its owner's recent use of the
/// builders, `fair_share_base` to the power of minus the installs the owner started
/// lately ([`usage`]), counting the places dealt before it in this plan as installs too.
/// The class's ready jobs keep the places the ranking gave the class as a whole (so
/// priorities, overdue jobs and other classes stay where they were), and each place goes
/// to the owner whose best remaining job is worth most after the discount; among equals,
/// the owner with less use, then the one served longest ago ([`QueueState::last_start`]),
/// then the better-ranked job. Each owner's own jobs keep their ranked order. So when
/// bob has ten jobs and alice one of the same worth, hers is dealt second (bob's first
/// one already discounts his); a job worth more than `fair_share_base` times another
/// still goes first, as Smith's rule wants, but no more than about log_base(its
/// advantage) times in a row.
///
/// `member` gives the job index of the entries of `order` that take part; `ratio` a
/// job's value per second. Returns each job's standing, by job index (`None`: not
/// dealt).
fn take_turns<K>(
    q: &QueueState,
    policy: &Policy,
    now: Timestamp,
    order: &mut [K],
    member: impl Fn(&K) -> Option<usize>,
    ratio: impl Fn(usize) -> f64,
) -> Vec<Option<Turn>>
where
    K: Clone,
{
    let mut turns = vec![None; q.pending.len()];
    let base = policy.fair_share_base;
    if !(base.is_finite() && base > 1.0) {
        return turns;
    }
    // Each class's places in the ranking, in ranked order, with their jobs and owners
    // (owners numbered as met, so what follows hashes no names).
    let mut owner_number: FastMap<&str, usize> = FastMap::default();
    let mut names: Vec<&str> = Vec::new();
    let mut classes: [Vec<(usize, usize, usize)>; 3] = Default::default();
    for (place, key) in order.iter().enumerate() {
        let Some(i) = member(key) else { continue };
        let p = &q.pending[i];
        let o = *owner_number.entry(p.owner.as_str()).or_insert_with(|| {
            names.push(p.owner.as_str());
            names.len() - 1
        });
        let class = match p.priority {
            Priority::High => 0,
            Priority::Medium => 1,
            Priority::Low => 2,
        };
        classes[class].push((place, i, o));
    }
    let recent = usage(q, policy, now);
    // Each owner's use, counting the places dealt so far in this plan (in every class).
    let mut used: Vec<f64> = names
        .iter()
        .map(|name| recent.get(name).copied().unwrap_or(0.0))
        .collect();
    // When each owner was last served before this plan.
    let served: Vec<u64> = names
        .iter()
        .map(|name| q.last_start.get(*name).map_or(0, |t| t.0.saturating_add(1)))
        .collect();
    const END: usize = usize::MAX;
    for members in &classes {
        // Per-owner cursors: `first[o]`, its best-ranked job of the class (a position in
        // `members`), and `next[k]`, the owner's job ranked after the one at k.
        let mut first = vec![END; names.len()];
        let mut next = vec![END; members.len()];
        for (k, &(_, _, o)) in members.iter().enumerate().rev() {
            next[k] = first[o];
            first[o] = k;
        }
        let owners = first.iter().filter(|&&k| k != END).count();
        if owners < 2 {
            continue;
        }
        let before: Vec<K> = members.iter().map(|&(p, _, _)| order[p].clone()).collect();
        // When each owner was last served: before this plan, then by the places it deals.
        let mut when = served.clone();
        // Each owner's use and discount, changed only when it is dealt a place.
        let mut discount: Vec<(f64, f64)> = used.iter().map(|&u| (u, base.powf(-u))).collect();
        // Each owner's next job, best first: only the owner just dealt a place changes
        // its standing, so a heap of the owners replaces a scan of them per place.
        let candidate = |o: usize, k: usize, discount: &[(f64, f64)], when: &[u64]| Candidate {
            worth: ratio(members[k].1) * discount[o].1,
            usage: discount[o].0,
            when: when[o],
            k,
            owner: o,
        };
        let mut heap: BinaryHeap<Candidate> = (0..names.len())
            .filter(|&o| first[o] != END)
            .map(|o| candidate(o, first[o], &discount, &when))
            .collect();
        for (dealt, &(slot, _, _)) in members.iter().enumerate() {
            let Candidate { k, owner: o, .. } = heap.pop().expect("a job is left for every place");
            let (u, factor) = discount[o];
            turns[members[k].1] = Some(Turn {
                usage: u,
                factor,
                owners,
            });
            order[slot] = before[k].clone();
            used[o] += 1.0;
            discount[o] = (u + 1.0, base.powf(-(u + 1.0)));
            when[o] = u64::MAX - (members.len() - dealt) as u64;
            if next[k] != END {
                heap.push(candidate(o, next[k], &discount, &when));
            }
        }
    }
    turns
}

/// An owner's next job in [`take_turns`]'s heap. The greatest is dealt first: the most
/// worth after the discount; among equals, the owner with less use, then the one served
/// longest ago, then the better-ranked job.
struct Candidate {
    worth: f64,
    usage: f64,
    when: u64,
    /// Its position among the class's places (ranked order).
    k: usize,
    owner: usize,
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        use std::cmp::Ordering::{Greater, Less};
        // Worth and use are finite and not negative: `<` and `>` order them as the
        // planner always has (no NaN to place).
        if self.worth > other.worth {
            Greater
        } else if self.worth < other.worth {
            Less
        } else if self.usage < other.usage {
            Greater
        } else if self.usage > other.usage {
            Less
        } else {
            (other.when, other.k).cmp(&(self.when, self.k))
        }
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Candidate {}

impl Ranked<'_> {
    /// Its value: priority per hour, with the jobs it opens (before any fair-share
    /// discount).
    pub fn worth_per_hour(&self) -> f64 {
        self.why.ratio * 3600.0
    }

    /// Its owner's recent installs when fair share dealt it its place (`None`: not
    /// dealt, being alone in its class, overdue, or not ready).
    pub fn fair_share_usage(&self) -> Option<f64> {
        self.why.turn.map(|t| t.usage)
    }

    /// Why the job is where it is, in words a site admin accepts.
    pub fn reason(&self) -> String {
        let w = &self.why;
        let mut s = String::new();
        match &self.status {
            Readiness::Ready | Readiness::Conflict(_) => {
                let _ = write!(s, "{} priority", w.priority);
                match w.overdue {
                    Some((None, waited)) => {
                        let _ = write!(
                            s,
                            "; overdue: waiting {}, over {}, so it goes before later submissions",
                            crate::time::short(waited),
                            crate::time::short(w.starvation_bound)
                        );
                    }
                    Some((Some(lender), _)) => {
                        let _ = write!(
                            s,
                            "; overdue: {lender} waits for it and has waited over {}",
                            crate::time::short(w.starvation_bound)
                        );
                    }
                    None => {}
                }
                if let Some(t) = w.turn {
                    let _ = write!(
                        s,
                        "; fair share among {} owners of ready {} jobs: {} started {:.1} installs lately, so its worth counts ×{:.2}",
                        t.owners, w.priority, w.owner, t.usage, t.factor
                    );
                }
                if w.waiting > 0 {
                    let _ = write!(
                        s,
                        "; {} job{} wait{} for it",
                        w.waiting,
                        if w.waiting == 1 { "" } else { "s" },
                        if w.waiting == 1 { "s" } else { "" }
                    );
                }
                let _ = write!(s, "; worth {:.2} priority/hour", w.ratio * 3600.0);
                if w.chain_len > 0 {
                    let _ = write!(
                        s,
                        " with the {} job{} it opens",
                        w.chain_len,
                        if w.chain_len == 1 { "" } else { "s" }
                    );
                }
                let _ = write!(
                    s,
                    "; takes ~{} ({})",
                    crate::time::short(w.estimate),
                    w.estimate_from
                );
                if let Readiness::Conflict(why) = &self.status {
                    let _ = write!(s, "; held: {why}");
                }
            }
            Readiness::Waiting(on) => {
                const SHOWN: usize = 5;
                s.push_str("waits for ");
                for (k, name) in on.iter().take(SHOWN).enumerate() {
                    if k > 0 {
                        s.push_str(", ");
                    }
                    s.push_str(name);
                }
                if on.len() > SHOWN {
                    let _ = write!(s, " and {} more", on.len() - SHOWN);
                }
            }
            Readiness::Doomed(why) => s.push_str(why),
        }
        s
    }
}

#[cfg(test)]
mod reference;

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: u64, pkg: &str, prio: Priority, deps: &[&str]) -> PendingJob {
        PendingJob {
            id: JobId(id),
            name: format!("{:06}-{pkg}", id),
            package: pkg.into(),
            owner: "alice".into(),
            priority: prio,
            dependencies: deps.iter().map(|s| s.to_string()).collect(),
            after: vec![],
            estimate: None,
            timeout: None,
            submitted_at: Timestamp(1000 + id),
        }
    }

    /// A starvation bound of one day, whatever the default.
    fn day_bound() -> Policy {
        Policy {
            overdue_after: Duration::from_secs(24 * 3600),
            ..Policy::default()
        }
    }

    fn ids(p: &Plan) -> Vec<u64> {
        p.order.iter().map(|r| r.id.0).collect()
    }

    fn dag(root: &str, builds: &[&str]) -> Dag {
        Dag {
            root: root.into(),
            builds: builds.iter().map(|s| s.to_string()).collect(),
            estimate: None,
        }
    }

    #[test]
    fn a_job_waits_for_the_job_whose_root_its_dag_builds_whatever_that_ends_as() {
        let mut q = QueueState {
            pending: vec![
                job(1, "hdf5", Priority::High, &[]),
                job(2, "zlib", Priority::Low, &[]),
            ],
            ..Default::default()
        };
        q.dag.insert(
            JobId(1),
            dag(
                "hdf5@1.14/aaaaaaa",
                &["zlib@1.3/bbbbbbb", "hdf5@1.14/aaaaaaa"],
            ),
        );
        q.dag
            .insert(JobId(2), dag("zlib@1.3/bbbbbbb", &["zlib@1.3/bbbbbbb"]));
        let p = plan(&q, Timestamp(2000), &Policy::default());
        assert_eq!(ids(&p), vec![2, 1], "no hand-written dependency needed");
        assert_eq!(p.order[1].status, Readiness::Waiting(vec!["000002-zlib"]));
        // zlib running: hdf5 still waits for it.
        let running = QueueState {
            pending: vec![q.pending[0].clone()],
            running: vec![RunningJob {
                id: JobId(2),
                name: "000002-zlib".into(),
                package: "zlib".into(),
                owner: "bob".into(),
            }],
            dag: q.dag.clone(),
            ..Default::default()
        };
        let p = plan(&running, Timestamp(2000), &Policy::default());
        assert_eq!(p.order[0].status, Readiness::Waiting(vec!["000002-zlib"]));
        // zlib failed (bob's): hdf5 is not doomed by it; Spack builds zlib itself.
        let mut after = QueueState {
            pending: running.pending.clone(),
            dag: running.dag.clone(),
            ..Default::default()
        };
        after.finished.insert(
            JobId(2),
            FinishedJob {
                id: JobId(2),
                name: "000002-zlib".into(),
                package: "zlib".into(),
                owner: "bob".into(),
                outcome: Outcome::Failed,
                finished_at: Timestamp(1500),
            },
        );
        let p = plan(&after, Timestamp(2000), &Policy::default());
        assert_eq!(p.order[0].status, Readiness::Ready);
    }

    #[test]
    fn two_jobs_that_would_build_a_node_in_common_never_start_together() {
        let mut q = QueueState {
            pending: vec![
                job(1, "hdf5", Priority::High, &[]),
                job(2, "netcdf-c", Priority::High, &[]),
                job(3, "bzip2", Priority::High, &[]),
            ],
            ..Default::default()
        };
        q.dag.insert(
            JobId(1),
            dag("hdf5@1/aaaaaaa", &["zlib@1.3/bbbbbbb", "hdf5@1/aaaaaaa"]),
        );
        q.dag.insert(
            JobId(2),
            dag(
                "netcdf-c@4/ccccccc",
                &["zlib@1.3/bbbbbbb", "netcdf-c@4/ccccccc"],
            ),
        );
        q.dag
            .insert(JobId(3), dag("bzip2@1/ddddddd", &["bzip2@1/ddddddd"]));
        let p = plan(&q, Timestamp(2000), &Policy::default());
        let started = p.to_start(0, 3);
        assert_eq!(started.len(), 2, "{:?}", p.order);
        assert!(started.contains(&JobId(3)));
        let held = p
            .order
            .iter()
            .find(|r| matches!(r.status, Readiness::Conflict(_)))
            .expect("one is held");
        assert_eq!(
            held.status,
            Readiness::Conflict(
                "an earlier job builds zlib@1.3/bbbbbbb, which it would build too".into()
            )
        );
        // While one of them runs, the other is held too.
        let running = QueueState {
            pending: vec![q.pending[1].clone()],
            running: vec![RunningJob {
                id: JobId(1),
                name: "000001-hdf5".into(),
                package: "hdf5".into(),
                owner: "alice".into(),
            }],
            dag: q.dag.clone(),
            ..Default::default()
        };
        let p = plan(&running, Timestamp(2000), &Policy::default());
        assert!(p.to_start(1, 3).is_empty(), "{:?}", p.order);
    }

    #[test]
    fn the_dags_estimate_is_what_the_queue_knows() {
        let mut q = QueueState {
            pending: vec![job(1, "hdf5", Priority::High, &[])],
            ..Default::default()
        };
        q.history.insert("hdf5".into(), Duration::from_secs(60));
        let mut d = dag("hdf5@1/aaaaaaa", &["hdf5@1/aaaaaaa"]);
        d.estimate = Some(Duration::from_secs(3600));
        q.dag.insert(JobId(1), d);
        let p = Policy::default();
        assert_eq!(
            q.estimate(&q.pending[0], &p),
            (Duration::from_secs(3600), "the packages its DAG builds")
        );
        q.pending[0].estimate = Some(Duration::from_secs(10));
        assert_eq!(q.estimate(&q.pending[0], &p).0, Duration::from_secs(3600));
    }

    #[test]
    fn priority_then_dependencies_then_id() {
        let q = QueueState {
            pending: vec![
                job(1, "a", Priority::Low, &[]),
                job(2, "b", Priority::High, &["c"]),
                job(3, "c", Priority::Medium, &[]),
                job(4, "d", Priority::High, &[]),
            ],
            ..Default::default()
        };
        let p = plan(&q, Timestamp(2000), &Policy::default());
        // c opens b, but d, as long and of higher priority than c, is worth more.
        assert_eq!(ids(&p), vec![4, 3, 1, 2]);
        assert_eq!(p.order[3].status, Readiness::Waiting(vec!["000003-c"]));
        assert!(
            p.order[1]
                .reason()
                .contains("1 job waits for it; worth 5.00 priority/hour with the 1 job it opens"),
            "{}",
            p.order[1].reason()
        );
        assert_eq!(p.to_start(0, 1), vec![JobId(4)]);
    }

    #[test]
    fn failed_dependency_dooms_and_spreads() {
        let mut q = QueueState {
            pending: vec![
                job(5, "hdf5", Priority::High, &["zlib"]),
                job(6, "netcdf", Priority::High, &["hdf5"]),
            ],
            ..Default::default()
        };
        q.finished_by_package.insert(
            "zlib".into(),
            vec![FinishedJob {
                id: JobId(4),
                name: "000004-zlib".into(),
                package: "zlib".into(),
                owner: "alice".into(),
                outcome: Outcome::Failed,
                finished_at: Timestamp(9999),
            }],
        );
        let p = plan(&q, Timestamp(10_000), &Policy::default());
        assert_eq!(p.doomed().count(), 2);
        let why: Vec<&str> = p.doomed().map(|(_, w)| w).collect();
        assert!(why.contains(&"dependency 000004-zlib failed"), "{why:?}");
        assert!(
            why.contains(&"dependency 000005-hdf5 cannot run"),
            "{why:?}"
        );
    }

    #[test]
    fn a_failed_or_cancelled_after_job_dooms() {
        let mut q = QueueState {
            pending: vec![PendingJob {
                after: vec![JobId(3)],
                ..job(5, "hdf5", Priority::High, &[])
            }],
            ..Default::default()
        };
        q.finished.insert(
            JobId(3),
            FinishedJob {
                id: JobId(3),
                name: "000003-mpich".into(),
                package: "mpich".into(),
                owner: "bob".into(),
                outcome: Outcome::Cancelled,
                finished_at: Timestamp(10),
            },
        );
        let p = plan(&q, Timestamp(10_000), &Policy::default());
        assert_eq!(
            p.order[0].status,
            Readiness::Doomed("dependency 000003-mpich was cancelled".into())
        );
        assert!(p.to_start(0, 4).is_empty());
    }

    #[test]
    fn old_failures_do_not_doom_new_jobs() {
        let mut q = QueueState {
            pending: vec![job(5, "hdf5", Priority::High, &["zlib"])],
            ..Default::default()
        };
        q.finished_by_package.insert(
            "zlib".into(),
            vec![FinishedJob {
                id: JobId(1),
                name: "000001-zlib".into(),
                package: "zlib".into(),
                owner: "alice".into(),
                outcome: Outcome::Failed,
                finished_at: Timestamp(10),
            }],
        );
        let p = plan(&q, Timestamp(10_000), &Policy::default());
        assert_eq!(p.order[0].status, Readiness::Ready);
    }

    #[test]
    fn cycles_are_named_and_what_waits_on_them_is_doomed() {
        let q = QueueState {
            pending: vec![
                job(1, "a", Priority::High, &["b"]),
                job(2, "b", Priority::High, &["a"]),
                job(3, "c", Priority::High, &["a"]),
                job(4, "d", Priority::High, &[]),
            ],
            ..Default::default()
        };
        let p = plan(&q, Timestamp(2000), &Policy::default());
        let status = |id: u64| &p.order.iter().find(|r| r.id.0 == id).unwrap().status;
        for id in [1, 2] {
            assert!(
                matches!(status(id), Readiness::Doomed(w) if w == "dependency cycle: 000001-a → 000002-b → 000001-a"),
                "{p:?}"
            );
        }
        assert!(
            matches!(status(3), Readiness::Doomed(w) if w.starts_with("dependency 00000")),
            "{p:?}"
        );
        assert_eq!(status(4), &Readiness::Ready);
    }

    #[test]
    fn a_job_waiting_on_itself_is_a_cycle() {
        let q = QueueState {
            pending: vec![PendingJob {
                after: vec![JobId(1)],
                ..job(1, "a", Priority::High, &[])
            }],
            ..Default::default()
        };
        let p = plan(&q, Timestamp(2000), &Policy::default());
        assert!(
            matches!(&p.order[0].status, Readiness::Doomed(w) if w == "dependency cycle: 000001-a → 000001-a"),
            "{p:?}"
        );
    }

    #[test]
    fn a_long_chain_does_not_overflow_the_stack() {
        let n = 50_000u64;
        let pending = (1..=n)
            .map(|i| PendingJob {
                after: if i > 1 { vec![JobId(i - 1)] } else { vec![] },
                ..job(i, &format!("p{i}"), Priority::Low, &[])
            })
            .collect();
        let q = QueueState {
            pending,
            ..Default::default()
        };
        let p = plan(&q, Timestamp(2000), &Policy::default());
        assert_eq!(p.to_start(0, 4), vec![JobId(1)]);
    }

    #[test]
    fn same_package_never_twice_and_an_overdue_low_goes_first() {
        let mut q = QueueState {
            pending: vec![
                job(1, "a", Priority::Low, &[]),
                job(2, "b", Priority::High, &[]),
                job(3, "b", Priority::High, &[]),
            ],
            ..Default::default()
        };
        let p = plan(&q, Timestamp(2000), &Policy::default());
        assert_eq!(p.to_start(0, 3), vec![JobId(2), JobId(1)]);
        q.running.push(RunningJob {
            id: JobId(2),
            name: "000002-b".into(),
            package: "b".into(),
            owner: "alice".into(),
        });
        q.pending.remove(1);
        q.pending.push(PendingJob {
            submitted_at: Timestamp(1001 + 24 * 3600),
            ..job(4, "c", Priority::High, &[])
        });
        let later = Timestamp(1001 + 24 * 3600 + 1);
        let p = plan(&q, later, &day_bound());
        assert_eq!(p.to_start(1, 2), vec![JobId(1)]);
        assert!(
            p.order[0]
                .reason()
                .contains("overdue: waiting 1d00h, over 1d00h"),
            "{}",
            p.order[0].reason()
        );
    }

    #[test]
    fn overdue_jobs_go_before_later_submissions_in_submission_order() {
        let policy = day_bound();
        let now = Timestamp(1000 + 24 * 3600 + 10);
        let mut long = job(2, "llvm", Priority::High, &[]);
        long.estimate = Some(Duration::from_secs(4 * 3600));
        let q = QueueState {
            pending: vec![
                // Overdue low, submitted at 1001.
                job(1, "zlib", Priority::Low, &[]),
                long,
                // A fresh high job, short.
                PendingJob {
                    submitted_at: now,
                    ..job(3, "bzip2", Priority::High, &[])
                },
            ],
            ..Default::default()
        };
        let p = plan(&q, now, &policy);
        assert_eq!(ids(&p), vec![1, 2, 3]);
        assert!(
            p.order[0].reason().contains("overdue"),
            "{}",
            p.order[0].reason()
        );
    }

    #[test]
    fn history_beats_the_default_and_a_shorter_own_estimate() {
        let mut q = QueueState {
            pending: vec![job(1, "gcc", Priority::Medium, &[])],
            ..Default::default()
        };
        let policy = Policy::default();
        assert_eq!(
            q.estimate(&q.pending[0], &policy),
            (policy.default_estimate, "the default estimate")
        );
        q.history.insert("gcc".into(), Duration::from_secs(7200));
        assert_eq!(
            q.estimate(&q.pending[0], &policy),
            (Duration::from_secs(7200), "past installs")
        );
        // Shorter than what the queue knows: not believed.
        q.pending[0].estimate = Some(Duration::from_secs(60));
        assert_eq!(
            q.estimate(&q.pending[0], &policy),
            (
                Duration::from_secs(7200),
                "past installs; its own estimate is shorter"
            )
        );
        // Longer (a bigger variant, say): believed, it only delays its own job.
        q.pending[0].estimate = Some(Duration::from_secs(3 * 3600));
        assert_eq!(
            q.estimate(&q.pending[0], &policy),
            (Duration::from_secs(3 * 3600), "its own estimate")
        );
    }

    #[test]
    fn without_history_an_estimate_is_never_below_its_timeout_over_the_multiplier() {
        let mut q = QueueState {
            pending: vec![PendingJob {
                estimate: Some(Duration::from_secs(1)),
                timeout: Some(Duration::from_secs(30 * 86400)),
                ..job(1, "llvm", Priority::Low, &[])
            }],
            ..Default::default()
        };
        let policy = Policy::default();
        assert_eq!(
            q.estimate(&q.pending[0], &policy),
            (
                Duration::from_secs(15 * 86400),
                "its timeout ÷ the multiplier; its own estimate is shorter"
            )
        );
        // Without a timeout the estimate stands: the install is killed at 2 s.
        q.pending[0].timeout = None;
        assert_eq!(
            q.estimate(&q.pending[0], &policy),
            (Duration::from_secs(1), "its own estimate")
        );
    }

    #[test]
    fn a_lying_low_job_does_not_pass_a_high_one() {
        let mut q = QueueState {
            pending: vec![
                job(1, "hdf5", Priority::High, &[]),
                PendingJob {
                    estimate: Some(Duration::from_secs(1)),
                    timeout: Some(Duration::from_secs(30 * 86400)),
                    owner: "bob".into(),
                    ..job(2, "llvm", Priority::Low, &[])
                },
            ],
            ..Default::default()
        };
        q.history
            .insert("llvm".into(), Duration::from_secs(3 * 3600));
        let p = plan(&q, Timestamp(2000), &Policy::default());
        assert_eq!(ids(&p), vec![1, 2]);
        assert!(
            p.order[1]
                .reason()
                .contains("takes ~3h00m (past installs; its own estimate is shorter)"),
            "{}",
            p.order[1].reason()
        );
    }

    fn finished(id: u64, pkg: &str, owner: &str, outcome: Outcome, at: u64) -> FinishedJob {
        FinishedJob {
            id: JobId(id),
            name: format!("{id:06}-{pkg}"),
            package: pkg.into(),
            owner: owner.into(),
            outcome,
            finished_at: Timestamp(at),
        }
    }

    #[test]
    fn another_owners_failed_dependency_is_only_no_longer_waited_for() {
        // alice's hdf5 (job 2) names zlib; bob's zlib@999 (job 3) failed after.
        let mut q = QueueState {
            pending: vec![job(2, "hdf5", Priority::High, &["zlib"])],
            ..Default::default()
        };
        q.finished_by_package.insert(
            "zlib".into(),
            vec![finished(3, "zlib", "bob", Outcome::Failed, 5000)],
        );
        let p = plan(&q, Timestamp(10_000), &Policy::default());
        assert_eq!(p.order[0].status, Readiness::Ready, "{p:?}");
        // Her own zlib job failing dooms it...
        q.finished_by_package
            .get_mut("zlib")
            .unwrap()
            .push(finished(1, "zlib", "alice", Outcome::Failed, 6000));
        let p = plan(&q, Timestamp(10_000), &Policy::default());
        assert_eq!(
            p.order[0].status,
            Readiness::Doomed("dependency 000001-zlib failed".into())
        );
        // ...unless anyone's zlib installed since.
        q.finished_by_package
            .get_mut("zlib")
            .unwrap()
            .push(finished(4, "zlib", "bob", Outcome::Done, 7000));
        let p = plan(&q, Timestamp(10_000), &Policy::default());
        assert_eq!(p.order[0].status, Readiness::Ready, "{p:?}");
    }

    #[test]
    fn after_names_one_job_whoever_owns_it() {
        let mut q = QueueState {
            pending: vec![PendingJob {
                after: vec![JobId(3)],
                ..job(5, "hdf5", Priority::High, &[])
            }],
            ..Default::default()
        };
        q.finished
            .insert(JobId(3), finished(3, "zlib", "bob", Outcome::Failed, 5000));
        let p = plan(&q, Timestamp(10_000), &Policy::default());
        assert_eq!(
            p.order[0].status,
            Readiness::Doomed("dependency 000003-zlib failed".into())
        );
    }

    fn owned(id: u64, pkg: &str, owner: &str) -> PendingJob {
        PendingJob {
            owner: owner.into(),
            ..job(id, pkg, Priority::High, &[])
        }
    }

    #[test]
    fn owners_of_one_class_take_turns() {
        // bob queues ten high jobs, then alice one.
        let mut pending: Vec<PendingJob> = (1..=10)
            .map(|i| owned(i, &format!("b{i}"), "bob"))
            .collect();
        pending.push(owned(11, "a", "alice"));
        let mut q = QueueState {
            pending,
            ..Default::default()
        };
        let p = plan(&q, Timestamp(5000), &Policy::default());
        // Nobody served yet: bob's best goes first (it ranks first), then alice.
        assert_eq!(ids(&p)[..3], [1, 11, 2]);
        assert!(
            p.order[1]
                .reason()
                .contains("fair share among 2 owners of ready high jobs: alice started 0.0 installs lately, so its worth counts ×1.00"),
            "{}",
            p.order[1].reason()
        );
        // bob's first one runs: alice is next.
        let first = q.pending.remove(0);
        q.running.push(RunningJob {
            id: first.id,
            name: first.name.clone(),
            package: first.package.clone(),
            owner: "bob".into(),
        });
        q.last_start.insert("bob".into(), Timestamp(5000));
        let p = plan(&q, Timestamp(5001), &Policy::default());
        assert_eq!(p.to_start(1, 2), vec![JobId(11)]);
        // It ended an hour later: it still counts, half as much.
        q.running.clear();
        q.recent_starts.insert("bob".into(), vec![Timestamp(5000)]);
        let p = plan(&q, Timestamp(8600), &Policy::default());
        assert_eq!(p.to_start(0, 1), vec![JobId(11)]);
        assert!(
            p.order[0]
                .reason()
                .contains("bob started 0.5 installs lately")
                || p.order[1]
                    .reason()
                    .contains("bob started 0.5 installs lately"),
            "{:?}",
            p.order.iter().map(|r| r.reason()).collect::<Vec<_>>()
        );
        // A class with one owner is ranked as before, with no turns shown.
        q.pending.pop();
        let p = plan(&q, Timestamp(9000), &Policy::default());
        assert_eq!(ids(&p), (2..=10).collect::<Vec<u64>>());
        assert!(!p.order[0].reason().contains("fair share"));
    }

    #[test]
    fn a_much_more_valuable_job_goes_first_but_not_for_ever() {
        // bob's jobs are worth ten times alice's (3 min against 30): Smith's rule puts
        // them first, fair share only until bob's use outweighs it (with a base of 2:
        // 2^3 < 10 < 2^4).
        let mut pending: Vec<PendingJob> = (1..=10)
            .map(|i| PendingJob {
                estimate: Some(Duration::from_secs(180)),
                ..owned(i, &format!("b{i}"), "bob")
            })
            .collect();
        pending.push(owned(11, "a", "alice"));
        let q = QueueState {
            pending,
            ..Default::default()
        };
        let halving = Policy {
            fair_share_base: 2.0,
            ..Policy::default()
        };
        let p = plan(&q, Timestamp(5000), &halving);
        assert_eq!(ids(&p)[..6], [1, 2, 3, 4, 11, 5]);
        // Without fair share, alice's job is last.
        let strict = Policy {
            fair_share_base: 1.0,
            ..Policy::default()
        };
        assert_eq!(ids(&plan(&q, Timestamp(5000), &strict))[10], 11);
    }

    #[test]
    fn turns_stay_inside_a_class_and_overdue_jobs_keep_their_place() {
        let mut q = QueueState {
            pending: vec![
                // Overdue, bob's: first whatever the turns.
                PendingJob {
                    owner: "bob".into(),
                    ..job(1, "old", Priority::Low, &[])
                },
                PendingJob {
                    submitted_at: Timestamp(200_000),
                    ..owned(2, "b2", "bob")
                },
                PendingJob {
                    submitted_at: Timestamp(200_000),
                    ..owned(3, "b3", "bob")
                },
                PendingJob {
                    submitted_at: Timestamp(200_000),
                    owner: "alice".into(),
                    ..job(4, "a4", Priority::Medium, &[])
                },
                PendingJob {
                    submitted_at: Timestamp(200_000),
                    ..owned(5, "a5", "alice")
                },
            ],
            ..Default::default()
        };
        q.last_start.insert("alice".into(), Timestamp(100_000));
        let p = plan(&q, Timestamp(200_001), &day_bound());
        // High class: bob (served never) before alice (served lately), alternating;
        // the medium job stays after the highs.
        assert_eq!(ids(&p), vec![1, 2, 5, 3, 4]);
    }

    /// A random queue touching every input of the plan: jobs listed out of ID order,
    /// several of one package, owners sharing classes, `after` naming pending, running,
    /// finished and unknown jobs, dependencies on queued, running, failed and absent
    /// packages (cycles included), DAGs sharing nodes and roots, estimates of every
    /// source, overdue jobs, recent use and last starts.
    fn random_queue(seed: u64, n: usize, owners: usize, packages: usize) -> QueueState {
        let mut x = seed | 1;
        let mut next = move |below: usize| -> usize {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % below.max(1)
        };
        const NOW: u64 = 1_000_000;
        let package = |k: usize| format!("pkg{k}");
        let owner = |k: usize| format!("user{k}");
        let node = |k: usize| format!("node{k}@1/{k:07}");
        // IDs 1..=n for pending jobs (listed shuffled), then running, then finished.
        let mut ids: Vec<u64> = (1..=n as u64).collect();
        for k in (1..ids.len()).rev() {
            ids.swap(k, next(k + 1));
        }
        let running_ids = n as u64 + 1..=n as u64 + 3;
        let finished_ids = n as u64 + 4..=n as u64 + 7;
        let mut q = QueueState::default();
        for &id in &ids {
            let pkg = package(next(packages));
            // Often the same few jobs, listed twice, then a failed one.
            let after = (0..next(5).saturating_sub(1))
                .map(|_| match next(3) {
                    0 => JobId(1 + next(3) as u64),
                    1 => JobId(n as u64 + 4 + next(4) as u64),
                    _ => JobId(1 + next(n + 9) as u64),
                })
                .collect();
            let dependencies = (0..next(4).saturating_sub(1))
                .map(|_| package(next(packages + 2)))
                .collect();
            let priority = [Priority::High, Priority::Medium, Priority::Low][next(3)];
            q.pending.push(PendingJob {
                id: JobId(id),
                name: format!("{id:06}-{pkg}"),
                package: pkg,
                owner: owner(next(owners)),
                priority,
                dependencies,
                after,
                // Few distinct estimates: ties are common, as in a real queue.
                estimate: (next(3) == 0).then(|| Duration::from_secs(600 * (1 + next(4) as u64))),
                timeout: (next(4) == 0).then(|| Duration::from_secs(3600 * (1 + next(8) as u64))),
                // Some submitted over two days ago: overdue.
                submitted_at: Timestamp(NOW - [10, 3600, 3 * 86400][next(3)] - next(50) as u64),
            });
        }
        for id in running_ids.clone().take(next(4)) {
            let pkg = package(next(packages + 1));
            q.running.push(RunningJob {
                id: JobId(id),
                name: format!("{id:06}-{pkg}"),
                package: pkg,
                owner: owner(next(owners + 1)),
            });
        }
        let outcomes = [Outcome::Done, Outcome::Failed, Outcome::Cancelled];
        for id in finished_ids {
            let pkg = package(next(packages + 2));
            let f = FinishedJob {
                id: JobId(id),
                name: format!("{id:06}-{pkg}"),
                package: pkg.clone(),
                owner: owner(next(owners)),
                outcome: outcomes[next(3)],
                finished_at: Timestamp(NOW - next(4 * 86400) as u64),
            };
            if next(2) == 0 {
                q.finished.insert(f.id, f.clone());
            }
            if next(2) == 0 {
                q.finished_by_package.entry(pkg).or_default().push(f);
            }
        }
        for k in 0..packages {
            if next(2) == 0 {
                q.history
                    .insert(package(k), Duration::from_secs(300 * (1 + next(6) as u64)));
            }
        }
        for k in 0..owners + 1 {
            if next(2) == 0 {
                q.last_start
                    .insert(owner(k), Timestamp(NOW - next(7200) as u64));
            }
            if next(2) == 0 {
                let starts = (0..next(4))
                    .map(|_| Timestamp(NOW - next(4 * 3600) as u64))
                    .collect();
                q.recent_starts.insert(owner(k), starts);
            }
        }
        let nodes = packages + 3;
        for id in ids.iter().copied().chain(running_ids) {
            if next(3) == 0 {
                let builds = (0..next(4)).map(|_| node(next(nodes))).collect();
                q.dag.insert(
                    JobId(id),
                    Dag {
                        root: node(next(nodes)),
                        builds,
                        estimate: (next(2) == 0)
                            .then(|| Duration::from_secs(600 * (1 + next(4) as u64))),
                    },
                );
            }
        }
        q
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2000)
        ))]
        /// The plan is the reference plan, place for place and reason for reason, on
        /// random queues and policies.
        #[test]
        fn the_plan_is_the_reference_plan(
            seed in proptest::prelude::any::<u64>(),
            n in 0usize..60,
            owners in 1usize..5,
            packages in 1usize..12,
            overdue_after in proptest::sample::select(vec![0u64, 86400, 2 * 86400]),
            base in proptest::sample::select(vec![1.0, 1.01, 1.5, 2.0]),
            half_life in proptest::sample::select(vec![0u64, 1800, 3600]),
        ) {
            let q = random_queue(seed, n, owners, packages);
            let policy = Policy {
                overdue_after: Duration::from_secs(overdue_after),
                fair_share_base: base,
                fair_share_half_life: Duration::from_secs(half_life),
                ..Policy::default()
            };
            let now = Timestamp(1_000_000);
            let fast = plan(&q, now, &policy);
            let reference = reference::plan(&q, now, &policy);
            proptest::prop_assert_eq!(&fast.order, &reference.order);
            let reasons = |p: &Plan| p.order.iter().map(Ranked::reason).collect::<Vec<_>>();
            proptest::prop_assert_eq!(reasons(&fast), reasons(&reference));
        }
    }

    #[test]
    fn a_large_queue_is_planned_as_the_reference_plans_it() {
        // Long chains, big classes with four owners and many ties: what the bench ranks.
        for seed in 1..=4 {
            let q = random_queue(seed, 3000, 4, 400);
            let policy = Policy::default();
            let now = Timestamp(1_000_000);
            assert_eq!(
                plan(&q, now, &policy).order,
                reference::plan(&q, now, &policy).order,
                "seed {seed}"
            );
        }
    }
}
