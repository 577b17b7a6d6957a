//! One sample line: `name[{labels}] value [timestamp] [# exemplar]`, and the
//! float syntax of values, timestamps and `le`/`quantile` labels.

use crate::model::{is_valid_label_name, is_valid_metric_name};

use super::{Format, Sample};

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// A position in one line. Splits happen only at ASCII bytes, so every
/// slice taken is valid UTF-8.
struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }
    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.i += usize::from(hit);
        hit
    }
    /// Skips blanks; whether there were any.
    fn blanks(&mut self) -> bool {
        let start = self.i;
        while self.peek().is_some_and(is_blank) {
            self.i += 1;
        }
        self.i > start
    }
    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.i;
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
        &self.s[start..self.i]
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

/// A sample line cut into its parts, the label block not yet parsed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Split<'a> {
    /// The metric name and the label block exactly as written.
    pub series: &'a str,
    pub name: &'a str,
    /// What follows the label block's `{`, through its `}`.
    pub labels: Option<&'a str>,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

/// Cuts a sample line like [`sample`] does, but only finds the end of the
/// label block (quotes and escapes respected) instead of parsing it: a cache
/// keyed by `series` can then skip that work. An `Ok` here says nothing about
/// the labels' validity; [`labels`] checks them. On well-formed lines both
/// functions agree; on an `Err`, call [`sample`] for the reason it reports.
pub(super) fn split(line: &str, format: Format) -> Result<Split<'_>, &'static str> {
    let mut c = Cursor { s: line, i: 0 };
    let name = c.take_while(is_name_byte);
    if !is_valid_metric_name(name) {
        return Err("invalid metric name");
    }
    let mut blank = c.blanks();
    let mut labels = None;
    if c.eat(b'{') {
        let start = c.i;
        skip_label_block(&mut c)?;
        labels = Some(&line[start..c.i]);
        blank = c.blanks();
    }
    let series = line[..c.i].trim_end_matches([' ', '\t']);
    if !blank {
        return Err("expected a blank before the value");
    }
    let (value, timestamp_ms) = value_and_timestamp(&mut c, format)?;
    Ok(Split {
        series,
        name,
        labels,
        value,
        timestamp_ms,
    })
}

/// Moves past the `}` closing a label block, skipping quoted values.
fn skip_label_block(c: &mut Cursor<'_>) -> Result<(), &'static str> {
    let bytes = c.s.as_bytes();
    let mut quoted = false;
    while let Some(&b) = bytes.get(c.i) {
        c.i += 1;
        match (quoted, b) {
            (true, b'\\') => c.i += 1,
            (_, b'"') => quoted = !quoted,
            (false, b'}') => return Ok(()),
            _ => {}
        }
    }
    // A multi-byte character may have been skipped half-way: stay on a boundary.
    c.i = c.s.len();
    Err("unterminated label set")
}

/// Parses a label block as cut by [`split`] (after `{`, through `}`).
pub(super) fn labels(block: &str) -> Result<Vec<(String, String)>, &'static str> {
    label_set(&mut Cursor { s: block, i: 0 })
}

/// The value, the optional timestamp and the optional exemplar.
fn value_and_timestamp(
    c: &mut Cursor<'_>,
    format: Format,
) -> Result<(f64, Option<i64>), &'static str> {
    let value = parse_float(c.take_while(|b| !is_blank(b))).ok_or("invalid value")?;
    c.blanks();
    let mut timestamp_ms = None;
    if c.peek().is_some_and(|b| b != b'#') {
        let raw = c.take_while(|b| !is_blank(b));
        timestamp_ms = Some(parse_timestamp(raw, format).ok_or("invalid timestamp")?);
        c.blanks();
    }
    // Whatever follows a '#' is an exemplar, which Vigil does not keep.
    if c.peek().is_some_and(|b| b != b'#') {
        return Err("unexpected text after the value");
    }
    Ok((value, timestamp_ms))
}

/// One sample line: `name[{labels}] value [timestamp] [# exemplar]`.
pub(super) fn sample(line: &str, format: Format) -> Result<Sample, &'static str> {
    let mut c = Cursor { s: line, i: 0 };
    let name = c.take_while(is_name_byte);
    if !is_valid_metric_name(name) {
        return Err("invalid metric name");
    }
    let mut blank = c.blanks();
    let mut labels = Vec::new();
    if c.eat(b'{') {
        labels = label_set(&mut c)?;
        blank = c.blanks();
    }
    if !blank {
        return Err("expected a blank before the value");
    }
    let (value, timestamp_ms) = value_and_timestamp(&mut c, format)?;
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
        timestamp_ms,
    })
}

/// Labels after the opening `{`, through the closing `}`.
fn label_set(c: &mut Cursor<'_>) -> Result<Vec<(String, String)>, &'static str> {
    let mut labels: Vec<(String, String)> = Vec::new();
    loop {
        c.blanks();
        if c.eat(b'}') {
            return Ok(labels);
        }
        let name = c.take_while(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !is_valid_label_name(name) || name == "__name__" {
            return Err("invalid label name");
        }
        c.blanks();
        if !c.eat(b'=') {
            return Err("expected = after a label name");
        }
        c.blanks();
        if !c.eat(b'"') {
            return Err("expected a quoted label value");
        }
        let value = quoted(c)?;
        if labels.iter().any(|(n, _)| n == name) {
            return Err("duplicate label name");
        }
        labels.push((name.to_string(), value));
        c.blanks();
        if !c.eat(b',') && c.peek() != Some(b'}') {
            return Err("expected , or } after a label");
        }
    }
}

/// A label value after its opening quote, through the closing quote.
/// Unknown escapes are kept as written, as Prometheus does.
fn quoted(c: &mut Cursor<'_>) -> Result<String, &'static str> {
    let mut out = String::new();
    let mut start = c.i;
    while let Some(b) = c.peek() {
        match b {
            b'"' => {
                out.push_str(&c.s[start..c.i]);
                c.i += 1;
                return Ok(out);
            }
            b'\\' => {
                out.push_str(&c.s[start..c.i]);
                c.i += 1;
                match c.peek() {
                    Some(b'\\') => out.push('\\'),
                    Some(b'"') => out.push('"'),
                    Some(b'n') => out.push('\n'),
                    _ => {
                        out.push('\\');
                        start = c.i;
                        continue;
                    }
                }
                c.i += 1;
                start = c.i;
            }
            _ => c.i += 1,
        }
    }
    Err("unterminated label value")
}

/// A Go-style float: `NaN`, `+Inf`, `-Inf`, `1e3`, `-0.5`, ...
pub fn parse_float(s: &str) -> Option<f64> {
    // Rust accepts some words Go does not ("infinity"); harmless. It rejects
    // `_` separators and hex floats, which exporters do not emit.
    if s.is_empty() || s.contains('_') {
        return None;
    }
    s.parse().ok()
}

fn parse_timestamp(s: &str, format: Format) -> Option<i64> {
    match format {
        Format::Prometheus => s.parse().ok(),
        Format::OpenMetrics => {
            let secs = parse_float(s)?;
            let ms = (secs * 1000.0).round();
            // The range check also rejects NaN and infinities.
            (ms.abs() < 9.2e18).then_some(ms as i64)
        }
    }
}

/// A float as Prometheus writes `le`/`quantile` label values: Go's shortest
/// `%g` (`strconv.FormatFloat(v, 'g', -1, 64)`), with `.0` added where it
/// has neither a point nor an exponent (`1` -> `1.0`, `1e6` -> `1e+06`).
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    // `{:e}` is the shortest round-trip form, e.g. "1.5e-5", "1e6", "0e0".
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    // Go switches to the exponent form outside 1e-4 <= |v| < 1e6.
    if v != 0.0 && !(-4..6).contains(&exp) {
        return format!(
            "{mantissa}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        );
    }
    let plain = format!("{v}");
    if plain.contains('.') {
        plain
    } else {
        format!("{plain}.0")
    }
}
