//! The job file format, in three stages (raw input → validated type at the edge):
//! [`JobFile`] is what a submitter wrote, parsed strictly (unknown keys are errors);
//! [`Submission`] is a `JobFile` that passed every check; [`Job`] is the canonical
//! record the worker keeps in a state directory: the submission plus the worker-only
//! `[job]` and `[state]` sections. Nothing here touches the disk.

pub mod id;
pub mod spec;

pub use id::{JobId, JobName};
pub use spec::Spec;

use crate::time::{Span, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// The largest file intake reads.
pub const MAX_FILE_SIZE: u64 = 64 * 1024;
pub const MAX_NOTE_LEN: usize = 1024;
pub const MAX_LIST_LEN: usize = 256;
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JobError {
    #[error("{0}")]
    Syntax(String),
    #[error("{0}")]
    Invalid(String),
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    High,
    #[default]
    Medium,
    Low,
}

impl Priority {
    /// The old tool's weight: high 3, medium 2, low 1.
    pub fn weight(self) -> u32 {
        match self {
            Priority::High => 3,
            Priority::Medium => 2,
            Priority::Low => 1,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Medium => "medium",
            Priority::Low => "low",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "high" => Ok(Priority::High),
            "medium" => Ok(Priority::Medium),
            "low" => Ok(Priority::Low),
            _ => Err(format!("`{s}` is not a priority; use high, medium or low")),
        }
    }
}

/// When the owner gets mail about a job's end (`worker::mail`): per job (`mail = …`, or
/// `submit --mail`), else the site's `mail` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mail {
    #[default]
    Never,
    /// When the job fails (not when it is cancelled: whoever cancelled it knows).
    Failures,
    Always,
}

impl Mail {
    pub fn as_str(self) -> &'static str {
        match self {
            Mail::Never => "never",
            Mail::Failures => "failures",
            Mail::Always => "always",
        }
    }

    /// Whether a job that ended in `state` is mailed about.
    pub fn wants(self, state: State) -> bool {
        match self {
            Mail::Never => false,
            Mail::Failures => matches!(state, State::Failed | State::Rejected),
            Mail::Always => state.is_terminal(),
        }
    }
}

impl std::str::FromStr for Mail {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "never" => Ok(Mail::Never),
            "failures" => Ok(Mail::Failures),
            "always" => Ok(Mail::Always),
            _ => Err(format!(
                "`{s}` is not a mail choice; use never, failures or always"
            )),
        }
    }
}

/// The states of a job. Exhaustive: a new state must be handled everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Running,
    Done,
    Failed,
    Rejected,
    Cancelled,
}

impl State {
    pub fn is_terminal(self) -> bool {
        match self {
            State::Pending | State::Running => false,
            State::Done | State::Failed | State::Rejected | State::Cancelled => true,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Running => "running",
            State::Done => "done",
            State::Failed => "failed",
            State::Rejected => "rejected",
            State::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job file as a submitter wrote it. Unknown keys are errors.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    pub spec: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "id::deserialize_refs"
    )]
    pub after: Vec<JobId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_time: Option<Span>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Span>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "id::deserialize_opt_ref"
    )]
    pub retry_of: Option<JobId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<Mail>,
}

/// A job file that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    pub spec: Spec,
    pub priority: Priority,
    pub dependencies: Vec<String>,
    pub after: Vec<JobId>,
    pub estimated_time: Option<Duration>,
    pub timeout: Option<Duration>,
    pub note: Option<String>,
    pub retry_of: Option<JobId>,
    /// The owner's choice; `None`: the site's `mail` setting.
    pub mail: Option<Mail>,
}

/// Turn a TOML error into one line with its position, for people.
pub(crate) fn toml_message(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
            format!("line {line}, column {col}: {msg}")
        }
        None => msg,
    }
}

impl JobFile {
    /// Parse a submitted file strictly.
    pub fn parse(text: &str) -> Result<JobFile, JobError> {
        toml::from_str(text).map_err(|e| JobError::Syntax(toml_message(&e, text)))
    }

    /// Check every field; the result is what the worker will act on.
    pub fn validate(&self) -> Result<Submission, JobError> {
        let bad = |m: String| JobError::Invalid(m);
        let spec = Spec::parse(&self.spec).map_err(|e| bad(e.to_string()))?;
        if self.dependencies.len() > MAX_LIST_LEN || self.after.len() > MAX_LIST_LEN {
            return Err(bad(format!(
                "at most {MAX_LIST_LEN} dependencies and {MAX_LIST_LEN} `after` entries"
            )));
        }
        let mut dependencies = Vec::new();
        for d in &self.dependencies {
            if !spec::is_package_name(d) {
                return Err(bad(format!(
                    "dependency `{d}` is not a package name (lowercase letters, digits, `-`, `_`; no versions or variants)"
                )));
            }
            if d == spec.package() {
                return Err(bad(format!("`{d}` cannot depend on itself")));
            }
            if !dependencies.contains(d) {
                dependencies.push(d.clone());
            }
        }
        let mut after = self.after.clone();
        after.sort();
        after.dedup();
        let span = |name: &str, v: Option<Span>| -> Result<Option<Duration>, JobError> {
            match v {
                None => Ok(None),
                Some(Span(d)) if d.as_secs() >= 1 && d <= MAX_DURATION => Ok(Some(d)),
                Some(s) => Err(bad(format!(
                    "{name} = {s} is out of range (1 second to 30 days)"
                ))),
            }
        };
        let estimated_time = span("estimated_time", self.estimated_time)?;
        let timeout = span("timeout", self.timeout)?;
        // A note is shown to every member: one printable line, refused (not cleaned up)
        // otherwise, so what its owner sees is what everyone sees.
        if let Some(n) = &self.note
            && (n.len() > MAX_NOTE_LEN || !crate::text::is_printable_line(n))
        {
            return Err(bad(format!(
                "note must be one printable line of at most {MAX_NOTE_LEN} bytes (no newline, \
                 tab, control or bidi characters): {:?} is not",
                crate::text::printable(&n.chars().take(80).collect::<String>())
            )));
        }
        Ok(Submission {
            spec,
            priority: self.priority.unwrap_or_default(),
            dependencies,
            after,
            estimated_time,
            timeout,
            note: self.note.clone(),
            retry_of: self.retry_of,
            mail: self.mail,
        })
    }

    /// Parse and validate in one go.
    pub fn parse_and_validate(text: &str) -> Result<Submission, JobError> {
        JobFile::parse(text)?.validate()
    }
}

impl Submission {
    pub fn to_file(&self) -> JobFile {
        JobFile {
            spec: self.spec.as_str().to_string(),
            priority: Some(self.priority),
            dependencies: self.dependencies.clone(),
            after: self.after.clone(),
            estimated_time: self.estimated_time.map(Span),
            timeout: self.timeout.map(Span),
            note: self.note.clone(),
            retry_of: self.retry_of,
            mail: self.mail,
        }
    }
}

/// The worker-written `[job]` section: identity, never taken from the submitted text.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    pub id: JobId,
    pub name: String,
    pub package: String,
    pub owner_uid: u32,
    pub owner: String,
    pub submitted_at: Timestamp,
    pub ticket: String,
}

/// The worker-written `[state]` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StateInfo {
    pub state: State,
    pub since: Timestamp,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
    /// Where the install runs when the Slurm executor ran it (`[state.slurm]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmState>,
    /// What Spack made of the spec before the build (`[state.concrete]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concrete: Option<ConcreteState>,
}

/// `[state.concrete]`: written by the concretization stage once `spack spec --json`
/// answered; the concrete spec itself is `concrete/NAME.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConcreteState {
    /// The root's DAG hash.
    pub hash: String,
    /// The root's concrete version.
    pub version: String,
    /// Nodes in the DAG, externals included.
    pub nodes: u32,
    /// The nodes not installed when it was concretized, as `NAME@VERSION/HASH7`,
    /// dependencies before the packages that need them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to_build: Vec<String>,
    pub at: Timestamp,
    /// How long the build should take: the sum over `to_build` of each package's
    /// estimate (this queue's history, else Spack's `install_times.json` of an installed
    /// version); nodes nobody has built here count nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate_s: Option<u64>,
    /// Each to-build package's estimate, in seconds, where one is known.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub estimates: std::collections::BTreeMap<String, u64>,
    /// Another job builds the same DAG: this one runs no install of its own and ends as
    /// that one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_as: Option<JobId>,
}

/// `[state.slurm]`: written before `sbatch` (no `job_id` yet: the job is being handed
/// to Slurm), then again with the Slurm job ID `sbatch` returned, and with the node once
/// the job runs. Its presence tells recovery to re-attach instead of requeueing.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SlurmState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Slurm's state of the job as the worker last saw it (`PENDING`, `RUNNING`,
    /// `SUSPENDED`...), and its reason while it waits (`Resources`, `PartitionTimeLimit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The `--time` the job was given, in seconds (to tell a time limit from another
    /// SIGTERM when only the exit file is left).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit_s: Option<u64>,
}

impl StateInfo {
    pub fn new(state: State, now: Timestamp) -> Self {
        StateInfo {
            state,
            since: now,
            attempts: 0,
            started_at: None,
            finished_at: None,
            exit_code: None,
            reason: None,
            log: None,
            argv: Vec::new(),
            slurm: None,
            concrete: None,
        }
    }
}

/// What a job record holds besides `[job]` and `[state]`.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// A submission that passed validation.
    Valid(Submission),
    /// A file rejected at intake: the original bytes, lossily decoded and cut.
    Rejected { original: String },
}

/// A job as recorded in a state directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub meta: Meta,
    pub state: StateInfo,
    pub body: Body,
}

impl Job {
    pub fn name(&self) -> JobName {
        JobName::new(self.meta.id, &self.meta.package)
    }

    pub fn submission(&self) -> Option<&Submission> {
        match &self.body {
            Body::Valid(s) => Some(s),
            Body::Rejected { .. } => None,
        }
    }

    /// The spec as submitted (for people to read), or a placeholder for rejected files.
    pub fn spec_text(&self) -> &str {
        match &self.body {
            Body::Valid(s) => s.spec.as_str(),
            Body::Rejected { .. } => "(rejected)",
        }
    }

    /// The canonical spec: the argument Spack gets and what duplicates are compared by
    /// ([`Spec::canonical`]); a placeholder for rejected files.
    pub fn spec_canonical(&self) -> &str {
        match &self.body {
            Body::Valid(s) => s.spec.canonical(),
            Body::Rejected { .. } => "(rejected)",
        }
    }

    pub fn priority(&self) -> Priority {
        self.submission().map(|s| s.priority).unwrap_or_default()
    }

    /// Serialize to the canonical TOML text.
    pub fn to_toml(&self) -> String {
        let mut t = toml::Table::new();
        match &self.body {
            Body::Valid(s) => {
                t = toml::Table::try_from(s.to_file()).expect("a job file serializes");
                t.insert(
                    "canonical_spec".into(),
                    toml::Value::String(s.spec.canonical().to_string()),
                );
            }
            Body::Rejected { original } => {
                t.insert("original".into(), toml::Value::String(original.clone()));
            }
        }
        t.insert(
            "job".into(),
            toml::Value::try_from(&self.meta).expect("meta serializes"),
        );
        t.insert(
            "state".into(),
            toml::Value::try_from(&self.state).expect("state serializes"),
        );
        toml::to_string(&t).expect("a table serializes")
    }

    /// Parse a canonical record written by the worker.
    pub fn from_toml(text: &str) -> Result<Job, JobError> {
        let r: RecordRepr =
            toml::from_str(text).map_err(|e| JobError::Syntax(toml_message(&e, text)))?;
        let body = if r.state.state == State::Rejected {
            Body::Rejected {
                original: r.original.unwrap_or_default(),
            }
        } else {
            let spec = r
                .spec
                .ok_or_else(|| JobError::Invalid("the record has no spec".into()))?;
            let file = JobFile {
                spec: spec.clone(),
                priority: r.priority,
                dependencies: r.dependencies,
                after: r.after,
                estimated_time: r.estimated_time,
                timeout: r.timeout,
                note: r.note,
                retry_of: r.retry_of,
                mail: r.mail,
            };
            let mut sub = file.validate()?;
            // What intake checked is what runs, even if the grammar changed since; a
            // record written before `canonical_spec` existed is checked again instead.
            if let Some(c) = r.canonical_spec {
                sub.spec = Spec::from_record(&spec, &c)
                    .map_err(|e| JobError::Invalid(format!("canonical_spec: {e}")))?;
                if sub.spec.package() != r.job.package {
                    return Err(JobError::Invalid(format!(
                        "canonical_spec installs `{}` but the job is `{}`",
                        sub.spec.package(),
                        r.job.package
                    )));
                }
            }
            Body::Valid(sub)
        };
        Ok(Job {
            meta: r.job,
            state: r.state,
            body,
        })
    }
}

/// A record as written, read in one pass (`status --all` reads every record of the
/// spool). Its top-level keys are [`JobFile`]'s, which the worker wrote, plus
/// `canonical_spec` (what Spack runs) for valid jobs and `original` for rejected files;
/// `record_round_trips` checks the lists agree.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordRepr {
    spec: Option<String>,
    canonical_spec: Option<String>,
    priority: Option<Priority>,
    #[serde(default)]
    dependencies: Vec<String>,
    #[serde(default, deserialize_with = "id::deserialize_refs")]
    after: Vec<JobId>,
    estimated_time: Option<Span>,
    timeout: Option<Span>,
    note: Option<String>,
    #[serde(default, deserialize_with = "id::deserialize_opt_ref")]
    retry_of: Option<JobId>,
    mail: Option<Mail>,
    original: Option<String>,
    job: Meta,
    state: StateInfo,
}

/// A request file (`*.request.toml`): ask the worker to act on a job or on the queue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RequestFile {
    pub request: RequestKind,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "id::deserialize_opt_ref"
    )]
    pub job: Option<JobId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RequestKind {
    Cancel,
    Priority,
    Pause,
    Resume,
}

/// A request that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Cancel(JobId),
    Priority(JobId, Priority),
    Pause(Option<String>),
    Resume,
}

impl RequestFile {
    pub fn parse_and_validate(text: &str) -> Result<Request, JobError> {
        let f: RequestFile =
            toml::from_str(text).map_err(|e| JobError::Syntax(toml_message(&e, text)))?;
        let need_job = || {
            f.job.ok_or_else(|| {
                JobError::Invalid(format!("a `{}` request needs `job`", f.request.as_str()))
            })
        };
        if let Some(r) = &f.reason
            && (r.len() > MAX_NOTE_LEN || !crate::text::is_printable_line(r))
        {
            return Err(JobError::Invalid(format!(
                "reason must be one printable line of at most {MAX_NOTE_LEN} bytes (no newline, \
                 tab, control or bidi characters)"
            )));
        }
        Ok(match f.request {
            RequestKind::Cancel => Request::Cancel(need_job()?),
            RequestKind::Priority => Request::Priority(
                need_job()?,
                f.priority.ok_or_else(|| {
                    JobError::Invalid("a `priority` request needs `priority`".into())
                })?,
            ),
            RequestKind::Pause => Request::Pause(f.reason.clone()),
            RequestKind::Resume => Request::Resume,
        })
    }
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Cancel => "cancel",
            RequestKind::Priority => "priority",
            RequestKind::Pause => "pause",
            RequestKind::Resume => "resume",
        }
    }
}

impl Request {
    pub fn to_file(&self) -> RequestFile {
        let (request, job, priority, reason) = match self {
            Request::Cancel(j) => (RequestKind::Cancel, Some(*j), None, None),
            Request::Priority(j, p) => (RequestKind::Priority, Some(*j), Some(*p), None),
            Request::Pause(r) => (RequestKind::Pause, None, None, r.clone()),
            Request::Resume => (RequestKind::Resume, None, None, None),
        };
        RequestFile {
            request,
            job,
            priority,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let text = r#"
spec = "hdf5@1.14 +mpi ^openmpi"
priority = "high"
dependencies = ["zlib", "openmpi"]
after = [41, "000040"]
estimated_time = "45m"
timeout = 10800
note = "for the climate group"
"#;
        let s = JobFile::parse_and_validate(text).unwrap();
        assert_eq!(s.spec.package(), "hdf5");
        assert_eq!(s.priority, Priority::High);
        assert_eq!(s.after, vec![JobId(40), JobId(41)]);
        assert_eq!(s.estimated_time, Some(Duration::from_secs(45 * 60)));
        assert_eq!(s.timeout, Some(Duration::from_secs(3 * 3600)));
    }

    #[test]
    fn unknown_keys_and_worker_sections_are_errors() {
        let e = JobFile::parse("spec = \"zlib\"\npriorty = \"high\"\n").unwrap_err();
        assert!(e.to_string().contains("priorty"), "{e}");
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = JobFile::parse("spec = \"zlib\"\n[job]\nowner = \"alice\"\n").unwrap_err();
        assert!(e.to_string().contains("job"), "{e}");
    }

    #[test]
    fn record_round_trips() {
        let sub =
            JobFile::parse_and_validate("spec = \"zlib@1.3\"\ndependencies=[\"cmake\"]\n").unwrap();
        let job = Job {
            meta: Meta {
                id: JobId(7),
                name: "000007-zlib".into(),
                package: "zlib".into(),
                owner_uid: 1000,
                owner: "alice".into(),
                submitted_at: Timestamp(1_700_000_000),
                ticket: "t1.2.3.toml".into(),
            },
            state: StateInfo::new(State::Pending, Timestamp(1_700_000_001)),
            body: Body::Valid(sub),
        };
        let text = job.to_toml();
        assert!(text.starts_with("spec = \"zlib@1.3\""), "{text}");
        assert_eq!(Job::from_toml(&text).unwrap(), job);
        let rejected = Job {
            state: StateInfo::new(State::Rejected, Timestamp(5)),
            body: Body::Rejected {
                original: "spec = \"-rf\"\n".into(),
            },
            ..job
        };
        assert_eq!(Job::from_toml(&rejected.to_toml()).unwrap(), rejected);
    }

    /// A record as the worker wrote it before `canonical_spec` existed (a real one, from
    /// `tests/data/`) still loads, and its spec is checked and rendered anew.
    #[test]
    fn a_record_without_canonical_spec_still_loads() {
        let text = include_str!("../../tests/data/record-before-canonical-spec.toml");
        let job = Job::from_toml(text).unwrap();
        assert_eq!(job.spec_text(), "hdf5@1.14 + mpi ^openmpi");
        assert_eq!(job.spec_canonical(), "hdf5@1.14 +mpi ^openmpi");
        assert_eq!(job.meta.owner, "alice");
        assert_eq!(job.priority(), Priority::High);
        // Written again, it gains the field, and reads back the same.
        let again = job.to_toml();
        assert!(
            again.contains("canonical_spec = \"hdf5@1.14 +mpi ^openmpi\""),
            "{again}"
        );
        assert_eq!(Job::from_toml(&again).unwrap(), job);
    }

    /// `canonical_spec` is what runs: a record whose stored form is not one intake
    /// renders (hand-edited, or written by another tool) does not load.
    #[test]
    fn a_record_with_a_bad_canonical_spec_does_not_load() {
        let text = include_str!("../../tests/data/record-before-canonical-spec.toml");
        for bad in ["hdf5 +mpi  ^openmpi", "hdf5 cflags=-O3", "zlib"] {
            let forged = text.replacen(
                "note = ",
                &format!("canonical_spec = \"{bad}\"\nnote = "),
                1,
            );
            let e = Job::from_toml(&forged).map(|j| j.spec_canonical().to_string());
            assert!(
                matches!(&e, Err(JobError::Invalid(m)) if m.starts_with("canonical_spec")),
                "{bad:?}: {e:?}"
            );
        }
    }

    #[test]
    fn requests_validate() {
        assert_eq!(
            RequestFile::parse_and_validate("request = \"cancel\"\njob = \"000042-hdf5\"\n"),
            Ok(Request::Cancel(JobId(42)))
        );
        assert!(RequestFile::parse_and_validate("request = \"priority\"\njob = 4\n").is_err());
        assert!(RequestFile::parse_and_validate("request = \"explode\"\n").is_err());
        for bad in ["a\\nb", "x\\u202ey", "\\u001b[2J"] {
            let text = format!("request = \"pause\"\nreason = \"{bad}\"\n");
            assert!(RequestFile::parse_and_validate(&text).is_err(), "{text}");
        }
        assert!(
            RequestFile::parse_and_validate("request = \"pause\"\nreason = \"disk swap\"\n")
                .is_ok()
        );
    }
}
