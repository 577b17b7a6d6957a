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
use std::time::Duration;

use promql_parser::parser::value::ValueType;
use serde_norway::{Mapping, Value};

use super::{AlertingRule, FlapDetection, RecordingRule, Rule, RuleGroup, VigilExtensions};
use crate::alert::template;

const GROUP_KEYS: &[&str] = &["name", "interval", "rules"];
const RULE_KEYS: &[&str] = &[
    "alert",
    "record",
    "expr",
    "for",
    "keep_firing_for",
    "labels",
    "annotations",
    "vigil",
];
/// Prometheus group keys Vigil does not implement: named, so the message
/// says so instead of "unknown".
const UNSUPPORTED_GROUP_KEYS: &[&str] = &["limit", "query_offset", "labels"];

/// Where a message is about.
#[derive(Clone, Copy, Default)]
struct At<'a> {
    line: Option<usize>,
    group: Option<&'a str>,
    rule: Option<&'a str>,
}

struct Ctx<'a> {
    path: &'a Path,
    lines: Vec<&'a str>,
    errors: Vec<String>,
}

impl Ctx<'_> {
    fn err(&mut self, at: At<'_>, msg: impl std::fmt::Display) {
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
    fn find(&self, from: usize, keys: &[&str], value: &str) -> Option<usize> {
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
fn fields<'v>(
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

fn string<'v>(cx: &mut Ctx<'_>, at: At<'_>, key: &str, v: Option<&&'v Value>) -> Option<String> {
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

fn rule(
    cx: &mut Ctx<'_>,
    group: &str,
    index: usize,
    v: &Value,
    cursor: &mut usize,
) -> Option<Rule> {
    let name = v
        .get("alert")
        .or_else(|| v.get("record"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let line = name
        .as_deref()
        .and_then(|n| cx.find(*cursor, &["alert", "record"], n));
    if let Some(l) = line {
        *cursor = l;
    }
    let anon = format!("#{}", index + 1);
    let at = At {
        line,
        group: Some(group),
        rule: Some(name.as_deref().unwrap_or(&anon)),
    };
    let f = fields(cx, at, "a rule", v, RULE_KEYS, &[])?;
    let before = cx.errors.len();
    let alert = string(cx, at, "alert", f.get("alert"));
    let record = string(cx, at, "record", f.get("record"));
    let expr = string(cx, at, "expr", f.get("expr")).unwrap_or_default();
    check_expr(cx, at, "expr", &expr);
    let labels = label_map(cx, at, "labels", f.get("labels"));
    let annotations = label_map(cx, at, "annotations", f.get("annotations"));
    let mut dur = |key: &str| match f.get(key) {
        None | Some(Value::Null) => Duration::ZERO,
        Some(v) => duration(v).unwrap_or_else(|e| {
            cx.err(at, format!("`{key}`: {e}"));
            Duration::ZERO
        }),
    };
    let for_ = dur("for");
    let keep_firing_for = dur("keep_firing_for");
    let built = match (alert, record) {
        (Some(_), Some(_)) => {
            cx.err(at, "a rule has either `alert` or `record`, not both");
            None
        }
        (None, None) => {
            cx.err(
                at,
                "a rule needs `alert` (alerting rule) or `record` (recording rule)",
            );
            None
        }
        (Some(name), None) => {
            if name.trim().is_empty() || name.chars().any(char::is_control) {
                cx.err(at, format!("invalid alert name {name:?}"));
            }
            let vigil = match f.get("vigil") {
                None | Some(Value::Null) => VigilExtensions::default(),
                Some(v) => vigil(cx, at, v),
            };
            Some(Rule::Alerting(AlertingRule {
                name,
                expr,
                for_,
                keep_firing_for,
                labels,
                annotations,
                vigil,
            }))
        }
        (None, Some(record)) => {
            if !is_metric_name(&record) {
                cx.err(
                    at,
                    format!("invalid recording rule name {record:?}: not a valid metric name"),
                );
            }
            for key in ["for", "keep_firing_for", "annotations", "vigil"] {
                if f.contains_key(key) {
                    cx.err(at, format!("`{key}` is not allowed in a recording rule"));
                }
            }
            Some(Rule::Recording(RecordingRule {
                record,
                expr,
                labels,
            }))
        }
    };
    built.filter(|_| cx.errors.len() == before)
}

fn check_expr(cx: &mut Ctx<'_>, at: At<'_>, key: &str, expr: &str) {
    if expr.trim().is_empty() {
        cx.err(at, format!("`{key}` must be set"));
        return;
    }
    match promql_parser::parser::parse(expr) {
        Ok(e) => {
            if !matches!(e.value_type(), ValueType::Vector | ValueType::Scalar) {
                cx.err(
                    at,
                    format!(
                        "`{key}` must return an instant vector or a scalar, not a {}",
                        e.value_type()
                    ),
                );
            }
        }
        Err(e) => cx.err(
            at,
            format!("`{key}` does not parse: {}", e.replace('\n', " ")),
        ),
    }
}

fn label_map(
    cx: &mut Ctx<'_>,
    at: At<'_>,
    key: &str,
    v: Option<&&Value>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let m: &Mapping = match v {
        None | Some(Value::Null) => return out,
        Some(Value::Mapping(m)) => m,
        Some(_) => {
            cx.err(at, format!("`{key}` must be a mapping"));
            return out;
        }
    };
    for (k, v) in m {
        let Some(name) = k.as_str() else {
            cx.err(at, format!("{key}: name {k:?} must be a string"));
            continue;
        };
        if !is_label_name(name) || name.starts_with("__") {
            cx.err(at, format!("{key}: invalid name {name:?} (letters, digits and _, not starting with a digit or __)"));
        }
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                cx.err(at, format!("{key}.{name} must be a string"));
                continue;
            }
        };
        if let Err(e) = template::check(name, &text) {
            cx.err(at, format!("{key}.{name}: {}", e.message));
        }
        out.insert(name.to_string(), text);
    }
    out
}

fn vigil(cx: &mut Ctx<'_>, at: At<'_>, v: &Value) -> VigilExtensions {
    let mut ext = VigilExtensions::default();
    let Some(f) = fields(cx, at, "`vigil`", v, &["recover", "flap"], &[]) else {
        return ext;
    };
    if let Some(expr) = string(cx, at, "vigil.recover", f.get("recover")) {
        check_expr(cx, at, "vigil.recover", &expr);
        ext.recover = Some(expr);
    }
    if let Some(flap) = f.get("flap").filter(|v| !v.is_null()) {
        let Some(ff) = fields(
            cx,
            at,
            "`vigil.flap`",
            flap,
            &["window", "high", "low"],
            &[],
        ) else {
            return ext;
        };
        let window = ff.get("window").and_then(|v| v.as_u64());
        let high = ff.get("high").and_then(|v| v.as_f64());
        let low = ff.get("low").and_then(|v| v.as_f64());
        let (Some(window), Some(high), Some(low)) = (window, high, low) else {
            cx.err(
                at,
                "vigil.flap needs `window` (a whole number), `high` and `low` (numbers)",
            );
            return ext;
        };
        let mut ok = true;
        if window < 2 {
            cx.err(
                at,
                format!("vigil.flap.window must be at least 2, got {window}"),
            );
            ok = false;
        }
        if !(0.0 < low && low < high && high <= 1.0) {
            cx.err(
                at,
                format!("vigil.flap needs 0 < low < high <= 1, got low {low}, high {high}"),
            );
            ok = false;
        }
        if ok {
            ext.flap = Some(FlapDetection {
                window: usize::try_from(window).unwrap_or(usize::MAX),
                high,
                low,
            });
        }
    }
    ext
}

/// A Prometheus duration as rule files write it: `1h30m`, `5m`, `90s`,
/// `500ms`, `0` (units y w d h m s ms, each at most once, in that order).
pub(crate) fn duration(v: &Value) -> Result<Duration, String> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err("must be a duration such as 5m".into()),
    };
    if text.starts_with('-') {
        return Err(format!("{text:?}: a duration cannot be negative"));
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("ms", 1),
        ("m", 60_000),
        ("s", 1000),
    ];
    // Order in the text: y w d h m s ms.
    const ORDER: [&str; 7] = ["y", "w", "d", "h", "m", "s", "ms"];
    let bad = || format!("{text:?} is not a valid duration (like 30s, 5m, 1h30m)");
    let mut rest = text.as_str();
    let mut ms: u64 = 0;
    let mut last = None::<usize>;
    while !rest.is_empty() {
        let n = rest.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return Err(bad());
        }
        let value: u64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let (unit, mult) = UNITS
            .iter()
            .find(|(u, _)| rest.starts_with(u) && !(*u == "m" && rest.starts_with("ms")))
            .ok_or_else(bad)?;
        let pos = ORDER.iter().position(|o| o == unit).ok_or_else(bad)?;
        if last.is_some_and(|l| l >= pos) {
            return Err(bad());
        }
        last = Some(pos);
        rest = &rest[unit.len()..];
        ms = value
            .checked_mul(*mult)
            .and_then(|v| ms.checked_add(v))
            .ok_or_else(bad)?;
    }
    Ok(Duration::from_millis(ms))
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub(crate) fn is_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`
pub(crate) fn is_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}
