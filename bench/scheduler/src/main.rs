//! The scheduler harness: generated queues, simulated installs, three ways to pick the
//! next job, and the numbers of issue 5.
//!
//! Deterministic with a seed (`--seed N`, default 5); no wall clock enters a decision, only
//! the time each ranking takes is measured. Every policy sees the same queue, the same
//! estimates, and the same readiness rule (a job is ready when no unfinished job of a
//! package it depends on is queued or running; never two jobs of one package at once).
//! Only the choice among ready jobs differs:
//! - **fifo**: lowest job ID first;
//! - **old**: the old tool's formula, lowest first:
//!   `(4-w)*100 + 10*deps + 5*min(est_h,2) - 2*min(age_h,24) - 15*unlocked`; when nothing
//!   is ready and nothing runs, the highest priority with fewest dependencies, oldest;
//! - **ours**: `spack_installer::scheduler::plan` and `Plan::to_start`, as the worker
//!   calls them.
//!
//! The tables of the three policies have one owner for every job (fair share then
//! changes nothing); the *Fair share* table runs ours on the same queues with one owner
//! and with four (one heavy), to show what taking turns costs.
//!
//! Run: `cargo run --release --manifest-path bench/scheduler/Cargo.toml [-- --seed N]`;
//! `-- --cores` runs the CPU-budget simulation of [`cores`] instead, `-- --dag` the
//! DAG-aware queue of [`dag`].
//! It prints the Markdown tables of BENCHMARKS-scheduler.md; `-- --fair-share-only`
//! prints only the fair-share table.

mod cores;
mod dag;

use spack_installer::job::{JobId, Priority};
use spack_installer::scheduler::{self, PendingJob, Policy, QueueState, RunningJob};
use spack_installer::time::Timestamp;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// splitmix64: small, fast, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn f(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// exp(N(0, sigma)), by Box-Muller.
    fn noise(&mut self, sigma: f64) -> f64 {
        let u = self.f().max(1e-12);
        let v = self.f();
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos() * sigma).exp()
    }
}

#[derive(Debug, Clone)]
struct Job {
    id: u64,
    package: String,
    priority: Priority,
    deps: Vec<String>,
    /// What the scheduler knows: the submitter's estimate, else history, else none.
    estimate: Option<Duration>,
    history: Option<Duration>,
    /// How long it really takes, in seconds.
    actual: u64,
    arrival: u64,
    /// Who submitted it (`user0` … ); 0 unless [`assign_owners`] says otherwise.
    owner: usize,
}

impl Job {
    fn owner_name(&self) -> String {
        format!("user{}", self.owner)
    }

    /// The job as the scheduler sees it, submitted at `submitted` (seconds).
    fn pending(&self, submitted: u64) -> PendingJob {
        PendingJob {
            id: JobId(self.id),
            name: format!("{:06}-{}", self.id, self.package),
            package: self.package.clone(),
            owner: self.owner_name(),
            priority: self.priority,
            dependencies: self.deps.clone(),
            after: vec![],
            estimate: self.estimate,
            timeout: None,
            submitted_at: Timestamp(submitted),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    Independent,
    Mixed,
    DependencyHeavy,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Independent => "independent",
            Shape::Mixed => "mixed",
            Shape::DependencyHeavy => "dependency-heavy",
        }
    }
    fn dep_probability(self) -> f64 {
        match self {
            Shape::Independent => 0.0,
            Shape::Mixed => 0.35,
            Shape::DependencyHeavy => 0.9,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Arrivals {
    /// Everything submitted at once (a site stack rebuilt).
    Burst,
    /// Submissions over time, in stacks of 1–20 related jobs, offered load about 0.85
    /// of one builder: busy days, and a queue that drains now and then.
    Stream,
    /// Single submissions at 1.3 × what one builder can do, for ever: a stress case
    /// where no order keeps up and every policy must starve someone.
    Overload,
}

impl Arrivals {
    fn name(self) -> &'static str {
        match self {
            Arrivals::Burst => "all at once",
            Arrivals::Stream => "stacks over time",
            Arrivals::Overload => "overload 1.3",
        }
    }
}

/// The long builds of a real Spack stack, with their usual build times (minutes).
const BIG: &[(&str, f64, f64)] = &[
    ("gcc", 120.0, 180.0),
    ("llvm", 150.0, 240.0),
    ("openmpi", 40.0, 70.0),
    ("mpich", 30.0, 50.0),
    ("trilinos", 90.0, 150.0),
    ("petsc", 30.0, 60.0),
    ("boost", 30.0, 50.0),
    ("cuda", 10.0, 20.0),
];

#[derive(Clone, Copy, PartialEq)]
enum Tier {
    Leaf,
    Mid,
    App,
    Big,
}

/// A queue drawn like a Spack stack: many small leaf libraries, mid-level libraries on
/// top of them, applications on top of those, and a few long builds (compilers, MPI).
/// Dependencies name packages of earlier submissions only (a later one is, to the
/// submitter, already installed).
fn generate(rng: &mut Rng, n: usize, shape: Shape, arrivals: Arrivals) -> Vec<Job> {
    let mut jobs: Vec<Job> = Vec::with_capacity(n);
    let mut tiers: Vec<Tier> = Vec::with_capacity(n);
    let mut counters = [0usize; 3];
    let mut t = 0.0f64;
    // Mean build time is about 20 minutes.
    let mean_build = 20.0 * 60.0;
    let mut left_in_stack = 0usize;
    for k in 0..n {
        let roll = rng.f();
        let tier = if roll < 0.55 {
            Tier::Leaf
        } else if roll < 0.83 {
            Tier::Mid
        } else if roll < 0.96 {
            Tier::App
        } else {
            Tier::Big
        };
        let mut same_as = None;
        let (package, minutes) = if k > 0 && rng.f() < 0.04 {
            // The same package again (another variant): the same-package rule matters.
            let j = rng.below(k);
            same_as = Some(j);
            (jobs[j].package.clone(), jobs[j].actual as f64 / 60.0)
        } else {
            match tier {
                Tier::Big => {
                    let (name, lo, hi) = BIG[rng.below(BIG.len())];
                    // A long build seen before is the same package again.
                    same_as = jobs.iter().position(|j| j.package == name);
                    (name.to_string(), rng.range(lo, hi))
                }
                Tier::Leaf => {
                    counters[0] += 1;
                    (format!("lib{}", counters[0]), rng.range(1.0, 8.0))
                }
                Tier::Mid => {
                    counters[1] += 1;
                    (format!("mid{}", counters[1]), rng.range(8.0, 40.0))
                }
                Tier::App => {
                    counters[2] += 1;
                    (format!("app{}", counters[2]), rng.range(10.0, 60.0))
                }
            }
        };
        let mut deps: Vec<String> = Vec::new();
        if let Some(j) = same_as {
            // Same package, same dependencies: the package graph stays acyclic.
            deps = jobs[j].deps.clone();
        } else if k > 0 && tier != Tier::Leaf && rng.f() < shape.dep_probability() {
            let want = 1 + rng.below(if tier == Tier::App { 5 } else { 3 });
            for _ in 0..want * 3 {
                if deps.len() >= want {
                    break;
                }
                // Prefer recent submissions: a stack is submitted together.
                let back = 1 + rng.below(k.min(40));
                let j = k - back;
                let fits = match tier {
                    Tier::Mid => matches!(tiers[j], Tier::Leaf | Tier::Big),
                    Tier::App => matches!(tiers[j], Tier::Mid | Tier::Leaf | Tier::Big),
                    Tier::Big => matches!(tiers[j], Tier::Leaf | Tier::Big),
                    Tier::Leaf => false,
                };
                let p = &jobs[j].package;
                if fits && *p != package && !deps.contains(p) {
                    deps.push(p.clone());
                }
            }
        }
        let roll = rng.f();
        let priority = if roll < 0.2 {
            Priority::High
        } else if roll < 0.7 {
            Priority::Medium
        } else {
            Priority::Low
        };
        let actual = (minutes * 60.0 * rng.noise(0.15)).max(30.0) as u64;
        let roll = rng.f();
        let (estimate, history) = if roll < 0.4 {
            (Some(secs(actual as f64 * rng.noise(0.3))), None)
        } else if roll < 0.7 {
            (None, Some(secs(actual as f64 * rng.noise(0.2))))
        } else {
            (None, None)
        };
        match arrivals {
            Arrivals::Burst => {}
            Arrivals::Stream => {
                if left_in_stack == 0 {
                    left_in_stack = 1 + rng.below(20);
                    // Mean stack is 10.5 jobs; gaps sized for load 0.85.
                    t += -(10.5 * mean_build / 0.85) * (1.0 - rng.f()).ln();
                } else {
                    t += rng.range(0.0, 30.0);
                }
                left_in_stack -= 1;
            }
            Arrivals::Overload => t += -(mean_build / 1.3) * (1.0 - rng.f()).ln(),
        }
        jobs.push(Job {
            id: k as u64 + 1,
            package,
            priority,
            deps,
            estimate,
            history,
            actual,
            arrival: t as u64,
            owner: 0,
        });
        tiers.push(tier);
    }
    jobs
}

fn secs(s: f64) -> Duration {
    Duration::from_secs(s.max(1.0) as u64)
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Who {
    Fifo,
    Old,
    Ours,
}

const WHO: [Who; 3] = [Who::Fifo, Who::Old, Who::Ours];

impl Who {
    fn name(self) -> &'static str {
        match self {
            Who::Fifo => "FIFO",
            Who::Old => "old formula",
            Who::Ours => "ours",
        }
    }
}

const BASE: u64 = 1_800_000_000;

/// CPU time this thread has used: what a ranking costs, whatever else the machine runs.
fn cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[derive(Debug, Default, Clone)]
struct Outcome {
    weighted_completion: f64,
    /// Per class (high, medium, low): mean and max wait, seconds.
    mean_wait: [f64; 3],
    max_wait: [f64; 3],
    makespan: f64,
    decisions: usize,
    rank_time: Duration,
    rank_max: Duration,
    /// The longest a ready job waited past the starvation bound behind a later arrival.
    order_violations: usize,
    /// When each job started (seconds).
    start: Vec<u64>,
}

fn class(p: Priority) -> usize {
    match p {
        Priority::High => 0,
        Priority::Medium => 1,
        Priority::Low => 2,
    }
}

fn estimate(j: &Job, policy: &Policy) -> Duration {
    j.estimate.or(j.history).unwrap_or(policy.default_estimate)
}

/// Run a queue to the end with `m` builders.
fn simulate(jobs: &[Job], who: Who, m: usize, policy: &Policy) -> Outcome {
    let n = jobs.len();
    let mut unfinished: HashMap<&str, usize> = HashMap::new();
    let mut running_pkg: HashMap<&str, usize> = HashMap::new();
    let mut pending: Vec<usize> = Vec::new();
    let mut running: Vec<(u64, usize)> = Vec::new();
    let mut start = vec![0u64; n];
    let mut finish = vec![0u64; n];
    let mut next_arrival = 0;
    let mut t = 0u64;
    let mut done = 0;
    let mut out = Outcome::default();
    // Ours: the scheduler's own view, kept up to date rather than rebuilt.
    let mut q = QueueState::default();
    let mut recent = std::collections::VecDeque::new();
    for j in jobs {
        if let Some(h) = j.history {
            q.history.insert(j.package.clone(), h);
        }
    }
    while done < n {
        // Advance to the next event; take every event at that instant.
        let next_finish = running.iter().map(|r| r.0).min();
        let next_arr = jobs.get(next_arrival).map(|j| j.arrival);
        t = match (next_finish, next_arr) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b.max(t),
            (None, None) => unreachable!("jobs left but nothing runs or arrives"),
        };
        let mut k = 0;
        while k < running.len() {
            if running[k].0 <= t {
                let (_, i) = running.swap_remove(k);
                let p = jobs[i].package.as_str();
                *unfinished.get_mut(p).unwrap() -= 1;
                *running_pkg.get_mut(p).unwrap() -= 1;
                finish[i] = t;
                done += 1;
                q.running.retain(|r| r.id.0 != jobs[i].id);
                // The worker remembers the starts of the newest 64 finished jobs.
                recent.push_back((jobs[i].owner_name(), Timestamp(BASE + start[i])));
                if recent.len() > 64 {
                    recent.pop_front();
                }
                q.recent_starts.clear();
                for (o, at) in &recent {
                    q.recent_starts.entry(o.clone()).or_default().push(*at);
                }
            } else {
                k += 1;
            }
        }
        while next_arrival < n && jobs[next_arrival].arrival <= t {
            let j = &jobs[next_arrival];
            *unfinished.entry(j.package.as_str()).or_default() += 1;
            pending.push(next_arrival);
            q.pending.push(j.pending(BASE + j.arrival));
            next_arrival += 1;
        }
        if running.len() >= m || pending.is_empty() {
            continue;
        }
        let is_ready = |i: usize| {
            let j = &jobs[i];
            running_pkg.get(j.package.as_str()).copied().unwrap_or(0) == 0
                && j.deps
                    .iter()
                    .all(|d| unfinished.get(d.as_str()).copied().unwrap_or(0) == 0)
        };
        let clock = cpu_now();
        let chosen: Vec<usize> = match who {
            Who::Ours => {
                let plan = scheduler::plan(&q, Timestamp(BASE + t), policy);
                let ids = plan.to_start(running.len(), m);
                ids.iter()
                    .map(|id| id.0 as usize - 1)
                    .collect::<Vec<usize>>()
            }
            Who::Fifo | Who::Old => {
                let mut ready: Vec<usize> =
                    pending.iter().copied().filter(|&i| is_ready(i)).collect();
                if who == Who::Old {
                    let mut unlocks: HashMap<&str, usize> = HashMap::new();
                    for &i in &pending {
                        for d in &jobs[i].deps {
                            *unlocks.entry(d.as_str()).or_default() += 1;
                        }
                    }
                    let score = |i: usize| -> f64 {
                        let j = &jobs[i];
                        let w = j.priority.weight() as f64;
                        let est_h = estimate(j, policy).as_secs_f64() / 3600.0;
                        let age_h = (t - j.arrival) as f64 / 3600.0;
                        let unlocked = unlocks.get(j.package.as_str()).copied().unwrap_or(0);
                        (4.0 - w) * 100.0 + 10.0 * j.deps.len() as f64 + 5.0 * est_h.min(2.0)
                            - 2.0 * age_h.min(24.0)
                            - 15.0 * unlocked as f64
                    };
                    let mut scored: Vec<(f64, usize)> =
                        ready.iter().map(|&i| (score(i), i)).collect();
                    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    ready = scored.into_iter().map(|(_, i)| i).collect();
                    if ready.is_empty() && running.is_empty() {
                        // The old fallback: highest priority, fewest dependencies, oldest.
                        let mut all = pending.clone();
                        all.sort_by_key(|&i| {
                            (
                                std::cmp::Reverse(jobs[i].priority.weight()),
                                jobs[i].deps.len(),
                                i,
                            )
                        });
                        ready = all.into_iter().take(1).collect();
                    }
                }
                let mut pick = Vec::new();
                let mut taken: Vec<&str> = Vec::new();
                for i in ready {
                    if pick.len() + running.len() >= m {
                        break;
                    }
                    if !taken.contains(&jobs[i].package.as_str()) {
                        taken.push(jobs[i].package.as_str());
                        pick.push(i);
                    }
                }
                pick
            }
        };
        let took = cpu_now() - clock;
        out.decisions += 1;
        out.rank_time += took;
        out.rank_max = out.rank_max.max(took);
        for &i in &chosen {
            assert!(
                is_ready(i),
                "{} started job {} before it was ready",
                who.name(),
                jobs[i].id
            );
            // Starvation check: a ready job submitted earlier that has waited past the
            // bound, and could start now, must not be passed by this one, unless this one
            // serves an earlier submission (priority inheritance).
            let j = &jobs[i];
            for &o in &pending {
                let other = &jobs[o];
                if o != i
                    && other.arrival < j.arrival
                    && is_ready(o)
                    && !chosen.contains(&o)
                    // Not startable now if a job of its package starts in this decision
                    // (two jobs of one package never run together).
                    && !chosen.iter().any(|&k| jobs[k].package == other.package)
                    && Duration::from_secs(t - other.arrival) >= policy.starvation_bound()
                    && !serves_earlier(jobs, &pending, i, other.arrival)
                {
                    out.order_violations += 1;
                }
            }
        }
        for &i in &chosen {
            let j = &jobs[i];
            start[i] = t;
            *running_pkg.entry(jobs[i].package.as_str()).or_default() += 1;
            running.push((t + jobs[i].actual, i));
            q.running.push(RunningJob {
                id: JobId(j.id),
                name: format!("{:06}-{}", j.id, j.package),
                package: j.package.clone(),
                owner: j.owner_name(),
            });
            q.last_start.insert(j.owner_name(), Timestamp(BASE + t));
        }
        pending.retain(|i| !chosen.contains(i));
        q.pending
            .retain(|p| !chosen.contains(&(p.id.0 as usize - 1)));
    }
    let mut wsum = 0.0;
    let mut wtot = 0.0;
    let mut count = [0usize; 3];
    for (i, j) in jobs.iter().enumerate() {
        let w = j.priority.weight() as f64;
        wsum += w * (finish[i] - j.arrival) as f64;
        wtot += w;
        let c = class(j.priority);
        let wait = (start[i] - j.arrival) as f64;
        out.mean_wait[c] += wait;
        out.max_wait[c] = out.max_wait[c].max(wait);
        count[c] += 1;
    }
    for (mean, n) in out.mean_wait.iter_mut().zip(count) {
        *mean /= n.max(1) as f64;
    }
    out.start = start;
    out.weighted_completion = wsum / wtot;
    out.makespan = (*finish.iter().max().unwrap() - jobs[0].arrival) as f64;
    out
}

/// Whether job `i` is waited for, directly or through other pending jobs, by a job
/// submitted no later than `since` (jobs submitted in the same second, as one stack is,
/// count as submitted together: the bound orders them by value, not by ID).
fn serves_earlier(jobs: &[Job], pending: &[usize], i: usize, since: u64) -> bool {
    let mut stack = vec![jobs[i].package.as_str()];
    let mut seen: Vec<&str> = Vec::new();
    while let Some(p) = stack.pop() {
        if seen.contains(&p) {
            continue;
        }
        seen.push(p);
        for &o in pending {
            if jobs[o].deps.iter().any(|d| d == p) {
                if jobs[o].arrival <= since {
                    return true;
                }
                stack.push(jobs[o].package.as_str());
            }
        }
    }
    false
}

/// The best Σ w·C of a small queue (everything submitted at once, one builder, exact
/// estimates), by dynamic programming over the sets of jobs already done: exhaustive,
/// without listing every order.
fn optimum(jobs: &[Job]) -> f64 {
    let n = jobs.len();
    // pred[j]: jobs that must finish before j (its dependencies' jobs, and jobs of its
    // own package never overlap but may go in any order on one builder).
    let pred: Vec<u32> = jobs
        .iter()
        .map(|j| {
            jobs.iter()
                .enumerate()
                .filter(|(_, o)| j.deps.contains(&o.package))
                .fold(0u32, |m, (k, _)| m | 1 << k)
        })
        .collect();
    let full = (1u32 << n) - 1;
    let mut best = vec![f64::INFINITY; 1 << n];
    best[0] = 0.0;
    for set in 0..=full {
        if best[set as usize].is_infinite() {
            continue;
        }
        let elapsed: u64 = (0..n)
            .filter(|k| set & 1 << k != 0)
            .map(|k| jobs[k].actual)
            .sum();
        for (k, j) in jobs.iter().enumerate() {
            if set & 1 << k == 0 && pred[k] & !set == 0 {
                let next = set | 1 << k;
                let cost =
                    best[set as usize] + j.priority.weight() as f64 * (elapsed + j.actual) as f64;
                if cost < best[next as usize] {
                    best[next as usize] = cost;
                }
            }
        }
    }
    best[full as usize]
}

fn hours(s: f64) -> String {
    format!("{:.2} h", s / 3600.0)
}

fn main() {
    let mut seed = 5u64;
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--seed") {
        seed = args[i + 1].parse().expect("--seed takes a number");
    }
    let mut policy = Policy::default();
    if let Some(i) = args.iter().position(|a| a == "--overdue-hours") {
        policy.overdue_after =
            Duration::from_secs(args[i + 1].parse::<u64>().expect("hours") * 3600);
    }
    if let Some(i) = args.iter().position(|a| a == "--fair-share-base") {
        policy.fair_share_base = args[i + 1].parse().expect("a number");
    }
    if let Some(i) = args.iter().position(|a| a == "--half-life-hours") {
        policy.fair_share_half_life =
            Duration::from_secs_f64(args[i + 1].parse::<f64>().expect("hours") * 3600.0);
    }
    if args.iter().any(|a| a == "--cores") {
        cores::run(seed);
        return;
    }
    if args.iter().any(|a| a == "--dag") {
        dag::run(seed, &policy);
        return;
    }
    if args.iter().any(|a| a == "--rank-only") {
        rank_10k(&mut Rng(seed), &policy);
        return;
    }
    if args.iter().any(|a| a == "--fair-share-only") {
        let sizes: &[usize] = if args.iter().any(|a| a == "--quick") {
            &[50, 200]
        } else {
            &[50, 200, 1000]
        };
        fair_share(seed, &policy, sizes);
        return;
    }
    println!(
        "Seed {seed}; policy: default estimate {}, starvation bound (overdue after) {}.\n",
        spack_installer::time::short(policy.default_estimate),
        spack_installer::time::short(policy.starvation_bound())
    );

    // ---- Weighted mean completion over the generated queues --------------------
    let quick = args.iter().any(|a| a == "--quick");
    let sizes: &[usize] = if quick {
        &[50, 200, 1000]
    } else {
        &[50, 200, 1000, 2000]
    };
    let seeds_per = if quick { 1 } else { 3 };
    println!(
        "### Priority-weighted mean completion time (submission → installed; weights 3/2/1), max_parallel = 1\n"
    );
    println!(
        "Mean over {seeds_per} queues per row; \"vs old\" is ours relative to the old formula (negative is better).\n"
    );
    println!("| queue | arrivals | jobs | FIFO | old formula | ours | ours vs old |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    let mut worst_vs_old = f64::NEG_INFINITY;
    let mut worst_where = String::new();
    let mut worst_overload = f64::NEG_INFINITY;
    let mut heavy_gain: Vec<f64> = Vec::new();
    let mut violations = 0;
    let mut rank_stats: HashMap<&str, (usize, Duration, Duration)> = HashMap::new();
    let mut makespans: Vec<(String, [[f64; 3]; 3])> = Vec::new();
    let mut waits: Vec<(String, Vec<Outcome>)> = Vec::new();
    let mut rng = Rng(seed);
    for shape in [Shape::Independent, Shape::Mixed, Shape::DependencyHeavy] {
        for arrivals in [Arrivals::Burst, Arrivals::Stream, Arrivals::Overload] {
            for &n in sizes {
                let mut sums = [0.0; 3];
                let mut ms = [[0.0; 3]; 3];
                for s in 0..seeds_per {
                    let jobs = generate(&mut rng, n, shape, arrivals);
                    for (mi, m) in [1usize, 2, 4].into_iter().enumerate() {
                        let outs: Vec<Outcome> = WHO
                            .iter()
                            .map(|&w| simulate(&jobs, w, m, &policy))
                            .collect();
                        for (wi, o) in outs.iter().enumerate() {
                            let e = rank_stats.entry(WHO[wi].name()).or_default();
                            e.0 += o.decisions;
                            e.1 += o.rank_time;
                            e.2 = e.2.max(o.rank_max);
                            ms[mi][wi] += o.makespan / seeds_per as f64;
                        }
                        violations += outs[2].order_violations;
                        let rel = outs[2].weighted_completion / outs[1].weighted_completion - 1.0;
                        if arrivals == Arrivals::Overload {
                            worst_overload = worst_overload.max(rel);
                        } else if rel > worst_vs_old {
                            worst_vs_old = rel;
                            worst_where = format!(
                                "{} {:?} n={n} queue {s} max_parallel={m}",
                                shape.name(),
                                arrivals
                            );
                        }
                        if m == 1 {
                            for wi in 0..3 {
                                sums[wi] += outs[wi].weighted_completion / seeds_per as f64;
                            }
                            if shape == Shape::DependencyHeavy {
                                heavy_gain.push(rel);
                            }
                            if s == 0 && n == 1000 && arrivals == Arrivals::Stream {
                                waits.push((shape.name().to_string(), outs.clone()));
                            }
                        }
                    }
                }
                println!(
                    "| {} | {} | {n} | {} | {} | {} | {:+.1}% |",
                    shape.name(),
                    arrivals.name(),
                    hours(sums[0]),
                    hours(sums[1]),
                    hours(sums[2]),
                    (sums[2] / sums[1] - 1.0) * 100.0
                );
                if n == 1000 {
                    makespans.push((format!("{} {}", shape.name(), arrivals.name()), ms));
                }
            }
        }
    }
    let mean_heavy = heavy_gain.iter().sum::<f64>() / heavy_gain.len() as f64;
    let best_heavy_worst = heavy_gain.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    println!();
    println!(
        "- Dependency-heavy queues, max_parallel = 1: ours vs old formula {:+.1}% on average, {:+.1}% on the least favourable queue.",
        mean_heavy * 100.0,
        best_heavy_worst * 100.0
    );
    println!(
        "- Every generated queue except the overload stress case, max_parallel 1, 2 and 4: the least favourable for ours is {:+.1}% vs the old formula ({worst_where}).",
        worst_vs_old * 100.0
    );
    println!(
        "- Overload stress case (every policy falls behind for ever): the least favourable for ours is {:+.1}% vs the old formula.",
        worst_overload * 100.0
    );
    println!(
        "- Starvation check: {violations} starts of a job ahead of an earlier, ready submission that had waited past the bound.\n"
    );

    println!("### Wait per priority class (1000 jobs over time, max_parallel = 1)\n");
    println!("| queue | policy | high mean / max | medium mean / max | low mean / max |");
    println!("|---|---|---:|---:|---:|");
    for (name, outs) in &waits {
        for (wi, o) in outs.iter().enumerate() {
            println!(
                "| {name} | {} | {} / {} | {} / {} | {} / {} |",
                WHO[wi].name(),
                hours(o.mean_wait[0]),
                hours(o.max_wait[0]),
                hours(o.mean_wait[1]),
                hours(o.max_wait[1]),
                hours(o.mean_wait[2]),
                hours(o.max_wait[2]),
            );
        }
    }
    println!();

    println!(
        "### Makespan (first submission → last install), 1000 jobs, mean of {seeds_per} queues\n"
    );
    println!("| queue | max_parallel | FIFO | old formula | ours |");
    println!("|---|---:|---:|---:|---:|");
    for (name, ms) in &makespans {
        for (mi, m) in [1, 2, 4].into_iter().enumerate() {
            println!(
                "| {name} | {m} | {} | {} | {} |",
                hours(ms[mi][0]),
                hours(ms[mi][1]),
                hours(ms[mi][2])
            );
        }
    }
    println!();

    // ---- Small queues against the exhaustive optimum ----------------------------
    println!(
        "### Small queues (3–8 jobs, all at once, one builder, exact estimates) against the optimum\n"
    );
    let mut ratios: HashMap<Who, Vec<f64>> = HashMap::new();
    let small = 300;
    for k in 0..small {
        let n = 3 + k % 6;
        let shape = [Shape::Independent, Shape::Mixed, Shape::DependencyHeavy][k % 3];
        let mut jobs = generate(&mut rng, n, shape, Arrivals::Burst);
        for j in &mut jobs {
            j.estimate = Some(Duration::from_secs(j.actual));
        }
        let best = optimum(&jobs);
        for &w in &WHO {
            let o = simulate(&jobs, w, 1, &policy);
            let wtot: f64 = jobs.iter().map(|j| j.priority.weight() as f64).sum();
            ratios
                .entry(w)
                .or_default()
                .push(o.weighted_completion * wtot / best - 1.0);
        }
    }
    println!("| policy | mean gap to optimum | worst gap | queues within 5% |");
    println!("|---|---:|---:|---:|");
    for &w in &WHO {
        let r = &ratios[&w];
        let mean = r.iter().sum::<f64>() / r.len() as f64;
        let worst = r.iter().cloned().fold(0.0, f64::max);
        let within = r.iter().filter(|&&x| x <= 0.05 + 1e-9).count();
        println!(
            "| {} | {:.1}% | {:.1}% | {within} / {} |",
            w.name(),
            mean * 100.0,
            worst * 100.0,
            r.len()
        );
    }
    println!();

    // ---- Ranking time ------------------------------------------------------------
    println!("### Time to rank, per decision (release build)\n");
    println!("| policy | decisions | mean CPU time | max CPU time |");
    println!("|---|---:|---:|---:|");
    for &w in &WHO {
        let (d, total, max) = rank_stats[w.name()];
        println!(
            "| {} | {d} | {:.1} µs | {:.2} ms |",
            w.name(),
            total.as_secs_f64() * 1e6 / d as f64,
            max.as_secs_f64() * 1e3
        );
    }
    rank_10k(&mut rng, &policy);
    println!();
    fair_share(seed, &policy, &[50, 200, 1000]);
}

/// Give the jobs owners, in runs as people submit (1–15 jobs at a time): `user0`, the
/// heavy one, half the runs; `user1`–`user3` the rest. From its own generator, so the
/// queue itself is the one the other tables see.
fn assign_owners(rng: &mut Rng, jobs: &mut [Job]) {
    let mut left = 0;
    let mut owner = 0;
    for j in jobs {
        if left == 0 {
            left = 1 + rng.below(15);
            owner = if rng.f() < 0.5 { 0 } else { 1 + rng.below(3) };
        }
        left -= 1;
        j.owner = owner;
    }
}

/// Ours on the same queues, with one owner (no turns: the ranking as it was before fair
/// share) and with four owners taking turns; max_parallel = 1.
fn fair_share(seed: u64, policy: &Policy, sizes: &[usize]) {
    println!(
        "### Fair share: the same queues with one owner and with four (max_parallel = 1)
"
    );
    println!(
        "Fair share base {}, half-life {}.\n",
        policy.fair_share_base,
        spack_installer::time::short(policy.fair_share_half_life)
    );
    println!(
        "Owners submit in runs of 1–15 jobs; `user0` makes half the runs, `user1`–`user3` the rest. One queue per row (seed {seed}).
"
    );
    println!(
        "| queue | arrivals | jobs | one owner | four owners, turns | change | user0 mean wait, one → four | others' mean wait, one → four |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    let mut rng = Rng(seed);
    let mut owners = Rng(seed ^ 0x0f0f_f00d);
    let mut changes = Vec::new();
    for shape in [Shape::Independent, Shape::Mixed, Shape::DependencyHeavy] {
        for arrivals in [Arrivals::Burst, Arrivals::Stream, Arrivals::Overload] {
            for &n in sizes {
                let mut jobs = generate(&mut rng, n, shape, arrivals);
                let one = simulate(&jobs, Who::Ours, 1, policy);
                assign_owners(&mut owners, &mut jobs);
                let four = simulate(&jobs, Who::Ours, 1, policy);
                // Mean wait of user0's jobs and of the others', in either run.
                let wait = |o: &Outcome, heavy: bool| {
                    let w: Vec<f64> = jobs
                        .iter()
                        .enumerate()
                        .filter(|(_, j)| (j.owner == 0) == heavy)
                        .map(|(i, j)| (o.start[i] - j.arrival) as f64)
                        .collect();
                    w.iter().sum::<f64>() / w.len().max(1) as f64
                };
                let change = four.weighted_completion / one.weighted_completion - 1.0;
                if arrivals != Arrivals::Overload {
                    changes.push(change);
                }
                println!(
                    "| {} | {} | {n} | {} | {} | {:+.1}% | {} → {} | {} → {} |",
                    shape.name(),
                    arrivals.name(),
                    hours(one.weighted_completion),
                    hours(four.weighted_completion),
                    change * 100.0,
                    hours(wait(&one, true)),
                    hours(wait(&four, true)),
                    hours(wait(&one, false)),
                    hours(wait(&four, false)),
                );
            }
        }
    }
    let mean = changes.iter().sum::<f64>() / changes.len() as f64;
    let worst = changes.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    println!();
    println!(
        "- Priority-weighted mean completion, every queue but the overload stress case: {:+.1}% on average with turns, {:+.1}% on the least favourable queue.",
        mean * 100.0,
        worst * 100.0
    );
}

/// Rank 10 000 pending jobs, 21 times, and print the median and the maximum.
fn rank_10k(rng: &mut Rng, policy: &Policy) {
    let mut big = generate(rng, 10_000, Shape::DependencyHeavy, Arrivals::Stream);
    for j in &mut big {
        j.arrival = 0;
    }
    let mut q = QueueState::default();
    for j in &big {
        q.pending.push(j.pending(BASE));
        if let Some(h) = j.history {
            q.history.insert(j.package.clone(), h);
        }
    }
    let (times, wall) = time_21(&q, policy);
    let edges: usize = q.pending.iter().map(|p| p.dependencies.len()).sum();
    println!();
    println!(
        "Ranking 10 000 pending jobs (dependency-heavy, all submitted at once, {edges} dependency names), 21 runs: CPU time median {:.2} ms, max {:.2} ms; wall clock best {:.2} ms, median {:.2} ms.",
        times[10].as_secs_f64() * 1e3,
        times[20].as_secs_f64() * 1e3,
        wall[0].as_secs_f64() * 1e3,
        wall[10].as_secs_f64() * 1e3
    );
    // The same jobs, of four owners taking turns.
    assign_owners(&mut Rng(0x0f0f_f00d), &mut big);
    q.pending = big.iter().map(|j| j.pending(BASE)).collect();
    let (times, _) = time_21(&q, policy);
    println!(
        "The same 10 000 jobs of four owners (fair share deals every class): CPU time median {:.2} ms, max {:.2} ms.",
        times[10].as_secs_f64() * 1e3,
        times[20].as_secs_f64() * 1e3,
    );
    // glibc hands the top of its heap back to the kernel when a free leaves more than
    // its trim threshold there (twice the largest block it has unmapped, here about
    // the size of a plan), and the next plan faults those pages in again. Whether that
    // happens after each plan turns on where the harness's own allocations happen to
    // lie more than on the scheduler: builds differing in the order of a few
    // allocations measured 7 and 13 ms, and one owner's plans took longer than four
    // owners' in one run. With the thresholds fixed, the figure is the ranking's.
    // (They stay fixed for the process: so this is measured last.)
    if fix_allocator_thresholds() {
        let four_owners = std::mem::take(&mut q.pending);
        q.pending = big
            .iter()
            .map(|j| PendingJob {
                owner: "user0".into(),
                ..j.pending(BASE)
            })
            .collect();
        let (one, _) = time_21(&q, policy);
        q.pending = four_owners;
        let (four, _) = time_21(&q, policy);
        println!(
            "With the allocator's trim and mmap thresholds fixed (no pages handed back between plans): one owner CPU time median {:.2} ms, max {:.2} ms; four owners median {:.2} ms, max {:.2} ms.",
            one[10].as_secs_f64() * 1e3,
            one[20].as_secs_f64() * 1e3,
            four[10].as_secs_f64() * 1e3,
            four[20].as_secs_f64() * 1e3,
        );
    }
}

/// Fix glibc's trim and mmap thresholds (which it otherwise moves as the process
/// allocates), so big blocks stay in the heap and the heap is never trimmed. False
/// where there is no glibc.
fn fix_allocator_thresholds() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt takes two integers and changes the allocator's parameters
        // under its own lock; live allocations are unaffected.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// CPU and wall time of 21 plans of `q`, each sorted.
fn time_21(q: &QueueState, policy: &Policy) -> (Vec<Duration>, Vec<Duration>) {
    let mut wall = Vec::new();
    let mut times: Vec<Duration> = (0..21)
        .map(|_| {
            let (w, c) = (Instant::now(), cpu_now());
            let p = scheduler::plan(q, Timestamp(BASE + 3600), policy);
            let e = cpu_now() - c;
            wall.push(w.elapsed());
            assert_eq!(p.order.len(), 10_000);
            assert_eq!(p.doomed().count(), 0, "{:?}", p.doomed().next());
            e
        })
        .collect();
    times.sort();
    wall.sort();
    (times, wall)
}
