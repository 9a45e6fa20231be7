//! The intake stage: what comes into the queue. It scans `incoming/`, claims each entry
//! into `tmp/` (owners taking turns, a batch at a time), reserves job IDs, judges each
//! claimed job file (its owner, its text, the queue's limits and cycles) and writes its
//! record, pending or rejected, then the receipt; request files are claimed here and
//! handed to [`requests`](super::requests). It also keeps the in-memory pending set in
//! line with `pending/` and prunes old receipts. It never starts or ends an install.

use super::{SETTLE, Worker};
use crate::error::{Error, Result};
use crate::job::{Job, JobFile, JobId, JobName, State};
use crate::queue::FinishedIndex;
use crate::scheduler::{PendingJob, Readiness};
use crate::spool::intake::Verdict;
use crate::spool::{COUNTER_FILE, Dir, Spool, claim, intake, store, transition};
use crate::time::Timestamp;
use crate::{identity, scheduler};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

/// How many `incoming/` entries one pass of intake takes before the loop plans and starts
/// jobs again; the rest wait for the next pass, at once. Owners take turns within a pass
/// ([`fair_order`]).
const INTAKE_BATCH: usize = 64;

/// The `incoming/` entries to take, owners taking turns: the first entry of each owner,
/// then the second of each, and so on (by name within one owner). Entries gone already
/// are left out. With [`INTAKE_BATCH`], a flood of files from one member costs another
/// member's job at most one batch of waiting, not the whole flood.
fn fair_order(spool: &Spool, names: Vec<String>) -> Vec<String> {
    let dir = spool.dir(Dir::Incoming);
    let mut by_owner: BTreeMap<u32, VecDeque<String>> = BTreeMap::new();
    let mut owners: Vec<u32> = Vec::new();
    for n in names {
        let Ok(m) = std::fs::symlink_metadata(dir.join(&n)) else {
            continue;
        };
        let q = by_owner.entry(m.uid()).or_default();
        if q.is_empty() {
            owners.push(m.uid());
        }
        q.push_back(n);
    }
    let mut out = Vec::new();
    loop {
        let before = out.len();
        for uid in &owners {
            if let Some(n) = by_owner.get_mut(uid).and_then(|q| q.pop_front()) {
                out.push(n);
            }
        }
        if out.len() == before {
            return out;
        }
    }
}

/// An I/O error that concerns the whole file system (full, read-only, failing), as
/// opposed to one entry: the worker backs off instead of skipping.
fn systemic(e: &Error) -> bool {
    use std::io::ErrorKind::*;
    match e {
        Error::Io { source, .. } => {
            matches!(
                source.kind(),
                StorageFull | QuotaExceeded | ReadOnlyFilesystem
            ) || source.raw_os_error() == Some(nix::libc::EIO)
        }
        _ => true,
    }
}

impl Worker {
    /// Claims in `tmp/`, as the disk has them, after an I/O error: one whose record
    /// exists gets its receipt and is removed (intake's last steps); one without a record
    /// is taken in again. A half-failed batch is thereby finished from the directory, not
    /// from a list in memory that may have missed some.
    pub(super) fn retry_claims(&mut self) {
        let claims = match intake::leftover_claims(&self.spool) {
            Ok(c) => c,
            Err(e) => return self.io_error(e),
        };
        for (id, ticket) in claims {
            if self.stuck_claims.iter().any(|(i, _)| *i == id) {
                continue;
            }
            match store::locate(&self.spool, id) {
                Ok(Some((dir, name))) => {
                    let done = store::read(&self.spool, dir, &name)
                        .and_then(|job| intake::finish(&self.spool, &job));
                    if let Err(e) = done {
                        return self.io_error(e);
                    }
                }
                Ok(None) => self.stuck_claims.push((id, ticket)),
                Err(e) => return self.io_error(e),
            }
        }
    }

    /// Receipts are a courtesy for `submit`: remove those older than a day (spool-layout.md,
    /// *Receipts*), so `receipts/` does not grow by one file per submission for ever. The
    /// temp files of killed submitters in `incoming/` go after a day too.
    pub(super) fn prune_receipts(&mut self) {
        self.last_prune = Instant::now();
        match intake::old_receipts(&self.spool) {
            Ok(old) => {
                for path in old {
                    let _ = std::fs::remove_file(path);
                }
            }
            Err(e) => tracing::warn!("receipts not pruned: {e}"),
        }
        match intake::stale_temp_files(&self.spool) {
            Ok(old) => {
                for path in old {
                    match std::fs::remove_file(&path) {
                        Ok(()) => tracing::info!(
                            "removed {}: a submitter's temp file, untouched for a day",
                            path.display()
                        ),
                        Err(e) => tracing::warn!("cannot remove {}: {e}", path.display()),
                    }
                }
            }
            Err(e) => tracing::warn!("stale temp files not removed: {e}"),
        }
    }

    pub(super) fn load_finished(&mut self) -> Result<()> {
        self.finished = FinishedIndex::load(&self.spool)?;
        Ok(())
    }

    /// Bring the in-memory pending set in line with `pending/` (an admin may add or
    /// remove files by hand). Only new or changed files are read.
    pub(super) fn reload_pending(&mut self) -> Result<()> {
        // Hand edits, a config reload, the paused file, aging: a rescan re-plans.
        self.changed();
        let names = store::list(&self.spool, Dir::Pending)?;
        let present: HashSet<JobId> = names.iter().map(|n| n.id).collect();
        self.pending.retain(|id, _| present.contains(id));
        self.pending_mtime.retain(|id, _| present.contains(id));
        for name in names {
            let path = self.spool.job_path(Dir::Pending, &name);
            let mtime = std::fs::metadata(&path)
                .map(|m| m.mtime_nsec() + m.mtime() * 1_000_000_000)
                .unwrap_or(0);
            if self.pending_mtime.get(&name.id) == Some(&mtime) {
                continue;
            }
            match store::read_path(&path) {
                Ok(job) => {
                    self.pending.insert(name.id, job);
                    self.pending_mtime.insert(name.id, mtime);
                }
                Err(e) => {
                    if self.unreadable.insert(name.to_string()) {
                        tracing::error!("skipping {}: {e}", path.display());
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn intake_scan(&mut self, settle: Option<Duration>) {
        match intake::candidates(&self.spool, settle) {
            Ok((names, unsettled)) => {
                // Files still settling get another look once they have (their own
                // close event may have been among lost ones).
                self.settle_scan_at = unsettled.then(|| Instant::now() + SETTLE);
                self.intake(names)
            }
            Err(e) => self.io_error(e),
        }
    }

    pub(super) fn intake(&mut self, mut names: Vec<String>) {
        names.append(&mut self.intake_backlog);
        names.sort();
        names.dedup();
        let mut names = fair_order(&self.spool, names);
        if names.len() > INTAKE_BATCH {
            self.intake_backlog = names.split_off(INTAKE_BATCH);
        }
        let (requests, jobs): (Vec<String>, Vec<String>) =
            names.into_iter().partition(|n| store::is_request_ticket(n));
        if !jobs.is_empty()
            && let Err(e) = self.reserve_ids(jobs.len() as u64)
        {
            return self.io_error(e);
        }
        let mut claims = Vec::new();
        for ticket in jobs {
            let id = JobId(self.next_id);
            match transition::claim(&self.spool, &ticket, &claim::claim_name(id, &ticket), false) {
                Ok(()) => {
                    self.next_id += 1;
                    claims.push((id, ticket));
                }
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) if systemic(&e) => {
                    self.io_error(e);
                    break;
                }
                // One entry that cannot be claimed (a name or a directory a member made
                // unmovable) must not hold up the files behind it.
                Err(e) => self.skip_entry(&ticket, e),
            }
        }
        if !claims.is_empty() {
            // One fsync of each directory for the whole batch, before any record exists.
            match transition::sync_claims(&self.spool) {
                Ok(()) => self.process_claims(claims),
                Err(e) => {
                    self.stuck_claims.extend(claims);
                    return self.io_error(e);
                }
            }
        }
        for ticket in requests {
            let claim = claim::request_claim_name(&ticket);
            match transition::claim(&self.spool, &ticket, &claim, true) {
                Ok(()) => self.process_request(&ticket),
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) if systemic(&e) => return self.io_error(e),
                Err(e) => self.skip_entry(&ticket, e),
            }
        }
    }

    /// Log (once per name) an `incoming/` entry that cannot be taken, and go on.
    fn skip_entry(&mut self, ticket: &str, e: Error) {
        if self.unreadable.insert(format!("incoming/{ticket}")) {
            tracing::warn!(ticket, "cannot take this entry, skipping it: {e}");
        }
    }

    /// Make sure `counter` is past the IDs about to be used (intake step 1).
    fn reserve_ids(&mut self, k: u64) -> Result<()> {
        if self.next_id + k <= self.reserved_until {
            return Ok(());
        }
        let until = self.next_id + k;
        let counter = self.spool.file(COUNTER_FILE);
        transition::replace(&self.spool, &counter, format!("{until}\n").as_bytes(), true)?;
        self.reserved_until = until;
        Ok(())
    }

    /// Intake steps 3–6 for claimed job files, as one batch: judge and write each record,
    /// fsync each directory once, then write the receipts and remove the claims. A claim
    /// that meets an I/O error waits in `stuck_claims` for the retry after the backoff.
    pub(super) fn process_claims(&mut self, claims: Vec<(JobId, String)>) {
        let mut written: Vec<Job> = Vec::new();
        let mut dirs: Vec<Dir> = Vec::new();
        let mut rest = claims.into_iter();
        while let Some((id, ticket)) = rest.next() {
            let now = Timestamp::now();
            let (owner, verdict) = self.judge(id, &ticket, now);
            let job = intake::build(id, &ticket, owner, verdict, now);
            if let Err(e) = intake::write_record(&self.spool, &job, false) {
                self.stuck_claims.push((id, ticket));
                self.stuck_claims.extend(rest);
                self.io_error(e);
                break;
            }
            let dir = job.state.state.dir();
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
            let name = job.name();
            match job.state.state {
                State::Pending => {
                    tracing::info!(job_id = id.0, job = %name, owner = %job.meta.owner, spec = %job.spec_text(), "queued");
                    self.pending.insert(id, job.clone());
                    self.changed();
                }
                _ => {
                    tracing::warn!(job_id = id.0, job = %name, ticket = %ticket, "rejected: {}", job.state.reason.as_deref().unwrap_or(""));
                    self.remember_finished(&name);
                    self.job_ended(&job);
                }
            }
            written.push(job);
        }
        for d in dirs {
            if let Err(e) = transition::fsync_dir(&self.spool.dir(d)) {
                return self.io_error(e);
            }
        }
        for job in &written {
            // A claim left here is removed by the next start's recovery (its job exists).
            if let Err(e) = intake::finish(&self.spool, job) {
                self.io_error(e);
            }
        }
        if !written.is_empty() && self.stuck_claims.is_empty() {
            self.io_ok();
        }
        if !written.is_empty() {
            // The queue grew: metrics.prom counts pending jobs.
            self.status_changed();
        }
    }

    /// Intake step 3: open the claimed file safely and decide.
    fn judge(&self, id: JobId, ticket: &str, now: Timestamp) -> (Option<u32>, Verdict) {
        let path = self.spool.dir(Dir::Tmp).join(claim::claim_name(id, ticket));
        if let Some(reason) = intake::bad_ticket_name(ticket) {
            let owner = std::fs::symlink_metadata(&path).ok().map(|m| m.uid());
            return (
                owner,
                Verdict::Reject {
                    reason,
                    original: claim::open_claimed(&path)
                        .map(|o| o.text)
                        .unwrap_or_default(),
                },
            );
        }
        match claim::open_claimed(&path) {
            Err(refused) => (
                refused.owner_uid,
                Verdict::Reject {
                    reason: refused.reason,
                    original: refused.original,
                },
            ),
            Ok(opened) => {
                let verdict = match self.check_owner(opened.owner_uid) {
                    Err(reason) => Verdict::Reject {
                        reason,
                        original: opened.text,
                    },
                    Ok(()) => match JobFile::parse_and_validate(&opened.text) {
                        Err(e) => Verdict::Reject {
                            reason: e.to_string(),
                            original: opened.text,
                        },
                        Ok(sub) => match self.check_queue(id, &sub, opened.owner_uid, now) {
                            Err(reason) => Verdict::Reject {
                                reason,
                                original: opened.text,
                            },
                            Ok(()) => Verdict::Accept(sub),
                        },
                    },
                };
                (Some(opened.owner_uid), verdict)
            }
        }
    }

    /// The owner of a submitted file must be root, the worker user, or in the spool's
    /// group: the kernel let them write `incoming/`, and we check again.
    pub(super) fn check_owner(&self, uid: u32) -> Result<(), String> {
        if uid == 0 || uid == self.worker_uid || identity::is_member(uid, self.spool_gid) {
            Ok(())
        } else {
            Err(format!(
                "its owner {} is not in group {}; only members may submit",
                identity::user_name(uid),
                identity::group_name(self.spool_gid)
            ))
        }
    }

    /// Checks that need the queue: limits, references, cycles.
    fn check_queue(
        &self,
        id: JobId,
        sub: &crate::job::Submission,
        uid: u32,
        now: Timestamp,
    ) -> Result<(), String> {
        let limit = self.cfg.max_pending_per_user.value;
        if uid != 0 && uid != self.worker_uid {
            let mine = self
                .pending
                .values()
                .filter(|j| j.meta.owner_uid == uid)
                .count();
            if mine >= limit {
                return Err(format!(
                    "{} already has {mine} pending jobs; the limit is {limit} (max_pending_per_user)",
                    identity::user_name(uid)
                ));
            }
        }
        for a in &sub.after {
            if *a >= id {
                return Err(format!("after: there is no job {a} yet"));
            }
        }
        // A job that waits on nothing cannot close a cycle.
        if sub.dependencies.is_empty() && sub.after.is_empty() {
            return Ok(());
        }
        let mut q = self.queue_state();
        q.pending.push(PendingJob {
            id,
            name: JobName::new(id, sub.spec.package()).to_string(),
            package: sub.spec.package().to_string(),
            owner: identity::user_name(uid),
            priority: sub.priority,
            dependencies: sub.dependencies.clone(),
            after: sub.after.clone(),
            estimate: sub.estimated_time,
            timeout: sub.timeout,
            submitted_at: now,
        });
        let plan = scheduler::plan(&q, now, &self.policy());
        if let Some(r) = plan.order.iter().find(|r| r.id == id)
            && let Readiness::Doomed(why) = &r.status
            && why.starts_with("dependency cycle")
        {
            return Err(why.clone());
        }
        Ok(())
    }
}
