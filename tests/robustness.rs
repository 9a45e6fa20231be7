//! inotify as a hint, half-written files, full disks, heartbeats, SIGHUP: the worker keeps
//! every job where it belongs when the world misbehaves.

mod support;

use nix::sys::signal::Signal;
use std::fs;
use std::io::Write;
use std::time::Duration;
use support::{SmallFs, TestSpool, wait_until};

#[test]
fn without_inotify_the_rescan_finds_jobs() {
    let s = TestSpool::new();
    let _w = s.spawn_worker(&["--no-inotify"]);
    s.ok(&["submit", "zlib"]);
    wait_until("zlib done by rescan", Duration::from_secs(15), || {
        s.where_is("000001-zlib").as_deref() == Some("done")
    });
}

#[test]
fn thousands_of_files_dropped_at_once_are_all_taken() {
    // On tmpfs, so the burst is about events, not fsync latency; an hour between rescans,
    // so only events (and the full rescan an overflow asks for) can explain the pick-up.
    let s = TestSpool::in_dir(tempfile::tempdir_in("/dev/shm").unwrap(), "");
    let _w = s.start_worker(&["--dry-run"], &[("WORKER_CHECK_INTERVAL", "3600")]);
    wait_until("worker up", Duration::from_secs(10), || {
        fs::read_to_string(s.path("worker.toml")).is_ok_and(|t| t.contains("\"running\""))
    });
    let n = 2000;
    for i in 0..n {
        s.drop_file(
            &format!("burst{i:05}.toml"),
            &format!("spec = \"pkg{i}\"\n"),
        );
    }
    wait_until("all taken and installed", Duration::from_secs(120), || {
        s.ls("done").len() == n
    });
    assert!(s.ls("incoming").is_empty() && s.ls("failed").is_empty());
}

#[test]
fn a_file_still_being_written_is_not_taken_early() {
    let s = TestSpool::new();
    let _w = s.spawn_worker(&[]);
    let path = s.path("incoming/slow.toml");
    let mut f = fs::File::create(&path).unwrap();
    f.write_all(b"spec = \"zl").unwrap();
    f.flush().unwrap();
    // Hold the file open, half written, across several rescans (every 0.5 s here). This
    // pause is the scenario being tested, not a wait for a condition.
    std::thread::sleep(Duration::from_millis(1200));
    assert!(path.exists(), "a half-written file was taken");
    assert!(s.ls("failed").is_empty());
    f.write_all(b"ib\"\n").unwrap();
    drop(f); // close-after-write: now it is taken
    wait_until("zlib done", Duration::from_secs(10), || {
        s.where_is("000001-zlib").as_deref() == Some("done")
    });
    assert!(
        s.ls("failed").is_empty(),
        "the completed file was accepted, not rejected"
    );
}

#[test]
fn sighup_reloads_the_config() {
    let s = TestSpool::new();
    let w = s.spawn_worker(&[]);
    fs::write(
        &s.config,
        format!(
            "spack = \"{}\"\ninstall_args = [\"--reuse\"]\nlog_level = \"debug\"\n",
            support::fake_spack().display()
        ),
    )
    .unwrap();
    // At the default level the worker does not say which Spack it uses; at debug it does.
    assert!(!w.output().contains("using "), "{}", w.output());
    w.signal(Signal::SIGHUP);
    wait_until("reload logged", Duration::from_secs(10), || {
        w.output().contains("configuration reloaded")
    });
    assert!(
        w.output().contains("using "),
        "log_level = debug took no effect: {}",
        w.output()
    );
    s.ok(&["submit", "--wait", "zlib"]);
    assert_eq!(
        s.installs_without_jobs(),
        vec![vec!["install", "--reuse", "zlib"]]
    );
}

#[test]
fn a_stopped_worker_is_called_stale() {
    let s = TestSpool::new();
    let w = s.start_worker(&[], &[("WORKER_HEARTBEAT_INTERVAL", "0.2")]);
    let beat = || {
        fs::read_to_string(s.path("worker.toml"))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("heartbeat"))
            .map(String::from)
    };
    wait_until("first heartbeat", Duration::from_secs(10), || {
        beat().is_some()
    });
    let first = beat();
    wait_until("heartbeat advances", Duration::from_secs(5), || {
        beat() != first
    });
    w.signal(Signal::SIGSTOP);
    let mut st = s.command(&["status", "--json"]);
    st.env("MAX_WORKER_HEARTBEAT_AGE", "1");
    wait_until("stale", Duration::from_secs(10), || {
        let out = st.output().unwrap();
        String::from_utf8_lossy(&out.stdout).contains("\"stale\"")
    });
    let human = String::from_utf8(
        s.command(&["status"])
            .env("MAX_WORKER_HEARTBEAT_AGE", "1")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(human.contains("STALE"), "{human}");
    w.signal(Signal::SIGCONT);
}

/// User + system CPU time of a process, in clock ticks (utime and stime of /proc/PID/stat).
fn cpu_ticks(pid: i32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// A spool on its own 256 KiB tmpfs, or `None` (said, not silent) when not root.
fn small_spool(test: &str) -> Option<(SmallFs, TestSpool)> {
    if !support::root_or_skip(test, "it mounts a small tmpfs") {
        return None;
    }
    let small = SmallFs::new("256k");
    let spool_dir = tempfile::tempdir_in(small.dir.path()).unwrap();
    Some((small, TestSpool::in_dir(spool_dir, "")))
}

#[test]
fn a_full_disk_fails_submit_cleanly() {
    let Some((small, s)) = small_spool("a_full_disk_fails_submit_cleanly") else {
        return;
    };
    let filler = small.fill();
    let out = s.run(&["submit", "zlib"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is full") && err.contains("nothing was queued"),
        "{err}"
    );
    let left: Vec<String> = fs::read_dir(s.path("incoming"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(left.is_empty(), "nothing half-written may stay: {left:?}");
    fs::remove_file(filler).unwrap();
    s.ok(&["submit", "zlib"]);
}

#[test]
fn a_full_disk_holds_the_worker_back_until_space_returns() {
    let Some((small, s)) = small_spool("a_full_disk_holds_the_worker_back_until_space_returns")
    else {
        return;
    };
    s.ok(&["submit", "zlib"]);
    s.ok(&["submit", "cmake"]);
    let filler = small.fill();
    let w = s.start_worker(&[], &[]);
    wait_until(
        "the worker meets the full disk and backs off",
        Duration::from_secs(10),
        || w.output().contains("retrying in"),
    );
    // It keeps trying with a growing back-off, without spinning or losing anything. The
    // pause is the window being observed; what is checked is CPU time, not wall time.
    let cpu_before = cpu_ticks(w.pid());
    std::thread::sleep(Duration::from_secs(2));
    let cpu = cpu_ticks(w.pid()) - cpu_before;
    assert!(
        cpu < 50,
        "the worker used {cpu} clock ticks of CPU in ~2 s of back-off: it spins"
    );
    let errors = w.output().matches("No space left").count();
    assert!(errors <= 4, "logged {errors} times in ~2 s: a tight loop");
    assert!(s.ls("done").is_empty());
    fs::remove_file(filler).unwrap();
    wait_until(
        "both done after space returns",
        Duration::from_secs(30),
        || s.ls("done").len() == 2,
    );
    assert!(s.ls("failed").is_empty(), "{:?}", s.ls("failed"));
    assert!(s.ls("tmp").is_empty(), "{:?}", s.ls("tmp"));
}

// ---- one entry never stops the queue (issue 13, item 4) -------------------------------

#[path = "security/site.rs"]
mod site;

/// The `receipts/` entry for `ticket`, as TOML.
fn receipt_of(s: &site::Site, ticket: &str) -> Option<toml::Table> {
    fs::read_to_string(s.path("receipts").join(ticket))
        .ok()
        .and_then(|t| t.parse().ok())
}

#[test]
fn an_entry_that_cannot_be_removed_is_quarantined_and_the_queue_goes_on_across_restarts() {
    if !site::root_or_skip("an_entry_that_cannot_be_removed_is_quarantined…") {
        return;
    }
    let u = site::users();
    let s = site::Site::new("");
    // A directory the worker may move (group-writable) but not empty (a read-only
    // subdirectory holds a file): it can be claimed and rejected, never removed.
    s.sh_ok(
        &u.bob,
        "cd \"$S/incoming\" && mkdir -m 2770 .d && mkdir .d/sub && touch .d/sub/f && chmod 555 .d/sub && mv .d d1.toml",
    );
    let t = s.submit(&u.alice, &["zlib"]);
    let log = s.drain();
    assert!(
        s.ls("done").iter().any(|n| n.ends_with("-zlib.toml")),
        "alice's job did not run: {log}"
    );
    let r = receipt_of(&s, "d1.toml").expect("a receipt for d1.toml");
    assert_eq!(r["outcome"].as_str(), Some("rejected"), "{r:?}");
    assert!(receipt_of(&s, &t).is_some());
    // Set aside where an admin can inspect it, out of tmp/ and incoming/.
    let q = s.ls("quarantine");
    assert!(q.iter().any(|n| n.ends_with("d1.toml")), "{q:?}: {log}");
    assert!(
        !s.ls("tmp").iter().any(|n| n.starts_with("claim.")),
        "{:?}",
        s.ls("tmp")
    );
    assert!(s.ls("incoming").is_empty(), "{:?}", s.ls("incoming"));
    assert!(log.contains("quarantine"), "{log}");
    // Across a restart: another such entry, left in tmp/ as a crash would leave it, does
    // not make recovery exit.
    s.sh_ok(
        &u.bob,
        "cd \"$S/incoming\" && mkdir -m 2770 .e && mkdir .e/sub && touch .e/sub/f && chmod 555 .e/sub && mv .e e1.toml",
    );
    let log = s.drain();
    let t2 = s.submit(&u.alice, &["bzip2"]);
    let log2 = s.drain();
    assert!(
        s.ls("done").iter().any(|n| n.ends_with("-bzip2.toml")),
        "{log}\n{log2}"
    );
    assert!(receipt_of(&s, &t2).is_some());
    assert!(s.ls("quarantine").iter().any(|n| n.ends_with("e1.toml")));
}

#[test]
fn a_hard_link_with_a_future_mtime_is_judged_not_left_waiting() {
    if !site::root_or_skip("a_hard_link_with_a_future_mtime_is_judged_not_left_waiting") {
        return;
    }
    let u = site::users();
    let s = site::Site::new("");
    let w = s.spawn_worker();
    s.sh_ok(
        &u.bob,
        "cd \"$S/incoming\" && printf 'spec = \"zlib\"\\n' > .own && touch -d 2035-01-01 .own && ln .own h1.toml",
    );
    site::wait_until("a receipt for the link", Duration::from_secs(15), || {
        receipt_of(&s, "h1.toml").is_some()
    });
    let r = receipt_of(&s, "h1.toml").unwrap();
    assert_eq!(r["outcome"].as_str(), Some("rejected"), "{r:?}");
    assert!(
        r["message"].as_str().unwrap().contains("hard links"),
        "{r:?}: {}",
        w.output()
    );
    assert!(!s.ls("incoming").contains(&"h1.toml".to_string()));
}

#[test]
fn a_file_name_that_is_not_utf8_gets_a_receipt() {
    if !site::root_or_skip("a_file_name_that_is_not_utf8_gets_a_receipt") {
        return;
    }
    let u = site::users();
    let s = site::Site::new("");
    s.sh_ok(
        &u.bob,
        "cd \"$S/incoming\" && printf 'spec = \"zlib\"\\n' > .x && mv .x \"$(printf 'bad\\377.toml')\"",
    );
    let t = s.submit(&u.alice, &["zlib"]);
    let log = s.drain();
    assert!(receipt_of(&s, &t).is_some(), "{log}");
    let r = receipt_of(&s, "bad\\xff.toml").unwrap_or_else(|| {
        panic!(
            "no receipt: {:?}\n{log}",
            fs::read_dir(s.path("receipts"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect::<Vec<_>>()
        )
    });
    assert_eq!(r["outcome"].as_str(), Some("rejected"), "{r:?}");
    assert!(r["message"].as_str().unwrap().contains("UTF-8"), "{r:?}");
    assert_eq!(
        fs::read_dir(s.path("incoming")).unwrap().count(),
        0,
        "the entry stays in incoming/"
    );
}

#[test]
fn a_flood_of_rejected_files_from_one_owner_does_not_hold_up_another_owners_job() {
    // Root may give files to any uid: the flood is owned by an outsider's uid (so every
    // file is rejected), the job by root. Both sit in incoming/ when the worker starts.
    if !support::root_or_skip("a_flood_of_rejected_files…", "it chowns files") {
        return;
    }
    // On tmpfs: what is measured is the order of intake, not the disk's fsync latency.
    let s = TestSpool::in_dir(tempfile::tempdir_in("/dev/shm").unwrap(), "");
    let n = 3000;
    let flooder = nix::unistd::Uid::from_raw(54_321);
    for i in 0..n {
        let p = s.path(&format!("incoming/a-flood{i:05}.toml"));
        fs::write(&p, "spec = \"zlib\"\n").unwrap();
        nix::unistd::chown(&p, Some(flooder), None).unwrap();
    }
    s.ok(&["submit", "--no-wait", "cmake"]);
    // Old enough to be taken by the first scan.
    let old = std::time::SystemTime::now() - Duration::from_secs(10);
    for e in fs::read_dir(s.path("incoming")).unwrap() {
        let f = fs::File::options()
            .write(true)
            .open(e.unwrap().path())
            .unwrap();
        f.set_modified(old).unwrap();
    }
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    s.drain();
    assert_eq!(s.ls("failed").len(), n);
    // When cmake's install started, part of the flood was still to be taken in: its
    // install began before the last rejected record was written.
    let events = fs::read_to_string(s.dir.path().join("events.log")).unwrap();
    let start_ns: u128 = events
        .lines()
        .find(|l| l.starts_with("start cmake"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{events}"));
    let mut mtimes: Vec<u128> = fs::read_dir(s.path("failed"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .metadata()
                .unwrap()
                .modified()
                .unwrap()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        })
        .collect();
    mtimes.sort();
    let before = mtimes.iter().filter(|t| **t < start_ns).count();
    println!(
        "cmake started {} ms after the worker, after {before} of {n} rejected records were written",
        (start_ns - t0) / 1_000_000
    );
    assert!(
        before < n / 10,
        "cmake waited for {before} of the {n} rejected files"
    );
}

#[test]
fn an_entry_that_cannot_be_taken_is_skipped_with_one_warning_and_a_receipt() {
    if !site::root_or_skip("an_entry_that_cannot_be_taken_is_skipped_with_one_warning…") {
        return;
    }
    let u = site::users();
    let s = site::Site::new("");
    // A directory the worker may not write: renaming it would rewrite its `..`.
    s.sh_ok(
        &u.bob,
        "mkdir \"$S/incoming/u1.toml\" && chmod 500 \"$S/incoming/u1.toml\"",
    );
    let t = s.submit(&u.alice, &["zlib"]);
    let log = s.drain();
    assert!(receipt_of(&s, &t).is_some(), "{log}");
    let r = receipt_of(&s, "u1.toml").expect("a receipt for u1.toml");
    assert_eq!(r["outcome"].as_str(), Some("rejected"), "{r:?}");
    assert!(
        r["message"].as_str().unwrap().contains("remove it as root"),
        "{r:?}"
    );
    assert_eq!(
        log.matches("u1.toml: a directory of bob").count(),
        1,
        "{log}"
    );
    // The next start does not say it again.
    let t2 = s.submit(&u.alice, &["bzip2"]);
    let log = s.drain();
    assert!(receipt_of(&s, &t2).is_some(), "{log}");
    assert!(!log.contains("u1.toml: a directory of bob"), "{log}");
}
