//! `auth-status`: who you are, your groups, and whether you can submit, checked the way the
//! kernel will check it: the spool's modes against your groups, and a real probe (create
//! and remove a dotfile in `incoming/`). Says what an admin must do when you cannot.

use super::Ctx;
use crate::error::{Result, exit};
use crate::identity;
use serde::Serialize;
use std::os::unix::fs::MetadataExt;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Auth {
    user: String,
    uid: u32,
    groups: Vec<String>,
    spool: String,
    spool_group: Option<String>,
    in_group: bool,
    can_read_queue: bool,
    can_submit: bool,
    is_admin: bool,
    advice: Vec<String>,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let uid = identity::current_uid();
    let user = identity::user_name(uid);
    // The groups of this process: what the kernel checks (a new group needs a new login).
    let process_groups: Vec<u32> = nix::unistd::getgroups()
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_default();
    let mut gids = process_groups.clone();
    gids.push(nix::unistd::getegid().as_raw());
    gids.sort();
    gids.dedup();
    let root_meta = std::fs::metadata(ctx.spool.root()).ok();
    let spool_gid = root_meta.as_ref().map(|m| m.gid());
    let incoming = ctx.spool.dir(crate::spool::Dir::Incoming);
    let probe = incoming.join(format!(".auth-probe.{}", std::process::id()));
    let can_submit = std::fs::File::create(&probe).is_ok();
    let _ = std::fs::remove_file(&probe);
    let can_read_queue = std::fs::read_dir(ctx.spool.dir(crate::spool::Dir::Pending)).is_ok();
    let in_group = spool_gid.is_some_and(|g| gids.contains(&g));
    let cfg = ctx.config()?;
    let is_admin = root_meta
        .as_ref()
        .is_some_and(|m| identity::is_admin(uid, m.uid(), cfg.admin_group.value.as_deref()));
    let group_name = spool_gid.map(identity::group_name);
    let mut advice = Vec::new();
    match &root_meta {
        None => advice.push(format!(
            "there is no spool at {}: an admin creates it with `sudo spack-installer --spool {} init --group swinstaller --owner spack`",
            ctx.spool.root().display(),
            ctx.spool.root().display()
        )),
        Some(_) if !can_submit => {
            let g = group_name.clone().unwrap_or_default();
            if spool_gid.is_some_and(|sg| identity::groups_of(uid).contains(&sg)) && !in_group {
                advice.push(format!("you were added to group {g} but this login predates it: log out and in again (or `newgrp {g}`)"));
            } else if !in_group {
                advice.push(format!("ask an admin to run `usermod -aG {g} {user}`, then log in again"));
            } else {
                advice.push(format!(
                    "you are in group {g} but cannot write {}: an admin should repair the spool with `spack-installer init`",
                    incoming.display()
                ));
            }
        }
        Some(_) => {}
    }
    let auth = Auth {
        user: user.clone(),
        uid,
        groups: gids.iter().map(|g| identity::group_name(*g)).collect(),
        spool: ctx.spool.root().display().to_string(),
        spool_group: group_name.clone(),
        in_group,
        can_read_queue,
        can_submit,
        is_admin,
        advice,
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&auth).expect("serializes")
        );
    } else {
        let yes = |b: bool| if b { "yes" } else { "no" };
        println!("user:            {} (uid {})", auth.user, auth.uid);
        println!("groups:          {}", auth.groups.join(", "));
        println!(
            "spool:           {} (group {})",
            auth.spool,
            group_name.as_deref().unwrap_or("-")
        );
        println!("in spool group:  {}", yes(auth.in_group));
        println!("can see queue:   {}", yes(auth.can_read_queue));
        println!("can submit:      {}", yes(auth.can_submit));
        println!("admin:           {}", yes(auth.is_admin));
        for a in &auth.advice {
            println!("to fix:          {a}");
        }
    }
    Ok(if can_submit {
        exit::OK
    } else {
        exit::NOT_PERMITTED
    })
}
