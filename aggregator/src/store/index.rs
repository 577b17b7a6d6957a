//! The in-memory index of the `series` table that label matchers run on.
//!
//! Each series id maps to its full label set (metric name as `__name__`,
//! sorted), and postings map `label=value` to the sorted ids carrying it, so
//! equality matchers cost a lookup (the shortest posting gives the
//! candidates, kept in label order); every matcher is then evaluated in Rust
//! on the candidates. The index is filled from
//! the table (everything above the highest id read so far, so rows written
//! by another process show up too) and kept current by the write path.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicI64, Ordering};

use promql_parser::label::{MatchOp, Matcher};
use vigil_common::Label;

use super::StoreError;
use crate::query::Labels;
use crate::query::source::SharedLabels;
use crate::query::source::{METRIC_NAME, matches};

#[derive(Default)]
struct Inner {
    labels: FxHashMap<i64, SharedLabels>,
    /// name -> value -> ids, sorted ascending (nested so a lookup needs no
    /// owned key).
    postings: FxHashMap<String, FxHashMap<String, Vec<i64>>>,
    /// Highest id read from the table by [`SeriesIndex::load`].
    loaded_upto: i64,
}

/// Series id -> labels, with postings for equality matchers.
#[derive(Default)]
pub struct SeriesIndex {
    inner: RwLock<Inner>,
    /// When the table was last read (ms), to read it at most once per
    /// [`REFRESH_EVERY_MS`]: this process's own writes are indexed at once,
    /// so only series other processes add wait that long.
    last_refresh_ms: AtomicI64,
    /// Postings in label order, by `(name, value)`; an entry is used only
    /// while its posting has as many ids as it (postings only grow).
    sorted: std::sync::Mutex<SortedPostings>,
}

type SortedPostings = FxHashMap<(String, String), std::sync::Arc<Vec<(i64, SharedLabels)>>>;

/// How often queries look for series other processes added.
pub const REFRESH_EVERY_MS: i64 = 1_000;

/// How long a query waits for that look before using the index it has.
pub const REFRESH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// After a failed look, how long until the next (the database is probably
/// down: queries should not each wait [`REFRESH_TIMEOUT`] for it).
pub const RETRY_AFTER_FAILURE_MS: i64 = 10_000;

/// The label set of a stored series: `__name__` plus its canonical labels
/// JSON, sorted by name.
pub fn labels_of(metric: &str, labels_json: &str) -> Result<Labels, StoreError> {
    let map: BTreeMap<String, String> = serde_json::from_str(labels_json)
        .map_err(|e| StoreError::Corrupt(format!("series.labels {labels_json:?}: {e}")))?;
    let mut out: Labels = map.into_iter().map(|(n, v)| Label::new(n, v)).collect();
    out.push(Label::new(METRIC_NAME, metric));
    out.sort();
    Ok(out)
}

impl SeriesIndex {
    /// Highest id loaded from the table so far.
    pub fn loaded_upto(&self) -> i64 {
        self.inner.read().map(|i| i.loaded_upto).unwrap_or(0)
    }

    /// Whether the table should be read again (and notes that it will be).
    pub fn refresh_due(&self, now_ms: i64) -> bool {
        let last = self.last_refresh_ms.load(Ordering::Acquire);
        now_ms.saturating_sub(last) >= REFRESH_EVERY_MS
            && self
                .last_refresh_ms
                .compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// Makes the next [`SeriesIndex::refresh_due`] true (after a failed read).
    pub fn refresh_failed(&self) {
        self.last_refresh_ms.store(0, Ordering::Release);
    }

    /// Puts the next [`SeriesIndex::refresh_due`] off for
    /// [`RETRY_AFTER_FAILURE_MS`] (after a failed read, the index kept).
    pub fn refresh_later(&self, now_ms: i64) {
        self.last_refresh_ms.store(
            now_ms.saturating_add(RETRY_AFTER_FAILURE_MS - REFRESH_EVERY_MS),
            Ordering::Release,
        );
    }

    /// Number of series indexed.
    pub fn len(&self) -> usize {
        self.inner.read().map(|i| i.labels.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds rows `(id, metric, labels JSON)` read from the table.
    pub fn load(&self, rows: Vec<(i64, String, String)>) -> Result<(), StoreError> {
        let parsed: Vec<(i64, Labels)> = rows
            .into_iter()
            .map(|(id, m, l)| Ok((id, labels_of(&m, &l)?)))
            .collect::<Result<_, StoreError>>()?;
        let max = parsed.iter().map(|(id, _)| *id).max();
        self.insert(parsed);
        if let (Some(max), Ok(mut inner)) = (max, self.inner.write()) {
            inner.loaded_upto = inner.loaded_upto.max(max);
        }
        Ok(())
    }

    /// Adds series (already present ones are left as they are).
    pub fn insert(&self, series: Vec<(i64, Labels)>) {
        let Ok(mut inner) = self.inner.write() else {
            return;
        };
        for (id, labels) in series {
            if inner.labels.contains_key(&id) {
                continue;
            }
            for l in &labels {
                let ids = inner
                    .postings
                    .entry(l.name.clone())
                    .or_default()
                    .entry(l.value.clone())
                    .or_default();
                // Ids mostly arrive ascending: push, else insert in place.
                match ids.last() {
                    Some(&last) if last > id => {
                        if let Err(at) = ids.binary_search(&id) {
                            ids.insert(at, id);
                        }
                    }
                    _ => ids.push(id),
                }
            }
            inner.labels.insert(id, SharedLabels::new(labels));
        }
    }

    /// Ids and labels of the series matching every matcher, sorted by labels.
    ///
    /// With equality matchers, the candidates are the shortest of their
    /// postings, in label order (cached per posting until it grows: a rule
    /// evaluation selects the same metrics every round, and sorting each
    /// selection was 7 % of a round); every matcher is then checked on each
    /// candidate, which keeps the order.
    pub fn select(&self, matchers: &[Matcher]) -> Vec<(i64, SharedLabels)> {
        let Ok(inner) = self.inner.read() else {
            return Vec::new();
        };
        let shortest = matchers
            .iter()
            .filter(|m| matches!(m.op, MatchOp::Equal) && !m.value.is_empty())
            .map(|m| {
                let ids = inner
                    .postings
                    .get(m.name.as_str())
                    .and_then(|values| values.get(m.value.as_str()))
                    .map_or(&[][..], Vec::as_slice);
                (m, ids)
            })
            .min_by_key(|(_, ids)| ids.len());
        let Some((m, ids)) = shortest else {
            let mut out: Vec<(i64, SharedLabels)> = inner
                .labels
                .iter()
                .filter(|(_, l)| matches(l, matchers))
                .map(|(id, l)| (*id, l.clone()))
                .collect();
            out.sort_by(|a, b| a.1.cmp(&b.1));
            return out;
        };
        let key = (m.name.clone(), m.value.clone());
        let cached = self
            .sorted
            .lock()
            .ok()
            .and_then(|c| c.get(&key).filter(|s| s.len() == ids.len()).cloned());
        let sorted = match cached {
            Some(s) => s,
            None => {
                let mut s: Vec<(i64, SharedLabels)> = ids
                    .iter()
                    .filter_map(|id| inner.labels.get(id).map(|l| (*id, l.clone())))
                    .collect();
                s.sort_by(|a, b| a.1.cmp(&b.1));
                let s = std::sync::Arc::new(s);
                if let Ok(mut c) = self.sorted.lock() {
                    if c.len() >= SORTED_CACHE_MAX {
                        c.clear();
                    }
                    c.insert(key, s.clone());
                }
                s
            }
        };
        sorted
            .iter()
            .filter(|(_, l)| matches(l, matchers))
            .cloned()
            .collect()
    }
}

/// Postings kept sorted by labels at most (beyond, the cache starts over).
const SORTED_CACHE_MAX: usize = 4096;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn m(op: MatchOp, name: &str, value: &str) -> Matcher {
        Matcher::new(op, name, value)
    }

    /// The matchers of a PromQL vector selector.
    pub(crate) fn selector(q: &str) -> Vec<Matcher> {
        match promql_parser::parser::parse(q).expect("parse") {
            promql_parser::parser::Expr::VectorSelector(vs) => {
                let mut ms = vs.matchers.matchers;
                if let Some(name) = vs.name {
                    ms.push(Matcher::new(MatchOp::Equal, METRIC_NAME, &name));
                }
                ms
            }
            other => panic!("not a selector: {other:?}"),
        }
    }

    #[test]
    fn postings_and_regex_select_the_right_series() {
        let idx = SeriesIndex::default();
        idx.load(vec![
            (3, "up".into(), r#"{"host":"a","role":"db"}"#.into()),
            (1, "up".into(), r#"{"host":"b"}"#.into()),
            (2, "cpu".into(), r#"{"host":"a"}"#.into()),
        ])
        .expect("load");
        assert_eq!(idx.loaded_upto(), 3);
        let ids = |ms: &[Matcher]| {
            idx.select(ms)
                .into_iter()
                .map(|(id, _)| id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&[m(MatchOp::Equal, "__name__", "up")]), vec![3, 1]);
        assert_eq!(
            ids(&[
                m(MatchOp::Equal, "__name__", "up"),
                m(MatchOp::Equal, "host", "a")
            ]),
            vec![3]
        );
        assert_eq!(ids(&[m(MatchOp::NotEqual, "host", "a")]), vec![1]);
        // A missing label reads as "".
        assert_eq!(ids(&[m(MatchOp::Equal, "role", "")]), vec![2, 1]);
        assert_eq!(ids(&selector(r#"{host=~"a|b"}"#)), vec![2, 3, 1]);
        assert_eq!(ids(&selector(r#"up{host!~"a"}"#)), vec![1]);
        assert!(ids(&[m(MatchOp::Equal, "host", "zzz")]).is_empty());
        assert_eq!(idx.select(&[m(MatchOp::Equal, "host", "b")])[0].1.len(), 2);
        assert!(idx.load(vec![(9, "x".into(), "not json".into())]).is_err());

        // A posting that grows after it was selected (and cached in label
        // order) gives the new series too, still in label order.
        let up = [m(MatchOp::Equal, "__name__", "up")];
        assert_eq!(ids(&up), vec![3, 1]);
        idx.insert(vec![(
            4,
            vec![Label::new("__name__", "up"), Label::new("host", "a0")],
        )]);
        assert_eq!(ids(&up), vec![3, 4, 1]);
        assert_eq!(
            ids(&[m(MatchOp::Equal, "host", "a0"), up[0].clone()]),
            vec![4]
        );
    }
}
