//! Asking the worker to act (cancel, priority, pause, resume): the CLI drops a request file
//! into `incoming/` (its owner is the requester, which is what the worker checks) and
//! waits briefly for the worker's receipt. When no worker runs, the request stays queued.

use super::Ctx;
use super::submit::{await_receipt, drop_file, worker_alive};
use crate::error::{Error, Result, exit};
use crate::job::Request;
use crate::spool::REQUEST_SUFFIX;
use crate::spool::intake::{Outcome, Receipt};
use std::time::Duration;

/// How long the CLI waits for a receipt.
const RECEIPT_WAIT: Duration = Duration::from_secs(10);

pub enum Answer {
    /// The worker acted (or refused) and said so.
    Receipt(Receipt),
    /// No worker runs: the request waits in `incoming/`.
    Queued(String),
}

pub fn send(ctx: &Ctx, req: &Request) -> Result<Answer> {
    let text = toml::to_string(&req.to_file()).expect("a request serializes");
    let alive = worker_alive(ctx);
    let ticket = drop_file(&ctx.spool, REQUEST_SUFFIX, &text)?;
    if !alive {
        return Ok(Answer::Queued(ticket));
    }
    match await_receipt(&ctx.spool, &ticket, RECEIPT_WAIT) {
        Some(r) => Ok(Answer::Receipt(r)),
        None => Ok(Answer::Queued(ticket)),
    }
}

/// The exit code for a receipt's outcome.
pub fn exit_code(o: Outcome) -> i32 {
    match o {
        Outcome::Done | Outcome::Accepted => exit::OK,
        Outcome::NotPermitted => exit::NOT_PERMITTED,
        Outcome::NotFound => exit::NOT_FOUND,
        Outcome::AlreadyFinished | Outcome::Rejected | Outcome::Invalid => exit::FAILURE,
    }
}

/// Send, print the outcome in one line, and return the exit code.
pub fn send_and_report(ctx: &Ctx, what: &str, req: &Request) -> Result<i32> {
    match send(ctx, req)? {
        Answer::Receipt(r) => {
            println!("{what}: {}", r.message);
            Ok(exit_code(r.outcome))
        }
        Answer::Queued(ticket) => {
            println!(
                "{what}: queued as {ticket}: the worker is not running; it will act when it starts"
            );
            Ok(exit::OK)
        }
    }
}

/// Refuse early, without dropping a request, when the answer is already known.
pub fn precheck_owner(ctx: &Ctx, job: &crate::job::Job) -> Result<()> {
    let me = crate::identity::current_uid();
    if job.meta.owner_uid == me {
        return Ok(());
    }
    let cfg = ctx.config()?;
    let worker_uid = std::fs::metadata(ctx.spool.root())
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(0);
    if crate::identity::is_admin(me, worker_uid, cfg.admin_group.value.as_deref()) {
        return Ok(());
    }
    Err(Error::NotPermitted(format!(
        "{} belongs to {}; only they, root, the worker user or a member of the admin group may change it",
        job.meta.name, job.meta.owner
    )))
}
