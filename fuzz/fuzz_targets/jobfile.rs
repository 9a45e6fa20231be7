//! cargo-fuzz target for the parsers of everything the worker reads from `incoming/` and
//! the state directories: `JobFile::parse_and_validate`, `RequestFile::parse_and_validate`
//! and `Job::from_toml`. Nightly only:
//!
//!     cargo +nightly fuzz run jobfile fuzz/seeds -- -max_total_time=60
//!
//! The checks are in `fuzz/invariants.rs`, shared with the stable proptest run in
//! `tests/fuzz_jobfile.rs`.
#![no_main]

#[path = "../invariants.rs"]
mod invariants;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    invariants::check_bytes(data);
});
