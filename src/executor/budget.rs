//! The build budget the worker shares among its installs: CPUs (a `-j` for each install
//! and one GNU make jobserver for all of them), and the free memory and disk below which
//! no new install starts. README, *Parallel installs*, says what it guarantees.
//!
//! The jobserver follows GNU make's protocol: a pipe holding one byte per CPU beyond the
//! first; whoever runs a compile step beyond its own first takes a byte and writes it
//! back when done. Every make that joins has one step for free (its implicit token), so
//! N installs running at once would run N + `cpus - 1` steps. The worker therefore
//! plays the outer make: the first running install uses the worker's implicit token, and
//! each further one starts only once the worker holds a token for it, which it gives back
//! when that install ends. A make killed with SIGKILL never gives back the tokens its
//! steps held; those are recovered by replacing the pipe whenever no install runs.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

/// The descriptors an install sees the jobserver on. Spack 0.23 parses only single-digit
/// descriptors in `--jobserver-auth=R,W`; 3 and 4 are the first free after stdio.
pub const CHILD_READ_FD: RawFd = 3;
pub const CHILD_WRITE_FD: RawFd = 4;

/// A byte count in the config: a number of bytes, or "512M", "8G", "1.5T" (powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "toml::Value", into = "String")]
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("T", 1 << 40),
            ("G", 1 << 30),
            ("M", 1 << 20),
            ("K", 1 << 10),
        ];
        for (u, n) in UNITS {
            if self.0 >= n {
                let v = self.0 as f64 / n as f64;
                return if v.fract() == 0.0 {
                    write!(f, "{v:.0}{u}")
                } else {
                    write!(f, "{v:.1}{u}")
                };
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl From<Size> for String {
    fn from(s: Size) -> String {
        s.to_string()
    }
}

impl TryFrom<toml::Value> for Size {
    type Error = String;
    fn try_from(v: toml::Value) -> Result<Size, String> {
        match v {
            toml::Value::Integer(n) if n >= 0 => Ok(Size(n as u64)),
            toml::Value::String(s) => parse_size(&s),
            other => Err(format!(
                "`{other}` is not a size; write bytes (1073741824) or \"1G\", \"512M\""
            )),
        }
    }
}

pub fn parse_size(s: &str) -> Result<Size, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)
        .ok_or_else(|| format!("`{s}` is not a size; write \"1G\", \"512M\" or bytes"))?;
    let mult: u64 = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches(['B', 'I'])
    {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => {
            return Err(format!(
                "`{s}`: unknown unit; use K, M, G or T (powers of 1024)"
            ));
        }
    };
    Ok(Size((n * mult as f64) as u64))
}

// ---- CPUs ------------------------------------------------------------------------

/// The CPUs this process may use: its affinity mask, lowered by the CPU quota of its
/// cgroup (v2 `cpu.max`, rounded up), at least 1.
pub fn available_cpus() -> usize {
    let affinity = affinity_cpus().unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let quota = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|c| cgroup_v2_path(&c))
        .and_then(|rel| cgroup_quota(Path::new("/sys/fs/cgroup"), &rel));
    quota.map_or(affinity, |q| q.min(affinity)).max(1)
}

fn affinity_cpus() -> Option<usize> {
    use nix::libc::{CPU_COUNT, cpu_set_t, sched_getaffinity};
    // SAFETY: a zeroed cpu_set_t is valid, and the kernel writes at most its size.
    unsafe {
        let mut set: cpu_set_t = std::mem::zeroed();
        if sched_getaffinity(0, std::mem::size_of::<cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        usize::try_from(CPU_COUNT(&set)).ok().filter(|n| *n > 0)
    }
}

/// The path of this process's cgroup v2 (the `0::PATH` line of `/proc/self/cgroup`).
pub fn cgroup_v2_path(proc_cgroup: &str) -> Option<PathBuf> {
    proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| PathBuf::from(p.trim().trim_start_matches('/')))
}

/// The tightest `cpu.max` quota from the cgroup up to the root, in whole CPUs (rounded
/// up: a quota of 1.5 CPUs still runs two threads part of the time).
pub fn cgroup_quota(root: &Path, rel: &Path) -> Option<usize> {
    let mut best: Option<usize> = None;
    let mut dir = Some(rel);
    while let Some(d) = dir {
        if let Ok(text) = std::fs::read_to_string(root.join(d).join("cpu.max"))
            && let Some(n) = parse_cpu_max(&text)
        {
            best = Some(best.map_or(n, |b| b.min(n)));
        }
        dir = d.parent();
    }
    best
}

/// `"max 100000"` → none; `"200000 100000"` → 2; `"150000 100000"` → 2.
pub fn parse_cpu_max(text: &str) -> Option<usize> {
    let mut it = text.split_whitespace();
    let quota: u64 = it.next()?.parse().ok()?;
    let period: u64 = it.next()?.parse().ok().filter(|p| *p > 0)?;
    Some((quota.div_ceil(period) as usize).max(1))
}

/// Spack's `-j` for an install that starts while `busy` installs (itself included) run
/// or start at once: an equal share of the CPUs, at least 1. Installs that start and
/// end at other times are not re-split (a running Spack cannot be given a new `-j`);
/// the jobserver rebalances the make-based builds among themselves.
pub fn share(cpus: usize, busy: usize) -> usize {
    (cpus / busy.max(1)).max(1)
}

// ---- the jobserver ----------------------------------------------------------------

struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// A second open of the read end, non-blocking, so the worker's own attempts never
    /// wait (O_NONBLOCK on the shared end would change it for every make too).
    try_read: File,
}

impl Pipe {
    fn new(tokens: usize) -> std::io::Result<Pipe> {
        use nix::fcntl::{FcntlArg, OFlag, fcntl};
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        // Well above 4, so that moving them to 3 and 4 in the child never overwrites
        // one with the other.
        let high = |fd: OwnedFd| -> std::io::Result<OwnedFd> {
            let n = fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(10))?;
            // SAFETY: fcntl returned a new descriptor that nothing else owns.
            Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(n) })
        };
        let (read, write) = (high(r)?, high(w)?);
        let try_read = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
            .open(format!("/proc/self/fd/{}", read.as_raw_fd()))?;
        let pipe = Pipe {
            read,
            write,
            try_read,
        };
        let bytes = vec![b'+'; tokens];
        (&File::from(pipe.write.try_clone()?)).write_all(&bytes)?;
        Ok(pipe)
    }

    fn put(&self) {
        let _ = nix::unistd::write(&self.write, b"+");
    }

    fn try_take(&self) -> bool {
        let mut b = [0u8; 1];
        matches!((&self.try_read).read(&mut b), Ok(1))
    }
}

use std::os::unix::fs::OpenOptionsExt;

struct State {
    pipe: Arc<Pipe>,
    generation: u64,
    /// The worker wants one token to start another install.
    wanted: bool,
    /// Tokens the helper thread took for the worker, not yet given to an install.
    spare: usize,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
}

/// The worker's side of the jobserver (see the module's doc).
pub struct Jobserver {
    cpus: usize,
    shared: Arc<Shared>,
    /// Installs running on this jobserver.
    running: usize,
}

impl fmt::Debug for Jobserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jobserver")
            .field("cpus", &self.cpus)
            .field("running", &self.running)
            .finish()
    }
}

impl Jobserver {
    /// A jobserver for `cpus` CPUs; `wake` is called (from a helper thread) when a
    /// token the worker waited for has arrived.
    pub fn new(cpus: usize, wake: impl Fn() + Send + 'static) -> std::io::Result<Jobserver> {
        let cpus = cpus.max(1);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pipe: Arc::new(Pipe::new(cpus - 1)?),
                generation: 0,
                wanted: false,
                spare: 0,
            }),
            cv: Condvar::new(),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("jobserver".into())
            .spawn(move || helper(s, wake))?;
        Ok(Jobserver {
            cpus,
            shared,
            running: 0,
        })
    }

    pub fn cpus(&self) -> usize {
        self.cpus
    }

    /// The descriptors to hand to a starting install (valid until [`Jobserver::release`]
    /// leaves no install running).
    pub fn fds(&self) -> (RawFd, RawFd) {
        let st = self.shared.state.lock().expect("jobserver lock");
        (st.pipe.read.as_raw_fd(), st.pipe.write.as_raw_fd())
    }

    /// `MAKEFLAGS` for an install: the total budget and the descriptors it finds the
    /// jobserver on, in both spellings (make ≥ 4.2 reads `--jobserver-auth`, older makes
    /// `--jobserver-fds`).
    pub fn makeflags(&self) -> String {
        format!(
            "-j{} --jobserver-fds={CHILD_READ_FD},{CHILD_WRITE_FD} --jobserver-auth={CHILD_READ_FD},{CHILD_WRITE_FD}",
            self.cpus
        )
    }

    /// May one more install start now? The first needs nothing; each further one needs
    /// a token, taken now if one is free, else asked of the helper thread (whose `wake`
    /// comes when it has one). On `true` the install counts as running.
    pub fn admit(&mut self) -> bool {
        if self.running > 0 {
            let mut st = self.shared.state.lock().expect("jobserver lock");
            if st.spare > 0 {
                st.spare -= 1;
            } else if !st.pipe.try_take() {
                if !st.wanted {
                    st.wanted = true;
                    self.shared.cv.notify_all();
                }
                return false;
            }
        }
        self.running += 1;
        true
    }

    /// Nothing more is to start now: give back a token taken for nobody.
    pub fn settle(&mut self) {
        let mut st = self.shared.state.lock().expect("jobserver lock");
        st.wanted = false;
        while st.spare > 0 {
            st.spare -= 1;
            st.pipe.put();
        }
    }

    /// An install admitted by [`Jobserver::admit`] has ended. When it was the last, the
    /// pipe is replaced by a full one: tokens a killed make never gave back are whole
    /// again, and a stray process still holding the old pipe can no longer add any.
    pub fn release(&mut self) -> std::io::Result<()> {
        self.running = self.running.saturating_sub(1);
        let mut st = self.shared.state.lock().expect("jobserver lock");
        if self.running > 0 {
            st.pipe.put();
            return Ok(());
        }
        let fresh = Arc::new(Pipe::new(self.cpus - 1)?);
        let old = std::mem::replace(&mut st.pipe, fresh);
        st.generation += 1;
        st.wanted = false;
        st.spare = 0;
        // Wakes the helper if it waits on the old pipe (it drops what it reads there).
        old.put();
        Ok(())
    }
}

/// Takes a token for the worker whenever it wants one, competing for it with the makes
/// on equal terms (a blocking read), and tells the worker by `wake`.
fn helper(s: Arc<Shared>, wake: impl Fn()) {
    loop {
        let (pipe, generation) = {
            let mut st = s.state.lock().expect("jobserver lock");
            while !st.wanted {
                st = s.cv.wait(st).expect("jobserver lock");
            }
            (st.pipe.clone(), st.generation)
        };
        let mut b = [0u8; 1];
        match nix::unistd::read(&pipe.read, &mut b) {
            Ok(1) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            _ => return,
        }
        let mut st = s.state.lock().expect("jobserver lock");
        if st.generation != generation {
            continue;
        }
        if st.wanted {
            st.wanted = false;
            st.spare += 1;
            drop(st);
            wake();
        } else {
            pipe.put();
        }
    }
}

// ---- memory and disk --------------------------------------------------------------

/// `MemAvailable` of /proc/meminfo, in bytes.
pub fn mem_available() -> Option<u64> {
    parse_meminfo(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

pub fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Bytes an unprivileged writer may still use on the file system of `path`.
pub fn disk_available(path: &Path) -> std::io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(path)?;
    Ok(st.blocks_available() as u64 * st.fragment_size() as u64)
}

/// The guards, as the config sets them.
#[derive(Debug, Clone, Default)]
pub struct Guards {
    pub min_free_memory: Option<Size>,
    pub min_free_disk: Option<Size>,
    /// Where `min_free_disk` is checked: the install tree, the build stage.
    pub disk_paths: Vec<PathBuf>,
}

impl Guards {
    /// Why no install may start now, said for people; `None` when all is well. A path
    /// that cannot be checked (missing) is said too: the builds would fail there anyway.
    pub fn why_wait(&self) -> Option<String> {
        if let Some(min) = self.min_free_memory
            && let Some(avail) = mem_available()
            && avail < min.0
        {
            return Some(format!(
                "waiting for memory: {} available (MemAvailable), below min_free_memory = {min}",
                Size(avail)
            ));
        }
        if let Some(min) = self.min_free_disk {
            for p in &self.disk_paths {
                match disk_available(p) {
                    Ok(avail) if avail < min.0 => {
                        return Some(format!(
                            "waiting for disk space: {} free on {}, below min_free_disk = {min}",
                            Size(avail),
                            p.display()
                        ));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        return Some(format!(
                            "waiting: cannot check the free space of {} ({e}); create it or fix min_free_disk's paths",
                            p.display()
                        ));
                    }
                }
            }
        }
        None
    }
}

// ---- the out-of-memory killer -----------------------------------------------------

/// How many processes the kernel's OOM killer has killed: the worker's cgroup v2
/// `memory.events` `oom_kill` when there is one, else the system's `/proc/vmstat`
/// count. A rise while an install ran, and its death by SIGKILL, say it was (very
/// likely) the OOM killer's victim.
pub fn oom_kills() -> Option<u64> {
    let cg = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|c| cgroup_v2_path(&c))
        .and_then(|rel| {
            std::fs::read_to_string(Path::new("/sys/fs/cgroup").join(rel).join("memory.events"))
                .ok()
        })
        .and_then(|t| counter(&t, "oom_kill"));
    cg.or_else(|| {
        std::fs::read_to_string("/proc/vmstat")
            .ok()
            .and_then(|t| counter(&t, "oom_kill"))
    })
}

/// The reason of a failed install, knowing the OOM kill count when it started and now:
/// a SIGKILL while the count rose is the OOM killer's; any other failure while it rose
/// (the killer usually picks a compiler, and make then fails) says so after `why`.
pub fn oom_reason(
    exit: super::Exit,
    before: Option<u64>,
    after: Option<u64>,
    why: String,
) -> String {
    let rose = matches!((before, after), (Some(b), Some(a)) if a > b);
    match exit {
        super::Exit::Signal(9) if rose => "killed by the out-of-memory killer (SIGKILL while \
             the kernel's oom_kill count rose); give builds more memory, or set \
             min_free_memory or fewer cpus"
            .into(),
        _ if rose => format!(
            "{why} (the out-of-memory killer killed a process while it ran: likely a compiler)"
        ),
        _ => why,
    }
}

/// The value of a `NAME VALUE` line.
pub fn counter(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()? == name).then(|| it.next()?.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M").unwrap(), Size(512 << 20));
        assert_eq!(parse_size("1.5G").unwrap(), Size(3 << 29));
        assert_eq!(parse_size("2GiB").unwrap(), Size(2 << 30));
        assert_eq!(parse_size("100").unwrap(), Size(100));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("3X").is_err());
        assert_eq!(Size(8 << 30).to_string(), "8G");
        assert_eq!(Size(3 << 29).to_string(), "1.5G");
    }

    #[test]
    fn cpu_quota() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("200000 100000\n"), Some(2));
        assert_eq!(parse_cpu_max("150000 100000\n"), Some(2));
        assert_eq!(parse_cpu_max("1000 100000\n"), Some(1));
        assert_eq!(
            cgroup_v2_path("4:memory:/x\n0::/system.slice/si.service\n"),
            Some(PathBuf::from("system.slice/si.service"))
        );
        let d = tempfile::tempdir().unwrap();
        let leaf = d.path().join("a/b");
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::write(d.path().join("a/cpu.max"), "300000 100000\n").unwrap();
        std::fs::write(leaf.join("cpu.max"), "max 100000\n").unwrap();
        assert_eq!(cgroup_quota(d.path(), Path::new("a/b")), Some(3));
        assert!(available_cpus() >= 1);
    }

    #[test]
    fn shares() {
        assert_eq!(share(64, 1), 64);
        assert_eq!(share(64, 4), 16);
        assert_eq!(share(4, 8), 1);
        assert_eq!(share(6, 4), 1);
    }

    #[test]
    fn meminfo_and_counters() {
        let m = "MemTotal: 100 kB\nMemFree: 10 kB\nMemAvailable:   2048 kB\n";
        assert_eq!(parse_meminfo(m), Some(2 << 20));
        assert_eq!(
            counter("low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n", "oom_kill"),
            Some(2)
        );
        assert_eq!(counter("pgfault 9\noom_kill 0\n", "oom"), None);
        use crate::executor::Exit;
        let why = || "spack exited with code 1".to_string();
        assert!(
            oom_reason(Exit::Signal(9), Some(3), Some(4), why())
                .starts_with("killed by the out-of-memory killer")
        );
        assert_eq!(
            oom_reason(
                Exit::Signal(9),
                Some(3),
                Some(3),
                "killed by signal 9".into()
            ),
            "killed by signal 9"
        );
        assert_eq!(oom_reason(Exit::Code(1), None, Some(9), why()), why());
        assert!(
            oom_reason(Exit::Code(2), Some(0), Some(1), why())
                .ends_with("killed a process while it ran: likely a compiler)")
        );
        assert!(mem_available().is_some());
    }

    #[test]
    fn tokens_are_held_for_every_install_but_the_first_and_made_whole_when_idle() {
        let mut js = Jobserver::new(3, || {}).unwrap();
        let count = |js: &Jobserver| {
            let st = js.shared.state.lock().unwrap();
            let mut n = 0;
            while st.pipe.try_take() {
                n += 1;
            }
            for _ in 0..n {
                st.pipe.put();
            }
            n
        };
        assert_eq!(count(&js), 2);
        assert!(js.admit());
        assert_eq!(
            count(&js),
            2,
            "the first install uses the worker's own token"
        );
        assert!(js.admit());
        assert!(js.admit());
        assert_eq!(
            count(&js),
            0,
            "one token held for each install beyond the first"
        );
        js.release().unwrap();
        assert_eq!(count(&js), 1);
        // A make killed while holding that token never gives it back...
        assert!(js.shared.state.lock().unwrap().pipe.try_take());
        js.release().unwrap();
        assert_eq!(
            count(&js),
            1,
            "one of two tokens lost while an install runs"
        );
        js.release().unwrap();
        // ...and the pipe is whole again once nothing runs.
        assert_eq!(count(&js), 2);
    }

    #[test]
    fn the_helper_brings_a_token_that_comes_back_later() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut js = Jobserver::new(2, move || {
            let _ = tx.send(());
        })
        .unwrap();
        assert!(js.admit());
        let stolen = {
            let st = js.shared.state.lock().unwrap();
            assert!(st.pipe.try_take());
            st.pipe.clone()
        };
        assert!(!js.admit());
        stolen.put();
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        assert!(js.admit());
    }
}
