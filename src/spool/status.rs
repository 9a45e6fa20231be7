//! `worker.toml`: the worker's status and heartbeat, and how readers judge it. The file
//! is advisory (rewritten often, never fsynced); the lock is what really decides whether
//! a worker runs, but only the worker user may open the lock, so members judge by this.

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
    /// Its process exists and its heartbeat is fresh.
    Running,
    /// Its process exists but the heartbeat is older than the limit.
    Stale,
    /// No status file, a clean stop, or the process is gone.
    NotRunning,
}

impl WorkerStatus {
    pub fn read(spool: &Spool) -> Option<WorkerStatus> {
        let text = std::fs::read_to_string(spool.file(STATUS_FILE)).ok()?;
        toml::from_str(&text).ok()
    }

    pub fn liveness(&self, now: Timestamp, max_age: Duration) -> Liveness {
        if self.state == WorkerState::Stopped || !pid_alive(self.pid) {
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
