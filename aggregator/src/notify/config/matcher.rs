//! Label matchers with Alertmanager's semantics and syntax.
//!
//! A matcher is `name op value` with `op` one of `=`, `!=`, `=~`, `!~`. A
//! missing label matches as the empty string, and regular expressions are
//! anchored at both ends (`=~"web.*"` is `^(?:web.*)$`), as in Alertmanager
//! and Prometheus. The text form accepts a quoted (`a="b"`, with `\"`, `\\`
//! and `\n` escapes) or unquoted (`a = b`) value; silences use the JSON form
//! `{name, value, isRegex, isEqual}`.

use std::fmt;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::alert::LabelSet;

/// The comparison a matcher makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

/// One compiled matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    /// The anchored regex for `=~` / `!~`.
    re: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Matcher {
    /// A matcher; fails on an invalid label name or regex.
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Matcher, String> {
        if !valid_label_name(name) {
            return Err(format!("invalid label name {name:?}"));
        }
        let re = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("invalid regex {value:?} for {name:?}: {e}"))?,
            ),
            MatchOp::Equal | MatchOp::NotEqual => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            re,
        })
    }

    /// Whether a label value (`""` when the label is missing) matches.
    pub fn matches_value(&self, v: &str) -> bool {
        match (self.op, &self.re) {
            (MatchOp::Equal, _) => v == self.value,
            (MatchOp::NotEqual, _) => v != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(v),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(v),
            // `new` always compiles the regex of a regex matcher.
            (MatchOp::Regex | MatchOp::NotRegex, None) => false,
        }
    }

    /// Whether `labels` match (a missing label is the empty string).
    pub fn matches(&self, labels: &LabelSet) -> bool {
        self.matches_value(labels.get(&self.name).map(String::as_str).unwrap_or(""))
    }

    /// Parses one matcher in the text form (`a="b"`, `a=~"x|y"`, `a != b`).
    pub fn parse(text: &str) -> Result<Matcher, String> {
        let s = text.trim();
        let name_end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .ok_or_else(|| format!("matcher {text:?} has no operator"))?;
        let name = &s[..name_end];
        let rest = s[name_end..].trim_start();
        let (op, rest) = if let Some(r) = rest.strip_prefix("=~") {
            (MatchOp::Regex, r)
        } else if let Some(r) = rest.strip_prefix("!~") {
            (MatchOp::NotRegex, r)
        } else if let Some(r) = rest.strip_prefix("!=") {
            (MatchOp::NotEqual, r)
        } else if let Some(r) = rest.strip_prefix('=') {
            (MatchOp::Equal, r)
        } else {
            return Err(format!(
                "matcher {text:?}: expected one of =, !=, =~, !~ after the label name"
            ));
        };
        let value = unquote(rest.trim()).map_err(|e| format!("matcher {text:?}: {e}"))?;
        Matcher::new(name, op, &value).map_err(|e| format!("matcher {text:?}: {e}"))
    }
}

/// One `matchers:` entry: a single matcher, or several separated by
/// commas, optionally in braces (`{a="b", c=~"d"}`), as Alertmanager reads
/// each line of `matchers`.
pub fn parse_list(text: &str) -> Result<Vec<Matcher>, String> {
    let t = text.trim();
    let inner = match (t.strip_prefix('{'), t.ends_with('}')) {
        (Some(rest), true) => &rest[..rest.len() - 1],
        (Some(_), false) => return Err(format!("matcher list {text:?} lacks its closing brace")),
        _ => t,
    };
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in inner.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    // A trailing comma is allowed; empty entries elsewhere are not.
    if parts.len() > 1 && parts.last().is_some_and(|p| p.trim().is_empty()) {
        parts.pop();
    }
    parts.into_iter().map(Matcher::parse).collect()
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

/// Whether every matcher matches `labels`.
pub fn all_match(matchers: &[Matcher], labels: &LabelSet) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

/// `{a="b",c=~"d"}`: matchers as Alertmanager prints them in route keys.
pub fn display_set(matchers: &[Matcher]) -> String {
    let inner: Vec<String> = matchers.iter().map(Matcher::to_string).collect();
    format!("{{{}}}", inner.join(","))
}

/// Prometheus' label name rule.
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A quoted value with `\"`, `\\`, `\n`, `\t` escapes, or a bare one as is.
fn unquote(s: &str) -> Result<String, String> {
    let Some(body) = s.strip_prefix('"') else {
        if s.contains('"') {
            return Err("unbalanced quote".into());
        }
        return Ok(s.to_string());
    };
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                return if chars.as_str().trim().is_empty() {
                    Ok(out)
                } else {
                    Err("text after the closing quote".into())
                };
            }
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(c @ ('"' | '\\')) => out.push(c),
                Some(c) => return Err(format!("unknown escape \\{c}")),
                None => return Err("unterminated escape".into()),
            },
            c => out.push(c),
        }
    }
    Err("missing closing quote".into())
}

/// A matcher in Alertmanager's API JSON shape (silences).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiMatcher {
    /// Label name.
    pub name: String,
    /// Value, or regex when `isRegex`.
    pub value: String,
    /// `=~` / `!~` instead of `=` / `!=`.
    pub is_regex: bool,
    /// `=` / `=~` (default) rather than `!=` / `!~`.
    #[serde(default = "default_is_equal")]
    pub is_equal: bool,
}

fn default_is_equal() -> bool {
    true
}

impl ApiMatcher {
    pub fn compile(&self) -> Result<Matcher, String> {
        let op = match (self.is_regex, self.is_equal) {
            (false, true) => MatchOp::Equal,
            (false, false) => MatchOp::NotEqual,
            (true, true) => MatchOp::Regex,
            (true, false) => MatchOp::NotRegex,
        };
        Matcher::new(&self.name, op, &self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn text_forms_parse() {
        let m = Matcher::parse(r#"team="platform""#).expect("parses");
        assert_eq!(
            (m.name.as_str(), m.op, m.value.as_str()),
            ("team", MatchOp::Equal, "platform")
        );
        let m = Matcher::parse("severity =~ critical|warning").expect("parses");
        assert_eq!(m.op, MatchOp::Regex);
        assert!(m.matches_value("warning") && !m.matches_value("warn"));
        let m = Matcher::parse(r#"x!="a \"q\"""#).expect("parses");
        assert_eq!((m.op, m.value.as_str()), (MatchOp::NotEqual, "a \"q\""));
        assert_eq!(
            Matcher::parse("a!~b").expect("parses").op,
            MatchOp::NotRegex
        );
        for bad in [
            "team",
            "=x",
            "1a=b",
            r#"a="b"#,
            r#"a="b" c"#,
            "a=~(",
            r#"a="\q""#,
            "a<b",
        ] {
            assert!(Matcher::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn an_entry_may_hold_several_matchers() {
        let list =
            parse_list(r#"{team="platform", severity=~"crit,ical|warning",}"#).expect("parses");
        assert_eq!(list.len(), 2);
        assert_eq!(
            list[1].value, "crit,ical|warning",
            "a comma inside quotes stays"
        );
        assert_eq!(parse_list("a=b, c!=d").expect("parses").len(), 2);
        assert_eq!(parse_list(r#"a="b""#).expect("parses").len(), 1);
        for bad in [r#"{a="b""#, "a=b,,c=d", "", "{}"] {
            assert!(parse_list(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn missing_labels_match_as_empty_and_regexes_are_anchored() {
        let l = labels(&[("host", "web-1")]);
        assert!(Matcher::parse(r#"team="""#).expect("m").matches(&l));
        assert!(Matcher::parse(r#"team!="x""#).expect("m").matches(&l));
        assert!(!Matcher::parse(r#"host=~"web""#).expect("m").matches(&l));
        assert!(Matcher::parse(r#"host=~"web.*""#).expect("m").matches(&l));
        assert!(Matcher::parse(r#"host!~"db.*""#).expect("m").matches(&l));
    }

    #[test]
    fn api_shape_compiles() {
        let m: ApiMatcher =
            serde_json::from_str(r#"{"name":"host","value":"web-.*","isRegex":true}"#)
                .expect("json");
        let c = m.compile().expect("compiles");
        assert_eq!(c.op, MatchOp::Regex);
        let m: ApiMatcher =
            serde_json::from_str(r#"{"name":"host","value":"a","isRegex":false,"isEqual":false}"#)
                .expect("json");
        assert_eq!(m.compile().expect("c").op, MatchOp::NotEqual);
        assert_eq!(display_set(&[c]), r#"{host=~"web-.*"}"#);
    }
}
