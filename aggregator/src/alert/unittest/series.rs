//! promtool's input notation: a series selector with only `=` matchers
//! (`up{job="api"}`) and its values in the expanding notation:
//!
//! - `a+bxn`: a, a+b, ..., a+n·b (n+1 values); `a-bxn` counts down;
//! - `axn`: a repeated n+1 times (same as `a+0xn`);
//! - `_`: no sample at that step; `_xn`: n steps without samples;
//! - `stale`: a staleness marker;
//! - plain numbers (`1 2.5 -3 1e3 NaN Inf`).

use promql_parser::label::MatchOp;
use promql_parser::parser::Expr;
use vigil_common::Label;

use crate::query::source::{METRIC_NAME, STALE_NAN_BITS};

/// A series' labels (sorted, `__name__` included) from selector text.
pub(super) fn parse_labels(text: &str) -> Result<Vec<Label>, String> {
    let text = text.trim();
    if text.is_empty() || text == "{}" {
        return Ok(Vec::new());
    }
    let expr = promql_parser::parser::parse(text).map_err(|e| format!("series {text:?}: {e}"))?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(format!("series {text:?} is not a plain series selector"));
    };
    if vs.offset.is_some() || vs.at.is_some() || !vs.matchers.or_matchers.is_empty() {
        return Err(format!("series {text:?} is not a plain series selector"));
    }
    let mut labels: Vec<Label> = vs.name.iter().map(|n| Label::new(METRIC_NAME, n)).collect();
    for m in &vs.matchers.matchers {
        if m.op != MatchOp::Equal {
            return Err(format!(
                "series {text:?}: only `=` matchers describe a series"
            ));
        }
        if m.name == METRIC_NAME && labels.iter().any(|l| l.name == METRIC_NAME) {
            continue;
        }
        if !m.value.is_empty() {
            labels.push(Label::new(&m.name, &m.value));
        }
    }
    labels.sort();
    labels.dedup_by(|a, b| a.name == b.name);
    Ok(labels)
}

/// Expands `values` into one optional value per step (None: no sample).
/// Caps the total so a typo like `1+1x1000000000` is refused, not allocated.
pub(super) fn parse_values(text: &str) -> Result<Vec<Option<f64>>, String> {
    const MAX_POINTS: usize = 1_000_000;
    let mut out = Vec::new();
    for item in text.split_whitespace() {
        let bad =
            || format!("values: cannot parse {item:?} (expected a number, _, stale, or a+bxn)");
        if item == "_" {
            out.push(None);
        } else if item == "stale" {
            out.push(Some(f64::from_bits(STALE_NAN_BITS)));
        } else if let Some((start, times)) = item.rsplit_once('x') {
            let n: usize = times.parse().map_err(|_| bad())?;
            if out.len().saturating_add(n).saturating_add(1) > MAX_POINTS {
                return Err(format!("values: more than {MAX_POINTS} points"));
            }
            if start == "_" {
                out.extend(std::iter::repeat_n(None, n));
                continue;
            }
            // Split `a+b` / `a-b` at the sign that is not the leading one
            // nor an exponent's.
            let b = start.as_bytes();
            let split = (1..b.len())
                .rev()
                .find(|&i| matches!(b[i], b'+' | b'-') && !matches!(b[i - 1], b'e' | b'E'));
            let (a, step) = match split {
                Some(i) => {
                    let step: f64 = number(&start[i + 1..]).ok_or_else(bad)?;
                    let a = number(&start[..i]).ok_or_else(bad)?;
                    (a, if b[i] == b'-' { -step } else { step })
                }
                None => (number(start).ok_or_else(bad)?, 0.0),
            };
            for k in 0..=n {
                out.push(Some(a + step * k as f64));
            }
        } else {
            out.push(Some(number(item).ok_or_else(bad)?));
        }
        if out.len() > MAX_POINTS {
            return Err(format!("values: more than {MAX_POINTS} points"));
        }
    }
    Ok(out)
}

fn number(s: &str) -> Option<f64> {
    match s {
        "Inf" | "+Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expanding_notation() {
        let v = |s: &str| parse_values(s).expect(s);
        assert_eq!(v("1+1x3"), vec![Some(1.0), Some(2.0), Some(3.0), Some(4.0)]);
        assert_eq!(
            v("10-2x2 _ 7"),
            vec![Some(10.0), Some(8.0), Some(6.0), None, Some(7.0)]
        );
        assert_eq!(v("5x2"), vec![Some(5.0); 3]);
        assert_eq!(v("_x2 1"), vec![None, None, Some(1.0)]);
        assert_eq!(v("-1+1x1 1e2"), vec![Some(-1.0), Some(0.0), Some(100.0)]);
        assert_eq!(v("1e1+1e0x1"), vec![Some(10.0), Some(11.0)]);
        let stale = v("1 stale");
        assert!(stale[1].is_some_and(crate::query::source::is_stale_marker));
        for bad in ["1+x3", "abc", "1+1xz", "1+1x10000000"] {
            assert!(parse_values(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn series_labels() {
        let l = parse_labels(r#"up{job="api", instance="a:1"}"#).expect("labels");
        let names: Vec<&str> = l.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["__name__", "instance", "job"]);
        assert!(parse_labels(r#"up{job=~"a.*"}"#).is_err());
        assert!(parse_labels("rate(up[5m])").is_err());
        assert!(parse_labels("").expect("empty").is_empty());
    }
}
