//! The concretization stage, between intake and an install: the worker asks the site's
//! Spack what a pending job will build (`spack spec --json CANONICAL`, then `spack find
//! --json`), in lanes of its own beside the installs, and acts on the answer:
//!
//! - Spack cannot concretize it: the job fails at once, with Spack's own reason;
//! - its root is installed: it ends done, "already installed", without an install;
//! - a pending or running job has the same root hash: it is linked to that one
//!   (`same_as`), runs nothing, and ends as that one ends;
//! - otherwise its concrete spec is kept in `concrete/NAME.json` and the install runs
//!   exactly that (`spack install -f`), while it is fresh.
//!
//! Spack runs by argv in the installs' clean environment ([`query::ask`]), on a lane
//! thread that only waits and reports back through an [`Event`]; every decision and every
//! file written is the main loop's. A question Spack does not answer (a timeout, no
//! Spack) is not the job's fault: the job goes on as plain `spack install SPEC`.

use super::{Event, Worker};
use crate::concrete::{ConcreteSpec, DagHash, Installed, spack_error};
use crate::config::Concretize;
use crate::executor::query;
use crate::job::{ConcreteState, Job, JobId, State};
use crate::scheduler::Outcome;
use crate::spool::Dir;
use crate::spool::transition::{self, rewrite};
use crate::time::Timestamp;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant, SystemTime};

/// After Spack failed to answer for a job, ask again no sooner than this.
const RETRY_AFTER: Duration = Duration::from_secs(300);
/// Lines of Spack's error kept as a job's reason.
const REASON_LINES: usize = 4;

/// What Spack answered about one job.
#[derive(Debug)]
pub enum Found {
    Concrete {
        json: String,
        spec: Box<ConcreteSpec>,
        installed: Installed,
        /// Build times of the to-build packages from the install tree.
        times: HashMap<String, Duration>,
    },
    /// Spack said it cannot concretize the spec: its reason.
    Refused(String),
    /// Spack did not answer (a timeout, not startable, output unreadable).
    Unavailable(String),
}

/// The lanes' bookkeeping.
#[derive(Debug, Default)]
pub struct Lanes {
    busy: HashSet<JobId>,
    /// Jobs Spack did not answer for, and when.
    unanswered: HashMap<JobId, Instant>,
    /// The pending set changed since the last look for work.
    pub look: bool,
}

impl Lanes {
    /// How many lanes ask Spack now.
    pub fn busy(&self) -> usize {
        self.busy.len()
    }

    /// Lanes that will look for work at once.
    pub fn new() -> Lanes {
        Lanes {
            look: true,
            ..Lanes::default()
        }
    }
}

/// Ask Spack about `spec` (on a lane thread), and read the build times of what it would
/// build from `tree`.
fn ask(spack: &str, spec: &str, env: &[(String, String)], timeout: Duration, tree: &Path) -> Found {
    let argv = |a: &[&str]| -> Vec<String> {
        std::iter::once(spack)
            .chain(a.iter().copied())
            .map(String::from)
            .collect()
    };
    let answer = match query::ask(&argv(&["spec", "--json", spec]), env, timeout) {
        Ok(a) => a,
        Err(e) => return Found::Unavailable(format!("cannot start {spack}: {e}")),
    };
    if answer.timed_out {
        return Found::Unavailable(format!(
            "`spack spec` took longer than {}",
            humantime::format_duration(timeout)
        ));
    }
    if !answer.success() {
        let why = spack_error(&answer.stderr, REASON_LINES);
        // Spack says why it cannot concretize with an `==> Error:` line; anything else
        // (a crash, a signal) is Spack's trouble, not the spec's.
        return if answer.code == Some(1) && answer.stderr.contains("==> Error:") {
            Found::Refused(why)
        } else {
            Found::Unavailable(format!("`spack spec` exited with {:?}: {why}", answer.code))
        };
    }
    let spec = match ConcreteSpec::from_spec_json(&answer.stdout) {
        Ok(s) => s,
        Err(e) => return Found::Unavailable(e.to_string()),
    };
    let installed = match query::ask(&argv(&["find", "--json"]), env, timeout) {
        Ok(a) if a.success() => match Installed::from_find_json(&a.stdout) {
            Ok(i) => i,
            Err(e) => return Found::Unavailable(e.to_string()),
        },
        Ok(a) => {
            return Found::Unavailable(format!(
                "`spack find --json` failed: {}",
                spack_error(&a.stderr, REASON_LINES)
            ));
        }
        Err(e) => return Found::Unavailable(format!("cannot start {spack}: {e}")),
    };
    let names: HashSet<&str> = spec.to_build(&installed).map(|n| n.name.as_str()).collect();
    let times = crate::concrete::build_times(tree, &names);
    Found::Concrete {
        json: answer.stdout,
        spec: Box::new(spec),
        installed,
        times,
    }
}

/// The newest modification time of `paths` and of the YAML files directly in them
/// (Spack's configuration files; not its caches, which change at every run).
fn newest_mtime(paths: &[PathBuf]) -> Option<SystemTime> {
    let mut newest = None;
    let mut see = |p: &Path| {
        if let Ok(t) = std::fs::metadata(p).and_then(|m| m.modified()) {
            newest = newest.max(Some(t));
        }
    };
    for p in paths {
        see(p);
        if let Ok(rd) = std::fs::read_dir(p) {
            for e in rd.flatten() {
                let path = e.path();
                let yaml = path.extension().is_some_and(|x| x == "yaml" || x == "yml");
                if yaml && e.file_type().is_ok_and(|t| t.is_file()) {
                    see(&path);
                }
            }
        }
    }
    newest
}

impl Worker {
    /// Whether this worker concretizes at all.
    pub(super) fn concretizes(&self) -> bool {
        self.cfg.concretize.value != Concretize::Off && !self.opts.dry_run
    }

    /// Whether `job` may be handed to the scheduler now: not linked to another job's
    /// install, and (with `concretize = "required"`) concretized since `fresh_after`
    /// ([`Worker::fresh_after`]).
    pub(super) fn schedulable(&self, job: &Job, fresh_after: Timestamp) -> bool {
        match &job.state.concrete {
            Some(c) if c.same_as.is_some() => false,
            // A stale concrete spec is made again first when it is required.
            Some(c) => {
                self.cfg.concretize.value != Concretize::Required
                    || !self.concretizes()
                    || c.at >= fresh_after
                    || self.lanes.unanswered.contains_key(&job.meta.id)
            }
            None => {
                self.cfg.concretize.value != Concretize::Required
                    || !self.concretizes()
                    || job.submission().is_none()
            }
        }
    }

    /// Nothing is being asked, nor waits to be asked before it may start.
    pub(super) fn concretize_idle(&self) -> bool {
        if !self.lanes.busy.is_empty() {
            return false;
        }
        self.cfg.concretize.value != Concretize::Required || !self.concretizes() || {
            let fresh_after = self.fresh_after();
            self.pending.values().all(|j| {
                j.state
                    .concrete
                    .as_ref()
                    .is_some_and(|c| c.same_as.is_some() || c.at >= fresh_after)
                    || j.submission().is_none()
                    || self.lanes.unanswered.contains_key(&j.meta.id)
            })
        }
    }

    /// Start `spack spec` for pending jobs not yet concretized, while lanes are free.
    pub(super) fn concretize_pump(&mut self) {
        if !self.concretizes() || self.draining || !self.lanes.look {
            return;
        }
        let free = self
            .cfg
            .concretize_parallel
            .value
            .saturating_sub(self.lanes.busy.len());
        if free == 0 {
            return;
        }
        self.lanes.look = false;
        let now = Instant::now();
        let fresh_after = self.fresh_after();
        let todo: Vec<(JobId, String)> = self
            .pending
            .values()
            .filter(|j| match &j.state.concrete {
                None => true,
                // Made before Spack's configuration changed, or too old: again.
                Some(c) => c.same_as.is_none() && c.at < fresh_after,
            })
            .filter(|j| !self.lanes.busy.contains(&j.meta.id))
            .filter(|j| {
                self.lanes
                    .unanswered
                    .get(&j.meta.id)
                    .is_none_or(|t| now >= *t + RETRY_AFTER)
            })
            .filter(|j| j.submission().is_some())
            .map(|j| (j.meta.id, j.spec_canonical().to_string()))
            .take(free)
            .collect();
        for (id, spec) in todo {
            self.lanes.busy.insert(id);
            let (spack, tx) = (self.spack.clone(), self.tx.clone());
            let env = self.query_env();
            let timeout = self.cfg.concretize_timeout.value;
            let tree = self.install_tree();
            tracing::debug!(job_id = id.0, "concretizing: {spec}");
            spawn_lane(id, move || ask(&spack, &spec, &env, timeout, &tree), tx);
        }
    }

    /// The environment of Spack's answers: the installs' allow-list, no job marker.
    fn query_env(&self) -> Vec<(String, String)> {
        crate::executor::allowed_env(&self.cfg.env_allow.value)
    }

    /// A lane finished: act on what Spack said.
    pub(super) fn on_concretized(&mut self, id: JobId, found: Found, took: Duration) {
        self.lanes.busy.remove(&id);
        if !matches!(found, Found::Unavailable(_)) {
            self.metrics.concretized(took);
        }
        self.lanes.look = true;
        let Some(job) = self.pending.get(&id) else {
            // Started, cancelled or failed meanwhile: the answer is moot.
            return;
        };
        let spec_text = job.spec_text().to_string();
        match found {
            Found::Refused(why) => {
                self.fail_pending(id, format!("Spack cannot concretize `{spec_text}`: {why}"));
                self.changed();
            }
            Found::Unavailable(why) => {
                tracing::warn!(
                    job_id = id.0,
                    "Spack did not concretize `{spec_text}` ({why}); the install will concretize it itself, asked again in {}",
                    humantime::format_duration(RETRY_AFTER)
                );
                self.lanes.unanswered.insert(id, Instant::now());
            }
            Found::Concrete {
                json,
                spec,
                installed,
                times,
            } => self.record_concrete(id, &json, &spec, &installed, &times),
        }
    }

    fn record_concrete(
        &mut self,
        id: JobId,
        json: &str,
        spec: &ConcreteSpec,
        installed: &Installed,
        times: &HashMap<String, Duration>,
    ) {
        let Some(mut job) = self.pending.get(&id).cloned() else {
            return;
        };
        let name = job.name();
        let root = spec.root();
        if installed.contains(&root.hash) {
            let why = format!("already installed ({}/{})", root.name, root.hash.short());
            self.end_pending(id, State::Done, why);
            self.changed();
            return;
        }
        let same_as = self
            .pending
            .values()
            .chain(self.running.values().map(|r| &r.job))
            .filter(|j| j.meta.id != id)
            .filter_map(|j| j.state.concrete.as_ref().map(|c| (j.meta.id, c)))
            .filter(|(_, c)| c.same_as.is_none() && c.hash == root.hash.as_str())
            .map(|(other, _)| other)
            .min();
        let path = self.spool.concrete_path(&name);
        if let Err(e) = transition::replace(&self.spool, &path, json.as_bytes(), true) {
            tracing::warn!(job_id = id.0, "cannot keep the concrete spec: {e}");
            self.lanes.unanswered.insert(id, Instant::now());
            return;
        }
        // Each package's estimate: this queue's history, else the install tree's.
        let mut estimates = std::collections::BTreeMap::new();
        for n in spec.to_build(installed) {
            let history = self.finished.done_ids(&n.name).and_then(|ids| {
                self.history
                    .borrow_mut()
                    .estimate(&self.spool, &n.name, ids)
            });
            if let Some(d) = history.or_else(|| times.get(&n.name).copied()) {
                estimates.insert(n.name.clone(), d.as_secs().max(1));
            }
        }
        job.state.concrete = Some(ConcreteState {
            hash: root.hash.to_string(),
            version: root.version.clone(),
            nodes: spec.nodes().len() as u32,
            to_build: spec
                .to_build(installed)
                .map(|n| format!("{}@{}/{}", n.name, n.version, n.hash.short()))
                .collect(),
            at: Timestamp::now(),
            estimate_s: (!estimates.is_empty()).then(|| estimates.values().sum()),
            estimates,
            same_as,
        });
        if let Err(e) = rewrite(&self.spool, Dir::Pending, &job) {
            return self.io_error(e);
        }
        let c = job.state.concrete.as_ref().expect("just set");
        match same_as {
            Some(other) => tracing::info!(
                job_id = id.0,
                job = %name,
                "same DAG ({}) as job {other}: waits for it and builds nothing itself",
                root.hash.short()
            ),
            None => tracing::info!(
                job_id = id.0,
                job = %name,
                "concretized: {}@{}/{}, {} of {} nodes to build",
                root.name,
                root.version,
                root.hash.short(),
                c.to_build.len(),
                c.nodes
            ),
        }
        self.pending.insert(id, job);
        if let Ok(m) = std::fs::metadata(self.spool.job_path(Dir::Pending, &name)) {
            use std::os::unix::fs::MetadataExt;
            self.pending_mtime.insert(id, m.mtime());
        }
        self.changed();
    }

    /// End the linked jobs whose install ended: as it did when it was done or failed
    /// (the same DAG builds the same way); a cancelled one's owner changed their mind,
    /// so its linked jobs go back to the queue on their own.
    pub(super) fn resolve_links(&mut self) {
        let linked: Vec<(JobId, JobId)> = self
            .pending
            .values()
            .filter_map(|j| {
                let c = j.state.concrete.as_ref()?;
                Some((j.meta.id, c.same_as?))
            })
            .filter(|(_, other)| {
                !self.pending.contains_key(other) && !self.running.contains_key(other)
            })
            .collect();
        for (id, other) in linked {
            let other_name = format!("job {other}");
            match self.finished.outcome(other) {
                Some(Outcome::Done) => self.end_pending(
                    id,
                    State::Done,
                    format!("installed by {other_name}, which built the same DAG"),
                ),
                Some(Outcome::Failed) => self.end_pending(
                    id,
                    State::Failed,
                    format!("{other_name}, which built the same DAG, failed"),
                ),
                _ => self.unlink(id),
            }
        }
    }

    fn unlink(&mut self, id: JobId) {
        let Some(mut job) = self.pending.get(&id).cloned() else {
            return;
        };
        if let Some(c) = &mut job.state.concrete {
            c.same_as = None;
        }
        match rewrite(&self.spool, Dir::Pending, &job) {
            Ok(()) => {
                tracing::info!(
                    job_id = id.0,
                    "the job it shared a DAG with ended without building it: queued on its own"
                );
                self.pending.insert(id, job);
            }
            Err(e) => self.io_error(e),
        }
    }

    /// A concrete spec made before this is stale: older than `concretize_max_age`, or
    /// than a file of Spack's configuration (an admin changed it since).
    /// It costs a look at Spack's configuration directories: callers work it out once
    /// for all the jobs they look at.
    pub(super) fn fresh_after(&self) -> Timestamp {
        if !self.concretizes() {
            return Timestamp(0);
        }
        let now = Timestamp::now();
        let by_age = Timestamp(
            now.0
                .saturating_sub(self.cfg.concretize_max_age.value.as_secs()),
        );
        let by_config = newest_mtime(&self.spack_config_paths())
            .map(Timestamp::from_system)
            .unwrap_or(Timestamp(0));
        by_age.max(by_config)
    }

    /// The concrete spec to install for `job`, when there is one and it is fresh (see
    /// [`Worker::fresh_after`]); else the install runs the spec and Spack concretizes it
    /// again itself.
    pub(super) fn concrete_file(&self, job: &Job) -> Option<PathBuf> {
        let c = job.state.concrete.as_ref()?;
        if !self.concretizes() || DagHash::parse(&c.hash).is_none() {
            return None;
        }
        if c.at < self.fresh_after() {
            tracing::info!(job = %job.name(), "its concrete spec is older than Spack's configuration or concretize_max_age: installing the spec, which Spack concretizes again");
            return None;
        }
        let path = self.spool.concrete_path(&job.name());
        path.is_file().then_some(path)
    }

    /// Where Spack installs: configured, else `PREFIX/opt/spack` of the Spack that runs.
    fn install_tree(&self) -> PathBuf {
        if let Some(t) = &self.cfg.spack_install_tree.value {
            return t.clone();
        }
        Path::new(&self.spack)
            .parent()
            .and_then(Path::parent)
            .map(|p| p.join("opt/spack"))
            .unwrap_or_default()
    }

    fn spack_config_paths(&self) -> Vec<PathBuf> {
        let set = &self.cfg.spack_config_paths.value;
        if !set.is_empty() {
            return set.clone();
        }
        let mut v = vec![PathBuf::from("/etc/spack")];
        // PREFIX/bin/spack → PREFIX/etc/spack.
        if let Some(prefix) = Path::new(&self.spack).parent().and_then(Path::parent) {
            v.push(prefix.join("etc/spack"));
        }
        if let Some(home) = std::env::var_os("HOME") {
            v.push(PathBuf::from(home).join(".spack"));
        }
        v
    }
}

fn spawn_lane(id: JobId, work: impl FnOnce() -> Found + Send + 'static, tx: Sender<Event>) {
    let spawned = std::thread::Builder::new()
        .name(format!("concretize-{id}"))
        .spawn({
            let tx = tx.clone();
            move || {
                let t = Instant::now();
                let found = work();
                let took = t.elapsed();
                let _ = tx.send(Event::Concretized { id, found, took });
            }
        });
    if let Err(e) = spawned {
        let _ = tx.send(Event::Concretized {
            id,
            found: Found::Unavailable(format!("cannot start a thread: {e}")),
            took: Duration::ZERO,
        });
    }
}
