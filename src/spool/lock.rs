//! The worker's singleton lock: an exclusive flock(2) on `worker.lock`, taken without
//! blocking (std's `File::try_lock`, the same flock as the unmaintained fs2 crate). The
//! holder writes its PID into the file so a second worker can say who holds it. The lock
//! dies with the process, so a crashed worker never leaves it held, and [`holder`] (the
//! kernel's own list of locks) is how every command learns whether a worker runs and
//! which process it is. flock over NFS is not reliable; `init` and the worker warn when
//! the spool is on a network file system.

use super::{LOCK_FILE, LOCK_MODE, Spool};
use crate::error::{Error, IoContext, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

/// Held for the worker's whole life; dropping it releases the lock.
#[derive(Debug)]
pub struct WorkerLock {
    _file: File,
}

impl WorkerLock {
    pub fn acquire(spool: &Spool) -> Result<WorkerLock> {
        let path = spool.file(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(LOCK_MODE)
            .open(&path)
            .at("open the lock", &path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = match holder(spool) {
                    Holder::Pid(p) => p.to_string(),
                    _ => pid.trim().to_string(),
                };
                return Err(Error::WorkerBusy {
                    path,
                    pid: if pid.is_empty() {
                        "unknown".into()
                    } else {
                        pid
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
        }
        // The PID is a courtesy for the next worker's message; the lock is held either way,
        // so a full disk must not keep the worker from starting.
        let pid = file
            .set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| writeln!(file, "{}", std::process::id()));
        if let Err(e) = pid {
            tracing::warn!("cannot write the PID into {}: {e}", path.display());
        }
        Ok(WorkerLock { _file: file })
    }
}

/// Who holds the worker's lock, as the kernel says: the one truth about whether a worker
/// runs. `worker.toml` and the PID inside `worker.lock` are written by the worker user and
/// outlive the process (a `kill -9`, a reboot, PID reuse), so they are never trusted for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// This process holds the flock on `worker.lock`.
    Pid(u32),
    /// Nobody holds it: no worker runs.
    Free,
    /// The kernel could not be asked (no `/proc/locks`, or the lock file cannot be
    /// stat'ed by this user).
    Unknown,
}

/// Find the holder of `worker.lock`'s flock in `/proc/locks`, by the file's device and
/// inode. Never by taking the lock: a test lock, even non-blocking, would make a worker
/// starting at that moment believe another one runs. `/proc/locks` is readable by every
/// user (even with `hidepid=2`), and stat of the lock needs only search permission on
/// the spool, so members learn the truth too.
pub fn holder(spool: &Spool) -> Holder {
    let path = spool.file(LOCK_FILE);
    let Ok(meta) = std::fs::symlink_metadata(&path) else {
        return match std::fs::symlink_metadata(spool.root()) {
            // The spool is there and the lock is not: nothing can hold it.
            Ok(_) if !path.exists() => Holder::Free,
            _ => Holder::Unknown,
        };
    };
    if !meta.file_type().is_file() {
        return Holder::Free;
    }
    match std::fs::read_to_string("/proc/locks") {
        Ok(text) => holder_in(&text, meta.dev(), meta.ino()),
        Err(_) => Holder::Unknown,
    }
}

/// The flock holder of the file (`dev`, `ino`) in the text of `/proc/locks`, whose lines
/// read `1: FLOCK  ADVISORY  WRITE 4242 fe:00:5377698 0 EOF` (device as hex major:minor,
/// inode in decimal); lines with `->` are waiters, not holders.
pub fn holder_in(proc_locks: &str, dev: u64, ino: u64) -> Holder {
    let want = format!(
        "{:02x}:{:02x}:{ino}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    );
    for line in proc_locks.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[1] != "FLOCK" || f[3] != "WRITE" || f[5] != want {
            continue;
        }
        // A holder outside this PID namespace is shown as 0 or -1: a worker runs, but
        // it cannot be named or signalled from here.
        return match f[4].parse::<i64>() {
            Ok(p) if p > 0 => Holder::Pid(p as u32),
            _ => Holder::Unknown,
        };
    }
    Holder::Free
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_is_found_by_device_and_inode() {
        let dev = nix::sys::stat::makedev(0xfe, 0);
        let text = "1: FLOCK  ADVISORY  WRITE 17568 fe:00:5377698 0 EOF\n\
                    2: FLOCK  ADVISORY  WRITE 4242 fe:00:77 0 EOF\n\
                    2: -> FLOCK  ADVISORY  WRITE 999 fe:00:77 0 EOF\n\
                    3: POSIX  ADVISORY  WRITE 5 fe:00:78 0 EOF\n";
        assert_eq!(holder_in(text, dev, 77), Holder::Pid(4242));
        assert_eq!(
            holder_in(text, dev, 78),
            Holder::Free,
            "POSIX locks are not ours"
        );
        assert_eq!(holder_in(text, dev, 7), Holder::Free);
        let other = nix::sys::stat::makedev(8, 1);
        assert_eq!(holder_in(text, other, 77), Holder::Free);
    }
}
