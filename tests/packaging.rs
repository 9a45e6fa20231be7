//! What a site installs: the systemd unit (its stop sequence, against a real worker), the
//! sd_notify messages the worker sends, the sysusers/tmpfiles files (run for real into a
//! throwaway root), the example config, man pages and completions, and the built .deb and
//! .rpm (those two tests run from packaging/build-packages.sh, which builds them and names
//! them in SPACK_INSTALLER_DEB / SPACK_INSTALLER_RPM).

mod support;

use clap::CommandFactory;
use spack_installer::spool::{COUNTER_FILE, Dir, FILE_MODE, LOCK_FILE, LOCK_MODE, ROOT_MODE};
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::{BIN, TestSpool, wait_until};

fn packaging(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging")
        .join(rel)
}

fn unit() -> String {
    fs::read_to_string(packaging("systemd/spack-installer.service")).unwrap()
}

/// The value of `Key=` in the unit (the last one, as systemd reads single-valued keys).
fn unit_value(unit: &str, key: &str) -> String {
    unit.lines()
        .rev()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("the unit sets no {key}="))
        .to_string()
}

fn signal_named(name: &str) -> nix::sys::signal::Signal {
    let name = name.trim_start_matches("SIG");
    format!("SIG{name}").parse().unwrap()
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `systemctl stop` as the unit defines it (ExecStop's signal, then KillSignal to the
/// main process only, as KillMode=mixed does) interrupts a running install and puts it
/// back in pending/ without counting the attempt, and the worker exits 0.
#[test]
fn a_stop_by_the_unit_requeues_the_running_install() {
    let unit = unit();
    assert_eq!(unit_value(&unit, "KillMode"), "mixed");
    let exec_stop = unit_value(&unit, "ExecStop");
    let first = exec_stop
        .split_whitespace()
        .skip_while(|w| *w != "-s")
        .nth(1)
        .unwrap_or_else(|| panic!("ExecStop= sends no `-s SIGNAL`: {exec_stop}"));
    let then = unit_value(&unit, "KillSignal");

    let mut s = TestSpool::new();
    s.env.push(("SPACK_FAKE_DELAY".into(), "30".into()));
    s.ok(&["submit", "zlib"]);
    let mut w = s.spawn_worker(&[]);
    wait_until("zlib to run", Duration::from_secs(10), || {
        s.where_is("000001-zlib").as_deref() == Some("running")
            && fs::read_to_string(s.dir.path().join("events.log"))
                .is_ok_and(|e| e.contains("start zlib"))
    });
    w.signal(signal_named(first));
    w.signal(signal_named(&then));
    let status = w.wait(Duration::from_secs(30));
    assert!(status.success(), "worker: {status}\n{}", w.output());
    assert_eq!(s.where_is("000001-zlib").as_deref(), Some("pending"));
    let job = s.read("pending/000001-zlib.toml");
    assert!(job.contains("state = \"pending\""), "{job}");
    assert!(job.contains("attempts = 0"), "{job}");
}

/// Under systemd (NOTIFY_SOCKET set) the worker says READY=1 after start-up, a STATUS=
/// line naming the running install, WATCHDOG=1 with each heartbeat, and STOPPING=1 on
/// SIGTERM.
#[test]
fn the_worker_talks_to_systemd() {
    let mut s = TestSpool::new();
    let sock_path = s.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    s.env
        .push(("NOTIFY_SOCKET".into(), sock_path.display().to_string()));
    // WatchdogSec=2s: the worker must feed it at least every second.
    s.env.push(("WATCHDOG_USEC".into(), "2000000".into()));
    s.env.push(("SPACK_FAKE_DELAY".into(), "30".into()));
    s.env.push(("SPACK_FAKE_STEPS".into(), "3".into()));
    let mut w = s.spawn_worker(&[]);
    let mut seen: Vec<String> = Vec::new();
    let recv_until = |what: &str, cond: &dyn Fn(&str) -> bool, seen: &mut Vec<String>| {
        let mut buf = vec![0u8; 4096];
        loop {
            let n = sock
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("no {what} (got {seen:?}): {e}"));
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            seen.push(msg.clone());
            if cond(&msg) {
                return msg;
            }
        }
    };
    recv_until("READY=1", &|m| m.lines().any(|l| l == "READY=1"), &mut seen);
    s.ok(&["submit", "zlib"]);
    // The status names the install and Spack's progress, read from its log.
    let installing = recv_until(
        "STATUS=installing 000001-zlib [1/3]",
        &|m| m.contains("STATUS=installing 000001-zlib [1/3]"),
        &mut seen,
    );
    assert!(installing.contains("WATCHDOG=1"), "{installing}");
    // Two more heartbeats, proving the watchdog is fed while Spack runs.
    for _ in 0..2 {
        recv_until("WATCHDOG=1", &|m| m.contains("WATCHDOG=1"), &mut seen);
    }
    w.signal(nix::sys::signal::Signal::SIGTERM);
    let stopping = recv_until("STOPPING=1", &|m| m.contains("STOPPING=1"), &mut seen);
    assert!(
        stopping.contains("STATUS=stopping: waiting for 000001-zlib"),
        "{stopping}"
    );
    w.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(w.wait(Duration::from_secs(30)).success(), "{}", w.output());
}

/// The sysusers and tmpfiles files, applied by systemd's own tools into a throwaway
/// root, make the user, the group and exactly the spool of spool-layout.md.
#[test]
fn sysusers_and_tmpfiles_make_the_spool_of_spool_layout() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    fs::create_dir(r.join("etc")).unwrap();
    run_ok(
        Command::new("systemd-sysusers")
            .arg(format!("--root={}", r.display()))
            .arg(packaging("systemd/spack-installer.sysusers")),
    );
    let passwd = fs::read_to_string(r.join("etc/passwd")).unwrap();
    let group = fs::read_to_string(r.join("etc/group")).unwrap();
    let gid: u32 = group
        .lines()
        .find_map(|l| l.strip_prefix("swinstaller:x:"))
        .expect("group swinstaller")
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let user: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("spack:"))
        .expect("user spack")
        .split(':')
        .collect();
    let uid: u32 = user[2].parse().unwrap();
    assert_eq!(user[3], gid.to_string(), "spack's group is swinstaller");
    assert_eq!(user[5], "/var/lib/spack-installer");

    run_ok(
        Command::new("systemd-tmpfiles")
            .arg(format!("--root={}", r.display()))
            .arg("--create")
            .arg(packaging("systemd/spack-installer.tmpfiles")),
    );
    let spool = r.join("var/spool/spack-installer");
    let check = |p: &Path, mode: u32| {
        let m = fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(m.mode() & 0o7777, mode, "mode of {}", p.display());
        assert_eq!((m.uid(), m.gid()), (uid, gid), "owner of {}", p.display());
    };
    check(&spool, ROOT_MODE);
    for d in Dir::ALL {
        check(&spool.join(d.name()), d.mode());
    }
    for d in Dir::ALL {
        assert!(spool.join(d.name()).is_dir());
    }
    check(&spool.join(COUNTER_FILE), FILE_MODE);
    check(&spool.join(LOCK_FILE), LOCK_MODE);
    let counter = fs::read_to_string(spool.join(COUNTER_FILE)).unwrap();
    assert_eq!(counter.trim(), "1");
    assert_eq!(fs::read_dir(&spool).unwrap().count(), Dir::ALL.len() + 2);

    // Applied again (every boot does), it changes nothing in a spool in use.
    fs::write(spool.join(COUNTER_FILE), "42\n").unwrap();
    run_ok(
        Command::new("systemd-tmpfiles")
            .arg(format!("--root={}", r.display()))
            .arg("--create")
            .arg(packaging("systemd/spack-installer.tmpfiles")),
    );
    assert_eq!(
        fs::read_to_string(spool.join(COUNTER_FILE)).unwrap(),
        "42\n"
    );
}

/// `systemd-analyze verify` accepts the unit. It insists that ExecStart= exists, so the
/// copy checked here runs the binary under test.
#[test]
fn the_unit_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("spack-installer.service");
    fs::write(&copy, unit().replace("/usr/bin/spack-installer", BIN)).unwrap();
    run_ok(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&copy),
    );
    let u = unit();
    assert_eq!(unit_value(&u, "Type"), "notify");
    assert_eq!(unit_value(&u, "User"), "spack");
    assert_eq!(unit_value(&u, "Group"), "swinstaller");
    assert!(u.contains("\nWatchdogSec="), "no WatchdogSec=");
    // An OOM-killed build fails its job; it must not stop the service (tests/oom.rs
    // shows the worker reporting it and going on).
    assert_eq!(unit_value(&u, "OOMPolicy"), "continue");
}

/// The daily cleanup: a timer and the oneshot service it starts, both accepted by
/// `systemd-analyze verify`, enabled together with the worker (`Also=`), running
/// `cleanup` as the worker's user.
#[test]
fn the_cleanup_timer_verifies_and_comes_with_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let service = fs::read_to_string(packaging("systemd/spack-installer-cleanup.service")).unwrap();
    let timer = fs::read_to_string(packaging("systemd/spack-installer-cleanup.timer")).unwrap();
    fs::write(
        dir.path().join("spack-installer-cleanup.service"),
        service.replace("/usr/bin/spack-installer", BIN),
    )
    .unwrap();
    let timer_copy = dir.path().join("spack-installer-cleanup.timer");
    fs::write(&timer_copy, &timer).unwrap();
    run_ok(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(dir.path().join("spack-installer-cleanup.service"))
            .arg(&timer_copy),
    );
    assert_eq!(unit_value(&service, "Type"), "oneshot");
    assert_eq!(
        unit_value(&service, "ExecStart"),
        "/usr/bin/spack-installer cleanup"
    );
    assert_eq!(unit_value(&service, "User"), "spack");
    assert_eq!(unit_value(&timer, "OnCalendar"), "daily");
    assert_eq!(unit_value(&timer, "Persistent"), "true");
    assert_eq!(unit_value(&unit(), "Also"), "spack-installer-cleanup.timer");
    // The age comes from the config the packages install.
    let example = fs::read_to_string(packaging("config.toml")).unwrap();
    assert!(example.contains("# keep_days = 7"), "{example}");
}

/// Every command and subcommand, as the man page names them (`spack-installer-worker-run`).
fn command_names() -> BTreeSet<String> {
    fn walk(c: &clap::Command, prefix: &str, out: &mut BTreeSet<String>) {
        out.insert(prefix.to_string());
        // Hidden commands (exec-job, run by Slurm batch scripts) get no page.
        for sub in c
            .get_subcommands()
            .filter(|s| s.get_name() != "help" && !s.is_hide_set())
        {
            walk(sub, &format!("{prefix}-{}", sub.get_name()), out);
        }
    }
    let mut out = BTreeSet::new();
    walk(
        &spack_installer::cli::Cli::command(),
        "spack-installer",
        &mut out,
    );
    out
}

#[test]
fn man_writes_a_page_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        Command::new(BIN)
            .args(["man", "--dir"])
            .arg(dir.path().join("man")),
    );
    let pages: BTreeSet<String> = fs::read_dir(dir.path().join("man/man1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let want: BTreeSet<String> = command_names().iter().map(|n| format!("{n}.1")).collect();
    assert_eq!(pages, want);
    assert!(want.contains("spack-installer-worker-run.1"));
    let submit = fs::read_to_string(dir.path().join("man/man1/spack-installer-submit.1")).unwrap();
    // `man` finds the pages where `man --dir` put them.
    match Command::new("man")
        .args(["-w", "spack-installer-submit"])
        .env("MANPATH", dir.path().join("man"))
        .output()
    {
        Ok(out) => {
            assert!(
                out.status.success(),
                "MANPATH=DIR man -w finds nothing: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let found = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                Path::new(found.trim()),
                dir.path().join("man/man1/spack-installer-submit.1")
            );
        }
        Err(_) => {
            eprintln!("SKIPPED the `man -w` check: man is not installed (the path was checked)")
        }
    }
    assert!(
        submit.starts_with(".ie") || submit.contains(".TH"),
        "{submit}"
    );
    assert!(submit.contains("priority"), "{submit}");
    let top = run_ok(Command::new(BIN).arg("man"));
    assert!(top.contains(".TH spack-installer 1"), "{top}");
}

#[test]
fn completions_cover_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let script = run_ok(Command::new(BIN).args(["completions", shell]));
        for cmd in ["submit", "status", "worker", "init"] {
            assert!(script.contains(cmd), "{shell} completion lacks {cmd}");
        }
        if shell == "bash" {
            let dir = tempfile::tempdir().unwrap();
            let f = dir.path().join("c.bash");
            fs::write(&f, &script).unwrap();
            run_ok(Command::new("bash").arg("-n").arg(&f));
        }
    }
    let out = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// The example config is valid as shipped (all commented out: the defaults), documents
/// every key the config file takes, and is still valid with every key uncommented.
#[test]
fn the_example_config_documents_every_key() {
    let text = fs::read_to_string(packaging("config.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("config.toml");
    fs::write(&f, &text).unwrap();
    let shipped = spack_installer::config::Config::load_with_env(Some(&f), |_| None).unwrap();
    let defaults = spack_installer::config::Config::default();
    assert_eq!(
        format!("{:?}", shipped.max_parallel.value),
        format!("{:?}", defaults.max_parallel.value)
    );

    // Each key once: the first commented `# key = ...` line of each.
    let mut keys = BTreeSet::new();
    let mut uncommented = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ")
            && let Some((key, _)) = rest.split_once(" = ")
            && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            && keys.insert(key.to_string())
        {
            uncommented.push_str(rest);
            uncommented.push('\n');
        }
    }
    fs::write(&f, &uncommented).unwrap();
    let all = spack_installer::config::Config::load_with_env(Some(&f), |_| None)
        .unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
    // Every setting of Config came from the file.
    let json = serde_json::to_value(&all).unwrap();
    let settings: BTreeSet<String> = json
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "file")
        .map(|(k, v)| {
            assert_eq!(v["source"]["kind"], "file", "{k} is not set by the example");
            k.clone()
        })
        .collect();
    assert_eq!(keys, settings);
}

/// What the packages must hold, with the paths the .deb uses (the RPM differs only in
/// zsh's directory).
fn expected_files(zsh_dir: &str) -> BTreeSet<String> {
    let mut want: BTreeSet<String> = [
        "usr/bin/spack-installer",
        "usr/share/bash-completion/completions/spack-installer",
        "usr/share/fish/vendor_completions.d/spack-installer.fish",
        "usr/lib/systemd/system/spack-installer.service",
        "usr/lib/systemd/system/spack-installer-cleanup.service",
        "usr/lib/systemd/system/spack-installer-cleanup.timer",
        "usr/lib/sysusers.d/spack-installer.conf",
        "usr/lib/tmpfiles.d/spack-installer.conf",
        "etc/spack-installer/config.toml",
        "usr/share/doc/spack-installer/README.md",
        "usr/share/doc/spack-installer/spool-layout.md",
    ]
    .map(String::from)
    .into();
    want.insert(format!("{zsh_dir}/_spack-installer"));
    for n in command_names() {
        want.insert(format!("usr/share/man/man1/{n}.1.gz"));
    }
    want
}

fn files_under(root: &Path) -> BTreeSet<String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                out.insert(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

fn built_package(var: &str) -> PathBuf {
    let p = std::env::var_os(var).unwrap_or_else(|| {
        panic!("{var} is not set: run `bash packaging/build-packages.sh`, which builds the package and runs this test")
    });
    PathBuf::from(p)
}

/// The .deb, unpacked with `dpkg -x` into a throwaway root: every file a site needs, the
/// config as a conffile, maintainer scripts that create the user and the spool, a unit
/// that verifies against the packaged binary.
#[test]
#[ignore = "needs the built .deb: run by packaging/build-packages.sh"]
fn the_deb_holds_what_a_site_needs() {
    let deb = built_package("SPACK_INSTALLER_DEB");
    let root = tempfile::tempdir().unwrap();
    run_ok(Command::new("dpkg").arg("-x").arg(&deb).arg(root.path()));
    let mut got = files_under(root.path());
    // cargo-deb adds the copyright file Debian requires.
    assert!(got.remove("usr/share/doc/spack-installer/copyright"));
    assert_eq!(got, expected_files("usr/share/zsh/vendor-completions"));

    let bin = root.path().join("usr/bin/spack-installer");
    assert_eq!(
        fs::metadata(&bin).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let version = run_ok(Command::new(&bin).arg("--version"));
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");

    let conffiles = run_ok(
        Command::new("dpkg-deb")
            .arg("-I")
            .arg(&deb)
            .arg("conffiles"),
    );
    assert_eq!(conffiles.trim(), "/etc/spack-installer/config.toml");
    let postinst = run_ok(Command::new("dpkg-deb").arg("-I").arg(&deb).arg("postinst"));
    for step in [
        "systemd-sysusers /usr/lib/sysusers.d/spack-installer.conf",
        "systemd-tmpfiles --create /usr/lib/tmpfiles.d/spack-installer.conf",
        "systemctl daemon-reload",
    ] {
        assert!(postinst.contains(step), "postinst lacks `{step}`");
    }
    let depends = run_ok(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Depends"));
    assert!(depends.contains("systemd"), "{depends}");

    let unit = root
        .path()
        .join("usr/lib/systemd/system/spack-installer.service");
    let copy = root.path().join("spack-installer.service");
    let text = fs::read_to_string(&unit).unwrap();
    fs::write(
        &copy,
        text.replace("/usr/bin/spack-installer", &bin.display().to_string()),
    )
    .unwrap();
    run_ok(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&copy),
    );
}

/// The .rpm holds the same files (zsh's directory is Fedora's), the config marked
/// `%config(noreplace)`.
#[test]
#[ignore = "needs the built .rpm and the rpm tool: run by packaging/build-packages.sh"]
fn the_rpm_holds_the_same() {
    let rpm = built_package("SPACK_INSTALLER_RPM");
    let list = run_ok(Command::new("rpm").args(["-qlp"]).arg(&rpm));
    let got: BTreeSet<String> = list
        .lines()
        .map(|l| l.trim_start_matches('/').to_string())
        .collect();
    assert_eq!(got, expected_files("usr/share/zsh/site-functions"));
    let config = run_ok(Command::new("rpm").args(["-qcp"]).arg(&rpm));
    assert_eq!(config.trim(), "/etc/spack-installer/config.toml");
    let scripts = run_ok(Command::new("rpm").args(["-qp", "--scripts"]).arg(&rpm));
    assert!(scripts.contains("systemd-sysusers"), "{scripts}");
    assert!(scripts.contains("systemd-tmpfiles --create"), "{scripts}");
}
