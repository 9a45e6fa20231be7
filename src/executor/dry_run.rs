//! The worker's dry-run mode: every job goes through the states exactly as it would, but
//! instead of running Spack the executor writes the argv it would run into the job's log
//! and reports success. This is what the quickstart uses on a machine without Spack.

use super::{Executor, Exit, Handle, Launch, OnExit};
use crate::error::{IoContext, Result};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

#[derive(Debug, Default)]
pub struct DryRunExecutor;

impl Executor for DryRunExecutor {
    fn start(&mut self, launch: &Launch, on_exit: OnExit) -> Result<Handle> {
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(crate::spool::FILE_MODE)
            .open(&launch.log)
            .at("open the log", &launch.log)?;
        let argv = serde_json::to_string(&launch.argv).expect("argv serializes");
        writeln!(log, "==> dry run: would run {argv}").at("write", &launch.log)?;
        on_exit(Exit::Code(0));
        Ok(Handle {
            pgid: None,
            slurm: None,
        })
    }

    fn stop(&mut self, _handle: &Handle, _force: bool) {}

    fn kind(&self) -> &'static str {
        "dry-run"
    }
}
