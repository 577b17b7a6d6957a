//! The wire format: what an agent sends and what the aggregator answers.
//!
//! Each batch travels on its own QUIC bidirectional stream:
//!
//! ```text
//! agent -> aggregator:  frame( bincode(SignedBatch) )     then FIN
//! aggregator -> agent:  frame( bincode(ServerMessage) )   then FIN
//! ```
//!
//! A frame is a big-endian `u32` length followed by that many bytes (see
//! [`crate::frame`]). `SignedBatch::batch` holds the *exact* bincode bytes of a
//! [`Batch`]; the Ed25519 signature covers those bytes, so the aggregator verifies
//! before it decodes and never re-encodes. The first field of the batch is the
//! protocol version, so a decoder can read it on its own and refuse a version it
//! does not know with [`RejectCode::UnsupportedVersion`].
//!
//! bincode 2's `standard` configuration (varint integers, little endian) is used
//! with a decode limit equal to the maximum frame size, so a hostile length prefix
//! inside the payload cannot make the decoder allocate more than a frame.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::frame::MAX_FRAME_BYTES;
use crate::model::{MetricMetadata, Series};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// ALPN protocol id for the QUIC connection.
pub const ALPN: &[u8] = b"vigil/1";

/// QUIC application close codes the aggregator closes connections with.
pub mod close {
    /// The aggregator is shutting down (or an enrollment exchange is over).
    pub const SHUTDOWN: u32 = 0;
    /// The client presented no usable certificate.
    pub const NO_IDENTITY: u32 = 1;
    /// Too many enrollments at once; try again later.
    pub const BUSY: u32 = 2;
    /// The agent is revoked: its connections are closed and refused.
    pub const REVOKED: u32 = 3;
}

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_FRAME_BYTES>,
>;

fn config() -> Config {
    bincode::config::standard().with_limit::<MAX_FRAME_BYTES>()
}

/// Who sent a batch, when, and where it sits in that agent's sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchHeader {
    /// Always first in the encoding, see the module docs.
    pub protocol_version: u16,
    /// Must equal the common name of the agent's client certificate.
    pub agent_id: String,
    /// Random per agent process start; with `sequence` it identifies a batch.
    pub boot_id: [u8; 16],
    /// Starts at 1 for every boot and increases by one per batch.
    pub sequence: u64,
    /// When the agent built the batch (ms since the epoch).
    pub created_at_ms: i64,
    /// The host the agent runs on (also the `host` label of its samples).
    pub host: String,
    /// The roles of this host (`api`, `db`, `cache`, ...).
    pub roles: Vec<String>,
}

/// A batch of samples from one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub header: BatchHeader,
    pub series: Vec<Series>,
    /// Type/help/unit of the metric families in this batch (may be empty).
    pub metadata: Vec<MetricMetadata>,
}

impl Batch {
    /// Total number of samples (points) in the batch.
    pub fn sample_count(&self) -> usize {
        self.series.iter().map(|s| s.points.len()).sum()
    }

    /// Encodes the batch; these bytes are what gets signed.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        encode(self)
    }

    /// Decodes a batch, first checking its protocol version.
    pub fn decode(bytes: &[u8]) -> Result<Batch, WireError> {
        let (version, _): (u16, usize) =
            bincode::serde::decode_from_slice(bytes, config()).map_err(WireError::Decode)?;
        if version != PROTOCOL_VERSION {
            return Err(WireError::UnsupportedVersion(version));
        }
        decode(bytes)
    }
}

/// Encodes a batch from borrowed parts: the same bytes as [`Batch::encode`]
/// of `Batch { header, series, metadata }`, provided each `S` serializes
/// exactly like a [`Series`] (the agent keeps label sets shared between
/// cycles and encodes them without first copying them into `Series` values).
pub fn encode_batch_parts<S: Serialize>(
    header: &BatchHeader,
    series: &[S],
    metadata: &[MetricMetadata],
) -> Result<Vec<u8>, WireError> {
    #[derive(Serialize)]
    struct BatchRef<'a, S> {
        header: &'a BatchHeader,
        series: &'a [S],
        metadata: &'a [MetricMetadata],
    }
    encode(&BatchRef {
        header,
        series,
        metadata,
    })
}

/// The frame payload an agent sends: encoded batch bytes and their signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedBatch {
    /// `Batch::encode()` output, verbatim. (`serde_bytes`: copied as one
    /// slice instead of byte by byte; the encoding is the same.)
    #[serde(with = "serde_bytes")]
    pub batch: Vec<u8>,
    /// Ed25519 signature over `batch`.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl SignedBatch {
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<SignedBatch, WireError> {
        decode(bytes)
    }
}

/// The aggregator's reply to one batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMessage {
    Ack(Ack),
    Reject(Reject),
}

impl ServerMessage {
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<ServerMessage, WireError> {
        decode(bytes)
    }
}

/// The batch is durably committed (or was already, if `duplicate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub sequence: u64,
    /// The batch had been committed before; nothing was stored this time.
    pub duplicate: bool,
    /// Samples newly stored by this batch.
    pub samples_stored: u64,
    /// Samples refused inside an accepted batch (e.g. timestamps out of bounds).
    pub samples_rejected: u64,
}

/// The batch was not committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    /// The batch's sequence number when it could be read.
    pub sequence: Option<u64>,
    pub code: RejectCode,
    pub message: String,
}

/// Why a batch was rejected. The agent's retry policy keys off this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RejectCode {
    /// The frame's length prefix exceeded the aggregator's limit.
    FrameTooLarge,
    /// The bytes could not be decoded (garbage, truncated, trailing bytes).
    Malformed,
    /// The batch's protocol version is not one the aggregator speaks.
    UnsupportedVersion,
    /// The signature does not verify against the agent's registered key.
    BadSignature,
    /// The batch's agent id is not the one in the client certificate.
    AgentMismatch,
    /// No signing key is registered for this agent id.
    UnknownAgent,
    /// The agent has been revoked.
    RevokedAgent,
    /// The batch decoded but its content is invalid (bad names, labels, ...).
    InvalidBatch,
    /// The aggregator cannot commit right now (database down, overloaded).
    Unavailable,
}

impl RejectCode {
    /// Every code, for metrics that pre-register one series per reason.
    pub const ALL: [RejectCode; 9] = [
        RejectCode::FrameTooLarge,
        RejectCode::Malformed,
        RejectCode::UnsupportedVersion,
        RejectCode::BadSignature,
        RejectCode::AgentMismatch,
        RejectCode::UnknownAgent,
        RejectCode::RevokedAgent,
        RejectCode::InvalidBatch,
        RejectCode::Unavailable,
    ];

    /// Stable snake_case name, used as the `reason` label of counters.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::FrameTooLarge => "frame_too_large",
            RejectCode::Malformed => "malformed",
            RejectCode::UnsupportedVersion => "unsupported_version",
            RejectCode::BadSignature => "bad_signature",
            RejectCode::AgentMismatch => "agent_mismatch",
            RejectCode::UnknownAgent => "unknown_agent",
            RejectCode::RevokedAgent => "revoked_agent",
            RejectCode::InvalidBatch => "invalid_batch",
            RejectCode::Unavailable => "unavailable",
        }
    }

    /// Whether resending the same bytes later can succeed. Identity problems
    /// count as retryable: an operator can fix a registration, and dropping the
    /// data while they do would break "nothing is lost".
    pub fn is_retryable(self) -> bool {
        match self {
            RejectCode::Unavailable
            | RejectCode::UnknownAgent
            | RejectCode::RevokedAgent
            | RejectCode::BadSignature
            | RejectCode::AgentMismatch => true,
            RejectCode::FrameTooLarge
            | RejectCode::Malformed
            | RejectCode::UnsupportedVersion
            | RejectCode::InvalidBatch => false,
        }
    }
}

impl std::fmt::Display for RejectCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Encoding and decoding failures.
#[derive(Debug, Error)]
pub enum WireError {
    #[error("encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("decode: {0}")]
    Decode(bincode::error::DecodeError),
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    #[error("unsupported protocol version {0} (this build speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion(u16),
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, WireError> {
    Ok(bincode::serde::encode_to_vec(value, config())?)
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let (value, used) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(WireError::Decode)?;
    if used != bytes.len() {
        return Err(WireError::TrailingBytes(bytes.len() - used));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Label, MetricKind, Point};
    use proptest::prelude::*;

    pub(crate) fn sample_batch() -> Batch {
        Batch {
            header: BatchHeader {
                protocol_version: PROTOCOL_VERSION,
                agent_id: "web-1".into(),
                boot_id: [7; 16],
                sequence: 42,
                created_at_ms: 1_764_000_000_000,
                host: "web-1".into(),
                roles: vec!["api".into()],
            },
            series: vec![Series::new(
                "system_load1",
                vec![Label::new("host", "web-1"), Label::new("role", "api")],
                vec![Point {
                    timestamp_ms: 1_764_000_000_000,
                    value: 0.5,
                }],
            )],
            metadata: vec![MetricMetadata {
                name: "system_load1".into(),
                kind: MetricKind::Gauge,
                help: "1-minute load average".into(),
                unit: String::new(),
            }],
        }
    }

    #[test]
    fn batch_round_trips() {
        let b = sample_batch();
        let bytes = b.encode().expect("encode");
        assert_eq!(Batch::decode(&bytes).expect("decode"), b);
        assert_eq!(b.sample_count(), 1);
    }

    #[test]
    fn batch_parts_encode_to_the_same_bytes() {
        let b = sample_batch();
        let parts = encode_batch_parts(&b.header, &b.series, &b.metadata).expect("encode");
        assert_eq!(parts, b.encode().expect("encode"));
    }

    #[test]
    fn other_versions_are_refused_before_decoding() {
        let mut b = sample_batch();
        b.header.protocol_version = 9;
        let bytes = b.encode().expect("encode");
        assert!(matches!(
            Batch::decode(&bytes),
            Err(WireError::UnsupportedVersion(9))
        ));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = sample_batch().encode().expect("encode");
        bytes.push(0);
        assert!(matches!(
            Batch::decode(&bytes),
            Err(WireError::TrailingBytes(1))
        ));
    }

    #[test]
    fn huge_claimed_lengths_fail_without_allocating() {
        // version 1, then an agent id claiming u64::MAX bytes.
        let mut bytes = vec![1u8];
        bytes.push(253); // varint marker for u64
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(Batch::decode(&bytes), Err(WireError::Decode(_))));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Batch::decode(&bytes);
            let _ = SignedBatch::decode(&bytes);
            let _ = ServerMessage::decode(&bytes);
        }

        #[test]
        fn any_batch_round_trips(
            seq in any::<u64>(),
            ts in any::<i64>(),
            value in any::<f64>().prop_filter("NaN compares unequal", |v| !v.is_nan()),
            host in "[a-z0-9-]{1,20}",
        ) {
            let mut b = sample_batch();
            b.header.sequence = seq;
            b.header.host = host;
            b.series[0].points[0] = Point { timestamp_ms: ts, value };
            let bytes = b.encode().expect("encode");
            prop_assert_eq!(Batch::decode(&bytes).expect("decode"), b);
        }
    }
}
