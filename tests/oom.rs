//! The out-of-memory report end to end: a real OOM kill by the kernel, confined to a
//! private memory cgroup of 64 MiB (and as much memory+swap) so it can never touch the
//! machine's memory. The fake Spack (`SPACK_FAKE_OOM`) moves itself into that cgroup
//! and grows a string until the cgroup's OOM killer kills the grower: Spack itself, or
//! a compile step its make runs, as in a real build; or the worker shares the cgroup
//! with its installs, as under a memory limit on the whole service. The worker must say
//! so in the job's reason, and the queue must go on.
//!
//! Needs root and a memory controller (cgroup v1's memory hierarchy, or v2 with the
//! memory controller enabled for children of the test's own cgroup); says why it skips
//! otherwise.

mod support;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{TestSpool, root_or_skip};

const LIMIT: &str = "67108864";
const PREFIX: &str = "spack-installer-test-";

/// A private memory cgroup with a 64 MiB limit; when dropped, whatever still runs in it
/// is killed and it is removed, however the test ended.
struct MemCgroup {
    dir: PathBuf,
    /// `memory.oom_control` (v1) or `memory.events` (v2): its own `oom_kill` count.
    events: PathBuf,
}

impl MemCgroup {
    /// The cgroup, or why there can be none here.
    fn new(tag: &str) -> Result<MemCgroup, String> {
        let v1 = Path::new("/sys/fs/cgroup/memory");
        let (parent, v2) = if v1.join("memory.limit_in_bytes").exists() {
            (v1.to_path_buf(), false)
        } else {
            let own = fs::read_to_string("/proc/self/cgroup")
                .ok()
                .and_then(|c| spack_installer::executor::budget::cgroup_v2_path(&c))
                .ok_or("no cgroup v1 memory hierarchy and no cgroup v2")?;
            let parent = Path::new("/sys/fs/cgroup").join(own);
            let subtree = fs::read_to_string(parent.join("cgroup.subtree_control"))
                .map_err(|e| format!("{}: {e}", parent.display()))?;
            if !subtree.split_whitespace().any(|c| c == "memory") {
                return Err(format!(
                    "cgroup v2 without the memory controller for children of {}",
                    parent.display()
                ));
            }
            (parent, true)
        };
        remove_stale(&parent);
        let dir = parent.join(format!("{PREFIX}{}-{tag}", std::process::id()));
        fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let cg = MemCgroup {
            events: dir.join(if v2 {
                "memory.events"
            } else {
                "memory.oom_control"
            }),
            dir,
        };
        // The limit first: memory+swap (v1) may never be below memory alone.
        let limits: &[(&str, bool)] = if v2 {
            &[("memory.max", true), ("memory.swap.max", false)]
        } else {
            &[
                ("memory.limit_in_bytes", true),
                ("memory.memsw.limit_in_bytes", false),
            ]
        };
        for (file, required) in limits {
            let path = cg.dir.join(file);
            if !*required && !path.exists() {
                continue;
            }
            fs::write(&path, LIMIT).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(cg)
    }

    fn oom_kills(&self) -> u64 {
        let text = fs::read_to_string(&self.events).unwrap();
        spack_installer::executor::budget::counter(&text, "oom_kill").unwrap()
    }

    fn procs(dir: &Path) -> Vec<i32> {
        fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        // Only the test's own installs ever join it.
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            for pid in Self::procs(&self.dir) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            match fs::remove_dir(&self.dir) {
                Ok(()) => return,
                Err(e) if Instant::now() > end => {
                    eprintln!("could not remove {}: {e}", self.dir.display());
                    return;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

/// Removes the empty cgroups of earlier runs whose test process is gone (killed before
/// its guard could run).
fn remove_stale(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir(e.path());
        }
    }
}

/// The system's OOM kill count (what the worker reads on a host without cgroup v2).
fn vmstat_oom_kills() -> u64 {
    let text = fs::read_to_string("/proc/vmstat").unwrap();
    spack_installer::executor::budget::counter(&text, "oom_kill").unwrap()
}

/// A spool whose `hog` outgrows a fresh 64 MiB cgroup (named by `tag`; grown by
/// `victim`), or why not.
fn oom_spool(test: &str, tag: &str, victim: &str) -> Option<(TestSpool, MemCgroup)> {
    if !root_or_skip(test, "create a memory cgroup") {
        return None;
    }
    let cg = match MemCgroup::new(tag) {
        Ok(cg) => cg,
        Err(why) => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: no private memory cgroup possible here: {why}"
            );
            return None;
        }
    };
    let mut s = TestSpool::new();
    s.env.extend([
        ("SPACK_FAKE_OOM".into(), "hog".into()),
        ("SPACK_FAKE_OOM_CGROUP".into(), cg.dir.display().to_string()),
        ("SPACK_FAKE_OOM_VICTIM".into(), victim.into()),
    ]);
    Some((s, cg))
}

/// The `reason = "..."` of a job record.
fn reason(record: &str) -> String {
    let v: toml::Value = toml::from_str(record).unwrap();
    v.get("state")
        .and_then(|s| s.get("reason"))
        .or_else(|| v.get("reason"))
        .and_then(|r| r.as_str())
        .unwrap_or_else(|| panic!("no reason in {record}"))
        .to_string()
}

#[test]
fn spack_killed_by_the_oom_killer_fails_with_the_oom_reason_and_the_queue_goes_on() {
    let Some((s, cg)) = oom_spool(
        "spack_killed_by_the_oom_killer_fails_with_the_oom_reason",
        "spack",
        "spack",
    ) else {
        return;
    };
    let system_before = vmstat_oom_kills();
    s.ok(&["submit", "hog", "zlib"]);
    s.drain();
    // A real OOM kill happened, in that cgroup, and the system's count saw it too (the
    // count the worker reads on a cgroup v1 host: a memcg OOM kill is an OOM kill).
    assert_eq!(cg.oom_kills(), 1, "the kernel killed nothing in the cgroup");
    assert!(
        vmstat_oom_kills() > system_before,
        "/proc/vmstat oom_kill did not count the cgroup's OOM kill"
    );
    assert_eq!(s.ls("failed"), ["000001-hog.toml"]);
    let rec = s.read("failed/000001-hog.toml");
    let why = reason(&rec);
    assert!(
        why.starts_with(
            "killed by the out-of-memory killer (SIGKILL while the kernel's oom_kill count rose)"
        ),
        "{why}"
    );
    assert!(rec.contains("exit_code = 137"), "{rec}");
    let log = s.read("logs/000001-hog.log");
    assert!(
        log.contains("failed after") && log.contains("killed by the out-of-memory killer"),
        "{log}"
    );
    assert_eq!(s.ls("done"), ["000002-zlib.toml"]);
    assert_eq!(reason(&s.read("done/000002-zlib.toml")), "installed");
    assert!(MemCgroup::procs(&cg.dir).is_empty());
}

#[test]
fn a_compiler_killed_by_the_oom_killer_says_so_after_spacks_error() {
    let Some((s, cg)) = oom_spool(
        "a_compiler_killed_by_the_oom_killer_says_so_after_spacks_error",
        "compiler",
        "compiler",
    ) else {
        return;
    };
    s.ok(&["submit", "hog", "zlib"]);
    s.drain();
    assert_eq!(cg.oom_kills(), 1, "the kernel killed nothing in the cgroup");
    assert_eq!(s.ls("failed"), ["000001-hog.toml"]);
    let rec = s.read("failed/000001-hog.toml");
    let why = reason(&rec);
    // Spack outlived its compiler and failed as it does when make fails.
    assert!(
        why.starts_with("spack exited with code 1: ")
            && why.contains("ProcessError: Command exited with status 2")
            && why.ends_with(
                " (the out-of-memory killer killed a process while it ran: likely a compiler)"
            ),
        "{why}"
    );
    assert!(rec.contains("exit_code = 1"), "{rec}");
    let log = s.read("logs/000001-hog.log");
    assert!(
        log.contains("Killed"),
        "make did not report the kill: {log}"
    );
    assert_eq!(s.ls("done"), ["000002-zlib.toml"]);
    assert!(MemCgroup::procs(&cg.dir).is_empty());
}

#[test]
fn a_worker_sharing_its_memory_cgroup_with_the_install_survives_the_oom_kill() {
    // The shape of a deployment with a memory limit on the whole service: the worker
    // and its installs in one cgroup (the install's move into it changes nothing). The
    // killer must pick the install, and the worker must report it and go on.
    let Some((s, cg)) = oom_spool(
        "a_worker_sharing_its_memory_cgroup_with_the_install_survives_the_oom_kill",
        "shared",
        "spack",
    ) else {
        return;
    };
    let w = s.spawn_worker(&[]);
    fs::write(cg.dir.join("cgroup.procs"), w.pid().to_string()).unwrap();
    assert_eq!(MemCgroup::procs(&cg.dir), [w.pid()]);
    s.ok(&["submit", "hog", "zlib"]);
    support::wait_until("both jobs to end", Duration::from_secs(60), || {
        s.ls("failed").len() + s.ls("done").len() == 2
    });
    assert_eq!(cg.oom_kills(), 1, "the kernel killed nothing in the cgroup");
    assert_eq!(s.ls("failed"), ["000001-hog.toml"]);
    let why = reason(&s.read("failed/000001-hog.toml"));
    assert!(
        why.starts_with("killed by the out-of-memory killer"),
        "{why}"
    );
    assert_eq!(s.ls("done"), ["000002-zlib.toml"]);
    // The worker is still there, alone in the cgroup.
    assert_eq!(MemCgroup::procs(&cg.dir), [w.pid()], "{}", w.output());
}
