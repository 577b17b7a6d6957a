//! `vigil-aggregator test-rules FILE...`: unit tests for rule files in
//! promtool's test-file format.
//!
//! ```yaml
//! rule_files: [vigil-default.rules.yml]   # relative to this file
//! evaluation_interval: 1m                  # default 1m
//! tests:
//!   - name: cpu                            # optional
//!     interval: 1m                         # input spacing; default evaluation_interval
//!     external_labels: {cluster: eu}       # optional; external_url too
//!     input_series:
//!       - series: 'system_cpu_usage_ratio{host="web-1"}'
//!         values: '0.95x30'                 # a+bxn, axn, _, _xn, stale, numbers
//!     alert_rule_test:
//!       - eval_time: 25m
//!         alertname: HostCpuHigh
//!         exp_alerts:
//!           - exp_labels: {host: web-1, severity: warning, team: platform}
//!             exp_annotations: {summary: "..."}
//!     promql_expr_test:
//!       - expr: host:system_cpu_usage:avg5m
//!         eval_time: 10m
//!         exp_samples:
//!           - labels: 'host:system_cpu_usage:avg5m{host="web-1"}'
//!             value: 0.95
//! ```
//!
//! As promtool: rules are evaluated at every `evaluation_interval` step from
//! 0 (group intervals are not used); an alert test looks at the alerts
//! firing after the first step at or after its `eval_time` (`alertname` is
//! added to `exp_labels`; labels and annotations must match exactly);
//! a PromQL test runs after all steps, against inputs and recorded series.
//! Output: `SUCCESS`, or `FAILED` with expected and got and a `-`/`+` diff.
//! Exit codes (of [`run_files`]): 0 all passed, 1 a test failed, 64 a test or
//! rule file could not be read or is invalid.

mod eval;
mod report;
mod series;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use self::eval::{GotAlert, Sim};
use self::report::{alert_failure, expr_failure};
use super::LabelSet;
use super::rules::{RuleSet, load_files};
use crate::query::MemorySource;

/// Exit code: every test passed.
pub const EXIT_OK: u8 = 0;
/// Exit code: a test failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: a file could not be read or is invalid.
pub const EXIT_INVALID: u8 = vigil_common::config::EXIT_CONFIG;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    rule_files: Vec<PathBuf>,
    evaluation_interval: Option<Dur>,
    #[serde(default)]
    tests: Vec<TestGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestGroup {
    name: Option<String>,
    interval: Option<Dur>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
    #[serde(default)]
    promql_expr_test: Vec<ExprTest>,
    #[serde(default)]
    external_labels: LabelSet,
    #[serde(default)]
    external_url: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    series: String,
    values: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTest {
    eval_time: Dur,
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpAlert {
    #[serde(default)]
    exp_labels: LabelSet,
    #[serde(default)]
    exp_annotations: LabelSet,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExprTest {
    expr: String,
    eval_time: Dur,
    #[serde(default)]
    exp_samples: Vec<ExpSample>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpSample {
    #[serde(default)]
    labels: String,
    value: f64,
}

/// A duration as rule files write it (`5m`, `1h30m`).
struct Dur(Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_norway::Value::deserialize(d)?;
        super::rules::syntax::duration(&v)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

impl Dur {
    fn ms(&self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
}

/// The longest simulated time span: bounds the steps one file can ask for.
const MAX_STEPS: i64 = 100_000;

/// Runs every file's tests, printing promtool-style results to `out`;
/// returns the exit code (the worst over all files).
pub async fn run_files(paths: &[PathBuf], out: &mut dyn Write) -> u8 {
    let mut code = EXIT_OK;
    for path in paths {
        // A closed stdout must not turn a result into a panic.
        let _ = writeln!(out, "Unit Testing:  {}", path.display());
        let result = match load(path) {
            Ok((file, rules)) => run_file(&file, &rules).await,
            Err(problems) => {
                let _ = writeln!(out, "  INVALID:");
                for p in problems {
                    let _ = writeln!(out, "    {p}");
                }
                code = EXIT_INVALID;
                continue;
            }
        };
        match result {
            Ok(failures) if failures.is_empty() => {
                let _ = writeln!(out, "  SUCCESS\n");
            }
            Ok(failures) => {
                let _ = writeln!(out, "  FAILED:");
                for f in failures {
                    let _ = writeln!(out, "{f}");
                }
                code = code.max(EXIT_FAILED);
            }
            Err(problem) => {
                let _ = writeln!(out, "  INVALID:\n    {problem}\n");
                code = EXIT_INVALID;
            }
        }
    }
    code
}

fn load(path: &Path) -> Result<(TestFile, RuleSet), Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("{}: cannot read: {e}", path.display())])?;
    let file: TestFile =
        serde_norway::from_str(&text).map_err(|e| vec![format!("{}: {e}", path.display())])?;
    if file.rule_files.is_empty() {
        return Err(vec![format!("{}: `rule_files` is empty", path.display())]);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let rule_paths: Vec<PathBuf> = file.rule_files.iter().map(|p| dir.join(p)).collect();
    let rules = load_files(&rule_paths).map_err(|e| e.errors)?;
    Ok((file, rules))
}

/// Runs one file's test groups; `Ok` holds the failure reports.
async fn run_file(file: &TestFile, rules: &RuleSet) -> Result<Vec<String>, String> {
    let eval_every = file.evaluation_interval.as_ref().map_or(60_000, Dur::ms);
    if eval_every <= 0 {
        return Err("evaluation_interval must be positive".into());
    }
    let mut failures = Vec::new();
    for (i, group) in file.tests.iter().enumerate() {
        let name = group.name.clone().unwrap_or_else(|| format!("#{}", i + 1));
        let fails = run_group(group, rules, eval_every)
            .await
            .map_err(|e| format!("test {name}: {e}"))?;
        for f in fails {
            failures.push(format!("    test {name}:\n{f}"));
        }
    }
    Ok(failures)
}

async fn run_group(g: &TestGroup, rules: &RuleSet, eval_every: i64) -> Result<Vec<String>, String> {
    let interval = g.interval.as_ref().map_or(eval_every, Dur::ms);
    if interval <= 0 {
        return Err("interval must be positive".into());
    }
    let mut source = MemorySource::new();
    for s in &g.input_series {
        let labels = series::parse_labels(&s.series)?;
        for (i, v) in series::parse_values(&s.values)?.into_iter().enumerate() {
            if let Some(v) = v {
                let t = i64::try_from(i)
                    .unwrap_or(i64::MAX)
                    .saturating_mul(interval);
                source.push(&labels, t, v);
            }
        }
    }
    let end = g
        .alert_rule_test
        .iter()
        .map(|t| t.eval_time.ms())
        .chain(g.promql_expr_test.iter().map(|t| t.eval_time.ms()))
        .max()
        .unwrap_or(0);
    if end / eval_every > MAX_STEPS {
        return Err(format!(
            "more than {MAX_STEPS} evaluation steps; raise evaluation_interval"
        ));
    }
    let mut sim = Sim::new(source, rules, &g.external_labels, &g.external_url);
    let mut failures = Vec::new();
    let mut pending: Vec<&AlertTest> = g.alert_rule_test.iter().collect();
    pending.sort_by_key(|t| t.eval_time.ms());
    let mut t = 0;
    while t <= end || !pending.is_empty() {
        sim.step(t).await?;
        // Tests whose eval_time falls in (t - step, t].
        while let Some(test) = pending.first().filter(|x| x.eval_time.ms() <= t) {
            let got = sim.firing(&test.alertname);
            let exp = expected(test);
            if got != exp {
                failures.push(alert_failure(test, &exp, &got));
            }
            pending.remove(0);
        }
        match t.checked_add(eval_every) {
            Some(next) => t = next,
            None => break,
        }
    }
    for test in &g.promql_expr_test {
        let got = sim
            .eval(&test.expr, test.eval_time.ms())
            .await
            .map_err(|e| format!("expr {:?}: {e}", test.expr))?;
        if let Some(f) = expr_failure(test, got)? {
            failures.push(f);
        }
    }
    Ok(failures)
}

fn expected(test: &AlertTest) -> Vec<GotAlert> {
    let mut exp: Vec<GotAlert> = test
        .exp_alerts
        .iter()
        .map(|e| {
            let mut labels = e.exp_labels.clone();
            labels.insert("alertname".into(), test.alertname.clone());
            GotAlert {
                labels,
                annotations: e.exp_annotations.clone(),
            }
        })
        .collect();
    exp.sort();
    exp
}

#[cfg(test)]
mod tests;
