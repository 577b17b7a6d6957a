//! The agent against a small real QUIC server (mutual TLS, the real wire
//! format) whose replies each test scripts.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Pki, wait_until};
use vigil_agent::{Agent, DropReason, Stats};
use vigil_common::frame::{MAX_FRAME_BYTES, read_frame, write_frame};
use vigil_common::sign::{self, VerifyingKey};
use vigil_common::tls::{self, TlsMaterial};
use vigil_common::{Ack, Batch, Reject, RejectCode, ServerMessage, SignedBatch};

const WAIT: Duration = Duration::from_secs(20);

/// Chooses the reply to a batch, given how often its sequence was seen before;
/// `None` closes the connection instead of replying (a lost ack).
type Script = Arc<dyn Fn(&Batch, usize) -> Option<ServerMessage> + Send + Sync>;

/// What the server saw.
#[derive(Default)]
struct Log {
    batches: Mutex<Vec<Batch>>,
    bad_signatures: Mutex<usize>,
    peer_ids: Mutex<Vec<Option<String>>>,
    closed_cleanly: AtomicBool,
    /// Attempts per sequence, across connections.
    seen: Mutex<HashMap<u64, usize>>,
}

impl Log {
    fn sequences(&self) -> Vec<u64> {
        let batches = self.batches.lock().expect("lock");
        batches.iter().map(|b| b.header.sequence).collect()
    }
}

fn ack(batch: &Batch, duplicate: bool) -> ServerMessage {
    ServerMessage::Ack(Ack {
        sequence: batch.header.sequence,
        duplicate,
        samples_stored: if duplicate {
            0
        } else {
            batch.sample_count() as u64
        },
        samples_rejected: 0,
    })
}

fn reject(batch: &Batch, code: RejectCode) -> ServerMessage {
    ServerMessage::Reject(Reject {
        sequence: Some(batch.header.sequence),
        code,
        message: format!("test says {code}"),
    })
}

fn ack_all() -> Script {
    Arc::new(|b, _| Some(ack(b, false)))
}

fn server_config(pki: &Pki) -> quinn::ServerConfig {
    let material = TlsMaterial::load(
        &pki.path("ca.crt"),
        &pki.path("server.crt"),
        &pki.path("server.key"),
    )
    .expect("server material");
    tls::quic_server_config(&material, 8).expect("server config")
}

fn public_key(pki: &Pki) -> VerifyingKey {
    let text = vigil_certs::read_public_key(pki.dir(), &pki.agent_id).expect("public key");
    sign::public_key_from_hex(&text).expect("hex")
}

/// Starts a server on `addr` (port 0 for any); returns its address and log.
fn serve(pki: &Pki, addr: SocketAddr, script: Script) -> (SocketAddr, Arc<Log>, quinn::Endpoint) {
    let endpoint = quinn::Endpoint::server(server_config(pki), addr).expect("bind server");
    let local = endpoint.local_addr().expect("local addr");
    let log = Arc::new(Log::default());
    let key = public_key(pki);
    tokio::spawn({
        let (endpoint, log) = (endpoint.clone(), log.clone());
        async move {
            while let Some(incoming) = endpoint.accept().await {
                let (log, script) = (log.clone(), script.clone());
                tokio::spawn(async move {
                    let Ok(conn) = incoming.await else { return };
                    handle(conn, key, log, script).await;
                });
            }
        }
    });
    (local, log, endpoint)
}

async fn handle(conn: quinn::Connection, key: VerifyingKey, log: Arc<Log>, script: Script) {
    log.peer_ids
        .lock()
        .expect("lock")
        .push(tls::peer_agent_id(&conn));
    loop {
        let (mut send, mut recv) = match conn.accept_bi().await {
            Ok(streams) => streams,
            Err(quinn::ConnectionError::ApplicationClosed(close)) => {
                if close.error_code == quinn::VarInt::from_u32(0) {
                    log.closed_cleanly.store(true, Ordering::SeqCst);
                }
                return;
            }
            Err(_) => return,
        };
        let body = read_frame(&mut recv, MAX_FRAME_BYTES).await.expect("frame");
        let signed = SignedBatch::decode(&body).expect("signed batch decodes");
        if !sign::verify(&key, &signed.batch, &signed.signature) {
            *log.bad_signatures.lock().expect("lock") += 1;
        }
        let batch = Batch::decode(&signed.batch).expect("batch decodes");
        let attempts = {
            let mut seen = log.seen.lock().expect("lock");
            let count = seen.entry(batch.header.sequence).or_default();
            *count += 1;
            *count - 1
        };
        let reply = script(&batch, attempts);
        log.batches.lock().expect("lock").push(batch);
        let Some(reply) = reply else {
            conn.close(7u32.into(), b"test drops the connection");
            return;
        };
        let bytes = reply.encode().expect("encode reply");
        write_frame(&mut send, &bytes).await.expect("write reply");
        let _ = send.finish();
    }
}

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
    assert_eq!(get(&stats.queue_len), 0);
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
    assert_eq!(get(&stats.queue_len), 0);
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

/// A port nothing listens on (bound, read back, released).
fn free_udp_addr() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("addr")
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
        get(&stats.batches_acked) >= 5 && get(&stats.queue_len) == 0
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
