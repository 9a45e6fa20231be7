//! `worker run`: the worker in the foreground, as systemd runs it.

use super::Ctx;
use crate::config::Config;
use crate::error::Result;
use crate::worker::{Options, Worker};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the worker in the foreground (what the systemd unit runs).
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Exit 0 once nothing is runnable and nothing runs.
    #[arg(long)]
    pub until_idle: bool,
    /// Move jobs through the states and log the argv, without running Spack.
    #[arg(long)]
    pub dry_run: bool,
    /// How many installs may run at once (config `max_parallel`).
    #[arg(long, value_name = "N")]
    pub max_parallel: Option<usize>,
    /// Do not use inotify; rely on the periodic rescan alone (for file systems without it).
    #[arg(long)]
    pub no_inotify: bool,
}

pub fn run(ctx: &Ctx, c: Command) -> Result<i32> {
    match c {
        Command::Run(a) => {
            let mut cfg = ctx.config()?;
            if let Some(n) = a.max_parallel.filter(|n| *n > 0) {
                Config::flag(&mut cfg.max_parallel, n, "--max-parallel");
            }
            let opts = Options {
                until_idle: a.until_idle,
                dry_run: a.dry_run,
                no_inotify: a.no_inotify,
                config_path: ctx.config_path.clone(),
            };
            Worker::start(ctx.spool.clone(), cfg, opts)?.run()?;
            Ok(0)
        }
    }
}
