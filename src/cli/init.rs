//! `init`: create or repair a spool with the owners and modes of spool-layout.md.

use super::Ctx;
use crate::error::Result;
use crate::spool::layout::{self, InitOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The submitters' group [default: your primary group].
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// The user the worker runs as (root only) [default: you].
    #[arg(long, value_name = "USER")]
    pub owner: Option<String>,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let report = layout::init(
        &ctx.spool,
        &InitOptions {
            group: a.group,
            owner: a.owner,
        },
    )?;
    for c in &report.changed {
        println!("{c}");
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "spool {} ready: worker {}, submitters' group {}",
        ctx.spool.root().display(),
        report.owner,
        report.group
    );
    Ok(0)
}
