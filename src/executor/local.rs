//! Runs an install as a child process of the worker: by argv (never a shell), stdin from
//! /dev/null, stdout and stderr appended to the job's log, in a new process group so the
//! whole build can be signalled at once, and with `PR_SET_PDEATHSIG` = SIGKILL so it dies
//! with the worker. The death signal fires when the *thread* that forked exits, so the
//! worker must start installs from its main thread, which lives as long as the process.

use super::{Executor, Exit, Handle, Launch, OnExit};
use crate::error::{IoContext, Result};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::{Pid, getppid};
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
        let mut cmd = Command::new(&launch.argv[0]);
        cmd.args(&launch.argv[1..])
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0);
        // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                // The worker may have died before prctl: then nobody would kill us.
                if getppid().as_raw() != parent {
                    nix::libc::_exit(1);
                }
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
