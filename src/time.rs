//! Wall-clock timestamps and durations as they appear in job files: RFC 3339 times
//! (`2026-11-23T13:09:00Z`) and human durations (`45m`, or a number of seconds).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time, second precision, written as RFC 3339 UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn now() -> Self {
        Self::from_system(SystemTime::now())
    }
    pub fn from_system(t: SystemTime) -> Self {
        Timestamp(
            t.duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        )
    }
    pub fn to_system(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.0)
    }
    /// Time elapsed from `self` to `later` (zero if `later` is earlier).
    pub fn until(self, later: Timestamp) -> Duration {
        Duration::from_secs(later.0.saturating_sub(self.0))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_rfc3339_seconds(self.to_system()))
    }
}

impl std::str::FromStr for Timestamp {
    type Err = humantime::TimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_rfc3339_weak(s).map(Timestamp::from_system)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A duration written either as a number of seconds or as a humantime string ("1h 30m").
/// Serialized as a humantime string, which is what a person reading `cat` wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub Duration);

impl Span {
    pub fn secs(self) -> u64 {
        self.0.as_secs()
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// Parse "90", "90s", "45m", "1h 30m".
pub fn parse_span(s: &str) -> Result<Span, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u64>() {
        return Ok(Span(Duration::from_secs(n)));
    }
    humantime::parse_duration(t)
        .map(|d| Span(Duration::from_secs(d.as_secs())))
        .map_err(|e| {
            format!("`{s}` is not a duration ({e}); write seconds or e.g. \"45m\", \"2h\"")
        })
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(i64),
            F(f64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) if n >= 0 => Ok(Span(Duration::from_secs(n as u64))),
            Raw::F(f) if f >= 0.0 && f.is_finite() => Ok(Span(Duration::from_secs(f as u64))),
            Raw::S(s) => parse_span(&s).map_err(serde::de::Error::custom),
            _ => Err(serde::de::Error::custom(
                "a duration must be a non-negative number of seconds or a string like \"45m\"",
            )),
        }
    }
}

/// "3m 12s" style, rounded to seconds, for tables.
pub fn short(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}
