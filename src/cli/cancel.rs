//! `cancel JOB...`: a pending job goes to `cancelled/`; a running one has its Spack process
//! group stopped (SIGTERM, then SIGKILL after the grace period) and ends in `cancelled/`.
//! Users may cancel their own jobs; root, the worker user and the admin group any.

use super::Ctx;
use super::request::{Answer, exit_code, precheck_owner, send};
use crate::error::{Result, exit};
use crate::job::Request;
use crate::spool::{Dir, store};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Jobs to cancel (42, 000042, 000042-hdf5).
    #[arg(required = true, value_name = "JOB")]
    pub jobs: Vec<String>,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let mut worst = exit::OK;
    for what in &a.jobs {
        let code = match cancel_one(ctx, what) {
            Ok(code) => code,
            // A spool this user cannot read (or that is missing) is said once, for all jobs.
            Err(e @ crate::Error::Io { .. }) if e.is_in(ctx.spool.root()) => {
                return Err(super::access::explain(&ctx.spool, e));
            }
            Err(e) => {
                eprintln!("spack-installer: {what}: {e}");
                e.exit_code()
            }
        };
        worst = worst.max(code);
    }
    Ok(worst)
}

fn cancel_one(ctx: &Ctx, what: &str) -> Result<i32> {
    let (dir, name) = store::find(&ctx.spool, what)?;
    if Dir::FINISHED.contains(&dir) {
        println!("{name}: already finished (in {}/)", dir.name());
        return Ok(exit::FAILURE);
    }
    let job = store::read(&ctx.spool, dir, &name)?;
    precheck_owner(ctx, &job)?;
    match send(ctx, &Request::Cancel(name.id))? {
        Answer::Queued(ticket) => {
            println!(
                "{name}: cancel queued as {ticket}: the worker is not running; it will act when it starts"
            );
            Ok(exit::OK)
        }
        Answer::Receipt(r) => {
            let code = exit_code(r.outcome);
            if code == exit::OK && dir == Dir::Running {
                // Wait for the install to stop and the job to reach cancelled/.
                let grace = ctx.config()?.kill_grace.value;
                let end = Instant::now() + grace + Duration::from_secs(10);
                while Instant::now() < end {
                    if let Ok(Some((d, _))) = store::locate(&ctx.spool, name.id)
                        && Dir::FINISHED.contains(&d)
                    {
                        // What the worker recorded: a Slurm job may have been only queued,
                        // or Spack may have finished before the cancel landed.
                        let reason = store::read(&ctx.spool, d, &name)
                            .ok()
                            .and_then(|j| j.state.reason)
                            .unwrap_or_else(|| "cancelled (its Spack was stopped)".into());
                        println!("{name}: in {}/: {reason}", d.name());
                        return Ok(exit::OK);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            println!("{name}: {}", r.message);
            Ok(code)
        }
    }
}
