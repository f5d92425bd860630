//! Tidy: the structure rules that review alone would let slip, checked on every test run (in
//! the spirit of rust-analyzer's `tidy.rs`).
//!
//! - Module dependencies point one way: each crate's layers are declared once, in
//!   `docs/ARCHITECTURE.md` between `<!-- tidy:layers CRATE -->` markers, and a module may
//!   import (`crate::…`, also inline paths and `use crate::{…}` groups) only from modules of a
//!   lower layer. A module missing from the table is an error, so a new module gets a place.
//! - No source file over 1 000 lines (Rust in `crates/`, TypeScript in `web/src/`).
//! - `vitalwatch-core`'s manifest lists no I/O crate (tokio, SQL, TLS, MQTT) and does not turn on
//!   chrono's `clock` feature: the compiler keeps the core from doing I/O or reading a clock.
//!
//! The checks are pure functions over text, so the tests below plant violations in memory and
//! see them caught.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 1000;

/// The layer of test-only fixtures (a `test` row): unit tests (`tests.rs` files) of any module
/// may use them, production code never.
const TEST_ONLY: u32 = u32::MAX;

fn is_test_file(rel: &str) -> bool {
    rel.ends_with("/tests.rs") || rel == "tests.rs" || rel.contains("/tests/")
}

/// Dependencies core may never have (exact names or prefixes ending in `*`).
const CORE_FORBIDDEN: &[&str] = &[
    "tokio*",
    "rusqlite",
    "refinery*",
    "postgres*",
    "tokio-postgres",
    "deadpool*",
    "sqlx*",
    "rustls*",
    "tokio-rustls",
    "ntex*",
    "rumqtt*",
    "axum*",
    "hyper*",
    "ureq",
    "reqwest",
    "mio",
    "socket2",
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

/// `(layer, module)` pairs from the table between the crate's markers: rows like
/// ``| 2 | `store`, `tls` | … |``.
fn declared_layers(architecture: &str, krate: &str) -> Result<BTreeMap<String, u32>, String> {
    let start = format!("<!-- tidy:layers {krate} -->");
    let begin = architecture
        .find(&start)
        .ok_or_else(|| format!("docs/ARCHITECTURE.md has no `{start}` block"))?;
    let rest = &architecture[begin + start.len()..];
    let end = rest
        .find("<!-- /tidy:layers -->")
        .ok_or_else(|| format!("the `{start}` block is not closed"))?;
    let mut layers = BTreeMap::new();
    for line in rest[..end].lines() {
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').collect();
        let layer = match cells.first().map(|c| c.trim()) {
            Some("test") => TEST_ONLY,
            Some(cell) => match cell.parse::<u32>() {
                Ok(layer) => layer,
                Err(_) => continue,
            },
            None => continue,
        };
        let Some(modules) = cells.get(1) else {
            continue;
        };
        for module in modules.split(',') {
            let module = module.trim().trim_matches('`');
            if !module.is_empty() && layers.insert(module.to_owned(), layer).is_some() {
                return Err(format!("module `{module}` is declared twice"));
            }
        }
    }
    if layers.is_empty() {
        return Err(format!("the `{start}` block declares no module"));
    }
    Ok(layers)
}

/// A source file of a crate: its path below `src/` and its text.
struct Source {
    rel: String,
    text: String,
}

fn sources(dir: &Path, base: &Path, ext: &str, out: &mut Vec<Source>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("reading {}: {err}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "node_modules") {
                continue;
            }
            sources(&path, base, ext, out);
        } else if path.extension().is_some_and(|e| e == ext) {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
            let rel = path
                .strip_prefix(base)
                .expect("below its base")
                .to_string_lossy()
                .replace('\\', "/");
            out.push(Source { rel, text });
        }
    }
}

/// The top-level module a file below `src/` belongs to (`None` for the crate root files).
fn module_of(rel: &str) -> Option<&str> {
    let first = rel.split('/').next()?;
    if first == rel {
        let stem = first.strip_suffix(".rs")?;
        (!matches!(stem, "lib" | "main")).then_some(stem)
    } else {
        Some(first)
    }
}

/// How many `super::` a path in this file needs to reach the crate root.
fn depth_to_root(rel: &str) -> usize {
    let parts: Vec<&str> = rel.split('/').collect();
    let file = parts.last().copied().unwrap_or("");
    // `a/b/mod.rs` is module a::b (depth 2); `a/b.rs` is a::b too.
    let dirs = parts.len() - 1;
    if file == "mod.rs" { dirs } else { dirs + 1 }
}

/// Code without comments: line comments and doc comments dropped (intra-doc links are not
/// dependencies), so a path in prose is not taken for an import.
fn code_only(text: &str) -> String {
    text.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if trimmed.starts_with("//") {
                ""
            } else {
                match line.find(" // ") {
                    Some(at) => &line[..at],
                    None => line,
                }
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The top-level modules a file refers to through `crate::` (paths and `use crate::{…}`
/// groups) or through enough `super::` to reach the crate root.
fn referenced_modules(rel: &str, text: &str) -> Vec<String> {
    let code = code_only(text);
    let mut found = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue; // e.g. `vitalwatch_crate::`, not ours
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item_start = true;
            for (idx, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => item_start = true,
                    c if item_start && depth == 1 && !c.is_whitespace() => {
                        item_start = false;
                        let ident = ident_at(&group[idx..]);
                        if !ident.is_empty() && ident != "self" {
                            found.push(ident.to_owned());
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let ident = ident_at(rest);
            if !ident.is_empty() {
                found.push(ident.to_owned());
            }
        }
    }
    let needed = depth_to_root(rel);
    let chain = "super::".repeat(needed);
    let mut rest = code.as_str();
    while let Some(at) = rest.find(&chain) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + chain.len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue; // part of a longer chain, or not a path start
        }
        let ident = ident_at(rest);
        if !ident.is_empty() && ident != "super" {
            found.push(ident.to_owned());
        }
    }
    found.sort();
    found.dedup();
    found
}

/// Every import against the declared order, and every module missing from the table.
fn layer_violations(layers: &BTreeMap<String, u32>, files: &[Source]) -> Vec<String> {
    let mut problems = Vec::new();
    for file in files {
        let Some(module) = module_of(&file.rel) else {
            continue;
        };
        let Some(&own) = layers.get(module) else {
            problems.push(format!(
                "src/{}: module `{module}` has no layer in docs/ARCHITECTURE.md",
                file.rel
            ));
            continue;
        };
        if own == TEST_ONLY {
            continue;
        }
        for target in referenced_modules(&file.rel, &file.text) {
            if target == module {
                continue;
            }
            match layers.get(&target) {
                Some(&TEST_ONLY) if is_test_file(&file.rel) => {}
                Some(&TEST_ONLY) => problems.push(format!(
                    "src/{}: `{module}` uses the test fixture `crate::{target}` outside a tests.rs",
                    file.rel
                )),
                Some(&theirs) if theirs < own => {}
                Some(&theirs) => problems.push(format!(
                    "src/{}: `{module}` (layer {own}) uses `crate::{target}` (layer {theirs}); \
                     imports must point to a lower layer",
                    file.rel
                )),
                // Not a module: a macro or item of the crate root (`crate::Foo`).
                None => {}
            }
        }
    }
    problems
}

fn long_files(files: &[Source], prefix: &str) -> Vec<String> {
    files
        .iter()
        .filter_map(|file| {
            let lines = file.text.lines().count();
            (lines > MAX_LINES).then(|| {
                format!(
                    "{prefix}{}: {lines} lines (limit {MAX_LINES}); split it by concern",
                    file.rel
                )
            })
        })
        .collect()
}

fn forbidden(name: &str) -> bool {
    CORE_FORBIDDEN
        .iter()
        .any(|rule| match rule.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == *rule,
        })
}

/// Forbidden dependencies of core, and chrono's `clock` feature wherever core's chrono gets
/// its features from (its own entry, or the workspace's when `workspace = true`).
fn core_manifest_violations(core_toml: &str, workspace_toml: &str) -> Vec<String> {
    let core: toml::Table = toml::from_str(core_toml).expect("core's Cargo.toml parses");
    let workspace: toml::Table = toml::from_str(workspace_toml).expect("Cargo.toml parses");
    let workspace_deps = workspace
        .get("workspace")
        .and_then(|w| w.get("dependencies"))
        .and_then(toml::Value::as_table)
        .cloned()
        .unwrap_or_default();
    let mut problems = Vec::new();
    let Some(deps) = core.get("dependencies").and_then(toml::Value::as_table) else {
        return problems;
    };
    for (name, spec) in deps {
        let package = spec
            .get("package")
            .and_then(toml::Value::as_str)
            .unwrap_or(name);
        if forbidden(package) {
            problems.push(format!(
                "vitalwatch-core depends on `{package}`: core does no I/O"
            ));
        }
        if package != "chrono" {
            continue;
        }
        let inherited = spec.get("workspace").and_then(toml::Value::as_bool) == Some(true);
        let base = if inherited {
            workspace_deps.get(name)
        } else {
            Some(spec)
        };
        let features = |value: Option<&toml::Value>| -> Vec<String> {
            value
                .and_then(|v| v.get("features"))
                .and_then(toml::Value::as_array)
                .map(|list| {
                    list.iter()
                        .filter_map(|f| f.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut all = features(base);
        all.extend(features(Some(spec)));
        // A bare version string keeps chrono's default features, which include `clock`.
        let defaults_on = match base {
            Some(toml::Value::Table(table)) => table
                .get("default-features")
                .and_then(toml::Value::as_bool)
                .unwrap_or(true),
            _ => true,
        };
        if all.iter().any(|f| f == "clock") || defaults_on {
            problems.push(
                "vitalwatch-core's chrono has the `clock` feature (directly or through chrono's \
                 defaults): core must not read a clock"
                    .to_owned(),
            );
        }
    }
    problems
}

#[test]
fn tidy_module_layers_file_sizes_and_core_manifest() {
    let root = workspace_root();
    let architecture = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md"))
        .expect("docs/ARCHITECTURE.md exists");
    let mut problems = Vec::new();
    for krate in ["vitalwatch", "vitalwatch-core"] {
        let layers = declared_layers(&architecture, krate).unwrap_or_else(|err| panic!("{err}"));
        let src = root.join("crates").join(krate).join("src");
        let mut files = Vec::new();
        sources(&src, &src, "rs", &mut files);
        problems.extend(layer_violations(&layers, &files));
        let mut all = Vec::new();
        let crate_dir = root.join("crates").join(krate);
        sources(&crate_dir, &crate_dir, "rs", &mut all);
        problems.extend(long_files(&all, &format!("crates/{krate}/")));
    }
    let web = root.join("web/src");
    let mut ts = Vec::new();
    sources(&web, &web, "ts", &mut ts);
    problems.extend(long_files(&ts, "web/src/"));
    let core_toml = std::fs::read_to_string(root.join("crates/vitalwatch-core/Cargo.toml"))
        .expect("core's manifest");
    let workspace_toml = std::fs::read_to_string(root.join("Cargo.toml")).expect("manifest");
    problems.extend(core_manifest_violations(&core_toml, &workspace_toml));
    assert!(problems.is_empty(), "tidy:\n  {}", problems.join("\n  "));
}

fn source(rel: &str, text: &str) -> Source {
    Source {
        rel: rel.to_owned(),
        text: text.to_owned(),
    }
}

const TABLE: &str = "intro\n<!-- tidy:layers demo -->\n| layer | modules |\n|---|---|\n\
                     | 1 | `clock` |\n| 2 | `store`, `tls` |\n| 3 | `alerts` |\n\
                     | 4 | `pipeline` |\n| test | `testing` |\n\
                     <!-- /tidy:layers -->\n";

#[test]
fn tidy_catches_a_planted_upward_import() {
    let layers = declared_layers(TABLE, "demo").expect("the table parses");
    assert_eq!(layers["alerts"], 3);
    let files = [
        source("pipeline.rs", "use crate::alerts::AlertService;\n"),
        source("alerts/mod.rs", "use crate::{clock, store::Store};\n"),
        // Planted: the store reaching up into the pipeline, inline and in a group.
        source("store/sqlite.rs", "fn f() { crate::pipeline::now(); }\n"),
        source(
            "store/mod.rs",
            "use crate::{\n    clock::now,\n    alerts::{Committed, Event},\n};\n",
        ),
        // A path in a comment is no import.
        source("clock.rs", "//! See [`crate::pipeline::Pipeline`].\n"),
    ];
    let problems = layer_violations(&layers, &files);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems[0].contains("src/store/sqlite.rs") && problems[0].contains("pipeline"));
    assert!(problems[1].contains("src/store/mod.rs") && problems[1].contains("`crate::alerts`"));
}

#[test]
fn tidy_catches_same_layer_imports_super_paths_and_unlisted_modules() {
    let layers = declared_layers(TABLE, "demo").expect("the table parses");
    let files = [
        source("store/mod.rs", "use super::tls::config;\n"),
        source(
            "store/sqlite/writer.rs",
            "use super::super::super::alerts::X;\n",
        ),
        source("store/sqlite/rows.rs", "use super::super::Store;\n"),
        source("metrics.rs", "pub struct M;\n"),
        // The fixture: fine from a unit-test file, not from production code.
        source("store/tests.rs", "use crate::testing::fixture;\n"),
        source("store/sqlite.rs", "use crate::testing::fixture;\n"),
        source("testing.rs", "use crate::pipeline::Pipeline;\n"),
    ];
    let problems = layer_violations(&layers, &files);
    assert_eq!(problems.len(), 4, "{problems:#?}");
    assert!(problems[3].contains("src/store/sqlite.rs") && problems[3].contains("fixture"));
    assert!(
        problems[0].contains("`crate::tls` (layer 2)"),
        "{problems:#?}"
    );
    assert!(problems[1].contains("`crate::alerts`"), "{problems:#?}");
    assert!(
        problems[2].contains("`metrics` has no layer"),
        "{problems:#?}"
    );
}

#[test]
fn tidy_catches_long_files_and_io_in_core() {
    let long = source("big.rs", &"x\n".repeat(MAX_LINES + 1));
    let short = source("small.rs", &"x\n".repeat(MAX_LINES));
    assert_eq!(long_files(&[long, short], "").len(), 1);
    let workspace = "[workspace.dependencies]\nchrono = { version = \"0.4\", default-features = false, features = [\"std\"] }\n";
    let clean = "[dependencies]\nserde = \"1\"\nchrono.workspace = true\n";
    assert!(core_manifest_violations(clean, workspace).is_empty());
    let with_clock = "[dependencies]\nchrono = { workspace = true, features = [\"clock\"] }\n";
    assert_eq!(core_manifest_violations(with_clock, workspace).len(), 1);
    let with_tokio = "[dependencies]\ntokio = \"1\"\nntex-mqtt = \"9\"\n";
    assert_eq!(core_manifest_violations(with_tokio, workspace).len(), 2);
    let defaults = "[dependencies]\nchrono = \"0.4\"\n";
    assert_eq!(core_manifest_violations(defaults, workspace).len(), 1);
}
