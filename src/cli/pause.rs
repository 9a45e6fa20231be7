//! `pause` / `resume`: admins stop the worker from starting new jobs (running ones finish)
//! and let it go on. The paused state is the `paused` file in the spool, so it survives a
//! restart; the worker writes it on an admin's request.

use super::Ctx;
use super::request::send_and_report;
use crate::error::Result;
use crate::job::Request;

#[derive(Debug, clap::Args)]
pub struct PauseArgs {
    /// Why, shown by status.
    #[arg(long)]
    pub reason: Option<String>,
}

pub fn pause(ctx: &Ctx, a: PauseArgs) -> Result<i32> {
    send_and_report(ctx, "pause", &Request::Pause(a.reason))
}

pub fn resume(ctx: &Ctx) -> Result<i32> {
    send_and_report(ctx, "resume", &Request::Resume)
}
