//! The outbox under a cluster leader's epoch (`[cluster]`, migration
//! 0012), on real PostgreSQL: once a newer leader bumped the epoch, the old
//! one can neither enqueue nor claim; the new one re-sends at once what
//! the old one left claimed (instead of after the 5-minute lease).

mod notify_support;

use std::time::Duration;

use vigil_aggregator::metrics::Metrics;
use vigil_aggregator::notify::Deliver;
use vigil_aggregator::store::{Db, StoreError};

use notify_support::*;

const WAIT: Duration = Duration::from_secs(10);

fn hook(url: &str) -> String {
    format!("- name: team\n  webhook_configs:\n    - url: {url}/hook\n")
}

async fn set_epoch(db: &Db, epoch: i64) {
    let Db::Postgres(pool) = db else {
        panic!("PostgreSQL only")
    };
    sqlx::query(
        "INSERT INTO cluster_leader (id, epoch, node, since_ms) VALUES (1, $1, 'test', 0)
         ON CONFLICT (id) DO UPDATE SET epoch = EXCLUDED.epoch",
    )
    .bind(epoch)
    .execute(pool)
    .await
    .expect("set epoch");
}

/// A notification of its own group (so no row supersedes another).
fn note(key: &str) -> vigil_aggregator::notify::Notification {
    let mut n = notification("team", key);
    n.group_key = format!("group-{key}");
    n
}

#[tokio::test]
async fn an_old_leader_is_fenced_and_the_new_one_resends_its_unfinished_claims() {
    let (store, backend) = open(true).await;
    let db = store.db();
    let receiver = Receiver::default();
    let (url, server) = receiver.start().await;
    let metrics = Metrics::new();

    // Epoch 1 leads: enqueues and sends.
    set_epoch(&db, 1).await;
    let old = outbox(db.clone(), &hook(&url), &metrics, fast());
    let task = old.spawn_as(Some(1), Duration::ZERO);
    old.enqueue(note("sent")).await.expect("leader enqueues");
    wait_requests(&receiver, 1, WAIT).await;
    task.stop().await;

    // A row epoch 1 claimed and never finished (it died mid-send): leased
    // for 5 minutes.
    old.enqueue(note("in-flight")).await.expect("enqueue");
    let Db::Postgres(pool) = &db else {
        unreachable!()
    };
    sqlx::query(
        "UPDATE notification_outbox SET claimed_epoch = 1, attempts = 1,
             next_attempt_at_ms = next_attempt_at_ms + 300000
         WHERE dedup_key = 'in-flight'",
    )
    .execute(pool)
    .await
    .expect("lease");
    // And a due row nobody claimed yet.
    old.enqueue(note("due")).await.expect("enqueue");

    // Epoch 2 takes over. The old leader, not knowing yet, runs on.
    set_epoch(&db, 2).await;
    let stale = old.spawn_as(Some(1), Duration::ZERO);
    match old.enqueue(note("too-late")).await {
        Err(StoreError::Fenced(1)) => {}
        other => panic!("an old leader's enqueue must be fenced: {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.requests().len(),
        1,
        "the old leader claimed nothing"
    );
    let pending: Vec<_> = rows(&db)
        .await
        .into_iter()
        .filter(|r| r.status == "pending")
        .map(|r| r.dedup_key)
        .collect();
    assert_eq!(pending.len(), 2, "{pending:?}");
    stale.stop().await;

    // The new leader sends the due row and, after the takeover delay (not
    // the lease), the one the old leader left claimed.
    let new = outbox(db.clone(), &hook(&url), &metrics, fast());
    let started = std::time::Instant::now();
    let task = new.spawn_as(Some(2), Duration::from_millis(300));
    wait_rows(&db, WAIT, "every row delivered", |r| {
        r.len() == 3 && r.iter().all(|r| r.status == "delivered")
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(receiver.requests().len(), 3);
    new.enqueue(note("new")).await.expect("the leader enqueues");
    wait_requests(&receiver, 4, WAIT).await;
    task.stop().await;
    server.abort();
    backend.close().await;
}
