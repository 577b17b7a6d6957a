//! PromQL conformance tests: `tests/promql/*.test` scripts in the style of
//! Prometheus' promqltest, run against the engine over a `MemorySource`.
//!
//! Script commands (a blank line or a new command ends a block):
//! - `load <interval>` then lines `<series> <values>`: values start at t=0,
//!   one per interval. `_` is a missing sample, `stale` a staleness marker,
//!   `a+bxN` / `a-bxN` expand to N+1 values, `axN` to N+1 copies, `_xN` to N
//!   gaps.
//! - `clear` drops all series.
//! - `eval instant at <time> <expr>` then expected lines: `<series> <value>`
//!   for a vector (any order), a bare number for a scalar, `"text"` for a
//!   string, or `<series> <values>` for a matrix. `eval_ordered` checks order.
//! - `eval range from <t> to <t> step <d> <expr>` then `<series> <values>`,
//!   one value (or `_`) per step.
//! - `eval_fail ...` expects an error; an optional next line
//!   `expected_fail_message <text>` must be contained in the message.
//!
//! Expected floats match within a relative 1e-6 (as promqltest); NaN
//! matches NaN.

use std::path::Path;

use promql_parser::parser::{Expr, parse};
use vigil_aggregator::query::source::STALE_NAN_BITS;
use vigil_aggregator::query::{Engine, MemorySource, Value};
use vigil_common::Label;

/// One expected value: a float, or nothing at this step.
type Expected = Option<f64>;

fn parse_duration_ms(s: &str) -> Result<i64, String> {
    if let Ok(secs) = s.parse::<f64>() {
        return Ok((secs * 1000.0).round() as i64);
    }
    let mut total = 0i64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push(chars.next().unwrap_or('s'));
        }
        let n: i64 = num.parse().map_err(|_| format!("bad duration {s}"))?;
        num.clear();
        total += n * match unit.as_str() {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return Err(format!("bad duration unit in {s}")),
        };
    }
    if !num.is_empty() {
        return Err(format!("bad duration {s}"));
    }
    Ok(total)
}

fn parse_float(s: &str) -> Result<f64, String> {
    match s {
        "Inf" | "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        "stale" => Ok(f64::from_bits(STALE_NAN_BITS)),
        _ => s.parse().map_err(|_| format!("bad number {s}")),
    }
}

/// Expands one value token (`1+2x3`, `_x2`, `stale`, `5`) into values.
fn expand(tok: &str) -> Result<Vec<Expected>, String> {
    if tok == "_" {
        return Ok(vec![None]);
    }
    let Some((base, n)) = tok.rsplit_once('x') else {
        return Ok(vec![Some(parse_float(tok)?)]);
    };
    let n: usize = n.parse().map_err(|_| format!("bad expansion {tok}"))?;
    if base == "_" {
        return Ok(vec![None; n]);
    }
    // Split `a+b` / `a-b` at the operator that is not a leading sign or an
    // exponent's sign.
    let bytes = base.as_bytes();
    let split = (1..bytes.len())
        .find(|&i| (bytes[i] == b'+' || bytes[i] == b'-') && !matches!(bytes[i - 1], b'e' | b'E'));
    let (start, delta) = match split {
        Some(i) => {
            let d = parse_float(&base[i + 1..])?;
            (
                parse_float(&base[..i])?,
                if bytes[i] == b'-' { -d } else { d },
            )
        }
        None => (parse_float(base)?, 0.0),
    };
    Ok((0..=n).map(|k| Some(start + delta * k as f64)).collect())
}

/// Splits `metric{a="b"} 1 2 3` into labels and value tokens.
fn parse_series_line(line: &str) -> Result<(Vec<Label>, Vec<Expected>), String> {
    let (desc, rest) = match line.rfind('}') {
        Some(i) => (&line[..=i], &line[i + 1..]),
        None => line.split_once(char::is_whitespace).unwrap_or((line, "")),
    };
    let labels = parse_labels(desc.trim())?;
    let mut values = Vec::new();
    for tok in rest.split_whitespace() {
        values.extend(expand(tok)?);
    }
    Ok((labels, values))
}

fn parse_labels(desc: &str) -> Result<Vec<Label>, String> {
    if desc == "{}" {
        return Ok(Vec::new());
    }
    let Ok(Expr::VectorSelector(vs)) = parse(desc) else {
        return Err(format!("bad series description {desc}"));
    };
    let mut labels: Vec<Label> = vs
        .matchers
        .matchers
        .iter()
        .map(|m| Label::new(m.name.clone(), m.value.clone()))
        .collect();
    if let Some(name) = vs.name {
        if !labels.iter().any(|l| l.name == "__name__") {
            labels.push(Label::new("__name__", name));
        }
    }
    labels.sort();
    Ok(labels)
}

fn same(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    (a - b).abs() <= 1e-6 * (a.abs() + b.abs()).max(1e-9)
}

fn fmt_labels(l: &[Label]) -> String {
    let parts: Vec<String> = l
        .iter()
        .map(|l| format!("{}={:?}", l.name, l.value))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

fn fmt_values(v: &[Expected]) -> String {
    v.iter()
        .map(|x| x.map_or("_".to_string(), |f| f.to_string()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Compares a result with the expected lines.
fn check(result: &Value, expected: &[String], ordered: bool) -> Result<(), String> {
    match result {
        Value::Scalar { value, .. } => {
            let [line] = expected else {
                return Err(format!("got scalar {value}, expected {expected:?}"));
            };
            let want = parse_float(line.trim())?;
            if !same(*value, want) {
                return Err(format!("got scalar {value}, expected {want}"));
            }
            Ok(())
        }
        Value::String { value, .. } => {
            let [line] = expected else {
                return Err(format!("got string {value:?}, expected {expected:?}"));
            };
            if line.trim().trim_matches('"') != value {
                return Err(format!("got string {value:?}, expected {line}"));
            }
            Ok(())
        }
        Value::Vector(samples) => {
            let got: Vec<(Vec<Label>, Vec<Expected>)> = samples
                .iter()
                .map(|s| (s.labels.clone(), vec![Some(s.value)]))
                .collect();
            compare(got, expected, ordered)
        }
        Value::Matrix(series) => {
            let got = series
                .iter()
                .map(|s| {
                    // A densified range result marks steps without a value.
                    let values = s
                        .samples
                        .iter()
                        .map(|(_, v)| (v.to_bits() != GAP).then_some(*v))
                        .collect();
                    (s.labels.to_vec(), values)
                })
                .collect();
            compare(got, expected, ordered)
        }
    }
}

fn compare(
    got: Vec<(Vec<Label>, Vec<Expected>)>,
    expected: &[String],
    ordered: bool,
) -> Result<(), String> {
    let mut want = Vec::new();
    for line in expected {
        want.push(parse_series_line(line.trim())?);
    }
    let describe = |g: &[(Vec<Label>, Vec<Expected>)]| {
        g.iter()
            .map(|(l, v)| format!("  {} {}", fmt_labels(l), fmt_values(v)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    if got.len() != want.len() {
        return Err(format!(
            "got {} series, expected {}:\n{}",
            got.len(),
            want.len(),
            describe(&got)
        ));
    }
    for (i, (wl, wv)) in want.iter().enumerate() {
        let found = if ordered {
            (got[i].0 == *wl).then_some(&got[i])
        } else {
            got.iter().find(|(l, _)| l == wl)
        };
        let Some((_, gv)) = found else {
            return Err(format!(
                "expected series {} not in result (or out of order):\n{}",
                fmt_labels(wl),
                describe(&got)
            ));
        };
        let ok = gv.len() == wv.len()
            && gv.iter().zip(wv).all(|(g, w)| match (g, w) {
                (Some(g), Some(w)) => same(*g, *w),
                (None, None) => true,
                _ => false,
            });
        if !ok {
            return Err(format!(
                "series {}: got {}, expected {}",
                fmt_labels(wl),
                fmt_values(gv),
                fmt_values(wv)
            ));
        }
    }
    Ok(())
}

/// Converts a range result to one slot per step so `_` can be checked.
fn densify(v: Value, start: i64, step: i64, n: usize) -> Value {
    match v {
        Value::Matrix(series) => Value::Matrix(
            series
                .into_iter()
                .map(|mut s| {
                    let mut dense = vec![(0i64, f64::from_bits(GAP)); n];
                    for (t, val) in s.samples {
                        let i = ((t - start) / step) as usize;
                        if i < n {
                            dense[i] = (t, val);
                        }
                    }
                    s.samples = dense;
                    s
                })
                .collect(),
        ),
        other => other,
    }
}

/// Marks a step without a value in a densified range result.
const GAP: u64 = 0x7ff0_0000_0000_0bad;

async fn run_script(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("read test script");
    let lines: Vec<&str> = text.lines().collect();
    let engine = Engine::default();
    let mut source = MemorySource::new();
    let mut failures = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        let lineno = i + 1;
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // The block: following indented, non-empty lines.
        let mut block = Vec::new();
        while i < lines.len() && lines[i].starts_with([' ', '\t']) && !lines[i].trim().is_empty() {
            block.push(lines[i].trim().to_string());
            i += 1;
        }
        let fail = |msg: String| format!("{}:{lineno}: {line}\n  {msg}", path.display());
        if line == "clear" {
            source.clear();
        } else if let Some(interval) = line.strip_prefix("load ") {
            let interval = match parse_duration_ms(interval.trim()) {
                Ok(d) => d,
                Err(e) => {
                    failures.push(fail(e));
                    continue;
                }
            };
            for l in &block {
                match parse_series_line(l) {
                    Ok((labels, values)) => {
                        for (k, v) in values.into_iter().enumerate() {
                            if let Some(v) = v {
                                source.push(&labels, k as i64 * interval, v);
                            }
                        }
                    }
                    Err(e) => failures.push(fail(e)),
                }
            }
        } else if let Some(rest) = line.strip_prefix("eval") {
            let (kind, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            let should_fail = kind == "_fail";
            let ordered = kind == "_ordered";
            let mut expected = block.clone();
            let mut fail_msg = None;
            if should_fail {
                if let Some(m) = expected
                    .first()
                    .and_then(|l| l.strip_prefix("expected_fail_message "))
                {
                    fail_msg = Some(m.to_string());
                    expected.remove(0);
                }
            }
            let result = if let Some(r) = rest.strip_prefix("instant at ") {
                let (t, q) = r.split_once(' ').unwrap_or((r, ""));
                match parse_duration_ms(t) {
                    Ok(t) => Some(engine.instant(&source, q, t).await),
                    Err(e) => {
                        failures.push(fail(e));
                        None
                    }
                }
            } else if let Some(r) = rest.strip_prefix("range from ") {
                let parts: Vec<&str> = r.splitn(6, ' ').collect();
                match parts.as_slice() {
                    [from, "to", to, "step", step, q] => {
                        match (
                            parse_duration_ms(from),
                            parse_duration_ms(to),
                            parse_duration_ms(step),
                        ) {
                            (Ok(f), Ok(t), Ok(s)) => {
                                let n = if s > 0 && t >= f {
                                    ((t - f) / s + 1) as usize
                                } else {
                                    0
                                };
                                let r = engine
                                    .range(&source, q, f, t, s)
                                    .await
                                    .map(|v| densify(v, f, s, n));
                                Some(r)
                            }
                            _ => {
                                failures.push(fail("bad range times".into()));
                                None
                            }
                        }
                    }
                    _ => {
                        failures.push(fail("bad range eval line".into()));
                        None
                    }
                }
            } else {
                failures.push(fail("unknown eval form".into()));
                None
            };
            let Some(result) = result else { continue };
            match (result, should_fail) {
                (Ok(v), false) => {
                    if let Err(e) = check(&v, &expected, ordered) {
                        failures.push(fail(e));
                    }
                }
                (Ok(v), true) => failures.push(fail(format!("expected an error, got {v:?}"))),
                (Err(e), true) => {
                    if let Some(m) = fail_msg {
                        if !e.to_string().contains(&m) {
                            failures.push(fail(format!("error {e:?} does not contain {m:?}")));
                        }
                    }
                }
                (Err(e), false) => failures.push(fail(format!("unexpected error: {e}"))),
            }
        } else {
            failures.push(fail("unknown command".into()));
        }
    }
    failures
}

macro_rules! scripts {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/promql")
                    .join(concat!(stringify!($name), ".test"));
                let failures = run_script(&path).await;
                assert!(failures.is_empty(), "{}", failures.join("\n\n"));
            }
        )*

        /// A script added to the folder but not listed here would never run.
        #[test]
        fn every_script_is_listed() {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/promql");
            let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
                .expect("list tests/promql")
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".test").map(str::to_string))
                .collect();
            on_disk.sort();
            let mut listed = vec![$(stringify!($name).to_string()),*];
            listed.sort();
            assert_eq!(on_disk, listed);
        }
    };
}

scripts!(selectors, rate, aggregations, functions, matching, range);
