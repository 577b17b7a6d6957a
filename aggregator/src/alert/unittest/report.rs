//! Failure reports in promtool's shape: what was expected, what came, and a
//! `-` (expected, missing) / `+` (got, not expected) diff.

use super::eval::GotAlert;
use super::{AlertTest, ExprTest, series};
use crate::alert::LabelSet;
use crate::query::Sample;

fn fmt_labels(l: &LabelSet) -> String {
    let parts: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", parts.join(", "))
}

fn fmt_alert(a: &GotAlert) -> String {
    format!(
        "Labels:{} Annotations:{}",
        fmt_labels(&a.labels),
        fmt_labels(&a.annotations)
    )
}

pub(super) fn alert_failure(test: &AlertTest, exp: &[GotAlert], got: &[GotAlert]) -> String {
    let list = |v: &[GotAlert]| -> String {
        v.iter()
            .enumerate()
            .map(|(i, a)| format!("\n            {i}: {}", fmt_alert(a)))
            .collect()
    };
    let mut s = format!(
        "      alertname: {}, time: {},\n        exp:[{}\n        ],\n        got:[{}\n        ]\n        diff:",
        test.alertname,
        fmt_duration(test.eval_time.ms()),
        list(exp),
        list(got)
    );
    for a in exp.iter().filter(|a| !got.contains(a)) {
        s.push_str(&format!("\n          - {}", fmt_alert(a)));
    }
    for a in got.iter().filter(|a| !exp.contains(a)) {
        s.push_str(&format!("\n          + {}", fmt_alert(a)));
    }
    s
}

pub(super) fn expr_failure(test: &ExprTest, got: Vec<Sample>) -> Result<Option<String>, String> {
    let mut exp: Vec<(LabelSet, f64)> = Vec::new();
    for e in &test.exp_samples {
        let labels = series::parse_labels(&e.labels)?;
        exp.push((
            labels.into_iter().map(|l| (l.name, l.value)).collect(),
            e.value,
        ));
    }
    let mut got: Vec<(LabelSet, f64)> = got
        .into_iter()
        .map(|s| {
            (
                s.labels.into_iter().map(|l| (l.name, l.value)).collect(),
                s.value,
            )
        })
        .collect();
    exp.sort_by(|a, b| a.0.cmp(&b.0));
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let same = exp.len() == got.len()
        && exp
            .iter()
            .zip(&got)
            .all(|(e, g)| e.0 == g.0 && close(e.1, g.1));
    if same {
        return Ok(None);
    }
    let text = |v: &[(LabelSet, f64)]| -> String {
        v.iter()
            .map(|(l, x)| format!("\n            {} {}", fmt_labels(l), x))
            .collect()
    };
    let mut s = format!(
        "      expr: {:?}, time: {},\n        exp:[{}\n        ],\n        got:[{}\n        ]\n        diff:",
        test.expr,
        fmt_duration(test.eval_time.ms()),
        text(&exp),
        text(&got)
    );
    let has = |v: &[(LabelSet, f64)], x: &(LabelSet, f64)| {
        v.iter().any(|y| y.0 == x.0 && close(y.1, x.1))
    };
    for e in exp.iter().filter(|e| !has(&got, e)) {
        s.push_str(&format!("\n          - {} {}", fmt_labels(&e.0), e.1));
    }
    for g in got.iter().filter(|g| !has(&exp, g)) {
        s.push_str(&format!("\n          + {} {}", fmt_labels(&g.0), g.1));
    }
    Ok(Some(s))
}

/// Equal, or within a relative 1e-9 (float sums), or both NaN.
fn close(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

pub(super) fn fmt_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}
