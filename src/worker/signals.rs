//! Signals become events on the worker's channel (signal-hook's iterator runs in its own
//! thread; no global flags). SIGTERM/SIGINT: the first stops taking new jobs and lets
//! running installs finish; the second stops them and requeues them. SIGHUP reloads
//! the config. SIGUSR1 (`worker stop --detach`, the unit's stop): stop at once, leaving
//! installs that outlive the worker (Slurm jobs) running for the next worker to
//! re-attach; with the local executor it means the same as the first SIGTERM.

use super::Event;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;
use std::sync::mpsc::Sender;

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
