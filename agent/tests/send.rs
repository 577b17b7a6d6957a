//! The agent against a small real QUIC server (mutual TLS, the real wire
//! format) whose replies each test scripts.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::server::{Script, ack, ack_all, reject, serve};
use common::{Pki, free_udp_addr, wait_until};
use vigil_agent::{Agent, DropReason, Stats};
use vigil_common::RejectCode;

const WAIT: Duration = Duration::from_secs(20);

fn get(counter: &std::sync::atomic::AtomicU64) -> u64 {
    Stats::get(counter)
}

#[tokio::test]
async fn batches_are_signed_decodable_and_delivered_exactly() {
    let pki = Pki::new("agent-a");
    let (addr, log, _server) = serve(&pki, "127.0.0.1:0".parse().expect("addr"), ack_all());
    let mut config = pki.agent_config(vec![addr.to_string()]);
    config.collect.system.enabled = true;
    // The harness's "cache" role would add Redis series labelled role="cache".
    config.collect.redis.enabled = Some(false);
    let agent = Agent::start(config).await.expect("start");
    let stats = agent.stats();
    let boot_id = agent.boot_id();
    wait_until(WAIT, "three acks", || get(&stats.batches_acked) >= 3).await;
    agent
        .shutdown(Duration::from_secs(5))
        .await
        .expect("clean shutdown");

    let batches = log.batches.lock().expect("lock").clone();
    assert_eq!(*log.bad_signatures.lock().expect("lock"), 0);
    assert_eq!(
        *log.peer_ids.lock().expect("lock"),
        vec![Some("agent-a".to_string())]
    );
    let sequences: Vec<u64> = batches.iter().map(|b| b.header.sequence).collect();
    let expected: Vec<u64> = (1..=batches.len() as u64).collect();
    assert_eq!(
        sequences, expected,
        "one attempt per batch, in order, from 1"
    );
    for b in &batches {
        let h = &b.header;
        assert_eq!(h.protocol_version, vigil_common::wire::PROTOCOL_VERSION);
        assert_eq!(h.agent_id, "agent-a");
        assert_eq!(h.boot_id, boot_id);
        assert_eq!(h.host, "test-host");
        assert_eq!(h.roles, vec!["api".to_string(), "cache".to_string()]);
        for s in &b.series {
            s.validate().expect("valid series");
            assert_eq!(s.label("host"), Some("test-host"));
            assert_eq!(s.label("role"), Some("api"));
        }
        let names: Vec<&str> = b.series.iter().map(|s| s.name.as_str()).collect();
        for name in [
            "system_cpu_usage_ratio",
            "vigil_agent_build_info",
            "vigil_agent_collector_up",
        ] {
            assert!(names.contains(&name), "batch {} lacks {name}", h.sequence);
        }
        // The dead-man alert's input: the configured interval (150 ms here).
        let interval = (b.series.iter())
            .find(|s| s.name == "vigil_agent_interval_seconds")
            .map(|s| s.points[0].value);
        assert_eq!(interval, Some(0.15), "batch {}", h.sequence);
        assert!(
            b.metadata
                .iter()
                .any(|m| m.name == "system_memory_used_bytes")
        );
    }
    // Everything collected before shutdown was drained and counted exactly.
    let samples: u64 = batches.iter().map(|b| b.sample_count() as u64).sum();
    assert_eq!(get(&stats.batches_acked), batches.len() as u64);
    assert_eq!(get(&stats.samples_acked), samples);
    assert_eq!(get(&stats.samples_queued), samples);
    assert_eq!(get(&stats.batches_dropped), 0);
    assert_eq!(get(&stats.spool_batches), 0);
    assert_eq!(get(&stats.reconnects), 0);
    wait_until(WAIT, "clean close", || {
        log.closed_cleanly.load(Ordering::SeqCst)
    })
    .await;
}

#[tokio::test]
async fn retryable_reject_resends_the_same_batch_until_acked() {
    let pki = Pki::new("agent-b");
    let script: Script = Arc::new(|b, seen| {
        Some(if b.header.sequence == 1 && seen < 2 {
            reject(b, RejectCode::Unavailable)
        } else {
            ack(b, false)
        })
    });
    let (addr, log, _server) = serve(&pki, "127.0.0.1:0".parse().expect("addr"), script);
    let agent = Agent::start(pki.agent_config(vec![addr.to_string()]))
        .await
        .expect("start");
    let stats = agent.stats();
    wait_until(WAIT, "two acks", || get(&stats.batches_acked) >= 2).await;
    agent
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");

    let sequences = log.sequences();
    assert!(
        sequences.starts_with(&[1, 1, 1, 2]),
        "seq 1 retried twice before seq 2: {sequences:?}"
    );
    assert_eq!(get(&stats.retries), 2);
    assert_eq!(get(&stats.batches_dropped), 0);
    assert_eq!(
        get(&stats.reconnects),
        0,
        "a reject does not cost the connection"
    );
    assert_eq!(get(&stats.samples_acked), get(&stats.samples_queued));
}

#[tokio::test]
async fn non_retryable_reject_drops_and_counts_the_batch() {
    let pki = Pki::new("agent-c");
    let script: Script = Arc::new(|b, _| {
        Some(match b.header.sequence {
            1 => reject(b, RejectCode::InvalidBatch),
            2 => ack(b, true),
            _ => ack(b, false),
        })
    });
    let (addr, log, _server) = serve(&pki, "127.0.0.1:0".parse().expect("addr"), script);
    let agent = Agent::start(pki.agent_config(vec![addr.to_string()]))
        .await
        .expect("start");
    let stats = agent.stats();
    wait_until(WAIT, "three acks", || get(&stats.batches_acked) >= 3).await;
    agent
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");

    let batches = log.batches.lock().expect("lock").clone();
    let sequences: Vec<u64> = batches.iter().map(|b| b.header.sequence).collect();
    assert_eq!(
        sequences.iter().filter(|&&s| s == 1).count(),
        1,
        "never resent"
    );
    let samples_of = |seq: u64| {
        batches
            .iter()
            .find(|b| b.header.sequence == seq)
            .map(|b| b.sample_count() as u64)
    };
    let first = samples_of(1).expect("seq 1");
    let second = samples_of(2).expect("seq 2");
    assert_eq!(get(&stats.batches_dropped), 1);
    assert_eq!(stats.dropped(DropReason::Rejected), (1, first));
    // The duplicate ack removes seq 2 but adds no samples.
    assert_eq!(get(&stats.batches_duplicate), 1);
    assert_eq!(get(&stats.samples_duplicate), second);
    assert_eq!(
        get(&stats.samples_acked),
        get(&stats.samples_queued) - first - second
    );
    assert_eq!(get(&stats.spool_batches), 0);
}

#[tokio::test]
async fn lost_ack_means_resend_on_a_new_connection() {
    let pki = Pki::new("agent-g");
    // The first attempt of seq 2 is "committed" but the connection dies before
    // the ack; the resend is acked as a duplicate, as the aggregator would.
    let script: Script = Arc::new(|b, seen| match (b.header.sequence, seen) {
        (2, 0) => None,
        (2, _) => Some(ack(b, true)),
        _ => Some(ack(b, false)),
    });
    let (addr, log, _server) = serve(&pki, "127.0.0.1:0".parse().expect("addr"), script);
    let agent = Agent::start(pki.agent_config(vec![addr.to_string()]))
        .await
        .expect("start");
    let stats = agent.stats();
    wait_until(WAIT, "three acks", || get(&stats.batches_acked) >= 3).await;
    agent
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");

    let batches = log.batches.lock().expect("lock").clone();
    let sequences: Vec<u64> = batches.iter().map(|b| b.header.sequence).collect();
    assert!(sequences.starts_with(&[1, 2, 2, 3]), "{sequences:?}");
    assert_eq!(
        log.peer_ids.lock().expect("lock").len(),
        2,
        "one reconnection"
    );
    assert_eq!(get(&stats.send_errors), 1);
    assert_eq!(get(&stats.reconnects), 1);
    let second = batches[1].sample_count() as u64;
    assert_eq!(get(&stats.samples_duplicate), second);
    assert_eq!(
        get(&stats.samples_acked) + second,
        get(&stats.samples_queued),
        "nothing lost, nothing counted twice"
    );
}

#[tokio::test]
async fn server_down_at_start_gets_every_batch_once_it_is_up() {
    let pki = Pki::new("agent-d");
    let addr = free_udp_addr();
    let mut config = pki.agent_config(vec![addr.to_string()]);
    config.aggregator.connect_timeout = Duration::from_millis(200);
    let agent = Agent::start(config).await.expect("start");
    let stats = agent.stats();
    wait_until(WAIT, "batches piling up while the server is down", || {
        get(&stats.connect_errors) >= 2 && get(&stats.batches_queued) >= 3
    })
    .await;
    assert_eq!(get(&stats.batches_acked), 0);

    let (_, log, _server) = serve(&pki, addr, ack_all());
    wait_until(WAIT, "backlog delivered", || {
        get(&stats.batches_acked) >= 5 && get(&stats.spool_batches) == 0
    })
    .await;
    agent
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");

    let mut sequences = log.sequences();
    sequences.sort_unstable();
    sequences.dedup();
    let queued = get(&stats.batches_queued);
    assert_eq!(sequences, (1..=queued).collect::<Vec<_>>(), "nothing lost");
    assert!(get(&stats.reconnects) >= 1);
    assert_eq!(get(&stats.batches_dropped), 0);
    assert_eq!(get(&stats.samples_acked), get(&stats.samples_queued));
}

#[tokio::test]
async fn fails_over_to_the_next_endpoint() {
    let pki = Pki::new("agent-e");
    let dead = free_udp_addr();
    let (addr, log, _server) = serve(&pki, "127.0.0.1:0".parse().expect("addr"), ack_all());
    let mut config = pki.agent_config(vec![dead.to_string(), addr.to_string()]);
    config.aggregator.connect_timeout = Duration::from_millis(200);
    let agent = Agent::start(config).await.expect("start");
    let stats = agent.stats();
    wait_until(WAIT, "acks via the second endpoint", || {
        get(&stats.batches_acked) >= 2
    })
    .await;
    agent
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");
    assert!(log.sequences().starts_with(&[1, 2]));
    assert_eq!(
        get(&stats.connect_errors),
        0,
        "the round succeeded on endpoint two"
    );
}

#[tokio::test]
async fn shutdown_gives_up_after_the_drain_timeout() {
    let pki = Pki::new("agent-f");
    let mut config = pki.agent_config(vec![free_udp_addr().to_string()]);
    config.aggregator.connect_timeout = Duration::from_millis(100);
    let agent = Agent::start(config).await.expect("start");
    let stats = agent.stats();
    wait_until(WAIT, "a queued batch", || get(&stats.batches_queued) >= 1).await;
    let started = std::time::Instant::now();
    let err = agent
        .shutdown(Duration::from_millis(300))
        .await
        .expect_err("cannot drain without a server");
    assert!(started.elapsed() < Duration::from_secs(3));
    match err {
        vigil_agent::AgentError::DrainTimeout { pending, .. } => assert!(pending >= 1),
        other => panic!("unexpected {other}"),
    }
}

/// After an outage the backlog goes out oldest first at the replay rate, while
/// batches collected meanwhile overtake it (the fresh lane).
#[tokio::test]
async fn backlog_is_replayed_in_order_at_its_rate_while_fresh_batches_overtake_it() {
    let pki = Pki::new("agent-r");
    let addr = free_udp_addr();
    let mut config = pki.agent_config(vec![addr.to_string()]);
    config.aggregator.connect_timeout = Duration::from_millis(200);
    config.spool.replay_batches_per_second = 2.0;
    let agent = Agent::start(config).await.expect("start");
    let stats = agent.stats();
    let fresh = vigil_agent::spool::FRESH_BATCHES as u64;
    wait_until(WAIT, "a backlog behind a full fresh lane", || {
        get(&stats.batches_queued) >= fresh + 6
    })
    .await;
    let (_, log, _server) = serve(&pki, addr, ack_all());
    let up = std::time::Instant::now();
    wait_until(WAIT, "everything delivered", || {
        get(&stats.batches_acked) >= fresh + 12 && get(&stats.spool_batches) == 0
    })
    .await;
    agent
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");

    let seqs = log.sequences();
    let times = log.times.lock().expect("lock").clone();
    // The first batch sent is the oldest of the fresh lane at reconnection.
    let first_fresh = seqs[0];
    assert!(first_fresh > 1, "fresh data first: {seqs:?}");
    let backlog: Vec<(usize, u64)> = (seqs.iter().copied().enumerate())
        .filter(|(_, s)| *s < first_fresh)
        .collect();
    assert_eq!(
        backlog.iter().map(|b| b.1).collect::<Vec<_>>(),
        (1..first_fresh).collect::<Vec<_>>(),
        "backlog complete, oldest first, once: {seqs:?}"
    );
    // Batches collected after reconnection went out before the backlog was done.
    let last_backlog = backlog.last().expect("a backlog").0;
    let newest_at_reconnect = first_fresh + fresh - 1;
    assert!(
        seqs[..last_backlog]
            .iter()
            .any(|&s| s > newest_at_reconnect),
        "no fresh batch overtook the backlog: {seqs:?}"
    );
    // Paced: a burst of two (one second's worth), then one every 500 ms.
    let n = backlog.len() as u32;
    let replay = times[last_backlog].duration_since(up);
    let floor = Duration::from_millis(500) * n.saturating_sub(2);
    assert!(replay >= floor, "{n} backlog batches in {replay:?}");
    let mut unique = seqs.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), seqs.len(), "no batch sent twice: {seqs:?}");
}
