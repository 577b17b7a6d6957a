//! The evaluator: every node is evaluated over a whole grid of timestamps at
//! once (one for an instant query, every step for a range query), series by
//! series, so a range query walks each series' samples once with a moving
//! window instead of re-evaluating the tree per step.

use std::borrow::Cow;
use std::cell::Cell;
use std::time::{Duration, Instant};

use promql_parser::parser::{Expr, VectorSelector};
use vigil_common::Label;

use super::QueryError;
use super::plan::{
    DEFAULT_SUBQUERY_STEP_MS, Fetched, at_ms, dur_ms, key, offset_ms, too_many_samples,
};
use crate::query::source::{Labels, METRIC_NAME, RawSeries, is_stale_marker};

/// The timestamps a node is evaluated at: `start + i * step` for `i < n`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grid {
    pub start: i64,
    pub step: i64,
    pub n: usize,
}

impl Grid {
    pub fn ts(&self, i: usize) -> i64 {
        // Saturating: timestamps come from the request.
        self.start.saturating_add(
            self.step
                .saturating_mul(i64::try_from(i).unwrap_or(i64::MAX)),
        )
    }
}

/// A series of an instant-vector node: a value (or none) per grid step.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub labels: Labels,
    pub values: Vec<Option<f64>>,
}

/// The value of a node over a grid.
#[derive(Debug, Clone)]
pub(crate) enum Val {
    Scalar(Vec<f64>),
    String(String),
    Vector(Vec<Series>),
    /// Raw samples; only a range selector or subquery evaluated at one
    /// timestamp (the result of an instant query) produces this.
    Matrix(Vec<RawSeries>),
}

/// Range-vector argument of a function: per series, its samples (stale
/// markers removed), and how each step's window is placed.
pub(crate) struct RangeArg<'a> {
    /// Borrowed from the fetched data unless stale markers had to go (or
    /// the samples come from a subquery).
    pub series: Vec<Cow<'a, RawSeries>>,
    pub at: Option<i64>,
    pub offset: i64,
    pub range: i64,
}

impl RangeArg<'_> {
    /// Calls `f(step, window, window_start, window_end)` for every step of
    /// `grid`, with the samples in the left-open window `(end - range, end]`,
    /// walking `samples` once.
    pub fn windows(
        &self,
        samples: &[(i64, f64)],
        grid: &Grid,
        mut f: impl FnMut(usize, &[(i64, f64)], i64, i64),
    ) {
        let (mut lo, mut hi) = (0usize, 0usize);
        for i in 0..grid.n {
            let end = self
                .at
                .unwrap_or_else(|| grid.ts(i))
                .saturating_sub(self.offset);
            let start = end.saturating_sub(self.range);
            while hi < samples.len() && samples[hi].0 <= end {
                hi += 1;
            }
            while lo < hi && samples[lo].0 <= start {
                lo += 1;
            }
            f(i, &samples[lo..hi.max(lo)], start, end);
        }
    }
}

/// Evaluates nodes against fetched data.
pub(crate) struct Evaluator<'a> {
    pub data: &'a Fetched,
    pub query_start: i64,
    pub query_end: i64,
    pub lookback_ms: i64,
    pub deadline: Instant,
    pub timeout: Duration,
    pub max_samples: usize,
    pub samples: Cell<usize>,
    /// Calls of [`Evaluator::check_deadline`] so far: the clock is read on
    /// every [`DEADLINE_EVERY`]th (reading it on each was 3% of a rule
    /// evaluation round).
    pub deadline_checks: Cell<u32>,
}

/// How many deadline checks share one reading of the clock.
const DEADLINE_EVERY: u32 = 16;

impl<'a> Evaluator<'a> {
    /// Fails once the query's wall-clock budget is spent.
    pub fn check_deadline(&self) -> Result<(), QueryError> {
        let n = self.deadline_checks.get();
        self.deadline_checks.set(n.wrapping_add(1));
        if n % DEADLINE_EVERY == 0 && Instant::now() > self.deadline {
            return Err(QueryError::Timeout(self.timeout));
        }
        Ok(())
    }

    /// Counts `n` materialised samples against the query's limit. A series
    /// counts a slot per step, present or not, so the budget bounds memory.
    pub fn count(&self, n: usize) -> Result<(), QueryError> {
        let total = self.samples.get().saturating_add(n);
        self.samples.set(total);
        if total > self.max_samples {
            return Err(QueryError::Limit(too_many_samples()));
        }
        Ok(())
    }

    /// Counts a finished series' samples and keeps it if it has any.
    pub fn push_series(
        &self,
        out: &mut Vec<Series>,
        labels: Labels,
        values: Vec<Option<f64>>,
    ) -> Result<(), QueryError> {
        if values.iter().any(Option::is_some) {
            self.count(values.len())?;
            out.push(Series { labels, values });
        }
        Ok(())
    }

    pub fn eval(&self, expr: &Expr, grid: &Grid) -> Result<Val, QueryError> {
        self.check_deadline()?;
        match expr {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(vec![n.val; grid.n])),
            Expr::StringLiteral(s) => Ok(Val::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, grid),
            Expr::VectorSelector(vs) => self.vector_selector(vs, grid, false).map(Val::Vector),
            Expr::MatrixSelector(_) | Expr::Subquery(_) => {
                if grid.n != 1 {
                    return Err(QueryError::BadData(
                        "a range vector can only be evaluated at one timestamp".into(),
                    ));
                }
                let arg = self.range_arg(expr, grid)?;
                let mut out = Vec::new();
                for s in &arg.series {
                    let mut samples = Vec::new();
                    arg.windows(&s.samples, grid, |_, w, _, _| samples.extend_from_slice(w));
                    if !samples.is_empty() {
                        self.count(samples.len())?;
                        out.push(RawSeries {
                            labels: s.labels.clone(),
                            samples,
                        });
                    }
                }
                Ok(Val::Matrix(out))
            }
            Expr::Unary(u) => match self.eval(&u.expr, grid)? {
                Val::Scalar(v) => Ok(Val::Scalar(v.into_iter().map(|x| -x).collect())),
                Val::Vector(series) => Ok(Val::Vector(merge_same_labels(
                    series
                        .into_iter()
                        .map(|s| Series {
                            labels: drop_name(s.labels),
                            values: s.values.into_iter().map(|v| v.map(|x| -x)).collect(),
                        })
                        .collect(),
                )?)),
                _ => Err(QueryError::BadData(
                    "unary minus is only allowed on scalars and instant vectors".into(),
                )),
            },
            Expr::Binary(b) => self.binary(b, grid),
            Expr::Aggregate(a) => self.aggregate(a, grid),
            Expr::Call(c) => self.call(c, grid),
            Expr::Extension(_) => Err(QueryError::BadData(
                "extension expressions are not supported".into(),
            )),
        }
    }

    /// Evaluates `expr`, which must be an instant vector.
    pub fn eval_vector(&self, expr: &Expr, grid: &Grid) -> Result<Vec<Series>, QueryError> {
        match self.eval(expr, grid)? {
            Val::Vector(v) => Ok(v),
            other => Err(type_error("instant vector", &other)),
        }
    }

    /// Evaluates `expr`, which must be a scalar.
    pub fn eval_scalar(&self, expr: &Expr, grid: &Grid) -> Result<Vec<f64>, QueryError> {
        match self.eval(expr, grid)? {
            Val::Scalar(v) => Ok(v),
            other => Err(type_error("scalar", &other)),
        }
    }

    /// Evaluates `expr`, which must be a string.
    pub fn eval_string(&self, expr: &Expr, grid: &Grid) -> Result<String, QueryError> {
        match self.eval(expr, grid)? {
            Val::String(s) => Ok(s),
            other => Err(type_error("string", &other)),
        }
    }

    /// An instant selector: at each step the newest sample within the
    /// lookback delta, unless that sample is a stale marker. With
    /// `timestamps`, the value is the sample's timestamp in seconds (for
    /// `timestamp()`).
    pub fn vector_selector(
        &self,
        vs: &VectorSelector,
        grid: &Grid,
        timestamps: bool,
    ) -> Result<Vec<Series>, QueryError> {
        let data = self.selected(vs)?;
        let off = offset_ms(&vs.offset);
        let at = at_ms(&vs.at, self.query_start, self.query_end);
        let mut out = Vec::new();
        for s in data {
            self.check_deadline()?;
            let mut values = vec![None; grid.n];
            let mut hi = 0usize;
            for (i, slot) in values.iter_mut().enumerate() {
                let t = at.unwrap_or_else(|| grid.ts(i)).saturating_sub(off);
                while hi < s.samples.len() && s.samples[hi].0 <= t {
                    hi += 1;
                }
                if hi > 0 {
                    let (st, v) = s.samples[hi - 1];
                    if st > t.saturating_sub(self.lookback_ms) && !is_stale_marker(v) {
                        *slot = Some(if timestamps { st as f64 / 1000.0 } else { v });
                    }
                }
            }
            self.push_series(&mut out, Labels::clone(&s.labels), values)?;
        }
        Ok(out)
    }

    fn selected(&self, vs: &VectorSelector) -> Result<&'a [RawSeries], QueryError> {
        self.data
            .get(key(vs))
            .ok_or_else(|| QueryError::Execution("internal: selector was not fetched".into()))
    }

    /// Resolves a range-vector argument (range selector or subquery).
    pub fn range_arg(&self, expr: &Expr, grid: &Grid) -> Result<RangeArg<'a>, QueryError> {
        match expr {
            Expr::Paren(p) => self.range_arg(&p.expr, grid),
            Expr::MatrixSelector(ms) => {
                let series = self
                    .selected(&ms.vs)?
                    .iter()
                    .map(|s| {
                        if s.samples.iter().any(|(_, v)| is_stale_marker(*v)) {
                            Cow::Owned(RawSeries {
                                labels: s.labels.clone(),
                                samples: s
                                    .samples
                                    .iter()
                                    .filter(|(_, v)| !is_stale_marker(*v))
                                    .copied()
                                    .collect(),
                            })
                        } else {
                            Cow::Borrowed(s)
                        }
                    })
                    .collect();
                Ok(RangeArg {
                    series,
                    at: at_ms(&ms.vs.at, self.query_start, self.query_end),
                    offset: offset_ms(&ms.vs.offset),
                    range: dur_ms(&ms.range),
                })
            }
            Expr::Subquery(sq) => {
                let at = at_ms(&sq.at, self.query_start, self.query_end);
                let offset = offset_ms(&sq.offset);
                let range = dur_ms(&sq.range);
                let step = sq
                    .step
                    .as_ref()
                    .map(dur_ms)
                    .filter(|s| *s > 0)
                    .unwrap_or(DEFAULT_SUBQUERY_STEP_MS);
                let (first, last) = match at {
                    Some(t) => (t, t),
                    None => (grid.ts(0), grid.ts(grid.n.saturating_sub(1))),
                };
                // Inner steps are multiples of the step, after the window's
                // (left-open) start.
                let lo = first.saturating_sub(offset).saturating_sub(range);
                let start = lo
                    .div_euclid(step)
                    .saturating_mul(step)
                    .saturating_add(step);
                let end = last.saturating_sub(offset);
                let n = if end < start {
                    0
                } else {
                    usize::try_from((i128::from(end) - i128::from(start)) / i128::from(step) + 1)
                        .unwrap_or(usize::MAX)
                };
                // Every series of the body holds a slot per step: even one
                // must fit the sample budget.
                if n > self.max_samples {
                    return Err(QueryError::Limit(too_many_samples()));
                }
                let inner = Grid { start, step, n };
                let series = if n == 0 {
                    Vec::new()
                } else {
                    self.eval_vector(&sq.expr, &inner)?
                        .into_iter()
                        .map(|s| {
                            Cow::Owned(RawSeries {
                                samples: s
                                    .values
                                    .iter()
                                    .enumerate()
                                    .filter_map(|(i, v)| v.map(|v| (inner.ts(i), v)))
                                    .collect(),
                                labels: s.labels.into(),
                            })
                        })
                        .collect()
                };
                Ok(RangeArg {
                    series,
                    at,
                    offset,
                    range,
                })
            }
            _ => Err(QueryError::BadData(
                "expected a range vector (a range selector or a subquery)".into(),
            )),
        }
    }
}

/// The error for an operand of the wrong type.
pub(crate) fn type_error(expected: &str, got: &Val) -> QueryError {
    let got = match got {
        Val::Scalar(_) => "scalar",
        Val::String(_) => "string",
        Val::Vector(_) => "instant vector",
        Val::Matrix(_) => "range vector",
    };
    QueryError::BadData(format!("expected {expected}, got {got}"))
}

/// `labels` without the metric name.
pub(crate) fn drop_name(mut labels: Labels) -> Labels {
    labels.retain(|l| l.name != METRIC_NAME);
    labels
}

/// Sets (or, with an empty value, removes) a label, keeping the set sorted.
pub(crate) fn set_label(labels: &mut Labels, name: &str, value: &str) {
    match labels.binary_search_by(|l| l.name.as_str().cmp(name)) {
        Ok(i) if value.is_empty() => {
            labels.remove(i);
        }
        Ok(i) => labels[i].value = value.to_string(),
        Err(_) if value.is_empty() => {}
        Err(i) => labels.insert(i, Label::new(name, value)),
    }
}

/// The value of label `name`, "" when missing.
pub(crate) fn label_value<'l>(labels: &'l [Label], name: &str) -> &'l str {
    labels
        .iter()
        .find(|l| l.name == name)
        .map_or("", |l| l.value.as_str())
}

/// Prometheus' text form of a label set: `{a="1", b="2"}`.
pub(crate) fn labels_string(labels: &[Label]) -> String {
    let inner: Vec<String> = labels
        .iter()
        .map(|l| format!("{}={:?}", l.name, l.value))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

/// Merges series with identical label sets (as `or` or a label change can
/// produce); two values at the same step are Prometheus' "vector cannot
/// contain metrics with the same labelset" error.
pub(crate) fn merge_same_labels(mut series: Vec<Series>) -> Result<Vec<Series>, QueryError> {
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut out: Vec<Series> = Vec::with_capacity(series.len());
    for s in series {
        match out.last_mut() {
            Some(last) if last.labels == s.labels => {
                for (a, b) in last.values.iter_mut().zip(s.values) {
                    if b.is_some() {
                        if a.is_some() {
                            return Err(QueryError::Execution(
                                "vector cannot contain metrics with the same labelset".into(),
                            ));
                        }
                        *a = b;
                    }
                }
            }
            _ => out.push(s),
        }
    }
    Ok(out)
}
