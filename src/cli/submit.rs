//! `submit`: validate locally (the same checks the worker makes), write each job file
//! atomically into `incoming/`, and return once it is durable. When a worker runs, wait
//! briefly for its receipt to print the job's ID; with `--wait`, until the job ends.

use super::Ctx;
use crate::error::{Error, Result};
use crate::job::{JobFile, JobId, Priority};
use crate::spool::intake::{Outcome, Receipt};
use crate::spool::status::{Liveness, WorkerStatus};
use crate::spool::transition::{fsync_dir, place_new_in};
use crate::spool::{Dir, Spool, store};
use crate::time::{Timestamp, parse_span};
use serde::Serialize;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Spack specs, as on `spack install`'s command line: `hdf5@1.14 +mpi ^zlib netcdf-c`
    /// is two jobs. Quote a spec to keep it in one argument.
    #[arg(required_unless_present = "file", value_name = "SPEC")]
    pub specs: Vec<String>,
    /// Submit the jobs of a stack file: `[[job]]` tables with the keys of a job file.
    #[arg(long, value_name = "FILE")]
    pub file: Option<std::path::PathBuf>,
    /// Queue even if an identical spec is already pending or running.
    #[arg(long)]
    pub force: bool,
    /// The old tool's per-job setup script. The worker always runs the site's Spack, so this
    /// is accepted only when it names the configured setup script.
    #[arg(long, value_name = "SCRIPT", hide = true)]
    pub spack_setup: Option<std::path::PathBuf>,
    #[arg(short, long, value_parser = parse_priority, default_value = "medium")]
    pub priority: Priority,
    /// Packages that other queued jobs install and that must finish first.
    #[arg(short, long, value_delimiter = ',', value_name = "PKG,...")]
    pub dependencies: Vec<String>,
    /// Job IDs that must finish first.
    #[arg(long, value_delimiter = ',', value_name = "ID,...")]
    pub after: Vec<String>,
    /// Estimated install time: seconds, or e.g. "45m".
    #[arg(short = 't', long = "estimated-time", value_name = "DURATION")]
    pub estimated_time: Option<String>,
    /// Stop the install after this long.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// A note shown by status and show.
    #[arg(long)]
    pub note: Option<String>,
    /// Mail me when the job ends: never, failures, always (default: the site's `mail`).
    #[arg(long, value_name = "WHEN")]
    pub mail: Option<crate::job::Mail>,
    /// Each job waits for the one before it (by its ID; by package when no worker runs
    /// to give that job an ID).
    #[arg(long)]
    pub chain: bool,
    /// Wait until every job has ended; exit 0 only if all succeeded.
    #[arg(long, conflicts_with = "no_wait")]
    pub wait: bool,
    /// Return as soon as the file is durable, without waiting for the worker's receipt.
    #[arg(long)]
    pub no_wait: bool,
    /// Print one JSON object per job.
    #[arg(long)]
    pub json: bool,
}

fn parse_priority(s: &str) -> Result<Priority, String> {
    s.parse()
}

/// What `submit --json` prints for each job.
#[derive(Debug, Serialize)]
pub struct Submitted {
    pub ticket: String,
    pub spec: String,
    /// `queued` (written, not yet taken), `accepted`, `rejected`, `duplicate`, or
    /// `refused` (Spack cannot concretize it).
    pub outcome: String,
    pub id: Option<u64>,
    pub job: Option<String>,
    pub message: String,
    /// With --wait: the job's final state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// Split command-line words into specs the way Spack does: a bare package name starts a
/// new spec; variants, versions, `^dep`, `%compiler` and `key=value` extend the current one.
pub fn split_specs(words: &[String]) -> Vec<String> {
    let mut specs: Vec<String> = Vec::new();
    let mut prev_sigil = false;
    for w in words {
        let starts_name = w
            .as_bytes()
            .first()
            .is_some_and(|b| b.is_ascii_alphanumeric());
        let new_spec =
            specs.is_empty() || (starts_name && !w.contains('=') && !prev_sigil) || w.contains(' ');
        if new_spec {
            specs.push(w.clone());
        } else {
            let last = specs.last_mut().expect("not empty");
            last.push(' ');
            last.push_str(w);
        }
        prev_sigil = matches!(w.as_str(), "^" | "%" | "%%");
    }
    specs
}

/// A ticket name no other submitter can produce at the same time.
pub fn new_ticket(suffix: &str) -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "t{}.{:09}.{}{suffix}",
        t.as_secs(),
        t.subsec_nanos(),
        std::process::id()
    )
}

/// Write `text` into `incoming/` under a fresh ticket; retried on the (unlikely) clash.
pub fn drop_file(spool: &Spool, suffix: &str, text: &str) -> Result<String> {
    let dir = spool.dir(Dir::Incoming);
    for _ in 0..100 {
        let ticket = new_ticket(suffix);
        match place_new_in(&dir, &ticket, text.as_bytes()) {
            Ok(()) => return make_durable(spool, ticket),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
                continue;
            }
            Err(e) => return Err(explain_write_error(spool, e)),
        }
    }
    Err(Error::Other(
        "could not find a free ticket name in incoming/".into(),
    ))
}

/// The file is in `incoming/`; make its name durable. If that fails, the file is there
/// all the same and a worker may take it: either it is removed again, and nothing was
/// queued, or (the worker took it first, or it cannot be removed) it is queued and only
/// its durability is uncertain, which is said on stderr. Never both "nothing was queued"
/// and a file that will run.
fn make_durable(spool: &Spool, ticket: String) -> Result<String> {
    let dir = spool.dir(Dir::Incoming);
    let Err(e) = fsync_dir(&dir) else {
        return Ok(ticket);
    };
    match std::fs::remove_file(dir.join(&ticket)) {
        Ok(()) => {
            // Best effort: if the removal is lost to a power cut, so is the file's name.
            let _ = fsync_dir(&dir);
            Err(explain_write_error(spool, e))
        }
        Err(_) => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "spack-installer: warning: {e}; the job was queued as ticket {ticket}, but a \
                 power cut now could lose it: check with `spack-installer status` before \
                 submitting again"
            );
            Ok(ticket)
        }
    }
}

/// Turn a failed write into advice. Every error here came before the file had a name in
/// `incoming/` (or after it was removed again): nothing was queued.
fn explain_write_error(spool: &Spool, e: Error) -> Error {
    let Error::Io { source, .. } = &e else {
        return e;
    };
    let incoming = spool.dir(Dir::Incoming);
    use std::io::ErrorKind;
    match source.kind() {
        ErrorKind::PermissionDenied => {
            // The spool's own group: an outsider cannot stat incoming/ (the root is 2750)
            // but can stat the root, whose group is the submitters' group.
            let group = std::fs::metadata(spool.root())
                .or_else(|_| std::fs::metadata(&incoming))
                .map(|m| crate::identity::group_name(std::os::unix::fs::MetadataExt::gid(&m)))
                .unwrap_or_else(|_| "of the spool".into());
            let me = crate::identity::user_name(crate::identity::current_uid());
            Error::NotPermitted(format!(
                "you may not write to {}: you are not in group {group}; ask an admin to run \
                 `usermod -aG {group} {me}` (then log in again). `spack-installer auth-status` explains more.",
                incoming.display()
            ))
        }
        ErrorKind::NotFound => Error::Other(format!(
            "{} does not exist: create the spool with `spack-installer --spool {} init`, or point \
             --spool / SPACK_INSTALLER_SPOOL at the site's spool",
            incoming.display(),
            spool.root().display()
        )),
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => Error::Other(format!(
            "the file system of {} is full: nothing was queued; free space (e.g. `spack-installer cleanup`) and submit again",
            incoming.display()
        )),
        _ => Error::Other(format!(
            "{e}: nothing was queued; submit again once the file system of {} works",
            incoming.display()
        )),
    }
}

/// Is a worker serving this spool now (so waiting for a receipt makes sense)?
pub fn worker_alive(ctx: &Ctx) -> bool {
    let max_age = ctx
        .config()
        .map(|c| c.max_heartbeat_age.value)
        .unwrap_or(Duration::from_secs(60));
    WorkerStatus::read(&ctx.spool)
        .is_some_and(|w| w.liveness(Timestamp::now(), max_age) == Liveness::Running)
}

/// Wait up to `limit` for the worker's receipt of `ticket`: ours only (another member
/// may reuse a ticket name once ours is taken; the worker records who dropped each file).
pub fn await_receipt(spool: &Spool, ticket: &str, limit: Duration) -> Option<Receipt> {
    let start = Instant::now();
    let deadline = start + limit;
    let me = crate::identity::current_uid();
    loop {
        if let Some(r) =
            Receipt::read(spool, ticket).filter(|r| r.owner_uid.is_none_or(|u| u == me))
        {
            return Some(r);
        }
        if Instant::now() >= deadline {
            return None;
        }
        // A running worker answers within milliseconds; `submit --wait` with none may
        // wait for hours, and must not spend a core on it.
        let pause = if start.elapsed() < Duration::from_secs(1) {
            Duration::from_millis(2)
        } else {
            Duration::from_millis(100)
        };
        std::thread::sleep(pause);
    }
}

/// Wait until job `id` is in a finished directory; returns its state directory.
pub fn await_end(spool: &Spool, id: JobId) -> Result<Dir> {
    use notify::{RecursiveMode, Watcher};
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |_| {
        let _ = tx.send(());
    })
    .ok();
    if let Some(w) = watcher.as_mut() {
        for d in Dir::FINISHED {
            let _ = w.watch(&spool.dir(d), RecursiveMode::NonRecursive);
        }
    }
    loop {
        if let Some((dir, _)) = store::locate(spool, id)?
            && Dir::FINISHED.contains(&dir)
        {
            return Ok(dir);
        }
        // inotify wakes us at once; the timeout covers file systems without it.
        let _ = rx.recv_timeout(Duration::from_secs(1));
        while rx.try_recv().is_ok() {}
    }
}

/// How long plain `submit` waits to say what Spack made of a job (the concretization
/// stage takes seconds per job with a real Spack; a long queue of them takes longer, and
/// `show` tells the rest).
const CONCRETIZE_WAIT: Duration = Duration::from_secs(30);

/// With the concretization stage on, say what Spack answered about each accepted job:
/// refused (with Spack's reason), already installed, the same DAG as another job, or
/// how much it will build. Gives up quietly after [`CONCRETIZE_WAIT`]; a job that
/// starts first (`concretize = "background"`) is simply running.
fn await_concretized(ctx: &Ctx, results: &mut [Submitted]) -> Result<()> {
    use notify::{RecursiveMode, Watcher};
    let cfg = ctx.config()?;
    // A worker in dry-run mode asks Spack nothing.
    let dry_run = crate::spool::status::WorkerStatus::read(&ctx.spool).is_some_and(|w| w.dry_run);
    if cfg.concretize.value == crate::config::Concretize::Off || dry_run {
        return Ok(());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |_| {
        let _ = tx.send(());
    })
    .ok();
    if let Some(w) = watcher.as_mut() {
        for d in Dir::STATES {
            let _ = w.watch(&ctx.spool.dir(d), RecursiveMode::NonRecursive);
        }
    }
    let end = std::time::Instant::now() + CONCRETIZE_WAIT;
    for s in results.iter_mut().filter(|s| s.outcome == "accepted") {
        let Some(id) = s.id.map(JobId) else { continue };
        while let Some((dir, name)) = store::locate(&ctx.spool, id)? {
            let job = store::read(&ctx.spool, dir, &name).ok();
            match (dir, job) {
                (Dir::Pending, Some(j)) if j.state.concrete.is_none() => {}
                (Dir::Pending, Some(j)) => {
                    let c = j.state.concrete.expect("checked");
                    s.message = match c.same_as {
                        Some(other) => format!(
                            "queued as {name}: the same DAG as job {other}, which builds it for both"
                        ),
                        None => format!(
                            "queued as {name}: {} of {} packages to build",
                            c.to_build.len(),
                            c.nodes
                        ),
                    };
                    break;
                }
                (Dir::Failed, Some(j)) => {
                    s.outcome = "refused".into();
                    s.message = format!("{name} failed: {}", j.state.reason.unwrap_or_default());
                    break;
                }
                (Dir::Done, Some(j)) => {
                    s.message = format!("{name}: {}", j.state.reason.unwrap_or_default());
                    break;
                }
                _ => break,
            }
            let left = end.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            // inotify wakes us at once; the timeout covers file systems without it.
            let _ = rx.recv_timeout(left.min(Duration::from_secs(1)));
            while rx.try_recv().is_ok() {}
        }
    }
    Ok(())
}

/// `--after` must name jobs that exist or may yet: a typo is caught here, not by a
/// rejection later. IDs are given at intake, in order, from `counter` (the next ID, or
/// beyond it while the worker holds a reserve): an ID not in a state directory can still
/// go to a file waiting in `incoming/`, so only one past the counter plus those files is
/// surely no job. Anything this user cannot read is left to the worker to judge.
fn check_after_exists(ctx: &Ctx, after: &[JobId]) -> Result<()> {
    let next = std::fs::read_to_string(ctx.spool.file(crate::spool::COUNTER_FILE))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let (Some(next), Ok(waiting)) = (next, store::list_incoming(&ctx.spool)) else {
        return Ok(());
    };
    let possible = next.saturating_add(waiting.len() as u64);
    for id in after {
        if id.0 >= possible && matches!(store::locate(&ctx.spool, *id), Ok(None)) {
            return Err(Error::JobNotFound(format!(
                "{} (named by --after; the next job queued would get {possible})",
                id.0
            )));
        }
    }
    Ok(())
}

/// A stack file: several jobs in one go.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Stack {
    job: Vec<JobFile>,
}

/// Is this text a stack file (`[[job]]` tables) rather than one job file?
pub fn is_stack(text: &str) -> bool {
    text.parse::<toml::Table>()
        .is_ok_and(|t| t.get("job").is_some_and(|j| j.is_array()))
}

/// Parse and check a stack file: every job as the worker's intake would (except what
/// needs the queue). Errors name the line and column, or the job by number and spec.
pub fn parse_stack(text: &str) -> std::result::Result<Vec<JobFile>, String> {
    let stack: Stack = toml::from_str(text).map_err(|e| crate::job::toml_message(&e, text))?;
    for (i, f) in stack.job.iter().enumerate() {
        f.validate()
            .map_err(|e| format!("job {} ({}): {e}", i + 1, f.spec))?;
    }
    Ok(stack.job)
}

fn read_stack(path: &std::path::Path) -> Result<Vec<JobFile>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    parse_stack(&text).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))
}

/// Specs of jobs pending or running for these packages: (name, state, canonical spec). Names carry
/// the package, so only records that could match are read, however long the queue. Files
/// still in `incoming/` are not read: a burst of submissions would make each one slower
/// than the last.
fn queued_specs(ctx: &Ctx, packages: &[String]) -> Result<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    for dir in [Dir::Pending, Dir::Running] {
        for name in store::list(&ctx.spool, dir)? {
            if !packages.contains(&name.package) {
                continue;
            }
            if let Ok(job) = store::read(&ctx.spool, dir, &name) {
                out.push((
                    name.to_string(),
                    dir.name().to_string(),
                    job.spec_canonical().to_string(),
                ));
            }
        }
    }
    Ok(out)
}

pub fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let specs = split_specs(&a.specs);
    let span = |v: &Option<String>| {
        v.as_deref()
            .map(parse_span)
            .transpose()
            .map_err(Error::Usage)
    };
    let estimated_time = span(&a.estimated_time)?;
    let timeout = span(&a.timeout)?;
    let after = a
        .after
        .iter()
        .map(|s| {
            JobId::parse_ref(s)
                .ok_or_else(|| Error::Usage(format!("--after: `{s}` is not a job ID")))
        })
        .collect::<Result<Vec<_>>>()?;
    check_after_exists(ctx, &after)?;
    if let Some(script) = &a.spack_setup {
        let cfg = ctx.config()?;
        if *script != cfg.spack_setup_script.value {
            return Err(Error::Usage(format!(
                "--spack-setup {}: the worker runs the site's Spack ({}), not one chosen per job; drop the option, or ask an admin to change `spack_setup_script`",
                script.display(),
                cfg.spack_setup_script.value.display()
            )));
        }
    }
    // Validate everything before writing anything.
    let mut files = Vec::new();
    if let Some(path) = &a.file {
        files.extend(read_stack(path)?.into_iter().map(|mut f| {
            f.mail = f.mail.or(a.mail);
            f
        }));
    }
    // --chain: the package of the job before each one (None for the first and for the
    // stack file's jobs), used only when that job's ID cannot be known (see below).
    let mut chained_to: Vec<Option<String>> = vec![None; files.len()];
    let mut prev_package: Option<String> = None;
    for spec in &specs {
        if a.chain {
            chained_to.push(prev_package.clone());
        } else {
            chained_to.push(None);
        }
        let f = JobFile {
            spec: spec.clone(),
            priority: Some(a.priority),
            dependencies: a.dependencies.clone(),
            after: after.clone(),
            estimated_time,
            timeout,
            note: a.note.clone(),
            retry_of: None,
            mail: a.mail,
        };
        let sub = f
            .validate()
            .map_err(|e| Error::Usage(format!("{spec}: {e}")))?;
        prev_package = Some(sub.spec.package().to_string());
        files.push(f);
    }
    let queued = if a.force {
        Vec::new()
    } else {
        // A courtesy: when the queue cannot be read (not a member), the write below says why.
        let packages: Vec<String> = files
            .iter()
            .filter_map(|f| crate::job::Spec::parse(&f.spec).ok())
            .map(|spec| spec.package().to_string())
            .collect();
        queued_specs(ctx, &packages).unwrap_or_default()
    };
    let alive = worker_alive(ctx);
    let wait_receipt = !a.no_wait && (a.wait || alive);
    if a.wait && !alive {
        eprintln!(
            "spack-installer: no worker is running on {}: the jobs are queued and wait for one \
             to start (an admin: `systemctl start spack-installer`, or `spack-installer worker start`); \
             waiting until they end (Ctrl-C stops waiting, the jobs stay queued)",
            ctx.spool.root().display()
        );
    }
    let mut results: Vec<Submitted> = Vec::new();
    let mut chain_notes: Vec<String> = Vec::new();
    for (f, chained) in files.iter().zip(&chained_to) {
        // A chained job waits for the job before it by ID, known from its receipt (or as
        // the job it duplicates). Without a worker there is no ID yet: it waits for the
        // package instead (any queued job of it), and says so.
        let mut f = f.clone();
        if let Some(pkg) = chained {
            match results.last().and_then(|r| r.id) {
                Some(id) => f.after.push(JobId(id)),
                None => {
                    f.dependencies.push(pkg.clone());
                    chain_notes.push(format!(
                        "{}: waits for any queued {pkg} job (by package): the job before it has no ID until a worker takes it",
                        f.spec
                    ));
                }
            }
        }
        let f = &f;
        // Compared in canonical form: `zlib@1.3` and `zlib @1.3` are one spec.
        let canonical = crate::job::Spec::parse(&f.spec).map(|s| s.canonical().to_string());
        if let Some((name, state)) = queued
            .iter()
            .find(|(_, _, spec)| canonical.as_ref().is_ok_and(|c| c == spec))
            .map(|(n, st, _)| (n, st))
        {
            results.push(Submitted {
                ticket: String::new(),
                spec: f.spec.clone(),
                outcome: "duplicate".into(),
                id: JobId::parse_ref(name).map(|i| i.0),
                job: Some(name.clone()),
                message: format!("already queued as {name} ({state}); --force queues it again"),
                state: None,
            });
            continue;
        }
        let text = toml::to_string(f).expect("a job file serializes");
        let ticket = drop_file(&ctx.spool, ".toml", &text)?;
        let mut s = Submitted {
            ticket: ticket.clone(),
            spec: f.spec.clone(),
            outcome: "queued".into(),
            id: None,
            job: None,
            message: format!("queued as ticket {ticket}; the worker has not taken it yet"),
            state: None,
        };
        if wait_receipt {
            let limit = if a.wait {
                Duration::from_secs(3600 * 24 * 365)
            } else {
                Duration::from_secs(2)
            };
            if let Some(r) = await_receipt(&ctx.spool, &ticket, limit) {
                s.outcome = match r.outcome {
                    Outcome::Accepted => "accepted",
                    _ => "rejected",
                }
                .into();
                s.id = r.id.map(|i| i.0);
                s.job = r.job.clone();
                s.message = r.message.clone();
            }
        } else if !a.no_wait {
            s.message = format!(
                "queued as ticket {ticket}; no worker is running now, it will be taken when one starts"
            );
        }
        results.push(s);
    }
    if wait_receipt && !a.wait {
        await_concretized(ctx, &mut results)?;
    }
    let mut code = if results
        .iter()
        .any(|s| s.outcome == "rejected" || s.outcome == "refused")
    {
        1
    } else {
        0
    };
    if a.wait {
        for s in results.iter_mut() {
            if let Some(id) =
                s.id.filter(|_| s.outcome == "accepted" || s.outcome == "duplicate")
            {
                let dir = await_end(&ctx.spool, JobId(id))?;
                s.state = Some(dir.state().map(|st| st.to_string()).unwrap_or_default());
                if dir != Dir::Done {
                    code = 1;
                }
                // Why it ended so (Spack's reason for a spec it cannot concretize, say).
                if let Some((d, name)) = store::locate(&ctx.spool, JobId(id))?
                    && let Ok(job) = store::read(&ctx.spool, d, &name)
                    && let Some(r) = job.state.reason
                {
                    s.message = r;
                }
            }
        }
    }
    for n in &chain_notes {
        eprintln!("spack-installer: --chain: {n}");
    }
    print_results(&results, a.json)?;
    Ok(code)
}

/// Print what became of each job. The jobs are queued by now, so a failed write (stdout on
/// a full disk, `>/dev/full`) must say so rather than suggest that nothing happened.
fn print_results(results: &[Submitted], json: bool) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let mut write = || -> std::io::Result<()> {
        for s in results {
            if json {
                writeln!(out, "{}", serde_json::to_string(s).expect("serializes"))?;
            } else {
                match &s.state {
                    Some(st) if st != "done" && !s.message.is_empty() => writeln!(
                        out,
                        "{}: {} ({st}): {}",
                        s.spec,
                        s.job.as_deref().unwrap_or(&s.ticket),
                        s.message
                    )?,
                    Some(st) => writeln!(
                        out,
                        "{}: {} ({st})",
                        s.spec,
                        s.job.as_deref().unwrap_or(&s.ticket)
                    )?,
                    None => writeln!(out, "{}: {}", s.spec, s.message)?,
                }
            }
        }
        out.flush()
    };
    write().map_err(|e| {
        let done: Vec<String> = results
            .iter()
            .map(|s| match &s.job {
                Some(j) => format!("{} as {j}", s.spec),
                None if s.ticket.is_empty() => format!("{} (already queued)", s.spec),
                None => format!("{} as ticket {}", s.spec, s.ticket),
            })
            .collect();
        Error::Other(format!(
            "cannot write to standard output ({e}), but the jobs were queued: {}; \
             `spack-installer status` shows them",
            done.join(", ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::split_specs;

    fn s(v: &[&str]) -> Vec<String> {
        split_specs(&v.iter().map(|x| x.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn words_become_specs_as_spack_splits_them() {
        assert_eq!(
            s(&["zlib", "hdf5", "netcdf-c"]),
            vec!["zlib", "hdf5", "netcdf-c"]
        );
        assert_eq!(
            s(&["hdf5@1.14", "+mpi", "^", "zlib", "netcdf-c"]),
            vec!["hdf5@1.14 +mpi ^ zlib", "netcdf-c"]
        );
        assert_eq!(s(&["hdf5 +mpi", "zlib"]), vec!["hdf5 +mpi", "zlib"]);
        assert_eq!(
            s(&["openmpi", "fabrics=ucx", "%gcc"]),
            vec!["openmpi fabrics=ucx %gcc"]
        );
    }
}
