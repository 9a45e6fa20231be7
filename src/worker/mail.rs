//! Mail to a job's owner when it ends, as cron and Slurm send it: a message handed to
//! the local MTA's `sendmail -t -oi` (argv, no shell; `sendmail` in the config), which
//! reads the recipient from `To:`. The recipient is the owner's user name (local
//! delivery), or `user@mail_domain`. Sent by the notification thread ([`super::hooks`]),
//! bounded by `hook_timeout` like a hook.
//!
//! Headers carry no user text but the spec, which validation keeps to printable ASCII;
//! the subject is still built from escaped, ASCII-only, cut text, so nothing in it can
//! end the header and start another (header injection). A user name that is not a plain
//! Unix name is not mailed at all.

use super::hooks::{Ended, escape, run_bounded};
use crate::job::State;
use std::path::PathBuf;
use std::time::Duration;

/// How many lines of the log's end a message quotes.
const LOG_LINES: usize = 20;
/// A message stays below a pipe's buffer (64 KiB), see `hooks::run_bounded`.
pub const MAX_MESSAGE: usize = 32 * 1024;

/// Where and how to send one message.
#[derive(Debug, Clone)]
pub struct MailTo {
    pub sendmail: PathBuf,
    pub address: String,
    /// The environment `sendmail` runs with.
    pub env: Vec<(String, String)>,
}

/// The address for a user, or why there is none.
pub fn address(owner: &str, domain: Option<&str>) -> Result<String, String> {
    let plain = owner
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && owner.len() <= 32
        && owner
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c));
    if !plain {
        return Err(format!(
            "the owner `{}` is not a plain user name",
            escape(owner, 64)
        ));
    }
    Ok(match domain {
        Some(d) => format!("{owner}@{d}"),
        None => owner.to_string(),
    })
}

/// One header line's worth of text: printable ASCII only, everything else escaped.
fn header_text(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if (' '..='~').contains(&c) {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
        if out.len() >= max {
            out.push_str("...");
            break;
        }
    }
    out
}

/// The whole message, headers and body.
pub fn message(to: &str, e: &Ended) -> String {
    let subject = header_text(
        &format!("[spack-installer] {} {}: {}", e.name, e.state, e.spec),
        200,
    );
    let t =
        |t: Option<crate::time::Timestamp>| t.map(|t| t.to_string()).unwrap_or_else(|| "-".into());
    let mut body = format!(
        "Your install {} ({}) {}.\n\nReason:    {}\nSubmitted: {}\nStarted:   {}\nFinished:  {}\n",
        e.name,
        e.spec,
        match e.state {
            State::Done => "is done",
            State::Failed => "failed",
            State::Cancelled => "was cancelled",
            State::Rejected => "was rejected",
            State::Pending | State::Running => "changed state",
        },
        e.reason,
        e.submitted_at,
        t(e.started_at),
        t(e.finished_at),
    );
    if let (Some(s), Some(f)) = (e.started_at, e.finished_at) {
        body += &format!("Ran for:   {}\n", humantime::format_duration(s.until(f)));
    }
    if let Some(c) = e.exit_code {
        body += &format!("Exit code: {c}\n");
    }
    body += &format!("Log:       {}\n", e.log.display());
    if let Some(text) = crate::executor::progress::tail(&e.log, 8 * 1024) {
        let lines: Vec<&str> = text.lines().collect();
        let last = &lines[lines.len().saturating_sub(LOG_LINES)..];
        if !last.is_empty() {
            body += "\nThe last lines of the log:\n\n";
            for l in last {
                body += &format!("    {}\n", escape(l, 1024));
            }
        }
    }
    body += "\n-- \nspack-installer: `spack-installer show ";
    body += &e.id.to_string();
    body += "` for more; `submit --mail never` for no mail.\n";
    let mut m = format!(
        "To: {to}\nSubject: {subject}\nAuto-Submitted: auto-generated\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n{body}"
    );
    if m.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !m.is_char_boundary(cut) {
            cut -= 1;
        }
        m.truncate(cut);
        m.push('\n');
    }
    m
}

/// Hand the message to `sendmail -t -oi` and log how that went.
pub fn send(to: &MailTo, e: &Ended, timeout: Duration) {
    let msg = message(&to.address, e);
    let argv = vec![
        to.sendmail.display().to_string(),
        "-t".to_string(),
        "-oi".to_string(),
    ];
    match run_bounded(&argv, &to.env, Some(msg.as_bytes()), timeout) {
        Ok(r) if r.status.is_some_and(|s| s.success()) => {
            tracing::info!(job = %e.name, to = %to.address, "mail sent")
        }
        Ok(r) => tracing::warn!(
            job = %e.name,
            to = %to.address,
            output = %r.output,
            "mail not sent: {} {}",
            argv[0],
            r.describe(timeout)
        ),
        Err(e2) => tracing::warn!(
            job = %e.name,
            to = %to.address,
            "mail not sent: cannot run {}: {e2}; install an MTA (e.g. dma) or set `sendmail` in the config",
            argv[0]
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    #[test]
    fn addresses_are_plain_user_names() {
        assert_eq!(address("alice", None).unwrap(), "alice");
        assert_eq!(
            address("alice", Some("example.org")).unwrap(),
            "alice@example.org"
        );
        assert!(address("bob\nBcc: x@y", None).is_err());
        assert!(address("", None).is_err());
    }

    #[test]
    fn the_subject_is_one_line() {
        let e = Ended {
            id: 7,
            name: "000007-zlib".into(),
            state: State::Failed,
            spec: "zlib\r\nBcc: victim@example.org".into(),
            owner: "alice".into(),
            exit_code: Some(1),
            reason: "it broke".into(),
            log: "/nonexistent.log".into(),
            submitted_at: Timestamp(0),
            started_at: None,
            finished_at: None,
        };
        let m = message("alice", &e);
        let headers = m.split("\n\n").next().unwrap();
        assert!(!headers.lines().any(|l| l.starts_with("Bcc")), "{headers}");
        assert!(headers.contains("Subject: [spack-installer] 000007-zlib failed: zlib\\r\\nBcc"));
    }
}
