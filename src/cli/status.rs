//! `status`: the queue at a glance. By default the active jobs (incoming, pending,
//! running) and the last few finished ones, which the worker lists in `worker.toml`, so
//! the cost does not grow with history: `done/` is not read unless `--all` or `--state`
//! asks for it. `--since` and `--limit` bound how much of it is read: job names sort by
//! ID and IDs grow with submission time, so the finished directories are read newest
//! first, by listing them (no file opened), and reading stops as soon as the bound is
//! met. No index: the spool stays the only copy of the truth.

use super::Ctx;
use super::output::{JobView, state_cell, table};
use crate::error::Result;
use crate::job::JobName;
use crate::spool::status::{Liveness, Paused, WorkerStatus};
use crate::spool::{Dir, store};
use crate::text::printable;
use crate::time::{Timestamp, short};
use serde::Serialize;
use std::fs;
use std::io::Write;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only jobs in these states (incoming, pending, running, done, failed, rejected, cancelled).
    #[arg(long = "state", value_name = "STATE",
          value_parser = clap::builder::PossibleValuesParser::new(VALID_STATES.iter().copied()))]
    pub states: Vec<String>,
    /// Only jobs of this user.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Every job, including all finished ones.
    #[arg(long)]
    pub all: bool,
    /// Finished jobs submitted within this long (e.g. 7d, 12h): only that much of the
    /// history is read. Active jobs are always shown.
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    /// At most this many finished jobs, the newest. Active jobs are always shown.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// More columns: note, reason, attempts.
    #[arg(short, long)]
    pub verbose: bool,
    #[arg(long)]
    pub json: bool,
}

/// The worker as `status --json` reports it.
#[derive(Debug, Serialize)]
pub struct WorkerView {
    pub state: Liveness,
    pub pid: Option<u32>,
    pub heartbeat_age_s: Option<u64>,
    pub mode: Option<String>,
    pub running: Vec<String>,
    pub dry_run: bool,
    /// Why no install starts now (a memory or disk guard), while the worker runs.
    pub waiting: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct StatusView {
    pub spool: String,
    pub worker: WorkerView,
    pub paused: Option<Paused>,
    pub counts: Counts,
    pub jobs: Vec<JobView>,
}

#[derive(Debug, Default, Serialize)]
pub struct Counts {
    pub incoming: usize,
    pub pending: usize,
    pub running: usize,
}

const VALID_STATES: [&str; 7] = [
    "incoming",
    "pending",
    "running",
    "done",
    "failed",
    "rejected",
    "cancelled",
];

pub fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    for s in &a.states {
        if !VALID_STATES.contains(&s.as_str()) {
            return Err(crate::Error::Usage(format!(
                "--state {s}: use one of {}",
                VALID_STATES.join(", ")
            )));
        }
    }
    let view = collect(ctx, &a)?;
    if a.json {
        // Streamed: a history of 100 000 jobs is never one string in memory.
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        serde_json::to_writer_pretty(&mut out, &view).expect("serializes");
        let _ = writeln!(out);
    } else {
        print_human(&view, a.verbose);
    }
    Ok(0)
}

pub fn worker_view(ctx: &Ctx, now: Timestamp) -> WorkerView {
    let max_age = ctx
        .config()
        .map(|c| c.max_heartbeat_age.value)
        .unwrap_or(Duration::from_secs(60));
    match WorkerStatus::read(&ctx.spool) {
        None => WorkerView {
            state: Liveness::NotRunning,
            pid: None,
            heartbeat_age_s: None,
            mode: None,
            running: vec![],
            dry_run: false,
            waiting: None,
        },
        Some(w) => WorkerView {
            state: w.liveness(now, max_age),
            // Only a lock holder's PID is a worker's; a dead worker's may be anyone's now.
            pid: (w.liveness(now, max_age) != Liveness::NotRunning).then_some(w.pid),
            heartbeat_age_s: Some(w.heartbeat.until(now).as_secs()),
            mode: Some(format!("{:?}", w.state).to_lowercase()),
            running: w.running.clone(),
            dry_run: w.dry_run,
            waiting: w
                .waiting
                .clone()
                .filter(|_| w.liveness(now, max_age) != Liveness::NotRunning),
        },
    }
}

pub fn collect(ctx: &Ctx, a: &Args) -> Result<StatusView> {
    let now = Timestamp::now();
    let spool = &ctx.spool;
    let wanted = |s: &str| a.states.is_empty() || a.states.iter().any(|x| x == s);
    let mut jobs = Vec::new();
    let mut counts = Counts::default();
    let incoming = store::list_incoming(spool)?;
    counts.incoming = incoming.len();
    if wanted("incoming") {
        jobs.extend(incoming.iter().map(|t| JobView::incoming(spool, t)));
    }
    for dir in [Dir::Pending, Dir::Running] {
        let names: Vec<(Dir, JobName)> = store::list(spool, dir)?
            .into_iter()
            .map(|n| (dir, n))
            .collect();
        match dir {
            Dir::Pending => counts.pending = names.len(),
            _ => counts.running = names.len(),
        }
        if wanted(dir.name()) {
            jobs.extend(read_views(ctx, &names, now, true));
        }
    }
    let finished_wanted = a.all
        || a.states
            .iter()
            .any(|s| ["done", "failed", "rejected", "cancelled"].contains(&s.as_str()));
    let since = match &a.since {
        Some(s) => Some(
            crate::time::parse_span(s)
                .map_err(|e| crate::Error::Usage(format!("--since {s}: {e}; e.g. --since 7d")))?
                .0,
        ),
        None => None,
    };
    if since.is_some() || a.limit.is_some() {
        let cutoff = since.map(|d| Timestamp(now.0.saturating_sub(d.as_secs())));
        let mut names = Vec::new();
        for dir in Dir::FINISHED {
            if a.states.is_empty()
                || wanted(dir.name())
                || (dir == Dir::Failed && wanted("rejected"))
            {
                names.extend(store::list(spool, dir)?.into_iter().map(|n| (dir, n)));
            }
        }
        let keep = |v: &JobView| {
            (a.states.is_empty() || wanted(&v.state))
                && a.user.as_ref().is_none_or(|u| &v.owner == u)
        };
        jobs.extend(newest(ctx, names, now, keep, cutoff, a.limit));
    } else if finished_wanted {
        for dir in Dir::FINISHED {
            if a.all
                || a.states.is_empty()
                || wanted(dir.name())
                || (dir == Dir::Failed && wanted("rejected"))
            {
                let names: Vec<(Dir, JobName)> = store::list(spool, dir)?
                    .into_iter()
                    .map(|n| (dir, n))
                    .collect();
                jobs.extend(
                    read_views(ctx, &names, now, true)
                        .into_iter()
                        .filter(|v| wanted(&v.state) || a.all),
                );
            }
        }
    } else if a.states.is_empty() {
        // The last few finished jobs, as the worker listed them: no directory scan.
        let recent = WorkerStatus::read(spool)
            .map(|w| w.recent)
            .unwrap_or_default();
        for n in recent.iter().take(5).rev() {
            let Some(name) = JobName::from_file_name(&format!("{n}.toml")) else {
                continue;
            };
            for dir in Dir::FINISHED {
                if let Ok(job) = store::read(spool, dir, &name) {
                    jobs.push(JobView::of(spool, dir, &job, now));
                    break;
                }
            }
        }
    }
    if let Some(u) = &a.user {
        jobs.retain(|j| &j.owner == u);
    }
    jobs.sort_by_key(|j| (j.id.is_none(), j.id));
    Ok(StatusView {
        spool: spool.root().display().to_string(),
        worker: worker_view(ctx, now),
        paused: Paused::read(spool),
        counts,
        jobs,
    })
}

/// The newest finished jobs that `keep` accepts, newest first: at most `limit`, and
/// none submitted before `cutoff`. Read in growing batches, each on every core, until a
/// bound is met; a record submitted before the cutoff ends the reading, as every older
/// ID was submitted before it (IDs are given in order of intake, `submitted_at` is the
/// intake's clock).
fn newest(
    ctx: &Ctx,
    mut names: Vec<(Dir, JobName)>,
    now: Timestamp,
    keep: impl Fn(&JobView) -> bool,
    cutoff: Option<Timestamp>,
    limit: Option<usize>,
) -> Vec<JobView> {
    names.sort_unstable_by_key(|(_, n)| std::cmp::Reverse(n.id));
    let mut out = Vec::new();
    let mut batch = 64;
    let mut rest = &names[..];
    while !rest.is_empty() && limit.is_none_or(|l| out.len() < l) {
        let (now_read, later) = rest.split_at(batch.min(rest.len()));
        rest = later;
        batch = (batch * 2).min(8192);
        // A stat per job read, not a listing of all of logs/: that grows with the history.
        for v in read_views(ctx, now_read, now, false) {
            let submitted: Option<Timestamp> =
                v.submitted_at.as_deref().and_then(|t| t.parse().ok());
            if let (Some(c), Some(t)) = (cutoff, submitted)
                && t < c
            {
                return out;
            }
            if keep(&v) {
                out.push(v);
                if limit.is_some_and(|l| out.len() >= l) {
                    return out;
                }
            }
        }
    }
    out
}

/// Read these jobs, on every core when there are many (`--all` reads the whole
/// history), in the order given; a file that moved meanwhile is looked for again.
fn read_views(
    ctx: &Ctx,
    names: &[(Dir, JobName)],
    now: Timestamp,
    list_logs: bool,
) -> Vec<JobView> {
    // Which jobs have a log: one stat each for active jobs and a few finished ones; for
    // many finished jobs (`--all`), one listing of logs/ (a few getdents calls per
    // thousand names) instead of a stat per job. Never for active jobs alone, nor for the
    // bounded reads of --since and --limit (`list_logs`): logs/ grows with the history,
    // and they must not.
    let many_finished =
        list_logs && names.len() >= MANY && names.iter().all(|(d, _)| Dir::FINISHED.contains(d));
    // FxHash: these are our own file names, and SipHash showed in the profile.
    let logs: Option<rustc_hash::FxHashSet<String>> = many_finished.then(|| {
        fs::read_dir(ctx.spool.dir(Dir::Logs))
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    });
    let read_one = |(dir, name): &(Dir, JobName)| -> Option<JobView> {
        let (d, job) = match store::read(&ctx.spool, *dir, name) {
            Ok(job) => (*dir, job),
            Err(_) => {
                let (d, n) = store::locate(&ctx.spool, name.id).ok()??;
                (d, store::read(&ctx.spool, d, &n).ok()?)
            }
        };
        Some(match &logs {
            Some(logs) => {
                let has_log = logs.contains(&job.name().log_name());
                JobView::with_log(&ctx.spool, d, &job, now, has_log)
            }
            None => JobView::of(&ctx.spool, d, &job, now),
        })
    };
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if names.len() < MANY || threads == 1 {
        return names.iter().filter_map(read_one).collect();
    }
    let chunk = names.len().div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = names
            .chunks(chunk)
            .map(|part| s.spawn(|| part.iter().filter_map(read_one).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|h| h.join().expect("a reader thread panicked"))
            .collect()
    })
}

/// From how many jobs a directory is read on every core, and `logs/` listed once.
const MANY: usize = 256;

fn print_human(v: &StatusView, verbose: bool) {
    let w = &v.worker;
    let worker_line = match w.state {
        Liveness::Running => format!(
            "worker: {} (pid {}, heartbeat {}s ago{})",
            w.mode.as_deref().unwrap_or("running"),
            w.pid.unwrap_or(0),
            w.heartbeat_age_s.unwrap_or(0),
            if w.dry_run { ", dry run" } else { "" }
        ),
        Liveness::Stale => format!(
            "worker: STALE (pid {}, no heartbeat for {}s): it may be hung; see `journalctl -u spack-installer`",
            w.pid.unwrap_or(0),
            w.heartbeat_age_s.unwrap_or(0)
        ),
        Liveness::NotRunning => {
            "worker: not running (jobs wait in the queue until one starts)".to_string()
        }
    };
    println!("{worker_line}");
    if let Some(why) = &w.waiting {
        println!("queue: WAITING, {}", why);
    }
    if let Some(p) = &v.paused {
        println!(
            "queue: PAUSED by {} at {}{}",
            printable(&p.by),
            p.at,
            p.reason
                .as_deref()
                .map(|r| format!(": {}", printable(r)))
                .unwrap_or_default()
        );
    }
    println!(
        "{} incoming, {} pending, {} running",
        v.counts.incoming, v.counts.pending, v.counts.running
    );
    if v.jobs.is_empty() {
        return;
    }
    let mut header = vec![
        "ID", "STATE", "SPEC", "PRIORITY", "OWNER", "WAITED", "RAN", "INFO",
    ];
    if verbose {
        header.extend(["ATTEMPTS", "NOTE"]);
    }
    let mut t = table(&header);
    for j in &v.jobs {
        let j = &j.printable();
        let info = match (&j.progress, &j.reason) {
            (Some(p), _) => format!("[{}/{}]", p.done, p.total),
            (None, Some(r)) if j.state != "done" => r.clone(),
            _ if j.state == "pending" => j.build_text().unwrap_or_default(),
            _ => String::new(),
        };
        let info = match (
            j.state.as_str(),
            j.slurm.as_ref().map(super::show::slurm_text),
        ) {
            ("running", Some(where_)) if info.is_empty() => where_,
            ("running", Some(where_)) => format!("{info} {where_}"),
            _ => info,
        };
        let mut row = vec![
            comfy_table::Cell::new(
                j.id.map(|i| format!("{i:06}"))
                    .unwrap_or_else(|| "-".into()),
            ),
            state_cell(&j.state),
            comfy_table::Cell::new(&j.spec),
            comfy_table::Cell::new(&j.priority),
            comfy_table::Cell::new(&j.owner),
            comfy_table::Cell::new(
                j.waited_s
                    .map(|s| short(Duration::from_secs(s)))
                    .unwrap_or_default(),
            ),
            comfy_table::Cell::new(
                j.ran_s
                    .map(|s| short(Duration::from_secs(s)))
                    .unwrap_or_default(),
            ),
            comfy_table::Cell::new(info),
        ];
        if verbose {
            row.push(comfy_table::Cell::new(j.attempts));
            row.push(comfy_table::Cell::new(j.note.clone().unwrap_or_default()));
        }
        t.add_row(row);
    }
    println!("{}", super::output::render(&t));
}
