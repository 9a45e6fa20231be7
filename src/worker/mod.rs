//! The worker: one process per spool, holding the singleton lock. It recovers the spool
//! ([`recovery`]), learns of new files by inotify with a periodic rescan as the safety
//! net ([`watch`]), takes them in, asks the [`scheduler`](crate::scheduler) what to run,
//! and moves each job through the states while an [`Executor`] runs Spack.
//!
//! Everything happens on the main thread, driven by one channel of [`Event`]s (file
//! events, signals, install exits, Spack's and Slurm's answers); other threads only
//! send. Nothing that may wait on Spack or Slurm runs on this thread. The loop sleeps in
//! `recv_timeout` until the next event or deadline: no polling on the hot path. It must
//! never start an install from another thread (see `executor::local` on PDEATHSIG).
//!
//! Local installs share one build budget (`executor::budget`): each gets a `-j` share of
//! `cpus` and joins the worker's jobserver, and none starts while free memory or disk is
//! below its guard (the reason is in `worker.toml`; it is checked again at every wake-up).
//!
//! The worker is a pipeline of stages, each an `impl Worker` block in a file of its own
//! that changes for one reason; this file holds the struct, [`Worker::start`], and the
//! loop ([`Worker::run`]) that only routes events and decides what runs next:
//!
//! - `intake`: scans and claims of `incoming/`, judging job files, receipts, the
//!   intake side of requests, and `pending/` as the disk has it;
//! - [`concretize`]: what Spack says a pending job will build, in lanes of its own;
//! - `dispatch`: plans from the [`scheduler`], starts, slots, the
//!   build budget's guards, deadlines;
//! - `finish`: how a job ends (an install's exit, or no install), recorded from the disk;
//! - `requests`: cancel, priority, pause, resume;
//! - `status`: `worker.toml`, `metrics.prom` and the watchdog;
//! - `cluster`: the Slurm glue (re-attach, `sbatch`'s answers, tracking, the back-off
//!   after a refusal);
//! - [`signals`]: what a signal does; [`recovery`] at start; after a job ends,
//!   [`hooks`] and [`mail`].

mod cluster;
pub mod concretize;
mod dispatch;
mod finish;
pub mod hooks;
mod intake;
pub mod mail;
pub mod metrics;
pub mod notify;
pub mod recovery;
mod requests;
pub mod signals;
mod status;
pub mod watch;

use crate::config::{Config, ExecutorKind};
use crate::error::{Error, IoContext, Result};
use crate::executor::budget::Jobserver;
use crate::executor::dry_run::DryRunExecutor;
use crate::executor::local::LocalExecutor;
use crate::executor::slurm::SlurmExecutor;
use crate::executor::{Executor, Exit, Handle};
use crate::job::{Job, JobId};
use crate::queue::FinishedIndex;
use crate::spool::lock::WorkerLock;
use crate::spool::status::{Paused, WorkerState, WorkerStatus};
use crate::spool::{Dir, Spool, layout, store};
use crate::time::Timestamp;
use crate::{identity, scheduler};
use cluster::CLUSTER_BACKOFF_MIN;
use dispatch::PlanCache;
use status::RECENT;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// Files found by a rescan (not named by an event) must be this old, so a file that a
/// `cp` is still writing is not taken early.
pub const SETTLE: Duration = Duration::from_secs(2);
/// How often the worker removes old receipts (and once at start).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// What wakes the loop.
#[derive(Debug)]
pub enum Event {
    /// inotify named these `incoming/` entries.
    Incoming(Vec<String>),
    /// inotify lost events: look at everything.
    Rescan,
    Signal(i32),
    Exited {
        id: JobId,
        exit: Exit,
    },
    /// A concretization lane has Spack's answer about a job.
    Concretized {
        id: JobId,
        found: concretize::Found,
        /// How long Spack took to answer.
        took: Duration,
    },
    /// The jobserver has a token for the install that waited for one.
    Token,
    /// A start that ran aside (a Slurm submission) has its answer.
    Submitted,
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Exit 0 once nothing is runnable (and nothing runs).
    pub until_idle: bool,
    /// Run nothing: log the argv instead.
    pub dry_run: bool,
    /// Do not use inotify; rely on the periodic rescan alone.
    pub no_inotify: bool,
    pub config_path: Option<PathBuf>,
}

/// Why the worker is stopping a running install.
#[derive(Debug, Clone)]
enum StopReason {
    Cancel { by: String },
    Timeout(Duration),
    Shutdown,
}

struct Running {
    job: Job,
    handle: Handle,
    started: Instant,
    deadline: Option<Instant>,
    stop: Option<StopReason>,
    /// When SIGTERM was sent; SIGKILL follows after the grace period.
    term_sent: Option<Instant>,
    killed: bool,
}

impl Running {
    /// An install that started (or was found running) at `started`, not being stopped.
    fn new(job: Job, handle: Handle, started: Instant, deadline: Option<Instant>) -> Running {
        Running {
            job,
            handle,
            started,
            deadline,
            stop: None,
            term_sent: None,
            killed: false,
        }
    }
}

pub struct Worker {
    spool: Spool,
    cfg: Config,
    opts: Options,
    executor: Box<dyn Executor>,
    spack: String,
    tx: Sender<Event>,
    rx: Receiver<Event>,
    _lock: WorkerLock,
    _watcher: Option<::notify::RecommendedWatcher>,
    pending: BTreeMap<JobId, Job>,
    /// mtime of each pending file as loaded, to notice hand edits on rescan.
    pending_mtime: HashMap<JobId, i64>,
    unreadable: HashSet<String>,
    running: BTreeMap<JobId, Running>,
    finished: FinishedIndex,
    /// Estimates from past installs, read from `done/` once per package and new job.
    history: std::cell::RefCell<crate::history::History>,
    next_id: u64,
    /// IDs reserved in `counter` but not yet used.
    reserved_until: u64,
    recent: VecDeque<String>,
    paused: bool,
    draining: bool,
    started_at: Timestamp,
    last_rescan: Instant,
    last_heartbeat: Instant,
    /// A change not yet in `worker.toml`, to be written by then (see `status_changed`).
    status_due: Option<Instant>,
    /// After an I/O error: do nothing risky until then.
    backoff_until: Option<Instant>,
    backoff: Duration,
    /// Claims whose record could not be written yet (an I/O error): retried after backoff.
    stuck_claims: Vec<(JobId, String)>,
    /// `incoming/` entries found but left for the next pass of intake
    /// (`intake::INTAKE_BATCH`).
    intake_backlog: Vec<String>,
    /// The queue changed since the last plan (a plan is made only then).
    dirty: bool,
    /// The ready jobs of the last plan, best first, while nothing they depend on has
    /// changed: see [`Worker::schedule`].
    plan_cache: Option<PlanCache>,
    /// When old receipts were last removed.
    last_prune: Instant,
    /// When files skipped as unsettled by the last scan will have settled.
    settle_scan_at: Option<Instant>,
    /// Install exits whose outcome could not be recorded yet: retried after backoff.
    deferred_exits: Vec<(JobId, Exit)>,
    worker_uid: u32,
    spool_gid: u32,
    /// The concretization stage's lanes (`concretize`).
    lanes: concretize::Lanes,
    /// The CPU budget of local installs (none for dry runs and Slurm).
    jobserver: Option<Jobserver>,
    /// Installs the jobserver counts (released once each, at their end).
    admitted: HashSet<JobId>,
    /// Why no install may start now (a memory or disk guard), for `worker.toml`.
    waiting: Option<String>,
    /// The kernel's OOM kill count when each install started.
    oom_base: HashMap<JobId, u64>,
    /// Runs `on_finish` and sends mail, off this loop (see [`hooks`]).
    notifier: hooks::Notifier,
    metrics: metrics::Metrics,
    /// Slurm did not take the last job (see [`Worker::cluster_unavailable`]): start
    /// nothing before then.
    cluster_retry_at: Option<Instant>,
    /// The wait after the next refusal: doubles, up to `cluster::CLUSTER_BACKOFF_MAX`.
    cluster_backoff: Duration,
    /// Told to stop and leave the installs in Slurm running (SIGUSR1).
    detaching: bool,
}

impl Worker {
    /// Take the lock, recover the spool, and get ready to run.
    pub fn start(spool: Spool, cfg: Config, opts: Options) -> Result<Worker> {
        let root_meta = std::fs::metadata(spool.root()).map_err(|e| {
            Error::Other(format!(
                "cannot use the spool {}: {e}; create it with `spack-installer --spool {} init`",
                spool.root().display(),
                spool.root().display()
            ))
        })?;
        // A spool made before quarantine/ and concrete/ existed gets them from its worker
        // (which owns the spool root), not a refusal to start.
        for d in [Dir::Quarantine, Dir::Concrete] {
            let path = spool.dir(d);
            if !path.is_dir() {
                use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
                std::fs::DirBuilder::new()
                    .mode(d.mode())
                    .create(&path)
                    .and_then(|_| {
                        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(d.mode()))
                    })
                    .at("create", &path)?;
            }
        }
        for d in Dir::ALL {
            if !spool.dir(d).is_dir() {
                return Err(Error::Other(format!(
                    "{} is missing; repair the spool with `spack-installer --spool {} init`",
                    spool.dir(d).display(),
                    spool.root().display()
                )));
            }
        }
        let lock = WorkerLock::acquire(&spool)?;
        if let Some(w) = layout::network_fs_warning(spool.root()) {
            tracing::warn!("{w}");
        }
        let (tx, rx) = mpsc::channel();
        let watcher = if opts.no_inotify {
            tracing::info!(
                "inotify disabled: relying on the rescan every {:?}",
                cfg.check_interval.value
            );
            None
        } else {
            match watch::watch(&spool.dir(Dir::Incoming), tx.clone()) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(
                        "cannot watch {} ({e}); relying on the rescan every {:?}",
                        spool.dir(Dir::Incoming).display(),
                        cfg.check_interval.value
                    );
                    None
                }
            }
        };
        signals::forward(tx.clone()).at("install signal handlers for", spool.root())?;
        let mut executor = choose_executor(&spool, &cfg, &opts)?;
        let wake = tx.clone();
        executor.set_waker(std::sync::Arc::new(move || {
            let _ = wake.send(Event::Submitted);
        }));
        let spack = resolve_spack(&cfg, opts.dry_run)?;
        let jobserver = if opts.dry_run || cfg.executor.value != ExecutorKind::Local {
            None
        } else {
            let wake = tx.clone();
            Some(
                Jobserver::new(cfg.cpus(), move || {
                    let _ = wake.send(Event::Token);
                })
                .at("create the jobserver pipe for", spool.root())?,
            )
        };
        let now = Instant::now();
        let spool_for_metrics = spool.clone();
        let mut w = Worker {
            spool,
            cfg,
            opts,
            executor,
            spack,
            tx,
            rx,
            _lock: lock,
            _watcher: watcher,
            pending: BTreeMap::new(),
            pending_mtime: HashMap::new(),
            unreadable: HashSet::new(),
            running: BTreeMap::new(),
            finished: FinishedIndex::default(),
            history: Default::default(),
            next_id: 1,
            reserved_until: 0,
            recent: VecDeque::new(),
            paused: false,
            draining: false,
            started_at: Timestamp::now(),
            last_rescan: now,
            last_heartbeat: now,
            status_due: None,
            backoff_until: None,
            backoff: Duration::from_secs(1),
            stuck_claims: Vec::new(),
            intake_backlog: Vec::new(),
            settle_scan_at: None,
            last_prune: now,
            dirty: true,
            plan_cache: None,
            deferred_exits: Vec::new(),
            worker_uid: identity::current_uid(),
            spool_gid: root_meta.gid(),
            lanes: concretize::Lanes::new(),
            jobserver,
            admitted: HashSet::new(),
            waiting: None,
            oom_base: HashMap::new(),
            notifier: hooks::Notifier::start(),
            metrics: metrics::Metrics::load(&spool_for_metrics)?,
            cluster_retry_at: None,
            cluster_backoff: CLUSTER_BACKOFF_MIN,
            detaching: false,
        };
        // The last finished jobs, from the previous worker's status, before it is replaced.
        if let Some(old) = WorkerStatus::read(&w.spool) {
            w.recent = old.recent.into_iter().take(RECENT).collect();
        }
        w.write_status(WorkerState::Starting);
        let rec = recovery::recover(&w.spool)?;
        for a in &rec.actions {
            tracing::warn!("recovery: {a}");
        }
        w.next_id = rec.next_id;
        w.reserved_until = rec.next_id;
        w.reattach_all(rec.in_slurm)?;
        w.load_finished()?;
        w.reload_pending()?;
        w.process_claims(rec.claims);
        for ticket in rec.requests {
            w.process_request(&ticket);
        }
        w.paused = Paused::read(&w.spool).is_some();
        tracing::info!(
            spool = %w.spool.root().display(),
            pending = w.pending.len(),
            executor = w.executor.kind(),
            spack = %w.spack,
            max_parallel = w.cfg.max_parallel.value,
            cpus = w.jobserver.as_ref().map(Jobserver::cpus),
            "worker started"
        );
        Ok(w)
    }

    /// Run until told to stop (or, with `until_idle`, until nothing is runnable).
    pub fn run(mut self) -> Result<()> {
        self.prune_receipts();
        self.intake_scan(Some(SETTLE));
        self.write_status(self.current_state());
        notify::ready();
        loop {
            self.schedule();
            self.concretize_pump();
            if self.should_exit() {
                break;
            }
            let timeout = self.next_wakeup().saturating_duration_since(Instant::now());
            let first = match self.rx.recv_timeout(timeout) {
                Ok(ev) => Some(ev),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut names: Vec<String> = Vec::new();
            let mut rescan = false;
            let mut events: Vec<Event> = first.into_iter().collect();
            events.extend(self.rx.try_iter());
            for ev in events {
                match ev {
                    Event::Incoming(n) => names.extend(n),
                    Event::Rescan => rescan = true,
                    Event::Signal(s) => self.on_signal(s),
                    Event::Exited { id, exit } => self.on_exit(id, exit),
                    Event::Concretized { id, found, took } => self.on_concretized(id, found, took),
                    Event::Token => self.dirty = true,
                    Event::Submitted => self.on_submitted(),
                }
            }
            let now = Instant::now();
            // With --until-idle a timeout may mean a file has settled: look again.
            if now >= self.last_rescan + self.cfg.check_interval.value
                || self.settle_scan_at.is_some_and(|t| now >= t)
            {
                rescan = true;
            }
            if self.backoff_until.is_some_and(|t| now < t) {
                continue;
            }
            // The back-off is over: retry now, from what is on disk (the log said "retrying
            // in 1s"; the next periodic rescan may be minutes away).
            if self.backoff_until.take().is_some() {
                rescan = true;
                self.retry_claims();
            }
            if !self.stuck_claims.is_empty() {
                let claims = std::mem::take(&mut self.stuck_claims);
                self.process_claims(claims);
            }
            for (id, exit) in std::mem::take(&mut self.deferred_exits) {
                self.on_exit(id, exit);
            }
            if rescan {
                self.last_rescan = now;
                self.paused = Paused::read(&self.spool).is_some();
                if let Err(e) = self.reload_pending() {
                    self.io_error(e);
                }
                // Claims left in tmp/ by a step that failed are found on every rescan too.
                self.retry_claims();
                self.intake_scan(Some(SETTLE));
                self.track_cluster();
                self.check_running_files();
                if now >= self.last_prune + PRUNE_EVERY {
                    self.prune_receipts();
                }
            } else if !names.is_empty() || !self.intake_backlog.is_empty() {
                self.intake(names);
            }
            self.enforce_deadlines();
            // A guard is checked again at every wake-up (events, rescans, heartbeats).
            if self.waiting.is_some() {
                self.dirty = true;
            }
            if now
                >= self.last_heartbeat + notify::heartbeat_every(self.cfg.heartbeat_interval.value)
                || self.status_due.is_some_and(|t| now >= t)
            {
                self.write_status(self.current_state());
            }
        }
        // Installs that ended but whose outcome could not be recorded (a failing disk):
        // one last try, else the next start's recovery finishes them from running/.
        for (id, exit) in std::mem::take(&mut self.deferred_exits) {
            self.on_exit(id, exit);
        }
        // The hooks of the jobs that ended run before the lock is released.
        self.notifier.finish();
        self.write_status(WorkerState::Stopped);
        tracing::info!("worker stopped");
        Ok(())
    }

    /// Whether the install of `id` has ended and only its outcome waits to be recorded.
    fn ended(&self, id: JobId) -> bool {
        self.deferred_exits.iter().any(|(i, _)| *i == id)
    }

    fn should_exit(&self) -> bool {
        // The installs stay in Slurm, recorded in running/: the next worker re-attaches.
        // An sbatch on its way is waited for (at most a minute), so its job ID is
        // written and the next worker need not look for it. A search for a previous
        // worker's job is not: the next worker searches again.
        if self.detaching {
            return !self.executor.submitting();
        }
        // An install that has ended and waits only for its outcome to be written does not
        // hold up a stop: the last try after the loop, or the next start, records it.
        if self.draining && self.running.keys().all(|id| self.ended(*id)) {
            return true;
        }
        if !self.running.is_empty() || !self.concretize_idle() {
            return false;
        }
        if self.opts.until_idle {
            // Not idle while something waits for a retry: a claim without a record, an
            // outcome not yet written, a job dropped from memory by a failed start.
            if self.backoff_until.is_some()
                || !self.stuck_claims.is_empty()
                || !self.deferred_exits.is_empty()
                || crate::spool::intake::leftover_claims(&self.spool).is_ok_and(|c| {
                    // Only claims still without a job: one whose job exists is litter a
                    // failed unlink left (reported), not a job waiting.
                    c.iter()
                        .any(|(id, _)| store::locate(&self.spool, *id).is_ok_and(|l| l.is_none()))
                })
            {
                return false;
            }
            let incoming = crate::spool::intake::candidates(&self.spool, None)
                .map(|(c, _)| c.is_empty())
                .unwrap_or(true);
            let runnable = !self.paused && {
                let q = self.queue_state();
                !scheduler::plan(&q, Timestamp::now(), &self.policy())
                    .to_start(0, 1)
                    .is_empty()
            };
            return incoming && !runnable;
        }
        false
    }

    fn next_wakeup(&self) -> Instant {
        // While backing off, nothing but events is acted on: sleep until it ends (the
        // rescan deadline is already past then, and would make the wait a spin).
        if let Some(b) = self.backoff_until {
            return b;
        }
        if !self.intake_backlog.is_empty() {
            return Instant::now();
        }
        let mut t = self.last_rescan + self.cfg.check_interval.value;
        t = t.min(self.last_heartbeat + notify::heartbeat_every(self.cfg.heartbeat_interval.value));
        if let Some(b) = self.backoff_until {
            t = t.min(b);
        }
        if let Some(b) = self.settle_scan_at {
            t = t.min(b);
        }
        if let Some(b) = self.status_due {
            t = t.min(b);
        }
        if let Some(b) = self.cluster_retry_at {
            t = t.min(b);
        }
        for r in self.running.values() {
            if let Some(d) = r.deadline {
                t = t.min(d);
            }
            if let Some(s) = r.term_sent {
                t = t.min(s + self.cfg.kill_grace.value);
            }
        }
        t
    }

    fn io_error(&mut self, e: Error) {
        if self.backoff_until.is_none() {
            tracing::error!("{e}; retrying in {:?}", self.backoff);
        }
        self.backoff_until = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(Duration::from_secs(60));
    }

    /// Back off as after an I/O error that was already reported.
    fn io_error_quiet(&mut self) {
        self.backoff_until = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(Duration::from_secs(60));
    }

    fn io_ok(&mut self) {
        self.backoff = Duration::from_secs(1);
    }

    /// Something the plan depends on changed: plan afresh before starting anything.
    fn changed(&mut self) {
        self.dirty = true;
        self.plan_cache = None;
        self.lanes.look = true;
    }
}

/// The executor: dry-run, local child processes, or Slurm batch jobs.
fn choose_executor(spool: &Spool, cfg: &Config, opts: &Options) -> Result<Box<dyn Executor>> {
    Ok(if opts.dry_run {
        Box::new(DryRunExecutor)
    } else {
        match cfg.executor.value {
            ExecutorKind::Local => Box::new(LocalExecutor),
            ExecutorKind::Slurm => {
                Box::new(SlurmExecutor::new(spool, cfg, opts.config_path.clone())?)
            }
        }
    })
}

/// The Spack to run: resolved from the config; in dry-run mode a missing Spack is fine.
fn resolve_spack(cfg: &Config, dry_run: bool) -> Result<String> {
    match cfg.resolve_spack() {
        Ok((p, how)) => {
            tracing::debug!("using {} ({how})", p.display());
            Ok(p.display().to_string())
        }
        Err(_) if dry_run => Ok("spack".to_string()),
        Err(e) => Err(e),
    }
}

fn append_log(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(crate::spool::FILE_MODE)
        .open(path)
    {
        let _ = f.write_all(text.as_bytes());
    }
}
