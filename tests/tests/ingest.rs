//! Bad input on the real QUIC ingest path: each case gets a typed rejection,
//! is counted, stores nothing, and the aggregator goes on serving a good agent.

use vigil_common::frame::encode_frame;
use vigil_common::{RejectCode, ServerMessage, SignedBatch, sign};
use vigil_tests::raw::{batch, signed_frame};
use vigil_tests::{Db, Pki, TestAggregator};

fn key(agg: &TestAggregator, id: &str) -> sign::SigningKey {
    sign::load_signing_key(&agg.pki.agent_paths(id).signing_key).expect("signing key")
}

fn rejected(reply: ServerMessage) -> RejectCode {
    match reply {
        ServerMessage::Reject(r) => r.code,
        ServerMessage::Ack(a) => panic!("expected a rejection, got {a:?}"),
    }
}

/// A good agent still gets its batch stored: the aggregator is still serving.
async fn still_serving(agg: &TestAggregator, seq: u64) {
    let good = agg.raw("good").await;
    let before = agg.samples().await;
    match good
        .send_batch(&batch("good", seq, 3), &key(agg, "good"))
        .await
        .expect("reply")
    {
        ServerMessage::Ack(ack) => assert_eq!((ack.duplicate, ack.samples_stored), (false, 3)),
        other => panic!("good batch not acked: {other:?}"),
    }
    assert_eq!(agg.samples().await, before + 3);
}

async fn setup() -> TestAggregator {
    let agg = TestAggregator::start(Db::Postgres).await;
    agg.add_agent("good").await;
    agg.add_agent("a1").await;
    agg
}

#[tokio::test]
async fn oversized_frame_is_refused_from_its_prefix() {
    let agg = TestAggregator::start_with(Db::Postgres, "max_frame_bytes = 4096").await;
    agg.add_agent("good").await;
    agg.add_agent("a1").await;
    let a1 = agg.raw("a1").await;
    let big = signed_frame(&batch("a1", 1, 400), &key(&agg, "a1"));
    assert!(big.len() > 4096);
    assert_eq!(
        rejected(a1.send_raw(&big).await.expect("reply")),
        RejectCode::FrameTooLarge
    );
    // A prefix claiming 4 GiB with no body at all.
    assert_eq!(
        rejected(a1.send_raw(&u32::MAX.to_be_bytes()).await.expect("reply")),
        RejectCode::FrameTooLarge
    );
    let m = &agg.running().state.metrics;
    assert_eq!(m.rejected(RejectCode::FrameTooLarge), 2);
    assert_eq!(agg.samples().await, 0);
    // The same connection still works.
    let small = batch("a1", 2, 2);
    assert!(matches!(
        a1.send_batch(&small, &key(&agg, "a1"))
            .await
            .expect("reply"),
        ServerMessage::Ack(_)
    ));
    still_serving(&agg, 1).await;
    agg.stop().await;
}

#[tokio::test]
async fn garbage_and_truncated_frames_are_malformed() {
    let agg = setup().await;
    let a1 = agg.raw("a1").await;
    let garbage = encode_frame(b"\xff\xfe definitely not bincode \x00\x01");
    assert_eq!(
        rejected(a1.send_raw(&garbage).await.expect("reply")),
        RejectCode::Malformed
    );
    // A prefix promising more bytes than are sent before FIN.
    let mut truncated = signed_frame(&batch("a1", 1, 3), &key(&agg, "a1"));
    truncated.truncate(truncated.len() / 2);
    assert_eq!(
        rejected(a1.send_raw(&truncated).await.expect("reply")),
        RejectCode::Malformed
    );
    // A valid envelope whose batch bytes are garbage, correctly signed.
    let k = key(&agg, "a1");
    // Version 1, then bytes that are not a batch.
    let junk = b"\x01\xff\xffjunk".to_vec();
    let inner = SignedBatch {
        signature: sign::sign(&k, &junk),
        batch: junk,
    };
    let frame = encode_frame(&inner.encode().expect("encode"));
    assert_eq!(
        rejected(a1.send_raw(&frame).await.expect("reply")),
        RejectCode::Malformed
    );
    assert_eq!(
        agg.running().state.metrics.rejected(RejectCode::Malformed),
        3
    );
    assert_eq!(agg.samples().await, 0);
    still_serving(&agg, 1).await;
    agg.stop().await;
}

#[tokio::test]
async fn wrong_signing_key_is_refused() {
    let agg = setup().await;
    let a1 = agg.raw("a1").await;
    let stranger = sign::generate_signing_key().expect("key");
    assert_eq!(
        rejected(
            a1.send_batch(&batch("a1", 1, 3), &stranger)
                .await
                .expect("reply")
        ),
        RejectCode::BadSignature
    );
    // Another registered agent's key is just as wrong.
    assert_eq!(
        rejected(
            a1.send_batch(&batch("a1", 1, 3), &key(&agg, "good"))
                .await
                .expect("reply")
        ),
        RejectCode::BadSignature
    );
    assert_eq!(
        agg.running()
            .state
            .metrics
            .rejected(RejectCode::BadSignature),
        2
    );
    assert_eq!(agg.samples().await, 0);
    still_serving(&agg, 1).await;
    agg.stop().await;
}

#[tokio::test]
async fn agent_id_must_match_the_certificate() {
    let agg = setup().await;
    let a1 = agg.raw("a1").await;
    // Signed with a1's own key, but claiming to be "good".
    let spoof = batch("good", 1, 3);
    assert_eq!(
        rejected(
            a1.send_batch(&spoof, &key(&agg, "a1"))
                .await
                .expect("reply")
        ),
        RejectCode::AgentMismatch
    );
    assert_eq!(
        agg.running()
            .state
            .metrics
            .rejected(RejectCode::AgentMismatch),
        1
    );
    assert_eq!(agg.samples().await, 0);
    still_serving(&agg, 1).await;
    agg.stop().await;
}

#[tokio::test]
async fn replayed_batch_is_acked_and_stored_once() {
    let agg = setup().await;
    let a1 = agg.raw("a1").await;
    let frame = signed_frame(&batch("a1", 7, 5), &key(&agg, "a1"));
    let first = a1.send_raw(&frame).await.expect("reply");
    assert!(
        matches!(first, ServerMessage::Ack(ref a) if !a.duplicate && a.samples_stored == 5),
        "{first:?}"
    );
    for _ in 0..3 {
        match a1.send_raw(&frame).await.expect("reply") {
            ServerMessage::Ack(a) => {
                assert_eq!((a.duplicate, a.samples_stored, a.sequence), (true, 0, 7))
            }
            other => panic!("replay not acked: {other:?}"),
        }
    }
    // Even over a new connection.
    let again = agg.raw("a1").await;
    assert!(
        matches!(again.send_raw(&frame).await.expect("reply"), ServerMessage::Ack(a) if a.duplicate)
    );
    let m = &agg.running().state.metrics;
    assert_eq!(m.batches_duplicate.get(), 4);
    assert_eq!(m.batches_committed.get(), 1);
    assert_eq!(agg.samples().await, 5);
    still_serving(&agg, 1).await;
    agg.stop().await;
}

#[tokio::test]
async fn certificate_from_another_ca_fails_the_handshake() {
    let agg = setup().await;
    let rogue = Pki::new();
    rogue.agent("a1");
    let p = rogue.agent_paths("a1");
    // Trusts the real CA, but presents a certificate from the rogue one.
    let result = async {
        let raw = vigil_tests::raw::RawAgent::connect_with(
            &agg.pki.path().join("ca.crt"),
            &p.cert,
            &p.key,
            "a1",
            agg.quic,
        )
        .await?;
        raw.send_batch(&batch("a1", 1, 3), &key(&agg, "a1")).await
    }
    .await;
    assert!(result.is_err(), "rogue certificate got through: {result:?}");
    let m = &agg.running().state.metrics;
    // The server counts the failure once it has processed the handshake.
    for _ in 0..50 {
        if m.handshake_failures.get() > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(m.handshake_failures.get(), 1);
    assert_eq!(m.batches_received.get(), 0);
    assert_eq!(agg.samples().await, 0);
    still_serving(&agg, 1).await;
    agg.stop().await;
}

#[tokio::test]
async fn unregistered_and_revoked_agents_are_refused() {
    let agg = setup().await;
    agg.pki.agent("stranger"); // a valid certificate, but no registered key
    let stranger = agg.raw("stranger").await;
    let k = key(&agg, "stranger");
    assert_eq!(
        rejected(
            stranger
                .send_batch(&batch("stranger", 1, 3), &k)
                .await
                .expect("reply")
        ),
        RejectCode::UnknownAgent
    );

    // Registering makes it work at once (unknown agents are not cached).
    let public = vigil_certs::read_public_key(agg.pki.path(), "stranger").expect("pub");
    let vk = sign::public_key_from_hex(&public).expect("hex");
    agg.running()
        .state
        .store
        .register_agent("stranger", vk.as_bytes())
        .await
        .expect("register");
    assert!(matches!(
        stranger
            .send_batch(&batch("stranger", 1, 3), &k)
            .await
            .expect("reply"),
        ServerMessage::Ack(_)
    ));
    let stored = agg.samples().await;

    // Revoking (a database write, as the CLI does): the revocation watcher
    // closes the connection with the revoked code within seconds, well
    // inside the key cache's lifetime, and a new connection is refused.
    agg.running()
        .state
        .store
        .revoke_agent("stranger")
        .await
        .expect("revoke");
    let revoked = quinn::VarInt::from_u32(vigil_common::wire::close::REVOKED);
    let closed = tokio::time::timeout(
        vigil_aggregator::ingest::agents::TTL,
        stranger.conn.closed(),
    )
    .await
    .expect("closed within the key cache's lifetime");
    assert!(
        matches!(&closed, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == revoked),
        "{closed}"
    );
    assert!(
        stranger
            .send_batch(&batch("stranger", 2, 3), &k)
            .await
            .is_err()
    );
    let again = agg.raw("stranger").await;
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), again.conn.closed())
        .await
        .expect("refused at once");
    assert!(
        matches!(&closed, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == revoked),
        "{closed}"
    );

    let m = &agg.running().state.metrics;
    assert_eq!(m.rejected(RejectCode::UnknownAgent), 1);
    assert_eq!(m.connections_revoked.get(), 2, "closed once, refused once");
    assert_eq!(agg.samples().await, stored);
    still_serving(&agg, 1).await;
    agg.stop().await;
}

#[tokio::test]
async fn unsupported_version_and_invalid_content_are_refused() {
    let agg = setup().await;
    let a1 = agg.raw("a1").await;
    let k = key(&agg, "a1");
    let mut v9 = batch("a1", 1, 3);
    v9.header.protocol_version = 9;
    assert_eq!(
        rejected(a1.send_batch(&v9, &k).await.expect("reply")),
        RejectCode::UnsupportedVersion
    );
    let mut bad = batch("a1", 2, 3);
    bad.series[1].name = "not a metric".into();
    assert_eq!(
        rejected(a1.send_batch(&bad, &k).await.expect("reply")),
        RejectCode::InvalidBatch
    );
    assert_eq!(
        agg.samples().await,
        0,
        "one bad series rejects the whole batch"
    );
    still_serving(&agg, 1).await;
    agg.stop().await;
}

#[tokio::test]
async fn out_of_bounds_timestamps_are_dropped_and_counted() {
    let agg = setup().await;
    let a1 = agg.raw("a1").await;
    let mut b = batch("a1", 1, 4);
    b.series[0].points[0].timestamp_ms -= 400 * 86_400_000; // older than max_sample_age
    b.series[1].points[0].timestamp_ms += 3_600_000; // an hour in the future
    match a1.send_batch(&b, &key(&agg, "a1")).await.expect("reply") {
        ServerMessage::Ack(a) => assert_eq!((a.samples_stored, a.samples_rejected), (2, 2)),
        other => panic!("{other:?}"),
    }
    let m = &agg.running().state.metrics;
    use vigil_aggregator::metrics::SampleDrop;
    assert_eq!(m.samples_dropped(SampleDrop::TooOld), 1);
    assert_eq!(m.samples_dropped(SampleDrop::TooNew), 1);
    assert_eq!(agg.samples().await, 2);
    let text = reqwest::get(agg.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    assert!(
        text.contains("vigil_aggregator_samples_rejected_total{reason=\"too_old\"} 1"),
        "{text}"
    );
    agg.stop().await;
}

/// The QUIC socket gets the receive buffer `quic.receive_buffer_bytes`
/// asks for (4 MiB by default) as far as the kernel's cap allows, and
/// /metrics shows what it got; a batch's time to its reply is observed.
#[tokio::test]
async fn quic_receive_buffer_is_raised_and_shown() {
    let agg = setup().await;
    let cap: i64 = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .expect("read net.core.rmem_max")
        .trim()
        .parse()
        .expect("net.core.rmem_max is a number");
    let want = cap.min(4 << 20);
    let m = &agg.running().state.metrics;
    assert_eq!(m.quic_receive_buffer.get(), want);
    still_serving(&agg, 1).await;
    let mut text = String::new();
    for _ in 0..40 {
        text = reqwest::get(agg.url("/metrics"))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("body");
        if text.contains("vigil_aggregator_batch_duration_seconds_count 1") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        text.contains(&format!(
            "vigil_aggregator_quic_receive_buffer_bytes {want}"
        )),
        "{text}"
    );
    assert!(
        text.contains("vigil_aggregator_batch_duration_seconds_count 1"),
        "the batch's time to its reply is observed"
    );
    agg.stop().await;
}
