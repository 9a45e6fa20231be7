//! The spool queue end to end: the real binary, a real spool, real inotify, real
//! processes and signals, and the fake Spack.

#[path = "security/site.rs"]
mod site;
mod support;

use nix::sys::signal::Signal;
use std::fs;
use std::time::Duration;
use support::{TestSpool, wait_until};

#[test]
fn submit_then_worker_installs_into_done_with_log() {
    let s = TestSpool::new();
    let out = s.ok(&["submit", "hdf5@1.14 +mpi ^openmpi"]);
    assert!(out.contains("queued as ticket t"), "{out}");
    assert_eq!(s.ls("incoming").len(), 1);
    s.drain();
    assert_eq!(s.ls("done"), vec!["000001-hdf5.toml"]);
    assert!(
        s.ls("incoming").is_empty() && s.ls("pending").is_empty() && s.ls("running").is_empty()
    );
    // The spec reached Spack as ONE argument, after the configured install_args.
    assert_eq!(
        s.installs_without_jobs(),
        vec![vec!["install", "--fail-fast", "hdf5@1.14 +mpi ^openmpi"]]
    );
    let rec = s.read("done/000001-hdf5.toml");
    assert!(rec.contains("state = \"done\""), "{rec}");
    assert!(rec.contains("exit_code = 0"), "{rec}");
    assert!(rec.contains("attempts = 1"), "{rec}");
    let log = s.read("logs/000001-hdf5.log");
    assert!(log.contains("==> hdf5: Successfully installed"), "{log}");
    assert!(
        s.ls("tmp").is_empty(),
        "no temp files left: {:?}",
        s.ls("tmp")
    );
}

#[test]
fn failing_install_lands_in_failed_with_reason_and_exit_code() {
    let mut s = TestSpool::new();
    s.env.push(("SPACK_FAKE_FAIL".into(), "zlib".into()));
    s.ok(&["submit", "zlib", "nosuchpkg"]);
    s.drain();
    assert_eq!(
        s.ls("failed"),
        vec!["000001-zlib.toml", "000002-nosuchpkg.toml"]
    );
    let zlib = s.read("failed/000001-zlib.toml");
    assert!(zlib.contains("exit_code = 1"), "{zlib}");
    assert!(
        zlib.contains("reason = \"spack exited with code 1: ==> Error: ProcessError"),
        "{zlib}"
    );
    let unknown = s.read("failed/000002-nosuchpkg.toml");
    assert!(
        unknown.contains("==> Error: Package 'nosuchpkg' not found."),
        "{unknown}"
    );
}

#[test]
fn priority_then_dependencies_decide_the_order() {
    let s = TestSpool::new();
    s.ok(&["submit", "-p", "low", "aaa"]);
    s.ok(&["submit", "-p", "high", "netcdf-c", "-d", "hdf5"]);
    s.ok(&["submit", "-p", "medium", "hdf5"]);
    s.ok(&["submit", "-p", "high", "zzz"]);
    s.drain();
    // zzz (high, ready) first; netcdf-c is high but waits for hdf5, which runs next.
    assert_eq!(s.install_order(), vec!["zzz", "hdf5", "netcdf-c", "aaa"]);
}

#[test]
fn after_waits_for_a_job_and_a_failed_dependency_fails_the_dependent() {
    let mut s = TestSpool::new();
    s.env.push(("SPACK_FAKE_FAIL".into(), "zlib".into()));
    s.ok(&["submit", "zlib"]);
    s.ok(&["submit", "-p", "high", "hdf5", "--after", "1"]);
    s.drain();
    assert_eq!(s.install_order(), vec!["zlib"]);
    let hdf5 = s.read("failed/000002-hdf5.toml");
    assert!(
        hdf5.contains("reason = \"dependency 000001-zlib failed\""),
        "{hdf5}"
    );
}

#[test]
fn a_second_worker_is_refused_naming_the_holder() {
    let s = TestSpool::new();
    let w = s.spawn_worker(&[]);
    let out = s.run(&["worker", "run"]);
    assert_eq!(out.status.code(), Some(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("pid {}", w.pid())), "{err}");
}

#[test]
fn bad_files_are_rejected_with_reasons_and_good_jobs_still_run() {
    let s = TestSpool::new();
    s.drop_file("typo.toml", "spec = \"cmake\"\npriorty = \"high\"\n");
    s.drop_file("garbage.toml", "this is [not toml\n");
    s.drop_file("option.toml", "spec = \"--help\"\n");
    std::os::unix::fs::symlink("/etc/shadow", s.path("incoming/shadow.toml")).unwrap();
    s.drop_file("ignored.txt", "spec = \"zlib\"\n");
    s.drop_file("good.toml", "spec = \"zlib\"\n");
    s.drain();
    assert_eq!(s.install_order(), vec!["zlib"]);
    let failed = s.ls("failed");
    assert_eq!(failed.len(), 4, "{failed:?}");
    let reasons: String = failed
        .iter()
        .map(|f| s.read(&format!("failed/{f}")))
        .collect();
    assert!(reasons.contains("unknown field `priorty`"), "{reasons}");
    assert!(reasons.contains("line 1"), "{reasons}");
    assert!(reasons.contains("starts with `-`"), "{reasons}");
    assert!(
        reasons.contains("symbolic link (to `/etc/shadow`)"),
        "{reasons}"
    );
    assert!(reasons.contains("state = \"rejected\""), "{reasons}");
    // The original text is kept for a person to read.
    assert!(reasons.contains("this is [not toml"), "{reasons}");
    // Only *.toml is taken; the .txt stays where it was.
    assert_eq!(s.ls("incoming"), vec!["ignored.txt"]);
}

#[test]
fn dry_run_moves_jobs_but_runs_nothing() {
    let s = TestSpool::new();
    s.ok(&["submit", "zlib"]);
    s.ok(&["worker", "run", "--until-idle", "--dry-run"]);
    assert_eq!(s.ls("done"), vec!["000001-zlib.toml"]);
    assert!(s.installs().is_empty(), "dry run must not run Spack");
    let log = s.read("logs/000001-zlib.log");
    assert!(log.contains("==> dry run: would run"), "{log}");
    assert!(log.contains("\"zlib\""), "{log}");
}

#[test]
fn a_running_worker_picks_up_by_inotify_and_submit_prints_the_id() {
    let s = TestSpool::new();
    // A rescan interval of an hour: only inotify can explain a quick pick-up.
    let _w = s.start_worker(&[], &[("WORKER_CHECK_INTERVAL", "3600")]);
    wait_until("worker up", Duration::from_secs(10), || {
        fs::read_to_string(s.path("worker.toml")).is_ok_and(|t| t.contains("state = \"running\""))
    });
    let out = s.ok(&["submit", "--json", "zlib"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["outcome"], "accepted", "{out}");
    assert_eq!(v["id"], 1);
    assert_eq!(v["job"], "000001-zlib");
    wait_until("zlib done", Duration::from_secs(10), || {
        s.where_is("000001-zlib").as_deref() == Some("done")
    });
}

#[test]
fn submit_wait_returns_the_outcome_as_exit_code() {
    let mut s = TestSpool::new();
    s.env.push(("SPACK_FAKE_FAIL".into(), "bad".into()));
    let _w = s.spawn_worker(&[]);
    let ok = s.run(&["submit", "--wait", "good"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("(done)"));
    let bad = s.run(&["submit", "--wait", "bad"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stdout).contains("(failed)"));
}

#[test]
fn status_lists_every_state() {
    let s = TestSpool::new();
    s.ok(&["submit", "zlib"]);
    let out = s.ok(&["status"]);
    assert!(out.contains("incoming") && out.contains("zlib"), "{out}");
    assert!(out.contains("worker: not running"), "{out}");
    s.drain();
    s.ok(&["submit", "-p", "high", "cmake"]);
    let json = s.ok(&["status", "--all", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let jobs = v["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2, "{json}");
    assert_eq!(jobs[0]["name"], "000001-zlib");
    assert_eq!(jobs[0]["state"], "done");
    assert_eq!(
        jobs[0]["owner"],
        nix::unistd::User::from_uid(nix::unistd::getuid())
            .unwrap()
            .unwrap()
            .name
    );
    assert_eq!(jobs[1]["state"], "incoming");
    assert_eq!(jobs[1]["priority"], "high");
    assert_eq!(v["counts"]["incoming"], 1);
}

#[test]
fn a_job_over_its_timeout_is_killed_and_failed() {
    let mut s = TestSpool::with_config("kill_grace = 1\n");
    s.env.push(("SPACK_FAKE_DELAY".into(), "30".into()));
    s.ok(&["submit", "--timeout", "1", "slowpkg"]);
    s.drain();
    let rec = s.read("failed/000001-slowpkg.toml");
    assert!(rec.contains("reason = \"timed out after 1s\""), "{rec}");
}

#[test]
fn sigterm_drains_and_a_second_sigterm_requeues() {
    let mut s = TestSpool::new();
    s.env.push(("SPACK_FAKE_DELAY".into(), "1".into()));
    let mut w = s.spawn_worker(&[]);
    s.ok(&["submit", "first"]);
    wait_until("first running", Duration::from_secs(10), || {
        s.where_is("000001-first").as_deref() == Some("running")
    });
    s.ok(&["submit", "--no-wait", "second"]);
    w.signal(Signal::SIGTERM);
    assert!(w.wait(Duration::from_secs(20)).success());
    // The running install finished; nothing new started.
    assert_eq!(s.where_is("000001-first").as_deref(), Some("done"));
    assert_eq!(s.install_order(), vec!["first"]);

    s.env.push(("SPACK_FAKE_DELAYS".into(), "second=60".into()));
    let mut w = s.spawn_worker(&[]);
    wait_until("second running", Duration::from_secs(10), || {
        s.where_is("000002-second").as_deref() == Some("running")
    });
    w.signal(Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    w.signal(Signal::SIGTERM);
    assert!(w.wait(Duration::from_secs(20)).success());
    assert_eq!(s.where_is("000002-second").as_deref(), Some("pending"));
    let rec = s.read("pending/000002-second.toml");
    assert!(
        rec.contains("attempts = 0"),
        "an interruption the worker chose does not count: {rec}"
    );
}

#[test]
fn the_last_finished_jobs_survive_a_worker_restart() {
    let s = TestSpool::new();
    s.ok(&["submit", "zlib"]);
    s.drain();
    s.drain();
    let v: serde_json::Value = serde_json::from_str(&s.ok(&["status", "--json"])).unwrap();
    let names: Vec<&str> = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["000001-zlib"],
        "status after a restart still lists the last finished job"
    );
}

#[test]
fn the_worker_prunes_receipts_older_than_a_day() {
    let s = TestSpool::new();
    s.ok(&["submit", "zlib", "cmake"]);
    s.drain();
    let receipts = s.ls("receipts");
    assert_eq!(receipts.len(), 2, "{receipts:?}");
    // Age one of them by two days.
    let old = s.path(&format!("receipts/{}", receipts[0]));
    let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 86_400);
    fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(two_days_ago)
        .unwrap();
    s.drain();
    assert_eq!(
        s.ls("receipts"),
        vec![receipts[1].clone()],
        "the old receipt goes, the fresh one stays"
    );
}

#[test]
fn a_job_submitted_while_a_deep_queue_drains_is_ranked_at_once() {
    // While only installs end, the worker takes its next job from its last plan; a new
    // submission must still be ranked before the next start.
    let mut s = TestSpool::new();
    s.env.push(("SPACK_FAKE_DELAY".into(), "0.15".into()));
    let _w = s.spawn_worker(&[]);
    let lows: Vec<String> = (1..=12).map(|i| format!("low{i}")).collect();
    let mut args = vec!["submit", "-p", "low"];
    args.extend(lows.iter().map(String::as_str));
    s.ok(&args);
    let events = s.dir.path().join("events.log");
    wait_until("the first install started", Duration::from_secs(10), || {
        fs::read_to_string(&events).is_ok_and(|e| e.contains("start "))
    });
    s.ok(&["submit", "-p", "high", "urgent"]);
    wait_until("all thirteen done", Duration::from_secs(30), || {
        s.ls("done").len() == 13
    });
    let order = s.install_order();
    let at = order.iter().position(|p| p == "urgent").unwrap();
    // After the low job running when it came, and at most two more that may have started
    // while `submit` ran; a plan reused past the new job would start it a second later,
    // after six or so.
    assert!(at <= 3, "urgent was install {} of {order:?}", at + 1);
}

#[test]
fn worker_toml_follows_a_burst_of_short_jobs_without_waiting_for_the_heartbeat() {
    // Starts and ends write worker.toml at most every 100 ms; a change that falls inside
    // that gap must still be written soon after, not at the next heartbeat (an hour here).
    // Dry-run installs end at once, so every end falls inside the gap.
    let s = TestSpool::new();
    let _w = s.start_worker(&["--dry-run"], &[("WORKER_HEARTBEAT_INTERVAL", "3600")]);
    wait_until("worker up", Duration::from_secs(10), || {
        fs::read_to_string(s.path("worker.toml")).is_ok_and(|t| t.contains("state = \"running\""))
    });
    s.ok(&["submit", "--no-wait", "a1", "a2", "a3", "a4", "a5"]);
    wait_until("all five done", Duration::from_secs(20), || {
        s.ls("done").len() == 5
    });
    wait_until(
        "worker.toml lists the five as recent, nothing running",
        Duration::from_secs(5),
        || {
            let t = fs::read_to_string(s.path("worker.toml")).unwrap_or_default();
            t.contains("running = []") && (1..=5).all(|i| t.contains(&format!("-a{i}\"")))
        },
    );
}

// ---- one member cannot steer another member's outcome or turn (SECURITY.md 54-58) ----

/// `optimize --json` as `who`: the jobs in plan order, with their reasons.
fn plan_as(s: &site::Site, who: &site::Person) -> Vec<(String, String)> {
    let out = s.cli(who, &["optimize", "--json"]);
    assert!(
        out.status.success(),
        "optimize: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    rows.iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A worker that takes every submission into pending/ but starts nothing (the queue is
/// paused), once `n` jobs are pending.
fn pending_behind_a_pause(s: &site::Site, n: usize) -> site::Worker {
    s.pause();
    let w = s.spawn_worker();
    wait_until(
        &format!("{n} pending jobs"),
        Duration::from_secs(30),
        || s.ls("pending").len() == n,
    );
    w
}

fn packages_in(s: &site::Site, dir: &str) -> Vec<String> {
    s.ls(dir)
        .into_iter()
        .filter_map(|f| {
            f.strip_suffix(".toml")
                .and_then(|f| f.split_once('-'))
                .map(|(_, p)| p.to_string())
        })
        .collect()
}

#[test]
fn another_members_failed_job_of_a_package_does_not_fail_mine() {
    if !site::root_or_skip("another_members_failed_job_of_a_package_does_not_fail_mine") {
        return;
    }
    let u = site::users();
    let mut s = site::Site::new("");
    s.worker_env
        .push(("SPACK_FAKE_FAIL".into(), "zlib@999".into()));
    // alice queues hdf5 on zlib while a zlib job is pending; bob queues zlib@999.
    s.submit(&u.alice, &["zlib"]);
    s.submit(&u.alice, &["-p", "high", "hdf5", "-d", "zlib"]);
    s.submit(&u.bob, &["zlib@999"]);
    s.drain();
    assert_eq!(
        packages_in(&s, "failed"),
        vec!["zlib"],
        "only bob's zlib@999 fails"
    );
    let mut done = packages_in(&s, "done");
    done.sort();
    assert_eq!(done, vec!["hdf5", "zlib"]);
    let installed: Vec<String> = s
        .installs()
        .iter()
        .map(|a| a.last().unwrap().clone())
        .collect();
    assert!(installed.contains(&"hdf5".to_string()), "{installed:?}");

    // Her own dependency failing still fails her job: she named that package, her
    // zlib@999 is what she meant it to wait for, and nothing installed zlib since.
    s.submit(&u.alice, &["zlib@999"]);
    s.submit(&u.alice, &["netcdf-c", "-d", "zlib"]);
    s.drain();
    let failed = s.ls("failed");
    let netcdf = failed
        .iter()
        .find(|f| f.ends_with("-netcdf-c.toml"))
        .unwrap_or_else(|| panic!("netcdf-c did not fail: {failed:?}"));
    let hers = failed
        .iter()
        .find(|f| {
            f.ends_with("-zlib.toml")
                && s.read(&format!("failed/{f}")).contains("owner = \"alice\"")
        })
        .unwrap();
    let rec = s.read(&format!("failed/{netcdf}"));
    let why = format!(
        "reason = \"dependency {} failed\"",
        hers.trim_end_matches(".toml")
    );
    assert!(rec.contains(&why), "{why} not in {rec}");
}

#[test]
fn a_short_declared_estimate_does_not_beat_what_the_queue_knows() {
    if !site::root_or_skip("a_short_declared_estimate_does_not_beat_what_the_queue_knows") {
        return;
    }
    let u = site::users();
    let s = site::Site::new("");
    // No history: bob's "one second" with a 30-day timeout is believed to take 15 days.
    s.submit(&u.alice, &["-p", "high", "hdf5"]);
    s.submit(
        &u.bob,
        &["-p", "low", "-t", "1s", "--timeout", "30d", "llvm"],
    );
    let w = pending_behind_a_pause(&s, 2);
    let plan = plan_as(&s, &u.alice);
    assert!(plan[0].0.ends_with("-hdf5"), "{plan:?}");
    assert!(
        plan[1]
            .1
            .contains("takes ~15d00h (its timeout ÷ the multiplier; its own estimate is shorter)"),
        "{plan:?}"
    );
    drop(w);
    s.unpause();
    s.drain();

    // With history (llvm took 3 s), a shorter declared estimate is not believed.
    let mut s = site::Site::new("");
    s.worker_env
        .push(("SPACK_FAKE_DELAYS".into(), "llvm=3".into()));
    s.submit(&u.bob, &["llvm"]);
    s.drain();
    s.submit(&u.alice, &["-p", "medium", "-t", "3s", "hdf5"]);
    s.submit(&u.bob, &["-p", "low", "-t", "1s", "llvm"]);
    let _w = pending_behind_a_pause(&s, 2);
    let plan = plan_as(&s, &u.alice);
    assert!(plan[0].0.ends_with("-hdf5"), "{plan:?}");
    assert!(
        plan[1]
            .1
            .contains("(past installs; its own estimate is shorter)"),
        "{plan:?}"
    );
}

#[test]
fn owners_take_turns_ten_jobs_of_bob_then_one_of_alice() {
    if !site::root_or_skip("owners_take_turns_ten_jobs_of_bob_then_one_of_alice") {
        return;
    }
    let u = site::users();
    let s = site::Site::new("");
    let bobs: Vec<String> = (1..=10).map(|i| format!("bobpkg{i}")).collect();
    for b in &bobs {
        s.submit(&u.bob, &["-p", "high", b]);
    }
    s.submit(&u.alice, &["-p", "high", "alicepkg"]);
    let w = pending_behind_a_pause(&s, 11);
    let plan = plan_as(&s, &u.bob);
    let at = plan
        .iter()
        .position(|(n, _)| n.ends_with("-alicepkg"))
        .unwrap();
    assert!(at <= 1, "alice's job is place {} of {plan:?}", at + 1);
    assert!(
        plan[at].1.contains(
            "fair share among 2 owners of ready high jobs: alice started 0.0 installs lately"
        ),
        "{plan:?}"
    );
    drop(w);
    s.unpause();
    s.drain();
    let order: Vec<String> = s
        .installs()
        .iter()
        .map(|a| a.last().unwrap().clone())
        .collect();
    assert_eq!(order.len(), 11, "{order:?}");
    let at = order.iter().position(|p| p == "alicepkg").unwrap();
    assert!(at <= 2, "alice's job was install {} of {order:?}", at + 1);
}
