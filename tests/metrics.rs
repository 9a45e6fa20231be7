//! `metrics.prom`, read as Prometheus reads it: parsed by a real text-format parser
//! (the `prometheus-parse` crate) and, where installed, checked by Prometheus's own
//! `promtool check metrics` (else SKIPPED).

mod support;

use prometheus_parse::{Scrape, Value};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{TestSpool, wait_until};

fn scrape(path: &Path) -> Scrape {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// The value of the sample `metric` with exactly these labels among its own.
fn value(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let sample = s
        .samples
        .iter()
        .find(|x| {
            x.metric == metric
                && labels
                    .iter()
                    .all(|(k, v)| x.labels.get(k).is_some_and(|l| l == *v))
        })
        .unwrap_or_else(|| panic!("no {metric}{labels:?}"));
    match &sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        Value::Histogram(h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
        Value::Summary(_) => panic!("{metric} is a summary"),
    }
}

fn promtool_check(path: &Path) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED promtool check metrics: promtool is not installed (Debian package prometheus)"
        );
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&fs::read(path).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_worker_writes_parseable_metrics_and_counts_survive_a_restart() {
    let mut s = TestSpool::new();
    s.env.push(("SPACK_FAKE_FAIL".into(), "cmake".into()));
    s.env.push(("SPACK_FAKE_DELAYS".into(), "hdf5=1.2".into()));
    s.ok(&["submit", "zlib"]);
    s.ok(&["submit", "cmake"]);
    s.ok(&["submit", "hdf5"]);
    s.drain();
    let path = s.path("metrics.prom");
    let m = scrape(&path);
    promtool_check(&path);
    assert_eq!(
        value(
            &m,
            "spack_installer_jobs_finished_total",
            &[("state", "done")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &m,
            "spack_installer_jobs_finished_total",
            &[("state", "failed")]
        ),
        1.0
    );
    assert_eq!(
        value(&m, "spack_installer_jobs", &[("state", "pending")]),
        0.0
    );
    assert_eq!(value(&m, "spack_installer_worker_up", &[]), 0.0, "stopped");
    assert_eq!(value(&m, "spack_installer_slots", &[]), 1.0);
    // hdf5 took over a second, less than the smallest bucket (10 s): every bucket has it.
    let hdf5 = m
        .samples
        .iter()
        .find(|x| {
            x.metric == "spack_installer_install_duration_seconds"
                && x.labels.get("package") == Some("hdf5")
        })
        .expect("an install histogram for hdf5");
    let Value::Histogram(b) = &hdf5.value else {
        panic!("{:?}", hdf5.value)
    };
    assert!(b.iter().all(|c| c.count == 1.0), "{b:?}");
    assert_eq!(
        value(
            &m,
            "spack_installer_install_duration_seconds_count",
            &[("package", "hdf5")]
        ),
        1.0
    );
    assert!(
        value(
            &m,
            "spack_installer_install_duration_seconds_sum",
            &[("package", "hdf5")]
        ) >= 1.0
    );
    assert_eq!(
        value(&m, "spack_installer_queue_wait_seconds_count", &[]),
        3.0
    );
    // Readable by node_exporter running as another user; no temp file left behind.
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert!(
        !s.ls("").iter().any(|f| f.starts_with(".metrics")),
        "{:?}",
        s.ls("")
    );

    // A new worker counts on from the spool.
    s.ok(&["submit", "zlib"]);
    let w = s.spawn_worker(&[]);
    wait_until("the second zlib", Duration::from_secs(10), || {
        s.where_is("000004-zlib").as_deref() == Some("done")
    });
    s.ok(&["pause"]);
    s.ok(&["submit", "gcc"]);
    wait_until(
        "metrics of the paused queue",
        Duration::from_secs(10),
        || {
            let m = scrape(&path);
            value(&m, "spack_installer_worker_paused", &[]) == 1.0
                && value(&m, "spack_installer_jobs", &[("state", "pending")]) == 1.0
        },
    );
    let m = scrape(&path);
    promtool_check(&path);
    assert_eq!(
        value(
            &m,
            "spack_installer_jobs_finished_total",
            &[("state", "done")]
        ),
        3.0
    );
    assert_eq!(
        value(
            &m,
            "spack_installer_jobs_finished_total",
            &[("state", "failed")]
        ),
        1.0
    );
    assert_eq!(value(&m, "spack_installer_worker_up", &[]), 1.0);
    let beat = value(
        &m,
        "spack_installer_worker_heartbeat_timestamp_seconds",
        &[],
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - beat).abs() < 60.0, "{beat} vs {now}");
    drop(w);
}

#[test]
fn metrics_dir_puts_the_file_where_node_exporter_looks() {
    let tmp = tempfile::tempdir().unwrap();
    let textfile = tmp.path().join("textfile");
    fs::create_dir(&textfile).unwrap();
    let s = TestSpool::with_config(&format!("metrics_dir = \"{}\"\n", textfile.display()));
    s.ok(&["submit", "zlib"]);
    s.drain();
    let m = scrape(&textfile.join("metrics.prom"));
    assert_eq!(
        value(
            &m,
            "spack_installer_jobs_finished_total",
            &[("state", "done")]
        ),
        1.0
    );
    assert!(!s.path("metrics.prom").exists());
    let names: Vec<_> = fs::read_dir(&textfile)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["metrics.prom"]);
}
