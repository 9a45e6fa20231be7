//! Runs each install as one Slurm batch job, so one queue feeds a cluster. The spool stays
//! the one source of truth; Slurm only runs the installs.
//!
//! **No user text in a shell.** The batch script (given to `sbatch` on stdin) holds only
//! worker-controlled values: the path of our own binary, the spool, the config file and
//! the job's name (`[0-9a-z_-]`). It runs `spack-installer --spool DIR exec-job NAME`,
//! which reads the job file from `running/` and runs Spack by argv exactly as the local
//! executor does. The spec never appears in the script, on sbatch's command line or in
//! `--wrap`; users can add no sbatch option (only the admin's `slurm.extra_args`).
//!
//! **Off the worker's loop**: every Slurm command runs on a thread of its own and is
//! killed after 60 s, so an outage (each command then takes seconds to fail) never
//! stalls intake, requests or status. `start` hands the batch script to an `sbatch`
//! thread and returns; its answer (the job ID, or Slurm's refusal) wakes the worker and
//! is taken by [`Executor::submitted`]. One `sbatch` is on its way at a time, as one
//! would submit by hand, so Slurm's refusals back off in order.
//!
//! **Slurm unavailable**: whatever keeps `sbatch` from taking a job is a
//! [`Submitted::Refused`] with Slurm's own message; the worker puts the job back in
//! `pending/` and backs off (no fault of the job).
//!
//! **Tracking**: one `squeue` per check interval for all our jobs, with Slurm's state
//! and pending reason (kept in `[state.slurm]` for `status`). A job that left
//! `squeue` has ended: its state and exit code come from `sacct` when accounting exists,
//! else from `scontrol show job` (slurmctld keeps finished jobs for `MinJobAge`), else
//! from the exit file `exec-job` wrote (`slurm/NAME.exit`); all asked on the same
//! thread as `squeue`, the answer used at the next check.
//!
//! **Re-attaching**: the record's `[state.slurm]` says a job was handed to Slurm; with a
//! job ID it is simply tracked again, without one (the worker died between `sbatch`
//! returning and the write) it is found by name, working directory and attempt with
//! `squeue --states=all --name`, once any `sbatch` the dead worker left running has
//! ended (it may still land). A job Slurm knows is never submitted twice.
//!
//! **One Slurm job per attempt**: should an orphaned `sbatch` land anyway, `exec-job`
//! runs Spack only in the Slurm job whose ID the record holds; the others (strays: our
//! job name and spool, an ID no attempt recorded) are `scancel`led by ID and logged.

use super::{Executor, Exit, Handle, Launch, OnExit, Placed, Reattach, Submitted, Waker};
use crate::config::{Config, SlurmConfig};
use crate::error::{Error, IoContext, Result};
use crate::identity;
use crate::job::{Job, SlurmState};
use crate::spool::Spool;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Duration;

/// Slurm job names are `si-NNNNNN-PACKAGE`.
pub const JOB_PREFIX: &str = "si-";
/// The spool directory of the exit files `exec-job` writes (`NAME.exit`).
pub const SLURM_DIR: &str = "slurm";

/// The Slurm job name of a job.
pub fn slurm_name(name: &str) -> String {
    format!("{JOB_PREFIX}{name}")
}

/// `slurm/NAME.exit`.
pub fn exit_file(spool: &Spool, name: &str) -> PathBuf {
    spool.file(SLURM_DIR).join(format!("{name}.exit"))
}

/// What `exec-job` leaves behind: which Slurm job ran which attempt, and Spack's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExitRecord {
    pub slurm_job_id: u64,
    pub attempt: u32,
    pub exit_code: i32,
    /// Whether exec-job was signalled (scancel, or Slurm's time limit) before Spack ended.
    #[serde(default)]
    pub signalled: bool,
    /// How long Spack ran, in seconds.
    #[serde(default)]
    pub ran_s: u64,
}

impl ExitRecord {
    /// How the install ended, as far as the exit file tells: a signal that came once
    /// the job's `--time` had run out is Slurm's time limit, not a failure of Spack.
    /// Slurm signals every process of the job, so Spack may die of the SIGTERM (or the
    /// SIGKILL after `KillWait`) before exec-job sees its own: either counts.
    pub fn exit(&self, time_limit_s: Option<u64>) -> Exit {
        let killed = self.signalled || matches!(self.exit_code, 143 | 137);
        // Slurm's timer is coarse (it checks about every 30 s): allow that much.
        match time_limit_s {
            Some(limit) if killed && self.ran_s + 30 >= limit => Exit::Cluster {
                code: self.exit_code,
                why: "timed out (Slurm time limit)",
            },
            _ => Exit::Code(self.exit_code),
        }
    }
}

impl ExitRecord {
    /// Write `slurm/NAME.exit` whole: a dot-file in the same directory, renamed over it.
    pub fn write(&self, spool: &Spool, name: &str) -> Result<()> {
        let path = exit_file(spool, name);
        let tmp = spool
            .file(SLURM_DIR)
            .join(format!(".{name}.exit.{}", std::process::id()));
        let text = toml::to_string(self).expect("an exit record serializes");
        let mut f = std::fs::File::create(&tmp).at("create", &tmp)?;
        f.write_all(text.as_bytes()).at("write", &tmp)?;
        f.sync_all().at("fsync", &tmp)?;
        std::fs::rename(&tmp, &path).at("rename into place", &path)
    }

    pub fn read(spool: &Spool, name: &str) -> Option<ExitRecord> {
        toml::from_str(&std::fs::read_to_string(exit_file(spool, name)).ok()?).ok()
    }
}

/// Quote for sh: the value between single quotes, each `'` as `'\''`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The batch script: worker-controlled values only.
pub fn batch_script(binary: &Path, spool: &Spool, config: Option<&Path>, name: &str) -> String {
    let config = config
        .map(|c| format!(" --config {}", sh_quote(&c.display().to_string())))
        .unwrap_or_default();
    format!(
        "#!/bin/sh\n# spack-installer runs one job of its spool\nexec {bin} --spool {spool_q}{config} exec-job {name_q}\n",
        bin = sh_quote(&binary.display().to_string()),
        spool_q = sh_quote(&spool.root().display().to_string()),
        name_q = sh_quote(name),
    )
}

/// Slurm's `--time`: days-hours:minutes:seconds in whole minutes (Slurm counts time
/// limits in minutes and rounds up; we do it ourselves, so the log can say so).
fn slurm_time(d: Duration) -> String {
    let s = d.as_secs().div_ceil(60).max(1) * 60;
    format!(
        "{}-{:02}:{:02}:{:02}",
        s / 86400,
        s % 86400 / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// A time as Slurm prints it (`MM`, `MM:SS`, `HH:MM:SS`, `D-HH[:MM[:SS]]`); `None` for
/// `infinite`, `UNLIMITED` or anything else.
fn parse_slurm_time(s: &str) -> Option<Duration> {
    let (days, rest) = match s.split_once('-') {
        Some((d, r)) => (d.parse::<u64>().ok()?, r),
        None => (0, s),
    };
    let parts: Vec<u64> = rest
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let secs = match (s.contains('-'), parts.as_slice()) {
        (false, [m]) => m * 60,
        (false, [m, sec]) => m * 60 + sec,
        (_, [h, m, sec]) => h * 3600 + m * 60 + sec,
        (true, [h]) => h * 3600,
        (true, [h, m]) => h * 3600 + m * 60,
        _ => return None,
    };
    Some(Duration::from_secs(days * 86400 + secs))
}

/// Map a Slurm job state (and `ExitCode` as `N:S`) to how the install ended; `None`
/// while it is still pending, running, requeued or preempted.
pub fn map_state(state: &str, exit_code: &str) -> Option<Exit> {
    let state = state.split_whitespace().next().unwrap_or("");
    let (code, sig) = exit_code
        .split_once(':')
        .map(|(c, s)| (c.parse().unwrap_or(0), s.parse().unwrap_or(0)))
        .unwrap_or((exit_code.parse().unwrap_or(0), 0));
    let code_or_sig = if code == 0 && sig != 0 {
        128 + sig
    } else {
        code
    };
    let cluster = |why| {
        Some(Exit::Cluster {
            code: code_or_sig,
            why,
        })
    };
    match state {
        "COMPLETED" if code == 0 && sig == 0 => Some(Exit::Code(0)),
        "COMPLETED" | "FAILED" if code == 0 && sig != 0 => Some(Exit::Signal(sig)),
        "COMPLETED" | "FAILED" => Some(Exit::Code(code)),
        "TIMEOUT" => cluster("timed out (Slurm time limit)"),
        "OUT_OF_MEMORY" => cluster("ran out of memory (Slurm OUT_OF_MEMORY)"),
        "NODE_FAIL" => cluster("its node failed (Slurm NODE_FAIL)"),
        "BOOT_FAIL" => cluster("its node failed to boot (Slurm BOOT_FAIL)"),
        "DEADLINE" => cluster("missed its deadline (Slurm DEADLINE)"),
        "CANCELLED" => cluster("cancelled in Slurm"),
        "PENDING" | "RUNNING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "PREEMPTED"
        | "SUSPENDED" | "COMPLETING" | "CONFIGURING" | "RESIZING" | "SIGNALING" | "STAGE_OUT"
        | "STOPPED" | "RESV_DEL_HOLD" | "SPECIAL_EXIT" | "" => None,
        _ => cluster("ended in an unexpected Slurm state (see `scontrol show job`)"),
    }
}

/// What Slurm said when a command failed: its stderr's lines joined (`sbatch: error:
/// Batch job submission failed: ...`), or the exit status when it said nothing.
fn said(stderr: &[u8], status: std::process::ExitStatus) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        status.to_string()
    } else {
        lines.join("; ")
    }
}

/// Run a Slurm command; its stdout, or an error that names it and its stderr.
fn slurm(prog: &str, args: &[String], stdin: Option<&str>) -> Result<String> {
    slurm_raw(prog, args, stdin)
        .map_err(|(shown, why)| Error::Other(format!("`{shown}` failed: {why}")))
}

/// Run a Slurm command; its stdout, or the command as shown to people and why it failed.
fn slurm_raw(
    prog: &str,
    args: &[String],
    stdin: Option<&str>,
) -> std::result::Result<String, (String, String)> {
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = || format!("{prog} {}", args.join(" "));
    let mut child = cmd.spawn().map_err(|e| {
        (
            shown(),
            format!(
                "cannot run `{prog}`: {e}; install the Slurm client commands on the worker's host"
            ),
        )
    })?;
    if let Some(text) = stdin {
        // Dropped at the end of the statement: sbatch then sees the end of its input.
        let _ = child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(text.as_bytes());
    }
    // Read both pipes aside, so a full pipe cannot stall the command while we wait.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    use std::io::Read;
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let until = std::time::Instant::now() + SLURM_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if std::time::Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err((
                    shown(),
                    format!(
                        "`{prog}` had no answer from Slurm within {}s (stopped)",
                        SLURM_TIMEOUT.as_secs()
                    ),
                ));
            }
            Err(e) => return Err((shown(), e.to_string())),
        }
    };
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    if !status.success() {
        return Err((shown(), said(&err, status)));
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The longest any Slurm command may take: past it, it is killed and Slurm counts as
/// unavailable for now (sbatch: the job waits in pending/; squeue: asked again next
/// interval). Slurm's own clients give up after `MessageTimeout` (10 s by default) and
/// a few retries.
const SLURM_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest a starting worker waits for a dead worker's `sbatch` to end.
const SBATCH_WAIT: Duration = Duration::from_secs(120);

/// Wait while a process of ours (on this host) is still submitting job `name` of this
/// spool: its argv holds our `--job-name` and `--chdir` (an `sbatch` a killed worker
/// left behind, or a wrapper around it). Bounded by [`SBATCH_WAIT`].
fn wait_out_sbatch(root: &Path, name: &str) {
    let job_arg = format!("--job-name={}", slurm_name(name));
    let dir_arg = format!("--chdir={}", root.display());
    let me = std::process::id().to_string();
    let submitting = || -> Option<String> {
        for e in std::fs::read_dir("/proc").ok()?.flatten() {
            let pid = e.file_name().to_string_lossy().into_owned();
            if pid == me || !pid.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
            if args.contains(&job_arg.as_bytes()) && args.contains(&dir_arg.as_bytes()) {
                return Some(pid);
            }
        }
        None
    };
    let until = std::time::Instant::now() + SBATCH_WAIT;
    let mut said = false;
    while let Some(pid) = submitting() {
        if std::time::Instant::now() >= until {
            tracing::warn!(job = %name, "an sbatch (pid {pid}) of the previous worker is still running after {SBATCH_WAIT:?}; looking the job up anyway");
            return;
        }
        if !said {
            tracing::info!(job = %name, "waiting for the previous worker's sbatch (pid {pid}) to end before looking the job up in Slurm");
            said = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `Key=Value` fields of `scontrol show job -o` (the first of each key).
fn scontrol_fields(line: &str) -> HashMap<&str, &str> {
    let mut m = HashMap::new();
    for tok in line.split_whitespace() {
        if let Some((k, v)) = tok.split_once('=') {
            m.entry(k).or_insert(v);
        }
    }
    m
}

/// A node list as Slurm prints it, or nothing ("None", "(null)", empty).
fn node_of(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|n| !n.is_empty() && *n != "None" && *n != "(null)" && *n != "None assigned")
        .map(String::from)
}

struct Tracked {
    name: String,
    on_exit: OnExit,
    slurm: SlurmState,
}

/// An install whose Slurm job ID is not known yet: its `sbatch`, or the search for what
/// a dead worker's `sbatch` did, runs on a thread that answers through `rx`.
struct InFlight {
    /// An `sbatch` of ours (else the search for a dead worker's).
    sbatch: bool,
    name: String,
    on_exit: OnExit,
    slurm: SlurmState,
    rx: Receiver<Answer>,
}

/// What a submitting or searching thread found.
#[derive(Debug)]
enum Answer {
    /// Slurm has the attempt under this job ID; the others found for it are strays.
    Id(u64, Vec<u64>),
    /// `sbatch` failed: Slurm's own words.
    Refused(String),
    /// `sbatch` answered something that is not a job ID.
    Failed(String),
    /// Slurm never got it (a dead worker's `sbatch` that did not land).
    NotThere,
}

/// An `squeue` answer, with how each job it no longer lists ended (and where it ran).
type Tracking = Result<(String, HashMap<u64, Ended>)>;
type Ended = (Option<Exit>, Option<String>);

/// A job to judge by the next `squeue`: its ID, name and time limit.
type Asked = (u64, String, Option<u64>);

pub struct SlurmExecutor {
    spool: Spool,
    cfg: SlurmConfig,
    binary: PathBuf,
    config_path: Option<PathBuf>,
    user: String,
    jobs: BTreeMap<u64, Tracked>,
    /// Installs handed on whose job ID is not known yet.
    in_flight: Vec<InFlight>,
    /// Wakes the worker when an [`InFlight`] has its answer.
    wake: Waker,
    /// Strays already cancelled (see [`SlurmExecutor::cancel_strays`]).
    cancelled_strays: std::collections::HashSet<u64>,
    /// The `squeue` running aside, and the jobs tracked when it started.
    squeue: Option<SqueueInFlight>,
}

type SqueueInFlight = (Receiver<Tracking>, std::collections::HashSet<u64>);

/// How long the search for a dead worker's job waits before asking Slurm again when
/// Slurm does not answer.
const LOOKUP_RETRY: Duration = Duration::from_secs(10);

/// A job handed to Slurm whose ID was never recorded: find it by name, working
/// directory (the spool) and attempt, among the jobs slurmctld still knows. All of
/// them, lowest ID first (more than one only after a double submission).
fn lookup(root: &Path, user: &str, name: &str, attempt: u32) -> Result<Vec<u64>> {
    let out = slurm(
        "squeue",
        &[
            "-h".into(),
            "--states=all".into(),
            format!("--user={user}"),
            format!("--name={}", slurm_name(name)),
            "--format=%i|%Z|%k".into(),
        ],
        None,
    )?;
    let comment = format!("spack-installer attempt {attempt}");
    let mut ids: Vec<u64> = out
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, '|');
            let id = f.next()?.trim().parse::<u64>().ok()?;
            let ours = is_our_dir(root, f.next()?) && f.next()?.trim() == comment;
            ours.then_some(id)
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Whether a Slurm job's working directory is this spool (we submit with `--chdir`).
fn is_our_dir(root: &Path, dir: &str) -> bool {
    let dir = Path::new(dir.trim());
    dir == root || root.canonicalize().is_ok_and(|c| dir == c)
}

/// How a job that left `squeue` ended (sacct, else scontrol, else the exit file),
/// and on which node it ran when Slurm still says.
fn outcome(spool: &Spool, id: u64, name: &str, time_limit_s: Option<u64>) -> Ended {
    let sacct = slurm(
        "sacct",
        &[
            format!("--jobs={id}"),
            "-X".into(),
            "-n".into(),
            "-P".into(),
            "--format=State,ExitCode,NodeList".into(),
        ],
        None,
    );
    if let Ok(out) = sacct
        && let Some(line) = out.lines().next()
    {
        let mut f = line.split('|');
        let (state, code) = (f.next().unwrap_or(""), f.next().unwrap_or("0:0"));
        return (map_state(state, code), node_of(f.next()));
    }
    if let Ok(out) = slurm(
        "scontrol",
        &["show".into(), "job".into(), "-o".into(), id.to_string()],
        None,
    ) && let Some(line) = out.lines().find(|l| l.starts_with("JobId="))
    {
        let f = scontrol_fields(line);
        return (
            map_state(
                f.get("JobState").copied().unwrap_or(""),
                f.get("ExitCode").copied().unwrap_or("0:0"),
            ),
            node_of(f.get("NodeList").copied()),
        );
    }
    let exit = match ExitRecord::read(spool, name) {
        Some(r) if r.slurm_job_id == id => r.exit(time_limit_s),
        _ => Exit::Cluster {
            code: 1,
            why: "Slurm forgot the job before its outcome was read, and exec-job left no exit file (see the log)",
        },
    };
    (Some(exit), None)
}

/// One `squeue` for all our jobs; then, for each asked job it does not list, how it
/// ended. Runs off the worker's loop.
fn squeue_and_outcomes(spool: &Spool, user: &str, asked: &[Asked]) -> Tracking {
    let out = slurm(
        "squeue",
        &[
            "-h".to_string(),
            format!("--user={user}"),
            "--format=%i|%T|%N|%r|%j|%Z".into(),
        ],
        None,
    )?;
    let listed: std::collections::HashSet<u64> = out
        .lines()
        .filter_map(|l| l.split('|').next()?.trim().parse().ok())
        .collect();
    let ended = asked
        .iter()
        .filter(|(id, ..)| !listed.contains(id))
        .map(|(id, name, limit)| (*id, outcome(spool, *id, name, *limit)))
        .collect();
    Ok((out, ended))
}

impl SlurmExecutor {
    /// Set up: our binary's absolute path (for the batch script) and `slurm/`.
    pub fn new(spool: &Spool, cfg: &Config, config_path: Option<PathBuf>) -> Result<Self> {
        let binary = std::env::current_exe()
            .map_err(|e| Error::Other(format!("cannot find our own binary: {e}")))?;
        let dir = spool.file(SLURM_DIR);
        if !dir.is_dir() {
            use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
            std::fs::DirBuilder::new()
                .mode(0o750)
                .create(&dir)
                .at("create directory", &dir)?;
            // The mode of every worker directory (spool-layout.md): setgid, no umask.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o2750))
                .at("chmod", &dir)?;
        }
        Ok(SlurmExecutor {
            spool: spool.clone(),
            cfg: cfg.slurm.value.clone(),
            binary,
            config_path: config_path.map(|p| std::path::absolute(&p).unwrap_or(p)),
            user: identity::user_name(identity::current_uid()),
            jobs: BTreeMap::new(),
            in_flight: Vec::new(),
            wake: std::sync::Arc::new(|| {}),
            cancelled_strays: Default::default(),
            squeue: None,
        })
    }

    fn sbatch_args(&self, launch: &Launch) -> Vec<String> {
        let c = &self.cfg;
        let mut a = vec![
            "--parsable".to_string(),
            format!("--job-name={}", slurm_name(&launch.name)),
            format!("--chdir={}", self.spool.root().display()),
            format!("--output={}", launch.log.display()),
            "--open-mode=append".to_string(),
            format!("--comment=spack-installer attempt {}", launch.attempt),
            "--nodes=1".to_string(),
            "--ntasks=1".to_string(),
            format!(
                "--time={}",
                slurm_time(launch.timeout.unwrap_or(c.time_limit))
            ),
        ];
        let mut opt = |flag: &str, v: Option<String>| {
            if let Some(v) = v {
                a.push(format!("--{flag}={v}"));
            }
        };
        opt("partition", c.partition.clone());
        opt("account", c.account.clone());
        opt("qos", c.qos.clone());
        opt("cpus-per-task", c.cpus_per_task.map(|n| n.to_string()));
        opt("mem", c.mem.clone());
        a.extend(c.extra_args.iter().cloned());
        a
    }

    /// Run `work` on a thread of its own; its answer, once it has come, wakes the worker
    /// and is taken by [`Executor::submitted`].
    fn aside(
        &mut self,
        sbatch: bool,
        name: &str,
        on_exit: OnExit,
        slurm: SlurmState,
        work: impl FnOnce() -> Answer + Send + 'static,
    ) {
        let (tx, rx) = std::sync::mpsc::channel();
        let wake = self.wake.clone();
        std::thread::spawn(move || {
            let _ = tx.send(work());
            wake();
        });
        self.in_flight.push(InFlight {
            sbatch,
            name: name.to_string(),
            on_exit,
            slurm,
            rx,
        });
    }

    /// Cancel Slurm jobs of this spool that no attempt recorded (see `exec-job`: they
    /// run no Spack, but hold a slot of the cluster), once each, and say so. The
    /// `scancel`s run aside.
    fn cancel_strays(&mut self, strays: Vec<(u64, String)>) {
        for (id, name) in strays {
            if !self.cancelled_strays.insert(id) {
                continue;
            }
            tracing::warn!(
                slurm_job_id = id,
                "Slurm job {id} ({name}) belongs to this spool but is not the one recorded for \
                 its attempt (an sbatch that outlived a worker): cancelling it"
            );
            std::thread::spawn(move || {
                if let Err(e) = slurm("scancel", &[id.to_string()], None) {
                    tracing::warn!("could not cancel stray Slurm job {id}: {e}");
                }
            });
        }
    }

    /// How many of our jobs are in Slurm now.
    pub fn in_slurm(&self) -> usize {
        self.jobs.len()
    }
}

impl Executor for SlurmExecutor {
    fn set_waker(&mut self, wake: Waker) {
        self.wake = wake;
    }

    fn starting(&self) -> bool {
        !self.in_flight.is_empty()
    }

    fn submitting(&self) -> bool {
        self.in_flight.iter().any(|f| f.sbatch)
    }

    fn submitted(&mut self) -> Vec<Submitted> {
        let mut answered = Vec::new();
        for f in std::mem::take(&mut self.in_flight) {
            let answer = match f.rx.try_recv() {
                Ok(a) => a,
                Err(TryRecvError::Empty) => {
                    self.in_flight.push(f);
                    continue;
                }
                Err(TryRecvError::Disconnected) => {
                    Answer::Failed("sbatch's thread ended without an answer".into())
                }
            };
            let name = f.name;
            answered.push(match answer {
                Answer::Id(id, strays) => {
                    let strays = strays.into_iter().map(|i| (i, slurm_name(&name)));
                    self.cancel_strays(strays.collect());
                    let slurm = SlurmState {
                        job_id: Some(id),
                        ..f.slurm
                    };
                    self.jobs.insert(
                        id,
                        Tracked {
                            name: name.clone(),
                            on_exit: f.on_exit,
                            slurm: slurm.clone(),
                        },
                    );
                    Submitted::Placed { name, slurm }
                }
                Answer::Refused(why) => Submitted::Refused { name, why },
                Answer::Failed(why) => Submitted::Failed { name, why },
                Answer::NotThere => Submitted::NeverSubmitted { name },
            });
        }
        answered
    }

    fn start(&mut self, launch: &Launch, on_exit: OnExit) -> Result<Handle> {
        // An exit file from an earlier attempt must not answer for this one.
        let _ = std::fs::remove_file(exit_file(&self.spool, &launch.name));
        let limit = launch.timeout.unwrap_or(self.cfg.time_limit);
        if !limit.as_secs().is_multiple_of(60) {
            let given = Duration::from_secs(limit.as_secs().div_ceil(60).max(1) * 60);
            let line = format!(
                "==> spack-installer: Slurm counts time limits in whole minutes: the limit of {} is given to Slurm as --time {}\n",
                humantime::format_duration(limit),
                humantime::format_duration(given)
            );
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&launch.log)
            {
                let _ = f.write_all(line.as_bytes());
            }
        }
        let script = batch_script(
            &self.binary,
            &self.spool,
            self.config_path.as_deref(),
            &launch.name,
        );
        let args = self.sbatch_args(launch);
        let name = launch.name.clone();
        let slurm = SlurmState {
            job_id: None,
            partition: self.cfg.partition.clone(),
            time_limit_s: Some(limit.as_secs().div_ceil(60).max(1) * 60),
            ..Default::default()
        };
        let job = name.clone();
        self.aside(true, &name, on_exit, slurm.clone(), move || {
            // Whatever keeps sbatch from taking the job (controller or munge down, the
            // partition inactive, a limit the admin's options break) is no fault of the
            // job.
            let out = match slurm_raw("sbatch", &args, Some(&script)) {
                Ok(out) => out,
                Err((_, why)) => return Answer::Refused(why),
            };
            // --parsable prints "ID" or "ID;CLUSTER".
            match out.trim().split(';').next().and_then(|s| s.parse().ok()) {
                Some(id) => {
                    tracing::info!(job = %job, slurm_job_id = id, "submitted to Slurm");
                    Answer::Id(id, Vec::new())
                }
                None => Answer::Failed(format!(
                    "sbatch --parsable printed `{}`, not a job ID",
                    out.trim()
                )),
            }
        });
        Ok(Handle {
            pgid: None,
            slurm: Some(slurm),
        })
    }

    fn stop(&mut self, handle: &Handle, _force: bool) {
        // scancel sends SIGTERM to every process of the job, and SIGKILL after the
        // cluster's KillWait; asking twice is harmless. Off the worker's loop: with the
        // controller down it takes seconds to fail, and requests must stay answered.
        // The outcome still comes from tracking, whatever happened first. A job still
        // being submitted has no ID yet: the worker asks again once it has one.
        if let Some(id) = handle.slurm.as_ref().and_then(|s| s.job_id) {
            std::thread::spawn(move || {
                if let Err(e) = slurm("scancel", &[id.to_string()], None) {
                    tracing::warn!("could not cancel Slurm job {id}: {e}");
                }
            });
        }
    }

    fn kind(&self) -> &'static str {
        "slurm"
    }

    fn mark(&self) -> Option<SlurmState> {
        Some(SlurmState {
            job_id: None,
            partition: self.cfg.partition.clone(),
            ..Default::default()
        })
    }

    fn reattach(&mut self, job: &Job, on_exit: OnExit) -> Result<Reattach> {
        let name = job.meta.name.clone();
        let recorded = job.state.slurm.clone().unwrap_or_default();
        let Some(id) = recorded.job_id else {
            // The previous worker died before it wrote the job ID: its sbatch may still
            // be on its way to slurmctld. Let it land (or fail), then ask Slurm, on a
            // thread of its own (asking again while Slurm does not answer); nothing
            // else is submitted meanwhile, so a job Slurm knows is never submitted twice.
            let (root, user, spool) = (
                self.spool.root().to_path_buf(),
                self.user.clone(),
                self.spool.clone(),
            );
            let (job_name, attempt) = (name.clone(), job.state.attempts);
            self.aside(false, &name, on_exit, recorded.clone(), move || {
                wait_out_sbatch(&root, &job_name);
                let mut said = false;
                let mut found = loop {
                    match lookup(&root, &user, &job_name, attempt) {
                        Ok(found) => break found,
                        Err(e) => {
                            if !said {
                                tracing::warn!(job = %job_name, "cannot tell whether Slurm has it: {e}; asking again every {LOOKUP_RETRY:?}, and submitting nothing meanwhile");
                                said = true;
                            }
                            std::thread::sleep(LOOKUP_RETRY);
                        }
                    }
                };
                let answer = match found.pop() {
                    Some(id) => Answer::Id(id, found),
                    // Gone from slurmctld already, but exec-job ran this attempt.
                    None => match ExitRecord::read(&spool, &job_name) {
                        Some(r) if r.attempt == attempt => Answer::Id(r.slurm_job_id, found),
                        _ => return Answer::NotThere,
                    },
                };
                if let Answer::Id(id, _) = answer {
                    tracing::info!(job = %job_name, slurm_job_id = id, "re-attached to the Slurm job");
                }
                answer
            });
            return Ok(Reattach::Attached(Handle {
                pgid: None,
                slurm: Some(recorded),
            }));
        };
        let slurm = SlurmState {
            job_id: Some(id),
            ..recorded
        };
        tracing::info!(job = %name, slurm_job_id = id, "re-attached to the Slurm job");
        self.jobs.insert(
            id,
            Tracked {
                name,
                on_exit,
                slurm: slurm.clone(),
            },
        );
        Ok(Reattach::Attached(Handle {
            pgid: None,
            slurm: Some(slurm),
        }))
    }

    fn track(&mut self) -> Vec<Placed> {
        // squeue (with sacct or scontrol for the jobs it no longer lists) runs on a
        // thread of its own (an outage makes each take seconds to fail): each call
        // starts one if none runs, and uses the answer of the last one once it has come.
        let answer = match &self.squeue {
            Some((rx, _)) => match rx.try_recv() {
                Ok(answer) => Some(answer),
                Err(TryRecvError::Empty) => return Vec::new(),
                Err(TryRecvError::Disconnected) => Some(Err(Error::Other(
                    "squeue's thread ended without an answer".into(),
                ))),
            },
            None => None,
        };
        let asked_for = match answer {
            Some(_) => self.squeue.take().map(|(_, ids)| ids).unwrap_or_default(),
            None => Default::default(),
        };
        if self.squeue.is_none() && !self.jobs.is_empty() {
            let (tx, rx) = std::sync::mpsc::channel();
            let asked: Vec<Asked> = self
                .jobs
                .iter()
                .map(|(id, t)| (*id, t.name.clone(), t.slurm.time_limit_s))
                .collect();
            let (spool, user) = (self.spool.clone(), self.user.clone());
            std::thread::spawn(move || {
                let _ = tx.send(squeue_and_outcomes(&spool, &user, &asked));
            });
            self.squeue = Some((rx, self.jobs.keys().copied().collect()));
        }
        let (out, mut ended) = match answer {
            None => return Vec::new(),
            Some(Ok(o)) => o,
            Some(Err(e)) => {
                tracing::warn!("cannot follow the Slurm jobs: {e}; trying again");
                return Vec::new();
            }
        };
        // ID → (node, Slurm's state, its reason while pending).
        let mut listed: HashMap<u64, (String, String, String)> = HashMap::new();
        let mut strays = Vec::new();
        for l in out.lines() {
            let mut f = l.splitn(6, '|');
            if let (Some(Ok(id)), Some(state), Some(node), Some(reason), Some(jname), Some(dir)) = (
                f.next().map(|s| s.trim().parse::<u64>()),
                f.next(),
                f.next(),
                f.next(),
                f.next(),
                f.next(),
            ) {
                listed.insert(
                    id,
                    (
                        node.trim().to_string(),
                        state.trim().to_string(),
                        reason.trim().to_string(),
                    ),
                );
                if !self.jobs.contains_key(&id)
                    && !self.cancelled_strays.contains(&id)
                    && jname.starts_with(JOB_PREFIX)
                    && is_our_dir(self.spool.root(), dir)
                    // The job ID of an sbatch on its way is not known yet.
                    && !self.in_flight.iter().any(|f| slurm_name(&f.name) == jname)
                {
                    strays.push((id, jname.to_string()));
                }
            }
        }
        self.cancel_strays(strays);
        let mut placed = Vec::new();
        // Only jobs that were in Slurm before squeue ran can be judged by its answer.
        let ids: Vec<u64> = self
            .jobs
            .keys()
            .copied()
            .filter(|id| asked_for.contains(id))
            .collect();
        for id in ids {
            match listed.get(&id) {
                Some((node, state, reason)) => {
                    let t = self.jobs.get_mut(&id).expect("listed above");
                    let mut now = t.slurm.clone();
                    if !node.is_empty() {
                        now.node = Some(node.clone());
                    }
                    now.state = Some(state.clone()).filter(|s| !s.is_empty());
                    // Slurm says "None" for a job with nothing in its way.
                    now.reason = Some(reason.clone()).filter(|r| !r.is_empty() && r != "None");
                    if now != t.slurm {
                        t.slurm = now;
                        placed.push(Placed {
                            name: t.name.clone(),
                            slurm: t.slurm.clone(),
                        });
                    }
                }
                None => {
                    let name = self.jobs[&id].name.clone();
                    let (exit, node) = ended.remove(&id).unwrap_or((None, None));
                    if let Some(exit) = exit {
                        let t = self.jobs.remove(&id).expect("tracked");
                        // The worker writes this before it handles the exit event.
                        if node.is_some() && node != t.slurm.node {
                            placed.push(Placed {
                                name: name.clone(),
                                slurm: SlurmState {
                                    node,
                                    ..t.slurm.clone()
                                },
                            });
                        }
                        // Read already; if we die before the outcome is written, sacct
                        // or scontrol still know it (and the record keeps the job ID).
                        let _ = std::fs::remove_file(exit_file(&self.spool, &name));
                        tracing::info!(job = %name, slurm_job_id = id, "the Slurm job ended: {exit:?}");
                        (t.on_exit)(exit);
                    }
                }
            }
        }
        placed
    }

    fn max_jobs(&self) -> Option<usize> {
        Some(self.cfg.max_jobs)
    }

    fn limits_time(&self) -> bool {
        true
    }

    fn detaches(&self) -> bool {
        true
    }
}

/// For `config-check`: the Slurm commands the worker runs exist, and Slurm knows the
/// partition (`sinfo -p`).
pub fn check(cfg: &SlurmConfig, notes: &mut Vec<String>, problems: &mut Vec<String>) {
    for prog in ["sbatch", "squeue", "scancel", "scontrol", "sinfo"] {
        if crate::config::find_on_path(prog).is_none() {
            problems.push(format!(
                "slurm: `{prog}` is not on PATH; install the Slurm client commands (Debian: slurm-client)"
            ));
        }
    }
    let mut args = vec!["-h".to_string(), "--format=%P %a %D %l".to_string()];
    if let Some(p) = &cfg.partition {
        args.push(format!("--partition={p}"));
    }
    match slurm("sinfo", &args, None) {
        Ok(out) if out.trim().is_empty() => problems.push(format!(
            "slurm: sinfo knows no partition {}; set slurm.partition to one `sinfo -s` lists",
            cfg.partition.as_deref().unwrap_or("(the default)")
        )),
        Ok(out) => {
            let line = out.lines().next().unwrap_or("").trim();
            let mut f = line.split_whitespace();
            // The default partition is printed with a `*`.
            let part = f.next().unwrap_or("").trim_end_matches('*');
            let avail = f.next().unwrap_or("");
            if avail != "up" {
                problems.push(format!(
                    "slurm: partition {part} is {avail} in Slurm, so sbatch refuses our jobs: they \
                     wait in pending/ until it is up again (`scontrol update PartitionName={part} State=UP`)"
                ));
            } else {
                notes.push(format!(
                    "slurm: partition {line}; jobs go to Slurm, at most {} at once",
                    cfg.max_jobs
                ));
            }
            let max = f.nth(1).unwrap_or("");
            if let Some(limit) = parse_slurm_time(max)
                && cfg.time_limit > limit
            {
                problems.push(format!(
                    "slurm: time_limit {} is above partition {part}'s MaxTime {max}: Slurm holds \
                     such jobs (PartitionTimeLimit) and never starts them; lower [slurm] time_limit \
                     to at most {max}, or choose another partition",
                    humantime::format_duration(cfg.time_limit)
                ));
            }
        }
        Err(e) => problems.push(format!("slurm: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_states_map_to_ours() {
        assert_eq!(map_state("COMPLETED", "0:0"), Some(Exit::Code(0)));
        assert_eq!(map_state("FAILED", "3:0"), Some(Exit::Code(3)));
        assert_eq!(map_state("FAILED", "0:9"), Some(Exit::Signal(9)));
        assert!(matches!(
            map_state("CANCELLED by 0", "0:15"),
            Some(Exit::Cluster { code: 143, .. })
        ));
        assert!(matches!(
            map_state("TIMEOUT", "0:0"),
            Some(Exit::Cluster { why, .. }) if why.starts_with("timed out")
        ));
        assert!(matches!(
            map_state("OUT_OF_MEMORY", "0:125"),
            Some(Exit::Cluster { .. })
        ));
        assert!(matches!(
            map_state("NODE_FAIL", "0:0"),
            Some(Exit::Cluster { .. })
        ));
        for still in ["PENDING", "RUNNING", "PREEMPTED", "REQUEUED", "COMPLETING"] {
            assert_eq!(map_state(still, "0:0"), None, "{still}");
        }
    }

    #[test]
    fn the_batch_script_holds_only_worker_values() {
        let s = batch_script(
            Path::new("/usr/bin/spack-installer"),
            &Spool::new("/var/spool/it's"),
            None,
            "000042-hdf5",
        );
        assert!(s.contains(
            "exec '/usr/bin/spack-installer' --spool '/var/spool/it'\\''s' exec-job '000042-hdf5'"
        ));
        assert_eq!(slurm_time(Duration::from_secs(90061)), "1-01:02:00");
        assert_eq!(slurm_time(Duration::from_secs(5)), "0-00:01:00");
        let r = |signalled, ran_s| ExitRecord {
            slurm_job_id: 7,
            attempt: 1,
            exit_code: 143,
            signalled,
            ran_s,
        };
        assert!(matches!(
            r(true, 58).exit(Some(60)),
            Exit::Cluster { why, .. } if why.starts_with("timed out")
        ));
        assert_eq!(r(true, 10).exit(Some(3600)), Exit::Code(143));
        // Spack killed by Slurm's SIGTERM before exec-job got its own.
        assert!(matches!(
            r(false, 3600).exit(Some(3600)),
            Exit::Cluster { why, .. } if why.starts_with("timed out")
        ));
        let failed = ExitRecord {
            exit_code: 1,
            ..r(false, 3600)
        };
        assert_eq!(failed.exit(Some(3600)), Exit::Code(1));
        assert_eq!(r(true, 3600).exit(None), Exit::Code(143));
        assert_eq!(slurm_time(Duration::from_secs(90)), "0-00:02:00");
        assert_eq!(slurm_time(Duration::from_secs(3600)), "0-01:00:00");
        let secs = |s| parse_slurm_time(s).map(|d| d.as_secs());
        assert_eq!(secs("5:00"), Some(300));
        assert_eq!(secs("30"), Some(1800));
        assert_eq!(secs("1:00:00"), Some(3600));
        assert_eq!(secs("1-01:01:01"), Some(90061));
        assert_eq!(secs("2-12"), Some(216000));
        assert_eq!(secs("infinite"), None);
    }
}
