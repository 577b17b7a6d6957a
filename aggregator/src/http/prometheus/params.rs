//! Request parameters as Prometheus reads them: from the query string and,
//! for POST, from an `application/x-www-form-urlencoded` body (body values
//! first, as Go's `Request.FormValue` does), with `match[]` repeated.
//!
//! Times are RFC 3339 or unix seconds with a fraction; durations are
//! Prometheus durations (`1m30s`) or float seconds.

use std::time::Duration;

use axum::extract::{FromRequest, Request};
use axum::http::{Method, header};
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::Expr;

use super::error::PromError;
use crate::query::source::METRIC_NAME;

/// Largest form body accepted (a long PromQL query fits many times over).
pub const MAX_FORM_BYTES: usize = 1024 * 1024;

/// Earliest and latest times a request may name, in ms: Prometheus'
/// `MinTime`/`MaxTime` boundaries, which clients send to mean "unbounded".
pub const MIN_TIME_MS: i64 = -9_223_309_901_257_974;
pub const MAX_TIME_MS: i64 = 9_223_309_901_257_974;
const MIN_TIME_TEXT: &str = "-292273086-05-16T16:47:06Z";
const MAX_TIME_TEXT: &str = "292277025-08-18T07:12:54.999999999Z";

/// Every parameter of one request, in Go's order: body values, then the
/// query string's.
#[derive(Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = PromError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, PromError> {
        let mut pairs = Vec::new();
        let content_type = req.headers().get(header::CONTENT_TYPE).map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .trim()
                .to_ascii_lowercase()
        });
        let is_form = (content_type.as_deref())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        let with_body = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH);
        // A body of another type would be ignored and its parameters
        // reported missing; say what is wrong instead. (An empty body
        // with a stray Content-Type is harmless.)
        let body_len = (req.headers().get(header::CONTENT_LENGTH))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let has_body = body_len.is_some_and(|n| n > 0)
            || req.headers().contains_key(header::TRANSFER_ENCODING);
        if let Some(ct) = content_type
            .as_deref()
            .filter(|_| with_body && has_body && !is_form)
        {
            return Err(PromError::UnsupportedMediaType(format!(
                "Content-Type {ct:?} is not supported: send parameters as application/x-www-form-urlencoded or in the query string"
            )));
        }
        let query = req.uri().query().unwrap_or_default().to_string();
        if is_form && with_body {
            let body = axum::body::to_bytes(req.into_body(), MAX_FORM_BYTES)
                .await
                .map_err(|_| {
                    PromError::TooLarge(format!(
                        "form body larger than {MAX_FORM_BYTES} bytes or unreadable"
                    ))
                })?;
            pairs.extend(form_urlencoded::parse(&body).into_owned());
        }
        pairs.extend(form_urlencoded::parse(query.as_bytes()).into_owned());
        Ok(Params { pairs })
    }
}

impl Params {
    /// Builds parameters from pairs (tests, and handlers that add path values).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Params {
            pairs: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The first value of `name`; an empty value counts as absent, as in Go.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A required time parameter.
    pub fn time(&self, name: &str) -> Result<i64, PromError> {
        let raw = self
            .get(name)
            .ok_or_else(|| PromError::param(name, "parameter is missing"))?;
        parse_time(raw).map_err(|e| PromError::param(name, e))
    }

    /// An optional time parameter, `default` when absent.
    pub fn time_or(&self, name: &str, default: i64) -> Result<i64, PromError> {
        match self.get(name) {
            Some(raw) => parse_time(raw).map_err(|e| PromError::param(name, e)),
            None => Ok(default),
        }
    }

    /// An optional duration parameter.
    pub fn duration(&self, name: &str) -> Result<Option<Duration>, PromError> {
        self.get(name)
            .map(|raw| parse_duration(raw).map_err(|e| PromError::param(name, e)))
            .transpose()
    }

    /// `limit`: a non-negative integer; 0 or absent means no limit.
    pub fn limit(&self) -> Result<usize, PromError> {
        match self.get("limit") {
            None => Ok(usize::MAX),
            Some(raw) => match raw.parse::<i64>() {
                Ok(0) => Ok(usize::MAX),
                Ok(n) if n > 0 => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
                _ => Err(PromError::param(
                    "limit",
                    format!("cannot parse {raw:?}: must be a non-negative integer"),
                )),
            },
        }
    }

    /// `match[]` selectors as matcher sets (a selector using `or` gives
    /// several sets); `required` makes an absent `match[]` an error.
    pub fn matcher_sets(&self, required: bool) -> Result<Vec<Vec<Matcher>>, PromError> {
        let raw = self.all("match[]");
        if raw.is_empty() && required {
            return Err(PromError::BadData("no match[] parameter provided".into()));
        }
        let mut sets = Vec::new();
        for selector in raw {
            sets.extend(parse_selector(selector)?);
        }
        Ok(sets)
    }
}

/// A time as Prometheus accepts it: unix seconds (fraction rounded to ms) or
/// RFC 3339; returns ms since the epoch.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(secs) = s.parse::<f64>() {
        let ms = (secs * 1000.0).round();
        // Also rejects NaN and infinities.
        if (MIN_TIME_MS as f64..=MAX_TIME_MS as f64).contains(&ms) {
            return Ok(ms as i64);
        }
        return Err(format!("cannot parse {s:?} to a valid timestamp"));
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    match s {
        MIN_TIME_TEXT => Ok(MIN_TIME_MS),
        MAX_TIME_TEXT => Ok(MAX_TIME_MS),
        _ => Err(format!("cannot parse {s:?} to a valid timestamp")),
    }
}

/// A duration as Prometheus accepts it: float seconds or `1h30m`-style.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<f64>() {
        // Rejects negative, NaN, infinite and overflowing values.
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("cannot parse {s:?} to a valid duration"));
    }
    let valid = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b"ywdhms".contains(&b));
    // promql-parser's parser also accepts the float form, handled above,
    // where it would panic on negative values.
    match promql_parser::util::parse_duration(s) {
        Ok(d) if valid => Ok(d),
        _ => Err(format!("cannot parse {s:?} to a valid duration")),
    }
}

/// One `match[]` selector (`up{job="x"}`, `{__name__=~"a.*"}`) as matcher
/// sets; Prometheus requires a plain vector selector.
pub fn parse_selector(s: &str) -> Result<Vec<Vec<Matcher>>, PromError> {
    let bad = |why: String| PromError::param("match[]", why);
    let expr = crate::query::engine::parse(s).map_err(|e| bad(e.to_string()))?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(bad(format!("{s:?} is not a series selector")));
    };
    let name = vs
        .name
        .map(|n| Matcher::new(MatchOp::Equal, METRIC_NAME, &n));
    let with_name = |mut set: Vec<Matcher>| {
        if let Some(n) = &name {
            set.push(n.clone());
        }
        set
    };
    let mut sets = Vec::new();
    if vs.matchers.or_matchers.is_empty() {
        sets.push(with_name(vs.matchers.matchers));
    } else {
        for set in vs.matchers.or_matchers {
            sets.push(with_name(set));
        }
    }
    Ok(sets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_both_forms() {
        assert_eq!(parse_time("1700000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("1700000000.123"), Ok(1_700_000_000_123));
        assert_eq!(parse_time("1700000000.1239"), Ok(1_700_000_000_124));
        assert_eq!(parse_time("-1.5"), Ok(-1500));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert_eq!(
            parse_time("2023-11-14T23:13:20.5+01:00"),
            Ok(1_700_000_000_500)
        );
        assert_eq!(parse_time(MIN_TIME_TEXT), Ok(MIN_TIME_MS));
        assert_eq!(parse_time(MAX_TIME_TEXT), Ok(MAX_TIME_MS));
        for bad in ["", "now", "NaN", "Inf", "1e300", "2023-11-14", "12:00:00Z"] {
            let e = parse_time(bad).expect_err(bad);
            assert!(e.contains("cannot parse"), "{e}");
        }
    }

    #[test]
    fn durations_in_both_forms() {
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "-1", "NaN", "inf", "1e400", "1x", "m", "1h-1m", "5 m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn selectors_become_matcher_sets() {
        let sets = parse_selector(r#"up{job="api"}"#).expect("valid");
        assert_eq!(sets.len(), 1);
        let names: Vec<&str> = sets[0].iter().map(|m| m.name.as_str()).collect();
        assert!(
            names.contains(&"job") && names.contains(&"__name__"),
            "{names:?}"
        );
        let sets = parse_selector(r#"{__name__=~"up|x"}"#).expect("valid");
        assert_eq!(sets[0].len(), 1);
        let sets = parse_selector(r#"{job="a" or job="b"}"#).expect("valid");
        assert_eq!(sets.len(), 2);
        for bad in ["up[5m]", "sum(up)", "{", "1", r#"{job=""}"#] {
            assert!(parse_selector(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limit_and_repeated_values() {
        let p = Params::from_pairs([("match[]", "a"), ("match[]", "b"), ("limit", "2")]);
        assert_eq!(p.all("match[]"), vec!["a", "b"]);
        assert_eq!(p.limit().expect("limit"), 2);
        assert_eq!(Params::default().limit().expect("none"), usize::MAX);
        assert_eq!(
            Params::from_pairs([("limit", "0")]).limit().expect("0"),
            usize::MAX
        );
        assert!(Params::from_pairs([("limit", "-1")]).limit().is_err());
        assert!(Params::from_pairs([("limit", "x")]).limit().is_err());
        assert!(Params::default().matcher_sets(true).is_err());
        assert!(
            Params::default()
                .matcher_sets(false)
                .expect("optional")
                .is_empty()
        );
    }
}
