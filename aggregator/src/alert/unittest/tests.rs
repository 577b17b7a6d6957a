use super::*;

const RULES: &str = r#"
groups:
  - name: g
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: InstanceDown
        expr: up == 0
        for: 5m
        labels: {severity: critical}
        annotations:
          summary: "{{ $labels.instance }} of {{ $labels.job }} is down"
      - alert: Hot
        expr: temp > 90
        keep_firing_for: 3m
        labels: {severity: warning}
        annotations: {value: "{{ $value }}"}
      - alert: Sticky
        expr: temp > 90
        labels: {severity: info}
        vigil:
          recover: temp < 80
"#;

async fn run(tests: &str) -> (u8, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("rules.yml"), RULES).expect("write");
    let path = dir.path().join("t.yml");
    std::fs::write(
        &path,
        format!("rule_files: [rules.yml]\nevaluation_interval: 1m\n{tests}"),
    )
    .expect("write");
    let mut out = Vec::new();
    let code = run_files(&[path], &mut out).await;
    (code, String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn for_delays_firing_and_annotations_are_expanded() {
    let t = r#"
tests:
  - interval: 1m
    input_series:
      - series: 'up{job="api", instance="a:1"}'
        values: '1 1 0x10'
      - series: 'up{job="api", instance="b:1"}'
        values: '1x12'
    alert_rule_test:
      - eval_time: 6m
        alertname: InstanceDown
      - eval_time: 7m
        alertname: InstanceDown
        exp_alerts:
          - exp_labels: {job: api, instance: "a:1", severity: critical}
            exp_annotations: {summary: "a:1 of api is down"}
    promql_expr_test:
      - expr: job:up:sum
        eval_time: 5m
        exp_samples:
          - labels: 'job:up:sum{job="api"}'
            value: 1
      - expr: ALERTS{alertname="InstanceDown"}
        eval_time: 3m
        exp_samples:
          - labels: 'ALERTS{alertname="InstanceDown", alertstate="pending", instance="a:1", job="api", severity="critical"}'
            value: 1
"#;
    let (code, out) = run(t).await;
    assert_eq!(code, EXIT_OK, "{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

#[tokio::test]
async fn keep_firing_for_and_recover_hold_alerts() {
    // temp: 95 at 0..2m, 85 from 3m on, 70 from 8m on.
    let t = r#"
tests:
  - input_series:
      - series: 'temp{room="a"}'
        values: '95x2 85x4 70x5'
    alert_rule_test:
      - eval_time: 2m
        alertname: Hot
        exp_alerts:
          - exp_labels: {room: a, severity: warning}
            exp_annotations: {value: "95"}
      # Gone from 3m: kept firing at 3m, 4m and 5m (keep_firing_for: 3m).
      - eval_time: 5m
        alertname: Hot
        exp_alerts:
          - exp_labels: {room: a, severity: warning}
            exp_annotations: {value: "95"}
      - eval_time: 6m
        alertname: Hot
      - eval_time: 6m
        alertname: Sticky
        exp_alerts:
          - exp_labels: {room: a, severity: info}
      - eval_time: 8m
        alertname: Sticky
"#;
    let (code, out) = run(t).await;
    assert_eq!(code, EXIT_OK, "{out}");
}

#[tokio::test]
async fn a_failure_shows_expected_got_and_the_diff() {
    let t = r#"
tests:
  - name: wrong
    input_series:
      - series: 'up{job="api", instance="a:1"}'
        values: '0x10'
    alert_rule_test:
      - eval_time: 10m
        alertname: InstanceDown
        exp_alerts:
          - exp_labels: {job: api, instance: "b:1", severity: critical}
            exp_annotations: {summary: "b:1 of api is down"}
    promql_expr_test:
      - expr: job:up:sum
        eval_time: 5m
        exp_samples:
          - labels: 'job:up:sum{job="api"}'
            value: 3
"#;
    let (code, out) = run(t).await;
    assert_eq!(code, EXIT_FAILED, "{out}");
    for needle in [
        "FAILED:",
        "test wrong:",
        "alertname: InstanceDown, time: 10m",
        "- Labels:{alertname=\"InstanceDown\", instance=\"b:1\"",
        "+ Labels:{alertname=\"InstanceDown\", instance=\"a:1\"",
        "expr: \"job:up:sum\", time: 5m",
        "- {__name__=\"job:up:sum\", job=\"api\"} 3",
        "+ {__name__=\"job:up:sum\", job=\"api\"} 0",
    ] {
        assert!(out.contains(needle), "{needle:?} missing from:\n{out}");
    }
}

#[tokio::test]
async fn invalid_files_exit_64_with_every_problem() {
    let (code, out) =
        run("tests:\n  - input_series:\n      - series: 'up'\n        values: '1 x 2'\n").await;
    assert_eq!(code, EXIT_INVALID, "{out}");
    assert!(out.contains("cannot parse \"x\""), "{out}");
    let (code, out) = run("tests: []\nunknown_key: 1\n").await;
    assert_eq!(code, EXIT_INVALID, "{out}");
    assert!(out.contains("unknown field `unknown_key`"), "{out}");

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("bad.rules.yml"), "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up ==\n        for: soon\n").expect("write");
    let path = dir.path().join("t.yml");
    std::fs::write(&path, "rule_files: [bad.rules.yml]\ntests: []\n").expect("write");
    let mut out = Vec::new();
    let code = run_files(&[path, dir.path().join("missing.yml")], &mut out).await;
    let out = String::from_utf8_lossy(&out);
    assert_eq!(code, EXIT_INVALID);
    for needle in [
        "`expr` does not parse",
        "`for`: \"soon\"",
        "missing.yml: cannot read",
    ] {
        assert!(out.contains(needle), "{needle:?} missing from:\n{out}");
    }
}
