//! The map stays true: every module of every crate is named in ARCHITECTURE.md; ward-server's
//! modules form no cycle (the agent API and the admin API build on the operations and the
//! shared modules, never on each other; the operations never on them; `server` is imported by
//! no other module); the admin API and the CLI speak ward-api's types; nothing above
//! ward-store names an engine.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `.rs` file under `dir`, recursively.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The top-level module a file of `src` belongs to (`admin/fleet.rs` -> `admin`), or None for
/// the crate root.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next()?.as_os_str().to_string_lossy();
    let name = first.trim_end_matches(".rs").to_string();
    (name != "lib" && name != "main").then_some(name)
}

/// The module names a file refers to as `crate::NAME`, including inside `use crate::{a, b}`.
fn crate_references(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    for (index, _) in code.match_indices("crate::") {
        let rest = &code[index + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if modules.contains(&name) {
                    found.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if modules.contains(&name) {
                found.insert(name);
            }
        }
    }
    found
}

fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let files = sources(src);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(src, f)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(module) = module_of(src, file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        let entry = edges.entry(module.clone()).or_default();
        for target in crate_references(&text, &modules) {
            if target != module {
                entry.insert(target);
            }
        }
    }
    edges
}

/// A cycle in `edges`, if any, as the list of modules around it.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(node) {
            Some(2) => return None,
            Some(1) => {
                let start = path.iter().position(|n| n == node).unwrap();
                let mut cycle = path[start..].to_vec();
                cycle.push(node.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(node.to_string(), 1);
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, state, path) {
                return Some(cycle);
            }
        }
        path.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if let Some(cycle) = visit(node, edges, &mut state, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

#[test]
fn the_checker_sees_a_cycle_when_there_is_one() {
    let modules: BTreeSet<String> = ["a", "b", "c"].map(String::from).into();
    assert_eq!(
        crate_references(
            "use crate::{a, b::X};\nuse crate::c;\n// crate::z",
            &modules
        ),
        modules
    );
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    edges.insert("a".into(), ["b".to_string()].into());
    edges.insert("b".into(), ["c".to_string()].into());
    edges.insert("c".into(), BTreeSet::new());
    assert_eq!(find_cycle(&edges), None);
    edges.get_mut("c").unwrap().insert("a".into());
    assert_eq!(
        find_cycle(&edges),
        Some(
            vec!["a", "b", "c", "a"]
                .into_iter()
                .map(String::from)
                .collect()
        )
    );
}

#[test]
fn ward_server_has_no_module_cycle() {
    let edges = graph(&root().join("crates/ward-server/src"));
    assert!(edges.len() > 10, "the module graph was not read: {edges:?}");
    if let Some(cycle) = find_cycle(&edges) {
        panic!(
            "ward-server modules import each other in a circle: {}",
            cycle.join(" -> ")
        );
    }
    for (module, targets) in &edges {
        assert!(
            !targets.contains("server"),
            "{module} imports `server`: only the crate root may"
        );
    }
    // The front ends (the agent API, the admin API) build on the operations and the shared
    // modules, never on each other; the operations never on a front end or on HTTP.
    let front_ends = ["agent_api", "admin"];
    for api in front_ends {
        for other in front_ends {
            assert!(
                api == other || !edges[api].contains(other),
                "{api} imports {other}: the APIs depend on the shared modules, never on each other"
            );
        }
    }
    for below in ["agent_api", "admin", "http", "conn"] {
        assert!(
            !edges["operations"].contains(below),
            "operations imports {below}: the fleet operations sit below every front end"
        );
    }
}

/// The code before its `#[cfg(test)]` part.
fn without_tests(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or(text)
}

/// The admin API's answers are ward-api's types, built once: no JSON literal in its front end,
/// and none in the CLI's reading of them (the policy document is free-form, read whole).
#[test]
fn the_admin_api_and_its_cli_speak_types_not_json_literals() {
    let mut files: Vec<PathBuf> = sources(&root().join("crates/ward-server/src/admin"));
    files.extend(sources(&root().join("crates/ward/src/cmd/harden")));
    for file in ["client.rs", "cmd/fleet.rs", "cmd/server.rs"] {
        files.push(root().join("crates/ward/src").join(file));
    }
    for file in files {
        if file.file_name().is_some_and(|name| name == "tests.rs") {
            continue; // a test module: its requests are the API's raw input
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let code = without_tests(&text);
        for forbidden in ["json!(", "as_str().unwrap_or", "[\"error\"]", "Value::Null"] {
            assert!(
                !code.contains(forbidden),
                "{}: `{forbidden}`: build and read the admin API through ward-api's types",
                file.display()
            );
        }
    }
}

/// Nothing above ward-store names a storage engine.
#[test]
fn no_engine_is_named_above_the_store() {
    let mut offenders = Vec::new();
    for krate in std::fs::read_dir(root().join("crates")).unwrap() {
        let krate = krate.unwrap().path();
        if krate.ends_with("ward-store") {
            continue;
        }
        for file in sources(&krate) {
            if file.ends_with("tests/architecture.rs") {
                continue; // this test names what it looks for
            }
            let text = std::fs::read_to_string(&file).unwrap();
            // (ward-testkit's private PostgreSQL clusters are a test peer, like Apache httpd,
            // not an engine: it starts servers, it stores nothing of ward's.)
            if ["SqliteStore", "rusqlite", "PgStore", "tokio_postgres"]
                .iter()
                .any(|name| text.contains(name))
            {
                offenders.push(file.display().to_string());
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "these files name a storage engine; open the store with ward_store::open: {offenders:?}"
    );
}

#[test]
fn every_module_is_on_the_map() {
    let map = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let mut missing = Vec::new();
    for krate in std::fs::read_dir(root().join("crates")).unwrap() {
        let krate = krate.unwrap().path();
        let src = krate.join("src");
        if !src.is_dir() {
            continue;
        }
        for file in sources(&src) {
            let relative = file
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let name = relative.trim_end_matches(".rs").trim_end_matches("/mod");
            let leaf = name.rsplit('/').next().unwrap();
            // Crate roots, test modules and the subcommand files of `ward` (listed by folder).
            if matches!(leaf, "lib" | "main" | "tests") || name.starts_with("cmd/") {
                continue;
            }
            let named = [
                format!("`{name}`"),
                format!("`{leaf}`"),
                format!("`{name}.rs`"),
                format!("`{name}/`"),
            ];
            if !named.iter().any(|n| map.contains(n.as_str())) {
                missing.push(format!(
                    "{}: {name}",
                    krate.file_name().unwrap().to_string_lossy()
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "modules missing from ARCHITECTURE.md's tables: {missing:?}"
    );
}
