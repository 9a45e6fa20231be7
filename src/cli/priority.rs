//! `priority JOB PRIORITY`: change a pending job's priority, through a request.

use super::Ctx;
use super::request::{precheck_owner, send_and_report};
use crate::error::{Error, Result};
use crate::job::{Priority, Request};
use crate::spool::{Dir, store};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(value_name = "JOB")]
    pub job: String,
    /// high, medium or low.
    #[arg(value_parser = |s: &str| s.parse::<Priority>())]
    pub priority: Priority,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let (dir, name) = store::find(&ctx.spool, &a.job)?;
    if dir != Dir::Pending {
        return Err(Error::Other(format!(
            "{name} is not pending (it is in {}/): only a pending job's priority can change",
            dir.name()
        )));
    }
    precheck_owner(ctx, &store::read(&ctx.spool, dir, &name)?)?;
    send_and_report(
        ctx,
        &name.to_string(),
        &Request::Priority(name.id, a.priority),
    )
}
