//! Why someone cannot use the spool, said once and in words an admin can act on: who they
//! are, which group they need, and the command that fixes it (as `auth-status` says), or
//! how to create a spool that does not exist. Commands fail with the raw I/O error of the
//! first directory they could not read; [`explain`] turns it into this.

use crate::error::Error;
use crate::identity;
use crate::spool::Spool;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// How to get a spool at `root`: the site's (an admin), a private one, or the right path.
pub fn missing_spool(root: &Path) -> String {
    format!(
        "there is no spool at {root}: an admin creates the site's with \
         `sudo spack-installer --spool {root} init --group swinstaller --owner spack`; \
         or point --spool / $SPACK_INSTALLER_SPOOL at the site's spool",
        root = root.display()
    )
}

/// What the current user must ask for to use the spool at `root`, having failed on `path`.
pub fn not_permitted(root: &Path, path: &Path) -> String {
    let uid = identity::current_uid();
    let me = identity::user_name(uid);
    let Ok(meta) = std::fs::metadata(root) else {
        return format!("{me} (uid {uid}) may not read {}", path.display());
    };
    let g = identity::group_name(meta.gid());
    let now: Vec<u32> = nix::unistd::getgroups()
        .map(|v| v.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_default();
    let in_group_now = now.contains(&meta.gid()) || nix::unistd::getegid().as_raw() == meta.gid();
    let fix = if in_group_now {
        format!(
            "{me} is in group {g}, so the spool's modes are wrong: an admin repairs them with \
             `sudo spack-installer --spool {} init`",
            root.display()
        )
    } else if identity::groups_of(uid).contains(&meta.gid()) {
        format!(
            "{me} was added to group {g} after this login began: log out and in again (or run `newgrp {g}`)"
        )
    } else {
        format!(
            "the spool is for members of group {g} and {me} is not one: an admin runs \
             `usermod -aG {g} {me}`, then {me} logs in again"
        )
    };
    format!(
        "{me} (uid {uid}) may not read {}: {fix}. `spack-installer auth-status` explains more",
        path.display()
    )
}

/// Turn an I/O error inside the spool into advice; any other error is returned as it is.
pub fn explain(spool: &Spool, e: Error) -> Error {
    let Error::Io { path, source, .. } = &e else {
        return e;
    };
    if !path.starts_with(spool.root()) {
        return e;
    }
    match source.kind() {
        ErrorKind::NotFound if !spool.root().exists() => Error::Other(missing_spool(spool.root())),
        ErrorKind::PermissionDenied => Error::NotPermitted(not_permitted(spool.root(), path)),
        _ => e,
    }
}
