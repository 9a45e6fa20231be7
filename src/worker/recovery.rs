//! Crash recovery: the rules of spool-layout.md's *Crash points* table, applied on every
//! start (and to any `running/` file the worker does not own after an I/O error). It
//! looks only at the directories; it never guesses from memory.

use crate::error::{IoContext, Result};
use crate::job::{Job, JobId, JobName, State};
use crate::spool::claim::parse_claim_name;
use crate::spool::store;
use crate::spool::transition::{self, move_job, rewrite};
use crate::spool::{COUNTER_FILE, Dir, JOB_MARKER_ENV, REQUEST_CLAIM_PREFIX, Spool};
use crate::time::Timestamp;
use std::collections::HashMap;
use std::fs;
use std::time::{Duration, Instant};

/// How many times a job may be started before a worker death fails it.
pub const MAX_ATTEMPTS: u32 = 3;

/// What recovery found that the worker must finish itself.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Claims with no job yet: redo intake with this ID.
    pub claims: Vec<(JobId, String)>,
    /// Claimed requests to redo.
    pub requests: Vec<String>,
    /// The next free job ID.
    pub next_id: u64,
    /// Lines for the log, one per action.
    pub actions: Vec<String>,
    /// `running/` jobs handed to Slurm: the worker re-attaches to them.
    pub in_slurm: Vec<JobName>,
}

pub fn recover(spool: &Spool) -> Result<Recovered> {
    let mut r = Recovered::default();
    let tmp = spool.dir(Dir::Tmp);
    // Which IDs exist, and where; duplicates are set aside (the later state wins).
    let mut seen: HashMap<JobId, (Dir, JobName)> = HashMap::new();
    for dir in Dir::STATES {
        for name in store::list(spool, dir)? {
            if let Some((earlier_dir, earlier)) = seen.insert(name.id, (dir, name.clone())) {
                transition::set_aside(spool, &earlier, earlier_dir, "duplicate.")?;
                r.actions.push(format!(
                    "{earlier} was in both {}/ and {}/: set the {}/ copy aside in tmp/",
                    earlier_dir.name(),
                    dir.name(),
                    earlier_dir.name()
                ));
            }
        }
    }
    let mut highest = seen.keys().map(|id| id.0).max().unwrap_or(0);

    for entry in fs::read_dir(&tmp).at("list", &tmp)?.filter_map(|e| e.ok()) {
        let Ok(file) = entry.file_name().into_string() else {
            continue;
        };
        let path = entry.path();
        if file.starts_with('.') {
            let _ = fs::remove_file(&path);
        } else if let Some((id, ticket)) = parse_claim_name(&file) {
            highest = highest.max(id.0);
            if seen.contains_key(&id) {
                // One entry that cannot be removed never stops the start: it is set aside,
                // or, failing that, left and reported.
                if let Err(e) = crate::spool::intake::dispose_claim(spool, &path) {
                    r.actions
                        .push(format!("{file}: left in tmp/ (its job {id} exists): {e}"));
                }
            } else {
                r.actions
                    .push(format!("redoing the intake of {ticket} as job {id}"));
                r.claims.push((id, ticket));
            }
        } else if let Some(ticket) = file.strip_prefix(REQUEST_CLAIM_PREFIX) {
            r.actions.push(format!("redoing request {ticket}"));
            r.requests.push(ticket.to_string());
        }
    }

    let counter = spool.file(COUNTER_FILE);
    let stored = fs::read_to_string(&counter)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    r.next_id = match stored {
        Some(n) if n > highest => n,
        Some(n) => {
            r.actions.push(format!(
                "counter said {n} but job {highest} exists: continuing from {}",
                highest + 1
            ));
            highest + 1
        }
        None => {
            r.actions.push(format!(
                "counter missing or unreadable: continuing from {}",
                highest + 1
            ));
            highest + 1
        }
    };

    for name in store::list(spool, Dir::Pending)? {
        resolve_pending(spool, &name, &mut r)?;
    }
    for name in store::list(spool, Dir::Running)? {
        resolve_running(spool, &name, &mut r)?;
    }
    Ok(r)
}

fn resolve_pending(spool: &Spool, name: &JobName, r: &mut Recovered) -> Result<()> {
    let Ok(mut job) = store::read(spool, Dir::Pending, name) else {
        return Ok(()); // reported by the loader, which skips unreadable files
    };
    match job.state.state {
        State::Pending => {}
        s if s.is_terminal() => {
            move_job(spool, name, Dir::Pending, s.dir())?;
            r.actions
                .push(format!("{name}: finished moving it to {}/", s.dir().name()));
        }
        _ => {
            job.state.state = State::Pending;
            rewrite(spool, Dir::Pending, &job)?;
            r.actions.push(format!("{name}: marked pending again"));
        }
    }
    Ok(())
}

/// A `running/` file nobody runs: finish its move, or requeue it, or fail it.
pub fn resolve_running(spool: &Spool, name: &JobName, r: &mut Recovered) -> Result<()> {
    let mut job = match store::read(spool, Dir::Running, name) {
        Ok(j) => j,
        Err(e) => {
            r.actions
                .push(format!("{name}: unreadable, left in running/: {e}"));
            return Ok(());
        }
    };
    let now = Timestamp::now();
    match job.state.state {
        s if s.is_terminal() => {
            move_job(spool, name, Dir::Running, s.dir())?;
            r.actions
                .push(format!("{name}: finished moving it to {}/", s.dir().name()));
        }
        State::Pending => {
            move_job(spool, name, Dir::Running, Dir::Pending)?;
            r.actions
                .push(format!("{name}: was never started; back to pending/"));
        }
        // Slurm runs it, not a child of the dead worker: follow it, never requeue it.
        State::Running if job.state.slurm.is_some() => {
            r.actions
                .push(match job.state.slurm.as_ref().and_then(|s| s.job_id) {
                    Some(id) => format!("{name}: re-attaching to Slurm job {id}"),
                    None => format!("{name}: was being handed to Slurm; looking it up by name"),
                });
            r.in_slurm.push(name.clone());
        }
        _ => {
            let killed = kill_marked(&spool.job_marker(name));
            if killed > 0 {
                r.actions.push(format!(
                    "{name}: killed {killed} leftover process(es) of the dead worker"
                ));
            }
            if job.state.attempts >= MAX_ATTEMPTS {
                job.state.state = State::Failed;
                job.state.reason = Some(format!(
                    "worker died {} times while installing",
                    job.state.attempts
                ));
                job.state.finished_at = Some(now);
                job.state.since = now;
                rewrite(spool, Dir::Running, &job)?;
                move_job(spool, name, Dir::Running, Dir::Failed)?;
                r.actions.push(format!(
                    "{name}: failed after {} attempts",
                    job.state.attempts
                ));
            } else {
                requeue(spool, &mut job, now)?;
                r.actions.push(format!(
                    "{name}: the worker died while it ran (attempt {}); back to pending/",
                    job.state.attempts
                ));
            }
        }
    }
    Ok(())
}

/// rewrite as pending, then move running/ → pending/.
pub fn requeue(spool: &Spool, job: &mut Job, now: Timestamp) -> Result<()> {
    job.state.state = State::Pending;
    job.state.since = now;
    job.state.started_at = None;
    rewrite(spool, Dir::Running, job)?;
    move_job(spool, &job.name(), Dir::Running, Dir::Pending)
}

/// Kill every process (of ours) whose environment carries this job's marker, and wait
/// until they are gone. Returns how many there were.
pub fn kill_marked(marker: &str) -> usize {
    let needle = format!("{JOB_MARKER_ENV}={marker}\0");
    let mut pids = Vec::new();
    let Ok(proc_dir) = fs::read_dir("/proc") else {
        return 0;
    };
    for e in proc_dir.filter_map(|e| e.ok()) {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        if let Ok(env) = fs::read(e.path().join("environ"))
            && env.windows(needle.len()).any(|w| w == needle.as_bytes())
        {
            pids.push(pid);
        }
    }
    for &pid in &pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && pids.iter().any(|&p| is_alive_not_zombie(p)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    pids.len()
}

fn is_alive_not_zombie(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit(')')
            .next()
            .map(|rest| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}
