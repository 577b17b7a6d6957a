//! Planning and fetching: which selector needs which samples.
//!
//! The expression is walked once with the range of evaluation timestamps each
//! node will see (an instant query sees one timestamp, a range query its
//! steps, a subquery's body the subquery's own steps). Each selector then
//! needs its samples in `(first - offset - window, last - offset]`, where the
//! window is the lookback delta for an instant selector and the range for a
//! range selector (Prometheus 3 windows are left-open). `@` pins the
//! timestamp. Every selector is fetched once; evaluation then runs in memory.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{AtModifier, Expr, Offset, VectorSelector};

use super::QueryError;
use crate::query::source::{Labels, METRIC_NAME, RawSeries, SelectHints, Source};

/// Default step of a subquery without one (Prometheus' default global
/// evaluation interval).
pub(crate) const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

/// Key of a selector node: its address inside the (pinned) parsed expression.
pub(crate) fn key(vs: &VectorSelector) -> usize {
    vs as *const VectorSelector as usize
}

/// Milliseconds of a duration (saturating).
pub(crate) fn dur_ms(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Signed milliseconds of an `offset` (0 when absent).
pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => dur_ms(d),
        Some(Offset::Neg(d)) => -dur_ms(d),
    }
}

/// Milliseconds since the epoch of a `SystemTime` (negative before 1970).
pub(crate) fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => dur_ms(&d),
        Err(e) => -dur_ms(&e.duration()),
    }
}

/// The timestamp an `@` modifier pins evaluation to, if any.
pub(crate) fn at_ms(at: &Option<AtModifier>, query_start: i64, query_end: i64) -> Option<i64> {
    match at {
        None => None,
        Some(AtModifier::Start) => Some(query_start),
        Some(AtModifier::End) => Some(query_end),
        Some(AtModifier::At(t)) => Some(system_time_ms(t)),
    }
}

/// The matcher sets of a selector (one set, or several for `{a="1" or b="2"}`),
/// each including the metric name matcher.
pub(crate) fn matcher_sets(vs: &VectorSelector) -> Vec<Vec<Matcher>> {
    let name_matcher = |set: &mut Vec<Matcher>| {
        if let Some(name) = &vs.name {
            if !set.iter().any(|m| m.name == METRIC_NAME) {
                set.push(Matcher::new(MatchOp::Equal, METRIC_NAME, name));
            }
        }
    };
    if vs.matchers.or_matchers.is_empty() {
        let mut set = vs.matchers.matchers.clone();
        name_matcher(&mut set);
        vec![set]
    } else {
        vs.matchers
            .or_matchers
            .iter()
            .map(|s| {
                let mut set = s.clone();
                name_matcher(&mut set);
                set
            })
            .collect()
    }
}

/// Deepest expression the engine evaluates: evaluation recurses per level,
/// and no real query comes close.
pub(crate) const MAX_DEPTH: usize = 200;

/// Nesting depth of `expr`, walked with an explicit stack (so a hostile
/// query cannot overflow ours while being measured).
pub(crate) fn depth(expr: &Expr) -> usize {
    let mut max = 0;
    let mut stack = vec![(expr, 1usize)];
    while let Some((e, d)) = stack.pop() {
        max = max.max(d);
        match e {
            Expr::Aggregate(a) => {
                stack.push((&a.expr, d + 1));
                if let Some(p) = &a.param {
                    stack.push((p, d + 1));
                }
            }
            Expr::Unary(u) => stack.push((&u.expr, d + 1)),
            Expr::Binary(b) => {
                stack.push((&b.lhs, d + 1));
                stack.push((&b.rhs, d + 1));
            }
            Expr::Paren(p) => stack.push((&p.expr, d + 1)),
            Expr::Subquery(s) => stack.push((&s.expr, d + 1)),
            Expr::Call(c) => stack.extend(c.args.args.iter().map(|a| (a.as_ref(), d + 1))),
            _ => {}
        }
    }
    max
}

/// One selector's fetch: its closed ms range and hints.
#[derive(Debug)]
pub(crate) struct Fetch {
    pub sets: Vec<Vec<Matcher>>,
    pub start: i64,
    pub end: i64,
    pub range_ms: i64,
    pub func: Option<String>,
    /// Step the selector is evaluated at (0 for one timestamp).
    pub step_ms: i64,
    /// Whether the range was widened to cover several uses of the selector
    /// (another offset or `@`), so more than its last sample is needed.
    pub widened: bool,
}

impl Fetch {
    /// Whether the selector is read at one timestamp only, as an instant
    /// vector: only each series' last sample in the range matters.
    fn latest_only(&self) -> bool {
        self.step_ms == 0 && self.range_ms == 0 && !self.widened
    }

    /// Whether the selector is a range read at one timestamp by a function
    /// that uses only its last sample (`last_over_time`) or whether it has
    /// one (`present_over_time`): only each series' last sample that is not
    /// a staleness marker matters. An hour's `last_over_time` over a host
    /// fleet then reads one sample per series, not the hour.
    fn last_real_only(&self) -> bool {
        self.step_ms == 0
            && self.range_ms > 0
            && !self.widened
            && matches!(
                self.func.as_deref(),
                Some("last_over_time" | "present_over_time")
            )
    }
}

/// What the walk knows about the whole query (`step_ms` is that of the
/// innermost enclosing subquery, if any).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlanCtx {
    pub query_start: i64,
    pub query_end: i64,
    pub step_ms: i64,
    pub lookback_ms: i64,
}

/// Collects the fetch of every selector under `expr`, evaluated at
/// timestamps in `[min, max]`.
pub(crate) fn plan(
    expr: &Expr,
    min: i64,
    max: i64,
    func: Option<&str>,
    ctx: &PlanCtx,
    out: &mut HashMap<usize, Fetch>,
) {
    match expr {
        Expr::VectorSelector(vs) => add(vs, min, max, ctx.lookback_ms, 0, func, ctx, out),
        Expr::MatrixSelector(ms) => {
            let range = dur_ms(&ms.range);
            add(&ms.vs, min, max, range, range, func, ctx, out)
        }
        Expr::Subquery(sq) => {
            let off = offset_ms(&sq.offset);
            let (lo, hi) = match at_ms(&sq.at, ctx.query_start, ctx.query_end) {
                Some(t) => (t, t),
                None => (min, max),
            };
            let range = dur_ms(&sq.range);
            let inner = PlanCtx {
                step_ms: sq
                    .step
                    .as_ref()
                    .map(dur_ms)
                    .filter(|s| *s > 0)
                    .unwrap_or(DEFAULT_SUBQUERY_STEP_MS),
                ..*ctx
            };
            plan(
                &sq.expr,
                lo.saturating_sub(off).saturating_sub(range),
                hi.saturating_sub(off),
                None,
                &inner,
                out,
            );
        }
        Expr::Aggregate(a) => {
            plan(&a.expr, min, max, None, ctx, out);
            if let Some(p) = &a.param {
                plan(p, min, max, None, ctx, out);
            }
        }
        Expr::Unary(u) => plan(&u.expr, min, max, None, ctx, out),
        Expr::Binary(b) => {
            plan(&b.lhs, min, max, None, ctx, out);
            plan(&b.rhs, min, max, None, ctx, out);
        }
        Expr::Paren(p) => plan(&p.expr, min, max, func, ctx, out),
        Expr::Call(c) => {
            for a in &c.args.args {
                plan(a, min, max, Some(c.func.name), ctx, out);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

#[allow(clippy::too_many_arguments)]
fn add(
    vs: &VectorSelector,
    min: i64,
    max: i64,
    window: i64,
    range_ms: i64,
    func: Option<&str>,
    ctx: &PlanCtx,
    out: &mut HashMap<usize, Fetch>,
) {
    let off = offset_ms(&vs.offset);
    let (lo, hi) = match at_ms(&vs.at, ctx.query_start, ctx.query_end) {
        Some(t) => (t, t),
        None => (min, max),
    };
    // Left-open window: the first usable sample is after `lo - off - window`.
    let start = lo
        .saturating_sub(off)
        .saturating_sub(window)
        .saturating_add(1);
    let end = hi.saturating_sub(off);
    let f = out.entry(key(vs)).or_insert_with(|| Fetch {
        sets: matcher_sets(vs),
        start,
        end,
        range_ms,
        func: func.map(str::to_string),
        step_ms: ctx.step_ms,
        widened: false,
    });
    f.widened |= f.start != start || f.end != end;
    f.start = f.start.min(start);
    f.end = f.end.max(end);
}

/// The finer of two steps, 0 meaning "one timestamp".
fn finer(a: i64, b: i64) -> i64 {
    match (a, b) {
        (0, x) | (x, 0) => x,
        (a, b) => a.min(b),
    }
}

/// The fetched series of every selector node. Selectors that are written
/// the same way (same matchers, range and function) share one fetch.
#[derive(Debug, Default)]
pub(crate) struct Fetched {
    slots: Vec<Vec<RawSeries>>,
    index: HashMap<usize, usize>,
}

impl Fetched {
    /// Samples fetched in total (what evaluating over them costs, roughly).
    pub(crate) fn samples(&self) -> usize {
        self.slots.iter().flatten().map(|s| s.samples.len()).sum()
    }

    /// The series of the selector node with [`key`] `k`.
    pub fn get(&self, k: usize) -> Option<&[RawSeries]> {
        self.index.get(&k).map(|&i| self.slots[i].as_slice())
    }
}

/// Fetches every planned selector from `source`, once per distinct
/// selector. Series matched by several `or` sets are kept once.
pub(crate) async fn fetch(
    source: &dyn Source,
    plan: HashMap<usize, Fetch>,
    max_series: usize,
    max_samples: usize,
) -> Result<Fetched, QueryError> {
    // Merge the nodes of identical selectors, widening the time range.
    let mut merged: Vec<(Fetch, Vec<usize>)> = Vec::new();
    let mut by_text: HashMap<String, usize> = HashMap::new();
    for (k, f) in plan {
        let text = format!("{:?}|{}|{:?}", set_texts(&f.sets), f.range_ms, f.func);
        match by_text.get(&text) {
            Some(&i) => {
                let (m, keys) = &mut merged[i];
                m.widened |= f.widened || m.start != f.start || m.end != f.end;
                m.start = m.start.min(f.start);
                m.end = m.end.max(f.end);
                m.step_ms = finer(m.step_ms, f.step_ms);
                keys.push(k);
            }
            None => {
                by_text.insert(text, merged.len());
                merged.push((f, vec![k]));
            }
        }
    }
    let mut out = Fetched::default();
    let mut loaded = 0usize;
    for (f, keys) in merged {
        let hints = SelectHints {
            step_ms: f.step_ms,
            range_ms: f.range_ms,
            func: f.func.clone(),
            max_series,
            max_samples: max_samples.saturating_sub(loaded).max(1),
            latest_only: f.latest_only(),
            last_real_only: f.last_real_only(),
        };
        let mut series: Vec<RawSeries> = Vec::new();
        let mut seen: HashSet<Vec<vigil_common::Label>> = HashSet::new();
        for set in &f.sets {
            for s in source.select(set, f.start, f.end, &hints).await? {
                if f.sets.len() == 1 || seen.insert(Labels::clone(&s.labels)) {
                    series.push(s);
                }
            }
        }
        loaded = loaded.saturating_add(series.iter().map(|s| s.samples.len()).sum());
        if loaded > max_samples {
            return Err(QueryError::Limit(too_many_samples()));
        }
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        for k in keys {
            out.index.insert(k, out.slots.len());
        }
        out.slots.push(series);
    }
    Ok(out)
}

/// A canonical text of matcher sets (order-independent within a set).
fn set_texts(sets: &[Vec<Matcher>]) -> Vec<Vec<String>> {
    sets.iter()
        .map(|set| {
            let mut t: Vec<String> = set.iter().map(|m| m.to_string()).collect();
            t.sort();
            t
        })
        .collect()
}

/// Prometheus' message when a query would hold too many samples.
pub(crate) fn too_many_samples() -> String {
    "query processing would load too many samples into memory in query execution".to_string()
}
