//! The worker's singleton lock: an exclusive flock(2) on `worker.lock`, taken without
//! blocking (std's `File::try_lock`, the same flock as the unmaintained fs2 crate). The
//! holder writes its PID into the file so a second worker can say who holds it. The lock
//! dies with the process, so a crashed worker never leaves it held. flock over NFS is not
//! reliable; `init` and the worker warn when the spool is on a network file system.

use super::{LOCK_FILE, LOCK_MODE, Spool};
use crate::error::{Error, IoContext, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;

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
                let pid = pid.trim();
                return Err(Error::WorkerBusy {
                    path,
                    pid: if pid.is_empty() {
                        "unknown".into()
                    } else {
                        pid.into()
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
