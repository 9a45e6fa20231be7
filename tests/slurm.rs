//! The Slurm executor against a real single-node Slurm (slurmctld, slurmd, munge),
//! started once for this test binary by tests/slurm/start.sh and stopped at exit. That
//! Slurm is the tests' own (its cluster name, free ports, its own munged and key) and
//! the tests talk only to it, through its `SLURM_CONF`: another Slurm on this machine
//! is never touched. The tests need root (Slurm's daemons and munge); without it,
//! without the Debian packages, or when start.sh cannot start a Slurm of their own,
//! they say why and pass without running (`SPACK_INSTALLER_REQUIRE_SLURM=1` makes that
//! a failure instead). They run one at a time: they share the cluster and count its jobs.

mod support;

use nix::sys::signal::Signal;
use spack_installer::job::Job;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use support::{TestSpool, wait_until};

const PACKAGES: &str = "slurmctld slurmd slurm-client munge";

struct Slurm {
    dir: PathBuf,
    conf: PathBuf,
    /// The cluster name start.sh chose; its controller must answer with it.
    name: String,
}

static SLURM: OnceLock<Option<Slurm>> = OnceLock::new();
static SERIAL: Mutex<()> = Mutex::new(());

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/slurm")
        .join(name)
}

extern "C" fn stop_slurm() {
    if let Some(Some(s)) = SLURM.get() {
        let _ = Command::new(script("stop.sh")).arg(&s.dir).status();
        let _ = fs::remove_dir_all(&s.dir);
    }
}

/// Past the test harness's capture, so a skip is seen in `cargo test`'s output.
fn say(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "tests/slurm.rs: {msg}");
}

fn installed() -> bool {
    ["slurmctld", "slurmd", "sbatch", "munged"]
        .iter()
        .all(|b| spack_installer::config::find_on_path(b).is_some())
}

fn start() -> Option<Slurm> {
    if !nix::unistd::Uid::effective().is_root() {
        say("SKIPPED: the Slurm tests start slurmctld, slurmd and munged and need root");
        return None;
    }
    if !installed() {
        say(&format!(
            "Slurm is not installed: trying apt-get install {PACKAGES}"
        ));
        let _ = Command::new("apt-get").arg("update").status();
        let _ = Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(PACKAGES.split(' '))
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
        if !installed() {
            say(&format!(
                "SKIPPED: Slurm could not be installed (apt-get install {PACKAGES})"
            ));
            return None;
        }
    }
    let dir = std::env::temp_dir().join(format!("spack-installer-slurm.{}", std::process::id()));
    let out = Command::new(script("start.sh")).arg(&dir).output().unwrap();
    // SAFETY: registering a plain extern "C" function; it runs when the harness exits.
    unsafe { nix::libc::atexit(stop_slurm) };
    let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if out.status.code() == Some(2) && std::env::var_os("SPACK_INSTALLER_REQUIRE_SLURM").is_none() {
        say(&format!("SKIPPED: {why}"));
        return None;
    }
    assert!(
        out.status.success(),
        "tests/slurm/start.sh {} failed ({}): {why}",
        dir.display(),
        out.status
    );
    Some(Slurm {
        conf: dir.join("slurm.conf"),
        name: fs::read_to_string(dir.join("cluster"))
            .unwrap()
            .trim()
            .to_string(),
        dir,
    })
}

/// The cluster (started on first use) and the right to use it alone; `None`: skip.
fn cluster() -> Option<(&'static Slurm, MutexGuard<'static, ()>)> {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    SLURM.get_or_init(start).as_ref().map(|s| (s, guard))
}

/// A spool whose worker sends installs to the cluster.
fn spool(slurm: &Slurm, slurm_section: &str) -> TestSpool {
    spool_with(slurm, "", slurm_section)
}

/// The same, with `top` added to the config's top level.
fn spool_with(slurm: &Slurm, top: &str, slurm_section: &str) -> TestSpool {
    let mut s = TestSpool::with_config(&format!(
        "{top}executor = \"slurm\"\n[slurm]\npartition = \"debug\"\ntime_limit = \"10m\"\n{slurm_section}"
    ));
    s.env
        .push(("SLURM_CONF".into(), slurm.conf.display().to_string()));
    s
}

fn slurm_cmd(slurm: &Slurm, prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog)
        .args(args)
        .env("SLURM_CONF", &slurm.conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{prog} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The Slurm jobs of a job name that slurmctld knows, finished ones included.
fn slurm_jobs_named(slurm: &Slurm, name: &str) -> Vec<String> {
    slurm_cmd(
        slurm,
        "squeue",
        &[
            "-h",
            "--states=all",
            &format!("--name=si-{name}"),
            "--format=%i",
        ],
    )
    .lines()
    .map(|l| l.trim().to_string())
    .collect()
}

fn record(s: &TestSpool, rel: &str) -> Job {
    Job::from_toml(&s.read(rel)).unwrap()
}

fn slurm_id(s: &TestSpool, rel: &str) -> Option<u64> {
    fs::read_to_string(s.path(rel))
        .ok()
        .and_then(|t| Job::from_toml(&t).ok())
        .and_then(|j| j.state.slurm.and_then(|sl| sl.job_id))
}

/// Wait until the fake Spack of job `name` (`NNNNNN-PACKAGE`) runs inside its Slurm job;
/// the job marker its processes carry, to look for them later.
fn spack_running_in_slurm(s: &TestSpool, name: &str) -> String {
    let marker = format!("SPACK_INSTALLER_JOB={}/{name}", s.root.display());
    wait_until("spack running in Slurm", Duration::from_secs(20), || {
        !support::processes_with(&marker).is_empty()
    });
    marker
}

#[test]
fn a_job_installs_through_slurm_and_a_failure_keeps_spacks_exit_code() {
    let Some((slurm, _serial)) = cluster() else {
        return;
    };
    let mut s = spool(slurm, "cpus_per_task = 2\n");
    let dump = s.dir.path().join("env");
    fs::create_dir(&dump).unwrap();
    s.env
        .push(("SPACK_FAKE_ENVDUMP".into(), dump.display().to_string()));
    s.env.push(("SPACK_FAKE_FAIL".into(), "broken".into()));
    s.ok(&["submit", "zlib@1.3 +optimize"]);
    s.ok(&["submit", "broken"]);
    s.drain();

    let done = record(&s, "done/000001-zlib.toml");
    let sl = done.state.slurm.clone().expect("[state.slurm] recorded");
    let id = sl.job_id.expect("the Slurm job ID is recorded");
    assert_eq!(sl.partition.as_deref(), Some("debug"));
    assert!(sl.node.is_some(), "the node is recorded: {sl:?}");
    // The fake Spack ran inside that Slurm job, with Spack's -j from cpus_per_task.
    let env = fs::read_to_string(dump.join("zlib.env")).unwrap();
    assert!(env.contains(&format!("SLURM_JOB_ID={id}\n")), "{env}");
    assert!(env.contains("SPACK_INSTALLER_JOB="), "{env}");
    assert_eq!(s.installs()[0][..3], ["install", "-j", "2"]);
    // The spec is nowhere in what Slurm was given: the batch script names the job only.
    let batch = slurm_cmd(
        slurm,
        "scontrol",
        &["write", "batch_script", &id.to_string(), "-"],
    );
    assert!(batch.contains("exec-job '000001-zlib'"), "{batch}");
    assert!(
        !batch.contains("optimize") && !batch.contains("1.3"),
        "{batch}"
    );
    let show = slurm_cmd(slurm, "scontrol", &["show", "job", &id.to_string()]);
    assert!(!show.contains("optimize"), "{show}");
    // Output appended to the job's log.
    let log = s.read("logs/000001-zlib.log");
    assert!(log.contains("Successfully installed zlib"), "{log}");

    let failed = record(&s, "failed/000002-broken.toml");
    assert_eq!(failed.state.exit_code, Some(1));
    let reason = failed.state.reason.unwrap();
    assert!(reason.contains("spack exited with code 1"), "{reason}");
    assert!(failed.state.slurm.unwrap().job_id.is_some());

    let out = s.ok(&["show", "1"]);
    assert!(out.contains(&format!("slurm job {id}")), "{out}");

    // config-check asks Slurm about the partition.
    let out = s.run(&["config-check"]);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("slurm: partition debug"), "{text}");
    let typo = TestSpool::with_config("executor = \"slurm\"\n[slurm]\npartition = \"nosuch\"\n");
    let mut cmd = typo.command(&["config-check"]);
    let out = cmd.env("SLURM_CONF", &slurm.conf).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("nosuch"), "{text}");
}

#[test]
fn a_chain_of_three_runs_in_order_through_slurm() {
    let Some((slurm, _serial)) = cluster() else {
        return;
    };
    let mut s = spool(slurm, "max_jobs = 3\n");
    s.env.push(("SPACK_FAKE_DELAY".into(), "0.3".into()));
    s.ok(&["submit", "--chain", "first", "second", "third"]);
    s.drain();
    assert_eq!(s.install_order(), ["first", "second", "third"]);
    // Each started only after the one before had ended (three slots were free).
    let events = fs::read_to_string(s.dir.path().join("events.log")).unwrap();
    let at: HashMap<String, u128> = events
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (format!("{} {}", f[0], f[1]), f[3].parse().unwrap())
        })
        .collect();
    assert!(at["end first"] <= at["start second"], "{events}");
    assert!(at["end second"] <= at["start third"], "{events}");
    let ids: Vec<u64> = ["first", "second", "third"]
        .iter()
        .enumerate()
        .map(|(i, p)| slurm_id(&s, &format!("done/{:06}-{p}.toml", i + 1)).unwrap())
        .collect();
    assert!(ids[0] < ids[1] && ids[1] < ids[2], "{ids:?}");
}

#[test]
fn cancel_scancels_the_slurm_job_and_leaves_no_process() {
    let Some((slurm, _serial)) = cluster() else {
        return;
    };
    let mut s = spool(slurm, "");
    s.env.push(("SPACK_FAKE_DELAYS".into(), "slow=120".into()));
    let _w = s.spawn_worker(&[]);
    s.ok(&["submit", "slow"]);
    let marker = spack_running_in_slurm(&s, "000001-slow");
    let id = slurm_id(&s, "running/000001-slow.toml").expect("job ID recorded");
    let listed = slurm_cmd(slurm, "squeue", &["-h", "--format=%i"]);
    assert!(listed.lines().any(|l| l.trim() == id.to_string()));
    wait_until("status shows the node", Duration::from_secs(10), || {
        s.ok(&["status"])
            .contains(&format!("slurm job {id} (partition debug, node "))
    });
    let info = s.ok(&["worker", "info"]);
    assert!(info.contains("in Slurm:    1 job"), "{info}");

    let out = s.ok(&["cancel", "1"]);
    assert!(out.contains("cancel"), "{out}");
    wait_until("the job in cancelled/", Duration::from_secs(30), || {
        s.where_is("000001-slow").as_deref() == Some("cancelled")
    });
    let listed = slurm_cmd(slurm, "squeue", &["-h", "--format=%i"]);
    assert!(
        !listed.lines().any(|l| l.trim() == id.to_string()),
        "Slurm job {id} still queued: {listed}"
    );
    wait_until(
        "no process of the job left",
        Duration::from_secs(15),
        || support::processes_with(&marker).is_empty(),
    );
    let rec = record(&s, "cancelled/000001-slow.toml");
    assert!(
        rec.state
            .reason
            .as_deref()
            .unwrap()
            .contains("cancelled by"),
        "{rec:?}"
    );
}

#[test]
fn a_worker_killed_while_slurm_runs_reattaches_without_a_second_sbatch() {
    let Some((slurm, _serial)) = cluster() else {
        return;
    };
    let mut s = spool(slurm, "max_jobs = 2\n");
    s.env
        .push(("SPACK_FAKE_DELAYS".into(), "alpha=4,beta=4".into()));
    let mut w = s.spawn_worker(&[]);
    s.ok(&["submit", "alpha", "beta"]);
    let events = s.dir.path().join("events.log");
    wait_until(
        "both installs started in Slurm",
        Duration::from_secs(20),
        || {
            fs::read_to_string(&events).is_ok_and(|e| e.matches("start ").count() == 2)
                && slurm_id(&s, "running/000001-alpha.toml").is_some()
                && slurm_id(&s, "running/000002-beta.toml").is_some()
        },
    );
    let alpha = slurm_id(&s, "running/000001-alpha.toml").unwrap();
    let beta = slurm_id(&s, "running/000002-beta.toml").unwrap();
    w.signal(Signal::SIGKILL);
    w.wait(Duration::from_secs(5));
    // And the worst moment for beta: sbatch had returned, its ID was never written.
    let path = s.path("running/000002-beta.toml");
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, text.replace(&format!("job_id = {beta}\n"), "")).unwrap();
    assert_eq!(slurm_id(&s, "running/000002-beta.toml"), None);

    let out = s.drain();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(s.where_is("000001-alpha").as_deref(), Some("done"), "{log}");
    assert_eq!(s.where_is("000002-beta").as_deref(), Some("done"), "{log}");
    assert_eq!(slurm_id(&s, "done/000001-alpha.toml"), Some(alpha));
    assert_eq!(slurm_id(&s, "done/000002-beta.toml"), Some(beta), "{log}");
    // One Slurm job each, one Spack run each, the same attempt.
    assert_eq!(slurm_jobs_named(slurm, "000001-alpha"), [alpha.to_string()]);
    assert_eq!(slurm_jobs_named(slurm, "000002-beta"), [beta.to_string()]);
    let mut ran = s.install_order();
    ran.sort();
    assert_eq!(ran, ["alpha", "beta"], "each Spack ran once");
    assert_eq!(record(&s, "done/000001-alpha.toml").state.attempts, 1);
    assert!(log.contains("re-attach"), "{log}");
}

#[test]
fn max_jobs_is_never_exceeded() {
    let Some((slurm, _serial)) = cluster() else {
        return;
    };
    let mut s = spool(slurm, "max_jobs = 2\n");
    s.env.push(("SPACK_FAKE_DELAY".into(), "0.5".into()));
    let _w = s.spawn_worker(&[]);
    s.ok(&["submit", "p1", "p2", "p3", "p4", "p5"]);
    // Sample Slurm's queue and running/ while the queue drains.
    let mut most_in_slurm = 0;
    wait_until("all five done", Duration::from_secs(60), || {
        let ours = slurm_cmd(slurm, "squeue", &["-h", "--format=%j"])
            .lines()
            .filter(|l| l.starts_with("si-"))
            .count();
        most_in_slurm = most_in_slurm.max(ours);
        assert!(ours <= 2, "{ours} of our jobs in Slurm at once");
        assert!(s.ls("running").len() <= 2);
        s.ls("done").len() == 5
    });
    // The installs themselves never overlapped by more than two.
    let events = fs::read_to_string(s.dir.path().join("events.log")).unwrap();
    let mut marks: Vec<(u128, i32)> = events
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[3].parse().unwrap(), if f[0] == "start" { 1 } else { -1 })
        })
        .collect();
    marks.sort_by_key(|&(t, d)| (t, d));
    let (mut now, mut most) = (0, 0);
    for (_, d) in marks {
        now += d;
        most = most.max(now);
    }
    assert!(most <= 2, "{most} installs at once:\n{events}");
    assert!(most_in_slurm >= 1);
    let info = s.ok(&["worker", "info"]);
    assert!(info.contains("in Slurm"), "{info}");
}

/// `ClusterName` as the controller that a `SLURM_CONF` leads to reports it.
fn cluster_name(conf: &Path) -> String {
    let out = Command::new("scontrol")
        .args(["show", "config"])
        .env("SLURM_CONF", conf)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some("ClusterName")).then(|| f.nth(1).unwrap_or("").to_string())
        })
        .unwrap_or_default()
}

#[test]
fn the_tests_talk_only_to_their_own_slurm_and_cancel_only_their_jobs() {
    let Some((slurm, _serial)) = cluster() else {
        return;
    };
    // Ours answers on ports of its own, by its own name.
    let conf = fs::read_to_string(&slurm.conf).unwrap();
    assert!(conf.contains("SlurmctldPort="), "{conf}");
    assert!(!conf.contains("SlurmctldPort=6817\n"), "{conf}");
    assert_eq!(cluster_name(&slurm.conf), slurm.name);

    // Another Slurm beside it (as on a machine that runs one): each answers for itself.
    let other = tempfile::tempdir().unwrap();
    let dir = other.path().join("slurm");
    let st = Command::new(script("start.sh")).arg(&dir).status().unwrap();
    assert!(st.success());
    let other_conf = dir.join("slurm.conf");
    let other_name = fs::read_to_string(dir.join("cluster")).unwrap();
    assert_ne!(other_name.trim(), slurm.name);
    assert_eq!(cluster_name(&other_conf), other_name.trim());
    assert_eq!(cluster_name(&slurm.conf), slurm.name);

    // Someone else's job there, and one named like ours: stop.sh cancels only ours.
    let sbatch = |name: &str| {
        let out = Command::new("sbatch")
            .args(["--parsable", "-J", name, "--wrap", "sleep 300"])
            .env("SLURM_CONF", &other_conf)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let theirs = sbatch("someone-else");
    let ours = sbatch("si-000001-x");
    let st = Command::new(script("stop.sh"))
        .args([dir.as_os_str(), "--jobs-only".as_ref()])
        .status()
        .unwrap();
    assert!(st.success());
    let listed = Command::new("squeue")
        .args(["-h", "--format=%i %T"])
        .env("SLURM_CONF", &other_conf)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    let state = |id: &str| {
        listed
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
    };
    assert!(
        matches!(state(&theirs).as_deref(), Some("PENDING" | "RUNNING")),
        "someone else's job was touched: {listed}"
    );
    assert!(
        !matches!(state(&ours).as_deref(), Some("PENDING" | "RUNNING")),
        "{listed}"
    );
    let st = Command::new(script("stop.sh")).arg(&dir).status().unwrap();
    assert!(st.success());
    assert_eq!(cluster_name(&slurm.conf), slurm.name, "ours still answers");
}

/// A directory holding an `sbatch` that sleeps `secs`, then runs the real one: put it
/// first in `PATH`.
fn slow_sbatch(s: &TestSpool, secs: f64) -> String {
    use std::os::unix::fs::PermissionsExt;
    let real = spack_installer::config::find_on_path("sbatch").unwrap();
    let dir = s.dir.path().join("slow-bin");
    fs::create_dir_all(&dir).unwrap();
    let wrapper = dir.join("sbatch");
    fs::write(
        &wrapper,
        format!("#!/bin/sh\nsleep {secs}\nexec {} \"$@\"\n", real.display()),
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    format!("{}:{}", dir.display(), std::env::var("PATH").unwrap())
}

/// How many times the fake Spack started an install of `package`.
fn spack_runs(s: &TestSpool, package: &str) -> usize {
    fs::read_to_string(s.dir.path().join("events.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(&format!("start {package} ")))
        .count()
}

/// A spool whose worker was SIGKILLed while the `sbatch` of its first job, `package`,
/// ran (a 3 s one): the wrapper (and then the real sbatch) outlives the worker, and the
/// record has no Slurm job ID.
fn killed_during_sbatch(slurm: &Slurm, slurm_section: &str, package: &str) -> TestSpool {
    let mut s = spool(slurm, slurm_section);
    let path = slow_sbatch(&s, 3.0);
    s.env.push(("PATH".into(), path));
    s.env.push(("SPACK_FAKE_DELAY".into(), "1".into()));
    let mut w = s.spawn_worker(&[]);
    s.ok(&["submit", package]);
    let name = format!("000001-{package}");
    wait_until("the job handed to sbatch", Duration::from_secs(10), || {
        s.where_is(&name).as_deref() == Some("running")
    });
    std::thread::sleep(Duration::from_secs(1));
    w.signal(Signal::SIGKILL);
    w.wait(Duration::from_secs(5));
    assert_eq!(slurm_id(&s, &format!("running/{name}.toml")), None);
    s
}

#[test]
fn a_worker_killed_during_a_slow_sbatch_leaves_one_slurm_job_and_one_spack_run() {
    let Some((slurm, _serial)) = cluster() else {
        return;
    };
    let s = killed_during_sbatch(slurm, "", "slowsub");

    let out = s.drain();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        s.where_is("000001-slowsub").as_deref(),
        Some("done"),
        "{log}"
    );
    let ids = slurm_jobs_named(slurm, "000001-slowsub");
    assert_eq!(ids.len(), 1, "Slurm got the job {ids:?} times:\n{log}");
    assert_eq!(spack_runs(&s, "slowsub"), 1, "{log}");
    assert_eq!(
        slurm_id(&s, "done/000001-slowsub.toml").map(|i| i.to_string()),
        Some(ids[0].clone())
    );
    assert!(
        log.contains("waiting for the previous worker's sbatch"),
        "{log}"
    );
    assert_eq!(record(&s, "done/000001-slowsub.toml").state.attempts, 1);
}

#[test]
fn a_second_slurm_job_for_an_attempt_runs_no_spack_and_is_cancelled() {
    let Some((slurm, _serial)) = cluster() else {
        return;
    };
    let mut s = spool(slurm, "");
    s.env.push(("SPACK_FAKE_DELAYS".into(), "twice=4".into()));
    let w = s.spawn_worker(&[]);
    s.ok(&["submit", "twice"]);
    spack_running_in_slurm(&s, "000001-twice");
    let id = slurm_id(&s, "running/000001-twice.toml").unwrap();
    // exec-job in any other Slurm job than the recorded one runs no Spack.
    let other = (id + 1000).to_string();
    let out = s
        .command(&["exec-job", "000001-twice"])
        .env("SLURM_JOB_ID", &other)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        said.contains(&format!(
            "Slurm job {other} is not the one the spool recorded for 000001-twice attempt 1 (Slurm job {id}): not running Spack"
        )),
        "{said}"
    );
    let out = s.run(&["exec-job", "000001-twice"]);
    assert!(!out.status.success(), "outside Slurm: {out:?}");
    // What an sbatch that outlived a worker lands late: the same batch script, name,
    // directory and attempt, another Slurm job.
    let script = slurm_cmd(
        slurm,
        "scontrol",
        &["write", "batch_script", &id.to_string(), "-"],
    );
    let show = slurm_cmd(slurm, "scontrol", &["show", "job", "-o", &id.to_string()]);
    let field = |k: &str| {
        show.split_whitespace()
            .find_map(|t| t.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_string()
    };
    let mut sbatch = Command::new("sbatch")
        .args([
            "--parsable".to_string(),
            "--job-name=si-000001-twice".to_string(),
            format!("--chdir={}", field("WorkDir")),
            format!("--output={}", s.path("logs/000001-twice.log").display()),
            "--open-mode=append".into(),
            "--comment=spack-installer attempt 1".to_string(),
        ])
        .env("SLURM_CONF", &slurm.conf)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    sbatch
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = sbatch.wait_with_output().unwrap();
    assert!(out.status.success());
    let stray = String::from_utf8(out.stdout).unwrap().trim().to_string();

    wait_until("the job done", Duration::from_secs(30), || {
        s.where_is("000001-twice").as_deref() == Some("done")
    });
    wait_until("the stray gone from Slurm", Duration::from_secs(15), || {
        !slurm_cmd(slurm, "squeue", &["-h", "--format=%i"])
            .lines()
            .any(|l| l.trim() == stray)
    });
    assert_eq!(spack_runs(&s, "twice"), 1, "Spack ran in the stray too");
    assert_eq!(slurm_id(&s, "done/000001-twice.toml"), Some(id));
    let log = w.output();
    assert!(
        log.contains(&format!("Slurm job {stray} (si-000001-twice)"))
            && log.contains("cancelling it"),
        "{log}"
    );
}

/// Sets a partition's state for the length of a test, and `UP` again however it ends.
struct PartitionState<'a> {
    slurm: &'a Slurm,
    name: &'static str,
}

impl<'a> PartitionState<'a> {
    fn set(slurm: &'a Slurm, name: &'static str, state: &str) -> Self {
        slurm_cmd(
            slurm,
            "scontrol",
            &[
                "update",
                &format!("PartitionName={name}"),
                &format!("State={state}"),
            ],
        );
        PartitionState { slurm, name }
    }
}

impl Drop for PartitionState<'_> {
    fn drop(&mut self) {
        let _ = Command::new("scontrol")
            .args([
                "update",
                &format!("PartitionName={}", self.name),
                "State=UP",
            ])
            .env("SLURM_CONF", &self.slurm.conf)
            .status();
    }
}

fn combined(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn a_job_slurm_refuses_waits_in_pending_with_slurms_reason_and_runs_once_slurm_is_back() {
    let Some((slurm, _serial)) = cluster() else {
        return;
    };
    let s = spool(slurm, "");
    let inactive = PartitionState::set(slurm, "debug", "INACTIVE");
    let _w = s.spawn_worker(&[]);
    s.ok(&["submit", "patient", "behind"]);
    wait_until("Slurm's refusal shown", Duration::from_secs(20), || {
        s.ok(&["show", "1"])
            .contains("waiting for Slurm: sbatch: error:")
    });
    // Not failed, not running, not counted as an attempt; the reason says why.
    assert_eq!(s.where_is("000001-patient").as_deref(), Some("pending"));
    assert_eq!(s.where_is("000002-behind").as_deref(), Some("pending"));
    let show = s.ok(&["show", "1"]);
    assert!(show.contains("attempts      0"), "{show}");
    assert!(!show.contains("being submitted"), "{show}");
    let status = s.ok(&["status"]);
    assert!(status.contains("waiting for Slurm"), "{status}");
    // config-check says what is wrong with the partition.
    let out = s.run(&["config-check"]);
    let text = combined(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("partition debug is inactive"), "{text}");
    // Retried with back-off: more than one refusal in the log, not one per loop turn.
    wait_until("a second try", Duration::from_secs(15), || {
        s.read("logs/000001-patient.log")
            .matches("Slurm did not take it")
            .count()
            >= 2
    });
    let tries = s
        .read("logs/000001-patient.log")
        .matches("Slurm did not take it")
        .count();
    assert!(tries <= 4, "{tries} tries in a few seconds");
    // Operators can alert on it.
    let metrics = || fs::read_to_string(s.path("metrics.prom")).unwrap_or_default();
    wait_until(
        "the refusal in the metrics",
        Duration::from_secs(10),
        || metrics().contains("\nspack_installer_slurm_refusing 1\n"),
    );

    drop(inactive);
    wait_until(
        "both done once Slurm is back",
        Duration::from_secs(60),
        || s.ls("done").len() == 2,
    );
    wait_until(
        "the metrics say Slurm takes jobs",
        Duration::from_secs(10),
        || metrics().contains("\nspack_installer_slurm_refusing 0\n"),
    );
    let done = record(&s, "done/000001-patient.toml");
    assert_eq!(done.state.attempts, 1);
    assert_eq!(done.state.reason.as_deref(), Some("installed"));
    assert_eq!(spack_runs(&s, "patient"), 1);
}

/// Stop one of the daemons start.sh started (`slurmctld` or `munged`) until the
/// returned guard is dropped, which starts it again as start.sh did (recorded in
/// DIR/pids for stop.sh) and waits until the cluster answers.
struct Stopped<'a> {
    slurm: &'a Slurm,
    daemon: &'static str,
}

impl<'a> Stopped<'a> {
    fn stop(slurm: &'a Slurm, daemon: &'static str) -> Self {
        let pid: i32 = fs::read_to_string(slurm.dir.join(format!("{daemon}.daemon")))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let pid = nix::unistd::Pid::from_raw(pid);
        nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
        wait_until(&format!("{daemon} gone"), Duration::from_secs(10), || {
            nix::sys::signal::kill(pid, None).is_err()
                || fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
        });
        Stopped { slurm, daemon }
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        let d = &self.slurm.dir;
        let out = fs::File::create(d.join(format!("{}.restarted.out", self.daemon))).unwrap();
        let mut cmd = if self.daemon == "munged" {
            let m = d.join("munge");
            let mut c = Command::new("runuser");
            c.args(["-u", "munge", "--", "munged", "-F"])
                .arg(format!(
                    "--socket={}",
                    fs::read_to_string(d.join("munge.socket")).unwrap().trim()
                ))
                .arg(format!("--key-file={}", m.join("munge.key").display()))
                .arg(format!("--pid-file={}", m.join("munged.pid").display()))
                .arg(format!("--seed-file={}", m.join("munged.seed").display()))
                .arg(format!("--log-file={}", m.join("munged.log").display()));
            c
        } else {
            let mut c = Command::new("slurmctld");
            c.args(["-D", "-i"]);
            c
        };
        let mut child = cmd
            .env("SLURM_CONF", &self.slurm.conf)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let pid = child.id().to_string();
        // Reaped when stop.sh (or a later test) ends it.
        std::thread::spawn(move || child.wait());
        fs::write(d.join(format!("{}.daemon", self.daemon)), &pid).unwrap();
        let mut pids = fs::OpenOptions::new()
            .append(true)
            .open(d.join("pids"))
            .unwrap();
        use std::io::Write;
        writeln!(pids, "{pid}").unwrap();
        wait_until("the cluster back", Duration::from_secs(30), || {
            Command::new("sinfo")
                .args(["-h", "-p", "debug", "-o", "%T"])
                .env("SLURM_CONF", &self.slurm.conf)
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "idle")
        });
    }
}

#[test]
fn a_stopped_controller_or_munge_keeps_jobs_pending_with_slurms_message() {
    let Some((slurm, _serial)) = cluster() else {
        return;
    };
    let s = spool(slurm, "");
    let _w = s.spawn_worker(&[]);
    for (daemon, package, message) in [
        ("slurmctld", "noctld", "Unable to contact slurm controller"),
        ("munged", "nomunge", "Protocol authentication error"),
    ] {
        let down = Stopped::stop(slurm, daemon);
        s.ok(&["submit", package]);
        let name = format!("{:06}-{package}", if daemon == "munged" { 2 } else { 1 });
        wait_until(
            &format!("Slurm's message with {daemon} down"),
            Duration::from_secs(30),
            || {
                fs::read_to_string(s.path(&format!("pending/{name}.toml")))
                    .is_ok_and(|t| t.contains(message))
                    || s.where_is(&name).as_deref() == Some("failed")
            },
        );
        assert_eq!(s.where_is(&name).as_deref(), Some("pending"));
        let status = s.ok(&["status"]);
        assert!(status.contains(message), "{status}");
        let out = s.run(&["config-check"]);
        assert_eq!(out.status.code(), Some(1), "{}", combined(&out));
        drop(down);
        wait_until(
            &format!("{name} done once {daemon} is back"),
            Duration::from_secs(90),
            || s.where_is(&name).as_deref() == Some("done"),
        );
        assert_eq!(record(&s, &format!("done/{name}.toml")).state.attempts, 1);
    }
}

#[test]
fn a_detaching_stop_leaves_the_build_in_slurm_for_the_next_worker() {
    let Some((slurm, _serial)) = cluster() else {
        return;
    };
    let mut s = spool(slurm, "");
    s.env.push(("SPACK_FAKE_DELAYS".into(), "long=6".into()));
    let mut w = s.spawn_worker(&[]);
    s.ok(&["submit", "long"]);
    let marker = spack_running_in_slurm(&s, "000001-long");
    let id = slurm_id(&s, "running/000001-long.toml").unwrap();
    let t = std::time::Instant::now();
    // The worker is our child: reap it while `worker stop` waits for it to go.
    let stop = s
        .command(&["worker", "stop", "--detach"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    w.wait(Duration::from_secs(5));
    let out = stop.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("stopped"), "{out}\n{}", w.output());
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    // Still running in Slurm, still running in the spool.
    assert!(
        slurm_cmd(slurm, "squeue", &["-h", "--format=%i"])
            .lines()
            .any(|l| l.trim() == id.to_string())
    );
    assert_eq!(s.where_is("000001-long").as_deref(), Some("running"));
    assert!(
        !support::processes_with(&marker).is_empty(),
        "Spack stopped"
    );
    assert!(w.output().contains("leaving 1 install(s) running in Slurm"));

    let out = s.drain();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("re-attach"), "{log}");
    let done = record(&s, "done/000001-long.toml");
    assert_eq!(done.state.attempts, 1);
    assert_eq!(slurm_id(&s, "done/000001-long.toml"), Some(id));
    assert_eq!(spack_runs(&s, "long"), 1);

    // The systemd unit's stop (and so its restart): ExecStop's signal, then KillSignal.
    let unit = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/systemd/spack-installer.service"),
    )
    .unwrap();
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap()
            .to_string()
    };
    let exec_stop = value("ExecStop");
    let first = exec_stop
        .split_whitespace()
        .skip_while(|w| *w != "-s")
        .nth(1)
        .unwrap()
        .to_string();
    let signal = |name: &str| -> Signal {
        let name = name.trim_start_matches("SIG");
        format!("SIG{name}").parse().unwrap()
    };
    let mut w = s.spawn_worker(&[]);
    s.ok(&["submit", "long"]);
    let marker = spack_running_in_slurm(&s, "000002-long");
    let id = slurm_id(&s, "running/000002-long.toml").unwrap();
    w.signal(signal(&first));
    w.signal(signal(&value("KillSignal")));
    assert!(w.wait(Duration::from_secs(5)).success(), "{}", w.output());
    assert_eq!(s.where_is("000002-long").as_deref(), Some("running"));
    assert!(
        !support::processes_with(&marker).is_empty(),
        "Spack stopped"
    );
    s.drain();
    assert_eq!(slurm_id(&s, "done/000002-long.toml"), Some(id));
    assert_eq!(
        spack_runs(&s, "long"),
        2,
        "one run for each of the two jobs"
    );
}

#[test]
fn a_cancel_during_an_outage_is_answered_and_a_spack_that_finished_first_counts() {
    let Some((slurm, _serial)) = cluster() else {
        return;
    };
    // kill_grace bounds how long `cancel` waits for the job to end.
    let mut s = spool_with(slurm, "kill_grace = \"1s\"\n", "");
    s.env.push(("SPACK_FAKE_DELAYS".into(), "first=3".into()));
    let w = s.spawn_worker(&[]);
    s.ok(&["submit", "first"]);
    spack_running_in_slurm(&s, "000001-first");
    let down = Stopped::stop(slurm, "slurmctld");
    // The worker answers (within cancel's 10 s for a receipt, else "not running")
    // although every Slurm command now fails after seconds.
    let out = s.ok(&["cancel", "1"]);
    assert!(!out.contains("not running"), "{out}");
    assert!(out.contains("cancelling 000001-first"), "{out}");
    // scancel could not reach the controller; Spack ends by itself, with 0.
    wait_until("spack done", Duration::from_secs(20), || {
        fs::read_to_string(s.dir.path().join("events.log")).is_ok_and(|e| e.contains("end first"))
    });
    drop(down);
    wait_until("the outcome recorded", Duration::from_secs(60), || {
        matches!(
            s.where_is("000001-first").as_deref(),
            Some("done" | "cancelled" | "failed")
        )
    });
    let rel = format!("{}/000001-first.toml", s.where_is("000001-first").unwrap());
    let rec = record(&s, &rel);
    assert_eq!(
        s.where_is("000001-first").as_deref(),
        Some("done"),
        "{rec:?}\n{}",
        w.output()
    );
    assert!(
        rec.state.reason.unwrap().contains("before the cancel"),
        "{}",
        w.output()
    );
}

/// Drains the node for the length of a test, and resumes it however it ends.
struct Drained<'a>(&'a Slurm);

impl<'a> Drained<'a> {
    fn drain(slurm: &'a Slurm) -> Self {
        let node = slurm_cmd(slurm, "sinfo", &["-h", "-p", "debug", "-o", "%N"]);
        slurm_cmd(
            slurm,
            "scontrol",
            &[
                "update",
                &format!("NodeName={}", node.trim()),
                "State=DRAIN",
                "Reason=tests",
            ],
        );
        Drained(slurm)
    }
}

impl Drop for Drained<'_> {
    fn drop(&mut self) {
        let node = slurm_cmd(self.0, "sinfo", &["-h", "-p", "debug", "-o", "%N"]);
        let _ = Command::new("scontrol")
            .args([
                "update",
                &format!("NodeName={}", node.trim()),
                "State=RESUME",
            ])
            .env("SLURM_CONF", &self.0.conf)
            .status();
    }
}

#[test]
fn status_says_what_slurm_says_for_jobs_it_holds() {
    let Some((slurm, _serial)) = cluster() else {
        return;
    };
    // A time limit above the partition's MaxTime (5 minutes): config-check says so, and
    // Slurm holds the job for ever.
    let mut s = TestSpool::with_config(
        "executor = \"slurm\"\n[slurm]\npartition = \"short\"\ntime_limit = \"10m\"\n",
    );
    s.env
        .push(("SLURM_CONF".into(), slurm.conf.display().to_string()));
    let out = s.run(&["config-check"]);
    let text = combined(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("time_limit 10m is above partition short's MaxTime 5:00"),
        "{text}"
    );
    let _w = s.spawn_worker(&[]);
    s.ok(&["submit", "toolong"]);
    wait_until("held: PartitionTimeLimit", Duration::from_secs(20), || {
        s.ok(&["status"])
            .contains("held in Slurm: PartitionTimeLimit")
    });
    let show = s.ok(&["show", "1"]);
    assert!(show.contains("held in Slurm: PartitionTimeLimit"), "{show}");
    // RAN has not started: Slurm never ran it.
    assert!(show.contains(" / -"), "{show}");
    let out = s.ok(&["cancel", "1"]);
    assert!(!out.contains("its Spack was stopped"), "{out}");
    wait_until("cancelled", Duration::from_secs(20), || {
        s.where_is("000001-toolong").as_deref() == Some("cancelled")
    });
    let reason = record(&s, "cancelled/000001-toolong.toml").state.reason;
    assert!(
        reason.as_deref().unwrap().contains("while queued in Slurm"),
        "{reason:?}"
    );

    // A drained node: queued in Slurm, with Slurm's reason; RAN counts once it runs.
    let s = spool(slurm, "");
    let drained = Drained::drain(slurm);
    let _w = s.spawn_worker(&[]);
    s.ok(&["submit", "later"]);
    wait_until("queued in Slurm", Duration::from_secs(20), || {
        s.ok(&["status"]).contains("queued in Slurm: ")
    });
    let show = s.ok(&["show", "1"]);
    assert!(show.contains(" / -"), "{show}");
    drop(drained);
    wait_until(
        "done once the node is back",
        Duration::from_secs(30),
        || s.where_is("000001-later").as_deref() == Some("done"),
    );
}

#[test]
fn a_timeout_under_a_minute_is_given_to_slurm_as_a_minute_and_the_log_says_so() {
    let Some((slurm, _serial)) = cluster() else {
        return;
    };
    let s = spool(slurm, "");
    s.ok(&["submit", "--timeout", "30s", "brief"]);
    s.drain();
    let id = slurm_id(&s, "done/000001-brief.toml").unwrap();
    let show = slurm_cmd(slurm, "scontrol", &["show", "job", &id.to_string()]);
    assert!(show.contains("TimeLimit=00:01:00"), "{show}");
    let log = s.read("logs/000001-brief.log");
    assert!(
        log.contains("the limit of 30s is given to Slurm as --time 1m"),
        "{log}"
    );
}

#[test]
fn a_job_slurm_requeues_counts_its_second_run_as_an_attempt() {
    let Some((slurm, _serial)) = cluster() else {
        return;
    };
    let mut s = spool(slurm, "");
    s.env.push(("SPACK_FAKE_DELAYS".into(), "again=6".into()));
    let _w = s.spawn_worker(&[]);
    s.ok(&["submit", "again"]);
    spack_running_in_slurm(&s, "000001-again");
    wait_until("the node recorded", Duration::from_secs(10), || {
        s.read("running/000001-again.toml")
            .contains("state = \"RUNNING\"")
    });
    let id = slurm_id(&s, "running/000001-again.toml")
        .unwrap()
        .to_string();
    // What a node failure does to a running job: Slurm requeues it.
    slurm_cmd(slurm, "scontrol", &["requeue", &id]);
    wait_until("queued in Slurm again", Duration::from_secs(20), || {
        s.ok(&["status"]).contains("queued in Slurm: BeginTime")
    });
    slurm_cmd(
        slurm,
        "scontrol",
        &["update", &format!("JobId={id}"), "StartTime=now"],
    );
    wait_until("done after the second run", Duration::from_secs(30), || {
        s.where_is("000001-again").as_deref() == Some("done")
    });
    let done = record(&s, "done/000001-again.toml");
    assert_eq!(done.state.attempts, 2, "{done:?}");
    assert_eq!(spack_runs(&s, "again"), 2);
    assert_eq!(
        slurm_id(&s, "done/000001-again.toml").unwrap().to_string(),
        id
    );
    let log = s.read("logs/000001-again.log");
    assert!(
        log.contains("Slurm requeued it and runs it again: attempt 2"),
        "{log}"
    );
}

/// A directory holding an `sbatch` that waits at a gate, then runs the real one (put it
/// first in `PATH`). Each call leaves `DIR/started.PID` and waits for `DIR/open`; with
/// `DIR/refuse` present it then asks the real one for a partition Slurm does not have,
/// so that Slurm refuses the job. A test that
/// ends without opening the gate leaves no waiting process: it fails once its directory
/// is gone (the test's temporary directory removed), or after two minutes.
fn gated_sbatch(s: &TestSpool) -> (PathBuf, String) {
    use std::os::unix::fs::PermissionsExt;
    let real = spack_installer::config::find_on_path("sbatch").unwrap();
    let dir = s.dir.path().join("gate");
    fs::create_dir_all(&dir).unwrap();
    let wrapper = dir.join("sbatch");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n: > {d}/started.$$\ni=0\nwhile [ ! -e {d}/open ]; do\n  \
             i=$((i + 1)); [ -d {d} ] && [ $i -lt 2400 ] || exit 1\n  sleep 0.05\ndone\n\
             if [ -e {d}/refuse ]; then\n  exec {real} \"$@\" --partition=refused-at-the-gate\nfi\n\
             exec {real} \"$@\"\n",
            d = dir.display(),
            real = real.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap());
    (dir, path)
}

/// The gate's sbatch calls that are still waiting (their PIDs alive).
fn waiting_at_gate(gate: &Path) -> usize {
    fs::read_dir(gate)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_prefix("started.")?.parse::<i32>().ok()
        })
        .filter(|pid| Path::new(&format!("/proc/{pid}")).exists())
        .count()
}

#[test]
fn the_worker_serves_everyone_while_sbatch_hangs_and_a_cancel_then_wins() {
    let Some((slurm, _serial)) = cluster() else {
        return;
    };
    // kill_grace bounds how long `cancel` waits for a job being stopped to end.
    let mut s = spool_with(slurm, "kill_grace = \"1s\"\n", "max_jobs = 4\n");
    let (gate, path) = gated_sbatch(&s);
    s.env.push(("PATH".into(), path));
    let w = s.spawn_worker(&[]);

    // 1. sbatch hangs (as with a controller that does not answer): everyone else is
    // still served, at once, by the worker itself.
    s.ok(&["submit", "hung"]);
    wait_until(
        "sbatch waiting at the gate",
        Duration::from_secs(10),
        || waiting_at_gate(&gate) == 1,
    );
    let out = s.ok(&["submit", "second"]);
    assert!(!out.contains("has not taken it yet"), "{out}");
    assert_eq!(s.where_is("000002-second").as_deref(), Some("pending"));
    let status = s.ok(&["status"]);
    assert!(
        status
            .lines()
            .any(|l| l.contains("000002") && l.contains("pending")),
        "{status}"
    );
    assert!(status.contains("being submitted to slurm"), "{status}");
    let show = s.ok(&["show", "1"]);
    assert!(show.contains("being submitted to slurm"), "{show}");
    let out = s.ok(&["cancel", "2"]);
    assert!(!out.contains("not running"), "{out}");
    assert_eq!(s.where_is("000002-second").as_deref(), Some("cancelled"));
    // One sbatch at a time: the next job waits for the answer of the first.
    s.ok(&["submit", "third"]);
    // A cancel of the job being submitted is answered too.
    let out = s.ok(&["cancel", "1"]);
    assert!(out.contains("being handed to Slurm"), "{out}");
    assert!(!out.contains("not running"), "{out}");
    // All of that was answered while the sbatch still waited.
    assert_eq!(waiting_at_gate(&gate), 1, "the gate was passed early");
    assert_eq!(s.where_is("000003-third").as_deref(), Some("pending"));

    // 2. Slurm then refuses the cancelled job: it stays cancelled, never requeued.
    // (Paused meanwhile, so third is not handed to this open gate.)
    s.ok(&["pause"]);
    fs::write(gate.join("refuse"), "").unwrap();
    fs::write(gate.join("open"), "").unwrap();
    wait_until("the first job cancelled", Duration::from_secs(20), || {
        s.where_is("000001-hung").as_deref() == Some("cancelled")
    });
    let rec = record(&s, "cancelled/000001-hung.toml");
    assert!(
        rec.state
            .reason
            .as_deref()
            .unwrap()
            .contains("before Slurm took it"),
        "{rec:?}\n{}",
        w.output()
    );
    assert!(slurm_jobs_named(slurm, "000001-hung").is_empty());

    // 3. The next sbatch lands after a cancel: the Slurm job is cancelled as soon as its
    // ID is known, and Spack never runs.
    fs::remove_file(gate.join("open")).unwrap();
    fs::remove_file(gate.join("refuse")).unwrap();
    assert_eq!(s.where_is("000003-third").as_deref(), Some("pending"));
    s.ok(&["resume"]);
    wait_until(
        "third's sbatch at the gate",
        Duration::from_secs(90),
        || waiting_at_gate(&gate) == 1,
    );
    let out = s.ok(&["cancel", "3"]);
    assert!(out.contains("being handed to Slurm"), "{out}");
    fs::write(gate.join("open"), "").unwrap();
    wait_until("the third job cancelled", Duration::from_secs(60), || {
        s.where_is("000003-third").as_deref() == Some("cancelled")
    });
    // Of this spool: another test's spool had a 000003-third too.
    let ids: Vec<String> = slurm_cmd(
        slurm,
        "squeue",
        &[
            "-h",
            "--states=all",
            "--name=si-000003-third",
            "--format=%i|%Z",
        ],
    )
    .lines()
    .filter_map(|l| l.split_once('|'))
    .filter(|(_, dir)| Path::new(dir.trim()) == s.root)
    .map(|(id, _)| id.trim().to_string())
    .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let state = slurm_cmd(
        slurm,
        "squeue",
        &["-h", "--states=all", "-j", &ids[0], "-o", "%T"],
    );
    assert_eq!(state.trim(), "CANCELLED", "{}", w.output());
    assert_eq!(spack_runs(&s, "third"), 0);
    assert_eq!(spack_runs(&s, "hung"), 0);
}

#[test]
fn a_worker_that_starts_during_an_outage_serves_everyone_and_finds_its_job_once_slurm_is_back() {
    let Some((slurm, _serial)) = cluster() else {
        return;
    };
    let s = killed_during_sbatch(slurm, "max_jobs = 4\n", "lost");
    // The orphaned sbatch lands.
    wait_until(
        "the orphaned sbatch landed",
        Duration::from_secs(20),
        || slurm_jobs_named(slurm, "000001-lost").len() == 1,
    );

    // The controller goes down before the next worker starts: it cannot tell yet
    // whether Slurm has the job, and still starts and serves everyone at once.
    let down = Stopped::stop(slurm, "slurmctld");
    let w = s.spawn_worker(&[]);
    let out = s.ok(&["submit", "meanwhile"]);
    assert!(
        !out.contains("has not taken it yet"),
        "{out}\n{}",
        w.output()
    );
    let status = s.ok(&["status"]);
    assert!(status.contains("worker: running"), "{status}");
    assert!(status.contains("being submitted to slurm"), "{status}");
    // Nothing is handed to Slurm while it is unknown whether the lost job is there.
    assert_eq!(s.where_is("000002-meanwhile").as_deref(), Some("pending"));
    // Slurm's clients retry for seconds before they give up; the worker then asks again
    // later, and still serves everyone.
    wait_until("the lookup given up once", Duration::from_secs(60), || {
        w.output().contains("cannot tell whether Slurm has it")
    });
    let out = s.ok(&["cancel", "2"]);
    assert!(!out.contains("not running"), "{out}");
    assert_eq!(s.where_is("000002-meanwhile").as_deref(), Some("cancelled"));
    drop(down);
    wait_until(
        "the lost job done once the controller is back",
        Duration::from_secs(120),
        || s.where_is("000001-lost").as_deref() == Some("done"),
    );
    let log = w.output();
    let ids = slurm_jobs_named(slurm, "000001-lost");
    assert_eq!(ids.len(), 1, "{ids:?}\n{log}");
    assert_eq!(
        slurm_id(&s, "done/000001-lost.toml").map(|i| i.to_string()),
        Some(ids[0].clone())
    );
    assert_eq!(spack_runs(&s, "lost"), 1, "{log}");
    assert_eq!(record(&s, "done/000001-lost.toml").state.attempts, 1);
}

/// Sets slurmctld's `MinJobAge` (how long it remembers a finished job) for the length
/// of a test, and 300 s again however it ends.
struct MinJobAge<'a>(&'a Slurm);

impl<'a> MinJobAge<'a> {
    fn set(slurm: &'a Slurm, secs: u32) -> Self {
        Self::write(slurm, secs);
        MinJobAge(slurm)
    }

    fn write(slurm: &Slurm, secs: u32) {
        let conf = fs::read_to_string(&slurm.conf).unwrap();
        let conf: String = conf
            .lines()
            .map(|l| {
                if l.starts_with("MinJobAge=") {
                    format!("MinJobAge={secs}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        fs::write(&slurm.conf, conf).unwrap();
        let _ = Command::new("scontrol")
            .arg("reconfigure")
            .env("SLURM_CONF", &slurm.conf)
            .status();
    }
}

impl Drop for MinJobAge<'_> {
    fn drop(&mut self) {
        Self::write(self.0, 300);
    }
}

#[test]
fn a_time_limit_slurm_enforced_while_no_worker_ran_is_recorded_as_timed_out() {
    let Some((slurm, _serial)) = cluster() else {
        return;
    };
    // Slurm forgets a finished job 2 s after it ends (and its purge runs), so the next
    // worker has only exec-job's exit file to go by.
    let _age = MinJobAge::set(slurm, 2);
    let mut s = spool(slurm, "");
    s.env
        .push(("SPACK_FAKE_DELAYS".into(), "overrun=600".into()));
    let mut w = s.spawn_worker(&[]);
    s.ok(&["submit", "--timeout", "1m", "overrun"]);
    spack_running_in_slurm(&s, "000001-overrun");
    let id = slurm_id(&s, "running/000001-overrun.toml")
        .unwrap()
        .to_string();
    let stop = s
        .command(&["worker", "stop", "--detach"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    w.wait(Duration::from_secs(5));
    assert!(stop.wait_with_output().unwrap().status.success());
    // Slurm ends it at its time limit (checked about every 30 s), then forgets it.
    wait_until(
        "Slurm to end the job and forget it",
        Duration::from_secs(240),
        || {
            !Command::new("scontrol")
                .args(["show", "job", &id])
                .env("SLURM_CONF", &slurm.conf)
                .output()
                .unwrap()
                .status
                .success()
        },
    );
    assert!(s.path("slurm/000001-overrun.exit").exists());
    let out = s.drain();
    let log = String::from_utf8_lossy(&out.stderr);
    let rec = record(&s, "failed/000001-overrun.toml");
    let reason = rec.state.reason.unwrap_or_default();
    assert!(
        reason.starts_with("timed out (Slurm time limit)"),
        "{reason}\n{log}"
    );
}

#[test]
fn a_worker_killed_again_and_again_around_sbatch_runs_each_install_once() {
    let Some((slurm, _serial)) = cluster() else {
        return;
    };
    let mut s = spool(slurm, "max_jobs = 3\n");
    let path = slow_sbatch(&s, 0.3);
    s.env.push(("PATH".into(), path));
    s.env.push(("SPACK_FAKE_DELAY".into(), "0.5".into()));
    let packages = ["ka", "kb", "kc", "kd", "ke", "kf"];
    s.ok(&["submit"].into_iter().chain(packages).collect::<Vec<_>>());
    // SIGKILL at fixed, uneven moments: before, during and after sbatch calls.
    for ms in [350, 900, 150, 1200, 500, 700, 250, 1000, 400, 600] {
        let mut w = s.spawn_worker(&[]);
        std::thread::sleep(Duration::from_millis(ms));
        w.signal(Signal::SIGKILL);
        w.wait(Duration::from_secs(5));
    }
    let out = s.drain();
    let log = String::from_utf8_lossy(&out.stderr);
    for (i, p) in packages.iter().enumerate() {
        let name = format!("{:06}-{p}", i + 1);
        assert_eq!(s.where_is(&name).as_deref(), Some("done"), "{name}\n{log}");
        assert_eq!(
            spack_runs(&s, p),
            1,
            "{name}: Spack ran more than once\n{log}"
        );
        let rec = record(&s, &format!("done/{name}.toml"));
        assert_eq!(rec.state.attempts, 1, "{name}");
        // Every other Slurm job of that name was a stray, cancelled before it ran Spack.
        let live: Vec<String> = slurm_cmd(
            slurm,
            "squeue",
            &[
                "-h",
                "--states=all",
                &format!("--name=si-{name}"),
                "--format=%i|%T|%Z",
            ],
        )
        .lines()
        .filter(|l| l.ends_with(&format!("|{}", s.root.display())))
        .filter(|l| !l.contains("|CANCELLED|"))
        .map(String::from)
        .collect();
        assert_eq!(live.len(), 1, "{name}: {live:?}\n{log}");
    }
}

#[test]
fn a_detaching_stop_waits_for_an_sbatch_on_its_way_so_its_job_id_is_written() {
    let Some((slurm, _serial)) = cluster() else {
        return;
    };
    let mut s = spool(slurm, "");
    let (gate, path) = gated_sbatch(&s);
    s.env.push(("PATH".into(), path));
    s.env.push(("SPACK_FAKE_DELAY".into(), "1".into()));
    let mut w = s.spawn_worker(&[]);
    s.ok(&["submit", "onitsway"]);
    wait_until(
        "sbatch waiting at the gate",
        Duration::from_secs(10),
        || waiting_at_gate(&gate) == 1,
    );
    w.signal(Signal::SIGUSR1);
    wait_until("the worker detaching", Duration::from_secs(10), || {
        w.output().contains("leaving 1 install(s) running in Slurm")
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        Path::new(&format!("/proc/{}", w.pid())).exists()
            && !fs::read_to_string(format!("/proc/{}/stat", w.pid()))
                .unwrap_or_default()
                .contains(") Z "),
        "the worker left before its sbatch answered"
    );
    fs::write(gate.join("open"), "").unwrap();
    assert!(w.wait(Duration::from_secs(20)).success(), "{}", w.output());
    let id = slurm_id(&s, "running/000001-onitsway.toml");
    assert!(
        id.is_some(),
        "the job ID was not written before the worker left"
    );
    let out = s.drain();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains("looking it up by name"), "{log}");
    assert_eq!(slurm_id(&s, "done/000001-onitsway.toml"), id);
    assert_eq!(spack_runs(&s, "onitsway"), 1);
}

#[test]
fn a_job_whose_sbatch_died_with_its_worker_and_never_landed_is_requeued_uncounted() {
    let Some((slurm, _serial)) = cluster() else {
        return;
    };
    let mut s = spool(slurm, "");
    let (gate, path) = gated_sbatch(&s);
    s.env.push(("PATH".into(), path));
    let mut w = s.spawn_worker(&[]);
    s.ok(&["submit", "unlanded"]);
    wait_until(
        "sbatch waiting at the gate",
        Duration::from_secs(10),
        || waiting_at_gate(&gate) == 1,
    );
    w.signal(Signal::SIGKILL);
    w.wait(Duration::from_secs(5));
    // The orphaned sbatch is refused by Slurm: the job never lands.
    fs::write(gate.join("refuse"), "").unwrap();
    fs::write(gate.join("open"), "").unwrap();
    wait_until("the orphaned sbatch ended", Duration::from_secs(20), || {
        waiting_at_gate(&gate) == 0
    });
    fs::remove_file(gate.join("refuse")).unwrap();
    assert_eq!(slurm_id(&s, "running/000001-unlanded.toml"), None);

    let out = s.drain();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("Slurm never got it"), "{log}");
    assert_eq!(
        s.where_is("000001-unlanded").as_deref(),
        Some("done"),
        "{log}"
    );
    // The attempt Slurm never ran is not counted.
    assert_eq!(record(&s, "done/000001-unlanded.toml").state.attempts, 1);
    assert_eq!(spack_runs(&s, "unlanded"), 1);
    let job_log = s.read("logs/000001-unlanded.log");
    assert!(
        job_log.contains("which never got it; back to pending"),
        "{job_log}"
    );
}
