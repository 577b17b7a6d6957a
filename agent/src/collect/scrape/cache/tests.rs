use vigil_common::exposition::{Format, parse};

use super::*;
use crate::collect::scrape::relabel::{Action, RelabelConfig};

const ORIGIN: Origin<'static> = Origin {
    job: "api",
    instance: "127.0.0.1:8000",
};

fn rule(config: RelabelConfig) -> Rule {
    config.compile("r").expect("valid rule")
}

fn drop_rule(label: &str, regex: &str) -> Rule {
    let mut r = RelabelConfig::new(Action::Drop);
    r.source_labels = vec![label.into()];
    r.regex = regex.into();
    rule(r)
}

fn rename_rule(from: &str, to: &str) -> Rule {
    let mut r = RelabelConfig::new(Action::Replace);
    r.source_labels = vec![from.into()];
    r.target_label = to.into();
    rule(r)
}

/// What the uncached path makes of `body`.
fn reference(body: &str, ctx: &Context, rules: &[Rule], max_series: usize) -> Outcome {
    let samples = parse(body.as_bytes(), Format::Prometheus).samples;
    series::build(samples, ctx, ORIGIN, rules, max_series)
}

fn assert_same(got: &Outcome<Collected>, want: &Outcome) {
    let series: Vec<_> = got.series.iter().map(Collected::to_series).collect();
    assert_eq!(series, want.series);
    assert_eq!(
        (got.post_relabel, got.rejected, got.over_limit),
        (want.post_relabel, want.rejected, want.over_limit)
    );
}

const BODY: &str = "# TYPE h histogram\n\
    h_bucket{le=\"1\",path=\"/a\"} 1\n\
    h_bucket{path=\"/a\",le=\"1\"} 2\n\
    h_bucket{le=\"+Inf\",path=\"/a\"} 3\n\
    h_count{path=\"/a\"} 3\n\
    m{a=\"keep\"} 4\n\
    m{a=\"drop-me\"} 5\n\
    m{a=\"keep\"} 6\n\
    m{job=\"theirs\",a=\"x\"} 7 1700000000000\n\
    m{a=\"bad\"} 8\n\
    garbage line\n\
    last 9\n";

fn rules() -> Vec<Rule> {
    let mut bad = RelabelConfig::new(Action::Replace);
    bad.source_labels = vec!["a".into()];
    bad.regex = "bad".into();
    bad.target_label = "__name__".into();
    bad.replacement = "9invalid".into();
    vec![drop_rule("a", "drop-.*"), rule(bad)]
}

#[test]
fn cached_scrapes_give_what_the_uncached_path_gives() {
    let ctx = Context::new(1_000, "web-1", "api");
    let mut cache = SeriesCache::new(rules(), 1_000);
    for max_series in [100, 4] {
        for pass in 0..3 {
            let (got, summary, samples) = cache.scrape(
                BODY.as_bytes(),
                Format::Prometheus,
                &ctx,
                ORIGIN,
                max_series,
            );
            assert_same(&got, &reference(BODY, &ctx, &rules(), max_series));
            assert_eq!((samples, summary.malformed), (10, 1), "pass {pass}");
            assert_eq!(summary.metadata.len(), 1);
        }
    }
    // Every distinct series text is remembered once, whatever its verdict.
    assert_eq!(cache.len(), 9);
    // The duplicate written with its labels in another order is caught too.
    let (got, _, _) = cache.scrape(BODY.as_bytes(), Format::Prometheus, &ctx, ORIGIN, 100);
    assert_eq!((got.post_relabel, got.rejected), (9, 3));
    assert_eq!(got.series.len(), 6);
    let exported = got
        .series
        .iter()
        .find(|s| s.label("exported_job").is_some());
    let exported = exported.expect("the series with its own job label");
    assert_eq!(exported.points[0].timestamp_ms, 1_700_000_000_000);
    assert_eq!(exported.label("job"), Some("api"));
}

#[test]
fn lines_with_malformed_labels_are_not_counted_as_samples() {
    let ctx = Context::new(1_000, "h", "api");
    let mut cache = SeriesCache::new(Vec::new(), 100);
    let body = b"m{9=\"1\"} 1\nm 2\nm{a=\"unterminated} 3\n";
    for _ in 0..2 {
        let (got, summary, samples) = cache.scrape(body, Format::Prometheus, &ctx, ORIGIN, 100);
        assert_eq!((samples, summary.malformed, got.series.len()), (1, 2, 1));
    }
    assert_eq!(cache.len(), 1, "only the well-formed series is remembered");
}

#[test]
fn values_and_timestamps_come_from_each_scrape() {
    let mut cache = SeriesCache::new(Vec::new(), 100);
    let first = Context::new(1_000, "h", "api");
    cache.scrape(b"m{a=\"1\"} 1\n", Format::Prometheus, &first, ORIGIN, 100);
    let second = Context::new(2_000, "h", "api");
    let (got, _, _) = cache.scrape(b"m{a=\"1\"} 2\n", Format::Prometheus, &second, ORIGIN, 100);
    assert_eq!(
        got.series[0].points,
        vec![Point {
            timestamp_ms: 2_000,
            value: 2.0
        }]
    );
}

#[test]
fn a_rule_change_relabels_cached_series() {
    let ctx = Context::new(1_000, "h", "api");
    let body = "m{a=\"1\"} 1\nn{a=\"2\"} 2\n";
    let mut cache = SeriesCache::new(vec![rename_rule("a", "b")], 100);
    let (got, _, _) = cache.scrape(body.as_bytes(), Format::Prometheus, &ctx, ORIGIN, 100);
    assert_eq!(got.series[0].label("b"), Some("1"));

    cache.set_rules(vec![rename_rule("a", "c"), drop_rule("__name__", "n")]);
    let (got, _, _) = cache.scrape(body.as_bytes(), Format::Prometheus, &ctx, ORIGIN, 100);
    assert_same(&got, &reference(body, &ctx, &cache.rules, 100));
    assert_eq!(got.series.len(), 1, "n is dropped by the new rule");
    assert_eq!(got.series[0].label("c"), Some("1"));
    assert_eq!(
        got.series[0].label("b"),
        None,
        "nothing of the old rule is left"
    );
}

#[test]
fn changed_series_and_changed_attached_labels_get_their_own_labels() {
    let mut cache = SeriesCache::new(Vec::new(), 100);
    let ctx = Context::new(1_000, "h", "api");
    cache.scrape(b"m{a=\"1\"} 1\n", Format::Prometheus, &ctx, ORIGIN, 100);
    let (got, _, _) = cache.scrape(b"m{a=\"2\"} 1\n", Format::Prometheus, &ctx, ORIGIN, 100);
    assert_eq!(got.series[0].label("a"), Some("2"));

    // Same text, but the family became a histogram: `le` is normalised now.
    let typed = "# TYPE m histogram\nm_bucket{le=\"1\"} 1\n";
    let (got, _, _) = cache.scrape(
        b"m_bucket{le=\"1\"} 1\n",
        Format::Prometheus,
        &ctx,
        ORIGIN,
        100,
    );
    assert_eq!(got.series[0].label("le"), Some("1"));
    let (got, _, _) = cache.scrape(typed.as_bytes(), Format::Prometheus, &ctx, ORIGIN, 100);
    assert_eq!(got.series[0].label("le"), Some("1.0"));

    // Another host/role or target: nothing cached for the old one is reused.
    let moved = Context::new(2_000, "h2", "db");
    let (got, _, _) = cache.scrape(b"m{a=\"2\"} 1\n", Format::Prometheus, &moved, ORIGIN, 100);
    assert_eq!(
        (got.series[0].label("host"), got.series[0].label("role")),
        (Some("h2"), Some("db"))
    );
    let other = Origin {
        job: "other",
        instance: "10.0.0.1:9",
    };
    let (got, _, _) = cache.scrape(b"m{a=\"2\"} 1\n", Format::Prometheus, &moved, other, 100);
    assert_eq!(got.series[0].label("job"), Some("other"));
    assert_eq!(got.series[0].label("instance"), Some("10.0.0.1:9"));
}

#[test]
fn the_cache_stays_bounded() {
    let ctx = Context::new(1_000, "h", "api");
    // Churning series: every scrape shows 50 never seen before.
    let mut cache = SeriesCache::new(Vec::new(), 10_000);
    for scrape in 0..40 {
        let body: String = (0..50)
            .map(|i| format!("m{{id=\"{scrape}-{i}\"}} 1\n"))
            .collect();
        let (got, _, _) = cache.scrape(body.as_bytes(), Format::Prometheus, &ctx, ORIGIN, 1_000);
        assert_eq!(got.series.len(), 50);
        assert!(
            cache.len() <= 2 * 50 + SLACK,
            "{} entries after scrape {scrape}",
            cache.len()
        );
    }
    // A target larger than the cap: evaluated in full, remembered up to the cap.
    let mut small = SeriesCache::new(Vec::new(), 30);
    let body: String = (0..100).map(|i| format!("m{{id=\"{i}\"}} 1\n")).collect();
    for _ in 0..2 {
        let (got, _, _) = small.scrape(body.as_bytes(), Format::Prometheus, &ctx, ORIGIN, 1_000);
        assert_same(&got, &reference(&body, &ctx, &[], 1_000));
        assert_eq!(small.len(), 30);
    }
}
