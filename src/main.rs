//! The `spack-installer` binary: parse the command line, set up logging, run the command,
//! and turn errors into a message and the documented exit code.

use clap::Parser;
use spack_installer::cli::{self, Cli};

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
    spack_installer::logging::init(cli.config.as_deref());
    let code = match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("spack-installer: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}
