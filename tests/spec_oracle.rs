//! The spec grammar against a real Spack. `tests/data/spack-0.23-parse.jsonl` holds 384
//! spec strings, benign and hostile, each with what a real Spack 0.23 (`spack.spec.Spec(text)`)
//! made of it: `ok` or its `error`, and per node (root first) `name`, `versions`,
//! `variants`, `flags`, `compiler`, `arch`, `hash`, `dev_path`, `propagated`.
//!
//! What must hold (issue 13, item 1):
//! - every string the queue accepts, Spack parsed, with no compiler flags and no `dev_path`
//!   on any node, and no file;
//! - the queue accepts at least 90 % of the strings Spack parses cleanly: one named root,
//!   no flags and no `dev_path` on any node, no path (no value of Spack's reading holds a
//!   `/`, no `.json`/`.yaml` file). Strings in that set the allow-list still refuses on
//!   purpose (quoted values, flag keys in capitals, values holding `=`, upper-case names,
//!   non-ASCII spaces) are printed;
//! - the queue rejects at least 95 % of the strings Spack rejects;
//! - for each accepted string, the root's name, versions and variants and the dependency
//!   names agree with Spack's (and so do compilers, architecture, hashes and which
//!   variants propagate).
//!
//! `cargo test --test spec_oracle -- --nocapture` prints the counts.

use serde_json::Value;
use spack_installer::job::Spec;
use spack_installer::job::spec::{Node, VariantValue};
use std::collections::BTreeMap;

struct Row {
    input: String,
    ok: bool,
    nodes: Vec<Value>,
}

fn rows() -> Vec<Row> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/spack-0.23-parse.jsonl"
    );
    let text = std::fs::read_to_string(path).expect("the oracle file is in the repository");
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("one JSON object per line");
            Row {
                input: v["input"].as_str().expect("input").to_string(),
                ok: v["ok"].as_bool().expect("ok"),
                nodes: v["nodes"].as_array().cloned().unwrap_or_default(),
            }
        })
        .collect()
}

fn has_flags_or_dev_path(nodes: &[Value]) -> bool {
    nodes.iter().any(|n| {
        n["flags"].as_object().is_some_and(|f| !f.is_empty())
            || n["dev_path"].as_str().is_some_and(|d| !d.is_empty())
    })
}

/// A value Spack read holds a path (a `/`; a `/hash` is not a value).
fn has_path(nodes: &[Value]) -> bool {
    nodes.iter().any(|n| {
        n["variants"].as_object().is_some_and(|m| {
            m.values()
                .any(|v| v.as_str().is_some_and(|v| v.contains('/')))
        })
    })
}

fn names_a_file(input: &str) -> bool {
    [".json", ".yaml", ".yml"].iter().any(|e| input.contains(e))
}

/// A multi-valued value compared as Spack keeps it: a sorted set.
fn values(v: &str) -> String {
    let mut parts: Vec<&str> = v.split(',').collect();
    parts.sort();
    parts.join(",")
}

/// Our node's variants as Spack reports them: `+x` is `True`, `x=false` is `False`.
fn our_variants(n: &Node) -> BTreeMap<String, String> {
    n.variants
        .iter()
        .map(|v| {
            let value = match &v.value {
                VariantValue::Bool(true) => "True".to_string(),
                VariantValue::Bool(false) => "False".to_string(),
                VariantValue::Text(t) if t.eq_ignore_ascii_case("true") => "True".into(),
                VariantValue::Text(t) if t.eq_ignore_ascii_case("false") => "False".into(),
                VariantValue::Text(t) => values(t),
            };
            (v.name.clone(), value)
        })
        .collect()
}

fn spack_variants(n: &Value) -> BTreeMap<String, String> {
    n["variants"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), values(v.as_str().unwrap_or_default())))
                .collect()
        })
        .unwrap_or_default()
}

fn our_arch(n: &Node) -> String {
    let get = |k: &str| {
        n.arch
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    if let Some(a) = get("arch") {
        return a;
    }
    if n.arch.is_empty() {
        return String::new();
    }
    let part = |k| get(k).unwrap_or_else(|| "None".into());
    format!("{}-{}-{}", part("platform"), part("os"), part("target"))
}

fn our_compiler(n: &Node) -> String {
    match &n.compiler {
        None => String::new(),
        Some(c) => match &c.version {
            Some(v) => format!("{}@{v}", c.name),
            None => c.name.clone(),
        },
    }
}

/// Every difference between our reading of `spec` and Spack's nodes.
fn disagreements(spec: &Spec, nodes: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    let root = spec.root();
    let s_root = &nodes[0];
    let mut same = |what: &str, ours: String, spack: String| {
        if ours != spack {
            out.push(format!("{what}: ours {ours:?}, Spack {spack:?}"));
        }
    };
    same(
        "root name",
        root.name.clone().unwrap_or_default(),
        s_root["name"].as_str().unwrap_or_default().to_string(),
    );
    same(
        "root versions",
        root.version.clone().unwrap_or_else(|| ":".into()),
        s_root["versions"].as_str().unwrap_or_default().to_string(),
    );
    same(
        "root variants",
        format!("{:?}", our_variants(root)),
        format!("{:?}", spack_variants(s_root)),
    );
    same(
        "root compiler",
        our_compiler(root),
        s_root["compiler"].as_str().unwrap_or_default().to_string(),
    );
    same(
        "root arch",
        our_arch(root),
        s_root["arch"].as_str().unwrap_or_default().to_string(),
    );
    same(
        "root hash",
        root.hash.clone().unwrap_or_default(),
        s_root["hash"].as_str().unwrap_or_default().to_string(),
    );
    let mut propagated: Vec<String> = root
        .variants
        .iter()
        .filter(|v| v.propagate)
        .map(|v| v.name.clone())
        .collect();
    propagated.sort();
    let mut s_propagated: Vec<String> = s_root["propagated"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    s_propagated.sort();
    same(
        "root propagated",
        format!("{propagated:?}"),
        format!("{s_propagated:?}"),
    );
    let mut deps: Vec<String> = spec
        .dependencies()
        .iter()
        .filter_map(|d| d.node.name.clone())
        .collect();
    deps.sort();
    deps.dedup();
    let mut s_deps: Vec<String> = nodes[1..]
        .iter()
        .filter_map(|n| n["name"].as_str().map(str::to_string))
        .collect();
    s_deps.sort();
    s_deps.dedup();
    same(
        "dependency names",
        format!("{deps:?}"),
        format!("{s_deps:?}"),
    );
    // Each dependency's details, where its name is unique on both sides.
    for d in spec.dependencies() {
        let Some(name) = &d.node.name else { continue };
        let ours: Vec<_> = spec
            .dependencies()
            .iter()
            .filter(|x| x.node.name.as_ref() == Some(name))
            .collect();
        let theirs: Vec<_> = nodes[1..]
            .iter()
            .filter(|n| n["name"].as_str() == Some(name))
            .collect();
        if ours.len() != 1 || theirs.len() != 1 {
            continue;
        }
        let n = theirs[0];
        same(
            &format!("^{name} versions"),
            d.node.version.clone().unwrap_or_else(|| ":".into()),
            n["versions"].as_str().unwrap_or_default().to_string(),
        );
        same(
            &format!("^{name} variants"),
            format!("{:?}", our_variants(&d.node)),
            format!("{:?}", spack_variants(n)),
        );
        same(
            &format!("^{name} compiler"),
            our_compiler(&d.node),
            n["compiler"].as_str().unwrap_or_default().to_string(),
        );
        same(
            &format!("^{name} arch"),
            our_arch(&d.node),
            n["arch"].as_str().unwrap_or_default().to_string(),
        );
    }
    out
}

#[test]
fn the_grammar_agrees_with_a_real_spack() {
    let rows = rows();
    assert_eq!(rows.len(), 384, "the oracle file is complete");
    let (mut accepted, mut clean, mut clean_accepted) = (0, 0, 0);
    let (mut spack_rejects, mut both_reject) = (0, 0);
    let mut problems = Vec::new();
    let mut refused_clean = Vec::new();
    for r in &rows {
        let ours = Spec::parse(&r.input);
        let is_clean = r.ok
            && !has_flags_or_dev_path(&r.nodes)
            && !names_a_file(&r.input)
            && !has_path(&r.nodes)
            && r.nodes
                .first()
                .is_some_and(|n| n["name"].as_str().is_some());
        clean += usize::from(is_clean);
        if !r.ok {
            spack_rejects += 1;
            both_reject += usize::from(ours.is_err());
        }
        match &ours {
            Ok(spec) => {
                accepted += 1;
                clean_accepted += usize::from(is_clean);
                if !r.ok {
                    problems.push(format!("{:?}: accepted, but Spack refuses it", r.input));
                } else if has_flags_or_dev_path(&r.nodes) || names_a_file(&r.input) {
                    problems.push(format!(
                        "{:?}: accepted, but Spack reads flags, dev_path or a file",
                        r.input
                    ));
                } else {
                    for d in disagreements(spec, &r.nodes) {
                        problems.push(format!("{:?} ({}): {d}", r.input, spec.canonical()));
                    }
                }
            }
            Err(e) if is_clean => refused_clean.push(format!("{:?}: {e}", r.input)),
            Err(_) => {}
        }
    }
    let pct = |a: usize, b: usize| 100.0 * a as f64 / b.max(1) as f64;
    println!(
        "oracle: {} strings; we accept {accepted}; Spack parses {clean} cleanly, of which we accept \
         {clean_accepted} ({:.1} %); Spack rejects {spack_rejects}, of which we reject {both_reject} ({:.1} %)",
        rows.len(),
        pct(clean_accepted, clean),
        pct(both_reject, spack_rejects)
    );
    for r in &refused_clean {
        println!("refused though Spack parses it cleanly: {r}");
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        pct(clean_accepted, clean) >= 90.0,
        "only {clean_accepted} of {clean} clean specs accepted"
    );
    assert!(
        pct(both_reject, spack_rejects) >= 95.0,
        "only {both_reject} of {spack_rejects} specs Spack rejects were rejected"
    );
}

/// The canonical form of every accepted string (what Spack is given) is itself accepted,
/// renders to itself and has the same reading as the submitted text.
#[test]
fn every_accepted_canonical_form_reparses_to_itself() {
    for r in rows() {
        if let Ok(spec) = Spec::parse(&r.input) {
            let again = Spec::parse(spec.canonical())
                .unwrap_or_else(|e| panic!("{:?} → {:?}: {e}", r.input, spec.canonical()));
            assert_eq!(again.canonical(), spec.canonical(), "{:?}", r.input);
            assert_eq!(again.root(), spec.root(), "{:?}", r.input);
            assert_eq!(again.dependencies(), spec.dependencies(), "{:?}", r.input);
        }
    }
}
