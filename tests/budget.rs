//! The build budget end to end: the real worker, real GNU make joining the worker's
//! jobserver from the fake Spack (`SPACK_FAKE_MAKE`: a Makefile of sleeping compile steps
//! that log their start and end), real SIGKILLs, a real tmpfs for the disk guard.

mod support;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{SmallFs, TestSpool, root_or_skip, wait_until};

/// A spool whose installs run `steps` compile steps of `secs` each through make.
fn make_spool(config: &str, steps: u32, secs: &str) -> (TestSpool, PathBuf) {
    let mut s = TestSpool::with_config(config);
    let log = s.dir.path().join("make.log");
    s.env.extend([
        ("SPACK_FAKE_MAKE".into(), steps.to_string()),
        ("SPACK_FAKE_MAKE_TIME".into(), secs.into()),
        ("SPACK_FAKE_MAKE_LOG".into(), log.display().to_string()),
    ]);
    (s, log)
}

/// The compile steps of the log: (time, +1 at a start / -1 at an end, package).
fn steps(log: &Path) -> Vec<(u128, i32, String)> {
    let text = fs::read_to_string(log).unwrap_or_default();
    let mut ev: Vec<(u128, i32, String)> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let d = match *f.first()? {
                "start" => 1,
                "end" => -1,
                _ => return None,
            };
            Some((f.get(2)?.parse().ok()?, d, f.get(1)?.to_string()))
        })
        .collect();
    // At the same instant an end goes first: a token is given back before it is taken.
    ev.sort_by_key(|(t, d, _)| (*t, *d));
    ev
}

/// The most compile steps running at once (of `pkg` only, when given).
fn max_overlap(log: &Path, pkg: Option<&str>) -> i32 {
    let (mut now, mut max) = (0, 0);
    for (_, d, p) in steps(log) {
        if pkg.is_none_or(|k| k == p) {
            now += d;
            max = max.max(now);
        }
    }
    max
}

/// The `build PKG -j JOBS MAKEFLAGS` lines: what each build was given.
fn builds(log: &Path) -> Vec<String> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("build "))
        .map(String::from)
        .collect()
}

#[test]
fn four_installs_on_four_cpus_never_run_more_than_four_compile_steps_at_once() {
    let (s, log) = make_spool("cpus = 4\nmax_parallel = 4\n", 6, "0.3");
    // One submit writes the four files within moments of each other, so the worker's
    // first scan finds them settled together (a scan takes only files 2 s old) and
    // starts them in one round; four submits on a loaded machine could straddle that.
    s.ok(&["submit", "zlib", "bzip2", "xz", "zstd"]);
    s.drain();
    assert_eq!(s.ls("done").len(), 4, "failed: {:?}", s.ls("failed"));
    // Started together, each got a quarter of the CPUs as Spack's -j...
    let installs = s.installs();
    assert_eq!(installs.len(), 4);
    for a in &installs {
        assert_eq!(a[1..3], ["-j", "1"], "{a:?}");
    }
    // ...and every make joined the one jobserver on descriptors 3 and 4.
    let b = builds(&log);
    assert_eq!(b.len(), 4, "{b:?}");
    for l in &b {
        assert!(
            l.ends_with("-j4 --jobserver-fds=3,4 --jobserver-auth=3,4"),
            "MAKEFLAGS: {l}"
        );
    }
    assert_eq!(steps(&log).len(), 4 * 6 * 2, "every compile step ran");
    let max = max_overlap(&log, None);
    assert!(max <= 4, "{max} compile steps at once on 4 CPUs");
    assert!(max >= 2, "the installs never ran side by side: {max}");
    // Nothing of an install (no make, no sleep) outlives the queue.
    assert!(support::processes_with(&format!("SPACK_FAKE_MAKE_LOG={}", log.display())).is_empty());
}

#[test]
fn a_lone_install_gets_every_cpu_and_the_tokens_a_killed_install_held_come_back() {
    let (s, log) = make_spool("cpus = 4\nmax_parallel = 4\n", 8, "1");
    let _w = s.spawn_worker(&[]);
    s.ok(&["submit", "victim"]);
    // It runs alone: -j 4, and its make takes every token (4 steps at once).
    wait_until(
        "the victim to run 4 steps at once",
        Duration::from_secs(30),
        || max_overlap(&log, Some("victim")) == 4,
    );
    assert_eq!(s.installs()[0][1..3], ["-j", "4"]);
    let events = fs::read_to_string(s.dir.path().join("events.log")).unwrap();
    let pid: i32 = events
        .lines()
        .find(|l| l.starts_with("start victim "))
        .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
        .unwrap();
    // The whole install, make and its steps, dies holding three tokens.
    killpg(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    wait_until("the victim to fail", Duration::from_secs(20), || {
        s.ls("failed").len() == 1
    });
    let rec = s.read("failed/000001-victim.toml");
    assert!(rec.contains("killed by signal 9"), "{rec}");
    s.ok(&["submit", "--wait", "after"]);
    let max = max_overlap(&log, Some("after"));
    assert_eq!(
        max, 4,
        "the next lone install ran {max} steps at once, not 4"
    );
}

#[test]
fn an_install_sees_the_jobserver_on_3_and_4_and_no_other_descriptor_of_the_worker() {
    let mut s = TestSpool::with_config("cpus = 3\n");
    let fds = s.dir.path().join("fds");
    fs::create_dir(&fds).unwrap();
    s.env
        .push(("SPACK_FAKE_FDS".into(), fds.display().to_string()));
    s.ok(&["submit", "zlib"]);
    s.drain();
    let text = fs::read_to_string(fds.join("zlib.fds")).unwrap();
    let open: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once(' ')).collect();
    let numbers: Vec<&str> = open.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, ["0", "1", "2", "3", "4"], "{text}");
    // One pipe, both ends: the jobserver; stderr the job's log.
    assert!(
        open[3].1.starts_with("pipe:[") && open[3].1 == open[4].1,
        "{text}"
    );
    assert!(open[2].1.ends_with("logs/000001-zlib.log"), "{text}");
}

#[test]
fn a_second_install_waits_for_a_token_its_make_cannot_have() {
    // Two CPUs, two slots: while the first install's make holds the one token, the
    // second install starts only when the worker can hold that token for it.
    let (s, log) = make_spool("cpus = 2\nmax_parallel = 2\n", 4, "0.5");
    s.ok(&["submit", "first"]);
    s.ok(&["submit", "second"]);
    s.drain();
    assert_eq!(s.ls("done").len(), 2, "failed: {:?}", s.ls("failed"));
    let max = max_overlap(&log, None);
    assert!(max <= 2, "{max} compile steps at once on 2 CPUs");
}

#[test]
fn a_full_build_stage_holds_new_installs_until_space_returns() {
    if !root_or_skip("a_full_build_stage_holds_new_installs", "mount a tmpfs") {
        return;
    }
    let stage = SmallFs::new("4m");
    let s = TestSpool::with_config(&format!(
        "min_free_disk = \"2M\"\nbuild_stage = \"{}\"\n",
        stage.dir.path().display()
    ));
    // 3 MiB of the 4 taken: 1 MiB free, below the guard.
    let filler = stage.dir.path().join("filler");
    let mut f = fs::File::create(&filler).unwrap();
    f.write_all(&vec![7u8; 3 << 20]).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let w = s.spawn_worker(&[]);
    s.ok(&["submit", "zlib"]);
    wait_until(
        "the worker to say why it waits",
        Duration::from_secs(20),
        || s.read("worker.toml").contains("waiting for disk space"),
    );
    assert_eq!(s.ls("pending").len(), 1, "running: {:?}", s.ls("running"));
    assert!(s.installs().is_empty(), "an install started on a full disk");
    let status = s.ok(&["status"]);
    assert!(
        status.contains("queue: WAITING, waiting for disk space")
            && status.contains("below min_free_disk = 2M"),
        "{status}"
    );
    let info = s.ok(&["worker", "info"]);
    assert!(
        info.contains("waiting:     waiting for disk space"),
        "{info}"
    );
    // Space comes back: the queue resumes by itself.
    fs::remove_file(&filler).unwrap();
    wait_until(
        "the install after space returned",
        Duration::from_secs(20),
        || s.ls("done").len() == 1,
    );
    wait_until("the reason to go", Duration::from_secs(5), || {
        !s.read("worker.toml").contains("waiting")
    });
    assert!(!s.ok(&["status"]).contains("WAITING"));
    assert!(
        w.output().contains("installs may start again"),
        "{}",
        w.output()
    );
}

#[test]
fn too_little_memory_holds_new_installs_until_the_guard_is_lowered() {
    let s = TestSpool::with_config("min_free_memory = \"1000T\"\n");
    let w = s.spawn_worker(&[]);
    s.ok(&["submit", "zlib"]);
    wait_until(
        "the worker to say why it waits",
        Duration::from_secs(20),
        || s.read("worker.toml").contains("waiting for memory"),
    );
    let status = s.ok(&["status"]);
    assert!(
        status.contains("(MemAvailable), below min_free_memory = 1000T"),
        "{status}"
    );
    assert!(s.installs().is_empty());
    let cfg = fs::read_to_string(&s.config).unwrap();
    fs::write(&s.config, cfg.replace("1000T", "1M")).unwrap();
    w.signal(Signal::SIGHUP);
    wait_until("the install", Duration::from_secs(20), || {
        s.ls("done").len() == 1
    });
}
