//! Spack commands that answer a question and change nothing (`spack spec --json`,
//! `spack find --json`): run by argv (never a shell) with the install's clean
//! environment, stdin from /dev/null, in a process group of their own, and stopped at a
//! timeout. Their output is captured, bounded, for the caller to parse.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked exits; [`ask`] waits for its
//! child on the calling thread, so the child is reaped before that thread can end, and
//! a worker that dies takes its questions with it.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The most of stdout kept (a concrete spec of a large environment is a few MB).
pub const MAX_STDOUT: u64 = 64 << 20;
/// The most of stderr kept: Spack's reasons are a few lines.
pub const MAX_STDERR: u64 = 64 << 10;

/// What a question's process said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The exit code, or `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// It ran past its timeout and was killed.
    pub timed_out: bool,
}

impl Answer {
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }
}

fn read_bounded(r: impl Read, limit: u64) -> String {
    let mut buf = Vec::new();
    let mut r = r.take(limit);
    let _ = r.read_to_end(&mut buf);
    // Drain what is past the limit, so the child never blocks on a full pipe.
    let _ = io::copy(&mut r.into_inner(), &mut io::sink());
    String::from_utf8_lossy(&buf).into_owned()
}

/// Run `argv` with exactly `env`, wait at most `timeout`, and return what it said.
/// An error means it could not be started at all.
pub fn ask(argv: &[String], env: &[(String, String)], timeout: Duration) -> io::Result<Answer> {
    let parent = std::process::id() as i32;
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || super::die_with(parent));
    }
    let mut child = cmd.spawn()?;
    let pgid = Pid::from_raw(child.id() as i32);
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    // The watchdog sleeps until the timeout or until told the child has ended: no polling.
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(timeout) {
            let _ = killpg(pgid, Signal::SIGKILL);
            return true;
        }
        false
    });
    let err_reader = std::thread::spawn(move || read_bounded(stderr, MAX_STDERR));
    let out = read_bounded(stdout, MAX_STDOUT);
    let status = child.wait()?;
    let _ = done_tx.send(());
    let timed_out = watchdog.join().unwrap_or(false);
    let err = err_reader.join().unwrap_or_default();
    Ok(Answer {
        code: status.code(),
        stdout: out,
        stderr: err,
        timed_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn captures_both_streams_and_the_code() {
        let a = ask(
            &argv(&["/bin/sh", "-c", "echo out; echo err >&2; exit 3"]),
            &[],
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(a.code, Some(3));
        assert_eq!(a.stdout, "out\n");
        assert_eq!(a.stderr, "err\n");
        assert!(!a.timed_out && !a.success());
    }

    #[test]
    fn a_question_past_its_timeout_is_killed_with_its_children() {
        let t = std::time::Instant::now();
        let a = ask(
            &argv(&["/bin/sh", "-c", "sleep 30 & sleep 30; echo never"]),
            &[],
            Duration::from_millis(300),
        )
        .unwrap();
        assert!(a.timed_out, "{a:?}");
        assert_eq!(a.code, None);
        // The background sleep held stdout open: it was killed with its group, or the
        // read would have waited 30 s.
        assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    }

    #[test]
    fn the_environment_is_exactly_what_was_given() {
        let a = ask(
            &argv(&["/usr/bin/env"]),
            &[("ONLY".into(), "this".into())],
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(a.stdout, "ONLY=this\n");
    }
}
