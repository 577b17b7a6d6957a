//! A small real QUIC server for the integration tests (mutual TLS, the real
//! wire format) whose replies each test scripts, and which records what it saw.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use vigil_common::frame::{MAX_FRAME_BYTES, read_frame, write_frame};
use vigil_common::sign::{self, VerifyingKey};
use vigil_common::tls::{self, TlsMaterial};
use vigil_common::{Ack, Batch, Reject, RejectCode, ServerMessage, SignedBatch};

use super::Pki;

/// Chooses the reply to a batch, given how often its sequence was seen before;
/// `None` closes the connection instead of replying (a lost ack).
pub type Script = Arc<dyn Fn(&Batch, usize) -> Option<ServerMessage> + Send + Sync>;

/// What the server saw.
#[derive(Default)]
pub struct Log {
    pub batches: Mutex<Vec<Batch>>,
    pub bad_signatures: Mutex<usize>,
    pub peer_ids: Mutex<Vec<Option<String>>>,
    pub closed_cleanly: AtomicBool,
    /// Attempts per sequence, across connections.
    pub seen: Mutex<HashMap<u64, usize>>,
    /// The frame bodies exactly as received (encoded `SignedBatch`es).
    pub payloads: Mutex<Vec<Vec<u8>>>,
    /// When each batch arrived.
    pub times: Mutex<Vec<Instant>>,
}

impl Log {
    pub fn sequences(&self) -> Vec<u64> {
        let batches = self.batches.lock().expect("lock");
        batches.iter().map(|b| b.header.sequence).collect()
    }
}

pub fn ack(batch: &Batch, duplicate: bool) -> ServerMessage {
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

pub fn reject(batch: &Batch, code: RejectCode) -> ServerMessage {
    ServerMessage::Reject(Reject {
        sequence: Some(batch.header.sequence),
        code,
        message: format!("test says {code}"),
    })
}

pub fn ack_all() -> Script {
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
pub fn serve(
    pki: &Pki,
    addr: SocketAddr,
    script: Script,
) -> (SocketAddr, Arc<Log>, quinn::Endpoint) {
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
        log.payloads.lock().expect("lock").push(body);
        log.times.lock().expect("lock").push(Instant::now());
        let Some(reply) = reply else {
            conn.close(7u32.into(), b"test drops the connection");
            return;
        };
        let bytes = reply.encode().expect("encode reply");
        write_frame(&mut send, &bytes).await.expect("write reply");
        let _ = send.finish();
    }
}
