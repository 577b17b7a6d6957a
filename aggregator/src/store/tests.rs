//! One suite, run against both real databases.

use std::sync::Arc;

use vigil_common::wire::PROTOCOL_VERSION;
use vigil_common::{BatchHeader, Label, Point, Series};

use super::*;
use crate::testing::PgTestDb;

fn header(agent: &str, seq: u64) -> BatchHeader {
    BatchHeader {
        protocol_version: PROTOCOL_VERSION,
        agent_id: agent.into(),
        boot_id: [9; 16],
        sequence: seq,
        created_at_ms: 0,
        host: format!("{agent}-host"),
        roles: vec!["db".into(), "cache".into()],
    }
}

fn series(agent: &str, name: &str, extra: &str, ts: &[i64], value: f64) -> Series {
    Series::new(
        name,
        vec![
            Label::new("host", format!("{agent}-host")),
            Label::new("x", extra),
        ],
        ts.iter()
            .map(|&t| Point {
                timestamp_ms: t,
                value,
            })
            .collect(),
    )
}

const T0: i64 = 1_764_115_200_000; // 2025-11-26T00:00:00Z

async fn suite(store: Arc<dyn Store>) {
    store.migrate().await.expect("migrate");
    store.migrate().await.expect("migrating twice is a no-op");
    store.ping().await.expect("ping");

    // Agents.
    assert_eq!(store.agent("a1").await.expect("agent"), None);
    store
        .register_agent("a1", &[1; 32])
        .await
        .expect("register");
    let rec = store.agent("a1").await.expect("agent").expect("present");
    assert_eq!((rec.public_key, rec.revoked), ([1; 32], false));
    assert!(store.revoke_agent("a1").await.expect("revoke"));
    assert!(
        store
            .agent("a1")
            .await
            .expect("agent")
            .expect("present")
            .revoked
    );
    assert!(!store.revoke_agent("nobody").await.expect("revoke unknown"));
    store
        .register_agent("a1", &[2; 32])
        .await
        .expect("re-register");
    let rec = store.agent("a1").await.expect("agent").expect("present");
    assert_eq!(
        (rec.public_key, rec.revoked),
        ([2; 32], false),
        "re-keying un-revokes"
    );

    // A batch, then its retry.
    let b1 = vec![
        series("a1", "m_one", "a", &[T0, T0 + 1000], 1.0),
        series("a1", "m_two", "b", &[T0], f64::NAN),
        series("a1", "m_two", "c", &[T0], f64::INFINITY),
    ];
    let out = store
        .commit_batch(&header("a1", 1), &b1)
        .await
        .expect("commit");
    assert_eq!(
        out,
        CommitOutcome {
            duplicate: false,
            samples_stored: 4
        }
    );
    let retry = store
        .commit_batch(&header("a1", 1), &b1)
        .await
        .expect("retry");
    assert_eq!(
        retry,
        CommitOutcome {
            duplicate: true,
            samples_stored: 0
        }
    );
    assert_eq!(store.count_samples(None).await.expect("count"), 4);

    // Same series again (cached ids), one new series, one already-stored point,
    // and a point on the next day (another partition in PostgreSQL).
    let b2 = vec![
        series(
            "a1",
            "m_one",
            "a",
            &[T0 + 1000, T0 + 2000, T0 + 86_400_000],
            2.0,
        ),
        series("a1", "m_three", "z", &[T0], 3.0),
    ];
    let out = store
        .commit_batch(&header("a1", 2), &b2)
        .await
        .expect("commit 2");
    assert_eq!(
        out,
        CommitOutcome {
            duplicate: false,
            samples_stored: 3
        },
        "the repeated point is not stored twice"
    );
    // Another boot of the same agent with the same sequence is a different batch.
    let mut other_boot = header("a1", 1);
    other_boot.boot_id = [8; 16];
    let out = store
        .commit_batch(
            &other_boot,
            &[series("a1", "m_one", "a", &[T0 + 3000], 1.0)],
        )
        .await
        .expect("commit other boot");
    assert_eq!(out.samples_stored, 1);

    let hosts = store.hosts().await.expect("hosts");
    assert_eq!(hosts.len(), 1);
    let h = &hosts[0];
    assert_eq!(
        (h.agent_id.as_str(), h.hostname.as_str()),
        ("a1", "a1-host")
    );
    assert_eq!(h.roles, vec!["db", "cache"]);
    assert_eq!(h.samples_stored, 8);
    assert!(h.first_seen_ms <= h.last_seen_ms && h.first_seen_ms > 0);
    assert_eq!(
        store.count_samples(Some("a1-host")).await.expect("count"),
        8
    );
    assert_eq!(store.count_samples(Some("other")).await.expect("count"), 0);

    // Concurrent commits from several agents over overlapping series: no
    // deadlock, nothing lost, nothing doubled.
    let mut tasks = Vec::new();
    for agent in 0..4 {
        for seq in 1..=5u64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let name = format!("c{agent}");
                let batch: Vec<Series> = (0..20)
                    .map(|i| {
                        let mut s = series(
                            &name,
                            "shared_metric",
                            &format!("{i}"),
                            &[T0 + seq as i64],
                            1.0,
                        );
                        // Overlapping label sets across agents.
                        s.labels.retain(|l| l.name != "host");
                        s.labels
                            .push(Label::new("host", format!("shared-{}", i % 3)));
                        s.labels.push(Label::new("y", format!("{agent}")));
                        s.labels.sort();
                        s
                    })
                    .collect();
                store.commit_batch(&header(&name, seq), &batch).await
            }));
        }
    }
    let mut stored = 0;
    for t in tasks {
        stored += t
            .await
            .expect("join")
            .expect("concurrent commit")
            .samples_stored;
    }
    assert_eq!(stored, 4 * 5 * 20);
    assert_eq!(store.count_samples(None).await.expect("count"), 8 + 400);
    assert_eq!(store.hosts().await.expect("hosts").len(), 5);

    group_commit(store.as_ref()).await;

    // Tokens.
    assert_eq!(store.token(&[5; 32]).await.expect("token"), None);
    store
        .put_token("admin", &[5; 32], "admin")
        .await
        .expect("put");
    assert_eq!(
        store.token(&[5; 32]).await.expect("token"),
        Some(TokenInfo {
            name: "admin".into(),
            role: "admin".into()
        })
    );
    store
        .put_token("admin", &[6; 32], "admin")
        .await
        .expect("replace");
    assert_eq!(
        store.token(&[5; 32]).await.expect("token"),
        None,
        "replaced token no longer works"
    );

    // Revocation: the token stops working, stays listed, and re-creating the
    // name issues a live token again.
    store.put_token("ro", &[7; 32], "read").await.expect("put");
    assert!(store.revoke_token("ro").await.expect("revoke"));
    assert!(
        !store.revoke_token("ro").await.expect("revoke"),
        "already revoked"
    );
    assert!(!store.revoke_token("nobody").await.expect("revoke"));
    assert_eq!(store.token(&[7; 32]).await.expect("token"), None);
    let listed = store.tokens().await.expect("tokens");
    assert_eq!(
        listed.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["admin", "ro"]
    );
    assert!(listed[0].revoked_at_ms.is_none() && listed[1].revoked_at_ms.is_some());
    assert!(listed[1].created_at_ms > 0);
    store
        .put_token("ro", &[8; 32], "read")
        .await
        .expect("re-create");
    assert!(store.token(&[8; 32]).await.expect("token").is_some());

    // Samples not from agents: no dedup key, no host row, idempotent per
    // (series, timestamp), partitions made on demand (ten days back).
    let before = store.count_samples(None).await.expect("count");
    let old = T0 - 10 * 86_400_000;
    let remote = vec![
        Series::new(
            "remote_metric",
            vec![Label::new("job", "prom")],
            vec![
                Point {
                    timestamp_ms: old,
                    value: 1.0,
                },
                Point {
                    timestamp_ms: T0,
                    value: 2.0,
                },
                Point {
                    timestamp_ms: T0,
                    value: 2.0,
                },
            ],
        ),
        // A series already stored by an agent batch: its stored point stays.
        series("a1", "m_one", "a", &[T0, T0 + 9000], 7.0),
        Series::new("empty_metric", vec![], vec![]),
    ];
    assert_eq!(store.write_series(&remote).await.expect("write"), 3);
    assert_eq!(
        store.write_series(&remote).await.expect("re-send"),
        0,
        "a re-sent sample is not stored twice"
    );
    assert_eq!(store.write_series(&[]).await.expect("nothing"), 0);
    assert_eq!(store.count_samples(None).await.expect("count"), before + 3);
    assert_eq!(store.hosts().await.expect("hosts").len(), 7, "no host row");
}

/// The `hosts` rows' samples stored of `agents`.
async fn stored_by<const N: usize>(store: &dyn Store, agents: [&str; N]) -> [Option<i64>; N] {
    let hosts = store.hosts().await.expect("hosts");
    agents.map(|a| {
        hosts
            .iter()
            .find(|h| h.agent_id == a)
            .map(|h| h.samples_stored)
    })
}

/// What each batch of a group was told: (duplicate, samples stored).
fn told(out: &[Committed]) -> Vec<(bool, u64)> {
    out.iter()
        .map(|c| (c.outcome.duplicate, c.outcome.samples_stored))
        .collect()
}

/// Several agents' batches in one transaction: each gets its own outcome
/// and ids, a batch twice in a group is stored once, and a group with a
/// point stored before falls back to one transaction per batch so each
/// batch's count is exact.
async fn group_commit(store: &dyn Store) {
    let before = store.count_samples(None).await.expect("count");
    let g1 = vec![
        series("g1", "grp", "a", &[T0, T0 + 1000], 1.0),
        series("g1", "grp", "b", &[T0], 2.0),
    ];
    let g2 = vec![series("g2", "grp", "a", &[T0], 3.0)];
    let g1_next = vec![
        series("g1", "grp", "a", &[T0 + 2000], 1.0),
        series("g1", "grp", "b", &[T0 + 2000], 2.0),
        series("g1", "grp", "c", &[T0 + 2000], 2.0),
    ];
    let (h1, h2, h1_next) = (header("g1", 1), header("g2", 1), header("g1", 2));
    let batch = |header, series| BatchRef { header, series };
    let out = store
        .commit_batches(&[
            batch(&h1, &g1),
            batch(&h2, &g2),
            batch(&h1, &g1),
            batch(&h1_next, &g1_next),
        ])
        .await
        .expect("group commit");
    let outcomes: Vec<(bool, u64, usize)> = out
        .iter()
        .map(|c| {
            (
                c.outcome.duplicate,
                c.outcome.samples_stored,
                c.series_ids.len(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [(false, 3, 2), (false, 1, 1), (true, 0, 0), (false, 3, 3)]
    );
    assert_eq!(
        out[0].series_ids[..],
        out[3].series_ids[..2],
        "the same series has the same id in every batch"
    );
    assert_ne!(out[0].series_ids[0], out[1].series_ids[0], "hosts differ");
    assert_eq!(store.count_samples(None).await.expect("count"), before + 7);

    // A retried batch in a new group, and a batch re-sending a stored point.
    let (h2_next, h1_third) = (header("g2", 2), header("g1", 3));
    let g2_next = vec![series("g2", "grp", "a", &[T0 + 1000], 3.0)];
    let overlap = vec![
        series("g1", "grp", "a", &[T0 + 2000, T0 + 3000], 9.0),
        series("g1", "grp", "d", &[T0 + 3000], 9.0),
    ];
    let out = store
        .commit_batches(&[
            batch(&h2, &g2),
            batch(&h2_next, &g2_next),
            batch(&h1_third, &overlap),
        ])
        .await
        .expect("group commit with a stored point");
    assert_eq!(told(&out), [(true, 0), (false, 1), (false, 2)]);
    assert_eq!(out[2].series_ids.len(), 2);
    assert_eq!(store.count_samples(None).await.expect("count"), before + 10);
    assert_eq!(stored_by(store, ["g1", "g2"]).await, [Some(8), Some(2)]);
    assert!(store.commit_batches(&[]).await.expect("empty").is_empty());

    // Every series known now (the steady state): new batches are stored
    // with the ids of before.
    let g1_a = out[2].series_ids[0];
    let (h2_3, h1_4) = (header("g2", 3), header("g1", 4));
    let g2_3 = vec![series("g2", "grp", "a", &[T0 + 4000], 3.0)];
    let g1_4 = vec![
        series("g1", "grp", "a", &[T0 + 4000], 1.0),
        series("g1", "grp", "d", &[T0 + 4000, T0 + 5000], 1.0),
    ];
    let out = store
        .commit_batches(&[batch(&h2_3, &g2_3), batch(&h1_4, &g1_4)])
        .await
        .expect("group of known series");
    assert_eq!(told(&out), [(false, 1), (false, 3)]);
    assert_eq!(out[1].series_ids[0], g1_a, "known series keep their ids");
    assert_eq!(store.count_samples(None).await.expect("count"), before + 14);
    // A retried batch in such a group (or the same batch twice): each
    // batch gets its own outcome.
    let h2_4 = header("g2", 4);
    let g2_4 = vec![series("g2", "grp", "a", &[T0 + 6000], 3.0)];
    let out = store
        .commit_batches(&[
            batch(&h1_4, &g1_4),
            batch(&h2_4, &g2_4),
            batch(&h2_4, &g2_4),
        ])
        .await
        .expect("group with a retried batch");
    assert_eq!(told(&out), [(true, 0), (false, 1), (true, 0)]);
    assert_eq!(store.count_samples(None).await.expect("count"), before + 15);
    // A new batch re-sending a stored point: the rest of it is stored.
    let h2_5 = header("g2", 5);
    let g2_5 = vec![series("g2", "grp", "a", &[T0 + 6000, T0 + 7000], 3.0)];
    let out = store
        .commit_batches(&[batch(&h2_5, &g2_5)])
        .await
        .expect("group with a stored point");
    assert_eq!(told(&out), [(false, 1)]);
    assert_eq!(store.count_samples(None).await.expect("count"), before + 16);
    // A retried batch without points: only its dedup row shows it.
    let (h1_5, h2_6) = (header("g1", 5), header("g2", 6));
    let empty: Vec<Series> = Vec::new();
    let g2_6 = vec![series("g2", "grp", "a", &[T0 + 8000], 3.0)];
    let out = store
        .commit_batches(&[batch(&h1_5, &empty)])
        .await
        .expect("empty batch");
    assert_eq!(told(&out), [(false, 0)]);
    let out = store
        .commit_batches(&[batch(&h1_5, &empty), batch(&h2_6, &g2_6)])
        .await
        .expect("group with a retried empty batch");
    assert_eq!(told(&out), [(true, 0), (false, 1)]);
    assert_eq!(store.count_samples(None).await.expect("count"), before + 17);
    assert_eq!(stored_by(store, ["g1", "g2"]).await, [Some(11), Some(6)]);
}

#[test]
fn the_series_cache_compares_identities_not_only_hashes() {
    let cache = SeriesCache::default();
    let a = series("h", "m", "a", &[T0], 1.0);
    let b = series("h", "m", "b", &[T0], 1.0);
    cache.extend([(42, &a, 7)]);
    assert_eq!(cache.ids(&[&a], &[42]), [Some(7)]);
    assert_eq!(cache.ids(&[&b], &[42]), [None], "same hash, other series");
    cache.extend([(42, &b, 8)]);
    assert_eq!(
        cache.ids(&[&a, &b], &[42, 42]),
        [Some(7), None],
        "first keeps it"
    );
    assert_eq!(cache.ids(&[&a], &[identity_hash(&a)]), [None]);
    // Strings that concatenate alike are still told apart.
    let x = Series::new(
        "m",
        vec![Label::new("a", "b\0c"), Label::new("d", "e")],
        vec![],
    );
    let y = Series::new(
        "m",
        vec![Label::new("a", "b"), Label::new("c", "d\0e")],
        vec![],
    );
    let shorter = Series::new("m", vec![Label::new("a", "b\0c")], vec![]);
    cache.extend([(1, &x, 1)]);
    assert_eq!(
        cache.ids(&[&x, &y, &shorter], &[1, 1, 1]),
        [Some(1), None, None]
    );
}

#[tokio::test]
async fn sqlite_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open("sqlite:vigil.db", dir.path(), 4).expect("open");
    assert_eq!(store.backend(), "sqlite");
    suite(store).await;
    assert!(dir.path().join("vigil.db").exists());
}

#[tokio::test]
async fn postgres_store() {
    let db = PgTestDb::create().await.expect("PostgreSQL for tests");
    let store = open(&db.url, Path::new("."), 8).expect("open");
    assert_eq!(store.backend(), "postgres");
    suite(store.clone()).await;
    // Day partitions were created for both days written.
    let pg = postgres::PgStore::connect_lazy(&db.url, 16).expect("pool");
    let parts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'samples'::regclass",
    )
    .fetch_one(pg.pool())
    .await
    .expect("partitions");
    assert_eq!(parts, 3, "two days from agents, one from write_series");
    // Many sessions creating the same new days at once: none fails.
    let mut tasks = Vec::new();
    for i in 0..16i64 {
        let pool = pg.pool().clone();
        tasks.push(tokio::spawn(async move {
            let day = T0 + (20 + i % 4) * 86_400_000;
            sqlx::query("SELECT vigil_ensure_partition($1)")
                .bind(day)
                .execute(&pool)
                .await
        }));
    }
    for t in tasks {
        t.await
            .expect("join")
            .expect("concurrent partition creation");
    }
    pg.pool().close().await;
    drop(store);
    db.drop_db().await;
}

#[tokio::test]
async fn a_dead_database_is_an_error_not_a_panic() {
    // Nothing listens on port 1.
    let store = open("postgres://postgres@127.0.0.1:1/none", Path::new("."), 1).expect("lazy open");
    let err = store.ping().await.expect_err("unreachable");
    assert!(err.is_connection(), "{err}");
    let err = store.migrate().await.expect_err("unreachable");
    assert!(err.is_connection(), "{err}");

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = open("sqlite:no/such/dir/v.db", dir.path(), 1).expect("lazy open");
    assert!(bad.migrate().await.is_err());
    assert!(matches!(
        open("mysql://x", dir.path(), 1),
        Err(StoreError::BadUrl(_))
    ));
}

#[test]
fn labels_json_is_canonical() {
    let a = Series::new(
        "m",
        vec![Label::new("b", "2"), Label::new("a", "1\"")],
        vec![],
    );
    assert_eq!(labels_json(&a), r#"{"a":"1\"","b":"2"}"#);
    assert_eq!(
        sqlite_path("sqlite://x/y.db?mode=rwc"),
        Some("x/y.db".into())
    );
    assert_eq!(sqlite_path("sqlite:/abs.db"), Some("/abs.db".into()));
    assert_eq!(sqlite_path("sqlite:"), None);
}
