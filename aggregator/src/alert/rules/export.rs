//! A rule file as plain Prometheus: the same groups and rules with every
//! `vigil:` key removed, for `GET /api/v1/export/prometheus-rules` and for
//! anyone who loads Vigil's rules into a real Prometheus.

use serde_norway::Value;

/// Why a rule file could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("rule file is not valid YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
    #[error("rule file has no `groups` list")]
    Shape,
}

const HEADER: &str = "# Exported by Vigil (GET /api/v1/export/prometheus-rules): Prometheus rule\n\
# file format, Vigil's `vigil:` extensions (hysteresis, flap detection)\n\
# removed. Check with `promtool check rules FILE`.\n";

/// Re-serialises `text` without `vigil:` keys (comments are not kept).
pub fn prometheus_rules(text: &str) -> Result<String, ExportError> {
    let mut root: Value = serde_norway::from_str(text)?;
    let groups = root
        .get_mut("groups")
        .and_then(Value::as_sequence_mut)
        .ok_or(ExportError::Shape)?;
    for g in groups {
        let Some(rules) = g.get_mut("rules").and_then(Value::as_sequence_mut) else {
            continue;
        };
        for r in rules {
            if let Some(m) = r.as_mapping_mut() {
                m.remove("vigil");
            }
        }
    }
    Ok(format!("{HEADER}{}", serde_norway::to_string(&root)?))
}
