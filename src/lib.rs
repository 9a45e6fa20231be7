//! spack-installer: a multi-user queue for Spack installs, built on a spool directory.
//!
//! The spool directory is the database and the API (see `spool-layout.md`). A job is a
//! small TOML file. The CLI ([`cli`]) writes it atomically into `incoming/`; the kernel's
//! permission checks decide who may. One worker ([`worker`]) holds the singleton lock,
//! takes files in ([`spool::intake`]), validates them ([`job`]), asks the pure
//! [`scheduler`] what to run next, and moves each job through the state directories
//! ([`spool::transition`], the only code that renames between them) while the
//! [`executor`] runs `spack install` by argv.
//!
//! Layers, from the bottom: [`error`] and [`identity`] (users and groups); [`job`] (the
//! file format: `JobFile` as parsed, `Submission` as validated, `Job` as recorded);
//! [`spool`] (paths, modes, locking, transitions, intake, reading); [`config`];
//! [`scheduler`]; [`executor`]; [`worker`] (a pipeline of stage files: intake,
//! concretize, dispatch, finish; requests; status); [`cli`].

pub mod cli;
pub mod concrete;
pub mod config;
pub mod error;
pub mod executor;
pub mod history;
pub mod identity;
pub mod job;
pub mod logging;
pub mod queue;
pub mod scheduler;
pub mod spool;
pub mod text;
pub mod time;
pub mod worker;

pub use error::{Error, Result};
