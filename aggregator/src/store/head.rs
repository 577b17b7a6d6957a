//! The head: the most recent samples (`storage.head_duration`, 2 h by
//! default) of every series, in memory, so alert evaluation, the live
//! dashboard and short queries never wait on the database.
//!
//! [`HeadStore`] wraps the real [`Store`]: every call is delegated, and a
//! write that committed (a batch that was not a duplicate, or
//! [`Store::write_series`]) is then appended to the head. Ingest and HTTP code
//! therefore see a plain `Store`.
//!
//! The head is complete from [`Head::covered_from`] on: every committed
//! sample at or after that time is in it, for every series it holds. It is
//! not ready (covers nothing) until warmed from the store at start
//! ([`HeadStore::migrate`] warms it once the schema is in place), so a
//! restart does not hide recent data. Memory is bounded by
//! `storage.head_max_series`: a series first seen when the head is full is
//! refused for the life of the process (so the head never holds part of a
//! series' window) and is read from the store; refusals are counted.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use promql_parser::label::Matcher;
use tracing::info;
use vigil_common::{Label, MetricMetadata, Series, now_ms};

use super::behind::WriteBehind;
use super::chunk::Samples;
use super::metadata::StoredMetadata;
use super::rollup::{Bucket, Resolution, Table};
use super::{
    AgentRecord, BatchRef, Committed, HostInfo, Store, StoreError, TokenInfo, TokenRecord,
};
use crate::metrics::{Part, StorageMetrics};
use crate::query::Labels;
use crate::query::source::{METRIC_NAME, Need, is_stale_marker, keep_needed};

/// Series read from the store per query while warming.
const WARM_CHUNK: usize = 1_000;

#[derive(Default)]
struct State {
    /// `None` until warmed.
    covered_from: Option<i64>,
    /// Slot (in `slots`) of each held series.
    series: rustc_hash::FxHashMap<Labels, usize>,
    /// Samples of each held series (compressed chunks, [`super::chunk`]).
    slots: Vec<Samples>,
    /// Slots by series id, for [`Head::probe_id`]: queries then hash an id
    /// instead of a label set (which was a fifth of a rule evaluation
    /// round). Learnt on warming and on the first probe of a series; rebuilt
    /// when [`Head::trim`] drops series.
    by_id: rustc_hash::FxHashMap<i64, usize>,
    refused: rustc_hash::FxHashSet<Labels>,
    samples: usize,
}

impl State {
    fn get(&self, labels: &Labels) -> Option<&Samples> {
        self.slots.get(*self.series.get(labels)?)
    }

    fn get_mut(&mut self, labels: &Labels) -> Option<&mut Samples> {
        self.slots.get_mut(*self.series.get(labels)?)
    }

    fn insert(&mut self, labels: Labels, samples: Samples) -> usize {
        let slot = self.slots.len();
        self.slots.push(samples);
        self.series.insert(labels, slot);
        slot
    }

    /// What the head's data structures hold on the heap, estimated from
    /// their capacities (allocator overhead not included). One pass over
    /// every series; run by [`Head::trim`], which makes that pass anyway.
    fn memory(&self) -> HeadMemory {
        let labels_bytes = |l: &Labels| {
            l.capacity() * size_of::<Label>()
                + l.iter()
                    .map(|x| x.name.capacity() + x.value.capacity())
                    .sum::<usize>()
        };
        HeadMemory {
            samples: self.slots.capacity() * size_of::<Samples>()
                + self.slots.iter().map(Samples::heap_bytes).sum::<usize>(),
            labels: self.series.keys().map(labels_bytes).sum::<usize>()
                + self.refused.iter().map(labels_bytes).sum::<usize>(),
            index: table_bytes::<Labels, usize>(self.series.capacity())
                + table_bytes::<i64, usize>(self.by_id.capacity())
                + table_bytes::<Labels, ()>(self.refused.capacity()),
        }
    }

    /// Drops the slots left empty, renumbering the others.
    fn compact(&mut self) {
        let mut new_slot = vec![usize::MAX; self.slots.len()];
        let mut kept = Vec::with_capacity(self.slots.len());
        for (old, samples) in std::mem::take(&mut self.slots).into_iter().enumerate() {
            if !samples.is_empty() {
                new_slot[old] = kept.len();
                kept.push(samples);
            }
        }
        self.slots = kept;
        let renumber = |slot: &mut usize| {
            *slot = new_slot.get(*slot).copied().unwrap_or(usize::MAX);
            *slot != usize::MAX
        };
        self.series.retain(|_, slot| renumber(slot));
        self.by_id.retain(|_, slot| renumber(slot));
    }
}

/// Estimated heap bytes of the head by part ([`Head::memory`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeadMemory {
    /// Sample chunks as allocated, and each series' chunk list.
    pub samples: usize,
    /// Label sets of held and refused series (vectors and strings).
    pub labels: usize,
    /// Hash tables (by label set, by id, refused).
    pub index: usize,
}

/// Heap bytes of a hashbrown table with room for `capacity` entries: a
/// power-of-two number of buckets, at most 7/8 full, each one entry plus a
/// control byte.
fn table_bytes<K, V>(capacity: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = (capacity * 8 / 7).max(capacity + 1).next_power_of_two();
    buckets * (size_of::<(K, V)>() + 1)
}

/// The samples of `[start, end]` that `need` asks for.
fn pick(samples: &Samples, start: i64, end: i64, need: Need) -> Vec<(i64, f64)> {
    match need {
        Need::All => samples.range(start, end),
        Need::Last => samples.latest(start, end).into_iter().collect(),
        Need::LastReal => match samples.latest(start, end) {
            // A marker last: the real sample before it may be further back.
            Some((_, v)) if is_stale_marker(v) => {
                let mut all = samples.range(start, end);
                keep_needed(&mut all, need);
                all
            }
            last => last.into_iter().collect(),
        },
    }
}

/// What the head knows of one series ([`Head::probe`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// Held: complete from `covered_from` on; its samples in the range asked.
    Held(Vec<(i64, f64)>),
    /// Refused for being full: read it from the store.
    Refused,
    /// Not held: no sample from `covered_from` on.
    Absent,
}

/// Recent samples per series, sorted by time, one per timestamp.
pub struct Head {
    /// Set by [`Head::disable`]: never warmed, so it holds nothing and
    /// every read goes to the store.
    disabled: std::sync::atomic::AtomicBool,
    duration_ms: i64,
    max_series: usize,
    state: RwLock<State>,
    metrics: StorageMetrics,
}

/// A series' label set with `__name__`, sorted.
pub fn series_labels(s: &Series) -> Labels {
    let mut labels = s.labels.clone();
    labels.push(Label::new(METRIC_NAME, s.name.clone()));
    labels.sort();
    labels
}

impl Head {
    pub fn new(duration: std::time::Duration, max_series: usize, metrics: StorageMetrics) -> Self {
        Head {
            disabled: std::sync::atomic::AtomicBool::new(false),
            duration_ms: i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 2),
            max_series,
            state: RwLock::new(State::default()),
            metrics,
        }
    }

    /// Turns the head off before it is warmed (a cluster node: other
    /// aggregators write samples this process never sees, so only the
    /// database is complete). It then stays empty: writes are not
    /// appended (the head covers nothing) and reads go to the store.
    pub fn disable(&self) {
        self.disabled
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// From when on the head is complete; `None` before it is warmed.
    pub fn covered_from(&self) -> Option<i64> {
        self.state.read().ok()?.covered_from
    }

    /// Number of series and samples held.
    pub fn size(&self) -> (usize, usize) {
        self.state
            .read()
            .map(|s| (s.series.len(), s.samples))
            .unwrap_or((0, 0))
    }

    fn publish(&self, st: &State) {
        self.metrics.head_series.set(st.series.len() as i64);
        self.metrics.head_samples.set(st.samples as i64);
    }

    /// Estimated heap bytes held now, by part (one pass over every series
    /// under the read lock; `vigil_aggregator_head_bytes` has the figure of
    /// the last trim for free).
    pub fn memory(&self) -> HeadMemory {
        self.state.read().map(|st| st.memory()).unwrap_or_default()
    }

    fn publish_memory(&self, m: HeadMemory) {
        for (part, bytes) in [
            ("samples", m.samples),
            ("labels", m.labels),
            ("index", m.index),
        ] {
            self.metrics
                .head_bytes
                .get_or_create(&Part::new(part))
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }

    /// Appends committed samples (those older than the covered range are
    /// left to the store).
    pub fn append(&self, series: &[Series]) {
        self.append_refs(series.iter());
    }

    fn append_refs<'a>(&self, series: impl Iterator<Item = &'a Series>) {
        if self.disabled.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let labelled: Vec<(Labels, &Series)> = series.map(|s| (series_labels(s), s)).collect();
        let Ok(mut st) = self.state.write() else {
            return;
        };
        let Some(from) = st.covered_from else {
            return;
        };
        for (labels, s) in labelled {
            let points = s.points.iter().filter(|p| p.timestamp_ms >= from);
            if let Some(samples) = st.get_mut(&labels) {
                let added = samples.insert_all(points.map(|p| (p.timestamp_ms, p.value)));
                st.samples += added;
            } else if st.refused.contains(&labels) {
                continue;
            } else if st.series.len() >= self.max_series {
                st.refused.insert(labels);
                self.metrics.head_series_refused.inc();
            } else {
                let mut samples = Samples::default();
                samples.insert_all(points.map(|p| (p.timestamp_ms, p.value)));
                if !samples.is_empty() {
                    st.samples += samples.len();
                    st.insert(labels, samples);
                }
            }
        }
        self.publish(&st);
    }

    /// [`Head::append`] of series whose ids are known (`ids[i]` is the id
    /// of `series[i]`): a series the head has seen under its id is found
    /// by the id (no label set built or hashed); the others go the way of
    /// [`Head::append`] and are remembered by id. Ids missing (`ids`
    /// shorter than `series`): plain [`Head::append`].
    pub fn append_ids(&self, series: &[Series], ids: &[i64]) {
        if ids.len() != series.len() {
            self.append(series);
            return;
        }
        let Ok(mut st) = self.state.write() else {
            return;
        };
        let Some(from) = st.covered_from else {
            return;
        };
        let mut added = 0;
        let mut unknown = Vec::new();
        for (s, id) in series.iter().zip(ids) {
            let slot = st.by_id.get(id).copied();
            match slot.and_then(|slot| st.slots.get_mut(slot)) {
                Some(samples) => {
                    added += samples.insert_all(
                        s.points
                            .iter()
                            .filter(|p| p.timestamp_ms >= from)
                            .map(|p| (p.timestamp_ms, p.value)),
                    );
                }
                None => unknown.push((s, *id)),
            }
        }
        st.samples += added;
        if unknown.is_empty() {
            self.publish(&st);
            return;
        }
        drop(st);
        self.append_refs(unknown.iter().map(|(s, _)| *s));
        if let Ok(mut st) = self.state.write() {
            for (s, id) in unknown {
                if let Some(&slot) = st.series.get(&series_labels(s)) {
                    st.by_id.insert(id, slot);
                }
            }
        }
    }

    /// Appends `series` if the head is warmed and already holds every one
    /// of them; else appends nothing and returns false.
    pub fn append_held(&self, series: &[Series]) -> bool {
        let labelled: Vec<Labels> = series.iter().map(series_labels).collect();
        let Ok(mut st) = self.state.write() else {
            return false;
        };
        let Some(from) = st.covered_from else {
            return false;
        };
        if !labelled.iter().all(|l| st.series.contains_key(l)) {
            return false;
        }
        let mut added = 0;
        for (labels, s) in labelled.iter().zip(series) {
            if let Some(samples) = st.get_mut(labels) {
                added += samples.insert_all(
                    s.points
                        .iter()
                        .filter(|p| p.timestamp_ms >= from)
                        .map(|p| (p.timestamp_ms, p.value)),
                );
            }
        }
        st.samples += added;
        self.publish(&st);
        true
    }

    /// Drops samples older than `now - head_duration` and series left empty.
    pub fn trim(&self, now: i64) {
        let cutoff = now.saturating_sub(self.duration_ms);
        let Ok(mut st) = self.state.write() else {
            return;
        };
        let Some(from) = st.covered_from else {
            return;
        };
        if cutoff <= from {
            return;
        }
        st.covered_from = Some(cutoff);
        let mut removed = 0;
        let mut emptied = false;
        for samples in &mut st.slots {
            removed += samples.trim(cutoff);
            emptied |= samples.is_empty();
        }
        if emptied {
            st.compact();
        }
        st.samples -= removed;
        self.publish(&st);
        self.publish_memory(st.memory());
    }

    /// Samples of `labels` in `[start, end]`; `None` if the head does not
    /// hold the series (refused, or no sample in the covered range).
    pub fn get(&self, labels: &Labels, start: i64, end: i64) -> Option<Vec<(i64, f64)>> {
        let st = self.state.read().ok()?;
        Some(st.get(labels)?.range(start, end))
    }

    /// Whether the head has a sample of `labels` in `[start, end]`.
    pub fn has_sample_in(&self, labels: &Labels, start: i64, end: i64) -> bool {
        let Ok(st) = self.state.read() else {
            return false;
        };
        st.get(labels)
            .is_some_and(|samples| samples.any_in(start, end))
    }

    /// Whether the head holds `labels` (so it is complete for the covered range).
    pub fn holds(&self, labels: &Labels) -> bool {
        self.state
            .read()
            .map(|st| st.series.contains_key(labels))
            .unwrap_or(false)
    }

    /// One look at `labels` (one lock, one hash): its samples in
    /// `[start, end]` if the head holds it, else whether it was refused.
    pub fn probe(&self, labels: &Labels, start: i64, end: i64) -> Probe {
        let Ok(st) = self.state.read() else {
            return Probe::Absent;
        };
        match st.get(labels) {
            Some(samples) => Probe::Held(samples.range(start, end)),
            None if st.refused.contains(labels) => Probe::Refused,
            None => Probe::Absent,
        }
    }

    /// [`Head::probe`] of the series `id` (whose label set is `labels`):
    /// one id lookup once the head has seen this id.
    pub fn probe_id(&self, id: i64, labels: &Labels, start: i64, end: i64) -> Probe {
        {
            let Ok(st) = self.state.read() else {
                return Probe::Absent;
            };
            if let Some(samples) = st.by_id.get(&id).and_then(|&slot| st.slots.get(slot)) {
                return Probe::Held(samples.range(start, end));
            }
        }
        let probe = self.probe(labels, start, end);
        if matches!(probe, Probe::Held(_))
            && let Ok(mut st) = self.state.write()
            && let Some(&slot) = st.series.get(labels)
        {
            st.by_id.insert(id, slot);
        }
        probe
    }

    /// [`Head::probe_id`] of each of `selected` under one lock (a query's
    /// selection probed series by series spent a sixth of a rule evaluation
    /// round on taking the lock). A held series gives what `need` asks of
    /// its samples in the range (an instant selector needs only the last).
    pub fn probe_ids(
        &self,
        selected: &[(i64, crate::query::source::SharedLabels)],
        start: i64,
        end: i64,
        need: Need,
    ) -> Vec<Probe> {
        let mut out = Vec::with_capacity(selected.len());
        let mut unknown = Vec::new();
        {
            let Ok(st) = self.state.read() else {
                return vec![Probe::Absent; selected.len()];
            };
            for (i, (id, _)) in selected.iter().enumerate() {
                match st.by_id.get(id).and_then(|&slot| st.slots.get(slot)) {
                    Some(samples) => out.push(Probe::Held(pick(samples, start, end, need))),
                    None => {
                        out.push(Probe::Absent);
                        unknown.push(i);
                    }
                }
            }
        }
        for i in unknown {
            let (id, labels) = &selected[i];
            out[i] = match self.probe_id(*id, labels, start, end) {
                Probe::Held(mut samples) => {
                    keep_needed(&mut samples, need);
                    Probe::Held(samples)
                }
                other => other,
            };
        }
        out
    }

    /// Whether the head refused `labels` for being full.
    pub fn refused(&self, labels: &Labels) -> bool {
        self.state
            .read()
            .map(|st| st.refused.contains(labels))
            .unwrap_or(false)
    }

    /// Fills the head from the store with the last `head_duration`.
    ///
    /// The covered range is set first, so writes committed while this runs
    /// are appended as usual; samples read from the store are merged in
    /// (a timestamp already present is kept).
    pub async fn warm(&self, store: &dyn Store, now: i64) -> Result<(), StoreError> {
        if self.disabled.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(());
        }
        let from = now.saturating_sub(self.duration_ms);
        if let Ok(mut st) = self.state.write() {
            if st.covered_from.is_some() {
                return Ok(());
            }
            st.covered_from = Some(from);
        }
        let result = self.load(store, from).await;
        if result.is_err() {
            // Not ready: queries go to the store until a later warm succeeds.
            if let Ok(mut st) = self.state.write() {
                *st = State::default();
                self.publish(&st);
            }
        }
        result
    }

    async fn load(&self, store: &dyn Store, from: i64) -> Result<(), StoreError> {
        let all = store.select_series(&[]).await?;
        let labels_of: HashMap<i64, &Labels> = all.iter().map(|(id, l)| (*id, &**l)).collect();
        let ids: Vec<i64> = all.iter().map(|(id, _)| *id).collect();
        let mut loaded = 0usize;
        for chunk in ids.chunks(WARM_CHUNK) {
            let rows = store.read_samples(chunk, from, i64::MAX, 0).await?;
            loaded += rows.len();
            let Ok(mut st) = self.state.write() else {
                break;
            };
            let mut i = 0;
            while i < rows.len() {
                let id = rows[i].0;
                let j = i + rows[i..].iter().take_while(|r| r.0 == id).count();
                if let Some(&labels) = labels_of.get(&id) {
                    let slot = match st.series.get(labels) {
                        Some(&slot) => Some(slot),
                        None if st.series.len() < self.max_series => {
                            Some(st.insert(labels.clone(), Samples::default()))
                        }
                        None => None,
                    };
                    if let Some(slot) = slot {
                        st.by_id.insert(id, slot);
                        let added = st.slots.get_mut(slot).map_or(0, |samples| {
                            samples.insert_all(rows[i..j].iter().map(|&(_, t, v)| (t, v)))
                        });
                        st.samples += added;
                    } else if st.refused.insert(labels.clone()) {
                        self.metrics.head_series_refused.inc();
                    }
                }
                i = j;
            }
            self.publish(&st);
        }
        let (series, samples) = self.size();
        info!(series, samples, loaded, "head warmed from the store");
        Ok(())
    }
}

/// A [`Store`] that keeps the [`Head`] current.
pub struct HeadStore {
    inner: Arc<dyn Store>,
    head: Arc<Head>,
    behind: WriteBehind,
}

impl HeadStore {
    pub fn new(inner: Arc<dyn Store>, head: Arc<Head>) -> Self {
        let behind = WriteBehind::new(inner.clone(), head.metrics.clone());
        HeadStore {
            inner,
            head,
            behind,
        }
    }

    pub fn head(&self) -> &Arc<Head> {
        &self.head
    }

    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }
}

#[async_trait]
impl Store for HeadStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn db(&self) -> super::Db {
        self.inner.db()
    }

    /// Migrates, then warms the head (once).
    async fn migrate(&self) -> Result<(), StoreError> {
        self.inner.migrate().await?;
        self.head.warm(self.inner.as_ref(), now_ms()).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn register_agent(&self, agent_id: &str, key: &[u8; 32]) -> Result<(), StoreError> {
        self.inner.register_agent(agent_id, key).await
    }

    async fn revoke_agent(&self, agent_id: &str) -> Result<bool, StoreError> {
        self.inner.revoke_agent(agent_id).await
    }

    async fn agent(&self, agent_id: &str) -> Result<Option<AgentRecord>, StoreError> {
        self.inner.agent(agent_id).await
    }

    async fn commit_batches(&self, batches: &[BatchRef<'_>]) -> Result<Vec<Committed>, StoreError> {
        let out = self.inner.commit_batches(batches).await?;
        for (b, c) in batches.iter().zip(&out) {
            if !c.outcome.duplicate {
                self.head.append_ids(b.series, &c.series_ids);
            }
        }
        Ok(out)
    }

    async fn write_series(&self, series: &[Series]) -> Result<u64, StoreError> {
        let stored = self.inner.write_series(series).await?;
        self.head.append(series);
        Ok(stored)
    }

    /// Series the head already holds (so the series index knows them) are
    /// appended at once and written behind; a batch with a new series is
    /// written first, so its id is in the index when a query looks.
    async fn write_derived(&self, series: &[Series]) -> Result<(), StoreError> {
        if self.head.append_held(series) {
            self.behind.push(series.to_vec()).await
        } else {
            self.write_series(series).await.map(|_| ())
        }
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.behind.flush().await?;
        self.inner.flush().await
    }

    async fn select_series(
        &self,
        matchers: &[Matcher],
    ) -> Result<Vec<(i64, crate::query::source::SharedLabels)>, StoreError> {
        self.inner.select_series(matchers).await
    }

    async fn read_samples(
        &self,
        ids: &[i64],
        start_ms: i64,
        end_ms: i64,
        limit: usize,
    ) -> Result<Vec<(i64, i64, f64)>, StoreError> {
        self.inner.read_samples(ids, start_ms, end_ms, limit).await
    }

    async fn read_newest(
        &self,
        ids: &[i64],
        start_ms: i64,
        end_ms: i64,
        n: u32,
    ) -> Result<Vec<(i64, i64, f64)>, StoreError> {
        self.inner.read_newest(ids, start_ms, end_ms, n).await
    }

    async fn series_with_samples(
        &self,
        ids: &[i64],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<i64>, StoreError> {
        self.inner.series_with_samples(ids, start_ms, end_ms).await
    }

    async fn rollup_watermark(&self, res: Resolution) -> Result<Option<i64>, StoreError> {
        self.inner.rollup_watermark(res).await
    }

    async fn oldest_sample(&self) -> Result<Option<i64>, StoreError> {
        self.inner.oldest_sample().await
    }

    async fn build_rollup(&self, res: Resolution, from: i64, to: i64) -> Result<u64, StoreError> {
        self.inner.build_rollup(res, from, to).await
    }

    async fn read_rollup(
        &self,
        res: Resolution,
        ids: &[i64],
        start_ms: i64,
        end_ms: i64,
        limit: usize,
    ) -> Result<Vec<Bucket>, StoreError> {
        self.inner
            .read_rollup(res, ids, start_ms, end_ms, limit)
            .await
    }

    async fn drop_before(&self, table: Table, before_ms: i64) -> Result<u64, StoreError> {
        self.inner.drop_before(table, before_ms).await
    }

    async fn hosts(&self) -> Result<Vec<HostInfo>, StoreError> {
        self.inner.hosts().await
    }

    async fn count_samples(&self, host: Option<&str>) -> Result<u64, StoreError> {
        self.inner.count_samples(host).await
    }

    async fn put_token(&self, name: &str, sha256: &[u8; 32], role: &str) -> Result<(), StoreError> {
        self.inner.put_token(name, sha256, role).await
    }

    async fn token(&self, sha256: &[u8; 32]) -> Result<Option<TokenInfo>, StoreError> {
        self.inner.token(sha256).await
    }

    async fn revoke_token(&self, name: &str) -> Result<bool, StoreError> {
        self.inner.revoke_token(name).await
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.inner.tokens().await
    }

    async fn put_metadata(&self, metadata: &[MetricMetadata]) -> Result<u64, StoreError> {
        self.inner.put_metadata(metadata).await
    }

    async fn metadata(&self, metric: Option<&str>) -> Result<Vec<StoredMetadata>, StoreError> {
        self.inner.metadata(metric).await
    }
}
