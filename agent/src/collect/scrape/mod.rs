//! The scrape collector: reads a Prometheus text (0.0.4) or OpenMetrics
//! endpoint, as Prometheus would, and forwards its series.
//!
//! Each cycle (or each `interval`, when set): GET the URL over the kept-alive
//! connection ([`http`](crate::collect::http)) under the timeout and body cap,
//! parse it (`vigil_common::exposition`), attach labels and relabel ([`series`], [`relabel`]).
//! A failed scrape is not a collector error: it yields `up 0` with the other
//! synthetic series, and the rest of the batch goes out as usual.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hyper::Method;
use hyper::header::HeaderValue;
use serde::Deserialize;
use vigil_common::{MetricKind, MetricMetadata, Series};

use super::http::{self, BodyPolicy, Client, FailureLog, HttpError, Target};
use super::{CollectError, Collected, Collector, Context};

pub mod cache;
mod config;
pub mod relabel;
pub mod series;

pub use config::{config_problems, file_problems, scrapes};

use cache::SeriesCache;
use relabel::RelabelConfig;
use series::Origin;
use vigil_common::exposition::Format;

/// What a scrape asks for, in Prometheus' order of preference.
const ACCEPT: &str = "application/openmetrics-text;version=1.0.0;q=0.5,\
    application/openmetrics-text;version=0.0.1;q=0.4,\
    text/plain;version=0.0.4;q=0.3,*/*;q=0.2";

use MetricKind::Gauge;

#[rustfmt::skip]
const SYNTHETIC: &[(&str, MetricKind, &str, &str)] = &[
    ("up", Gauge, "1 if the target was scraped successfully, 0 if not", ""),
    ("scrape_duration_seconds", Gauge, "Duration of the scrape", "seconds"),
    ("scrape_samples_scraped", Gauge, "Samples the target exposed", ""),
    ("scrape_samples_post_metric_relabeling", Gauge, "Samples left after relabelling", ""),
    ("scrape_malformed_lines", Gauge, "Lines that could not be parsed, plus duplicate or invalid series, in the last scrape", ""),
    ("scrape_series_dropped", Gauge, "Series dropped in the last scrape because max_series was reached", ""),
    ("scrape_body_size_bytes", Gauge, "Size of the last response body", "bytes"),
];

/// `[[collect.scrape]]`: one Prometheus/OpenMetrics endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ScrapeConfig {
    /// The scrape's name: its `job` label and its `collector` label.
    pub name: String,
    /// The endpoint, `http(s)://host[:port]/path`.
    pub url: String,
    /// The `role` label of the scraped series.
    #[serde(default = "default_role")]
    pub role: String,
    /// Scrape at most this often (the agent's interval when not set).
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// Time allowed for connecting, the request and reading the body.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Larger bodies are refused (up 0) after reading at most this much.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Series kept per scrape; the rest are dropped and counted.
    #[serde(default = "default_max_series")]
    pub max_series: usize,
    /// CA certificates (PEM) trusted for an https URL instead of the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Sent as `Authorization: Bearer <token>`.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// Sent as HTTP basic authentication.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// Rules applied in order to every scraped series (`[[collect.scrape.relabel]]`).
    #[serde(default)]
    pub relabel: Vec<RelabelConfig>,
}

/// `basic_auth = { username = "...", password = "..." }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BasicAuth {
    /// The user name.
    pub username: String,
    /// The password.
    #[serde(default)]
    pub password: String,
}

/// The role of scraped series when not configured.
pub const DEFAULT_ROLE: &str = "api";
/// Scrape timeout when not configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Body cap when not configured: 10 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 << 20;
/// Series cap when not configured.
pub const DEFAULT_MAX_SERIES: usize = 50_000;

fn default_role() -> String {
    DEFAULT_ROLE.into()
}
fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}
fn default_max_body_bytes() -> u64 {
    DEFAULT_MAX_BODY_BYTES
}
fn default_max_series() -> usize {
    DEFAULT_MAX_SERIES
}

impl ScrapeConfig {
    /// A scrape of `url` named `name`, every other setting at its default.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        ScrapeConfig {
            name: name.into(),
            url: url.into(),
            role: default_role(),
            interval: None,
            timeout: default_timeout(),
            max_body_bytes: default_max_body_bytes(),
            max_series: default_max_series(),
            ca_file: None,
            bearer_token: None,
            basic_auth: None,
            relabel: Vec::new(),
        }
    }

    /// Resolves `ca_file` against the config file's folder.
    pub fn resolve(&mut self, config_path: &Path) {
        if let Some(p) = &mut self.ca_file {
            *p = vigil_common::config::resolve(config_path, p);
        }
    }

    /// The `Authorization` header value, if any.
    fn authorization(&self) -> Option<String> {
        match (&self.bearer_token, &self.basic_auth) {
            (Some(token), _) => Some(format!("Bearer {token}")),
            (None, Some(b)) => Some(http::basic_auth(&b.username, &b.password)),
            (None, None) => None,
        }
    }
}

/// Scrapes one endpoint.
pub struct ScrapeCollector {
    config: ScrapeConfig,
    client: Client,
    instance: String,
    series: SeriesCache,
    timeout: Duration,
    last: Option<Instant>,
    accept: HeaderValue,
    families: Vec<MetricMetadata>,
    log: FailureLog,
}

/// The longest a scrape may take inside the collector runner's budget
/// (90% of the interval, at least 1 s), so the runner never cuts a scrape off
/// before it can report `up 0`.
pub(crate) fn timeout_cap(agent_interval: Duration) -> Duration {
    agent_interval
        .mul_f64(0.9)
        .max(Duration::from_secs(1))
        .mul_f64(0.9)
}

impl ScrapeCollector {
    /// A collector for a validated `config`; `agent_interval` is the
    /// collection interval. Fails on what validation checks (URL, rules, CA).
    pub fn new(config: ScrapeConfig, agent_interval: Duration) -> Result<Self, CollectError> {
        let source = |e: String| CollectError::Source(format!("scrape {}: {e}", config.name));
        let target = Target::parse(&config.url).map_err(source)?;
        let rules = (config.relabel.iter().enumerate())
            .map(|(i, r)| r.compile(&format!("relabel[{i}]")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|p| source(p.join("; ")))?;
        let tls = match target.https {
            true => Some(http::tls_config(config.ca_file.as_deref()).map_err(source)?),
            false => None,
        };
        let auth = config.authorization();
        let client =
            Client::new(target, tls, auth.as_deref(), true).map_err(|e| source(e.to_string()))?;
        Ok(ScrapeCollector {
            instance: client.target().instance(),
            timeout: config.timeout.min(timeout_cap(agent_interval)),
            client,
            series: SeriesCache::new(rules, config.max_series.saturating_mul(2)),
            last: None,
            accept: HeaderValue::from_static(ACCEPT),
            families: Vec::new(),
            log: FailureLog::default(),
            config,
        })
    }

    /// Whether this cycle should scrape, given the optional own interval.
    fn due(&mut self) -> bool {
        let now = Instant::now();
        // A little slack so that e.g. 30 s at a 10 s agent interval is every
        // third cycle even when cycles run a few milliseconds early.
        let due = match (self.config.interval, self.last) {
            (Some(every), Some(last)) => now.duration_since(last) + every / 20 >= every,
            _ => true,
        };
        if due {
            self.last = Some(now);
        }
        due
    }

    async fn fetch(&mut self) -> Result<(Vec<u8>, Format), HttpError> {
        let accept = self.accept.clone();
        let policy = BodyPolicy::Keep(self.config.max_body_bytes);
        let request = self.client.request(Method::GET, Some(&accept), policy);
        let response = tokio::time::timeout(self.timeout, request)
            .await
            .map_err(|_| HttpError::Timeout(self.timeout))??;
        if !(200..300).contains(&response.status) {
            return Err(HttpError::Status(response.status));
        }
        if let Some(enc) = response.content_encoding.filter(|e| e != "identity") {
            return Err(HttpError::Encoding(enc));
        }
        let format = Format::from_content_type(response.content_type.as_deref());
        Ok((response.body, format))
    }
}

#[async_trait]
impl Collector for ScrapeCollector {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn role(&self) -> Option<&str> {
        Some(&self.config.role)
    }

    fn metadata(&self) -> Vec<MetricMetadata> {
        let mut all = super::metadata(SYNTHETIC);
        all.extend(self.families.iter().cloned());
        all
    }

    async fn collect(&mut self, ctx: &Context) -> Result<Vec<Series>, CollectError> {
        let shared = self.collect_shared(ctx).await?;
        Ok(shared.iter().map(Collected::to_series).collect())
    }

    async fn collect_shared(&mut self, ctx: &Context) -> Result<Vec<Collected>, CollectError> {
        if !self.due() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let fetched = self.fetch().await;
        let origin = Origin {
            job: &self.config.name,
            instance: &self.instance,
        };
        let mut stats = [
            ("up", 0.0),
            ("scrape_samples_scraped", 0.0),
            ("scrape_samples_post_metric_relabeling", 0.0),
            ("scrape_malformed_lines", 0.0),
            ("scrape_series_dropped", 0.0),
            ("scrape_body_size_bytes", 0.0),
        ];
        let mut out = Vec::new();
        match fetched {
            Ok((body, format)) => {
                let size = body.len();
                let max_series = self.config.max_series;
                let (built, exposition, scraped) =
                    (self.series).scrape(&body, format, ctx, origin, max_series);
                drop(body);
                if let Some((line, why)) = exposition.first_error {
                    tracing::debug!(scrape = %self.config.name, line, why,
                        malformed = exposition.malformed, "malformed lines skipped");
                }
                self.families = exposition.metadata;
                self.log.success("scrape", &self.config.name);
                let values = [
                    1.0,
                    scraped as f64,
                    built.post_relabel as f64,
                    (exposition.malformed + built.rejected) as f64,
                    built.over_limit as f64,
                    size as f64,
                ];
                for (stat, value) in stats.iter_mut().zip(values) {
                    stat.1 = value;
                }
                out = built.series;
            }
            Err(e) => self.log.failure("scrape", &self.config.name, &e),
        }
        let labels = [("job", origin.job), ("instance", origin.instance)];
        let elapsed = started.elapsed().as_secs_f64();
        out.push(
            ctx.series("scrape_duration_seconds", &labels, elapsed)
                .into(),
        );
        out.extend((stats.iter()).map(|(name, v)| ctx.series(name, &labels, *v).into()));
        Ok(out)
    }
}
