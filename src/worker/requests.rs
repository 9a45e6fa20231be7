//! Requests: what members and admins ask of the queue through `*.request.toml` files
//! (spool-layout.md, *request*): cancel, change a pending job's priority, pause, resume.
//! Intake claims the file; here it is read safely, its owner's right to ask is checked
//! (a job's owner or an admin), the request is carried out and answered with a receipt.
//! A request never starts an install: a cancelled running one is stopped, and its end is
//! recorded by the finish stage when the install exits.

use super::cluster::queued_in_slurm;
use super::{StopReason, Worker};
use crate::identity;
use crate::job::{Body, JobName, Request, RequestFile, State};
use crate::scheduler::Outcome as SchedOutcome;
use crate::spool::intake::{Outcome, Receipt};
use crate::spool::status::Paused;
use crate::spool::transition::{move_job, rewrite};
use crate::spool::{Dir, PAUSED_FILE, claim, intake, store, transition};
use crate::time::Timestamp;
use std::time::Instant;

impl Worker {
    pub(super) fn process_request(&mut self, ticket: &str) {
        let path = self
            .spool
            .dir(Dir::Tmp)
            .join(claim::request_claim_name(ticket));
        let now = Timestamp::now();
        let opened = claim::open_claimed(&path);
        let requester = match &opened {
            Ok(o) => Some(o.owner_uid),
            Err(r) => r.owner_uid,
        };
        let (outcome, message, job) = match opened {
            Err(r) => (
                Outcome::Invalid,
                format!("request not taken: {}", r.reason),
                None,
            ),
            Ok(opened) => match self.check_owner(opened.owner_uid) {
                Err(why) => (Outcome::NotPermitted, why, None),
                Ok(()) => match RequestFile::parse_and_validate(&opened.text) {
                    Err(e) => (Outcome::Invalid, format!("invalid request: {e}"), None),
                    Ok(req) => self.act(req, opened.owner_uid, now),
                },
            },
        };
        tracing::info!(ticket, outcome = ?outcome, "request: {message}");
        let receipt = Receipt {
            ticket: ticket.to_string(),
            outcome,
            id: job.as_ref().map(|n: &JobName| n.id),
            job: job.map(|n| n.to_string()),
            message,
            at: now,
            owner_uid: requester,
        };
        if let Err(e) = receipt
            .write(&self.spool)
            .and_then(|_| intake::dispose_claim(&self.spool, &path))
        {
            self.io_error(e);
        }
    }

    fn is_admin(&self, uid: u32) -> bool {
        identity::is_admin(uid, self.worker_uid, self.cfg.admin_group.value.as_deref())
    }

    fn act(
        &mut self,
        req: Request,
        uid: u32,
        now: Timestamp,
    ) -> (Outcome, String, Option<JobName>) {
        self.changed();
        let who = identity::user_name(uid);
        let not_yours = |name: &JobName, owner: &str| {
            (
                Outcome::NotPermitted,
                format!("{name} belongs to {owner}; only they or an admin may change it"),
                Some(name.clone()),
            )
        };
        match req {
            Request::Pause(_) | Request::Resume if !self.is_admin(uid) => (
                Outcome::NotPermitted,
                format!(
                    "{who} is not an admin; only root, the worker user and admin_group may pause or resume"
                ),
                None,
            ),
            Request::Pause(reason) => {
                let p = Paused {
                    by: who.clone(),
                    at: now,
                    reason,
                };
                let text = toml::to_string(&p).expect("paused serializes");
                match transition::replace(
                    &self.spool,
                    &self.spool.file(PAUSED_FILE),
                    text.as_bytes(),
                    true,
                ) {
                    Ok(()) => {
                        self.paused = true;
                        self.write_status(self.current_state());
                        (
                            Outcome::Done,
                            format!("paused by {who}: running jobs finish, no new ones start"),
                            None,
                        )
                    }
                    Err(e) => (Outcome::Invalid, format!("could not pause: {e}"), None),
                }
            }
            Request::Resume => {
                let _ = std::fs::remove_file(self.spool.file(PAUSED_FILE));
                let _ = transition::fsync_dir(self.spool.root());
                self.paused = false;
                self.write_status(self.current_state());
                (Outcome::Done, format!("resumed by {who}"), None)
            }
            Request::Cancel(id) | Request::Priority(id, _) if self.running.contains_key(&id) => {
                let r = &self.running[&id];
                let name = r.job.name();
                if r.job.meta.owner_uid != uid && !self.is_admin(uid) {
                    return not_yours(&name, &r.job.meta.owner);
                }
                if let Request::Priority(..) = req {
                    return (
                        Outcome::AlreadyFinished,
                        format!("{name} is already running"),
                        Some(name),
                    );
                }
                let r = self.running.get_mut(&id).expect("checked above");
                if r.stop.is_none() {
                    r.stop = Some(StopReason::Cancel { by: who.clone() });
                    r.term_sent = Some(Instant::now());
                    self.executor.stop(&r.handle, false);
                }
                let being_submitted = r.handle.slurm.as_ref().is_some_and(|s| s.job_id.is_none());
                let msg = if being_submitted {
                    format!(
                        "cancelling {name}: it is being handed to Slurm, and is cancelled there once Slurm answers (spack never started)"
                    )
                } else if queued_in_slurm(&r.job) {
                    format!(
                        "cancelling {name}: it is removed from Slurm's queue (spack never started)"
                    )
                } else {
                    format!("cancelling {name}: its Spack is being stopped")
                };
                (Outcome::Done, msg, Some(name))
            }
            Request::Cancel(id) | Request::Priority(id, _) if self.pending.contains_key(&id) => {
                let job = &self.pending[&id];
                let name = job.name();
                if job.meta.owner_uid != uid && !self.is_admin(uid) {
                    return not_yours(&name, &job.meta.owner);
                }
                let mut job = job.clone();
                let result = match req {
                    Request::Priority(_, p) => {
                        if let Body::Valid(s) = &mut job.body {
                            s.priority = p;
                        }
                        rewrite(&self.spool, Dir::Pending, &job)
                            .map(|_| format!("{name} now has priority {p}"))
                    }
                    _ => {
                        job.state.state = State::Cancelled;
                        job.state.reason = Some(format!("cancelled by {who}"));
                        job.state.finished_at = Some(now);
                        job.state.since = now;
                        let result = rewrite(&self.spool, Dir::Pending, &job).and_then(|_| {
                            move_job(&self.spool, &name, Dir::Pending, Dir::Cancelled)
                        });
                        self.settle(result, &name, Dir::Pending, Dir::Cancelled)
                            .map(|_| format!("cancelled {name}"))
                    }
                };
                match result {
                    Ok(msg) => {
                        if job.state.state == State::Cancelled {
                            self.pending.remove(&id);
                            self.remember_finished(&name);
                            self.finished.add(&name, SchedOutcome::Cancelled, Some(now));
                            self.job_ended(&job);
                            self.status_changed();
                        } else {
                            self.pending.insert(id, job);
                            self.pending_mtime.remove(&id);
                        }
                        (Outcome::Done, msg, Some(name))
                    }
                    Err(e) => (
                        Outcome::Invalid,
                        format!("could not change {name}: {e}"),
                        Some(name),
                    ),
                }
            }
            Request::Cancel(id) | Request::Priority(id, _) => {
                match store::locate(&self.spool, id) {
                    Ok(Some((dir, name))) => (
                        Outcome::AlreadyFinished,
                        format!("{name} has already finished (in {}/)", dir.name()),
                        Some(name),
                    ),
                    _ => (Outcome::NotFound, format!("there is no job {id}"), None),
                }
            }
        }
    }
}
