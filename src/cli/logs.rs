//! `logs JOB [-f]`: print a job's log; `-f` follows it live until the job ends, woken by
//! inotify (not by polling), with a progress bar from Spack's `[n/m]` lines on a terminal.

use super::Ctx;
use super::output::parse_progress;
use crate::error::{IoContext, Result};
use crate::spool::{Dir, store};
use notify::{RecursiveMode, Watcher};
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(value_name = "JOB")]
    pub job: String,
    /// Follow the log until the job ends.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(short = 'n', long, value_name = "N")]
    pub tail: Option<usize>,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let (dir, name) = store::find(&ctx.spool, &a.job)?;
    let path = ctx.spool.log_path(&name);
    if !a.follow || Dir::FINISHED.contains(&dir) {
        let text = match std::fs::read(&path) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("{name} has no log yet (it has not started)");
                return Ok(0);
            }
            Err(e) => return Err(crate::Error::io("read", &path, e)),
        };
        print_tail(&text, a.tail);
        return Ok(0);
    }
    follow(ctx, &name, &path, a.tail)
}

fn print_tail(text: &str, n: Option<usize>) {
    let lines: Vec<&str> = text.lines().collect();
    let start = n.map(|n| lines.len().saturating_sub(n)).unwrap_or(0);
    let mut out = std::io::stdout().lock();
    for l in &lines[start..] {
        let _ = writeln!(out, "{}", shown(l));
    }
}

/// A log line as printed: the worker's own `==> spack-installer:` lines quote job names
/// and reasons, so they are escaped like all user text; Spack's lines are the build's
/// output, not a member's text (the spec Spack got is printable ASCII), and are printed
/// as Spack wrote them.
fn shown(line: &str) -> std::borrow::Cow<'_, str> {
    if line.starts_with("==> spack-installer:") {
        crate::text::printable(line)
    } else {
        std::borrow::Cow::Borrowed(line)
    }
}

fn follow(
    ctx: &Ctx,
    name: &crate::job::JobName,
    path: &std::path::Path,
    tail: Option<usize>,
) -> Result<i32> {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        // Only changes wake us. Opens, reads and closes without writing are our own
        // reads of the log and of the state directories: waking for them would spin.
        use notify::event::{AccessKind, AccessMode, EventKind};
        let change = ev.is_ok_and(|e| match e.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
            EventKind::Access(_) => false,
            _ => true,
        });
        if change {
            let _ = tx.send(());
        }
    })
    .ok();
    if let Some(w) = watcher.as_mut() {
        // The log's directory (it may not exist yet) and where the job will end up.
        let _ = w.watch(&ctx.spool.dir(Dir::Logs), RecursiveMode::NonRecursive);
        for d in Dir::FINISHED {
            let _ = w.watch(&ctx.spool.dir(d), RecursiveMode::NonRecursive);
        }
    }
    // Until Spack's first `[n/m]` line the total is unknown: a spinner, not a bar (a bar
    // of length 0 would be drawn full).
    let bar_style = indicatif::ProgressStyle::with_template(
        "{prefix} [{bar:30}] {pos}/{len} packages ({elapsed})",
    )
    .expect("template")
    .progress_chars("=> ");
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} {spinner} waiting for Spack's progress ({elapsed})",
            )
            .expect("template"),
        );
        b.set_prefix(name.to_string());
        b.enable_steady_tick(Duration::from_millis(250));
        b
    });
    let mut bar_shown = false;
    let mut offset = 0u64;
    let mut partial = String::new();
    let mut first = true;
    loop {
        if let Ok(mut f) = std::fs::File::open(path) {
            f.seek(SeekFrom::Start(offset)).at("seek", path)?;
            let mut buf = Vec::new();
            f.read_to_end(&mut buf).at("read", path)?;
            offset += buf.len() as u64;
            partial.push_str(&String::from_utf8_lossy(&buf));
            let mut lines: Vec<String> = Vec::new();
            while let Some(i) = partial.find('\n') {
                lines.push(partial[..i].to_string());
                partial.drain(..=i);
            }
            if first {
                if let Some(n) = tail {
                    let skip = lines.len().saturating_sub(n);
                    lines.drain(..skip);
                }
                first = false;
            }
            for l in lines {
                match &bar {
                    Some(b) => {
                        if let Some(p) = parse_progress(&l) {
                            if !bar_shown {
                                b.disable_steady_tick();
                                b.set_style(bar_style.clone());
                                bar_shown = true;
                            }
                            b.set_length(p.total as u64);
                            b.set_position(p.done.saturating_sub(1) as u64);
                        }
                        b.println(shown(&l));
                    }
                    None => println!("{}", shown(&l)),
                }
            }
        }
        if let Ok(Some((d, _))) = store::locate(&ctx.spool, name.id)
            && Dir::FINISHED.contains(&d)
        {
            // One last read happened above only if the end was seen before it: read again.
            if offset == std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) {
                if let Some(b) = &bar {
                    b.finish_and_clear();
                }
                if !partial.is_empty() {
                    println!("{partial}");
                }
                println!(
                    "==> {name} ended: {}",
                    d.state().map(|s| s.to_string()).unwrap_or_default()
                );
                return Ok(if d == Dir::Done { 0 } else { 1 });
            }
            continue;
        }
        // inotify wakes us for every write; the timeout covers file systems without it.
        let _ = rx.recv_timeout(Duration::from_secs(2));
        while rx.try_recv().is_ok() {}
    }
}
