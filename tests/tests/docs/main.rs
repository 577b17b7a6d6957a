//! docs/: what the operator documentation states is checked against the code,
//! so the pages cannot drift from what the binaries accept and serve.
//!
//! - `config.rs`: docs/configuration.md documents exactly the keys the config
//!   structs accept (both ways), with the documented types, defaults and
//!   required keys, and its full examples parse and validate.
//! - `api.rs`: every `curl` example in docs/api.md names a route of the
//!   OpenAPI document the aggregator serves at `/api/openapi.json`.
//! - `backup.rs`: the SQLite backup and restore commands of
//!   docs/operations.md, run for real against a database the aggregator wrote.
//! - `metrics.rs`: docs/metrics.md has a row for every metric the agent emits.

mod api;
mod backup;
mod config;
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
