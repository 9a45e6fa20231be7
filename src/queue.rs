//! The queue as the scheduler sees it, assembled from job records. The worker keeps the
//! records in memory; `optimize` reads them from the spool; both build the scheduler's
//! input here, so the plan a person is shown is the plan the worker follows.
//!
//! Finished jobs are known by name ([`FinishedIndex`]): listing `done/` costs one readdir.
//! A finished record is opened only when its facts matter, and read once (finished
//! records do not change): a failed or cancelled job of a package someone depends on (its
//! owner and end: only the owner's own failures doom), the newest successful job of such
//! a package by ID (its end tells whether the package was installed since a failure;
//! jobs of one package never run together, so a later ID that succeeded almost always
//! ended later too), and the newest [`TURN_MEMORY`] finished jobs (who started
//! installs lately, for fair share).

use crate::error::Result;
use crate::history::History;
use crate::job::id::REJECTED_PACKAGE;
use crate::job::{Job, JobId, JobName};
use crate::scheduler::{Dag, FinishedJob, Outcome, PendingJob, QueueState, RunningJob};
use crate::spool::{Dir, Spool, store};
use crate::time::Timestamp;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

/// How many of the newest finished jobs tell who was served lately (fair share). An
/// owner whose installs are all older than these counts as not served lately: with the
/// default half-life of an hour, 64 installs span hours, and older starts weigh little.
pub const TURN_MEMORY: usize = 64;

/// What a finished record says that its name does not.
#[derive(Debug, Clone)]
struct Facts {
    owner: Box<str>,
    started_at: Option<Timestamp>,
    finished_at: Timestamp,
}

/// Finished jobs by name: enough for dependencies without reading `done/`.
#[derive(Debug, Default)]
pub struct FinishedIndex {
    /// Every finished job (rejected files aside): its outcome and package.
    all: BTreeMap<u64, (Outcome, Box<str>)>,
    /// Failed and cancelled jobs by package.
    bad_by_package: HashMap<Box<str>, Vec<u64>>,
    /// Successful jobs by package, for estimates from history.
    done_by_package: HashMap<Box<str>, Vec<u64>>,
    /// When a job ended, as the worker saw it end (saves reading its record for that).
    ended: HashMap<u64, Timestamp>,
    /// Records read so far (`None`: unreadable).
    facts: RefCell<HashMap<u64, Option<Facts>>>,
}

impl FinishedIndex {
    /// List the finished directories. Rejected files are not jobs anyone waits for.
    pub fn load(spool: &Spool) -> Result<FinishedIndex> {
        let mut f = FinishedIndex::default();
        for (dir, outcome) in [
            (Dir::Done, Outcome::Done),
            (Dir::Failed, Outcome::Failed),
            (Dir::Cancelled, Outcome::Cancelled),
        ] {
            for name in store::list(spool, dir)? {
                if name.package != REJECTED_PACKAGE {
                    f.add(&name, outcome, None);
                }
            }
        }
        Ok(f)
    }

    /// A job finished: `at` is when, if the caller knows (the worker that ended it).
    pub fn add(&mut self, name: &JobName, outcome: Outcome, at: Option<Timestamp>) {
        let package: Box<str> = name.package.as_str().into();
        let by_package = match outcome {
            Outcome::Done => &mut self.done_by_package,
            _ => &mut self.bad_by_package,
        };
        by_package
            .entry(package.clone())
            .or_default()
            .push(name.id.0);
        self.all.insert(name.id.0, (outcome, package));
        if let Some(t) = at {
            self.ended.insert(name.id.0, t);
        }
    }

    /// The IDs of a package's successful jobs (for estimates from history).
    pub fn done_ids(&self, package: &str) -> Option<&[u64]> {
        self.done_by_package.get(package).map(Vec::as_slice)
    }

    /// How a finished job ended, if it is known to have.
    pub fn outcome(&self, id: JobId) -> Option<Outcome> {
        self.all.get(&id.0).map(|(o, _)| *o)
    }

    pub fn contains(&self, id: JobId) -> bool {
        self.all.contains_key(&id.0)
    }

    /// What finished job `id`'s record says (cached).
    fn facts(&self, spool: &Spool, id: u64) -> Option<Facts> {
        if let Some(f) = self.facts.borrow().get(&id) {
            return f.clone();
        }
        let (outcome, package) = self.all.get(&id)?;
        let dir = match outcome {
            Outcome::Done => Dir::Done,
            Outcome::Failed => Dir::Failed,
            Outcome::Cancelled => Dir::Cancelled,
        };
        let facts = match store::read(spool, dir, &JobName::new(JobId(id), package)) {
            Ok(j) => Some(Facts {
                owner: j.meta.owner.as_str().into(),
                started_at: j.state.started_at,
                finished_at: j
                    .state
                    .finished_at
                    .or_else(|| self.ended.get(&id).copied())
                    .unwrap_or(j.state.since),
            }),
            Err(e) => {
                tracing::debug!("finished job {id} unread: {e}");
                None
            }
        };
        self.facts.borrow_mut().insert(id, facts.clone());
        facts
    }

    /// Finished job `id` as the scheduler sees it; an unreadable record has no owner
    /// (so it dooms no one by package) and ended when the worker saw it end, or at 0.
    fn finished_job(&self, spool: &Spool, id: u64) -> Option<FinishedJob> {
        let (outcome, package) = self.all.get(&id)?;
        let facts = self.facts(spool, id);
        Some(FinishedJob {
            id: JobId(id),
            name: JobName::new(JobId(id), package).to_string(),
            package: package.to_string(),
            owner: facts
                .as_ref()
                .map(|f| f.owner.to_string())
                .unwrap_or_default(),
            outcome: *outcome,
            finished_at: facts
                .map(|f| f.finished_at)
                .or_else(|| self.ended.get(&id).copied())
                .unwrap_or(Timestamp(0)),
        })
    }
}

/// What the concretization stage recorded of a job's DAG, as the scheduler sees it
/// (`None` before it is concretized, and for a job linked to another's install).
pub fn dag_of(job: &Job) -> Option<Dag> {
    let c = job
        .state
        .concrete
        .as_ref()
        .filter(|c| c.same_as.is_none())?;
    let short = c.hash.get(..7)?;
    Some(Dag {
        root: format!("{}@{}/{short}", job.meta.package, c.version),
        builds: c.to_build.clone(),
        estimate: c.estimate_s.map(Duration::from_secs),
    })
}

/// A pending record as the scheduler sees it (`None` for a rejected record).
pub fn pending_job(job: &Job) -> Option<PendingJob> {
    let sub = job.submission()?;
    Some(PendingJob {
        id: job.meta.id,
        name: job.meta.name.clone(),
        package: job.meta.package.clone(),
        owner: job.meta.owner.clone(),
        priority: sub.priority,
        dependencies: sub.dependencies.clone(),
        after: sub.after.clone(),
        estimate: sub.estimated_time,
        timeout: sub.timeout,
        submitted_at: job.meta.submitted_at,
    })
}

/// Assemble the scheduler's input, with estimates from `history` for every pending
/// package that has successful installs (a submitter's own estimate is checked
/// against them).
pub fn build<'a>(
    spool: &Spool,
    pending: impl IntoIterator<Item = &'a Job>,
    running: impl IntoIterator<Item = &'a Job>,
    finished: &FinishedIndex,
    history: &mut History,
) -> QueueState {
    let mut q = QueueState::default();
    let mut dag = |j: &Job| {
        if let Some(d) = dag_of(j) {
            q.dag.insert(j.meta.id, d);
        }
    };
    let pending: Vec<&Job> = pending.into_iter().inspect(|j| dag(j)).collect();
    let running: Vec<&Job> = running.into_iter().inspect(|j| dag(j)).collect();
    q.pending = pending.into_iter().filter_map(pending_job).collect();
    let serve = |q: &mut QueueState, owner: &str, at: Timestamp| {
        let t = q.last_start.entry(owner.to_string()).or_insert(at);
        *t = (*t).max(at);
    };
    for j in running {
        q.running.push(RunningJob {
            id: j.meta.id,
            name: j.meta.name.clone(),
            package: j.meta.package.clone(),
            owner: j.meta.owner.clone(),
        });
        if let Some(at) = j.state.started_at {
            serve(&mut q, &j.meta.owner, at);
        }
    }
    let ids: Vec<u64> = finished
        .all
        .keys()
        .rev()
        .take(TURN_MEMORY)
        .copied()
        .collect();
    for id in ids {
        if let Some(Facts {
            owner,
            started_at: Some(at),
            ..
        }) = finished.facts(spool, id)
        {
            serve(&mut q, &owner, at);
            q.recent_starts
                .entry(owner.to_string())
                .or_default()
                .push(at);
        }
    }
    let mut packages: HashSet<&str> = HashSet::new();
    for p in &q.pending {
        for a in &p.after {
            if let Some((o, _)) = finished.all.get(&a.0)
                && *o != Outcome::Done
                && let Some(f) = finished.finished_job(spool, a.0)
            {
                q.finished.insert(*a, f);
            }
        }
        packages.extend(p.dependencies.iter().map(String::as_str));
    }
    let mut by_package = HashMap::new();
    for d in packages {
        let newest_done = finished
            .done_by_package
            .get(d)
            .and_then(|ids| ids.iter().max());
        let bad = finished.bad_by_package.get(d).into_iter().flatten();
        let jobs: Vec<FinishedJob> = newest_done
            .into_iter()
            .chain(bad)
            .filter_map(|&id| finished.finished_job(spool, id))
            .collect();
        if !jobs.is_empty() {
            by_package.insert(d.to_string(), jobs);
        }
    }
    q.finished_by_package = by_package;
    let wanted: HashSet<&str> = q.pending.iter().map(|p| p.package.as_str()).collect();
    let mut estimates = HashMap::new();
    for pkg in wanted {
        if let Some(ids) = finished.done_ids(pkg)
            && let Some(d) = history.estimate(spool, pkg, ids)
        {
            estimates.insert(pkg.to_string(), d);
        }
    }
    q.history = estimates;
    q
}
