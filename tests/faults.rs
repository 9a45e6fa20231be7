//! Every syscall can fail (issue 14): one failing syscall at a bad moment, injected with
//! `strace -e inject=…` into the real binary, never puts a job in two directories, strands
//! it, wedges the worker or makes a command lie. Without strace these tests say SKIPPED.
//! The five cases of issue 14 come first, then the sweep: a small scenario run once per
//! injected fault, bounded in `cargo test`; `FAULT_SWEEP=full` tries every call at every
//! count with EIO and ENOSPC, `FAULT_CALLS=a,b` narrows it, `FAULT_PER=N` samples N
//! counts per call, `FAULT_ONLY=worker:write:EIO:1` runs one scenario.

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{BIN, TestSpool, WorkerProc, wait_until};

/// Whether strace can inject faults here; says SKIPPED (past the capture) when not.
fn strace_or_skip(test: &str) -> bool {
    let ok = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "inject=getpid:error=EIO:when=1",
            "true",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: strace is missing or cannot trace here (install strace)"
        );
    }
    ok
}

/// The spool's environment on a command that runs the binary under strace with `strace`
/// options (the injection).
fn traced(s: &TestSpool, strace: &[String], args: &[&str]) -> Command {
    let mut c = Command::new("strace");
    c.args(["-f", "-qq", "-o", "/dev/null"])
        .args(strace)
        .arg(BIN)
        .args(args)
        .env("SPACK_INSTALLER_SPOOL", &s.root)
        .env("SPACK_INSTALLER_CONFIG", &s.config)
        .env("NO_COLOR", "1")
        .env("WORKER_CHECK_INTERVAL", "0.5")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    for (k, v) in &s.env {
        c.env(k, v);
    }
    c
}

/// A worker under strace. Killing strace alone would leave the worker running, detached,
/// so when this is dropped (a test that fails included) the worker is killed first.
struct Traced(WorkerProc);

impl Drop for Traced {
    fn drop(&mut self) {
        let strace = self.0.pid().to_string();
        for e in fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else {
                continue;
            };
            let ppid = fs::read_to_string(e.path().join("stat"))
                .ok()
                .and_then(|st| {
                    st.rsplit(')')
                        .next()?
                        .split_whitespace()
                        .nth(1)
                        .map(String::from)
                });
            if ppid.as_deref() == Some(strace.as_str()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

impl std::ops::Deref for Traced {
    type Target = WorkerProc;
    fn deref(&self) -> &WorkerProc {
        &self.0
    }
}

impl std::ops::DerefMut for Traced {
    fn deref_mut(&mut self) -> &mut WorkerProc {
        &mut self.0
    }
}

/// A traced worker in the background, its output in a temp file; killed when dropped.
fn traced_worker(s: &TestSpool, strace: &[String], args: &[&str], env: &[(&str, &str)]) -> Traced {
    let log = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    let f = fs::OpenOptions::new().append(true).open(&log).unwrap();
    let mut all = vec!["worker", "run"];
    all.extend_from_slice(args);
    let mut c = traced(s, strace, &all);
    c.envs(env.iter().copied());
    let child = c.stdout(f.try_clone().unwrap()).stderr(f).spawn().unwrap();
    Traced(WorkerProc {
        child,
        log: log.to_path_buf(),
        _log: Some(log),
    })
}

fn inject(path: &Path, syscall: &str, error: &str, when: u32) -> Vec<String> {
    let mut v = Vec::new();
    if !path.as_os_str().is_empty() {
        v.extend(["-P".to_string(), path.display().to_string()]);
    }
    v.extend([
        "-e".to_string(),
        format!("trace={syscall}"),
        "-e".to_string(),
        format!("inject={syscall}:error={error}:when={when}"),
    ]);
    v
}

/// The state directories that hold `name`.
fn homes(s: &TestSpool, name: &str) -> Vec<String> {
    ["pending", "running", "done", "failed", "cancelled"]
        .into_iter()
        .filter(|d| s.path(&format!("{d}/{name}.toml")).exists())
        .map(String::from)
        .collect()
}

/// `worker stop --now`, then wait for the worker to be gone.
fn stop_now(s: &TestSpool, w: &mut WorkerProc) {
    let out = s.run(&["worker", "stop", "--now"]);
    let st = w.wait(Duration::from_secs(20));
    assert!(
        st.success() || st.code().is_some(),
        "worker did not stop by itself: {st}; stop said {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_failed_fsync_after_a_cancel_leaves_the_job_in_one_place_and_the_worker_stoppable() {
    if !strace_or_skip("a_failed_fsync_after_a_cancel…") {
        return;
    }
    let mut s = TestSpool::new();
    s.env.push(("SPACK_FAKE_DELAYS".into(), "slow=3".into()));
    let mut w = traced_worker(
        &s,
        &inject(&s.path("cancelled"), "fsync", "EIO", 1),
        &[],
        &[],
    );
    wait_until("worker up", Duration::from_secs(20), || {
        fs::read_to_string(s.path("worker.toml")).is_ok_and(|t| t.contains("\"running\""))
    });
    s.ok(&["submit", "slow"]);
    s.ok(&["submit", "zlib"]);
    wait_until("slow running", Duration::from_secs(20), || {
        homes(&s, "000001-slow") == ["running"]
    });
    let out = s.run(&["cancel", "1"]);
    // Whatever cancel says, the job ends in cancelled/ only, and the slot frees up.
    wait_until(
        "zlib done after the cancel",
        Duration::from_secs(20),
        || homes(&s, "000002-zlib") == ["done"],
    );
    assert_eq!(homes(&s, "000001-slow"), ["cancelled"], "{}", w.output());
    assert!(out.status.success(), "{}", text(&out));
    // The worker saw the failed fsync and said so.
    assert!(w.output().contains("Input/output error"), "{}", w.output());
    stop_now(&s, &mut w);
    assert_eq!(homes(&s, "000001-slow"), ["cancelled"]);
}

#[test]
fn a_failed_fsync_after_a_dependency_failure_leaves_the_job_in_one_place() {
    if !strace_or_skip("a_failed_fsync_after_a_dependency_failure…") {
        return;
    }
    let mut s = TestSpool::new();
    s.env.push(("SPACK_FAKE_FAIL".into(), "bad".into()));
    s.ok(&["submit", "bad"]);
    s.ok(&["submit", "-d", "bad", "hdf5"]);
    let mut w = traced_worker(&s, &inject(&s.path("failed"), "fsync", "EIO", 1), &[], &[]);
    wait_until("both failed", Duration::from_secs(30), || {
        homes(&s, "000001-bad") == ["failed"] && homes(&s, "000002-hdf5") == ["failed"]
    });
    // Settled: a rescan or two later it is still in one place, not recreated in pending/.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(homes(&s, "000002-hdf5"), ["failed"], "{}", w.output());
    assert!(
        !w.output().contains("already there"),
        "the worker fought its own copy: {}",
        w.output()
    );
    stop_now(&s, &mut w);
}

#[test]
fn submit_never_says_nothing_was_queued_when_the_file_is_in_incoming() {
    if !strace_or_skip("submit_never_says_nothing_was_queued…") {
        return;
    }
    let s = TestSpool::new();
    for error in ["EIO", "ENOSPC"] {
        for when in 1..=3 {
            let before = s.ls("incoming").len();
            let out = traced(
                &s,
                &inject(Path::new(""), "fsync", error, when),
                &["submit", "--no-wait", "zlib"],
            )
            .output()
            .unwrap();
            let after = s.ls("incoming").len();
            let said = text(&out);
            assert!(!said.contains("panicked"), "{said}");
            if out.status.success() {
                assert_eq!(after, before + 1, "exit 0 but nothing queued: {said}");
            } else {
                assert_eq!(
                    after,
                    before,
                    "{error} at fsync {when}: exit {:?} ({said}) but a file is in incoming/: {:?}",
                    out.status.code(),
                    s.ls("incoming")
                );
                assert!(said.contains("nothing was queued"), "{said}");
            }
        }
    }
}

/// A pending record of job `id`, as intake writes it.
fn pending_record(s: &TestSpool, id: u64, pkg: &str) {
    let text = support::record(id, pkg, spack_installer::job::State::Pending, 0);
    fs::write(s.path(&format!("pending/{id:06}-{pkg}.toml")), text).unwrap();
    fs::write(s.path("counter"), format!("{}\n", id + 1)).unwrap();
}

#[test]
fn a_failed_start_rename_does_not_strand_the_job_and_is_retried_within_seconds() {
    if !strace_or_skip("a_failed_start_rename…") {
        return;
    }
    let s = TestSpool::new();
    pending_record(&s, 1, "zlib");
    pending_record(&s, 2, "cmake");
    // --until-idle: it may exit only once both ran.
    let out = traced(
        &s,
        &inject(&s.path("pending/000001-zlib.toml"), "renameat2", "EIO", 1),
        &["worker", "run", "--until-idle"],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(homes(&s, "000001-zlib"), ["done"], "{}", text(&out));
    assert_eq!(homes(&s, "000002-cmake"), ["done"]);

    // The long-running worker says "retrying in 1s" and does, not at the next rescan.
    pending_record(&s, 3, "bzip2");
    let mut w = traced_worker(
        &s,
        &inject(&s.path("pending/000003-bzip2.toml"), "renameat2", "EIO", 1),
        &[],
        &[("WORKER_CHECK_INTERVAL", "60")],
    );
    let t0 = Instant::now();
    wait_until("bzip2 done", Duration::from_secs(30), || {
        homes(&s, "000003-bzip2") == ["done"]
    });
    assert!(w.output().contains("retrying in 1s"), "{}", w.output());
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "took {:?}: it waited for the rescan, not 1 s",
        t0.elapsed()
    );
    stop_now(&s, &mut w);
}

#[test]
fn until_idle_does_not_exit_while_claims_wait_in_tmp() {
    if !strace_or_skip("until_idle_does_not_exit_while_claims_wait_in_tmp") {
        return;
    }
    for error in ["EIO", "ENOSPC"] {
        let s = TestSpool::new();
        s.ok(&["submit", "zlib"]);
        s.ok(&["submit", "cmake"]);
        let out = traced(
            &s,
            &inject(&s.path("tmp"), "fsync", error, 1),
            &["worker", "run", "--until-idle"],
        )
        .output()
        .unwrap();
        let claims: Vec<String> = s
            .ls("tmp")
            .into_iter()
            .filter(|n| n.starts_with("claim."))
            .collect();
        if out.status.success() {
            assert!(
                claims.is_empty(),
                "{error}: exit 0 with {claims:?} in tmp/: {}",
                text(&out)
            );
            assert_eq!(homes(&s, "000001-zlib"), ["done"], "{}", text(&out));
            assert_eq!(homes(&s, "000002-cmake"), ["done"]);
        }
        assert!(s.ls("incoming").is_empty());
    }
}

#[test]
fn killed_submitters_dotfiles_older_than_a_day_are_removed() {
    let s = TestSpool::new();
    let old = s.path("incoming/.tmpKILLED");
    let young = s.path("incoming/.tmpWRITING");
    fs::write(&old, "spec = \"zl").unwrap();
    fs::write(&young, "spec = \"zl").unwrap();
    let two_days_ago = filetime(Duration::from_secs(2 * 86_400));
    set_mtime(&old, two_days_ago);
    s.drain();
    assert!(!old.exists(), "a day-old dotfile stays in incoming/");
    assert!(young.exists(), "a file being written was removed");
    // cleanup does it too (a spool whose worker is stopped).
    fs::write(&old, "spec = \"zl").unwrap();
    set_mtime(&old, two_days_ago);
    let out = s.ok(&["cleanup"]);
    assert!(!old.exists(), "cleanup left it: {out}");
    assert!(out.contains("1 stale temp file"), "{out}");
    assert!(young.exists());
}

fn filetime(ago: Duration) -> std::time::SystemTime {
    std::time::SystemTime::now() - ago
}

fn set_mtime(path: &Path, t: std::time::SystemTime) {
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))
        .unwrap();
}

#[test]
fn submit_to_a_full_stdout_says_so_without_a_panic() {
    let s = TestSpool::new();
    let out = s
        .command(&["submit", "--no-wait", "zlib"])
        .stdout(fs::File::options().write(true).open("/dev/full").unwrap())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("standard output"), "{err}");
    // The job was queued all the same, and the message says so.
    assert_eq!(s.ls("incoming").len(), 1);
    assert!(err.contains("queued"), "{err}");
}

#[test]
fn deleting_a_running_jobs_file_by_hand_is_warned_about() {
    let mut s = TestSpool::new();
    s.env.push(("SPACK_FAKE_DELAYS".into(), "slow=3".into()));
    let w = s.spawn_worker(&[]);
    s.ok(&["submit", "slow"]);
    wait_until("slow running", Duration::from_secs(10), || {
        homes(&s, "000001-slow") == ["running"]
    });
    // Once start has written it (its move comes first, then the rewrite).
    wait_until("slow started", Duration::from_secs(10), || {
        fs::read_to_string(s.path("running/000001-slow.toml"))
            .is_ok_and(|t| t.contains("state = \"running\""))
    });
    fs::remove_file(s.path("running/000001-slow.toml")).unwrap();
    wait_until("slow done", Duration::from_secs(15), || {
        homes(&s, "000001-slow") == ["done"]
    });
    assert!(w.output().contains("removed by hand"), "{}", w.output());
}

// ---- the sweep ---------------------------------------------------------------------

/// The syscalls the sweep fails, and the errors it fails them with.
const SYSCALLS: [&str; 9] = [
    "fsync",
    "rename",
    "renameat2",
    "openat",
    "write",
    "unlink",
    "unlinkat",
    "link",
    "mkdir",
];
const ERRORS: [&str; 2] = ["EIO", "ENOSPC"];

/// How many times each swept syscall is made by `cmd` (run under strace, no fault).
fn count_calls(mut cmd: Command, trace_file: &Path) -> std::collections::BTreeMap<String, u32> {
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let _ = cmd.status().unwrap();
    let mut counts = std::collections::BTreeMap::new();
    for line in fs::read_to_string(trace_file).unwrap_or_default().lines() {
        let line = line.trim_start_matches(|c: char| c.is_ascii_digit() || c == ' ');
        if let Some((name, _)) = line.split_once('(')
            && SYSCALLS.contains(&name)
        {
            *counts.entry(name.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// The `when=N` values to try for a syscall made `count` times: all of them for the full
/// sweep, else a spread of at most `k` (first, last and evenly between).
fn sample(count: u32, k: u32, full: bool) -> Vec<u32> {
    if count == 0 {
        return Vec::new();
    }
    if full || count <= k {
        return (1..=count).collect();
    }
    let mut v: Vec<u32> = (0..k).map(|i| 1 + i * (count - 1) / (k - 1)).collect();
    v.dedup();
    v
}

/// The jobs of the scenario: a worker died while `crashed` ran (recovery requeues it);
/// `quick` installs, `slow` is cancelled while it runs, `bad` fails and `dep`, which
/// needs it, fails with it.
const SUBMITS: [&[&str]; 4] = [&["quick"], &["slow"], &["bad"], &["-d", "bad", "dep"]];

fn scenario_spool() -> TestSpool {
    let mut s = TestSpool::in_dir(tempfile::tempdir_in("/dev/shm").unwrap(), "");
    s.env.push(("SPACK_FAKE_DELAYS".into(), "slow=1".into()));
    s.env.push(("SPACK_FAKE_FAIL".into(), "bad".into()));
    pending_record(&s, 1, "crashed");
    let rec = s.read("pending/000001-crashed.toml");
    fs::remove_file(s.path("pending/000001-crashed.toml")).unwrap();
    let rec = rec.replacen("state = \"pending\"", "state = \"running\"", 1);
    let rec = rec.replacen("attempts = 0", "attempts = 1", 1);
    fs::write(s.path("running/000001-crashed.toml"), rec).unwrap();
    s
}

/// One run of the scenario with `fault` injected into the worker (or into each submit,
/// with `in_submit`), then a clean restart; returns the invariants broken (empty: all
/// held) and how many were checked.
fn run_scenario(
    fault: Option<(&str, &str, u32)>,
    in_submit: bool,
    trace: Option<&Path>,
) -> (Vec<String>, u32) {
    let s = scenario_spool();
    let mut broken = Vec::new();
    let mut checked = 0;
    let strace_args = |fault: Option<(&str, &str, u32)>| -> Vec<String> {
        let mut v: Vec<String> = vec!["-o".into(), "/dev/null".into()];
        if let Some(t) = trace {
            v = vec![
                "-o".into(),
                t.display().to_string(),
                "-e".into(),
                format!("trace={}", SYSCALLS.join(",")),
            ];
        }
        if let Some((call, err, when)) = fault {
            v.extend([
                "-e".into(),
                format!("inject={call}:error={err}:when={when}"),
            ]);
        }
        v
    };
    // Submit everything first: the worker then takes a batch at its start.
    let mut submitted = Vec::new();
    for args in SUBMITS {
        let mut all = vec!["submit", "--no-wait"];
        all.extend_from_slice(args);
        let out = if in_submit {
            // Without -f: only the submitting process itself.
            let mut c = traced(&s, &[], &all);
            let mut a: Vec<String> = vec!["-qq".into()];
            a.extend(strace_args(fault));
            c = {
                let mut c2 = Command::new("strace");
                c2.args(&a).arg(BIN).args(&all);
                for (k, v) in c.get_envs() {
                    if let Some(v) = v {
                        c2.env(k, v);
                    }
                }
                c2.stdin(Stdio::null());
                c2
            };
            c.output().unwrap()
        } else {
            s.run(&all)
        };
        submitted.push((args[args.len() - 1].to_string(), out));
    }
    // The worker, faulted (its own thread only: not the Spack it runs).
    let mut wargs: Vec<String> = vec!["-qq".into()];
    if !in_submit {
        wargs.extend(strace_args(fault));
    }
    let mut c = Command::new("strace");
    c.args(&wargs).arg(BIN).args(["worker", "run"]);
    for (k, v) in s.command(&[]).get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    let log = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    let f = fs::OpenOptions::new().append(true).open(&log).unwrap();
    let child = c
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .unwrap();
    let mut w = Traced(WorkerProc {
        child,
        log: log.to_path_buf(),
        _log: Some(log),
    });
    let slow = |s: &TestSpool| {
        ["pending", "running", "done", "failed", "cancelled"]
            .into_iter()
            .find_map(|d| {
                fs::read_dir(s.path(d)).ok()?.flatten().find_map(|e| {
                    let n = e.file_name().into_string().ok()?;
                    n.ends_with("-slow.toml").then(|| (d.to_string(), n))
                })
            })
    };
    let end = Instant::now() + Duration::from_secs(8);
    let mut cancel = None;
    while Instant::now() < end {
        if let Some((d, n)) = slow(&s)
            && d == "running"
            && cancel.is_none()
        {
            cancel = Some(s.run(&["cancel", n.trim_end_matches(".toml")]));
        }
        // Every job that exists has ended: the crashed one and each submitted one.
        let jobs = 1 + submitted.iter().filter(|(_, o)| o.status.success()).count();
        let ended: usize = ["done", "failed", "cancelled"]
            .iter()
            .map(|d| s.ls(d).len())
            .sum();
        if ended >= jobs && s.ls("running").is_empty() {
            break;
        }
        if w.child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Stoppable by `worker stop --now`, whatever happened.
    checked += 1;
    if w.child.try_wait().unwrap().is_none() {
        let _ = s.run(&["worker", "stop", "--now", "--timeout", "10"]);
        let stop_end = Instant::now() + Duration::from_secs(10);
        while w.child.try_wait().unwrap().is_none() && Instant::now() < stop_end {
            std::thread::sleep(Duration::from_millis(20));
        }
        if w.child.try_wait().unwrap().is_none() {
            broken.push(format!(
                "worker stop --now did not stop the worker:\n{}",
                w.output()
            ));
        }
    }
    let faulted_log = w.output();
    drop(w);
    // One clean restart: recovery, then everything runs to its end.
    let out = s.run(&["worker", "run", "--until-idle"]);
    checked += 1;
    if !out.status.success() {
        broken.push(format!("the clean restart failed: {}", text(&out)));
    }
    // Each job in exactly one state directory; none left in pending/, running/, tmp/ or
    // incoming/.
    let mut homes_of: std::collections::BTreeMap<u64, Vec<String>> = Default::default();
    for d in ["pending", "running", "done", "failed", "cancelled"] {
        for n in s.ls(d) {
            if let Some(id) = n.split('-').next().and_then(|i| i.parse().ok()) {
                homes_of.entry(id).or_default().push(format!("{d}/{n}"));
            }
        }
    }
    checked += 1;
    for (id, h) in &homes_of {
        if h.len() != 1 {
            broken.push(format!("job {id} is in {h:?}"));
        }
    }
    for d in ["pending", "running", "incoming"] {
        checked += 1;
        let left: Vec<String> = s
            .ls(d)
            .into_iter()
            .filter(|n| !n.starts_with('.'))
            .collect();
        if !left.is_empty() {
            broken.push(format!("stranded in {d}/: {left:?}"));
        }
    }
    checked += 1;
    let claims: Vec<String> = s
        .ls("tmp")
        .into_iter()
        .filter(|n| n.starts_with("claim.") || n.starts_with("request."))
        .collect();
    if !claims.is_empty() {
        broken.push(format!("stranded in tmp/: {claims:?}"));
    }
    // Nothing installed twice (no worker was killed, so nothing needed it), and `dep`
    // never (its dependency failed).
    let mut order = s.install_order();
    order.sort();
    checked += 1;
    let mut dup = order.clone();
    dup.dedup();
    if dup.len() != order.len() || order.contains(&"dep".to_string()) {
        broken.push(format!("installs: {order:?}"));
    }
    // Every command told the truth: a submit that succeeded queued its job; one that said
    // "nothing was queued" did not.
    for (pkg, out) in &submitted {
        checked += 1;
        let queued = homes_of
            .values()
            .flatten()
            .any(|h| h.ends_with(&format!("-{pkg}.toml")));
        let said = text(out);
        if out.status.success() && !queued {
            broken.push(format!("submit {pkg} exited 0 but no job exists: {said}"));
        }
        // Exit 1 with the job queued is true only if the message says it was queued.
        if !out.status.success()
            && queued
            && (said.contains("nothing was queued") || !said.contains("were queued"))
        {
            broken.push(format!(
                "submit {pkg} exited {:?} but its job exists: {said}",
                out.status.code()
            ));
        }
        if said.contains("panicked") {
            broken.push(format!("submit {pkg} panicked: {said}"));
        }
    }
    // A cancel that said it cancelled did.
    if let Some(out) = cancel {
        checked += 1;
        let in_cancelled = s.ls("cancelled").iter().any(|n| n.ends_with("-slow.toml"));
        if out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("cancelled")
            && !in_cancelled
        {
            broken.push(format!(
                "cancel said {} but slow is not in cancelled/",
                text(&out)
            ));
        }
    }
    if !broken.is_empty() {
        broken.push(format!(
            "the faulted worker said:\n{faulted_log}\nthe clean restart said:\n{}",
            text(&out)
        ));
    }
    (broken, checked)
}

#[test]
fn the_fault_sweep_finds_every_job_in_one_place_and_every_command_truthful() {
    if !strace_or_skip("the_fault_sweep…") {
        return;
    }
    let full = std::env::var("FAULT_SWEEP").is_ok_and(|v| v == "full");
    let dir = tempfile::tempdir().unwrap();
    // Count the calls of a clean run: the worker's, and one submit's.
    let trace = dir.path().join("trace");
    let (clean, _) = run_scenario(None, false, Some(&trace));
    assert!(clean.is_empty(), "the clean scenario broke: {clean:?}");
    let worker_counts = count_calls(Command::new("true"), &trace);
    let s = TestSpool::new();
    let strace_submit = {
        let mut c = Command::new("strace");
        c.args(["-qq", "-o"])
            .arg(&trace)
            .args(["-e", &format!("trace={}", SYSCALLS.join(","))])
            .arg(BIN)
            .args(["submit", "--no-wait", "zlib"]);
        for (k, v) in s.command(&[]).get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        c
    };
    let submit_counts = count_calls(strace_submit, &trace);
    println!("clean run: worker {worker_counts:?}; one submit {submit_counts:?}");
    // FAULT_PER=N samples N values of when= per syscall instead of 3.
    let per = if full {
        u32::MAX
    } else {
        std::env::var("FAULT_PER")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3)
    };
    // FAULT_ONLY=worker:write:EIO:1 runs that one scenario (to look at a failure).
    if let Ok(only) = std::env::var("FAULT_ONLY") {
        let f: Vec<&str> = only.split(':').collect();
        let (broken, _) = run_scenario(
            Some((f[1], f[2], f[3].parse().unwrap())),
            f[0] == "submit",
            None,
        );
        assert!(broken.is_empty(), "{}", broken.join("\n"));
        return;
    }
    let mut scenarios = 0;
    let mut checks = 0;
    let mut failures = Vec::new();
    for (in_submit, counts) in [(true, &submit_counts), (false, &worker_counts)] {
        for call in SYSCALLS {
            // FAULT_CALLS=fsync,write sweeps only those.
            if std::env::var("FAULT_CALLS").is_ok_and(|c| !c.split(',').any(|c| c == call)) {
                continue;
            }
            let n = counts.get(call).copied().unwrap_or(0);
            for (i, when) in sample(n, per, full).into_iter().enumerate() {
                // Bounded: the two errors alternate over the sampled N; the full sweep
                // tries both at every N.
                let errors: Vec<&str> = if full {
                    ERRORS.to_vec()
                } else {
                    vec![ERRORS[i % 2]]
                };
                for err in errors {
                    let (broken, c) = run_scenario(Some((call, err, when)), in_submit, None);
                    scenarios += 1;
                    checks += c;
                    for b in broken {
                        failures.push(format!(
                            "{} {call}:{err}:when={when}: {b}",
                            if in_submit { "submit" } else { "worker" }
                        ));
                    }
                }
            }
        }
    }
    println!(
        "fault sweep{}: {scenarios} scenarios, {scenarios} faults injected, {} of {checks} invariant checks held",
        if full {
            " (full)"
        } else {
            " (bounded; FAULT_SWEEP=full for every N and error)"
        },
        checks - failures.len() as u32
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
