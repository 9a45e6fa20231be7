//! `failed`: the failed (and rejected) jobs with their reasons and the tail of each log.

use super::Ctx;
use super::output::JobView;
use crate::error::Result;
use crate::spool::{Dir, store};
use crate::time::Timestamp;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many of the most recent failures to show.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Lines of each log to show.
    #[arg(long, default_value_t = 5)]
    pub lines: usize,
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let names = store::list(&ctx.spool, Dir::Failed)?;
    let now = Timestamp::now();
    let start = names.len().saturating_sub(a.limit);
    let mut out = Vec::new();
    for name in &names[start..] {
        let Ok(job) = store::read(&ctx.spool, Dir::Failed, name) else {
            continue;
        };
        let view = JobView::of(&ctx.spool, Dir::Failed, &job, now);
        let tail = crate::executor::progress::tail(&ctx.spool.log_path(name), 8 * 1024)
            .map(|t| {
                let lines: Vec<&str> = t
                    .lines()
                    .filter(|l| !l.starts_with("==> spack-installer:"))
                    .collect();
                lines[lines.len().saturating_sub(a.lines)..]
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        out.push((view, tail));
    }
    if a.json {
        let v: Vec<serde_json::Value> = out
            .iter()
            .map(|(j, t)| {
                let mut v = serde_json::to_value(j).expect("serializes");
                v["log_tail"] = serde_json::json!(t);
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).expect("serializes"));
        return Ok(0);
    }
    if out.is_empty() {
        println!("no failed jobs");
    }
    for (j, tail) in &out {
        let j = j.printable();
        println!(
            "{}  {}  {}  (owner {}, {})",
            j.name,
            j.state,
            j.spec,
            j.owner,
            j.finished_at.as_deref().unwrap_or("-")
        );
        println!("    reason: {}", j.reason.as_deref().unwrap_or("-"));
        for l in tail {
            println!("    | {l}");
        }
    }
    Ok(0)
}
