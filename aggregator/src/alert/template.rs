//! Annotation and label templates: the subset of Go's text/template that
//! Prometheus rule files use (`{{ $labels.x }}`, `{{ $value }}`, helpers such
//! as `humanize`).
//!
//! (Minimal first version: `$labels.NAME`, `$value` and `$externalLabels.NAME`
//! only; the complete language is being written.)

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

/// Expands `text`; `name` (the annotation's key) appears in errors.
pub fn expand(name: &str, text: &str, data: &TemplateData<'_>) -> Result<String, TemplateError> {
    let err = |message: String| TemplateError {
        name: name.to_string(),
        message,
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| err("unclosed action".into()))?;
        let action = after[..close].trim();
        if action == "$value" {
            out.push_str(&data.value.to_string());
        } else if let Some(l) = action.strip_prefix("$labels.") {
            out.push_str(data.labels.get(l).map_or("", String::as_str));
        } else if let Some(l) = action.strip_prefix("$externalLabels.") {
            out.push_str(data.external_labels.get(l).map_or("", String::as_str));
        } else if action == "$externalURL" {
            out.push_str(data.external_url);
        } else {
            return Err(err(format!("unsupported action {action:?}")));
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// [`expand`], with a failure written into the result the way Prometheus
/// does (`<error expanding template: ...>`), so one bad annotation does not
/// stop an alert.
pub fn expand_or_error(name: &str, text: &str, data: &TemplateData<'_>) -> String {
    expand(name, text, data).unwrap_or_else(|e| format!("<error expanding template: {e}>"))
}
