//! Estimates from history: how long earlier successful installs of a package took,
//! from the `started_at` and `finished_at` of their records in `done/`.
//!
//! It reads only the newest [`RECORDS`] records of a package, and caches the answer
//! until a newer done job of that package appears, so a scheduling decision never
//! reads `done/` as a whole. `queue::build` asks it about every pending package (a
//! submitter's own estimate is checked against it), for the worker and for `optimize`
//! alike; the caller says which done jobs exist (the worker knows their names from
//! listing `done/` at start and from the jobs it finishes).
//!
//! Spack's own `.spack/install_times.json` in each install prefix would be a second
//! source; it is not read yet (finding the prefix of a package installed only as a
//! dependency means reading other jobs' logs).

use crate::job::{JobId, JobName};
use crate::spool::{Dir, Spool, store};
use std::collections::HashMap;
use std::time::Duration;

/// How many of a package's newest successful installs the median is taken over.
pub const RECORDS: usize = 5;

/// The median of some durations (the lower middle one for an even count, so it is
/// always a duration that really happened).
pub fn median(mut d: Vec<Duration>) -> Option<Duration> {
    if d.is_empty() {
        return None;
    }
    d.sort_unstable();
    Some(d[(d.len() - 1) / 2])
}

/// How long one finished install took, from its record; None if the record is
/// unreadable or lacks either time.
pub fn duration_of(spool: &Spool, name: &JobName) -> Option<Duration> {
    let job = match store::read_path(&spool.job_path(Dir::Done, name)) {
        Ok(j) => j,
        Err(e) => {
            tracing::debug!("no history from {name}: {e}");
            return None;
        }
    };
    let (start, end) = (job.state.started_at?, job.state.finished_at?);
    Some(start.until(end))
}

/// Per-package estimates, cached by the newest done job they were computed from.
#[derive(Debug, Default)]
pub struct History {
    cache: HashMap<String, (u64, Option<Duration>)>,
}

impl History {
    /// The median duration of the newest [`RECORDS`] successful installs of `package`,
    /// whose done jobs have the IDs `done_ids` (any order).
    pub fn estimate(&mut self, spool: &Spool, package: &str, done_ids: &[u64]) -> Option<Duration> {
        let newest = *done_ids.iter().max()?;
        if let Some((seen, d)) = self.cache.get(package)
            && *seen == newest
        {
            return *d;
        }
        let mut ids = done_ids.to_vec();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        let durations = ids
            .iter()
            .take(RECORDS)
            .filter_map(|&id| duration_of(spool, &JobName::new(JobId(id), package)))
            .collect();
        let d = median(durations);
        self.cache.insert(package.to_string(), (newest, d));
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_is_a_real_duration() {
        let s = Duration::from_secs;
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![s(5)]), Some(s(5)));
        assert_eq!(median(vec![s(9), s(1), s(5)]), Some(s(5)));
        assert_eq!(median(vec![s(9), s(1), s(5), s(7)]), Some(s(5)));
    }

    fn record(spool: &Spool, id: u64, pkg: &str, started: u64, finished: Option<u64>) {
        let fin = finished
            .map(|f| format!("finished_at = \"{}\"\n", crate::time::Timestamp(f)))
            .unwrap_or_default();
        let text = format!(
            "spec = \"{pkg}\"\n\n[job]\nid = {id}\nname = \"{id:06}-{pkg}\"\npackage = \"{pkg}\"\nowner = \"root\"\nowner_uid = 0\nsubmitted_at = \"{}\"\nticket = \"t1.1.1.toml\"\n\n[state]\nstate = \"done\"\nsince = \"{}\"\nattempts = 1\nstarted_at = \"{}\"\n{fin}",
            crate::time::Timestamp(started),
            crate::time::Timestamp(started),
            crate::time::Timestamp(started),
        );
        std::fs::write(
            spool.job_path(Dir::Done, &JobName::new(JobId(id), pkg)),
            text,
        )
        .unwrap();
    }

    #[test]
    fn median_of_the_newest_records_cached_until_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path());
        std::fs::create_dir_all(spool.dir(Dir::Done)).unwrap();
        let t = 1_800_000_000;
        // The oldest, very long, falls out of the newest five.
        record(&spool, 1, "gcc", t, Some(t + 99_999));
        for (id, secs) in [(2, 3000), (3, 3600), (4, 4000), (5, 3500), (6, 3700)] {
            record(&spool, id, "gcc", t, Some(t + secs));
        }
        record(&spool, 7, "zlib", t, None);
        store::read_path(&spool.job_path(Dir::Done, &JobName::new(JobId(2), "gcc")))
            .expect("the test writes valid records");
        let mut h = History::default();
        assert_eq!(
            h.estimate(&spool, "gcc", &[1, 2, 3, 4, 5, 6]),
            Some(Duration::from_secs(3600))
        );
        // Cached: the records are not read again while no newer job appears.
        std::fs::remove_file(spool.job_path(Dir::Done, &JobName::new(JobId(6), "gcc"))).unwrap();
        assert_eq!(
            h.estimate(&spool, "gcc", &[1, 2, 3, 4, 5, 6]),
            Some(Duration::from_secs(3600))
        );
        record(&spool, 8, "gcc", t, Some(t + 100));
        record(&spool, 9, "gcc", t, Some(t + 200));
        assert_eq!(
            h.estimate(&spool, "gcc", &[1, 2, 3, 4, 5, 6, 8, 9]),
            Some(Duration::from_secs(200)),
            "the newest five are 9, 8, 6 (gone), 5, 4: 100 s, 200 s, 3500 s, 4000 s"
        );
        // A record without finished_at gives nothing, and nothing is no estimate.
        assert_eq!(h.estimate(&spool, "zlib", &[7]), None);
        assert_eq!(h.estimate(&spool, "cmake", &[]), None);
    }
}
