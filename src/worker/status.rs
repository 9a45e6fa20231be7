//! What the worker tells others about itself: `worker.toml` (state, running jobs, the
//! last finished ones, why nothing starts), `metrics.prom` and the systemd watchdog, at
//! every heartbeat and, at most every [`STATUS_GAP`], when a job starts or ends. It only
//! reports the worker's state: it must never change a job or decide what runs.

use super::{Worker, metrics, notify};
use crate::executor::budget::Jobserver;
use crate::job::JobName;
use crate::spool::status::{WorkerState, WorkerStatus};
use crate::spool::{STATUS_FILE, transition};
use crate::time::Timestamp;
use std::time::{Duration, Instant};

/// The least time between two writes of `worker.toml` for jobs starting and ending.
const STATUS_GAP: Duration = Duration::from_millis(100);

/// How many finished jobs `worker.toml` lists.
pub(super) const RECENT: usize = 10;

impl Worker {
    pub(super) fn current_state(&self) -> WorkerState {
        if self.draining {
            WorkerState::Draining
        } else if self.paused {
            WorkerState::Paused
        } else {
            WorkerState::Running
        }
    }

    /// A job started or ended: write `worker.toml` now, or, if it was written less than
    /// [`STATUS_GAP`] ago, by then. A queue of short jobs then rewrites it ten times a
    /// second, not twice per job.
    pub(super) fn status_changed(&mut self) {
        let due = self.last_heartbeat + STATUS_GAP;
        if Instant::now() >= due {
            self.write_status(self.current_state());
        } else {
            self.status_due = Some(due);
        }
    }

    pub(super) fn write_status(&mut self, state: WorkerState) {
        self.last_heartbeat = Instant::now();
        self.status_due = None;
        let st = WorkerStatus {
            pid: std::process::id(),
            started_at: self.started_at,
            heartbeat: Timestamp::now(),
            state,
            running: self
                .running
                .values()
                .map(|r| r.job.meta.name.clone())
                .collect(),
            recent: self.recent.iter().cloned().collect(),
            dry_run: self.opts.dry_run,
            max_parallel: self.cfg.max_parallel.value,
            version: env!("CARGO_PKG_VERSION").to_string(),
            holder: None,
            cpus: self.jobserver.as_ref().map(Jobserver::cpus),
            waiting: self.waiting.clone(),
        };
        let text = toml::to_string(&st).expect("status serializes");
        if let Err(e) = transition::replace(
            &self.spool,
            &self.spool.file(STATUS_FILE),
            text.as_bytes(),
            false,
        ) {
            tracing::debug!("status not written: {e}");
        }
        let snapshot = metrics::Snapshot {
            state,
            pending: self.pending.len(),
            running: self.running.len(),
            slots: self.slots(),
            started_at: self.started_at,
            heartbeat: st.heartbeat,
            cpus: self.jobserver.as_ref().map(Jobserver::cpus),
            held_by_guard: self.waiting.is_some(),
            concretizing: self.lanes.busy(),
            slurm_refusing: self.cluster_backoff > super::cluster::CLUSTER_BACKOFF_MIN,
        };
        let dir = self
            .cfg
            .metrics_dir
            .value
            .clone()
            .unwrap_or_else(|| self.spool.root().to_path_buf());
        self.metrics.write(&dir, &snapshot);
        let running: Vec<JobName> = self.running.values().map(|r| r.job.name()).collect();
        let every = notify::heartbeat_every(self.cfg.heartbeat_interval.value);
        notify::heartbeat(&self.spool, state, &running, every);
    }
}
