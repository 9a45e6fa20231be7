//! The queue as the scheduler sees it, assembled from job records. The worker keeps the
//! records in memory; `optimize` reads them from the spool; both build the scheduler's
//! input here, so the plan a person is shown is the plan the worker follows.
//!
//! Finished jobs are known by name only ([`FinishedIndex`]): listing `done/` costs one
//! readdir and no file is opened, except the record of a failed dependency, to learn when
//! it failed.

use crate::error::Result;
use crate::job::id::REJECTED_PACKAGE;
use crate::job::{Job, JobId, JobName};
use crate::scheduler::{FinishedJob, Outcome, PendingJob, QueueState, RunningJob};
use crate::spool::{Dir, Spool, store};
use crate::time::Timestamp;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

/// Finished jobs by name: enough for dependencies without reading `done/`.
#[derive(Debug, Default)]
pub struct FinishedIndex {
    done: HashSet<u64>,
    /// Failed and cancelled jobs, with their package (for reasons).
    bad: HashMap<u64, (Outcome, Box<str>)>,
    /// The highest-ID finished job of each package, and when it finished (read lazily).
    latest: HashMap<Box<str>, (u64, Outcome, Option<Timestamp>)>,
    /// `finished_at` of records read so far.
    times: RefCell<HashMap<u64, Timestamp>>,
    /// Successful jobs by package, for estimates from history.
    done_by_package: HashMap<Box<str>, Vec<u64>>,
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

    pub fn add(&mut self, name: &JobName, outcome: Outcome, at: Option<Timestamp>) {
        match outcome {
            Outcome::Done => {
                self.done.insert(name.id.0);
                self.done_by_package
                    .entry(name.package.as_str().into())
                    .or_default()
                    .push(name.id.0);
            }
            _ => {
                self.bad
                    .insert(name.id.0, (outcome, name.package.as_str().into()));
            }
        }
        if let Some(t) = at {
            self.times.borrow_mut().insert(name.id.0, t);
        }
        let e = self
            .latest
            .entry(name.package.as_str().into())
            .or_insert((0, outcome, at));
        if name.id.0 >= e.0 {
            *e = (name.id.0, outcome, at);
        }
    }

    /// The IDs of a package's successful jobs (for estimates from history).
    pub fn done_ids(&self, package: &str) -> Option<&[u64]> {
        self.done_by_package.get(package).map(Vec::as_slice)
    }

    /// How a finished job ended, if it is known to have.
    pub fn outcome(&self, id: JobId) -> Option<Outcome> {
        if self.done.contains(&id.0) {
            Some(Outcome::Done)
        } else {
            self.bad.get(&id.0).map(|(o, _)| *o)
        }
    }

    pub fn contains(&self, id: JobId) -> bool {
        self.done.contains(&id.0) || self.bad.contains_key(&id.0)
    }

    /// When a failed or cancelled job finished, from its record (cached).
    fn finished_at(&self, spool: &Spool, name: &JobName, o: Outcome) -> Timestamp {
        if let Some(t) = self.times.borrow().get(&name.id.0) {
            return *t;
        }
        let dir = if o == Outcome::Cancelled {
            Dir::Cancelled
        } else {
            Dir::Failed
        };
        let t = store::read(spool, dir, name)
            .ok()
            .and_then(|j| j.state.finished_at)
            .unwrap_or(Timestamp(0));
        self.times.borrow_mut().insert(name.id.0, t);
        t
    }
}

/// A pending record as the scheduler sees it (`None` for a rejected record).
pub fn pending_job(job: &Job) -> Option<PendingJob> {
    let sub = job.submission()?;
    Some(PendingJob {
        id: job.meta.id,
        name: job.meta.name.clone(),
        package: job.meta.package.clone(),
        priority: sub.priority,
        dependencies: sub.dependencies.clone(),
        after: sub.after.clone(),
        estimate: sub.estimated_time,
        submitted_at: job.meta.submitted_at,
    })
}

/// Assemble the scheduler's input.
pub fn build<'a>(
    spool: &Spool,
    pending: impl IntoIterator<Item = &'a Job>,
    running: impl IntoIterator<Item = &'a Job>,
    finished: &FinishedIndex,
) -> QueueState {
    let mut q = QueueState {
        pending: pending.into_iter().filter_map(pending_job).collect(),
        ..Default::default()
    };
    q.running = running
        .into_iter()
        .map(|j| RunningJob {
            id: j.meta.id,
            name: j.meta.name.clone(),
            package: j.meta.package.clone(),
        })
        .collect();
    for p in &q.pending {
        for a in &p.after {
            if let Some((o, pkg)) = finished.bad.get(&a.0) {
                let name = JobName::new(*a, pkg);
                let at = finished.finished_at(spool, &name, *o);
                q.finished.insert(
                    *a,
                    FinishedJob {
                        id: *a,
                        name: name.to_string(),
                        package: pkg.to_string(),
                        outcome: *o,
                        finished_at: at,
                    },
                );
            }
        }
        for d in &p.dependencies {
            if let Some((id, o, at)) = finished.latest.get(d.as_str()) {
                let name = JobName::new(JobId(*id), d);
                let at = match (at, o) {
                    (Some(t), _) => *t,
                    (None, Outcome::Done) => Timestamp(0),
                    (None, _) => finished.finished_at(spool, &name, *o),
                };
                q.latest_by_package.insert(
                    d.clone(),
                    FinishedJob {
                        id: JobId(*id),
                        name: name.to_string(),
                        package: d.clone(),
                        outcome: *o,
                        finished_at: at,
                    },
                );
            }
        }
    }
    q
}
