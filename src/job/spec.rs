//! Spack specs as the queue accepts them. A spec reaches Spack as ONE argv element, so the
//! dangers are a leading `-` (Spack would read an option, and it does not honour `--`),
//! control characters, and more than one root spec in one string. Everything else is
//! Spack's to judge.

use std::fmt;

pub const MAX_SPEC_LEN: usize = 1024;

/// Spec keys the queue refuses: each lets a submitter run a program of their choosing as
/// the worker user. `dev_path` builds from a directory they name; compiler flags can load
/// plugins or swap tools (`cflags=-fplugin=...`, `-B/home/them/bin`, `-wrapper`). Sites
/// that want flags set them in Spack's own configuration, which only admins write.
pub const REFUSED_KEYS: [&str; 7] = [
    "dev_path", "cflags", "cxxflags", "fflags", "cppflags", "ldflags", "ldlibs",
];
pub const MAX_PACKAGE_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    text: String,
    package: String,
}

impl Spec {
    pub fn parse(text: &str) -> Result<Spec, String> {
        if text.is_empty() {
            return Err(
                "the spec is empty; give a package, e.g. `zlib` or `hdf5@1.14 +mpi`".into(),
            );
        }
        if text.len() > MAX_SPEC_LEN {
            return Err(format!(
                "the spec is {} bytes long; the limit is {MAX_SPEC_LEN}",
                text.len()
            ));
        }
        if let Some(c) = text.chars().find(|c| !(' '..='~').contains(c)) {
            return Err(format!(
                "the spec contains {c:?}; only printable ASCII is allowed (no newlines or control characters)"
            ));
        }
        if text.starts_with('-') {
            return Err(format!(
                "the spec `{text}` starts with `-`, which Spack would read as an option; a spec starts with a package name"
            ));
        }
        if text.starts_with(' ') || text.ends_with(' ') {
            return Err(format!("the spec `{text}` has leading or trailing spaces"));
        }
        let package = leading_package(text).ok_or_else(|| {
            format!("the spec `{text}` does not start with a package name (lowercase letters, digits, `-`, `_`)")
        })?;
        if let Some(key) = text
            .split(' ')
            .filter_map(|w| w.split_once('=').map(|(k, _)| k))
            .find(|k| REFUSED_KEYS.contains(k))
        {
            return Err(format!(
                "the spec `{text}` sets `{key}`, which the queue does not take: it would let a submitter run \
                 programs of their choosing as the worker user; ask an admin to set it in Spack's configuration"
            ));
        }
        if let Some(second) = second_root(text) {
            return Err(format!(
                "the spec `{text}` names more than one package (`{second}` starts a second spec); submit one job per package"
            ));
        }
        Ok(Spec {
            text: text.to_string(),
            package,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The root package, without namespace (`builtin.hdf5@1.14` → `hdf5`).
    pub fn package(&self) -> &str {
        &self.package
    }
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
}

/// Is `s` a Spack package name: `[a-z0-9][a-z0-9_-]*`, at most 64 characters.
pub fn is_package_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_PACKAGE_LEN
        && s.bytes().all(is_name_byte)
        && s.as_bytes()[0].is_ascii_alphanumeric()
}

/// The package a spec starts with, after an optional `namespace.` prefix.
fn leading_package(text: &str) -> Option<String> {
    let end = text
        .bytes()
        .position(|b| !(is_name_byte(b) || b == b'.'))
        .unwrap_or(text.len());
    let head = &text[..end];
    let name = head.rsplit('.').next()?;
    if head.split('.').all(is_package_name) {
        Some(name.to_string())
    } else {
        None
    }
}

/// A whitespace-separated word that starts a new root spec: a bare package name that is
/// not the argument of `^`/`%` and not a `key=value` pair.
fn second_root(text: &str) -> Option<&str> {
    let mut prev = "";
    for (i, word) in text.split(' ').filter(|w| !w.is_empty()).enumerate() {
        let starts_name = word.as_bytes()[0].is_ascii_alphanumeric();
        let after_sigil = matches!(prev, "^" | "%" | "%%");
        if i > 0 && starts_name && !word.contains('=') && !after_sigil {
            return Some(word);
        }
        prev = word;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_specs() {
        for (s, p) in [
            ("zlib", "zlib"),
            ("hdf5@1.14 +mpi ^openmpi", "hdf5"),
            ("py-numpy@1.26%gcc@12", "py-numpy"),
            ("builtin.zlib@1.3", "zlib"),
            ("hdf5 ~shared build_type=Release ^ zlib", "hdf5"),
            ("openmpi fabrics=ucx % gcc", "openmpi"),
            ("r-ggplot2", "r-ggplot2"),
        ] {
            assert_eq!(
                Spec::parse(s).map(|x| x.package().to_string()),
                Ok(p.to_string()),
                "{s}"
            );
        }
    }

    #[test]
    fn rejects_dangerous_or_ambiguous_specs() {
        for s in [
            "",
            "-j64 zlib",
            "--help",
            "zlib\nhdf5",
            "zlib\u{7}",
            "@1.2",
            "+mpi",
            "/abcdef",
            "zlib hdf5",
            " zlib",
            "ZLIB",
            "../../etc",
            "zlíb",
        ] {
            assert!(Spec::parse(s).is_err(), "{s:?} should be rejected");
        }
        assert!(Spec::parse(&"a".repeat(MAX_SPEC_LEN + 1)).is_err());
    }
}
