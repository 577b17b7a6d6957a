use std::path::Path;

use super::*;

fn errors(text: &str) -> Vec<String> {
    match parse(Path::new("r.yml"), text) {
        Ok(g) => panic!("expected errors, loaded {g:?}"),
        Err(e) => e,
    }
}

fn one_error(text: &str, needle: &str) {
    let e = errors(text);
    assert!(
        e.iter().any(|l| l.contains(needle)),
        "no error containing {needle:?} in {e:#?}"
    );
}

fn rule(body: &str) -> String {
    format!("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n{body}")
}

#[test]
fn a_valid_file_loads_with_every_field() {
    let text = r#"
groups:
  - name: hosts
    interval: 1m30s
    rules:
      - record: host:cpu:avg5m
        expr: avg by (host) (avg_over_time(system_cpu_usage_ratio[5m]))
        labels: {source: vigil}
      - alert: HostCpuHigh
        expr: host:cpu:avg5m > 0.9
        for: 10m
        keep_firing_for: 5m
        labels: {severity: warning, priority: 2}
        annotations:
          summary: "CPU on {{ $labels.host }} is {{ $value | humanizePercentage }}"
        vigil:
          recover: host:cpu:avg5m < 0.8
          flap: {window: 20, high: 0.5, low: 0.25}
"#;
    let groups = parse(Path::new("ok.yml"), text).expect("valid");
    assert_eq!(groups.len(), 1);
    let g = &groups[0];
    assert_eq!(g.interval, Some(Duration::from_secs(90)));
    assert_eq!(g.file, Path::new("ok.yml"));
    let Rule::Recording(r) = &g.rules[0] else {
        panic!("recording rule first")
    };
    assert_eq!(r.record, "host:cpu:avg5m");
    let Rule::Alerting(a) = &g.rules[1] else {
        panic!("alerting rule second")
    };
    assert_eq!(a.for_, Duration::from_secs(600));
    assert_eq!(a.keep_firing_for, Duration::from_secs(300));
    assert_eq!(a.labels["priority"], "2");
    assert_eq!(a.vigil.recover.as_deref(), Some("host:cpu:avg5m < 0.8"));
    assert_eq!(
        a.vigil.flap,
        Some(FlapDetection {
            window: 20,
            high: 0.5,
            low: 0.25
        })
    );
    // Empty files and empty groups are fine, as in Prometheus.
    assert_eq!(parse(Path::new("e.yml"), "").expect("empty"), vec![]);
    assert_eq!(
        parse(Path::new("e.yml"), "groups: []\n").expect("no groups"),
        vec![]
    );
}

#[test]
fn yaml_errors_carry_the_position() {
    let e = errors("groups:\n  - name: g\n    rules: [\n");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("r.yml: YAML:") && e[0].contains("line"),
        "{e:?}"
    );
}

#[test]
fn unknown_keys_are_reported_everywhere() {
    one_error("groups: []\nextra: 1\n", "unknown key `extra`");
    one_error(
        "groups:\n  - name: g\n    colour: red\n    rules: []\n",
        "unknown key `colour` in a group",
    );
    one_error(
        &rule("        severity: critical\n"),
        "unknown key `severity` in a rule",
    );
    one_error(
        &rule("        vigil: {recovr: up}\n"),
        "unknown key `recovr` in `vigil`",
    );
    one_error(
        &rule("        vigil: {flap: {window: 3, high: 0.5, low: 0.2, size: 1}}\n"),
        "unknown key `size`",
    );
    one_error(
        "groups:\n  - name: g\n    limit: 10\n    rules: []\n",
        "`limit` is not supported by Vigil",
    );
    one_error(
        "groups:\n  - name: g\n    name: h\n    rules: []\n",
        "duplicate",
    );
}

#[test]
fn group_names_must_be_present_and_unique() {
    one_error(
        "groups:\n  - name: \"\"\n    rules: []\n",
        "group name must not be empty",
    );
    one_error(
        "groups:\n  - rules: []\n",
        "group \"#1\": group name must not be empty",
    );
    let e = errors(
        "groups:\n  - name: a\n    rules: []\n  - name: b\n    rules: []\n  - name: a\n    rules: []\n",
    );
    assert_eq!(
        e,
        vec!["r.yml:6: group \"a\": duplicate group name in this file"]
    );
}

#[test]
fn durations_must_be_valid_and_not_negative() {
    one_error(
        "groups:\n  - name: g\n    interval: 5 minutes\n    rules: []\n",
        "`interval`: \"5 minutes\" is not a valid duration",
    );
    one_error(
        "groups:\n  - name: g\n    interval: 0s\n    rules: []\n",
        "`interval` must be positive",
    );
    one_error(
        &rule("        for: -5m\n"),
        "`for`: \"-5m\": a duration cannot be negative",
    );
    one_error(
        &rule("        keep_firing_for: 5m1h\n"),
        "`keep_firing_for`: \"5m1h\" is not a valid duration",
    );
    one_error(&rule("        for: 1.5m\n"), "not a valid duration");
    let ok = rule("        for: 1h30m\n        keep_firing_for: 0\n");
    let g = parse(Path::new("r.yml"), &ok).expect("valid durations");
    let Rule::Alerting(a) = &g[0].rules[0] else {
        panic!()
    };
    assert_eq!(a.for_, Duration::from_secs(5400));
    assert_eq!(
        syntax::duration(&"1d2h3m4s500ms".into()),
        Ok(Duration::from_millis(93_784_500))
    );
}

#[test]
fn expressions_must_parse_and_return_a_vector() {
    one_error(
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: rate(up[5m]\n",
        "`expr` does not parse",
    );
    one_error(
        "groups:\n  - name: g\n    rules:\n      - alert: A\n",
        "`expr` must be set",
    );
    one_error(
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up[5m]\n",
        "instant vector or a scalar, not a matrix",
    );
}

#[test]
fn names_must_be_valid() {
    one_error(
        "groups:\n  - name: g\n    rules:\n      - record: 1bad-name\n        expr: up\n",
        "invalid recording rule name \"1bad-name\"",
    );
    one_error(
        &rule("        labels: {\"bad-label\": x}\n"),
        "labels: invalid name \"bad-label\"",
    );
    one_error(
        &rule("        labels: {__reserved: x}\n"),
        "invalid name \"__reserved\"",
    );
    one_error(
        &rule("        annotations: {\"9x\": y}\n"),
        "annotations: invalid name \"9x\"",
    );
    one_error(
        &rule("        labels: {team: [a, b]}\n"),
        "labels.team must be a string",
    );
}

#[test]
fn alert_and_record_are_exclusive_and_recording_rules_stay_plain() {
    one_error(
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        record: b\n        expr: up\n",
        "not both",
    );
    one_error(
        "groups:\n  - name: g\n    rules:\n      - expr: up\n",
        "rule \"#1\": a rule needs `alert`",
    );
    for key in [
        "for: 5m",
        "keep_firing_for: 5m",
        "annotations: {a: b}",
        "vigil: {recover: up}",
    ] {
        let text = format!(
            "groups:\n  - name: g\n    rules:\n      - record: r\n        expr: up\n        {key}\n"
        );
        let field = key.split(':').next().unwrap_or_default();
        one_error(
            &text,
            &format!("`{field}` is not allowed in a recording rule"),
        );
    }
}

#[test]
fn templates_must_parse() {
    one_error(
        &rule("        annotations: {summary: \"{{ $labels.host \"}\n"),
        "annotations.summary: unclosed action",
    );
    one_error(
        &rule("        labels: {severity: \"{{ if $value }}x\"}\n"),
        "labels.severity:",
    );
    one_error(
        &rule("        annotations: {d: \"{{ nosuchfn 1 }}\"}\n"),
        "function \"nosuchfn\" not defined",
    );
}

#[test]
fn vigil_values_are_checked() {
    one_error(
        &rule("        vigil: {recover: \"up >\"}\n"),
        "`vigil.recover` does not parse",
    );
    one_error(
        &rule("        vigil: {flap: {window: 1, high: 0.5, low: 0.2}}\n"),
        "window must be at least 2, got 1",
    );
    one_error(
        &rule("        vigil: {flap: {window: 5, high: 0.2, low: 0.5}}\n"),
        "0 < low < high <= 1",
    );
    one_error(
        &rule("        vigil: {flap: {window: 5, high: 1.5, low: 0.5}}\n"),
        "0 < low < high <= 1",
    );
    one_error(
        &rule("        vigil: {flap: {window: 5, high: 0.5, low: 0}}\n"),
        "0 < low < high <= 1",
    );
    one_error(
        &rule("        vigil: {flap: {window: 5, high: 0.5}}\n"),
        "needs `window`",
    );
    one_error(
        &rule("        vigil: {flap: {window: -3, high: 0.5, low: 0.1}}\n"),
        "needs `window` (a whole number)",
    );
}

#[test]
fn every_problem_comes_back_at_once_with_file_line_group_and_rule() {
    let text = r#"groups:
  - name: first
    interval: soon
    rules:
      - alert: Good
        expr: up == 0
      - alert: BadExpr
        expr: sum(
        for: 5x
      - record: bad name
        expr: up
  - name: second
    rules:
      - alert: BadTemplate
        expr: up
        annotations:
          summary: "{{ $value | }}"
        vigil:
          flap: {window: 0, high: 0.5, low: 0.6}
  - name: first
    rules: []
"#;
    let e = errors(text);
    let expected = [
        "r.yml:2: group \"first\": `interval`: \"soon\" is not a valid duration",
        "r.yml:7: group \"first\": rule \"BadExpr\": `expr` does not parse",
        "r.yml:7: group \"first\": rule \"BadExpr\": `for`: \"5x\" is not a valid duration",
        "r.yml:10: group \"first\": rule \"bad name\": invalid recording rule name",
        "r.yml:14: group \"second\": rule \"BadTemplate\": annotations.summary: missing",
        "r.yml:14: group \"second\": rule \"BadTemplate\": vigil.flap.window must be at least 2",
        "r.yml:14: group \"second\": rule \"BadTemplate\": vigil.flap needs 0 < low < high <= 1",
        "r.yml:20: group \"first\": duplicate group name",
    ];
    for want in expected {
        assert!(
            e.iter().any(|l| l.starts_with(want)),
            "missing {want:?} in {e:#?}"
        );
    }
    assert_eq!(e.len(), expected.len(), "{e:#?}");
}

#[test]
fn load_files_reports_every_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.yml");
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &good,
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n",
    )
    .expect("write");
    std::fs::write(
        &bad,
        "groups:\n  - name: g\n    rules:\n      - alert: B\n        expr: up ==\n",
    )
    .expect("write");
    let missing = dir.path().join("missing.yml");
    let set = load_files(std::slice::from_ref(&good)).expect("good file loads");
    assert_eq!(set.groups.len(), 1);
    let e = load_files(&[good, bad.clone(), missing.clone()]).expect_err("bad files");
    assert_eq!(e.errors.len(), 2, "{e}");
    assert!(
        e.errors[0].starts_with(&format!("{}:4: group \"g\": rule \"B\"", bad.display())),
        "{e}"
    );
    assert!(
        e.errors[1].starts_with(&format!("{}: cannot read", missing.display())),
        "{e}"
    );
}

proptest::proptest! {
    /// A rule file of any shape gives groups or errors, never a panic.
    #[test]
    fn arbitrary_rule_files_never_panic(
        lines in proptest::collection::vec(
            proptest::sample::select(vec![
                "groups:", "  - name: g", "  - name: \"\"", "    interval: 1m", "    interval: -1s",
                "    rules:", "      - alert: A", "      - record: r:x", "        expr: up == 0",
                "        expr: sum(", "        for: 5m", "        labels: {severity: x}",
                "        annotations: {s: \"{{ $value\"}", "        vigil: {recover: up}",
                "        vigil: {flap: {window: 1, high: 2, low: 3}}", "        vigil: 3", "  - 7", "- x", "{",
            ]),
            0..14,
        )
    ) {
        let _ = parse(Path::new("p.yml"), &lines.join("\n"));
    }
}
