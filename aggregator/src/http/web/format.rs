//! How figures read on a page: units, times, statuses with their icon.

use super::super::ops::rfc3339;
use super::super::summary::Status;

/// The unit a figure is shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// A ratio 0..1 shown as a percentage.
    Percent,
    Seconds,
    Bytes,
    BytesPerSecond,
    PerSecond,
    /// A plain number.
    Plain,
}

/// `value` in `unit`, or an em dash for no value.
pub fn value(v: Option<f64>, unit: Unit) -> String {
    let Some(v) = v.filter(|v| v.is_finite()) else {
        return "—".into();
    };
    match unit {
        Unit::Percent => format!("{:.1}%", v * 100.0),
        Unit::Seconds if v.abs() < 1.0 => format!("{:.1} ms", v * 1000.0),
        Unit::Seconds => format!("{v:.2} s"),
        Unit::Bytes => bytes(v),
        Unit::BytesPerSecond => format!("{}/s", bytes(v)),
        Unit::PerSecond => format!("{}/s", plain(v)),
        Unit::Plain => plain(v),
    }
}

fn plain(v: f64) -> String {
    if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn bytes(v: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = v;
    let mut i = 0;
    while v.abs() >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// A time as the pages show it (UTC, to the second).
pub fn time(ms: i64) -> String {
    let s = rfc3339(ms);
    // 2024-01-02T03:04:05.678Z -> 2024-01-02 03:04:05Z
    match (s.get(..10), s.get(11..19)) {
        (Some(d), Some(t)) => format!("{d} {t}Z"),
        _ => s,
    }
}

/// How long ago `ms` was, from `now_ms` ("12s ago", "3m ago", "2h ago").
pub fn ago(ms: i64, now_ms: i64) -> String {
    let s = (now_ms - ms).max(0) / 1000;
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86_400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// A status as a page shows it: CSS class, icon and word (colour is never
/// the only signal).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Badge {
    pub class: &'static str,
    pub icon: &'static str,
    pub label: &'static str,
}

pub fn status(s: Status) -> Badge {
    match s {
        Status::Green => badge("ok"),
        Status::Yellow => badge("warn"),
        Status::Red => badge("crit"),
        Status::Unknown => badge("unknown"),
    }
}

/// The badge of a class name (`ok`, `warn`, `crit`, `unknown`, `info`).
pub fn badge(class: &str) -> Badge {
    match class {
        "ok" => Badge {
            class: "ok",
            icon: "✓",
            label: "OK",
        },
        "warn" => Badge {
            class: "warn",
            icon: "▲",
            label: "Warning",
        },
        "crit" => Badge {
            class: "crit",
            icon: "✕",
            label: "Critical",
        },
        "info" => Badge {
            class: "info",
            icon: "i",
            label: "Info",
        },
        _ => Badge {
            class: "unknown",
            icon: "?",
            label: "No data",
        },
    }
}

/// Severity rank, worst first (critical < warning < info < anything else).
pub fn severity_rank(severity: Option<&str>) -> u8 {
    match severity {
        Some("critical" | "page" | "error") => 0,
        Some("warning" | "warn") => 1,
        Some("info") => 2,
        _ => 3,
    }
}

/// The badge of an alert severity.
pub fn severity(severity: Option<&str>) -> Badge {
    let mut b = match severity_rank(severity) {
        0 => badge("crit"),
        1 => badge("warn"),
        2 => badge("info"),
        _ => badge("unknown"),
    };
    b.label = match severity_rank(severity) {
        0 => "critical",
        1 => "warning",
        2 => "info",
        _ => "none",
    };
    b
}

/// A link target that is safe in an `href`: http(s) or a local path only
/// (a `javascript:` URL would run even when escaped).
pub fn safe_url(url: &str) -> Option<String> {
    let u = url.trim();
    let lower = u.to_ascii_lowercase();
    (lower.starts_with("https://")
        || lower.starts_with("http://")
        || (u.starts_with('/') && !u.starts_with("//")))
    .then(|| u.to_string())
}

/// `s` as one URL path segment (everything but unreserved characters
/// percent-encoded).
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(value(Some(0.1234), Unit::Percent), "12.3%");
        assert_eq!(value(Some(0.25), Unit::Seconds), "250.0 ms");
        assert_eq!(value(Some(2.5), Unit::Seconds), "2.50 s");
        assert_eq!(value(Some(3.0 * 1024.0 * 1024.0), Unit::Bytes), "3.0 MiB");
        assert_eq!(value(Some(12.5), Unit::PerSecond), "12.50/s");
        assert_eq!(value(None, Unit::Plain), "—");
        assert_eq!(value(Some(f64::NAN), Unit::Plain), "—");
        assert_eq!(ago(0, 125_000), "2m ago");
        assert_eq!(time(1_700_000_000_000), "2023-11-14 22:13:20Z");
        assert_eq!(path_segment("a b/<c>"), "a%20b%2F%3Cc%3E");
    }

    #[test]
    fn only_web_and_local_links_are_kept() {
        assert!(safe_url("https://runbooks.example/x").is_some());
        assert!(safe_url("/docs/runbooks/x").is_some());
        for bad in [
            "javascript:alert(1)",
            " JavaScript:x",
            "//evil.example",
            "data:text/html,x",
        ] {
            assert!(safe_url(bad).is_none(), "{bad}");
        }
    }
}
