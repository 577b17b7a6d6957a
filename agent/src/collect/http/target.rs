//! Targets: URL parsing, the TLS trust of https targets, credentials.

use std::path::Path;
use std::sync::Arc;

use hyper::Uri;
use rustls::RootCertStore;
use rustls::pki_types::ServerName;

/// A parsed `http(s)://host[:port]/path` URL.
#[derive(Debug, Clone)]
pub struct Target {
    /// Whether the scheme is `https`.
    pub https: bool,
    /// Host name or IP address, without IPv6 brackets.
    pub host: String,
    /// Port, the scheme's default when the URL names none.
    pub port: u16,
    /// `host[:port]` as written in the URL: the `Host` header.
    pub(super) authority: String,
    /// Path and query, `/` when empty.
    pub(super) path: String,
}

impl Target {
    /// Parses an absolute http or https URL; the error says what is wrong.
    pub fn parse(url: &str) -> Result<Target, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(other) => return Err(format!("{url:?}: scheme {other:?} is not http or https")),
            None => return Err(format!("{url:?} must start with http:// or https://")),
        };
        let Some(authority) = uri.authority() else {
            return Err(format!("{url:?} has no host"));
        };
        if authority.as_str().contains('@') {
            return Err(format!(
                "{url:?}: credentials in the URL are not supported (use basic_auth)"
            ));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        if ServerName::try_from(host).is_err() {
            return Err(format!("{url:?}: {host:?} is not a valid host name"));
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        Ok(Target {
            https,
            host: host.to_string(),
            port,
            authority: authority.as_str().to_string(),
            path: uri
                .path_and_query()
                .map_or_else(|| "/".to_string(), |p| p.as_str().to_string()),
        })
    }

    /// `host:port` (IPv6 in brackets), Prometheus' `instance` label.
    pub fn instance(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A rustls client config (ring provider) trusting `ca_file` if given, else
/// the system's trust store.
pub fn tls_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in vigil_common::tls::load_certs(path).map_err(|e| e.to_string())? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "reading the system trust store");
            }
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            tracing::debug!(added, ignored, "system trust store loaded");
        }
    }
    vigil_common::tls::http_client_config(roots).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed_and_checked() {
        let t = Target::parse("http://127.0.0.1:8000/metrics?x=1").expect("valid");
        assert_eq!(
            (t.https, t.port, t.instance()),
            (false, 8000, "127.0.0.1:8000".into())
        );
        assert_eq!(t.path, "/metrics?x=1");
        let t = Target::parse("https://api.example.com").expect("valid");
        assert_eq!((t.port, t.path.as_str()), (443, "/"));
        assert_eq!(t.instance(), "api.example.com:443");
        let t = Target::parse("http://[::1]/m").expect("valid");
        assert_eq!((t.host.as_str(), t.instance()), ("::1", "[::1]:80".into()));
        assert_eq!(t.authority, "[::1]");
        for bad in [
            "",
            "ftp://x/",
            "/metrics",
            "localhost:80",
            "http://u:p@h/",
            "http:///x",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
