//! Turns a collection into signed, encoded batches.
//!
//! A collection larger than `max_batch_samples` is split on series boundaries
//! (a series with more points than the limit travels alone). Each batch gets the
//! next sequence number of this boot, the metadata of the families it carries,
//! and an Ed25519 signature over its exact encoded bytes.

use std::collections::HashSet;
use std::sync::Arc;

use vigil_common::frame::MAX_FRAME_BYTES;
use vigil_common::sign::{self, SigningKey};
use vigil_common::wire::{PROTOCOL_VERSION, WireError, encode_batch_parts};
use vigil_common::{BatchHeader, MetricMetadata, SignedBatch};

use crate::collect::{Collected, Collection};
use crate::spool::QueuedBatch;

/// Why a batch could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("encoding batch {sequence}: {source}")]
    Encode { sequence: u64, source: WireError },
    #[error("batch {sequence} encodes to {len} bytes, over the {MAX_FRAME_BYTES}-byte frame limit")]
    TooLarge { sequence: u64, len: usize },
}

/// Builds batches for one agent process (one boot id, one sequence).
pub struct Batcher {
    agent_id: String,
    host: String,
    roles: Vec<String>,
    boot_id: [u8; 16],
    next_sequence: u64,
    key: SigningKey,
    max_samples: usize,
}

/// A batch that could not be built, with the number of samples it held.
pub type Failed = (BatchError, u64);

impl Batcher {
    /// A batcher whose first batch has sequence 1.
    pub fn new(
        agent_id: String,
        host: String,
        roles: Vec<String>,
        boot_id: [u8; 16],
        key: SigningKey,
        max_samples: usize,
    ) -> Self {
        Batcher {
            agent_id,
            host,
            roles,
            boot_id,
            next_sequence: 1,
            key,
            max_samples: max_samples.max(1),
        }
    }

    /// Splits, signs and encodes `collection`. Failed batches are returned
    /// with their sample count so the caller can log and count them.
    pub fn build(&mut self, collection: Collection) -> (Vec<QueuedBatch>, Vec<Failed>) {
        let mut ok = Vec::new();
        let mut failed = Vec::new();
        for chunk in split(collection.series, self.max_samples) {
            let metadata = metadata_for(&chunk, &collection.metadata);
            match self.sign(chunk, metadata) {
                Ok(b) => ok.push(b),
                Err(f) => failed.push(f),
            }
        }
        (ok, failed)
    }

    fn sign(
        &mut self,
        series: Vec<Collected>,
        metadata: Vec<MetricMetadata>,
    ) -> Result<QueuedBatch, Failed> {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let header = BatchHeader {
            protocol_version: PROTOCOL_VERSION,
            agent_id: self.agent_id.clone(),
            boot_id: self.boot_id,
            sequence,
            created_at_ms: vigil_common::now_ms(),
            host: self.host.clone(),
            roles: self.roles.clone(),
        };
        let samples = series.iter().map(|s| s.points.len() as u64).sum();
        let encode = |source| (BatchError::Encode { sequence, source }, samples);
        // The bytes `Batch::encode` would give, without copying the shared
        // label sets into `Series` values first.
        let bytes = encode_batch_parts(&header, &series, &metadata).map_err(encode)?;
        drop(series);
        let signature = sign::sign(&self.key, &bytes);
        let payload = SignedBatch {
            batch: bytes,
            signature,
        }
        .encode()
        .map_err(encode)?;
        if payload.len() > MAX_FRAME_BYTES {
            let len = payload.len();
            return Err((BatchError::TooLarge { sequence, len }, samples));
        }
        Ok(QueuedBatch {
            sequence,
            samples,
            boot_id: self.boot_id,
            payload: Arc::from(payload),
        })
    }
}

/// Splits series into chunks of at most `max` samples (an oversized series alone).
fn split(series: Vec<Collected>, max: usize) -> Vec<Vec<Collected>> {
    let mut chunks = Vec::new();
    let mut current = Vec::new();
    let mut count = 0;
    for s in series {
        let n = s.points.len();
        if !current.is_empty() && count + n > max {
            chunks.push(std::mem::take(&mut current));
            count = 0;
        }
        count += n;
        current.push(s);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// The metadata of the families present in `series` (histogram and summary
/// suffixes map to their family name).
fn metadata_for(series: &[Collected], all: &[MetricMetadata]) -> Vec<MetricMetadata> {
    let mut names: HashSet<&str> = HashSet::new();
    for s in series {
        names.insert(s.name());
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(family) = s.name().strip_suffix(suffix) {
                names.insert(family);
            }
        }
    }
    let mut seen = HashSet::new();
    all.iter()
        .filter(|m| names.contains(m.name.as_str()) && seen.insert(m.name.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_common::{Batch, MetricKind, Point, Series};

    fn series(name: &str, points: usize) -> Collected {
        let p = Point {
            timestamp_ms: 1,
            value: 1.0,
        };
        Series::new(name, vec![], vec![p; points]).into()
    }

    #[test]
    fn splits_on_series_boundaries() {
        let sizes = |chunks: &Vec<Vec<Collected>>| -> Vec<usize> {
            chunks
                .iter()
                .map(|c| c.iter().map(|s| s.points.len()).sum())
                .collect()
        };
        let input: Vec<Collected> = (0..7).map(|i| series(&format!("m{i}"), 1)).collect();
        assert_eq!(sizes(&split(input, 3)), vec![3, 3, 1]);
        let input = vec![series("a", 1), series("big", 5), series("b", 1)];
        assert_eq!(sizes(&split(input, 2)), vec![1, 5, 1]);
        assert!(split(Vec::new(), 3).is_empty());
    }

    #[test]
    fn batches_are_signed_sequenced_and_carry_their_metadata() {
        let key = sign::generate_signing_key().expect("key");
        let mut b = Batcher::new(
            "a1".into(),
            "h".into(),
            vec!["api".into()],
            [9; 16],
            key.clone(),
            2,
        );
        let md = |name: &str| MetricMetadata {
            name: name.into(),
            kind: MetricKind::Gauge,
            help: String::new(),
            unit: String::new(),
        };
        let collection = Collection {
            series: vec![series("x", 1), series("y", 1), series("h_bucket", 1)],
            metadata: vec![md("x"), md("y"), md("h"), md("unused")],
        };
        let (ok, failed) = b.build(collection);
        assert!(failed.is_empty());
        assert_eq!(
            ok.iter().map(|q| q.sequence).collect::<Vec<_>>(),
            vec![1, 2]
        );
        let signed = SignedBatch::decode(&ok[1].payload).expect("signed batch");
        assert!(sign::verify(
            &key.verifying_key(),
            &signed.batch,
            &signed.signature
        ));
        let batch = Batch::decode(&signed.batch).expect("batch");
        // Exactly the canonical encoding of what it decodes to.
        assert_eq!(batch.encode().expect("encode"), signed.batch);
        assert_eq!(batch.series, vec![series("h_bucket", 1).to_series()]);
        assert_eq!(batch.header.sequence, 2);
        assert_eq!(batch.header.boot_id, [9; 16]);
        assert_eq!(batch.header.agent_id, "a1");
        assert_eq!(
            batch
                .metadata
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>(),
            vec!["h"]
        );
        assert_eq!(ok[0].samples, 2);
        let (next, _) = b.build(Collection {
            series: vec![series("z", 1)],
            metadata: vec![],
        });
        assert_eq!(next[0].sequence, 3);
    }
}
