//! Typed errors. Every I/O error carries the path and what we were doing with it, so a
//! message always says which file and which step failed; [`Error::exit_code`] maps each
//! kind to the exit codes documented in the README.

use std::io;
use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exit codes, as documented in the README.
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILURE: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const NOT_PERMITTED: i32 = 3;
    pub const NOT_FOUND: i32 = 4;
    pub const WORKER_BUSY: i32 = 5;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{0}")]
    InvalidJob(#[from] crate::job::JobError),

    #[error("invalid configuration in {}: {message}", path.display())]
    Config { path: PathBuf, message: String },

    #[error("another worker holds the lock on {} (pid {pid}); stop it first (`spack-installer worker stop`), or wait", path.display())]
    WorkerBusy { path: PathBuf, pid: String },

    #[error("{} is {found}, where the spool has {expected}: init does not follow, repair or \
             create through it; look at it, remove it, and run init again", path.display())]
    UnsafeSpoolEntry {
        path: PathBuf,
        found: String,
        expected: &'static str,
    },

    #[error("no job {0} in the spool; `spack-installer status --all` lists every job")]
    JobNotFound(String),

    #[error("{0}")]
    NotPermitted(String),

    #[error("{0}")]
    Usage(String),

    #[error("{0}")]
    Other(String),
}

impl Error {
    /// An I/O error on `path` while doing `action` ("read", "create", "rename", ...).
    pub fn io(action: &'static str, path: impl AsRef<Path>, source: io::Error) -> Self {
        Error::Io {
            action,
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// An I/O error on a path under `dir`.
    pub fn is_in(&self, dir: &Path) -> bool {
        matches!(self, Error::Io { path, .. } if path.starts_with(dir))
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => {
                exit::NOT_PERMITTED
            }
            Error::NotPermitted(_) => exit::NOT_PERMITTED,
            Error::JobNotFound(_) => exit::NOT_FOUND,
            Error::WorkerBusy { .. } => exit::WORKER_BUSY,
            Error::Usage(_) | Error::Config { .. } => exit::USAGE,
            _ => exit::FAILURE,
        }
    }
}

/// Attach a path and an action to an `io::Result`.
pub trait IoContext<T> {
    fn at(self, action: &'static str, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, action: &'static str, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(action, path, e))
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn at(self, action: &'static str, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(action, path, io::Error::from(e)))
    }
}
