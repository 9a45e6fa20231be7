//! How a job's argv runs. The worker decides *what* runs and *when*; an [`Executor`]
//! only starts one install, reports its end through a callback, and can stop it. The
//! local executor ([`local`]) runs Spack as a child process in its own process group;
//! [`dry_run`] runs nothing and logs the argv. A cluster executor (Slurm) fits behind
//! the same interface.

pub mod dry_run;
pub mod local;

use crate::error::Result;
use std::path::PathBuf;

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
}

pub trait Executor {
    /// Start the install; `on_exit` is called when it ends.
    fn start(&mut self, launch: &Launch, on_exit: OnExit) -> Result<Handle>;
    /// Ask it to stop (SIGTERM to the group), or make it stop (`force`: SIGKILL).
    fn stop(&mut self, handle: &Handle, force: bool);
    /// A word for status output: "local", "dry-run".
    fn kind(&self) -> &'static str;
}

/// The environment an install gets: the worker's variables that match `allow` (exact
/// names, or prefixes ending in `*`), plus unbuffered Python output (so the log can be
/// followed live) and the job marker that lets recovery find stray processes.
pub fn clean_env(allow: &[String], marker: (&str, String)) -> Vec<(String, String)> {
    let matches = |k: &str| {
        allow.iter().any(|a| match a.strip_suffix('*') {
            Some(prefix) => k.starts_with(prefix),
            None => k == a,
        })
    };
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| matches(k) && k != marker.0)
        .collect();
    env.push(("PYTHONUNBUFFERED".into(), "1".into()));
    env.push((marker.0.to_string(), marker.1));
    env.sort();
    env
}
