//! `completions SHELL`: print the shell completion script, generated from the same clap
//! definitions as the parser, so it never falls behind the commands. The packages install
//! the bash, zsh and fish scripts; this command is for everyone else.
//!
//! The bash script is repaired before it is printed: clap_complete writes the case labels
//! of subcommands as `spack__subcmd__installer__…` (it treats the `-` of the binary's name
//! as a subcommand separator) while its words loop sets `cmd=spack__installer__…`, so
//! nothing past the first word would ever complete. The fish script completes options
//! only; the values of a command's first positional argument (`completions SHELL`) are added. tests/completions.rs runs each shell's
//! completion function on real command lines.

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
    clap_complete::generate(a.shell, &mut cmd, name.clone(), &mut script);
    match a.shell {
        clap_complete::Shell::Bash => script = fix_bash_labels(&script, &name),
        clap_complete::Shell::Fish => add_fish_positionals(&mut script, &cmd, &name),
        _ => {}
    }
    std::io::stdout()
        .write_all(&script)
        .map_err(|e| Error::io("write the completion script to", Path::new("stdout"), e))?;
    Ok(0)
}

/// Make the bash script's case labels name subcommands as its words loop does.
fn fix_bash_labels(script: &[u8], name: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(script);
    let wrong = format!("{}__", name.replace('-', "__subcmd__"));
    let right = format!("{}__", name.replace('-', "__"));
    if wrong == right {
        return script.to_vec();
    }
    text.replace(&wrong, &right).into_bytes()
}

/// Fish lines for the possible values of each command's first positional argument, which
/// clap_complete's fish generator leaves out.
fn add_fish_positionals(script: &mut Vec<u8>, cmd: &clap::Command, name: &str) {
    let func = format!("__fish_{}_using_subcommand", name.replace('-', "_"));
    for sub in cmd.get_subcommands() {
        let Some(arg) = sub.get_positionals().next() else {
            continue;
        };
        let values: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| v.get_name().to_string())
            .collect();
        if values.is_empty() {
            continue;
        }
        let line = format!(
            "complete -c {name} -n \"{func} {}; and not __fish_seen_subcommand_from {}\" -f -a \"{}\"\n",
            sub.get_name(),
            values.join(" "),
            values.join(" ")
        );
        script.extend_from_slice(line.as_bytes());
    }
}
