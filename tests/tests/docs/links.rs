//! Every relative link in README.md and docs/ (files and `#anchors`) leads
//! somewhere: the pages move and get renamed, and a dead link in the docs
//! an operator reads at 3 a.m. is a bug.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::repo;

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces
/// to hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a markdown file's headings (outside code blocks).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.insert(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// The targets of `[text](target)` links outside code blocks and code spans.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        // Drop code spans: `[a](b)` inside backticks is not a link.
        let plain: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = plain.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    out
}

fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![repo().join("README.md")];
    for dir in ["docs", "docs/runbooks"] {
        let mut found: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "md"))
            .collect();
        found.sort();
        files.extend(found);
    }
    files
}

fn check(file: &Path, target: &str) -> Result<(), String> {
    if target.starts_with("http://")
        || target.starts_with("https://")
        || target.starts_with("mailto:")
    {
        return Ok(());
    }
    let (path, anchor) = match target.split_once('#') {
        Some((p, a)) => (p, Some(a)),
        None => (target, None),
    };
    let dest = if path.is_empty() {
        file.to_path_buf()
    } else {
        file.parent().expect("a folder").join(path)
    };
    if !dest.exists() {
        return Err(format!("{target}: {} does not exist", dest.display()));
    }
    if let Some(anchor) = anchor {
        let text = std::fs::read_to_string(&dest).map_err(|e| e.to_string())?;
        if !anchors(&text).contains(anchor) {
            return Err(format!("{target}: no heading with anchor #{anchor}"));
        }
    }
    Ok(())
}

#[test]
fn every_relative_link_resolves() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).expect("read");
        for target in links(&text) {
            checked += 1;
            if let Err(e) = check(&file, &target) {
                failures.push(format!("{}: {e}", file.display()));
            }
        }
    }
    assert!(checked > 50, "only {checked} links found");
    assert!(
        failures.is_empty(),
        "dead links:\n- {}",
        failures.join("\n- ")
    );
}

#[test]
fn slugs_and_links_are_read_as_github_does() {
    assert_eq!(
        slug(" The database is down: `/readyz` is 503"),
        "the-database-is-down-readyz-is-503"
    );
    assert_eq!(slug("Agent: `agent.toml`"), "agent-agenttoml");
    assert_eq!(
        links("see [a](x.md#b) and `[c](not-a-link)`, ![i](images/y.svg)"),
        ["x.md#b", "images/y.svg"]
    );
}
