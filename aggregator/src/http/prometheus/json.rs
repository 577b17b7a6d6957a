//! Query results in Prometheus' JSON, written by hand: timestamps as unix
//! seconds with millisecond fraction (`1435781451.781`), values as strings
//! formatted like Go's `strconv.FormatFloat` (`"NaN"`, `"+Inf"`, `"1e-07"`),
//! exactly as Prometheus writes them. Writing straight into one buffer also
//! keeps large matrices cheap.

use std::fmt::Write;

use crate::query::{Labels, RawSeries, Sample, Value};

/// `{"status":"success","data":<data>}` with optional warnings.
pub fn success(data: &str, warnings: &[String]) -> String {
    let mut out = String::with_capacity(data.len() + 64);
    out.push_str(r#"{"status":"success","data":"#);
    out.push_str(data);
    if !warnings.is_empty() {
        out.push_str(r#","warnings":["#);
        for (i, w) in warnings.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            string(&mut out, w);
        }
        out.push(']');
    }
    out.push('}');
    out
}

/// `{"resultType":..,"result":..}` for a query result.
pub fn query_data(value: &Value) -> String {
    let mut out = String::new();
    out.push_str(r#"{"resultType":""#);
    out.push_str(value.type_name());
    out.push_str(r#"","result":"#);
    match value {
        Value::Scalar {
            timestamp_ms,
            value,
        } => point(&mut out, *timestamp_ms, *value),
        Value::String {
            timestamp_ms,
            value,
        } => {
            out.push('[');
            timestamp(&mut out, *timestamp_ms);
            out.push(',');
            string(&mut out, value);
            out.push(']');
        }
        Value::Vector(samples) => vector(&mut out, samples),
        Value::Matrix(series) => matrix(&mut out, series),
    }
    out.push('}');
    out
}

fn vector(out: &mut String, samples: &[Sample]) {
    out.push('[');
    for (i, s) in samples.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r#"{"metric":"#);
        labels(out, &s.labels);
        out.push_str(r#","value":"#);
        point(out, s.timestamp_ms, s.value);
        out.push('}');
    }
    out.push(']');
}

fn matrix(out: &mut String, series: &[RawSeries]) {
    out.push('[');
    for (i, s) in series.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r#"{"metric":"#);
        labels(out, &s.labels);
        out.push_str(r#","values":["#);
        for (j, &(t, v)) in s.samples.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            point(out, t, v);
        }
        out.push_str("]}");
    }
    out.push(']');
}

/// A label set as a JSON object, in label order.
pub fn labels(out: &mut String, labels: &Labels) {
    out.push('{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        string(out, &l.name);
        out.push(':');
        string(out, &l.value);
    }
    out.push('}');
}

/// `[<seconds>,"<value>"]`
fn point(out: &mut String, t: i64, v: f64) {
    out.push('[');
    timestamp(out, t);
    out.push_str(",\"");
    out.push_str(&format_value(v));
    out.push_str("\"]");
}

/// Milliseconds as seconds with up to three decimals, as Prometheus'
/// `jsonutil.MarshalTimestamp` writes them (`1.5` s is `1.500`).
pub fn timestamp(out: &mut String, ms: i64) {
    let abs = ms.unsigned_abs();
    if ms < 0 {
        out.push('-');
    }
    let _ = write!(out, "{}", abs / 1000);
    let fraction = abs % 1000;
    if fraction != 0 {
        let _ = write!(out, ".{fraction:03}");
    }
}

/// A sample value as Prometheus writes it: Go's `FormatFloat(v, 'f', -1)`,
/// or `'e'` below 1e-6 and from 1e21 on; `NaN`, `+Inf`, `-Inf`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let abs = v.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Rust's `{:e}` is the shortest round-trip form ("1.5e-7"); Go
        // writes the exponent signed with at least two digits ("1.5e-07").
        let sci = format!("{v:e}");
        let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        return format!(
            "{mantissa}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        );
    }
    // Display is the shortest round-trip form without an exponent, as 'f'.
    format!("{v}")
}

/// A JSON string literal.
pub fn string(out: &mut String, s: &str) {
    // Serialising a str cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

#[cfg(test)]
mod tests {
    use vigil_common::Label;

    use super::*;

    #[test]
    fn values_match_prometheus() {
        for (v, want) in [
            (1.0, "1"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (0.0, "0"),
            (-0.0, "-0"),
            (1e6, "1000000"),
            (123456789.125, "123456789.125"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (1.5e-7, "1.5e-07"),
            (1e-6, "0.000001"),
            (-3e-9, "-3e-09"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ] {
            assert_eq!(format_value(v), want, "{v}");
        }
    }

    #[test]
    fn timestamps_match_prometheus() {
        for (ms, want) in [
            (1_435_781_451_781, "1435781451.781"),
            (1_500, "1.500"),
            (1_005, "1.005"),
            (2_000, "2"),
            (0, "0"),
            (-1_500, "-1.500"),
        ] {
            let mut out = String::new();
            timestamp(&mut out, ms);
            assert_eq!(out, want);
        }
    }

    #[test]
    fn every_result_type() {
        let labels = vec![Label::new("__name__", "up"), Label::new("job", "a\"b")];
        let v = Value::Vector(vec![Sample {
            labels: labels.clone(),
            timestamp_ms: 1_000,
            value: 1.0,
        }]);
        assert_eq!(
            query_data(&v),
            r#"{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a\"b"},"value":[1,"1"]}]}"#
        );
        let m = Value::Matrix(vec![RawSeries {
            labels: labels.into(),
            samples: vec![(1_000, 1.0), (16_500, f64::NAN)],
        }]);
        assert_eq!(
            query_data(&m),
            r#"{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a\"b"},"values":[[1,"1"],[16.500,"NaN"]]}]}"#
        );
        let s = Value::Scalar {
            timestamp_ms: 1_001,
            value: 2.0,
        };
        assert_eq!(
            query_data(&s),
            r#"{"resultType":"scalar","result":[1.001,"2"]}"#
        );
        let s = Value::String {
            timestamp_ms: 1_000,
            value: "hi".into(),
        };
        assert_eq!(
            query_data(&s),
            r#"{"resultType":"string","result":[1,"hi"]}"#
        );
        assert_eq!(
            query_data(&Value::Vector(vec![])),
            r#"{"resultType":"vector","result":[]}"#
        );
        let body = success("[]", &["w".into()]);
        assert_eq!(body, r#"{"status":"success","data":[],"warnings":["w"]}"#);
        let parsed: serde_json::Value =
            serde_json::from_str(&success(&query_data(&m), &[])).expect("valid JSON");
        assert_eq!(parsed["data"]["result"][0]["values"][1][0], 16.5);
    }
}
