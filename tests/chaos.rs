//! Chaos: kill the worker with SIGKILL at random moments, many times, while it takes in and
//! installs a few hundred jobs with a fake Spack that takes 5–50 ms; restart it each time.
//! At the end every job is in exactly one terminal state, no ID appears twice, every
//! Spack run is accounted for by the job's attempts, and nothing is left behind.
//!
//! Bounded in CI by default (200 jobs, 25 kills). The long form:
//! `CHAOS_JOBS=1000 CHAOS_KILLS=300 cargo test --release --test chaos -- --nocapture`
//! (CHAOS_SEED repeats a run).

mod support;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::fs;
use std::time::{Duration, Instant};
use support::TestSpool;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: enough randomness for kill moments, repeatable from a seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

#[test]
fn kill_9_at_random_moments_loses_nothing() {
    let jobs = env_or("CHAOS_JOBS", 200);
    let kills = env_or("CHAOS_KILLS", 25);
    let seed = env_or("CHAOS_SEED", std::process::id() as u64 * 2_654_435_761 + 1);
    let mut rng = Rng(seed);
    let mut s = TestSpool::new();
    s.env.push(("SPACK_FAKE_DELAY".into(), "random".into()));
    let names: Vec<String> = (1..=jobs).map(|i| format!("p{i:05}")).collect();
    // Most jobs up front; the rest arrive while the worker is being killed.
    let (first, later) = names.split_at((jobs * 3 / 4) as usize);
    for chunk in first.chunks(50) {
        let mut args = vec!["submit", "--no-wait"];
        args.extend(chunk.iter().map(String::as_str));
        s.ok(&args);
    }
    let mut later = later.iter();
    let log = s.dir.path().join("chaos-worker.log");
    let started = Instant::now();
    for _ in 0..kills {
        let f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut child = s
            .command(&["worker", "run"])
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap();
        for _ in 0..rng.between(0, 3) {
            if let Some(p) = later.next() {
                s.ok(&["submit", "--no-wait", p]);
            }
        }
        // The moment is the experiment: anywhere from start-up recovery to mid-install.
        std::thread::sleep(Duration::from_millis(rng.between(5, 400)));
        kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
        child.wait().unwrap();
    }
    for p in later {
        s.ok(&["submit", "--no-wait", p]);
    }
    let out = s.drain();
    let final_log = String::from_utf8_lossy(&out.stderr).into_owned();
    let elapsed = started.elapsed();

    // Every job exactly once, in a terminal directory; nothing left anywhere else.
    let mut seen: HashMap<u64, (String, String)> = HashMap::new();
    for dir in ["pending", "running", "done", "failed", "cancelled"] {
        for f in s.ls(dir) {
            let id: u64 = f[..6].parse().unwrap();
            let pkg = f[7..f.len() - 5].to_string();
            if let Some(prev) = seen.insert(id, (dir.to_string(), pkg)) {
                panic!("job {id} is in both {}/ and {dir}/", prev.0);
            }
        }
    }
    assert!(
        s.ls("pending").is_empty() && s.ls("running").is_empty(),
        "unfinished jobs remain"
    );
    assert!(
        s.ls("incoming").is_empty(),
        "incoming not empty: {:?}",
        s.ls("incoming")
    );
    assert!(s.ls("tmp").is_empty(), "temp files left: {:?}", s.ls("tmp"));
    let mut by_pkg: HashMap<String, u64> = HashMap::new();
    for (id, (_, pkg)) in &seen {
        assert!(
            by_pkg.insert(pkg.clone(), *id).is_none(),
            "{pkg} was queued twice"
        );
    }
    for n in &names {
        assert!(by_pkg.contains_key(n), "{n} was lost");
    }
    assert_eq!(
        seen.len() as u64,
        jobs,
        "a job was duplicated or a rejected file appeared"
    );

    // Every Spack run is accounted for by its job's attempts; done jobs ran to the end.
    let events = fs::read_to_string(s.dir.path().join("events.log")).unwrap_or_default();
    let mut starts: HashMap<&str, u32> = HashMap::new();
    let mut ends: HashMap<&str, u32> = HashMap::new();
    for l in events.lines() {
        let mut w = l.split(' ');
        match (w.next(), w.next()) {
            (Some("start"), Some(p)) => *starts.entry(p).or_default() += 1,
            (Some("end"), Some(p)) => *ends.entry(p).or_default() += 1,
            _ => {}
        }
    }
    let (mut recovered, mut max_attempts, mut died3) = (0, 0, 0);
    for (id, (dir, pkg)) in &seen {
        let rec = s.read(&format!("{dir}/{id:06}-{pkg}.toml"));
        let attempts: u32 = rec
            .lines()
            .find_map(|l| l.strip_prefix("attempts = "))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let (st, en) = (
            starts.get(pkg.as_str()).copied().unwrap_or(0),
            ends.get(pkg.as_str()).copied().unwrap_or(0),
        );
        assert!(
            st <= attempts,
            "{pkg}: Spack started {st} times but attempts = {attempts}"
        );
        assert!(en <= st, "{pkg}: {en} ends for {st} starts");
        match dir.as_str() {
            "done" => {
                assert!(en >= 1, "{pkg} is done but Spack never finished for it");
                if attempts == 1 {
                    assert_eq!((st, en), (1, 1), "{pkg}: one attempt, so exactly one run");
                }
            }
            "failed" => {
                assert!(
                    rec.contains("worker died 3 times"),
                    "{pkg} failed for another reason: {rec}"
                );
                died3 += 1;
            }
            other => panic!("{pkg} ended in {other}/"),
        }
        if attempts > 1 {
            recovered += 1;
        }
        max_attempts = max_attempts.max(attempts);
    }
    // No process of any job is left.
    let marker = format!("SPACK_INSTALLER_JOB={}/", s.root.display());
    let left = support::processes_with_prefix(&marker);
    assert!(left.is_empty(), "orphans left: {left:?}");
    let recoveries = fs::read_to_string(&log)
        .unwrap_or_default()
        .matches("recovery:")
        .count()
        + final_log.matches("recovery:").count();
    println!(
        "chaos: seed {seed}: {jobs} jobs, {kills} kills, {} restarts, {recovered} jobs run more than once (max attempts {max_attempts}), \
         {died3} failed after 3 worker deaths, {recoveries} recovery actions, {} Spack runs, {:.1}s",
        kills + 1,
        starts.values().sum::<u32>(),
        elapsed.as_secs_f64()
    );
}
