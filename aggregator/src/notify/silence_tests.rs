use super::*;

fn m(name: &str, value: &str, is_regex: bool, is_equal: bool) -> ApiMatcher {
    ApiMatcher {
        name: name.into(),
        value: value.into(),
        is_regex,
        is_equal,
    }
}

fn new(matchers: Vec<ApiMatcher>, start: i64, end: i64) -> NewSilence {
    NewSilence {
        matchers,
        starts_at_ms: start,
        ends_at_ms: end,
        created_by: "ops".into(),
        comment: "deploy".into(),
    }
}

#[test]
fn validation_gives_the_reason() {
    let now = 1_000_000;
    let cases = [
        (new(vec![], now, now + 10), "at least one matcher"),
        (
            new(vec![m("host", "(", true, true)], now, now + 10),
            "invalid regex",
        ),
        (
            new(vec![m("bad-name", "x", false, true)], now, now + 10),
            "invalid label name",
        ),
        (
            new(vec![m("host", ".*", true, true)], now, now + 10),
            "empty string",
        ),
        (
            new(vec![m("host", "a", false, false)], now, now + 10),
            "empty string",
        ),
        (
            new(vec![m("host", "a", false, true)], now + 10, now + 10),
            "after startsAt",
        ),
        (
            new(vec![m("host", "a", false, true)], now - 20, now - 10),
            "in the future",
        ),
    ];
    for (n, needle) in cases {
        let e = validate(&n, now).expect_err(needle).to_string();
        assert!(e.contains(needle), "{needle}: {e}");
    }
    let mut n = new(vec![m("host", "a", false, true)], now, now + 10);
    n.comment = " ".into();
    assert!(validate(&n, now).is_err());
    let mut n = new(vec![m("host", "a", false, true)], now, now + 10);
    n.comment = "x".repeat(MAX_TEXT_BYTES + 1);
    assert!(
        validate(&n, now)
            .expect_err("long")
            .to_string()
            .contains("limited")
    );
    let n = new(
        vec![m("host", "a", false, true); MAX_MATCHERS + 1],
        now,
        now + 10,
    );
    assert!(
        validate(&n, now)
            .expect_err("many")
            .to_string()
            .contains("at most")
    );
    let ok = new(
        vec![m("host", "a", false, true), m("x", ".*", true, true)],
        now,
        now + 10,
    );
    assert_eq!(validate(&ok, now).expect("valid").len(), 2);
}

#[test]
fn states_follow_the_clock() {
    let s = Silence {
        id: "x".into(),
        matchers: vec![],
        compiled: vec![],
        starts_at_ms: 10,
        ends_at_ms: 20,
        created_by: String::new(),
        comment: String::new(),
        updated_at_ms: 0,
    };
    assert_eq!(s.state(9), SilenceState::Pending);
    assert_eq!(s.state(10), SilenceState::Active);
    assert_eq!(s.state(20), SilenceState::Expired);
}

#[test]
fn ids_are_unique_and_uuid_shaped() {
    let a = new_id().expect("id");
    assert_eq!(a.len(), 36);
    assert_ne!(a, new_id().expect("id"));
}

#[test]
fn can_update_follows_alertmanager() {
    let now = 1_000_000;
    let old = |start: i64, end: i64| Silence {
        id: "x".into(),
        matchers: vec![m("host", "a", false, true)],
        compiled: vec![],
        starts_at_ms: start,
        ends_at_ms: end,
        created_by: "ops".into(),
        comment: "deploy".into(),
        updated_at_ms: 0,
    };
    let to = |start: i64, end: i64| new(vec![m("host", "a", false, true)], start, end);
    let can = update::can_update;
    // Active: the start stays (to the second), the end may move but not
    // into the past.
    let active = old(now - 5_000, now + 5_000);
    assert!(can(&active, &to(now - 5_000, now + 60_000), now));
    assert!(can(&active, &to(now - 4_500, now + 1), now), "same second");
    assert!(!can(&active, &to(now - 6_000, now + 60_000), now));
    assert!(!can(&active, &to(now - 5_000, now - 1), now));
    // Pending: both may change, the start not into the past.
    let pending = old(now + 5_000, now + 10_000);
    assert!(can(&pending, &to(now + 1_000, now + 90_000), now));
    assert!(can(&pending, &to(now, now + 90_000), now));
    assert!(!can(&pending, &to(now - 1, now + 90_000), now));
    // Expired: never; other matchers: never.
    assert!(!can(&old(now - 10_000, now - 1), &to(now, now + 10), now));
    let mut other = to(now - 5_000, now + 60_000);
    other.matchers[0].is_equal = false;
    assert!(!can(&active, &other, now));
    other.matchers = vec![m("host", "a", false, true), m("x", "y", false, true)];
    assert!(!can(&active, &other, now));
}
