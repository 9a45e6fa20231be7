//! How a job's argv runs. The worker decides *what* runs and *when*; an [`Executor`]
//! only starts one install, reports its end through a callback, and can stop it. The
//! local executor ([`local`]) runs Spack as a child process in its own process group;
//! [`dry_run`] runs nothing and logs the argv. A cluster executor (Slurm) fits behind
//! the same interface: [`slurm`] submits each install as a batch job, and its installs
//! outlive the worker, so the trait also re-attaches to them and tracks them once per
//! interval (default methods: local executors need neither).

pub mod budget;
pub mod dry_run;
pub mod local;
pub mod progress;
pub mod query;
pub mod slurm;

use crate::error::Result;
use crate::job::{Job, SlurmState};
use std::path::PathBuf;
use std::time::Duration;

/// Everything needed to run one install.
#[derive(Debug, Clone)]
pub struct Launch {
    /// `NNNNNN-PACKAGE`.
    pub name: String,
    /// The exact argv: `[spack, "install", install_args..., spec]`.
    pub argv: Vec<String>,
    /// Where Spack's combined output goes (appended).
    pub log: PathBuf,
    /// The complete environment of the install (nothing else is inherited).
    pub env: Vec<(String, String)>,
    /// Which start of the job this is (1 for the first).
    pub attempt: u32,
    /// The job's timeout, for executors that enforce it themselves.
    pub timeout: Option<Duration>,
    /// The worker's jobserver pipe (read, write), passed on as descriptors 3 and 4
    /// (`budget::CHILD_READ_FD`, `CHILD_WRITE_FD`); `env` then holds its `MAKEFLAGS`.
    pub jobserver: Option<(i32, i32)>,
}

/// How an install ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
    /// It could not be started at all (the message is in the log).
    NotStarted,
    /// The batch system ended it, with this exit code: the node failed, memory or the
    /// time limit ran out, or it was cancelled there. `why` is said to people.
    Cluster { code: i32, why: &'static str },
}

impl Exit {
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
    /// The shell convention: 128 + signal.
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
            Exit::NotStarted => 127,
            Exit::Cluster { code, .. } => code,
        }
    }
}

/// Called once, from any thread, when the install has ended.
pub type OnExit = Box<dyn FnOnce(Exit) + Send>;

/// A started install.
#[derive(Debug, Clone)]
pub struct Handle {
    /// The process group that holds the install, when there is one to signal.
    pub pgid: Option<i32>,
    /// Where a batch system runs it: recorded in the job's `[state.slurm]`.
    pub slurm: Option<SlurmState>,
}

/// What re-attaching to an install a previous worker started found.
#[derive(Debug)]
pub enum Reattach {
    /// It is (or was) in the batch system: tracked again; `on_exit` will be called.
    /// Without a job ID in the handle it is being looked up aside, and the answer comes
    /// through [`Executor::submitted`].
    Attached(Handle),
    /// This executor cannot follow it (the config changed): leave it alone.
    Unsupported,
}

/// What became of an install whose start ran aside (a batch system's submission: its
/// answer may take seconds, and the worker's loop does not wait for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// The batch system took it: where it is now (its job ID). Its end is reported
    /// through the `on_exit` given to `start`.
    Placed { name: String, slurm: SlurmState },
    /// The batch system did not take it and says why: no fault of the job (the
    /// controller or its authentication down, the partition inactive...).
    Refused { name: String, why: String },
    /// It was not started for a reason of its own (said to people).
    Failed { name: String, why: String },
    /// Re-attaching found that the batch system never got it (a worker died while
    /// submitting it, and that submission did not land): requeue it by the usual rule.
    NeverSubmitted { name: String },
}

/// Wakes the worker's loop from another thread (see [`Executor::set_waker`]).
pub type Waker = std::sync::Arc<dyn Fn() + Send + Sync>;

/// A change the tracking noticed that belongs in the job's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// `NNNNNN-PACKAGE`.
    pub name: String,
    pub slurm: SlurmState,
}

pub trait Executor {
    /// Start the install; `on_exit` is called when it ends. An executor whose start runs
    /// aside returns at once, with a handle that does not say where it runs yet; the
    /// answer comes through [`Executor::submitted`].
    fn start(&mut self, launch: &Launch, on_exit: OnExit) -> Result<Handle>;
    /// How the worker's loop is woken when a start that runs aside has its answer.
    fn set_waker(&mut self, _wake: Waker) {}
    /// Whether a start is still on its way (its answer not yet taken by [`submitted`]):
    /// the worker starts nothing else meanwhile.
    ///
    /// [`submitted`]: Executor::submitted
    fn starting(&self) -> bool {
        false
    }
    /// Whether a submission of ours is on its way (not a search for a previous worker's):
    /// a detaching worker waits for it, so the job's batch ID gets written.
    fn submitting(&self) -> bool {
        self.starting()
    }
    /// The starts that got their answer since the last call (none for executors whose
    /// `start` is done when it returns).
    fn submitted(&mut self) -> Vec<Submitted> {
        Vec::new()
    }
    /// Ask it to stop (SIGTERM to the group), or make it stop (`force`: SIGKILL).
    fn stop(&mut self, handle: &Handle, force: bool);
    /// A word for status output: "local", "dry-run".
    fn kind(&self) -> &'static str;
    /// What the job's record says before `start`, so a crash in between can be
    /// resolved: `[state.slurm]` without a job ID. `None` for local installs.
    fn mark(&self) -> Option<SlurmState> {
        None
    }
    /// Follow an install a previous worker started (its record has `[state.slurm]`).
    fn reattach(&mut self, _job: &Job, _on_exit: OnExit) -> Result<Reattach> {
        Ok(Reattach::Unsupported)
    }
    /// Called once per check interval: learn what became of the installs (one query for
    /// all of them), call their `on_exit`s, and say which records should change.
    fn track(&mut self) -> Vec<Placed> {
        Vec::new()
    }
    /// The most installs this executor may have at once, when it sets its own limit.
    fn max_jobs(&self) -> Option<usize> {
        None
    }
    /// Whether it enforces `Launch::timeout` itself (so the worker must not).
    fn limits_time(&self) -> bool {
        false
    }
    /// Whether its installs keep running when the worker exits and can be re-attached
    /// by the next one (so the worker may stop without stopping them).
    fn detaches(&self) -> bool {
        false
    }
}

/// The worker's environment variables that `allow` names (`*` at the end: a prefix).
pub fn allowed_env(allow: &[String]) -> Vec<(String, String)> {
    let matches = |k: &str| {
        allow.iter().any(|a| match a.strip_suffix('*') {
            Some(prefix) => k.starts_with(prefix),
            None => k == a,
        })
    };
    std::env::vars().filter(|(k, _)| matches(k)).collect()
}

/// The environment an install gets: the worker's variables that match `allow` (exact
/// names, or prefixes ending in `*`), plus unbuffered Python output (so the log can be
/// followed live) and the job marker that lets recovery find stray processes.
pub fn clean_env(allow: &[String], marker: (&str, String)) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = allowed_env(allow)
        .into_iter()
        .filter(|(k, _)| k != marker.0 && k != "PYTHONUNBUFFERED")
        .collect();
    env.push(("PYTHONUNBUFFERED".into(), "1".into()));
    env.push((marker.0.to_string(), marker.1));
    env.sort();
    env
}

/// For a child between fork and exec (async-signal-safe calls only): die with the
/// worker. SIGKILL comes when the worker dies; if it died before the request took
/// effect, nobody would send it, so exit at once.
pub(crate) fn die_with(parent: i32) -> std::io::Result<()> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
    if nix::unistd::getppid().as_raw() != parent {
        // SAFETY: _exit is async-signal-safe and ends the child without running anything.
        unsafe { nix::libc::_exit(1) };
    }
    Ok(())
}
