//! The scheduler as it was written first, kept as the reference the faster
//! [`super::plan`] is checked against on random queues: the same ranking, every reason
//! included, by the straightforward algorithms (a vector per job for its edges, a scan of
//! a class's owners for each fair-share place, a hash set of packages). It is the
//! specification in code; change the two together.

use super::*;

/// The dependency graph among pending jobs, with doom decided.
struct Graph {
    /// waits[i]: the pending jobs i waits for (indices, sorted, no duplicates).
    waits: Vec<Vec<usize>>,
    /// on_running[i]: the running jobs i waits for (indices into `q.running`).
    on_running: Vec<Vec<usize>>,
    /// dependents[j]: the pending jobs that wait for j.
    dependents: Vec<Vec<usize>>,
    doom: Vec<Option<String>>,
}

fn graph(q: &QueueState) -> Graph {
    let n = q.pending.len();
    let index: FastMap<JobId, usize> = q
        .pending
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id, i))
        .collect();
    let running_index: FastMap<JobId, usize> = q
        .running
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id, i))
        .collect();
    let mut by_package: FastMap<&str, Vec<usize>> = FastMap::default();
    for (i, p) in q.pending.iter().enumerate() {
        by_package.entry(p.package.as_str()).or_default().push(i);
    }
    let mut running_by_package: FastMap<&str, Vec<usize>> = FastMap::default();
    for (i, r) in q.running.iter().enumerate() {
        running_by_package
            .entry(r.package.as_str())
            .or_default()
            .push(i);
    }

    // Each concretized job's root, by its `NAME@VERSION/HASH7`.
    #[derive(Clone, Copy)]
    enum Place {
        Pending(usize),
        Running(usize),
    }
    let mut roots: FastMap<&str, Vec<(JobId, Place)>> = FastMap::default();
    for (id, d) in &q.dag {
        let place = match (index.get(id), running_index.get(id)) {
            (Some(&i), _) => Place::Pending(i),
            (None, Some(&r)) => Place::Running(r),
            (None, None) => continue,
        };
        roots.entry(d.root.as_str()).or_default().push((*id, place));
    }

    let mut waits = vec![Vec::new(); n];
    let mut on_running = vec![Vec::new(); n];
    let mut doom: Vec<Option<String>> = vec![None; n];
    for (i, job) in q.pending.iter().enumerate() {
        for dep in &job.after {
            if let Some(&j) = index.get(dep) {
                waits[i].push(j);
            } else if let Some(&r) = running_index.get(dep) {
                on_running[i].push(r);
            } else if let Some(f) = q.finished.get(dep)
                && f.outcome != Outcome::Done
            {
                doom[i] = Some(format!("dependency {} {}", f.name, outcome_word(f.outcome)));
                break;
            }
        }
        if doom[i].is_some() {
            continue;
        }
        for pkg in &job.dependencies {
            let queued = by_package.get(pkg.as_str());
            let running = running_by_package.get(pkg.as_str());
            if queued.is_some_and(|v| v.iter().any(|&j| j != i)) || running.is_some() {
                waits[i].extend(queued.into_iter().flatten().filter(|&&j| j != i));
                on_running[i].extend(running.into_iter().flatten());
            } else if let Some(f) = own_failure(q.finished_by_package.get(pkg), job) {
                doom[i] = Some(format!("dependency {} {}", f.name, outcome_word(f.outcome)));
                break;
            }
        }
        // The DAG: wait for the jobs whose root this one would build.
        if let Some(mine) = q.dag.get(&job.id) {
            for b in &mine.builds {
                for &(other, j) in roots.get(b.as_str()).into_iter().flatten() {
                    match j {
                        Place::Pending(j) if j != i => waits[i].push(j),
                        Place::Running(r) if other != job.id => on_running[i].push(r),
                        _ => {}
                    }
                }
            }
        }
        waits[i].sort_unstable();
        waits[i].dedup();
        on_running[i].sort_unstable();
        on_running[i].dedup();
    }

    // Everything below walks jobs in ID order, so the plan does not depend on the order
    // of `q.pending` (names in reasons, ties in sums).
    let id = |i: &usize| q.pending[*i].id;
    let mut dependents = vec![Vec::new(); n];
    for (i, w) in waits.iter().enumerate() {
        for &j in w {
            dependents[j].push(i);
        }
    }
    for d in &mut dependents {
        d.sort_unstable_by_key(id);
    }

    for mut cycle in cycles(&waits, &doom) {
        cycle.sort_unstable_by_key(id);
        const SHOWN: usize = 6;
        let names: Vec<&str> = cycle
            .iter()
            .take(SHOWN)
            .map(|&i| q.pending[i].name.as_str())
            .collect();
        let text = if cycle.len() <= SHOWN {
            format!("dependency cycle: {} → {}", names.join(" → "), names[0])
        } else {
            format!(
                "dependency cycle of {} jobs: {} → … → {}",
                cycle.len(),
                names.join(" → "),
                names[0]
            )
        };
        for &i in &cycle {
            doom[i] = Some(text.clone());
        }
    }

    // Doom spreads to everything that waits, directly or not, on a doomed job.
    let mut seeds: Vec<usize> = (0..n).filter(|&i| doom[i].is_some()).collect();
    seeds.sort_unstable_by_key(id);
    let mut queue: VecDeque<usize> = seeds.into();
    while let Some(d) = queue.pop_front() {
        for &i in &dependents[d] {
            if doom[i].is_none() {
                doom[i] = Some(format!(
                    "dependency {} cannot run",
                    q.pending[d].name.as_str()
                ));
                queue.push_back(i);
            }
        }
    }
    Graph {
        waits,
        on_running,
        dependents,
        doom,
    }
}

/// The cycles among waiting jobs that are not doomed already: strongly connected
/// components of more than one job, or a job waiting on itself (Tarjan's algorithm,
/// iterative so a long chain cannot overflow the stack).
fn cycles(waits: &[Vec<usize>], doom: &[Option<String>]) -> Vec<Vec<usize>> {
    const NONE: usize = usize::MAX;
    let n = waits.len();
    let live = |v: usize| doom[v].is_none();
    let mut index = vec![NONE; n];
    let mut low = vec![0; n];
    let mut on = vec![false; n];
    let mut stack = Vec::new();
    let mut next = 0;
    let mut out = Vec::new();
    // (node, position in its edge list)
    let mut calls: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if index[root] != NONE || !live(root) {
            continue;
        }
        calls.push((root, 0));
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on[root] = true;
        while let Some(&mut (v, ref mut e)) = calls.last_mut() {
            if let Some(&w) = waits[v].get(*e) {
                *e += 1;
                if !live(w) {
                    continue;
                }
                if index[w] == NONE {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on[w] = true;
                    calls.push((w, 0));
                } else if on[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(parent, _)) = calls.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut comp = Vec::new();
                while let Some(w) = stack.pop() {
                    on[w] = false;
                    comp.push(w);
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 || waits[v].contains(&v) {
                    out.push(comp);
                }
            }
        }
    }
    out
}

/// What ranks a live job, computed once per plan.
#[derive(Debug, Clone, Copy)]
struct Rank {
    /// Overdue, by itself or because an overdue job waits for it (the lender; itself
    /// if none).
    overdue: bool,
    lender: usize,
    /// Submission time of the oldest overdue job this one serves (for overdue ordering).
    served_since: Timestamp,
    /// Best chain from this job through jobs waiting on it: summed weight and time.
    chain_weight: f64,
    chain_secs: f64,
    /// How many jobs lie on that chain after this one.
    chain_len: usize,
    estimate: Duration,
}

impl Rank {
    fn ratio(&self) -> f64 {
        self.chain_weight / self.chain_secs
    }
}

/// Rank the pending jobs.
pub fn plan<'q>(q: &'q QueueState, now: Timestamp, policy: &Policy) -> Plan<'q> {
    let n = q.pending.len();
    let g = graph(q);

    let mut rank: Vec<Rank> = q
        .pending
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let estimate = q.estimate(p, policy).0;
            Rank {
                overdue: policy.overdue(p.submitted_at, now),
                lender: i,
                served_since: p.submitted_at,
                chain_weight: p.priority.weight() as f64,
                chain_secs: estimate.as_secs_f64().max(1.0),
                chain_len: 0,
                estimate,
            }
        })
        .collect();

    // Topological order of the live jobs, dependencies first (Kahn); then one pass
    // backwards so every job sees its dependents' final values.
    let mut missing: Vec<usize> = g.waits.iter().map(|w| w.len()).collect();
    let mut topo: Vec<usize> = (0..n)
        .filter(|&i| g.doom[i].is_none() && missing[i] == 0)
        .collect();
    let mut head = 0;
    while head < topo.len() {
        let j = topo[head];
        head += 1;
        for &i in &g.dependents[j] {
            missing[i] -= 1;
            if missing[i] == 0 && g.doom[i].is_none() {
                topo.push(i);
            }
        }
    }
    let mut bundles: Vec<(f64, f64, usize)> = Vec::new();
    for &j in topo.iter().rev() {
        let mine = rank[j];
        let mut best = mine;
        bundles.clear();
        for &d in &g.dependents[j] {
            let theirs = rank[d];
            if theirs.overdue && (!best.overdue || theirs.served_since < best.served_since) {
                best.overdue = true;
                best.served_since = theirs.served_since;
                best.lender = theirs.lender;
            }
            bundles.push((theirs.chain_weight, theirs.chain_secs, theirs.chain_len + 1));
        }
        // Sidney's rule on a tree: take the dependents' bundles, best ratio first,
        // while each raises the ratio of the whole.
        bundles.sort_unstable_by(|a, b| (b.0 / b.1).total_cmp(&(a.0 / a.1)));
        for &(w, secs, len) in &bundles {
            if (best.chain_weight + w) / (best.chain_secs + secs) > best.ratio() {
                best.chain_weight += w;
                best.chain_secs += secs;
                best.chain_len += len;
            } else {
                break;
            }
        }
        // Shared dependents are counted once per path: keep the sums finite (the
        // ratio is what ranks).
        if best.chain_secs > 1e12 {
            best.chain_weight /= 1e6;
            best.chain_secs /= 1e6;
        }
        rank[j] = best;
    }

    let running_packages: FastSet<&str> = q.running.iter().map(|r| r.package.as_str()).collect();
    let running_nodes: FastSet<&str> = q
        .running
        .iter()
        .filter_map(|r| q.dag.get(&r.id))
        .flat_map(|d| d.builds.iter().map(String::as_str))
        .collect();
    let mut status: Vec<Readiness<'q>> = (0..n)
        .map(|i| {
            let p = &q.pending[i];
            if let Some(why) = &g.doom[i] {
                return Readiness::Doomed(why.clone());
            }
            if !g.waits[i].is_empty() || !g.on_running[i].is_empty() {
                // Names begin with the zero-padded ID: sorting by ID sorts the names.
                let mut on: Vec<(JobId, &str)> = g.waits[i]
                    .iter()
                    .map(|&d| (q.pending[d].id, q.pending[d].name.as_str()))
                    .chain(
                        g.on_running[i]
                            .iter()
                            .map(|&r| (q.running[r].id, q.running[r].name.as_str())),
                    )
                    .collect();
                on.sort_unstable();
                on.dedup();
                return Readiness::Waiting(on.into_iter().map(|(_, n)| n).collect());
            }
            if running_packages.contains(p.package.as_str()) {
                return Readiness::Conflict(format!("another {} job is running", p.package));
            }
            if let Some(node) = q
                .dag
                .get(&p.id)
                .and_then(|d| d.builds.iter().find(|b| running_nodes.contains(b.as_str())))
            {
                return Readiness::Conflict(format!(
                    "a running job builds {node}, which it would build too"
                ));
            }
            Readiness::Ready
        })
        .collect();

    let class = |s: &Readiness| match s {
        Readiness::Ready => 0u8,
        Readiness::Conflict(_) => 1,
        Readiness::Waiting(_) => 2,
        Readiness::Doomed(_) => 3,
    };
    // One key per job, compared as a tuple: the ranking of the module doc, in order.
    // The ratio is positive, so its IEEE bits order like the number.
    type Key = (u8, bool, u64, Reverse<u64>, Duration, JobId, usize);
    let mut order: Vec<Key> = (0..n)
        .map(|i| {
            let r = &rank[i];
            (
                class(&status[i]),
                !r.overdue,
                if r.overdue { r.served_since.0 } else { 0 },
                Reverse(r.ratio().to_bits()),
                r.estimate,
                q.pending[i].id,
                i,
            )
        })
        .collect();
    order.sort_unstable();
    let turns = take_turns(
        q,
        policy,
        now,
        &mut order,
        // Ready and not overdue: overdue jobs keep their place (the starvation bound).
        |k| (k.0 == 0 && k.1).then_some(k.6),
        |i| rank[i].ratio(),
    );

    // Among ready jobs, two of one package may not start together: the later is held
    // for this round.
    let mut taken: FastSet<&str> = FastSet::default();
    let mut taken_nodes: FastSet<&str> = FastSet::default();
    let order = order
        .into_iter()
        .map(|key| {
            let i = key.6;
            let p = &q.pending[i];
            let mut status = std::mem::replace(&mut status[i], Readiness::Ready);
            if status == Readiness::Ready && !taken.insert(p.package.as_str()) {
                status = Readiness::Conflict(format!("an earlier {} job goes first", p.package));
            }
            // Nor two that would build a node in common.
            let builds = q.dag.get(&p.id).map(|d| d.builds.as_slice()).unwrap_or(&[]);
            if status == Readiness::Ready {
                if let Some(node) = builds.iter().find(|b| taken_nodes.contains(b.as_str())) {
                    status = Readiness::Conflict(format!(
                        "an earlier job builds {node}, which it would build too"
                    ));
                } else {
                    taken_nodes.extend(builds.iter().map(String::as_str));
                }
            }
            let r = &rank[i];
            let (estimate, estimate_from) = q.estimate(p, policy);
            Ranked {
                id: p.id,
                name: p.name.as_str(),
                status,
                why: Why {
                    priority: p.priority,
                    overdue: r.overdue.then(|| {
                        let lender = &q.pending[r.lender];
                        (
                            (r.lender != i).then_some(lender.name.as_str()),
                            lender.submitted_at.until(now),
                        )
                    }),
                    starvation_bound: policy.starvation_bound(),
                    waiting: g.dependents[i].len(),
                    ratio: r.ratio(),
                    chain_len: r.chain_len,
                    estimate,
                    estimate_from,
                    owner: p.owner.as_str(),
                    turn: turns[i],
                },
            }
        })
        .collect();
    Plan { order }
}

/// Fair share (a usage-decayed share, as Slurm's fair-share factor): within each
/// priority class, a job's value per hour is discounted by its owner's recent use of the
/// builders, `fair_share_base` to the power of minus the installs the owner started
/// lately ([`usage`]), counting the places dealt before it in this plan as installs too.
/// The class's ready jobs keep the places the ranking gave the class as a whole (so
/// priorities, overdue jobs and other classes stay where they were), and each place goes
/// to the owner whose best remaining job is worth most after the discount; among equals,
/// the owner with less use, then the one served longest ago ([`QueueState::last_start`]),
/// then the better-ranked job. Each owner's own jobs keep their ranked order. So when
/// bob has ten jobs and alice one of the same worth, hers is dealt second (bob's first
/// one already discounts his); a job worth more than `fair_share_base` times another
/// still goes first, as Smith's rule wants, but no more than about log_base(its
/// advantage) times in a row.
///
/// `member` gives the job index of the entries of `order` that take part; `ratio` a
/// job's value per second. Returns each job's standing, by job index (`None`: not
/// dealt).
fn take_turns<K>(
    q: &QueueState,
    policy: &Policy,
    now: Timestamp,
    order: &mut [K],
    member: impl Fn(&K) -> Option<usize>,
    ratio: impl Fn(usize) -> f64,
) -> Vec<Option<Turn>>
where
    K: Clone,
{
    let mut turns = vec![None; q.pending.len()];
    let base = policy.fair_share_base;
    if !(base.is_finite() && base > 1.0) {
        return turns;
    }
    let mut used = usage(q, policy, now);
    for class in [Priority::High, Priority::Medium, Priority::Low] {
        // Places of the class in the ranking, and its jobs by owner in ranked order.
        let mut places: Vec<usize> = Vec::new();
        let mut owners: Vec<(&str, VecDeque<(usize, usize)>)> = Vec::new();
        let mut owner_index: FastMap<&str, usize> = FastMap::default();
        for (place, key) in order.iter().enumerate() {
            let Some(i) = member(key) else { continue };
            let p = &q.pending[i];
            if p.priority != class {
                continue;
            }
            places.push(place);
            let o = *owner_index.entry(p.owner.as_str()).or_insert_with(|| {
                owners.push((p.owner.as_str(), VecDeque::new()));
                owners.len() - 1
            });
            owners[o].1.push_back((place, i));
        }
        if owners.len() < 2 {
            continue;
        }
        let before: Vec<K> = places.iter().map(|&p| order[p].clone()).collect();
        let served = |name: &str| q.last_start.get(name).map_or(0, |t| t.0.saturating_add(1));
        // When each owner was last served: before this plan, then by the places it deals
        // (by owner index, so the scan below hashes no names).
        let mut when: Vec<u64> = owners.iter().map(|(name, _)| served(name)).collect();
        // Each owner's use and discount, changed only when it is dealt a place.
        let mut discount: Vec<(f64, f64)> = owners
            .iter()
            .map(|(name, _)| {
                let u = used.get(name).copied().unwrap_or(0.0);
                (u, base.powf(-u))
            })
            .collect();
        for (dealt, &slot) in places.iter().enumerate() {
            // The owner whose next job is worth most after the discount (few owners:
            // a scan is cheaper than keeping a heap up to date).
            let mut best: Option<(f64, f64, u64, usize, usize)> = None;
            for (o, (_, jobs)) in owners.iter().enumerate() {
                let Some(&(place, i)) = jobs.front() else {
                    continue;
                };
                let (u, factor) = discount[o];
                let worth = ratio(i) * factor;
                let when = when[o];
                let better = match best {
                    None => true,
                    Some((bw, bu, bwhen, bplace, _)) => {
                        worth > bw
                            || (worth == bw
                                && (u < bu || (u == bu && (when, place) < (bwhen, bplace))))
                    }
                };
                if better {
                    best = Some((worth, u, when, place, o));
                }
            }
            let (_, u, _, place, o) = best.expect("a job is left for every place");
            let (name, jobs) = &mut owners[o];
            jobs.pop_front();
            let i = member(&before[places.binary_search(&place).expect("a place of the class")])
                .expect("a member");
            turns[i] = Some(Turn {
                usage: u,
                factor: base.powf(-u),
                owners: owner_index.len(),
            });
            order[slot] =
                before[places.binary_search(&place).expect("a place of the class")].clone();
            *used.entry(name).or_default() += 1.0;
            discount[o] = (u + 1.0, base.powf(-(u + 1.0)));
            when[o] = u64::MAX - (places.len() - dealt) as u64;
        }
    }
    turns
}
