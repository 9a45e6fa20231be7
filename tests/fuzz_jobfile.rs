//! Fuzzing the job-file parsers on stable Rust: arbitrary bytes, TOML assembled from
//! hostile fragments, and byte-level mutations of the seed files in `fuzz/seeds/` are
//! thrown at `JobFile::parse_and_validate`, `RequestFile::parse_and_validate` and
//! `Job::from_toml`. None may panic, and whatever they accept must keep the promises in
//! `fuzz/invariants.rs` (the same checks the cargo-fuzz target makes on nightly).
//!
//! The run is bounded by a case count: `FUZZ_CASES` (default 2000 per strategy) for a
//! longer run, e.g. `FUZZ_CASES=200000 cargo test --release --test fuzz_jobfile`.

#[path = "../fuzz/invariants.rs"]
mod invariants;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// Run `strategy` through `check` (which asserts the invariants and returns the bytes it
/// tried), and count the inputs that were valid job files: a run that never reaches the
/// validator past the TOML parser proves little, so each generator must produce some.
fn fuzz_and_count<S: Strategy>(strategy: S, what: &str, check: impl Fn(S::Value) -> Vec<u8>) {
    let ok = AtomicU32::new(0);
    runner()
        .run(&strategy, |input| {
            let bytes = check(input);
            if std::str::from_utf8(&bytes)
                .is_ok_and(|t| spack_installer::job::JobFile::parse_and_validate(t).is_ok())
            {
                ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
        .unwrap();
    assert!(ok.load(Ordering::Relaxed) > 0, "no {what} was valid");
}

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    })
}

fn seeds() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let mut v: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    v.sort();
    assert!(v.len() >= 10, "the seed corpus is missing");
    v
}

/// Values an attacker would try, in TOML syntax.
const VALUES: &[&str] = &[
    "\"zlib\"",
    "\"hdf5@1.14 +mpi ^openmpi\"",
    "\"builtin.zlib\"",
    "\"--help\"",
    "\"-j64 zlib\"",
    "\" zlib\"",
    "\"zlib \"",
    "\"../../etc\"",
    "\"..\"",
    "\".zlib\"",
    "\"zlib/../../x\"",
    "\"a\\u0000b\"",
    "\"zlib\\nhdf5\"",
    "\"zlib\\u001b[2J\"",
    "\"zl\\u00edb\"",
    "\"ZLIB\"",
    "\"zlib hdf5\"",
    "\"zlib ^ hdf5\"",
    "\"zlib % gcc\"",
    "\"\"",
    "\"high\"",
    "\"medium\"",
    "\"low\"",
    "\"45m\"",
    "\"0s\"",
    "\"31days\"",
    "\"1h 30m\"",
    "\"000042-hdf5\"",
    "\"cancel\"",
    "\"priority\"",
    "\"pause\"",
    "\"resume\"",
    "0",
    "1",
    "-1",
    "42",
    "2592000",
    "2592001",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551616",
    "1.5",
    "nan",
    "inf",
    "true",
    "1979-05-27T07:32:00Z",
    "[]",
    "[\"zlib\"]",
    "[\"../x\", \"zlib\"]",
    "[41, \"000040\"]",
    "[0]",
    "[-3]",
    "[\"abc\"]",
    "{ a = 1 }",
    "'''raw'''",
    "\"\"\"multi\nline\"\"\"",
];

const KEYS: &[&str] = &[
    "spec",
    "priority",
    "dependencies",
    "after",
    "estimated_time",
    "timeout",
    "note",
    "retry_of",
    "mail",
    "request",
    "job",
    "reason",
    "original",
    "owner",
    "owner_uid",
    "state",
    "id",
    "name",
    "package",
    "spec.x",
    "\"spec\"",
];

const HEADERS: &[&str] = &["[job]", "[state]", "[[job]]", "[spec]", "[x]"];

/// Valid job files, each a start for hostile lines to follow.
const VALID_JOBS: &[&str] = &[
    "spec = \"zlib\"",
    "spec = \"hdf5@1.14 +mpi ^openmpi\"\npriority = \"high\"\ndependencies = [\"zlib\"]",
    "spec = \"builtin.py-numpy@1.26%gcc@12 ^ openblas\"\npriority = \"low\"\nestimated_time = 90",
    "note = \"first\"\nspec = \"cmake@3.27\"\nafter = [41]\ntimeout = \"1h 30m\"",
];

/// A TOML-ish document built from hostile keys, values and section headers; a quarter of
/// them start as a valid job file and take up to two hostile lines after it (how most
/// broken files look), so valid documents are common enough to count.
fn document() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        6 => (prop::sample::select(KEYS), prop::sample::select(VALUES))
            .prop_map(|(k, v)| format!("{k} = {v}")),
        1 => prop::sample::select(HEADERS).prop_map(String::from),
        1 => "[ -~]{0,40}",
        1 => any::<String>().prop_map(|s| s.chars().take(40).collect()),
    ]
    .boxed();
    let hostile = prop::collection::vec(line.clone(), 0..12).prop_map(|lines| lines.join("\n"));
    let valid_then_hostile = (
        prop::sample::select(VALID_JOBS),
        prop::collection::vec(line, 0..3),
    )
        .prop_map(|(job, lines)| {
            std::iter::once(job.to_string())
                .chain(lines)
                .collect::<Vec<_>>()
                .join("\n")
        });
    prop_oneof![3 => hostile, 1 => valid_then_hostile]
}

/// A seed with a few bytes changed, inserted or removed.
fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    #[derive(Debug, Clone)]
    enum Edit {
        Set(usize, u8),
        Insert(usize, Vec<u8>),
        Remove(usize, usize),
    }
    let edit = prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        (
            any::<usize>(),
            prop_oneof![
                prop::collection::vec(any::<u8>(), 1..8),
                prop::sample::select(VALUES).prop_map(|v| v.as_bytes().to_vec()),
                Just(b"-".to_vec()),
                Just(b"../".to_vec()),
                Just(b"\n[job]\nowner = \"alice\"\n".to_vec()),
            ]
        )
            .prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Edit::Remove(i, n)),
    ];
    (
        prop::sample::select(seeds),
        prop::collection::vec(edit, 1..6),
    )
        .prop_map(|(mut bytes, edits)| {
            for e in edits {
                let len = bytes.len();
                match e {
                    Edit::Set(i, b) if len > 0 => bytes[i % len] = b,
                    Edit::Set(..) => bytes.push(0),
                    Edit::Insert(i, b) => {
                        let at = i % (len + 1);
                        bytes.splice(at..at, b);
                    }
                    Edit::Remove(i, n) if len > 0 => {
                        let at = i % len;
                        bytes.drain(at..(at + n).min(len));
                    }
                    Edit::Remove(..) => {}
                }
            }
            bytes
        })
}

#[test]
fn the_seeds_themselves_keep_the_invariants() {
    let mut accepted = 0;
    for s in seeds() {
        invariants::check_bytes(&s);
        let text = String::from_utf8(s).unwrap();
        if spack_installer::job::JobFile::parse_and_validate(&text).is_ok() {
            accepted += 1;
        }
    }
    // The corpus holds both good and hostile files, or the mutations start nowhere.
    assert!(accepted >= 3, "only {accepted} seeds are valid job files");
}

#[test]
fn arbitrary_bytes_never_panic_and_never_pass_a_bad_spec() {
    runner()
        .run(&prop::collection::vec(any::<u8>(), 0..512), |bytes| {
            invariants::check_bytes(&bytes);
            Ok(())
        })
        .unwrap();
}

#[test]
fn hostile_toml_documents_never_panic_and_never_pass_a_bad_spec() {
    fuzz_and_count(document(), "generated document", |text| {
        invariants::check_text(&text);
        text.into_bytes()
    });
}

#[test]
fn mutated_seeds_never_panic_and_never_pass_a_bad_spec() {
    fuzz_and_count(mutated(seeds()), "mutated seed", |bytes| {
        invariants::check_bytes(&bytes);
        bytes
    });
}

#[test]
fn arbitrary_specs_are_accepted_only_when_safe() {
    // Printable and not-so-printable strings straight into the spec field.
    let spec = prop_oneof![
        "[a-z0-9@%^+~=., _/-]{1,40}",
        "[ -~]{0,40}",
        any::<String>().prop_map(|s| s.chars().take(40).collect()),
    ];
    fuzz_and_count(
        (spec, prop::collection::vec("[a-z0-9./_-]{0,12}", 0..4)),
        "generated spec",
        |(spec, deps)| {
            let text = format!(
                "spec = {}\ndependencies = {}\n",
                toml::Value::String(spec),
                toml::Value::Array(deps.into_iter().map(toml::Value::String).collect())
            );
            invariants::check_text(&text);
            text.into_bytes()
        },
    );
}

/// Spack's spec tokens and the pieces of every known attack, glued with and without
/// spaces: the grammar must refuse what is unsafe however it is cut, and whatever it
/// accepts must keep the canonical-form invariants (`invariants::check_canonical`).
#[test]
fn spec_token_soup_is_accepted_only_when_safe() {
    const PIECES: &[&str] = &[
        "zlib", "hdf5", "builtin.", "py-numpy", "ZLIB", "@", "1.2", ":", ",", "=", "==", ":=",
        "git.", "v1", "+", "~", "-", "--", "++", "~~", "mpi", "shared", "^", "^[", "]", "virtuals",
        "deptypes", "build", "%", "gcc", "12", "/", "abc123", "/tmp/x", ".json", ".yaml", "\"",
        "'", "cflags", "CFLAGS", "ldlibs", "dev_path", "DEV_PATH", "-fplugin", "target", "os",
        "arch", "platform", "x86_64", "true", "*", "\\", ";", "$", " ", " ", " ",
    ];
    let accepted = AtomicU32::new(0);
    runner()
        .run(
            &prop::collection::vec(prop::sample::select(PIECES), 1..14),
            |pieces| {
                let text = pieces.concat();
                if let Ok(spec) = spack_installer::job::Spec::parse(&text) {
                    accepted.fetch_add(1, Ordering::Relaxed);
                    invariants::check_canonical(&spec);
                    let nodes = std::iter::once(spec.root())
                        .chain(spec.dependencies().iter().map(|d| &d.node));
                    for n in nodes {
                        for v in &n.variants {
                            let key = v.name.to_ascii_lowercase();
                            assert!(
                                !spack_installer::job::spec::REFUSED_KEYS.contains(&key.as_str()),
                                "{text:?} sets `{}`",
                                v.name
                            );
                        }
                    }
                    assert!(!text.contains(['"', '\'']), "{text:?} is quoted");
                }
                Ok(())
            },
        )
        .unwrap();
    assert!(
        accepted.load(Ordering::Relaxed) > 0,
        "no generated spec was valid"
    );
}
