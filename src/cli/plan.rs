//! `optimize` (also `plan`): the order the scheduler would run the pending jobs in now,
//! with the reason for each position; the same computation the worker makes.
//!
//! The scheduler ranks waiting jobs among themselves by what they are worth, so a job
//! may rank above the waiting job it waits for; it cannot run before it, so it is never
//! listed before it either ([`run_order`]).

use super::Ctx;
use super::output::table;
use crate::error::Result;
use crate::queue::{self, FinishedIndex};
use crate::scheduler::{self, Policy, Readiness};
use crate::spool::{Dir, store};
use crate::time::Timestamp;
use serde::Serialize;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Row {
    position: usize,
    id: u64,
    name: String,
    status: &'static str,
    reason: String,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let cfg = ctx.config()?;
    let read = |dir| -> Result<Vec<crate::job::Job>> {
        Ok(store::list(&ctx.spool, dir)?
            .iter()
            .filter_map(|n| store::read(&ctx.spool, dir, n).ok())
            .collect())
    };
    let pending = read(Dir::Pending)?;
    let running = read(Dir::Running)?;
    let finished = FinishedIndex::load(&ctx.spool)?;
    let mut history = crate::history::History::default();
    let q = queue::build(&ctx.spool, &pending, &running, &finished, &mut history);
    let policy = Policy {
        max_parallel: cfg.max_parallel.value,
        default_estimate: cfg.default_estimate.value,
        overdue_after: cfg.overdue_after.value,
        timeout_multiplier: cfg.timeout_multiplier.value,
        ..Policy::default()
    };
    let plan = scheduler::plan(&q, Timestamp::now(), &policy);
    let rows: Vec<Row> = run_order(&plan.order)
        .into_iter()
        .enumerate()
        .map(|(i, r)| Row {
            position: i + 1,
            id: r.id.0,
            name: r.name.to_string(),
            status: match r.status {
                Readiness::Ready => "ready",
                Readiness::Conflict(_) => "held",
                Readiness::Waiting(_) => "waiting",
                Readiness::Doomed(_) => "blocked",
            },
            reason: r.reason(),
        })
        .collect();
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("serializes")
        );
        return Ok(0);
    }
    if rows.is_empty() {
        println!("no pending jobs");
        return Ok(0);
    }
    let mut t = table(&["#", "JOB", "STATUS", "WHY HERE"]);
    for r in &rows {
        t.add_row(vec![
            r.position.to_string(),
            r.name.clone(),
            r.status.to_string(),
            r.reason.clone(),
        ]);
    }
    println!("{}", super::output::render(&t));
    Ok(0)
}

/// The plan's order, with each job moved after the pending jobs it waits for (and
/// otherwise kept in the plan's order): the order they can actually run in. Kahn's
/// algorithm, taking the best-ranked job whose waits are all listed; a cycle (which the
/// plan marks blocked, and so never waits on) keeps its place at the end.
fn run_order<'a, 'q>(order: &'a [scheduler::Ranked<'q>]) -> Vec<&'a scheduler::Ranked<'q>> {
    use std::cmp::Reverse;
    use std::collections::{BinaryHeap, HashMap};
    let pos: HashMap<&str, usize> = order.iter().enumerate().map(|(i, r)| (r.name, i)).collect();
    let mut missing = vec![0usize; order.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); order.len()];
    for (i, r) in order.iter().enumerate() {
        if let Readiness::Waiting(on) = &r.status {
            for d in on.iter().filter_map(|n| pos.get(n)) {
                missing[i] += 1;
                dependents[*d].push(i);
            }
        }
    }
    let mut next: BinaryHeap<Reverse<usize>> = (0..order.len())
        .filter(|&i| missing[i] == 0)
        .map(Reverse)
        .collect();
    let mut out = Vec::with_capacity(order.len());
    let mut listed = vec![false; order.len()];
    while let Some(Reverse(i)) = next.pop() {
        out.push(&order[i]);
        listed[i] = true;
        for &d in &dependents[i] {
            missing[d] -= 1;
            if missing[d] == 0 {
                next.push(Reverse(d));
            }
        }
    }
    out.extend((0..order.len()).filter(|&i| !listed[i]).map(|i| &order[i]));
    out
}
