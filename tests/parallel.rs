//! Parallel installs end to end: the real worker with `max_parallel = 2`, the fake Spack
//! recording when each install starts and ends (nanoseconds), and a real dependency
//! graph. Independent jobs overlap; a job and what it depends on never do, nor two jobs
//! of one package. Only the order of the recorded events is asserted, never a speed.

mod support;

use std::collections::HashMap;
use support::TestSpool;

/// One install as the fake Spack recorded it.
#[derive(Debug, Clone)]
struct Span {
    package: String,
    start: u128,
    end: u128,
}

fn spans(s: &TestSpool) -> Vec<Span> {
    let text = std::fs::read_to_string(s.dir.path().join("events.log")).unwrap();
    let mut open: HashMap<String, (String, u128)> = HashMap::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (kind, pkg, pid, ns) = (f[0], f[1], f[2], f[3].parse::<u128>().unwrap());
        match kind {
            "start" => {
                open.insert(pid.to_string(), (pkg.to_string(), ns));
            }
            "end" => {
                let (package, start) = open.remove(pid).expect("an end after its start");
                out.push(Span {
                    package,
                    start,
                    end: ns,
                });
            }
            other => panic!("unknown event {other}"),
        }
    }
    assert!(open.is_empty(), "installs that never ended: {open:?}");
    out
}

fn overlap(a: &Span, b: &Span) -> bool {
    a.start < b.end && b.start < a.end
}

#[test]
fn two_builders_overlap_independent_jobs_and_never_related_ones() {
    let mut s = TestSpool::with_config("max_parallel = 2\n");
    s.env.push((
        "SPACK_FAKE_DELAYS".into(),
        "zlib=0.4,bzip2=0.4,boost=0.4,hdf5=0.3,netcdf-c=0.3".into(),
    ));
    s.ok(&["submit", "zlib"]);
    s.ok(&["submit", "bzip2"]);
    s.ok(&["submit", "-d", "zlib", "hdf5"]);
    s.ok(&["submit", "-d", "hdf5", "-d", "bzip2", "netcdf-c"]);
    s.ok(&["submit", "boost"]);
    // The same package again (another variant): never beside the first.
    s.ok(&["submit", "zlib~shared"]);
    s.drain();
    assert_eq!(
        s.ls("done").len(),
        6,
        "{:?} {:?}",
        s.ls("done"),
        s.ls("failed")
    );

    let hdf5 = s.read("done/000003-hdf5.toml");
    assert!(hdf5.contains("dependencies = [\"zlib\"]"), "{hdf5}");
    let all = spans(&s);
    assert_eq!(all.len(), 6, "{all:?}");
    let of = |p: &str| {
        all.iter()
            .filter(|x| x.package == p)
            .cloned()
            .collect::<Vec<_>>()
    };
    let depends = [
        ("hdf5", "zlib"),
        ("netcdf-c", "hdf5"),
        ("netcdf-c", "bzip2"),
    ];
    for (job, dep) in depends {
        for j in of(job) {
            for d in of(dep) {
                assert!(
                    d.end <= j.start,
                    "{job} started before {dep} ended: {all:?}"
                );
            }
        }
    }
    let zlibs = of("zlib");
    assert_eq!(zlibs.len(), 2);
    assert!(
        !overlap(&zlibs[0], &zlibs[1]),
        "two zlib installs at once: {all:?}"
    );
    // Never more than two at once, and independent work did overlap.
    let mut pairs = 0;
    for (i, a) in all.iter().enumerate() {
        let at_once = all
            .iter()
            .filter(|b| b.start <= a.start && a.start < b.end)
            .count();
        assert!(
            at_once <= 2,
            "more than max_parallel installs at once: {all:?}"
        );
        pairs += all[i + 1..].iter().filter(|b| overlap(a, b)).count();
    }
    assert!(
        pairs >= 1,
        "no two installs overlapped with max_parallel = 2: {all:?}"
    );
}
