//! Signals become events on the worker's channel (signal-hook's iterator runs in its own
//! thread; no global flags). SIGTERM/SIGINT: the first stops taking new jobs and lets
//! running installs finish; the second stops them and requeues them. SIGHUP reloads
//! the config. SIGUSR1 (`worker stop --detach`, the unit's stop): stop at once, leaving
//! installs that outlive the worker (Slurm jobs) running for the next worker to
//! re-attach; with the local executor it means the same as the first SIGTERM.
//!
//! The forwarding thread only sends; what a signal does is decided on the main loop
//! (`Worker::on_signal`), which only sets the worker's stop state, reloads the config
//! or asks the executor to stop installs: their ends are recorded by the finish stage.

use super::{Event, StopReason, Worker, resolve_spack};
use crate::config::Config;
use crate::job::JobId;
use crate::spool::status::WorkerState;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;
use std::sync::mpsc::Sender;
use std::time::Instant;

pub fn forward(tx: Sender<Event>) -> std::io::Result<signal_hook::iterator::Handle> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if tx.send(Event::Signal(sig)).is_err() {
                    break;
                }
            }
        })?;
    Ok(handle)
}

impl Worker {
    pub(super) fn on_signal(&mut self, sig: i32) {
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
