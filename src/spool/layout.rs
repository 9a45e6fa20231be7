//! Creating, repairing and checking a spool's directories, owners and modes, exactly as
//! the table in spool-layout.md gives them. `init` is idempotent: running it again
//! repairs drift.

use super::{COUNTER_FILE, Dir, FILE_MODE, LOCK_FILE, LOCK_MODE, ROOT_MODE, Spool};
use crate::error::{Error, IoContext, Result};
use crate::identity;
use nix::unistd::{Gid, Uid, chown};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
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
    ensure_dir(spool.root(), ROOT_MODE, uid, gid, &mut report)?;
    for d in Dir::ALL {
        ensure_dir(&spool.dir(d), d.mode(), uid, gid, &mut report)?;
    }
    let counter = spool.file(COUNTER_FILE);
    if !counter.exists() {
        super::transition::replace(spool, &counter, b"1\n", true)?;
        report
            .changed
            .push(format!("created {}", counter.display()));
    }
    ensure_file_owner(&counter, FILE_MODE, uid, gid, &mut report)?;
    let lock = spool.file(LOCK_FILE);
    if !lock.exists() {
        fs::File::create(&lock).at("create", &lock)?;
    }
    ensure_file_owner(&lock, LOCK_MODE, uid, gid, &mut report)?;
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

fn ensure_dir(path: &Path, mode: u32, uid: u32, gid: u32, report: &mut InitReport) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::Other(format!(
                "{} exists and is not a directory; move it away and run init again",
                path.display()
            )));
        }
        Err(_) => {
            fs::create_dir_all(path).at("create directory", path)?;
            let mut quiet = InitReport {
                owner: report.owner.clone(),
                group: report.group.clone(),
                ..Default::default()
            };
            ensure_file_owner(path, mode, uid, gid, &mut quiet)?;
            report
                .changed
                .push(format!("created {} ({mode:04o})", path.display()));
            return Ok(());
        }
    }
    ensure_file_owner(path, mode, uid, gid, report)
}

fn ensure_file_owner(
    path: &Path,
    mode: u32,
    uid: u32,
    gid: u32,
    report: &mut InitReport,
) -> Result<()> {
    let m = fs::symlink_metadata(path).at("stat", path)?;
    if m.uid() != uid || m.gid() != gid {
        chown(path, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).at("chown", path)?;
        report.changed.push(format!(
            "{}: owner set to {}:{}",
            path.display(),
            report.owner,
            report.group
        ));
    }
    // chown clears setgid on some file systems, so the mode is set after it.
    if m.mode() & 0o7777 != mode || m.uid() != uid || m.gid() != gid {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).at("chmod", path)?;
        if m.mode() & 0o7777 != mode {
            report.changed.push(format!(
                "{}: mode {:04o} → {:04o}",
                path.display(),
                m.mode() & 0o7777,
                mode
            ));
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
