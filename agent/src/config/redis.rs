//! `[collect.redis]`: the Redis collector (`collect/redis.rs`).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use vigil_common::secret::Secret;

use super::postgres::redact;
use super::validate::{check_range, problem};

/// Server monitored when `url` is not set.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";
/// Time allowed to open the TCP connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time allowed for each command's reply.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// `[collect.redis]`. `Debug` shows the URL without its password.
#[derive(Clone, PartialEq, Deserialize)]
pub struct RedisCollectConfig {
    /// On or off. Unset: on when the host's `roles` include `cache`.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Server to monitor: `redis://[[user]:password@]host[:port]`. A `/db`
    /// suffix is accepted and ignored (INFO covers every database). TLS
    /// (`rediss://`) and Unix sockets are not supported yet.
    #[serde(default = "default_url")]
    pub url: String,
    /// ACL user name (Redis 6+); overrides one in `url`.
    #[serde(default)]
    pub username: Option<String>,
    /// File whose first line is the password (overrides one in `url`).
    /// Re-read at every connection attempt.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Time allowed to open the TCP connection. This and `timeout` are capped
    /// at 20% of the collection budget each, so a hung server shows as
    /// `redis_up 0` within the cycle.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time allowed for each reply (AUTH, INFO).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

impl std::fmt::Debug for RedisCollectConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCollectConfig")
            .field("enabled", &self.enabled)
            .field("url", &vigil_common::secret::redact_url(&self.url))
            .field("username", &self.username)
            .field("password_file", &self.password_file)
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Default for RedisCollectConfig {
    fn default() -> Self {
        RedisCollectConfig {
            enabled: None,
            url: default_url(),
            username: None,
            password_file: None,
            connect_timeout: default_connect_timeout(),
            timeout: default_timeout(),
        }
    }
}

fn default_url() -> String {
    DEFAULT_URL.to_string()
}
fn default_connect_timeout() -> Duration {
    DEFAULT_CONNECT_TIMEOUT
}
fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

/// Where and as whom to connect, from `url` (and `username`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTarget {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// ACL user, if any.
    pub username: Option<String>,
    /// Password from the URL, if any (`password_file` wins at connect time).
    /// (`Debug` prints it as `***`.)
    pub password: Option<Secret>,
}

impl RedisCollectConfig {
    /// Whether the collector runs on a host with `roles`.
    pub fn is_enabled(&self, roles: &[String]) -> bool {
        self.enabled
            .unwrap_or_else(|| roles.iter().any(|r| r == "cache"))
    }

    /// Parses `url`; `username` overrides the URL's user.
    pub fn target(&self) -> Result<RedisTarget, String> {
        let shown = redact(&self.url);
        let bad = |why: &str| Err(format!("{shown:?}: {why}"));
        let url = match url::Url::parse(&self.url) {
            Ok(u) => u,
            Err(e) => return bad(&e.to_string()),
        };
        match url.scheme() {
            "redis" => {}
            "rediss" => return bad("TLS (rediss://) is not supported by the agent yet"),
            _ => return bad("expected a redis:// URL"),
        }
        let host = match url.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(h) => h.to_string(),
            None => return bad("missing host"),
        };
        let db = url.path().trim_start_matches('/');
        if !db.is_empty() && db.parse::<u32>().is_err() {
            return bad("the path may only be a database number");
        }
        if url.query().is_some() {
            return bad("query parameters are not supported");
        }
        let decode = |s: &str| percent_decode(s).ok_or_else(|| format!("{shown:?}: bad %-escape"));
        let url_user = match url.username() {
            "" => None,
            u => Some(decode(u)?),
        };
        let password = url.password().map(decode).transpose()?;
        Ok(RedisTarget {
            host,
            port: url.port().unwrap_or(6379),
            username: self.username.clone().or(url_user),
            password: password.map(Secret::new),
        })
    }

    pub(super) fn value_problems(&self, p: &mut Vec<String>) {
        const KEY: &str = "collect.redis";
        match self.target() {
            Err(why) => p.push(problem(&format!("{KEY}.url"), why)),
            // AUTH needs a password; a user alone would silently not log in.
            Ok(t)
                if t.username.is_some() && t.password.is_none() && self.password_file.is_none() =>
            {
                p.push(problem(
                    &format!("{KEY}.username"),
                    "needs a password (in url or password_file)",
                ));
            }
            Ok(_) => {}
        }
        if let Some(u) = &self.username {
            if u.is_empty() || u.chars().any(|c| c.is_whitespace() || c.is_control()) {
                p.push(problem(
                    &format!("{KEY}.username"),
                    "must be non-empty, without spaces or control characters",
                ));
            }
        }
        if self
            .password_file
            .as_ref()
            .is_some_and(|f| f.as_os_str().is_empty())
        {
            p.push(problem(&format!("{KEY}.password_file"), "must name a file"));
        }
        let (ms, s) = (Duration::from_millis, Duration::from_secs);
        p.extend(check_range(
            &format!("{KEY}.connect_timeout"),
            self.connect_timeout,
            ms(100),
            s(60),
        ));
        p.extend(check_range(
            &format!("{KEY}.timeout"),
            self.timeout,
            ms(100),
            s(60),
        ));
    }

    pub(super) fn file_problems(&self, roles: &[String], p: &mut Vec<String>) {
        if let (true, Some(path)) = (self.is_enabled(roles), &self.password_file) {
            if !path.as_os_str().is_empty() {
                if let Err(why) = super::secret::read_secret_file(path) {
                    p.push(problem("collect.redis.password_file", why));
                }
            }
        }
    }
}

/// `%xx` escapes decoded; `None` for a malformed escape or invalid UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_neither_the_url_password_nor_the_target_password() {
        let c = RedisCollectConfig {
            url: "redis://mon:pw-7c1@cache:6379".into(),
            ..RedisCollectConfig::default()
        };
        let d = format!("{c:?}");
        assert!(
            d.contains("redis://mon:***@cache:6379") && !d.contains("pw-7c1"),
            "{d}"
        );
        let t = target("redis://mon:pw-7c1@cache:6379").expect("target");
        assert_eq!(t.password.as_ref().map(Secret::expose), Some("pw-7c1"));
        let d = format!("{t:?}");
        assert!(d.contains("***") && !d.contains("pw-7c1"), "{d}");
    }

    fn target(url: &str) -> Result<RedisTarget, String> {
        RedisCollectConfig {
            url: url.into(),
            ..RedisCollectConfig::default()
        }
        .target()
    }

    #[test]
    fn urls_are_parsed() {
        let t = target(DEFAULT_URL).expect("default");
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 6379));
        assert_eq!((t.username, t.password), (None, None));
        let t = target("redis://mon:p%40ss%3Aw@cache.local:7000/2").expect("full");
        assert_eq!(t.host, "cache.local");
        assert_eq!(t.port, 7000);
        assert_eq!(t.username.as_deref(), Some("mon"));
        assert_eq!(t.password.as_ref().map(Secret::expose), Some("p@ss:w"));
        let t = target("redis://:pw@[::1]").expect("v6");
        assert_eq!((t.host.as_str(), t.port), ("::1", 6379));
        assert_eq!(
            (t.username, t.password.as_ref().map(Secret::expose)),
            (None, Some("pw"))
        );
        for bad in [
            "rediss://h:6380",
            "http://h",
            "redis://h/x",
            "redis://h:99999",
            "redis://h?db=1",
            "redis://:%zz@h",
            "127.0.0.1:6379",
        ] {
            assert!(target(bad).is_err(), "{bad}");
        }
        let err = target("rediss://u:hunter2@h").expect_err("tls");
        assert!(
            err.contains("not supported") && !err.contains("hunter2"),
            "{err}"
        );
    }

    #[test]
    fn configured_username_wins() {
        let c = RedisCollectConfig {
            url: "redis://old:pw@h".into(),
            username: Some("new".into()),
            ..RedisCollectConfig::default()
        };
        assert_eq!(c.target().expect("ok").username.as_deref(), Some("new"));
    }
}
