//! Editing silences through `POST /api/v1/silences` with an `id`, with
//! Alertmanager's rules: in place when history allows, else the old one is
//! expired and a new one answers.

use super::*;

async fn get(state: &AppState, token: &str, id: &str) -> Value {
    let r = call(state, "GET", &format!("/api/v1/silences/{id}"), token, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    r.json
}

async fn post(state: &AppState, token: &str, body: Value) -> common::Reply {
    call(state, "POST", "/api/v1/silences", token, Some(body)).await
}

async fn post_ok(state: &AppState, token: &str, body: Value) -> String {
    let r = post(state, token, body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    r.json["silenceID"].as_str().expect("id").to_string()
}

fn host(h: &str) -> Value {
    json!([{"name": "host", "value": h, "isRegex": false}])
}

async fn silence_edits(state: &AppState) {
    let t = common::tokens(state.store.as_ref()).await;
    let w = t.write.as_str();
    let id = post_ok(
        state,
        w,
        json!({"matchers": host("a"), "endsAt": in_minutes(30), "comment": "one"}),
    )
    .await;
    let before = get(state, &t.read, &id).await;

    // Same matchers, later end, new comment and author: in place.
    let same = post_ok(
        state,
        w,
        json!({"id": id, "matchers": host("a"), "endsAt": in_minutes(90), "comment": "two", "createdBy": "bob"}),
    )
    .await;
    assert_eq!(same, id, "updated in place");
    let after = get(state, &t.read, &id).await;
    assert_eq!(after["status"]["state"], "active");
    assert_eq!(
        after["startsAt"], before["startsAt"],
        "an active silence keeps its start"
    );
    assert_ne!(after["endsAt"], before["endsAt"]);
    assert_eq!(after["comment"], "two");
    assert_eq!(after["createdBy"], "bob");
    // Its own start sent back (as a client that read it does): in place too.
    let again = post_ok(
        state,
        w,
        json!({"id": id, "matchers": host("a"), "startsAt": after["startsAt"], "endsAt": in_minutes(60), "comment": "three"}),
    )
    .await;
    assert_eq!(again, id);
    let r = call(state, "GET", "/api/v1/silences", &t.read, None).await;
    assert_eq!(
        r.json.as_array().map(Vec::len),
        Some(1),
        "no new silence: {}",
        r.json
    );

    // Moving an active silence's start rewrites history: replaced.
    let moved = post_ok(
        state,
        w,
        json!({"id": id, "matchers": host("a"), "startsAt": in_minutes(5), "endsAt": in_minutes(60), "comment": "later"}),
    )
    .await;
    assert_ne!(moved, id);
    assert_eq!(get(state, &t.read, &id).await["status"]["state"], "expired");
    assert_eq!(
        get(state, &t.read, &moved).await["status"]["state"],
        "pending"
    );

    // Other matchers: a new silence, the old one expired.
    let active = post_ok(
        state,
        w,
        json!({"matchers": host("c"), "endsAt": in_minutes(30), "comment": "c"}),
    )
    .await;
    let other = post_ok(
        state,
        w,
        json!({"id": active, "matchers": host("d"), "endsAt": in_minutes(30), "comment": "d"}),
    )
    .await;
    assert_ne!(other, active);
    let old = get(state, &t.read, &active).await;
    assert_eq!(old["status"]["state"], "expired");
    assert_eq!(
        old["matchers"][0]["value"], "c",
        "the old one keeps its matchers"
    );
    let new = get(state, &t.read, &other).await;
    assert_eq!(new["status"]["state"], "active");
    assert_eq!(new["matchers"][0]["value"], "d");
    assert_eq!(new["comment"], "d");

    // An expired silence is never edited: a new one, the old one untouched.
    let old_ends = old["endsAt"].clone();
    let revived = post_ok(
        state,
        w,
        json!({"id": active, "matchers": host("c"), "endsAt": in_minutes(30), "comment": "back"}),
    )
    .await;
    assert!(revived != active && revived != other);
    let old = get(state, &t.read, &active).await;
    assert_eq!(old["endsAt"], old_ends);
    assert_eq!(old["comment"], "c");
    let revived_view = get(state, &t.read, &revived).await;
    assert_eq!(
        revived_view["status"]["state"], "active",
        "its past start became now"
    );

    // A pending silence may move both ends in place...
    let pending = post_ok(
        state,
        w,
        json!({"matchers": host("p"), "startsAt": in_minutes(10), "endsAt": in_minutes(20), "comment": "p"}),
    )
    .await;
    let (start, end) = (in_minutes(15), in_minutes(45));
    let same = post_ok(
        state,
        w,
        json!({"id": pending, "matchers": host("p"), "startsAt": start, "endsAt": end, "comment": "p2"}),
    )
    .await;
    assert_eq!(same, pending);
    let view = get(state, &t.read, &pending).await;
    let start_ms = start.parse::<i64>().expect("secs") * 1000;
    let fresh = vigil_aggregator::testing::mutes(state.store.as_ref());
    fresh.load().await.expect("load");
    let stored = fresh.silences.get(&pending).expect("persisted");
    assert_eq!(stored.starts_at_ms, start_ms, "{view}");
    assert_eq!(stored.ends_at_ms, end.parse::<i64>().expect("secs") * 1000);
    assert_eq!(stored.comment, "p2");
    assert_eq!(view["status"]["state"], "pending");
    // ...but not into the past: then it is replaced by an active one.
    let started = post_ok(
        state,
        w,
        json!({"id": pending, "matchers": host("p"), "startsAt": in_minutes(-1), "endsAt": end, "comment": "now"}),
    )
    .await;
    assert_ne!(started, pending);
    assert_eq!(
        get(state, &t.read, &pending).await["status"]["state"],
        "expired"
    );
    assert_eq!(
        get(state, &t.read, &started).await["status"]["state"],
        "active"
    );

    // Errors: unknown id 404; a bad body 400 with the reason, nothing changed.
    let r = post(
        state,
        w,
        json!({"id": "nope", "matchers": host("a"), "endsAt": in_minutes(5), "comment": "c"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.json);
    assert!(
        r.json["error"].as_str().is_some_and(|e| e.contains("nope")),
        "{}",
        r.json
    );
    let before = get(state, &t.read, &other).await;
    for (body, needle) in [
        (
            json!({"id": other, "matchers": host("d"), "startsAt": in_minutes(10), "endsAt": in_minutes(5), "comment": "c"}),
            "after startsAt",
        ),
        (
            json!({"id": other, "matchers": host("d"), "startsAt": in_minutes(-10), "endsAt": in_minutes(-5), "comment": "c"}),
            "in the future",
        ),
        (
            json!({"id": other, "matchers": [], "endsAt": in_minutes(5), "comment": "c"}),
            "at least one matcher",
        ),
        (
            json!({"id": other, "matchers": host("d"), "endsAt": in_minutes(5), "comment": " "}),
            "comment",
        ),
        (
            json!({"id": 7, "matchers": host("d"), "endsAt": in_minutes(5), "comment": "c"}),
            "id",
        ),
    ] {
        let r = post(state, w, body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{needle}: {}", r.json);
        assert!(r.json.to_string().contains(needle), "{needle}: {}", r.json);
    }
    assert_eq!(get(state, &t.read, &other).await, before, "unchanged");
    let r = post(
        state,
        &t.read,
        json!({"id": other, "matchers": host("d"), "endsAt": in_minutes(5), "comment": "c"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // The database holds what the API shows.
    let r = call(state, "GET", "/api/v1/silences", &t.read, None).await;
    let listed = r.json.as_array().cloned().unwrap_or_default();
    let fresh = vigil_aggregator::testing::mutes(state.store.as_ref());
    fresh.load().await.expect("load");
    assert_eq!(fresh.silences.list().len(), listed.len());
    for v in listed {
        let s = fresh
            .silences
            .get(v["id"].as_str().expect("id"))
            .expect("stored");
        assert_eq!(v["comment"], s.comment.as_str());
        assert_eq!(
            v["status"]["state"],
            s.state(vigil_common::now_ms()).as_str()
        );
    }
}

#[tokio::test]
async fn silences_are_edited_like_alertmanager_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    silence_edits(&sqlite(dir.path()).await).await;
}

#[tokio::test]
async fn silences_are_edited_like_alertmanager_on_postgres() {
    let db = PgTestDb::create().await.expect("postgres");
    silence_edits(&postgres(&db).await).await;
    db.drop_db().await;
}

/// A silence about to end, extended in place, keeps muting the alert past
/// its old end: the dispatcher sees the edit.
async fn an_extended_silence_still_mutes(state: &AppState) {
    let t = common::tokens(state.store.as_ref()).await;
    let s = dispatcher(state, Arc::new(Capture::default()));
    let soon = |ms: i64| format!("{:.3}", (vigil_common::now_ms() + ms) as f64 / 1000.0);
    let id = post_ok(
        state,
        &t.write,
        json!({"matchers": [{"name": "alertname", "value": "Long", "isRegex": false}], "endsAt": soon(1500), "comment": "short"}),
    )
    .await;
    let same = post_ok(
        state,
        &t.write,
        json!({"id": id, "matchers": [{"name": "alertname", "value": "Long", "isRegex": false}], "endsAt": in_minutes(60), "comment": "longer"}),
    )
    .await;
    assert_eq!(same, id);
    let a = alert("Long", "h", "info");
    s.dispatcher.send(vec![a.clone()]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.dispatcher.send(vec![a.clone()]);
    s.capture.still(0).await;
    assert!(
        matches!(s.dispatcher.muted(&a.labels), Some(Muted::Silenced { silence_ids }) if silence_ids == [id.clone()])
    );
    // Cut short in place (an end in the near future): the alert goes out.
    let same = post_ok(
        state,
        &t.write,
        json!({"id": id, "matchers": [{"name": "alertname", "value": "Long", "isRegex": false}], "endsAt": soon(300), "comment": "done"}),
    )
    .await;
    assert_eq!(same, id);
    let sent = s.capture.wait_for(1).await;
    assert_eq!(hosts(&sent[0]), ["h+"]);
    assert_eq!(s.dispatcher.muted(&a.labels), None);
    s.task.abort();
}

#[tokio::test]
async fn an_extended_silence_still_mutes_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    an_extended_silence_still_mutes(&sqlite(dir.path()).await).await;
}

#[tokio::test]
async fn an_extended_silence_still_mutes_on_postgres() {
    let db = PgTestDb::create().await.expect("postgres");
    an_extended_silence_still_mutes(&postgres(&db).await).await;
    db.drop_db().await;
}
