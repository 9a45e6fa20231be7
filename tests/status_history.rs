//! `status --since` and `--limit` read only that much of the finished history: shown
//! right, and (by access times) the older records are never opened.

mod support;

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::TestSpool;

const HOUR: u64 = 3600;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn rfc3339(t: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t)).to_string()
}

/// `n` finished jobs from the worker's real record of job 1: job `i` (2..=n+1) submitted
/// `n + 1 - i` hours ago, in `done/`, or `failed/` for every tenth.
fn history(s: &TestSpool, n: u64) {
    let real: toml::Table = toml::from_str(&s.read("done/000001-zlib.toml")).unwrap();
    let t = now();
    for i in 2..=n + 1 {
        let mut r = real.clone();
        let submitted = t - (n + 1 - i) * HOUR - 60;
        let pkg = ["zlib", "cmake", "hdf5"][(i % 3) as usize];
        let name = format!("{i:06}-{pkg}");
        let failed = i.is_multiple_of(10);
        r.insert("spec".into(), pkg.into());
        if r.contains_key("canonical_spec") {
            r.insert("canonical_spec".into(), pkg.into());
        }
        let job = r["job"].as_table().unwrap().clone();
        let mut job = job;
        job.insert("id".into(), (i as i64).into());
        job.insert("name".into(), name.clone().into());
        job.insert("package".into(), pkg.into());
        job.insert("submitted_at".into(), rfc3339(submitted).into());
        r.insert("job".into(), job.into());
        let mut st = r["state"].as_table().unwrap().clone();
        st.insert(
            "state".into(),
            if failed { "failed" } else { "done" }.into(),
        );
        st.insert("started_at".into(), rfc3339(submitted + 10).into());
        st.insert("finished_at".into(), rfc3339(submitted + 50).into());
        st.insert("since".into(), rfc3339(submitted + 50).into());
        if failed {
            st.insert("exit_code".into(), 1.into());
            st.insert("reason".into(), "spack exited with code 1".into());
        }
        r.insert("state".into(), st.into());
        let dir = if failed { "failed" } else { "done" };
        fs::write(
            s.path(&format!("{dir}/{name}.toml")),
            toml::to_string(&r).unwrap(),
        )
        .unwrap();
    }
}

fn ids(out: &str) -> Vec<u64> {
    let v: serde_json::Value = serde_json::from_str(out).unwrap();
    v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_u64().unwrap())
        .collect()
}

/// Set a file's access time before its modification time: with `relatime` (the usual
/// mount option) the next read then moves it.
fn age_atime(p: &Path) {
    use nix::sys::stat::{UtimensatFlags, utimensat};
    use nix::sys::time::TimeSpec;
    let m = fs::metadata(p).unwrap();
    use std::os::unix::fs::MetadataExt;
    let old = TimeSpec::new(m.mtime() - 86_400, 0);
    let mtime = TimeSpec::new(m.mtime(), m.mtime_nsec());
    utimensat(
        nix::fcntl::AT_FDCWD,
        p,
        &old,
        &mtime,
        UtimensatFlags::FollowSymlink,
    )
    .unwrap();
}

fn atime(p: &Path) -> i64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(p).unwrap().atime()
}

#[test]
fn since_and_limit_show_and_read_only_the_newest_history() {
    let s = TestSpool::new();
    s.ok(&["submit", "zlib"]);
    s.drain();
    history(&s, 500);
    // Job 1 (just now) is the newest by time but the oldest by ID: status trusts the
    // IDs, so make its submission the oldest, as it would be.
    let mut r: toml::Table = toml::from_str(&s.read("done/000001-zlib.toml")).unwrap();
    r["job"]
        .as_table_mut()
        .unwrap()
        .insert("submitted_at".into(), rfc3339(now() - 1000 * HOUR).into());
    fs::write(
        s.path("done/000001-zlib.toml"),
        toml::to_string(&r).unwrap(),
    )
    .unwrap();

    // The last 24 hours: jobs 478..=501 (job i was submitted 501 - i hours and a minute ago).
    let got = ids(&s.ok(&["status", "--since", "24h", "--json"]));
    assert_eq!(got, (478..=501).collect::<Vec<_>>());
    let got = ids(&s.ok(&[
        "status", "--all", "--since", "1d", "--state", "failed", "--json",
    ]));
    assert_eq!(got, vec![480, 490, 500]);
    let got = ids(&s.ok(&["status", "--limit", "3", "--json"]));
    assert_eq!(got, vec![499, 500, 501]);
    let got = ids(&s.ok(&["status", "--limit", "2", "--state", "failed", "--json"]));
    assert_eq!(got, vec![490, 500]);
    let got = ids(&s.ok(&["status", "--since", "1000d", "--limit", "1000", "--json"]));
    assert_eq!(got.len(), 501);
    let human = s.ok(&["status", "--limit", "1"]);
    assert!(
        human.contains("000501") && !human.contains("000500"),
        "{human}"
    );
    let bad = s.run(&["status", "--since", "a week"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--since"));

    // Only that much is read: older records keep their access times.
    let record = |i: u64| {
        let pkg = ["zlib", "cmake", "hdf5"][(i % 3) as usize];
        let dir = if i.is_multiple_of(10) {
            "failed"
        } else {
            "done"
        };
        s.path(&format!("{dir}/{i:06}-{pkg}.toml"))
    };
    let old: Vec<_> = (2..=300u64).map(record).collect();
    let new = record(501);
    for p in old.iter().chain([&new]) {
        age_atime(p);
    }
    let before: Vec<i64> = old.iter().map(|p| atime(p)).collect();
    let new_before = atime(&new);
    s.ok(&["status", "--since", "24h", "--json"]);
    s.ok(&["status", "--limit", "50", "--json"]);
    if atime(&new) == new_before {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED the access-time check: this file system does not update atime"
        );
        return;
    }
    let after: Vec<i64> = old.iter().map(|p| atime(p)).collect();
    assert_eq!(before, after, "records older than the bound were read");
    // And --all does read them (the check can see a read).
    s.ok(&["status", "--all", "--json"]);
    assert_ne!(atime(&old[0]), before[0]);
}
