//! `config-check`: every setting with its value and where it came from; whether Spack is
//! there and runs (`spack --version`); the spool's layout against spool-layout.md; the
//! worker's heartbeat. Exits 1 when something is wrong, with the fix.

use super::Ctx;
use crate::config::{Config, Source};
use crate::error::{Result, exit};
use crate::spool::layout;
use crate::spool::status::{Liveness, WorkerStatus};
use crate::time::Timestamp;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let cfg = ctx.config()?;
    let mut problems: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    if std::env::var_os("SPACK_INSTALLER_DB_URL").is_some() {
        notes.push("SPACK_INSTALLER_DB_URL is set but means nothing any more: the spool directory is the database; unset it".into());
    }
    let spack = match cfg.resolve_spack() {
        Ok((path, how)) => {
            match spack_version(&path) {
                Ok(v) => notes.push(format!(
                    "spack: {} ({how}) runs: version {v}",
                    path.display()
                )),
                Err(e) => problems.push(format!(
                    "spack: {} ({how}) does not run: {e}",
                    path.display()
                )),
            }
            Some(path.display().to_string())
        }
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    // Not a problem by itself (Spack may be found on PATH), but never "ok".
    let mut warnings: Vec<String> = Vec::new();
    if cfg.spack.value.is_none() && !cfg.spack_setup_script.value.exists() {
        warnings.push(format!(
            "setup script {} ({}) does not exist",
            cfg.spack_setup_script.value.display(),
            cfg.spack_setup_script.source
        ));
    }
    // Whether this user can look into the spool at all: if not, that is the one problem
    // to report (each path's layout and the worker's heartbeat cannot be seen).
    let root = ctx.spool.root();
    let readable = match std::fs::read_dir(root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            problems.push(format!("spool: {}", super::access::missing_spool(root)));
            false
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            problems.push(format!(
                "spool: {}",
                super::access::not_permitted(root, root)
            ));
            false
        }
        _ => true,
    };
    if readable {
        for d in layout::check(&ctx.spool) {
            problems.push(format!(
                "spool: {}; repair with `spack-installer init`",
                d.0
            ));
        }
        if let Some(w) = layout::network_fs_warning(root) {
            problems.push(w);
        }
    }
    if cfg.executor.value == crate::config::ExecutorKind::Slurm {
        crate::executor::slurm::check(&cfg.slurm.value, &mut notes, &mut problems);
    }
    let worker = WorkerStatus::read(&ctx.spool);
    let status_file = ctx.spool.file(crate::spool::STATUS_FILE);
    match worker.as_ref().map(|w| (w, w.liveness(Timestamp::now(), cfg.max_heartbeat_age.value))) {
        None if !readable => {}
        None if status_file.exists() => notes.push(format!(
            "worker: unknown, {} cannot be read",
            status_file.display()
        )),
        None => notes.push("worker: has never run on this spool".into()),
        Some((_, Liveness::NotRunning)) => notes.push("worker: not running".into()),
        Some((w, Liveness::Stale)) => problems.push(format!(
            "worker: pid {} has not written a heartbeat for {}s (limit {}s): it may be hung; restart it",
            w.pid,
            w.heartbeat.until(Timestamp::now()).as_secs(),
            cfg.max_heartbeat_age.value.as_secs()
        )),
        Some((w, Liveness::Running)) => notes.push(format!("worker: running, pid {}, heartbeat {}s ago", w.pid, w.heartbeat.until(Timestamp::now()).as_secs())),
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "config_file": cfg.file,
                "settings": &cfg,
                "spack": spack,
                "spool": ctx.spool.root(),
                "problems": problems,
                "warnings": warnings,
                "notes": notes,
            }))
            .expect("serializes")
        );
    } else {
        print_settings(&cfg);
        println!();
        for n in &notes {
            println!("ok:      {n}");
        }
        for w in &warnings {
            println!("warning: {w}");
        }
        for p in &problems {
            println!("PROBLEM: {p}");
        }
        if problems.is_empty() {
            println!("no problems found");
        }
    }
    Ok(if problems.is_empty() {
        exit::OK
    } else {
        exit::FAILURE
    })
}

fn print_settings(c: &Config) {
    println!(
        "config file: {}",
        c.file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "none (defaults and environment only)".into())
    );
    let mut t = super::output::table(&["SETTING", "VALUE", "FROM"]);
    for (k, v, src) in settings(c) {
        t.add_row(vec![k, v, src]);
    }
    println!("{}", super::output::render(&t));
}

/// Every setting of the config as (name, value, source), from its serialized form, so a
/// new setting shows up here without being listed twice.
fn settings(c: &Config) -> Vec<(String, String, String)> {
    let v = serde_json::to_value(c).expect("the config serializes");
    let Some(fields) = v.as_object() else {
        return Vec::new();
    };
    fields
        .iter()
        .filter_map(|(k, s)| {
            let source: Source = serde_json::from_value(s.get("source")?.clone()).ok()?;
            Some((k.clone(), render(s.get("value")?), source.to_string()))
        })
        .collect()
}

fn render(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(render).collect::<Vec<_>>().join(" "),
        Value::Object(o) if o.contains_key("secs") => {
            let secs = o.get("secs").and_then(Value::as_u64).unwrap_or(0);
            let nanos = o.get("nanos").and_then(Value::as_u64).unwrap_or(0) as u32;
            humantime::format_duration(Duration::new(secs, nanos)).to_string()
        }
        // A section (`[slurm]`): its set keys, as `key=value`, not a line of JSON.
        Value::Object(o) => o
            .iter()
            .filter(|(_, v)| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()))
            .map(|(k, v)| format!("{k}={}", render(v)))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

/// Run `spack --version`, at most 30 s.
fn spack_version(path: &std::path::Path) -> std::result::Result<String, String> {
    let mut child = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(_) => break,
            None if Instant::now() > end => {
                let _ = child.kill();
                return Err("`--version` did not answer within 30 s".into());
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "`--version` exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
