//! Structural checks of the settings' direction, on the source text (no `cargo modules` here):
//! `config` names no capability and no module that leads back to it, and no module outside
//! `config` reads the process environment itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn handler_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("handler")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its `//` comments (a comment may name anything).
fn code(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Top-level module of a file (`handler/sync/settings/mod.rs` → `sync`); None for the roots.
fn top_module(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(handler_dir()).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// Top-level modules a piece of code names: `crate::x…` and `use crate::{x, y::…}`.
fn named_modules(code: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                out.insert(ident(item.trim()));
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty() && m.chars().next().is_some_and(|c| c.is_ascii_lowercase()));
    out
}

/// Top-level module → the top-level modules its files name.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&handler_dir(), &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let Some(top) = top_module(&f) else { continue };
        let mut named = named_modules(&code(&f));
        // In `config/mod.rs`, `super::` is the crate root.
        if f.ends_with("config/mod.rs") {
            named.extend(named_modules(&code(&f).replace("super::", "crate::")));
        }
        named.remove(&top);
        graph.entry(top).or_default().extend(named);
    }
    graph
}

#[test]
fn config_names_no_capability_and_nothing_that_leads_back_to_it() {
    let graph = module_graph();
    let direct = graph.get("config").cloned().unwrap_or_default();
    for capability in ["sync", "bot", "settings"] {
        assert!(
            !direct.contains(capability),
            "handler/config/ names the {capability} module: a capability's settings are loaded \
             beside it and gathered in handler/settings.rs, so config stays below them all"
        );
    }
    // Everything config reaches, transitively: none of it may name config again.
    let mut reached = BTreeSet::new();
    let mut todo: Vec<String> = direct.into_iter().collect();
    while let Some(m) = todo.pop() {
        if reached.insert(m.clone()) {
            todo.extend(graph.get(&m).into_iter().flatten().cloned());
        }
    }
    assert!(
        !reached.contains("config"),
        "an import circle joins config: it reaches {reached:?}, one of which leads back to config"
    );
    // The scan sees what it should: capabilities do name config.
    assert!(graph["sync"].contains("config") && graph["bot"].contains("config"));
}

/// The code before a file's `#[cfg(test)] mod … {` (last in a file, as clippy's
/// `items_after_test_module` keeps it): a test may read where its fixtures are, the app may not.
fn without_test_module(code: &str) -> String {
    let lines: Vec<&str> = code.lines().collect();
    let cut = lines
        .windows(2)
        .position(|w| {
            w[0].trim() == "#[cfg(test)]"
                && w[1].starts_with("mod ")
                && w[1].trim_end().ends_with('{')
        })
        .unwrap_or(lines.len());
    lines[..cut].join("\n")
}

#[test]
fn no_module_outside_config_reads_the_environment_itself() {
    let mut files = Vec::new();
    rust_files(&handler_dir(), &mut files);
    let config = handler_dir().join("config");
    let reads = [
        "env::var(",
        "env::var_os(",
        "env::vars(",
        "env::vars_os(",
        "use std::env",
    ];
    let mut found = Vec::new();
    for f in files.iter().filter(|f| !f.starts_with(&config)) {
        let code = without_test_module(&code(f));
        for (n, line) in code.lines().enumerate() {
            if reads.iter().any(|r| line.contains(r)) {
                found.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "environment read outside handler/config/ (go through config::Source, so `handler settings` \
         lists it and tests can set it without the process environment):\n{}",
        found.join("\n")
    );
    // The scan would see one: config itself reads the process environment.
    assert!(code(&config.join("source.rs")).contains("env::vars("));
}
