//! Inhibition, exactly as Alertmanager's inhibitor decides it: an alert is
//! muted by a rule when it matches the rule's target matchers and some
//! *firing* alert matches the source matchers and has the same value for
//! every `equal` label (a label missing on both sides counts as equal: a
//! missing label is the empty string). When the alert matches the source
//! side too, source alerts that also match the target side are skipped, so
//! an alert never inhibits itself (nor two such alerts each other).

use std::collections::HashMap;

use crate::alert::{Alert, LabelSet};
use crate::notify::config::InhibitRule;
use crate::notify::config::matcher::all_match;

/// The fingerprint of a firing alert that inhibits `labels`, if any (one
/// question: builds an [`Index`] and asks it).
pub fn inhibited_by(
    rules: &[InhibitRule],
    firing: &HashMap<u64, Alert>,
    labels: &LabelSet,
) -> Option<u64> {
    Index::new(rules, firing).inhibited_by(rules, labels)
}

fn value<'a>(l: &'a LabelSet, n: &str) -> &'a str {
    l.get(n).map(String::as_str).unwrap_or("")
}

/// The firing source alerts of every rule, keyed by their `equal` label
/// values, so a flush of many alerts costs one lookup per alert and rule
/// instead of a scan of every firing alert.
/// Built from the rules it is then asked about; rebuilt when the firing
/// alerts change.
#[derive(Debug, Default)]
pub struct Index {
    /// Per rule: equal-label values -> (fingerprint, also matches the
    /// target side), fingerprints ascending for a deterministic answer.
    sources: Vec<Sources>,
}

/// One rule's firing sources by their `equal` label values.
type Sources = HashMap<Vec<String>, Vec<(u64, bool)>>;

impl Index {
    pub fn new(rules: &[InhibitRule], firing: &HashMap<u64, Alert>) -> Index {
        let sources = rules
            .iter()
            .map(|rule| {
                let mut map: Sources = HashMap::new();
                for (fp, a) in firing {
                    if a.is_resolved() || !all_match(&rule.source, &a.labels) {
                        continue;
                    }
                    let key = rule
                        .equal
                        .iter()
                        .map(|n| value(&a.labels, n).to_string())
                        .collect();
                    map.entry(key)
                        .or_default()
                        .push((*fp, all_match(&rule.target, &a.labels)));
                }
                for list in map.values_mut() {
                    list.sort_unstable();
                }
                map
            })
            .collect();
        Index { sources }
    }

    /// The fingerprint of a firing alert that inhibits `labels`, if any;
    /// `rules` are those the index was built from.
    pub fn inhibited_by(&self, rules: &[InhibitRule], labels: &LabelSet) -> Option<u64> {
        for (rule, sources) in rules.iter().zip(&self.sources) {
            if sources.is_empty() || !all_match(&rule.target, labels) {
                continue;
            }
            let two_sided = all_match(&rule.source, labels);
            let key: Vec<String> = rule
                .equal
                .iter()
                .map(|n| value(labels, n).to_string())
                .collect();
            let hit = sources
                .get(&key)
                .and_then(|list| list.iter().find(|(_, both)| !(two_sided && *both)));
            if let Some((fp, _)) = hit {
                return Some(*fp);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::config::matcher::Matcher;

    fn labels(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn alert(pairs: &[(&str, &str)], resolved: bool) -> Alert {
        Alert {
            labels: labels(pairs),
            annotations: LabelSet::new(),
            starts_at_ms: 0,
            ends_at_ms: resolved.then_some(10),
            generator_url: String::new(),
            flapping: false,
        }
    }

    fn firing(alerts: &[Alert]) -> HashMap<u64, Alert> {
        alerts
            .iter()
            .map(|a| (a.fingerprint(), a.clone()))
            .collect()
    }

    fn rule(source: &str, target: &str, equal: &[&str]) -> InhibitRule {
        InhibitRule {
            source: vec![Matcher::parse(source).expect("m")],
            target: vec![Matcher::parse(target).expect("m")],
            equal: equal.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn equal_labels_must_have_equal_values() {
        let rules = [rule(
            r#"severity="critical""#,
            r#"severity="warning""#,
            &["host"],
        )];
        let src = alert(&[("severity", "critical"), ("host", "a")], false);
        let map = firing(std::slice::from_ref(&src));
        let same_host = labels(&[("severity", "warning"), ("host", "a")]);
        let other_host = labels(&[("severity", "warning"), ("host", "b")]);
        assert_eq!(
            inhibited_by(&rules, &map, &same_host),
            Some(src.fingerprint())
        );
        assert_eq!(inhibited_by(&rules, &map, &other_host), None);
        // The target lacks `host` while the source has it: not equal.
        assert_eq!(
            inhibited_by(&rules, &map, &labels(&[("severity", "warning")])),
            None
        );
    }

    #[test]
    fn an_equal_label_absent_on_both_sides_counts_as_equal() {
        let rules = [rule(
            r#"severity="critical""#,
            r#"severity="warning""#,
            &["cluster"],
        )];
        let map = firing(&[alert(&[("severity", "critical"), ("host", "a")], false)]);
        let target = labels(&[("severity", "warning"), ("host", "b")]);
        assert!(inhibited_by(&rules, &map, &target).is_some());
    }

    #[test]
    fn only_firing_sources_inhibit() {
        let rules = [rule(r#"severity="critical""#, r#"severity="warning""#, &[])];
        let map = firing(&[alert(&[("severity", "critical")], true)]);
        assert_eq!(
            inhibited_by(&rules, &map, &labels(&[("severity", "warning")])),
            None
        );
    }

    #[test]
    fn an_alert_does_not_inhibit_itself() {
        // Matches both sides: e.g. source `team="x"`, target `team="x"`.
        let rules = [rule(r#"team="x""#, r#"team="x""#, &[])];
        let a = alert(&[("team", "x"), ("alertname", "A")], false);
        let map = firing(std::slice::from_ref(&a));
        assert_eq!(inhibited_by(&rules, &map, &a.labels), None);
        // Another alert matching both sides does not inhibit it either.
        let b = alert(&[("team", "x"), ("alertname", "B")], false);
        let map = firing(&[a.clone(), b]);
        assert_eq!(inhibited_by(&rules, &map, &a.labels), None);
    }

    #[test]
    fn agent_down_mutes_its_host_only_and_not_itself() {
        let rules = [InhibitRule::agent_down()];
        let down = alert(&[("alertname", "VigilAgentDown"), ("host", "a")], false);
        let map = firing(std::slice::from_ref(&down));
        let cpu_a = labels(&[("alertname", "HighCpu"), ("host", "a")]);
        let cpu_b = labels(&[("alertname", "HighCpu"), ("host", "b")]);
        assert_eq!(inhibited_by(&rules, &map, &cpu_a), Some(down.fingerprint()));
        assert_eq!(inhibited_by(&rules, &map, &cpu_b), None);
        assert_eq!(inhibited_by(&rules, &map, &down.labels), None);
    }
}
