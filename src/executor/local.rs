//! Runs an install as a child process of the worker: by argv (never a shell), stdin from
//! /dev/null, stdout and stderr appended to the job's log, in a new process group so the
//! whole build can be signalled at once, and with `PR_SET_PDEATHSIG` = SIGKILL so it dies
//! with the worker. The death signal fires when the *thread* that forked exits, so the
//! worker must start installs from its main thread, which lives as long as the process.
//! Spack gets descriptors 0, 1 and 2, and the worker's make jobserver moved to 3 and 4
//! when it has one ([`keep_fds`], the one place that decides), and nothing else: every
//! other descriptor is marked close-on-exec in the child, whatever its flag was (the
//! worker may have inherited some from whoever started it, and a library may open one
//! without the flag). They are marked rather than closed because the standard library
//! reports a failed exec through one of them. The job marker is an environment variable,
//! so it needs none.

use super::budget::{CHILD_READ_FD, CHILD_WRITE_FD};
use super::{Executor, Exit, Handle, Launch, OnExit};
use crate::error::{IoContext, Result};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};

#[derive(Debug, Default)]
pub struct LocalExecutor;

impl Executor for LocalExecutor {
    fn start(&mut self, launch: &Launch, on_exit: OnExit) -> Result<Handle> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(crate::spool::FILE_MODE)
            .open(&launch.log)
            .at("open the log", &launch.log)?;
        let err = log.try_clone().at("open the log", &launch.log)?;
        let parent = std::process::id() as i32;
        let jobserver = launch.jobserver;
        let first_closed = 3 + keep_fds(launch).len() as i32;
        let mut cmd = Command::new(&launch.argv[0]);
        cmd.args(&launch.argv[1..])
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0);
        // SAFETY: only async-signal-safe calls (prctl, getppid, dup2, syscall, fcntl,
        // _exit) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                super::die_with(parent)?;
                if let Some((r, w)) = jobserver {
                    // The pipe's own descriptors are above 9, so neither is overwritten;
                    // dup2's copies are not close-on-exec.
                    if nix::libc::dup2(r, CHILD_READ_FD) < 0
                        || nix::libc::dup2(w, CHILD_WRITE_FD) < 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                close_on_exec_from(first_closed);
                Ok(())
            });
        }
        let mut child = cmd.spawn().at("start", &launch.argv[0])?;
        let pid = child.id() as i32;
        std::thread::Builder::new()
            .name(format!("wait-{}", launch.name))
            .spawn(move || {
                let exit = match child.wait() {
                    Ok(st) => match (st.code(), st.signal()) {
                        (Some(c), _) => Exit::Code(c),
                        (None, Some(s)) => Exit::Signal(s),
                        _ => Exit::NotStarted,
                    },
                    Err(_) => Exit::NotStarted,
                };
                on_exit(exit);
            })
            .at("start a thread for", &launch.log)?;
        Ok(Handle {
            pgid: Some(pid),
            slurm: None,
        })
    }

    fn stop(&mut self, handle: &Handle, force: bool) {
        if let Some(pgid) = handle.pgid {
            let sig = if force {
                Signal::SIGKILL
            } else {
                Signal::SIGTERM
            };
            let _ = killpg(Pid::from_raw(pgid), sig);
        }
    }

    fn kind(&self) -> &'static str {
        "local"
    }
}

/// The descriptors an install inherits beyond stdin, stdout and stderr, from 3 upwards:
/// the jobserver's read and write ends when the launch has one. Spack reads them from
/// `MAKEFLAGS` and passes them to every make it runs; anything else the worker has open
/// (the spool lock, logs, inotify) is none of the build's business.
pub fn keep_fds(launch: &Launch) -> &'static [i32] {
    if launch.jobserver.is_some() {
        &[CHILD_READ_FD, CHILD_WRITE_FD]
    } else {
        &[]
    }
}

/// Mark every descriptor from `first` on close-on-exec (not closed at once: the standard
/// library reports a failed exec through one of them). Async-signal-safe.
fn close_on_exec_from(first: i32) {
    const CLOSE_RANGE_CLOEXEC: nix::libc::c_uint = 1 << 2;
    // SAFETY: close_range and fcntl only change descriptor flags.
    unsafe {
        if nix::libc::syscall(
            nix::libc::SYS_close_range,
            first as nix::libc::c_uint,
            nix::libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        ) == 0
        {
            return;
        }
        // Kernels before 5.11: one by one, up to the descriptor limit.
        let max = nix::libc::sysconf(nix::libc::_SC_OPEN_MAX).clamp(1024, 65536) as i32;
        for fd in first..max {
            nix::libc::fcntl(fd, nix::libc::F_SETFD, nix::libc::FD_CLOEXEC);
        }
    }
}

/// The environment of an install that joins the jobserver: its `MAKEFLAGS`, in place of
/// any the allow-list let through (one naming descriptors the child lacks makes Spack fail).
pub fn with_makeflags(mut env: Vec<(String, String)>, makeflags: String) -> Vec<(String, String)> {
    env.retain(|(k, _)| k != "MAKEFLAGS" && k != "MFLAGS");
    env.push(("MAKEFLAGS".into(), makeflags));
    env.sort();
    env
}
