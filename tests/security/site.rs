//! A site with real users for the security tests: group `swinstaller`, members `alice`
//! and `bob`, outsider `mallory`, and the service user `sitest-spack` the worker runs as.
//! Users are created once per machine and reused (creation is idempotent); each test gets
//! its own spool made by `init --group swinstaller --owner sitest-spack` as root, in a
//! temp directory everyone can traverse. Every command a user runs is the real binary
//! under `setpriv` with that user's uid, gid and supplementary groups.
#![allow(dead_code)]

use nix::unistd::{Gid, Group, Uid, User};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use crate::support::{WorkerProc as Worker, wait_until};

pub const BIN: &str = env!("CARGO_BIN_EXE_spack-installer");
pub const GROUP: &str = "swinstaller";
pub const SERVICE: &str = "sitest-spack";

/// Run as root, or say why the test does nothing. Never silent.
pub fn root_or_skip(test: &str) -> bool {
    crate::support::root_or_skip(
        test,
        "it creates users and a group and switches to them (`sudo -E cargo test --test security` runs it here)",
    )
}

#[derive(Debug, Clone)]
pub struct Person {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

pub struct Users {
    pub alice: Person,
    pub bob: Person,
    pub mallory: Person,
    pub spack: Person,
    pub group_gid: u32,
}

fn sh_root(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd).args(args).output().unwrap()
}

/// useradd and friends lock /etc/passwd; other processes may hold it a moment.
fn admin(cmd: &str, args: &[&str]) {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let out = sh_root(cmd, args);
        if out.status.success() {
            return;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            Instant::now() < end && (err.contains("lock") || err.contains("try again")),
            "{cmd} {args:?} failed: {err}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn person(name: &str) -> Person {
    let u = User::from_name(name).unwrap().unwrap();
    Person {
        name: name.into(),
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
    }
}

fn ensure_user(name: &str, in_group: bool) -> Person {
    if User::from_name(name).unwrap().is_none() {
        admin(
            "useradd",
            &["--no-create-home", "--shell", "/usr/sbin/nologin", name],
        );
    }
    let member = Group::from_name(GROUP)
        .unwrap()
        .unwrap()
        .mem
        .iter()
        .any(|m| m == name);
    if in_group && !member {
        admin("usermod", &["-aG", GROUP, name]);
    }
    if !in_group && member {
        admin("gpasswd", &["-d", name, GROUP]);
    }
    person(name)
}

/// The site's users, created on first use.
pub fn users() -> &'static Users {
    static USERS: OnceLock<Users> = OnceLock::new();
    USERS.get_or_init(|| {
        if Group::from_name(GROUP).unwrap().is_none() {
            admin("groupadd", &["-f", GROUP]);
        }
        Users {
            alice: ensure_user("alice", true),
            bob: ensure_user("bob", true),
            mallory: ensure_user("mallory", false),
            // The worker reads members' 0640 files through the group, so it is a member.
            spack: ensure_user(SERVICE, true),
            group_gid: Group::from_name(GROUP).unwrap().unwrap().gid.as_raw(),
        }
    })
}

/// Can `other` reach and run this path (every parent o+x)?
fn reachable_by_all(p: &Path) -> bool {
    p.ancestors()
        .skip(1)
        .all(|a| fs::metadata(a).is_ok_and(|m| m.mode() & 0o001 != 0) || a.as_os_str().is_empty())
        && fs::metadata(p).is_ok_and(|m| m.mode() & 0o005 == 0o005)
}

/// The binary as other users can run it: in place when its path is open to them, else a
/// copy made once per test process.
fn shared_bin() -> PathBuf {
    static COPY: OnceLock<PathBuf> = OnceLock::new();
    static DIR: Mutex<Option<tempfile::TempDir>> = Mutex::new(None);
    COPY.get_or_init(|| {
        let bin = PathBuf::from(BIN);
        if reachable_by_all(&bin) {
            return bin;
        }
        let d = tempfile::Builder::new()
            .prefix("sitest-bin.")
            .tempdir_in("/tmp")
            .unwrap();
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let copy = d.path().join("spack-installer");
        fs::copy(&bin, &copy).unwrap();
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
        *DIR.lock().unwrap() = Some(d);
        copy
    })
    .clone()
}

/// A spool made by `init` as root, plus the fake Spack where the service user can run it.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub config: PathBuf,
    pub bin: PathBuf,
    /// Owned by the service user: the fake Spack's records.
    pub fake: PathBuf,
    /// Extra environment for the worker only.
    pub worker_env: Vec<(String, String)>,
}

impl Site {
    pub fn new(extra_config: &str) -> Site {
        let u = users();
        let dir = tempfile::Builder::new()
            .prefix("sitest.")
            .tempdir_in("/tmp")
            .unwrap();
        // tempfile makes 0700 directories; the users must traverse this one.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let bin_dir = dir.path().join("bin");
        fs::create_dir(&bin_dir).unwrap();
        let spack = bin_dir.join("spack");
        fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-spack/spack"),
            &spack,
        )
        .unwrap();
        fs::set_permissions(&spack, fs::Permissions::from_mode(0o755)).unwrap();
        let fake = dir.path().join("fake");
        fs::create_dir(&fake).unwrap();
        fs::create_dir(fake.join("env")).unwrap();
        for p in [&fake, &fake.join("env")] {
            nix::unistd::chown(
                p,
                Some(Uid::from_raw(u.spack.uid)),
                Some(Gid::from_raw(u.spack.gid)),
            )
            .unwrap();
        }
        let config = dir.path().join("config.toml");
        fs::write(
            &config,
            format!(
                "spack = \"{}\"\ninstall_args = [\"--fail-fast\"]\n{}{extra_config}",
                spack.display(),
                // Installs start as the spec, not racing the concretization stage; the
                // stage's own tests turn it on.
                if extra_config.contains("concretize =") {
                    ""
                } else {
                    "concretize = \"off\"\n"
                }
            ),
        )
        .unwrap();
        fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).unwrap();
        let site = Site {
            root: dir.path().join("spool"),
            dir,
            config,
            bin: shared_bin(),
            fake,
            worker_env: Vec::new(),
        };
        let out = site.root_cli(&["init", "--group", GROUP, "--owner", SERVICE]);
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        site
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn base_env(&self, c: &mut Command) {
        c.env("SPACK_INSTALLER_SPOOL", &self.root)
            .env("SPACK_INSTALLER_CONFIG", &self.config)
            .env("NO_COLOR", "1")
            .env("WORKER_CHECK_INTERVAL", "0.5")
            .env_remove("RUST_LOG")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
    }

    /// `prog args` as `who`: their uid, primary gid and supplementary groups.
    pub fn as_user(&self, who: &Person, prog: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", who.uid))
            .arg(format!("--regid={}", who.gid))
            .arg("--init-groups")
            .arg("--")
            .arg(prog)
            .args(args);
        self.base_env(&mut c);
        c
    }

    /// The CLI as `who`.
    pub fn cli(&self, who: &Person, args: &[&str]) -> Output {
        self.as_user(who, &self.bin, args).output().unwrap()
    }

    pub fn root_cli(&self, args: &[&str]) -> Output {
        let mut c = Command::new(&self.bin);
        c.args(args);
        self.base_env(&mut c);
        c.output().unwrap()
    }

    /// A shell command as `who`, run in the spool root's parent; `$S` is the spool.
    pub fn sh(&self, who: &Person, script: &str) -> Output {
        self.as_user(who, Path::new("/bin/sh"), &["-c", script])
            .env("S", &self.root)
            .output()
            .unwrap()
    }

    /// A shell command that must succeed.
    pub fn sh_ok(&self, who: &Person, script: &str) -> String {
        let out = self.sh(who, script);
        assert!(
            out.status.success(),
            "{} could not `{script}`: {}",
            who.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A shell command that the kernel must refuse; returns its error output.
    pub fn sh_denied(&self, who: &Person, script: &str) -> String {
        let out = self.sh(who, script);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "{} was allowed to `{script}`",
            who.name
        );
        assert!(
            err.contains("Permission denied") || err.contains("Operation not permitted"),
            "{} failed to `{script}` but not for want of permission: {err}",
            who.name
        );
        err
    }

    /// Drop a file into incoming/ by hand as `who`, as spool-layout.md tells people to
    /// (write a dotfile, then mv it to its name).
    pub fn drop_as(&self, who: &Person, name: &str, content: &str) {
        let mut c = self.as_user(
            who,
            Path::new("/bin/sh"),
            &[
                "-c",
                "umask 027 && cat > \"$S/incoming/.$N\" && mv \"$S/incoming/.$N\" \"$S/incoming/$N\"",
            ],
        );
        c.env("S", &self.root)
            .env("N", name)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(content.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{} could not drop {name}: {}",
            who.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `submit --no-wait` as `who`; returns the ticket.
    pub fn submit(&self, who: &Person, args: &[&str]) -> String {
        let mut all = vec!["submit", "--no-wait"];
        all.extend_from_slice(args);
        let out = self.cli(who, &all);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{} could not submit {args:?}: {}{}",
            who.name,
            text,
            String::from_utf8_lossy(&out.stderr)
        );
        text.split_whitespace()
            .map(|w| w.trim_end_matches([';', ',', '.', ')']))
            .find(|w| w.starts_with('t') && w.ends_with(".toml"))
            .unwrap_or_else(|| panic!("no ticket in {text}"))
            .to_string()
    }

    fn worker_command(&self, args: &[&str]) -> Command {
        let u = users();
        let mut all = vec!["worker", "run"];
        all.extend_from_slice(args);
        let mut c = self.as_user(&u.spack, &self.bin, &all);
        c.env("SPACK_FAKE_RECORD", self.fake.join("argv.log"))
            .env("SPACK_FAKE_EVENTS", self.fake.join("events.log"))
            .env("SPACK_FAKE_ENVDUMP", self.fake.join("env"))
            .env("HOME", self.fake.as_os_str());
        for (k, v) in &self.worker_env {
            c.env(k, v);
        }
        c
    }

    /// `worker run --until-idle` as the service user.
    /// Bounded: a worker that cannot get through incoming/ is killed and the test fails.
    pub fn drain(&self) -> String {
        self.drain_with(self.worker_command(&["--until-idle"]))
    }

    /// [`Site::drain`] with the worker inheriting `file` open as descriptor `fd`, without
    /// close-on-exec, as from a careless parent.
    pub fn drain_inheriting(&self, file: &Path, fd: i32) -> String {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let f = fs::File::open(file).unwrap();
        let raw = f.as_raw_fd();
        let mut c = self.worker_command(&["--until-idle"]);
        // SAFETY: dup2 is async-signal-safe; the copy it makes has no close-on-exec.
        unsafe {
            c.pre_exec(move || {
                if nix::libc::dup2(raw, fd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = self.drain_with(c);
        drop(f);
        out
    }

    fn drain_with(&self, mut worker: Command) -> String {
        let log = self.dir.path().join("drain.log");
        let f = fs::File::create(&log).unwrap();
        let mut child = worker
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(90);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the worker did not get through incoming/ in 90 s:\n{}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let err = fs::read_to_string(&log).unwrap_or_default();
        assert!(status.success(), "worker failed: {err}");
        err
    }

    /// A worker as the service user in the background, killed when dropped.
    pub fn spawn_worker(&self) -> Worker {
        let log = self.dir.path().join("worker.log");
        let f = fs::File::create(&log).unwrap();
        let child = self
            .worker_command(&[])
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap();
        let w = Worker {
            child,
            log,
            _log: None,
        };
        let status = self.path("worker.toml");
        wait_until("the worker to start", Duration::from_secs(20), || {
            fs::read_to_string(&status).is_ok_and(|s| {
                s.contains(&format!("pid = {}", w.child.id())) && !s.contains("\"starting\"")
            })
        });
        w
    }

    /// Pause the queue the way spool-layout.md says: `touch paused` as the worker user.
    pub fn pause(&self) {
        self.sh_ok(&users().spack, "touch \"$S/paused\"");
    }

    pub fn unpause(&self) {
        fs::remove_file(self.path("paused")).unwrap();
    }

    /// The worker's receipt for a ticket, as a table.
    pub fn receipt(&self, ticket: &str) -> toml::Table {
        let p = self.path("receipts").join(ticket);
        let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        text.parse().unwrap()
    }

    pub fn wait_receipt(&self, ticket: &str) -> toml::Table {
        let p = self.path("receipts").join(ticket);
        wait_until(
            &format!("a receipt for {ticket}"),
            Duration::from_secs(20),
            || p.exists(),
        );
        self.receipt(ticket)
    }

    pub fn ls(&self, rel: &str) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.path(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    /// The argv of every install the fake Spack ran.
    pub fn installs(&self) -> Vec<Vec<String>> {
        fs::read_to_string(self.fake.join("argv.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.split('\x1f').map(String::from).collect::<Vec<_>>())
            .filter(|a| a[0] == "install")
            .collect()
    }
}

/// Mode bits (with setgid and sticky) of a spool path.
pub fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}
