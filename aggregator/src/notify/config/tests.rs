//! The notification config file as a whole, and the example files shipped
//! under deploy/.

use super::*;

fn labels(pairs: &[(&str, &str)]) -> crate::alert::LabelSet {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn shipped_examples_parse_and_route_teams() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let text = std::fs::read_to_string(root.join("notify.example.yml")).expect("example");
    let plan = parse_file(&text, true).expect("the example is valid");
    let route = |pairs: &[(&str, &str)]| -> Vec<String> {
        plan.route
            .matching(&labels(pairs))
            .iter()
            .map(|r| r.receiver.clone())
            .collect()
    };
    assert_eq!(
        route(&[("team", "platform"), ("severity", "critical")]),
        ["pager", "platform"]
    );
    assert_eq!(
        route(&[("team", "platform"), ("severity", "warning")]),
        ["platform"]
    );
    assert_eq!(
        route(&[("team", "ml-ops"), ("severity", "warning")]),
        ["ml-ops"]
    );
    assert_eq!(
        route(&[("team", "ml-ops"), ("severity", "critical")]),
        ["pager", "ml-ops"]
    );
    assert_eq!(route(&[("severity", "info")]), ["default"]);
    assert_eq!(
        plan.inhibit_rules.last(),
        Some(&InhibitRule::agent_down()),
        "built-in rule appended"
    );
    // The TOML example names it, relative to itself.
    let toml = std::fs::read_to_string(root.join("aggregator.example.toml")).expect("toml");
    let mut problems = Vec::new();
    let parsed: crate::config::Config =
        vigil_common::config::parse_toml(&toml, &mut problems).expect("toml parses");
    assert!(problems.is_empty(), "{problems:?}");
    let mut notify = parsed.notify;
    notify.load(&root.join("aggregator.example.toml"), &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    assert!(notify.plan.is_some());
}

#[test]
fn every_problem_in_the_file_is_reported() {
    let text = r#"
colour: blue
route:
  receiver: nobody
  group_wait: later
  routes:
    - matchers: ['team=~"("']
      mute_time_intervals: [never-defined]
      frobnicate: true
receivers:
  - name: a
  - name: a
inhibit_rules:
  - source_matchers: ['severity="critical"']
    equal: ['bad-label']
  - target_matchers: ['x="y"']
time_intervals:
  - name: weekends
    time_intervals:
      - weekdays: [caturday]
"#;
    let errors = parse_file(text, true).expect_err("invalid").join("\n");
    for needle in [
        "unknown key `colour`",
        "unknown key `route.routes[0].frobnicate`",
        "undefined receiver \"nobody\"",
        "route.group_wait",
        "invalid regex",
        "undefined time interval \"never-defined\"",
        "receiver \"a\": defined more than once",
        "inhibit_rules[0].equal: invalid label name",
        "inhibit_rules[0]: target matchers are empty",
        "inhibit_rules[1]: source matchers are empty",
        "caturday",
    ] {
        assert!(errors.contains(needle), "{needle} missing from:\n{errors}");
    }
}

#[test]
fn legacy_shapes_are_accepted() {
    let text = r#"
route:
  receiver: r
  routes:
    - match: {team: platform}
      match_re: {severity: 'crit.*'}
      receiver: r
      active_time_intervals: [office]
inhibit_rules:
  - source_match: {severity: critical}
    target_match_re: {severity: 'warning|info'}
    equal: [host]
receivers:
  - name: r
mute_time_intervals:
  - name: office
    time_intervals:
      - times: [{start_time: '09:00', end_time: '17:00'}]
"#;
    let plan = parse_file(text, false).expect("valid");
    assert_eq!(
        plan.inhibit_rules.len(),
        1,
        "no built-in rule when disabled"
    );
    assert_eq!(plan.route.routes[0].matchers.len(), 2);
    assert!(plan.time_intervals.contains_key("office"));
}

#[test]
fn a_syntax_error_and_a_missing_route_are_reported() {
    let errors = parse_file("route: [", true).expect_err("invalid");
    assert_eq!(errors.len(), 1, "{errors:?}");
    let errors = parse_file("receivers: []\n", true).expect_err("invalid");
    assert!(errors[0].contains("route: missing"), "{errors:?}");
}
