//! The Slurm glue: installs that outlive the worker. At start, the `running/` jobs a
//! previous worker handed to Slurm are followed again (or requeued if Slurm never got
//! them); once per check interval one query tracks where they run. `sbatch` runs aside:
//! its answer arrives as an event, and writes the job ID, or (refused) sends the job
//! back to `pending/` and holds all starts for a back-off. Which job runs next is not
//! decided here, and a job's end is recorded by the finish stage.

use super::{Event, Running, StopReason, Worker, append_log, recovery};
use crate::error::Result;
use crate::executor::{Exit, Handle, Reattach, Submitted};
use crate::job::{Job, JobId, JobName};
use crate::spool::transition::rewrite;
use crate::spool::{Dir, store};
use crate::time::Timestamp;
use std::time::{Duration, Instant};

/// The first and the longest wait before trying Slurm again after it refused a job.
pub(super) const CLUSTER_BACKOFF_MIN: Duration = Duration::from_secs(2);
const CLUSTER_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// How the reason of a job that waits for Slurm to take it begins.
pub(super) const WAITING_FOR_SLURM: &str = "waiting for Slurm: ";

/// Whether Slurm, when last asked, still had the job queued (not started).
pub(super) fn queued_in_slurm(job: &Job) -> bool {
    job.state
        .slurm
        .as_ref()
        .is_some_and(|s| s.state.as_deref() == Some("PENDING"))
}

impl Worker {
    /// Write where the install runs (the Slurm job ID) into `running/NAME`. A failed
    /// write is retried by nobody, but the job is tracked in memory, and a restarted
    /// worker finds it again by name.
    pub(super) fn record_placement(&mut self, job: &mut Job, handle: &Handle) {
        // Nothing to write before Slurm has given the job an ID: the record already says
        // it is being handed to Slurm.
        let placed = handle.slurm.as_ref().is_some_and(|s| s.job_id.is_some());
        if !placed || handle.slurm == job.state.slurm {
            return;
        }
        job.state.slurm = handle.slurm.clone();
        if let Err(e) = rewrite(&self.spool, Dir::Running, job) {
            self.io_error(e);
        }
    }

    /// Slurm did not take the job (`sbatch` failed: the controller or munge is down, the
    /// partition inactive...). That is no fault of the job: it goes back to `pending/`
    /// with Slurm's message as its reason (this attempt not counted), and nothing is
    /// started until a back-off (2 s, doubling to 60 s) has passed; then the best job is
    /// tried again, so the queue moves on by itself once Slurm is back.
    pub(super) fn cluster_unavailable(
        &mut self,
        id: JobId,
        mut job: Job,
        log: &std::path::Path,
        why: String,
    ) {
        let name = job.name();
        let wait = self.cluster_backoff;
        self.cluster_backoff = (wait * 2).min(CLUSTER_BACKOFF_MAX);
        self.cluster_retry_at = Some(Instant::now() + wait);
        append_log(
            log,
            &format!(
                "==> spack-installer: Slurm did not take it: {why}\n==> spack-installer: back to pending; trying Slurm again in {}\n",
                humantime::format_duration(wait)
            ),
        );
        tracing::warn!(job_id = id.0, job = %name, "Slurm did not take it: {why}; it waits in pending/, trying again in {wait:?}");
        job.state.reason = Some(format!("{WAITING_FOR_SLURM}{why}"));
        self.unsubmitted(id, job);
    }

    /// Slurm never ran this attempt: back to `pending/`, the attempt not counted.
    fn unsubmitted(&mut self, id: JobId, mut job: Job) {
        job.state.attempts = job.state.attempts.saturating_sub(1);
        job.state.slurm = None;
        match recovery::requeue(&self.spool, &mut job, Timestamp::now()) {
            Ok(()) => {
                self.pending.insert(id, job);
                self.pending_mtime.remove(&id);
            }
            // Left in running/ marked pending: the rescan (or recovery) moves it back.
            Err(e) => self.io_error(e),
        }
        self.changed();
        self.status_changed();
    }

    /// Recovery left these `running/` jobs to us: they were handed to Slurm by a
    /// previous worker. Follow each one again; one whose Slurm job ID was never written
    /// is looked up aside (its answer comes as [`Worker::on_submitted`]).
    pub(super) fn reattach_all(&mut self, names: Vec<JobName>) -> Result<()> {
        for name in names {
            let mut job = store::read(&self.spool, Dir::Running, &name)?;
            let id = job.meta.id;
            let tx = self.tx.clone();
            let on_exit = Box::new(move |exit| {
                let _ = tx.send(Event::Exited { id, exit });
            });
            match self.executor.reattach(&job, on_exit)? {
                Reattach::Attached(handle) => {
                    self.record_placement(&mut job, &handle);
                    self.running
                        .insert(id, Running::new(job, handle, Instant::now(), None));
                }
                Reattach::Unsupported => tracing::warn!(
                    job = %name,
                    "was handed to Slurm, but the executor is now {}: left in running/; \
                     set executor = \"slurm\" so the worker follows it",
                    self.executor.kind()
                ),
            }
        }
        Ok(())
    }

    /// The answers of the starts that ran aside (`sbatch`, or the search for a dead
    /// worker's): where each job now runs, or why it does not.
    pub(super) fn on_submitted(&mut self) {
        for answer in self.executor.submitted() {
            let name = match &answer {
                Submitted::Placed { name, .. }
                | Submitted::Refused { name, .. }
                | Submitted::Failed { name, .. }
                | Submitted::NeverSubmitted { name } => name.clone(),
            };
            let Some(id) = self
                .running
                .iter()
                .find(|(_, r)| r.job.meta.name == name)
                .map(|(id, _)| *id)
            else {
                continue;
            };
            let log = self.spool.log_path(&self.running[&id].job.name());
            // A slot may be free, or the next start may go ahead.
            self.dirty = true;
            match answer {
                Submitted::Placed { slurm, .. } => {
                    self.cluster_backoff = CLUSTER_BACKOFF_MIN;
                    let r = self.running.get_mut(&id).expect("found above");
                    r.handle.slurm = Some(slurm);
                    let (mut job, handle) = (r.job.clone(), r.handle.clone());
                    // Cancelled, or the worker told to interrupt, while sbatch ran: now
                    // that the Slurm job has an ID it can be cancelled.
                    if r.stop.is_some() {
                        self.executor.stop(&handle, false);
                    }
                    self.record_placement(&mut job, &handle);
                    if let Some(r) = self.running.get_mut(&id) {
                        r.job = job;
                    }
                    self.status_changed();
                }
                Submitted::Refused { why, .. } => {
                    let r = self.running.remove(&id).expect("found above");
                    match r.stop {
                        Some(StopReason::Cancel { .. }) => {
                            // Cancelled while sbatch ran, and Slurm never took it.
                            self.running.insert(id, r);
                            self.on_exit(id, Exit::NotStarted);
                        }
                        _ => self.cluster_unavailable(id, r.job, &log, why),
                    }
                }
                Submitted::Failed { why, .. } => {
                    append_log(
                        &log,
                        &format!("==> spack-installer: could not start: {why}\n"),
                    );
                    self.on_exit(id, Exit::NotStarted);
                }
                Submitted::NeverSubmitted { .. } => {
                    let job = self.running.remove(&id).expect("found above").job;
                    tracing::warn!(job = %name, "Slurm never got it (the previous worker died while handing it on): back to pending/, this attempt not counted");
                    append_log(
                        &log,
                        "==> spack-installer: the worker died while handing it to Slurm, which never got it; back to pending\n",
                    );
                    self.unsubmitted(id, job);
                }
            }
        }
    }

    /// Once per check interval: one query for all installs in the batch system; their
    /// ends arrive as `Event::Exited`, their nodes are written into their records.
    pub(super) fn track_cluster(&mut self) {
        for p in self.executor.track() {
            let Some(r) = self
                .running
                .values_mut()
                .find(|r| r.job.meta.name == p.name)
            else {
                continue;
            };
            // RAN counts from when Slurm started it (again, after Slurm requeued it),
            // not from sbatch: a wait in Slurm's queue is waiting.
            let was = r.job.state.slurm.as_ref().and_then(|s| s.state.clone());
            let ran_before = r.job.state.slurm.as_ref().is_some_and(|s| s.node.is_some());
            if p.slurm.state.as_deref() == Some("RUNNING") && was.as_deref() != Some("RUNNING") {
                r.job.state.started_at = Some(Timestamp::now());
                // Slurm had run it (it had a node) and requeued it (node failure,
                // `scontrol requeue`): Spack starts again, and that is another attempt.
                if ran_before && was.is_some() {
                    r.job.state.attempts += 1;
                    let line = format!(
                        "==> spack-installer: Slurm requeued it and runs it again: attempt {} started {}\n",
                        r.job.state.attempts,
                        Timestamp::now()
                    );
                    append_log(&self.spool.log_path(&r.job.name()), &line);
                    tracing::warn!(job = %p.name, attempt = r.job.state.attempts, "Slurm requeued it and runs it again");
                }
            }
            r.job.state.slurm = Some(p.slurm);
            let job = r.job.clone();
            if let Err(e) = rewrite(&self.spool, Dir::Running, &job) {
                tracing::warn!("could not record where {} runs: {e}", p.name);
            }
        }
    }
}
