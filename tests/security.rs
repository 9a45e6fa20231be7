//! Multi-user security with real users, real permissions and the real binary: the kernel
//! decides who may write what, and the worker trusts nothing it reads. Each test builds a
//! spool with `init --group swinstaller --owner sitest-spack` as root, runs the worker as
//! the service user, and acts as `alice` and `bob` (members) and `mallory` (outsider)
//! through `setpriv`. They need root; without it each says it is skipped and why.
//! SECURITY.md lists every attack here and the test that shows it fails.

#[path = "security/site.rs"]
mod site;
mod support;

use site::{GROUP, SERVICE, Site, mode, root_or_skip, users, wait_until};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The receipt for `ticket` says `outcome` and its message contains `why`.
fn assert_receipt(s: &Site, ticket: &str, outcome: &str, why: &str) -> String {
    let r = s.receipt(ticket);
    let msg = r["message"].as_str().unwrap().to_string();
    assert_eq!(r["outcome"].as_str(), Some(outcome), "{ticket}: {msg}");
    assert!(msg.contains(why), "{ticket}: expected {why:?} in {msg:?}");
    msg
}

/// The record a receipt names, read from its state directory.
fn record_of(s: &Site, ticket: &str) -> (String, String) {
    let r = s.receipt(ticket);
    let job = r["job"]
        .as_str()
        .unwrap_or_else(|| panic!("{ticket}: {r:?}"));
    for d in ["pending", "running", "done", "failed", "cancelled"] {
        let p = s.path(d).join(format!("{job}.toml"));
        if let Ok(t) = fs::read_to_string(&p) {
            return (d.to_string(), t);
        }
    }
    panic!("no record for {job}");
}

#[test]
fn init_sets_owners_and_modes_and_repairs_drift() {
    if !root_or_skip("init_sets_owners_and_modes_and_repairs_drift") {
        return;
    }
    let u = users();
    let s = Site::new("");
    let expect = [
        ("", 0o2750),
        ("incoming", 0o3770),
        ("pending", 0o2750),
        ("running", 0o2750),
        ("done", 0o2750),
        ("failed", 0o2750),
        ("cancelled", 0o2750),
        ("logs", 0o2750),
        ("receipts", 0o2750),
        ("tmp", 0o2700),
        ("worker.lock", 0o600),
        ("counter", 0o640),
    ];
    let check = |when: &str| {
        for (rel, m) in expect {
            let p = s.path(rel);
            let meta = fs::symlink_metadata(&p).unwrap();
            assert_eq!(mode(&p), m, "{when}: mode of {}", p.display());
            assert_eq!(
                (meta.uid(), meta.gid()),
                (u.spack.uid, u.group_gid),
                "{when}: owner of {}",
                p.display()
            );
        }
    };
    check("after init");
    // Drift: modes opened up, a directory and the lock handed to someone else.
    fs::set_permissions(
        s.path("incoming"),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    fs::set_permissions(
        s.path("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    fs::set_permissions(
        s.path(""),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    nix::unistd::chown(
        &s.path("pending"),
        Some(nix::unistd::Uid::from_raw(u.bob.uid)),
        Some(nix::unistd::Gid::from_raw(u.bob.gid)),
    )
    .unwrap();
    nix::unistd::chown(
        &s.path("worker.lock"),
        Some(nix::unistd::Uid::from_raw(u.bob.uid)),
        None,
    )
    .unwrap();
    let spool = spack_installer::spool::Spool::new(&s.root);
    let drift = spack_installer::spool::layout::check(&spool);
    let drift: Vec<String> = drift.into_iter().map(|d| d.0).collect();
    for what in ["incoming", "tmp", "pending", "worker.lock"] {
        assert!(
            drift.iter().any(|d| d.contains(what)),
            "check misses {what}: {drift:?}"
        );
    }
    let out = s.root_cli(&["init", "--group", GROUP, "--owner", SERVICE]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.contains("mode 0777 → 3770"), "{said}");
    check("after repair");
    assert!(spack_installer::spool::layout::check(&spool).is_empty());
    // A worker user outside the group could read no member's file: init says so.
    let out = std::process::Command::new(site::BIN)
        .args(["init", "--group", GROUP, "--owner", &u.mallory.name])
        .env("SPACK_INSTALLER_SPOOL", s.dir.path().join("other"))
        .env("SPACK_INSTALLER_CONFIG", &s.config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("the worker user mallory is not in group swinstaller"),
        "{err}"
    );
    // Only root may give a spool to another user.
    let out = s.cli(&u.alice, &["init", "--owner", SERVICE]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
}

#[test]
fn members_submit_and_see_the_queue_and_outsiders_see_nothing() {
    if !root_or_skip("members_submit_and_see_the_queue_and_outsiders_see_nothing") {
        return;
    }
    let u = users();
    let s = Site::new("");
    let ta = s.submit(&u.alice, &["zlib@1.3"]);
    let tb = s.submit(&u.bob, &["hdf5 +mpi"]);
    // The CLI's files: the member's own, the spool's group (setgid), readable by the
    // worker through the group, writable by nobody else.
    for (t, who) in [(&ta, &u.alice), (&tb, &u.bob)] {
        let m = fs::metadata(s.path("incoming").join(t)).unwrap();
        assert_eq!((m.uid(), m.gid()), (who.uid, u.group_gid), "{t}");
        assert_eq!(m.mode() & 0o777, 0o640, "{t}");
    }
    for who in [&u.alice, &u.bob] {
        let out = s.cli(who, &["status"]);
        let said = text(&out.stdout);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            said.contains("zlib@1.3") && said.contains("hdf5 +mpi"),
            "{}: {said}",
            who.name
        );
        s.sh_ok(who, "ls \"$S\" \"$S/incoming\" \"$S/pending\" \"$S/logs\"");
    }
    // mallory: no submit, no status, no ls, no cat.
    let out = s.cli(&u.mallory, &["submit", "zlib"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("you may not write to")
            && err.contains(&*s.path("incoming").to_string_lossy())
            && err.contains("usermod -aG swinstaller mallory"),
        "{err}"
    );
    let out = s.cli(&u.mallory, &["status"]);
    assert!(!out.status.success(), "mallory saw the queue");
    s.sh_denied(&u.mallory, "ls \"$S\"");
    s.sh_denied(&u.mallory, "ls \"$S/incoming\"");
    s.sh_denied(&u.mallory, "cat \"$S/counter\"");
    s.sh_denied(
        &u.mallory,
        "echo 'spec = \"zlib\"' > \"$S/incoming/m.toml\"",
    );
    s.drain();
    assert_eq!(s.ls("done"), vec!["000001-zlib.toml", "000002-hdf5.toml"]);
    let (_, a) = record_of(&s, &ta);
    let (_, b) = record_of(&s, &tb);
    assert!(a.contains("owner = \"alice\""), "{a}");
    assert!(b.contains("owner = \"bob\""), "{b}");
    s.sh_denied(&u.mallory, "cat \"$S/done/000001-zlib.toml\"");
    s.sh_denied(&u.mallory, "cat \"$S/logs/000001-zlib.log\"");
    // Members read the logs; nobody but the worker writes them.
    s.sh_ok(&u.bob, "cat \"$S/logs/000001-zlib.log\" > /dev/null");
    s.sh_denied(&u.alice, "echo x >> \"$S/logs/000001-zlib.log\"");
}

#[test]
fn bob_cannot_cancel_move_delete_or_edit_alices_job_at_any_stage() {
    if !root_or_skip("bob_cannot_cancel_move_delete_or_edit_alices_job_at_any_stage") {
        return;
    }
    let u = users();
    let mut s = Site::new("kill_grace = \"2s\"\n");
    let spec = "zlib@1.3 +optimize";

    // incoming/: the sticky bit keeps bob off alice's file.
    let t = s.submit(&u.alice, &[spec]);
    let f = format!("\"$S/incoming/{t}\"");
    s.sh_denied(&u.bob, &format!("mv {f} \"$S/incoming/mine.toml\""));
    s.sh_denied(&u.bob, &format!("rm -f {f}"));
    s.sh_denied(&u.bob, &format!("echo 'spec = \"evil\"' > {f}"));
    s.sh_denied(&u.bob, &format!("echo 'note = \"x\"' >> {f}"));
    s.sh_denied(&u.bob, &format!("chmod 666 {f}"));
    s.sh_ok(
        &u.bob,
        "echo 'spec = \"evil\"' > \"$S/incoming/.bob\" && chmod 640 \"$S/incoming/.bob\"",
    );
    s.sh_denied(&u.bob, &format!("mv -f \"$S/incoming/.bob\" {f}"));
    s.sh_ok(&u.bob, "rm \"$S/incoming/.bob\"");
    // protected_hardlinks (on by default) refuses a link to a file bob cannot write.
    if fs::read_to_string("/proc/sys/fs/protected_hardlinks").is_ok_and(|v| v.trim() == "1") {
        s.sh_denied(&u.bob, &format!("ln {f} \"$S/incoming/link.toml\""));
    }

    // pending/: the worker's alone. Hold the queue so the job stays there.
    s.pause();
    s.drain();
    assert_eq!(s.ls("pending"), vec!["000001-zlib.toml"]);
    let p = "\"$S/pending/000001-zlib.toml\"";
    s.sh_ok(&u.bob, &format!("cat {p} > /dev/null"));
    s.sh_denied(&u.bob, &format!("mv {p} \"$S/pending/000001-x.toml\""));
    s.sh_denied(&u.bob, &format!("rm -f {p}"));
    s.sh_denied(&u.bob, &format!("echo 'spec = \"evil\"' >> {p}"));
    s.sh_denied(&u.bob, "touch \"$S/pending/000002-evil.toml\"");
    s.sh_denied(&u.bob, "touch \"$S/tmp/x\"");
    // Requests by hand, as spool-layout.md describes them.
    s.drop_as(
        &u.bob,
        "bob1.request.toml",
        "request = \"cancel\"\njob = 1\n",
    );
    s.drop_as(
        &u.bob,
        "bob2.request.toml",
        "request = \"priority\"\njob = \"000001-zlib\"\npriority = \"low\"\n",
    );
    s.drop_as(&u.bob, "bob3.request.toml", "request = \"resume\"\n");
    s.drain();
    assert_receipt(&s, "bob1.request.toml", "not-permitted", "belongs to alice");
    assert_receipt(&s, "bob2.request.toml", "not-permitted", "belongs to alice");
    assert_receipt(&s, "bob3.request.toml", "not-permitted", "not an admin");
    assert_eq!(s.ls("pending"), vec!["000001-zlib.toml"]);
    assert!(s.path("paused").exists(), "bob resumed the queue");
    assert!(
        !s.read("pending/000001-zlib.toml")
            .contains("priority = \"low\"")
    );

    // running/: a long install; bob's cancel is refused, alice's own is honoured.
    s.unpause();
    s.worker_env
        .push(("SPACK_FAKE_DELAYS".into(), "zlib=120".into()));
    let w = s.spawn_worker();
    wait_until("zlib to run", Duration::from_secs(20), || {
        s.path("running/000001-zlib.toml").exists()
    });
    let r = "\"$S/running/000001-zlib.toml\"";
    s.sh_denied(&u.bob, &format!("mv {r} \"$S/running/x.toml\""));
    s.sh_denied(&u.bob, &format!("rm -f {r}"));
    s.sh_denied(&u.bob, &format!("echo x >> {r}"));
    s.drop_as(
        &u.bob,
        "bob4.request.toml",
        "request = \"cancel\"\njob = 1\n",
    );
    let rc = s.wait_receipt("bob4.request.toml");
    assert_eq!(rc["outcome"].as_str(), Some("not-permitted"), "{rc:?}");
    assert!(s.path("running/000001-zlib.toml").exists());
    s.drop_as(
        &u.alice,
        "alice1.request.toml",
        "request = \"cancel\"\njob = 1\n",
    );
    assert_eq!(
        s.wait_receipt("alice1.request.toml")["outcome"].as_str(),
        Some("done")
    );
    wait_until("zlib to be cancelled", Duration::from_secs(20), || {
        s.path("cancelled/000001-zlib.toml").exists()
    });
    assert!(
        s.read("cancelled/000001-zlib.toml")
            .contains("cancelled by alice"),
        "{}",
        w.output()
    );
    drop(w);

    // done/: alice's next job installs exactly what she asked for; bob cannot touch it.
    s.worker_env.clear();
    let t2 = s.submit(&u.alice, &["zlib@1.3.1 ~shared"]);
    s.drain();
    let (dir, rec) = record_of(&s, &t2);
    assert_eq!(dir, "done", "{rec}");
    let d = "\"$S/done/000002-zlib.toml\"";
    s.sh_denied(&u.bob, &format!("mv {d} \"$S/done/x.toml\""));
    s.sh_denied(&u.bob, &format!("rm -f {d}"));
    s.sh_denied(&u.bob, &format!("echo x >> {d}"));
    s.sh_denied(&u.bob, "rm -f \"$S/cancelled/000001-zlib.toml\"");
    let installs: Vec<Vec<String>> = s
        .installs()
        .into_iter()
        .map(support::without_jobs)
        .collect();
    assert_eq!(
        installs.last().unwrap(),
        &vec!["install", "--fail-fast", "zlib@1.3.1 ~shared"],
        "{installs:?}"
    );
    assert_eq!(installs.len(), 2, "{installs:?}");
    assert_eq!(installs[0].last().unwrap(), spec);
}

#[test]
fn hostile_files_are_rejected_with_reasons_and_alices_next_job_installs() {
    if !root_or_skip("hostile_files_are_rejected_with_reasons_and_alices_next_job_installs") {
        return;
    }
    let u = users();
    let s = Site::new("");
    let bob = &u.bob;
    s.sh_ok(bob, "ln -s /etc/shadow \"$S/incoming/shadow.toml\"");
    s.sh_ok(bob, "mkfifo \"$S/incoming/fifo.toml\"");
    s.sh_ok(
        bob,
        "truncate -s 100M \"$S/incoming/.big\" && mv \"$S/incoming/.big\" \"$S/incoming/big.toml\"",
    );
    s.drop_as(bob, "help.toml", "spec = \"--help\"\n");
    s.drop_as(bob, "opt.toml", "spec = \"-j64 zlib\"\n");
    s.drop_as(
        bob,
        "forged.toml",
        &format!(
            "spec = \"zlib\"\n[job]\nowner = \"alice\"\nowner_uid = {}\n",
            u.alice.uid
        ),
    );
    s.drop_as(
        bob,
        "owner-key.toml",
        "spec = \"zlib\"\nowner = \"alice\"\n",
    );
    s.drop_as(bob, "traversal.toml", "spec = \"../../etc/passwd\"\n");
    s.drop_as(
        bob,
        "dep-traversal.toml",
        "spec = \"zlib\"\ndependencies = [\"../../etc\"]\n",
    );
    s.drop_as(bob, "newline.toml", "spec = \"zlib\\n--help\"\n");
    s.drop_as(
        bob,
        "plugin.toml",
        "spec = \"zlib cflags=-fplugin=/home/bob/x.so\"\n",
    );
    s.drop_as(
        bob,
        "devpath.toml",
        "spec = \"zlib dev_path=/home/bob/src\"\n",
    );
    s.drop_as(bob, "binary.toml", "spec = \"zlib\"\n\u{0}\u{1}");
    s.sh_ok(
        bob,
        "printf 'spec = \"zlib\"\\n\\377\\376' > \"$S/incoming/.nu\" && mv \"$S/incoming/.nu\" \"$S/incoming/notutf8.toml\"",
    );
    s.sh_ok(
        bob,
        "umask 077 && echo 'spec = \"zlib\"' > \"$S/incoming/.p\" && mv \"$S/incoming/.p\" \"$S/incoming/private.toml\"",
    );
    // A hard link of bob's own file made elsewhere: two names, one inode.
    let bob_dir = s.dir.path().join("bob");
    fs::create_dir(&bob_dir).unwrap();
    nix::unistd::chown(&bob_dir, Some(nix::unistd::Uid::from_raw(bob.uid)), None).unwrap();
    s.sh_ok(
        bob,
        &format!(
            "d={} && echo 'spec = \"zlib\"' > $d/j.toml && chgrp swinstaller $d/j.toml && chmod 640 $d/j.toml && ln $d/j.toml \"$S/incoming/own-link.toml\"",
            bob_dir.display()
        ),
    );
    // A hard link to alice's file: the kernel refuses bob (protected_hardlinks); root
    // makes it here to stand for a kernel that would not, and the worker still refuses.
    let alice_dir = s.dir.path().join("alice");
    fs::create_dir(&alice_dir).unwrap();
    nix::unistd::chown(
        &alice_dir,
        Some(nix::unistd::Uid::from_raw(u.alice.uid)),
        None,
    )
    .unwrap();
    s.sh_ok(
        &u.alice,
        &format!(
            "echo 'spec = \"alices-secret-pkg\"' > {0}/job.toml && chmod 644 {0}/job.toml",
            alice_dir.display()
        ),
    );
    let alice_file = alice_dir.join("job.toml");
    if fs::read_to_string("/proc/sys/fs/protected_hardlinks").is_ok_and(|v| v.trim() == "1") {
        s.sh_denied(
            bob,
            &format!(
                "ln {} \"$S/incoming/alice-link.toml\"",
                alice_file.display()
            ),
        );
    }
    fs::hard_link(&alice_file, s.path("incoming/alice-link.toml")).unwrap();
    // A file that is bob's in every way the kernel knows, whatever it says.
    s.drop_as(
        bob,
        "bob-says-alice.toml",
        "spec = \"bzip2\"\nnote = \"from alice\"\n",
    );
    let t_alice = s.submit(&u.alice, &["zlib@1.3"]);

    let log = s.drain();

    let rejected = [
        ("shadow.toml", "symbolic link (to `/etc/shadow`)"),
        ("fifo.toml", "it is a FIFO"),
        ("big.toml", "the limit is 65536 bytes"),
        ("help.toml", "starts with `-`"),
        ("opt.toml", "starts with `-`"),
        ("forged.toml", "unknown field `job`"),
        ("owner-key.toml", "unknown field `owner`"),
        ("traversal.toml", "does not start with a package name"),
        (
            "dep-traversal.toml",
            "dependency `../../etc` is not a package name",
        ),
        ("newline.toml", "control characters"),
        (
            "plugin.toml",
            "sets `cflags`, which the queue does not take",
        ),
        (
            "devpath.toml",
            "sets `dev_path`, which the queue does not take",
        ),
        ("binary.toml", "line 2"),
        ("notutf8.toml", "not UTF-8"),
        ("private.toml", "the worker may not read it"),
        ("own-link.toml", "2 hard links"),
        ("alice-link.toml", "2 hard links"),
    ];
    for (ticket, why) in rejected {
        assert_receipt(&s, ticket, "rejected", why);
        let (dir, rec) = record_of(&s, ticket);
        assert_eq!(dir, "failed", "{ticket}");
        assert!(rec.contains("state = \"rejected\""), "{ticket}: {rec}");
    }
    // Nobody's file was followed, read past its size, or blocked on: shadow's text is in
    // no record, the big file's zeros are not kept, and every rejected file is gone.
    let shadow = fs::read_to_string("/etc/shadow").unwrap_or_default();
    let first = shadow.lines().next().unwrap_or("root:");
    for f in s.ls("failed") {
        let rec = s.read(&format!("failed/{f}"));
        assert!(!rec.contains(first), "{f} holds /etc/shadow");
        assert!(rec.len() < 70 * 1024, "{f} is {} bytes", rec.len());
    }
    assert!(s.ls("incoming").is_empty(), "{:?}", s.ls("incoming"));
    assert!(s.ls("tmp").is_empty(), "{:?}", s.ls("tmp"));
    // The forged file became bob's, as the kernel says; alice's own link target is intact.
    let (_, rec) = record_of(&s, "forged.toml");
    assert!(rec.contains("owner = \"bob\""), "{rec}");
    assert_eq!(
        fs::read_to_string(&alice_file).unwrap(),
        "spec = \"alices-secret-pkg\"\n"
    );
    let (dir, rec) = record_of(&s, "bob-says-alice.toml");
    assert_eq!(dir, "done");
    assert!(rec.contains("owner = \"bob\"") && rec.contains(&format!("owner_uid = {}", u.bob.uid)));
    // Alice's job went through.
    let (dir, rec) = record_of(&s, &t_alice);
    assert_eq!(dir, "done", "{rec}\n{log}");
    // Exactly these two installs, once each; in either order, as owners take turns at
    // intake (bob's many files do not put alice's behind them).
    let mut specs: Vec<String> = s
        .installs()
        .iter()
        .map(|a| a.last().unwrap().clone())
        .collect();
    specs.sort();
    assert_eq!(specs, vec!["bzip2", "zlib@1.3"], "{log}");
}

#[test]
fn entries_the_worker_cannot_move_do_not_stop_the_queue() {
    if !root_or_skip("entries_the_worker_cannot_move_do_not_stop_the_queue") {
        return;
    }
    let u = users();
    let s = Site::new("");
    // A directory the worker may not write cannot be renamed into tmp/; a name so long
    // that `claim.N.NAME` passes NAME_MAX cannot be claimed. Both sort before alice's
    // ticket, and neither may hold up her job.
    s.sh_ok(
        &u.bob,
        "mkdir \"$S/incoming/a-dir.toml\" && touch \"$S/incoming/a-dir.toml/x\" && chmod 500 \"$S/incoming/a-dir.toml\"",
    );
    let long = format!("a{}.toml", "x".repeat(245));
    s.drop_as(&u.bob, &long, "spec = \"zlib\"\n");
    s.sh_ok(&u.bob, "mkdir -m 777 \"$S/incoming/b-dir.toml\"");
    let t = s.submit(&u.alice, &["zlib@1.3"]);
    let log = s.drain();
    let (dir, _) = record_of(&s, &t);
    assert_eq!(dir, "done", "{log}");
    // What the worker could take, it rejected; what it could not, it left for root.
    assert_receipt(&s, "b-dir.toml", "rejected", "it is a directory");
    assert_receipt(&s, &long, "accepted", "queued");
    assert_eq!(s.ls("incoming"), vec!["a-dir.toml"]);
    assert!(log.contains("a-dir.toml: a directory of bob"), "{log}");
    // The same with a live worker, which hears of the new entries by inotify first.
    let w = s.spawn_worker();
    s.sh_ok(
        &u.bob,
        "mkdir \"$S/incoming/c-dir.toml\" && chmod 500 \"$S/incoming/c-dir.toml\"",
    );
    s.drop_as(
        &u.bob,
        &format!("c{}.toml", "y".repeat(245)),
        "spec = \"bzip2\"\n",
    );
    let t = s.submit(&u.alice, &["zlib@1.3.1"]);
    let r = s.wait_receipt(&t);
    assert_eq!(r["outcome"].as_str(), Some("accepted"), "{}", w.output());
}

#[test]
fn a_user_over_the_pending_limit_is_refused() {
    if !root_or_skip("a_user_over_the_pending_limit_is_refused") {
        return;
    }
    let u = users();
    let s = Site::new("max_pending_per_user = 2\n");
    s.pause();
    let tickets: Vec<String> = ["aa", "bb", "cc"]
        .iter()
        .map(|p| s.submit(&u.bob, &[p]))
        .collect();
    let ta = s.submit(&u.alice, &["zlib"]);
    s.drain();
    assert_receipt(&s, &tickets[0], "accepted", "queued");
    assert_receipt(&s, &tickets[1], "accepted", "queued");
    assert_receipt(
        &s,
        &tickets[2],
        "rejected",
        "bob already has 2 pending jobs; the limit is 2 (max_pending_per_user)",
    );
    // The limit is per user: alice is not held back by bob's flood.
    assert_receipt(&s, &ta, "accepted", "queued");
    assert_eq!(s.ls("pending").len(), 3);
}

#[test]
fn spack_runs_as_the_worker_user_in_its_own_group_with_a_clean_environment() {
    if !root_or_skip("spack_runs_as_the_worker_user_in_its_own_group_with_a_clean_environment") {
        return;
    }
    let u = users();
    let mut s = Site::new("kill_grace = \"2s\"\n");
    s.worker_env.extend(
        [
            ("LD_PRELOAD", "/nonexistent/sitest-evil.so"),
            ("LD_LIBRARY_PATH", "/tmp/sitest-evil"),
            ("MALICIOUS", "1"),
            ("BASH_ENV", "/tmp/sitest-evil.sh"),
            ("PYTHONPATH", "/tmp/sitest-evil"),
            ("SPACK_FAKE_DELAYS", "zlib=120"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    s.submit(&u.alice, &["zlib"]);
    let w = s.spawn_worker();
    let events = s.fake.join("events.log");
    let env_file = s.fake.join("env/zlib.env");
    // The shell creates env/zlib.env before `env` writes it: wait for the content.
    wait_until("zlib to start", Duration::from_secs(20), || {
        fs::read_to_string(&env_file).is_ok_and(|t| t.ends_with('\n'))
            && fs::read_to_string(&events).is_ok_and(|e| e.starts_with("start"))
    });
    let ev = fs::read_to_string(&events).unwrap();
    let pid: i32 = ev.split_whitespace().nth(2).unwrap().parse().unwrap();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let uids: Vec<u32> = uid_line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(uids, vec![u.spack.uid; 4], "{uid_line}");
    let pgrp = |p: i32| -> i32 {
        let stat = fs::read_to_string(format!("/proc/{p}/stat")).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        after.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    assert_eq!(pgrp(pid), pid, "spack leads its own process group");
    assert_ne!(pgrp(pid), pgrp(w.child.id() as i32));
    let env = fs::read_to_string(&env_file).unwrap();
    for bad in [
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "MALICIOUS",
        "BASH_ENV",
        "PYTHONPATH",
        "CARGO",
    ] {
        assert!(
            !env.lines().any(|l| l.starts_with(bad)),
            "{bad} reached spack:\n{env}"
        );
    }
    assert!(env.contains("SPACK_INSTALLER_JOB="), "{env}");
    assert!(env.lines().any(|l| l.starts_with("PATH=")), "{env}");
    s.drop_as(
        &u.alice,
        "stop.request.toml",
        "request = \"cancel\"\njob = 1\n",
    );
    wait_until("zlib to be cancelled", Duration::from_secs(20), || {
        s.path("cancelled/000001-zlib.toml").exists()
    });
}

#[test]
fn a_reused_ticket_name_cannot_answer_for_someone_else() {
    if !root_or_skip("a_reused_ticket_name_cannot_answer_for_someone_else") {
        return;
    }
    let u = users();
    let s = Site::new("");
    // Alice's file is taken and answered; then bob drops a file of the same name, and
    // the worker's receipt for it replaces hers.
    s.drop_as(&u.alice, "same.toml", "spec = \"zlib\"\n");
    s.drain();
    s.drop_as(&u.bob, "same.toml", "spec = \"--help\"\n");
    s.drain();
    let receipt = s.receipt("same.toml");
    assert_eq!(
        receipt["owner_uid"].as_integer(),
        Some(u.bob.uid as i64),
        "{receipt:?}"
    );
    // A reader as alice ignores it: the receipt names bob as the one who dropped the file.
    let got = spack_installer::spool::intake::Receipt::read(
        &spack_installer::spool::Spool::new(s.path("")),
        "same.toml",
    )
    .unwrap();
    assert_ne!(got.owner_uid, Some(u.alice.uid));
}

/// A process that is killed when the test ends, whatever happens.
struct Bystander(std::process::Child);

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Bystander {
    fn alive(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
}

#[test]
fn worker_stop_signals_only_the_lock_holder_never_the_pid_in_worker_toml() {
    if !root_or_skip("worker_stop_signals_only_the_lock_holder_never_the_pid_in_worker_toml") {
        return;
    }
    let u = users();
    let s = Site::new("");
    let mut w = s.spawn_worker();
    let said = text(&s.cli(&u.alice, &["status"]).stdout);
    assert!(said.contains(&format!("pid {}", w.pid())), "{said}");
    // The worker dies without a word (kill -9, an OOM kill): worker.toml stays behind.
    w.signal(nix::sys::signal::Signal::SIGKILL);
    w.wait(Duration::from_secs(10));
    // An unrelated root process, and worker.toml rewritten by the worker user to name it
    // as a running worker with a fresh heartbeat (PID reuse looks the same, innocently).
    let mut victim = Bystander(
        std::process::Command::new("sleep")
            .arg("300")
            .spawn()
            .unwrap(),
    );
    let victim_pid = victim.0.id();
    s.sh_ok(
        &u.spack,
        &format!(
            "now=$(date -u +%Y-%m-%dT%H:%M:%SZ) && \
             sed -e 's/^pid = .*/pid = {victim_pid}/' -e \"s/^heartbeat = .*/heartbeat = \\\"$now\\\"/\" \
                 -e 's/^state = .*/state = \"running\"/' \"$S/worker.toml\" > \"$S/tmp/w\" && \
             mv \"$S/tmp/w\" \"$S/worker.toml\""
        ),
    );
    assert!(
        s.read("worker.toml")
            .contains(&format!("pid = {victim_pid}"))
    );

    let out = s.root_cli(&["worker", "stop"]);
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    assert!(said.contains("no worker is running"), "{said}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        victim.alive(),
        "root's `worker stop` signalled pid {victim_pid}"
    );

    let said = text(&s.cli(&u.alice, &["status"]).stdout);
    assert!(said.contains("worker: not running"), "{said}");
    assert!(!said.contains(&victim_pid.to_string()), "{said}");
    let said = text(&s.root_cli(&["worker", "info"]).stdout);
    assert!(said.contains("not running"), "{said}");
    assert!(!said.contains(&victim_pid.to_string()), "{said}");
    let json: serde_json::Value =
        serde_json::from_slice(&s.root_cli(&["worker", "info", "--json"]).stdout).unwrap();
    assert_eq!(json["state"], "not-running", "{json}");
    assert_eq!(json["pid"], serde_json::Value::Null, "{json}");

    // `worker start` is not refused by the stale record; the worker it starts is the
    // one `status` names and the one root's `worker stop` signals.
    let out = s.cli(&u.spack, &["worker", "start", "--dry-run"]);
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    let started: u32 = said
        .split("(pid ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {said}"));
    let said = text(&s.cli(&u.alice, &["status"]).stdout);
    assert!(said.contains(&format!("pid {started}")), "{said}");
    let out = s.root_cli(&["worker", "stop"]);
    let said = text(&out.stdout);
    assert!(
        said.contains(&format!("worker (pid {started}) stopped")),
        "{said}"
    );
    // Its lock is released (the process may linger as a zombie until it is reaped).
    let said = text(&s.cli(&u.alice, &["status"]).stdout);
    assert!(said.contains("worker: not running"), "{said}");
    assert!(
        victim.alive(),
        "root's `worker stop` signalled pid {victim_pid}"
    );
}

#[test]
fn root_init_never_follows_the_worker_users_links() {
    if !root_or_skip("root_init_never_follows_the_worker_users_links") {
        return;
    }
    let u = users();
    let s = Site::new("");
    // Root's own things next to the spool, which the worker user would like to own.
    let secret = s.dir.path().join("root-secret");
    fs::write(&secret, "root only\n").unwrap();
    fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let root_dir = s.dir.path().join("root-dir");
    fs::create_dir(&root_dir).unwrap();
    fs::set_permissions(
        &root_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let nowhere = s.dir.path().join("made-by-root");
    let untouched = |what: &str| {
        for (p, m) in [(&secret, 0o600), (&root_dir, 0o700)] {
            let meta = fs::symlink_metadata(p).unwrap();
            assert_eq!(
                (meta.uid(), meta.gid(), meta.mode() & 0o7777),
                (0, 0, m),
                "{what}: root's init changed {}",
                p.display()
            );
        }
        assert_eq!(
            fs::read_to_string(&secret).unwrap(),
            "root only\n",
            "{what}"
        );
        assert!(
            !nowhere.exists(),
            "{what}: root's init created {}",
            nowhere.display()
        );
    };
    let init_refuses = |what: &str, name: &str| {
        let out = s.root_cli(&["init", "--group", GROUP, "--owner", SERVICE]);
        let err = text(&out.stderr);
        assert!(
            !out.status.success(),
            "{what}: init followed the link: {}",
            text(&out.stdout)
        );
        assert!(
            err.contains(name) && err.contains("symbolic link"),
            "{what}: {err}"
        );
        untouched(what);
    };
    let (secret_p, dir_p, nowhere_p) = (
        secret.display().to_string(),
        root_dir.display().to_string(),
        nowhere.display().to_string(),
    );
    s.sh_ok(
        &u.spack,
        &format!("cd \"$S\" && rm counter && ln -s {secret_p} counter"),
    );
    init_refuses("counter made a link to root's file", "counter");
    s.sh_ok(
        &u.spack,
        &format!(
            "cd \"$S\" && rm counter && echo 7 > counter && rm worker.lock && ln -s {secret_p} worker.lock"
        ),
    );
    init_refuses("worker.lock made a link to root's file", "worker.lock");
    s.sh_ok(
        &u.spack,
        &format!("cd \"$S\" && rm worker.lock && ln -s {nowhere_p} worker.lock"),
    );
    init_refuses("worker.lock made a dangling link", "worker.lock");
    s.sh_ok(
        &u.spack,
        &format!("cd \"$S\" && rm worker.lock && touch worker.lock && mv logs logs.old && ln -s {dir_p} logs"),
    );
    init_refuses("logs/ made a link to root's directory", "logs");
    s.sh_ok(&u.spack, "cd \"$S\" && rm logs && mv logs.old logs");
    // With the links gone, init repairs the rest as the layout has it.
    s.sh_ok(&u.spack, "rm \"$S/worker.lock\"");
    let out = s.root_cli(&["init", "--group", GROUP, "--owner", SERVICE]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lock = fs::symlink_metadata(s.path("worker.lock")).unwrap();
    assert!(lock.file_type().is_file());
    assert_eq!((lock.uid(), lock.gid()), (u.spack.uid, u.group_gid));
    assert_eq!(mode(&s.path("worker.lock")), 0o600);
    untouched("after the repair");
}

/// No raw control or bidi character in what a person reads.
fn assert_inert(what: &str, out: &str) {
    for bad in ['\x1b', '\u{202e}', '\u{9b}', '\x07'] {
        assert!(!out.contains(bad), "{what} printed {bad:?} raw:\n{out}");
    }
    assert!(
        !out.lines()
            .any(|l| l.trim_start().starts_with("owner alice")),
        "{what} let a note fake a line:\n{out}"
    );
}

#[test]
fn other_members_terminals_never_see_raw_control_or_bidi_characters() {
    if !root_or_skip("other_members_terminals_never_see_raw_control_or_bidi_characters") {
        return;
    }
    let u = users();
    let s = Site::new("");
    // Bob's files wait in incoming/ (no worker yet): a ticket name, a spec and a note
    // with ESC sequences, a C1 CSI, a bell, a newline faking an `owner alice` line, and
    // U+202E; and a link whose target carries the same.
    let name = "t\x1b[2J\x1b]0;pwned\x07\u{202e}lmth.toml";
    s.drop_as(
        &u.bob,
        name,
        "spec = \"zlib\\u001b[31m\\u009b2J\"\nnote = \"ok\\nowner alice\\u202eevil\"\n",
    );
    s.drop_as(
        &u.bob,
        "plain.toml",
        "spec = \"bzip2\"\nnote = \"x\\nowner alice\"\n",
    );
    s.sh_ok(
        &u.bob,
        "ln -s \"$(printf '/tmp/\\033[2Jgone\\342\\200\\256x')\" \"$S/incoming/link.toml\"",
    );
    for args in [&["status"][..], &["status", "--verbose"]] {
        let out = s.cli(&u.alice, args);
        let said = text(&out.stdout);
        assert!(out.status.success(), "{said}{}", text(&out.stderr));
        assert_inert(&format!("alice's {args:?}"), &said);
        assert!(
            said.contains("zlib\\e[31m\\u{009b}2J"),
            "{args:?}: the spec is not shown escaped: {said}"
        );
    }
    // JSON keeps the exact strings: JSON escapes controls itself.
    let out = s.cli(&u.alice, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let jobs = v["jobs"].as_array().unwrap();
    let bob = jobs
        .iter()
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(bob["note"], "ok\nowner alice\u{202e}evil");
    assert_eq!(bob["spec"], "zlib\x1b[31m\u{9b}2J");

    // The worker rejects all three; its log, and what members read of them, stay inert.
    let log = s.drain();
    assert_inert("the worker's log", &log);
    for args in [&["failed"][..], &["status", "--all", "--verbose"]] {
        let out = s.cli(&u.alice, args);
        let said = text(&out.stdout);
        assert!(out.status.success(), "{said}{}", text(&out.stderr));
        assert_inert(&format!("alice's {args:?}"), &said);
    }
    let said = text(&s.cli(&u.alice, &["failed"]).stdout);
    assert!(said.contains("symbolic link"), "{said}");
    assert!(
        said.contains("\\e[2Jgone\\u{202e}x"),
        "the link target is not shown escaped: {said}"
    );
    for t in [name, "plain.toml", "link.toml"] {
        let job = s.receipt(t)["job"].as_str().unwrap().to_string();
        let out = s.cli(&u.alice, &["show", &job]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_inert(&format!("alice's show {job}"), &text(&out.stdout));
    }
    // A note is one printable line: the newline one is refused at intake, and says why.
    let r = s.receipt("plain.toml");
    assert_eq!(r["outcome"].as_str(), Some("rejected"), "{r:?}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("one printable line"),
        "{r:?}"
    );
}

#[test]
fn spack_inherits_no_descriptor_of_the_worker_but_stdin_stdout_and_stderr() {
    if !root_or_skip("spack_inherits_no_descriptor_of_the_worker_but_stdin_stdout_and_stderr") {
        return;
    }
    let u = users();
    let mut s = Site::new("");
    // A Spack that records the descriptors it was started with (before it opens any).
    let spack = s.dir.path().join("bin/spack");
    fs::write(
        &spack,
        "#!/bin/sh\ncase \"$1\" in --version) echo 0.23.1; exit 0;; esac\n\
         ls -l /proc/$$/fd > \"$SPACK_FAKE_FDS/fds.$$\" 2>&1\nexit 0\n",
    )
    .unwrap();
    fs::set_permissions(&spack, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    s.worker_env
        .push(("SPACK_FAKE_FDS".into(), s.fake.display().to_string()));
    // The worker inherits a descriptor without close-on-exec (from whoever started it).
    let planted = s.dir.path().join("planted-descriptor");
    fs::write(&planted, "").unwrap();
    s.drop_as(&u.alice, "z.toml", "spec = \"zlib\"\n");
    s.drain_inheriting(&planted, 19);
    assert_receipt(&s, "z.toml", "accepted", "");
    let records: Vec<String> = fs::read_dir(&s.fake)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("fds."))
        .map(|p| fs::read_to_string(p).unwrap())
        .collect();
    assert_eq!(records.len(), 1, "Spack ran once: {records:?}");
    let fds = &records[0];
    assert!(
        !fds.contains("planted-descriptor"),
        "Spack inherited it:\n{fds}"
    );
    assert!(
        !fds.contains(" 19 -> "),
        "Spack inherited descriptor 19:\n{fds}"
    );
    // Nothing of the spool (the lock, a job file, a directory) reaches Spack but its log.
    for l in fds.lines().filter(|l| l.contains(" -> ")) {
        let target = l.rsplit(" -> ").next().unwrap();
        assert!(
            !target.starts_with(&s.root.display().to_string()) || target.contains("/logs/"),
            "Spack inherited {target}:\n{fds}"
        );
    }
}

#[test]
fn an_outsider_is_told_the_spools_own_group() {
    if !root_or_skip("an_outsider_is_told_the_spools_own_group") {
        return;
    }
    let u = users();
    let s = Site::new("");
    let out = std::process::Command::new("groupadd")
        .args(["-f", "sitest-builders"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = s.root_cli(&["init", "--group", "sitest-builders", "--owner", SERVICE]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = s.cli(&u.mallory, &["submit", "--no-wait", "zlib"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("not in group sitest-builders"), "{err}");
    assert!(!err.contains(GROUP), "{err}");
    assert!(err.contains("usermod -aG sitest-builders mallory"), "{err}");
    let out = s.cli(&u.mallory, &["auth-status"]);
    let said = text(&out.stdout);
    assert!(
        said.contains("usermod -aG sitest-builders mallory"),
        "{said}"
    );
}

#[test]
fn bob_cannot_smuggle_flags_dev_path_files_or_a_second_spec_past_the_spec_grammar() {
    if !root_or_skip(
        "bob_cannot_smuggle_flags_dev_path_files_or_a_second_spec_past_the_spec_grammar",
    ) {
        return;
    }
    let u = users();
    let bob = &u.bob;
    let s = Site::new("");
    // Spack 0.23 reads this as `+shared cflags=-fplugin=/tmp/x.so`: the CLI refuses it,
    // naming the token, before anything is written.
    let quoted = "zlib shared=\"true\"cflags=-fplugin=/tmp/x.so";
    let out = s.cli(bob, &["submit", "--no-wait", quoted]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "bob's quoted flag was queued: {err}");
    assert!(
        err.contains("`shared=\"true\"` (column 6) is quoted"),
        "{err}"
    );
    // Dropped by hand, past the CLI: the worker refuses each, naming the token and why.
    let attacks = [
        (
            "quoted.toml",
            quoted,
            "`shared=\"true\"` (column 6) is quoted",
        ),
        (
            "single-quoted.toml",
            "zlib shared='1'ldflags=-fplugin=/tmp/x.so",
            "`shared='1'` (column 6) is quoted",
        ),
        (
            "colon-equals.toml",
            "zlib cflags:=-fplugin=/tmp/x.so",
            "sets `cflags`, which the queue does not take",
        ),
        (
            "colon-dev-path.toml",
            "zlib dev_path:=/home/bob/src",
            "sets `dev_path`, which the queue does not take",
        ),
        (
            "propagated.toml",
            "zlib ^zstd cflags==-fplugin=/tmp/x.so",
            "sets `cflags`, which the queue does not take",
        ),
        (
            "propagated-dev-path.toml",
            "zlib dev_path==/home/bob/src",
            "sets `dev_path`, which the queue does not take",
        ),
        (
            "capitals.toml",
            "zlib CFLAGS=-O3",
            "sets `CFLAGS`, which the queue does not take",
        ),
        (
            "spec-file.toml",
            "zlib /tmp/x.json",
            "`/tmp/x.json` (column 6) is a file path",
        ),
        (
            "dep-spec-file.toml",
            "zlib ^/tmp/x.yaml",
            "`/tmp/x.yaml` (column 7) is a file path",
        ),
        (
            "two-roots.toml",
            "zlib bzip2",
            "`bzip2` (column 6) starts a second spec",
        ),
    ];
    for (ticket, spec, _) in attacks {
        let file = format!("spec = {}\n", toml::Value::String(spec.into()));
        s.drop_as(bob, ticket, &file);
    }
    // Alice's spec, written loosely, still installs, as its canonical form.
    s.drop_as(&u.alice, "alice.toml", "spec = \"zlib + mpi\"\n");
    s.drain();
    for (ticket, _, why) in attacks {
        assert_receipt(&s, ticket, "rejected", why);
        let (dir, rec) = record_of(&s, ticket);
        assert_eq!(dir, "failed", "{ticket}");
        assert!(rec.contains("state = \"rejected\""), "{ticket}: {rec}");
    }
    let installs = s.installs();
    assert_eq!(installs.len(), 1, "Spack ran for bob: {installs:?}");
    assert_eq!(installs[0].last().map(String::as_str), Some("zlib +mpi"));
}
