//! Claim names and the safe open, which intake and the readers of the spool share. A
//! file taken from `incoming/` is renamed to `tmp/claim.NNNNNN.TICKET` (a request to
//! `tmp/request.TICKET`); recovery reads the ID and ticket back from that name. Every file
//! a member wrote is read by [`open_claimed`]: never through a link, never blocking on a
//! FIFO, only a regular file with one link within the size limit. Nothing here writes.

use super::{CLAIM_PREFIX, REQUEST_CLAIM_PREFIX};
use crate::job::{JobId, MAX_FILE_SIZE};
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, OFlag, open, readlinkat};
use nix::sys::stat::{Mode, SFlag, fstat, lstat};
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// The longest file name the kernel takes (NAME_MAX on every local Linux file system).
const NAME_MAX: usize = 255;

/// `prefix` + `ticket`, the ticket cut so the whole is a legal file name. A member may
/// name a file in `incoming/` with up to 255 bytes; its claim name would be longer, the
/// claim's rename would fail with ENAMETOOLONG on every scan, and the files behind it
/// would wait forever. Cutting is idempotent, so recovery, which reads the ticket back
/// from the claim name, arrives at the same claim.
pub(super) fn fit_name(prefix: String, ticket: &str) -> String {
    let mut end = ticket.len().min(NAME_MAX.saturating_sub(prefix.len()));
    while !ticket.is_char_boundary(end) {
        end -= 1;
    }
    prefix + &ticket[..end]
}

pub fn claim_name(id: JobId, ticket: &str) -> String {
    fit_name(format!("{CLAIM_PREFIX}{id}."), ticket)
}

/// `claim.NNNNNN.TICKET` → (ID, ticket).
pub fn parse_claim_name(name: &str) -> Option<(JobId, String)> {
    let rest = name.strip_prefix(CLAIM_PREFIX)?;
    let (digits, ticket) = rest.split_once('.')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((JobId(digits.parse().ok()?), ticket.to_string()))
}

pub fn request_claim_name(ticket: &str) -> String {
    fit_name(REQUEST_CLAIM_PREFIX.to_string(), ticket)
}

/// A claimed file's content and its author, or why it cannot be taken.
#[derive(Debug)]
pub struct Opened {
    pub owner_uid: u32,
    pub text: String,
}

#[derive(Debug)]
pub struct Refused {
    /// The owner, when the kernel could tell.
    pub owner_uid: Option<u32>,
    pub reason: String,
    /// What could be read of the file, for the record.
    pub original: String,
}

fn refused(owner_uid: Option<u32>, reason: String) -> Refused {
    Refused {
        owner_uid,
        reason,
        original: String::new(),
    }
}

fn kind_name(mode: u32) -> &'static str {
    match SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFLNK => "a symbolic link",
        SFlag::S_IFIFO => "a FIFO",
        SFlag::S_IFSOCK => "a socket",
        SFlag::S_IFCHR => "a character device",
        SFlag::S_IFBLK => "a block device",
        _ => "not a regular file",
    }
}

/// Open a claimed file safely and read it (intake step 3).
pub fn open_claimed(path: &Path) -> Result<Opened, Refused> {
    let flags = OFlag::O_RDONLY
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_CLOEXEC
        | OFlag::O_NOCTTY;
    let fd = match open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(e) => {
            let st = lstat(path).ok();
            let owner = st.map(|s| s.st_uid);
            let reason = match (e, st) {
                (Errno::ELOOP, _) => {
                    let target = readlinkat(AT_FDCWD, path)
                        .map(|t| t.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    format!(
                        "it is a symbolic link (to `{target}`); only regular files are taken, links are never followed"
                    )
                }
                (_, Some(st))
                    if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
                        != SFlag::S_IFREG =>
                {
                    format!(
                        "it is {}; only regular files are taken",
                        kind_name(st.st_mode)
                    )
                }
                (Errno::EACCES, _) => {
                    "the worker may not read it; write job files with mode 0640 (the CLI does)"
                        .to_string()
                }
                (e, _) => format!("it cannot be opened: {e}"),
            };
            return Err(refused(owner, reason));
        }
    };
    let st = match fstat(&fd) {
        Ok(st) => st,
        Err(e) => return Err(refused(None, format!("it cannot be examined: {e}"))),
    };
    let owner = Some(st.st_uid);
    if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFREG {
        return Err(refused(
            owner,
            format!(
                "it is {}; only regular files are taken",
                kind_name(st.st_mode)
            ),
        ));
    }
    if st.st_nlink != 1 {
        return Err(refused(
            owner,
            format!(
                "it has {} hard links; a job file must have exactly one (a link to someone else's file is not a submission)",
                st.st_nlink
            ),
        ));
    }
    if st.st_size as u64 > MAX_FILE_SIZE {
        return Err(refused(
            owner,
            format!(
                "it is {} bytes; the limit is {} bytes",
                st.st_size, MAX_FILE_SIZE
            ),
        ));
    }
    let mut bytes = Vec::new();
    let file = File::from(fd);
    if let Err(e) = file.take(MAX_FILE_SIZE + 1).read_to_end(&mut bytes) {
        return Err(refused(owner, format!("it cannot be read: {e}")));
    }
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(refused(
            owner,
            format!("it grew past the limit of {MAX_FILE_SIZE} bytes while being read"),
        ));
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Opened {
            owner_uid: st.st_uid,
            text,
        }),
        Err(e) => {
            let original = String::from_utf8_lossy(e.as_bytes()).into_owned();
            Err(Refused {
                owner_uid: owner,
                reason: "it is not UTF-8 text".into(),
                original,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_names_fit_name_max_and_read_back_to_the_same_claim() {
        let long = format!("a{}.toml", "é".repeat(120));
        for ticket in ["t1.2.3.toml", long.as_str()] {
            let name = claim_name(JobId(1234567), ticket);
            assert!(name.len() <= NAME_MAX, "{}", name.len());
            let (id, back) = parse_claim_name(&name).unwrap();
            assert_eq!(id, JobId(1234567));
            assert_eq!(claim_name(id, &back), name);
            let req = request_claim_name(ticket);
            assert!(req.len() <= NAME_MAX);
            let back = req.strip_prefix(REQUEST_CLAIM_PREFIX).unwrap();
            assert_eq!(request_claim_name(back), req);
        }
        assert_eq!(claim_name(JobId(42), "t1.toml"), "claim.000042.t1.toml");
    }
}
