//! The small syntaxes of rule files: durations, metric and label names.

use std::time::Duration;

use serde_norway::Value;

/// A Prometheus duration as rule files write it: `1h30m`, `5m`, `90s`,
/// `500ms`, `0` (units y w d h m s ms, each at most once, in that order).
pub(crate) fn duration(v: &Value) -> Result<Duration, String> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err("must be a duration such as 5m".into()),
    };
    if text.starts_with('-') {
        return Err(format!("{text:?}: a duration cannot be negative"));
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("ms", 1),
        ("m", 60_000),
        ("s", 1000),
    ];
    // Order in the text: y w d h m s ms.
    const ORDER: [&str; 7] = ["y", "w", "d", "h", "m", "s", "ms"];
    let bad = || format!("{text:?} is not a valid duration (like 30s, 5m, 1h30m)");
    let mut rest = text.as_str();
    let mut ms: u64 = 0;
    let mut last = None::<usize>;
    while !rest.is_empty() {
        let n = rest.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return Err(bad());
        }
        let value: u64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let (unit, mult) = UNITS
            .iter()
            .find(|(u, _)| rest.starts_with(u) && !(*u == "m" && rest.starts_with("ms")))
            .ok_or_else(bad)?;
        let pos = ORDER.iter().position(|o| o == unit).ok_or_else(bad)?;
        if last.is_some_and(|l| l >= pos) {
            return Err(bad());
        }
        last = Some(pos);
        rest = &rest[unit.len()..];
        ms = value
            .checked_mul(*mult)
            .and_then(|v| ms.checked_add(v))
            .ok_or_else(bad)?;
    }
    Ok(Duration::from_millis(ms))
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub(crate) fn is_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`
pub(crate) fn is_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}
