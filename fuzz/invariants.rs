//! What must hold for every input the job-file parsers accept, whatever the bytes. Shared
//! by the cargo-fuzz target (`fuzz/fuzz_targets/jobfile.rs`, nightly) and the proptest
//! run on stable (`tests/fuzz_jobfile.rs`), so both check the same promises:
//!
//! - no parser panics, on any bytes;
//! - an accepted spec is printable ASCII of at most 1024 bytes that does not start with
//!   `-` (Spack would read an option); its canonical form, the one argument Spack gets,
//!   starts with a package name (never `-` or a space), holds no compiler-flag key and no
//!   `dev_path` in any case or form, no quote, no `:=`, no path (a `/` only as `/hash`,
//!   nothing ending `.json`/`.yaml`/`.yml`), and re-parses to itself with the same AST;
//! - every package name that can reach a file name (the spec's package, `dependencies`)
//!   is `[a-z0-9][a-z0-9_-]*`, at most 64 bytes, so it survives `sanitize_package`
//!   unchanged and a job file name can never hold `/`, `..` or a leading `-`/`.`;
//! - durations are within 1 second and 30 days, notes and reasons carry no control
//!   characters (beyond newline and tab in a note), IDs are positive;
//! - the canonical record the worker writes from an accepted file reads back equal.

#![allow(dead_code)]

use spack_installer::job::id::sanitize_package;
use spack_installer::job::{
    Body, Job, JobFile, JobId, JobName, MAX_DURATION, MAX_NOTE_LEN, Meta, Request, RequestFile,
    Spec, State, StateInfo, Submission,
};
use spack_installer::time::Timestamp;
use std::time::Duration;

const MAX_SPEC_LEN: usize = 1024;
const MAX_PACKAGE_LEN: usize = 64;

fn is_package_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_PACKAGE_LEN
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A file name made from this package is one plain name inside its directory.
fn safe_file_name(name: &str) {
    assert!(!name.contains('/'), "file name {name:?} has a slash");
    assert!(!name.contains(".."), "file name {name:?} has `..`");
    assert!(
        !name.starts_with('.') && !name.starts_with('-'),
        "file name {name:?}"
    );
    assert!(name.len() < 255, "file name {name:?} is too long");
}

fn duration_ok(what: &str, d: Option<Duration>) {
    if let Some(d) = d {
        assert!(
            d >= Duration::from_secs(1) && d <= MAX_DURATION,
            "{what} = {d:?} out of range"
        );
    }
}

const FLAG_KEYS: [&str; 7] = [
    "dev_path", "cflags", "cxxflags", "fflags", "cppflags", "ldflags", "ldlibs",
];

/// What Spack is given: the canonical form of an accepted spec.
pub fn check_canonical(spec: &Spec) {
    let c = spec.canonical();
    assert!(!c.is_empty(), "empty canonical form of {:?}", spec.as_str());
    assert!(
        !c.starts_with('-') && !c.starts_with(' ') && !c.ends_with(' ') && !c.contains("  "),
        "canonical {c:?}"
    );
    assert!(
        c.chars().all(|ch| (' '..='~').contains(&ch)),
        "canonical {c:?} has a control or non-ASCII character"
    );
    assert!(
        !c.contains(['"', '\'', '\\', '`', '$', ';']),
        "canonical {c:?} has a quote or shell character"
    );
    assert!(!c.contains(":="), "canonical {c:?} has `:=`");
    let lower = c.to_ascii_lowercase();
    for word in lower.split(' ') {
        // A key (`key=…`, `key==…`) or a variant (`+key`, `~~key`); a package may be
        // called anything.
        let variant = word.starts_with(['+', '~']);
        let word = word.trim_start_matches(['+', '~', '^', '%', '[']);
        if variant || word.contains('=') {
            let key = word.split('=').next().unwrap_or("");
            assert!(!FLAG_KEYS.contains(&key), "canonical {c:?} sets `{key}`");
        }
        for ext in [".json", ".yaml", ".yml"] {
            assert!(!word.ends_with(ext), "canonical {c:?} names a file");
        }
        if let Some(at) = word.find('/') {
            assert!(
                at == 0 && word[1..].bytes().all(|b| b.is_ascii_alphanumeric()),
                "canonical {c:?} has a path `{word}`"
            );
        }
    }
    let first = c.split(['@', ' ']).next().unwrap();
    assert!(
        first.split('.').all(is_package_name) && first.rsplit('.').next() == Some(spec.package()),
        "canonical {c:?} does not start with its package {:?}",
        spec.package()
    );
    let again = Spec::parse(c).unwrap_or_else(|e| panic!("canonical {c:?} is refused: {e}"));
    assert_eq!(again.canonical(), c, "canonical form is not a fixed point");
    assert_eq!(again.root(), spec.root(), "{c:?} re-parses differently");
    assert_eq!(again.dependencies(), spec.dependencies(), "{c:?}");
}

/// Everything an accepted submission must satisfy.
pub fn check_submission(s: &Submission) {
    let spec = s.spec.as_str();
    assert!(
        !spec.trim().is_empty() && spec.len() <= MAX_SPEC_LEN,
        "spec length: {spec:?}"
    );
    assert!(
        !spec.trim_start().starts_with('-'),
        "spec starts with `-`: {spec:?}"
    );
    assert!(
        spec.chars().all(|c| (' '..='~').contains(&c)),
        "spec has a control or non-ASCII character: {spec:?}"
    );
    check_canonical(&s.spec);
    let package = s.spec.package();
    assert!(is_package_name(package), "package {package:?} of {spec:?}");
    assert_eq!(sanitize_package(package), package, "package not sanitised");
    for id in [1, 42, 999_999, 1_234_567] {
        let name = JobName::new(JobId(id), package);
        assert_eq!(name.package, package);
        safe_file_name(&name.file_name());
        safe_file_name(&name.log_name());
    }
    for d in &s.dependencies {
        assert!(is_package_name(d), "dependency {d:?}");
        assert_ne!(d, package, "a job depends on itself");
    }
    for a in &s.after {
        assert!(a.0 > 0, "after = {a:?}");
    }
    if let Some(r) = s.retry_of {
        assert!(r.0 > 0, "retry_of = {r:?}");
    }
    duration_ok("estimated_time", s.estimated_time);
    duration_ok("timeout", s.timeout);
    if let Some(n) = &s.note {
        assert!(n.len() <= MAX_NOTE_LEN, "note too long");
        assert!(
            !n.chars().any(|c| c.is_control() && c != '\n' && c != '\t'),
            "note has control characters: {n:?}"
        );
    }
}

/// The record the worker writes for an accepted submission reads back as the same job.
pub fn check_record_round_trip(s: &Submission) {
    let job = Job {
        meta: Meta {
            id: JobId(42),
            name: JobName::new(JobId(42), s.spec.package()).to_string(),
            package: s.spec.package().to_string(),
            owner_uid: 1001,
            owner: "alice".into(),
            submitted_at: Timestamp(1_700_000_000),
            ticket: "t1.2.3.toml".into(),
        },
        state: StateInfo::new(State::Pending, Timestamp(1_700_000_001)),
        body: Body::Valid(s.clone()),
    };
    let text = job.to_toml();
    let back = Job::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(back, job, "record does not round-trip:\n{text}");
    // A record is not a submission: the worker-only sections are refused at intake.
    assert!(
        JobFile::parse_and_validate(&text).is_err(),
        "a file with [job] and [state] was accepted as a submission:\n{text}"
    );
}

pub fn check_request(r: &Request) {
    match r {
        Request::Cancel(id) | Request::Priority(id, _) => assert!(id.0 > 0, "job = {id:?}"),
        Request::Pause(Some(reason)) => {
            assert!(reason.len() <= MAX_NOTE_LEN, "reason too long");
            assert!(
                !reason.chars().any(char::is_control),
                "reason has control characters: {reason:?}"
            );
        }
        Request::Pause(None) | Request::Resume => {}
    }
}

/// Throw `text` at every parser the worker runs on files from `incoming/` or the state
/// directories, and check what they accept.
pub fn check_text(text: &str) {
    if let Ok(s) = JobFile::parse_and_validate(text) {
        check_submission(&s);
        check_record_round_trip(&s);
    }
    if let Ok(r) = RequestFile::parse_and_validate(text) {
        check_request(&r);
    }
    if let Ok(job) = Job::from_toml(text) {
        // A record names its files by ID and sanitised package, never by its text.
        safe_file_name(&job.name().file_name());
        safe_file_name(&job.name().log_name());
        if let Body::Valid(s) = &job.body {
            check_submission(s);
        }
    }
}

/// Raw bytes, as the worker gets them: it refuses anything that is not UTF-8.
pub fn check_bytes(bytes: &[u8]) {
    if let Ok(text) = std::str::from_utf8(bytes) {
        check_text(text);
    }
    // The lossy form is what a rejected record keeps; it must not trip a parser either.
    check_text(&String::from_utf8_lossy(bytes));
}
