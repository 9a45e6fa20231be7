//! Reading jobs back from the spool: listing state directories by name (cheap: no file is
//! opened), reading one record, and finding a job by ID. Used by the CLI and by the
//! worker's recovery; it never writes.

use super::{Dir, REQUEST_SUFFIX, Spool};
use crate::error::{Error, IoContext, Result};
use crate::job::{Job, JobId, JobName};
use std::fs;
use std::path::Path;

/// The job names in a state directory, sorted by ID. Dotfiles and anything that is not
/// `NNNNNN-PACKAGE.toml` are skipped.
pub fn list(spool: &Spool, dir: Dir) -> Result<Vec<JobName>> {
    let path = spool.dir(dir);
    let mut out: Vec<JobName> = fs::read_dir(&path)
        .at("list", &path)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(JobName::from_file_name))
        .collect();
    out.sort();
    Ok(out)
}

pub fn read(spool: &Spool, dir: Dir, name: &JobName) -> Result<Job> {
    read_path(&spool.job_path(dir, name))
}

pub fn read_path(path: &Path) -> Result<Job> {
    let text = read_small(path).at("read", path)?;
    Job::from_toml(&text).map_err(|e| Error::Other(format!("{}: {e}", path.display())))
}

/// A job file's text: open, read, close. `fs::read_to_string` first asks the file's size
/// (a statx) to size its buffer; records are a few hundred bytes, so a 4 KiB buffer and
/// a plain read loop (`Take` has no size hint) save that call, which `status --all`
/// makes for every job in the history.
fn read_small(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::with_capacity(4096);
    fs::File::open(path)?
        .take(u64::MAX)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// Find a job by ID in the state directories, earliest state first.
pub fn locate(spool: &Spool, id: JobId) -> Result<Option<(Dir, JobName)>> {
    let prefix = format!("{id}-");
    for dir in Dir::STATES {
        let path = spool.dir(dir);
        for e in fs::read_dir(&path)
            .at("list", &path)?
            .filter_map(|e| e.ok())
        {
            let f = e.file_name();
            let Some(f) = f.to_str() else { continue };
            if f.starts_with(&prefix)
                && let Some(n) = JobName::from_file_name(f)
            {
                return Ok(Some((dir, n)));
            }
        }
    }
    Ok(None)
}

/// Like [`locate`], but an error a person can act on when the job does not exist.
pub fn find(spool: &Spool, what: &str) -> Result<(Dir, JobName)> {
    let id = JobId::parse_ref(what).ok_or_else(|| {
        Error::Usage(format!(
            "`{what}` is not a job: give an ID such as 42 or a name such as 000042-zlib"
        ))
    })?;
    locate(spool, id)?.ok_or_else(|| Error::JobNotFound(what.to_string()))
}

/// Is this `incoming/` entry something intake takes: not a dotfile, ends in `.toml`.
pub fn is_ticket(name: &str) -> bool {
    !name.starts_with('.') && name.ends_with(".toml") && name.len() > ".toml".len()
}

pub fn is_request_ticket(name: &str) -> bool {
    name.ends_with(REQUEST_SUFFIX)
}

/// The text of a file waiting in `incoming/`, read the way intake reads it: never through
/// a link, never blocking on a FIFO, only a regular file within the size limit. Anything
/// else is `None`: a member may have dropped it there to trap readers.
pub fn read_incoming(spool: &Spool, ticket: &str) -> Option<String> {
    super::claim::open_claimed(&spool.dir(Dir::Incoming).join(ticket))
        .ok()
        .map(|o| o.text)
}

/// The tickets waiting in `incoming/`, sorted.
pub fn list_incoming(spool: &Spool) -> Result<Vec<String>> {
    let path = spool.dir(Dir::Incoming);
    let mut out: Vec<String> = fs::read_dir(&path)
        .at("list", &path)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| is_ticket(n))
        .collect();
    out.sort();
    Ok(out)
}

/// The highest job ID found in any state directory or claim; recovery's fallback when
/// `counter` is lost.
pub fn highest_id(spool: &Spool) -> Result<u64> {
    let mut max = 0;
    for dir in Dir::STATES {
        if let Some(n) = list(spool, dir)?.last() {
            max = max.max(n.id.0);
        }
    }
    let tmp = spool.dir(Dir::Tmp);
    for e in fs::read_dir(&tmp).at("list", &tmp)?.filter_map(|e| e.ok()) {
        if let Some((id, _)) = e
            .file_name()
            .to_str()
            .and_then(super::claim::parse_claim_name)
        {
            max = max.max(id.0);
        }
    }
    Ok(max)
}
