use super::round::presence_expr;

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
