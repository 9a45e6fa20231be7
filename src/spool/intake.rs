//! Taking files from `incoming/` (spool-layout.md, *intake* and *request*). A file is
//! claimed by rename into `tmp/` first, so each is taken once even across a crash; it is
//! opened with `O_NOFOLLOW | O_NONBLOCK` and judged by `fstat` of that descriptor: only a
//! regular file with one link and at most 64 KiB is read. The submitter is the file's
//! owner uid; nothing the text says about its author counts. A file that fails any check
//! becomes a `rejected` record in `failed/` with the reason and the original text. No
//! single entry stops intake: a claim that cannot be removed goes to `quarantine/`, one
//! that cannot even be claimed is skipped with one warning and a receipt, a name that is
//! not UTF-8 is renamed to its escaped form and rejected.
//!
//! The claim names and the safe open live in [`claim`](super::claim), which the readers
//! of the spool ([`store`](super::store)) use too: intake depends on them and on `store`,
//! and neither depends on intake.

use super::claim::{claim_name, fit_name, parse_claim_name};
use super::transition::{self, replace};
use super::{Dir, Spool};
use crate::error::{IoContext, Result};
use crate::job::id::REJECTED_PACKAGE;
use crate::job::{Body, Job, JobId, JobName, Meta, State, StateInfo, Submission};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// How much of a rejected file's text is kept in its record.
const KEPT_ORIGINAL: usize = 64 * 1024;

/// What became of a file taken from `incoming/`; written to `receipts/TICKET`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Receipt {
    pub ticket: String,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<JobId>,
    pub message: String,
    pub at: Timestamp,
    /// Who dropped the file (from fstat). Ticket names are visible to every member, so a
    /// reader trusts a receipt only if this is its own uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_uid: Option<u32>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// A job was queued.
    Accepted,
    /// The file was set aside in `failed/` as rejected.
    Rejected,
    /// A request was carried out.
    Done,
    /// A request the requester has no right to make.
    NotPermitted,
    /// A request about a job that does not exist.
    NotFound,
    /// A request about a job that has already finished.
    AlreadyFinished,
    /// A request file that does not parse.
    Invalid,
}

/// How long a receipt is kept: long enough for any `submit` to read it.
pub const RECEIPT_AGE: Duration = Duration::from_secs(86_400);

/// The receipts older than [`RECEIPT_AGE`]: what the worker prunes, and `cleanup` too.
pub fn old_receipts(spool: &Spool) -> Result<Vec<std::path::PathBuf>> {
    let dir = spool.dir(Dir::Receipts);
    let cutoff = std::time::SystemTime::now() - RECEIPT_AGE;
    Ok(std::fs::read_dir(&dir)
        .at("list", &dir)?
        .flatten()
        .filter(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < cutoff)
        })
        .map(|e| e.path())
        .collect())
}

impl Receipt {
    pub fn read(spool: &Spool, ticket: &str) -> Option<Receipt> {
        let text = std::fs::read_to_string(spool.receipt_path(ticket)).ok()?;
        toml::from_str(&text).ok()
    }

    /// Receipts are advisory: written by rename, not fsynced.
    pub fn write(&self, spool: &Spool) -> Result<()> {
        let text = toml::to_string(self).expect("a receipt serializes");
        replace(
            spool,
            &spool.receipt_path(&self.ticket),
            text.as_bytes(),
            false,
        )
    }
}

/// `incoming/` entries to take now, and whether some were left to settle. With `settle`,
/// a regular file modified within that time is left for its close-after-write event or a
/// later scan (a `cp` may still be writing it); other kinds of entry are taken at once,
/// to be rejected. A directory the worker may not write is left out: rename(2) of a
/// directory into another one needs write permission on the directory itself, so it
/// cannot be claimed, and retrying it on every scan would hold up every file behind it.
/// Root has to remove it.
///
/// Settling is judged by the inode's change time, which every write moves and nobody can
/// set: a hard link given a future mtime (`touch -d 2035`) would otherwise never settle
/// and never be judged. A change time in the future (a clock stepped back) counts as
/// settled.
pub fn candidates(spool: &Spool, settle: Option<Duration>) -> Result<(Vec<String>, bool)> {
    rename_non_utf8(spool);
    let mut names = super::store::list_incoming(spool)?;
    let now = std::time::SystemTime::now();
    let dir = spool.dir(Dir::Incoming);
    let mut unsettled = false;
    names.retain(|n| match std::fs::symlink_metadata(dir.join(n)) {
        Ok(m) if m.is_file() => {
            let settled = settle.is_none_or(|settle| {
                use std::os::unix::fs::MetadataExt;
                let changed = std::time::UNIX_EPOCH
                    + Duration::new(
                        m.ctime().max(0) as u64,
                        m.ctime_nsec().clamp(0, 999_999_999) as u32,
                    );
                match now.duration_since(changed) {
                    Ok(age) => age >= settle,
                    Err(_) => true,
                }
            });
            unsettled |= !settled;
            settled
        }
        Ok(m) if m.is_dir() => {
            let movable = nix::unistd::access(&dir.join(n), nix::unistd::AccessFlags::W_OK).is_ok();
            if !movable {
                refuse_unmovable(spool, n, std::os::unix::fs::MetadataExt::uid(&m));
            }
            movable
        }
        Ok(_) => true,
        Err(_) => false,
    });
    Ok((names, unsettled))
}

/// An `incoming/` directory the worker may not write can be neither claimed nor set
/// aside (renaming a directory rewrites its `..`): it is skipped with one warning and a
/// receipt (whose presence is what "once" means, across restarts), for root to remove.
fn refuse_unmovable(spool: &Spool, ticket: &str, uid: u32) {
    let mine = Receipt::read(spool, ticket).is_some_and(|r| r.owner_uid == Some(uid));
    if mine {
        return;
    }
    let path = spool.dir(Dir::Incoming).join(ticket);
    let message = format!(
        "{}: a directory of {} that the worker may not write, so it cannot take it; remove it as root",
        path.display(),
        crate::identity::user_name(uid)
    );
    tracing::warn!("{message}");
    let receipt = Receipt {
        ticket: ticket.to_string(),
        outcome: Outcome::Rejected,
        job: None,
        id: None,
        message: format!("not taken: {message}"),
        at: Timestamp::now(),
        owner_uid: Some(uid),
    };
    if let Err(e) = receipt.write(spool) {
        tracing::debug!("no receipt for {ticket}: {e}");
    }
}

/// Give each `incoming/` entry whose name is not UTF-8 (and would otherwise be skipped
/// for ever, unlisted and without a receipt) a name that is: its bytes escaped as `\xNN`.
/// Under that name it is taken and rejected ([`bad_ticket_name`]) like any bad file, and
/// gets a receipt. Best effort: an entry that cannot be renamed is tried again next scan.
fn rename_non_utf8(spool: &Spool) {
    use std::os::unix::ffi::OsStrExt;
    let dir = spool.dir(Dir::Incoming);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in entries.flatten() {
        let raw = e.file_name();
        if raw.to_str().is_some() || raw.as_bytes().starts_with(b".") {
            continue;
        }
        let escaped = escape_name(raw.as_bytes());
        let to = dir.join(fit_name(String::new(), &escaped));
        if let Err(err) = transition::rename_noreplace(&e.path(), &to) {
            tracing::warn!(
                "{}/{escaped}: a name that is not UTF-8, which cannot be renamed to one: {err}",
                dir.display()
            );
        }
    }
}

/// A file name with every byte that is not part of valid UTF-8 written as `\xNN`, and
/// backslashes as `\\`.
fn escape_name(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.push_str(&chunk.valid().replace('\\', "\\\\"));
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Why a ticket's name is refused: a backslash marks a name [`rename_non_utf8`] escaped
/// (and no submitter's tool makes one).
pub fn bad_ticket_name(ticket: &str) -> Option<String> {
    ticket.contains('\\').then(|| {
        "its name was not UTF-8 (or has a backslash in it); name job files as `submit` does"
            .to_string()
    })
}

/// What the worker decided about a claimed job file.
pub enum Verdict {
    Accept(Submission),
    Reject { reason: String, original: String },
}

fn keep(original: &str) -> String {
    if original.len() <= KEPT_ORIGINAL {
        return original.to_string();
    }
    let mut end = KEPT_ORIGINAL;
    while !original.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n[... cut at {KEPT_ORIGINAL} bytes]", &original[..end])
}

/// The record intake makes of a claimed job file: pending, or rejected. `owner_uid` is
/// from fstat (or lstat for files that could not be opened); `None` when even that failed.
pub fn build(
    id: JobId,
    ticket: &str,
    owner_uid: Option<u32>,
    verdict: Verdict,
    now: Timestamp,
) -> Job {
    let uid = owner_uid.unwrap_or(u32::MAX);
    let (package, body, state) = match verdict {
        Verdict::Accept(sub) => {
            let package = sub.spec.package().to_string();
            let mut st = StateInfo::new(State::Pending, now);
            st.log = Some(Spool::log_rel(&JobName::new(id, &package)));
            (package, Body::Valid(sub), st)
        }
        Verdict::Reject { reason, original } => {
            let mut st = StateInfo::new(State::Rejected, now);
            st.reason = Some(reason);
            st.finished_at = Some(now);
            (
                REJECTED_PACKAGE.to_string(),
                Body::Rejected {
                    original: keep(&original),
                },
                st,
            )
        }
    };
    let name = JobName::new(id, &package);
    Job {
        meta: Meta {
            id,
            name: name.to_string(),
            package,
            owner_uid: uid,
            owner: if owner_uid.is_some() {
                crate::identity::user_name(uid)
            } else {
                "unknown".into()
            },
            submitted_at: now,
            ticket: ticket.to_string(),
        },
        state,
        body,
    }
}

/// Intake step 4: the record into `pending/` or `failed/`. A record already there (recovery
/// redoing a claim whose record was written) is kept.
pub fn write_record(spool: &Spool, job: &Job, sync_dir: bool) -> Result<()> {
    let dir = job.state.state.dir();
    match transition::create_job(spool, dir, job, sync_dir) {
        Ok(()) => Ok(()),
        Err(e) if spool.job_path(dir, &job.name()).exists() => {
            tracing::debug!("{e}: record exists");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Intake steps 5–6, once the record is durable: the receipt, then remove the claim.
pub fn finish(spool: &Spool, job: &Job) -> Result<()> {
    let name = job.name();
    let (outcome, message) = match &job.body {
        Body::Valid(_) => (Outcome::Accepted, format!("queued as {name}")),
        Body::Rejected { .. } => (
            Outcome::Rejected,
            format!(
                "rejected as {name}: {}",
                job.state.reason.as_deref().unwrap_or("")
            ),
        ),
    };
    Receipt {
        ticket: job.meta.ticket.clone(),
        outcome,
        job: Some(name.to_string()),
        id: Some(job.meta.id),
        message,
        at: job.meta.submitted_at,
        owner_uid: Some(job.meta.owner_uid),
    }
    .write(spool)?;
    dispose_claim(
        spool,
        &spool
            .dir(Dir::Tmp)
            .join(claim_name(job.meta.id, &job.meta.ticket)),
    )
}

/// Remove a claim whose job is recorded; one that cannot be removed (a member's directory
/// with a read-only subdirectory in it) is set aside in `quarantine/` instead, so it is
/// never retried and never stops intake or recovery. Fails only if neither works.
pub fn dispose_claim(spool: &Spool, path: &Path) -> Result<()> {
    let Err(e) = remove_claim(path) else {
        return Ok(());
    };
    match quarantine(spool, path) {
        Ok(q) => {
            tracing::warn!(
                "{e}; set it aside as {} for an admin to inspect and remove (as root)",
                q.display()
            );
            Ok(())
        }
        Err(q) => {
            tracing::error!("{q}");
            Err(e)
        }
    }
}

/// Rename an entry into `quarantine/`, under its own name (or with `.N` appended when
/// that is taken). Never replaces anything.
pub fn quarantine(spool: &Spool, path: &Path) -> Result<std::path::PathBuf> {
    let dir = spool.dir(Dir::Quarantine);
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut last = None;
    for n in 0..100 {
        let name = if n == 0 {
            fit_name(String::new(), &base)
        } else {
            fit_name(String::new(), &format!("{base}.{n}"))
        };
        let dst = dir.join(name);
        match transition::rename_noreplace(path, &dst) {
            Ok(()) => {
                let _ = transition::fsync_dir(&dir);
                return Ok(dst);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(crate::Error::io("set aside in quarantine/", path, e)),
        }
    }
    Err(crate::Error::io(
        "set aside in quarantine/",
        path,
        last.unwrap_or_else(|| std::io::Error::other("no free name")),
    ))
}

/// The job claims in `tmp/` as the disk has them: (ID, ticket).
pub fn leftover_claims(spool: &Spool) -> Result<Vec<(JobId, String)>> {
    let tmp = spool.dir(Dir::Tmp);
    let mut out: Vec<(JobId, String)> = std::fs::read_dir(&tmp)
        .at("list", &tmp)?
        .flatten()
        .filter_map(|e| parse_claim_name(e.file_name().to_str()?))
        .collect();
    out.sort();
    Ok(out)
}

/// How old a dotfile in `incoming/` must be to count as abandoned: a submitter writes
/// one and renames it within a second, so one a day old belongs to one that was killed.
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(86_400);

/// Dotfiles (and links) in `incoming/` older than [`STALE_TEMP_AGE`]: the temp files of
/// killed submitters, which nobody else would ever remove. Directories are left alone.
pub fn stale_temp_files(spool: &Spool) -> Result<Vec<std::path::PathBuf>> {
    let dir = spool.dir(Dir::Incoming);
    let cutoff = std::time::SystemTime::now() - STALE_TEMP_AGE;
    Ok(std::fs::read_dir(&dir)
        .at("list", &dir)?
        .flatten()
        .filter(|e| e.file_name().as_encoded_bytes().starts_with(b"."))
        .filter(|e| {
            std::fs::symlink_metadata(e.path())
                .is_ok_and(|m| !m.is_dir() && m.modified().is_ok_and(|t| t < cutoff))
        })
        .map(|e| e.path())
        .collect())
}

/// Remove a claimed entry; a directory someone dropped is removed with its content.
pub fn remove_claim(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).at("remove", path),
        Ok(_) => std::fs::remove_file(path).at("remove", path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(crate::Error::io("stat", path, e)),
    }
}
