//! The data model: Prometheus' (metric name, sorted label set, timestamp, value).
//!
//! A batch carries [`Series`]: one name + label set with its points, so labels
//! are sent once per series per batch rather than once per sample.

use serde::{Deserialize, Serialize};

/// One label pair. Label sets are kept sorted by name with unique names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Label {
    pub name: String,
    pub value: String,
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// One sample of a series: a timestamp in milliseconds since the epoch and a value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub timestamp_ms: i64,
    pub value: f64,
}

/// A time series in a batch: metric name, label set (sorted by name) and points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub name: String,
    pub labels: Vec<Label>,
    pub points: Vec<Point>,
}

impl Series {
    /// Builds a series, sorting `labels` by name.
    pub fn new(name: impl Into<String>, mut labels: Vec<Label>, points: Vec<Point>) -> Self {
        labels.sort();
        Series {
            name: name.into(),
            labels,
            points,
        }
    }

    /// Checks the name and labels against Prometheus' rules; returns what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !is_valid_metric_name(&self.name) {
            return Err(format!("invalid metric name {:?}", self.name));
        }
        for (i, label) in self.labels.iter().enumerate() {
            if !is_valid_label_name(&label.name) || label.name == "__name__" {
                return Err(format!(
                    "series {}: invalid label name {:?}",
                    self.name, label.name
                ));
            }
            if i > 0 && self.labels[i - 1].name >= label.name {
                return Err(format!(
                    "series {}: labels not sorted or duplicated at {:?}",
                    self.name, label.name
                ));
            }
        }
        Ok(())
    }

    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.value.as_str())
    }
}

/// Prometheus metric type, carried as metadata so queries and exports can use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Unknown,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
            MetricKind::Summary => "summary",
            MetricKind::Unknown => "unknown",
        }
    }
}

/// Type, help and unit of a metric family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricMetadata {
    pub name: String,
    pub kind: MetricKind,
    pub help: String,
    pub unit: String,
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`, as Prometheus defines metric names.
///
/// Bytes rather than chars: every allowed character is ASCII, and any byte of
/// a multi-byte character fails the test anyway. (This runs for every series
/// the agent sends; decoding UTF-8 made it a visible share of its CPU time.)
pub fn is_valid_metric_name(name: &str) -> bool {
    match name.as_bytes() {
        [first, rest @ ..] => {
            (first.is_ascii_alphabetic() || *first == b'_' || *first == b':')
                && rest
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b':')
        }
        [] => false,
    }
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, as Prometheus defines label names.
pub fn is_valid_label_name(name: &str) -> bool {
    match name.as_bytes() {
        [first, rest @ ..] => {
            (first.is_ascii_alphabetic() || *first == b'_')
                && rest.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        }
        [] => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_rules() {
        assert!(is_valid_metric_name("system_cpu_usage_ratio"));
        assert!(is_valid_metric_name("job:rate5m"));
        assert!(!is_valid_metric_name("9lives"));
        assert!(!is_valid_metric_name(""));
        assert!(!is_valid_metric_name("a-b"));
        assert!(is_valid_label_name("_host"));
        assert!(!is_valid_label_name("a:b"));
        assert!(!is_valid_label_name(""));
        assert!(!is_valid_metric_name("é"));
        assert!(!is_valid_metric_name("aé"));
        assert!(!is_valid_label_name("_é"));
    }

    #[test]
    fn new_sorts_labels_and_validate_rejects_duplicates() {
        let s = Series::new(
            "m",
            vec![Label::new("z", "1"), Label::new("a", "2")],
            vec![],
        );
        assert_eq!(s.labels[0].name, "a");
        assert!(s.validate().is_ok());
        assert_eq!(s.label("z"), Some("1"));

        let dup = Series {
            name: "m".into(),
            labels: vec![Label::new("a", "1"), Label::new("a", "2")],
            points: vec![],
        };
        assert!(dup.validate().is_err());
        let reserved = Series::new("m", vec![Label::new("__name__", "x")], vec![]);
        assert!(reserved.validate().is_err());
        let bad_name = Series::new("bad-name", vec![], vec![]);
        assert!(bad_name.validate().is_err());
    }
}
