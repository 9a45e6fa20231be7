//! The `spack-installer` binary: parse the command line, set up logging, run the command,
//! and turn errors into a message and the documented exit code.

use clap::Parser;
use spack_installer::cli::{self, Cli};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

fn main() {
    let cli = Cli::parse();
    if !matches!(cli.command, cli::Command::Worker(_)) {
        // A CLI command piped into `head` should end quietly, as Unix tools do; the worker
        // keeps Rust's default (EPIPE as an error) so a closed log pipe cannot kill it.
        // SAFETY: restoring the default disposition before any thread is started.
        unsafe {
            let _ = nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGPIPE,
                nix::sys::signal::SigHandler::SigDfl,
            );
        }
    }
    init_logging();
    let code = match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("spack-installer: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}

/// Logs go to stderr. On a terminal: human format with times. Under systemd (stderr is
/// the journal) or in a pipe: no timestamps and no colour, since the journal adds its own.
fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder.without_time().with_ansi(false).init();
    }
}
