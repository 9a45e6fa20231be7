//! `priority JOB PRIORITY`: change a pending job's priority, through a request.

use super::Ctx;
use super::request::{Answer, exit_code, precheck_owner, send};
use crate::error::{Error, Result, exit};
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
    match send(ctx, &Request::Priority(name.id, a.priority))? {
        // The worker's answer names the job already ("000042-hdf5 now has priority high").
        Answer::Receipt(r) => {
            println!("{}", r.message);
            Ok(exit_code(r.outcome))
        }
        Answer::Queued(ticket) => {
            println!(
                "{name}: priority {} queued as {ticket}: the worker is not running; it will act when it starts",
                a.priority
            );
            Ok(exit::OK)
        }
    }
}
