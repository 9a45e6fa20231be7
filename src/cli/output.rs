//! What commands show: one view of a job for tables and for `--json` (the JSON shape is
//! documented in the README and kept stable; people see it through
//! [`JobView::printable`], with user text escaped), Spack's progress read from a log, and
//! the table style (colour only on a terminal, never with NO_COLOR).

use crate::job::{Body, Job, JobFile, State};
use crate::spool::{Dir, Spool};
use crate::text::printable;
use crate::time::Timestamp;
use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;
use std::io::IsTerminal;

pub use crate::executor::progress::{Progress, parse_progress, progress};

/// One job, as `status --json` and `show --json` print it.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub id: Option<u64>,
    pub name: String,
    pub state: String,
    pub spec: String,
    pub priority: String,
    pub owner: String,
    pub owner_uid: Option<u32>,
    pub submitted_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Seconds waited before starting (or so far).
    pub waited_s: Option<u64>,
    /// Seconds running (or so far).
    pub ran_s: Option<u64>,
    pub attempts: u32,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub dependencies: Vec<String>,
    pub after: Vec<u64>,
    pub estimated_time_s: Option<u64>,
    pub timeout_s: Option<u64>,
    pub note: Option<String>,
    pub retry_of: Option<u64>,
    pub progress: Option<Progress>,
    pub argv: Vec<String>,
    pub file: String,
    pub log: Option<String>,
    pub ticket: Option<String>,
    /// `[state.slurm]`: the Slurm job ID, partition and node, when Slurm ran it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slurm: Option<crate::job::SlurmState>,
    /// `[state.concrete]`: what Spack made of the spec before the build.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concrete: Option<crate::job::ConcreteState>,
}

impl JobView {
    pub fn of(spool: &Spool, dir: Dir, job: &Job, now: Timestamp) -> JobView {
        let has_log = spool.log_path(&job.name()).exists();
        JobView::with_log(spool, dir, job, now, has_log)
    }

    /// [`JobView::of`], told whether the job has a log (`status --all` lists `logs/`
    /// once instead of looking for each job's).
    pub fn with_log(spool: &Spool, dir: Dir, job: &Job, now: Timestamp, has_log: bool) -> JobView {
        let name = job.name();
        let st = &job.state;
        // The directory is the truth; a rejected file says so itself.
        let state = match (dir.state(), st.state) {
            (Some(State::Failed), State::Rejected) => State::Rejected,
            (Some(s), _) => s,
            (None, s) => s,
        };
        let sub = match &job.body {
            Body::Valid(s) => Some(s),
            Body::Rejected { .. } => None,
        };
        // A job Slurm still has queued has not started running: it is still waiting.
        let queued_in_slurm = st.finished_at.is_none()
            && st
                .slurm
                .as_ref()
                .is_some_and(|s| s.state.as_deref() == Some("PENDING"));
        let started_at = st.started_at.filter(|_| !queued_in_slurm);
        let end_wait = started_at.or(st.finished_at).unwrap_or(now);
        let log = spool.log_path(&name);
        JobView {
            id: Some(job.meta.id.0),
            name: name.to_string(),
            state: state.to_string(),
            spec: job.spec_text().to_string(),
            priority: job.priority().to_string(),
            owner: job.meta.owner.clone(),
            owner_uid: Some(job.meta.owner_uid),
            submitted_at: Some(job.meta.submitted_at.to_string()),
            started_at: st.started_at.map(|t| t.to_string()),
            finished_at: st.finished_at.map(|t| t.to_string()),
            waited_s: Some(job.meta.submitted_at.until(end_wait).as_secs()),
            ran_s: started_at.map(|s| s.until(st.finished_at.unwrap_or(now)).as_secs()),
            attempts: st.attempts,
            exit_code: st.exit_code,
            reason: st.reason.clone(),
            dependencies: sub.map(|s| s.dependencies.clone()).unwrap_or_default(),
            after: sub
                .map(|s| s.after.iter().map(|a| a.0).collect())
                .unwrap_or_default(),
            estimated_time_s: sub.and_then(|s| s.estimated_time).map(|d| d.as_secs()),
            timeout_s: sub.and_then(|s| s.timeout).map(|d| d.as_secs()),
            note: sub.and_then(|s| s.note.clone()),
            retry_of: sub.and_then(|s| s.retry_of).map(|r| r.0),
            progress: if state == State::Running {
                progress(&log)
            } else {
                None
            },
            argv: st.argv.clone(),
            file: spool.job_path(dir, &name).display().to_string(),
            log: has_log.then(|| log.display().to_string()),
            ticket: Some(job.meta.ticket.clone()),
            slurm: st.slurm.clone(),
            concrete: st.concrete.clone(),
        }
    }

    /// This view for people's eyes: every string that came from a user (or may quote
    /// one: reasons, file names, the argv) passed through [`printable`]. Tables and plain
    /// output print this; `--json` prints the exact strings.
    pub fn printable(&self) -> JobView {
        let p = |s: &String| printable(s).into_owned();
        let po = |s: &Option<String>| s.as_ref().map(p);
        JobView {
            name: p(&self.name),
            state: p(&self.state),
            spec: p(&self.spec),
            priority: p(&self.priority),
            owner: p(&self.owner),
            reason: po(&self.reason),
            dependencies: self.dependencies.iter().map(p).collect(),
            note: po(&self.note),
            argv: self.argv.iter().map(p).collect(),
            file: p(&self.file),
            log: po(&self.log),
            ticket: po(&self.ticket),
            ..self.clone()
        }
    }

    /// A file still in `incoming/`, not yet taken by the worker.
    pub fn incoming(spool: &Spool, ticket: &str) -> JobView {
        let path = spool.dir(Dir::Incoming).join(ticket);
        let meta = std::fs::symlink_metadata(&path).ok();
        let parsed =
            crate::spool::store::read_incoming(spool, ticket).and_then(|t| JobFile::parse(&t).ok());
        use std::os::unix::fs::MetadataExt;
        JobView {
            id: None,
            name: ticket.to_string(),
            state: "incoming".into(),
            spec: parsed
                .as_ref()
                .map(|p| p.spec.clone())
                .unwrap_or_else(|| "?".into()),
            priority: parsed
                .as_ref()
                .and_then(|p| p.priority)
                .unwrap_or_default()
                .to_string(),
            owner: meta
                .as_ref()
                .map(|m| crate::identity::user_name(m.uid()))
                .unwrap_or_default(),
            owner_uid: meta.as_ref().map(|m| m.uid()),
            submitted_at: meta
                .as_ref()
                .and_then(|m| m.modified().ok())
                .map(|t| Timestamp::from_system(t).to_string()),
            started_at: None,
            finished_at: None,
            waited_s: None,
            ran_s: None,
            attempts: 0,
            exit_code: None,
            reason: None,
            dependencies: parsed
                .as_ref()
                .map(|p| p.dependencies.clone())
                .unwrap_or_default(),
            after: parsed
                .as_ref()
                .map(|p| p.after.iter().map(|a| a.0).collect())
                .unwrap_or_default(),
            estimated_time_s: None,
            timeout_s: None,
            note: parsed.as_ref().and_then(|p| p.note.clone()),
            retry_of: None,
            progress: None,
            argv: Vec::new(),
            file: path.display().to_string(),
            log: None,
            ticket: Some(ticket.to_string()),
            slurm: None,
            concrete: None,
        }
    }
}

impl JobView {
    /// What the queue knows of a pending job's build: `same as 000042`, or
    /// `to build 3 of 17`; nothing before it is concretized.
    pub fn build_text(&self) -> Option<String> {
        let c = self.concrete.as_ref()?;
        Some(match c.same_as {
            Some(other) => format!("same as {other}"),
            None => format!("to build {} of {}", c.to_build.len(), c.nodes),
        })
    }
}

/// Should output be coloured: stdout is a terminal and NO_COLOR is unset.
pub fn use_color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A table that fits the terminal: on one, long cells wrap at its width (with or without
/// colour); elsewhere (a pipe, a file) rows are as long as their cells.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().map(|h| h.to_string()));
    // The terminal's width, read before colour is turned off: `force_no_tty` also stops
    // comfy-table from asking the terminal.
    let width = std::io::stdout().is_terminal().then(|| t.width()).flatten();
    if !use_color() {
        t.force_no_tty();
    }
    if let Some(w) = width {
        t.set_width(w);
    }
    t
}

/// The table as text, without the spaces comfy-table pads the last column with (a row
/// would otherwise be as wide as the widest one).
pub fn render(t: &Table) -> String {
    t.lines()
        .map(|l| l.trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The colour of a state in tables.
pub fn state_cell(state: &str) -> comfy_table::Cell {
    use comfy_table::{Cell, Color};
    let c = Cell::new(state);
    if !use_color() {
        return c;
    }
    match state {
        "done" => c.fg(Color::Green),
        "failed" | "rejected" => c.fg(Color::Red),
        "running" => c.fg(Color::Cyan),
        "cancelled" => c.fg(Color::DarkGrey),
        _ => c,
    }
}
