use super::*;

fn labels(pairs: &[(&str, &str)]) -> LabelSet {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn tree(yaml: &str) -> Route {
    let raw: RawRoute = serde_norway::from_str(yaml).expect("yaml");
    let receivers = ["default", "platform", "ml", "pager", "audit"]
        .into_iter()
        .map(String::from)
        .collect();
    let intervals = ["nights".to_string()].into();
    let mut problems = Vec::new();
    let r = compile_root(&raw, &receivers, &intervals, &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    r.expect("compiled")
}

const TREE: &str = r#"
receiver: default
group_by: [alertname]
group_wait: 10s
routes:
  - receiver: audit
    matchers: ['severity=~"critical|warning"']
    continue: true
  - matchers: ['team="platform"']
    receiver: platform
    group_by: ['...']
    routes:
      - matchers: ['severity="critical"']
        receiver: pager
        repeat_interval: 1h
  - match: {team: ml-ops}
    receiver: ml
"#;

fn receivers_of(r: &Route, l: &LabelSet) -> Vec<String> {
    r.matching(l).iter().map(|r| r.receiver.clone()).collect()
}

#[test]
fn first_match_wins_continue_goes_on_and_nested_routes_refine() {
    let r = tree(TREE);
    let l = labels(&[("team", "platform"), ("severity", "critical")]);
    assert_eq!(receivers_of(&r, &l), ["audit", "pager"]);
    let l = labels(&[("team", "platform"), ("severity", "info")]);
    assert_eq!(receivers_of(&r, &l), ["platform"]);
    let l = labels(&[("team", "ml-ops"), ("severity", "warning")]);
    assert_eq!(receivers_of(&r, &l), ["audit", "ml"]);
    let l = labels(&[("team", "other")]);
    assert_eq!(
        receivers_of(&r, &l),
        ["default"],
        "no child matched: the root"
    );
}

#[test]
fn children_inherit_unset_settings() {
    let r = tree(TREE);
    let platform = &r.routes[1];
    let pager = &platform.routes[0];
    assert_eq!(platform.group_by, GroupBy::All);
    assert_eq!(pager.group_by, GroupBy::All, "inherited from platform");
    assert_eq!(
        pager.group_wait,
        Duration::from_secs(10),
        "inherited from the root"
    );
    assert_eq!(pager.group_interval, DEFAULT_GROUP_INTERVAL);
    assert_eq!(pager.repeat_interval, Duration::from_secs(3600));
    assert_eq!(
        r.routes[2].group_by,
        GroupBy::Labels(vec!["alertname".into()])
    );
    // Ids are unique.
    let ids: BTreeSet<&str> = r.walk().iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids.len(), 5);
    assert_eq!(
        pager.id,
        r#"{}/{team="platform"}/1/{severity="critical"}/0"#
    );
}

#[test]
fn group_labels_follow_group_by() {
    let l = labels(&[("alertname", "A"), ("host", "h"), ("team", "t")]);
    assert_eq!(GroupBy::All.group_labels(&l), l);
    let g = GroupBy::Labels(vec!["host".into(), "missing".into()]);
    assert_eq!(g.group_labels(&l), labels(&[("host", "h")]));
    assert!(GroupBy::Labels(vec![]).group_labels(&l).is_empty());
}

#[test]
fn every_problem_in_the_tree_is_reported() {
    let raw: RawRoute = serde_norway::from_str(
        r#"
matchers: ['a="b"']
continue: true
group_wait: soon
routes:
  - receiver: nobody
    matchers: ['x=~"("', 'bad']
    group_by: ['...', 'host']
    mute_time_intervals: [weekends]
    repeat_interval: 0s
"#,
    )
    .expect("yaml");
    let mut problems = Vec::new();
    let r = compile_root(&raw, &BTreeSet::new(), &BTreeSet::new(), &mut problems);
    assert!(r.is_none());
    let text = problems.join("\n");
    for needle in [
        "must name a receiver",
        "must not have matchers",
        "cannot have continue",
        "route.group_wait",
        "undefined receiver \"nobody\"",
        "invalid regex",
        "\"bad\"",
        "'...' must be the only entry",
        "undefined time interval \"weekends\"",
        "routes[0].repeat_interval: must be greater than zero",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}
