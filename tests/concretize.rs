//! The concretization stage end to end: the real binary and a real spool, with the fake
//! Spack answering `spec --json`, `find --json` and `install -f` in a real Spack 0.23's
//! formats from a small package table (tests/fake-spack/concretize.awk).

mod support;

use std::fs;
use std::path::Path;
use std::time::Duration;
use support::{TestSpool, wait_until};

/// hdf5 needs openmpi and zlib; openmpi needs zlib and hwloc.
const REPO: &str = "\
hdf5 1.14.3 zlib openmpi
openmpi 5.0.3 zlib hwloc
hwloc 2.9.1
zlib 1.3.1
gcc 13.2.0
netcdf-c 4.9.2 zlib
bzip2 1.0.8
";

/// A spool whose fake Spack knows `REPO` and keeps a store, with the stage on as given.
fn spool(mode: &str, extra: &str) -> TestSpool {
    let mut s = TestSpool::with_config(&format!("concretize = \"{mode}\"\n{extra}"));
    let repo = s.dir.path().join("repo");
    fs::write(&repo, REPO).unwrap();
    let store = s.dir.path().join("store");
    s.env
        .push(("SPACK_FAKE_REPO".into(), repo.display().to_string()));
    s.env
        .push(("SPACK_FAKE_STORE".into(), store.display().to_string()));
    s
}

fn store(s: &TestSpool) -> String {
    fs::read_to_string(s.dir.path().join("store")).unwrap_or_default()
}

#[test]
fn a_spec_spack_cannot_concretize_fails_at_once_with_spacks_reason() {
    let s = spool("required", "");
    s.ok(&["submit", "zlib@99.9", "nosuchpkg"]);
    s.drain();
    assert_eq!(
        s.ls("failed"),
        vec!["000001-zlib.toml", "000002-nosuchpkg.toml"]
    );
    let unsat = s.read("failed/000001-zlib.toml");
    assert!(
        unsat.contains("Spack cannot concretize `zlib@99.9`: concretization failed")
            && unsat.contains("Cannot satisfy 'zlib@99.9'"),
        "{unsat}"
    );
    let unknown = s.read("failed/000002-nosuchpkg.toml");
    assert!(
        unknown.contains("Package 'spack.pkg.builtin.nosuchpkg' not found."),
        "{unknown}"
    );
    assert!(s.installs().is_empty(), "nothing was installed");
    // Spack was asked by argv, the canonical spec as one argument.
    assert!(
        s.spack_runs("spec")
            .contains(&vec!["spec".into(), "--json".into(), "zlib@99.9".into()]),
        "{:?}",
        s.spack_runs("spec")
    );
}

#[test]
fn submit_wait_prints_spacks_reason_for_a_refused_spec() {
    let s = spool("required", "");
    let mut w = s.spawn_worker(&[]);
    let out = s.run(&["submit", "--wait", "zlib@99.9"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Cannot satisfy 'zlib@99.9'"), "{text}");
    s.ok(&["worker", "stop"]);
    w.wait(Duration::from_secs(20));
}

#[test]
fn the_install_runs_the_concrete_spec_that_was_checked() {
    let s = spool("required", "");
    s.ok(&["submit", "hdf5 +mpi"]);
    s.drain();
    assert_eq!(s.ls("done"), vec!["000001-hdf5.toml"]);
    let installs = s.installs_without_jobs();
    let file = s.path("concrete/000001-hdf5.json");
    assert_eq!(
        installs,
        vec![vec![
            "install".to_string(),
            "--fail-fast".into(),
            "-f".into(),
            file.display().to_string()
        ]]
    );
    let rec = s.read("done/000001-hdf5.toml");
    assert!(rec.contains("[state.concrete]"), "{rec}");
    assert!(rec.contains("version = \"1.14.3\""), "{rec}");
    assert!(rec.contains("nodes = 4"), "{rec}");
    // Dependencies before the packages that need them.
    let json = s.read("concrete/000001-hdf5.json");
    assert!(json.starts_with("{\"spec\":"), "kept as Spack printed it");
    let to_build: Vec<&str> = rec
        .lines()
        .skip_while(|l| !l.starts_with("to_build"))
        .take_while(|l| !l.starts_with(']') && !l.is_empty())
        .collect();
    let order = to_build.join("\n");
    let pos = |p: &str| order.find(&format!("\"{p}@")).unwrap_or(usize::MAX);
    assert!(
        pos("zlib") < pos("openmpi") && pos("openmpi") < pos("hdf5"),
        "{order}"
    );
    // Every node was built, once.
    assert_eq!(store(&s).lines().count(), 4, "{}", store(&s));
    // The concretization's time is in the metrics.
    let metrics = s.read("metrics.prom");
    assert!(
        metrics.contains("spack_installer_concretize_duration_seconds_count 1\n"),
        "{metrics}"
    );
    // cleanup removes the concrete spec with the job.
    let aged = rec
        .lines()
        .map(|l| match l.starts_with("finished_at") {
            true => "finished_at = \"2020-01-01T00:00:00Z\"",
            false => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    fs::write(s.path("done/000001-hdf5.toml"), aged).unwrap();
    s.ok(&["cleanup", "--keep-days", "7"]);
    assert!(s.ls("done").is_empty() && s.ls("concrete").is_empty());
}

#[test]
fn a_job_whose_dag_is_installed_ends_done_without_an_install() {
    let s = spool("required", "");
    s.ok(&["submit", "zlib"]);
    s.drain();
    assert_eq!(s.installs().len(), 1);
    s.ok(&["submit", "--force", "zlib@1.3"]);
    s.drain();
    assert_eq!(s.ls("done"), vec!["000001-zlib.toml", "000002-zlib.toml"]);
    let rec = s.read("done/000002-zlib.toml");
    assert!(rec.contains("reason = \"already installed (zlib/"), "{rec}");
    assert!(rec.contains("attempts = 0"), "{rec}");
    assert_eq!(s.installs().len(), 1, "no second install ran");
    let show = s.ok(&["show", "2"]);
    assert!(show.contains("already installed"), "{show}");
}

#[test]
fn the_same_dag_spelled_twice_is_built_once_and_both_jobs_end_done() {
    // gcc holds the only slot while both hdf5 jobs are concretized.
    let mut s = spool("required", "");
    s.env.push(("SPACK_FAKE_DELAYS".into(), "gcc=3".into()));
    let mut w = s.spawn_worker(&[]);
    s.ok(&["submit", "gcc"]);
    wait_until("gcc runs", Duration::from_secs(10), || {
        s.ls("running").len() == 1
    });
    s.ok(&["submit", "hdf5+mpi"]);
    s.ok(&["submit", "hdf5 +mpi ^openmpi"]);
    wait_until("the second hdf5 is linked", Duration::from_secs(20), || {
        fs::read_to_string(s.path("pending/000003-hdf5.toml"))
            .is_ok_and(|r| r.contains("same_as = 2"))
    });
    let status = s.ok(&["status"]);
    assert!(status.contains("same as 000002"), "{status}");
    assert!(status.contains("to build 4 of 4"), "{status}");
    let show = s.ok(&["show", "3"]);
    assert!(show.contains("same DAG as   000002"), "{show}");
    assert!(show.contains("[ ] zlib@1.3.1/"), "{show}");
    wait_until("all three done", Duration::from_secs(30), || {
        s.ls("done").len() == 3
    });
    s.ok(&["worker", "stop"]);
    w.wait(Duration::from_secs(20));
    let linked = s.read("done/000003-hdf5.toml");
    assert!(
        linked.contains("installed by job 000002, which built the same DAG"),
        "{linked}"
    );
    let file = |n: &str| s.path(&format!("concrete/{n}.json")).display().to_string();
    let installed: Vec<String> = s
        .installs_without_jobs()
        .iter()
        .map(|a| a[3].clone())
        .collect();
    assert_eq!(
        installed,
        vec![file("000001-gcc"), file("000002-hdf5")],
        "{:?}",
        s.installs()
    );
}

/// A spool whose Spack configuration lives in `conf`, with one zlib job concretized
/// while the queue is paused, then the configuration changed by an admin.
fn concretized_then_reconfigured(mode: &str, conf: &Path) -> (TestSpool, support::WorkerProc) {
    let s = spool(
        mode,
        &format!("spack_config_paths = [\"{}\"]\n", conf.display()),
    );
    s.ok(&["pause"]);
    s.ok(&["submit", "zlib"]);
    let w = s.spawn_worker(&[]);
    wait_until("zlib concretized", Duration::from_secs(20), || {
        fs::read_to_string(s.path("pending/000001-zlib.toml"))
            .is_ok_and(|r| r.contains("[state.concrete]"))
    });
    // Records and mtimes count whole seconds: make the change visibly later.
    std::thread::sleep(Duration::from_millis(1100));
    fs::write(conf.join("packages.yaml"), "packages: {}\n").unwrap();
    (s, w)
}

/// [`concretized_then_reconfigured`], then the queue resumed until zlib is done.
fn reconfigured_then_run(mode: &str, conf: &Path) -> TestSpool {
    let (s, mut w) = concretized_then_reconfigured(mode, conf);
    s.ok(&["resume"]);
    wait_until("zlib done", Duration::from_secs(30), || {
        s.ls("done").len() == 1
    });
    s.ok(&["worker", "stop"]);
    w.wait(Duration::from_secs(20));
    s
}

#[test]
fn a_changed_spack_configuration_is_concretized_again_before_the_install() {
    let dir = tempfile::tempdir().unwrap();
    let s = reconfigured_then_run("required", dir.path());
    assert_eq!(s.spack_runs("spec").len(), 2, "{:?}", s.spack_runs("spec"));
    let file = s.path("concrete/000001-zlib.json").display().to_string();
    assert_eq!(
        s.installs_without_jobs(),
        vec![vec![
            "install".to_string(),
            "--fail-fast".into(),
            "-f".into(),
            file
        ]]
    );
}

#[test]
fn in_background_mode_a_stale_concrete_spec_is_not_installed() {
    let dir = tempfile::tempdir().unwrap();
    let s = reconfigured_then_run("background", dir.path());
    // Started before it could be concretized again: Spack concretizes the spec itself.
    assert_eq!(
        s.installs_without_jobs(),
        vec![vec![
            "install".to_string(),
            "--fail-fast".into(),
            "zlib".into()
        ]]
    );
}

#[test]
fn in_background_mode_a_ready_job_does_not_wait_for_spack_to_answer() {
    let mut s = spool("background", "");
    s.env
        .push(("SPACK_FAKE_CONCRETIZE_DELAY".into(), "30".into()));
    let mut w = s.spawn_worker(&[]);
    s.ok(&["submit", "zlib"]);
    wait_until("zlib done", Duration::from_secs(20), || {
        s.ls("done").len() == 1
    });
    assert_eq!(
        s.installs_without_jobs(),
        vec![vec![
            "install".to_string(),
            "--fail-fast".into(),
            "zlib".into()
        ]]
    );
    // The worker stops without waiting for the lane's `spack spec`, which dies with it
    // (PR_SET_PDEATHSIG): nothing of this spool's Spack is left running.
    let fake_env = s
        .env
        .iter()
        .find(|(k, _)| k == "SPACK_FAKE_RECORD")
        .map(|(k, v)| format!("{k}={v}"))
        .unwrap();
    assert!(
        !support::processes_with(&fake_env).is_empty(),
        "the lane's spack spec should still be running"
    );
    s.ok(&["worker", "stop", "--now"]);
    w.wait(Duration::from_secs(20));
    wait_until(
        "the lane's spack spec to be gone",
        Duration::from_secs(10),
        || support::processes_with(&fake_env).is_empty(),
    );
}

#[test]
fn off_and_dry_run_never_ask_spack() {
    let s = spool("off", "");
    s.ok(&["submit", "zlib"]);
    s.drain();
    assert!(s.spack_runs("spec").is_empty());
    let s = spool("required", "");
    s.ok(&["submit", "zlib"]);
    let out = s.run(&["worker", "run", "--until-idle", "--dry-run"]);
    assert!(out.status.success(), "{out:?}");
    assert!(s.spack_runs("spec").is_empty());
    assert_eq!(s.ls("done").len(), 1);
}

#[test]
fn plain_submit_says_what_spack_made_of_the_spec() {
    let s = spool("required", "");
    let mut w = s.spawn_worker(&[]);
    s.ok(&["pause"]);
    let out = s.run(&["submit", "zlib@99.9"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("000001-zlib failed: Spack cannot concretize `zlib@99.9`")
            && text.contains("Cannot satisfy 'zlib@99.9'"),
        "{text}"
    );
    let ok = s.ok(&["submit", "hdf5"]);
    assert!(
        ok.contains("queued as 000002-hdf5: 4 of 4 packages to build"),
        "{ok}"
    );
    s.ok(&["worker", "stop"]);
    w.wait(Duration::from_secs(20));
}

#[test]
fn estimates_for_packages_never_built_here_come_from_the_install_tree() {
    let tree = tempfile::tempdir().unwrap();
    let s = spool(
        "required",
        &format!("spack_install_tree = \"{}\"\n", tree.path().display()),
    );
    // Another openmpi installed long ago, built from source in 10 minutes.
    let prefix = tree
        .path()
        .join("linux-debian12-x86_64/gcc-12.2.0")
        .join("openmpi-4.1.6-abcdefghijklmnopqrstuvwxyz234567/.spack");
    fs::create_dir_all(&prefix).unwrap();
    fs::write(
        prefix.join("install_times.json"),
        r#"{"total":600.5,"phases":[],"name":"openmpi","cache":false,"hash":"abcdefghijklmnopqrstuvwxyz234567"}"#,
    )
    .unwrap();
    s.ok(&["pause"]);
    s.ok(&["submit", "hdf5"]);
    let mut w = s.spawn_worker(&[]);
    wait_until("hdf5 concretized", Duration::from_secs(20), || {
        fs::read_to_string(s.path("pending/000001-hdf5.toml"))
            .is_ok_and(|r| r.contains("[state.concrete]"))
    });
    let rec = s.read("pending/000001-hdf5.toml");
    assert!(rec.contains("estimate_s = 600"), "{rec}");
    assert!(rec.contains("openmpi = 600"), "{rec}");
    let show = s.ok(&["show", "1"]);
    assert!(show.contains("build time    10m"), "{show}");
    assert!(show.contains("[ ] openmpi@5.0.3/"), "{show}");
    assert!(show.contains("(no estimate)"), "{show}");
    s.ok(&["worker", "stop"]);
    w.wait(Duration::from_secs(20));
}

/// Concretize everything while paused, then let the queue run.
fn concretized_then_resumed(s: &TestSpool, jobs: usize) -> support::WorkerProc {
    let w = s.spawn_worker(&[]);
    wait_until("all concretized", Duration::from_secs(30), || {
        s.ls("pending").len() == jobs
            && s.ls("pending").iter().all(|f| {
                fs::read_to_string(s.path(&format!("pending/{f}")))
                    .is_ok_and(|r| r.contains("[state.concrete]"))
            })
    });
    s.ok(&["resume"]);
    w
}

#[test]
fn a_job_waits_for_the_job_whose_root_is_in_its_dag_without_being_told() {
    let s = spool("required", "");
    s.ok(&["pause"]);
    s.ok(&["submit", "-p", "high", "hdf5"]);
    s.ok(&["submit", "-p", "low", "zlib"]);
    let mut w = concretized_then_resumed(&s, 2);
    let plan = s.ok(&["optimize"]);
    assert!(plan.contains("waits for 000002-zlib"), "{plan}");
    wait_until("both done", Duration::from_secs(30), || {
        s.ls("done").len() == 2
    });
    s.ok(&["worker", "stop"]);
    w.wait(Duration::from_secs(20));
    let order: Vec<String> = s
        .installs_without_jobs()
        .iter()
        .map(|a| a[3].rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(order, vec!["000002-zlib.json", "000001-hdf5.json"]);
}

#[test]
fn two_jobs_that_would_build_a_node_in_common_do_not_run_at_once() {
    let mut s = spool("required", "max_parallel = 3\n");
    s.env.push(("SPACK_FAKE_DELAY".into(), "0.3".into()));
    s.ok(&["pause"]);
    // Both build zlib; bzip2 shares nothing with them.
    s.ok(&["submit", "hdf5", "netcdf-c", "bzip2"]);
    let mut w = concretized_then_resumed(&s, 3);
    wait_until("all done", Duration::from_secs(60), || {
        s.ls("done").len() == 3
    });
    s.ok(&["worker", "stop"]);
    w.wait(Duration::from_secs(20));
    let events = fs::read_to_string(s.dir.path().join("events.log")).unwrap();
    let span = |pkg: &str| -> (u128, u128) {
        let at = |what: &str| -> u128 {
            events
                .lines()
                .find(|l| l.starts_with(&format!("{what} {pkg} ")))
                .unwrap_or_else(|| panic!("no {what} of {pkg}: {events}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        (at("start"), at("end"))
    };
    let (h, n, b) = (span("hdf5"), span("netcdf-c"), span("bzip2"));
    assert!(
        h.1 <= n.0 || n.1 <= h.0,
        "hdf5 {h:?} and netcdf-c {n:?} overlapped"
    );
    // bzip2 shared nothing: it ran beside the first of them.
    let first = if h.0 < n.0 { h } else { n };
    assert!(b.0 < first.1, "bzip2 {b:?} waited for {first:?}");
}

#[test]
fn submit_does_not_wait_for_spack_when_the_worker_runs_dry() {
    let s = spool("background", "");
    let mut w = s.spawn_worker(&["--dry-run"]);
    s.ok(&["pause"]);
    // The worker asks Spack nothing in a dry run: submit must not wait for an answer
    // (it would wait its whole 30 s for one that never comes).
    let t = std::time::Instant::now();
    let out = s.ok(&["submit", "zlib"]);
    assert!(out.contains("queued as 000001-zlib"), "{out}");
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    s.ok(&["worker", "stop"]);
    w.wait(Duration::from_secs(20));
}
