//! The query side: a PromQL engine over a [`Source`] of series.
//!
//! Layering (each piece is replaceable and tested on its own):
//! - [`source`]: the [`Source`] trait, what the engine reads: series chosen by
//!   label matchers with their samples in a time range. Implemented by the
//!   head + store reader (`store::reader`) in production and by
//!   [`source::MemorySource`] in tests.
//! - `engine`: parses with `promql-parser`, works out which selectors need
//!   which time ranges, fetches them from the source (async, once per
//!   selector), then evaluates synchronously in memory, following
//!   Prometheus' documented semantics (lookback delta, staleness, rate
//!   extrapolation, ...).
//! - the HTTP layers (`http::prometheus`, `http::api`) turn requests into
//!   engine calls and results into Prometheus' JSON shapes.

pub mod source;

pub use source::{Labels, MemorySource, Need, RawSeries, SelectHints, Source, SourceError};
pub mod engine;

pub use engine::{Engine, Limits, QueryError, Sample, Value};
