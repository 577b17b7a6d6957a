//! `[http_ingest]`: size caps of `POST /api/v1/write` and `/api/v1/import`.

use serde::Deserialize;

/// `[http_ingest]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpIngestConfig {
    /// Largest remote_write body accepted as sent (snappy-compressed), bytes.
    #[serde(default = "default_max_compressed_bytes")]
    pub max_compressed_bytes: usize,
    /// Largest remote_write body once decompressed, bytes.
    #[serde(default = "default_max_decompressed_bytes")]
    pub max_decompressed_bytes: usize,
    /// Largest text exposition accepted by `/api/v1/import`, bytes.
    #[serde(default = "default_max_import_bytes")]
    pub max_import_bytes: usize,
    /// Write and import requests processed at once; more wait up to 10 s
    /// for a turn (backpressure), then get 503 and the sender retries.
    #[serde(default = "default_max_concurrent_requests")]
    pub max_concurrent_requests: usize,
}

impl Default for HttpIngestConfig {
    fn default() -> Self {
        HttpIngestConfig {
            max_compressed_bytes: default_max_compressed_bytes(),
            max_decompressed_bytes: default_max_decompressed_bytes(),
            max_import_bytes: default_max_import_bytes(),
            max_concurrent_requests: default_max_concurrent_requests(),
        }
    }
}

/// Prometheus sends at most a few MiB per request (2,000 samples by default).
fn default_max_compressed_bytes() -> usize {
    8 * 1024 * 1024
}
fn default_max_decompressed_bytes() -> usize {
    64 * 1024 * 1024
}
/// Parsed text takes several times its size in memory; split bigger files.
fn default_max_import_bytes() -> usize {
    16 * 1024 * 1024
}

/// Bodies are held in memory whole: this bounds how many at once.
fn default_max_concurrent_requests() -> usize {
    4
}

/// Upper bound of every cap: a request is held in memory whole.
const MAX_CAP: usize = 1024 * 1024 * 1024;

impl HttpIngestConfig {
    /// Adds every problem to `problems`.
    pub fn validate(&self, problems: &mut Vec<String>) {
        for (name, value) in [
            ("max_compressed_bytes", self.max_compressed_bytes),
            ("max_decompressed_bytes", self.max_decompressed_bytes),
            ("max_import_bytes", self.max_import_bytes),
        ] {
            if !(1024..=MAX_CAP).contains(&value) {
                problems.push(format!(
                    "http_ingest.{name} must be between 1024 and {MAX_CAP}"
                ));
            }
        }
        if !(1..=1024).contains(&self.max_concurrent_requests) {
            problems.push("http_ingest.max_concurrent_requests must be between 1 and 1024".into());
        }
        if self.max_decompressed_bytes < self.max_compressed_bytes {
            problems.push(
                "http_ingest.max_decompressed_bytes must be at least max_compressed_bytes".into(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bounds_are_checked() {
        let mut problems = Vec::new();
        HttpIngestConfig::default().validate(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let bad = HttpIngestConfig {
            max_compressed_bytes: 10,
            max_decompressed_bytes: 5,
            max_import_bytes: usize::MAX,
            max_concurrent_requests: 0,
        };
        bad.validate(&mut problems);
        assert_eq!(problems.len(), 5, "{problems:?}");
        let parsed: HttpIngestConfig = toml::from_str("max_import_bytes = 2048").expect("parses");
        assert_eq!(parsed.max_import_bytes, 2048);
        assert!(toml::from_str::<HttpIngestConfig>("max_body = 1").is_err());
    }
}
