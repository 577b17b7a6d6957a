use super::query::presence_expr;

#[test]
fn presence_is_the_vector_side_of_a_filtering_comparison() {
    assert_eq!(presence_expr("cpu > 90").as_deref(), Some("cpu"));
    assert_eq!(
        presence_expr("(90 < cpu{host=\"a\"})").as_deref(),
        Some("cpu{host=\"a\"}")
    );
    assert_eq!(
        presence_expr("rate(x[5m]) > 1").as_deref(),
        Some("rate(x[5m])")
    );
    assert_eq!(presence_expr("cpu > bool 90"), None);
    assert_eq!(presence_expr("absent(up)"), None);
    assert_eq!(presence_expr("cpu + 1"), None);
    assert_eq!(presence_expr("not promql ("), None);
}

#[test]
fn recording_output_is_written_early_only_when_a_later_rule_may_read_it() {
    use super::query::read_later;
    let load = |text: &str| {
        crate::alert::rules::parse(std::path::Path::new("x.yml"), text)
            .expect("parse")
            .remove(0)
            .rules
    };
    let rules = load(
        "groups:\n- name: g\n  rules:\n  - record: a:b\n    expr: up\n  - alert: X\n    expr: c > 1\n    vigil: {recover: 'a:b < 1'}\n",
    );
    assert!(read_later(&rules[1..], "a:b"));
    assert!(!read_later(&rules[1..], "zzz"));
    assert!(!read_later(&rules[2..], "a:b"));
}
