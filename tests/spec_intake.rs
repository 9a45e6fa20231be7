//! The spec grammar end to end, with the real binary and a real spool: specs Spack reads
//! are queued and Spack is given their canonical form; a spec written two ways is one
//! duplicate; specs Spack cannot parse are refused at `submit`, naming the token.

mod support;

use std::time::Duration;
use support::{TestSpool, wait_until};

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn specs_spack_reads_are_queued_and_spack_is_given_their_canonical_form() {
    let s = TestSpool::new();
    s.drop_file("a.toml", "spec = \"zlib + mpi\"\n");
    s.drop_file("b.toml", "spec = \"cmake@ 3.27 ~ doc\"\n");
    s.drop_file("c.toml", "spec = \"hdf5 ^[virtuals=mpi] openmpi\"\n");
    s.drain();
    assert_eq!(s.ls("failed"), Vec::<String>::new(), "nothing is refused");
    let mut given: Vec<String> = s
        .installs()
        .iter()
        .map(|a| a.last().unwrap().clone())
        .collect();
    given.sort();
    assert_eq!(
        given,
        vec![
            "cmake@3.27 ~doc",
            "hdf5 ^[virtuals=mpi] openmpi",
            "zlib +mpi"
        ]
    );
    // The record keeps what was submitted, for people, and what Spack ran.
    let done = s.ls("done");
    let zlib = done.iter().find(|f| f.contains("zlib")).unwrap();
    let rec = s.read(&format!("done/{zlib}"));
    assert!(rec.contains("spec = \"zlib + mpi\""), "{rec}");
    assert!(rec.contains("canonical_spec = \"zlib +mpi\""), "{rec}");
    let name = zlib.trim_end_matches(".toml");
    let shown = json(&s.ok(&["show", "--json", name]));
    assert_eq!(shown["spec"], "zlib + mpi", "{shown}");
    assert_eq!(
        shown["argv"].as_array().unwrap().last().unwrap(),
        "zlib +mpi",
        "{shown}"
    );
}

#[test]
fn a_pending_job_shows_the_canonical_argv_that_will_run() {
    let s = TestSpool::new();
    let w = s.spawn_worker(&[]);
    s.ok(&["pause"]);
    s.ok(&["submit", "py-numpy @1.26 %gcc @12 + blas"]);
    wait_until("one pending", Duration::from_secs(10), || {
        s.ls("pending").len() == 1
    });
    drop(w);
    let shown = json(&s.ok(&["show", "--json", "1"]));
    assert_eq!(shown["spec"], "py-numpy @1.26 %gcc @12 + blas", "{shown}");
    assert_eq!(
        shown["argv"].as_array().unwrap().last().unwrap(),
        "py-numpy@1.26 +blas %gcc@12",
        "{shown}"
    );
}

#[test]
fn a_spec_written_two_ways_is_one_duplicate() {
    let s = TestSpool::new();
    let w = s.spawn_worker(&[]);
    s.ok(&["pause"]);
    s.ok(&["submit", "zlib@1.3"]);
    wait_until("one pending", Duration::from_secs(10), || {
        s.ls("pending").len() == 1
    });
    for same in ["zlib @1.3", "zlib @ 1.3", "zlib@1.3 "] {
        let dup = json(&s.ok(&["submit", "--json", same]));
        assert_eq!(dup["outcome"], "duplicate", "{same:?}: {dup}");
        assert_eq!(dup["job"], "000001-zlib", "{same:?}: {dup}");
    }
    let other = json(&s.ok(&["submit", "--json", "zlib@1.3 +pic"]));
    assert_eq!(other["outcome"], "accepted", "{other}");
    drop(w);
}

#[test]
fn specs_spack_cannot_parse_are_refused_at_submit_naming_the_token() {
    let s = TestSpool::new();
    for (spec, token) in [
        ("zlib@@1", "`@` (column 5)"),
        ("zlib %%gcc", "`%%` (column 6)"),
        ("zlib +shared +shared", "`+shared` (column 14)"),
        ("zlib cflags=\"-O3\"", "`cflags=\"-O3\"` (column 6)"),
    ] {
        let out = s.run(&["submit", spec]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{spec:?} was accepted");
        assert!(err.contains(token), "{spec:?}: {err}");
    }
    assert_eq!(s.ls("incoming"), Vec::<String>::new(), "nothing was queued");
}
