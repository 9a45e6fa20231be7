//! What the site's Spack says about a spec before it is built: the concrete DAG from
//! `spack spec --json`, the installed hashes from `spack find --json`, and a package's
//! build time from `<prefix>/.spack/install_times.json`.
//!
//! This module only reads Spack's output; it runs nothing. The worker's concretization
//! stage runs Spack (by argv, as the worker user) and hands the text here. Spack's output
//! is not a member's text, but it is parsed as strictly as a job file all the same: a
//! node whose name is not a package name or whose hash is not Spack's 32 base-32
//! characters is an error, never a path or an argument.

use crate::job::spec::is_package_name;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::fmt;

/// The length of a Spack DAG hash (base 32, lowercase).
pub const HASH_LEN: usize = 32;

/// Spack's output could not be read as what it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {why}")]
pub struct ConcreteError {
    what: &'static str,
    why: String,
}

impl ConcreteError {
    fn new(what: &'static str, why: impl Into<String>) -> Self {
        ConcreteError {
            what,
            why: why.into(),
        }
    }
}

/// A DAG hash as Spack prints it: 32 characters of `[a-z2-7]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DagHash(String);

impl DagHash {
    pub fn parse(s: &str) -> Option<DagHash> {
        let ok = s.len() == HASH_LEN
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b));
        ok.then(|| DagHash(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 7 characters, as Spack shows hashes to people.
    pub fn short(&self) -> &str {
        &self.0[..7]
    }
}

impl fmt::Display for DagHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One node of a concrete DAG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub version: String,
    pub hash: DagHash,
    /// Provided by the system (`external` in Spack's JSON): never built.
    pub external: bool,
    /// The hashes of its direct dependencies, with their dependency types.
    pub deps: Vec<Edge>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub name: String,
    pub hash: DagHash,
    /// `build`, `link`, `run`, `test`.
    pub deptypes: Vec<String>,
}

/// A concrete spec: the root first, then every node of its DAG once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcreteSpec {
    nodes: Vec<Node>,
}

// The parts of `spack spec --json` this module reads; serde skips the rest.
#[derive(Deserialize)]
struct SpecDoc {
    spec: SpecBody,
}
#[derive(Deserialize)]
struct SpecBody {
    nodes: Vec<RawNode>,
}
#[derive(Deserialize)]
struct RawNode {
    name: String,
    version: serde_json::Value,
    hash: String,
    #[serde(default)]
    external: Option<serde_json::Value>,
    #[serde(default)]
    dependencies: Vec<RawEdge>,
}
#[derive(Deserialize)]
struct RawEdge {
    name: String,
    hash: String,
    #[serde(default)]
    parameters: RawEdgeParams,
}
#[derive(Deserialize, Default)]
struct RawEdgeParams {
    #[serde(default)]
    deptypes: Vec<String>,
}

fn hash_of(what: &'static str, name: &str, h: &str) -> Result<DagHash, ConcreteError> {
    DagHash::parse(h).ok_or_else(|| {
        ConcreteError::new(
            what,
            format!("{name} has the hash {h:?}, not 32 base-32 characters"),
        )
    })
}

fn name_of(what: &'static str, name: &str) -> Result<String, ConcreteError> {
    if is_package_name(name) {
        Ok(name.to_string())
    } else {
        Err(ConcreteError::new(
            what,
            format!("{name:?} is not a package name"),
        ))
    }
}

impl ConcreteSpec {
    /// Read the output of `spack spec --json SPEC`.
    pub fn from_spec_json(text: &str) -> Result<ConcreteSpec, ConcreteError> {
        const WHAT: &str = "spack spec --json printed something unexpected";
        let doc: SpecDoc =
            serde_json::from_str(text).map_err(|e| ConcreteError::new(WHAT, e.to_string()))?;
        if doc.spec.nodes.is_empty() {
            return Err(ConcreteError::new(WHAT, "no nodes"));
        }
        let mut nodes = Vec::with_capacity(doc.spec.nodes.len());
        let mut seen = HashSet::new();
        for raw in doc.spec.nodes {
            let name = name_of(WHAT, &raw.name)?;
            let hash = hash_of(WHAT, &name, &raw.hash)?;
            if !seen.insert(hash.clone()) {
                return Err(ConcreteError::new(
                    WHAT,
                    format!("the node {name}/{hash} appears twice"),
                ));
            }
            let version = match raw.version {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            let deps = raw
                .dependencies
                .into_iter()
                .map(|e| {
                    let name = name_of(WHAT, &e.name)?;
                    let hash = hash_of(WHAT, &name, &e.hash)?;
                    Ok(Edge {
                        name,
                        hash,
                        deptypes: e.parameters.deptypes,
                    })
                })
                .collect::<Result<Vec<_>, ConcreteError>>()?;
            nodes.push(Node {
                name,
                version,
                hash,
                external: raw.external.is_some_and(|v| !v.is_null()),
                deps,
            });
        }
        for n in &nodes {
            if let Some(e) = n.deps.iter().find(|e| !seen.contains(&e.hash)) {
                return Err(ConcreteError::new(
                    WHAT,
                    format!(
                        "{} depends on {}/{}, which is not among the nodes",
                        n.name, e.name, e.hash
                    ),
                ));
            }
        }
        Ok(ConcreteSpec { nodes })
    }

    pub fn root(&self) -> &Node {
        &self.nodes[0]
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn contains(&self, hash: &DagHash) -> bool {
        self.nodes.iter().any(|n| &n.hash == hash)
    }

    /// The nodes a build would have to make, neither installed nor external, each
    /// after the nodes it depends on.
    pub fn to_build<'a>(&'a self, installed: &'a Installed) -> impl Iterator<Item = &'a Node> {
        self.build_order()
            .into_iter()
            .filter(|n| !n.external && !installed.contains(&n.hash))
    }

    /// Every node, each after the nodes it depends on (a depth-first post-order from
    /// the root; every node is reachable from it).
    pub fn build_order(&self) -> Vec<&Node> {
        let by_hash: HashMap<&DagHash, &Node> = self.nodes.iter().map(|n| (&n.hash, n)).collect();
        let mut seen = HashSet::new();
        let mut order = Vec::with_capacity(self.nodes.len());
        // An explicit stack: (node, whether its dependencies are already pushed).
        let mut stack: Vec<(&Node, bool)> = self.nodes.iter().rev().map(|n| (n, false)).collect();
        while let Some((n, expanded)) = stack.pop() {
            if expanded {
                order.push(n);
                continue;
            }
            if !seen.insert(&n.hash) {
                continue;
            }
            stack.push((n, true));
            for e in n.deps.iter().rev() {
                if let Some(d) = by_hash.get(&e.hash).filter(|d| !seen.contains(&d.hash)) {
                    stack.push((d, false));
                }
            }
        }
        order
    }
}

/// What `spack find --json` says is installed, by hash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installed {
    hashes: HashMap<DagHash, (String, String)>,
}

#[derive(Deserialize)]
struct FoundSpec {
    name: String,
    version: serde_json::Value,
    hash: String,
}

impl Installed {
    /// Read the output of `spack find --json` (a JSON array of installed specs; an
    /// empty store prints `[]`, and older Spacks print nothing at all).
    pub fn from_find_json(text: &str) -> Result<Installed, ConcreteError> {
        const WHAT: &str = "spack find --json printed something unexpected";
        if text.trim().is_empty() {
            return Ok(Installed::default());
        }
        let found: Vec<FoundSpec> =
            serde_json::from_str(text).map_err(|e| ConcreteError::new(WHAT, e.to_string()))?;
        let mut hashes = HashMap::with_capacity(found.len());
        for f in found {
            let name = name_of(WHAT, &f.name)?;
            let hash = hash_of(WHAT, &name, &f.hash)?;
            let version = match f.version {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            hashes.insert(hash, (name, version));
        }
        Ok(Installed { hashes })
    }

    pub fn contains(&self, hash: &DagHash) -> bool {
        self.hashes.contains_key(hash)
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }
}

/// How long an installed package took to build, from its
/// `<prefix>/.spack/install_times.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct InstallTime {
    pub name: String,
    pub hash: Option<DagHash>,
    /// Seconds in all.
    pub total: f64,
    /// From a build cache: says nothing about a build from source.
    pub from_cache: bool,
}

#[derive(Deserialize)]
struct RawTimes {
    name: String,
    total: f64,
    #[serde(default)]
    hash: Option<String>,
    #[serde(default)]
    cache: bool,
}

impl InstallTime {
    pub fn from_json(text: &str) -> Result<InstallTime, ConcreteError> {
        const WHAT: &str = "install_times.json is not as Spack writes it";
        let raw: RawTimes =
            serde_json::from_str(text).map_err(|e| ConcreteError::new(WHAT, e.to_string()))?;
        let name = name_of(WHAT, &raw.name)?;
        if !raw.total.is_finite() || raw.total < 0.0 {
            return Err(ConcreteError::new(
                WHAT,
                format!("a total of {} seconds", raw.total),
            ));
        }
        let hash = match raw.hash {
            Some(h) => Some(hash_of(WHAT, &name, &h)?),
            None => None,
        };
        Ok(InstallTime {
            name,
            hash,
            total: raw.total,
            from_cache: raw.cache,
        })
    }
}

/// How long packages took to build from source, read from the install tree's
/// `.spack/install_times.json` files: by package name, the median of the installed
/// versions' totals. Only the packages asked for are read: the tree is walked three
/// directory levels deep (Spack's projections, `{architecture}/{compiler}/{name}-
/// {version}-{hash}` and the flatter newer ones), by name, and only the prefixes of
/// those packages are opened.
pub fn build_times(
    install_tree: &std::path::Path,
    names: &HashSet<&str>,
) -> HashMap<String, std::time::Duration> {
    let mut found: HashMap<String, Vec<f64>> = HashMap::new();
    let mut dirs = vec![(install_tree.to_path_buf(), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let file_name = e.file_name();
            let Some(entry) = file_name.to_str() else {
                continue;
            };
            // `NAME-VERSION-HASH`: the name is everything before the last two dashes.
            let prefix_of = entry
                .rsplitn(3, '-')
                .nth(2)
                .filter(|n| names.contains(n) && entry.len() > HASH_LEN);
            if let Some(name) = prefix_of {
                let times = e.path().join(".spack/install_times.json");
                if let Ok(t) = std::fs::read_to_string(&times)
                    .map_err(|_| ())
                    .and_then(|t| InstallTime::from_json(&t).map_err(|_| ()))
                    && t.name == name
                    && !t.from_cache
                {
                    found.entry(t.name).or_default().push(t.total);
                }
            } else if depth < 2
                && e.file_type().is_ok_and(|t| t.is_dir())
                && !entry.starts_with('.')
            {
                dirs.push((e.path(), depth + 1));
            }
        }
    }
    found
        .into_iter()
        .map(|(name, mut v)| {
            v.sort_by(f64::total_cmp);
            (
                name,
                std::time::Duration::from_secs_f64(v[(v.len() - 1) / 2]),
            )
        })
        .collect()
}

/// Spack's own words for why a command failed: its `==> Error:` lines and what follows
/// them, without the prefix, at most `max_lines` non-empty lines. Falls back to the last
/// non-empty lines when Spack printed no `Error:` line.
pub fn spack_error(stderr: &str, max_lines: usize) -> String {
    let lines: Vec<&str> = stderr.lines().map(str::trim_end).collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("==> Error:"))
        .unwrap_or_else(|| lines.len().saturating_sub(max_lines));
    lines[start..]
        .iter()
        .map(|l| l.strip_prefix("==> Error:").map_or(*l, str::trim_start))
        .filter(|l| !l.trim().is_empty())
        .take(max_lines)
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> String {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/spack-0.23/");
        std::fs::read_to_string(format!("{p}{name}")).unwrap()
    }

    #[test]
    fn reads_a_real_concrete_spec() {
        let c = ConcreteSpec::from_spec_json(&sample("spec-bzip2.json")).unwrap();
        assert_eq!(c.root().name, "bzip2");
        assert_eq!(c.root().version, "1.0.8");
        assert_eq!(c.root().hash.as_str(), "3yxhp24ythnkrlspjwxjn2hmeretkfum");
        assert_eq!(c.nodes().len(), 6);
        let glibc = c.nodes().iter().find(|n| n.name == "glibc").unwrap();
        assert!(glibc.external, "glibc is an external in this sample");
        let root_deps: Vec<_> = c.root().deps.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(root_deps, ["diffutils", "gcc-runtime", "glibc", "gmake"]);
        assert_eq!(c.root().deps[0].deptypes, ["build"]);
        for s in ["spec-libiconv_1_17.json", "spec-libxml2_python.json"] {
            let c = ConcreteSpec::from_spec_json(&sample(s)).unwrap();
            assert!(c.nodes().len() > 1, "{s}");
        }
    }

    #[test]
    fn what_is_installed_decides_what_is_built() {
        let c = ConcreteSpec::from_spec_json(&sample("spec-bzip2.json")).unwrap();
        let installed = Installed::from_find_json(&sample("find.json")).unwrap();
        assert!(installed.contains(&c.root().hash), "find.json has bzip2");
        assert_eq!(c.to_build(&installed).count(), 0);
        let none = Installed::from_find_json("[]").unwrap();
        // Everything but the external glibc, dependencies first.
        let order: Vec<&str> = c.to_build(&none).map(|n| n.name.as_str()).collect();
        assert_eq!(order.len(), 5, "{order:?}");
        let pos = |p: &str| order.iter().position(|n| *n == p).unwrap();
        assert!(pos("gmake") < pos("libiconv"), "{order:?}");
        assert!(pos("libiconv") < pos("diffutils"), "{order:?}");
        assert!(pos("gcc-runtime") < pos("gmake"), "{order:?}");
        assert_eq!(order.last(), Some(&"bzip2"));
        assert!(Installed::from_find_json("").unwrap().is_empty());
    }

    #[test]
    fn reads_install_times() {
        let t = InstallTime::from_json(&sample("install_times-bzip2.json")).unwrap();
        assert_eq!(t.name, "bzip2");
        assert!((t.total - 0.0600798).abs() < 1e-6);
        assert!(!t.from_cache);
        assert_eq!(t.hash.unwrap().short(), "3yxhp24");
    }

    #[test]
    fn build_times_come_from_the_install_tree() {
        let tree = tempfile::tempdir().unwrap();
        let put = |rel: &str, total: f64, cache: bool| {
            let d = tree.path().join(rel).join(".spack");
            std::fs::create_dir_all(&d).unwrap();
            let name = rel
                .rsplit('/')
                .next()
                .unwrap()
                .rsplitn(3, '-')
                .nth(2)
                .unwrap();
            std::fs::write(
                d.join("install_times.json"),
                format!(
                    "{{\"total\":{total},\"phases\":[],\"name\":\"{name}\",\"cache\":{cache}}}"
                ),
            )
            .unwrap();
        };
        let h = "3yxhp24ythnkrlspjwxjn2hmeretkfum";
        put(
            &format!("linux-debian12-icelake/gcc-12.2.0/bzip2-1.0.8-{h}"),
            60.0,
            false,
        );
        put(
            &format!("linux-debian12-icelake/gcc-13.1.0/bzip2-1.0.6-{h}"),
            20.0,
            false,
        );
        put(
            &format!("linux-debian12-icelake/gcc-13.1.0/bzip2-1.0.5-{h}"),
            99.0,
            false,
        );
        put(
            &format!("linux-debian12-icelake/gcc-12.2.0/py-numpy-1.26.4-{h}"),
            7.0,
            true,
        );
        put(&format!("linux-x86_64/zlib-ng-2.1.6-{h}"), 5.0, false);
        let names: HashSet<&str> = ["bzip2", "py-numpy", "zlib-ng", "cmake"].into();
        let t = build_times(tree.path(), &names);
        assert_eq!(
            t.get("bzip2"),
            Some(&std::time::Duration::from_secs(60)),
            "the median"
        );
        assert_eq!(t.get("zlib-ng"), Some(&std::time::Duration::from_secs(5)));
        assert!(
            !t.contains_key("py-numpy"),
            "a build-cache install says nothing of a build"
        );
        assert!(!t.contains_key("cmake"));
        // The real sample reads as Spack wrote it.
        let real = InstallTime::from_json(&sample("install_times-bzip2.json")).unwrap();
        assert!(!real.from_cache);
    }

    #[test]
    fn spack_errors_are_spacks_own_words() {
        assert_eq!(
            spack_error(&sample("spec-unknown.err"), 3),
            "Package 'spack.pkg.builtin.nonexistentpkg' not found. / Use 'spack create' to create a new package."
        );
        let unsat = spack_error(&sample("spec-unsat.err"), 2);
        assert_eq!(
            unsat,
            "concretization failed for the following reasons: / 1. Cannot satisfy 'zlib@99.9'"
        );
        assert_eq!(spack_error("boom\n", 3), "boom");
    }

    #[test]
    fn hostile_output_is_an_error_not_a_path() {
        let good = sample("spec-bzip2.json");
        for (from, to) in [
            ("\"name\":\"bzip2\"", "\"name\":\"../../etc\""),
            (
                "\"hash\":\"3yxhp24ythnkrlspjwxjn2hmeretkfum\"}",
                "\"hash\":\"../x\"}",
            ),
        ] {
            assert!(good.contains(from), "sample changed: {from}");
            let bad = good.replacen(from, to, 1);
            assert!(ConcreteSpec::from_spec_json(&bad).is_err(), "{to}");
        }
        assert!(ConcreteSpec::from_spec_json("{\"spec\":{\"nodes\":[]}}").is_err());
        assert!(ConcreteSpec::from_spec_json("not json").is_err());
        assert!(DagHash::parse("3yxhp24ythnkrlspjwxjn2hmeretkfu1").is_none());
    }
}
