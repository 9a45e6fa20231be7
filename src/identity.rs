//! Users and groups, as the kernel and NSS see them. Used by intake (is the owner of a
//! submitted file a member of the spool's group?), by requests (may this uid act on that
//! job?) and by `auth-status`. Nothing here trusts text from a job file.

use nix::unistd::{Gid, Group, Uid, User, getgrouplist};
use std::ffi::CString;

/// The name for a uid, or the number when it has none.
pub fn user_name(uid: u32) -> String {
    match User::from_uid(Uid::from_raw(uid)) {
        Ok(Some(u)) => u.name,
        _ => uid.to_string(),
    }
}

pub fn group_name(gid: u32) -> String {
    match Group::from_gid(Gid::from_raw(gid)) {
        Ok(Some(g)) => g.name,
        _ => gid.to_string(),
    }
}

pub fn group_by_name(name: &str) -> Option<Group> {
    Group::from_name(name).ok().flatten()
}

/// Every group the user with this uid belongs to (primary and supplementary), from NSS.
/// Empty if the uid has no passwd entry.
pub fn groups_of(uid: u32) -> Vec<u32> {
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
        return Vec::new();
    };
    let Ok(name) = CString::new(user.name) else {
        return Vec::new();
    };
    match getgrouplist(&name, user.gid) {
        Ok(gs) => gs.into_iter().map(|g| g.as_raw()).collect(),
        Err(_) => vec![user.gid.as_raw()],
    }
}

pub fn is_member(uid: u32, gid: u32) -> bool {
    groups_of(uid).contains(&gid)
}

/// Is `uid` an admin of a spool owned by `worker_uid`: root, the worker user itself, or a
/// member of the configured admin group.
pub fn is_admin(uid: u32, worker_uid: u32, admin_group: Option<&str>) -> bool {
    if uid == 0 || uid == worker_uid {
        return true;
    }
    match admin_group.and_then(group_by_name) {
        Some(g) => is_member(uid, g.gid.as_raw()),
        None => false,
    }
}

pub fn current_uid() -> u32 {
    Uid::current().as_raw()
}
