//! The worker: one process per spool, holding the singleton lock. It recovers the spool
//! ([`recovery`]), learns of new files by inotify with a periodic rescan as the safety
//! net ([`watch`]), takes them in, asks the [`scheduler`](crate::scheduler) what to run,
//! and moves each job through the states while an [`Executor`] runs Spack.
//!
//! Everything happens on the main thread, driven by one channel of [`Event`]s (file
//! events, signals, install exits); other threads only send. The loop sleeps in
//! `recv_timeout` until the next event or deadline: no polling on the hot path. It must
//! never start an install from another thread (see `executor::local` on PDEATHSIG).
//!
//! Local installs share one build budget (`executor::budget`): each gets a `-j` share of
//! `cpus` and joins the worker's jobserver, and none starts while free memory or disk is
//! below its guard (the reason is in `worker.toml`; it is checked again at every wake-up).

mod cluster;
pub mod concretize;
mod dispatch;
mod finish;
pub mod hooks;
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
use crate::job::{Job, JobFile, JobId, JobName, State};
use crate::queue::FinishedIndex;
use crate::scheduler::{PendingJob, Readiness};
use crate::spool::intake::Verdict;
use crate::spool::lock::WorkerLock;
use crate::spool::status::{Paused, WorkerState, WorkerStatus};
use crate::spool::{COUNTER_FILE, Dir, Spool, intake, layout, store, transition};
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
/// How many `incoming/` entries one pass of intake takes before the loop plans and starts
/// jobs again; the rest wait for the next pass, at once. Owners take turns within a pass
/// ([`fair_order`]).
const INTAKE_BATCH: usize = 64;

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
    },
    /// The jobserver has a token for the install that waited for one.
    Token,
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
    /// `incoming/` entries found but left for the next pass of intake ([`INTAKE_BATCH`]).
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
    /// The wait after the next refusal: doubles, up to [`cluster::CLUSTER_BACKOFF_MAX`].
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
        let executor = choose_executor(&spool, &cfg, &opts)?;
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
                    Event::Concretized { id, found } => self.on_concretized(id, found),
                    Event::Token => self.dirty = true,
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
        self.write_status(WorkerState::Stopped);
        tracing::info!("worker stopped");
        Ok(())
    }

    /// Claims in `tmp/`, as the disk has them, after an I/O error: one whose record
    /// exists gets its receipt and is removed (intake's last steps); one without a record
    /// is taken in again. A half-failed batch is thereby finished from the directory, not
    /// from a list in memory that may have missed some.
    fn retry_claims(&mut self) {
        let claims = match intake::leftover_claims(&self.spool) {
            Ok(c) => c,
            Err(e) => return self.io_error(e),
        };
        for (id, ticket) in claims {
            if self.stuck_claims.iter().any(|(i, _)| *i == id) {
                continue;
            }
            match store::locate(&self.spool, id) {
                Ok(Some((dir, name))) => {
                    let done = store::read(&self.spool, dir, &name)
                        .and_then(|job| intake::finish(&self.spool, &job));
                    if let Err(e) = done {
                        return self.io_error(e);
                    }
                }
                Ok(None) => self.stuck_claims.push((id, ticket)),
                Err(e) => return self.io_error(e),
            }
        }
    }

    /// Whether the install of `id` has ended and only its outcome waits to be recorded.
    fn ended(&self, id: JobId) -> bool {
        self.deferred_exits.iter().any(|(i, _)| *i == id)
    }

    /// Receipts are a courtesy for `submit`: remove those older than a day (spool-layout.md,
    /// *Receipts*), so `receipts/` does not grow by one file per submission for ever. The
    /// temp files of killed submitters in `incoming/` go after a day too.
    fn prune_receipts(&mut self) {
        self.last_prune = Instant::now();
        match intake::old_receipts(&self.spool) {
            Ok(old) => {
                for path in old {
                    let _ = std::fs::remove_file(path);
                }
            }
            Err(e) => tracing::warn!("receipts not pruned: {e}"),
        }
        match intake::stale_temp_files(&self.spool) {
            Ok(old) => {
                for path in old {
                    match std::fs::remove_file(&path) {
                        Ok(()) => tracing::info!(
                            "removed {}: a submitter's temp file, untouched for a day",
                            path.display()
                        ),
                        Err(e) => tracing::warn!("cannot remove {}: {e}", path.display()),
                    }
                }
            }
            Err(e) => tracing::warn!("stale temp files not removed: {e}"),
        }
    }

    fn should_exit(&self) -> bool {
        // The installs stay in Slurm, recorded in running/: the next worker re-attaches.
        if self.detaching {
            return true;
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
                || intake::leftover_claims(&self.spool).is_ok_and(|c| {
                    // Only claims still without a job: one whose job exists is litter a
                    // failed unlink left (reported), not a job waiting.
                    c.iter()
                        .any(|(id, _)| store::locate(&self.spool, *id).is_ok_and(|l| l.is_none()))
                })
            {
                return false;
            }
            let incoming = intake::candidates(&self.spool, None)
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

    // ---- loading state -------------------------------------------------------------

    fn load_finished(&mut self) -> Result<()> {
        self.finished = FinishedIndex::load(&self.spool)?;
        Ok(())
    }

    /// Bring the in-memory pending set in line with `pending/` (an admin may add or
    /// remove files by hand). Only new or changed files are read.
    fn reload_pending(&mut self) -> Result<()> {
        // Hand edits, a config reload, the paused file, aging: a rescan re-plans.
        self.changed();
        let names = store::list(&self.spool, Dir::Pending)?;
        let present: HashSet<JobId> = names.iter().map(|n| n.id).collect();
        self.pending.retain(|id, _| present.contains(id));
        self.pending_mtime.retain(|id, _| present.contains(id));
        for name in names {
            let path = self.spool.job_path(Dir::Pending, &name);
            let mtime = std::fs::metadata(&path)
                .map(|m| m.mtime_nsec() + m.mtime() * 1_000_000_000)
                .unwrap_or(0);
            if self.pending_mtime.get(&name.id) == Some(&mtime) {
                continue;
            }
            match store::read_path(&path) {
                Ok(job) => {
                    self.pending.insert(name.id, job);
                    self.pending_mtime.insert(name.id, mtime);
                }
                Err(e) => {
                    if self.unreadable.insert(name.to_string()) {
                        tracing::error!("skipping {}: {e}", path.display());
                    }
                }
            }
        }
        Ok(())
    }

    // ---- intake --------------------------------------------------------------------

    fn intake_scan(&mut self, settle: Option<Duration>) {
        match intake::candidates(&self.spool, settle) {
            Ok((names, unsettled)) => {
                // Files still settling get another look once they have (their own
                // close event may have been among lost ones).
                self.settle_scan_at = unsettled.then(|| Instant::now() + SETTLE);
                self.intake(names)
            }
            Err(e) => self.io_error(e),
        }
    }

    fn intake(&mut self, mut names: Vec<String>) {
        names.append(&mut self.intake_backlog);
        names.sort();
        names.dedup();
        let mut names = fair_order(&self.spool, names);
        if names.len() > INTAKE_BATCH {
            self.intake_backlog = names.split_off(INTAKE_BATCH);
        }
        let (requests, jobs): (Vec<String>, Vec<String>) =
            names.into_iter().partition(|n| store::is_request_ticket(n));
        if !jobs.is_empty()
            && let Err(e) = self.reserve_ids(jobs.len() as u64)
        {
            return self.io_error(e);
        }
        let mut claims = Vec::new();
        for ticket in jobs {
            let id = JobId(self.next_id);
            match transition::claim(
                &self.spool,
                &ticket,
                &intake::claim_name(id, &ticket),
                false,
            ) {
                Ok(()) => {
                    self.next_id += 1;
                    claims.push((id, ticket));
                }
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) if systemic(&e) => {
                    self.io_error(e);
                    break;
                }
                // One entry that cannot be claimed (a name or a directory a member made
                // unmovable) must not hold up the files behind it.
                Err(e) => self.skip_entry(&ticket, e),
            }
        }
        if !claims.is_empty() {
            // One fsync of each directory for the whole batch, before any record exists.
            match transition::sync_claims(&self.spool) {
                Ok(()) => self.process_claims(claims),
                Err(e) => {
                    self.stuck_claims.extend(claims);
                    return self.io_error(e);
                }
            }
        }
        for ticket in requests {
            let claim = intake::request_claim_name(&ticket);
            match transition::claim(&self.spool, &ticket, &claim, true) {
                Ok(()) => self.process_request(&ticket),
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) if systemic(&e) => return self.io_error(e),
                Err(e) => self.skip_entry(&ticket, e),
            }
        }
    }

    /// Log (once per name) an `incoming/` entry that cannot be taken, and go on.
    fn skip_entry(&mut self, ticket: &str, e: Error) {
        if self.unreadable.insert(format!("incoming/{ticket}")) {
            tracing::warn!(ticket, "cannot take this entry, skipping it: {e}");
        }
    }

    /// Make sure `counter` is past the IDs about to be used (intake step 1).
    fn reserve_ids(&mut self, k: u64) -> Result<()> {
        if self.next_id + k <= self.reserved_until {
            return Ok(());
        }
        let until = self.next_id + k;
        let counter = self.spool.file(COUNTER_FILE);
        transition::replace(&self.spool, &counter, format!("{until}\n").as_bytes(), true)?;
        self.reserved_until = until;
        Ok(())
    }

    /// Intake steps 3–6 for claimed job files, as one batch: judge and write each record,
    /// fsync each directory once, then write the receipts and remove the claims. A claim
    /// that meets an I/O error waits in `stuck_claims` for the retry after the backoff.
    fn process_claims(&mut self, claims: Vec<(JobId, String)>) {
        let mut written: Vec<Job> = Vec::new();
        let mut dirs: Vec<Dir> = Vec::new();
        let mut rest = claims.into_iter();
        while let Some((id, ticket)) = rest.next() {
            let now = Timestamp::now();
            let (owner, verdict) = self.judge(id, &ticket, now);
            let job = intake::build(id, &ticket, owner, verdict, now);
            if let Err(e) = intake::write_record(&self.spool, &job, false) {
                self.stuck_claims.push((id, ticket));
                self.stuck_claims.extend(rest);
                self.io_error(e);
                break;
            }
            let dir = job.state.state.dir();
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
            let name = job.name();
            match job.state.state {
                State::Pending => {
                    tracing::info!(job_id = id.0, job = %name, owner = %job.meta.owner, spec = %job.spec_text(), "queued");
                    self.pending.insert(id, job.clone());
                    self.changed();
                }
                _ => {
                    tracing::warn!(job_id = id.0, job = %name, ticket = %ticket, "rejected: {}", job.state.reason.as_deref().unwrap_or(""));
                    self.remember_finished(&name);
                    self.job_ended(&job);
                }
            }
            written.push(job);
        }
        for d in dirs {
            if let Err(e) = transition::fsync_dir(&self.spool.dir(d)) {
                return self.io_error(e);
            }
        }
        for job in &written {
            // A claim left here is removed by the next start's recovery (its job exists).
            if let Err(e) = intake::finish(&self.spool, job) {
                self.io_error(e);
            }
        }
        if !written.is_empty() && self.stuck_claims.is_empty() {
            self.io_ok();
        }
        if !written.is_empty() {
            // The queue grew: metrics.prom counts pending jobs.
            self.status_changed();
        }
    }

    /// Intake step 3: open the claimed file safely and decide.
    fn judge(&self, id: JobId, ticket: &str, now: Timestamp) -> (Option<u32>, Verdict) {
        let path = self
            .spool
            .dir(Dir::Tmp)
            .join(intake::claim_name(id, ticket));
        if let Some(reason) = intake::bad_ticket_name(ticket) {
            let owner = std::fs::symlink_metadata(&path).ok().map(|m| m.uid());
            return (
                owner,
                Verdict::Reject {
                    reason,
                    original: intake::open_claimed(&path)
                        .map(|o| o.text)
                        .unwrap_or_default(),
                },
            );
        }
        match intake::open_claimed(&path) {
            Err(refused) => (
                refused.owner_uid,
                Verdict::Reject {
                    reason: refused.reason,
                    original: refused.original,
                },
            ),
            Ok(opened) => {
                let verdict = match self.check_owner(opened.owner_uid) {
                    Err(reason) => Verdict::Reject {
                        reason,
                        original: opened.text,
                    },
                    Ok(()) => match JobFile::parse_and_validate(&opened.text) {
                        Err(e) => Verdict::Reject {
                            reason: e.to_string(),
                            original: opened.text,
                        },
                        Ok(sub) => match self.check_queue(id, &sub, opened.owner_uid, now) {
                            Err(reason) => Verdict::Reject {
                                reason,
                                original: opened.text,
                            },
                            Ok(()) => Verdict::Accept(sub),
                        },
                    },
                };
                (Some(opened.owner_uid), verdict)
            }
        }
    }

    /// The owner of a submitted file must be root, the worker user, or in the spool's
    /// group: the kernel let them write `incoming/`, and we check again.
    fn check_owner(&self, uid: u32) -> Result<(), String> {
        if uid == 0 || uid == self.worker_uid || identity::is_member(uid, self.spool_gid) {
            Ok(())
        } else {
            Err(format!(
                "its owner {} is not in group {}; only members may submit",
                identity::user_name(uid),
                identity::group_name(self.spool_gid)
            ))
        }
    }

    /// Checks that need the queue: limits, references, cycles.
    fn check_queue(
        &self,
        id: JobId,
        sub: &crate::job::Submission,
        uid: u32,
        now: Timestamp,
    ) -> Result<(), String> {
        let limit = self.cfg.max_pending_per_user.value;
        if uid != 0 && uid != self.worker_uid {
            let mine = self
                .pending
                .values()
                .filter(|j| j.meta.owner_uid == uid)
                .count();
            if mine >= limit {
                return Err(format!(
                    "{} already has {mine} pending jobs; the limit is {limit} (max_pending_per_user)",
                    identity::user_name(uid)
                ));
            }
        }
        for a in &sub.after {
            if *a >= id {
                return Err(format!("after: there is no job {a} yet"));
            }
        }
        // A job that waits on nothing cannot close a cycle.
        if sub.dependencies.is_empty() && sub.after.is_empty() {
            return Ok(());
        }
        let mut q = self.queue_state();
        q.pending.push(PendingJob {
            id,
            name: JobName::new(id, sub.spec.package()).to_string(),
            package: sub.spec.package().to_string(),
            owner: identity::user_name(uid),
            priority: sub.priority,
            dependencies: sub.dependencies.clone(),
            after: sub.after.clone(),
            estimate: sub.estimated_time,
            timeout: sub.timeout,
            submitted_at: now,
        });
        let plan = scheduler::plan(&q, now, &self.policy());
        if let Some(r) = plan.order.iter().find(|r| r.id == id)
            && let Readiness::Doomed(why) = &r.status
            && why.starts_with("dependency cycle")
        {
            return Err(why.clone());
        }
        Ok(())
    }

    // ---- requests ------------------------------------------------------------------

    // ---- scheduling ----------------------------------------------------------------

    /// Something the plan depends on changed: plan afresh before starting anything.
    fn changed(&mut self) {
        self.dirty = true;
        self.plan_cache = None;
        self.lanes.look = true;
    }

    // ---- signals and status --------------------------------------------------------

    fn on_signal(&mut self, sig: i32) {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
        match sig {
            // Detaching: nothing left to stop (the unit's KillSignal follows its ExecStop).
            SIGTERM | SIGINT | SIGUSR1 if self.detaching => {}
            SIGUSR1 if self.executor.detaches() => {
                self.detaching = true;
                tracing::info!(
                    "stopping, leaving {} install(s) running in Slurm; the next worker re-attaches to them",
                    self.running.len()
                );
                self.write_status(WorkerState::Draining);
            }
            // Local installs cannot outlive the worker: the same as a first SIGTERM.
            SIGUSR1 => self.on_signal(SIGTERM),
            SIGHUP => match Config::load(self.opts.config_path.as_deref()) {
                Ok(cfg) => {
                    if let Err(e) = crate::logging::set_level(&cfg.log_level.value) {
                        tracing::error!("{e}; keeping the log level");
                    }
                    if cfg.executor.value != self.cfg.executor.value
                        || cfg.slurm.value != self.cfg.slurm.value
                    {
                        tracing::warn!(
                            "`executor` or `[slurm]` changed: that takes effect when the worker restarts"
                        );
                    }
                    if cfg.cpus.value != self.cfg.cpus.value {
                        tracing::warn!(
                            "`cpus` changed: the jobserver keeps its size until the worker restarts"
                        );
                    }
                    self.cfg = cfg;
                    self.changed();
                    match resolve_spack(&self.cfg, self.opts.dry_run) {
                        Ok(s) => self.spack = s,
                        Err(e) => tracing::error!("{e}; keeping {}", self.spack),
                    }
                    tracing::info!("configuration reloaded");
                }
                Err(e) => tracing::error!("configuration not reloaded: {e}"),
            },
            SIGTERM | SIGINT if !self.draining => {
                self.draining = true;
                if self.running.is_empty() {
                    tracing::info!("stopping");
                } else {
                    tracing::info!(
                        "stopping: waiting for {} running install(s) to finish; signal again to interrupt and requeue them",
                        self.running.len()
                    );
                }
                self.write_status(WorkerState::Draining);
            }
            SIGTERM | SIGINT => {
                tracing::info!(
                    "interrupting {} running install(s); they go back to pending/",
                    self.running.len()
                );
                let ended: Vec<JobId> = self.deferred_exits.iter().map(|(i, _)| *i).collect();
                for (id, r) in self.running.iter_mut() {
                    // Already ended: its outcome stands, it is not to be requeued.
                    if ended.contains(id) {
                        continue;
                    }
                    if !matches!(r.stop, Some(StopReason::Cancel { .. })) {
                        r.stop = Some(StopReason::Shutdown);
                    }
                    r.term_sent = Some(Instant::now());
                    self.executor.stop(&r.handle, false);
                }
            }
            _ => {}
        }
    }
}

/// The `incoming/` entries to take, owners taking turns: the first entry of each owner,
/// then the second of each, and so on (by name within one owner). Entries gone already
/// are left out. With [`INTAKE_BATCH`], a flood of files from one member costs another
/// member's job at most one batch of waiting, not the whole flood.
fn fair_order(spool: &Spool, names: Vec<String>) -> Vec<String> {
    let dir = spool.dir(Dir::Incoming);
    let mut by_owner: BTreeMap<u32, VecDeque<String>> = BTreeMap::new();
    let mut owners: Vec<u32> = Vec::new();
    for n in names {
        let Ok(m) = std::fs::symlink_metadata(dir.join(&n)) else {
            continue;
        };
        let q = by_owner.entry(m.uid()).or_default();
        if q.is_empty() {
            owners.push(m.uid());
        }
        q.push_back(n);
    }
    let mut out = Vec::new();
    loop {
        let before = out.len();
        for uid in &owners {
            if let Some(n) = by_owner.get_mut(uid).and_then(|q| q.pop_front()) {
                out.push(n);
            }
        }
        if out.len() == before {
            return out;
        }
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

/// An I/O error that concerns the whole file system (full, read-only, failing), as
/// opposed to one entry: the worker backs off instead of skipping.
fn systemic(e: &Error) -> bool {
    use std::io::ErrorKind::*;
    match e {
        Error::Io { source, .. } => {
            matches!(
                source.kind(),
                StorageFull | QuotaExceeded | ReadOnlyFilesystem
            ) || source.raw_os_error() == Some(nix::libc::EIO)
        }
        _ => true,
    }
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
