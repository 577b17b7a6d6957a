//! Prometheus text format 0.0.4 and OpenMetrics 1.0 text, parsed line by line.
//!
//! The available crates either reject a whole exposition at its first error
//! (openmetrics-parser) or mangle labels and histograms (prometheus-parse),
//! so this is a focused parser: a line that cannot be read is counted in
//! [`Exposition::malformed`] and skipped, the rest still count.
//!
//! What it keeps, per sample line: the exact metric name, the labels (values
//! unescaped: `\\`, `\"`, `\n`), the value (`NaN`, `+Inf`, `-Inf` included)
//! and the optional timestamp (milliseconds in 0.0.4, seconds in OpenMetrics;
//! returned in ms). `# HELP`, `# TYPE` and `# UNIT` become metadata; exemplars
//! (`... # {trace_id="x"} 1`) are skipped; OpenMetrics `_created` lines are
//! ordinary samples, as Prometheus stores them by default. `le` on histograms
//! and `quantile` on summaries are normalised as Prometheus 3 does (`1` ->
//! `1.0`, `+Inf` stays `+Inf`), so both formats give the same series.

use std::collections::HashMap;

use crate::model::is_valid_metric_name;
use crate::{MetricKind, MetricMetadata};

mod line;
#[cfg(test)]
mod tests;

pub use line::{format_float, parse_float};
use line::{sample, split};

/// The two text formats, told apart by the response's Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4` (and anything unrecognised).
    Prometheus,
    /// `application/openmetrics-text`.
    OpenMetrics,
}

impl Format {
    /// The format a `Content-Type` header announces.
    pub fn from_content_type(content_type: Option<&str>) -> Format {
        match content_type {
            Some(ct) if ct.trim_start().starts_with("application/openmetrics-text") => {
                Format::OpenMetrics
            }
            _ => Format::Prometheus,
        }
    }
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// In exposition order, names unique, `__name__` excluded.
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// The sample's own timestamp (ms since the epoch), when it has one.
    pub timestamp_ms: Option<i64>,
}

/// Which label of a sample [`parse`] rewrites in Prometheus' float form:
/// `le` for histogram series, `quantile` for summary series (by `# TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Normalised {
    Nothing,
    Le,
    Quantile,
}

/// A sample line before its labels are parsed, for [`parse_with`].
#[derive(Debug, Clone, Copy)]
pub struct RawSample<'a> {
    /// The metric name and label block exactly as written (`name{a="1"}`).
    /// Together with `normalised` it determines the parsed name and labels.
    pub series: &'a str,
    /// The label this line's family type normalises.
    pub normalised: Normalised,
    pub value: f64,
    /// The sample's own timestamp (ms since the epoch), when it has one.
    pub timestamp_ms: Option<i64>,
}

/// Receives the samples of [`parse_with`].
pub trait Visitor {
    /// A sample line whose name, value and timestamp are well formed. Return
    /// `true` if the visitor already knows `raw.series` (with
    /// `raw.normalised`) from an earlier [`Visitor::parsed`] call: its labels
    /// are then not parsed again and `parsed` is not called. Parsing is a
    /// function of that text, so a series once parsed cannot turn malformed.
    fn known(&mut self, raw: &RawSample<'_>) -> bool;
    /// A sample `known` did not know, its labels parsed and normalised.
    fn parsed(&mut self, raw: &RawSample<'_>, sample: Sample);
}

/// What [`parse_with`] returns besides the samples it hands to the visitor.
#[derive(Debug, Default)]
pub struct Summary {
    /// Type, help and unit of every family described by a comment line.
    pub metadata: Vec<MetricMetadata>,
    /// Lines skipped because they could not be read.
    pub malformed: u64,
    /// Line number (1-based) and reason of the first malformed line.
    pub first_error: Option<(usize, &'static str)>,
}

/// A parsed exposition.
#[derive(Debug, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    /// Type, help and unit of every family described by a comment line.
    pub metadata: Vec<MetricMetadata>,
    /// Lines skipped because they could not be read.
    pub malformed: u64,
    /// Line number (1-based) and reason of the first malformed line.
    pub first_error: Option<(usize, &'static str)>,
}

/// A family's type as written in `# TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    Unknown,
}

impl Type {
    fn parse(s: &str) -> Option<Type> {
        Some(match s {
            "counter" => Type::Counter,
            "gauge" => Type::Gauge,
            "histogram" => Type::Histogram,
            "gaugehistogram" => Type::GaugeHistogram,
            "summary" => Type::Summary,
            "info" => Type::Info,
            "stateset" => Type::StateSet,
            "untyped" | "unknown" => Type::Unknown,
            _ => return None,
        })
    }

    /// Suffixes a sample name may add to the family name.
    fn suffixes(self) -> &'static [&'static str] {
        match self {
            Type::Counter => &["_total", "_created"],
            Type::Histogram => &["_bucket", "_sum", "_count", "_created"],
            Type::GaugeHistogram => &["_bucket", "_gsum", "_gcount"],
            Type::Summary => &["_sum", "_count", "_created"],
            Type::Info => &["_info"],
            Type::Gauge | Type::StateSet | Type::Unknown => &[],
        }
    }

    fn kind(self) -> MetricKind {
        match self {
            Type::Counter => MetricKind::Counter,
            Type::Gauge | Type::GaugeHistogram | Type::Info | Type::StateSet => MetricKind::Gauge,
            Type::Histogram => MetricKind::Histogram,
            Type::Summary => MetricKind::Summary,
            Type::Unknown => MetricKind::Unknown,
        }
    }
}

#[derive(Debug)]
struct Family {
    name: String,
    kind: Option<Type>,
    help: Option<String>,
    unit: Option<String>,
}

/// Parses `body` as `format`. Never fails: unreadable lines are counted.
pub fn parse(body: &[u8], format: Format) -> Exposition {
    struct Collect(Vec<Sample>);
    impl Visitor for Collect {
        fn known(&mut self, _: &RawSample<'_>) -> bool {
            false
        }
        fn parsed(&mut self, _: &RawSample<'_>, sample: Sample) {
            self.0.push(sample);
        }
    }
    let mut samples = Collect(Vec::new());
    let summary = parse_with(body, format, &mut samples);
    Exposition {
        samples: samples.0,
        metadata: summary.metadata,
        malformed: summary.malformed,
        first_error: summary.first_error,
    }
}

/// Parses `body` as `format` like [`parse`], handing each sample line to
/// `visitor`, which may skip the parsing of label sets it already knows.
pub fn parse_with<V: Visitor>(body: &[u8], format: Format, visitor: &mut V) -> Summary {
    let mut p = Parser {
        format,
        out: Summary::default(),
        families: Vec::new(),
        index: HashMap::new(),
        visitor,
    };
    let mut eof = false;
    for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if eof {
            if !raw.iter().all(u8::is_ascii_whitespace) {
                p.malformed(i + 1, "content after # EOF");
            }
            continue;
        }
        let Ok(line) = std::str::from_utf8(raw) else {
            p.malformed(i + 1, "not UTF-8");
            continue;
        };
        match p.line(line) {
            Ok(Line::Eof) => eof = true,
            Ok(Line::Other) => {}
            Err(why) => p.malformed(i + 1, why),
        }
    }
    if format == Format::OpenMetrics && !eof {
        p.malformed(body.split(|&b| b == b'\n').count(), "missing # EOF");
    }
    p.finish()
}

enum Line {
    Eof,
    Other,
}

type LineResult = Result<Line, &'static str>;

struct Parser<'v, V> {
    format: Format,
    out: Summary,
    families: Vec<Family>,
    index: HashMap<String, usize>,
    visitor: &'v mut V,
}

impl<V: Visitor> Parser<'_, V> {
    fn malformed(&mut self, line: usize, why: &'static str) {
        self.out.malformed += 1;
        self.out.first_error.get_or_insert((line, why));
    }

    fn line(&mut self, line: &str) -> LineResult {
        let trimmed = line.trim_start_matches([' ', '\t']);
        if trimmed.trim_end().is_empty() {
            return Ok(Line::Other);
        }
        match trimmed.strip_prefix('#') {
            Some(comment) => self.comment(comment),
            None => {
                self.sample_line(trimmed)?;
                Ok(Line::Other)
            }
        }
    }

    fn comment(&mut self, comment: &str) -> LineResult {
        if self.format == Format::OpenMetrics && comment.trim_end() == " EOF" {
            return Ok(Line::Eof);
        }
        let mut parts = comment
            .trim_start_matches([' ', '\t'])
            .splitn(2, [' ', '\t']);
        let keyword = parts.next().unwrap_or_default();
        if !matches!(keyword, "HELP" | "TYPE" | "UNIT") {
            return Ok(Line::Other); // a plain comment
        }
        let rest = parts
            .next()
            .unwrap_or_default()
            .trim_start_matches([' ', '\t']);
        let (name, text) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
        if !is_valid_metric_name(name) {
            return Err("invalid metric name in a comment line");
        }
        let format = self.format;
        let family = self.family(name);
        match keyword {
            "HELP" if family.help.is_some() => return Err("second HELP for a family"),
            "HELP" => family.help = Some(unescape_help(text, format)),
            "TYPE" if family.kind.is_some() => return Err("second TYPE for a family"),
            "TYPE" => family.kind = Some(Type::parse(text.trim()).ok_or("unknown TYPE")?),
            _ if family.unit.is_some() => return Err("second UNIT for a family"),
            _ => family.unit = Some(text.trim().to_string()),
        }
        Ok(Line::Other)
    }

    fn family(&mut self, name: &str) -> &mut Family {
        let i = *self.index.entry(name.to_string()).or_insert_with(|| {
            self.families.push(Family {
                name: name.to_string(),
                kind: None,
                help: None,
                unit: None,
            });
            self.families.len() - 1
        });
        &mut self.families[i]
    }

    /// The type of the family `name` belongs to, if one was declared.
    fn type_of(&self, name: &str) -> Option<Type> {
        let kind = |n: &str| self.index.get(n).and_then(|&i| self.families[i].kind);
        if let Some(t) = kind(name) {
            return Some(t);
        }
        for suffix in [
            "_total", "_created", "_bucket", "_sum", "_count", "_gsum", "_gcount", "_info",
        ] {
            if let Some(t) = name.strip_suffix(suffix).and_then(kind) {
                if t.suffixes().contains(&suffix) {
                    return Some(t);
                }
            }
        }
        None
    }

    fn sample_line(&mut self, line: &str) -> Result<(), &'static str> {
        let Ok(parts) = split(line, self.format) else {
            // The full parser names the problem as it always has.
            return Err(sample(line, self.format)
                .err()
                .unwrap_or("invalid sample line"));
        };
        let normalised = match self.type_of(parts.name) {
            Some(Type::Histogram) => Normalised::Le,
            Some(Type::Summary) => Normalised::Quantile,
            _ => Normalised::Nothing,
        };
        let raw = RawSample {
            series: parts.series,
            normalised,
            value: parts.value,
            timestamp_ms: parts.timestamp_ms,
        };
        if self.visitor.known(&raw) {
            return Ok(());
        }
        let mut labels = match parts.labels {
            Some(block) => line::labels(block)?,
            None => Vec::new(),
        };
        let normalise = match normalised {
            Normalised::Le => "le",
            Normalised::Quantile => "quantile",
            Normalised::Nothing => "",
        };
        if !normalise.is_empty() {
            for (name, value) in &mut labels {
                if name == normalise {
                    if let Ok(v) = value.parse::<f64>() {
                        *value = format_float(v);
                    }
                }
            }
        }
        let sample = Sample {
            name: parts.name.to_string(),
            labels,
            value: parts.value,
            timestamp_ms: parts.timestamp_ms,
        };
        self.visitor.parsed(&raw, sample);
        Ok(())
    }

    fn finish(mut self) -> Summary {
        let om = self.format == Format::OpenMetrics;
        self.out.metadata = (self.families.into_iter())
            .map(|f| {
                let kind = f.kind.unwrap_or(Type::Unknown);
                // Metadata is keyed by the series name users query, as
                // Vigil's own counters are: OpenMetrics `foo` -> `foo_total`.
                let name = match kind {
                    Type::Counter if om && !f.name.ends_with("_total") => {
                        format!("{}_total", f.name)
                    }
                    Type::Info if om && !f.name.ends_with("_info") => format!("{}_info", f.name),
                    _ => f.name,
                };
                MetricMetadata {
                    name,
                    kind: kind.kind(),
                    help: f.help.unwrap_or_default(),
                    unit: f.unit.unwrap_or_default(),
                }
            })
            .collect();
        self.out
    }
}

/// `\\` and `\n` (and `\"` in OpenMetrics) in a HELP text.
fn unescape_help(text: &str, format: Format) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if format == Format::OpenMetrics => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}
