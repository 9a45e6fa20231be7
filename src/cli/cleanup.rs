//! `cleanup [--keep-days N]`: remove finished jobs (done/, failed/, cancelled/) that
//! finished more than N days ago (default: the config's `keep_days`), with their logs and
//! concrete specs, receipts older than a day, and the dotfiles of killed submitters left
//! in `incoming/` for more than a day. The packages' spack-installer-cleanup.timer runs it
//! daily. Only
//! the worker user and root can write those directories, so only they can clean up.

use super::Ctx;
use crate::error::{Error, Result};
use crate::spool::{Dir, store};
use crate::time::Timestamp;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep jobs that finished within this many days [default: `keep_days` of the config, 7]
    #[arg(long, value_name = "N")]
    pub keep_days: Option<u64>,
    /// Say what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let keep_days = match a.keep_days {
        Some(n) => n,
        None => ctx.config()?.keep_days.value,
    };
    let cutoff = Timestamp::now()
        .0
        .saturating_sub(keep_days.saturating_mul(86_400));
    let mut removed: Vec<String> = Vec::new();
    for dir in Dir::FINISHED {
        for name in store::list(&ctx.spool, dir)? {
            let path = ctx.spool.job_path(dir, &name);
            let finished = store::read_path(&path)
                .ok()
                .and_then(|j| j.state.finished_at)
                .or_else(|| {
                    std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .map(Timestamp::from_system)
                });
            if finished.is_none_or(|t| t.0 >= cutoff) {
                continue;
            }
            if !a.dry_run {
                std::fs::remove_file(&path).map_err(|e| permission(ctx, &path, e))?;
                let _ = std::fs::remove_file(ctx.spool.log_path(&name));
                let _ = std::fs::remove_file(ctx.spool.concrete_path(&name));
            }
            removed.push(format!("{}/{}", dir.name(), name.file_name()));
        }
    }
    let old = crate::spool::intake::old_receipts(&ctx.spool)?;
    let receipts_removed = old.len();
    if !a.dry_run {
        for path in &old {
            std::fs::remove_file(path).map_err(|err| permission(ctx, path, err))?;
        }
    }
    let stale = crate::spool::intake::stale_temp_files(&ctx.spool)?;
    let stale_removed = stale.len();
    if !a.dry_run {
        for path in &stale {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(permission(ctx, path, e));
                }
                _ => {}
            }
        }
    }
    if !a.dry_run {
        for dir in Dir::FINISHED
            .into_iter()
            .chain([Dir::Logs, Dir::Receipts, Dir::Incoming])
        {
            let _ = crate::spool::transition::fsync_dir(&ctx.spool.dir(dir));
        }
    }
    if a.json {
        println!(
            "{}",
            serde_json::json!({"removed": removed, "receipts_removed": receipts_removed, "stale_temp_files_removed": stale_removed, "dry_run": a.dry_run})
        );
        return Ok(0);
    }
    let verb = if a.dry_run { "would remove" } else { "removed" };
    for r in &removed {
        println!("{verb} {r}");
    }
    println!(
        "{verb} {} finished job(s) older than {} day(s), {receipts_removed} old receipt(s) \
         and {stale_removed} stale temp file(s) of killed submitters in incoming/",
        removed.len(),
        keep_days
    );
    Ok(0)
}

fn permission(ctx: &Ctx, path: &std::path::Path, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        Error::NotPermitted(format!(
            "cannot remove {}: only the worker user ({}) or root may clean up the spool",
            path.display(),
            std::fs::metadata(ctx.spool.root())
                .map(|m| crate::identity::user_name(std::os::unix::fs::MetadataExt::uid(&m)))
                .unwrap_or_default()
        ))
    } else {
        Error::io("remove", path, e)
    }
}
