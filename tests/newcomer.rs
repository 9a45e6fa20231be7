//! What a new admin and a new user tripped over (issue 15), each against the real binary
//! and a real spool: a broken config, a spinning `logs -f`, errors for people who cannot
//! use the spool, a missing spool, man pages, `--chain`, `validate` and the smaller points.

mod support;

use std::fs;
use std::time::Duration;
use support::{TestSpool, wait_until};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every command that touches the spool reports a config it cannot read or parse, with
/// the place of the mistake, and exits 2 without acting.
#[test]
fn every_command_reports_a_broken_config_with_line_and_column() {
    let s = TestSpool::new();
    s.ok(&["submit", "zlib"]);
    s.drain();
    let bad = s.dir.path().join("bad.toml");
    let commands: &[&[&str]] = &[
        &["status"],
        &["submit", "cmake"],
        &["show", "1"],
        &["logs", "1"],
        &["cancel", "1"],
        &["priority", "1", "high"],
        &["pause"],
        &["resume"],
        &["retry", "1"],
        &["failed"],
        &["cleanup", "--dry-run"],
        &["optimize"],
        &["auth-status"],
        &["config-check"],
        &["worker", "info"],
        &["worker", "run", "--until-idle"],
    ];
    for (text, place) in [
        ("spack = \"/bin/true\"\nspak = \"/x\"\n", "line 2, column 1"),
        ("max_parallel = \"two\"\n", "line 1, column 16"),
    ] {
        fs::write(&bad, text).unwrap();
        for args in commands {
            let out = s
                .command(args)
                .env("SPACK_INSTALLER_CONFIG", &bad)
                .output()
                .unwrap();
            let err = stderr(&out);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{args:?} with {text:?}: {err}{}",
                stdout(&out)
            );
            assert!(
                err.contains(place) && err.contains(&bad.display().to_string()),
                "{args:?} with {text:?} does not say where: {err}"
            );
        }
    }
    for args in commands {
        let out = s
            .command(args)
            .env("SPACK_INSTALLER_CONFIG", "/nope.toml")
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("/nope.toml") && err.contains("No such file"),
            "{args:?}: {err}"
        );
    }
    // Nothing was queued, cancelled or paused by the refused commands.
    assert_eq!(s.ls("incoming"), Vec::<String>::new());
    assert!(!s.path("paused").exists());
}

/// CPU time (user + system) of a process, in clock ticks, from /proc/PID/stat.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // After the command name: state is field 3, utime field 14, stime field 15.
    rest[11].parse::<u64>().unwrap() + rest[12].parse::<u64>().unwrap()
}

/// `logs -f` on a running job whose log is quiet must sleep, not spin on the events its
/// own reads of the watched directories cause.
#[test]
fn following_a_quiet_log_costs_almost_no_cpu() {
    let mut s = TestSpool::new();
    s.env.push(("SPACK_FAKE_STEPS".into(), "2".into()));
    s.env.push(("SPACK_FAKE_DELAY".into(), "4".into()));
    let _w = s.spawn_worker(&[]);
    s.ok(&["submit", "hdf5"]);
    wait_until("running", Duration::from_secs(10), || {
        s.where_is("000001-hdf5").as_deref() == Some("running")
    });
    let mut f = s
        .command(&["logs", "-f", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_ticks(f.id());
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_ticks(f.id()) - before;
    let _ = f.kill();
    let _ = f.wait();
    let hz: u64 = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100);
    eprintln!(
        "logs -f used {used} ticks ({} ms) of CPU in 3 s of a quiet log",
        used * 1000 / hz
    );
    // A spinning follower burns most of a core (2.6 s in 3 s); a sleeping one a few ms.
    assert!(
        used * 1000 / hz < 300,
        "logs -f used {} ms of CPU in 3 s while the log was quiet",
        used * 1000 / hz
    );
}
