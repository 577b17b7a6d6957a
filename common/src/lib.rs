//! vigil-common: the contract between agent and aggregator.
//!
//! Everything that crosses the wire lives here and only here: the data model
//! ([`model`]), the encoded batch and replies ([`wire`]), length-prefixed
//! framing ([`frame`]), Ed25519 signing of the exact encoded bytes ([`sign`]),
//! the mutual-TLS setup both ends share ([`tls`]), and the Prometheus text
//! exposition parser the agent scrapes with and the aggregator imports with
//! ([`exposition`]).
#![forbid(unsafe_code)]

pub mod config;
pub mod enroll;
pub mod exposition;
pub mod frame;
pub mod keyfile;
pub mod model;
pub mod secret;
pub mod sign;
pub mod tls;
pub mod wire;

pub use model::{Label, MetricKind, MetricMetadata, Point, Series};
pub use wire::{Ack, Batch, BatchHeader, Reject, RejectCode, ServerMessage, SignedBatch};

/// Milliseconds since the Unix epoch, the timestamp unit used everywhere.
pub fn now_ms() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        // A clock before 1970 is broken; report the epoch rather than panic.
        Err(_) => 0,
    }
}
