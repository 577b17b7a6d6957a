//! From parsed samples to Vigil series: target labels, relabelling, limits.
//!
//! Order, as in Prometheus: a scraped label colliding with a label the agent
//! attaches (`job`, `instance`, `host`, `role`) is renamed `exported_<name>`
//! (honor_labels = false); `job` and `instance` are added; the relabel rules
//! run (they see `__name__`, `job` and `instance`, not `host`/`role`); empty
//! labels are removed and `host`/`role` added. A series that ends up invalid
//! or repeats an earlier one of the same scrape is rejected and counted;
//! beyond `max_series` the rest are dropped and counted.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use vigil_common::exposition::Sample;
use vigil_common::{Label, Point, Series};

use super::relabel::{self, Labels, NAME, Rule};
use crate::collect::Context;

/// Labels the agent attaches to every scraped series.
const ATTACHED: [&str; 4] = ["job", "instance", "host", "role"];

/// The series of one scrape and what happened to the others.
#[derive(Debug)]
pub struct Outcome<S = Series> {
    pub series: Vec<S>,
    /// Samples left after relabelling (before validity, duplicate and limit checks).
    pub post_relabel: u64,
    /// Invalid after relabelling, or a repeat of an earlier series.
    pub rejected: u64,
    /// Dropped because `max_series` was reached.
    pub over_limit: u64,
}

impl<S> Default for Outcome<S> {
    fn default() -> Self {
        Outcome {
            series: Vec::new(),
            post_relabel: 0,
            rejected: 0,
            over_limit: 0,
        }
    }
}

/// Where the samples came from: the `job` and `instance` labels.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub job: &'a str,
    pub instance: &'a str,
}

/// Builds the series of one scrape.
pub fn build(
    samples: Vec<Sample>,
    ctx: &Context,
    origin: Origin<'_>,
    rules: &[Rule],
    max_series: usize,
) -> Outcome {
    let mut out = Outcome::default();
    // Identity hash -> index of the first kept series with it: duplicates are
    // found without cloning every label set; equal hashes are compared exactly.
    let mut seen: HashMap<u64, usize> = HashMap::with_capacity(samples.len());
    for sample in samples {
        let timestamp_ms = sample.timestamp_ms.unwrap_or(ctx.timestamp_ms);
        let value = sample.value;
        let (name, labels) = match judge(sample, ctx, origin, rules) {
            Verdict::Dropped => continue,
            Verdict::Invalid => {
                out.post_relabel += 1;
                out.rejected += 1;
                continue;
            }
            Verdict::Kept(name, labels) => (name, labels),
        };
        out.post_relabel += 1;
        let point = Point {
            timestamp_ms,
            value,
        };
        let series = Series {
            name,
            labels,
            points: vec![point],
        };
        let mut hasher = DefaultHasher::new();
        (&series.name, &series.labels).hash(&mut hasher);
        let hash = hasher.finish();
        if let Some(&first) = seen.get(&hash) {
            let kept: &Series = &out.series[first];
            if kept.name == series.name && kept.labels == series.labels {
                out.rejected += 1;
                continue;
            }
        }
        if out.series.len() >= max_series {
            out.over_limit += 1;
            continue;
        }
        seen.entry(hash).or_insert(out.series.len());
        out.series.push(series);
    }
    out
}

/// What target labels, relabelling and validation make of one sample's series.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// A relabel rule dropped it.
    Dropped,
    /// Left invalid by relabelling.
    Invalid,
    /// The final name and label set (sorted, valid).
    Kept(String, Vec<Label>),
}

/// The [`Verdict`] on `sample`'s series (its value and timestamp play no part).
pub fn judge(sample: Sample, ctx: &Context, origin: Origin<'_>, rules: &[Rule]) -> Verdict {
    let mut labels = target_labels(sample, origin);
    if !relabel::apply(rules, &mut labels) {
        return Verdict::Dropped;
    }
    match finish(labels, ctx) {
        Some(series) => Verdict::Kept(series.name, series.labels),
        None => Verdict::Invalid,
    }
}

fn target_labels(sample: Sample, origin: Origin<'_>) -> Labels {
    let mut labels = Labels::new();
    let collides = (sample.labels.iter()).any(|(n, _)| ATTACHED.contains(&n.as_str()));
    let names: Vec<String> = match collides {
        true => sample.labels.iter().map(|(n, _)| n.clone()).collect(),
        false => Vec::new(),
    };
    for (mut name, value) in sample.labels {
        if value.is_empty() {
            continue;
        }
        if ATTACHED.contains(&name.as_str()) {
            name = format!("exported_{name}");
            while names.contains(&name) {
                name = format!("exported_{name}");
            }
        }
        labels.insert(name, value);
    }
    labels.insert(NAME.into(), sample.name);
    labels.insert("job".into(), origin.job.into());
    labels.insert("instance".into(), origin.instance.into());
    labels
}

/// The final series (without points), or `None` if relabelling left it invalid.
fn finish(mut labels: Labels, ctx: &Context) -> Option<Series> {
    let name = labels.remove(NAME)?;
    let base = ctx.base_labels();
    let mut all: Vec<Label> = Vec::with_capacity(base.len() + labels.len());
    all.extend_from_slice(base);
    all.extend(
        (labels.into_iter())
            .filter(|(n, v)| !v.is_empty() && !base.iter().any(|b| &b.name == n))
            .map(|(name, value)| Label { name, value }),
    );
    let series = Series::new(name, all, Vec::new());
    series.validate().ok().map(|()| series)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::scrape::relabel::{Action, RelabelConfig};

    fn sample(name: &str, labels: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            value,
            timestamp_ms: None,
        }
    }

    const ORIGIN: Origin<'static> = Origin {
        job: "api",
        instance: "127.0.0.1:8000",
    };

    #[test]
    fn attached_labels_win_and_scraped_ones_are_exported() {
        let ctx = Context::new(7, "web-1", "api");
        let s = sample(
            "up_ish",
            &[
                ("job", "theirs"),
                ("exported_job", "x"),
                ("host", "h"),
                ("instance", ""),
                ("a", "1"),
            ],
            1.0,
        );
        let out = build(vec![s], &ctx, ORIGIN, &[], 10);
        let got: Vec<(&str, &str)> = out.series[0]
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("a", "1"),
                ("exported_exported_job", "theirs"),
                ("exported_host", "h"),
                ("exported_job", "x"),
                ("host", "web-1"),
                ("instance", "127.0.0.1:8000"),
                ("job", "api"),
                ("role", "api"),
            ]
        );
        assert_eq!(out.series[0].points[0].timestamp_ms, 7);
    }

    #[test]
    fn duplicates_invalid_and_over_limit_are_counted() {
        let ctx = Context::new(7, "h", "api");
        let mut rename = RelabelConfig::new(Action::Replace);
        rename.source_labels = vec!["a".into()];
        rename.regex = "bad".into();
        rename.target_label = NAME.into();
        rename.replacement = "9invalid".into();
        let mut drop = RelabelConfig::new(Action::Drop);
        drop.source_labels = vec!["a".into()];
        drop.regex = "dropped".into();
        let rules = [
            rename.compile("r").expect("ok"),
            drop.compile("r").expect("ok"),
        ];
        let mut timed = sample("m", &[("a", "5")], 5.0);
        timed.timestamp_ms = Some(3);
        let samples = vec![
            sample("m", &[("a", "1")], 1.0),
            sample("m", &[("a", "1")], 2.0),
            sample("m", &[("a", "bad")], 3.0),
            sample("m", &[("a", "dropped")], 4.0),
            timed,
            sample("m", &[("a", "2")], 4.0),
        ];
        let out = build(samples, &ctx, ORIGIN, &rules, 2);
        assert_eq!((out.post_relabel, out.rejected, out.over_limit), (5, 2, 1));
        assert_eq!(out.series.len(), 2);
        assert_eq!(
            out.series[0].points[0].value, 1.0,
            "first of a duplicate kept"
        );
        assert_eq!(out.series[1].label("a"), Some("5"));
        assert_eq!(
            out.series[1].points[0].timestamp_ms, 3,
            "own timestamp honoured"
        );
        let out = build(vec![sample("m", &[], 1.0)], &ctx, ORIGIN, &[], 0);
        assert_eq!((out.series.len(), out.over_limit), (0, 1));
    }
}
