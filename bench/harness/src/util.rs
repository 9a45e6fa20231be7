//! Measuring processes: wall time, CPU time and peak memory of a child (via `wait4`),
//! bounded polls, statistics, and samples of a running process from /proc.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One finished child process.
#[derive(Debug, Clone)]
pub struct Run {
    pub wall: Duration,
    /// CLOCK_REALTIME (ns) right after the child was reaped: "the command returned".
    pub ended_ns: i128,
    pub ok: bool,
    pub code: i32,
    /// Peak resident memory, KiB (ru_maxrss).
    pub maxrss_kib: u64,
    pub stdout: String,
}

pub fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// Run `cmd` to completion and measure it. stdout is captured only when `capture`.
pub fn run(cmd: &mut Command, capture: bool) -> Result<Run, String> {
    cmd.stdin(Stdio::null());
    if capture {
        cmd.stdout(Stdio::piped());
    } else {
        cmd.stdout(Stdio::null());
    }
    let t0 = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    let mut out = String::new();
    if let Some(mut so) = child.stdout.take() {
        use std::io::Read;
        let _ = so.read_to_string(&mut out);
    }
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a plain wait4 on our own child; std's Child is never waited on afterwards.
    let r = loop {
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    let wall = t0.elapsed();
    let ended_ns = now_ns();
    std::mem::forget(child);
    if r != pid {
        return Err(format!(
            "wait4 on {:?} failed: {}",
            cmd.get_program(),
            std::io::Error::last_os_error()
        ));
    }
    let exited = libc::WIFEXITED(status);
    let code = if exited {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    Ok(Run {
        wall,
        ended_ns,
        ok: exited && code == 0,
        code,
        maxrss_kib: ru.ru_maxrss as u64,
        stdout: out,
    })
}

/// Like [`run`], but a non-zero exit is an error that names the command.
pub fn run_ok(cmd: &mut Command) -> Result<Run, String> {
    let desc = format!("{cmd:?}");
    let r = run(cmd, false)?;
    if r.ok {
        Ok(r)
    } else {
        Err(format!("{desc} exited with {}", r.code))
    }
}

/// Poll `f` every `step` until it is true or `limit` passes.
pub fn wait_until(limit: Duration, step: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(step);
    }
}

/// Entries of a directory that do not start with `.`.
pub fn count(dir: &Path) -> usize {
    fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
        .unwrap_or(0)
}

pub fn median(v: &[f64]) -> f64 {
    percentile(v, 50.0)
}

/// Nearest-rank percentile.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// CPU time (ns, from schedstat) and wake-ups (voluntary context switches), summed over a
/// process's threads.
#[derive(Debug, Clone, Default)]
pub struct ProcSample {
    pub cpu_ns: u64,
    pub switches: u64,
    pub rss_kib: u64,
    /// Context switches of each thread, by thread id: (name, switches).
    pub threads: std::collections::BTreeMap<u32, (String, u64)>,
}

pub fn sample(pid: u32) -> Option<ProcSample> {
    let mut s = ProcSample::default();
    for t in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let p = t.path();
        if let Ok(ss) = fs::read_to_string(p.join("schedstat")) {
            s.cpu_ns += ss
                .split_whitespace()
                .next()
                .and_then(|x| x.parse::<u64>().ok())
                .unwrap_or(0);
        }
        if let Ok(st) = fs::read_to_string(p.join("status")) {
            let mut n = 0;
            for l in st.lines() {
                // A voluntary switch is a sleep, so one wake-up; involuntary ones are
                // preemptions by other work on the machine.
                if l.starts_with("voluntary_ctxt_switches:") {
                    n += l
                        .split_whitespace()
                        .nth(1)
                        .and_then(|x| x.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
            s.switches += n;
            let tid = t
                .file_name()
                .to_str()
                .and_then(|x| x.parse().ok())
                .unwrap_or(0);
            let name = fs::read_to_string(p.join("comm")).unwrap_or_default();
            s.threads.insert(tid, (name.trim().to_string(), n));
        }
    }
    let st = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.rss_kib = st
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    Some(s)
}

/// The output of a shell command, trimmed; empty when it fails.
pub fn sh(cmd: &str) -> String {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
