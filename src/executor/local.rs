//! Runs an install as a child process of the worker: by argv (never a shell), stdin from
//! /dev/null, stdout and stderr appended to the job's log, in a new process group so the
//! whole build can be signalled at once, and with `PR_SET_PDEATHSIG` = SIGKILL so it dies
//! with the worker. The death signal fires when the *thread* that forked exits, so the
//! worker must start installs from its main thread, which lives as long as the process.
//!
//! Spack gets descriptors 0, 1 and 2 and nothing else: every descriptor above 2 is closed
//! in the child before exec, whatever its close-on-exec flag (the worker may have
//! inherited some from whoever started it, and a library may open one without the flag).
//! The job marker is an environment variable, so it needs none. A descriptor Spack must
//! inherit on purpose (a GNU make jobserver's pipe, say) goes in [`kept_fds`], the one
//! place that decides.

use super::{Executor, Exit, Handle, Launch, OnExit};
use crate::error::{IoContext, Result};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::{Pid, getppid};
use std::fs::OpenOptions;
use std::os::fd::RawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};

#[derive(Debug, Default)]
pub struct LocalExecutor;

/// Descriptors above 2 that the install inherits on purpose, sorted. None today: the seam
/// for a jobserver pipe shared with Spack's builds.
fn kept_fds(_launch: &Launch) -> Vec<RawFd> {
    Vec::new()
}

/// Close every descriptor above 2 but those in `keep` (sorted), and clear close-on-exec
/// on those. Runs between fork and exec: system calls only, no allocation.
fn close_fds_above_2(keep: &[RawFd], max_fd: RawFd) {
    let mut from: RawFd = 3;
    for &k in keep {
        if k >= from {
            close_between(from, k - 1, max_fd);
            // SAFETY: fcntl on a descriptor number; a bad one just fails.
            unsafe { nix::libc::fcntl(k, nix::libc::F_SETFD, 0) };
            from = k + 1;
        }
    }
    close_between(from, RawFd::MAX, max_fd);
}

fn close_between(first: RawFd, last: RawFd, max_fd: RawFd) {
    if first > last {
        return;
    }
    // SAFETY: close_range(2) only closes descriptors of this (forked) process.
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_close_range,
            first as nix::libc::c_uint,
            last as nix::libc::c_uint,
            0 as nix::libc::c_uint,
        )
    };
    if r != 0 {
        // Before Linux 5.9: one close(2) per possible descriptor.
        for fd in first..=last.min(max_fd) {
            // SAFETY: as above; closing a descriptor that is not open fails harmlessly.
            unsafe { nix::libc::close(fd) };
        }
    }
}

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
        let keep = kept_fds(launch);
        // The bound for kernels without close_range(2), read before fork.
        // SAFETY: sysconf has no preconditions.
        let max_fd = match unsafe { nix::libc::sysconf(nix::libc::_SC_OPEN_MAX) } {
            n if n > 0 => n.min(1 << 20) as RawFd,
            _ => 1024,
        };
        let mut cmd = Command::new(&launch.argv[0]);
        cmd.args(&launch.argv[1..])
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0);
        // SAFETY: only async-signal-safe calls (prctl, getppid, _exit, close_range, close,
        // fcntl) between fork and exec; `keep` was allocated before fork and is only read.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                // The worker may have died before prctl: then nobody would kill us.
                if getppid().as_raw() != parent {
                    nix::libc::_exit(1);
                }
                close_fds_above_2(&keep, max_fd);
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
