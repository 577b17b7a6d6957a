use super::*;

fn rule(action: Action, f: impl FnOnce(&mut RelabelConfig)) -> Rule {
    let mut c = RelabelConfig::new(action);
    f(&mut c);
    c.compile("r").expect("valid rule")
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn series() -> Labels {
    labels(&[
        (NAME, "http_requests_total"),
        ("handler", "/predict"),
        ("method", "POST"),
        ("status", "503"),
        ("job", "api"),
    ])
}

#[test]
fn replace_renames_metrics_and_adds_labels() {
    let rename = rule(Action::Replace, |c| {
        c.source_labels = vec![NAME.into()];
        c.regex = "http_(.*)".into();
        c.target_label = NAME.into();
        c.replacement = "api_${1}".into();
    });
    let class = rule(Action::Replace, |c| {
        c.source_labels = vec!["status".into(), "method".into()];
        c.separator = "/".into();
        c.regex = "(\\d)\\d\\d/(.*)".into();
        c.target_label = "class".into();
        c.replacement = "${1}xx-$2".into();
    });
    let constant = rule(Action::Replace, |c| {
        c.target_label = "env".into();
        c.replacement = "prod".into();
    });
    let mut l = series();
    assert!(apply(&[rename, class, constant], &mut l));
    assert_eq!(l[NAME], "api_requests_total");
    assert_eq!(l["class"], "5xx-POST");
    assert_eq!(l["env"], "prod");

    // Anchored: a substring match is no match.
    let partial = rule(Action::Replace, |c| {
        c.source_labels = vec!["handler".into()];
        c.regex = "pred".into();
        c.target_label = "hit".into();
    });
    let mut l = series();
    assert!(apply(&[partial], &mut l));
    assert!(!l.contains_key("hit"));

    // An empty result removes the target; a $-target is expanded.
    let clear = rule(Action::Replace, |c| {
        c.source_labels = vec!["method".into()];
        c.regex = "(POST)".into();
        c.target_label = "handler".into();
        c.replacement = "".into();
    });
    let dynamic = rule(Action::Replace, |c| {
        c.source_labels = vec!["method".into()];
        c.regex = "(.*)".into();
        c.target_label = "m_$1".into();
        c.replacement = "yes".into();
    });
    let mut l = series();
    assert!(apply(&[clear, dynamic], &mut l));
    assert!(!l.contains_key("handler"));
    assert_eq!(l["m_POST"], "yes");
}

#[test]
fn keep_and_drop_filter_series() {
    let keep_5xx = rule(Action::Keep, |c| {
        c.source_labels = vec!["status".into()];
        c.regex = "5..".into();
    });
    let drop_post = rule(Action::Drop, |c| {
        c.source_labels = vec![NAME.into(), "method".into()];
        c.regex = "http_requests_total;POST".into();
    });
    assert!(apply(std::slice::from_ref(&keep_5xx), &mut series()));
    let mut ok = series();
    ok.insert("status".into(), "200".into());
    assert!(!apply(std::slice::from_ref(&keep_5xx), &mut ok));
    assert!(!apply(&[drop_post], &mut series()));
    let same = rule(Action::KeepEqual, |c| {
        c.source_labels = vec!["job".into()];
        c.target_label = "exported_job".into();
    });
    assert!(!apply(std::slice::from_ref(&same), &mut series()));
    let mut l = series();
    l.insert("exported_job".into(), "api".into());
    assert!(apply(&[same], &mut l));
}

#[test]
fn label_actions() {
    let mut l = series();
    let map = rule(Action::LabelMap, |c| {
        c.regex = "(handler|method)".into();
        c.replacement = "http_$1".into();
    });
    let drop = rule(Action::LabelDrop, |c| c.regex = "handler|method".into());
    let lower = rule(Action::Lowercase, |c| {
        c.source_labels = vec!["http_method".into()];
        c.target_label = "verb".into();
    });
    assert!(apply(&[map, drop, lower], &mut l));
    let names: Vec<&str> = l.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [NAME, "http_handler", "http_method", "job", "status", "verb"]
    );
    assert_eq!(
        (l["http_method"].as_str(), l["verb"].as_str()),
        ("POST", "post")
    );
    let keep = rule(Action::LabelKeep, |c| c.regex = "__name__|status".into());
    assert!(apply(&[keep], &mut l));
    assert_eq!(l.len(), 2);
}

#[test]
fn bad_rules_list_every_problem() {
    let mut c = RelabelConfig::new(Action::Replace);
    c.regex = "(unclosed".into();
    c.source_labels = vec!["bad-name".into()];
    let problems = c
        .compile("collect.scrape[0].relabel[1]")
        .expect_err("invalid");
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problems[0].starts_with("collect.scrape[0].relabel[1]: invalid regex \"(unclosed\""));
    assert!(problems[1].contains("\"bad-name\" is not a valid label name"));
    assert!(problems[2].contains("needs a target_label"));

    let mut c = RelabelConfig::new(Action::Keep);
    c.target_label = "host".into();
    let problems = c.compile("k").expect_err("invalid");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("set by the agent itself")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("needs source_labels")),
        "{problems:?}"
    );
    let mut c = RelabelConfig::new(Action::LabelDrop);
    c.source_labels = vec!["a".into()];
    assert!(c.compile("k").is_err());
}
