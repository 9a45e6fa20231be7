//! Every command of the old tool, and the ones its users asked for next, against a real
//! spool, the real binary and the fake Spack.

mod support;

use std::fs;
use std::time::Duration;
use support::{TestSpool, wait_until};

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn show_prints_every_field_and_the_argv_that_will_run() {
    let s = TestSpool::with_config("cpus = 3\n");
    s.ok(&[
        "submit",
        "hdf5@1.14 +mpi",
        "-p",
        "high",
        "-d",
        "zlib",
        "--note",
        "for the climate group",
        "--timeout",
        "2h",
    ]);
    s.ok(&["worker", "run", "--until-idle", "--dry-run"]);
    let v = json(&s.ok(&["show", "1", "--json"]));
    assert_eq!(v["name"], "000001-hdf5");
    assert_eq!(v["state"], "done");
    assert_eq!(v["priority"], "high");
    assert_eq!(v["dependencies"], serde_json::json!(["zlib"]));
    assert_eq!(v["note"], "for the climate group");
    assert_eq!(v["timeout_s"], 7200);
    assert_eq!(v["attempts"], 1);
    assert_eq!(v["argv"][1], "install");
    assert_eq!(v["argv"][3], "hdf5@1.14 +mpi");
    // A pending job shows the argv it will get: pause a worker so it takes but never starts.
    let _w = s.spawn_worker(&[]);
    s.ok(&["pause"]);
    s.ok(&["submit", "cmake"]);
    s.ok(&["submit", "--mail", "always", "ninja"]);
    let v = json(&s.ok(&["show", "000002", "--json"]));
    assert_eq!(v["state"], "pending");
    // With its -j: all 3 CPUs of the budget, since nothing else runs.
    let will_run = serde_json::json!([
        support::fake_spack().display().to_string(),
        "install",
        "-j",
        "3",
        "--fail-fast",
        "cmake"
    ]);
    assert_eq!(v["argv"], will_run);
    let text = s.ok(&["show", "000002-cmake"]);
    assert!(text.contains("argv") && text.contains("cmake"), "{text}");
    assert!(text.contains("(its -j if it started now)"), "{text}");
    // Whether the owner gets mail: the site's setting, or the job's own choice.
    assert!(
        text.contains("mail          never (the site's setting)"),
        "{text}"
    );
    let text = s.ok(&["show", "000003"]);
    assert!(
        text.contains("mail          always (asked for with the job)"),
        "{text}"
    );
    // What show said is what ran.
    s.ok(&["resume"]);
    wait_until("cmake done", Duration::from_secs(20), || {
        s.where_is("000002-cmake").as_deref() == Some("done")
    });
    let v = json(&s.ok(&["show", "000002", "--json"]));
    assert_eq!(v["argv"], will_run);
}

#[test]
fn logs_prints_and_follow_streams_a_live_log_until_the_end() {
    let mut s = TestSpool::new();
    s.env.push(("SPACK_FAKE_STEPS".into(), "4".into()));
    s.env.push(("SPACK_FAKE_DELAY".into(), "0.4".into()));
    let _w = s.spawn_worker(&[]);
    s.ok(&["submit", "hdf5"]);
    wait_until("running", Duration::from_secs(10), || {
        s.where_is("000001-hdf5").as_deref() == Some("running")
    });
    // Follow from the start; it returns by itself when the job ends.
    let out = s.run(&["logs", "-f", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for i in 1..=4 {
        assert!(
            text.contains(&format!("[{i}/4]")),
            "missing [{i}/4] in:\n{text}"
        );
    }
    assert!(text.contains("==> 000001-hdf5 ended: done"), "{text}");
    let tail = s.ok(&["logs", "-n", "1", "000001-hdf5"]);
    assert_eq!(tail.lines().count(), 1, "{tail}");
}

#[test]
fn cancel_pending_and_running_jobs_kills_the_spack_process_group() {
    let mut s = TestSpool::with_config("kill_grace = 2\n");
    s.env.push(("SPACK_FAKE_DELAYS".into(), "slow=60".into()));
    let _w = s.spawn_worker(&[]);
    s.ok(&["submit", "slow"]);
    s.ok(&["submit", "later"]);
    wait_until("slow running", Duration::from_secs(10), || {
        s.where_is("000001-slow").as_deref() == Some("running")
    });
    let marker = format!("SPACK_INSTALLER_JOB={}/000001-slow", s.root.display());
    wait_until("spack started", Duration::from_secs(10), || {
        !support::processes_with(&marker).is_empty()
    });
    // A pending one first, by name; then the running one, by number.
    let out = s.ok(&["cancel", "000002-later"]);
    assert!(out.contains("cancelled 000002-later"), "{out}");
    let out = s.ok(&["cancel", "1"]);
    assert!(out.contains("cancelled"), "{out}");
    assert_eq!(s.where_is("000001-slow").as_deref(), Some("cancelled"));
    assert_eq!(s.where_is("000002-later").as_deref(), Some("cancelled"));
    assert!(
        support::processes_with(&marker).is_empty(),
        "the fake spack (and its sleep) must be gone"
    );
    let rec = s.read("cancelled/000001-slow.toml");
    assert!(rec.contains("cancelled by"), "{rec}");
    // Cancelling again: already finished, exit 1; an unknown job: exit 4.
    assert_eq!(s.run(&["cancel", "1"]).status.code(), Some(1));
    assert_eq!(s.run(&["cancel", "99"]).status.code(), Some(4));
    assert!(s.install_order().iter().all(|p| p != "later"));
}

#[test]
fn a_request_waits_in_incoming_when_no_worker_runs() {
    let s = TestSpool::new();
    let w = s.spawn_worker(&[]);
    s.ok(&["pause"]);
    s.ok(&["submit", "zlib"]);
    wait_until("zlib pending", Duration::from_secs(10), || {
        s.where_is("000001-zlib").as_deref() == Some("pending")
    });
    drop(w);
    // No worker: the request is queued, and says so.
    let out = s.ok(&["cancel", "1"]);
    assert!(out.contains("the worker is not running"), "{out}");
    assert_eq!(s.where_is("000001-zlib").as_deref(), Some("pending"));
    assert!(
        s.ls("incoming")
            .iter()
            .any(|f| f.ends_with(".request.toml"))
    );
    // The next worker carries it out before anything runs.
    s.drain();
    assert_eq!(s.where_is("000001-zlib").as_deref(), Some("cancelled"));
    assert!(s.installs().is_empty());
    // Unknown jobs are refused at once, without a request.
    assert_eq!(s.run(&["cancel", "42"]).status.code(), Some(4));
}

#[test]
fn priority_changes_the_order_and_pause_holds_the_queue_across_restarts() {
    let s = TestSpool::new();
    let w = s.spawn_worker(&[]);
    let out = s.ok(&["pause", "--reason", "maintenance"]);
    assert!(out.contains("paused"), "{out}");
    s.ok(&["submit", "-p", "low", "first"]);
    s.ok(&["submit", "-p", "low", "second"]);
    let st = s.ok(&["status"]);
    assert!(st.contains("PAUSED") && st.contains("maintenance"), "{st}");
    let out = s.ok(&["priority", "2", "high"]);
    assert!(out.contains("now has priority high"), "{out}");
    // Restart the worker: still paused (the state is a file in the spool).
    drop(w);
    assert!(s.path("paused").exists());
    let _w = s.spawn_worker(&[]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(s.installs().is_empty(), "nothing starts while paused");
    let plan = json(&s.ok(&["optimize", "--json"]));
    assert_eq!(plan[0]["name"], "000002-second");
    assert!(
        plan[0]["reason"]
            .as_str()
            .unwrap()
            .contains("high priority"),
        "{plan}"
    );
    s.ok(&["resume"]);
    wait_until("both done", Duration::from_secs(10), || {
        s.ls("done").len() == 2
    });
    assert_eq!(s.install_order(), vec!["second", "first"]);
}

#[test]
fn retry_failed_and_cleanup() {
    let mut s = TestSpool::new();
    s.env.push(("SPACK_FAKE_FAIL".into(), "flaky".into()));
    s.ok(&["submit", "flaky", "zlib"]);
    s.drain();
    let failed = s.ok(&["failed"]);
    assert!(failed.contains("000001-flaky"), "{failed}");
    assert!(failed.contains("spack exited with code 1"), "{failed}");
    assert!(
        failed.contains("| ==> Error: ProcessError"),
        "the log tail is shown: {failed}"
    );
    s.env.retain(|(k, _)| k != "SPACK_FAKE_FAIL");
    let out = s.ok(&["retry", "1"]);
    assert!(out.contains("retried"), "{out}");
    s.drain();
    let v = json(&s.ok(&["show", "3", "--json"]));
    assert_eq!(v["state"], "done");
    assert_eq!(v["retry_of"], 1);
    assert_eq!(
        s.run(&["retry", "2"]).status.code(),
        Some(1),
        "a done job is not retried"
    );
    // Nothing is old enough yet.
    let out = s.ok(&["cleanup"]);
    assert!(out.contains("removed 0 finished job(s)"), "{out}");
    // Age job 2 by rewriting its finished_at.
    let rec = s.read("done/000002-zlib.toml");
    let old = rec
        .lines()
        .map(|l| {
            if l.starts_with("finished_at") {
                "finished_at = \"2020-01-01T00:00:00Z\"".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    fs::write(s.path("done/000002-zlib.toml"), old).unwrap();
    let out = s.ok(&["cleanup", "--keep-days", "7"]);
    assert!(out.contains("removed done/000002-zlib.toml"), "{out}");
    assert!(!s.path("done/000002-zlib.toml").exists());
    assert!(!s.path("logs/000002-zlib.log").exists());
    assert!(s.path("done/000003-flaky.toml").exists());
}

#[test]
fn submit_several_chain_file_and_duplicates() {
    let s = TestSpool::new();
    // A paused worker takes jobs into pending/ and starts none.
    let w = s.spawn_worker(&[]);
    s.ok(&["pause"]);
    let out = s.ok(&[
        "submit",
        "--json",
        "--chain",
        "zlib",
        "hdf5@1.14",
        "+mpi",
        "netcdf-c",
    ]);
    let lines: Vec<serde_json::Value> = out.lines().map(json).collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[1]["spec"], "hdf5@1.14 +mpi");
    wait_until("three pending", Duration::from_secs(10), || {
        s.ls("pending").len() == 3
    });
    let dup = s.ok(&["submit", "--json", "zlib"]);
    assert_eq!(json(&dup)["outcome"], "duplicate", "{dup}");
    assert_eq!(json(&dup)["job"], "000001-zlib", "{dup}");
    let forced = s.ok(&["submit", "--json", "--force", "zlib"]);
    assert_eq!(json(&forced)["outcome"], "accepted");
    let stack = s.dir.path().join("stack.toml");
    fs::write(&stack, "[[job]]\nspec = \"cmake\"\n\n[[job]]\nspec = \"llvm\"\ndependencies = [\"cmake\"]\npriority = \"high\"\n").unwrap();
    s.ok(&["submit", "--file", stack.to_str().unwrap()]);
    s.ok(&["resume"]);
    wait_until("all six done", Duration::from_secs(20), || {
        s.ls("done").len() == 6
    });
    drop(w);
    let order = s.install_order();
    let pos = |p: &str| order.iter().position(|x| x == p).unwrap();
    assert!(
        pos("zlib") < pos("hdf5") && pos("hdf5") < pos("netcdf-c"),
        "{order:?}"
    );
    assert!(pos("cmake") < pos("llvm"), "{order:?}");
    assert_eq!(order.iter().filter(|p| *p == "zlib").count(), 2);
    // The old tool's --spack-setup: accepted only for the configured script.
    let out = s.run(&[
        "submit",
        "--spack-setup",
        "/home/me/spack/setup-env.sh",
        "zlib",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("site's Spack"));
}

#[test]
fn status_filters_and_json_shape() {
    let mut s = TestSpool::new();
    s.env.push(("SPACK_FAKE_FAIL".into(), "bad".into()));
    s.ok(&["submit", "good", "bad"]);
    s.drain();
    let v = json(&s.ok(&["status", "--json"]));
    for key in ["spool", "worker", "paused", "counts", "jobs"] {
        assert!(v.get(key).is_some(), "status --json lacks {key}: {v}");
    }
    assert_eq!(v["worker"]["state"], "not-running");
    // The last few finished jobs are listed from worker.toml, without --all.
    assert_eq!(v["jobs"].as_array().unwrap().len(), 2, "{v}");
    let failed = json(&s.ok(&["status", "--state", "failed", "--json"]));
    let names: Vec<&str> = failed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["000002-bad"]);
    let me = nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .unwrap()
        .name;
    let mine = json(&s.ok(&["status", "--all", "--user", &me, "--json"]));
    assert_eq!(mine["jobs"].as_array().unwrap().len(), 2);
    let none = json(&s.ok(&["status", "--all", "--user", "nobody-at-all", "--json"]));
    assert!(none["jobs"].as_array().unwrap().is_empty());
    assert_eq!(
        s.run(&["status", "--state", "bogus"]).status.code(),
        Some(2)
    );
}

#[test]
fn validate_points_at_the_line() {
    let s = TestSpool::new();
    let good = s.dir.path().join("good.toml");
    let bad = s.dir.path().join("bad.toml");
    fs::write(&good, "spec = \"zlib@1.3\"\n").unwrap();
    fs::write(&bad, "spec = \"zlib\"\n\npriority = \"urgent\"\n").unwrap();
    let out = s.run(&["validate", good.to_str().unwrap(), bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("good.toml: ok"), "{text}");
    assert!(text.contains("bad.toml: line 3, column 12"), "{text}");
}

#[test]
fn auth_status_and_config_check() {
    let s = TestSpool::new();
    let v = json(&s.ok(&["auth-status", "--json"]));
    assert_eq!(v["can_submit"], true);
    assert_eq!(v["in_group"], true);
    let out = s.ok(&["config-check"]);
    assert!(out.contains("runs: version 0.23.1"), "{out}");
    assert!(out.contains("no problems found"), "{out}");
    // Precedence: environment over file over default, each named.
    let mut c = s.command(&["config-check", "--json"]);
    c.env("WORKER_HEARTBEAT_INTERVAL", "5")
        .env("SPACK_INSTALLER_DB_URL", "sqlite:///x.db");
    let v = json(&String::from_utf8(c.output().unwrap().stdout).unwrap());
    assert_eq!(v["settings"]["heartbeat_interval"]["source"]["kind"], "env");
    assert_eq!(v["settings"]["spack"]["source"]["kind"], "file");
    assert_eq!(v["settings"]["max_parallel"]["source"]["kind"], "default");
    assert!(
        v["notes"].to_string().contains("SPACK_INSTALLER_DB_URL"),
        "{v}"
    );
    // A broken spool and a missing spack are problems: exit 1 with the fix.
    fs::set_permissions(
        s.path("incoming"),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    fs::write(&s.config, "spack = \"/nonexistent/spack\"\n").unwrap();
    let out = s.run(&["config-check"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("PROBLEM: spool") && text.contains("expected 3770") && text.contains("init"),
        "{text}"
    );
    assert!(
        text.contains("PROBLEM: spack: /nonexistent/spack"),
        "{text}"
    );
    // init repairs the drift.
    s.ok(&["init"]);
    fs::write(
        &s.config,
        format!("spack = \"{}\"\n", support::fake_spack().display()),
    )
    .unwrap();
    s.ok(&["config-check"]);
}

#[test]
fn worker_start_info_stop() {
    let s = TestSpool::new();
    let out = s.ok(&["worker", "start"]);
    assert!(out.contains("worker started (pid"), "{out}");
    let info = json(&s.ok(&["worker", "info", "--json"]));
    assert_eq!(info["state"], "running");
    let pid = info["pid"].as_u64().unwrap();
    assert_eq!(
        s.run(&["worker", "start"]).status.code(),
        Some(5),
        "a second start is refused"
    );
    s.ok(&["submit", "--wait", "zlib"]);
    let info = json(&s.ok(&["worker", "info", "--json"]));
    assert_eq!(info["counts"]["done"], 1);
    let out = s.ok(&["worker", "stop"]);
    assert!(
        out.contains(&format!("worker (pid {pid}) stopped")),
        "{out}"
    );
    let info = json(&s.ok(&["worker", "info", "--json"]));
    assert_eq!(info["state"], "not-running");
    assert!(s.read("worker.log").contains("worker started"));
}

#[test]
fn status_all_reads_a_long_history_in_order() {
    // Enough finished jobs for status to read them on every core; on tmpfs, so the drain
    // is about the queue, not fsync.
    let s = TestSpool::in_dir(tempfile::tempdir_in("/dev/shm").unwrap(), "");
    let specs: Vec<String> = (1..=300).map(|i| format!("pkg{i}")).collect();
    let mut args = vec!["submit", "--no-wait"];
    args.extend(specs.iter().map(String::as_str));
    s.ok(&args);
    s.ok(&["worker", "run", "--until-idle", "--dry-run"]);
    // One log gone (cleaned by hand): read this many, status lists logs/ once instead of
    // looking for each, and must still tell the two apart.
    fs::remove_file(s.path("logs/000150-pkg150.log")).unwrap();
    let v = json(&s.ok(&["status", "--all", "--json"]));
    let names: Vec<String> = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap().to_string())
        .collect();
    let want: Vec<String> = (1..=300).map(|i| format!("{i:06}-pkg{i}")).collect();
    assert_eq!(names, want);
    assert!(
        v["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["state"] == "done"
                && j["log"].is_string() == (j["name"] != "000150-pkg150"))
    );
}

#[test]
fn overdue_after_sets_the_starvation_bound_optimize_and_the_worker_follow() {
    let s = TestSpool::with_config("overdue_after = \"2s\"\n");
    let _w = s.spawn_worker(&[]);
    s.ok(&["pause"]);
    s.ok(&["submit", "-p", "low", "old"]);
    // Past the bound before the high job comes: the low one goes first.
    std::thread::sleep(Duration::from_millis(2100));
    s.ok(&["submit", "-p", "high", "new"]);
    let plan = json(&s.ok(&["optimize", "--json"]));
    assert_eq!(plan[0]["name"], "000001-old", "{plan}");
    let why = plan[0]["reason"].as_str().unwrap();
    assert!(why.contains("overdue") && why.contains("over 2s"), "{why}");
    s.ok(&["resume"]);
    wait_until("both done", Duration::from_secs(10), || {
        s.ls("done").len() == 2
    });
    assert_eq!(s.install_order(), vec!["old", "new"]);
}
