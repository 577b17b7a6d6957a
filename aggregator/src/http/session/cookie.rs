//! Cookies: reading one from the `Cookie` header(s) and writing
//! `Set-Cookie` values. Every cookie Vigil sets is `HttpOnly` and
//! `SameSite=Strict`, and `Secure` when the listener is TLS or
//! `[http] secure_cookies = true`.

use axum::http::HeaderMap;
use axum::http::header::COOKIE;

/// The session cookie: a random 256-bit id in hex.
pub const SESSION: &str = "vigil_session";
/// The sign-in form's double-submit CSRF cookie (before any session exists).
pub const LOGIN_CSRF: &str = "vigil_login_csrf";

/// The value of the cookie `name`, if the request sent it.
pub fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value.
pub fn set(name: &str, value: &str, path: &str, max_age_secs: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{name}={value}; HttpOnly; SameSite=Strict; Path={path}; Max-Age={max_age_secs}{secure}"
    )
}

/// A `Set-Cookie` value that deletes the cookie.
pub fn clear(name: &str, path: &str, secure: bool) -> String {
    set(name, "", path, 0, secure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_named_cookie_from_any_header() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, "a=1; vigil_session=abc".parse().expect("value"));
        headers.append(COOKIE, "b=2".parse().expect("value"));
        assert_eq!(get(&headers, SESSION), Some("abc"));
        assert_eq!(get(&headers, "b"), Some("2"));
        assert_eq!(get(&headers, "c"), None);
    }

    #[test]
    fn writes_the_attributes() {
        assert_eq!(
            set(SESSION, "x", "/", 60, true),
            "vigil_session=x; HttpOnly; SameSite=Strict; Path=/; Max-Age=60; Secure"
        );
        assert_eq!(
            clear(SESSION, "/", false),
            "vigil_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
        );
    }
}
