//! Job IDs and job names. A name is `NNNNNN-PACKAGE` (`000042-hdf5`): the ID padded to six
//! digits so `ls` sorts by ID, and a package part that never contains unchecked user text.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// How wide the zero-padded ID is in a name.
const ID_WIDTH: usize = 6;
/// The longest package part of a name.
const MAX_PACKAGE_IN_NAME: usize = 64;
/// The package part used for files rejected at intake.
pub const REJECTED_PACKAGE: &str = "rejected";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:0width$}", self.0, width = ID_WIDTH)
    }
}

impl JobId {
    /// Parse what a person may type for a job: `42`, `000042`, `000042-hdf5`,
    /// `000042-hdf5.toml`, or a path ending in one of those.
    pub fn parse_ref(s: &str) -> Option<JobId> {
        let base = s.rsplit('/').next().unwrap_or(s);
        let base = base.strip_suffix(".toml").unwrap_or(base);
        let base = base.strip_suffix(".log").unwrap_or(base);
        let digits = base.split('-').next()?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok().filter(|&n| n > 0).map(JobId)
    }
}

/// `after = [41, "000041", "000041-zlib"]`: IDs as numbers or strings.
pub fn deserialize_refs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<JobId>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(i64),
        S(String),
    }
    let raw = Vec::<Raw>::deserialize(d)?;
    raw.into_iter()
        .map(|r| match r {
            Raw::N(n) if n > 0 => Ok(JobId(n as u64)),
            Raw::N(n) => Err(format!("{n} is not a job ID")),
            Raw::S(s) => JobId::parse_ref(&s).ok_or_else(|| format!("`{s}` is not a job ID")),
        })
        .collect::<Result<_, _>>()
        .map_err(serde::de::Error::custom)
}

pub fn deserialize_opt_ref<'de, D: Deserializer<'de>>(d: D) -> Result<Option<JobId>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(i64),
        S(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::N(n)) if n > 0 => Ok(Some(JobId(n as u64))),
        Some(Raw::S(s)) => JobId::parse_ref(&s)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not a job ID"))),
        Some(Raw::N(n)) => Err(serde::de::Error::custom(format!("{n} is not a job ID"))),
    }
}

/// The name of a job: its file is `NAME.toml`, its log `NAME.log`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobName {
    pub id: JobId,
    pub package: String,
}

impl JobName {
    pub fn new(id: JobId, package: &str) -> Self {
        JobName {
            id,
            package: sanitize_package(package),
        }
    }

    /// Parse a file name from a state directory (`000042-hdf5.toml`). Anything else
    /// (dotfiles, other extensions, names without an ID) is not a job file.
    pub fn from_file_name(file: &str) -> Option<JobName> {
        let stem = file.strip_suffix(".toml")?;
        let (digits, package) = stem.split_once('-')?;
        if digits.len() < ID_WIDTH || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let id = JobId(digits.parse().ok()?);
        if package.is_empty() || sanitize_package(package) != package {
            return None;
        }
        Some(JobName {
            id,
            package: package.to_string(),
        })
    }

    pub fn file_name(&self) -> String {
        format!("{self}.toml")
    }

    pub fn log_name(&self) -> String {
        format!("{self}.log")
    }
}

impl fmt::Display for JobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.id, self.package)
    }
}

/// The package part of a name: `[a-z0-9_-]`, at most 64 characters; anything else
/// becomes `job`. This is what keeps `../../etc` out of file names.
pub fn sanitize_package(p: &str) -> String {
    let ok = !p.is_empty()
        && p.len() <= MAX_PACKAGE_IN_NAME
        && p.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && !p.starts_with('-');
    if ok { p.to_string() } else { "job".to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_parse_every_documented_form() {
        for s in [
            "42",
            "000042",
            "000042-hdf5",
            "000042-hdf5.toml",
            "done/000042-hdf5.toml",
        ] {
            assert_eq!(JobId::parse_ref(s), Some(JobId(42)), "{s}");
        }
        for s in ["", "hdf5", "0", "-42", "4x2"] {
            assert_eq!(JobId::parse_ref(s), None, "{s}");
        }
    }

    #[test]
    fn names_round_trip_and_sanitize() {
        let n = JobName::new(JobId(42), "hdf5");
        assert_eq!(n.file_name(), "000042-hdf5.toml");
        assert_eq!(JobName::from_file_name("000042-hdf5.toml"), Some(n));
        assert_eq!(JobName::new(JobId(1), "../../etc").package, "job");
        assert_eq!(JobName::from_file_name(".000042-hdf5.toml"), None);
        assert_eq!(JobName::from_file_name("000042-hdf5.toml.tmp"), None);
        assert_eq!(JobName::from_file_name("42-hdf5.toml"), None);
        assert_eq!(
            JobName::new(JobId(1234567), "zlib").to_string(),
            "1234567-zlib"
        );
    }
}
