//! `optimize` (also `plan`): the order the scheduler would run the pending jobs in now,
//! with the reason for each position; the same computation the worker makes.

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
    let q = queue::build(&ctx.spool, &pending, &running, &finished);
    let policy = Policy {
        max_parallel: cfg.max_parallel.value,
        default_estimate: cfg.default_estimate.value,
        overdue_after: cfg.overdue_after.value,
    };
    let plan = scheduler::plan(&q, Timestamp::now(), &policy);
    let rows: Vec<Row> = plan
        .order
        .iter()
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
