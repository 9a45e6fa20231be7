//! Properties of the scheduler over generated queues, simulated with `plan` and
//! `Plan::to_start` exactly as the worker calls them: a job never starts before what it
//! depends on, related jobs never run side by side, nothing waits silently for ever, no
//! job is passed by later submissions beyond the documented bound, owners of one priority
//! take turns, and the ranking is deterministic.

use proptest::prelude::*;
use spack_installer::job::{JobId, Priority};
use spack_installer::scheduler::{
    FinishedJob, Outcome, PendingJob, Plan, Policy, QueueState, Readiness, RunningJob, plan,
};
use spack_installer::time::Timestamp;
use std::collections::HashMap;
use std::time::Duration;

const PACKAGES: &[&str] = &[
    "zlib", "bzip2", "hdf5", "netcdf", "gcc", "openmpi", "cmake", "boost",
];
const OWNERS: &[&str] = &["alice", "bob", "carol"];
const T0: u64 = 1_800_000_000;

#[derive(Debug, Clone)]
struct Spec {
    package: usize,
    owner: usize,
    priority: Priority,
    deps: Vec<usize>,
    after: Vec<usize>,
    estimate: Option<u64>,
    actual: u64,
    /// Seconds before the simulation starts that it was submitted.
    age: u64,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        (0..PACKAGES.len(), 0..OWNERS.len()),
        prop_oneof![
            Just(Priority::High),
            Just(Priority::Medium),
            Just(Priority::Low)
        ],
        prop::collection::vec(0..PACKAGES.len(), 0..3),
        prop::collection::vec(0usize..40, 0..2),
        prop::option::of(60u64..8 * 3600),
        60u64..8 * 3600,
        // Whole hours half the time: jobs submitted in the same second (a stack) tie on
        // time, and count as submitted together (value, not ID, orders them).
        prop_oneof![0u64..40 * 3600, (0u64..40).prop_map(|h| h * 3600)],
    )
        .prop_map(
            |((package, owner), priority, deps, after, estimate, actual, age)| Spec {
                package,
                owner,
                priority,
                deps: deps.into_iter().filter(|&d| d != package).collect(),
                after,
                estimate,
                actual,
                age,
            },
        )
}

/// Jobs in ID order; submission times increase with the ID, as the worker assigns them.
fn queue(specs: &[Spec]) -> Vec<PendingJob> {
    let mut ages: Vec<u64> = specs.iter().map(|s| s.age).collect();
    ages.sort_unstable_by(|a, b| b.cmp(a));
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let id = i as u64 + 1;
            PendingJob {
                id: JobId(id),
                name: format!("{id:06}-{}", PACKAGES[s.package]),
                package: PACKAGES[s.package].to_string(),
                owner: OWNERS[s.owner].to_string(),
                priority: s.priority,
                dependencies: s.deps.iter().map(|&d| PACKAGES[d].to_string()).collect(),
                // `after` names earlier jobs only, as intake requires.
                after: s
                    .after
                    .iter()
                    .filter(|&&a| (a as u64) < i as u64)
                    .map(|&a| JobId(a as u64 + 1))
                    .collect(),
                estimate: s.estimate.map(Duration::from_secs),
                timeout: None,
                submitted_at: Timestamp(T0 - ages[i]),
            }
        })
        .collect()
}

fn status_of<'p, 'q>(p: &'p Plan<'q>, id: JobId) -> &'p Readiness<'q> {
    &p.order.iter().find(|r| r.id == id).unwrap().status
}

/// Record a finished job where the scheduler looks for it: by ID, and among its
/// package's finished jobs.
fn record_finished(q: &mut QueueState, job: &RunningJob, outcome: Outcome, at: Timestamp) {
    let f = FinishedJob {
        id: job.id,
        name: job.name.clone(),
        package: job.package.clone(),
        owner: job.owner.clone(),
        outcome,
        finished_at: at,
    };
    q.finished.insert(job.id, f.clone());
    q.finished_by_package
        .entry(job.package.clone())
        .or_default()
        .push(f);
}

/// Fair share in one plan: in each priority class, the ready jobs that are not overdue
/// (and those held only because an earlier job of their package goes first) are dealt
/// so that each place goes to the job worth most once its value per hour is divided by
/// `fair_share_base` to the power of its owner's recent installs: no later job of
/// another owner was worth more, discounted by that owner's use at the time. (An owner's
/// use changes only when it is dealt a place, so the use reported for its next job is
/// the one it had then.)
fn check_turns(q: &QueueState, p: &Plan, policy: &Policy) -> Result<(), TestCaseError> {
    for class in [Priority::High, Priority::Medium, Priority::Low] {
        let dealt: Vec<(&str, f64)> = p
            .order
            .iter()
            .filter(|r| match &r.status {
                Readiness::Ready => true,
                Readiness::Conflict(why) => why.starts_with("an earlier"),
                _ => false,
            })
            .filter(|r| !r.reason().contains("overdue"))
            .filter_map(|r| {
                let j = q.pending.iter().find(|j| j.id == r.id).unwrap();
                (j.priority == class).then(|| {
                    let discounted = r.fair_share_usage().map_or(r.worth_per_hour(), |u| {
                        r.worth_per_hour() * policy.fair_share_base.powf(-u)
                    });
                    (j.owner.as_str(), discounted)
                })
            })
            .collect();
        let owners: std::collections::HashSet<&str> = dealt.iter().map(|d| d.0).collect();
        if owners.len() < 2 {
            continue;
        }
        for (k, &(owner, worth)) in dealt.iter().enumerate() {
            for o in &owners {
                if *o == owner {
                    continue;
                }
                if let Some(&(_, next)) = dealt[k + 1..].iter().find(|d| d.0 == *o) {
                    prop_assert!(
                        next <= worth * (1.0 + 1e-9),
                        "place {} went to {} (worth {}) though {} had a job worth {}: {:?}",
                        k,
                        owner,
                        worth,
                        o,
                        next,
                        &p.order
                    );
                }
            }
        }
    }
    Ok(())
}

/// Run the queue to the end with `m` builders, checking every decision.
fn simulate(specs: &[Spec], m: usize) -> Result<(), TestCaseError> {
    // A bound inside the generated ages (up to 40 h), so overdue jobs are common.
    let policy = Policy {
        max_parallel: m,
        overdue_after: Duration::from_secs(24 * 3600),
        ..Policy::default()
    };
    let jobs = queue(specs);
    let actual: HashMap<JobId, u64> = jobs
        .iter()
        .zip(specs)
        .map(|(j, s)| (j.id, s.actual))
        .collect();
    let mut q = QueueState {
        pending: jobs.clone(),
        ..Default::default()
    };
    let mut running: Vec<(u64, RunningJob)> = Vec::new();
    let mut started: HashMap<JobId, Timestamp> = HashMap::new();
    let mut outcome: HashMap<JobId, Outcome> = HashMap::new();
    let mut t = T0;
    for _ in 0..10 * jobs.len() + 10 {
        let now = Timestamp(t);
        let p = plan(&q, now, &policy);
        // Determinism: the same state, in another order, ranks the same.
        let mut shuffled = QueueState {
            pending: q.pending.iter().rev().cloned().collect(),
            running: q.running.clone(),
            finished: q.finished.clone(),
            finished_by_package: q.finished_by_package.clone(),
            history: q.history.clone(),
            last_start: q.last_start.clone(),
            recent_starts: q.recent_starts.clone(),
            dag: q.dag.clone(),
        };
        shuffled.running.reverse();
        let again = plan(&shuffled, now, &policy);
        prop_assert_eq!(&p.order, &again.order);
        check_turns(&q, &p, &policy)?;

        // The worker fails doomed jobs.
        let doomed: Vec<JobId> = p.doomed().map(|(r, _)| r.id).collect();
        let p = if doomed.is_empty() {
            p
        } else {
            drop(p);
            for id in &doomed {
                let job = q.pending.iter().find(|j| j.id == *id).unwrap().clone();
                outcome.insert(job.id, Outcome::Failed);
                let r = RunningJob {
                    id: job.id,
                    name: job.name.clone(),
                    package: job.package.clone(),
                    owner: job.owner.clone(),
                };
                record_finished(&mut q, &r, Outcome::Failed, now);
            }
            q.pending.retain(|j| !doomed.contains(&j.id));
            plan(&q, now, &policy)
        };

        let starts = p.to_start(running.len(), m);
        for id in &starts {
            let job = q.pending.iter().find(|j| j.id == *id).unwrap();
            // Never before what it depends on.
            for a in &job.after {
                prop_assert_eq!(
                    outcome.get(a),
                    Some(&Outcome::Done),
                    "{} started before job {}",
                    job.name,
                    a
                );
            }
            for d in &job.dependencies {
                prop_assert!(
                    !q.pending.iter().any(|o| o.id != job.id && &o.package == d),
                    "{} started while a {} job is pending",
                    job.name,
                    d
                );
                prop_assert!(
                    !running.iter().any(|(_, r)| &r.package == d),
                    "{} started while a {} job runs",
                    job.name,
                    d
                );
            }
            // Never beside a job of its own package, running or starting.
            prop_assert!(
                !running.iter().any(|(_, r)| r.package == job.package),
                "two {} jobs at once",
                job.package
            );
            prop_assert_eq!(
                starts
                    .iter()
                    .filter(
                        |s| q.pending.iter().find(|j| j.id == **s).unwrap().package == job.package
                    )
                    .count(),
                1
            );
            // Starvation bound: a ready job overdue by itself is passed only by earlier
            // submissions or by work an earlier submission waits for.
            for y in &q.pending {
                if y.id != job.id
                    && !starts.contains(&y.id)
                    && *status_of(&p, y.id) == Readiness::Ready
                    && policy.overdue(y.submitted_at, now)
                    && y.submitted_at < job.submitted_at
                {
                    let reason = &p.order.iter().find(|r| r.id == *id).unwrap().reason();
                    let lender = reason
                        .split("overdue: ")
                        .nth(1)
                        .and_then(|r| r.split(' ').next())
                        .and_then(|n| q.pending.iter().find(|j| j.name == n));
                    prop_assert!(
                        lender.is_some_and(|l| l.submitted_at <= y.submitted_at),
                        "{} (submitted {}) started before the overdue {} (submitted {}): {}",
                        job.name,
                        job.submitted_at,
                        y.name,
                        y.submitted_at,
                        reason
                    );
                }
            }
        }
        // Nothing runs and nothing starts: the queue must be empty, never stuck.
        let stuck = (running.is_empty() && starts.is_empty()).then(|| format!("{:?}", p.order));
        for id in starts {
            let i = q.pending.iter().position(|j| j.id == id).unwrap();
            let job = q.pending.remove(i);
            let r = RunningJob {
                id: job.id,
                name: job.name.clone(),
                package: job.package.clone(),
                owner: job.owner.clone(),
            };
            q.last_start.insert(job.owner.clone(), now);
            started.insert(job.id, now);
            q.running.push(r.clone());
            running.push((t + actual[&job.id], r));
        }
        if let Some(order) = stuck {
            prop_assert!(q.pending.is_empty(), "stuck with nothing running: {order}");
            return Ok(());
        }
        // The next install ends.
        running.sort_by_key(|(end, r)| (*end, r.id));
        let (end, r) = running.remove(0);
        t = end;
        q.running.retain(|x| x.id != r.id);
        outcome.insert(r.id, Outcome::Done);
        record_finished(&mut q, &r, Outcome::Done, Timestamp(t));
        q.recent_starts
            .entry(r.owner.clone())
            .or_default()
            .push(started[&r.id]);
    }
    prop_assert!(false, "the simulation did not end");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn orders_hold_and_the_queue_never_sticks(specs in prop::collection::vec(spec(), 1..25), m in 1usize..5) {
        simulate(&specs, m)?;
    }
}

#[test]
fn a_job_behind_the_bound_goes_before_every_later_submission() {
    // A low, long job submitted a day ago; a stream of short high jobs since.
    let policy = Policy::default();
    let now = Timestamp(T0);
    let mut pending = vec![PendingJob {
        id: JobId(1),
        name: "000001-llvm".into(),
        package: "llvm".into(),
        owner: "alice".into(),
        priority: Priority::Low,
        dependencies: vec![],
        after: vec![],
        estimate: Some(Duration::from_secs(4 * 3600)),
        timeout: None,
        submitted_at: Timestamp(T0 - policy.starvation_bound().as_secs()),
    }];
    for i in 2..50u64 {
        pending.push(PendingJob {
            id: JobId(i),
            name: format!("{i:06}-lib{i}"),
            package: format!("lib{i}"),
            owner: "bob".into(),
            priority: Priority::High,
            dependencies: vec![],
            after: vec![],
            estimate: Some(Duration::from_secs(60)),
            timeout: None,
            submitted_at: Timestamp(T0 - 3600 + i),
        });
    }
    let q = QueueState {
        pending,
        ..Default::default()
    };
    let p = plan(&q, now, &policy);
    assert_eq!(p.to_start(0, 1), vec![JobId(1)]);
    assert!(
        p.order[0].reason().contains("overdue"),
        "{}",
        p.order[0].reason()
    );
    // One second earlier it is not overdue, and the short high jobs go first.
    let p = plan(&q, Timestamp(T0 - 1), &policy);
    assert_ne!(p.to_start(0, 1), vec![JobId(1)]);
}

/// One builder, owners of one class, jobs of equal worth: starts alternate, however
/// many one owner queued (with any base over 1); and when one owner's jobs are worth ten
/// times more, with a base of 2 the other still starts after at most four of them
/// (2^4 > 10) each time.
#[test]
fn owners_take_turns_on_one_builder() {
    // Any base over 1 alternates owners of equal worth; 2 makes the bound on a more
    // valuable owner's run short enough to state (2^4 > 10).
    let policy = Policy {
        fair_share_base: 2.0,
        ..Policy::default()
    };
    let run = |policy: &Policy, bob_secs: u64| {
        let job = |id: u64, owner: &str, secs: u64| PendingJob {
            id: JobId(id),
            name: format!("{id:06}-p{id}"),
            package: format!("p{id}"),
            owner: owner.into(),
            priority: Priority::High,
            dependencies: vec![],
            after: vec![],
            estimate: Some(Duration::from_secs(secs)),
            timeout: None,
            submitted_at: Timestamp(T0),
        };
        let mut q = QueueState {
            pending: (1..=20)
                .map(|i| job(i, "bob", bob_secs))
                .chain((21..=23).map(|i| job(i, "alice", 600)))
                .collect(),
            ..Default::default()
        };
        let mut owners = Vec::new();
        let mut t = T0;
        while !q.pending.is_empty() {
            let id = plan(&q, Timestamp(t), policy).to_start(0, 1)[0];
            let i = q.pending.iter().position(|j| j.id == id).unwrap();
            let j = q.pending.remove(i);
            q.last_start.insert(j.owner.clone(), Timestamp(t));
            q.recent_starts
                .entry(j.owner.clone())
                .or_default()
                .push(Timestamp(t));
            t += j.estimate.unwrap().as_secs();
            owners.push(if j.owner == "bob" { 'b' } else { 'a' });
        }
        owners.into_iter().collect::<String>()
    };
    let alternate = format!("bababab{}", "b".repeat(16));
    assert_eq!(run(&Policy::default(), 600), alternate);
    assert_eq!(run(&policy, 600), alternate);
    let order = run(&policy, 60);
    let gaps: Vec<usize> = order.split('a').map(str::len).collect();
    assert!(
        gaps[..3].iter().all(|&g| g <= 4),
        "alice waited behind more than four of bob's jobs: {order}"
    );
    assert!(
        gaps[0] >= 1,
        "bob's jobs are worth more, one goes first: {order}"
    );
}
