//! `show JOB`: everything about one job: its file, every field, timings, attempts, reason,
//! log, and the exact argv that ran (or, for a pending job, will run).

use super::Ctx;
use super::output::JobView;
use crate::config::ExecutorKind;
use crate::error::Result;
use crate::executor::budget;
use crate::job::ConcreteState;
use crate::spool::status::WorkerStatus;
use crate::spool::{Dir, store};
use crate::time::Timestamp;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(value_name = "JOB")]
    pub job: String,
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let (dir, name) = store::find(&ctx.spool, &a.job)?;
    let job = store::read(&ctx.spool, dir, &name)?;
    let mut v = JobView::of(&ctx.spool, dir, &job, Timestamp::now());
    let will_run = v.argv.is_empty() && dir == Dir::Pending;
    // Read once: needed for a pending job's argv, else only to name the site's mail choice.
    let cfg = if will_run {
        Some(ctx.config()?)
    } else {
        ctx.config().ok()
    };
    if let Some(cfg) = cfg.as_ref().filter(|_| will_run) {
        // What the worker will run, from the same config.
        let spack = cfg
            .resolve_spack()
            .map(|(p, _)| p.display().to_string())
            .unwrap_or_else(|_| "spack".into());
        // The concrete spec, if the worker made one (it falls back to the spec when the
        // concrete spec is stale by the time the job starts).
        let concrete = ctx.spool.concrete_path(&name);
        let what = if job.state.concrete.is_some() && concrete.exists() {
            vec!["-f".to_string(), concrete.display().to_string()]
        } else {
            vec![job.spec_canonical().to_string()]
        };
        // Its share of the CPUs if it started now, beside what the worker runs.
        let worker = WorkerStatus::read(&ctx.spool);
        let dry_run = worker.as_ref().is_some_and(|w| w.dry_run);
        let busy = worker.as_ref().map_or(0, |w| w.running.len()) + 1;
        let jobs = match (cfg.executor.value, worker.as_ref().and_then(|w| w.cpus)) {
            (ExecutorKind::Local, Some(cpus)) => Some(budget::share(cpus, busy) as u32),
            _ => cfg.spack_jobs(busy),
        }
        .filter(|_| !dry_run);
        v.argv = std::iter::once(spack)
            .chain(std::iter::once("install".to_string()))
            .chain(
                jobs.into_iter()
                    .flat_map(|j| ["-j".to_string(), j.to_string()]),
            )
            .chain(cfg.install_args.value.iter().cloned())
            .chain(what)
            .collect();
    }
    // Whether the owner gets mail at the end: the job's own choice, else the site's.
    let mail = match job.submission().and_then(|s| s.mail) {
        Some(m) => format!("{} (asked for with the job)", m.as_str()),
        None => match &cfg {
            Some(cfg) => format!("{} (the site's setting)", cfg.mail.value.as_str()),
            None => "the site's setting".to_string(),
        },
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v).expect("serializes"));
        return Ok(0);
    }
    let v = v.printable();
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let secs = |o: Option<u64>| {
        o.map(|s| crate::time::short(std::time::Duration::from_secs(s)))
            .unwrap_or_else(|| "-".into())
    };
    println!("{}  ({})", v.name, v.state);
    println!("  file          {}", v.file);
    println!("  spec          {}", v.spec);
    println!("  priority      {}", v.priority);
    println!(
        "  owner         {} (uid {})",
        v.owner,
        v.owner_uid.map(|u| u.to_string()).unwrap_or_default()
    );
    if !v.dependencies.is_empty() {
        println!("  dependencies  {}", v.dependencies.join(", "));
    }
    if !v.after.is_empty() {
        println!(
            "  after         {}",
            v.after
                .iter()
                .map(|a| format!("{a:06}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(n) = &v.note {
        println!("  note          {n}");
    }
    if let Some(r) = v.retry_of {
        println!("  retry of      {r:06}");
    }
    println!(
        "  estimate      {}   timeout {}",
        secs(v.estimated_time_s),
        secs(v.timeout_s)
    );
    println!(
        "  submitted     {}   (ticket {})",
        opt(&v.submitted_at),
        opt(&v.ticket)
    );
    println!("  started       {}", opt(&v.started_at));
    println!("  finished      {}", opt(&v.finished_at));
    println!("  waited / ran  {} / {}", secs(v.waited_s), secs(v.ran_s));
    println!("  attempts      {}", v.attempts);
    if let Some(c) = v.exit_code {
        println!("  exit code     {c}");
    }
    if let Some(r) = &v.reason {
        println!("  reason        {r}");
    }
    if let Some(p) = &v.progress {
        println!("  progress      [{}/{}]", p.done, p.total);
    }
    if let Some(sl) = &v.slurm {
        println!("  in slurm      {}", slurm_text(sl));
    }
    if let Some(c) = &v.concrete {
        println!(
            "  concrete      {}@{}/{}, {} nodes, {} to build (concretized {})",
            name.package,
            c.version,
            c.hash.get(..7).unwrap_or(&c.hash),
            c.nodes,
            c.to_build.len(),
            c.at
        );
        if let Some(e) = c.estimate_s {
            println!(
                "  build time    {} (the sum of the packages' estimates below)",
                crate::time::short(std::time::Duration::from_secs(e))
            );
        }
        if let Some(other) = c.same_as {
            println!("  same DAG as   {other} (builds nothing itself; ends as that job ends)");
        }
        print_dag(&ctx.spool, &name, c);
    }
    if job.submission().is_some() {
        println!("  mail          {mail}");
    }
    println!("  log           {}", opt(&v.log));
    println!(
        "  argv          {}{}",
        serde_json::to_string(&v.argv).expect("serializes"),
        if will_run && v.argv.iter().any(|a| a == "-j") {
            "  (its -j if it started now)"
        } else {
            ""
        }
    );
    Ok(0)
}

/// The nodes of the job's concrete spec, marked as Spack found them when it was
/// concretized: `[+]` installed (or external), `[ ]` to build.
fn print_dag(spool: &crate::spool::Spool, name: &crate::job::JobName, c: &ConcreteState) {
    let Ok(text) = std::fs::read_to_string(spool.concrete_path(name)) else {
        return;
    };
    let Ok(spec) = crate::concrete::ConcreteSpec::from_spec_json(&text) else {
        return;
    };
    println!("  nodes");
    for n in spec.nodes() {
        let short = format!("{}@{}/{}", n.name, n.version, n.hash.short());
        if c.to_build.contains(&short) {
            let est = c
                .estimates
                .get(&n.name)
                .map(|s| crate::time::short(std::time::Duration::from_secs(*s)))
                .unwrap_or_else(|| "no estimate".into());
            println!("    [ ] {short}  ({est})");
        } else {
            println!("    [+] {short}");
        }
    }
}

/// Reasons a job pending in Slurm has that waiting alone will not clear: it is held
/// until an admin acts (or the job is changed).
const SLURM_HELD: &[&str] = &[
    "PartitionTimeLimit",
    "PartitionNodeLimit",
    "JobHeldAdmin",
    "JobHeldUser",
    "PartitionConfig",
    "AccountNotAllowed",
    "QOSNotAllowed",
    "InvalidAccount",
    "InvalidQOS",
];

/// `slurm job 1234 (partition debug, node n01)`; parts not known yet are left out.
/// While Slurm holds it, what Slurm says first: `queued in Slurm: Resources, slurm job
/// 1234 (...)`, `held in Slurm: PartitionTimeLimit, ...`, `suspended in Slurm, ...`.
pub fn slurm_text(s: &crate::job::SlurmState) -> String {
    let held = match (s.state.as_deref(), s.reason.as_deref()) {
        (Some("PENDING"), Some(r)) if SLURM_HELD.contains(&r) || r.contains("MaxWall") => {
            format!("held in Slurm: {r}, ")
        }
        (Some("PENDING"), Some(r)) => format!("queued in Slurm: {r}, "),
        (Some("PENDING"), None) => "queued in Slurm, ".to_string(),
        (Some(st @ ("SUSPENDED" | "REQUEUED" | "REQUEUE_HOLD" | "PREEMPTED")), _) => {
            format!("{} in Slurm, ", st.to_lowercase().replace('_', " "))
        }
        _ => String::new(),
    };
    let id = s
        .job_id
        .map(|i| format!("{held}slurm job {i}"))
        .unwrap_or_else(|| "being submitted to slurm".into());
    let place: Vec<String> = [("partition", &s.partition), ("node", &s.node)]
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} {v}")))
        .collect();
    if place.is_empty() {
        id
    } else {
        format!("{id} ({})", place.join(", "))
    }
}
