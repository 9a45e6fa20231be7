//! The dispatch stage: what runs next. It asks the [`scheduler`] for a
//! plan of the queue when something the plan depends on changed, keeps its ready jobs for
//! a moment ([`PLAN_REUSE`]), and starts the best of them while slots, the memory and
//! disk guards and the jobserver allow (`start_job`: pending → running, then Spack). It
//! also stops installs past their deadline. It never records how a job ended: that is
//! the finish stage's.

use super::cluster::WAITING_FOR_SLURM;
use super::{Event, Running, StopReason, Worker, append_log, recovery};
use crate::config::DependencyFailure;
use crate::executor::local::with_makeflags;
use crate::executor::{Exit, Handle, Launch, budget, clean_env};
use crate::job::{Job, JobId, State};
use crate::scheduler::{Policy, QueueState};
use crate::spool::transition::Durable::Content;
use crate::spool::transition::{move_job_as, rewrite_as};
use crate::spool::{Dir, JOB_MARKER_ENV, Spool};
use crate::time::Timestamp;
use crate::{queue, scheduler};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The ready jobs of a plan, best first (see [`Worker::schedule`]).
pub(super) struct PlanCache {
    ready: VecDeque<JobId>,
    made: Instant,
}

/// How long the ready jobs of a plan may be taken without planning again, when nothing
/// they depend on changed: long enough that a deep queue of short jobs is not re-ranked
/// for every install, short next to any aging the ranking knows (hours).
const PLAN_REUSE: Duration = Duration::from_secs(1);

impl Worker {
    pub(super) fn policy(&self) -> Policy {
        Policy {
            max_parallel: self.slots(),
            default_estimate: self.cfg.default_estimate.value,
            overdue_after: self.cfg.overdue_after.value,
            timeout_multiplier: self.cfg.timeout_multiplier.value,
            ..Policy::default()
        }
    }

    pub(super) fn queue_state(&self) -> QueueState {
        let fresh_after = self.fresh_after();
        queue::build(
            &self.spool,
            self.pending
                .values()
                .filter(|j| self.schedulable(j, fresh_after)),
            self.running.values().map(|r| &r.job),
            &self.finished,
            &mut self.history.borrow_mut(),
        )
    }

    /// Start the best ready jobs while slots are free. A full plan is made when the
    /// queue changed; when only an install ended that no pending job cares about, the
    /// ready jobs of the last plan are still ready and still in the same order (no
    /// other job's readiness, chain or estimate depends on it), so they are taken from
    /// it, for at most [`PLAN_REUSE`] (after which aging may reorder them, and fair-share
    /// turns catch up with the installs that ended: until then the owner whose install
    /// ended still counts it as a turn taken, which only favours the others). A long
    /// queue then costs one plan per second, not one per install.
    pub(super) fn schedule(&mut self) {
        if self.backoff_until.is_some() || !self.dirty {
            return;
        }
        // Slurm refused the last job: try again once the wait is over (still dirty).
        if self.cluster_retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        self.cluster_retry_at = None;
        // One start at a time runs aside (an sbatch): its answer comes first (still dirty).
        if self.executor.starting() {
            return;
        }
        self.dirty = false;
        if self.paused || self.draining {
            // Paused says why nothing starts; a guard is checked again on resume.
            self.set_waiting(None);
            if let Some(js) = &mut self.jobserver {
                js.settle();
            }
            // Still fail doomed jobs: waiting cannot save them.
            if self.plan_cache.is_none() {
                self.plan_afresh();
            }
            return;
        }
        let now = Instant::now();
        if self
            .plan_cache
            .as_ref()
            .is_none_or(|c| now >= c.made + PLAN_REUSE)
        {
            self.plan_afresh();
        }
        let free = self.slots().saturating_sub(self.running.len());
        let mut starts = VecDeque::new();
        if let Some(c) = &mut self.plan_cache {
            while starts.len() < free
                && let Some(id) = c.ready.pop_front()
            {
                if self.pending.contains_key(&id) {
                    starts.push_back(id);
                }
            }
        }
        if starts.is_empty() {
            self.set_waiting(None);
            if let Some(js) = &mut self.jobserver {
                js.settle();
            }
            return;
        }
        let why = self.cfg.guards().why_wait();
        if why.is_some() {
            self.unstart(starts);
            return self.set_waiting(why);
        }
        self.set_waiting(None);
        while let Some(id) = starts.front().copied() {
            // Each install but the first needs a token; the helper thread's `Token`
            // event makes the worker try again.
            if let Some(js) = &mut self.jobserver
                && !js.admit()
            {
                break;
            }
            starts.pop_front();
            if self.jobserver.is_some() {
                self.admitted.insert(id);
            }
            let busy = self.running.len() + 1 + starts.len();
            self.start_job(id, busy);
        }
        if starts.is_empty() {
            if let Some(js) = &mut self.jobserver {
                js.settle();
            }
        } else {
            self.unstart(starts);
        }
    }

    /// Put jobs taken from the plan back at its front, in order, for the next try.
    fn unstart(&mut self, ids: VecDeque<JobId>) {
        if let Some(c) = &mut self.plan_cache {
            for id in ids.into_iter().rev() {
                c.ready.push_front(id);
            }
        }
    }

    fn set_waiting(&mut self, why: Option<String>) {
        if self.waiting != why {
            match &why {
                Some(w) => tracing::warn!("no install starts: {w}"),
                None if self.waiting.is_some() => tracing::info!("installs may start again"),
                None => {}
            }
            self.waiting = why;
            self.status_changed();
        }
    }

    /// Plan from the whole queue; fail the doomed jobs (as configured) and plan again if
    /// there were any; keep the ready jobs in [`Worker::plan_cache`].
    fn plan_afresh(&mut self) {
        self.resolve_links();
        let fail_doomed = self.cfg.on_dependency_failure.value == DependencyFailure::Fail;
        let q = self.queue_state();
        let plan = scheduler::plan(&q, Timestamp::now(), &self.policy());
        let doomed: Vec<(JobId, String)> = plan
            .doomed()
            .map(|(r, why)| (r.id, why.to_string()))
            .collect();
        let mut ready = plan.to_start(0, usize::MAX);
        if fail_doomed && !doomed.is_empty() {
            for (id, why) in doomed {
                self.fail_pending(id, why);
            }
            // Failing them may have changed what is ready.
            let q = self.queue_state();
            ready = scheduler::plan(&q, Timestamp::now(), &self.policy()).to_start(0, usize::MAX);
        }
        self.plan_cache = Some(PlanCache {
            ready: ready.into(),
            made: Instant::now(),
        });
    }

    /// `busy`: how many installs run or start now, this one included (for its `-j`).
    fn argv(&self, job: &Job, busy: usize) -> Vec<String> {
        let mut argv = vec![self.spack.clone(), "install".to_string()];
        let jobs = match &self.jobserver {
            Some(js) => Some(budget::share(js.cpus(), busy) as u32),
            None => self.cfg.spack_jobs(busy),
        };
        if let Some(j) = jobs.filter(|_| !self.opts.dry_run) {
            argv.extend(["-j".to_string(), j.to_string()]);
        }
        argv.extend(self.cfg.install_args.value.iter().cloned());
        // What was checked is what is built: the concrete spec, while it is fresh.
        match self.concrete_file(job) {
            Some(file) => argv.extend(["-f".to_string(), file.display().to_string()]),
            None => argv.push(job.spec_canonical().to_string()),
        }
        argv
    }

    /// *start*: move pending → running, rewrite, then run Spack.
    fn start_job(&mut self, id: JobId, busy: usize) {
        let Some(mut job) = self.pending.get(&id).cloned() else {
            return self.release(id);
        };
        let name = job.name();
        // Neither step of *start* is fsynced to its directory: a power cut that undoes
        // them finds the job back in pending/ (spool-layout.md, *Durability*).
        if let Err(e) = move_job_as(&self.spool, &name, Dir::Pending, Dir::Running, Content) {
            // Gone (an admin moved it) or an I/O error: forget it, mtime included, so the
            // rescan after the back-off reads pending/ afresh and finds it if it is there.
            self.pending.remove(&id);
            self.release(id);
            self.pending_mtime.remove(&id);
            return self.io_error(e);
        }
        self.pending.remove(&id);
        self.pending_mtime.remove(&id);
        let now = Timestamp::now();
        job.state.state = State::Running;
        job.state.since = now;
        job.state.attempts += 1;
        job.state.started_at = Some(now);
        self.metrics.started(&job, now);
        job.state.argv = self.argv(&job, busy);
        job.state.log = Some(Spool::log_rel(&name));
        // Before sbatch: a crash before its job ID is written is then found by name.
        job.state.slurm = self.executor.mark();
        if job
            .state
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with(WAITING_FOR_SLURM))
        {
            job.state.reason = None;
        }
        if let Err(e) = rewrite_as(&self.spool, Dir::Running, &job, Content) {
            // The file is in running/ marked pending: recovery's rule moves it back.
            let mut r = recovery::Recovered::default();
            let _ = recovery::resolve_running(&self.spool, &name, &mut r);
            let _ = self.reload_pending();
            self.release(id);
            return self.io_error(e);
        }
        let log = self.spool.log_path(&name);
        let launch = Launch {
            name: name.to_string(),
            argv: job.state.argv.clone(),
            log: log.clone(),
            env: clean_env(
                &self.cfg.env_allow.value,
                (JOB_MARKER_ENV, self.spool.job_marker(&name)),
            ),
            attempt: job.state.attempts,
            timeout: None,
            jobserver: None,
        };
        let launch = match &self.jobserver {
            Some(js) => Launch {
                env: with_makeflags(launch.env, js.makeflags()),
                jobserver: Some(js.fds()),
                ..launch
            },
            None => launch,
        };
        if let Some(n) = budget::oom_kills() {
            self.oom_base.insert(id, n);
        }
        append_log(
            &log,
            &format!(
                "==> spack-installer: {name} attempt {} started {now}\n==> spack-installer: argv {}\n",
                job.state.attempts,
                serde_json::to_string(&launch.argv).unwrap_or_default()
            ),
        );
        let timeout = self.cfg.job_timeout(
            job.submission().and_then(|s| s.timeout),
            job.submission().and_then(|s| s.estimated_time),
        );
        let launch = Launch { timeout, ..launch };
        // A batch system counts the time limit from the job's start, not from its wait.
        let timeout = timeout.filter(|_| !self.executor.limits_time());
        let tx = self.tx.clone();
        let started = Instant::now();
        tracing::info!(job_id = id.0, job = %name, attempt = job.state.attempts, "starting: {}", launch.argv.join(" "));
        match self.executor.start(
            &launch,
            Box::new(move |exit| {
                let _ = tx.send(Event::Exited { id, exit });
            }),
        ) {
            Ok(handle) => {
                self.record_placement(&mut job, &handle);
                self.running.insert(
                    id,
                    Running::new(job, handle, started, timeout.map(|t| started + t)),
                );
                self.status_changed();
            }
            Err(e) => {
                append_log(
                    &log,
                    &format!("==> spack-installer: could not start: {e}\n"),
                );
                self.running.insert(
                    id,
                    Running::new(
                        job,
                        Handle {
                            pgid: None,
                            slurm: None,
                        },
                        started,
                        None,
                    ),
                );
                self.on_exit(id, Exit::NotStarted);
            }
        }
    }

    pub(super) fn enforce_deadlines(&mut self) {
        let now = Instant::now();
        let grace = self.cfg.kill_grace.value;
        for r in self.running.values_mut() {
            if r.stop.is_none()
                && let Some(d) = r.deadline.filter(|d| now >= *d)
            {
                let after = d - r.started;
                tracing::warn!(job = %r.job.meta.name, "timed out after {}", humantime::format_duration(Duration::from_secs(after.as_secs())));
                r.stop = Some(StopReason::Timeout(after));
                r.term_sent = Some(now);
                self.executor.stop(&r.handle, false);
            }
            if let Some(t) = r.term_sent
                && !r.killed
                && now >= t + grace
            {
                r.killed = true;
                self.executor.stop(&r.handle, true);
            }
        }
    }

    /// The install `id` no longer runs: its jobserver token goes back (once).
    pub(super) fn release(&mut self, id: JobId) {
        if self.admitted.remove(&id)
            && let Some(js) = &mut self.jobserver
            && let Err(e) = js.release()
        {
            tracing::error!("cannot renew the jobserver pipe: {e}");
        }
    }

    /// How many installs may run at once: the executor's own limit (Slurm's
    /// `max_jobs`: the worker runs nothing itself then), else `max_parallel`.
    pub(super) fn slots(&self) -> usize {
        self.executor
            .max_jobs()
            .unwrap_or(self.cfg.max_parallel.value)
    }
}
