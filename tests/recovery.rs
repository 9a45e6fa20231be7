//! Crash recovery: a spool left mid-transition, and a worker killed with SIGKILL while
//! Spack runs, are brought back to exactly one state per job by the next start.

mod support;

use nix::sys::signal::Signal;
use spack_installer::job::State;
use std::fs;
use std::time::Duration;
use support::{TestSpool, record, wait_until};

#[test]
fn a_spool_left_mid_transition_is_recovered() {
    let s = TestSpool::new();
    // Crash after intake's claim: a claimed file and no job 7 yet.
    fs::write(s.path("tmp/claim.000007.t7.toml"), "spec = \"claimed\"\n").unwrap();
    // A record of job `id` in state directory `dir`, as a crash left it.
    let put = |dir: &str, id: u64, pkg: &str, state: State, attempts: u32| {
        fs::write(
            s.path(&format!("{dir}/{id:06}-{pkg}.toml")),
            record(id, pkg, state, attempts),
        )
        .unwrap()
    };
    // Crash after a pending job was rewritten as cancelled, before the move.
    put("pending", 2, "cancelme", State::Cancelled, 0);
    // Crash between finish's rewrite and move: the outcome is recorded.
    put("running", 3, "finished", State::Done, 1);
    // The worker died while Spack ran (first attempt) ...
    put("running", 4, "crashed", State::Running, 1);
    // ... and for the third time.
    put("running", 5, "cursed", State::Running, 3);
    // Crash between start's move and rewrite: never started.
    put("running", 6, "unstarted", State::Pending, 0);
    // A temp file whose rename never happened.
    fs::write(s.path("tmp/.half-written"), "spec = ").unwrap();
    // counter lost.
    fs::remove_file(s.path("counter")).unwrap();

    s.drain();

    assert_eq!(s.where_is("000002-cancelme").as_deref(), Some("cancelled"));
    assert_eq!(s.where_is("000003-finished").as_deref(), Some("done"));
    assert_eq!(s.where_is("000004-crashed").as_deref(), Some("done"));
    assert!(s.read("done/000004-crashed.toml").contains("attempts = 2"));
    assert_eq!(s.where_is("000005-cursed").as_deref(), Some("failed"));
    assert!(
        s.read("failed/000005-cursed.toml")
            .contains("worker died 3 times while installing")
    );
    assert_eq!(s.where_is("000006-unstarted").as_deref(), Some("done"));
    assert_eq!(s.where_is("000007-claimed").as_deref(), Some("done"));
    // Spack ran for the three that needed it, once each; never for 3 ("finished").
    let mut order = s.install_order();
    order.sort();
    assert_eq!(order, vec!["claimed", "crashed", "unstarted"]);
    assert!(s.ls("tmp").is_empty(), "{:?}", s.ls("tmp"));
    // The next ID continues after the highest seen.
    s.ok(&["submit", "zlib"]);
    s.drain();
    assert_eq!(s.where_is("000008-zlib").as_deref(), Some("done"));
}

#[test]
fn kill_9_while_spack_runs_then_restart_requeues_and_leaves_no_orphan() {
    let mut s = TestSpool::new();
    s.env.push(("SPACK_FAKE_DELAYS".into(), "slow=30".into()));
    let w = s.spawn_worker(&[]);
    s.ok(&["submit", "slow"]);
    wait_until("slow running", Duration::from_secs(10), || {
        s.where_is("000001-slow").as_deref() == Some("running")
    });
    let marker = format!("SPACK_INSTALLER_JOB={}/000001-slow", s.root.display());
    wait_until("spack started", Duration::from_secs(10), || {
        !support::processes_with(&marker).is_empty()
    });
    w.signal(Signal::SIGKILL);
    drop(w);
    // PDEATHSIG kills Spack itself; the restarted worker kills what Spack left behind.
    s.env.retain(|(k, _)| k != "SPACK_FAKE_DELAYS");
    s.drain();
    let left = support::processes_with(&marker);
    assert!(
        left.is_empty(),
        "processes of the killed job remain: {left:?}"
    );
    assert_eq!(s.where_is("000001-slow").as_deref(), Some("done"));
    let rec = s.read("done/000001-slow.toml");
    assert!(rec.contains("attempts = 2"), "{rec}");
}
