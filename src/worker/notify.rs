//! Tell systemd how the worker is doing, by the `sd_notify(3)` protocol (the `sd-notify`
//! crate): `READY=1` once the worker holds the lock and has scanned the spool, a `STATUS=`
//! line that `systemctl status` shows ("idle", "installing 000042-hdf5 [3/7]",
//! "paused"), `WATCHDOG=1` with every heartbeat, and `STOPPING=1` when it drains or stops.
//!
//! Every function is a no-op when `NOTIFY_SOCKET` is unset (not under systemd, or a unit
//! that is not `Type=notify`), and a failure to notify is logged, never fatal: systemd's
//! view of the worker is a courtesy, the spool is the truth. Messages are only sent from
//! the worker's loop, so `WATCHDOG=1` proves the loop turns, not just that a thread lives.

use crate::job::JobName;
use crate::spool::Spool;
use crate::spool::status::WorkerState;
use sd_notify::NotifyState;
use std::sync::OnceLock;
use std::time::Duration;

/// Whether systemd listens; read once, as the environment does not change under us.
fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty()))
}

/// `WatchdogSec=` of the unit, when systemd set one for this process.
fn watchdog() -> Option<Duration> {
    static WATCHDOG: OnceLock<Option<Duration>> = OnceLock::new();
    *WATCHDOG.get_or_init(sd_notify::watchdog_enabled)
}

fn send(states: &[NotifyState]) {
    if !enabled() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("cannot notify systemd: {e}");
    }
}

/// How often the loop must write its heartbeat: the configured interval, but at least
/// twice per `WatchdogSec=` (as `sd_watchdog_enabled(3)` advises), so a long configured
/// heartbeat cannot get a healthy worker killed.
pub fn heartbeat_every(configured: Duration) -> Duration {
    match watchdog() {
        Some(w) => configured.min(w / 2).max(Duration::from_millis(100)),
        None => configured,
    }
}

/// The worker holds the lock, has recovered and scanned the spool: start-up is over.
pub fn ready() {
    send(&[NotifyState::Ready]);
}

/// Called with every write of `worker.toml` (state changes and heartbeats): the status
/// line, the watchdog, and while draining `STOPPING=1`. A drain waits for running
/// installs to finish, which may take hours, longer than `TimeoutStopSec=`; so each
/// heartbeat while draining also extends systemd's stop timeout by a few heartbeats
/// (`EXTEND_TIMEOUT_USEC`): systemd keeps waiting exactly as long as the worker is alive.
pub fn heartbeat(spool: &Spool, state: WorkerState, running: &[JobName], every: Duration) {
    if !enabled() {
        return;
    }
    let line = status_line(state, running, |n| {
        crate::executor::progress::progress(&spool.log_path(n)).map(|p| (p.done, p.total))
    });
    let status = NotifyState::Status(&line);
    match state {
        WorkerState::Draining | WorkerState::Stopped => {
            let extend = u32::try_from((every * 3).as_micros()).unwrap_or(u32::MAX);
            send(&[
                NotifyState::Stopping,
                status,
                NotifyState::ExtendTimeoutUsec(extend),
                NotifyState::Watchdog,
            ]);
        }
        _ => send(&[status, NotifyState::Watchdog]),
    }
}

/// The `STATUS=` text: what the worker does, in a few words.
pub fn status_line(
    state: WorkerState,
    running: &[JobName],
    progress: impl Fn(&JobName) -> Option<(u32, u32)>,
) -> String {
    let jobs = running
        .iter()
        .map(|n| match progress(n) {
            Some((done, total)) => format!("{n} [{done}/{total}]"),
            None => n.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ");
    match state {
        WorkerState::Starting => "starting: recovering the spool".into(),
        WorkerState::Stopped => "stopped".into(),
        WorkerState::Draining if running.is_empty() => "stopping".into(),
        WorkerState::Draining => format!("stopping: waiting for {jobs}"),
        WorkerState::Paused if running.is_empty() => "paused".into(),
        WorkerState::Paused => format!("paused; still installing {jobs}"),
        WorkerState::Running if running.is_empty() => "idle".into(),
        WorkerState::Running => format!("installing {jobs}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobId;

    #[test]
    fn status_lines_say_what_the_worker_does() {
        let hdf5 = JobName::new(JobId(42), "hdf5");
        let zlib = JobName::new(JobId(43), "zlib");
        let progress = |n: &JobName| (n.id.0 == 42).then_some((3, 7));
        assert_eq!(status_line(WorkerState::Running, &[], progress), "idle");
        assert_eq!(
            status_line(WorkerState::Running, std::slice::from_ref(&hdf5), progress),
            "installing 000042-hdf5 [3/7]"
        );
        assert_eq!(
            status_line(
                WorkerState::Running,
                &[hdf5.clone(), zlib.clone()],
                progress
            ),
            "installing 000042-hdf5 [3/7], 000043-zlib"
        );
        assert_eq!(status_line(WorkerState::Paused, &[], progress), "paused");
        assert_eq!(
            status_line(WorkerState::Draining, &[zlib], progress),
            "stopping: waiting for 000043-zlib"
        );
    }
}
