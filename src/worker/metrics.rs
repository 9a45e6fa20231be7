//! `metrics.prom`: the queue in Prometheus's text exposition format, for node_exporter's
//! textfile collector (`--collector.textfile.directory`). The worker rewrites it with
//! `worker.toml` (every heartbeat, and at most every 100 ms as jobs start and end),
//! temp file + rename in `metrics_dir`, so a scrape never reads half a file.
//!
//! Finished-job counters survive restarts: at start they are the number of records in
//! `done/`, `failed/` and `cancelled/` (the spool is the truth), then the worker counts.
//! A cleanup that removes old records lowers them at the next start, which Prometheus
//! reads as a counter reset (`rate()` and `increase()` handle it). The histograms cover
//! the installs since the worker started. Install durations are labelled by package for
//! the first [`MAX_PACKAGES`] packages seen, then `other`, so a site with thousands of
//! packages does not make thousands of series.

use crate::job::id::REJECTED_PACKAGE;
use crate::job::{Job, State};
use crate::spool::status::WorkerState;
use crate::spool::{Dir, Spool, store};
use crate::time::Timestamp;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

pub const FILE: &str = "metrics.prom";
/// How many packages get an install-duration histogram of their own.
pub const MAX_PACKAGES: usize = 50;
const INSTALL_BUCKETS: [f64; 11] = [
    10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0,
];
const WAIT_BUCKETS: [f64; 10] = [
    1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 43200.0, 86400.0, 259200.0,
];
const CONCRETIZE_BUCKETS: [f64; 8] = [1.0, 2.0, 5.0, 10.0, 20.0, 60.0, 300.0, 600.0];
const FINAL: [State; 4] = [
    State::Done,
    State::Failed,
    State::Cancelled,
    State::Rejected,
];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        for (b, c) in self.bounds.iter().zip(&mut self.counts) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    /// The `_bucket`, `_sum` and `_count` lines, with `labels` (`key="v",` or empty).
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {}", self.count);
        let l = labels.trim_end_matches(',');
        let l = if l.is_empty() {
            String::new()
        } else {
            format!("{{{l}}}")
        };
        let _ = writeln!(out, "{name}_sum{l} {}", self.sum);
        let _ = writeln!(out, "{name}_count{l} {}", self.count);
    }
}

/// What the worker knows at the moment of a write.
pub struct Snapshot {
    pub state: WorkerState,
    pub pending: usize,
    pub running: usize,
    pub slots: usize,
    pub started_at: Timestamp,
    pub heartbeat: Timestamp,
    /// The CPU budget local installs share (`cpus`), when there is one.
    pub cpus: Option<usize>,
    /// A memory or disk guard holds back installs now.
    pub held_by_guard: bool,
    /// `spack spec` runs now (the concretization stage's lanes in use).
    pub concretizing: usize,
    /// Slurm refused the last job handed to it, and has taken none since.
    pub slurm_refusing: bool,
}

#[derive(Debug)]
pub struct Metrics {
    finished: BTreeMap<State, u64>,
    install: BTreeMap<String, Histogram>,
    wait: Histogram,
    /// How long Spack took to answer the concretization stage.
    concretize: Histogram,
    /// The last write failed: say so once, not at every heartbeat.
    failing: bool,
}

impl Metrics {
    /// Counters from the records in the finished directories.
    pub fn load(spool: &Spool) -> crate::error::Result<Metrics> {
        let mut finished: BTreeMap<State, u64> = FINAL.iter().map(|s| (*s, 0)).collect();
        for (dir, state) in [
            (Dir::Done, State::Done),
            (Dir::Failed, State::Failed),
            (Dir::Cancelled, State::Cancelled),
        ] {
            for name in store::list(spool, dir)? {
                let s = if name.package == REJECTED_PACKAGE {
                    State::Rejected
                } else {
                    state
                };
                *finished.entry(s).or_default() += 1;
            }
        }
        Ok(Metrics {
            finished,
            install: BTreeMap::new(),
            wait: Histogram::new(&WAIT_BUCKETS),
            concretize: Histogram::new(&CONCRETIZE_BUCKETS),
            failing: false,
        })
    }

    /// A job left the queue for good.
    pub fn finished(&mut self, job: &Job) {
        *self.finished.entry(job.state.state).or_default() += 1;
        if job.state.state == State::Done
            && let (Some(s), Some(f)) = (job.state.started_at, job.state.finished_at)
        {
            let key = if self.install.contains_key(&job.meta.package)
                || self.install.len() < MAX_PACKAGES
            {
                job.meta.package.clone()
            } else {
                "other".to_string()
            };
            self.install
                .entry(key)
                .or_insert_with(|| Histogram::new(&INSTALL_BUCKETS))
                .observe(s.until(f).as_secs() as f64);
        }
    }

    /// Spack answered the concretization stage about a job, after `took`.
    pub fn concretized(&mut self, took: std::time::Duration) {
        self.concretize.observe(took.as_secs_f64());
    }

    /// A job started: how long it waited since its submission.
    pub fn started(&mut self, job: &Job, now: Timestamp) {
        self.wait
            .observe(job.meta.submitted_at.until(now).as_secs() as f64);
    }

    pub fn render(&self, s: &Snapshot) -> String {
        let mut o = String::new();
        let p = "spack_installer";
        let _ = writeln!(
            o,
            "# HELP {p}_jobs Jobs by state: the queue now; finished ones since the spool began, as of the worker's start plus what it finished since.\n# TYPE {p}_jobs gauge"
        );
        let _ = writeln!(o, "{p}_jobs{{state=\"pending\"}} {}", s.pending);
        let _ = writeln!(o, "{p}_jobs{{state=\"running\"}} {}", s.running);
        for (st, n) in &self.finished {
            let _ = writeln!(o, "{p}_jobs{{state=\"{st}\"}} {n}");
        }
        let _ = writeln!(
            o,
            "# HELP {p}_jobs_finished_total Jobs that ended, by final state (from the spool at the worker's start, then counted).\n# TYPE {p}_jobs_finished_total counter"
        );
        for (st, n) in &self.finished {
            let _ = writeln!(o, "{p}_jobs_finished_total{{state=\"{st}\"}} {n}");
        }
        let _ = writeln!(
            o,
            "# HELP {p}_install_duration_seconds Successful installs by package (the first {MAX_PACKAGES} packages since the worker started, then \"other\").\n# TYPE {p}_install_duration_seconds histogram"
        );
        for (pkg, h) in &self.install {
            h.render(
                &mut o,
                &format!("{p}_install_duration_seconds"),
                &format!("package=\"{pkg}\","),
            );
        }
        let _ = writeln!(
            o,
            "# HELP {p}_queue_wait_seconds From submission to start, for jobs started since the worker started.\n# TYPE {p}_queue_wait_seconds histogram"
        );
        self.wait
            .render(&mut o, &format!("{p}_queue_wait_seconds"), "");
        let _ = writeln!(
            o,
            "# HELP {p}_concretize_duration_seconds How long `spack spec` and `spack find` took for the concretization stage, since the worker started.\n# TYPE {p}_concretize_duration_seconds histogram"
        );
        self.concretize
            .render(&mut o, &format!("{p}_concretize_duration_seconds"), "");
        let up = !matches!(s.state, WorkerState::Stopped);
        let gauges = [
            (
                "worker_up",
                "1 while the worker runs; 0 once it has stopped.",
                u64::from(up),
            ),
            (
                "worker_paused",
                "1 while the queue is paused (`spack-installer pause`).",
                u64::from(s.state == WorkerState::Paused),
            ),
            (
                "worker_draining",
                "1 while the worker stops, waiting for running installs.",
                u64::from(s.state == WorkerState::Draining),
            ),
            (
                "worker_start_time_seconds",
                "When the worker started, Unix time.",
                s.started_at.0,
            ),
            (
                "worker_heartbeat_timestamp_seconds",
                "The worker's last heartbeat, Unix time.",
                s.heartbeat.0,
            ),
            (
                "slots",
                "How many installs may run at once.",
                s.slots as u64,
            ),
            (
                "slots_in_use",
                "How many installs run now.",
                s.running as u64,
            ),
            (
                "cpus",
                "The CPU budget local installs share (0: none, as with Slurm or a dry run).",
                s.cpus.unwrap_or(0) as u64,
            ),
            (
                "held_by_guard",
                "1 while a memory or disk guard keeps new installs from starting.",
                u64::from(s.held_by_guard),
            ),
            (
                "concretizing",
                "How many `spack spec` run now for the concretization stage.",
                s.concretizing as u64,
            ),
            (
                "slurm_refusing",
                "1 while Slurm refuses our jobs (its last sbatch failed; they wait in pending/ with Slurm's message).",
                u64::from(s.slurm_refusing),
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(
                o,
                "# HELP {p}_{name} {help}\n# TYPE {p}_{name} gauge\n{p}_{name} {v}"
            );
        }
        o
    }

    /// Replace `dir/metrics.prom` (temp + rename in `dir`; world-readable, so a
    /// node_exporter running as another user can read it).
    pub fn write(&mut self, dir: &Path, s: &Snapshot) {
        let text = self.render(s);
        let result = (|| -> std::io::Result<()> {
            let mut tmp = tempfile::Builder::new()
                .prefix(".metrics.prom.")
                .tempfile_in(dir)?;
            tmp.write_all(text.as_bytes())?;
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))?;
            tmp.persist(dir.join(FILE)).map_err(|e| e.error)?;
            Ok(())
        })();
        match result {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                tracing::warn!(
                    "cannot write {}: {e}; check `metrics_dir` in the config (the worker user must be able to write there)",
                    dir.join(FILE).display()
                );
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        let mut h = Histogram::new(&WAIT_BUCKETS);
        h.observe(5.0);
        h.observe(100.0);
        let mut o = String::new();
        h.render(&mut o, "w", "");
        assert!(o.contains("w_bucket{le=\"1\"} 0\n"), "{o}");
        assert!(o.contains("w_bucket{le=\"10\"} 1\n"), "{o}");
        assert!(o.contains("w_bucket{le=\"300\"} 2\n"), "{o}");
        assert!(
            o.contains("w_bucket{le=\"+Inf\"} 2\nw_sum 105\nw_count 2\n"),
            "{o}"
        );
    }
}
