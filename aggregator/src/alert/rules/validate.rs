//! Reading a rule file from its YAML tree, collecting every problem.
//!
//! The file is read into a `serde_norway::Value` first and walked by hand
//! (rather than derived with `deny_unknown_fields`) so that one unknown key
//! does not hide the next problem: each message is
//! `FILE:LINE: group "G": rule "R": what is wrong`. Lines are found by
//! looking for the group's `name:` and the rule's `alert:`/`record:` line
//! (YAML values do not carry positions); when a rule has no name the line
//! is left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_norway::Value;

use super::RuleGroup;
use super::rule::rule;
use super::syntax::duration;

const GROUP_KEYS: &[&str] = &["name", "interval", "rules"];
/// Prometheus group keys Vigil does not implement: named, so the message
/// says so instead of "unknown".
const UNSUPPORTED_GROUP_KEYS: &[&str] = &["limit", "query_offset", "labels"];

/// Where a message is about.
#[derive(Clone, Copy, Default)]
pub(super) struct At<'a> {
    pub line: Option<usize>,
    pub group: Option<&'a str>,
    pub rule: Option<&'a str>,
}

pub(super) struct Ctx<'a> {
    pub path: &'a Path,
    lines: Vec<&'a str>,
    pub errors: Vec<String>,
}

impl Ctx<'_> {
    pub(super) fn err(&mut self, at: At<'_>, msg: impl std::fmt::Display) {
        let mut s = self.path.display().to_string();
        if let Some(l) = at.line {
            s.push_str(&format!(":{l}"));
        }
        s.push_str(": ");
        if let Some(g) = at.group {
            s.push_str(&format!("group {g:?}: "));
        }
        if let Some(r) = at.rule {
            s.push_str(&format!("rule {r:?}: "));
        }
        s.push_str(&msg.to_string());
        self.errors.push(s);
    }

    /// 1-based line at or after `from` (0-based) whose content is `key: value`.
    pub(super) fn find(&self, from: usize, keys: &[&str], value: &str) -> Option<usize> {
        self.lines.iter().enumerate().skip(from).find_map(|(i, l)| {
            let l = l.trim_start().trim_start_matches("- ").trim_start();
            keys.iter()
                .any(|k| {
                    l.strip_prefix(k)
                        .and_then(|r| r.strip_prefix(':'))
                        .map(|r| r.trim().trim_matches(|c| c == '"' || c == '\'') == value)
                        .unwrap_or(false)
                })
                .then_some(i + 1)
        })
    }
}

pub(super) fn file(path: &Path, text: &str) -> Result<Vec<RuleGroup>, Vec<String>> {
    let mut cx = Ctx {
        path,
        lines: text.lines().collect(),
        errors: Vec::new(),
    };
    let root: Value = match serde_norway::from_str(text) {
        Ok(v) => v,
        Err(e) => return Err(vec![format!("{}: YAML: {e}", path.display())]),
    };
    let groups = match root {
        // An empty file holds no groups (as in Prometheus).
        Value::Null => return Ok(Vec::new()),
        Value::Mapping(m) => {
            let mut groups = None;
            for (k, v) in m {
                match k.as_str() {
                    Some("groups") => groups = Some(v),
                    _ => cx.err(
                        At::default(),
                        format!("unknown key {} (expected `groups`)", key_text(&k)),
                    ),
                }
            }
            groups
        }
        _ => {
            cx.err(At::default(), "a rule file is a mapping with `groups:`");
            None
        }
    };
    let mut out = Vec::new();
    match groups {
        None | Some(Value::Null) => {}
        Some(Value::Sequence(seq)) => {
            let mut names = BTreeSet::new();
            let mut cursor = 0;
            for (i, g) in seq.iter().enumerate() {
                if let Some(g) = group(&mut cx, i, g, &mut names, &mut cursor) {
                    out.push(g);
                }
            }
        }
        Some(_) => cx.err(At::default(), "`groups` must be a list"),
    }
    if cx.errors.is_empty() {
        Ok(out)
    } else {
        Err(cx.errors)
    }
}

fn key_text(k: &Value) -> String {
    match k.as_str() {
        Some(s) => format!("`{s}`"),
        None => format!("{k:?}"),
    }
}

/// Splits a mapping into known keys, reporting unknown ones.
pub(super) fn fields<'v>(
    cx: &mut Ctx<'_>,
    at: At<'_>,
    what: &str,
    v: &'v Value,
    known: &[&str],
    unsupported: &[&str],
) -> Option<BTreeMap<String, &'v Value>> {
    let Value::Mapping(m) = v else {
        cx.err(at, format!("{what} must be a mapping"));
        return None;
    };
    let mut out = BTreeMap::new();
    for (k, v) in m {
        match k.as_str() {
            Some(k) if known.contains(&k) => {
                out.insert(k.to_string(), v);
            }
            Some(k) if unsupported.contains(&k) => {
                cx.err(at, format!("`{k}` is not supported by Vigil"));
            }
            _ => cx.err(
                at,
                format!(
                    "unknown key {} in {what} (known: {})",
                    key_text(k),
                    known.join(", ")
                ),
            ),
        }
    }
    Some(out)
}

pub(super) fn string(
    cx: &mut Ctx<'_>,
    at: At<'_>,
    key: &str,
    v: Option<&&Value>,
) -> Option<String> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            cx.err(at, format!("`{key}` must be a string"));
            None
        }
    }
}

fn group(
    cx: &mut Ctx<'_>,
    index: usize,
    v: &Value,
    names: &mut BTreeSet<String>,
    cursor: &mut usize,
) -> Option<RuleGroup> {
    let anon = format!("#{}", index + 1);
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_default();
    let line = (!name.is_empty())
        .then(|| cx.find(*cursor, &["name"], &name))
        .flatten();
    if let Some(l) = line {
        *cursor = l;
    }
    let label = if name.is_empty() {
        anon.as_str()
    } else {
        name.as_str()
    };
    let at = At {
        line,
        group: Some(label),
        rule: None,
    };
    let f = fields(cx, at, "a group", v, GROUP_KEYS, UNSUPPORTED_GROUP_KEYS)?;
    let before = cx.errors.len();
    match f.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => {
            if !names.insert(s.clone()) {
                cx.err(at, "duplicate group name in this file");
            }
        }
        Some(Value::String(_)) | None | Some(Value::Null) => {
            cx.err(at, "group name must not be empty")
        }
        Some(_) => cx.err(at, "`name` must be a string"),
    }
    let interval = match f.get("interval") {
        None | Some(Value::Null) => None,
        Some(v) => match duration(v) {
            Ok(d) if d.is_zero() => {
                cx.err(at, "`interval` must be positive");
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                cx.err(at, format!("`interval`: {e}"));
                None
            }
        },
    };
    let mut rules = Vec::new();
    match f.get("rules") {
        None | Some(Value::Null) => {}
        Some(Value::Sequence(seq)) => {
            for (i, r) in seq.iter().enumerate() {
                if let Some(r) = rule(cx, label, i, r, cursor) {
                    rules.push(r);
                }
            }
        }
        Some(_) => cx.err(at, "`rules` must be a list"),
    }
    (cx.errors.len() == before).then(|| RuleGroup {
        name,
        file: cx.path.to_path_buf(),
        interval,
        rules,
    })
}
