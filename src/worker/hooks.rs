//! What happens after a job ends, besides the spool: the site's `on_finish` program and
//! the owner's mail ([`super::mail`]). Both run on one thread of their own, in the order
//! the jobs ended, so a slow or hanging hook never holds up the worker's loop; each
//! program runs in a process group of its own, is killed (the whole group) at
//! `hook_timeout`, and is reaped. Its exit status and the end of its output go to the
//! worker's log; nothing it does changes the job.
//!
//! The hook gets the job in its environment (`SPACK_INSTALLER_JOB_ID`, `…_NAME`,
//! `…_STATE`, `…_SPEC`, `…_OWNER`, `…_EXIT_CODE`, `…_REASON`, `…_LOG`, `…_STARTED_AT`,
//! `…_FINISHED_AT`), on top of the worker's variables that `env_allow` names. The spec is
//! the validated one (printable ASCII, see `job::spec`); every value has its control
//! characters escaped (`\n`, `\u{1b}`), so a value is one line and a script that
//! writes it out cannot be steered by a terminal escape or a forged line. A hook must
//! still quote what it expands, as with any data.
//!
//! When the worker stops, the jobs already ended are still notified before it exits
//! (each bounded by `hook_timeout`), and before it releases the spool's lock: no second
//! worker starts while a hook of the first still runs.

use super::mail::{self, MailTo};
use crate::job::{Job, JobName, State};
use crate::spool::Spool;
use crate::time::Timestamp;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How much of a program's output reaches the worker's log.
const OUTPUT_KEPT: u64 = 2048;
/// The longest value a hook is given for user-influenced text (reasons, specs).
const MAX_VALUE: usize = 4096;

/// A job that has ended, as hooks and mail see it: every text already escaped.
#[derive(Debug, Clone)]
pub struct Ended {
    pub id: u64,
    pub name: String,
    pub state: State,
    pub spec: String,
    pub owner: String,
    pub exit_code: Option<i32>,
    pub reason: String,
    pub log: PathBuf,
    pub submitted_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
}

impl Ended {
    pub fn of(spool: &Spool, job: &Job) -> Ended {
        Ended {
            id: job.meta.id.0,
            name: escape(&job.name().to_string(), MAX_VALUE),
            state: job.state.state,
            spec: escape(job.spec_text(), MAX_VALUE),
            owner: escape(&job.meta.owner, MAX_VALUE),
            exit_code: job.state.exit_code,
            reason: escape(job.state.reason.as_deref().unwrap_or(""), MAX_VALUE),
            log: spool.log_path(&JobName::new(job.meta.id, &job.meta.package)),
            submitted_at: job.meta.submitted_at,
            started_at: job.state.started_at,
            finished_at: job.state.finished_at,
        }
    }

    /// The hook's view: `SPACK_INSTALLER_*` variables.
    pub fn env(&self) -> Vec<(String, String)> {
        let t = |t: Option<Timestamp>| t.map(|t| t.to_string()).unwrap_or_default();
        [
            ("JOB_ID", self.id.to_string()),
            ("NAME", self.name.clone()),
            ("STATE", self.state.to_string()),
            ("SPEC", self.spec.clone()),
            ("OWNER", self.owner.clone()),
            (
                "EXIT_CODE",
                self.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            ),
            ("REASON", self.reason.clone()),
            ("LOG", escape(&self.log.display().to_string(), MAX_VALUE)),
            ("STARTED_AT", t(self.started_at)),
            ("FINISHED_AT", t(self.finished_at)),
        ]
        .into_iter()
        .map(|(k, v)| (format!("SPACK_INSTALLER_{k}"), v))
        .collect()
    }
}

/// Control characters (newlines included) as Rust escapes, cut once `max` bytes are reached.
pub fn escape(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
        if out.len() >= max {
            break;
        }
    }
    out
}

/// What to do for one ended job, decided by the worker with the config of that moment.
#[derive(Debug)]
pub struct Notice {
    pub ended: Ended,
    /// `on_finish`; `None` when unset.
    pub hook: Option<Hook>,
    pub mail: Option<MailTo>,
    pub timeout: Duration,
}

/// The program to run, and the worker's variables it inherits.
#[derive(Debug)]
pub struct Hook {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// The thread that runs hooks and sends mail. Dropping it waits for the notices already
/// sent (each bounded by its timeout).
pub struct Notifier {
    tx: Option<Sender<Notice>>,
    thread: Option<JoinHandle<()>>,
    /// Notices sent and not yet delivered.
    queued: Arc<AtomicUsize>,
}

impl Notifier {
    pub fn start() -> Notifier {
        let (tx, rx) = mpsc::channel::<Notice>();
        let queued = Arc::new(AtomicUsize::new(0));
        let left = queued.clone();
        let thread = std::thread::Builder::new()
            .name("notify".into())
            .spawn(move || {
                for n in rx {
                    deliver(n);
                    left.fetch_sub(1, Ordering::Relaxed);
                }
            })
            .map_err(|e| tracing::error!("cannot start the notification thread: {e}"))
            .ok();
        Notifier {
            tx: thread.is_some().then_some(tx),
            thread,
            queued,
        }
    }

    pub fn send(&self, n: Notice) {
        if let Some(tx) = &self.tx {
            self.queued.fetch_add(1, Ordering::Relaxed);
            let _ = tx.send(n);
        }
    }

    /// Run the notices already sent, then end the thread. The worker calls this while it
    /// still holds the spool's lock, so no second worker starts beside a hook.
    pub fn finish(&mut self) {
        let left = self.queued.load(Ordering::Relaxed);
        if left > 0 && self.thread.is_some() {
            tracing::info!("stopping once the hooks and mail of {left} ended job(s) are done");
        }
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.finish();
    }
}

fn deliver(n: Notice) {
    let job = &n.ended.name;
    if let Some(Hook { argv, env }) = &n.hook {
        let mut all = env.clone();
        all.extend(n.ended.env());
        match run_bounded(argv, &all, None, n.timeout) {
            Ok(r) if r.status.is_some_and(|s| s.success()) => {
                tracing::info!(job = %job, hook = %argv[0], output = %r.output, "on_finish hook exited 0")
            }
            Ok(r) => tracing::warn!(
                job = %job,
                hook = %argv[0],
                output = %r.output,
                "on_finish hook {}; the job is unaffected",
                r.describe(n.timeout)
            ),
            Err(e) => tracing::warn!(
                job = %job,
                hook = %argv[0],
                "on_finish hook could not be run: {e}; check `on_finish` in the config"
            ),
        }
    }
    if let Some(to) = &n.mail {
        mail::send(to, &n.ended, n.timeout);
    }
}

/// How a bounded program ended.
pub struct Ran {
    /// `None`: killed at the timeout.
    pub status: Option<ExitStatus>,
    /// The end of its stdout and stderr, escaped.
    pub output: String,
}

impl Ran {
    pub fn describe(&self, timeout: Duration) -> String {
        match self.status {
            None => format!(
                "was killed after the {} timeout",
                humantime::format_duration(timeout)
            ),
            Some(s) => match (s.code(), s.signal()) {
                (Some(c), _) => format!("exited with code {c}"),
                (_, Some(sig)) => format!("was killed by signal {sig}"),
                _ => format!("ended: {s}"),
            },
        }
    }
}

/// Run `argv` (no shell) with exactly `env`, feeding it `stdin`, for at most `timeout`:
/// then its whole process group is killed. Output goes to an unnamed temp file, so a
/// chatty program never blocks on a full pipe.
pub fn run_bounded(
    argv: &[String],
    env: &[(String, String)],
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> std::io::Result<Ran> {
    let mut out = tempfile::tempfile()?;
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir("/")
        .process_group(0)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(out.try_clone()?)
        .stderr(out.try_clone()?);
    let mut child = c.spawn()?;
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A message is small (see mail::MAX_MESSAGE), below a pipe's buffer: this write
        // does not wait for the reader. A program that exits early only breaks the pipe.
        let _ = pipe.write_all(bytes);
    }
    let end = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if Instant::now() >= end {
            let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let len = out.seek(SeekFrom::End(0))?;
    out.seek(SeekFrom::Start(len.saturating_sub(OUTPUT_KEPT)))?;
    let mut buf = Vec::new();
    out.read_to_end(&mut buf)?;
    Ok(Ran {
        status,
        output: escape(
            String::from_utf8_lossy(&buf).trim_end(),
            4 * OUTPUT_KEPT as usize,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_keeps_values_on_one_line() {
        assert_eq!(escape("a\nb\x1b[31mc\td", 100), "a\\nb\\u{1b}[31mc\\td");
        assert_eq!(escape("hdf5@1.14 +mpi", 100), "hdf5@1.14 +mpi");
        assert_eq!(escape("ééé", 3), "éé");
    }
}
