//! One rule of a group: its fields, expression, names, templates and
//! `vigil:` extensions, every problem reported through the file's context.

use std::collections::BTreeMap;
use std::time::Duration;

use promql_parser::parser::value::ValueType;
use serde_norway::{Mapping, Value};

use super::syntax::{duration, is_label_name, is_metric_name};
use super::validate::{At, Ctx, fields, string};
use super::{AlertingRule, FlapDetection, RecordingRule, Rule, VigilExtensions};
use crate::alert::template;

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

pub(super) fn rule(
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
