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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_vigil_keys_and_keeps_everything_else() {
        let text = "groups:\n  - name: g\n    interval: 1m\n    rules:\n      - alert: A\n        expr: x > 1\n        for: 5m\n        labels: {severity: warning}\n        annotations: {summary: \"{{ $value }}\"}\n        vigil: {recover: x < 1}\n      - record: a:b\n        expr: sum(x)\n";
        let out = prometheus_rules(text).expect("exports");
        assert!(out.starts_with("# Exported by Vigil"), "{out}");
        let body: String = out.lines().filter(|l| !l.starts_with('#')).collect();
        assert!(
            !body.contains("vigil") && !body.contains("recover"),
            "{out}"
        );
        let groups =
            crate::alert::rules::parse(std::path::Path::new("e.yml"), &out).expect("loads");
        let original =
            crate::alert::rules::parse(std::path::Path::new("e.yml"), text).expect("loads");
        let mut stripped = original.clone();
        for g in &mut stripped {
            for r in &mut g.rules {
                if let crate::alert::rules::Rule::Alerting(a) = r {
                    a.vigil = Default::default();
                }
            }
        }
        assert_eq!(groups, stripped);
    }

    #[test]
    fn a_broken_file_is_an_error_not_a_panic() {
        assert!(matches!(
            prometheus_rules("groups: ["),
            Err(ExportError::Yaml(_))
        ));
        assert!(matches!(
            prometheus_rules("rules: []"),
            Err(ExportError::Shape)
        ));
    }
}
