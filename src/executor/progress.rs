//! Spack's progress as its output shows it: the `[n/m]` of `==> Installing NAME [n/m]`
//! lines (Spack 0.2x). Best effort: Spack's output changes between versions (newer ones
//! print a different display), and nothing depends on this but what people are shown
//! (`status`, `logs -f`, the systemd status line). Spack's exit code is the truth.
//! Also the end of a log ([`tail`]) and its last `==> Error:` line, for reasons.

use serde::Serialize;
use std::path::Path;

/// Spack's `[n/m]` progress.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Progress {
    pub done: u32,
    pub total: u32,
}

/// The last `==> Installing ... [n/m]` of a log. Best effort: Spack's output changes
/// between versions, and nothing depends on this but the display.
pub fn progress(log: &Path) -> Option<Progress> {
    let text = tail(log, 16 * 1024)?;
    text.lines().rev().find_map(parse_progress)
}

pub fn parse_progress(line: &str) -> Option<Progress> {
    let rest = line.strip_prefix("==> Installing ")?;
    let open = rest.rfind('[')?;
    let (done, total) = rest[open + 1..]
        .trim_end()
        .strip_suffix(']')?
        .split_once('/')?;
    Some(Progress {
        done: done.trim().parse().ok()?,
        total: total.trim().parse().ok()?,
    })
}

/// The last `==> Error:` line of a log, for the reason of a failed job.
pub fn last_error_line(path: &std::path::Path) -> Option<String> {
    let text = tail(path, 16 * 1024)?;
    text.lines()
        .rev()
        .find(|l| l.starts_with("==> Error:"))
        .map(|l| l.chars().take(300).collect())
}

/// The last `n` bytes of a file, lossily decoded.
pub fn tail(path: &std::path::Path, n: u64) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(n))).ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}
