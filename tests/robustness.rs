//! inotify as a hint, half-written files, full disks, heartbeats, SIGHUP: the worker keeps
//! every job where it belongs when the world misbehaves.

mod support;

use nix::sys::signal::Signal;
use std::fs;
use std::io::Write;
use std::process::Command;
use std::time::Duration;
use support::{TestSpool, wait_until};

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

/// A tmpfs of `size` mounted on a temp dir; unmounted when dropped.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn new(size: &str) -> SmallFs {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(ok.success(), "mount tmpfs failed");
        SmallFs { dir }
    }
    /// Fill it up; returns the filler to free the space again.
    fn fill(&self) -> std::path::PathBuf {
        let filler = self.dir.path().join("filler");
        let mut f = fs::File::create(&filler).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
        filler
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
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
