//! The on-disk protocol of `spool-layout.md`: where everything is ([`Spool`], [`Dir`]),
//! how the spool is created and checked ([`layout`]), the only code that renames files
//! between states ([`transition`]), the worker's singleton lock ([`lock`]), how files
//! are taken from `incoming/` ([`intake`]) under the claim names and by the safe open
//! that [`claim`] keeps for it and the readers, the worker's status file ([`status`]), and
//! how jobs are read back ([`store`]).

pub mod claim;
pub mod intake;
pub mod layout;
pub mod lock;
pub mod status;
pub mod store;
pub mod transition;

use crate::job::{JobName, State};
use std::path::{Path, PathBuf};

/// The spool used when neither `--spool` nor `SPACK_INSTALLER_SPOOL` is given.
pub const DEFAULT_SPOOL: &str = "/var/spool/spack-installer";

/// The singleton lock; holds the holder's PID.
pub const LOCK_FILE: &str = "worker.lock";
/// The worker's status and heartbeat.
pub const STATUS_FILE: &str = "worker.toml";
/// The next job ID.
pub const COUNTER_FILE: &str = "counter";
/// Present while the queue is paused.
pub const PAUSED_FILE: &str = "paused";
/// Request files in `incoming/` end with this; other `*.toml` files are jobs.
pub const REQUEST_SUFFIX: &str = ".request.toml";
/// Prefix of a claimed job file in `tmp/`: `claim.NNNNNN.TICKET`.
pub const CLAIM_PREFIX: &str = "claim.";
/// Prefix of a claimed request in `tmp/`: `request.TICKET`.
pub const REQUEST_CLAIM_PREFIX: &str = "request.";
/// Environment variable that marks every process of a job: `SPOOL/NAME`.
pub const JOB_MARKER_ENV: &str = "SPACK_INSTALLER_JOB";

/// The directories of a spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dir {
    Incoming,
    Pending,
    Running,
    Done,
    Failed,
    Cancelled,
    Logs,
    Receipts,
    Tmp,
    /// `NAME.json`: the concrete spec Spack made of a job's spec, as Spack printed it.
    Concrete,
    /// Entries set aside because they could be neither taken nor removed: for an admin
    /// to inspect and remove (as Postfix's `corrupt/`).
    Quarantine,
}

impl Dir {
    pub const ALL: [Dir; 11] = [
        Dir::Incoming,
        Dir::Pending,
        Dir::Running,
        Dir::Done,
        Dir::Failed,
        Dir::Cancelled,
        Dir::Logs,
        Dir::Receipts,
        Dir::Tmp,
        Dir::Concrete,
        Dir::Quarantine,
    ];
    /// The directories that hold job files, earliest state first.
    pub const STATES: [Dir; 5] = [
        Dir::Pending,
        Dir::Running,
        Dir::Done,
        Dir::Failed,
        Dir::Cancelled,
    ];
    /// The directories of finished jobs.
    pub const FINISHED: [Dir; 3] = [Dir::Done, Dir::Failed, Dir::Cancelled];

    pub fn name(self) -> &'static str {
        match self {
            Dir::Incoming => "incoming",
            Dir::Pending => "pending",
            Dir::Running => "running",
            Dir::Done => "done",
            Dir::Failed => "failed",
            Dir::Cancelled => "cancelled",
            Dir::Logs => "logs",
            Dir::Receipts => "receipts",
            Dir::Tmp => "tmp",
            Dir::Concrete => "concrete",
            Dir::Quarantine => "quarantine",
        }
    }

    /// The mode spool-layout.md gives the directory.
    pub fn mode(self) -> u32 {
        match self {
            Dir::Incoming => 0o3770,
            // setgid: files are written here and renamed into the group-readable state
            // directories, so they must get the spool's group, not the worker's own.
            Dir::Tmp => 0o2700,
            // What members dropped and nobody could remove: the worker user and root only.
            Dir::Quarantine => 0o2700,
            _ => 0o2750,
        }
    }

    /// The state a job file in this directory is in.
    pub fn state(self) -> Option<State> {
        match self {
            Dir::Pending => Some(State::Pending),
            Dir::Running => Some(State::Running),
            Dir::Done => Some(State::Done),
            Dir::Failed => Some(State::Failed),
            Dir::Cancelled => Some(State::Cancelled),
            Dir::Incoming
            | Dir::Logs
            | Dir::Receipts
            | Dir::Tmp
            | Dir::Concrete
            | Dir::Quarantine => None,
        }
    }
}

impl State {
    /// The directory a job in this state lives in (rejected jobs live in `failed/`).
    pub fn dir(self) -> Dir {
        match self {
            State::Pending => Dir::Pending,
            State::Running => Dir::Running,
            State::Done => Dir::Done,
            State::Failed | State::Rejected => Dir::Failed,
            State::Cancelled => Dir::Cancelled,
        }
    }
}

/// The mode of the spool root, of job files and logs, and of the lock.
pub const ROOT_MODE: u32 = 0o2750;
pub const FILE_MODE: u32 = 0o640;
pub const LOCK_MODE: u32 = 0o600;

/// A spool directory: paths only; nothing here touches the disk.
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
}

impl Spool {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Spool { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn dir(&self, d: Dir) -> PathBuf {
        self.root.join(d.name())
    }
    pub fn job_path(&self, d: Dir, name: &JobName) -> PathBuf {
        self.dir(d).join(name.file_name())
    }
    pub fn log_path(&self, name: &JobName) -> PathBuf {
        self.dir(Dir::Logs).join(name.log_name())
    }
    /// The log path as recorded in a job file: relative to the spool root.
    pub fn log_rel(name: &JobName) -> String {
        format!("{}/{}", Dir::Logs.name(), name.log_name())
    }
    pub fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
    pub fn receipt_path(&self, ticket: &str) -> PathBuf {
        self.dir(Dir::Receipts).join(ticket)
    }
    /// Where the concrete spec of a job is kept (`concrete/NAME.json`).
    pub fn concrete_path(&self, name: &JobName) -> PathBuf {
        self.dir(Dir::Concrete).join(format!("{name}.json"))
    }
    /// The value of [`JOB_MARKER_ENV`] for a job of this spool.
    pub fn job_marker(&self, name: &JobName) -> String {
        format!("{}/{}", self.root.display(), name)
    }
}
