//! The benchmarks of issue 9: spack-installer against nq, task-spooler and the floor the
//! file system sets, in one run. Prints a table and regenerates BENCHMARKS.md.
//!
//! Run it through `bench/run.sh` (which installs the peers, builds everything and passes
//! the paths); `--quick` is the short form CI runs. A number never fails the run: a
//! measurement that cannot be made is reported as `n/a` with the reason.

mod rank;
mod util;

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use util::{count, median, ms, percentile, run, run_ok, sample, sh, wait_until};

const USAGE: &str = "usage: spack-installer-bench [--quick] --bin SPACK_INSTALLER --noop NOOP --floor FLOOR \
                     --work DIR [--shm DIR] [--report BENCHMARKS.md] [--command TEXT]";

struct Opts {
    quick: bool,
    bin: PathBuf,
    noop: PathBuf,
    floor: PathBuf,
    work: PathBuf,
    shm: Option<PathBuf>,
    report: Option<PathBuf>,
    command: String,
}

/// Counts of the quick and the full form.
struct Sizes {
    submit_n: usize,
    pickup_n: usize,
    drain_n: usize,
    status_done: usize,
    status_pending: usize,
    status_reps: usize,
    idle_secs: u64,
    rank_reps: usize,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                submit_n: 40,
                pickup_n: 25,
                drain_n: 200,
                status_done: 10_000,
                status_pending: 1_000,
                status_reps: 3,
                idle_secs: 10,
                rank_reps: 3,
            }
        } else {
            Sizes {
                submit_n: 300,
                pickup_n: 200,
                drain_n: 1_000,
                status_done: 100_000,
                status_pending: 1_000,
                status_reps: 5,
                idle_secs: 60,
                rank_reps: 7,
            }
        }
    }
}

/// One cell: a number for ratios (a cost: lower is better) and its text.
#[derive(Clone, Default)]
struct Cell {
    val: Option<f64>,
    text: String,
}

fn cell(val: f64, text: String) -> Cell {
    Cell {
        val: Some(val),
        text,
    }
}

fn na(why: &str) -> Cell {
    Cell {
        val: None,
        text: format!("n/a ({why})"),
    }
}

fn text(t: &str) -> Cell {
    Cell {
        val: None,
        text: t.to_string(),
    }
}

struct Row {
    what: String,
    ours: Cell,
    nq: Cell,
    tsp: Cell,
    floor: Cell,
}

struct Target {
    text: String,
    met: Option<bool>,
    evidence: String,
}

#[derive(Default)]
struct Report {
    rows: Vec<(String, Vec<Row>)>,
    targets: Vec<Target>,
    notes: Vec<String>,
    commands: Vec<String>,
    /// fsync calls per job: intake, run.
    fsyncs: Option<(f64, f64)>,
    /// Figures the analysis quotes, by key.
    figs: std::collections::HashMap<&'static str, f64>,
}

impl Report {
    fn section(&mut self, title: &str) {
        println!("== {title}");
        self.rows.push((title.to_string(), Vec::new()));
    }
    fn row(&mut self, what: &str, ours: Cell, nq: Cell, tsp: Cell, floor: Cell) {
        println!(
            "   {what}: ours {} | nq {} | tsp {} | floor {}",
            ours.text, nq.text, tsp.text, floor.text
        );
        self.rows.last_mut().expect("a section").1.push(Row {
            what: what.to_string(),
            ours,
            nq,
            tsp,
            floor,
        });
    }
    fn target(&mut self, text: &str, met: Option<bool>, evidence: String) {
        println!(
            "   target: {text}: {} ({evidence})",
            match met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "not measured",
            }
        );
        self.targets.push(Target {
            text: text.to_string(),
            met,
            evidence,
        });
    }
    fn note(&mut self, n: String) {
        println!("   note: {n}");
        self.notes.push(n);
    }
    fn fig(&mut self, k: &'static str, v: Option<f64>) {
        if let Some(v) = v {
            self.figs.insert(k, v);
        }
    }
    fn cmd(&mut self, c: &str) {
        self.commands.push(c.to_string());
    }
}

fn ms_cell(v: &[f64]) -> Cell {
    if v.is_empty() {
        return na("no samples");
    }
    let m = median(v);
    cell(m, format!("{:.2} ms (p99 {:.2})", m, percentile(v, 99.0)))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

// ---- a spool and its worker ---------------------------------------------------------

struct Spool {
    root: PathBuf,
    config: PathBuf,
    bin: PathBuf,
}

impl Spool {
    fn create(o: &Opts, root: PathBuf, extra_config: &str) -> Result<Spool, String> {
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.parent().expect("a parent")).map_err(|e| e.to_string())?;
        let config = root.with_extension("config.toml");
        fs::write(
            &config,
            format!("spack = \"{}\"\n{extra_config}", o.noop.display()),
        )
        .map_err(|e| format!("write {}: {e}", config.display()))?;
        let s = Spool {
            root,
            config,
            bin: o.bin.clone(),
        };
        run_ok(&mut s.cmd(&["init"]))?;
        Ok(s)
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--spool")
            .arg(&self.root)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("SPACK_INSTALLER_SPOOL")
            .env_remove("SPACK_INSTALLER_CONFIG")
            .stderr(Stdio::null());
        c
    }
    fn dir(&self, d: &str) -> PathBuf {
        self.root.join(d)
    }
    /// Start `worker run ARGS` with `env`, its log in `<spool>.worker.log`, and wait until
    /// it is serving.
    fn worker(&self, args: &[&str], env: &[(&str, &Path)]) -> Result<Child, String> {
        let log = self.root.with_extension("worker.log");
        let f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| e.to_string())?;
        let mut all = vec!["worker", "run"];
        all.extend_from_slice(args);
        let mut c = self.cmd(&all);
        for (k, v) in env {
            c.env(k, v);
        }
        // The worker dies with the harness, however the harness ends.
        unsafe {
            use std::os::unix::process::CommandExt;
            c.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = c
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .map_err(|e| format!("cannot start the worker: {e}"))?;
        let status = self.root.join("worker.toml");
        let pid = child.id();
        let up = wait_until(Duration::from_secs(15), Duration::from_millis(5), || {
            fs::read_to_string(&status)
                .is_ok_and(|s| s.contains(&format!("pid = {pid}")) && !s.contains("\"starting\""))
        });
        if !up {
            let mut child = child;
            stop(&mut child);
            return Err(format!("the worker did not start; see {}", log.display()));
        }
        Ok(child)
    }
}

/// SIGTERM, then SIGKILL after 10 s.
fn stop(child: &mut Child) {
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let done = wait_until(Duration::from_secs(10), Duration::from_millis(10), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !done {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> bool {
    wait_until(limit, Duration::from_micros(200), || {
        matches!(child.try_wait(), Ok(Some(_)))
    })
}

// ---- peers --------------------------------------------------------------------------

fn nq(dir: &Path) -> Command {
    let mut c = Command::new("nq");
    c.env("NQDIR", dir).stderr(Stdio::null());
    c
}

/// A task-spooler with its own socket and temp dir (for its output files).
struct Tsp {
    socket: PathBuf,
    tmp: PathBuf,
}

impl Tsp {
    fn new(work: &Path, name: &str) -> Tsp {
        let tmp = work.join(format!("{name}.tmp"));
        let _ = fs::remove_dir_all(&tmp);
        let _ = fs::create_dir_all(&tmp);
        Tsp {
            socket: work.join(format!("{name}.sock")),
            tmp,
        }
    }
    fn cmd(&self) -> Command {
        let mut c = Command::new("tsp");
        c.env("TS_SOCKET", &self.socket)
            .env("TS_SLOTS", "1")
            .env("TS_MAXCONN", "4000")
            .env("TMPDIR", &self.tmp)
            .stderr(Stdio::null());
        c
    }
    /// The server's pid: the tsp process whose environment names our socket.
    fn server_pid(&self) -> Option<u32> {
        let want = format!("TS_SOCKET={}", self.socket.display());
        for e in fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() != "tsp" {
                continue;
            }
            let env = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            if env.split(|&b| b == 0).any(|v| v == want.as_bytes()) {
                return Some(pid);
            }
        }
        None
    }
    fn kill(&self) {
        let _ = run(self.cmd().arg("-K"), false);
    }
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

// ---- 1. submit latency --------------------------------------------------------------

fn bench_submit(o: &Opts, z: &Sizes, r: &mut Report) {
    r.section(&format!(
        "1. Submit latency: wall time of one process, median of {}",
        z.submit_n
    ));
    let n = z.submit_n;
    let warm = 5;
    // Every tool takes its turn within each round, so all see the same disk and load.
    let mut job_text = String::new();
    let ours_spool = Spool::create(o, o.work.join("submit"), "").and_then(|s| {
        job_text = template_text(&s)?;
        Ok(s)
    });
    let shm_spool = o
        .shm
        .as_ref()
        .map(|d| Spool::create(o, d.join("submit"), ""));
    let nq_dir = o.work.join("nq-submit");
    let _ = fs::remove_dir_all(&nq_dir);
    let tsp = have("tsp").then(|| Tsp::new(&o.work, "tsp-submit"));
    let tsp_up = tsp
        .as_ref()
        .map(|t| run_ok(t.cmd().args(["-S", "1"])).map(|_| ()));
    let floor_dir = o.work.join("floor");
    let shm_floor = o.shm.as_ref().map(|d| d.join("floor"));
    for d in std::iter::once(&floor_dir).chain(shm_floor.as_ref()) {
        let _ = fs::remove_dir_all(d);
        let _ = fs::create_dir_all(d);
    }
    type Step<'a> = Box<dyn Fn(usize) -> Result<util::Run, String> + 'a>;
    let mut series: Vec<(&str, Result<Step, String>, Vec<f64>)> = Vec::new();
    let jt = job_text.clone();
    series.push((
        "ours",
        match &ours_spool {
            Ok(s) => Ok(Box::new(move |i| {
                run_ok(&mut s.cmd(&["submit", "--no-wait", &format!("s{i}")]))
            })),
            Err(e) => Err(e.clone()),
        },
        vec![],
    ));
    series.push((
        "nq",
        if have("nq") {
            Ok(Box::new(|_| run_ok(nq(&nq_dir).args(["-q", "true"]))))
        } else {
            Err("nq not installed".into())
        },
        vec![],
    ));
    series.push((
        "tsp",
        match (&tsp, &tsp_up) {
            (Some(t), Some(Ok(()))) => Ok(Box::new(move |_| run_ok(t.cmd().arg("true")))),
            (_, Some(Err(e))) => Err(e.clone()),
            _ => Err("tsp not installed".into()),
        },
        vec![],
    ));
    let floor_step = |dir: PathBuf, text: String| -> Result<Step, String> {
        if text.is_empty() {
            return Err("no job text from submit".into());
        }
        Ok(Box::new(move |_| {
            run_ok(Command::new(&o.floor).arg(&dir).arg(&text))
        }))
    };
    series.push(("floor", floor_step(floor_dir.clone(), jt.clone()), vec![]));
    series.push((
        "true",
        Ok(Box::new(|_| run_ok(&mut Command::new("/bin/true")))),
        vec![],
    ));
    if let (Some(sp), Some(fd)) = (&shm_spool, &shm_floor) {
        series.push((
            "ours-tmpfs",
            match sp {
                Ok(s) => Ok(Box::new(move |i| {
                    run_ok(&mut s.cmd(&["submit", "--no-wait", &format!("s{i}")]))
                })),
                Err(e) => Err(e.clone()),
            },
            vec![],
        ));
        series.push(("floor-tmpfs", floor_step(fd.clone(), jt.clone()), vec![]));
    }
    for i in 0..n + warm {
        for (_, step, v) in series.iter_mut() {
            let Ok(f) = step else { continue };
            match f(i) {
                Ok(x) if i >= warm => v.push(ms(x.wall)),
                Ok(_) => {}
                Err(e) => *step = Err(e),
            }
        }
    }
    let mut cells: std::collections::HashMap<&str, Cell> = series
        .into_iter()
        .map(|(k, step, v)| {
            (
                k,
                match step {
                    Ok(_) => ms_cell(&v),
                    Err(e) => na(&e),
                },
            )
        })
        .collect();
    let _ = run(nq(&nq_dir).arg("-w"), false);
    if let Some(t) = &tsp {
        let _ = run(t.cmd().arg("-w"), false);
        t.kill();
    }
    let mut take = |k: &str| cells.remove(k).unwrap_or_else(|| text("—"));
    let (ours_nowait, nq_cell, tsp_cell, floor_cell, exec_cell) = (
        take("ours"),
        take("nq"),
        take("tsp"),
        take("floor"),
        take("true"),
    );
    let (ours_tmpfs, floor_tmpfs) = (take("ours-tmpfs"), take("floor-tmpfs"));
    r.cmd("spack-installer --spool S submit --no-wait sN");
    r.cmd("NQDIR=D nq -q true");
    r.cmd("TS_SOCKET=F TS_SLOTS=1 tsp true   (server already running)");
    r.cmd("bench/floor D \"$(job text)\"   (write temp + fsync + rename + fsync dir)");

    // The default: a worker runs, submit waits for its receipt to print the job's ID.
    let mut accepted = 0;
    let ours_wait = match ours_spool {
        Err(e) => na(&e),
        Ok(s) => (|| -> Result<Cell, String> {
            for e in fs::read_dir(s.dir("incoming"))
                .map_err(|e| e.to_string())?
                .flatten()
            {
                let _ = fs::remove_file(e.path());
            }
            let mut w = s.worker(&[], &[])?;
            let mut v = Vec::new();
            let res = (|| -> Result<(), String> {
                for i in 0..n + warm {
                    let x = run(&mut s.cmd(&["submit", &format!("w{i}")]), true)?;
                    if !x.ok {
                        return Err(format!("submit exited with {}", x.code));
                    }
                    if i >= warm {
                        v.push(ms(x.wall));
                        if x.stdout.contains("queued as 0") {
                            accepted += 1;
                        }
                    }
                }
                Ok(())
            })();
            stop(&mut w);
            res?;
            Ok(ms_cell(&v))
        })()
        .unwrap_or_else(|e| na(&e)),
    };
    r.cmd("spack-installer --spool S submit wN   (a worker running: waits for the receipt)");
    if let Some(d) = &o.shm {
        let _ = fs::remove_dir_all(d.join("submit"));
        let _ = fs::remove_dir_all(d.join("floor"));
    }

    let nowait_val = ours_nowait.val;
    let floor_val = floor_cell.val;
    r.fig("submit", nowait_val);
    r.fig("submit_floor", floor_val);
    r.row(
        "submit --no-wait (returns once the file is durable)",
        ours_nowait,
        nq_cell,
        tsp_cell,
        floor_cell,
    );
    let wait_text =
        format!("submit, default: waits for the worker's receipt ({accepted} of {n} got their ID)");
    r.row(&wait_text, ours_wait, text("—"), text("—"), text("—"));
    r.row(
        "process start alone: /bin/true",
        text("—"),
        text("—"),
        text("—"),
        exec_cell,
    );
    if o.shm.is_some() {
        r.fig("submit_tmpfs", ours_tmpfs.val);
        r.fig("submit_floor_tmpfs", floor_tmpfs.val);
        r.row(
            "submit --no-wait, spool on tmpfs (fsync costs nothing)",
            ours_tmpfs,
            text("—"),
            text("—"),
            floor_tmpfs,
        );
    }
    r.target(
        "submit under 3 ms median",
        nowait_val.map(|v| v < 3.0),
        nowait_val
            .map(|v| format!("{v:.2} ms, --no-wait"))
            .unwrap_or_default(),
    );
    r.target(
        "submit within 3× of the fsync floor",
        nowait_val.zip(floor_val).map(|(a, b)| a <= 3.0 * b),
        nowait_val
            .zip(floor_val)
            .map(|(a, b)| format!("{:.2}× ({a:.2} ms vs {b:.2} ms)", a / b))
            .unwrap_or_default(),
    );
}

/// The bytes `submit` writes for one job: submit one (no worker runs) and read it back.
fn template_text(s: &Spool) -> Result<String, String> {
    run_ok(&mut s.cmd(&["submit", "--no-wait", "template"]))?;
    for e in fs::read_dir(s.dir("incoming"))
        .map_err(|e| e.to_string())?
        .flatten()
    {
        if e.file_name().to_string_lossy().ends_with(".toml") {
            let t = fs::read_to_string(e.path()).map_err(|e| e.to_string())?;
            let _ = fs::remove_file(e.path());
            return Ok(t);
        }
    }
    Err("submit wrote no file".into())
}

// ---- 2. pick-up latency -------------------------------------------------------------

/// Wait for `<stamps>/<spec>.start` and return its time minus `ended_ns`, in ms.
fn stamp_latency(stamps: &Path, spec: &str, ended_ns: i128) -> Result<f64, String> {
    let p = stamps.join(format!("{spec}.start"));
    let mut val = None;
    wait_until(Duration::from_secs(20), Duration::from_micros(500), || {
        val = fs::read_to_string(&p)
            .ok()
            .and_then(|s| s.trim().parse::<i128>().ok());
        val.is_some()
    });
    let v = val.ok_or_else(|| format!("job {spec} never started (no {})", p.display()))?;
    Ok((v - ended_ns) as f64 / 1e6)
}

fn pause(i: usize) {
    std::thread::sleep(Duration::from_millis(20 + (i % 7) as u64 * 3));
}

/// Pick-up latencies (ms) of our worker on a fresh spool at `root`.
fn pickup_ours(o: &Opts, root: PathBuf, n: usize) -> Result<Vec<f64>, String> {
    let s = Spool::create(o, root, "")?;
    let stamps = s.root.with_extension("stamps");
    let _ = fs::remove_dir_all(&stamps);
    fs::create_dir_all(&stamps).map_err(|e| e.to_string())?;
    let mut w = s.worker(&[], &[("SPACK_BENCH_STAMP_DIR", &stamps)])?;
    let res = (|| -> Result<Vec<f64>, String> {
        let mut v = Vec::new();
        for i in 0..n {
            let spec = format!("p{i}");
            let x = run_ok(&mut s.cmd(&["submit", "--no-wait", &spec]))?;
            v.push(stamp_latency(&stamps, &spec, x.ended_ns)?);
            let settled = wait_until(Duration::from_secs(20), Duration::from_millis(1), || {
                count(&s.dir("done")) == i + 1 && count(&s.dir("running")) == 0
            });
            if !settled {
                return Err(format!("job {spec} did not finish"));
            }
            pause(i);
        }
        Ok(v)
    })();
    stop(&mut w);
    res
}

fn bench_pickup(o: &Opts, z: &Sizes, r: &mut Report) {
    let n = z.pickup_n;
    r.section(&format!(
        "2. Pick-up latency: idle queue, from the submit command returning to the job's command starting ({n} jobs, one at a time)"
    ));
    let ours = pickup_ours(o, o.work.join("pickup"), n);
    r.cmd("spack-installer submit --no-wait pN   (worker idle; noop records its start time)");

    let nq_v = if have("nq") {
        (|| -> Result<Vec<f64>, String> {
            let dir = o.work.join("nq-pickup");
            let stamps = o.work.join("nq-pickup-stamps");
            let _ = fs::remove_dir_all(&dir);
            let _ = fs::remove_dir_all(&stamps);
            fs::create_dir_all(&stamps).map_err(|e| e.to_string())?;
            let mut v = Vec::new();
            for i in 0..n {
                let spec = format!("p{i}");
                let x = run_ok(
                    nq(&dir)
                        .env("SPACK_BENCH_STAMP_DIR", &stamps)
                        .arg("-q")
                        .arg(&o.noop)
                        .args(["install", &spec]),
                )?;
                v.push(stamp_latency(&stamps, &spec, x.ended_ns)?);
                run_ok(nq(&dir).arg("-w"))?;
                pause(i);
            }
            Ok(v)
        })()
    } else {
        Err("nq not installed".into())
    };
    r.cmd("NQDIR=D nq -q noop install pN");

    let tsp_v = if have("tsp") {
        let t = Tsp::new(&o.work, "tsp-pickup");
        let res = (|| -> Result<Vec<f64>, String> {
            let stamps = o.work.join("tsp-pickup-stamps");
            let _ = fs::remove_dir_all(&stamps);
            fs::create_dir_all(&stamps).map_err(|e| e.to_string())?;
            run_ok(t.cmd().args(["-S", "1"]))?;
            let mut v = Vec::new();
            for i in 0..n {
                let spec = format!("p{i}");
                let x = run_ok(
                    t.cmd()
                        .env("SPACK_BENCH_STAMP_DIR", &stamps)
                        .arg(&o.noop)
                        .args(["install", &spec]),
                )?;
                v.push(stamp_latency(&stamps, &spec, x.ended_ns)?);
                run_ok(t.cmd().arg("-w"))?;
                pause(i);
            }
            Ok(v)
        })();
        t.kill();
        res
    } else {
        Err("tsp not installed".into())
    };
    r.cmd("TS_SOCKET=F tsp noop install pN");

    let pct = |v: &Result<Vec<f64>, String>, p: f64| match v {
        Ok(v) if !v.is_empty() => {
            let x = percentile(v, p);
            cell(x, format!("{x:.2} ms"))
        }
        Ok(_) => na("no samples"),
        Err(e) => na(e),
    };
    let p50 = pct(&ours, 50.0);
    let p50v = p50.val;
    r.fig("pickup", p50v);
    r.row(
        "pick-up p50",
        p50,
        pct(&nq_v, 50.0),
        pct(&tsp_v, 50.0),
        text("—"),
    );
    r.row(
        "pick-up p99",
        pct(&ours, 99.0),
        pct(&nq_v, 99.0),
        pct(&tsp_v, 99.0),
        text("—"),
    );
    if let Some(shm) = &o.shm {
        let t = pickup_ours(o, shm.join("pickup"), n);
        r.fig("pickup_tmpfs", t.as_ref().ok().map(|v| percentile(v, 50.0)));
        r.row(
            "pick-up p50 / p99, spool on tmpfs (fsync costs nothing)",
            match &t {
                Ok(v) if !v.is_empty() => cell(
                    percentile(v, 50.0),
                    format!(
                        "{:.2} ms / {:.2} ms",
                        percentile(v, 50.0),
                        percentile(v, 99.0)
                    ),
                ),
                Ok(_) => na("no samples"),
                Err(e) => na(e),
            },
            text("—"),
            text("—"),
            text("—"),
        );
        let _ = fs::remove_dir_all(shm.join("pickup"));
    }
    r.target(
        "pick-up under 20 ms p50, no polling",
        p50v.map(|v| v < 20.0),
        p50v.map(|v| format!("{v:.2} ms")).unwrap_or_default(),
    );
}

// ---- 3. drain throughput ------------------------------------------------------------

/// Our worker over `m` queued jobs behind a gate job: seconds from opening the gate until
/// `worker run --until-idle` exits with every job in done/.
fn drain_ours(o: &Opts, root: PathBuf, m: usize) -> Result<Duration, String> {
    let s = Spool::create(o, root, "")?;
    let gate = s.root.with_extension("gate");
    let _ = fs::remove_file(&gate);
    run_ok(&mut s.cmd(&["submit", "--no-wait", "gate"]))?;
    let mut w = s.worker(&["--until-idle"], &[("SPACK_BENCH_GATE", &gate)])?;
    let res = (|| -> Result<Duration, String> {
        if !wait_until(Duration::from_secs(20), Duration::from_millis(2), || {
            count(&s.dir("running")) == 1
        }) {
            return Err("the gate job never started".into());
        }
        let specs: Vec<String> = (0..m).map(|i| format!("d{i}")).collect();
        for chunk in specs.chunks(100) {
            let mut args = vec!["submit", "--no-wait"];
            args.extend(chunk.iter().map(|s| s.as_str()));
            run_ok(&mut s.cmd(&args))?;
        }
        if !wait_until(Duration::from_secs(300), Duration::from_millis(20), || {
            count(&s.dir("pending")) == m
        }) {
            return Err(format!(
                "only {} of {m} jobs reached pending/",
                count(&s.dir("pending"))
            ));
        }
        let t0 = Instant::now();
        fs::write(&gate, "").map_err(|e| e.to_string())?;
        if !wait_exit(&mut w, Duration::from_secs(1200)) {
            return Err("the worker did not finish the queue in 20 min".into());
        }
        let dt = t0.elapsed();
        let done = count(&s.dir("done"));
        if done != m + 1 {
            return Err(format!("{done} of {} jobs in done/", m + 1));
        }
        Ok(dt)
    })();
    if matches!(w.try_wait(), Ok(None)) {
        stop(&mut w);
    }
    res
}

fn drain_nq(o: &Opts, m: usize) -> Result<Duration, String> {
    let dir = o.work.join("nq-drain");
    let gate = o.work.join("nq-drain.gate");
    let _ = fs::remove_dir_all(&dir);
    let _ = fs::remove_file(&gate);
    let job = |spec: &str| -> Result<(), String> {
        run_ok(
            nq(&dir)
                .env("SPACK_BENCH_GATE", &gate)
                .arg("-q")
                .arg(&o.noop)
                .args(["install", spec]),
        )
        .map(|_| ())
    };
    job("gate")?;
    for i in 0..m {
        job(&format!("d{i}"))?;
    }
    let t0 = Instant::now();
    fs::write(&gate, "").map_err(|e| e.to_string())?;
    run_ok(nq(&dir).arg("-w"))?;
    Ok(t0.elapsed())
}

/// task-spooler keeps each waiting job as a client process with a connection to the
/// server, and the server takes about 1 000 at most: jobs are queued with `-B` (fail
/// instead of block when full), and once it is full the gate opens and the rest are queued
/// while it drains. Returns the time and how many jobs were queued before the gate opened.
fn drain_tsp(o: &Opts, m: usize) -> Result<(Duration, usize), String> {
    let t = Tsp::new(&o.work, "tsp-drain");
    let gate = o.work.join("tsp-drain.gate");
    let _ = fs::remove_file(&gate);
    let res = (|| -> Result<(Duration, usize), String> {
        run_ok(t.cmd().args(["-S", "1"]))?;
        let job = |spec: &str, nonblock: bool| -> Result<util::Run, String> {
            let mut c = t.cmd();
            c.env("SPACK_BENCH_GATE", &gate);
            if nonblock {
                c.arg("-B");
            }
            run(c.arg(&o.noop).args(["install", spec]), false)
        };
        let x = job("gate", false)?;
        if !x.ok {
            return Err(format!("tsp exited with {}", x.code));
        }
        let mut t0 = None;
        let mut before = m;
        for i in 0..m {
            let spec = format!("d{i}");
            if t0.is_none() {
                let x = job(&spec, true)?;
                if x.ok {
                    continue;
                }
                if x.code != 2 {
                    return Err(format!("tsp -B exited with {}", x.code));
                }
                before = i;
                t0 = Some(Instant::now());
                fs::write(&gate, "").map_err(|e| e.to_string())?;
            }
            let x = job(&spec, false)?;
            if !x.ok {
                return Err(format!("tsp exited with {}", x.code));
            }
        }
        let t0 = match t0 {
            Some(t) => t,
            None => {
                let t = Instant::now();
                fs::write(&gate, "").map_err(|e| e.to_string())?;
                t
            }
        };
        run_ok(t.cmd().arg("-w"))?;
        Ok((t0.elapsed(), before))
    })();
    t.kill();
    res
}

fn drain_loop(o: &Opts, m: usize) -> Result<Duration, String> {
    let x = run_ok(
        Command::new("sh")
            .arg("-c")
            .arg(r#"i=0; while [ "$i" -lt "$1" ]; do "$0" install "d$i"; i=$((i+1)); done"#)
            .arg(&o.noop)
            .arg(m.to_string()),
    )?;
    Ok(x.wall)
}

/// Under `strace -f -c`: fsync calls per job of intake and of running a job (start +
/// finish), over `k` jobs. `None` when strace is not available or a step fails.
fn fsync_audit(o: &Opts, k: usize) -> Option<(f64, f64)> {
    if !have("strace") {
        return None;
    }
    let s = Spool::create(o, o.work.join("audit"), "").ok()?;
    fs::write(s.root.join("paused"), "").ok()?;
    let specs: Vec<String> = (0..k).map(|i| format!("a{i}")).collect();
    let mut args = vec!["submit", "--no-wait"];
    args.extend(specs.iter().map(|x| x.as_str()));
    run_ok(&mut s.cmd(&args)).ok()?;
    // Files found by a scan are taken once they are 2 s old.
    std::thread::sleep(Duration::from_millis(2200));
    let traced = |tag: &str| -> Option<f64> {
        let out = s.root.with_extension(format!("{tag}.strace"));
        let mut c = Command::new("strace");
        c.args(["-f", "-c", "-e", "trace=fsync,fdatasync", "-o"])
            .arg(&out)
            .arg(&s.bin)
            .arg("--spool")
            .arg(&s.root)
            .arg("--config")
            .arg(&s.config)
            .args(["worker", "run", "--until-idle"])
            .stderr(Stdio::null());
        run_ok(&mut c).ok()?;
        let text = fs::read_to_string(&out).ok()?;
        let n: f64 = text
            .lines()
            .filter(|l| l.trim_end().ends_with("fsync") || l.trim_end().ends_with("fdatasync"))
            .filter_map(|l| l.split_whitespace().nth(3)?.parse::<f64>().ok())
            .sum();
        Some(n / k as f64)
    };
    let intake = traced("intake")?;
    fs::remove_file(s.root.join("paused")).ok()?;
    let runs = traced("run")?;
    (count(&s.dir("done")) == k).then_some((intake, runs))
}

fn bench_drain(o: &Opts, z: &Sizes, r: &mut Report) {
    let m = z.drain_n;
    r.section(&format!(
        "3. Drain throughput: {m} queued no-op jobs, one at a time, from opening the gate until all are done"
    ));
    let dcell = |d: &Result<Duration, String>| match d {
        Ok(d) => cell(
            d.as_secs_f64(),
            format!(
                "{:.2} s ({:.0} jobs/s)",
                d.as_secs_f64(),
                m as f64 / d.as_secs_f64()
            ),
        ),
        Err(e) => na(e),
    };
    let ours = drain_ours(o, o.work.join("drain"), m);
    r.cmd("spack-installer worker run --until-idle   (M jobs pending behind a gate job)");
    let nq_d = if have("nq") {
        drain_nq(o, m)
    } else {
        Err("nq not installed".into())
    };
    r.cmd("NQDIR=D nq -q noop install dN ...; open the gate; nq -w");
    let tsp_d = if have("tsp") {
        drain_tsp(o, m).map(|(d, before)| {
            if before < m {
                r.note(format!(
                    "task-spooler refused more than {before} waiting jobs (each is a client process holding a connection to its server); the gate opened then and the other {} were queued while it drained",
                    m - before
                ));
            }
            d
        })
    } else {
        Err("tsp not installed".into())
    };
    r.cmd("TS_SLOTS=1 tsp noop install dN ...; open the gate; tsp -w");
    let floor_d = drain_loop(o, m);
    r.cmd("sh -c 'while ...; do noop install dN; done'   (the plain loop)");
    let (ov, nv, tv, fv) = (
        ours.as_ref().ok().map(|d| d.as_secs_f64()),
        nq_d.as_ref().ok().map(|d| d.as_secs_f64()),
        tsp_d.as_ref().ok().map(|d| d.as_secs_f64()),
        floor_d.as_ref().ok().map(|d| d.as_secs_f64()),
    );
    r.row(
        &format!("drain {m} jobs (spool on {})", fs_type(&o.work)),
        dcell(&ours),
        dcell(&nq_d),
        dcell(&tsp_d),
        dcell(&floor_d),
    );
    r.fig("drain_ms_per_job", ov.map(|x| x * 1e3 / m as f64));
    r.fig("nq_ms_per_job", nv.map(|x| x * 1e3 / m as f64));
    r.fig("tsp_ms_per_job", tv.map(|x| x * 1e3 / m as f64));
    r.fig("loop_ms_per_job", fv.map(|x| x * 1e3 / m as f64));
    if let Some(shm) = &o.shm {
        let t = drain_ours(o, shm.join("drain"), m);
        r.fig(
            "drain_tmpfs_ms_per_job",
            t.as_ref().ok().map(|d| d.as_secs_f64() * 1e3 / m as f64),
        );
        r.row(
            &format!("drain {m} jobs, spool on tmpfs (fsync costs nothing)"),
            dcell(&t),
            text("—"),
            text("—"),
            dcell(&floor_d),
        );
        let _ = fs::remove_dir_all(shm.join("drain"));
    }
    if let Some((intake, runs)) = fsync_audit(o, 20) {
        r.note(format!(
            "fsync calls per job, counted with `strace -f -c` over 20 jobs: intake {intake:.1}, running it (start + finish) {runs:.1}; by the same count nq makes one per job (its job file), the tsp server keeps its queue in memory"
        ));
        r.fsyncs = Some((intake, runs));
    }
    let fmt = |v: Option<f64>| v.map(|x| format!("{x:.2} s")).unwrap_or("n/a".into());
    r.target(
        "drain at least as fast as nq and task-spooler",
        match (ov, nv, tv) {
            (Some(o), Some(n), Some(t)) => Some(o <= n && o <= t),
            _ => None,
        },
        format!("ours {} vs nq {}, tsp {}", fmt(ov), fmt(nv), fmt(tv)),
    );
    r.target(
        "drain within 2× of the plain loop",
        ov.zip(fv).map(|(a, b)| a <= 2.0 * b),
        ov.zip(fv)
            .map(|(a, b)| format!("{:.1}× ({a:.2} s vs {b:.2} s)", a / b))
            .unwrap_or_default(),
    );
}

fn fs_type(p: &Path) -> String {
    let t = sh(&format!("df --output=fstype '{}' | tail -1", p.display()));
    if t.is_empty() { "?".into() } else { t }
}

// ---- 4. status at scale -------------------------------------------------------------

/// Median wall time (ms) and the largest peak RSS of `reps` runs; also the last stdout.
fn measure_status(s: &Spool, args: &[&str], reps: usize) -> Result<(f64, u64, String), String> {
    let mut walls = Vec::new();
    let mut rss = 0;
    let mut out = String::new();
    let _ = run(&mut s.cmd(args), false); // warm the cache like every later run
    for _ in 0..reps {
        let x = run(&mut s.cmd(args), true)?;
        if !x.ok {
            return Err(format!("status {args:?} exited with {}", x.code));
        }
        walls.push(ms(x.wall));
        rss = rss.max(x.maxrss_kib);
        out = x.stdout;
    }
    Ok((median(&walls), rss, out))
}

/// The floor for `status --all`: list the state directories and read every record once,
/// on every core, parsing nothing. Milliseconds, median of `reps`.
fn read_all_floor(s: &Spool, reps: usize) -> f64 {
    let once = || {
        let t = Instant::now();
        let files: Vec<PathBuf> = ["pending", "running", "done", "failed", "cancelled"]
            .iter()
            .filter_map(|d| fs::read_dir(s.dir(d)).ok())
            .flat_map(|rd| rd.flatten().map(|e| e.path()))
            .collect();
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::thread::scope(|sc| {
            for part in files.chunks(files.len().div_ceil(n).max(1)) {
                sc.spawn(move || {
                    for f in part {
                        let _ = fs::read(f);
                    }
                });
            }
        });
        ms(t.elapsed())
    };
    once(); // warm, like the status runs
    median(&(0..reps).map(|_| once()).collect::<Vec<_>>())
}

/// Write `k` records like `template` (the job `old_name`, ID `old_id`), IDs from `first`.
fn generate(
    dir: &Path,
    logs: Option<(&Path, &str)>,
    template: &str,
    old_name: &str,
    old_id: u64,
    first: u64,
    k: usize,
) -> Result<(), String> {
    let old_pkg = old_name.split_once('-').map(|x| x.1).unwrap_or(old_name);
    let old_id_line = format!("\nid = {old_id}\n");
    for j in 0..k as u64 {
        let id = first + j;
        let pkg = format!("pkg{}", id % 5000);
        let name = format!("{id:06}-{pkg}");
        let t = template
            .replace(old_name, &name)
            .replace(old_pkg, &pkg)
            .replace(&old_id_line, &format!("\nid = {id}\n"));
        let p = dir.join(format!("{name}.toml"));
        fs::write(&p, t).map_err(|e| format!("write {}: {e}", p.display()))?;
        if let Some((ld, log)) = logs {
            let lp = ld.join(format!("{name}.log"));
            fs::write(&lp, log.replace(old_name, &name))
                .map_err(|e| format!("write {}: {e}", lp.display()))?;
        }
    }
    Ok(())
}

/// Under strace: which of the directories that grow with the history (`done/`,
/// `failed/`, `cancelled/`, `logs/`, `receipts/`) does `status` list (open as a
/// directory), and how many files in `done/` does it open? `None` when strace is not
/// available.
fn status_lists_history(s: &Spool) -> Option<(Vec<&'static str>, usize)> {
    if !have("strace") {
        return None;
    }
    let log = s.root.with_extension("strace");
    let mut c = Command::new("strace");
    c.arg("-f")
        .args(["-e", "trace=open,openat,openat2"])
        .arg("-o")
        .arg(&log)
        .arg(&s.bin)
        .arg("--spool")
        .arg(&s.root)
        .arg("--config")
        .arg(&s.config)
        .arg("status");
    run(&mut c, false).ok().filter(|x| x.ok)?;
    let text = fs::read_to_string(&log).ok()?;
    let listed = ["done", "failed", "cancelled", "logs", "receipts"]
        .into_iter()
        .filter(|d| {
            let dir = format!("\"{}/{d}\"", s.root.display());
            text.lines()
                .any(|l| l.contains(&dir) && l.contains("O_DIRECTORY"))
        })
        .collect();
    let done = format!("{}/done", s.root.display());
    let opened = text
        .lines()
        .filter(|l| l.contains(&format!("\"{done}/")))
        .count();
    Some((listed, opened))
}

fn find_one(dir: &Path) -> Option<(String, String)> {
    fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        let f = e.file_name().to_string_lossy().to_string();
        let name = f.strip_suffix(".toml")?.to_string();
        Some((name, fs::read_to_string(e.path()).ok()?))
    })
}

fn bench_status(o: &Opts, z: &Sizes, r: &mut Report) {
    let (d, p) = (z.status_done, z.status_pending);
    r.section(&format!(
        "4. Status at scale: {p} pending and {d} finished jobs (median of {} runs, warm cache)",
        z.status_reps
    ));
    let res = (|| -> Result<(), String> {
        let s = Spool::create(o, o.work.join("status"), "")?;
        // Real records to copy: one finished job and one pending (the queue paused).
        run_ok(&mut s.cmd(&["submit", "--no-wait", "tmpl-done"]))?;
        let mut w = s.worker(&["--until-idle"], &[])?;
        if !wait_exit(&mut w, Duration::from_secs(30)) {
            stop(&mut w);
            return Err("the worker did not finish the template job".into());
        }
        fs::write(s.root.join("paused"), "").map_err(|e| e.to_string())?;
        run_ok(&mut s.cmd(&["submit", "--no-wait", "tmpl-pend"]))?;
        let mut w = s.worker(&["--until-idle"], &[])?;
        if !wait_exit(&mut w, Duration::from_secs(30)) {
            stop(&mut w);
            return Err("the worker did not take the template job in".into());
        }
        let _ = fs::remove_file(s.root.join("paused"));
        let (dname, dtext) = find_one(&s.dir("done")).ok_or("no finished template job")?;
        let (pname, ptext) = find_one(&s.dir("pending")).ok_or("no pending template job")?;
        let dlog =
            fs::read_to_string(s.dir("logs").join(format!("{dname}.log"))).unwrap_or_default();
        let t0 = Instant::now();
        generate(&s.dir("pending"), None, &ptext, &pname, 2, 900_001, p)?;
        let reps = z.status_reps;
        let (base_ms, base_rss, _) = measure_status(&s, &["status"], reps * 3)?;
        generate(
            &s.dir("done"),
            Some((&s.dir("logs"), &dlog)),
            &dtext,
            &dname,
            1,
            10,
            d,
        )?;
        fs::write(s.root.join("counter"), "910000\n").map_err(|e| e.to_string())?;
        r.note(format!(
            "status spool: {p} pending and {d} finished records (and their logs) generated from real records in {:.1} s",
            t0.elapsed().as_secs_f64()
        ));
        let (st_ms, st_rss, _) = measure_status(&s, &["status"], reps * 3)?;
        let lists_done = status_lists_history(&s);
        let (js_ms, js_rss, _) = measure_status(&s, &["status", "--json"], reps)?;
        let (all_ms, all_rss, all_out) = measure_status(&s, &["status", "--all", "--json"], reps)?;
        let floor_ms = read_all_floor(&s, reps);
        r.fig("status_all_floor_ms", Some(floor_ms));
        r.fig("status_all_us_per_job", Some(all_ms * 1e3 / (d + p) as f64));
        r.fig("status_all_mib", Some(all_rss as f64 / 1024.0));
        let parsed = serde_json::from_str::<serde_json::Value>(&all_out)
            .ok()
            .and_then(|v| v.get("jobs").and_then(|j| j.as_array()).map(|a| a.len()));
        let expected = d + p + 2;
        r.note(format!(
            "`status --all --json` listed {} of the {expected} records (the generated ones parse)",
            parsed.map(|x| x.to_string()).unwrap_or("none".into())
        ));
        let c = |wall: f64, rss: u64| cell(wall, format!("{wall:.1} ms, {}", mib(rss)));
        r.row(
            &format!("status, {p} pending + 0 finished"),
            c(base_ms, base_rss),
            text("—"),
            text("—"),
            text("—"),
        );
        r.row(
            &format!("status, {p} pending + {d} finished"),
            c(st_ms, st_rss),
            text("—"),
            text("—"),
            text("—"),
        );
        r.row(
            &format!("status --json, {p} pending + {d} finished"),
            c(js_ms, js_rss),
            text("—"),
            text("—"),
            text("—"),
        );
        r.row(
            &format!("status --all --json, {} jobs", d + p),
            c(all_ms, all_rss),
            text("—"),
            text("—"),
            cell(floor_ms, format!("{floor_ms:.1} ms")),
        );
        r.cmd("spack-installer status | status --json | status --all --json   (/usr/bin/time-style wait4 peak RSS)");
        r.cmd("floor of status --all: list the state directories and read every record once, on every core, parsing nothing (bench/harness: read_all_floor)");
        let timing = format!("{st_ms:.1} ms with {d} finished vs {base_ms:.1} ms with none");
        match lists_done {
            Some((listed, opened)) => r.target(
                "status of active jobs independent of finished jobs",
                Some(listed.is_empty()),
                format!(
                    "strace: `status` {} (it opened {opened} record(s) in done/: those the worker lists as recent); {timing}",
                    if listed.is_empty() {
                        "lists none of done/, failed/, cancelled/, logs/, receipts/".to_string()
                    } else {
                        format!("LISTS {}", listed.join(", "))
                    }
                ),
            ),
            None => r.target(
                "status of active jobs independent of finished jobs",
                Some(st_ms <= base_ms * 1.25 + 2.0),
                format!("{timing} (strace not available: judged by time, within 25 % + 2 ms)"),
            ),
        }
        let full = d >= 100_000;
        r.target(
            "status --all over 100 000 jobs under 1 s",
            Some(all_ms < 1000.0 * if full { 1.0 } else { d as f64 / 100_000.0 }),
            format!(
                "{all_ms:.0} ms over {} jobs{}",
                d + p,
                if full {
                    String::new()
                } else {
                    format!(
                        " (quick form: {d} finished; target scaled to {:.0} ms)",
                        1000.0 * d as f64 / 100_000.0
                    )
                }
            ),
        );
        if std::env::var_os("BENCH_KEEP_STATUS").is_none() {
            let _ = fs::remove_dir_all(&s.root);
        }
        Ok(())
    })();
    if let Err(e) = res {
        r.row("status at scale", na(&e), text("—"), text("—"), text("—"));
        r.target(
            "status of active jobs independent of finished jobs",
            None,
            e.clone(),
        );
        r.target("status --all over 100 000 jobs under 1 s", None, e);
    }
}

// ---- 5. idle cost -------------------------------------------------------------------

fn bench_idle(o: &Opts, z: &Sizes, r: &mut Report) {
    let secs = z.idle_secs;
    r.section(&format!(
        "5. Idle cost: CPU time, wake-ups and resident memory over {secs} s with an empty queue{}",
        if secs < 60 {
            " (quick form: the issue asks for 60 s)"
        } else {
            ""
        }
    ));
    let spool = Spool::create(o, o.work.join("idle"), "");
    let mut worker = spool.as_ref().ok().map(|s| s.worker(&[], &[]));
    let tsp = have("tsp").then(|| Tsp::new(&o.work, "tsp-idle"));
    let tsp_pid = tsp.as_ref().and_then(|t| {
        run_ok(t.cmd().args(["-S", "1"])).ok()?;
        t.server_pid()
    });
    std::thread::sleep(Duration::from_secs(1));
    let wpid = match &worker {
        Some(Ok(c)) => Some(c.id()),
        _ => None,
    };
    let w0 = wpid.and_then(sample);
    let t0 = tsp_pid.and_then(sample);
    std::thread::sleep(Duration::from_secs(secs));
    let w1 = wpid.and_then(sample);
    let t1 = tsp_pid.and_then(sample);
    if let Some(Ok(c)) = worker.as_mut() {
        stop(c);
    }
    if let Some(t) = &tsp {
        t.kill();
    }
    let why = match (&spool, &worker) {
        (Err(e), _) => e.clone(),
        (_, Some(Err(e))) => e.clone(),
        _ => "could not sample /proc".into(),
    };
    let cpu = |a: &Option<util::ProcSample>, b: &Option<util::ProcSample>, why: &str| match (a, b) {
        (Some(a), Some(b)) => {
            let c = (b.cpu_ns - a.cpu_ns) as f64 / 1e6;
            cell(c, format!("{c:.2} ms"))
        }
        _ => na(why),
    };
    let wake = |a: &Option<util::ProcSample>, b: &Option<util::ProcSample>, why: &str| match (a, b)
    {
        (Some(a), Some(b)) => {
            let c = (b.switches - a.switches) as f64;
            cell(c, format!("{c:.0}"))
        }
        _ => na(why),
    };
    let rss = |b: &Option<util::ProcSample>, why: &str| match b {
        Some(b) => cell(b.rss_kib as f64, mib(b.rss_kib)),
        None => na(why),
    };
    let tsp_why = if tsp.is_none() {
        "tsp not installed"
    } else {
        "no tsp server found"
    };
    let ours_cpu = cpu(&w0, &w1, &why);
    let ours_wake = wake(&w0, &w1, &why);
    let ours_rss = rss(&w1, &why);
    r.fig("idle_cpu", ours_cpu.val);
    let (cv, wv, rv) = (ours_cpu.val, ours_wake.val, ours_rss.val);
    let nodaemon = || text("0 (no daemon)");
    r.row(
        &format!("CPU time over {secs} s idle"),
        ours_cpu,
        nodaemon(),
        cpu(&t0, &t1, tsp_why),
        text("—"),
    );
    r.row(
        &format!("wake-ups (voluntary context switches, all threads) over {secs} s"),
        ours_wake,
        nodaemon(),
        wake(&t0, &t1, tsp_why),
        text("—"),
    );
    r.row(
        "resident memory (VmRSS)",
        ours_rss,
        nodaemon(),
        rss(&t1, tsp_why),
        text("—"),
    );
    r.cmd("spack-installer worker run   (defaults: rescan every 10 s, heartbeat every 30 s); /proc/PID/task/*/schedstat and status");
    // The timers the worker has on purpose: the rescan safety net and the heartbeat. The
    // main thread is the loop; other threads wake for their own reasons, listed.
    let timers = secs / 10 + secs / 30;
    let per_thread: Vec<(String, u64)> = match (&w0, &w1) {
        (Some(a), Some(b)) => b
            .threads
            .iter()
            .map(|(tid, (name, n))| {
                let before = a.threads.get(tid).map(|x| x.1).unwrap_or(0);
                (name.clone(), n - before.min(*n))
            })
            .collect(),
        _ => vec![],
    };
    let main_wakes = per_thread.first().map(|x| x.1);
    let breakdown = per_thread
        .iter()
        .map(|(n, k)| format!("{n}: {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    if !breakdown.is_empty() {
        r.note(format!(
            "idle worker's wake-ups (voluntary context switches) by thread over {secs} s: {breakdown} (the first is the main loop)"
        ));
    }
    r.target(
        "idle worker: no wake-ups from polling (CPU ≈ 0)",
        cv.zip(main_wakes)
            .map(|(c, w)| w <= timers + 2 && c < 5.0 * secs as f64 / 60.0),
        cv.zip(wv)
            .map(|(c, w)| {
                format!(
                    "{c:.2} ms CPU in {secs} s; {w:.0} wake-ups in all ({breakdown}); the main loop's timers (rescan every 10 s, heartbeat every 30 s) account for {timers}"
                )
            })
            .unwrap_or_default(),
    );
    r.target(
        "idle worker under 10 MiB resident",
        rv.map(|k| k < 10.0 * 1024.0),
        rv.map(|k| mib(k as u64)).unwrap_or_default(),
    );
}

// ---- 6. scheduler -------------------------------------------------------------------

fn bench_rank(z: &Sizes, r: &mut Report) {
    r.section(&format!(
        "6. Scheduler: time of one `scheduler::plan` over N pending jobs (median of {}, in process)",
        z.rank_reps
    ));
    for (n, shape) in [
        (1_000, rank::Shape::Mixed),
        (10_000, rank::Shape::Independent),
        (10_000, rank::Shape::Mixed),
        (10_000, rank::Shape::Chain),
    ] {
        let (t, ready) = rank::time_plan(n, shape, z.rank_reps);
        let v = ms(t);
        match (n, shape) {
            (10_000, rank::Shape::Mixed) => r.fig("rank_mixed", Some(v)),
            (10_000, rank::Shape::Chain) => r.fig("rank_chain", Some(v)),
            _ => {}
        }
        r.row(
            &format!("rank {n} pending, {} ({ready} ready)", shape.label()),
            cell(v, format!("{v:.1} ms")),
            text("—"),
            text("—"),
            text("—"),
        );
    }
    r.cmd("bench/harness: spack_installer::scheduler::plan(&queue, now, &Policy::default())");
}

// ---- the report ---------------------------------------------------------------------

fn ratio(a: &Cell, b: &Cell) -> String {
    match (a.val, b.val) {
        (Some(x), Some(y)) if y > 0.0 && x > 0.0 => format!("{:.2}×", x / y),
        _ => "—".into(),
    }
}

fn table(r: &Report) -> String {
    let mut s = String::new();
    s.push_str("| measure | spack-installer | nq | task-spooler | floor | ours ÷ floor | ours ÷ nq | ours ÷ tsp |\n");
    s.push_str("|---|---|---|---|---|---|---|---|\n");
    for (title, rows) in &r.rows {
        let _ = writeln!(s, "| **{title}** | | | | | | | |");
        for row in rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                row.what,
                row.ours.text,
                row.nq.text,
                row.tsp.text,
                row.floor.text,
                ratio(&row.ours, &row.floor),
                ratio(&row.ours, &row.nq),
                ratio(&row.ours, &row.tsp),
            );
        }
    }
    s
}

fn machine(o: &Opts) -> String {
    let mut s = String::new();
    let cpu = sh("lscpu | sed -n 's/^Model name: *//p' | head -1");
    let _ = writeln!(s, "- CPU: {} ({} CPUs online, `nproc`)", cpu, sh("nproc"));
    let _ = writeln!(
        s,
        "- memory: {}",
        sh("awk '/MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo")
    );
    let _ = writeln!(s, "- kernel: `{}`", sh("uname -srvm"));
    let _ = writeln!(
        s,
        "- file system of the spools (`df -hT {}`): `{}`",
        o.work.display(),
        sh(&format!(
            "df -hT '{}' | tail -1 | tr -s ' '",
            o.work.display()
        ))
    );
    let _ = writeln!(
        s,
        "- versions: `{}`, nq `{}`, task-spooler `{}`, `{}`",
        sh(&format!("'{}' --version", o.bin.display())),
        sh("dpkg-query -W -f '${Version}' nq"),
        sh("dpkg-query -W -f '${Version}' task-spooler"),
        sh("rustc --version")
    );
    let _ = writeln!(
        s,
        "- load average at the end of the run: `{}`",
        sh("cat /proc/loadavg")
    );
    s
}

fn render(o: &Opts, r: &Report, elapsed: Duration) -> String {
    let mut s = String::new();
    s.push_str("# Benchmarks\n\n");
    s.push_str("<!-- Generated by bench/run.sh (bench/harness); do not edit by hand: run it again. -->\n\n");
    let _ = writeln!(
        s,
        "spack-installer against the queues users could pick instead, [nq](https://github.com/leahneukirchen/nq) and \
         [task-spooler](https://viric.name/soft/ts/) (`tsp`), and against the floor the file system or the shell \
         sets, in one run. Every job runs a no-op in place of Spack (`bench/noop.c`, called as `noop install SPEC`), \
         so only the queue is timed. Form: **{}**{}; the run took {:.0} s.\n",
        if o.quick { "quick" } else { "full" },
        if o.quick {
            " (smaller counts, shorter idle window: see each section's title)"
        } else {
            ""
        },
        elapsed.as_secs_f64()
    );
    let _ = writeln!(s, "Regenerate with:\n\n```sh\n{}\n```\n", o.command);
    s.push_str("## Machine\n\n");
    s.push_str(&machine(o));
    s.push_str("\nThe machine is shared: other work ran on it during the run, so single figures carry noise; medians and percentiles are given where it matters.\n\n");
    s.push_str("## Results\n\n");
    s.push_str("Ratios are ours ÷ theirs in time or cost (below 1× we are faster or cheaper). *floor*: the fsync floor program \
                (`bench/floor.c`: write temp + fsync + rename + fsync dir of the same job text) for submit, the plain \
                shell loop for the drain.\n\n");
    s.push_str(&table(r));
    s.push_str("\n## Targets (issue 9)\n\n| target | result | measured |\n|---|---|---|\n");
    for t in &r.targets {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            t.text,
            match t.met {
                Some(true) => "met",
                Some(false) => "**missed**",
                None => "not measured",
            },
            t.evidence
        );
    }
    s.push_str(&analysis(r));
    s.push_str("\n## How each figure is taken\n\n");
    s.push_str(METHOD);
    s.push_str("\nCommands, as run:\n\n");
    for c in &r.commands {
        let _ = writeln!(s, "- `{c}`");
    }
    if !r.notes.is_empty() {
        s.push_str("\n## Notes from this run\n\n");
        for n in &r.notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    s
}

/// Why the missed targets are missed, with this run's figures. The causes were found by
/// profiling (perf, strace) and are stated here for whoever fixes them.
fn analysis(r: &Report) -> String {
    let f = |k: &str, d: usize| {
        r.figs
            .get(k)
            .map(|v| format!("{v:.d$}"))
            .unwrap_or_else(|| "n/a".into())
    };
    let mut s = String::from("\n## Where the time goes (profiled), and why targets are missed\n\n");
    let per_fsync = r.figs.get("submit_floor").map(|x| x / 2.0);
    let _ = writeln!(
        s,
        "- **Submit (3 ms, 3× the floor)**: ours {} ms against {} ms for the floor, the two fsyncs \
         and a rename alone. The 3 ms target sits just above what this disk allows, so whether a \
         run meets it is decided by the disk's load at that moment, not by the queue. The queue's \
         own share shows on tmpfs, where fsync is free: {} ms against the floor's {} ms, the \
         difference being the start-up of a larger binary, argument parsing and validation. nq \
         and tsp return sooner because their submit waits for no disk flush (nq fsyncs its job \
         file in the forked child, after the command has returned; the tsp server keeps its \
         queue in memory): a crash can lose a job they reported as queued.",
        f("submit", 2),
        f("submit_floor", 2),
        f("submit_tmpfs", 2),
        f("submit_floor_tmpfs", 2)
    );
    let (fi, fr) = r
        .fsyncs
        .map(|(a, b)| (format!("{a:.1}"), format!("{b:.1}")))
        .unwrap_or(("n/a".into(), "n/a".into()));
    let _ = writeln!(
        s,
        "- **Drain (as fast as nq and tsp, within 2× of the loop)**: the drain takes {} ms per job \
         on disk and {} ms on tmpfs, against nq {} ms, tsp {} ms and the loop {} ms. Every job's \
         record is made durable: intake makes {fi} fsync calls per job (counter, claim, pending \
         record, by batch), running it {fr} (the record's bytes as it starts and as it ends; \
         spool-layout.md, *Durability*, says why the directories of those two steps are not \
         fsynced). At about {} ms per fsync here, and with ext4's renames waiting on the journal \
         commit an fsync starts, that is most of the difference between disk and tmpfs. tsp \
         holds its queue in memory and syncs nothing; the loop records nothing; nq fsyncs once \
         per job but slows with the queue's length (each waiting job is a process that locks \
         every earlier job file). On tmpfs the rest is the worker's own work per job, mostly \
         `fork` of the worker to start the install (copying its page tables, then \
         copy-on-write faults): `posix_spawn` would avoid it, but cannot set \
         `PR_SET_PDEATHSIG`, which the crash guarantees need. The plan is not redone per job: \
         the worker reuses the last plan's ready jobs while only unrelated installs end. \
         Against a Spack build of minutes, {} ms per job is noise. Pick-up: {} ms on disk, {} ms \
         on tmpfs.",
        f("drain_ms_per_job", 1),
        f("drain_tmpfs_ms_per_job", 2),
        f("nq_ms_per_job", 2),
        f("tsp_ms_per_job", 2),
        f("loop_ms_per_job", 2),
        per_fsync.map(|v| format!("{v:.1}")).unwrap_or("n/a".into()),
        f("drain_ms_per_job", 0),
        f("pickup", 1),
        f("pickup_tmpfs", 1),
    );
    let _ = writeln!(
        s,
        "- **Idle**: {} ms of CPU in the window: the main loop wakes only for its two timers (the \
         rescan safety net every 10 s, the heartbeat every 30 s). The other wake-ups are \
         the `notify-rs inotify` thread: the `notify` crate watches `incoming/` with a fixed mask \
         that includes IN_OPEN, IN_MODIFY, IN_ATTRIB, IN_DELETE and IN_MOVED_FROM, so the \
         worker's own listing of `incoming/` at each rescan (and every user's `status`, which \
         lists it too) wakes that thread for events `worker/watch.rs` then drops. For the core: \
         watch with IN_CLOSE_WRITE, IN_MOVED_TO and IN_CREATE only (the `inotify` crate \
         directly, which the `notify` crate wraps).",
        f("idle_cpu", 2)
    );
    let _ = writeln!(
        s,
        "- **status --all (1 s for 100 000)**: {} µs per record, read on every core. The floor, \
         listing the state directories and reading every record once on every core without \
         parsing anything, takes {} ms here: opening and reading 100 000 small files is \
         system time this VM charges before a byte is parsed. Above it, about half is \
         `Job::from_toml` (one pass into one struct, TOML's own lexer) and the rest building \
         and writing the JSON, streamed to a buffered stdout ({} MiB peak, every view \
         collected before sorting). `logs/` is listed once rather than stat'ed per job. Going \
         under the floor needs fewer files to read: an index of finished jobs kept by the \
         worker, a second copy of the truth that the spool's design avoids. Plain `status` is \
         not affected: it lists none of the directories that grow with the history (checked \
         with strace above).",
        f("status_all_us_per_job", 1),
        f("status_all_floor_ms", 0),
        f("status_all_mib", 0)
    );
    let _ = writeln!(
        s,
        "- **Scheduler** (no target here; issue 5 asks for 10 ms at 10 000 jobs): {} ms for 10 000 \
         mixed pending jobs and {} ms for one 10 000-long `after` chain. `plan` is \
         O((n + e) log n): lookups by hash, one topological pass, one sort; a position's reason \
         is written only when asked for (`optimize`), so a plan allocates nothing per job.",
        f("rank_mixed", 1),
        f("rank_chain", 1)
    );
    s
}

const METHOD: &str = "\
- **Submit**: the wall time of one process from spawn to reaped (`wait4`), median of N after 5 warm-up runs, \
for every tool alike. `--no-wait` returns once the job file is durable (temp file, fsync, rename, fsync \
`incoming/`); without it, and with a worker running, `submit` also waits (up to 2 s) for the worker's \
receipt so it can print the job's ID: that figure includes the worker's intake (its own fsyncs). nq's and \
tsp's submit commands wait for no fsync.
- **Pick-up**: the queue idle, one job at a time; the harness takes CLOCK_REALTIME when the submit process \
has been reaped, the no-op records CLOCK_REALTIME as it starts; the difference is the pick-up. A figure can be \
negative: nq and tsp fork the job before their submit command exits, and our worker is woken by the \
rename, before `submit` has fsynced the directory and exited (on tmpfs it often wins that race).
- **Drain**: a gate job (the no-op waiting for a file) holds the queue while N no-op jobs are queued behind \
it; the clock runs from creating the gate file until the queue is empty: `worker run --until-idle` exits \
(every job in `done/`), `nq -w` returns, `tsp -w` returns. The floor is the same N no-op commands in a \
`sh` loop. Every job transition of ours is durable (fsync of file and directories), as spool-layout.md \
requires; nq and tsp keep their state in unsynced files and in memory. The tmpfs row, when present, runs \
the same spool on tmpfs where fsync is free, which separates the file system's cost from the queue's.
- **Status**: records generated from a real finished and a real pending record written by the worker \
(IDs, names and packages varied; a log per finished job), then `status`, `status --json` and \
`status --all --json` run repeatedly (one warm-up run; page cache warm); peak RSS is `ru_maxrss` from \
`wait4`. `status` without `--all` must not read `done/`: the first row has no finished jobs at all.
- **Idle**: the worker started on an empty spool with its default intervals; CPU time is the sum of \
`/proc/PID/task/*/schedstat` run time, wake-ups the sum of the voluntary context switches (each one a sleep) \
of all its threads, over the window; involuntary ones are preemptions by other work and are not counted. \
The target is judged on the main loop's thread. nq has no daemon. The tsp figure is its server process.
- **Scheduler**: `spack_installer::scheduler::plan` called in process on generated queues (bench/harness/src/rank.rs).
";

fn parse() -> Result<Opts, String> {
    let mut a = std::env::args().skip(1);
    let mut quick = false;
    let (mut bin, mut noop, mut floor, mut work, mut shm, mut report) =
        (None, None, None, None, None, None);
    let mut command = String::from("bench/run.sh");
    while let Some(x) = a.next() {
        let mut val = || a.next().ok_or(format!("{x} needs a value; {USAGE}"));
        match x.as_str() {
            "--quick" => quick = true,
            "--bin" => bin = Some(PathBuf::from(val()?)),
            "--noop" => noop = Some(PathBuf::from(val()?)),
            "--floor" => floor = Some(PathBuf::from(val()?)),
            "--work" => work = Some(PathBuf::from(val()?)),
            "--shm" => shm = Some(PathBuf::from(val()?)),
            "--report" => report = Some(PathBuf::from(val()?)),
            "--command" => command = val()?,
            _ => return Err(format!("unknown argument {x}; {USAGE}")),
        }
    }
    let need = |v: Option<PathBuf>, what: &str| v.ok_or(format!("{what} is required; {USAGE}"));
    Ok(Opts {
        quick,
        bin: need(bin, "--bin")?,
        noop: need(noop, "--noop")?,
        floor: need(floor, "--floor")?,
        work: need(work, "--work")?,
        shm,
        report,
        command,
    })
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let _ = fs::create_dir_all(&o.work);
    let z = Sizes::new(o.quick);
    let mut r = Report::default();
    let t0 = Instant::now();
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let want = |k: &str| only.is_empty() || only.split(',').any(|x| x == k);
    if want("submit") {
        bench_submit(&o, &z, &mut r);
    }
    if want("pickup") {
        bench_pickup(&o, &z, &mut r);
    }
    if want("drain") {
        bench_drain(&o, &z, &mut r);
    }
    if want("status") {
        bench_status(&o, &z, &mut r);
    }
    if want("idle") {
        bench_idle(&o, &z, &mut r);
    }
    if want("rank") {
        bench_rank(&z, &mut r);
    }
    let md = render(&o, &r, t0.elapsed());
    println!();
    println!("{}", table(&r));
    for t in &r.targets {
        println!(
            "{:<55} {:<13} {}",
            t.text,
            match t.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "not measured",
            },
            t.evidence
        );
    }
    if let Some(p) = &o.report {
        match fs::write(p, md) {
            Ok(()) => println!("\nwrote {}", p.display()),
            Err(e) => eprintln!("cannot write {}: {e}", p.display()),
        }
    }
}
