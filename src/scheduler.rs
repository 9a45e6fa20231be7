//! The scheduler: a pure function from the queue's state and the clock to a ranked plan,
//! with a reason for every position. It never touches the disk, so it can be tested and
//! simulated with made-up queues (see `bench/`).
//!
//! Readiness: a job is *ready* when every job named in its `after` list has finished
//! successfully, and no job for a package in its `dependencies` is pending or running.
//! If a job it waits for failed or was cancelled, the job is *doomed* (the worker fails
//! it with that reason, or holds it, as configured). A cycle of waiting jobs is doomed
//! too, and named.
//!
//! Ranking of ready jobs, first difference wins:
//! 1. effective priority: the job's class (high 3, medium 2, low 1) raised by one for
//!    every `aging_step` it has waited, up to high; so a job waits at most
//!    2 × `aging_step` before it competes as high, and then in submission order;
//! 2. the work it unblocks: the summed estimates of every pending job that waits on it,
//!    directly or through others (its critical path), largest first;
//! 3. its own estimated time, shortest first;
//! 4. submission order (job ID).

use crate::job::{JobId, Priority};
use crate::time::Timestamp;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

/// A pending job as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct PendingJob {
    pub id: JobId,
    /// `NNNNNN-PACKAGE`, for reasons.
    pub name: String,
    pub package: String,
    pub priority: Priority,
    pub dependencies: Vec<String>,
    pub after: Vec<JobId>,
    /// The job's own estimate, if it gave one.
    pub estimate: Option<Duration>,
    pub submitted_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct RunningJob {
    pub id: JobId,
    pub name: String,
    pub package: String,
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
    /// The most recent finished job of each package named in a pending job's
    /// `dependencies`.
    pub latest_by_package: HashMap<String, FinishedJob>,
    /// Median duration of earlier successful installs, by package.
    pub history: HashMap<String, Duration>,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub max_parallel: usize,
    /// Estimate for a job with none of its own and no history.
    pub default_estimate: Duration,
    /// Waiting this long raises a job's priority class by one.
    pub aging_step: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_parallel: 1,
            default_estimate: Duration::from_secs(30 * 60),
            aging_step: Duration::from_secs(4 * 3600),
        }
    }
}

/// One pending job's place in the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    pub id: JobId,
    pub name: String,
    pub status: Readiness,
    /// Why it is where it is, in words.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Readiness {
    /// May start now.
    Ready,
    /// Ready, but would conflict with a running job (same package).
    Conflict(String),
    /// Waiting for these jobs or packages.
    Waiting(Vec<String>),
    /// Will never become ready: a dependency failed, or a cycle.
    Doomed(String),
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Ready jobs first, best first; then waiting jobs; then doomed ones.
    pub order: Vec<Ranked>,
}

impl Plan {
    /// The jobs to start now, given how many run already: the best ready jobs, never two
    /// of one package, never one that waits on another.
    pub fn to_start(&self, running: usize, max_parallel: usize) -> Vec<JobId> {
        self.order
            .iter()
            .filter(|r| r.status == Readiness::Ready)
            .take(max_parallel.saturating_sub(running))
            .map(|r| r.id)
            .collect()
    }

    pub fn doomed(&self) -> impl Iterator<Item = (&Ranked, &str)> {
        self.order.iter().filter_map(|r| match &r.status {
            Readiness::Doomed(why) => Some((r, why.as_str())),
            _ => None,
        })
    }
}

impl QueueState {
    /// The estimate the scheduler uses for a job, and where it came from.
    pub fn estimate(&self, job: &PendingJob, policy: &Policy) -> (Duration, &'static str) {
        if let Some(e) = job.estimate {
            (e, "its own estimate")
        } else if let Some(h) = self.history.get(&job.package) {
            (*h, "past installs")
        } else {
            (policy.default_estimate, "the default estimate")
        }
    }
}

/// What one pending job waits on, or why it never will run.
fn wait_set(
    q: &QueueState,
    job: &PendingJob,
    by_package: &HashMap<&str, Vec<usize>>,
) -> Result<Vec<usize>, String> {
    let mut waits = Vec::new();
    for dep in &job.after {
        if let Some(i) = q.pending.iter().position(|p| p.id == *dep) {
            waits.push(i);
        } else if q.running.iter().any(|r| r.id == *dep) {
            waits.push(usize::MAX);
        } else if let Some(f) = q.finished.get(dep)
            && f.outcome != Outcome::Done
        {
            return Err(format!("dependency {} {}", f.name, outcome_word(f.outcome)));
        }
    }
    for pkg in &job.dependencies {
        let queued: Vec<usize> = by_package
            .get(pkg.as_str())
            .map(|v| {
                v.iter()
                    .copied()
                    .filter(|&i| q.pending[i].id != job.id)
                    .collect()
            })
            .unwrap_or_default();
        let running = q.running.iter().any(|r| &r.package == pkg);
        if !queued.is_empty() || running {
            waits.extend(queued);
            if running {
                waits.push(usize::MAX);
            }
        } else if let Some(f) = q.latest_by_package.get(pkg)
            && f.outcome != Outcome::Done
            && f.finished_at >= job.submitted_at
        {
            return Err(format!("dependency {} {}", f.name, outcome_word(f.outcome)));
        }
    }
    Ok(waits)
}

fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Done => "succeeded",
        Outcome::Failed => "failed",
        Outcome::Cancelled => "was cancelled",
    }
}

/// Rank the pending jobs.
pub fn plan(q: &QueueState, now: Timestamp, policy: &Policy) -> Plan {
    let n = q.pending.len();
    let mut by_package: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, p) in q.pending.iter().enumerate() {
        by_package.entry(p.package.as_str()).or_default().push(i);
    }
    // waits[i]: pending jobs i waits on (usize::MAX: a running job); Err: doomed.
    let mut waits: Vec<Result<Vec<usize>, String>> = q
        .pending
        .iter()
        .map(|p| wait_set(q, p, &by_package))
        .collect();

    // Doom spreads: waiting on a doomed job dooms you. Then cycles.
    loop {
        let mut changed = false;
        for i in 0..n {
            if let Ok(w) = &waits[i]
                && let Some(&d) = w.iter().find(|&&d| d != usize::MAX && waits[d].is_err())
            {
                waits[i] = Err(format!("dependency {} cannot run", q.pending[d].name));
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    for cycle in cycles(&waits) {
        let names: Vec<&str> = cycle.iter().map(|&i| q.pending[i].name.as_str()).collect();
        let text = format!("dependency cycle: {} → {}", names.join(" → "), names[0]);
        for &i in &cycle {
            waits[i] = Err(text.clone());
        }
    }

    // Work unblocked by each job: summed estimates of everything waiting on it,
    // transitively.
    let est: Vec<Duration> = q.pending.iter().map(|p| q.estimate(p, policy).0).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, w) in waits.iter().enumerate() {
        if let Ok(w) = w {
            for &d in w.iter().filter(|&&d| d != usize::MAX) {
                dependents[d].push(i);
            }
        }
    }
    let unblocks: Vec<(Duration, usize)> = (0..n)
        .map(|i| {
            let mut seen = HashSet::new();
            let mut stack = dependents[i].clone();
            let mut total = Duration::ZERO;
            while let Some(j) = stack.pop() {
                if seen.insert(j) {
                    total += est[j];
                    stack.extend(dependents[j].iter().copied());
                }
            }
            (total, seen.len())
        })
        .collect();

    let effective = |p: &PendingJob| -> u32 {
        let waited = p.submitted_at.until(now);
        let steps = if policy.aging_step.is_zero() {
            0
        } else {
            (waited.as_secs() / policy.aging_step.as_secs().max(1)) as u32
        };
        (p.priority.weight() + steps).min(Priority::High.weight())
    };

    let running_packages: HashSet<&str> = q.running.iter().map(|r| r.package.as_str()).collect();
    let mut ranked: Vec<(usize, Readiness)> = (0..n)
        .map(|i| {
            let p = &q.pending[i];
            let status = match &waits[i] {
                Err(why) => Readiness::Doomed(why.clone()),
                Ok(w) if !w.is_empty() => {
                    let mut on: Vec<String> = w
                        .iter()
                        .map(|&d| {
                            if d == usize::MAX {
                                "a running job".to_string()
                            } else {
                                q.pending[d].name.clone()
                            }
                        })
                        .collect();
                    for pkg in &p.dependencies {
                        if let Some(r) = q.running.iter().find(|r| &r.package == pkg) {
                            on.push(r.name.clone());
                        }
                    }
                    for a in &p.after {
                        if let Some(r) = q.running.iter().find(|r| r.id == *a) {
                            on.push(r.name.clone());
                        }
                    }
                    on.retain(|s| s != "a running job");
                    on.sort();
                    on.dedup();
                    Readiness::Waiting(on)
                }
                Ok(_) if running_packages.contains(p.package.as_str()) => {
                    Readiness::Conflict(format!("another {} job is running", p.package))
                }
                Ok(_) => Readiness::Ready,
            };
            (i, status)
        })
        .collect();

    let class = |s: &Readiness| match s {
        Readiness::Ready => 0,
        Readiness::Conflict(_) => 1,
        Readiness::Waiting(_) => 2,
        Readiness::Doomed(_) => 3,
    };
    ranked.sort_by(|(a, sa), (b, sb)| {
        let (pa, pb) = (&q.pending[*a], &q.pending[*b]);
        class(sa)
            .cmp(&class(sb))
            .then(effective(pb).cmp(&effective(pa)))
            .then(unblocks[*b].0.cmp(&unblocks[*a].0))
            .then(est[*a].cmp(&est[*b]))
            .then(pa.id.cmp(&pb.id))
    });

    // Among ready jobs, two of one package may not start together: the later becomes a
    // conflict for this round.
    let mut taken: HashSet<&str> = HashSet::new();
    let order = ranked
        .into_iter()
        .map(|(i, mut status)| {
            let p = &q.pending[i];
            if status == Readiness::Ready && !taken.insert(p.package.as_str()) {
                status = Readiness::Conflict(format!("an earlier {} job goes first", p.package));
            }
            let mut reason = String::new();
            match &status {
                Readiness::Ready | Readiness::Conflict(_) => {
                    let eff = effective(p);
                    let _ = write!(reason, "{} priority", p.priority);
                    if eff > p.priority.weight() {
                        let _ = write!(
                            reason,
                            " (raised to {} after waiting {})",
                            weight_name(eff),
                            crate::time::short(p.submitted_at.until(now))
                        );
                    }
                    let (u, count) = unblocks[i];
                    if count > 0 {
                        let _ = write!(
                            reason,
                            "; unblocks {count} job{} ({} of work)",
                            if count == 1 { "" } else { "s" },
                            crate::time::short(u)
                        );
                    }
                    let (e, from) = q.estimate(p, policy);
                    let _ = write!(reason, "; takes ~{} ({from})", crate::time::short(e));
                    if let Readiness::Conflict(why) = &status {
                        let _ = write!(reason, "; held: {why}");
                    }
                }
                Readiness::Waiting(on) => {
                    let _ = write!(reason, "waits for {}", on.join(", "));
                }
                Readiness::Doomed(why) => reason.push_str(why),
            }
            Ranked {
                id: p.id,
                name: p.name.clone(),
                status,
                reason,
            }
        })
        .collect();
    Plan { order }
}

fn weight_name(w: u32) -> &'static str {
    match w {
        3.. => "high",
        2 => "medium",
        _ => "low",
    }
}

/// The cycles among waiting jobs (strongly connected components of more than one job,
/// or a job waiting on itself), by Tarjan's algorithm.
fn cycles(waits: &[Result<Vec<usize>, String>]) -> Vec<Vec<usize>> {
    struct T<'a> {
        g: &'a [Result<Vec<usize>, String>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn edges(g: &[Result<Vec<usize>, String>], v: usize) -> Vec<usize> {
        match &g[v] {
            Ok(w) => w.iter().copied().filter(|&d| d != usize::MAX).collect(),
            Err(_) => Vec::new(),
        }
    }
    fn visit(t: &mut T, v: usize) {
        t.index[v] = Some(t.next);
        t.low[v] = t.next;
        t.next += 1;
        t.stack.push(v);
        t.on[v] = true;
        for w in edges(t.g, v) {
            match t.index[w] {
                None => {
                    visit(t, w);
                    t.low[v] = t.low[v].min(t.low[w]);
                }
                Some(iw) if t.on[w] => t.low[v] = t.low[v].min(iw),
                _ => {}
            }
        }
        if Some(t.low[v]) == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 || edges(t.g, v).contains(&v) {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let n = waits.len();
    let mut t = T {
        g: waits,
        index: vec![None; n],
        low: vec![0; n],
        on: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if t.index[v].is_none() {
            visit(&mut t, v);
        }
    }
    t.out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: u64, pkg: &str, prio: Priority, deps: &[&str]) -> PendingJob {
        PendingJob {
            id: JobId(id),
            name: format!("{:06}-{pkg}", id),
            package: pkg.into(),
            priority: prio,
            dependencies: deps.iter().map(|s| s.to_string()).collect(),
            after: vec![],
            estimate: None,
            submitted_at: Timestamp(1000 + id),
        }
    }

    fn ids(p: &Plan) -> Vec<u64> {
        p.order.iter().map(|r| r.id.0).collect()
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
        assert_eq!(ids(&p), vec![4, 3, 1, 2]);
        assert_eq!(
            p.order[3].status,
            Readiness::Waiting(vec!["000003-c".into()])
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
        q.latest_by_package.insert(
            "zlib".into(),
            FinishedJob {
                id: JobId(4),
                name: "000004-zlib".into(),
                package: "zlib".into(),
                outcome: Outcome::Failed,
                finished_at: Timestamp(9999),
            },
        );
        let p = plan(&q, Timestamp(10_000), &Policy::default());
        assert_eq!(p.doomed().count(), 2);
        assert!(
            p.order
                .iter()
                .any(|r| r.reason == "dependency 000004-zlib failed")
        );
    }

    #[test]
    fn old_failures_do_not_doom_new_jobs() {
        let mut q = QueueState {
            pending: vec![job(5, "hdf5", Priority::High, &["zlib"])],
            ..Default::default()
        };
        q.latest_by_package.insert(
            "zlib".into(),
            FinishedJob {
                id: JobId(1),
                name: "000001-zlib".into(),
                package: "zlib".into(),
                outcome: Outcome::Failed,
                finished_at: Timestamp(10),
            },
        );
        let p = plan(&q, Timestamp(10_000), &Policy::default());
        assert_eq!(p.order[0].status, Readiness::Ready);
    }

    #[test]
    fn cycles_are_named() {
        let q = QueueState {
            pending: vec![
                job(1, "a", Priority::High, &["b"]),
                job(2, "b", Priority::High, &["a"]),
            ],
            ..Default::default()
        };
        let p = plan(&q, Timestamp(2000), &Policy::default());
        assert!(p.order.iter().all(|r| matches!(&r.status, Readiness::Doomed(w) if w.contains("cycle: 000001-a → 000002-b"))), "{p:?}");
    }

    #[test]
    fn same_package_never_twice_and_aging_lifts_low() {
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
        });
        q.pending.remove(1);
        let later = Timestamp(1001 + 8 * 3600 + 1);
        let p = plan(&q, later, &Policy::default());
        assert_eq!(p.to_start(1, 2), vec![JobId(1)]);
        assert!(
            p.order[0].reason.contains("raised to high"),
            "{}",
            p.order[0].reason
        );
    }
}
