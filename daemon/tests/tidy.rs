//! Architecture invariants that the compiler does not check, checked by reading the
//! sources (see ARCHITECTURE.md): the top-level modules of `daemon/src` form layers
//! with no import cycle between them; the pure layer (`plan`) does no I/O, reads no
//! clock and uses no runtime; only the state module knows SQLite, and the rest of
//! the daemon reaches it through the store's handle; forge kinds are told apart only
//! where the configuration is read and wired to clients; every file says why it
//! exists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
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

/// The top-level module a file belongs to (`plan/builds.rs` → `plan`).
fn top_module(file: &Path) -> String {
    let rel = file.strip_prefix(src()).expect("under src");
    let first = rel.components().next().expect("a component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_owned()
}

/// The code of a file without comments and without its test module (a
/// `#[cfg(test)]` item runs to the end of the file in this code base) — test code
/// may read clocks and files.
fn code_of(file: &Path) -> String {
    let text = std::fs::read_to_string(file).expect("read");
    if file.file_name().is_some_and(|n| n == "tests.rs") {
        return String::new();
    }
    let mut code = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        code.push_str(line.split(" // ").next().unwrap_or(line));
        code.push('\n');
    }
    code
}

/// Top-level modules each top-level module refers to through `crate::`.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&src()) {
        let top = top_module(&file);
        if top == "lib" || top == "main" {
            continue;
        }
        let code = code_of(&file);
        let deps = graph.entry(top.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != top {
                deps.insert(name);
            }
        }
    }
    graph
}

#[test]
fn top_level_modules_form_layers_without_cycles() {
    let graph = module_graph();
    // Depth-first search; a back edge is a cycle.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        cycles: &mut Vec<String>,
    ) {
        if done.contains(node) {
            return;
        }
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            cycles.push(cycle.join(" → "));
            return;
        }
        path.push(node.to_owned());
        for dep in graph.get(node).into_iter().flatten() {
            visit(dep, graph, path, done, cycles);
        }
        path.pop();
        done.insert(node.to_owned());
    }
    let mut cycles = Vec::new();
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, &graph, &mut Vec::new(), &mut done, &mut cycles);
    }
    assert!(cycles.is_empty(), "import cycles: {cycles:#?}\n{graph:#?}");
    // The layers named in lib.rs: nothing below refers to anything above.
    let expected = [
        ("plan", &["config"][..]),
        ("state", &["config", "crash", "plan"][..]),
        ("config", &[][..]),
        ("crash", &[][..]),
    ];
    for (module, allowed) in expected {
        let deps = graph.get(module).cloned().unwrap_or_default();
        let extra: Vec<_> = deps
            .iter()
            .filter(|d| !allowed.contains(&d.as_str()))
            .collect();
        assert!(extra.is_empty(), "`{module}` must not depend on {extra:?}");
    }
}

#[test]
fn the_plan_does_no_io_reads_no_clock_and_uses_no_runtime() {
    let forbidden = [
        "tokio",
        "rusqlite",
        "reqwest",
        "axum",
        "std::fs",
        "std::net",
        "std::process",
        "std::env",
        "std::thread",
        "::now(",
        "Instant",
        "fs::",
    ];
    let mut found = Vec::new();
    for file in rust_files(&src().join("plan")) {
        let code = code_of(&file);
        for word in forbidden {
            if code.contains(word) {
                found.push(format!("{}: {word}", file.display()));
            }
        }
        // `use std::{fs, …}` spells the module without its path.
        for line in code.lines().filter(|l| l.contains("use std::{")) {
            for module in ["fs", "net", "process", "env", "thread"] {
                if line.contains(&format!("{{{module}")) || line.contains(&format!(" {module},")) {
                    found.push(format!("{}: std::{module}", file.display()));
                }
            }
        }
    }
    assert!(found.is_empty(), "the pure layer does I/O: {found:#?}");
}

#[test]
fn every_file_says_why_it_exists() {
    let roots = ["src", "tests"].map(|d| Path::new(env!("CARGO_MANIFEST_DIR")).join(d));
    let mut missing = Vec::new();
    for file in roots.iter().flat_map(|r| rust_files(r)) {
        let text = std::fs::read_to_string(&file).expect("read");
        if !text.trim_start().starts_with("//!") {
            missing.push(file.display().to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "files without a `//!` doc: {missing:#?}"
    );
}

/// Where a file's path (relative to `src`) may name forge kinds: the configuration
/// (its `kind:` key) and the engine's clients, built from it.
fn may_name_forge_kinds(rel: &Path) -> bool {
    rel.starts_with("config") || rel == Path::new("engine/clients.rs")
}

#[test]
fn forge_kinds_are_told_apart_only_where_the_configuration_is_wired() {
    // The configuration's kind, a kind enum of the daemon's own (`Flavor`), and any
    // word naming a forge: a type or variant (`GitHubClient`, `Kind::GitLab`), an
    // adapter module (`github::`), a function, a header, a route or a kind
    // compared by name (`"gitlab"`).
    let forbidden = regex::Regex::new(r"\bForgeKind\b|\bFlavor\b|(?i:\bgit(?:hub|lab))")
        .expect("constant regex");
    let mut found = Vec::new();
    for file in rust_files(&src()) {
        let rel = file.strip_prefix(src()).expect("under src");
        if may_name_forge_kinds(rel) {
            continue;
        }
        for line in code_of(&file).lines() {
            if let Some(m) = forbidden.find(line) {
                found.push(format!("{}: `{}` in {line:?}", rel.display(), m.as_str()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "forge kinds told apart outside config/ and engine/clients.rs \
         (ask the `Forge` and its adapter objects instead): {found:#?}"
    );
}

/// The workspace's Rust files outside `daemon/src/state/` (and this file, which
/// names what it looks for).
fn files_outside_the_state() -> Vec<PathBuf> {
    let daemon = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = daemon.parent().expect("the workspace holds the daemon");
    let state = src().join("state");
    [
        "daemon/src",
        "daemon/tests",
        "adapters",
        "workspace-runner",
        "tests",
    ]
    .iter()
    .flat_map(|dir| rust_files(&root.join(dir)))
    .filter(|f| !f.starts_with(&state) && !f.ends_with("daemon/tests/tidy.rs"))
    .collect()
}

#[test]
fn only_the_state_module_knows_sqlite() {
    let files = files_outside_the_state();
    assert!(files.iter().any(|f| f.ends_with("engine/cycle.rs")));
    let found: Vec<String> = files
        .iter()
        .filter(|f| {
            std::fs::read_to_string(f)
                .expect("read")
                .contains("rusqlite")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        found.is_empty(),
        "only daemon/src/state/ may use rusqlite: {found:#?}"
    );
}

/// The signatures of the `pub` (and `pub(…)`) items of `code`: from `pub` to the
/// first `{` or `;` (or `}`, closing the struct of a last `pub` field).
fn pub_signatures(code: &str) -> Vec<String> {
    let mut signatures = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("pub") {
        let before = rest[..at].chars().last();
        rest = &rest[at..];
        let end = rest.find(['{', ';', '}']).unwrap_or(rest.len());
        if before.is_none_or(|c| c.is_whitespace()) {
            signatures.push(rest[..end].to_owned());
        }
        rest = &rest[end.max(3)..];
    }
    signatures
}

#[test]
fn the_state_api_names_no_sqlite_type() {
    let sqlite_types = ["rusqlite", "Connection", "Row<", "Statement", "Transaction"];
    let mut found = Vec::new();
    let mut checked = 0;
    for file in rust_files(&src().join("state")) {
        // A `pub(super)` item of a file below `state/mod.rs` is seen only inside
        // the state: a helper its files share, not its API.
        let inside = file.file_name().is_some_and(|n| n != "mod.rs");
        for signature in pub_signatures(&code_of(&file)) {
            if inside && signature.starts_with("pub(super)") {
                continue;
            }
            checked += 1;
            if sqlite_types.iter().any(|t| signature.contains(t)) {
                found.push(format!("{}: {}", file.display(), signature.trim()));
            }
        }
    }
    assert!(checked > 50, "only {checked} signatures found");
    assert!(found.is_empty(), "SQLite in the state's API: {found:#?}");
    assert_eq!(
        pub_signatures(
            "fn a() {}\npub fn b(c: &rusqlite::Row<'_>) -> u8 { 1 }\npub(crate) struct D;"
        ),
        [
            "pub fn b(c: &rusqlite::Row<'_>) -> u8 ",
            "pub(crate) struct D"
        ]
    );
}

#[test]
fn the_rest_of_the_daemon_reaches_the_state_through_the_store() {
    let daemon = src();
    let found: Vec<String> = files_outside_the_state()
        .iter()
        .filter(|f| f.starts_with(&daemon))
        .filter(|f| {
            let code = code_of(f);
            code.contains("state::State") || code.contains("State::open")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        found.is_empty(),
        "use crate::state::Store, which runs the backend off the runtime: {found:#?}"
    );
}

/// The engine's data (`Supervisor`) is the loop's: only the loop and the steps of a
/// cycle name it. The HTTP API reads a `View`, the senders an `Outbox`, the
/// status, clients and known answers are parts with their own API.
#[test]
fn only_the_loop_and_the_cycle_reach_the_engine_data() {
    let allowed = [
        "engine/supervisor.rs",
        "engine/event_loop.rs",
        "engine/cycle.rs",
        "engine/once.rs",
        "engine/refresh.rs",
        "engine/discovery.rs",
    ];
    let mut named = BTreeSet::new();
    for file in rust_files(&src()) {
        let rel = file.strip_prefix(src()).expect("under src");
        if code_of(&file).contains("Supervisor") {
            named.insert(rel.display().to_string());
        }
    }
    assert!(named.contains("engine/event_loop.rs"), "{named:?}");
    let outside: Vec<_> = named
        .iter()
        .filter(|f| !allowed.contains(&f.as_str()))
        .collect();
    assert!(
        outside.is_empty(),
        "the engine's data reached from outside the loop: {outside:#?}"
    );
}

/// The daemon reads the wall clock only through `engine::clock::Clock` (handed to
/// `service::run`, so a test sets the time); `cli` may read it for its own
/// commands. Waiting and elapsed times use tokio's clock, which a test can pause.
#[test]
fn the_wall_clock_is_read_only_through_the_injected_clock() {
    let reads = regex::Regex::new(r"SystemTime::now|std::time::Instant|\bInstant::now\(\)")
        .expect("constant regex");
    let mut found = Vec::new();
    for file in rust_files(&src()) {
        let rel = file.strip_prefix(src()).expect("under src");
        if rel == Path::new("engine/clock.rs") || rel.starts_with("cli") {
            continue;
        }
        let tokio_instant = code_of(&file).contains("tokio::time::Instant");
        for line in code_of(&file).lines() {
            if let Some(m) = reads.find(line) {
                let is_tokio = m.as_str() == "Instant::now()"
                    && (line.contains("tokio::time::Instant::now()") || tokio_instant);
                if !is_tokio {
                    found.push(format!("{}: {line:?}", rel.display()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "the clock read outside engine::clock: {found:#?}"
    );
}
