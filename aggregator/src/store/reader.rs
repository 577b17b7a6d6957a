//! The production [`Source`]: the head for recent samples, the store for the
//! rest, and rollups where raw samples are gone.
//!
//! For each selected series, `[start, end]` is cut at the head's covered-from
//! time: the part from there on comes from the head (if the head holds the
//! series), the part before from the store in one round trip for all series,
//! and the part older than the raw retention from the 1-minute or 1-hour
//! rollups. The parts do not overlap, so concatenating them keeps samples
//! sorted and unique by timestamp.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use promql_parser::label::Matcher;

use super::head::{Head, Probe};
use super::rollup::{self, Rollups};
use super::{Store, StoreError};
use crate::query::source::{SharedLabels, is_stale_marker};
use crate::query::{Labels, Need, RawSeries, SelectHints, Source, SourceError};

/// Reads head + store (+ rollups).
pub struct StoreSource {
    store: Arc<dyn Store>,
    head: Arc<Head>,
    rollups: Option<Arc<Rollups>>,
}

fn storage(e: StoreError) -> SourceError {
    SourceError::Storage(e.to_string())
}

impl StoreSource {
    pub fn new(store: Arc<dyn Store>, head: Arc<Head>, rollups: Option<Arc<Rollups>>) -> Self {
        StoreSource {
            store,
            head,
            rollups,
        }
    }

    /// The raw-sample cutoff: before it, raw samples may have been dropped.
    fn raw_from(&self) -> i64 {
        self.rollups
            .as_ref()
            .map_or(i64::MIN, |r| r.raw_from(vigil_common::now_ms()))
    }
}

/// How many of each series' newest samples [`last_real`] reads first.
const NEWEST_PROBE: u32 = 4;

/// The newest sample of each of `ids` in `[start, end]` that is not a
/// staleness marker, `(series id, ts, value)`: one row per series that has
/// one. Reads each series' [`NEWEST_PROBE`] newest samples, and the whole
/// range only of a series whose newest were all markers.
pub async fn last_real(
    store: &dyn Store,
    ids: &[i64],
    start: i64,
    end: i64,
) -> Result<Vec<(i64, i64, f64)>, StoreError> {
    fn keep(best: &mut HashMap<i64, (i64, f64)>, (id, t, v): (i64, i64, f64)) {
        if is_stale_marker(v) {
            return;
        }
        let b = best.entry(id).or_insert((t, v));
        if t > b.0 {
            *b = (t, v);
        }
    }
    let mut best = HashMap::new();
    let mut probed: HashMap<i64, u32> = HashMap::new();
    for row in store.read_newest(ids, start, end, NEWEST_PROBE).await? {
        *probed.entry(row.0).or_default() += 1;
        keep(&mut best, row);
    }
    let again: Vec<i64> = probed
        .into_iter()
        .filter(|&(id, n)| n >= NEWEST_PROBE && !best.contains_key(&id))
        .map(|(id, _)| id)
        .collect();
    if !again.is_empty() {
        for row in store.read_samples(&again, start, end, 0).await? {
            keep(&mut best, row);
        }
    }
    Ok(best.into_iter().map(|(id, (t, v))| (id, t, v)).collect())
}

#[async_trait]
impl Source for StoreSource {
    async fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        hints: &SelectHints,
    ) -> Result<Vec<RawSeries>, SourceError> {
        if start_ms > end_ms {
            return Ok(Vec::new());
        }
        let selected = self.store.select_series(matchers).await.map_err(storage)?;
        let head_from = self.head.covered_from().unwrap_or(i64::MAX);
        let raw_from = self.raw_from().max(start_ms);

        // Which part of the range each series needs from the store.
        // The head's part of each series, read at once (one lookup each).
        let mut in_head: Vec<Option<Vec<(i64, f64)>>> = Vec::with_capacity(selected.len());
        let (mut full, mut before_head) = (Vec::new(), Vec::new());
        let head_start = start_ms.max(head_from);
        // A range that ends before the head covers anything is all the
        // store's (as for a refused series).
        let need = hints.need();
        let probes = if head_start <= end_ms {
            self.head.probe_ids(&selected, head_start, end_ms, need)
        } else {
            vec![Probe::Refused; selected.len()]
        };
        for ((id, _), probe) in selected.iter().zip(probes) {
            let refused = probe == Probe::Refused;
            let recent = match probe {
                Probe::Held(samples) => Some(samples),
                Probe::Refused | Probe::Absent => None,
            };
            let held = recent.is_some();
            // Only the last (real) sample is wanted and the head has it.
            let head_suffices = need != Need::All && recent.as_ref().is_some_and(|r| !r.is_empty());
            in_head.push(recent);
            // A series the head does not hold has no sample from
            // `head_from` on, unless the head refused it for being full.
            let head_knows_absent = head_from <= start_ms && !refused;
            if !held && !head_knows_absent {
                full.push(*id);
            } else if held && raw_from < head_from && !head_suffices {
                before_head.push(*id);
            }
        }
        let limit = hints.max_samples;
        let mut rows = Vec::new();
        let store_end_full = end_ms;
        let store_end_before = end_ms.min(head_from.saturating_sub(1));
        // Raw samples for what lies after the raw cutoff.
        for (ids, to) in [(&full, store_end_full), (&before_head, store_end_before)] {
            if ids.is_empty() || raw_from > to {
                continue;
            }
            let budget = if limit == 0 {
                0
            } else {
                limit.saturating_sub(rows.len()).max(1)
            };
            rows.extend(
                match need {
                    Need::All => self.store.read_samples(ids, raw_from, to, budget).await,
                    // An instant selector: the newest row, marker or not.
                    Need::Last => self.store.read_newest(ids, raw_from, to, 1).await,
                    Need::LastReal => last_real(self.store.as_ref(), ids, raw_from, to).await,
                }
                .map_err(storage)?,
            );
            if limit > 0 && rows.len() > limit {
                return Err(SourceError::TooManySamples { limit });
            }
        }
        // Rollups for what lies before it.
        let mut old = Vec::new();
        if let Some(r) = &self.rollups
            && start_ms < raw_from
        {
            let mut ids: Vec<i64> = selected.iter().map(|(id, _)| *id).collect();
            if need != Need::All {
                // A series with a newer sample needs no older bucket.
                let found: HashSet<i64> = rows.iter().map(|r| r.0).collect();
                let mut i = 0;
                ids.retain(|id| {
                    let in_head = in_head[i].as_ref().is_some_and(|h| !h.is_empty());
                    i += 1;
                    !in_head && !found.contains(id)
                });
            }
            let budget = if limit == 0 {
                0
            } else {
                limit.saturating_sub(rows.len()).max(1)
            };
            old = r
                .read(
                    &ids,
                    start_ms,
                    (raw_from - 1).min(end_ms),
                    rollup::Pick::for_function(hints.func.as_deref()),
                    budget,
                )
                .await
                .map_err(storage)?;
            if limit > 0 && rows.len() + old.len() > limit {
                return Err(SourceError::TooManySamples { limit });
            }
        }

        let mut by_id: HashMap<i64, Vec<(i64, f64)>> = HashMap::new();
        for (id, t, v) in old.into_iter().chain(rows) {
            by_id.entry(id).or_default().push((t, v));
        }
        let mut out = Vec::new();
        let mut total = 0usize;
        for ((id, labels), held) in selected.into_iter().zip(in_head) {
            let mut samples = by_id.remove(&id).unwrap_or_default();
            samples.sort_unstable_by_key(|&(t, _)| t);
            match held {
                // Most series are the head's alone: take its vector as is.
                Some(recent) if samples.is_empty() => samples = recent,
                Some(recent) => samples.extend(recent),
                None => {}
            }
            samples.dedup_by_key(|s| s.0);
            crate::query::source::keep_needed(&mut samples, need);
            if samples.is_empty() {
                continue;
            }
            total += samples.len();
            if hints.max_series > 0 && out.len() >= hints.max_series {
                return Err(SourceError::TooManySeries {
                    limit: hints.max_series,
                });
            }
            if limit > 0 && total > limit {
                return Err(SourceError::TooManySamples { limit });
            }
            out.push(RawSeries { labels, samples });
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
        if start_ms > end_ms {
            return Ok(Vec::new());
        }
        let mut selected: HashMap<i64, SharedLabels> = HashMap::new();
        if matcher_sets.is_empty() {
            selected.extend(self.store.select_series(&[]).await.map_err(storage)?);
        }
        for set in matcher_sets {
            selected.extend(self.store.select_series(set).await.map_err(storage)?);
        }
        let head_from = self.head.covered_from().unwrap_or(i64::MAX);
        let mut found: BTreeSet<Labels> = BTreeSet::new();
        let mut ask = Vec::new();
        for (id, labels) in selected {
            let recent = start_ms.max(head_from) <= end_ms
                && self
                    .head
                    .has_sample_in(&labels, start_ms.max(head_from), end_ms);
            if recent {
                found.insert(Labels::clone(&labels));
            } else {
                ask.push((id, labels));
            }
        }
        if !ask.is_empty() {
            let ids: Vec<i64> = ask.iter().map(|(id, _)| *id).collect();
            let mut have: BTreeSet<i64> = self
                .store
                .series_with_samples(&ids, start_ms, end_ms)
                .await
                .map_err(storage)?
                .into_iter()
                .collect();
            if let Some(r) = &self.rollups {
                let raw_from = self.raw_from();
                if start_ms < raw_from {
                    have.extend(
                        r.series_with_data(&ids, start_ms, end_ms.min(raw_from - 1))
                            .await
                            .map_err(storage)?,
                    );
                }
            }
            found.extend(
                ask.into_iter()
                    .filter(|(id, _)| have.contains(id))
                    .map(|(_, l)| Labels::clone(&l)),
            );
        }
        Ok(found.into_iter().take(limit).collect())
    }
}
