//! `man [--dir DIR]`: the manual pages, generated from the clap definitions (clap_mangen).
//! Without `--dir`, the top page goes to stdout (`spack-installer man | man -l -`); with
//! it, one page per command and subcommand (`spack-installer.1`,
//! `spack-installer-worker-run.1`, ...) is written into DIR/man1/, the section directory
//! `man` looks in, so `MANPATH=DIR man spack-installer-submit` finds them.

use crate::error::{Error, Result};
use clap::CommandFactory;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write every page into DIR/man1/ (created if missing) instead of printing the top one.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<i32> {
    let cmd = super::Cli::command();
    match a.dir {
        None => clap_mangen::Man::new(cmd)
            .render(&mut std::io::stdout().lock())
            .map_err(|e| Error::io("write the man page to", Path::new("stdout"), e))?,
        Some(dir) => {
            let section = dir.join("man1");
            std::fs::create_dir_all(&section)
                .map_err(|e| Error::io("create the man page directory", &section, e))?;
            clap_mangen::generate_to(cmd, &section)
                .map_err(|e| Error::io("write man pages into", &section, e))?;
            println!("wrote the man pages into {}", section.display());
        }
    }
    Ok(0)
}
