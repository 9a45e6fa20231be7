//! Scheduler ranking time: `spack_installer::scheduler::plan` over made-up queues of
//! pending jobs, in process (the scheduler is pure, so no spool is needed).

use spack_installer::job::{JobId, Priority};
use spack_installer::scheduler::{PendingJob, Policy, QueueState, plan};
use spack_installer::time::Timestamp;
use std::time::{Duration, Instant};

/// A small deterministic generator, so every run ranks the same queues.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// Distinct packages, no dependencies: the scheduler's easy case.
    Independent,
    /// A site's week: 2 000 packages, a third of the jobs name 1 to 3 package
    /// dependencies, a tenth wait on an earlier job by ID, mixed priorities and estimates.
    Mixed,
    /// Every job `--after` the one before: one 10 000-long chain, the worst case for the
    /// "work it unblocks" sums.
    Chain,
}

impl Shape {
    pub fn label(self) -> &'static str {
        match self {
            Shape::Independent => "independent jobs",
            Shape::Mixed => "mixed: 1/3 with package dependencies, 1/10 with `after`",
            Shape::Chain => "one `after` chain",
        }
    }
}

pub fn queue(n: usize, shape: Shape, now: Timestamp) -> QueueState {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut q = QueueState::default();
    for i in 0..n {
        let id = JobId(i as u64 + 1);
        let package = match shape {
            Shape::Mixed => format!("pkg{:04}", rng.below(2000)),
            _ => format!("pkg{i:05}"),
        };
        let mut dependencies = Vec::new();
        let mut after = Vec::new();
        match shape {
            Shape::Independent => {}
            Shape::Mixed => {
                if rng.below(3) == 0 {
                    for _ in 0..1 + rng.below(3) {
                        dependencies.push(format!("pkg{:04}", rng.below(2000)));
                    }
                }
                if i > 0 && rng.below(10) == 0 {
                    after.push(JobId(1 + rng.below(i as u64)));
                }
            }
            Shape::Chain => {
                if i > 0 {
                    after.push(JobId(i as u64));
                }
            }
        }
        let priority = match rng.below(3) {
            0 => Priority::High,
            1 => Priority::Medium,
            _ => Priority::Low,
        };
        let estimate = (rng.below(2) == 0).then(|| Duration::from_secs(60 * (1 + rng.below(120))));
        q.pending.push(PendingJob {
            id,
            name: format!("{:06}-{package}", id.0),
            package,
            // Eight owners, so the fair-share turns are part of what is timed.
            owner: format!("user{}", id.0 % 8),
            priority,
            dependencies,
            after,
            estimate,
            timeout: None,
            submitted_at: Timestamp(now.0.saturating_sub(rng.below(8 * 3600))),
        });
    }
    q
}

/// Median time of `plan` over `reps` runs (fewer when one run takes over 5 s), and how
/// many jobs it found ready.
pub fn time_plan(n: usize, shape: Shape, reps: usize) -> (Duration, usize) {
    let now = Timestamp::now();
    let q = queue(n, shape, now);
    let policy = Policy::default();
    let mut times = Vec::new();
    let mut ready = 0;
    for _ in 0..reps.max(1) {
        let t0 = Instant::now();
        let p = plan(&q, now, &policy);
        let dt = t0.elapsed();
        ready = p
            .order
            .iter()
            .filter(|r| r.status == spack_installer::scheduler::Readiness::Ready)
            .count();
        std::hint::black_box(&p);
        times.push(dt);
        if dt > Duration::from_secs(5) {
            break;
        }
    }
    times.sort();
    (times[times.len() / 2], ready)
}
