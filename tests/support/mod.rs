//! Test support: a real spool in a temp directory, the real binary, the fake Spack, and
//! a bounded poll instead of sleeps. Each test reads like the README: submit, run the
//! worker, look at the spool.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_spack-installer");

pub fn fake_spack() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-spack/spack")
}

/// Run as root, or say why the test does nothing: straight to stderr, past the test
/// harness's capture, so a skip is never silent.
pub fn root_or_skip(test: &str, why: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {why}, which needs root (CI runs as root)"
    );
    false
}

/// An install's argv without the `-j N` the worker adds to each local install (its
/// share of `cpus`, which depends on the machine): checked to be there, after `install`,
/// with N at least 1.
pub fn without_jobs(mut argv: Vec<String>) -> Vec<String> {
    assert!(
        argv.len() > 3 && argv[1] == "-j" && argv[2].parse::<u32>().is_ok_and(|n| n >= 1),
        "no -j N after install: {argv:?}"
    );
    argv.drain(1..3);
    argv
}

/// Wait until `cond` holds, checking every 20 ms, for at most `limit`.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out after {limit:?} waiting for: {what}");
}

pub struct TestSpool {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub config: PathBuf,
    /// Extra environment for every command and worker.
    pub env: Vec<(String, String)>,
}

impl TestSpool {
    /// A fresh spool made by `init`, with a config that runs the fake Spack.
    pub fn new() -> TestSpool {
        Self::with_config("")
    }

    pub fn with_config(extra: &str) -> TestSpool {
        Self::in_dir(tempfile::tempdir().unwrap(), extra)
    }

    /// A spool in a given directory (e.g. on tmpfs, or a small file system).
    pub fn in_dir(dir: tempfile::TempDir, extra: &str) -> TestSpool {
        let root = dir.path().join("spool");
        let config = dir.path().join("config.toml");
        fs::write(
            &config,
            format!(
                "spack = \"{}\"\ninstall_args = [\"--fail-fast\"]\n{}{extra}",
                fake_spack().display(),
                // Most tests are about installs and want them started the same way every
                // run; the concretization stage's own tests turn it on.
                if extra.contains("concretize =") {
                    ""
                } else {
                    "concretize = \"off\"\n"
                }
            ),
        )
        .unwrap();
        let s = TestSpool {
            env: vec![
                (
                    "SPACK_FAKE_RECORD".into(),
                    dir.path().join("argv.log").display().to_string(),
                ),
                (
                    "SPACK_FAKE_EVENTS".into(),
                    dir.path().join("events.log").display().to_string(),
                ),
            ],
            dir,
            root,
            config,
        };
        let out = s.run(&["init"]);
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        s
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("SPACK_INSTALLER_SPOOL", &self.root)
            .env("SPACK_INSTALLER_CONFIG", &self.config)
            .env("NO_COLOR", "1")
            .env("WORKER_CHECK_INTERVAL", "0.5")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `worker run --until-idle`, returning its output.
    pub fn drain(&self) -> Output {
        let out = self.run(&["worker", "run", "--until-idle"]);
        assert!(
            out.status.success(),
            "worker failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// A worker in the background with extra environment, not waited for; killed when
    /// dropped.
    pub fn start_worker(&self, args: &[&str], env: &[(&str, &str)]) -> WorkerProc {
        // The log lives in the system's temp dir, so it can be written even when the
        // spool's file system is full.
        let log = tempfile::NamedTempFile::new().unwrap().into_temp_path();
        let f = fs::OpenOptions::new().append(true).open(&log).unwrap();
        let mut all = vec!["worker", "run"];
        all.extend_from_slice(args);
        let mut c = self.command(&all);
        c.envs(env.iter().copied());
        let child = c.stdout(f.try_clone().unwrap()).stderr(f).spawn().unwrap();
        WorkerProc {
            child,
            log: log.to_path_buf(),
            _log: Some(log),
        }
    }

    /// A worker in the background, once it is up; killed when dropped.
    pub fn spawn_worker(&self, args: &[&str]) -> WorkerProc {
        let w = self.start_worker(args, &[]);
        let status = self.root.join("worker.toml");
        wait_until("the worker to start", Duration::from_secs(10), || {
            fs::read_to_string(&status).is_ok_and(|s| {
                s.contains(&format!("pid = {}", w.child.id())) && !s.contains("\"starting\"")
            })
        });
        w
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// File names in a spool directory, sorted.
    pub fn ls(&self, dir: &str) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    /// Every install the fake Spack ran: its argv.
    pub fn installs(&self) -> Vec<Vec<String>> {
        self.spack_runs("install")
    }

    /// Every run of one Spack command (`install`, `spec`, `find`): its argv.
    pub fn spack_runs(&self, command: &str) -> Vec<Vec<String>> {
        fs::read_to_string(self.dir.path().join("argv.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.split('\x1f').map(String::from).collect::<Vec<_>>())
            .filter(|a| a[0] == command)
            .collect()
    }

    /// Every install's argv without the `-j N` the worker adds (see [`without_jobs`]).
    pub fn installs_without_jobs(&self) -> Vec<Vec<String>> {
        self.installs().into_iter().map(without_jobs).collect()
    }

    /// The package of each install, in order.
    pub fn install_order(&self) -> Vec<String> {
        self.installs()
            .iter()
            .map(|a| {
                a.last()
                    .unwrap()
                    .split(['@', ' ', '+', '~', '%', '^'])
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    /// Drop a file into incoming/ the way the spool-layout.md tells admins to.
    pub fn drop_file(&self, name: &str, content: &str) {
        let tmp = self.root.join("incoming").join(format!(".{name}"));
        fs::write(&tmp, content).unwrap();
        fs::rename(&tmp, self.root.join("incoming").join(name)).unwrap();
    }

    /// Which state directory a job is in.
    pub fn where_is(&self, name: &str) -> Option<String> {
        ["pending", "running", "done", "failed", "cancelled"]
            .into_iter()
            .find(|d| self.root.join(d).join(format!("{name}.toml")).exists())
            .map(String::from)
    }
}

pub struct WorkerProc {
    pub child: Child,
    pub log: PathBuf,
    /// Removes the log when the worker is dropped.
    pub _log: Option<tempfile::TempPath>,
}

impl WorkerProc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }
    /// Wait for it to exit, at most `limit`.
    pub fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let end = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < end,
                "worker did not exit within {limit:?}; log:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    pub fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// PIDs of live (non-zombie) processes with an environment entry that `matches`.
fn processes_where(matches: impl Fn(&[u8]) -> bool) -> Vec<i32> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let env = fs::read(e.path().join("environ")).ok()?;
            let stat = fs::read_to_string(e.path().join("stat")).ok()?;
            let zombie = stat.rsplit(')').next()?.trim_start().starts_with('Z');
            (!zombie && env.split(|b| *b == 0).any(&matches)).then_some(pid)
        })
        .collect()
}

/// PIDs of live processes whose environment has exactly this `KEY=value` entry.
pub fn processes_with(entry: &str) -> Vec<i32> {
    processes_where(|kv| kv == entry.as_bytes())
}

/// PIDs of live processes with an environment entry starting with `prefix`.
pub fn processes_with_prefix(prefix: &str) -> Vec<i32> {
    processes_where(|kv| kv.starts_with(prefix.as_bytes()))
}

/// A tmpfs of `size` mounted on a temp dir; unmounted when dropped.
pub struct SmallFs {
    pub dir: tempfile::TempDir,
}

impl SmallFs {
    pub fn new(size: &str) -> SmallFs {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(ok.success(), "mount tmpfs failed");
        SmallFs { dir }
    }
    /// Fill it up; returns the filler to free the space again.
    pub fn fill(&self) -> std::path::PathBuf {
        let filler = self.dir.path().join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 4096];
        while std::io::Write::write_all(&mut f, &block).is_ok() {}
        let _ = f.sync_all();
        filler
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// The record of job `id` (package `pkg`, spec `pkg`) in `state` after `attempts`
/// starts, as the worker writes it: what a crash may leave in a state directory.
pub fn record(id: u64, pkg: &str, state: spack_installer::job::State, attempts: u32) -> String {
    use spack_installer::job::{Body, Job, JobFile, JobId, Meta, StateInfo};
    let now = spack_installer::time::Timestamp::now();
    let mut st = StateInfo::new(state, now);
    st.attempts = attempts;
    Job {
        meta: Meta {
            id: JobId(id),
            name: format!("{id:06}-{pkg}"),
            package: pkg.into(),
            owner_uid: nix::unistd::getuid().as_raw(),
            owner: "tester".into(),
            submitted_at: now,
            ticket: format!("t{id}.toml"),
        },
        state: st,
        body: Body::Valid(JobFile::parse_and_validate(&format!("spec = \"{pkg}\"\n")).unwrap()),
    }
    .to_toml()
}
