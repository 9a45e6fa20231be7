//! The command line: one file per command, all parsed by clap from the definitions here
//! (so completions and man pages come from the same source). Each command returns the
//! process's exit code; errors carry their own (see `error::exit`).

pub mod access;
pub mod auth;
pub mod cancel;
pub mod cleanup;
pub mod completions;
pub mod config_check;
pub mod exec_job;
pub mod failed;
pub mod init;
pub mod logs;
pub mod man;
pub mod output;
pub mod pause;
pub mod plan;
pub mod priority;
pub mod request;
pub mod retry;
pub mod show;
pub mod status;
pub mod submit;
pub mod validate;
pub mod worker;

use crate::config::Config;
use crate::error::Result;
use crate::spool::{DEFAULT_SPOOL, Spool};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "spack-installer",
    version,
    about = "A multi-user queue for Spack installs",
    long_about = "A multi-user queue for Spack installs. Users in the submitters' group drop jobs into a \
                  spool directory; one worker installs them with the site's Spack.\n\n\
                  Exit codes: 0 success, 1 failure, 2 usage error, 3 not permitted, 4 no such job, \
                  5 another worker holds the lock."
)]
pub struct Cli {
    /// The spool directory.
    #[arg(long, global = true, env = "SPACK_INSTALLER_SPOOL", default_value = DEFAULT_SPOOL, value_name = "DIR")]
    pub spool: PathBuf,
    /// The config file [default: /etc/spack-installer/config.toml when present]
    #[arg(
        long,
        global = true,
        env = "SPACK_INSTALLER_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or repair the spool layout (as root: a shared spool; otherwise a private one).
    Init(init::Args),
    /// Queue Spack installs.
    // Written out: clap's own usage line, after a missing spec, lists the global options
    // given by the environment as if they were required.
    #[command(override_usage = "spack-installer submit [OPTIONS] <SPEC>...\n       \
                                spack-installer submit [OPTIONS] --file <STACK.toml>")]
    Submit(submit::Args),
    /// Show the queue.
    Status(status::Args),
    /// Everything about one job.
    Show(show::Args),
    /// Print a job's log; -f follows it until the job ends.
    Logs(logs::Args),
    /// Cancel jobs: pending ones at once, running ones by stopping their Spack.
    Cancel(cancel::Args),
    /// Change a pending job's priority.
    Priority(priority::Args),
    /// Stop starting new jobs (admins); running ones finish.
    Pause(pause::PauseArgs),
    /// Start jobs again after `pause` (admins).
    Resume,
    /// Queue a failed or cancelled job again.
    Retry(retry::Args),
    /// Failed jobs with their reasons and the end of their logs.
    Failed(failed::Args),
    /// Remove finished jobs older than N days, and their logs (worker user or root).
    Cleanup(cleanup::Args),
    /// The order the scheduler would run the pending jobs in, with reasons.
    #[command(visible_alias = "plan")]
    Optimize(plan::Args),
    /// Check job files before dropping them into incoming/.
    Validate(validate::Args),
    /// Who you are, and whether you may submit.
    AuthStatus(auth::Args),
    /// Every setting and where it came from; whether Spack and the spool are sound.
    ConfigCheck(config_check::Args),
    /// Run or control the worker.
    #[command(subcommand)]
    Worker(worker::Command),
    /// Run one running job's Spack (what the Slurm batch script runs; not for people).
    #[command(hide = true)]
    ExecJob(exec_job::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::Args),
    /// Print the manual page, or write one per command into a directory.
    Man(man::Args),
}

/// What every command gets.
pub struct Ctx {
    pub spool: Spool,
    pub config_path: Option<PathBuf>,
}

impl Ctx {
    pub fn config(&self) -> Result<Config> {
        Config::load(self.config_path.as_deref())
    }
}

pub fn run(cli: Cli) -> Result<i32> {
    let ctx = Ctx {
        spool: Spool::new(cli.spool),
        config_path: cli.config,
    };
    // A config that cannot be read or parsed is reported by every command that may use
    // it, before it acts: a typo must not be silently replaced by the defaults.
    if !matches!(cli.command, Command::Completions(_) | Command::Man(_)) {
        ctx.config()?;
    }
    // `init` makes the spool, so its errors are about making it, not about using one.
    let explain = !matches!(cli.command, Command::Init(_));
    run_command(&ctx, cli.command).map_err(|e| {
        if explain {
            access::explain(&ctx.spool, e)
        } else {
            e
        }
    })
}

fn run_command(ctx: &Ctx, command: Command) -> Result<i32> {
    match command {
        Command::Init(a) => init::run(ctx, a),
        Command::Submit(a) => submit::run(ctx, a),
        Command::Status(a) => status::run(ctx, a),
        Command::Show(a) => show::run(ctx, a),
        Command::Logs(a) => logs::run(ctx, a),
        Command::Cancel(a) => cancel::run(ctx, a),
        Command::Priority(a) => priority::run(ctx, a),
        Command::Pause(a) => pause::pause(ctx, a),
        Command::Resume => pause::resume(ctx),
        Command::Retry(a) => retry::run(ctx, a),
        Command::Failed(a) => failed::run(ctx, a),
        Command::Cleanup(a) => cleanup::run(ctx, a),
        Command::Optimize(a) => plan::run(ctx, a),
        Command::Validate(a) => validate::run(ctx, a),
        Command::AuthStatus(a) => auth::run(ctx, a),
        Command::ConfigCheck(a) => config_check::run(ctx, a),
        Command::Worker(c) => worker::run(ctx, c),
        Command::ExecJob(a) => exec_job::run(ctx, a),
        Command::Completions(a) => completions::run(a),
        Command::Man(a) => man::run(a),
    }
}
