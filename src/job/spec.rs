//! Spack specs as the queue accepts them: Spack's own grammar, then an allow-list, then
//! one canonical rendering that is what Spack receives.
//!
//! A spec reaches Spack as ONE argv element of `spack install`. Spack's lexer (see
//! [`lexer`]) cuts tokens without separators and reads quotes, so checking words split on
//! spaces is not enough: `zlib shared="true"cflags=-fplugin=/tmp/x.so` sets a compiler flag.
//! So the text is tokenized the way Spack tokenizes it, parsed into a small AST
//! ([`Node`], [`Dependency`]), and every token is checked against an allow-list:
//!
//! - only Spack's token kinds: a package name (optionally `namespace.name`), `@` versions
//!   (`1.2`, `1.2:1.4`, `:1.4`, `1.2,1.4`, `=1.2`, `git.REF=1.2`), boolean variants
//!   `+x ~x -x` and their propagated forms `++x ~~x --x`, `key=value` and `key==value`,
//!   `^` dependencies with optional `[virtuals=… deptypes=…]`, `%compiler@versions`,
//!   `arch= target= os= platform=`, `/hash`;
//! - values unquoted, from letters, digits and `_ . , : + -`;
//! - no compiler-flag key ([`REFUSED_KEYS`], any case) and no `dev_path`, in any form;
//! - no file paths (a `/` outside a `/hash`, a token ending `.json`, `.yaml`, `.yml`);
//! - exactly one root spec, and it starts with a lowercase package name (so never `-`);
//! - printable ASCII, at most [`MAX_SPEC_LEN`] bytes.
//!
//! What passes is rendered canonically ([`Spec::canonical`]: one space between tokens,
//! variants sorted, dependencies sorted) and that rendering, not the submitted text, is the
//! argument Spack gets: what was checked is exactly what Spack reads. Every canonical form
//! re-parses to itself (checked on each parse). The submitted text is kept for display.

mod lexer;

use lexer::{Kind, Token};
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

/// The keys Spack reads as the node's architecture rather than as a variant.
pub const ARCH_KEYS: [&str; 4] = ["platform", "os", "target", "arch"];

/// Why a spec is refused. The text of a refused spec is never echoed whole: a token is
/// named by its text (printable ASCII by then) and its 1-based column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("the spec is empty; give a package, e.g. `zlib` or `hdf5@1.14 +mpi`")]
    Empty,
    #[error("the spec is {0} bytes long; the limit is {MAX_SPEC_LEN}")]
    TooLong(usize),
    #[error(
        "the spec has {found} at column {column}; only printable ASCII is allowed \
         (no tabs, newlines, control characters or non-ASCII letters): retype it with plain spaces"
    )]
    NotPrintable { found: String, column: usize },
    #[error("the spec's `{token}` (column {column}) {reason}")]
    Token {
        token: String,
        column: usize,
        reason: Reason,
    },
}

/// What is wrong with one token, and what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    #[error(
        "starts with `-`, which Spack would read as an option; a spec starts with a package name, e.g. `zlib`"
    )]
    LeadingDash,
    #[error(
        "does not start with a package name (lowercase letters, digits, `-`, `_`, optionally `namespace.`); write e.g. `zlib@1.3`"
    )]
    NoRootName,
    #[error(
        "starts a second spec; one job installs one root spec: submit one job per package, or write `^{0}` to make it a dependency"
    )]
    SecondRoot(String),
    #[error(
        "sets `{0}`, which the queue does not take: compiler flags and `dev_path` would let a submitter run programs \
         of their choosing as the worker user; ask an admin to set them in Spack's configuration"
    )]
    FlagKey(String),
    #[error(
        "is quoted; the queue takes no quotes (Spack would read what follows the closing quote as another token): \
         write the value bare, from letters, digits and `_ . , : + -`"
    )]
    Quoted,
    #[error(
        "uses `:=`, which this Spack does not read (newer ones read it as a compiler flag); write `key=value`"
    )]
    ColonEquals,
    #[error(
        "is a file path; Spack would read a spec from a file (or pass a path on): name the package and its options instead"
    )]
    Path,
    #[error("has `{0}`, which a value may not hold; values are letters, digits and `_ . , : + -`")]
    BadValue(char),
    #[error("has no value after `=`; write e.g. `build_type=Release`")]
    NoValue,
    #[error(
        "is not a version Spack reads; write `@1.2`, `@1.2:1.4`, `@:1.4`, `@1.2,1.4`, `@=1.2` or `@git.REF=1.2`"
    )]
    BadVersion,
    #[error("needs a version right after `@`, e.g. `zlib@1.3`")]
    NoVersion,
    #[error("needs a compiler name right after `%`, e.g. `%gcc@12`")]
    NoCompilerName,
    #[error("needs a variant name right after the sign, e.g. `+mpi` or `~shared`")]
    NoVariantName,
    #[error(
        "is not a package name (lowercase letters, digits, `-`, `_`, at most {MAX_PACKAGE_LEN}, optionally `namespace.`)"
    )]
    BadName,
    #[error("is not a name Spack reads for a variant or key (letters, digits, `-`, `_`)")]
    BadKey,
    #[error("is not a hash prefix (lowercase letters and digits, at most 32)")]
    BadHash,
    #[error("repeats {0} on the same package; give it once")]
    Duplicate(String),
    #[error("must be followed by a package name, e.g. `^openmpi`")]
    DanglingDependency,
    #[error(
        "is not an edge attribute; `^[…]` takes only `virtuals=` and `deptypes=`, e.g. `^[virtuals=mpi] openmpi`"
    )]
    BadEdge,
    #[error("is not closed; write `^[virtuals=mpi] openmpi`")]
    UnclosedEdge,
    #[error("is not part of Spack's spec grammar here; remove it")]
    Unexpected,
    #[error("is not in canonical form (`{0}`); the record was not written by intake")]
    NotCanonical(String),
}

/// A boolean variant or a `key=value` pair on one node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Variant {
    pub name: String,
    pub value: VariantValue,
    /// `++x`, `~~x`, `key==value`: Spack applies it to the dependencies too.
    pub propagate: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum VariantValue {
    Bool(bool),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Compiler {
    pub name: String,
    pub version: Option<String>,
}

/// One package of a spec: the root, or a dependency after `^`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Node {
    pub namespace: Option<String>,
    /// Always set on the root; a dependency may be given by `/hash` alone.
    pub name: Option<String>,
    pub version: Option<String>,
    /// Sorted by name.
    pub variants: Vec<Variant>,
    /// `(key, value)` for the [`ARCH_KEYS`], in that order.
    pub arch: Vec<(String, String)>,
    pub hash: Option<String>,
    pub compiler: Option<Compiler>,
}

/// `^[virtuals=… deptypes=…] node`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dependency {
    pub deptypes: Vec<String>,
    pub virtuals: Vec<String>,
    pub node: Node,
}

/// A spec that passed the grammar and the allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    text: String,
    canonical: String,
    /// Boxed: a `Spec` travels inside every `Submission`, most of which are never walked.
    root: Box<Node>,
    deps: Vec<Dependency>,
}

impl Spec {
    /// Check a submitted spec.
    pub fn parse(text: &str) -> Result<Spec, SpecError> {
        let (root, deps) = parse_ast(text)?;
        let canonical = render(&root, &deps);
        // The canonical form is what Spack runs; it must say exactly what was checked.
        match parse_ast(&canonical) {
            Ok(again) if again == (root.clone(), deps.clone()) => {}
            _ => {
                return Err(SpecError::Token {
                    token: canonical,
                    column: 1,
                    reason: Reason::Unexpected,
                });
            }
        }
        Ok(Spec {
            text: text.to_string(),
            canonical,
            root: Box::new(root),
            deps,
        })
    }

    /// A spec read back from a record: `text` as submitted, `canonical` as intake
    /// rendered it. The canonical form must still be one this grammar renders to itself.
    pub fn from_record(text: &str, canonical: &str) -> Result<Spec, SpecError> {
        let mut spec = Spec::parse(canonical)?;
        if spec.canonical != canonical {
            return Err(SpecError::Token {
                token: canonical.to_string(),
                column: 1,
                reason: Reason::NotCanonical(spec.canonical),
            });
        }
        spec.text = text.to_string();
        Ok(spec)
    }

    /// The text as submitted, for display.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The canonical rendering: the one argument `spack install` gets, and what two
    /// submissions are compared by (`zlib@1.3` and `zlib @1.3` are the same spec).
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// The root package, without namespace (`builtin.hdf5@1.14` → `hdf5`).
    pub fn package(&self) -> &str {
        self.root.name.as_deref().expect("the root is named")
    }

    pub fn root(&self) -> &Node {
        &self.root
    }

    /// The `^` dependencies, sorted, each once.
    pub fn dependencies(&self) -> &[Dependency] {
        &self.deps
    }
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Is `s` a Spack package name as the queue takes it: `[a-z0-9][a-z0-9_-]*`, at most 64
/// characters (it becomes part of file names).
pub fn is_package_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_PACKAGE_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && s.as_bytes()[0].is_ascii_alphanumeric()
}

/// A compiler-flag key or `dev_path`, in any case.
pub fn is_refused_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    REFUSED_KEYS.contains(&k.as_str())
}

/// Does this token end like a file Spack would read a spec from.
pub(crate) fn names_a_file(word: &str) -> bool {
    let w = word.to_ascii_lowercase();
    [".json", ".yaml", ".yml"].iter().any(|e| w.ends_with(e))
}

/// A key or variant name: Spack's NAME without dots.
fn is_key(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// `vid` of Spack's grammar, ending on a word character (so Spack's `\b` holds there).
fn is_vid(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-')
        && (b[b.len() - 1].is_ascii_alphanumeric() || b[b.len() - 1] == b'_')
}

fn is_git_hash(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A version list as Spack's VERSION_LIST, VERSION_HASH_PAIR or GIT_VERSION reads it,
/// restricted to forms that cannot be cut two ways.
fn is_version_list(v: &str, allow_git: bool) -> bool {
    if allow_git {
        let (head, exact) = match v.split_once('=') {
            Some((h, e)) if !h.is_empty() => (h, Some(e)),
            _ => (v, None),
        };
        let git = head
            .strip_prefix("git.")
            .is_some_and(|r| is_vid(r) && !r.contains(':'))
            || is_git_hash(head);
        if git {
            return exact.is_none_or(is_vid);
        }
    }
    if let Some(exact) = v.strip_prefix('=') {
        return is_vid(exact);
    }
    v.split(',').all(|e| match e.split_once(':') {
        Some((lo, hi)) => {
            (lo.is_empty() || is_vid(lo)) && (hi.is_empty() || is_vid(hi)) && !hi.contains(':')
        }
        None => is_vid(e) && !e.contains('='),
    }) && !v.contains('=')
}

fn value_problem(value: &str) -> Option<Reason> {
    if value.contains('/') || names_a_file(value) {
        return Some(Reason::Path);
    }
    value
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "_.,:+-".contains(c)))
        .map(Reason::BadValue)
}

fn token_err(t: &Token<'_>, reason: Reason) -> SpecError {
    SpecError::Token {
        token: t.src.to_string(),
        column: t.start + 1,
        reason,
    }
}

struct Parser<'a> {
    toks: Vec<Token<'a>>,
    i: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&Token<'a>> {
        self.toks.get(self.i)
    }

    /// One node: an optional name, then its attributes, up to the next `^` or name.
    fn node(&mut self) -> Result<Node, SpecError> {
        let mut n = Node::default();
        if let Some(t) = self.peek()
            && let Kind::Name(name) = t.kind
        {
            if names_a_file(name) {
                return Err(token_err(t, Reason::Path));
            }
            let parts: Vec<&str> = name.split('.').collect();
            if !parts.iter().all(|p| is_package_name(p)) {
                return Err(token_err(t, Reason::BadName));
            }
            let (last, ns) = parts.split_last().expect("split gives one part");
            n.name = Some(last.to_string());
            n.namespace = (!ns.is_empty()).then(|| ns.join("."));
            self.i += 1;
        }
        while let Some(t) = self.peek() {
            match &t.kind {
                Kind::Version(v) => {
                    if n.version.is_some() {
                        return Err(token_err(t, Reason::Duplicate("the version".into())));
                    }
                    if names_a_file(v) {
                        return Err(token_err(t, Reason::Path));
                    }
                    if !is_version_list(v, true) {
                        return Err(token_err(t, Reason::BadVersion));
                    }
                    n.version = Some(v.clone());
                }
                Kind::Compiler { name, version } => {
                    if n.compiler.is_some() {
                        return Err(token_err(t, Reason::Duplicate("the compiler".into())));
                    }
                    if !is_package_name(name) {
                        return Err(token_err(t, Reason::BadName));
                    }
                    if let Some(v) = version
                        && (!is_version_list(v, false) || names_a_file(v))
                    {
                        return Err(token_err(t, Reason::BadVersion));
                    }
                    n.compiler = Some(Compiler {
                        name: name.to_string(),
                        version: version.clone(),
                    });
                }
                Kind::Variant {
                    name,
                    on,
                    propagate,
                } => {
                    self.check_key(t, name, &n)?;
                    n.variants.push(Variant {
                        name: name.to_string(),
                        value: VariantValue::Bool(*on),
                        propagate: *propagate,
                    });
                }
                Kind::Pair {
                    key,
                    value,
                    propagate,
                } => {
                    self.check_key(t, key, &n)?;
                    if let Some(r) = value_problem(value) {
                        return Err(token_err(t, r));
                    }
                    if ARCH_KEYS.contains(key) {
                        let clash = n
                            .arch
                            .iter()
                            .any(|(k, _)| k == key || k == "arch" || *key == "arch");
                        if clash || *propagate {
                            return Err(token_err(
                                t,
                                Reason::Duplicate("the architecture (`arch=` or `platform=`/`os=`/`target=`, each once, not `==`)".into()),
                            ));
                        }
                        n.arch.push((key.to_string(), value.to_string()));
                        n.arch.sort_by_key(|(k, _)| {
                            ARCH_KEYS.iter().position(|a| a == k).unwrap_or(0)
                        });
                    } else {
                        n.variants.push(Variant {
                            name: key.to_string(),
                            value: VariantValue::Text(value.to_string()),
                            propagate: *propagate,
                        });
                    }
                }
                Kind::Hash(h) => {
                    if n.hash.is_some() {
                        break;
                    }
                    if h.len() > 32
                        || !h
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                    {
                        return Err(token_err(t, Reason::BadHash));
                    }
                    n.hash = Some(h.to_string());
                }
                Kind::Name(_) | Kind::Dependency | Kind::EdgeOpen | Kind::EdgeClose => break,
            }
            self.i += 1;
        }
        n.variants.sort();
        Ok(n)
    }

    fn check_key(&self, t: &Token<'_>, key: &str, n: &Node) -> Result<(), SpecError> {
        if is_refused_key(key) {
            return Err(token_err(t, Reason::FlagKey(key.to_string())));
        }
        if !is_key(key) {
            return Err(token_err(t, Reason::BadKey));
        }
        if n.variants.iter().any(|v| v.name == key) {
            return Err(token_err(t, Reason::Duplicate(format!("`{key}`"))));
        }
        Ok(())
    }

    /// The attributes between `^[` and `]`.
    fn edge(&mut self, open: &Token<'_>) -> Result<(Vec<String>, Vec<String>), SpecError> {
        let (mut deptypes, mut virtuals) = (Vec::new(), Vec::new());
        loop {
            let Some(t) = self.peek().cloned() else {
                return Err(token_err(open, Reason::UnclosedEdge));
            };
            self.i += 1;
            match &t.kind {
                Kind::EdgeClose => break,
                Kind::Pair {
                    key,
                    value,
                    propagate: false,
                } if matches!(*key, "virtuals" | "deptypes") => {
                    let list = if *key == "virtuals" {
                        &mut virtuals
                    } else {
                        &mut deptypes
                    };
                    let ok = |v: &str| {
                        if *key == "virtuals" {
                            is_package_name(v)
                        } else {
                            matches!(v, "build" | "link" | "run" | "test")
                        }
                    };
                    if !list.is_empty() {
                        return Err(token_err(&t, Reason::Duplicate(format!("`{key}`"))));
                    }
                    if !value.split(',').all(ok) {
                        return Err(token_err(&t, Reason::BadEdge));
                    }
                    list.extend(value.split(',').map(str::to_string));
                    list.sort();
                    list.dedup();
                }
                _ => return Err(token_err(&t, Reason::BadEdge)),
            }
        }
        if deptypes.is_empty() && virtuals.is_empty() {
            return Err(token_err(open, Reason::BadEdge));
        }
        Ok((deptypes, virtuals))
    }
}

/// Text → (root, dependencies), every check applied; dependencies sorted, each once.
fn parse_ast(text: &str) -> Result<(Node, Vec<Dependency>), SpecError> {
    if text.trim_matches(' ').is_empty() {
        return Err(SpecError::Empty);
    }
    if text.len() > MAX_SPEC_LEN {
        return Err(SpecError::TooLong(text.len()));
    }
    if let Some((column, c)) = text
        .chars()
        .enumerate()
        .find(|(_, c)| !(' '..='~').contains(c))
    {
        return Err(SpecError::NotPrintable {
            found: format!("'{}'", c.escape_default()),
            column: column + 1,
        });
    }
    let lead = text.trim_start_matches(' ');
    let column = text.len() - lead.len() + 1;
    let first_word = lead.split(' ').next().unwrap_or(lead).to_string();
    if lead.starts_with('-') {
        return Err(SpecError::Token {
            token: first_word,
            column,
            reason: Reason::LeadingDash,
        });
    }
    if !lead.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(SpecError::Token {
            token: first_word,
            column,
            reason: Reason::NoRootName,
        });
    }
    let toks = lexer::tokenize(text)?;
    let mut p = Parser { toks, i: 0 };
    match p.peek() {
        Some(Token {
            kind: Kind::Name(_),
            ..
        }) => {}
        Some(t) => return Err(token_err(t, Reason::NoRootName)),
        None => return Err(SpecError::Empty),
    }
    let root = p.node()?;
    let mut deps: Vec<Dependency> = Vec::new();
    while let Some(t) = p.peek().cloned() {
        p.i += 1;
        let (deptypes, virtuals) = match &t.kind {
            Kind::Dependency => (Vec::new(), Vec::new()),
            Kind::EdgeOpen => p.edge(&t)?,
            Kind::Name(name) => return Err(token_err(&t, Reason::SecondRoot(name.to_string()))),
            Kind::Hash(_) => return Err(token_err(&t, Reason::Duplicate("`/hash`".into()))),
            _ => return Err(token_err(&t, Reason::Unexpected)),
        };
        let node = p.node()?;
        let named = node.name.is_some() || (node.hash.is_some() && virtuals.is_empty());
        if !named {
            return Err(token_err(&t, Reason::DanglingDependency));
        }
        deps.push(Dependency {
            deptypes,
            virtuals,
            node,
        });
    }
    deps.sort();
    deps.dedup();
    Ok((root, deps))
}

fn render_node(n: &Node, out: &mut String) {
    let mut parts: Vec<String> = Vec::new();
    let mut head = String::new();
    if let Some(ns) = &n.namespace {
        head.push_str(ns);
        head.push('.');
    }
    if let Some(name) = &n.name {
        head.push_str(name);
    }
    if let Some(v) = &n.version {
        head.push('@');
        head.push_str(v);
    }
    if !head.is_empty() {
        parts.push(head);
    }
    for v in &n.variants {
        parts.push(match &v.value {
            VariantValue::Bool(on) => {
                let sign = if *on { "+" } else { "~" };
                if v.propagate {
                    format!("{sign}{sign}{}", v.name)
                } else {
                    format!("{sign}{}", v.name)
                }
            }
            VariantValue::Text(t) => {
                let eq = if v.propagate { "==" } else { "=" };
                format!("{}{eq}{t}", v.name)
            }
        });
    }
    for (k, v) in &n.arch {
        parts.push(format!("{k}={v}"));
    }
    if let Some(h) = &n.hash {
        parts.push(format!("/{h}"));
    }
    // The compiler last: Spack 1.x reads what follows `%name` as belonging to it.
    if let Some(c) = &n.compiler {
        match &c.version {
            Some(v) => parts.push(format!("%{}@{v}", c.name)),
            None => parts.push(format!("%{}", c.name)),
        }
    }
    out.push_str(&parts.join(" "));
}

fn render(root: &Node, deps: &[Dependency]) -> String {
    let mut out = String::new();
    render_node(root, &mut out);
    for d in deps {
        out.push_str(" ^");
        if !d.deptypes.is_empty() || !d.virtuals.is_empty() {
            let mut attrs = Vec::new();
            if !d.deptypes.is_empty() {
                attrs.push(format!("deptypes={}", d.deptypes.join(",")));
            }
            if !d.virtuals.is_empty() {
                attrs.push(format!("virtuals={}", d.virtuals.join(",")));
            }
            out.push_str(&format!("[{}] ", attrs.join(" ")));
        }
        render_node(&d.node, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        Spec::parse(s)
            .unwrap_or_else(|e| panic!("{s:?}: {e}"))
            .canonical()
            .to_string()
    }

    fn refused(s: &str) -> SpecError {
        match Spec::parse(s) {
            Ok(x) => panic!("{s:?} was accepted as {:?}", x.canonical()),
            Err(e) => e,
        }
    }

    #[test]
    fn accepts_real_specs_and_renders_them_canonically() {
        for (s, package, canonical) in [
            ("zlib", "zlib", "zlib"),
            ("hdf5@1.14 +mpi ^openmpi", "hdf5", "hdf5@1.14 +mpi ^openmpi"),
            ("py-numpy@1.26%gcc@12", "py-numpy", "py-numpy@1.26 %gcc@12"),
            ("builtin.zlib@1.3", "zlib", "builtin.zlib@1.3"),
            (
                "hdf5 ~shared build_type=Release ^ zlib",
                "hdf5",
                "hdf5 build_type=Release ~shared ^zlib",
            ),
            (
                "openmpi fabrics=ucx % gcc",
                "openmpi",
                "openmpi fabrics=ucx %gcc",
            ),
            ("r-ggplot2", "r-ggplot2", "r-ggplot2"),
            ("zlib + mpi", "zlib", "zlib +mpi"),
            ("zlib@ 1.2", "zlib", "zlib@1.2"),
            (
                "hdf5 ^[virtuals=mpi] openmpi",
                "hdf5",
                "hdf5 ^[virtuals=mpi] openmpi",
            ),
            ("  zlib  ", "zlib", "zlib"),
            (
                "zlib-ng@2.1:2.2,2.4 -opt",
                "zlib-ng",
                "zlib-ng@2.1:2.2,2.4 ~opt",
            ),
            ("cmake@ 3.20 , 3.22:", "cmake", "cmake@3.20,3.22:"),
            ("llvm --lld ++z", "llvm", "llvm ~~lld ++z"),
            ("mpich@=4.1 pmi==slurm", "mpich", "mpich@=4.1 pmi==slurm"),
            (
                "zlib@git.v1.3-rc=1.3 target=zen3: os=debian12 platform=linux",
                "zlib",
                "zlib@git.v1.3-rc=1.3 platform=linux os=debian12 target=zen3:",
            ),
            ("zlib/abc2def zz %clang @ 17", "zlib", ""),
            (
                "gcc %gcc @12.3 ^cmake/abcd",
                "gcc",
                "gcc %gcc@12.3 ^cmake /abcd",
            ),
            (
                "trilinos ^[deptypes=build,link virtuals=blas,lapack] openblas+ilp64",
                "trilinos",
                "trilinos ^[deptypes=build,link virtuals=blas,lapack] openblas +ilp64",
            ),
            (
                "kokkos cuda_arch=70,80 cxxstd=c++17",
                "kokkos",
                "kokkos cuda_arch=70,80 cxxstd=c++17",
            ),
            ("zlib ^zstd ^bzip2 ^zstd", "zlib", "zlib ^bzip2 ^zstd"),
        ] {
            match Spec::parse(s) {
                Ok(x) => {
                    assert_eq!(x.package(), package, "{s:?}");
                    if !canonical.is_empty() {
                        assert_eq!(x.canonical(), canonical, "{s:?}");
                    }
                    assert_eq!(x.as_str(), s);
                }
                Err(e) if canonical.is_empty() => {
                    assert!(e.to_string().contains("second spec"), "{s:?}: {e}")
                }
                Err(e) => panic!("{s:?}: {e}"),
            }
        }
    }

    #[test]
    fn the_same_spec_written_two_ways_has_one_canonical_form() {
        for (a, b) in [
            ("zlib@1.3", "zlib @1.3"),
            ("zlib@1.3", "zlib @ 1.3"),
            ("hdf5+mpi~shared", "hdf5 ~shared +mpi"),
            ("hdf5 -shared", "hdf5~shared"),
            ("a ^b ^c", "a ^c ^ b"),
            ("x%gcc@12", "x % gcc @ 12"),
        ] {
            assert_eq!(canon(a), canon(b), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn refuses_flags_and_dev_path_in_every_form() {
        for s in [
            "zlib cflags=-O3",
            "zlib CFLAGS=-O3",
            "zlib ^zstd LdFlags=-L",
            "zlib cppflags==-O3",
            "zlib dev_path=/home/bob/src",
            "zlib dev_path==x",
            "zlib DEV_PATH=x",
            "zlib ldlibs:=-lfoo",
            "zlib dev_path:=x",
            "zlib shared=\"true\"cflags=-fplugin=/tmp/x.so",
            "zlib shared='true'cflags=-O3",
            "zlib +cflags",
            "zlib ~~fflags",
            "zlib \"cflags\"=-O3",
            "zlib cflags=\"-O3 -g\"",
            "zlib api=xcflags=-O3",
            "zlib ^[virtuals=mpi] openmpi cxxflags=-O2",
        ] {
            refused(s);
        }
        let e = refused("zlib shared=\"true\"cflags=-fplugin=/tmp/x.so");
        assert_eq!(
            e,
            SpecError::Token {
                token: "shared=\"true\"".into(),
                column: 6,
                reason: Reason::Quoted
            }
        );
        let e = refused("zlib +mpi cflags=-O3").to_string();
        assert!(e.contains("`cflags=-O3` (column 11)"), "{e}");
        assert!(
            e.contains("sets `cflags`, which the queue does not take"),
            "{e}"
        );
        assert!(e.contains("ask an admin"), "{e}");
    }

    #[test]
    fn refuses_paths_roots_options_and_what_spack_cannot_parse() {
        for (s, why) in [
            ("zlib /tmp/evil.json", "file path"),
            ("zlib ^/tmp/x.yaml", "file path"),
            ("/tmp/x.yaml", "package name"),
            ("./x.json", "package name"),
            ("zlib ^x/y.json", "file path"),
            ("zlib ^spec.yml", "file path"),
            ("zlib patches=/tmp/p", "file path"),
            ("zlib@12/x.json", "file path"),
            ("zlib hdf5", "second spec"),
            ("zlib@1.2 zlib@1.3", "second spec"),
            ("zlib\tbzip2", "printable ASCII"),
            ("zlib\nhdf5", "control characters"),
            ("-j64 zlib", "starts with `-`"),
            ("--help", "starts with `-`"),
            ("@1.2", "package name"),
            ("+mpi", "package name"),
            ("^zlib", "package name"),
            ("ZLIB", "package name"),
            ("zlib@@1", "needs a version"),
            ("zlib @", "needs a version"),
            ("zlib %", "compiler name"),
            ("zlib %%gcc", "compiler name"),
            ("zlib +", "variant name"),
            ("zlib ^", "followed by a package name"),
            ("zlib ^ ^", "followed by a package name"),
            ("zlib =", "not part of"),
            ("zlib@1.2.", "not a version"),
            ("zlib@1.2-", "not a version"),
            ("zlib@1:2:3", "not a version"),
            ("zlib +shared +shared", "repeats"),
            ("zlib +mpi mpi=true", "repeats"),
            ("zlib@1 @2", "repeats the version"),
            ("zlib %gcc %clang", "repeats the compiler"),
            ("zlib arch=x target=y", "repeats the architecture"),
            ("zlib ^[when=%gcc] x", "no value"),
            ("zlib ^[foo=bar] x", "edge attribute"),
            ("zlib ^[virtuals=mpi x", "edge attribute"),
            ("zlib ^[virtuals=mpi]", "followed by a package name"),
            ("zlib; rm -rf /", "not part of"),
            ("zlib $(id)", "not part of"),
            ("zlib'", "quoted"),
            ("zlib x=a*b", "`*`"),
            ("zlib x=a~b", "`~`"),
            ("zlib x=a\\b", "`\\`"),
            ("zlib/ABC", "hash"),
            ("zlib/abc/def", "file path"),
            ("zlib /abc /def", "repeats `/hash`"),
            ("naïve", "printable ASCII"),
            ("", "empty"),
            ("   ", "empty"),
        ] {
            let e = refused(s).to_string();
            assert!(e.contains(why), "{s:?}: {e}");
        }
        assert!(Spec::parse(&"a".repeat(MAX_SPEC_LEN + 1)).is_err());
        assert!(Spec::parse(&"a".repeat(MAX_PACKAGE_LEN + 1)).is_err());
    }

    #[test]
    fn the_ast_holds_what_spack_reads() {
        let s =
            Spec::parse("mylib.hdf5@1.14: +mpi api=v112 ^[virtuals=mpi] openmpi@4 %gcc").unwrap();
        let r = s.root();
        assert_eq!(r.namespace.as_deref(), Some("mylib"));
        assert_eq!(r.version.as_deref(), Some("1.14:"));
        assert_eq!(
            r.variants,
            vec![
                Variant {
                    name: "api".into(),
                    value: VariantValue::Text("v112".into()),
                    propagate: false
                },
                Variant {
                    name: "mpi".into(),
                    value: VariantValue::Bool(true),
                    propagate: false
                },
            ]
        );
        let d = &s.dependencies()[0];
        assert_eq!(d.virtuals, vec!["mpi"]);
        assert_eq!(d.node.name.as_deref(), Some("openmpi"));
        assert_eq!(
            d.node.compiler,
            Some(Compiler {
                name: "gcc".into(),
                version: None
            })
        );
    }
}
