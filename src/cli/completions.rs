//! `completions SHELL`: print the shell completion script, generated from the same clap
//! definitions as the parser, so it never falls behind the commands. The packages install
//! the bash, zsh and fish scripts; this command is for everyone else.

use crate::error::{Error, Result};
use clap::CommandFactory;
use std::io::Write;
use std::path::Path;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

pub fn run(a: Args) -> Result<i32> {
    let mut cmd = super::Cli::command();
    let name = cmd.get_name().to_string();
    // Into a buffer first: clap_complete panics on a write error (`| head`).
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, name, &mut script);
    std::io::stdout()
        .write_all(&script)
        .map_err(|e| Error::io("write the completion script to", Path::new("stdout"), e))?;
    Ok(0)
}
