//! `worker.toml`: the worker's status and heartbeat, and how readers judge it. The file
//! is advisory (rewritten often, never fsynced, and written by the worker user, who may
//! write anything there): whether a worker runs, and which process it is, is decided by
//! who holds the flock on `worker.lock` ([`lock::holder`], read from the kernel's
//! `/proc/locks`, which every user may read). The file adds the heartbeat, mode and jobs.

use super::lock::{self, Holder};
use super::{PAUSED_FILE, STATUS_FILE, Spool};
use crate::time::Timestamp;
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    Starting,
    Running,
    Paused,
    Draining,
    Stopped,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub pid: u32,
    pub started_at: Timestamp,
    pub heartbeat: Timestamp,
    pub state: WorkerState,
    #[serde(default)]
    pub running: Vec<String>,
    /// The last finished jobs, newest first.
    #[serde(default)]
    pub recent: Vec<String>,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub max_parallel: usize,
    #[serde(default)]
    pub version: String,
    /// The lock's holder when the file was read (never stored): `None` for a status not
    /// read from a spool.
    #[serde(skip)]
    pub holder: Option<Holder>,
    /// The CPUs local installs share (their jobserver's size).
    #[serde(default)]
    pub cpus: Option<usize>,
    /// Why no install starts now although some could (a memory or disk guard).
    #[serde(default)]
    pub waiting: Option<String>,
}

/// What a reader concludes about the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Liveness {
    /// A process holds the lock and the heartbeat is fresh.
    Running,
    /// A process holds the lock but the heartbeat is older than the limit.
    Stale,
    /// No status file, or nobody holds the lock (whatever PID the file names).
    NotRunning,
}

impl WorkerStatus {
    /// The file, with `pid` set to the lock holder's when a process holds the lock: the
    /// PID written in the file may be stale (a crash, PID reuse) or false.
    pub fn read(spool: &Spool) -> Option<WorkerStatus> {
        let text = std::fs::read_to_string(spool.file(STATUS_FILE)).ok()?;
        let mut w: WorkerStatus = toml::from_str(&text).ok()?;
        let holder = lock::holder(spool);
        if let Holder::Pid(p) = holder {
            w.pid = p;
        }
        w.holder = Some(holder);
        Some(w)
    }

    pub fn liveness(&self, now: Timestamp, max_age: Duration) -> Liveness {
        let running = match self.holder {
            Some(Holder::Pid(_)) => true,
            Some(Holder::Free) => false,
            // Without /proc/locks, the file and kill(pid, 0) are all there is.
            Some(Holder::Unknown) | None => {
                self.state != WorkerState::Stopped && pid_alive(self.pid)
            }
        };
        if !running {
            Liveness::NotRunning
        } else if self.heartbeat.until(now) > max_age {
            Liveness::Stale
        } else {
            Liveness::Running
        }
    }
}

/// kill(pid, 0): EPERM means it exists but belongs to someone else.
pub fn pid_alive(pid: u32) -> bool {
    match kill(Pid::from_raw(pid as i32), None) {
        Ok(()) | Err(Errno::EPERM) => true,
        Err(_) => false,
    }
}

/// The `paused` file: present while the queue is paused.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Paused {
    pub by: String,
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Paused {
    /// `Some` when the spool is paused; an empty or hand-made file (`touch paused`) counts.
    pub fn read(spool: &Spool) -> Option<Paused> {
        let path = spool.file(PAUSED_FILE);
        let text = std::fs::read_to_string(&path).ok()?;
        Some(
            toml::from_str(&text).unwrap_or(Paused {
                by: "unknown".into(),
                at: std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .map(Timestamp::from_system)
                    .unwrap_or_else(|_| Timestamp::now()),
                reason: None,
            }),
        )
    }
}
