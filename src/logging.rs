//! Where logs go, and in which shape. On a terminal: `tracing`'s human format with times
//! and colour. Under systemd, when stderr is the journal (`JOURNAL_STREAM` names it): one
//! journal entry per event, sent by journald's native protocol, whose `MESSAGE` is the
//! same line as on a terminal without time or colour (the journal adds its own), and
//! whose every field is also a journal field of its own: `job_id = 42` becomes
//! `JOB_ID=42`, `job = 000042-hdf5` becomes `JOB=000042-hdf5`, so
//! `journalctl -u spack-installer JOB_ID=42` shows one job's story. Into a regular file
//! (`worker start --log FILE`): the line with its time, without colour. Anywhere else (a
//! pipe): the line without time or colour.
//!
//! Why not the `tracing-journald` crate: it puts only the event's message in `MESSAGE`,
//! so `journalctl -u spack-installer` would show "queued" or "interrupted and requeued"
//! without saying which job; the worker names jobs in fields, not in the text.
//!
//! Every line and field is escaped by [`crate::text::printable_log`]: the worker logs job
//! and file names, reasons and link targets that members chose.
//!
//! The level comes from `RUST_LOG`, else the config's `log_level`, else `info`.

use crate::text::printable_log;
use std::fmt::{self, Write as _};
use std::io::{IsTerminal, Write as _};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
const IDENTIFIER: &str = "spack-installer";

/// The level filter, changeable while the process runs (the worker's SIGHUP).
static LEVEL: std::sync::OnceLock<reload::Handle<EnvFilter, Registry>> = std::sync::OnceLock::new();

/// Set up logging for the process. `config` is the `--config` path, for `log_level`.
pub fn init(config: Option<&Path>) {
    // Config::load already prefers RUST_LOG over the file's log_level. A broken config
    // is reported by the command that needs it; logging falls back to `info`.
    let directive = crate::config::Config::load(config)
        .map(|c| c.log_level.value)
        .unwrap_or_else(|_| std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()));
    let filter = EnvFilter::try_new(&directive).unwrap_or_else(|e| {
        eprintln!(
            "spack-installer: log level `{directive}` is not valid ({e}); using `info`. \
             Fix `log_level` in the config or $RUST_LOG (e.g. `info`, `debug`, `spack_installer=debug`)."
        );
        EnvFilter::new("info")
    });
    let (filter, handle) = reload::Layer::new(filter);
    let _ = LEVEL.set(handle);
    let fmt = tracing_subscriber::fmt::layer()
        .fmt_fields(escaped_fields())
        .with_writer(std::io::stderr);
    if stderr_is_journal()
        && let Ok(journal) = Journal::connect()
    {
        tracing_subscriber::registry()
            .with(filter)
            .with(journal)
            .init();
    } else if std::io::stderr().is_terminal() {
        tracing_subscriber::registry().with(filter).with(fmt).init();
    } else if stderr_is_file() {
        // A log file (`worker start --log FILE`) has no times of its own: keep ours.
        tracing_subscriber::registry()
            .with(filter)
            .with(fmt.with_ansi(false))
            .init();
    } else {
        tracing_subscriber::registry()
            .with(filter)
            .with(fmt.without_time().with_ansi(false))
            .init();
    }
}

/// The fields of an event as the default format writes them (`message key=value ...`,
/// string values quoted), with user text escaped by [`printable_log`]: job names, file
/// names, reasons and link targets reach the log, and an admin's terminal must not obey
/// the control characters in them.
fn escaped_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let text = format!("{value:?}");
        if field.name() == "message" {
            write!(w, "{}", printable_log(&text))
        } else {
            write!(w, "{}={}", field.name(), printable_log(&text))
        }
    })
    .delimited(" ")
}

/// Change the level while running (`log_level` after a config reload). An invalid
/// directive changes nothing and says why.
pub fn set_level(directive: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(directive)
        .map_err(|e| format!("log level `{directive}` is not valid ({e})"))?;
    match LEVEL.get() {
        Some(h) => h.reload(filter).map_err(|e| e.to_string()),
        None => Ok(()),
    }
}

/// Is stderr a regular file (a log file, not a pipe or the journal's socket)?
fn stderr_is_file() -> bool {
    std::fs::metadata("/proc/self/fd/2").is_ok_and(|m| m.is_file())
}

/// `JOURNAL_STREAM` is `DEVICE:INODE` of the journal stream systemd connected to our
/// stdout/stderr (systemd.exec(5)); it is only ours if stderr is still that stream, not
/// inherited by a process whose stderr was redirected since.
fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

/// A `tracing` layer that writes journal entries by the native protocol
/// (<https://systemd.io/JOURNAL_NATIVE_PROTOCOL/>): one datagram per event.
struct Journal {
    socket: UnixDatagram,
}

impl Journal {
    fn connect() -> std::io::Result<Journal> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(JOURNAL_SOCKET)?;
        Ok(Journal { socket })
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for Journal {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut v = Fields::default();
        event.record(&mut v);
        let meta = event.metadata();
        let priority = match *meta.level() {
            Level::ERROR => "3",
            Level::WARN => "4",
            Level::INFO => "6",
            Level::DEBUG | Level::TRACE => "7",
        };
        let mut buf = Vec::with_capacity(256);
        // Journal fields are binary-safe, but `journalctl -a` and `-o verbose` print them
        // raw to an admin's terminal: user text is escaped here as everywhere.
        let line = printable_log(&v.line);
        put(&mut buf, "MESSAGE", &line);
        put(&mut buf, "PRIORITY", priority);
        put(&mut buf, "SYSLOG_IDENTIFIER", IDENTIFIER);
        put(&mut buf, "TARGET", meta.target());
        for (name, value) in &v.fields {
            if let Some(name) = journal_field_name(name) {
                put(&mut buf, &name, &printable_log(value));
            }
        }
        // A datagram too large for the socket (a huge message) still reaches the journal,
        // as a plain line on stderr, which is the journal stream.
        if self.socket.send(&buf).is_err() {
            let level = meta.level();
            let _ = writeln!(std::io::stderr(), "{level} {line}");
        }
    }
}

/// The event's text as the terminal format writes it (`message key=value ...`), and its
/// fields one by one.
#[derive(Default)]
struct Fields {
    line: String,
    fields: Vec<(&'static str, String)>,
}

impl Fields {
    fn add(&mut self, field: &Field, value: String, shown: fmt::Arguments<'_>) {
        if field.name() == "message" {
            self.line.insert_str(0, &value);
        } else {
            let _ = write!(self.line, " {}={shown}", field.name());
            self.fields.push((field.name(), value));
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.add(field, value.to_string(), format_args!("{value:?}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        self.add(field, text.clone(), format_args!("{text}"));
    }
}

/// `job_id` → `JOB_ID`. Journal field names are `[A-Z0-9_]`, not starting with `_` (those
/// are trusted fields only journald may set) or a digit, at most 64 characters.
fn journal_field_name(name: &str) -> Option<String> {
    let n: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' => c.to_ascii_uppercase(),
            'A'..='Z' | '0'..='9' => c,
            _ => '_',
        })
        .take(64)
        .collect();
    let first = n.chars().next()?;
    (first.is_ascii_uppercase()).then_some(n)
}

/// One field in the binary-safe form: `NAME\n`, the value's length as 64-bit little
/// endian, the value, `\n`. (Values may hold newlines, so the `NAME=value\n` form is
/// not enough.)
fn put(buf: &mut Vec<u8>, name: &str, value: &str) {
    buf.extend_from_slice(name.as_bytes());
    buf.push(b'\n');
    buf.extend_from_slice(&(value.len() as u64).to_le_bytes());
    buf.extend_from_slice(value.as_bytes());
    buf.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_follow_the_journal_rules() {
        assert_eq!(journal_field_name("job_id").as_deref(), Some("JOB_ID"));
        assert_eq!(
            journal_field_name("exit-code").as_deref(),
            Some("EXIT_CODE")
        );
        assert_eq!(journal_field_name("_pid"), None);
        assert_eq!(journal_field_name("9lives"), None);
        assert_eq!(journal_field_name(&"a".repeat(80)).unwrap().len(), 64);
    }

    /// What the journal receives for the events `log` makes: one datagram, parsed.
    fn journal_entry(log: impl FnOnce()) -> std::collections::HashMap<String, String> {
        let server_dir = tempfile::tempdir().unwrap();
        let path = server_dir.path().join("journal");
        let server = UnixDatagram::bind(&path).unwrap();
        let socket = UnixDatagram::unbound().unwrap();
        socket.connect(&path).unwrap();
        let subscriber = tracing_subscriber::registry().with(Journal { socket });
        tracing::subscriber::with_default(subscriber, log);
        let mut buf = vec![0; 4096];
        let n = server.recv(&mut buf).unwrap();
        parse(&buf[..n])
    }

    #[test]
    fn entries_carry_the_line_and_each_field() {
        let entry = journal_entry(|| {
            let name = "000042-hdf5";
            tracing::warn!(job_id = 42u64, job = %name, spec = "hdf5 +mpi", "queued");
        });
        assert_eq!(
            entry["MESSAGE"],
            r#"queued job_id=42 job=000042-hdf5 spec="hdf5 +mpi""#
        );
        assert_eq!(entry["PRIORITY"], "4");
        assert_eq!(entry["JOB_ID"], "42");
        assert_eq!(entry["JOB"], "000042-hdf5");
        assert_eq!(entry["SPEC"], "hdf5 +mpi");
        assert_eq!(entry["SYSLOG_IDENTIFIER"], "spack-installer");
    }

    #[test]
    fn user_text_in_entries_is_escaped() {
        let entry = journal_entry(|| {
            let file = "x\x1b[2J\nowner alice\u{202e}.toml";
            tracing::warn!(file = %file, "rejected {file}");
        });
        for v in [&entry["MESSAGE"], &entry["FILE"]] {
            assert!(!v.contains(['\x1b', '\n', '\u{202e}']), "{v:?}");
            assert!(v.contains("x\\e[2J\\nowner alice\\u{202e}.toml"), "{v:?}");
        }
    }

    /// Read the binary-safe form back.
    fn parse(mut b: &[u8]) -> std::collections::HashMap<String, String> {
        let mut m = std::collections::HashMap::new();
        while !b.is_empty() {
            let nl = b.iter().position(|&c| c == b'\n').unwrap();
            let name = String::from_utf8(b[..nl].to_vec()).unwrap();
            let len = u64::from_le_bytes(b[nl + 1..nl + 9].try_into().unwrap()) as usize;
            let value = String::from_utf8(b[nl + 9..nl + 9 + len].to_vec()).unwrap();
            assert_eq!(b[nl + 9 + len], b'\n');
            m.insert(name, value);
            b = &b[nl + 10 + len..];
        }
        m
    }
}
