//! vigil-aggregator: receives signed batches from agents over QUIC, stores them,
//! and serves the HTTP API. See docs/ARCHITECTURE.md for the map of this crate.
#![forbid(unsafe_code)]

pub mod alert;
pub mod audit;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod notify;
pub mod query;
pub mod quickstart;
pub mod server;
pub mod store;
#[doc(hidden)]
pub mod testing;

pub use config::Config;
pub use server::{Running, StartError, start};
