//! `worker run` (the worker in the foreground, as systemd runs it), `worker start`
//! (detached, logging to a file), `worker stop` (signal the worker, wait, report) and
//! `worker info`.

use super::Ctx;
use crate::config::Config;
use crate::error::{Error, Result, exit};
use crate::spool::status::{Liveness, WorkerStatus, pid_alive};
use crate::spool::{Dir, store};
use crate::time::Timestamp;
use crate::worker::{Options, Worker};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
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
    if let Some((w, l)) = live(ctx).filter(|(_, l)| *l != Liveness::NotRunning) {
        println!(
            "a worker already runs on {} (pid {}{})",
            ctx.spool.root().display(),
            w.pid,
            if l == Liveness::Stale { ", stale" } else { "" }
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
            let tail = crate::worker::tail(&log, 2048).unwrap_or_default();
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
    let Some((w, l)) = live(ctx).filter(|(_, l)| *l != Liveness::NotRunning) else {
        println!("no worker is running on {}", ctx.spool.root().display());
        return Ok(exit::OK);
    };
    let pid = Pid::from_raw(w.pid as i32);
    let sig = if a.detach {
        Signal::SIGUSR1
    } else {
        Signal::SIGTERM
    };
    let signal = |n: usize| -> Result<()> {
        for _ in 0..n {
            kill(pid, sig).map_err(|e| match e {
                nix::errno::Errno::EPERM => Error::NotPermitted(format!(
                    "you may not signal the worker (pid {}): only its user or root may stop it{}",
                    w.pid, " (under systemd: `sudo systemctl stop spack-installer`)"
                )),
                e => Error::Other(format!("cannot signal pid {}: {e}", w.pid)),
            })?;
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    };
    signal(if a.now { 2 } else { 1 })?;
    if l == Liveness::Stale {
        println!("the worker (pid {}) was stale; it was signalled", w.pid);
    }
    let end = Instant::now() + Duration::from_secs(a.timeout);
    while Instant::now() < end {
        if !pid_alive(w.pid) {
            println!("worker (pid {}) stopped", w.pid);
            return Ok(exit::OK);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let running = WorkerStatus::read(&ctx.spool)
        .map(|s| s.running)
        .unwrap_or_default();
    println!(
        "the worker (pid {}) is still finishing {}; it exits when they end. `worker stop --now` interrupts and requeues them",
        w.pid,
        if running.is_empty() {
            "its work".to_string()
        } else {
            running.join(", ")
        }
    );
    Ok(exit::OK)
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
        "pid": status.as_ref().map(|(w, _)| w.pid),
        "mode": status.as_ref().map(|(w, _)| format!("{:?}", w.state).to_lowercase()),
        "started_at": status.as_ref().map(|(w, _)| w.started_at.to_string()),
        "heartbeat_age_s": status.as_ref().map(|(w, _)| w.heartbeat.until(now).as_secs()),
        "running": status.as_ref().map(|(w, _)| w.running.clone()).unwrap_or_default(),
        "dry_run": status.as_ref().is_some_and(|(w, _)| w.dry_run),
        "max_parallel": status.as_ref().map(|(w, _)| w.max_parallel),
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
