//! Golden bytes for the wire format. If this fails, the encoding changed: that
//! breaks every deployed agent, so bump `PROTOCOL_VERSION` and keep decoding the
//! old version, then re-bless with `VIGIL_BLESS=1 cargo test -p vigil-common --test golden`.

use std::path::PathBuf;

use vigil_common::model::{Label, MetricKind, MetricMetadata, Point, Series};
use vigil_common::sign;
use vigil_common::wire::{Batch, BatchHeader, PROTOCOL_VERSION, SignedBatch};

fn golden_batch() -> Batch {
    let labels = |extra: Vec<Label>| {
        let mut l = vec![Label::new("host", "db-1"), Label::new("role", "db")];
        l.extend(extra);
        l
    };
    Batch {
        header: BatchHeader {
            protocol_version: PROTOCOL_VERSION,
            agent_id: "db-1".into(),
            boot_id: *b"0123456789abcdef",
            sequence: 7,
            created_at_ms: 1_764_171_000_123,
            host: "db-1".into(),
            roles: vec!["db".into(), "cache".into()],
        },
        series: vec![
            Series::new(
                "system_cpu_usage_ratio",
                labels(vec![]),
                vec![
                    Point {
                        timestamp_ms: 1_764_171_000_000,
                        value: 0.25,
                    },
                    Point {
                        timestamp_ms: 1_764_171_010_000,
                        value: 0.5,
                    },
                ],
            ),
            Series::new(
                "system_filesystem_used_bytes",
                labels(vec![Label::new("mount", "/")]),
                vec![Point {
                    timestamp_ms: 1_764_171_000_000,
                    value: 1.5e10,
                }],
            ),
            Series::new(
                "weird_values",
                labels(vec![Label::new("unicode", "μs ✓")]),
                vec![
                    Point {
                        timestamp_ms: -1,
                        value: f64::INFINITY,
                    },
                    Point {
                        timestamp_ms: i64::MAX,
                        value: -0.0,
                    },
                ],
            ),
        ],
        metadata: vec![MetricMetadata {
            name: "system_cpu_usage_ratio".into(),
            kind: MetricKind::Gauge,
            help: "CPU busy ratio".into(),
            unit: "ratio".into(),
        }],
    }
}

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/signed_batch_v1.bin")
}

fn encode_golden() -> Vec<u8> {
    let key = sign::SigningKey::from_bytes(&[42u8; 32]);
    let batch = golden_batch().encode().expect("encode");
    let signature = sign::sign(&key, &batch);
    SignedBatch { batch, signature }.encode().expect("encode")
}

#[test]
fn golden_signed_batch_still_decodes() {
    if std::env::var_os("VIGIL_BLESS").is_some() {
        std::fs::write(golden_path(), encode_golden()).expect("bless");
    }
    let bytes = std::fs::read(golden_path()).expect("golden file is committed");
    let signed = SignedBatch::decode(&bytes).expect("golden envelope decodes");
    let key = sign::SigningKey::from_bytes(&[42u8; 32]);
    assert!(sign::verify(
        &key.verifying_key(),
        &signed.batch,
        &signed.signature
    ));
    let batch = Batch::decode(&signed.batch).expect("golden batch decodes");
    assert_eq!(batch, golden_batch());
    assert_eq!(bytes, encode_golden(), "encoding is byte-for-byte stable");
}
