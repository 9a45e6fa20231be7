//! The finish stage: how a job ends. An install's exit becomes the job's outcome
//! (`on_exit`), recorded in `running/` and moved to `done/`, `failed/` or `cancelled/`
//! as judged from the disk, so a half-failed move is finished, never duplicated; a
//! pending job can end without an install too (`end_pending`). Then the job is counted,
//! remembered for `worker.toml`, and handed to the notification thread. It must never
//! start an install or write a job it does not end.

use super::cluster::queued_in_slurm;
use super::status::RECENT;
use super::{Running, StopReason, Worker, append_log, hooks, mail, recovery};
use crate::error::Result;
use crate::executor::progress::last_error_line;
use crate::executor::{Exit, budget};
use crate::job::{Job, JobId, JobName, State};
use crate::scheduler::Outcome as SchedOutcome;
use crate::spool::transition::Durable::Content;
use crate::spool::transition::{Durable, move_job, move_job_as, rewrite, rewrite_as};
use crate::spool::{Dir, transition};
use crate::time::Timestamp;
use std::time::Duration;

impl Worker {
    /// *finish*: rewrite the outcome into running/, then move it to its directory.
    pub(super) fn on_exit(&mut self, id: JobId, exit: Exit) {
        let Some(r) = self.running.remove(&id) else {
            return;
        };
        self.release(id);
        let oom_base = self.oom_base.remove(&id);
        // A slot is free. The last plan still holds unless a pending job cares how this
        // one ended.
        self.dirty = true;
        if self.concerns_pending(&r.job) {
            self.plan_cache = None;
        }
        let mut job = r.job;
        let name = job.name();
        let log = self.spool.log_path(&name);
        let elapsed = Duration::from_secs(r.started.elapsed().as_secs());
        let now = Timestamp::now();
        // Interrupted by a shutdown: requeued, unless the install had already succeeded
        // (it ended as the signal came); that one is done, and is not installed again.
        if let Some(StopReason::Shutdown) = r.stop
            && !exit.success()
        {
            append_log(
                &log,
                "==> spack-installer: interrupted by the worker's shutdown; requeued\n",
            );
            job.state.attempts = job.state.attempts.saturating_sub(1);
            match recovery::requeue(&self.spool, &mut job, now) {
                Ok(()) => tracing::info!(job_id = id.0, job = %name, "interrupted and requeued"),
                Err(e) => self.io_error(e),
            }
            return;
        }
        let (state, reason) = match (&r.stop, exit) {
            // What happened first counts: Spack had installed it before the stop landed
            // (a Slurm job whose scancel waited for an outage to end).
            (Some(StopReason::Cancel { by }), e) if e.success() => (
                State::Done,
                format!("installed (spack had finished before the cancel by {by} took effect)"),
            ),
            // Cancelled while sbatch ran, and Slurm did not take it.
            (Some(StopReason::Cancel { by }), Exit::NotStarted) if job.state.slurm.is_some() => (
                State::Cancelled,
                format!("cancelled by {by} before Slurm took it (spack never started)"),
            ),
            (Some(StopReason::Cancel { by }), _) if queued_in_slurm(&job) => (
                State::Cancelled,
                format!("cancelled by {by} while queued in Slurm (spack never started)"),
            ),
            (Some(StopReason::Cancel { by }), _) => {
                (State::Cancelled, format!("cancelled by {by} while running"))
            }
            (Some(StopReason::Timeout(d)), _) => (
                State::Failed,
                format!(
                    "timed out after {}",
                    humantime::format_duration(Duration::from_secs(d.as_secs()))
                ),
            ),
            (_, e) if e.success() => (State::Done, "installed".to_string()),
            (_, Exit::Code(c)) => {
                let why = match last_error_line(&log) {
                    Some(line) => format!("spack exited with code {c}: {line}"),
                    None => format!("spack exited with code {c}"),
                };
                (
                    State::Failed,
                    budget::oom_reason(exit, oom_base, budget::oom_kills(), why),
                )
            }
            (_, Exit::Signal(9)) => (
                State::Failed,
                budget::oom_reason(
                    exit,
                    oom_base,
                    budget::oom_kills(),
                    "spack was killed by signal 9".into(),
                ),
            ),
            (_, Exit::Signal(s)) => (State::Failed, format!("spack was killed by signal {s}")),
            (_, Exit::Cluster { code, why }) => (State::Failed, format!("{why}; exit code {code}")),
            (_, Exit::NotStarted) => (
                State::Failed,
                format!("spack could not be started ({}); see the log", self.spack),
            ),
        };
        append_log(
            &log,
            &format!(
                "==> spack-installer: {name} {state} after {}: {reason}\n",
                humantime::format_duration(elapsed)
            ),
        );
        job.state.state = state;
        job.state.exit_code = Some(exit.code());
        job.state.reason = Some(reason.clone());
        job.state.finished_at = Some(now);
        job.state.since = now;
        // An install that ended by itself may be finished again after a power cut (Spack
        // then finds it installed); a cancellation someone asked for may not.
        let durable = if state == State::Cancelled {
            Durable::Step
        } else {
            Content
        };
        let result = self.record_outcome(&job, durable);
        match result {
            Ok(()) => {
                tracing::info!(job_id = id.0, job = %name, exit_code = exit.code(), state = %state, "{reason}");
                let outcome = match state {
                    State::Done => SchedOutcome::Done,
                    State::Cancelled => SchedOutcome::Cancelled,
                    _ => SchedOutcome::Failed,
                };
                self.finished.add(&name, outcome, Some(now));
                self.remember_finished(&name);
                self.job_ended(&job);
                self.io_ok();
            }
            Err(e) => {
                // The outcome may be only in memory: keep the job "running" so the
                // retry after the backoff records it (recovery does, if we die first).
                self.io_error(e);
                self.deferred_exits.push((id, exit));
                self.running.insert(
                    id,
                    // Already ended: no deadline, and nothing left to kill.
                    Running {
                        stop: r.stop,
                        killed: true,
                        ..Running::new(job, r.handle, r.started, None)
                    },
                );
            }
        }
        self.status_changed();
    }

    /// *finish* on disk, judged from the disk: a retry after a move whose rename was done
    /// but whose fsync failed finds the job already in its directory and stops there; it
    /// never writes `running/NAME` again from memory (that made a second copy that could
    /// never be moved). A `running/` file removed by hand is written anew, and said so.
    fn record_outcome(&mut self, job: &Job, durable: Durable) -> Result<()> {
        let name = job.name();
        let to = job.state.state.dir();
        if transition::moved(&self.spool, &name, Dir::Running, to) {
            return Ok(());
        }
        if !self.spool.job_path(Dir::Running, &name).exists() {
            tracing::warn!(
                job = %name,
                "running/{} was removed by hand while its install ran; writing its outcome anew",
                name.file_name()
            );
        }
        let result = rewrite_as(&self.spool, Dir::Running, job, durable)
            .and_then(|_| move_job_as(&self.spool, &name, Dir::Running, to, durable));
        self.settle(result, &name, Dir::Running, to)
    }

    /// The result of a *move* (after any rewrite), with a half-failed one resolved from
    /// the disk: if the rename was done and only the fsync failed, the job is where it was
    /// sent, which is what the caller must go on from. The error is still logged (and
    /// backed off from): a power cut may undo the move, and recovery then finishes it,
    /// since the record already says the new state.
    pub(super) fn settle(
        &mut self,
        result: Result<()>,
        name: &JobName,
        from: Dir,
        to: Dir,
    ) -> Result<()> {
        match result {
            Err(e) if transition::moved(&self.spool, name, from, to) => {
                tracing::error!(
                    job = %name,
                    "moved to {}/, but {e}; a power cut may undo the move, which the next \
                     start then finishes",
                    to.name()
                );
                self.io_error_quiet();
                Ok(())
            }
            other => other,
        }
    }

    /// A job reached its final directory: count it, and hand it to the notification
    /// thread (`on_finish`, mail) with the config of this moment.
    pub(super) fn job_ended(&mut self, job: &Job) {
        self.metrics.finished(job);
        let on_finish = &self.cfg.on_finish.value;
        let when = job
            .submission()
            .and_then(|s| s.mail)
            .unwrap_or(self.cfg.mail.value);
        let wants_mail = when.wants(job.state.state);
        if on_finish.is_empty() && !wants_mail {
            return;
        }
        let ended = hooks::Ended::of(&self.spool, job);
        // The worker's own SPACK_INSTALLER_* (env_allow's SPACK_* matches them) would be
        // mistaken for the job's.
        let env: Vec<(String, String)> = crate::executor::allowed_env(&self.cfg.env_allow.value)
            .into_iter()
            .filter(|(k, _)| !k.starts_with("SPACK_INSTALLER_"))
            .collect();
        let mail = if wants_mail {
            match mail::address(&job.meta.owner, self.cfg.mail_domain.value.as_deref()) {
                Ok(address) => Some(mail::MailTo {
                    sendmail: self.cfg.sendmail.value.clone(),
                    address,
                    env: env.clone(),
                }),
                Err(why) => {
                    tracing::warn!(job = %ended.name, "no mail sent: {why}");
                    None
                }
            }
        } else {
            None
        };
        self.notifier.send(hooks::Notice {
            ended,
            hook: (!on_finish.is_empty()).then(|| hooks::Hook {
                argv: on_finish.clone(),
                env,
            }),
            mail,
            timeout: self.cfg.hook_timeout.value,
        });
    }

    pub(super) fn remember_finished(&mut self, name: &JobName) {
        self.recent.push_front(name.to_string());
        self.recent.truncate(RECENT);
    }

    /// End a pending job without an install: `failed` (a dependency failed, Spack cannot
    /// concretize it) or `done` (already installed, or built by another job).
    pub(super) fn end_pending(&mut self, id: JobId, state: State, why: String) {
        let Some(mut job) = self.pending.get(&id).cloned() else {
            return;
        };
        let name = job.name();
        let now = Timestamp::now();
        job.state.state = state;
        job.state.reason = Some(why.clone());
        job.state.finished_at = Some(now);
        job.state.since = now;
        let result = if transition::moved(&self.spool, &name, Dir::Pending, state.dir()) {
            Ok(())
        } else if !self.spool.job_path(Dir::Pending, &name).exists() {
            // Removed by hand: nothing to fail, and never recreated from memory.
            self.pending.remove(&id);
            self.pending_mtime.remove(&id);
            return;
        } else {
            rewrite(&self.spool, Dir::Pending, &job)
                .and_then(|_| move_job(&self.spool, &name, Dir::Pending, state.dir()))
        };
        match self.settle(result, &name, Dir::Pending, state.dir()) {
            Ok(()) => {
                let outcome = if state == State::Done {
                    tracing::info!(job_id = id.0, job = %name, "done: {why}");
                    SchedOutcome::Done
                } else {
                    tracing::warn!(job_id = id.0, job = %name, "{state}: {why}");
                    SchedOutcome::Failed
                };
                self.pending.remove(&id);
                self.finished.add(&name, outcome, Some(now));
                self.remember_finished(&name);
                self.job_ended(&job);
                self.status_changed();
            }
            Err(e) => self.io_error(e),
        }
    }

    pub(super) fn fail_pending(&mut self, id: JobId, why: String) {
        self.end_pending(id, State::Failed, why)
    }

    /// Whether the end of `job` can change the plan: a pending job waits for it (by ID,
    /// package or DAG), shares its package or a node it builds (a conflict ends; its
    /// estimate may change with one more install in the history), or is linked to it.
    fn concerns_pending(&self, job: &Job) -> bool {
        let name = job.name();
        // The nodes it was to build, once, not per pending job.
        let builds: std::collections::HashSet<&str> = job
            .state
            .concrete
            .iter()
            .flat_map(|c| c.to_build.iter().map(String::as_str))
            .collect();
        self.pending.values().any(|j| {
            j.meta.package == name.package
                || j.state.concrete.as_ref().is_some_and(|c| {
                    c.same_as == Some(name.id)
                        || c.to_build.iter().any(|n| builds.contains(n.as_str()))
                })
                || j.submission().is_some_and(|s| {
                    s.after.contains(&name.id) || s.dependencies.contains(&name.package)
                })
        })
    }

    /// Warn (once) about a running job whose `running/` file someone removed by hand: the
    /// worker still records the install's outcome when it ends, which brings it back.
    pub(super) fn check_running_files(&mut self) {
        for r in self.running.values() {
            let name = r.job.name();
            let path = self.spool.job_path(Dir::Running, &name);
            if std::fs::symlink_metadata(&path).is_err()
                && !self.ended(name.id)
                && self.unreadable.insert(format!("running/{name}"))
            {
                tracing::warn!(
                    job = %name,
                    "{} was removed by hand while its install runs; the install goes on and its \
                     outcome will be recorded when it ends (cancel it with `spack-installer cancel {}`)",
                    path.display(),
                    name.id
                );
            }
        }
    }
}
