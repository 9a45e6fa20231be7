//! Cores: how N installs at once should share C CPUs (issue 17). `--cores` runs it.
//!
//! A stack is a Spack-like environment: a DAG of package builds, each with its build
//! time on one core `t1` and the parallel fraction `f` of Amdahl's law, split in three
//! phases: a serial configure (60% of the serial part), the parallel compile, a serial
//! install (40%). A serial phase uses one core; the compile phase uses as many cores as it
//! is given. Packages that are not make-based (Python, Ninja-driven builds here) take a
//! fixed `-j` and never join a jobserver. The queue starts ready packages on N slots,
//! highest weight first, then the longest remaining path below; only the CPU split
//! differs:
//! - **full -j**: every install at Spack's default `-j` (min(C, 16)). When the running
//!   builds want more than C cores, each gets its share of C, and all slow down by
//!   `1 / (1 + α (D/C − 1))` for D cores wanted (context switches, cache and memory
//!   pressure); α = 0.1 (4× oversubscribed: 23% slower) and α = 0 (pure time sharing) are
//!   both reported;
//! - **static split**: every install at `-j C/N`, whatever runs beside it;
//! - **jobserver** (the worker's budget): `-j` = C / installs starting together; the
//!   make-based compiles share the cores left by the serial phases and the fixed-`-j`
//!   builds (each at least one: its implicit token); at most C installs at once.
//!
//! Bound: max(total core-seconds / C, the critical path with every compile on C cores).

use crate::Rng;

/// A build in the catalog: name, seconds on one core, parallel fraction, make-based, tier
/// (0 leaf library, 1 tool or mid library, 2 big build, 3 application).
type Entry = (&'static str, f64, f64, bool, u8);

/// Times are rough one-core build times of Spack builds (compile-dominated packages have
/// f 0.9–0.97; autotools and Python packages are mostly serial).
const CATALOG: &[Entry] = &[
    ("zlib", 25.0, 0.6, true, 0),
    ("bzip2", 15.0, 0.5, true, 0),
    ("xz", 60.0, 0.6, true, 0),
    ("zstd", 120.0, 0.85, true, 0),
    ("libiconv", 90.0, 0.6, true, 0),
    ("ncurses", 180.0, 0.7, true, 0),
    ("readline", 40.0, 0.5, true, 0),
    ("libffi", 40.0, 0.4, true, 0),
    ("gmp", 200.0, 0.6, true, 0),
    ("expat", 30.0, 0.5, true, 0),
    ("libxml2", 150.0, 0.7, true, 1),
    ("openssl", 600.0, 0.85, true, 1),
    ("curl", 150.0, 0.7, true, 1),
    ("mpfr", 120.0, 0.6, true, 1),
    ("perl", 700.0, 0.6, true, 1),
    ("autoconf", 30.0, 0.1, true, 1),
    ("automake", 30.0, 0.1, true, 1),
    ("libtool", 40.0, 0.2, true, 1),
    ("pkgconf", 20.0, 0.4, true, 1),
    ("cmake", 900.0, 0.9, true, 1),
    ("sqlite", 200.0, 0.3, true, 1),
    ("hwloc", 150.0, 0.7, true, 1),
    ("py-setuptools", 30.0, 0.0, false, 1),
    ("py-pip", 30.0, 0.0, false, 1),
    ("python", 1100.0, 0.75, true, 2),
    ("openmpi", 1500.0, 0.85, true, 2),
    ("mpich", 1300.0, 0.85, true, 2),
    ("hdf5", 900.0, 0.85, true, 2),
    ("boost", 3000.0, 0.95, false, 2),
    ("gcc", 9000.0, 0.95, true, 2),
    ("llvm", 16000.0, 0.97, false, 2),
    ("openblas", 1200.0, 0.9, true, 2),
    ("netcdf-c", 300.0, 0.7, true, 2),
    ("fftw", 600.0, 0.85, true, 2),
    ("py-numpy", 600.0, 0.5, false, 2),
    ("petsc", 2400.0, 0.9, true, 3),
    ("trilinos", 7000.0, 0.95, false, 3),
    ("py-scipy", 1200.0, 0.7, false, 3),
    ("gromacs", 1800.0, 0.95, false, 3),
    ("lammps", 2000.0, 0.95, false, 3),
    ("paraview", 6000.0, 0.95, false, 3),
    ("py-pandas", 700.0, 0.5, false, 3),
    ("netcdf-fortran", 120.0, 0.5, true, 3),
];

#[derive(Debug, Clone)]
struct Pkg {
    t1: f64,
    f: f64,
    make: bool,
    deps: Vec<usize>,
    weight: f64,
}

struct Stack {
    name: &'static str,
    pkgs: Vec<Pkg>,
}

/// A stack of `n` builds with `mix[t]` of them from tier t (drawn with repeats: another
/// version or variant), each depending on 1–4 builds of lower tiers in it; times × noise.
fn stack(rng: &mut Rng, name: &'static str, n: usize, mix: [f64; 4]) -> Stack {
    let mut pkgs: Vec<(u8, Pkg)> = Vec::new();
    let total: f64 = mix.iter().sum();
    for _ in 0..n {
        let mut x = rng.f() * total;
        let mut tier = 3u8;
        for (t, w) in mix.iter().enumerate() {
            if x < *w {
                tier = t as u8;
                break;
            }
            x -= w;
        }
        let of: Vec<&Entry> = CATALOG.iter().filter(|e| e.4 == tier).collect();
        let e = of[rng.below(of.len())];
        pkgs.push((
            tier,
            Pkg {
                t1: e.1 * rng.noise(0.3),
                f: e.2,
                make: e.3,
                deps: Vec::new(),
                weight: [3.0, 2.0, 1.0][rng.below(3)],
            },
        ));
    }
    // Lower tiers first, so every dependency has a smaller index.
    pkgs.sort_by_key(|(t, _)| *t);
    for i in 0..pkgs.len() {
        let lower = pkgs.iter().take_while(|(t, _)| *t < pkgs[i].0).count();
        if lower == 0 {
            continue;
        }
        let k = 1 + rng.below(4);
        let mut deps: Vec<usize> = (0..k).map(|_| rng.below(lower)).collect();
        deps.sort();
        deps.dedup();
        pkgs[i].1.deps = deps;
    }
    Stack {
        name,
        pkgs: pkgs.into_iter().map(|(_, p)| p).collect(),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Split {
    FullJ,
    Static,
    Jobserver,
    /// The jobserver if every build joined it (Ninja with jobserver support, say).
    AllMake,
    /// The jobserver, with every install at `-j C` (only non-make builds use it: Spack
    /// drops its `-j` for make when MAKEFLAGS names a jobserver).
    JobserverFullJ,
}

struct Run {
    pkg: usize,
    /// 0 configure, 1 compile, 2 install.
    phase: usize,
    left: f64,
    jobs: f64,
}

fn phases(p: &Pkg) -> [f64; 3] {
    let serial = (1.0 - p.f) * p.t1;
    [0.6 * serial, p.f * p.t1, 0.4 * serial]
}

/// Longest path from each build to the end of the stack, every compile on `c` cores.
fn tails(s: &Stack, c: f64) -> Vec<f64> {
    let n = s.pkgs.len();
    let own = |p: &Pkg| {
        let ph = phases(p);
        ph[0] + ph[1] / c + ph[2]
    };
    let mut t = vec![0.0; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, p) in s.pkgs.iter().enumerate() {
        for &d in &p.deps {
            dependents[d].push(i);
        }
    }
    for i in (0..n).rev() {
        let after = dependents[i].iter().map(|&j| t[j]).fold(0.0, f64::max);
        t[i] = own(&s.pkgs[i]) + after;
    }
    t
}

/// Makespan and weighted mean completion time, in seconds.
fn simulate(s: &Stack, c: usize, n: usize, split: Split, alpha: f64) -> (f64, f64) {
    let cf = c as f64;
    let tail = tails(s, cf);
    let np = s.pkgs.len();
    let mut waiting: Vec<usize> = s.pkgs.iter().map(|p| p.deps.len()).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); np];
    for (i, p) in s.pkgs.iter().enumerate() {
        for &d in &p.deps {
            dependents[d].push(i);
        }
    }
    let mut ready: Vec<usize> = (0..np).filter(|&i| waiting[i] == 0).collect();
    let mut running: Vec<Run> = Vec::new();
    let (mut now, mut wsum, mut wtot) = (0.0f64, 0.0f64, 0.0f64);
    let shared = matches!(
        split,
        Split::Jobserver | Split::AllMake | Split::JobserverFullJ
    );
    let slots = if shared { n.min(c) } else { n };
    loop {
        // Start what fits, best first.
        ready.sort_by(|&a, &b| {
            let (pa, pb) = (&s.pkgs[a], &s.pkgs[b]);
            (pb.weight, tail[b])
                .partial_cmp(&(pa.weight, tail[a]))
                .unwrap()
        });
        let starting = slots.saturating_sub(running.len()).min(ready.len());
        let busy = running.len() + starting;
        for _ in 0..starting {
            let pkg = ready.remove(0);
            let jobs = match split {
                Split::FullJ => c.min(16),
                Split::Static => (c / n).max(1),
                Split::Jobserver | Split::AllMake => (c / busy).max(1),
                Split::JobserverFullJ => c,
            } as f64;
            running.push(Run {
                pkg,
                phase: 0,
                left: phases(&s.pkgs[pkg])[0],
                jobs,
            });
        }
        if running.is_empty() {
            break;
        }
        // Cores each wants, then what each gets.
        let compiles_shared = |r: &Run| {
            split == Split::AllMake
                || (matches!(split, Split::Jobserver | Split::JobserverFullJ) && s.pkgs[r.pkg].make)
        };
        let fixed: f64 = running
            .iter()
            .map(|r| match r.phase {
                1 if compiles_shared(r) => 0.0,
                1 => r.jobs,
                _ => 1.0,
            })
            .sum();
        let sharing = running
            .iter()
            .filter(|r| r.phase == 1 && compiles_shared(r))
            .count() as f64;
        let pool = if sharing > 0.0 {
            ((cf - fixed) / sharing).max(1.0)
        } else {
            0.0
        };
        let want: Vec<f64> = running
            .iter()
            .map(|r| match r.phase {
                1 if compiles_shared(r) => pool,
                1 => r.jobs,
                _ => 1.0,
            })
            .collect();
        let demand: f64 = want.iter().sum();
        let scale = if demand > cf {
            cf / demand / (1.0 + alpha * (demand / cf - 1.0))
        } else {
            1.0
        };
        let rates: Vec<f64> = want.iter().map(|w| w * scale).collect();
        let dt = running
            .iter()
            .zip(&rates)
            .map(|(r, rate)| r.left / rate)
            .fold(f64::INFINITY, f64::min);
        now += dt;
        for (r, rate) in running.iter_mut().zip(&rates) {
            r.left -= rate * dt;
        }
        let mut i = 0;
        while i < running.len() {
            if running[i].left <= 1e-9 {
                let r = &mut running[i];
                r.phase += 1;
                if r.phase < 3 {
                    r.left = phases(&s.pkgs[r.pkg])[r.phase];
                    continue;
                }
                let pkg = r.pkg;
                running.remove(i);
                let w = s.pkgs[pkg].weight;
                wsum += w * now;
                wtot += w;
                for &j in &dependents[pkg] {
                    waiting[j] -= 1;
                    if waiting[j] == 0 {
                        ready.push(j);
                    }
                }
                continue;
            }
            i += 1;
        }
    }
    (now, wsum / wtot)
}

/// The bound: max(total core-seconds / C, critical path).
fn bound(s: &Stack, c: usize) -> f64 {
    let work: f64 = s.pkgs.iter().map(|p| p.t1).sum();
    let path = tails(s, c as f64).into_iter().fold(0.0, f64::max);
    f64::max(work / c as f64, path)
}

/// A bound that also knows the N slots: each slot runs one build at a time, and no
/// build is shorter than its serial phases plus its compile on C cores.
fn slot_bound(s: &Stack, c: usize, n: usize) -> f64 {
    let shortest: f64 = s
        .pkgs
        .iter()
        .map(|p| {
            let ph = phases(p);
            ph[0] + ph[1] / c as f64 + ph[2]
        })
        .sum();
    f64::max(bound(s, c), shortest / n.min(c) as f64)
}

fn hm(secs: f64) -> String {
    let m = (secs / 60.0).round() as u64;
    format!("{}h{:02}", m / 60, m % 60)
}

pub fn run(seed: u64) {
    let mut rng = Rng(seed);
    let stacks = vec![
        stack(&mut rng, "small libraries (60)", 60, [0.6, 0.35, 0.05, 0.0]),
        stack(
            &mut rng,
            "HPC, MPI and solvers (80)",
            80,
            [0.35, 0.3, 0.2, 0.15],
        ),
        stack(&mut rng, "Python data (70)", 70, [0.3, 0.3, 0.2, 0.2]),
        stack(
            &mut rng,
            "compilers and tools (40)",
            40,
            [0.3, 0.4, 0.3, 0.0],
        ),
        stack(&mut rng, "large mixed (200)", 200, [0.45, 0.3, 0.15, 0.1]),
        stack(&mut rng, "many small (300)", 300, [0.7, 0.3, 0.0, 0.0]),
    ];
    println!("Seed {seed}.\n");
    for alpha in [0.1, 0.0] {
        println!("### CPU split: makespan / bound and weighted mean completion, α = {alpha}\n");
        println!(
            "| stack | C | N | bound | slot bound | (a) full -j | (b) static C/N | (c) jobserver | jobserver, non-make at -j C | all builds on the jobserver | weighted completion (a) / (b) / (c) |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        let (mut worst, mut worst_slot) = (0.0f64, 0.0f64);
        let (mut rows, mut beaten, mut beaten_e, mut worst_e) = (0, 0, 0, 0.0f64);
        let mut not_better = Vec::new();
        for s in &stacks {
            for (c, n) in [(16, 2), (16, 4), (64, 4), (64, 8)] {
                let b = bound(s, c);
                let sb = slot_bound(s, c, n);
                let (ma, wa) = simulate(s, c, n, Split::FullJ, alpha);
                let (mb, wb) = simulate(s, c, n, Split::Static, alpha);
                let (mc, wc) = simulate(s, c, n, Split::Jobserver, alpha);
                let (md, _) = simulate(s, c, n, Split::AllMake, alpha);
                let (me, _) = simulate(s, c, n, Split::JobserverFullJ, alpha);
                println!(
                    "| {} | {c} | {n} | {} | {:.2}× | {:.2}× | {:.2}× | **{:.2}×** | {:.2}× | {:.2}× | {} / {} / {} |",
                    s.name,
                    hm(b),
                    sb / b,
                    ma / b,
                    mb / b,
                    mc / b,
                    me / b,
                    md / b,
                    hm(wa),
                    hm(wb),
                    hm(wc)
                );
                worst = worst.max(mc / b);
                worst_slot = worst_slot.max(mc / sb);
                rows += 1;
                worst_e = worst_e.max(me / sb);
                if me < ma {
                    beaten_e += 1;
                }
                if mc < ma && wc < wa {
                    beaten += 1;
                } else {
                    not_better.push(format!("{} C={c} N={n}", s.name));
                }
            }
        }
        println!();
        println!(
            "α = {alpha}: (c) jobserver makespan at most {worst:.2}× the bound, {worst_slot:.2}× the slot \
             bound; better than full -j in both makespan and weighted completion on {beaten} of \
             {rows} rows{}. Jobserver with non-make builds at -j C: at most {worst_e:.2}× the slot \
             bound, shorter makespan than full -j on {beaten_e} of {rows} rows.\n",
            if not_better.is_empty() {
                String::new()
            } else {
                format!(" (not on: {})", not_better.join("; "))
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_serial_chain_takes_its_critical_path() {
        let p = |deps: Vec<usize>| Pkg {
            t1: 100.0,
            f: 0.0,
            make: true,
            deps,
            weight: 1.0,
        };
        let s = Stack {
            name: "chain",
            pkgs: vec![p(vec![]), p(vec![0]), p(vec![1])],
        };
        for split in [
            Split::FullJ,
            Split::Static,
            Split::Jobserver,
            Split::AllMake,
            Split::JobserverFullJ,
        ] {
            let (m, _) = simulate(&s, 8, 2, split, 0.1);
            assert!((m - 300.0).abs() < 1e-6, "{m}");
        }
        assert!((bound(&s, 8) - 300.0).abs() < 1e-6);
    }

    #[test]
    fn no_split_beats_the_slot_bound() {
        let mut rng = Rng(7);
        let s = stack(&mut rng, "t", 50, [0.4, 0.3, 0.2, 0.1]);
        let b = slot_bound(&s, 16, 4);
        for split in [
            Split::FullJ,
            Split::Static,
            Split::Jobserver,
            Split::AllMake,
            Split::JobserverFullJ,
        ] {
            let (m, _) = simulate(&s, 16, 4, split, 0.0);
            assert!(m >= b - 1e-6, "{m} < bound {b}");
        }
    }
}
