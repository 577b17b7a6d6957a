//! What the query engine reads: series chosen by label matchers, with their
//! samples in a closed time range.
//!
//! Series are identified by their full label set including the metric name as
//! the `__name__` label ([`Labels`], sorted by label name), as in Prometheus.

use std::collections::BTreeSet;

use async_trait::async_trait;
use promql_parser::label::Matcher;
use thiserror::Error;
use vigil_common::Label;

/// The label name under which the metric name appears in a [`Labels`] set.
pub const METRIC_NAME: &str = "__name__";

/// A series' identity: every label including `__name__`, sorted by name,
/// names unique.
pub type Labels = Vec<Label>;

/// A label set shared between the series index, the head and the query
/// engine: selecting a series costs a reference count, not a copy of every
/// label (which was a tenth of a rule evaluation round).
pub type SharedLabels = std::sync::Arc<Labels>;

/// One series with its samples: `(timestamp ms, value)` sorted by time,
/// at most one sample per timestamp. Stale markers (Prometheus' special NaN)
/// are passed through as NaN values with [`STALE_NAN_BITS`].
#[derive(Debug, Clone, PartialEq)]
pub struct RawSeries {
    pub labels: SharedLabels,
    pub samples: Vec<(i64, f64)>,
}

/// Prometheus' staleness marker: a NaN with this exact bit pattern.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Whether `v` is Prometheus' staleness marker.
pub fn is_stale_marker(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// What the engine knows about why it selects, so a source may choose a
/// cheaper resolution (rollups) or stop early. A source may ignore them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SelectHints {
    /// Evaluation step of a range query (0 for an instant query), in ms.
    pub step_ms: i64,
    /// Range of the selector (`x[5m]` -> 300000; 0 for an instant selector).
    pub range_ms: i64,
    /// The function the selector feeds, if any (`rate`, `avg_over_time`, ...).
    pub func: Option<String>,
    /// Give up with [`SourceError::TooManySeries`] beyond this many series.
    pub max_series: usize,
    /// Give up with [`SourceError::TooManySamples`] beyond this many samples
    /// in total.
    pub max_samples: usize,
    /// Only the last sample of each series in the range is used (an instant
    /// selector evaluated at one timestamp); a source may return just that.
    pub latest_only: bool,
    /// Only the last sample of each series in the range that is not a
    /// staleness marker is used (`last_over_time` / `present_over_time` at
    /// one timestamp: range functions drop markers); a source may return
    /// just that, and leave out a series that has none.
    pub last_real_only: bool,
}

/// How much of each selected series' range a selection needs
/// ([`SelectHints::need`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Every sample.
    All,
    /// The last sample, staleness marker or not.
    Last,
    /// The last sample that is not a staleness marker.
    LastReal,
}

impl SelectHints {
    pub fn need(&self) -> Need {
        if self.last_real_only {
            Need::LastReal
        } else if self.latest_only {
            Need::Last
        } else {
            Need::All
        }
    }
}

/// The samples of `samples` (sorted by time) that `need` asks for.
pub fn keep_needed(samples: &mut Vec<(i64, f64)>, need: Need) {
    let keep_from = match need {
        Need::All => return,
        Need::Last => samples.len().saturating_sub(1),
        Need::LastReal => match samples.iter().rposition(|&(_, v)| !is_stale_marker(v)) {
            Some(i) => i,
            None => {
                samples.clear();
                return;
            }
        },
    };
    samples.drain(..keep_from);
    samples.truncate(1);
}

/// Why a source could not answer.
#[derive(Debug, Error)]
pub enum SourceError {
    /// The selection matches more series than the limit allows.
    #[error("query selects more than {limit} series; add label matchers to narrow it")]
    TooManySeries { limit: usize },
    /// The selection holds more samples than the limit allows.
    #[error("query would load more than {limit} samples; shorten the range or add label matchers")]
    TooManySamples { limit: usize },
    /// The storage failed (not the caller's fault).
    #[error("storage: {0}")]
    Storage(String),
}

/// Where series come from.
#[async_trait]
pub trait Source: Send + Sync {
    /// Series matching every matcher (Prometheus semantics: a matcher on a
    /// missing label sees the empty string), with their samples in
    /// `[start_ms, end_ms]`. Series with no sample in the range are left out.
    async fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        hints: &SelectHints,
    ) -> Result<Vec<RawSeries>, SourceError>;

    /// Label sets of the series matching any of `matcher_sets` (all series if
    /// empty) that have samples in `[start_ms, end_ms]`.
    async fn series(
        &self,
        matcher_sets: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
        limit: usize,
    ) -> Result<Vec<Labels>, SourceError>;

    /// Label names (sorted, unique) of those series.
    async fn label_names(
        &self,
        matcher_sets: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, SourceError> {
        let mut names = BTreeSet::new();
        for s in self
            .series(matcher_sets, start_ms, end_ms, usize::MAX)
            .await?
        {
            names.extend(s.into_iter().map(|l| l.name));
        }
        Ok(names.into_iter().collect())
    }

    /// Values (sorted, unique, non-empty) of label `name` on those series.
    async fn label_values(
        &self,
        name: &str,
        matcher_sets: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, SourceError> {
        let mut values = BTreeSet::new();
        for s in self
            .series(matcher_sets, start_ms, end_ms, usize::MAX)
            .await?
        {
            values.extend(
                s.into_iter()
                    .filter(|l| l.name == name && !l.value.is_empty())
                    .map(|l| l.value),
            );
        }
        Ok(values.into_iter().collect())
    }
}

/// Whether `labels` satisfies every matcher; a missing label reads as "".
pub fn matches(labels: &[Label], matchers: &[Matcher]) -> bool {
    matchers.iter().all(|m| {
        let value = labels
            .iter()
            .find(|l| l.name == m.name)
            .map_or("", |l| l.value.as_str());
        m.is_match(value)
    })
}

/// An in-memory source: the reference the engine's tests load data into.
#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    series: Vec<RawSeries>,
}

impl MemorySource {
    pub fn new() -> Self {
        MemorySource::default()
    }

    /// Adds a sample, creating its series; `labels` must include `__name__`.
    pub fn push(&mut self, labels: &[Label], ts_ms: i64, value: f64) {
        let mut labels = labels.to_vec();
        labels.sort();
        match self.series.iter_mut().find(|s| *s.labels == labels) {
            Some(s) => {
                match s.samples.binary_search_by_key(&ts_ms, |&(t, _)| t) {
                    Ok(i) => s.samples[i].1 = value,
                    Err(i) => s.samples.insert(i, (ts_ms, value)),
                };
            }
            None => self.series.push(RawSeries {
                labels: labels.into(),
                samples: vec![(ts_ms, value)],
            }),
        }
    }

    /// Drops every series.
    pub fn clear(&mut self) {
        self.series.clear();
    }
}

#[async_trait]
impl Source for MemorySource {
    async fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        hints: &SelectHints,
    ) -> Result<Vec<RawSeries>, SourceError> {
        let mut out = Vec::new();
        let mut total = 0usize;
        for s in self.series.iter().filter(|s| matches(&s.labels, matchers)) {
            let mut samples: Vec<(i64, f64)> = s
                .samples
                .iter()
                .filter(|(t, _)| (start_ms..=end_ms).contains(t))
                .copied()
                .collect();
            // Honoured (as the head does), so every engine test checks that
            // a selector marked latest-only needs nothing more.
            keep_needed(&mut samples, hints.need());
            if samples.is_empty() {
                continue;
            }
            total += samples.len();
            if hints.max_series > 0 && out.len() >= hints.max_series {
                return Err(SourceError::TooManySeries {
                    limit: hints.max_series,
                });
            }
            if hints.max_samples > 0 && total > hints.max_samples {
                return Err(SourceError::TooManySamples {
                    limit: hints.max_samples,
                });
            }
            out.push(RawSeries {
                labels: s.labels.clone(),
                samples,
            });
        }
        Ok(out)
    }

    async fn series(
        &self,
        matcher_sets: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
        limit: usize,
    ) -> Result<Vec<Labels>, SourceError> {
        let mut out: Vec<Labels> = self
            .series
            .iter()
            .filter(|s| {
                matcher_sets.is_empty() || matcher_sets.iter().any(|m| matches(&s.labels, m))
            })
            .filter(|s| {
                s.samples
                    .iter()
                    .any(|(t, _)| (start_ms..=end_ms).contains(t))
            })
            .map(|s| Labels::clone(&s.labels))
            .collect();
        out.sort();
        out.truncate(limit);
        Ok(out)
    }
}
