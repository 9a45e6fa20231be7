//! `exec-job NAME`: what a Slurm batch job runs, on the compute node, as the worker user.
//! It reads the job's file from `running/` and runs the argv the worker recorded there,
//! with the local executor itself (same clean environment, log appended, own process
//! group), adding only Slurm's own `SLURM_*` variables. When Spack has ended it writes
//! `slurm/NAME.exit` for the worker (Spack's code, whether a signal came first, how long
//! Spack ran) and exits with Spack's code, which Slurm records as
//! the job's exit code. Not for people: the worker's batch script calls it.
//!
//! **One Slurm job per attempt.** An `sbatch` that outlived a killed worker may land
//! after the next worker submitted the attempt again; two Slurm jobs then run this same
//! script. So it first proves it is the job the spool expects: it waits until the
//! worker has recorded the attempt's Slurm job ID in `running/NAME` (it does so as soon
//! as `sbatch` returns, or on re-attaching) and runs Spack only if that ID is its own
//! `SLURM_JOB_ID`. Any other Slurm job says so in the job's log and exits 0 without
//! running Spack or writing the exit file (the worker cancels such strays).

use super::Ctx;
use crate::error::{Error, Result};
use crate::executor::local::LocalExecutor;
use crate::executor::slurm::ExitRecord;
use crate::executor::{Executor, Launch, clean_env};
use crate::job::State;
use crate::spool::{Dir, JOB_MARKER_ENV, store};
use std::sync::mpsc;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job, as NNNNNN-PACKAGE (the worker passes its name).
    #[arg(value_name = "JOB")]
    pub job: String,
}

enum Ev {
    Exited(crate::executor::Exit),
    Signal,
}

/// How often to look whether the worker has recorded the Slurm job ID yet.
const RECORD_POLL: Duration = Duration::from_millis(200);

pub fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let me: Option<u64> = std::env::var("SLURM_JOB_ID")
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let Some(me) = me else {
        return Err(Error::Other(
            "exec-job runs only inside the Slurm job the worker submitted (SLURM_JOB_ID is not set)"
                .into(),
        ));
    };
    // Until the worker has recorded which Slurm job runs this attempt, any could be a
    // stray: wait for the record (bounded by the job's Slurm time limit).
    let (name, job) = loop {
        let (dir, name) = store::find(&ctx.spool, &a.job)?;
        let job = store::read(&ctx.spool, dir, &name)?;
        if dir != Dir::Running || job.state.state != State::Running || job.state.argv.is_empty() {
            return Err(Error::Other(format!(
                "{name} is {} in {}/, not running with a recorded argv: nothing to run \
                 (the worker may have cancelled or finished it)",
                job.state.state,
                dir.name()
            )));
        }
        match job.state.slurm.as_ref().and_then(|s| s.job_id) {
            Some(id) if id == me => break (name, job),
            Some(id) => {
                println!(
                    "==> spack-installer: Slurm job {me} is not the one the spool recorded for \
                     {name} attempt {} (Slurm job {id}): not running Spack",
                    job.state.attempts
                );
                return Ok(0);
            }
            None => std::thread::sleep(RECORD_POLL),
        }
    };
    let cfg = ctx.config()?;
    let mut allow = cfg.env_allow.value.clone();
    allow.push("SLURM_*".into());
    let launch = Launch {
        name: name.to_string(),
        argv: job.state.argv.clone(),
        log: ctx.spool.log_path(&name),
        env: clean_env(&allow, (JOB_MARKER_ENV, ctx.spool.job_marker(&name))),
        attempt: job.state.attempts,
        timeout: None,
        jobserver: None,
    };
    let (tx, rx) = mpsc::channel();
    // scancel signals every process of the job; we stay to write the exit file, and
    // pass the signal on to Spack's process group in case only we got it.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(|e| Error::Other(format!("cannot install signal handlers: {e}")))?;
    let stx = tx.clone();
    std::thread::spawn(move || {
        for _ in signals.forever() {
            let _ = stx.send(Ev::Signal);
        }
    });
    let mut local = LocalExecutor;
    let handle = local.start(
        &launch,
        Box::new(move |exit| {
            let _ = tx.send(Ev::Exited(exit));
        }),
    )?;
    let started = std::time::Instant::now();
    let mut signalled = false;
    let exit = loop {
        match rx.recv() {
            Ok(Ev::Exited(e)) => break e,
            Ok(Ev::Signal) => {
                signalled = true;
                local.stop(&handle, false)
            }
            Err(_) => break crate::executor::Exit::NotStarted,
        }
    };
    // A signal already on its way as Spack ended (Slurm signals all of the job at once).
    signalled |= rx.try_iter().any(|e| matches!(e, Ev::Signal));
    let record = ExitRecord {
        slurm_job_id: me,
        attempt: job.state.attempts,
        exit_code: exit.code(),
        signalled,
        ran_s: started.elapsed().as_secs(),
    };
    if let Err(e) = record.write(&ctx.spool, &name.to_string()) {
        eprintln!("spack-installer exec-job: {e}");
    }
    Ok(exit.code())
}
