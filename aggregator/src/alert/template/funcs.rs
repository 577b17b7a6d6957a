//! Template functions: Go's builtins that matter for annotations and
//! Prometheus' helpers (`humanize*`, `reReplaceAll`, `title`, ...), with the
//! outputs Prometheus documents.

use super::exec::Val;
use super::gofmt::{g4, sprintf};

/// Every function a template may call.
const FUNCS: &[&str] = &[
    // Go builtins
    "and",
    "or",
    "not",
    "len",
    "index",
    "print",
    "printf",
    "println",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "html",
    "urlquery",
    // Prometheus helpers
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "title",
    "toUpper",
    "toLower",
    "match",
    "reReplaceAll",
    "stripPort",
    "stripDomain",
    "safeHtml",
];

/// Prometheus helpers that run queries or need state Vigil's templates do
/// not have: named so the error says why rather than "not defined".
const UNSUPPORTED: &[&str] = &[
    "query",
    "first",
    "label",
    "value",
    "strvalue",
    "sortByLabel",
    "args",
    "tmpl",
    "graphLink",
    "tableLink",
    "pathPrefix",
    "externalURL",
    "toTime",
    "toDuration",
    "parseDuration",
    "now",
    "js",
    "call",
    "slice",
];

/// Whether `name` can be called (checked at parse time, as Go does).
pub(super) fn check_name(name: &str) -> Result<(), String> {
    if FUNCS.contains(&name) {
        Ok(())
    } else if UNSUPPORTED.contains(&name) {
        Err(format!(
            "function {name:?} is not supported in Vigil templates (see docs/alerting.md)"
        ))
    } else {
        Err(format!("function {name:?} not defined"))
    }
}

pub(super) fn call(name: &str, args: &[Val]) -> Result<Val, String> {
    let one = || match args {
        [a] => Ok(a),
        _ => Err(format!(
            "wrong number of args for {name}: want 1 got {}",
            args.len()
        )),
    };
    Ok(match name {
        "and" => args
            .iter()
            .find(|a| !a.truthy())
            .or(args.last())
            .cloned()
            .ok_or("and needs arguments")?,
        "or" => args
            .iter()
            .find(|a| a.truthy())
            .or(args.last())
            .cloned()
            .ok_or("or needs arguments")?,
        "not" => Val::Bool(!one()?.truthy()),
        "len" => Val::Int(match one()? {
            Val::Str(s) => s.len() as i64,
            Val::Map(m) => m.len() as i64,
            other => return Err(format!("len of type {}", other.type_name())),
        }),
        "index" => match args {
            [Val::Map(m), Val::Str(k)] => Val::Str(m.get(k).cloned().unwrap_or_default()),
            _ => return Err("index: want a label map and a string key".into()),
        },
        "print" => Val::Str(go_print(args)),
        "println" => Val::Str(format!(
            "{}\n",
            args.iter().map(Val::display).collect::<Vec<_>>().join(" ")
        )),
        "printf" => match args.split_first() {
            Some((Val::Str(f), rest)) => Val::Str(sprintf(f, rest)),
            _ => return Err("printf: the first argument must be a format string".into()),
        },
        "eq" => {
            let (first, rest) = args
                .split_first()
                .ok_or("missing argument for comparison")?;
            if rest.is_empty() {
                return Err("missing argument for comparison".into());
            }
            let mut any = false;
            for r in rest {
                any |= compare(first, r)? == std::cmp::Ordering::Equal;
            }
            Val::Bool(any)
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            let [a, b] = args else {
                return Err(format!("{name}: want 2 arguments, got {}", args.len()));
            };
            let o = compare(a, b)?;
            if matches!(a, Val::Bool(_)) && name != "ne" {
                return Err("invalid type for comparison".into());
            }
            Val::Bool(match name {
                "ne" => o.is_ne(),
                "lt" => o.is_lt(),
                "le" => o.is_le(),
                "gt" => o.is_gt(),
                _ => o.is_ge(),
            })
        }
        "safeHtml" => Val::Str(string(one()?)),
        "html" => Val::Str(
            string(one()?)
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&#34;")
                .replace('\'', "&#39;"),
        ),
        "urlquery" => {
            Val::Str(form_urlencoded::byte_serialize(go_print(args).as_bytes()).collect())
        }
        "humanize" => Val::Str(humanize(number(one()?)?)),
        "humanize1024" => Val::Str(humanize1024(number(one()?)?)),
        "humanizeDuration" => Val::Str(humanize_duration(number(one()?)?)),
        "humanizePercentage" => Val::Str(format!("{}%", g4(number(one()?)? * 100.0))),
        "humanizeTimestamp" => Val::Str(humanize_timestamp(number(one()?)?)?),
        "title" => Val::Str(title(&string(one()?))),
        "toUpper" => Val::Str(string(one()?).to_uppercase()),
        "toLower" => Val::Str(string(one()?).to_lowercase()),
        "match" => match args {
            [Val::Str(re), Val::Str(s)] => Val::Bool(regex(re)?.is_match(s)),
            _ => return Err("match: want a pattern and a string".into()),
        },
        "reReplaceAll" => match args {
            [Val::Str(re), Val::Str(repl), Val::Str(s)] => {
                Val::Str(regex(re)?.replace_all(s, repl.as_str()).into_owned())
            }
            _ => return Err("reReplaceAll: want a pattern, a replacement and a string".into()),
        },
        "stripPort" => Val::Str(split_host_port(&string(one()?)).0.to_string()),
        "stripDomain" => Val::Str(strip_domain(&string(one()?))),
        _ => return Err(format!("function {name:?} not defined")),
    })
}

/// `fmt.Sprint`: spaces between operands when neither side is a string.
fn go_print(args: &[Val]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !matches!(a, Val::Str(_)) && !matches!(args[i - 1], Val::Str(_)) {
            out.push(' ');
        }
        out.push_str(&a.display());
    }
    out
}

fn string(v: &Val) -> String {
    v.display()
}

fn regex(re: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(re).map_err(|e| format!("bad regular expression {re:?}: {e}"))
}

fn compare(a: &Val, b: &Val) -> Result<std::cmp::Ordering, String> {
    use std::cmp::Ordering;
    let num = |v: &Val| match v {
        Val::Int(i) => Some(*i as f64),
        Val::Float(f) => Some(*f),
        _ => None,
    };
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => Ok(x.cmp(y)),
        (Val::Str(x), Val::Str(y)) => Ok(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => Ok(x.cmp(y)),
        // Go refuses int-vs-float comparisons; Vigil compares them as
        // numbers, so `gt $value 80` works as operators expect.
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => Ok(x.partial_cmp(&y).unwrap_or(Ordering::Less)),
            _ => Err(format!(
                "incompatible types for comparison: {} and {}",
                a.type_name(),
                b.type_name()
            )),
        },
    }
}

/// Prometheus' `convertToFloat`: numbers, and strings that parse.
fn number(v: &Val) -> Result<f64, String> {
    match v {
        Val::Float(f) => Ok(*f),
        Val::Int(i) => Ok(*i as f64),
        Val::Str(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("can't convert {s:?} to float")),
        other => Err(format!("can't convert {} to float", other.type_name())),
    }
}

fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return g4(v);
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", g4(v))
}

fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return g4(v);
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", g4(v))
}

fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return g4(v);
    }
    if v == 0.0 {
        return format!("{}s", g4(v));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let d = v as i64;
        let (secs, mins, hours, days) = (d % 60, d / 60 % 60, d / 3600 % 24, d / 86400);
        return if days != 0 {
            format!("{sign}{days}d {hours}h {mins}m {secs}s")
        } else if hours != 0 {
            format!("{sign}{hours}h {mins}m {secs}s")
        } else if mins != 0 {
            format!("{sign}{mins}m {secs}s")
        } else {
            format!("{sign}{}s", g4(v))
        };
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", g4(v))
}

/// Go's `time.Time.String()` of the UTC time, at millisecond precision as
/// Prometheus truncates it: `2015-06-23 13:19:44.128 +0000 UTC`.
fn humanize_timestamp(v: f64) -> Result<String, String> {
    if !v.is_finite() {
        return Ok(g4(v));
    }
    let ms = (v * 1000.0).trunc();
    if ms.abs() > 8.2e15 {
        return Err(format!("{v} cannot be represented as a timestamp"));
    }
    let ms = ms as i64;
    let t = chrono::DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| format!("{v} cannot be represented as a timestamp"))?;
    let frac = ms.rem_euclid(1000);
    let mut text = t.format("%Y-%m-%d %H:%M:%S").to_string();
    if frac != 0 {
        let f = format!("{frac:03}");
        text.push('.');
        text.push_str(f.trim_end_matches('0'));
    }
    text.push_str(" +0000 UTC");
    Ok(text)
}

/// Capitalises the first letter of every word, leaving the rest alone.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !(c.is_alphanumeric() || c == '_' || c == '\'');
    }
    out
}

/// Go's `net.SplitHostPort`, falling back to the whole input as the host.
fn split_host_port(s: &str) -> (&str, Option<&str>) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((host, port)) = rest.split_once("]:") {
            return (host, Some(port));
        }
        return (s, None);
    }
    match s.split_once(':') {
        Some((h, p)) if !p.contains(':') => (h, Some(p)),
        _ => (s, None),
    }
}

fn strip_domain(s: &str) -> String {
    let (host, port) = split_host_port(s);
    if host.parse::<std::net::IpAddr>().is_ok() {
        return s.to_string();
    }
    let short = host.split('.').next().unwrap_or(host);
    match port {
        Some(p) => format!("{short}:{p}"),
        None => short.to_string(),
    }
}
