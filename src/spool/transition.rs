//! The only code that writes job files and renames them between state directories.
//!
//! Two primitives do all the work (spool-layout.md, *Transitions*): [`move_job`], one
//! `renameat2(RENAME_NOREPLACE)` between directories of one file system, and
//! [`rewrite`], a new version of a file renamed over the old one in the same directory.
//! Every new file goes temp → fsync → rename, so no reader ever sees half a file and no
//! power cut leaves an empty one. The directory is then fsynced too, so a power cut
//! never undoes the step, unless the caller says [`Durable::Content`] (spool-layout.md,
//! *Durability*).

use super::{Dir, FILE_MODE, Spool};
use crate::error::{Error, IoContext, Result};
use crate::job::{Job, JobName};
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// What of a step must survive a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durable {
    /// The whole step: the file's bytes, then its directory entry (fsync of the file and
    /// of the directory). For every step someone has been told about.
    Step,
    /// The file's bytes only (fsync of the file, not of the directory): a power cut may
    /// undo the rename, leaving the job one step back, but never leaves a half or empty
    /// file. For the worker's own *start* and *finish* of an install, which recovery
    /// redoes if they are lost.
    Content,
}

/// Make a directory's entries durable. A rename is on disk only once the directory that
/// holds the new name is; ext4 can otherwise keep the data and lose the name.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .at("fsync directory", dir)
}

/// rename(2) that never replaces an existing file: `renameat2(RENAME_NOREPLACE)`, or on
/// file systems without it, link(2) + unlink(2) (link fails with EEXIST too).
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
            fs::hard_link(from, to)?;
            fs::remove_file(from)
        }
        Err(e) => Err(e.into()),
    }
}

/// A temp file in `dir` whose name starts with `.`, mode 0640 whatever the umask.
fn temp_in(dir: &Path) -> Result<tempfile::NamedTempFile> {
    let tmp = tempfile::Builder::new()
        .prefix(".")
        .tempfile_in(dir)
        .at("create a temp file in", dir)?;
    tmp.as_file()
        .set_permissions(Permissions::from_mode(FILE_MODE))
        .at("chmod", tmp.path())?;
    Ok(tmp)
}

fn write_synced(tmp: &mut tempfile::NamedTempFile, bytes: &[u8], durable: bool) -> Result<()> {
    let path = tmp.path().to_path_buf();
    tmp.write_all(bytes).at("write", &path)?;
    if durable {
        tmp.as_file().sync_all().at("fsync", &path)?;
    }
    Ok(())
}

/// Create `dir/file_name` with `bytes`, never replacing an existing file. The temp file
/// is written in `dir` itself, so this also serves the CLI, which cannot write `tmp/`.
pub fn create_new_in(dir: &Path, file_name: &str, bytes: &[u8]) -> Result<()> {
    place_new_in(dir, file_name, bytes)?;
    fsync_dir(dir)
}

/// [`create_new_in`] without the fsync of `dir`: the caller makes the name durable, and
/// knows, if that fails, that the file is there all the same (a half-failed step that
/// the caller must resolve: `submit` removes the file again, or says it is queued).
pub fn place_new_in(dir: &Path, file_name: &str, bytes: &[u8]) -> Result<()> {
    let mut tmp = temp_in(dir)?;
    write_synced(&mut tmp, bytes, true)?;
    let target = dir.join(file_name);
    tmp.persist_noclobber(&target)
        .map_err(|e| Error::io("create", &target, e.error))?;
    Ok(())
}

/// Create a job file in a state directory (intake's step 4). Fails if it exists. Without
/// `sync_dir` the caller fsyncs the directory once for a whole batch.
pub fn create_job(spool: &Spool, dir: Dir, job: &Job, sync_dir: bool) -> Result<()> {
    let mut tmp = temp_in(&spool.dir(Dir::Tmp))?;
    write_synced(&mut tmp, job.to_toml().as_bytes(), true)?;
    let target = spool.job_path(dir, &job.name());
    tmp.persist_noclobber(&target)
        .map_err(|e| Error::io("create", &target, e.error))?;
    if sync_dir {
        fsync_dir(&spool.dir(dir))?;
    }
    Ok(())
}

/// Replace `target` with `bytes` by renaming a temp file from `tmp/` over it. With
/// `durable`, the file and its directory are fsynced.
pub fn replace(spool: &Spool, target: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    replace_synced(spool, target, bytes, durable, durable)
}

/// [`replace`], choosing the file's fsync and the directory's separately.
fn replace_synced(
    spool: &Spool,
    target: &Path,
    bytes: &[u8],
    sync_file: bool,
    sync_dir: bool,
) -> Result<()> {
    let tmp_dir = spool.dir(Dir::Tmp);
    let tmp_dir = if tmp_dir.is_dir() {
        tmp_dir
    } else {
        target.parent().unwrap_or(Path::new(".")).to_path_buf()
    };
    let mut tmp = temp_in(&tmp_dir)?;
    write_synced(&mut tmp, bytes, sync_file)?;
    tmp.persist(target)
        .map_err(|e| Error::io("replace", target, e.error))?;
    if sync_dir {
        fsync_dir(target.parent().unwrap_or(Path::new(".")))?;
    }
    Ok(())
}

/// *rewrite*: a new version of a job file in the directory it is in, durable.
pub fn rewrite(spool: &Spool, dir: Dir, job: &Job) -> Result<()> {
    rewrite_as(spool, dir, job, Durable::Step)
}

/// *rewrite*, saying what must survive a power cut. The file's bytes always are.
pub fn rewrite_as(spool: &Spool, dir: Dir, job: &Job, durable: Durable) -> Result<()> {
    let target = spool.job_path(dir, &job.name());
    replace_synced(
        spool,
        &target,
        job.to_toml().as_bytes(),
        true,
        durable == Durable::Step,
    )
}

/// *move*: `from/NAME.toml → to/NAME.toml`, never overwriting; then fsync the directory
/// that received it. The source directory is not fsynced: on ext4 and xfs one journal
/// transaction holds both names, so the target's fsync makes the whole rename durable; on
/// a file system where it does not, a power cut can leave the job in both directories,
/// which recovery resolves (the copy in the later state wins).
pub fn move_job(spool: &Spool, name: &JobName, from: Dir, to: Dir) -> Result<()> {
    move_job_as(spool, name, from, to, Durable::Step)
}

/// *move*, saying what must survive a power cut: with [`Durable::Content`] the
/// directory is not fsynced (the file's bytes were when it was written).
pub fn move_job_as(
    spool: &Spool,
    name: &JobName,
    from: Dir,
    to: Dir,
    durable: Durable,
) -> Result<()> {
    let src = spool.job_path(from, name);
    let dst = spool.job_path(to, name);
    rename_noreplace(&src, &dst).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            Error::Other(format!(
                "cannot move {} to {}/: a file of that name is already there (a hand-made copy?); \
                 the job stays in {}/",
                name,
                to.name(),
                from.name()
            ))
        } else {
            Error::io("rename", &src, e)
        }
    })?;
    if durable == Durable::Step {
        fsync_dir(&spool.dir(to))?;
    }
    Ok(())
}

/// Whether a *move* of `name` from `from` to `to` has happened, judged from the disk: the
/// file is in `to` and no longer in `from`. A move whose rename succeeded and whose fsync
/// failed returned an error, but the job is where it was sent: the caller goes on from
/// there rather than redoing the step from memory (spool-layout.md, *Crash points*).
pub fn moved(spool: &Spool, name: &JobName, from: Dir, to: Dir) -> bool {
    let present = |d| fs::symlink_metadata(spool.job_path(d, name)).is_ok();
    present(to) && !present(from)
}

/// Intake's claim: `incoming/TICKET → tmp/CLAIM`. With `sync`, fsync both directories at
/// once; otherwise the caller calls [`sync_claims`] once for the batch. Either way this
/// happens before any record is made of the claim, so a power cut cannot bring the file
/// back into `incoming/` once a job exists for it.
pub fn claim(spool: &Spool, ticket: &str, claim_name: &str, sync: bool) -> Result<()> {
    let src = spool.dir(Dir::Incoming).join(ticket);
    let dst = spool.dir(Dir::Tmp).join(claim_name);
    rename_noreplace(&src, &dst).at("claim", &src)?;
    if sync {
        sync_claims(spool)?;
    }
    Ok(())
}

/// Make a batch of claims durable.
pub fn sync_claims(spool: &Spool) -> Result<()> {
    fsync_dir(&spool.dir(Dir::Tmp))?;
    fsync_dir(&spool.dir(Dir::Incoming))
}

/// Move a job file aside into `tmp/` (duplicates found by recovery).
pub fn set_aside(spool: &Spool, name: &JobName, from: Dir, prefix: &str) -> Result<()> {
    let src = spool.job_path(from, name);
    let dst = spool
        .dir(Dir::Tmp)
        .join(format!("{prefix}{}", name.file_name()));
    rename_noreplace(&src, &dst).at("set aside", &src)?;
    fsync_dir(&spool.dir(from))
}
