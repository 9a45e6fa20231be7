//! `man [--dir DIR]`: the manual pages, generated from the clap definitions (clap_mangen).
//! Without `--dir`, the top page goes to stdout (`spack-installer man | man -l -`); with
//! it, one page per command and subcommand (`spack-installer.1`,
//! `spack-installer-worker-run.1`, ...) is written into DIR, as the packages install them.

use crate::error::{Error, Result};
use clap::CommandFactory;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write every page into this directory (created if missing) instead of printing the top one.
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
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::io("create the man page directory", &dir, e))?;
            clap_mangen::generate_to(cmd, &dir)
                .map_err(|e| Error::io("write man pages into", &dir, e))?;
        }
    }
    Ok(0)
}
