//! The scrape's series cache: from the exact text of a series in the
//! exposition (`name{labels}` as written, plus which label its `# TYPE`
//! normalises) to what [`series::judge`] made of it: dropped by a relabel
//! rule, invalid, or the final sorted, validated label set.
//!
//! A target exposes the same series every scrape, so from the second scrape
//! on the label blocks are neither parsed nor relabelled, validated or sorted
//! again (`vigil_common::exposition::parse_with` skips known ones): each
//! sample costs a hash lookup and a copy of the cached labels. Parsing,
//! relabelling and validation are functions of that text, the target's
//! `job`/`instance`, the cycle's `host`/`role` and the rules, so a hit gives
//! exactly what the uncached path would; when the rules or the attached labels
//! change, the cache is cleared.
//!
//! Bounds: at most `max_entries` entries (new series beyond it are evaluated
//! but not remembered), and after a scrape that saw `n` samples, a cache
//! holding more than `2 n + SLACK` entries forgets every series that scrape
//! did not show (a target whose series churn, e.g. a label carrying a request
//! id, cannot make it grow without end).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use rustc_hash::FxHashMap;
use vigil_common::exposition::{Normalised, RawSample, Sample, Visitor};
use vigil_common::{Label, Point};

use super::relabel::Rule;
use super::series::{self, Origin, Outcome, Verdict};
use crate::collect::{Collected, Context, Identity};

/// Entries beyond twice the last scrape's samples kept before stale ones go.
pub const SLACK: usize = 64;

#[derive(Debug, Clone)]
enum Cached {
    Dropped,
    Invalid,
    /// The final identity, shared by every scrape that shows the series, and
    /// its hash (the cache's random keys) for duplicate checks.
    Kept(Arc<Identity>, u64),
}

#[derive(Debug)]
struct Slot {
    cached: Cached,
    /// The scrape that last showed this series.
    seen: u64,
}

/// What the cached verdicts were computed for; a change clears the cache.
#[derive(Debug, Default, PartialEq)]
struct Attached {
    job: String,
    instance: String,
    base: Vec<Label>,
}

/// One target's cache; owns the target's relabel rules.
#[derive(Debug)]
pub struct SeriesCache {
    rules: Vec<Rule>,
    /// One map per [`Normalised`] kind, keyed by the series text.
    maps: [HashMap<Box<str>, Slot>; 3],
    attached: Attached,
    scrape: u64,
    max_entries: usize,
    hasher: RandomState,
}

fn kind(n: Normalised) -> usize {
    match n {
        Normalised::Nothing => 0,
        Normalised::Le => 1,
        Normalised::Quantile => 2,
    }
}

impl SeriesCache {
    /// An empty cache for a target relabelled by `rules`, remembering at most
    /// `max_entries` series.
    pub fn new(rules: Vec<Rule>, max_entries: usize) -> Self {
        SeriesCache {
            rules,
            maps: Default::default(),
            attached: Attached::default(),
            scrape: 0,
            max_entries,
            hasher: RandomState::new(),
        }
    }

    /// Replaces the relabel rules; everything cached under the old ones goes.
    pub fn set_rules(&mut self, rules: Vec<Rule>) {
        self.rules = rules;
        self.clear();
    }

    /// Series remembered.
    pub fn len(&self) -> usize {
        self.maps.iter().map(HashMap::len).sum()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn clear(&mut self) {
        for map in &mut self.maps {
            map.clear();
        }
    }

    /// Parses `body` and builds its series, like `series::build` over
    /// `exposition::parse`, using and refreshing the cache. Returns the
    /// outcome and the parse summary (metadata, malformed lines).
    pub fn scrape(
        &mut self,
        body: &[u8],
        format: vigil_common::exposition::Format,
        ctx: &Context,
        origin: Origin<'_>,
        max_series: usize,
    ) -> (Outcome<Collected>, vigil_common::exposition::Summary, u64) {
        let attached = Attached {
            job: origin.job.to_string(),
            instance: origin.instance.to_string(),
            base: ctx.base_labels().to_vec(),
        };
        if attached != self.attached {
            self.clear();
            self.attached = attached;
        }
        self.scrape += 1;
        let mut visit = Scrape {
            cache: self,
            ctx,
            origin,
            max_series,
            out: Outcome::default(),
            first_with_hash: FxHashMap::default(),
            samples: 0,
        };
        let summary = vigil_common::exposition::parse_with(body, format, &mut visit);
        let (out, samples) = (visit.out, visit.samples);
        self.forget_stale(samples as usize);
        (out, summary, samples)
    }

    /// Drops the series the last scrape did not show once the cache holds
    /// more than twice that scrape's samples (plus [`SLACK`]).
    fn forget_stale(&mut self, samples: usize) {
        if self.len() > samples.saturating_mul(2).saturating_add(SLACK) {
            let now = self.scrape;
            for map in &mut self.maps {
                map.retain(|_, slot| slot.seen == now);
            }
        }
    }
}

/// The visitor of one scrape.
struct Scrape<'a> {
    cache: &'a mut SeriesCache,
    ctx: &'a Context,
    origin: Origin<'a>,
    max_series: usize,
    out: Outcome<Collected>,
    /// Hash of a kept series -> index in `out.series` of the first with it.
    first_with_hash: FxHashMap<u64, usize>,
    samples: u64,
}

impl Scrape<'_> {
    fn add(&mut self, cached: &Cached, raw: &RawSample<'_>) {
        let (identity, hash) = match cached {
            Cached::Dropped => return,
            Cached::Invalid => {
                self.out.post_relabel += 1;
                self.out.rejected += 1;
                return;
            }
            Cached::Kept(identity, hash) => (identity, *hash),
        };
        self.out.post_relabel += 1;
        if let Some(&first) = self.first_with_hash.get(&hash) {
            let earlier = &self.out.series[first].identity;
            if Arc::ptr_eq(earlier, identity) || earlier == identity {
                self.out.rejected += 1;
                return;
            }
        }
        if self.out.series.len() >= self.max_series {
            self.out.over_limit += 1;
            return;
        }
        (self.first_with_hash)
            .entry(hash)
            .or_insert(self.out.series.len());
        let point = Point {
            timestamp_ms: raw.timestamp_ms.unwrap_or(self.ctx.timestamp_ms),
            value: raw.value,
        };
        // Validated by `series::judge` when it was cached.
        (self.out.series).push(Collected::checked(identity.clone(), vec![point]));
    }
}

impl Visitor for Scrape<'_> {
    fn known(&mut self, raw: &RawSample<'_>) -> bool {
        let now = self.cache.scrape;
        let Some(slot) = self.cache.maps[kind(raw.normalised)].get_mut(raw.series) else {
            return false;
        };
        // Counted here and in `parsed`: a line whose labels turn out
        // malformed is not a sample.
        self.samples += 1;
        slot.seen = now;
        let cached = slot.cached.clone();
        self.add(&cached, raw);
        true
    }

    fn parsed(&mut self, raw: &RawSample<'_>, sample: Sample) {
        self.samples += 1;
        let cache = &mut *self.cache;
        let cached = match series::judge(sample, self.ctx, self.origin, &cache.rules) {
            Verdict::Dropped => Cached::Dropped,
            Verdict::Invalid => Cached::Invalid,
            Verdict::Kept(name, labels) => {
                let hash = cache.hasher.hash_one((&name, &labels));
                Cached::Kept(Arc::new(Identity { name, labels }), hash)
            }
        };
        if cache.len() < cache.max_entries {
            let slot = Slot {
                cached: cached.clone(),
                seen: cache.scrape,
            };
            cache.maps[kind(raw.normalised)].insert(raw.series.into(), slot);
        }
        self.add(&cached, raw);
    }
}

#[cfg(test)]
mod tests;
