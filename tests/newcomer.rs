//! What a new admin and a new user tripped over (issue 15), each against the real binary
//! and a real spool: a broken config, a spinning `logs -f`, errors for people who cannot
//! use the spool, a missing spool, man pages, `--chain`, `validate` and the smaller points.

#[path = "security/site.rs"]
mod site;
mod support;

use std::fs;
use std::io::BufRead;
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

/// `submit --wait` with no worker says so at once, keeps waiting, and ends with the job
/// once a worker takes it.
#[test]
fn submit_wait_without_a_worker_says_so_at_once() {
    let s = TestSpool::new();
    let child = s
        .command(&["submit", "--wait", "zlib"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Killed if an assertion below fails, so no waiting submit outlives the test.
    let mut child = support::WorkerProc {
        child,
        log: std::path::PathBuf::new(),
        _log: None,
    };
    let err = child.child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(3))
        .expect("submit --wait printed nothing for 3 s with no worker running");
    assert!(
        first.contains("no worker is running") && first.contains("wait for one"),
        "{first}"
    );
    // Still waiting, and quietly: it has not given up, nor does it spin.
    std::thread::sleep(Duration::from_secs(2));
    assert!(child.child.try_wait().unwrap().is_none());
    let before = cpu_ticks(child.child.id());
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(child.child.id()) - before;
    assert!(used < 30, "submit --wait used {used} ticks of CPU in 2 s");
    s.drain();
    let status = child.wait(Duration::from_secs(10));
    let mut text = String::new();
    std::io::Read::read_to_string(&mut child.child.stdout.take().unwrap(), &mut text).unwrap();
    assert!(status.success(), "{text}");
    assert!(text.contains("(done)"), "{text}");
}

/// `--after` naming a job that does not exist fails at once with exit 4, queueing nothing.
#[test]
fn submit_after_a_job_that_does_not_exist_fails_at_once() {
    let s = TestSpool::new();
    s.ok(&["submit", "zlib"]);
    s.drain();
    let out = s.run(&["submit", "--after", "999", "hdf5"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("999"), "{}", stderr(&out));
    assert_eq!(s.ls("incoming"), Vec::<String>::new());
    // An existing one (finished, here) is fine, and so is one that a file waiting in
    // incoming/ will get when a worker takes it.
    s.ok(&["submit", "--after", "1", "hdf5"]);
    s.ok(&["submit", "--after", "2", "cmake"]);
    let out = s.run(&["submit", "--after", "4", "llvm"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    s.drain();
    assert_eq!(s.where_is("000003-cmake").as_deref(), Some("done"));
}

/// With no spool, every command that reads one says how to create it, once.
#[test]
fn a_missing_spool_is_explained_once() {
    let s = TestSpool::new();
    let gone = s.dir.path().join("no-spool");
    for args in [
        &["status"][..],
        &["show", "1"],
        &["optimize"],
        &["failed"],
        &["logs", "1"],
        &["cleanup", "--dry-run"],
        &["cancel", "1"],
        &["submit", "zlib"],
        &["config-check"],
    ] {
        let out = s
            .command(args)
            .env("SPACK_INSTALLER_SPOOL", &gone)
            .output()
            .unwrap();
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(!out.status.success(), "{args:?}: {all}");
        assert_eq!(
            all.matches("init").count(),
            1,
            "{args:?} does not say how to create a spool exactly once: {all}"
        );
        assert!(
            all.contains(&format!("--spool {} init", gone.display())),
            "{args:?}: {all}"
        );
    }
}

/// Someone outside the group gets who they are, the group they need and what an admin
/// runs, not a raw `Permission denied`; config-check says the same once and does not call
/// a running worker one that never ran.
#[test]
fn people_outside_the_group_are_told_what_to_ask_for() {
    if !site::root_or_skip("people_outside_the_group_are_told_what_to_ask_for") {
        return;
    }
    let u = site::users();
    let s = site::Site::new("");
    let _w = s.spawn_worker();
    s.submit(&u.alice, &["zlib"]);
    for args in [
        &["status"][..],
        &["show", "1"],
        &["cancel", "1"],
        &["logs", "1"],
        &["optimize"],
        &["failed"],
    ] {
        let out = s.cli(&u.mallory, args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {err}");
        assert!(
            !err.contains("os error 13"),
            "{args:?} prints the raw error: {err}"
        );
        assert!(
            err.contains("mallory")
                && err.contains(site::GROUP)
                && err.contains(&format!("usermod -aG {} mallory", site::GROUP)),
            "{args:?}: {err}"
        );
    }
    let out = s.cli(&u.mallory, &["config-check"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!out.status.success(), "{text}");
    assert!(!text.contains("never run"), "{text}");
    assert_eq!(text.matches("usermod -aG").count(), 1, "{text}");
    assert!(!text.contains("`spack-installer init`"), "{text}");
    // A member sees the running worker.
    let out = s.cli(&u.alice, &["config-check"]);
    let text = stdout(&out);
    assert!(text.contains("worker: running"), "{text}");
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// `--chain` makes each job wait for the one before it, that job by its ID, not any job
/// of its package; with no worker to give IDs it waits by package and says so.
#[test]
fn chain_records_the_previous_jobs_id() {
    let s = TestSpool::new();
    let w = s.spawn_worker(&[]);
    s.ok(&["pause"]);
    s.ok(&["submit", "zlib"]);
    s.ok(&["submit", "--chain", "--force", "zlib", "hdf5", "netcdf-c"]);
    let hdf5 = json(&s.ok(&["show", "3", "--json"]));
    assert_eq!(hdf5["spec"], "hdf5", "{hdf5}");
    assert_eq!(hdf5["after"], serde_json::json!([2]), "{hdf5}");
    assert_eq!(hdf5["dependencies"], serde_json::json!([]), "{hdf5}");
    let netcdf = json(&s.ok(&["show", "4", "--json"]));
    assert_eq!(netcdf["after"], serde_json::json!([3]), "{netcdf}");
    drop(w);
    // No worker: no IDs yet, so by package, said on stderr.
    let out = s.run(&["submit", "--chain", "cmake", "llvm"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("llvm: waits for any queued cmake job"),
        "{}",
        stderr(&out)
    );
}

/// `validate` takes the stack files `submit --file` takes, and points into them.
#[test]
fn validate_checks_stack_files_too() {
    let s = TestSpool::new();
    let stack = s.dir.path().join("stack.toml");
    fs::write(
        &stack,
        "[[job]]\nspec = \"cmake\"\n\n[[job]]\nspec = \"llvm\"\ndependencies = [\"cmake\"]\n",
    )
    .unwrap();
    let out = s.run(&["validate", stack.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("2 jobs"), "{}", stdout(&out));
    let bad = s.dir.path().join("bad-stack.toml");
    fs::write(
        &bad,
        "[[job]]\nspec = \"cmake\"\n\n[[job]]\nspec = \"llvm\"\npriority = \"urgent\"\n",
    )
    .unwrap();
    let out = s.run(&["validate", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("line 6, column 12"),
        "{}",
        stdout(&out)
    );
    // What validate accepts, submit --file takes.
    s.ok(&["submit", "--file", stack.to_str().unwrap()]);
}

/// `cleanup` without `--keep-days` takes the config's `keep_days` (what the daily timer
/// runs); the flag still wins.
#[test]
fn cleanup_takes_keep_days_from_the_config() {
    let s = TestSpool::new();
    s.ok(&["submit", "zlib"]);
    s.drain();
    std::thread::sleep(Duration::from_millis(1100));
    // The default keeps a job that just finished.
    let out = s.ok(&["cleanup"]);
    assert!(
        out.contains("removed 0 finished job(s) older than 7 day(s)"),
        "{out}"
    );
    fs::write(
        &s.config,
        format!("{}keep_days = 0\n", fs::read_to_string(&s.config).unwrap()),
    )
    .unwrap();
    let out = s.ok(&["cleanup", "--keep-days", "1"]);
    assert!(out.contains("removed 0"), "{out}");
    let out = s.ok(&["cleanup"]);
    assert!(
        out.contains("removed 1 finished job(s) older than 0 day(s)"),
        "{out}"
    );
    assert_eq!(s.ls("done"), Vec::<String>::new());
}

/// Run `args` with stdout on a pseudo-terminal `cols` wide (util-linux `script`), or
/// None when `script` is not there.
fn on_terminal(s: &TestSpool, cols: u16, args: &[&str]) -> Option<String> {
    let cmd = format!(
        "stty cols {cols} rows 50; {} {}",
        support::BIN,
        args.iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let base = s.command(&[]);
    let mut c = std::process::Command::new("script");
    c.args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::null());
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let out = c.output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).replace('\r', ""))
}

/// Tables fit an 80-column terminal (long cells wrap), and piped ones carry no padding
/// after the last column.
#[test]
fn tables_fit_the_terminal_and_carry_no_padding() {
    let s = TestSpool::with_config("[slurm]\npartition = \"build\"\nmax_jobs = 4\n");
    s.ok(&[
        "submit",
        "--note",
        "a long note",
        "hdf5@1.14.3 +mpi +fortran +cxx +hl +szip +threadsafe ^openmpi@4.1.6 fabrics=ucx schedulers=slurm ^zlib@1.3.1",
    ]);
    for args in [&["status"][..], &["config-check"], &["status", "-v"]] {
        let out = s.run(args);
        for l in stdout(&out).lines() {
            assert!(!l.ends_with(' '), "{args:?} pads its lines: {l:?}");
        }
    }
    let piped = stdout(&s.run(&["config-check"]));
    let slurm = piped
        .lines()
        .find(|l| l.trim_start().starts_with("slurm "))
        .unwrap();
    assert!(
        slurm.contains("partition=build") && slurm.contains("max_jobs=4") && !slurm.contains('{'),
        "{slurm}"
    );
    let Some(_) = on_terminal(&s, 80, &["status"]) else {
        eprintln!(
            "SKIPPED the terminal half of tables_fit_the_terminal_and_carry_no_padding: no `script` (util-linux)"
        );
        return;
    };
    for args in [&["status"][..], &["config-check"]] {
        let text = on_terminal(&s, 80, args).unwrap();
        assert!(
            text.contains("SETTING") || text.contains("SPEC"),
            "{args:?}: {text}"
        );
        let mut in_table = false;
        for l in text.lines() {
            in_table |= l.contains("SETTING") || l.contains(" ID ");
            if l.starts_with("ok:") || l.starts_with("PROBLEM") || l.starts_with("warning") {
                in_table = false;
            }
            assert!(
                !in_table || l.chars().count() <= 80,
                "{args:?}: a table row wider than the 80-column terminal: {l:?}\n{text}"
            );
        }
    }
}

/// On a terminal, `logs -f` draws no full bar at `0/0` before Spack has said how many
/// packages there are.
#[test]
fn the_progress_bar_is_not_full_before_the_total_is_known() {
    let mut s = TestSpool::new();
    s.env.push(("SPACK_FAKE_STEPS".into(), "2".into()));
    s.env.push(("SPACK_FAKE_DELAY".into(), "1".into()));
    let _w = s.spawn_worker(&[]);
    s.ok(&["submit", "hdf5"]);
    wait_until("running", Duration::from_secs(10), || {
        s.where_is("000001-hdf5").as_deref() == Some("running")
    });
    let Some(text) = on_terminal(&s, 100, &["logs", "-f", "1"]) else {
        eprintln!(
            "SKIPPED the_progress_bar_is_not_full_before_the_total_is_known: no `script` (util-linux)"
        );
        return;
    };
    assert!(text.contains("ended: done"), "{text}");
    assert!(!text.contains("0/0"), "a bar at 0/0:\n{text}");
}

/// `priority` names the job once.
#[test]
fn priority_names_the_job_once() {
    let s = TestSpool::new();
    let _w = s.spawn_worker(&[]);
    s.ok(&["pause"]);
    s.ok(&["submit", "cmake"]);
    wait_until("pending", Duration::from_secs(10), || {
        s.where_is("000001-cmake").as_deref() == Some("pending")
    });
    let out = s.ok(&["priority", "1", "high"]);
    assert_eq!(out.matches("000001-cmake").count(), 1, "{out}");
    assert!(out.contains("high"), "{out}");
}

/// `submit` without a spec says what it needs, and its usage line does not make the
/// global options look required.
#[test]
fn submit_without_a_spec_shows_a_plain_usage_line() {
    let s = TestSpool::new();
    let out = s.run(&["submit"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    let usage = err.lines().find(|l| l.starts_with("Usage:")).unwrap_or("");
    assert!(usage.contains("submit"), "{err}");
    assert!(
        !usage.contains("--spool") && !usage.contains("--config"),
        "{err}"
    );
}

/// A setup script that does not exist is a warning, never listed as `ok`.
#[test]
fn a_missing_setup_script_is_a_warning() {
    let s = TestSpool::new();
    fs::write(
        &s.config,
        format!(
            "spack_setup_script = \"{}\"\n",
            s.dir
                .path()
                .join("spack/share/spack/setup-env.sh")
                .display()
        ),
    )
    .unwrap();
    let out = s.run(&["config-check"]);
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.contains("setup-env.sh") && l.contains("does not exist"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.starts_with("warning:"), "{line}");
}

/// `pause` given just before `worker start` holds the queue: no job starts.
#[test]
fn pause_just_before_the_worker_starts_is_honoured() {
    let s = TestSpool::new();
    s.ok(&["submit", "zlib", "cmake"]);
    // The job files are settled (older than the worker's 2 s), the pause is not.
    std::thread::sleep(Duration::from_millis(2200));
    s.ok(&["pause", "--reason", "maintenance"]);
    let _w = s.spawn_worker(&[]);
    wait_until("both jobs taken", Duration::from_secs(10), || {
        s.ls("pending").len() == 2 || !s.ls("running").is_empty() || !s.ls("done").is_empty()
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        s.installs(),
        Vec::<Vec<String>>::new(),
        "a job ran while paused"
    );
    assert_eq!(s.ls("pending").len(), 2);
    let st = s.ok(&["status"]);
    assert!(st.contains("maintenance"), "{st}");
    s.ok(&["resume"]);
    wait_until("both done", Duration::from_secs(20), || {
        s.ls("done").len() == 2
    });
}

/// `worker start --log FILE` writes each line with its time.
#[test]
fn worker_start_log_lines_have_timestamps() {
    let s = TestSpool::new();
    let log = s.dir.path().join("w.log");
    let out = s.ok(&["worker", "start", "--log", log.to_str().unwrap()]);
    assert!(out.contains("worker started"), "{out}");
    s.ok(&["submit", "zlib"]);
    wait_until("done", Duration::from_secs(10), || s.ls("done").len() == 1);
    s.ok(&["worker", "stop"]);
    let text = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 2, "{text}");
    for l in lines {
        let stamp = l.split_whitespace().next().unwrap_or("");
        assert!(
            stamp.len() >= 20 && stamp.as_bytes()[4] == b'-' && stamp.contains('T'),
            "a log line without its time: {l:?}"
        );
    }
}

/// `optimize` lists waiting jobs as the plan would run them: never one before the job
/// it waits for.
#[test]
fn optimize_never_shows_a_job_before_the_one_it_waits_for() {
    let mut s = TestSpool::new();
    s.env.push(("SPACK_FAKE_DELAYS".into(), "slow=6".into()));
    let _w = s.spawn_worker(&[]);
    s.ok(&["submit", "slow"]);
    wait_until("running", Duration::from_secs(10), || {
        s.where_is("000001-slow").as_deref() == Some("running")
    });
    s.ok(&["submit", "-p", "low", "--after", "1", "first"]);
    s.ok(&["submit", "-p", "high", "--after", "2", "second"]);
    wait_until("both pending", Duration::from_secs(10), || {
        s.ls("pending").len() == 2
    });
    let plan = json(&s.ok(&["optimize", "--json"]));
    let names: Vec<&str> = plan
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["000002-first", "000003-second"], "{plan}");
    assert_eq!(plan[0]["position"], 1);
    let text = s.ok(&["optimize"]);
    let first = text.find("000002-first").unwrap();
    let second = text.find("000003-second").unwrap();
    assert!(first < second, "{text}");
}
