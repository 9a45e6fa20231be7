//! `worker run` (the worker in the foreground, as systemd runs it), `worker start`
//! (detached, logging to a file), `worker stop` (signal the worker, wait, report) and
//! `worker info`. Whether a worker runs, and which process to signal, is asked of the
//! kernel (who holds `worker.lock`), never read from `worker.toml`: the worker user
//! writes that file, and its PID outlives a crash.

use super::Ctx;
use crate::config::Config;
use crate::error::{Error, Result, exit};
use crate::spool::lock::{self, Holder};
use crate::spool::status::{Liveness, WorkerStatus};
use crate::spool::{Dir, store};
use crate::time::Timestamp;
use crate::worker::{Options, Worker};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the worker in the foreground (what the systemd unit runs).
    Run(RunArgs),
    /// Start the worker in the background, logging to a file.
    Start(StartArgs),
    /// Stop the worker: it finishes running installs (or, with --now, interrupts and requeues them).
    Stop(StopArgs),
    /// The worker's PID, start time, heartbeat, current jobs and queue counts.
    Info(InfoArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Exit 0 once nothing is runnable and nothing runs.
    #[arg(long)]
    pub until_idle: bool,
    /// Move jobs through the states and log the argv, without running Spack.
    #[arg(long)]
    pub dry_run: bool,
    /// How many installs may run at once (config `max_parallel`).
    #[arg(long, value_name = "N")]
    pub max_parallel: Option<usize>,
    /// Do not use inotify; rely on the periodic rescan alone (for file systems without it).
    #[arg(long)]
    pub no_inotify: bool,
}

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// The worker's log [default: SPOOL/worker.log].
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, value_name = "N")]
    pub max_parallel: Option<usize>,
}

#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Interrupt running installs and requeue them instead of waiting for them.
    #[arg(long, conflicts_with = "detach")]
    pub now: bool,
    /// Stop at once and leave the installs running in Slurm, for the next worker to
    /// re-attach (with the local executor: the same as a plain stop).
    #[arg(long)]
    pub detach: bool,
    /// How long to wait for the worker to exit, in seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, c: Command) -> Result<i32> {
    match c {
        Command::Run(a) => {
            let mut cfg = ctx.config()?;
            if let Some(n) = a.max_parallel.filter(|n| *n > 0) {
                Config::flag(&mut cfg.max_parallel, n, "--max-parallel");
            }
            let opts = Options {
                until_idle: a.until_idle,
                dry_run: a.dry_run,
                no_inotify: a.no_inotify,
                config_path: ctx.config_path.clone(),
            };
            Worker::start(ctx.spool.clone(), cfg, opts)?.run()?;
            Ok(0)
        }
        Command::Start(a) => start(ctx, a),
        Command::Stop(a) => stop(ctx, a),
        Command::Info(a) => info(ctx, a),
    }
}

fn live(ctx: &Ctx) -> Option<(WorkerStatus, Liveness)> {
    let max_age = ctx
        .config()
        .map(|c| c.max_heartbeat_age.value)
        .unwrap_or(Duration::from_secs(60));
    WorkerStatus::read(&ctx.spool).map(|w| {
        let l = w.liveness(Timestamp::now(), max_age);
        (w, l)
    })
}

fn start(ctx: &Ctx, a: StartArgs) -> Result<i32> {
    if let Holder::Pid(pid) = lock::holder(&ctx.spool) {
        let stale = live(ctx).is_some_and(|(_, l)| l == Liveness::Stale);
        println!(
            "a worker already runs on {} (pid {pid}{})",
            ctx.spool.root().display(),
            if stale { ", stale" } else { "" }
        );
        return Ok(exit::WORKER_BUSY);
    }
    let log = a.log.unwrap_or_else(|| ctx.spool.file("worker.log"));
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| Error::io("open the worker log", &log, e))?;
    let err = out
        .try_clone()
        .map_err(|e| Error::io("open the worker log", &log, e))?;
    let exe =
        std::env::current_exe().map_err(|e| Error::io("find", "the running executable", e))?;
    let mut cmd = Process::new(exe);
    cmd.arg("--spool").arg(ctx.spool.root());
    if let Some(c) = &ctx.config_path {
        cmd.arg("--config").arg(c);
    }
    cmd.args(["worker", "run"]);
    if a.dry_run {
        cmd.arg("--dry-run");
    }
    if let Some(n) = a.max_parallel {
        cmd.arg("--max-parallel").arg(n.to_string());
    }
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: setsid is async-signal-safe; it detaches the worker from our terminal.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io("start", "the worker", e))?;
    let pid = child.id();
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end {
        if let Some(st) = child.try_wait().ok().flatten() {
            let tail = crate::executor::progress::tail(&log, 2048).unwrap_or_default();
            return Err(Error::Other(format!(
                "the worker exited at once ({st}); its log {} says:\n{tail}",
                log.display()
            )));
        }
        if WorkerStatus::read(&ctx.spool)
            .is_some_and(|w| w.pid == pid && w.state != crate::spool::status::WorkerState::Starting)
        {
            println!("worker started (pid {pid}), logging to {}", log.display());
            return Ok(exit::OK);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "worker started (pid {pid}) but has not reported ready yet; see {}",
        log.display()
    );
    Ok(exit::OK)
}

fn stop(ctx: &Ctx, a: StopArgs) -> Result<i32> {
    let pid = match lock::holder(&ctx.spool) {
        Holder::Pid(pid) => pid,
        Holder::Free => {
            println!("no worker is running on {}", ctx.spool.root().display());
            return Ok(exit::OK);
        }
        Holder::Unknown => {
            return Err(Error::Other(format!(
                "cannot tell which process holds {} (is /proc mounted?), so nothing was signalled; \
                 stop the worker with `systemctl stop spack-installer` or by its PID",
                ctx.spool.file(crate::spool::LOCK_FILE).display()
            )));
        }
    };
    let stale = live(ctx).is_some_and(|(_, l)| l == Liveness::Stale);
    // A pidfd pins the process: once we have checked that it holds the lock, the
    // signal cannot reach another process that got its PID in between.
    let pidfd = match PidFd::open(pid) {
        Ok(p) => p,
        Err(e) if e.raw_os_error() == Some(nix::libc::ESRCH) => {
            println!("no worker is running on {}", ctx.spool.root().display());
            return Ok(exit::OK);
        }
        Err(e) => return Err(Error::Other(format!("cannot signal pid {pid}: {e}"))),
    };
    if lock::holder(&ctx.spool) != Holder::Pid(pid) {
        println!("no worker is running on {}", ctx.spool.root().display());
        return Ok(exit::OK);
    }
    // --detach: a Slurm worker exits at once and leaves its jobs running in Slurm for the
    // next worker (a local worker takes it as a first SIGTERM).
    let sig = if a.detach {
        nix::libc::SIGUSR1
    } else {
        nix::libc::SIGTERM
    };
    for i in 0..if a.now { 2 } else { 1 } {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
        match pidfd.signal(sig) {
            Ok(()) => {}
            // It exited between the check and the signal: stopped all the same.
            Err(e) if e.raw_os_error() == Some(nix::libc::ESRCH) => break,
            Err(e) if e.raw_os_error() == Some(nix::libc::EPERM) => {
                return Err(Error::NotPermitted(format!(
                    "you may not signal the worker (pid {pid}): only its user or root may stop it \
                     (under systemd: `sudo systemctl stop spack-installer`)"
                )));
            }
            Err(e) => return Err(Error::Other(format!("cannot signal pid {pid}: {e}"))),
        }
    }
    if stale {
        println!("the worker (pid {pid}) was stale; it was signalled");
    }
    let end = Instant::now() + Duration::from_secs(a.timeout);
    while Instant::now() < end {
        if lock::holder(&ctx.spool) != Holder::Pid(pid) {
            println!("worker (pid {pid}) stopped");
            return Ok(exit::OK);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let running = WorkerStatus::read(&ctx.spool)
        .map(|s| s.running)
        .unwrap_or_default();
    println!(
        "the worker (pid {pid}) is still finishing {}; it exits when they end. `worker stop --now` interrupts and requeues them",
        if running.is_empty() {
            "its work".to_string()
        } else {
            running.join(", ")
        }
    );
    Ok(exit::OK)
}

/// A process pinned by pidfd_open(2), signalled by pidfd_send_signal(2): the PID cannot
/// be reused while we hold it. On kernels before 5.3 (no pidfd), a plain kill(2) of the
/// PID checked just before.
enum PidFd {
    Fd(std::os::fd::OwnedFd),
    Pid(u32),
}

impl PidFd {
    fn open(pid: u32) -> std::io::Result<PidFd> {
        use std::os::fd::FromRawFd;
        // SAFETY: a plain syscall; a non-negative result is a new descriptor we own.
        let fd =
            unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid as nix::libc::pid_t, 0) };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(nix::libc::ENOSYS) => Ok(PidFd::Pid(pid)),
                _ => Err(e),
            };
        }
        // SAFETY: fd was just returned by the kernel and nobody else owns it.
        Ok(PidFd::Fd(unsafe {
            std::os::fd::OwnedFd::from_raw_fd(fd as i32)
        }))
    }

    fn signal(&self, sig: i32) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let fd = match self {
            PidFd::Fd(fd) => fd,
            PidFd::Pid(pid) => {
                // SAFETY: kill(2) has no memory preconditions.
                let r = unsafe { nix::libc::kill(*pid as nix::libc::pid_t, sig) };
                return if r < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                };
            }
        };
        // SAFETY: a plain syscall on a descriptor we own; no siginfo.
        let r = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                sig,
                std::ptr::null::<nix::libc::siginfo_t>(),
                0,
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

fn info(ctx: &Ctx, a: InfoArgs) -> Result<i32> {
    let now = Timestamp::now();
    let mut counts = serde_json::Map::new();
    counts.insert(
        "incoming".into(),
        store::list_incoming(&ctx.spool)?.len().into(),
    );
    for d in Dir::STATES {
        counts.insert(d.name().into(), store::list(&ctx.spool, d)?.len().into());
    }
    let status = live(ctx);
    let in_slurm = in_slurm(ctx)?;
    let view = serde_json::json!({
        "spool": ctx.spool.root(),
        "state": status.as_ref().map(|(_, l)| *l).unwrap_or(Liveness::NotRunning),
        "pid": status.as_ref().filter(|(_, l)| *l != Liveness::NotRunning).map(|(w, _)| w.pid),
        "mode": status.as_ref().map(|(w, _)| format!("{:?}", w.state).to_lowercase()),
        "started_at": status.as_ref().map(|(w, _)| w.started_at.to_string()),
        "heartbeat_age_s": status.as_ref().map(|(w, _)| w.heartbeat.until(now).as_secs()),
        "running": status.as_ref().map(|(w, _)| w.running.clone()).unwrap_or_default(),
        "dry_run": status.as_ref().is_some_and(|(w, _)| w.dry_run),
        "max_parallel": status.as_ref().map(|(w, _)| w.max_parallel),
        "cpus": status.as_ref().and_then(|(w, _)| w.cpus),
        "waiting": status.as_ref().and_then(|(w, _)| w.waiting.clone()),
        "version": status.as_ref().map(|(w, _)| w.version.clone()),
        "counts": counts,
        "in_slurm": in_slurm,
    });
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&view).expect("serializes")
        );
        return Ok(0);
    }
    match &status {
        None => println!("worker: has never run on {}", ctx.spool.root().display()),
        Some((w, Liveness::NotRunning)) => {
            // The PID in worker.toml may belong to any process by now: not shown as ours.
            println!("worker:      not running (no process holds the worker lock)");
            println!(
                "last ran:    since {}, last heartbeat {}",
                w.started_at, w.heartbeat
            );
        }
        Some((w, l)) => {
            println!(
                "worker:      {} (pid {}, {})",
                serde_json::to_value(l)
                    .expect("serializes")
                    .as_str()
                    .unwrap_or(""),
                w.pid,
                format!("{:?}", w.state).to_lowercase()
            );
            println!("since:       {}", w.started_at);
            println!("heartbeat:   {}s ago", w.heartbeat.until(now).as_secs());
            println!(
                "running:     {}",
                if w.running.is_empty() {
                    "-".into()
                } else {
                    w.running.join(", ")
                }
            );
            println!(
                "parallel:    {}{}",
                w.max_parallel,
                if w.dry_run { " (dry run)" } else { "" }
            );
            if let Some(n) = w.cpus {
                println!("cpus:        {n} (one jobserver for all installs)");
            }
            if let Some(why) = &w.waiting {
                println!("waiting:     {}", why);
            }
            println!("version:     {}", w.version);
        }
    }
    let c: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    println!("queue:       {}", c.join(", "));
    if let Some(n) = in_slurm {
        println!("in Slurm:    {n} job(s) submitted and not yet ended");
    }
    Ok(0)
}

/// How many `running/` jobs were handed to Slurm (`[state.slurm]`), when any were or
/// the config says `executor = "slurm"`.
fn in_slurm(ctx: &Ctx) -> Result<Option<usize>> {
    let n = store::list(&ctx.spool, Dir::Running)?
        .iter()
        .filter_map(|n| store::read(&ctx.spool, Dir::Running, n).ok())
        .filter(|j| j.state.slurm.is_some())
        .count();
    let slurm = ctx
        .config()
        .is_ok_and(|c| c.executor.value == crate::config::ExecutorKind::Slurm);
    Ok((slurm || n > 0).then_some(n))
}
