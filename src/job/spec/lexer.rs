//! Spack's spec tokens, cut where Spack 0.22+ cuts them (`lib/spack/spack/parser.py`).
//!
//! Spack tokenizes with one ordered regex alternation and no separator between tokens:
//! `shared="true"cflags=-O3` is two key=value tokens, and spaces are allowed after the
//! sigils `@ % + ~ - ^` and around the commas of a version list. Where Spack's cut depends
//! on regex backtracking we would rather not mirror, this lexer cuts more greedily (a
//! version takes every following `=` and `:`) or refuses outright (a quote, `:=`, a `/`
//! that is not a clean `/hash`), and the parser (`super`) then refuses what such
//! a token contains; so for every spec the parser accepts, these are the tokens Spack
//! reads, and no accepted string can be cut two ways.
//!
//! Input is printable ASCII (the caller checks), so byte offsets are columns.

use super::{Reason, SpecError};

/// One token with its 0-based byte offset and its source text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Token<'a> {
    pub start: usize,
    pub src: &'a str,
    pub kind: Kind<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind<'a> {
    /// `^`
    Dependency,
    /// `^[`: edge attributes follow, up to `]`.
    EdgeOpen,
    /// `]`
    EdgeClose,
    /// `@…`: the version list with its spaces removed.
    Version(String),
    /// `+name ~name -name` and the propagated `++name ~~name --name`.
    Variant {
        name: &'a str,
        on: bool,
        propagate: bool,
    },
    /// `key=value` or `key==value` (the value unquoted; quotes are refused here).
    Pair {
        key: &'a str,
        value: &'a str,
        propagate: bool,
    },
    /// `%name` or `%name@versions`.
    Compiler {
        name: &'a str,
        version: Option<String>,
    },
    /// A package name, possibly `namespace.name`.
    Name(&'a str),
    /// `/hash`
    Hash(&'a str),
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Spack's `NAME`: `[a-zA-Z_0-9][a-zA-Z_0-9\-.]*`.
fn name_len(s: &[u8], i: usize) -> usize {
    if i >= s.len() || !is_word(s[i]) {
        return 0;
    }
    let mut j = i + 1;
    while j < s.len() && (is_word(s[j]) || s[j] == b'-' || s[j] == b'.') {
        j += 1;
    }
    j - i
}

fn skip_spaces(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && s[i] == b' ' {
        i += 1;
    }
    i
}

/// Characters a version element may hold as we scan it: Spack's version characters,
/// plus `:` (ranges) and `=` (exact versions, git pairs), validated afterwards.
fn is_version_byte(b: u8) -> bool {
    is_word(b) || matches!(b, b'.' | b'-' | b':' | b'=')
}

/// Characters Spack's unquoted `VALUE` takes: `[a-zA-Z_0-9\-+*.,:=~/\\]`.
fn is_value_byte(b: u8) -> bool {
    is_word(b) || b"-+*.,:=~/\\".contains(&b)
}

/// A version list after `@` (spaces allowed after `@` and around commas, as Spack's
/// `@\s*` and `\s*,\s*`). Returns the text without spaces and the end offset, or `None`
/// when no version follows.
fn version_list(s: &[u8], at: usize) -> Option<(String, usize)> {
    let mut i = skip_spaces(s, at + 1);
    let mut text = String::new();
    loop {
        let start = i;
        while i < s.len() && is_version_byte(s[i]) {
            i += 1;
        }
        if i == start {
            return None;
        }
        text.push_str(std::str::from_utf8(&s[start..i]).expect("ASCII"));
        let after = skip_spaces(s, i);
        if after < s.len() && s[after] == b',' {
            text.push(',');
            i = skip_spaces(s, after + 1);
            continue;
        }
        return Some((text, i));
    }
}

fn err(text: &str, start: usize, end: usize, reason: Reason) -> SpecError {
    SpecError::Token {
        token: text[start..end.max(start + 1).min(text.len())].to_string(),
        column: start + 1,
        reason,
    }
}

/// Cut `text` (printable ASCII) into tokens.
pub(super) fn tokenize(text: &str) -> Result<Vec<Token<'_>>, SpecError> {
    let s = text.as_bytes();
    let mut out = Vec::new();
    let mut i = skip_spaces(s, 0);
    while i < s.len() {
        let start = i;
        let (kind, end) = match s[i] {
            b'^' if s.get(i + 1) == Some(&b'[') => (Kind::EdgeOpen, i + 2),
            b'^' => (Kind::Dependency, i + 1),
            b']' => (Kind::EdgeClose, i + 1),
            b'@' => match version_list(s, i) {
                Some((v, end)) => (Kind::Version(v), end),
                None => return Err(err(text, start, i + 1, Reason::NoVersion)),
            },
            b'%' => {
                let n = skip_spaces(s, i + 1);
                let len = name_len(s, n);
                if len == 0 {
                    return Err(err(text, start, n + 1, Reason::NoCompilerName));
                }
                let name = &text[n..n + len];
                // Spack's COMPILER_AND_VERSION allows spaces before and after the `@`.
                let at = skip_spaces(s, n + len);
                if at < s.len() && s[at] == b'@' {
                    match version_list(s, at) {
                        Some((v, end)) => (
                            Kind::Compiler {
                                name,
                                version: Some(v),
                            },
                            end,
                        ),
                        None => return Err(err(text, at, at + 1, Reason::NoVersion)),
                    }
                } else {
                    (
                        Kind::Compiler {
                            name,
                            version: None,
                        },
                        n + len,
                    )
                }
            }
            b'+' | b'~' | b'-' => {
                let sigil = s[i];
                let propagate = s.get(i + 1) == Some(&sigil);
                let n = skip_spaces(s, i + if propagate { 2 } else { 1 });
                let len = name_len(s, n);
                if len == 0 {
                    let reason = if start == 0 && sigil == b'-' {
                        Reason::LeadingDash
                    } else {
                        Reason::NoVariantName
                    };
                    return Err(err(text, start, n + 1, reason));
                }
                (
                    Kind::Variant {
                        name: &text[n..n + len],
                        on: sigil == b'+',
                        propagate,
                    },
                    n + len,
                )
            }
            b'/' => {
                let mut j = i + 1;
                while j < s.len() && is_word(s[j]) {
                    j += 1;
                }
                // Spack tries FILENAME (`/…(.json|.yaml)`) before a hash: anything but
                // a clean hash followed by a token boundary may be read as a file.
                let clean_end = j == s.len() || b" ^%+~@".contains(&s[j]);
                if j == i + 1 || !clean_end {
                    let mut e = j;
                    while e < s.len() && s[e] != b' ' {
                        e += 1;
                    }
                    return Err(err(text, start, e, Reason::Path));
                }
                (Kind::Hash(&text[i + 1..j]), j)
            }
            b if is_word(b) => {
                let len = name_len(s, i);
                let n = i + len;
                match s.get(n) {
                    Some(b'=') => {
                        let propagate = s.get(n + 1) == Some(&b'=');
                        let v = n + if propagate { 2 } else { 1 };
                        let key = &text[i..n];
                        if super::is_refused_key(key) {
                            let mut e = v;
                            while e < s.len() && s[e] != b' ' {
                                e += 1;
                            }
                            return Err(err(text, start, e, Reason::FlagKey(key.to_string())));
                        }
                        if v < s.len() && (s[v] == b'"' || s[v] == b'\'') {
                            let close = text[v + 1..]
                                .find(s[v] as char)
                                .map(|k| v + 1 + k + 1)
                                .unwrap_or(s.len());
                            return Err(err(text, start, close, Reason::Quoted));
                        }
                        let mut e = v;
                        while e < s.len() && is_value_byte(s[e]) {
                            e += 1;
                        }
                        if e == v {
                            return Err(err(text, start, v, Reason::NoValue));
                        }
                        (
                            Kind::Pair {
                                key,
                                value: &text[v..e],
                                propagate,
                            },
                            e,
                        )
                    }
                    Some(b':') if s.get(n + 1) == Some(&b'=') => {
                        let key = &text[i..n];
                        let reason = if super::is_refused_key(key) {
                            Reason::FlagKey(key.to_string())
                        } else {
                            Reason::ColonEquals
                        };
                        return Err(err(text, start, n + 2, reason));
                    }
                    _ => (Kind::Name(&text[i..n]), n),
                }
            }
            b'\'' | b'"' => {
                let close = text[i + 1..]
                    .find(s[i] as char)
                    .map(|k| i + 1 + k + 1)
                    .unwrap_or(s.len());
                return Err(err(text, start, close, Reason::Quoted));
            }
            _ => {
                let mut e = i;
                while e < s.len() && s[e] != b' ' {
                    e += 1;
                }
                let word = &text[i..e];
                if word.contains('/') || super::names_a_file(word) {
                    return Err(err(text, start, e, Reason::Path));
                }
                return Err(err(text, start, i + 1, Reason::Unexpected));
            }
        };
        out.push(Token {
            start,
            src: &text[start..end],
            kind,
        });
        i = skip_spaces(s, end);
    }
    Ok(out)
}
