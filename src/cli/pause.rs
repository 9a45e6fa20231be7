//! `pause` / `resume`: admins stop the worker from starting new jobs (running ones finish)
//! and let it go on. The paused state is the `paused` file in the spool, so it survives a
//! restart; the worker writes it on an admin's request.
//!
//! With no worker running, root and the worker user write (or remove) `paused`
//! themselves, as spool-layout.md allows them to: a request would wait in `incoming/`
//! and, dropped just before `worker start`, could be taken after the first jobs had
//! started (the worker takes a file found by its first scan only once it has settled).

use super::Ctx;
use super::request::send_and_report;
use super::submit::worker_alive;
use crate::error::Result;
use crate::identity;
use crate::job::Request;
use crate::spool::status::Paused;
use crate::spool::{PAUSED_FILE, transition};
use crate::time::Timestamp;
use std::os::unix::fs::MetadataExt;

#[derive(Debug, clap::Args)]
pub struct PauseArgs {
    /// Why, shown by status.
    #[arg(long)]
    pub reason: Option<String>,
}

/// No worker runs, and this user may write the spool's own files (root or its owner).
fn act_directly(ctx: &Ctx) -> bool {
    let uid = identity::current_uid();
    !worker_alive(ctx)
        && std::fs::metadata(ctx.spool.root()).is_ok_and(|m| uid == 0 || uid == m.uid())
}

pub fn pause(ctx: &Ctx, a: PauseArgs) -> Result<i32> {
    if !act_directly(ctx) {
        return send_and_report(ctx, "pause", &Request::Pause(a.reason));
    }
    let who = identity::user_name(identity::current_uid());
    let p = Paused {
        by: who.clone(),
        at: Timestamp::now(),
        reason: a.reason,
    };
    let path = ctx.spool.file(PAUSED_FILE);
    let text = toml::to_string(&p).expect("paused serializes");
    transition::replace(&ctx.spool, &path, text.as_bytes(), true)?;
    give_to_spool_owner(ctx, &path);
    println!(
        "pause: paused by {who}: no worker is running; it will start paused (`resume` lets it go on)"
    );
    Ok(0)
}

pub fn resume(ctx: &Ctx) -> Result<i32> {
    if !act_directly(ctx) {
        return send_and_report(ctx, "resume", &Request::Resume);
    }
    let path = ctx.spool.file(PAUSED_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => {
            let _ = transition::fsync_dir(ctx.spool.root());
            println!(
                "resume: resumed by {}: no worker is running; it will start jobs when it starts",
                identity::user_name(identity::current_uid())
            );
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("resume: the queue was not paused");
        }
        Err(e) => return Err(crate::Error::io("remove", &path, e)),
    }
    Ok(0)
}

/// As root, the file goes to the spool's owner and group with the worker's mode, as if
/// the worker had written it.
fn give_to_spool_owner(ctx: &Ctx, path: &std::path::Path) {
    if let Ok(m) = std::fs::metadata(ctx.spool.root()) {
        let _ = nix::unistd::chown(
            path,
            Some(nix::unistd::Uid::from_raw(m.uid())),
            Some(nix::unistd::Gid::from_raw(m.gid())),
        );
    }
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(
        path,
        std::fs::Permissions::from_mode(crate::spool::FILE_MODE),
    );
}
