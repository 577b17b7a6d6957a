//! The aggregator's configuration file (TOML), validated as a whole: every
//! problem is reported at once, and nothing is started on a bad config.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use vigil_common::config::{ConfigErrors, read_toml, resolve};
use vigil_common::frame::MAX_FRAME_BYTES;
use vigil_common::tls::TlsMaterial;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// The HTTP API and web UI.
    #[serde(default)]
    pub http: HttpConfig,
    /// The QUIC listener agents push to.
    pub quic: QuicConfig,
    /// Where samples are stored.
    #[serde(default)]
    pub database: DatabaseConfig,
    /// Limits on what agents may send.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// Size caps of remote_write and text import over HTTP.
    #[serde(default)]
    pub http_ingest: crate::http::ingest::config::HttpIngestConfig,
    /// The head, rollups and retention.
    #[serde(default)]
    pub storage: crate::store::config::StorageConfig,
    /// Rule files, evaluation, alert state.
    #[serde(default)]
    pub alerting: crate::alert::config::AlertingConfig,
    /// Routing and receivers of notifications.
    #[serde(default)]
    pub notify: crate::notify::config::NotifyConfig,
    /// The operator web dashboard.
    #[serde(default)]
    pub dashboard: crate::http::web::config::DashboardConfig,
    /// Agent enrollment and key rotation (off without this section).
    #[serde(default)]
    pub enroll: Option<crate::ingest::enroll::config::EnrollConfig>,
    /// Several aggregators on one PostgreSQL database.
    #[serde(default)]
    pub cluster: crate::cluster::ClusterConfig,
}

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
pub struct HttpConfig {
    /// Address to listen on for HTTP.
    #[serde(default = "default_http_listen")]
    pub listen: String,
    /// Let requests without a token use read-only routes (default: off).
    #[serde(default)]
    pub anonymous_read: bool,
    /// Requests per second (and burst) one API token may make; `per_second = 0` turns it off.
    #[serde(default = "crate::http::access::default_rate_limit_per_token")]
    pub rate_limit_per_token: crate::http::access::RateLimit,
    /// Requests per second (and burst) one client address may make; `per_second = 0` turns it off.
    #[serde(default = "crate::http::access::default_rate_limit_per_ip")]
    pub rate_limit_per_ip: crate::http::access::RateLimit,
    /// Mark the dashboard's cookies `Secure` (always on with `tls_cert`); set
    /// it when a TLS-terminating proxy sits in front.
    #[serde(default)]
    pub secure_cookies: bool,
    /// A dashboard session unused this long ends.
    #[serde(default = "default_session_idle_timeout", with = "humantime_serde")]
    pub session_idle_timeout: Duration,
    /// A dashboard session ends this long after sign-in, used or not.
    #[serde(default = "default_session_max_age", with = "humantime_serde")]
    pub session_max_age: Duration,
    /// Sign-in attempts per minute (and burst) from one client address; `per_minute = 0` turns it off.
    #[serde(default = "crate::http::session::default_login_limit_per_ip")]
    pub login_rate_limit_per_ip: crate::http::session::LoginLimit,
    /// Sign-in attempts per minute (and burst) for one user name; `per_minute = 0` turns it off.
    #[serde(default = "crate::http::session::default_login_limit_per_user")]
    pub login_rate_limit_per_user: crate::http::session::LoginLimit,
    /// PEM certificate chain: with `tls_key`, the HTTP listener serves HTTPS.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_http_listen(),
            anonymous_read: false,
            rate_limit_per_token: crate::http::access::default_rate_limit_per_token(),
            rate_limit_per_ip: crate::http::access::default_rate_limit_per_ip(),
            secure_cookies: false,
            session_idle_timeout: default_session_idle_timeout(),
            session_max_age: default_session_max_age(),
            login_rate_limit_per_ip: crate::http::session::default_login_limit_per_ip(),
            login_rate_limit_per_user: crate::http::session::default_login_limit_per_user(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

fn default_session_idle_timeout() -> Duration {
    Duration::from_secs(12 * 3600)
}

fn default_session_max_age() -> Duration {
    Duration::from_secs(7 * 86_400)
}

impl HttpConfig {
    /// The access policy these settings describe.
    pub fn access_policy(&self) -> crate::http::access::AccessPolicy {
        crate::http::access::AccessPolicy {
            anonymous_read: self.anonymous_read,
            per_token: Some(self.rate_limit_per_token),
            per_ip: Some(self.rate_limit_per_ip),
        }
    }

    /// The session settings; cookies are `Secure` under TLS.
    pub fn session_policy(&self) -> crate::http::session::SessionPolicy {
        crate::http::session::SessionPolicy {
            idle_timeout: self.session_idle_timeout,
            max_age: self.session_max_age,
            secure_cookies: self.secure_cookies || self.tls_cert.is_some(),
            login_per_ip: Some(self.login_rate_limit_per_ip),
            login_per_user: Some(self.login_rate_limit_per_user),
        }
    }

    /// Checks the session and TLS settings; the TLS config when HTTPS is on.
    fn validate(&self, problems: &mut Vec<String>) -> Option<std::sync::Arc<rustls::ServerConfig>> {
        if self.session_idle_timeout < Duration::from_secs(60) {
            problems.push("http.session_idle_timeout must be at least 1m".into());
        }
        if self.session_max_age < Duration::from_secs(60) {
            problems.push("http.session_max_age must be at least 1m".into());
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => crate::http::tls::server_config(cert, key)
                .map_err(|e| problems.push(format!("http: {e}")))
                .ok(),
            (None, None) => None,
            _ => {
                problems.push("http.tls_cert and http.tls_key must be given together".into());
                None
            }
        }
    }
}

fn default_http_listen() -> String {
    "127.0.0.1:8080".into()
}

/// `[quic]`
#[derive(Debug, Clone, Deserialize)]
pub struct QuicConfig {
    /// UDP address to listen on for agents.
    #[serde(default = "default_quic_listen")]
    pub listen: String,
    /// The Vigil CA certificate; agents' client certificates must chain to it.
    pub ca: PathBuf,
    /// The aggregator's certificate (issued by the CA).
    pub cert: PathBuf,
    /// The aggregator's private key.
    pub key: PathBuf,
    /// UDP receive buffer (`SO_RCVBUF`) asked of the kernel for the QUIC
    /// socket. The Linux default (208 KiB, ~90 full packets) overflows
    /// when a fleet's batches arrive together while the aggregator is
    /// busy; the packets lost are resent, but a connection's congestion
    /// window shrinks and acks wait seconds (docs/benchmarks.md). The
    /// kernel grants at most `net.core.rmem_max`; less than asked is
    /// logged at start.
    #[serde(default = "default_receive_buffer_bytes")]
    pub receive_buffer_bytes: usize,
}

fn default_quic_listen() -> String {
    "0.0.0.0:4433".into()
}

/// Default of `quic.receive_buffer_bytes`: 4 MiB.
pub const fn default_receive_buffer_bytes() -> usize {
    4 << 20
}

/// Largest `quic.receive_buffer_bytes` accepted.
pub const MAX_RECEIVE_BUFFER_BYTES: usize = 1 << 30;

/// `[database]`. `Debug` shows the URL without its password.
#[derive(Clone, Deserialize)]
pub struct DatabaseConfig {
    /// `sqlite:PATH` (relative to this file) or `postgres://user@host/db`.
    #[serde(default = "default_database_url")]
    pub url: String,
    /// Connections in the pool.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &vigil_common::secret::redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: default_database_url(),
            max_connections: default_max_connections(),
        }
    }
}

fn default_database_url() -> String {
    "sqlite:vigil.db".into()
}

fn default_max_connections() -> u32 {
    8
}

/// `[ingest]`
#[derive(Debug, Clone, Deserialize)]
pub struct IngestConfig {
    /// Largest frame (encoded, signed batch) accepted, in bytes; at most 16 MiB.
    #[serde(default = "default_max_frame_bytes")]
    pub max_frame_bytes: usize,
    /// Batches one agent may have in flight at once (QUIC streams).
    #[serde(default = "default_max_streams_per_agent")]
    pub max_streams_per_agent: u32,
    /// Batches committed concurrently across all agents; more wait (backpressure).
    #[serde(default = "default_max_concurrent_commits")]
    pub max_concurrent_commits: usize,
    /// Most samples one group commit carries (a group stops growing past
    /// it): larger groups raise the ingest ceiling, smaller ones bound the
    /// time a batch waits behind a transaction (its ack latency).
    #[serde(default = "default_max_group_samples")]
    pub max_group_samples: usize,
    /// Time allowed to receive one batch on a stream.
    #[serde(default = "default_stream_timeout", with = "humantime_serde")]
    pub stream_timeout: Duration,
    /// Samples stamped further than this in the future are refused and counted.
    #[serde(default = "default_max_future_skew", with = "humantime_serde")]
    pub max_future_skew: Duration,
    /// Samples older than this are refused and counted.
    #[serde(default = "default_max_sample_age", with = "humantime_serde")]
    pub max_sample_age: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_frame_bytes: default_max_frame_bytes(),
            max_streams_per_agent: default_max_streams_per_agent(),
            max_concurrent_commits: default_max_concurrent_commits(),
            max_group_samples: default_max_group_samples(),
            stream_timeout: default_stream_timeout(),
            max_future_skew: default_max_future_skew(),
            max_sample_age: default_max_sample_age(),
        }
    }
}

fn default_max_frame_bytes() -> usize {
    8 * 1024 * 1024
}
fn default_max_streams_per_agent() -> u32 {
    8
}
fn default_max_concurrent_commits() -> usize {
    4
}
fn default_max_group_samples() -> usize {
    crate::ingest::commit::MAX_GROUP_SAMPLES
}
fn default_stream_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_future_skew() -> Duration {
    Duration::from_secs(600)
}
fn default_max_sample_age() -> Duration {
    Duration::from_secs(30 * 86_400)
}

/// A validated configuration: addresses parsed, paths resolved, TLS loaded.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// Folder of the config file; relative paths (e.g. a SQLite file) start here.
    pub base_dir: PathBuf,
    pub http_listen: SocketAddr,
    pub quic_listen: SocketAddr,
    pub tls: TlsMaterial,
    /// The HTTP listener's TLS config (`[http] tls_cert` / `tls_key`).
    pub http_tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// The CA that signs enrolling agents' certificates (`[enroll]`).
    pub enroll_ca: Option<std::sync::Arc<vigil_certs::Ca>>,
}

impl Config {
    /// Reads and validates `path`, reporting every problem at once.
    pub fn load(path: &Path) -> Result<Loaded, ConfigErrors> {
        let mut problems = Vec::new();
        let Some(mut config) = read_toml::<Config>(path, &mut problems) else {
            return Err(ConfigErrors(problems));
        };
        for p in [
            &mut config.quic.ca,
            &mut config.quic.cert,
            &mut config.quic.key,
        ] {
            *p = resolve(path, p);
        }
        for p in [&mut config.http.tls_cert, &mut config.http.tls_key]
            .into_iter()
            .flatten()
        {
            *p = resolve(path, p);
        }
        config.notify.load(path, &mut problems);
        if let Some(enroll) = &mut config.enroll {
            enroll.resolve(path);
        }
        let enroll_ca = config
            .enroll
            .as_ref()
            .and_then(|e| e.validate(&config.quic.ca, &mut problems));
        let base_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        match config.validate(&base_dir, &mut problems) {
            Some((http_listen, quic_listen, tls, http_tls)) if problems.is_empty() => Ok(Loaded {
                config,
                base_dir,
                http_listen,
                quic_listen,
                tls,
                http_tls,
                enroll_ca,
            }),
            _ => Err(ConfigErrors(problems)),
        }
    }

    fn validate(
        &self,
        base_dir: &Path,
        problems: &mut Vec<String>,
    ) -> Option<(
        SocketAddr,
        SocketAddr,
        TlsMaterial,
        Option<std::sync::Arc<rustls::ServerConfig>>,
    )> {
        let addr = |field: &str, value: &str, problems: &mut Vec<String>| {
            value
                .parse::<SocketAddr>()
                .map_err(|_| problems.push(format!("{field}: {value:?} is not an IP:port address")))
                .ok()
        };
        let http = addr("http.listen", &self.http.listen, problems);
        let quic = addr("quic.listen", &self.quic.listen, problems);
        let tls = TlsMaterial::load(&self.quic.ca, &self.quic.cert, &self.quic.key)
            .map_err(|e| problems.push(format!("quic: {e}")))
            .ok();
        let url = &self.database.url;
        let is_pg = url.starts_with("postgres://") || url.starts_with("postgresql://");
        if !is_pg && crate::store::sqlite_path(url).is_none() {
            problems.push(format!(
                "database.url: {:?} is neither postgres://... nor sqlite:PATH",
                vigil_common::secret::redact_url(url)
            ));
        }
        if self.database.max_connections == 0 || self.database.max_connections > 1000 {
            problems.push("database.max_connections must be between 1 and 1000".into());
        }
        let i = &self.ingest;
        let rcvbuf = self.quic.receive_buffer_bytes;
        if !(64 << 10..=MAX_RECEIVE_BUFFER_BYTES).contains(&rcvbuf) {
            problems.push(format!(
                "quic.receive_buffer_bytes must be between 65536 and {MAX_RECEIVE_BUFFER_BYTES}"
            ));
        }
        if i.max_frame_bytes < 1024 || i.max_frame_bytes > MAX_FRAME_BYTES {
            problems.push(format!(
                "ingest.max_frame_bytes must be between 1024 and {MAX_FRAME_BYTES}"
            ));
        }
        if i.max_streams_per_agent == 0 || i.max_streams_per_agent > 1024 {
            problems.push("ingest.max_streams_per_agent must be between 1 and 1024".into());
        }
        if i.max_concurrent_commits == 0 || i.max_concurrent_commits > 1024 {
            problems.push("ingest.max_concurrent_commits must be between 1 and 1024".into());
        }
        if i.max_group_samples == 0 || i.max_group_samples > 1_000_000 {
            problems.push("ingest.max_group_samples must be between 1 and 1000000".into());
        }
        if i.stream_timeout < Duration::from_millis(100) {
            problems.push("ingest.stream_timeout must be at least 100ms".into());
        }
        if i.max_sample_age < Duration::from_secs(60) {
            problems.push("ingest.max_sample_age must be at least 1m".into());
        }
        let http_tls = self.http.validate(problems);
        self.http_ingest.validate(problems);
        self.storage.validate(problems);
        self.alerting.validate(base_dir, problems);
        self.dashboard.validate(problems);
        self.cluster.validate(is_pg, problems);
        Some((http?, quic?, tls?, http_tls))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certs(dir: &Path) {
        vigil_certs::create_ca(dir, "CA", 30, false).expect("ca");
        vigil_certs::issue_server(dir, dir, &["localhost".into()], 30, false).expect("server");
    }

    #[test]
    fn good_config_loads_with_relative_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        certs(dir.path());
        let path = dir.path().join("aggregator.toml");
        std::fs::write(
            &path,
            "[http]\nlisten = \"127.0.0.1:0\"\n[quic]\nlisten = \"127.0.0.1:0\"\nca = \"ca.crt\"\ncert = \"server.crt\"\nkey = \"server.key\"\n[ingest]\nstream_timeout = \"5s\"\n",
        )
        .expect("write");
        let loaded = Config::load(&path).expect("valid");
        assert_eq!(loaded.config.quic.ca, dir.path().join("ca.crt"));
        assert_eq!(loaded.config.database.url, "sqlite:vigil.db");
        assert_eq!(loaded.config.ingest.stream_timeout, Duration::from_secs(5));
        assert_eq!(loaded.config.quic.receive_buffer_bytes, 4 << 20);
        assert_eq!(loaded.base_dir, dir.path());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.toml");
        std::fs::write(
            &path,
            "colour = 1\n[http]\nlisten = \"nowhere\"\n[quic]\nca = \"missing.crt\"\ncert = \"server.crt\"\nkey = \"server.key\"\nport = 1\nreceive_buffer_bytes = 1024\n[database]\nurl = \"mysql://x\"\n[ingest]\nmax_frame_bytes = 99999999999\nmax_group_samples = 0\n",
        )
        .expect("write");
        let errors = Config::load(&path).expect_err("invalid").0;
        let text = errors.join("\n");
        for needle in [
            "unknown key `colour`",
            "unknown key `quic.port`",
            "quic.receive_buffer_bytes must be between 65536",
            "http.listen",
            "missing.crt",
            "database.url",
            "ingest.max_frame_bytes",
            "ingest.max_group_samples must be between 1 and 1000000",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
    }

    #[test]
    fn broken_rule_files_and_alerting_settings_are_reported_with_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        certs(dir.path());
        std::fs::write(
            dir.path().join("bad.yml"),
            "groups:\n- name: g\n  rules:\n  - expr: up\n",
        )
        .expect("write");
        let path = dir.path().join("aggregator.toml");
        std::fs::write(
            &path,
            "[quic]\nca = \"ca.crt\"\ncert = \"server.crt\"\nkey = \"server.key\"\n\
             [database]\nmax_connections = 0\n\
             [alerting]\nrule_files = [\"bad.yml\", \"gone.yml\"]\nevaluation_interval = \"1ms\"\n",
        )
        .expect("write");
        let text = Config::load(&path).expect_err("invalid").0.join("\n");
        for needle in [
            "database.max_connections",
            "alerting.evaluation_interval",
            "gone.yml: no such file",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
        // With the missing file gone, the broken one is reported.
        std::fs::write(
            &path,
            "[quic]\nca = \"ca.crt\"\ncert = \"server.crt\"\nkey = \"server.key\"\n\
             [alerting]\nrule_files = [\"*.yml\"]\n",
        )
        .expect("write");
        let text = Config::load(&path).expect_err("invalid").0.join("\n");
        assert!(
            text.contains("alerting:") && text.contains("bad.yml"),
            "{text}"
        );
    }

    #[test]
    fn dashboard_settings_are_checked_with_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        certs(dir.path());
        let path = dir.path().join("aggregator.toml");
        std::fs::write(
            &path,
            "[quic]\nca = \"ca.crt\"\ncert = \"server.crt\"\nkey = \"server.key\"\n\
             [database]\nmax_connections = 0\n\
             [dashboard]\nlive_interval = \"1ms\"\nclient_queue = 0\ncolour = 1\n",
        )
        .expect("write");
        // An unknown key is a parse error (the section denies unknown fields).
        let text = Config::load(&path).expect_err("invalid").0.join("\n");
        assert!(text.contains("unknown field `colour`"), "{text}");
        // Without it, every value is checked, with the other sections'.
        std::fs::write(
            &path,
            "[quic]\nca = \"ca.crt\"\ncert = \"server.crt\"\nkey = \"server.key\"\n\
             [database]\nmax_connections = 0\n\
             [dashboard]\nlive_interval = \"1ms\"\nclient_queue = 0\n",
        )
        .expect("write");
        let text = Config::load(&path).expect_err("invalid").0.join("\n");
        for needle in [
            "database.max_connections",
            "dashboard.live_interval",
            "dashboard.client_queue",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
        std::fs::write(
            &path,
            "[quic]\nca = \"ca.crt\"\ncert = \"server.crt\"\nkey = \"server.key\"\n\
             [dashboard]\nlive_interval = \"5s\"\nallowed_origins = [\"https://ops.example\"]\n",
        )
        .expect("write");
        let loaded = Config::load(&path).expect("valid");
        assert_eq!(
            loaded.config.dashboard.live_interval,
            Duration::from_secs(5)
        );
    }

    #[test]
    fn a_missing_required_section_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("empty.toml");
        std::fs::write(&path, "").expect("write");
        let errors = Config::load(&path).expect_err("invalid").0;
        assert!(errors[0].contains("quic"), "{errors:?}");
    }
}
