//! The default rule pack (deploy/rules/vigil-default.rules.yml): loads with
//! the strict loader, covers the alerts the issue lists, every alert carries
//! its labels, annotations and an existing runbook, and every metric it reads
//! is one the agent or the demo API really emits (docs/metrics.md).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use promql_parser::parser::Expr;
use vigil_aggregator::alert::rules::{Rule, load_files};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn pack() -> PathBuf {
    repo().join("deploy/rules/vigil-default.rules.yml")
}

/// What the issue asks the pack to cover, one alert each.
const EXPECTED: &[&str] = &[
    "ApiErrorRateHigh",
    "ApiLatencyP95High",
    "ApiDown",
    "ModelInferenceLatencyP95High",
    "ModelAccuracyDrop",
    "ModelDriftHigh",
    "PredictionVolumeDrop",
    "HostCpuHigh",
    "HostMemoryHigh",
    "HostDiskSpaceLow",
    "HostDiskWillFillIn4h",
    "PostgresDown",
    "PostgresConnectionsNearMax",
    "PostgresReplicationLagHigh",
    "PostgresDeadlocks",
    "RedisDown",
    "RedisHitRatioLow",
    "RedisMemoryNearMax",
    "RedisEvictions",
    "VigilAgentSilent",
];

#[test]
fn every_alert_has_labels_annotations_and_a_runbook() {
    let set = load_files(&[pack()]).unwrap_or_else(|e| panic!("default rules load:\n{e}"));
    let mut names = BTreeSet::new();
    for rule in set.groups.iter().flat_map(|g| &g.rules) {
        let Rule::Alerting(a) = rule else { continue };
        assert!(names.insert(a.name.clone()), "{} is defined once", a.name);
        let severity = a.labels.get("severity").map(String::as_str);
        assert!(
            matches!(severity, Some("critical" | "warning" | "info")),
            "{}: severity {severity:?}",
            a.name
        );
        let team = a.labels.get("team").map(String::as_str);
        assert!(
            matches!(team, Some("platform" | "ml-ops")),
            "{}: team {team:?}",
            a.name
        );
        for key in ["summary", "description"] {
            let text = a.annotations.get(key).map_or("", String::as_str);
            assert!(
                text.len() > 10,
                "{}: annotation {key} missing or empty",
                a.name
            );
        }
        let runbook = a.annotations.get("runbook_url").map(String::as_str);
        let want = format!("docs/runbooks/{}.md", a.name);
        assert_eq!(runbook, Some(want.as_str()), "{}: runbook_url", a.name);
        assert_runbook(&a.name);
    }
    let expected: BTreeSet<String> = EXPECTED.iter().map(|s| s.to_string()).collect();
    assert_eq!(names, expected, "the pack covers exactly the listed alerts");
    // The evaluator's built-in dead-man alert has its runbook too.
    assert_runbook("VigilAgentDown");
}

/// A runbook says what the alert means, how to check and how to fix, and
/// the index (docs/runbooks.md) links it.
fn assert_runbook(name: &str) {
    let path = repo().join(format!("docs/runbooks/{name}.md"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(text.starts_with(&format!("# {name}\n")), "{name}: title");
    for heading in ["## What it means", "## How to check", "## How to fix"] {
        assert!(text.contains(heading), "{name}: runbook lacks {heading:?}");
    }
    // Concrete checks: a query or a command in a code block.
    assert!(
        text.contains("```"),
        "{name}: runbook has no query or command"
    );
    let index = std::fs::read_to_string(repo().join("docs/runbooks.md")).expect("index");
    assert!(
        index.contains(&format!("(runbooks/{name}.md)")),
        "docs/runbooks.md does not link {name}"
    );
}

/// Metric names from docs/metrics.md's tables (first column), with
/// `_bucket`/`_sum`/`_count` for histograms.
fn documented_metrics() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join("docs/metrics.md")).expect("docs/metrics.md");
    let mut out = BTreeSet::new();
    for line in text.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (first, kind) = (cells[1], cells.get(2).copied().unwrap_or(""));
        for name in first.split('`').skip(1).step_by(2) {
            // `_buffers_bytes`-style shorthand continues the previous name:
            // not needed by the rules, so skipped.
            if name.starts_with('_') {
                continue;
            }
            out.insert(name.to_string());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    out.insert(format!("{name}{suffix}"));
                }
            }
        }
    }
    out
}

fn selectors(expr: &Expr, out: &mut BTreeSet<String>) {
    match expr {
        Expr::VectorSelector(vs) => out.extend(vs.name.clone()),
        Expr::MatrixSelector(ms) => out.extend(ms.vs.name.clone()),
        Expr::Aggregate(a) => {
            selectors(&a.expr, out);
            if let Some(p) = &a.param {
                selectors(p, out);
            }
        }
        Expr::Unary(u) => selectors(&u.expr, out),
        Expr::Binary(b) => {
            selectors(&b.lhs, out);
            selectors(&b.rhs, out);
        }
        Expr::Paren(p) => selectors(&p.expr, out),
        Expr::Subquery(s) => selectors(&s.expr, out),
        Expr::Call(c) => c.args.args.iter().for_each(|a| selectors(a, out)),
        _ => {}
    }
}

#[test]
fn every_metric_the_rules_read_is_emitted() {
    let documented = documented_metrics();
    // Sanity: the list really came from the file, agent and demo API alike.
    for known in [
        "system_cpu_usage_ratio",
        "pg_deadlocks_total",
        "redis_evicted_keys_total",
        "probe_success",
        "model_drift_score",
        "http_request_duration_seconds_bucket",
    ] {
        assert!(
            documented.contains(known),
            "{known} not parsed from docs/metrics.md"
        );
    }
    let set = load_files(&[pack()]).unwrap_or_else(|e| panic!("{e}"));
    let mut recorded = BTreeSet::new();
    let mut exprs = Vec::new();
    for rule in set.groups.iter().flat_map(|g| &g.rules) {
        match rule {
            Rule::Recording(r) => {
                recorded.insert(r.record.clone());
                exprs.push((r.record.clone(), r.expr.clone()));
            }
            Rule::Alerting(a) => {
                exprs.push((a.name.clone(), a.expr.clone()));
                exprs.extend(
                    a.vigil
                        .recover
                        .clone()
                        .map(|e| (format!("{} recover", a.name), e)),
                );
            }
        }
    }
    let mut used = BTreeSet::new();
    for (who, text) in &exprs {
        let expr = promql_parser::parser::parse(text).unwrap_or_else(|e| panic!("{who}: {e}"));
        let mut names = BTreeSet::new();
        selectors(&expr, &mut names);
        assert!(!names.is_empty(), "{who}: reads no metric");
        for n in names {
            assert!(
                documented.contains(&n) || recorded.contains(&n),
                "{who} reads {n}, which neither docs/metrics.md nor a recording rule defines"
            );
            used.insert(n);
        }
    }
    // Every recording rule is used by some alert or is a dashboard helper;
    // at least the alerts' ones must be.
    for r in [
        "host:system_cpu_usage:avg5m",
        "host:http_request_errors:ratio_rate5m",
    ] {
        assert!(used.contains(r), "{r} unused");
    }
}
