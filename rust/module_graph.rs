//! Test only: no import cycle between the crate's modules.
//!
//! Reads every `rust/**.rs` source (this file and the crate root excepted), takes each
//! `crate::...` and `super::...` path outside comments and outside the `mod tests` block
//! (test code may reach anywhere), resolves it to the deepest module it names (`use
//! crate::simd::{reject::all_finite, Isa}` is an edge to `simd::reject` and to `simd`),
//! and fails on any cycle in the graph of those edges, naming it. `layout` is the ground
//! floor: it uses no module of the crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path of a source file relative to `rust/`: `a.rs` -> `a`, `a/mod.rs` -> `a`,
/// `a/b.rs` -> `a::b`.
fn module_of(relative: &str) -> String {
    let stem = relative.trim_end_matches(".rs").trim_end_matches("/mod");
    stem.replace('/', "::")
}

/// The source with comment lines dropped and everything from the unit-test module on cut.
fn production_code(source: &str) -> String {
    let cut = source.find("#[cfg(test)]\nmod tests").unwrap_or(source.len());
    source[..cut].lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

fn ident_len(s: &str) -> usize {
    s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len())
}

/// Appends the paths that start at `s` (after `crate::`/`super::`), each prefixed by
/// `prefix`, expanding one level of `{a::b, c}` groups recursively.
fn paths_at(s: &str, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    let mut rest = s;
    loop {
        let n = ident_len(rest);
        if n == 0 {
            break;
        }
        path.push(rest[..n].to_string());
        rest = &rest[n..];
        if let Some(r) = rest.strip_prefix("::") {
            rest = r;
            if let Some(group) = rest.strip_prefix('{') {
                let mut depth = 1;
                let end = group
                    .char_indices()
                    .find(|&(_, c)| {
                        depth += (c == '{') as i32 - (c == '}') as i32;
                        depth == 0
                    })
                    .map_or(group.len(), |(i, _)| i);
                let (mut depth, mut start) = (0, 0);
                let inner = &group[..end];
                for (i, c) in inner.char_indices().chain([(inner.len(), ',')]) {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            paths_at(inner[start..i].trim(), path.clone(), out);
                            start = i + 1;
                        }
                        _ => {}
                    }
                }
                return;
            }
        } else {
            break;
        }
    }
    out.push(path);
}

/// The modules each module uses (edges of the graph), from `(module, source)` pairs.
fn module_deps(sources: &[(String, String)]) -> BTreeMap<String, BTreeSet<String>> {
    let known: BTreeSet<&str> = sources.iter().map(|(m, _)| m.as_str()).collect();
    let mut deps = BTreeMap::new();
    for (module, source) in sources {
        let code = production_code(source);
        let mut paths = Vec::new();
        let parent: Vec<String> = module.split("::").map(String::from).collect::<Vec<_>>();
        let parent = parent[..parent.len() - 1].to_vec();
        for (keyword, base) in [("crate::", Vec::new()), ("super::", parent)] {
            let mut from = 0;
            while let Some(at) = code[from..].find(keyword) {
                let start = from + at;
                let preceded = code[..start].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
                from = start + keyword.len();
                if !preceded {
                    paths_at(&code[from..], base.clone(), &mut paths);
                }
            }
        }
        let mut used = BTreeSet::new();
        for path in paths {
            // The deepest known module that the path names.
            let target = (1..=path.len()).rev().map(|n| path[..n].join("::")).find(|m| known.contains(m.as_str()));
            if let Some(target) = target.filter(|t| t != module) {
                used.insert(target);
            }
        }
        deps.insert(module.clone(), used);
    }
    deps
}

/// A cycle of the graph as its modules in order (first repeated at the end), if any.
fn find_cycle(deps: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(m: &str, deps: &BTreeMap<String, BTreeSet<String>>, stack: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == m) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        stack.push(m.to_string());
        for d in deps.get(m).into_iter().flatten() {
            if let Some(c) = visit(d, deps, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    deps.keys().find_map(|m| visit(m, deps, &mut Vec::new(), &mut done))
}

fn crate_sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
                if relative != "lib.rs" && relative != "module_graph.rs" {
                    out.push((module_of(&relative), std::fs::read_to_string(&path).unwrap()));
                }
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("rust");
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    out.sort();
    out
}

#[test]
fn no_cycle_between_modules() {
    let sources = crate_sources();
    assert!(sources.len() >= 10, "{} modules found", sources.len());
    let deps = module_deps(&sources);
    assert_eq!(find_cycle(&deps), None, "import cycle between Rust modules; the graph: {deps:#?}");
    assert_eq!(deps["layout"], BTreeSet::new(), "layout is the ground floor");
    // The graph is really read: some known edges.
    assert!(deps["error"].contains("layout") && deps["postprocess"].contains("nms"), "{deps:#?}");
    assert!(deps["nms"].contains("simd::reject") && deps["scores"].contains("simd::softmax"), "{deps:#?}");
}

#[test]
fn the_checker_finds_cycles() {
    let src = |m: &str, s: &str| (m.to_string(), s.to_string());
    let sources = [
        src("a", "use crate::b::{x, c::{y}};\n// use crate::d;\n"),
        src("b", "use std::fmt;\n"),
        src("b::c", "use super::x;\nfn f() { crate::d::g() }\n"),
        src("d", "use crate::a::Z;\n#[cfg(test)]\nmod tests {\n use crate::b;\n}\n"),
    ];
    let deps = module_deps(&sources);
    assert_eq!(deps["a"], BTreeSet::from(["b".to_string(), "b::c".to_string()]));
    assert_eq!(deps["b::c"], BTreeSet::from(["b".to_string(), "d".to_string()]));
    assert_eq!(deps["d"], BTreeSet::from(["a".to_string()]));
    assert_eq!(find_cycle(&deps), Some(["a", "b::c", "d", "a"].map(String::from).to_vec()));
    let acyclic = module_deps(&sources[..3]);
    assert_eq!(find_cycle(&acyclic), None);
    assert_eq!(module_of("simd/mod.rs"), "simd");
    assert_eq!(module_of("simd/nms.rs"), "simd::nms");
}
