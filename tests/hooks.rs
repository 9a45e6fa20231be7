//! `on_finish`: a program the worker runs after each job ends, with the job in its
//! environment. Real shell-script hooks, the real binary, a real spool; one hook that
//! records what it got, one that fails, one that hangs.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{TestSpool, processes_with, wait_until};

/// An executable shell script in `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// `KEY=value` lines of an `env` dump.
fn vars(text: &str) -> std::collections::HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_hook_gets_each_ended_job_in_its_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("seen");
    fs::create_dir(&out).unwrap();
    let hook = script(
        tmp.path(),
        "record.sh",
        &format!(
            "env > {}/\"$SPACK_INSTALLER_NAME.env\"\nprintf '%s\\n' \"$@\" > {}/\"$SPACK_INSTALLER_NAME.args\"",
            out.display(),
            out.display()
        ),
    );
    let mut s = TestSpool::with_config(&format!(
        "on_finish = [\"{}\", \"--from\", \"spack installer\"]\nhook_timeout = \"10s\"\n",
        hook.display()
    ));
    s.env.push(("SPACK_FAKE_FAIL".into(), "cmake".into()));
    s.env.push(("HOSTNAME_NOT_ALLOWED".into(), "1".into()));
    let spec = "zlib@1.3 +opt";
    s.ok(&["submit", spec]);
    s.ok(&["submit", "cmake"]);
    s.ok(&["submit", "hdf5", "--after", "2"]);
    s.drain();
    // Shell syntax from a member stays data: the spec grammar refuses it, and the reason
    // that quotes it reaches the hook as a value the hook only reads.
    let pwned = tmp.path().join("pwned");
    s.drop_file(
        "shell.toml",
        &format!("spec = \"zlib $(touch {}) `id`\"\n", pwned.display()),
    );
    s.drain();
    let zlib = vars(&fs::read_to_string(out.join("000001-zlib.env")).unwrap());
    let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .unwrap()
        .unwrap()
        .name;
    let log1 = s.path("logs/000001-zlib.log").display().to_string();
    for (k, v) in [
        ("SPACK_INSTALLER_JOB_ID", "1"),
        ("SPACK_INSTALLER_NAME", "000001-zlib"),
        ("SPACK_INSTALLER_STATE", "done"),
        ("SPACK_INSTALLER_SPEC", spec),
        ("SPACK_INSTALLER_OWNER", me.as_str()),
        ("SPACK_INSTALLER_EXIT_CODE", "0"),
        ("SPACK_INSTALLER_REASON", "installed"),
        ("SPACK_INSTALLER_LOG", log1.as_str()),
    ] {
        assert_eq!(zlib.get(k).map(String::as_str), Some(v), "{k} in {zlib:?}");
    }
    let started: u64 = zlib["SPACK_INSTALLER_STARTED_AT"].len() as u64;
    assert_eq!(started, "2026-11-23T13:09:00Z".len() as u64, "{zlib:?}");
    assert!(
        zlib["SPACK_INSTALLER_FINISHED_AT"].ends_with('Z'),
        "{zlib:?}"
    );
    let rejected = vars(&fs::read_to_string(out.join("000004-rejected.env")).unwrap());
    assert_eq!(
        rejected["SPACK_INSTALLER_STATE"], "rejected",
        "{rejected:?}"
    );
    assert!(
        rejected["SPACK_INSTALLER_REASON"].contains('$'),
        "{rejected:?}"
    );
    assert!(!pwned.exists(), "the spec's shell syntax was run");
    assert_eq!(
        fs::read_to_string(out.join("000001-zlib.args")).unwrap(),
        "--from\nspack installer\n"
    );
    // Only env_allow's variables pass from the worker, and none of the worker's own
    // SPACK_INSTALLER_* (though env_allow has SPACK_*): the hook's are the job's.
    assert!(!zlib.contains_key("SPACK_INSTALLER_CONFIG"), "{zlib:?}");
    assert!(zlib.contains_key("SPACK_FAKE_RECORD"), "{zlib:?}");
    assert!(!zlib.contains_key("HOSTNAME_NOT_ALLOWED"), "{zlib:?}");
    assert!(zlib.contains_key("PATH"), "{zlib:?}");

    let cmake = vars(&fs::read_to_string(out.join("000002-cmake.env")).unwrap());
    assert_eq!(cmake["SPACK_INSTALLER_STATE"], "failed");
    assert_eq!(cmake["SPACK_INSTALLER_EXIT_CODE"], "1");
    assert!(
        cmake["SPACK_INSTALLER_REASON"].starts_with("spack exited with code 1: ==> Error:"),
        "{cmake:?}"
    );
    // A job failed without running (its dependency failed) is an end too.
    let hdf5 = vars(&fs::read_to_string(out.join("000003-hdf5.env")).unwrap());
    assert_eq!(hdf5["SPACK_INSTALLER_STATE"], "failed");
    assert_eq!(hdf5["SPACK_INSTALLER_EXIT_CODE"], "");
    assert_eq!(hdf5["SPACK_INSTALLER_STARTED_AT"], "");
    assert!(
        hdf5["SPACK_INSTALLER_REASON"].contains("000002"),
        "{hdf5:?}"
    );
}

#[test]
fn a_cancelled_job_and_a_rejected_file_run_the_hook() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("seen");
    fs::create_dir(&out).unwrap();
    let hook = script(
        tmp.path(),
        "record.sh",
        &format!("env > {}/\"$SPACK_INSTALLER_NAME.env\"", out.display()),
    );
    let s = TestSpool::with_config(&format!("on_finish = [\"{}\"]\n", hook.display()));
    let w = s.spawn_worker(&[]);
    s.ok(&["pause"]);
    s.ok(&["submit", "zlib"]);
    wait_until("zlib to be taken", Duration::from_secs(10), || {
        s.where_is("000001-zlib").as_deref() == Some("pending")
    });
    s.ok(&["cancel", "1"]);
    s.drop_file("bad.toml", "spec = \"zlib\"\nnot_a_key = 1\n");
    // `env > FILE` creates the file before it writes: wait for what it writes.
    let written = |f: &str| {
        fs::read_to_string(out.join(f)).is_ok_and(|t| t.contains("SPACK_INSTALLER_STATE="))
    };
    wait_until("both hooks", Duration::from_secs(10), || {
        written("000001-zlib.env") && written("000002-rejected.env")
    });
    let z = vars(&fs::read_to_string(out.join("000001-zlib.env")).unwrap());
    assert_eq!(z["SPACK_INSTALLER_STATE"], "cancelled", "{z:?}");
    let r = vars(&fs::read_to_string(out.join("000002-rejected.env")).unwrap());
    assert_eq!(r["SPACK_INSTALLER_STATE"], "rejected", "{r:?}");
    assert!(r["SPACK_INSTALLER_REASON"].contains("not_a_key"), "{r:?}");
    drop(w);
}

#[test]
fn a_failing_hook_is_logged_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let hook = script(
        tmp.path(),
        "fail.sh",
        "echo \"cannot reach the chat server for $SPACK_INSTALLER_NAME\" >&2\nexit 3",
    );
    let s = TestSpool::with_config(&format!("on_finish = [\"{}\"]\n", hook.display()));
    s.ok(&["submit", "zlib"]);
    s.ok(&["submit", "cmake"]);
    let out = s.drain();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("on_finish hook exited with code 3; the job is unaffected")
            && log.contains("cannot reach the chat server for 000001-zlib"),
        "{log}"
    );
    assert_eq!(s.where_is("000001-zlib").as_deref(), Some("done"));
    assert_eq!(s.where_is("000002-cmake").as_deref(), Some("done"));
    // A hook that cannot even be started is logged the same way.
    let s = TestSpool::with_config("on_finish = [\"/nonexistent/hook\"]\n");
    s.ok(&["submit", "zlib"]);
    let out = s.drain();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("on_finish hook could not be run"), "{log}");
    assert_eq!(s.where_is("000001-zlib").as_deref(), Some("done"));
}

#[test]
fn a_hanging_hook_is_killed_at_its_timeout_and_never_stalls_the_queue() {
    let tmp = tempfile::tempdir().unwrap();
    let pids = tmp.path().join("pids");
    // The hook's child (sleep) must die with it: the whole process group is killed.
    let hook = script(
        tmp.path(),
        "hang.sh",
        &format!("sleep 1000 &\necho $! >> {}\nwait", pids.display()),
    );
    let s = TestSpool::with_config(&format!(
        "on_finish = [\"{}\"]\nhook_timeout = \"3s\"\n",
        hook.display()
    ));
    let w = s.spawn_worker(&[]);
    let t0 = Instant::now();
    s.ok(&["submit", "zlib"]);
    wait_until("zlib to end", Duration::from_secs(10), || {
        s.where_is("000001-zlib").as_deref() == Some("done")
    });
    wait_until("the hook to start", Duration::from_secs(5), || {
        pids.exists()
    });
    let marker = format!(
        "SPACK_INSTALLER_LOG={}",
        s.path("logs/000001-zlib.log").display()
    );
    assert_eq!(
        processes_with(&marker).len(),
        2,
        "the hook and its sleep run"
    );
    // The queue goes on while the hook hangs.
    s.ok(&["submit", "cmake"]);
    wait_until("cmake to end", Duration::from_secs(10), || {
        s.where_is("000002-cmake").as_deref() == Some("done")
    });
    assert!(
        !processes_with(&marker).is_empty(),
        "cmake ended only after the hook was killed ({:?})",
        t0.elapsed()
    );
    wait_until("the hook to be killed", Duration::from_secs(10), || {
        w.output().contains("was killed after the 3s timeout")
    });
    wait_until(
        "the hook's child to be gone",
        Duration::from_secs(5),
        || processes_with(&marker).is_empty(),
    );
    assert!(t0.elapsed() >= Duration::from_secs(3));
    // The second job's hook ran after the first was killed, and is killed in turn.
    wait_until("the second hook", Duration::from_secs(10), || {
        fs::read_to_string(&pids).unwrap().lines().count() == 2
    });
    drop(w);
    // The worker's death ends nothing else: the second hook's group is ours to check.
    let marker2 = format!(
        "SPACK_INSTALLER_LOG={}",
        s.path("logs/000002-cmake.log").display()
    );
    for pid in processes_with(&marker2) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[test]
fn a_stopping_worker_holds_its_lock_until_the_last_hook_has_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (started, open) = (tmp.path().join("started"), tmp.path().join("open"));
    let hook = script(
        tmp.path(),
        "gate.sh",
        &format!(
            // Gives up once the test's directory is gone (a failed test never opens it).
            ": > {s}\nwhile [ ! -e {o} ] && [ -e {s} ]; do sleep 0.05; done",
            s = started.display(),
            o = open.display()
        ),
    );
    let s = TestSpool::with_config(&format!(
        "on_finish = [\"{}\"]\nhook_timeout = \"60s\"\n",
        hook.display()
    ));
    let mut w = s.spawn_worker(&[]);
    s.ok(&["submit", "zlib"]);
    wait_until("the hook running", Duration::from_secs(20), || {
        started.exists()
    });
    w.signal(nix::sys::signal::Signal::SIGTERM);
    wait_until("the worker's loop ended", Duration::from_secs(10), || {
        let log = w.output();
        log.contains("worker stopped") || log.contains("stopping once the hooks")
    });
    // The hook still runs: the stopping worker still holds the spool, so a second
    // worker cannot start beside it.
    let second = s.run(&["worker", "run", "--until-idle"]);
    assert_eq!(
        second.status.code(),
        Some(5),
        "a second worker started while the first still ran a hook: {}",
        String::from_utf8_lossy(&second.stderr)
    );
    fs::write(&open, "").unwrap();
    assert!(w.wait(Duration::from_secs(10)).success(), "{}", w.output());
}
