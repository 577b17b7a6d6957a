//! The probe collector: an HTTP(S) health check of one URL, with
//! blackbox_exporter's metric names.
//!
//! Every cycle opens a fresh connection (the handshake is part of what is
//! measured, and the TLS certificate is seen each time), sends GET or HEAD,
//! reads at most [`MAX_BODY_BYTES`] of the body and closes. Any failure
//! (refused, TLS error, timeout, unexpected status) is `probe_success 0`,
//! never a collector error.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hyper::Method;
use serde::Deserialize;
use vigil_common::{MetricKind, MetricMetadata, Series};

use super::http::{self, BodyPolicy, Client, FailureLog, HttpError, Target};
use super::{CollectError, Collector, Context};

use MetricKind::Gauge;

#[rustfmt::skip]
const FAMILIES: &[(&str, MetricKind, &str, &str)] = &[
    ("probe_success", Gauge, "1 if the probe succeeded (connected, expected status), 0 if not", ""),
    ("probe_http_status_code", Gauge, "HTTP status of the response, 0 when there was none", ""),
    ("probe_duration_seconds", Gauge, "Time to connect, send the request and read the response", "seconds"),
    ("probe_tls_cert_expiry_timestamp_seconds", Gauge, "Expiry of the server's leaf certificate, seconds since the epoch", "seconds"),
    ("probe_tls_cert_days_left", Gauge, "Days until the server's leaf certificate expires", ""),
];

/// Body bytes read (for timing) before the probe stops reading.
pub const MAX_BODY_BYTES: u64 = 1 << 20;
/// Probe timeout when not configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// `[[collect.probe]]`: one URL to check.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ProbeConfig {
    /// The probe's name: its `probe` label and its `collector` label.
    pub name: String,
    /// The URL checked, `http(s)://host[:port]/path`.
    pub url: String,
    /// `GET` (default) or `HEAD`.
    #[serde(default)]
    pub method: ProbeMethod,
    /// Time allowed for connecting, the TLS handshake and the response.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Status codes that count as success; empty means any 2xx.
    #[serde(default)]
    pub expected_status: Vec<u16>,
    /// CA certificates (PEM) trusted for an https URL instead of the system's,
    /// e.g. the Vigil CA to probe the aggregator.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The `role` label of the probe's series (default: the host's first role).
    #[serde(default)]
    pub role: Option<String>,
}

/// The request method of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ProbeMethod {
    #[default]
    Get,
    Head,
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

impl ProbeConfig {
    /// A GET probe of `url` named `name`, every other setting at its default.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        ProbeConfig {
            name: name.into(),
            url: url.into(),
            method: ProbeMethod::Get,
            timeout: default_timeout(),
            expected_status: Vec::new(),
            ca_file: None,
            role: None,
        }
    }

    /// Resolves `ca_file` against the config file's folder.
    pub fn resolve(&mut self, config_path: &Path) {
        if let Some(p) = &mut self.ca_file {
            *p = vigil_common::config::resolve(config_path, p);
        }
    }

    fn expected(&self, status: u16) -> bool {
        if self.expected_status.is_empty() {
            (200..300).contains(&status)
        } else {
            self.expected_status.contains(&status)
        }
    }
}

/// Checks one URL per cycle.
pub struct ProbeCollector {
    config: ProbeConfig,
    client: Client,
    timeout: Duration,
    log: FailureLog,
}

impl ProbeCollector {
    /// A collector for a validated `config`; `agent_interval` bounds the timeout
    /// as for scrapes.
    pub fn new(config: ProbeConfig, agent_interval: Duration) -> Result<Self, CollectError> {
        let source = |e: String| CollectError::Source(format!("probe {}: {e}", config.name));
        let target = Target::parse(&config.url).map_err(source)?;
        let tls = match target.https {
            true => Some(http::tls_config(config.ca_file.as_deref()).map_err(source)?),
            false => None,
        };
        let client = Client::new(target, tls, None, false).map_err(|e| source(e.to_string()))?;
        Ok(ProbeCollector {
            timeout: config
                .timeout
                .min(super::scrape::timeout_cap(agent_interval)),
            client,
            config,
            log: FailureLog::default(),
        })
    }
}

/// Expiry of a DER certificate, seconds since the epoch.
fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

#[async_trait]
impl Collector for ProbeCollector {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn role(&self) -> Option<&str> {
        self.config.role.as_deref()
    }

    fn metadata(&self) -> Vec<MetricMetadata> {
        super::metadata(FAMILIES)
    }

    async fn collect(&mut self, ctx: &Context) -> Result<Vec<Series>, CollectError> {
        let method = match self.config.method {
            ProbeMethod::Get => Method::GET,
            ProbeMethod::Head => Method::HEAD,
        };
        let started = Instant::now();
        let request = self
            .client
            .request(method, None, BodyPolicy::Discard(MAX_BODY_BYTES));
        let result = match tokio::time::timeout(self.timeout, request).await {
            Ok(result) => result,
            Err(_) => Err(HttpError::Timeout(self.timeout)),
        };
        let elapsed = started.elapsed().as_secs_f64();
        let (status, cert) = match result {
            Ok(r) => (r.status, r.peer_cert),
            Err(e) => {
                self.log.failure("probe", &self.config.name, &e);
                (0, None)
            }
        };
        let success = status != 0 && self.config.expected(status);
        if success {
            self.log.success("probe", &self.config.name);
        } else if status != 0 {
            let e = HttpError::Status(status);
            self.log.failure("probe", &self.config.name, &e);
        }
        let labels = [("probe", self.config.name.as_str())];
        let mut out = vec![
            ctx.series("probe_success", &labels, f64::from(u8::from(success))),
            ctx.series("probe_http_status_code", &labels, f64::from(status)),
            ctx.series("probe_duration_seconds", &labels, elapsed),
        ];
        if let Some(expiry) = cert.as_deref().and_then(not_after) {
            let days = (expiry as f64 * 1000.0 - ctx.timestamp_ms as f64) / 86_400_000.0;
            out.push(ctx.series(
                "probe_tls_cert_expiry_timestamp_seconds",
                &labels,
                expiry as f64,
            ));
            out.push(ctx.series("probe_tls_cert_days_left", &labels, days));
        }
        Ok(out)
    }
}
