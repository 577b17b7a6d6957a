//! docs/: what the operator documentation states is checked against the code,
//! so the pages cannot drift from what the binaries accept and serve.
//!
//! - `config.rs`: docs/configuration.md documents exactly the keys the config
//!   structs accept (both ways), with the documented types, defaults and
//!   required keys, and its full examples parse and validate.
//! - `api.rs`: every `curl` example in docs/api.md names a route of the
//!   OpenAPI document the aggregator serves at `/api/openapi.json`.
//! - `backup.rs`: the SQLite and PostgreSQL backup and restore commands of
//!   docs/operations.md, run for real against a database the aggregator
//!   wrote; its example rule file loads.
//! - `metrics.rs`: docs/metrics.md has a row for every metric the agent emits
//!   and the aggregator serves.
//! - `links.rs`: every relative link in README.md and docs/ resolves, anchors
//!   included.

mod api;
mod backup;
mod config;
mod links;
mod metrics;
mod walk;

use std::path::PathBuf;

/// The repository root (this crate lives in `tests/`).
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// A file of the repository as text.
fn read(path: &str) -> String {
    let p = repo().join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// The fenced code blocks of a markdown text: (info string, body).
fn code_blocks(md: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in md.lines() {
        let trimmed = line.trim_start();
        match &mut current {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    current = Some((info.trim().to_string(), String::new()));
                }
            }
            Some((_, body)) => {
                if trimmed.starts_with("```") {
                    out.extend(current.take());
                } else {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
    }
    out
}

/// The README's two commands are a contract (DESIGN.md): one starts Vigil,
/// one tests it, each exactly as written, each in its own `sh` block.
#[test]
fn readme_keeps_its_two_commands() {
    let readme = read("README.md");
    let blocks: Vec<String> = code_blocks(&readme)
        .into_iter()
        .filter(|(info, _)| info == "sh")
        .map(|(_, body)| body.trim().to_string())
        .collect();
    for command in [
        "cargo build --release && ./target/release/vigil-aggregator quickstart",
        "tests/setup.sh && cargo test --workspace",
    ] {
        assert!(
            blocks.iter().any(|b| b == command),
            "README.md has no sh block holding exactly `{command}`"
        );
    }
}
