//! Annotation and label templates: the subset of Go's text/template that
//! Prometheus rule files use.
//!
//! - Data: `{{ $labels.x }}`, `{{ $value }}`, `{{ $externalLabels.x }}`,
//!   `{{ $externalURL }}`, and the same through dot (`{{ .Labels.x }}`,
//!   `{{ .Value }}`); a missing label reads as "" (Prometheus'
//!   `missingkey=zero`).
//! - Actions: pipelines (`{{ $value | humanize }}`), parenthesised calls,
//!   `{{ $x := ... }}`, `if` / `else if` / `else` / `end`, `with`, `range`
//!   over a label map, `{{/* comments */}}`, `{{-` / `-}}` trimming.
//! - Functions: Go's `and or not len index print printf println eq ne lt le
//!   gt ge html urlquery`, Prometheus' `humanize humanize1024
//!   humanizeDuration humanizePercentage humanizeTimestamp title toUpper
//!   toLower match reReplaceAll stripPort stripDomain safeHtml`.
//!   Query helpers (`query`, `first`, `label`, ...) are not supported and
//!   rejected when the rule file loads.
//!
//! A small parser of our own ([`parse`]) rather than a crate: the one Go
//! template crate (gtmpl) is unmaintained since 2021, calls its `printf`
//! unstable, and would still need every Prometheus helper and Go's float
//! formatting ([`gofmt`]) written here.

mod exec;
mod funcs;
mod gofmt;
mod lex;
mod parse;
#[cfg(test)]
mod tests;

use super::LabelSet;

/// What a template can refer to.
#[derive(Debug, Clone, Copy)]
pub struct TemplateData<'a> {
    /// The alert's labels (`$labels`).
    pub labels: &'a LabelSet,
    /// The sample value that triggered it (`$value`).
    pub value: f64,
    /// `$externalLabels`.
    pub external_labels: &'a LabelSet,
    /// `$externalURL`.
    pub external_url: &'a str,
}

/// A template that could not be parsed or executed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("template {name:?}: {message}")]
pub struct TemplateError {
    pub name: String,
    pub message: String,
}

/// Parses `text` without running it: what the rule loader calls, so a rule
/// file with a broken template is rejected when it loads.
pub fn check(name: &str, text: &str) -> Result<(), TemplateError> {
    parse::parse(text)
        .map(drop)
        .map_err(|message| TemplateError {
            name: name.to_string(),
            message,
        })
}

/// Expands `text`; `name` (the annotation's key) appears in errors.
pub fn expand(name: &str, text: &str, data: &TemplateData<'_>) -> Result<String, TemplateError> {
    let err = |message: String| TemplateError {
        name: name.to_string(),
        message,
    };
    // Most annotations have no action at all.
    if !text.contains("{{") {
        return Ok(text.to_string());
    }
    let tree = parse::parse(text).map_err(err)?;
    let (root, vars) = exec::root(data);
    let mut run = exec::Exec::new(vars);
    run.list(&tree, &root).map_err(err)?;
    Ok(run.finish())
}

/// [`expand`], with a failure written into the result the way Prometheus
/// does (`<error expanding template: ...>`), so one bad annotation does not
/// stop an alert.
pub fn expand_or_error(name: &str, text: &str, data: &TemplateData<'_>) -> String {
    expand(name, text, data).unwrap_or_else(|e| format!("<error expanding template: {e}>"))
}
