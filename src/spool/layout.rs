//! Creating, repairing and checking a spool's directories, owners and modes, exactly as
//! the table in spool-layout.md gives them. `init` is idempotent: running it again
//! repairs drift.
//!
//! `init` runs as root inside a directory the worker user owns and may rearrange at any
//! moment, so it never acts by path there: it opens the spool root once, then each entry
//! relative to it (`openat` with `O_NOFOLLOW`), creates files with `O_EXCL` (which never
//! follows a link, dangling or not), and sets owners and modes with `fchown`/`fchmod` on
//! what it opened. A link, a special file or a hard-linked file where the layout has a
//! file or directory is refused and reported, never repaired.

use super::{COUNTER_FILE, Dir, FILE_MODE, LOCK_FILE, LOCK_MODE, ROOT_MODE, Spool};
use crate::error::{Error, IoContext, Result};
use crate::identity;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, fchown};
use std::fs;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// The submitters' group (`swinstaller`). Default: the caller's primary group.
    pub group: Option<String>,
    /// The worker user. Only root may give another user. Default: the caller.
    pub owner: Option<String>,
}

/// What `init` found and did.
#[derive(Debug, Default)]
pub struct InitReport {
    pub owner: String,
    pub group: String,
    pub changed: Vec<String>,
    pub warnings: Vec<String>,
}

/// Create or repair the spool.
pub fn init(spool: &Spool, opts: &InitOptions) -> Result<InitReport> {
    let me = identity::current_uid();
    let (uid, owner) = match &opts.owner {
        None => (me, identity::user_name(me)),
        Some(name) => {
            let u = nix::unistd::User::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "no user `{name}`; create it first (e.g. `useradd --system {name}`)"
                    ))
                })?;
            if u.uid.as_raw() != me && me != 0 {
                return Err(Error::NotPermitted(format!(
                    "only root can make a spool owned by `{name}`; run `sudo spack-installer init --owner {name}`"
                )));
            }
            (u.uid.as_raw(), u.name)
        }
    };
    let (gid, group) = match &opts.group {
        None => {
            let gid = nix::unistd::getgid().as_raw();
            (gid, identity::group_name(gid))
        }
        Some(name) => {
            let g = identity::group_by_name(name).ok_or_else(|| {
                Error::Usage(format!(
                    "no group `{name}`; create it first: `groupadd {name}`"
                ))
            })?;
            (g.gid.as_raw(), g.name)
        }
    };
    let mut report = InitReport {
        owner,
        group,
        ..Default::default()
    };
    let root = open_root(spool.root(), ROOT_MODE, uid, gid, &mut report)?;
    let entry = |name: &str, kind: Kind, mode: u32, report: &mut InitReport| -> Result<()> {
        let path = spool.root().join(name);
        let (fd, created) = open_child(&root, &path, name, kind)?;
        if created {
            // A new entry is reported once, as created, not as each fix that follows.
            let mut quiet = InitReport::default();
            fix_owner_and_mode(&fd, &path, mode, uid, gid, &mut quiet)?;
            report
                .changed
                .push(format!("created {} ({mode:04o})", path.display()));
            Ok(())
        } else {
            fix_owner_and_mode(&fd, &path, mode, uid, gid, report)
        }
    };
    for d in Dir::ALL {
        entry(d.name(), Kind::Dir, d.mode(), &mut report)?;
    }
    entry(COUNTER_FILE, Kind::File(b"1\n"), FILE_MODE, &mut report)?;
    entry(LOCK_FILE, Kind::File(b""), LOCK_MODE, &mut report)?;
    if let Some(w) = network_fs_warning(spool.root()) {
        report.warnings.push(w);
    }
    // Members' files are theirs with mode 0640 and the spool's group (setgid): the worker
    // reads them through the group, so a worker user outside it would reject them all.
    if uid != 0 && !identity::is_member(uid, gid) {
        report.warnings.push(format!(
            "the worker user {} is not in group {}, so it cannot read the files members submit; \
             run `usermod -aG {} {}` and restart the worker",
            report.owner, report.group, report.group, report.owner
        ));
    }
    Ok(report)
}

/// What belongs at a name inside the spool.
enum Kind {
    Dir,
    /// A regular file, created with this content when absent.
    File(&'static [u8]),
}

/// Open (creating it first if need be) the spool's root directory. The path up to it is
/// the admin's, so links there are followed; the root itself is opened with
/// `O_NOFOLLOW` when its parent belongs to someone else than the caller (who could have
/// put a link there).
fn open_root(
    path: &Path,
    mode: u32,
    uid: u32,
    gid: u32,
    report: &mut InitReport,
) -> Result<OwnedFd> {
    let me = identity::current_uid();
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let parent_ours = fs::metadata(parent).is_ok_and(|m| m.uid() == me || m.uid() == 0);
    let created = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(path).at("create directory", path)?;
            true
        }
        _ => false,
    };
    let mut flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    if !parent_ours {
        flags |= OFlag::O_NOFOLLOW;
    }
    let fd = match nix::fcntl::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ELOOP | Errno::ENOTDIR) => return Err(unsafe_entry(path, "a directory")),
        Err(e) => return Err(Error::io("open", path, e.into())),
    };
    if created {
        fix_owner_and_mode(&fd, path, mode, uid, gid, &mut InitReport::default())?;
        report
            .changed
            .push(format!("created {} ({mode:04o})", path.display()));
    } else {
        fix_owner_and_mode(&fd, path, mode, uid, gid, report)?;
    }
    Ok(fd)
}

/// Open `name` in the spool's root by descriptor, never following a link, creating it
/// when absent. A link, a special file or a hard-linked file where a file or directory
/// belongs is refused: root would otherwise act on whatever the worker user points it at.
fn open_child(root: &OwnedFd, path: &Path, name: &str, kind: Kind) -> Result<(OwnedFd, bool)> {
    let base = OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match kind {
        Kind::Dir => {
            let created = match mkdirat(root, name, Mode::from_bits_truncate(0o700)) {
                Ok(()) => true,
                Err(Errno::EEXIST) => false,
                Err(e) => return Err(Error::io("create directory", path, e.into())),
            };
            let flags = base | OFlag::O_RDONLY | OFlag::O_DIRECTORY;
            match openat(root, name, flags, Mode::empty()) {
                Ok(fd) => Ok((fd, created)),
                Err(Errno::ELOOP | Errno::ENOTDIR) => {
                    Err(unsafe_entry_at(root, path, name, "a directory"))
                }
                Err(e) => Err(Error::io("open", path, e.into())),
            }
        }
        Kind::File(content) => {
            // O_NONBLOCK: a FIFO put here must not hang root's init.
            let flags = base | OFlag::O_RDONLY | OFlag::O_NONBLOCK;
            let fd = match openat(root, name, flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    // O_EXCL never follows a link, not even a dangling one.
                    let fd = openat(
                        root,
                        name,
                        base | OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
                        Mode::from_bits_truncate(0o600),
                    )
                    .map_err(|e| match e {
                        Errno::EEXIST => unsafe_entry_at(root, path, name, "a regular file"),
                        e => Error::io("create", path, e.into()),
                    })?;
                    let mut f = fs::File::from(fd);
                    f.write_all(content)
                        .and_then(|_| f.sync_all())
                        .at("write", path)?;
                    return Ok((f.into(), true));
                }
                Err(Errno::ELOOP) => {
                    return Err(unsafe_entry_at(root, path, name, "a regular file"));
                }
                Err(e) => return Err(Error::io("open", path, e.into())),
            };
            let st = fstat(&fd).at("stat", path)?;
            let fmt = st.st_mode & nix::libc::S_IFMT;
            if fmt != nix::libc::S_IFREG {
                return Err(Error::UnsafeSpoolEntry {
                    path: path.to_path_buf(),
                    found: describe(fmt).into(),
                    expected: "a regular file",
                });
            }
            // A hard link would hand root's chown/chmod to a file kept elsewhere.
            if st.st_nlink > 1 {
                return Err(Error::UnsafeSpoolEntry {
                    path: path.to_path_buf(),
                    found: format!("a file with {} hard links", st.st_nlink),
                    expected: "a file of its own",
                });
            }
            Ok((fd, false))
        }
    }
}

/// The refusal for `name`, saying what is there instead.
fn unsafe_entry_at(root: &OwnedFd, path: &Path, name: &str, expected: &'static str) -> Error {
    let found = match fstatat(root, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFLNK => {
            let target = nix::fcntl::readlinkat(root, name)
                .map(|t| crate::text::printable(&t.to_string_lossy()).into_owned())
                .unwrap_or_else(|_| "?".into());
            format!("a symbolic link (to {target})")
        }
        Ok(st) => describe(st.st_mode & nix::libc::S_IFMT).into(),
        Err(_) => "not what it should be".into(),
    };
    Error::UnsafeSpoolEntry {
        path: path.to_path_buf(),
        found,
        expected,
    }
}

fn unsafe_entry(path: &Path, expected: &'static str) -> Error {
    let found = match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => "a symbolic link".to_string(),
        Ok(m) => describe(m.mode() & nix::libc::S_IFMT).into(),
        Err(_) => "not what it should be".into(),
    };
    Error::UnsafeSpoolEntry {
        path: path.to_path_buf(),
        found,
        expected,
    }
}

fn describe(fmt: u32) -> &'static str {
    match fmt {
        nix::libc::S_IFLNK => "a symbolic link",
        nix::libc::S_IFDIR => "a directory",
        nix::libc::S_IFREG => "a regular file",
        nix::libc::S_IFIFO => "a FIFO",
        nix::libc::S_IFSOCK => "a socket",
        nix::libc::S_IFCHR | nix::libc::S_IFBLK => "a device",
        _ => "a special file",
    }
}

/// fchown and fchmod the open descriptor: whatever is at the path by now, root changes
/// only the inode it opened without following a link.
fn fix_owner_and_mode(
    fd: &OwnedFd,
    path: &Path,
    mode: u32,
    uid: u32,
    gid: u32,
    report: &mut InitReport,
) -> Result<()> {
    let st = fstat(fd).at("stat", path)?;
    let have = st.st_mode & 0o7777;
    if st.st_uid != uid || st.st_gid != gid {
        fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).at("chown", path)?;
        report.changed.push(format!(
            "{}: owner set to {}:{}",
            path.display(),
            report.owner,
            report.group
        ));
    }
    // chown clears setgid on some file systems, so the mode is set after it.
    if have != mode || st.st_uid != uid || st.st_gid != gid {
        fchmod(fd, Mode::from_bits_truncate(mode)).at("chmod", path)?;
        if have != mode {
            report
                .changed
                .push(format!("{}: mode {have:04o} → {mode:04o}", path.display()));
        }
    }
    Ok(())
}

/// One difference between a spool on disk and spool-layout.md.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift(pub String);

/// Compare the spool with spool-layout.md: every directory exists with its mode, and has
/// the root's owner and group.
pub fn check(spool: &Spool) -> Vec<Drift> {
    let mut out = Vec::new();
    let root = match fs::metadata(spool.root()) {
        Ok(m) => m,
        Err(e) => {
            out.push(Drift(format!(
                "{}: {e}; create it with `spack-installer init`",
                spool.root().display()
            )));
            return out;
        }
    };
    let mut expect = vec![(spool.root().to_path_buf(), ROOT_MODE)];
    expect.extend(Dir::ALL.iter().map(|d| (spool.dir(*d), d.mode())));
    expect.push((spool.file(LOCK_FILE), LOCK_MODE));
    for (path, mode) in expect {
        match fs::symlink_metadata(&path) {
            Err(e) => out.push(Drift(format!("{}: {e}", path.display()))),
            Ok(m) => {
                if m.mode() & 0o7777 != mode {
                    out.push(Drift(format!(
                        "{}: mode {:04o}, expected {:04o}",
                        path.display(),
                        m.mode() & 0o7777,
                        mode
                    )));
                }
                if m.uid() != root.uid() || m.gid() != root.gid() {
                    out.push(Drift(format!(
                        "{}: owned by {}:{}, expected {}:{}",
                        path.display(),
                        identity::user_name(m.uid()),
                        identity::group_name(m.gid()),
                        identity::user_name(root.uid()),
                        identity::group_name(root.gid())
                    )));
                }
            }
        }
    }
    out
}

/// flock(2) and rename(2) semantics the queue relies on do not hold on network file
/// systems; say so when the spool is on one.
pub fn network_fs_warning(path: &Path) -> Option<String> {
    use nix::sys::statfs::{NFS_SUPER_MAGIC, SMB_SUPER_MAGIC, statfs};
    let fs = statfs(path).ok()?;
    let t = fs.filesystem_type();
    const CIFS: i64 = 0xFF53_4D42;
    const SMB2: i64 = 0xFE53_4D42;
    const LUSTRE: i64 = 0x0BD0_0BD0;
    const GPFS: i64 = 0x4750_4653;
    const CEPH: i64 = 0x00C3_6400;
    let raw = t.0 as i64;
    let name = if t == NFS_SUPER_MAGIC {
        "NFS"
    } else if t == SMB_SUPER_MAGIC || raw == CIFS || raw == SMB2 {
        "SMB/CIFS"
    } else if raw == LUSTRE {
        "Lustre"
    } else if raw == GPFS {
        "GPFS"
    } else if raw == CEPH {
        "CephFS"
    } else {
        return None;
    };
    Some(format!(
        "{} is on {name}: flock(2) and rename(2) may not be reliable there; put the spool on a local file system",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool() -> (tempfile::TempDir, Spool) {
        let d = tempfile::tempdir().unwrap();
        let s = Spool::new(d.path().join("spool"));
        init(&s, &InitOptions::default()).unwrap();
        (d, s)
    }

    fn refused(s: &Spool, what: &str) -> String {
        match init(s, &InitOptions::default()) {
            Err(e @ Error::UnsafeSpoolEntry { .. }) => e.to_string(),
            other => panic!("{what}: init did not refuse it: {other:?}"),
        }
    }

    #[test]
    fn a_fifo_or_a_hard_link_where_a_file_belongs_is_refused_without_hanging() {
        let (d, s) = spool();
        let counter = s.file(COUNTER_FILE);
        fs::remove_file(&counter).unwrap();
        nix::unistd::mkfifo(&counter, Mode::from_bits_truncate(0o640)).unwrap();
        let msg = refused(&s, "a FIFO");
        assert!(msg.contains("a FIFO") && msg.contains("counter"), "{msg}");
        fs::remove_file(&counter).unwrap();
        let elsewhere = d.path().join("elsewhere");
        fs::write(&elsewhere, "5\n").unwrap();
        fs::hard_link(&elsewhere, &counter).unwrap();
        let msg = refused(&s, "a hard link");
        assert!(msg.contains("2 hard links"), "{msg}");
        fs::remove_file(&counter).unwrap();
        // Removed, it is created again, and a second run changes nothing.
        let r = init(&s, &InitOptions::default()).unwrap();
        assert!(
            r.changed
                .iter()
                .any(|c| c.contains("created") && c.contains("counter")),
            "{r:?}"
        );
        assert_eq!(fs::read_to_string(&counter).unwrap(), "1\n");
        let r = init(&s, &InitOptions::default()).unwrap();
        assert!(r.changed.is_empty(), "{r:?}");
    }
}
