//! `vigil-aggregator test-rules` through the real binary: the default pack's
//! own tests pass, a wrong expectation fails with a diff and exit 1, an
//! invalid file exits 64.

use std::path::Path;
use std::process::{Command, Output};

fn test_rules(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil-aggregator"))
        .arg("test-rules")
        .args(args)
        .output()
        .expect("runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_default_rule_pack_passes_its_tests() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rules/vigil-default.test.yml");
    let out = test_rules(&[&file]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    assert!(
        text.contains("Unit Testing:") && text.contains("SUCCESS"),
        "{text}"
    );
}

const RULES: &str = "groups:\n  - name: g\n    rules:\n      - alert: QueueLong\n        expr: queue_length > 10\n        for: 2m\n        labels: {severity: warning}\n        annotations: {summary: \"queue is {{ $value }}\"}\n";

#[test]
fn a_wrong_expectation_fails_with_a_diff_and_exit_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("q.rules.yml"), RULES).expect("write");
    let good = dir.path().join("good.test.yml");
    std::fs::write(
        &good,
        "rule_files: [q.rules.yml]\ntests:\n  - interval: 1m\n    input_series:\n      - series: 'queue_length{q=\"a\"}'\n        values: '5 20+1x5'\n    alert_rule_test:\n      - eval_time: 2m\n        alertname: QueueLong\n      - eval_time: 3m\n        alertname: QueueLong\n        exp_alerts:\n          - exp_labels: {q: a, severity: warning}\n            exp_annotations: {summary: queue is 22}\n",
    )
    .expect("write");
    let out = test_rules(&[&good]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));

    let bad = dir.path().join("bad.test.yml");
    std::fs::write(
        &bad,
        "rule_files: [q.rules.yml]\ntests:\n  - interval: 1m\n    input_series:\n      - series: 'queue_length{q=\"a\"}'\n        values: '5 20+1x5'\n    alert_rule_test:\n      - eval_time: 3m\n        alertname: QueueLong\n        exp_alerts:\n          - exp_labels: {q: a, severity: critical}\n            exp_annotations: {summary: queue is 22}\n",
    )
    .expect("write");
    // Both files: the good one still reports SUCCESS, the run exits 1.
    let out = test_rules(&[&good, &bad]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    for needle in [
        "SUCCESS",
        "FAILED:",
        "alertname: QueueLong, time: 3m",
        "- Labels:{alertname=\"QueueLong\", q=\"a\", severity=\"critical\"}",
        "+ Labels:{alertname=\"QueueLong\", q=\"a\", severity=\"warning\"} Annotations:{summary=\"queue is 22\"}",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
}

#[test]
fn invalid_or_unreadable_files_exit_64() {
    let dir = tempfile::tempdir().expect("tempdir");
    let invalid = dir.path().join("invalid.test.yml");
    std::fs::write(
        &invalid,
        "rule_files: [nope.yml]\ntests:\n  - interval: soon\n",
    )
    .expect("write");
    let out = test_rules(&[&invalid]);
    assert_eq!(out.status.code(), Some(64), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("\"soon\" is not a valid duration"),
        "{}",
        stdout(&out)
    );

    let broken_rules = dir.path().join("r.test.yml");
    std::fs::write(&broken_rules, "rule_files: [nope.yml]\ntests: []\n").expect("write");
    let out = test_rules(&[&broken_rules, &dir.path().join("absent.test.yml")]);
    assert_eq!(out.status.code(), Some(64), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("nope.yml: cannot read"), "{text}");
    assert!(text.contains("absent.test.yml: cannot read"), "{text}");
}

#[test]
fn check_rules_lists_every_problem_and_exits_64() {
    let pack =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rules/vigil-default.rules.yml");
    let out = Command::new(env!("CARGO_BIN_EXE_vigil-aggregator"))
        .arg("check-rules")
        .arg(&pack)
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).starts_with("rules OK: 1 file(s), 7 group(s)"),
        "{}",
        stdout(&out)
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.rules.yml");
    std::fs::write(
        &bad,
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up ==\n      - record: not a name\n        expr: up\n        for: 5m\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_vigil-aggregator"))
        .arg("check-rules")
        .arg(&bad)
        .arg(dir.path().join("missing.yml"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "bad.rules.yml:4: group \"g\": rule \"A\": `expr` does not parse",
        "rule \"not a name\": invalid recording rule name",
        "rule \"not a name\": `for` is not allowed in a recording rule",
        "missing.yml: cannot read",
    ] {
        assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
    }
}
