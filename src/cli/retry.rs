//! `retry JOB`: queue a failed or cancelled job again, as a new job that refers to the old
//! one (`retry_of`). The new job is yours, like any other submission.

use super::Ctx;
use super::submit::{await_receipt, drop_file, worker_alive};
use crate::error::{Error, Result, exit};
use crate::spool::{Dir, store};
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(value_name = "JOB")]
    pub job: String,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let (dir, name) = store::find(&ctx.spool, &a.job)?;
    if !matches!(dir, Dir::Failed | Dir::Cancelled) {
        return Err(Error::Other(format!(
            "{name} is in {}/: only failed or cancelled jobs can be retried",
            dir.name()
        )));
    }
    let job = store::read(&ctx.spool, dir, &name)?;
    let Some(sub) = job.submission() else {
        return Err(Error::Other(format!(
            "{name} was rejected at intake ({}): there is nothing valid to retry; fix the file and submit it again",
            job.state.reason.as_deref().unwrap_or("no reason recorded")
        )));
    };
    let mut file = sub.to_file();
    file.retry_of = Some(name.id);
    let text = toml::to_string(&file).expect("a job file serializes");
    let alive = worker_alive(ctx);
    let ticket = drop_file(&ctx.spool, ".toml", &text)?;
    match alive
        .then(|| await_receipt(&ctx.spool, &ticket, Duration::from_secs(2)))
        .flatten()
    {
        Some(r) => {
            println!("{name}: retried: {}", r.message);
            Ok(super::request::exit_code(r.outcome))
        }
        None => {
            println!("{name}: retried as ticket {ticket}");
            Ok(exit::OK)
        }
    }
}
