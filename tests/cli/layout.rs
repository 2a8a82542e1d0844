//! The workspace's layout rules (ARCHITECTURE.md), checked on its sources: SIMD only in the
//! kernels crate, no module importing in a circle, no pass writing marks into node names, the
//! library without the binary's dependencies, and the docs a newcomer reads.

use crate::util::repo;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, skipping build output.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') && name != "node_modules" {
                out.extend(rust_files(&path));
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The source without comments, string and char literals' contents: what the compiler reads
/// as paths.
fn code_of(source: &str) -> String {
    let b = source.as_bytes();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b'r' if b.get(i + 1) == Some(&b'#') || b.get(i + 1) == Some(&b'"') => {
                // A raw string: r"..." or r#"..."#.
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"')
                    || (i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
                {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                while j < b.len() && !b[j..].starts_with(&close) {
                    j += 1;
                }
                out.push_str("\"\"");
                i = j + close.len();
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            b'\'' if b.get(i + 2) == Some(&b'\'') || (b.get(i + 1) == Some(&b'\\')) => {
                // A char literal ('x', '\n', '\''); lifetimes have no closing quote.
                let mut j = i + 1;
                if b[j] == b'\\' {
                    j += 2;
                    while j < b.len() && b[j] != b'\'' {
                        j += 1;
                    }
                } else {
                    j += 1;
                }
                out.push_str("' '");
                i = j + 1;
            }
            c => {
                // Copy whole UTF-8 characters.
                let len = match c {
                    0..0x80 => 1,
                    0xc0..0xe0 => 2,
                    0xe0..0xf0 => 3,
                    _ => 4,
                };
                out.push_str(&source[i..(i + len).min(b.len())]);
                i += len;
            }
        }
    }
    out
}

#[test]
fn no_simd_outside_the_kernels_crate() {
    // Spelled in pieces so that this file does not match itself.
    let needles = [
        format!("std::{}", "arch"),
        format!("core::{}", "arch"),
        format!("target_{}", "feature"),
    ];
    let kernels = repo("crates/kernels");
    let mut found = Vec::new();
    for top in [
        "crates", "src", "tests", "benches", "examples", "fuzz", "bindings",
    ] {
        for file in rust_files(&repo(top)) {
            if file.starts_with(&kernels) {
                continue;
            }
            let code = std::fs::read_to_string(&file).unwrap();
            for needle in &needles {
                if code.contains(needle.as_str()) {
                    found.push(format!("{}: {needle}", file.display()));
                }
            }
        }
    }
    assert!(found.is_empty(), "SIMD outside crates/kernels: {found:#?}");
}

/// A crate's modules by path (`["graph", "ops"]`), with their files.
fn modules(src: &Path, root_file: &str) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    for file in rust_files(src) {
        let rel = file.strip_prefix(src).unwrap().with_extension("");
        let mut path: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        // `x/mod.rs` is `x`, and the root file is the crate itself.
        if path.last().is_some_and(|l| l == "mod") || path == [root_file.trim_end_matches(".rs")] {
            path.pop();
        }
        out.insert(path, file);
    }
    out
}

/// Every path a `use` or an expression names through `crate::` or `super::`, braces expanded:
/// `use super::{a, b::c}` names `super::a` and `super::b::c`.
fn named_paths(code: &str) -> Vec<Vec<String>> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    while i < chars.len() {
        let starts = |word: &str| chars[i..].iter().take(word.len()).copied().eq(word.chars());
        let boundary = i == 0 || !is_ident(chars[i - 1]) && chars[i - 1] != ':';
        if boundary && (starts("crate::") || starts("super::")) {
            let (paths, end) = parse_tree(&chars, i);
            out.extend(paths);
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// Parses `seg::seg::{tree, tree}` from `i`: the paths it names and where it ends.
fn parse_tree(chars: &[char], mut i: usize) -> (Vec<Vec<String>>, usize) {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut prefix = Vec::new();
    loop {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if i < chars.len() && chars[i] == '{' {
            i += 1;
            let mut all = Vec::new();
            loop {
                while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
                    i += 1;
                }
                if i >= chars.len() || chars[i] == '}' {
                    return (
                        all.into_iter()
                            .map(|p: Vec<String>| prefix.iter().cloned().chain(p).collect())
                            .collect(),
                        i + 1,
                    );
                }
                let (inner, end) = parse_tree(chars, i);
                all.extend(inner);
                i = end;
                // Skip `as name` and the like up to the next separator.
                while i < chars.len() && chars[i] != ',' && chars[i] != '}' {
                    i += 1;
                }
            }
        }
        let start = i;
        while i < chars.len() && is_ident(chars[i]) {
            i += 1;
        }
        if start == i {
            return (vec![prefix], i);
        }
        prefix.push(chars[start..i].iter().collect());
        if chars[i..].starts_with(&[':', ':']) {
            i += 2;
        } else {
            return (vec![prefix], i);
        }
    }
}

/// The module graph of one crate: an edge from each module to each module it names, except
/// its own ancestors and itself.
fn import_graph(src: &Path, root_file: &str) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mods = modules(src, root_file);
    let mut graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, file) in &mods {
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        let targets = graph.entry(module.clone()).or_default();
        for path in named_paths(&code) {
            let mut full: Vec<String> = Vec::new();
            let mut rest = path.as_slice();
            match rest.first().map(String::as_str) {
                Some("crate") => rest = &rest[1..],
                Some("super") => {
                    full = module.clone();
                    while rest.first().map(String::as_str) == Some("super") {
                        full.pop();
                        rest = &rest[1..];
                    }
                }
                _ => continue,
            }
            full.extend(rest.iter().filter(|s| *s != "self").cloned());
            // The deepest module the path reaches.
            let Some(target) = (0..=full.len())
                .rev()
                .map(|n| full[..n].to_vec())
                .find(|p| mods.contains_key(p))
            else {
                continue;
            };
            if target == *module || module.starts_with(&target) {
                continue;
            }
            targets.insert(target);
        }
    }
    graph
}

/// The strongly connected components of more than one module (Tarjan).
fn circles(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<String>> {
    struct Walk<'g> {
        graph: &'g BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'g Vec<String>, usize>,
        low: BTreeMap<&'g Vec<String>, usize>,
        stack: Vec<&'g Vec<String>>,
        found: Vec<Vec<String>>,
    }
    impl<'g> Walk<'g> {
        fn visit(&mut self, v: &'g Vec<String>) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for w in self.graph.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.stack.contains(&w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    component.push(w.join("::"));
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.found
}

#[test]
fn no_module_imports_in_a_circle() {
    let mut crates: Vec<(PathBuf, &str)> = vec![(repo("src/bin/emotions"), "main.rs")];
    for entry in std::fs::read_dir(repo("crates")).unwrap().flatten() {
        let src = entry.path().join("src");
        if src.join("lib.rs").is_file() {
            crates.push((src, "lib.rs"));
        } else if src.join("main.rs").is_file() {
            crates.push((src, "main.rs"));
        }
    }
    let mut found = Vec::new();
    for (src, root) in &crates {
        for circle in circles(&import_graph(src, root)) {
            found.push(format!("{}: {circle:?}", src.display()));
        }
    }
    assert!(crates.len() >= 10, "{crates:?}");
    assert!(
        found.is_empty(),
        "modules that import each other: {found:#?}"
    );
}

/// The checker itself finds a circle, through grouped imports and `super::`.
#[test]
fn the_circle_check_sees_grouped_imports() {
    let graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = {
        let dir = std::env::temp_dir().join(format!("emotions-layout-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a")).unwrap();
        std::fs::write(dir.join("lib.rs"), "mod a; mod b;").unwrap();
        std::fs::write(dir.join("a/mod.rs"), "mod c;").unwrap();
        // a::c names b in a group; b names a::c with a string that must not count.
        std::fs::write(dir.join("a/c.rs"), "use crate::{b::Thing, a};").unwrap();
        std::fs::write(
            dir.join("b.rs"),
            "// crate::x\nuse super::a::c::f; const S: &str = \"crate::z\";",
        )
        .unwrap();
        let graph = import_graph(&dir, "lib.rs");
        std::fs::remove_dir_all(&dir).unwrap();
        graph
    };
    let found = circles(&graph);
    assert_eq!(found.len(), 1, "{graph:?}");
    let mut circle = found[0].clone();
    circle.sort();
    assert_eq!(circle, ["a::c", "b"]);
}

#[test]
fn no_pass_writes_marks_into_node_names() {
    let graph = repo("crates/runtime/src/graph");
    let mut found = Vec::new();
    for file in rust_files(&graph) {
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        for (n, line) in code.lines().enumerate() {
            let l = line.trim();
            // A node's or a node-like binding's name assigned: `node.name = ...`.
            if l.contains(".name = ") && !l.starts_with("tensor.name") {
                found.push(format!("{}:{}: {l}", file.display(), n + 1));
            }
        }
    }
    assert!(found.is_empty(), "names written by passes: {found:#?}");
}

/// `cargo tree` for a package, one crate name a line.
fn dependencies(args: &[&str]) -> BTreeSet<String> {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["tree", "--offline", "--prefix", "none", "--format", "{p}"])
        .args(args)
        .current_dir(repo(""))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn the_library_and_the_kernels_leave_out_what_they_do_not_need() {
    let library = dependencies(&["-p", "emotions", "--no-default-features", "-e", "normal"]);
    assert!(library.contains("emotions-runtime"), "{library:?}");
    for binary_only in ["axum", "hyper", "tokio", "clap", "indicatif"] {
        assert!(
            !library.contains(binary_only),
            "the library pulls {binary_only}"
        );
    }
    let full = dependencies(&["-p", "emotions", "-e", "normal"]);
    assert!(full.contains("axum") && full.contains("clap"), "{full:?}");
    let kernels = dependencies(&["-p", "emotions-kernels"]);
    assert!(kernels.contains("tract-linalg"), "{kernels:?}");
    for graph in ["tract-core", "tract-onnx", "tract-hir"] {
        assert!(!kernels.contains(graph), "the kernels pull {graph}");
    }
    let adapter = dependencies(&["-p", "emotions-adapter"]);
    assert!(
        !adapter.iter().any(|c| c.starts_with("tract")),
        "{adapter:?}"
    );
}

#[test]
fn the_readme_is_short_and_the_docs_it_links_exist() {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(lines <= 200, "README.md has {lines} lines");
    for doc in [
        "GUIDE.md",
        "ARCHITECTURE.md",
        "docs/CONFORMANCE.md",
        "docs/PERFORMANCE.md",
    ] {
        assert!(repo(doc).is_file(), "{doc} is missing");
        assert!(readme.contains(doc), "README.md does not link {doc}");
    }
}
