//! Keeping secrets out of logs, errors and `Debug` output.
//!
//! - [`redact_url`]: a connection URL with its password (user info and a
//!   `password=` query parameter) replaced by `***`. Config structs that
//!   hold such a URL implement `Debug` by hand with it, and every message
//!   that quotes a URL goes through it.
//! - [`Secret`]: a string whose `Debug` and `Display` print `***`; the value
//!   is reached only through [`Secret::expose`], at the one place that
//!   sends it. (The notification receivers have their own, serialisable
//!   `notify::receivers::Secret`.)

use std::fmt;

/// What every redacted value prints as.
pub const REDACTED: &str = "***";

/// `url` with any password replaced by `***`: the one in the user info
/// (`scheme://user:PASSWORD@host`) and `password=` query parameters. Works
/// on text that does not parse as a URL too.
pub fn redact_url(url: &str) -> String {
    let mut out = redact_user_info(url);
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}={REDACTED}"),
                _ => pair.to_string(),
            })
            .collect();
        out = format!("{head}{}", query.join("&"));
    }
    out
}

fn redact_user_info(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:{REDACTED}{}",
            &url[..start],
            &rest[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

/// A secret string: `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that needs it. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_user_info_and_query_are_redacted() {
        for (url, want) in [
            ("postgres://u:pw@h:5432/db", "postgres://u:***@h:5432/db"),
            ("redis://:p@ss@h:1", "redis://:***@h:1"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://u@h/db?x=a:b@c", "postgres://u@h/db?x=a:b@c"),
            (
                "postgres://h/db?user=u&password=hunter2&sslmode=disable",
                "postgres://h/db?user=u&password=***&sslmode=disable",
            ),
            ("sqlite:vigil.db", "sqlite:vigil.db"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn a_secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?} {:?}", Some(&s)), "*** *** Some(***)");
        assert_eq!(s.expose(), "hunter2");
    }
}
