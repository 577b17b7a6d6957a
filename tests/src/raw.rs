//! A protocol client that sends whatever bytes a test wants, so tests can
//! play a broken or hostile agent against the real QUIC server.

use std::net::SocketAddr;
use std::path::Path;

use vigil_common::frame::{self, encode_frame};
use vigil_common::tls::{self, TlsMaterial};
use vigil_common::wire::{BatchHeader, PROTOCOL_VERSION};
use vigil_common::{Batch, Label, Point, Series, ServerMessage, SignedBatch, sign};

/// A QUIC connection with some agent's certificate.
pub struct RawAgent {
    pub id: String,
    pub conn: quinn::Connection,
    _endpoint: quinn::Endpoint,
}

impl RawAgent {
    /// Connects with `<dir>/<id>.crt` and key, trusting `<dir>/ca.crt`.
    pub async fn connect(dir: &Path, id: &str, addr: SocketAddr) -> Result<RawAgent, String> {
        let p = vigil_certs::AgentPaths::new(dir, id);
        Self::connect_with(&dir.join("ca.crt"), &p.cert, &p.key, id, addr).await
    }

    pub async fn connect_with(
        ca: &Path,
        cert: &Path,
        key: &Path,
        id: &str,
        addr: SocketAddr,
    ) -> Result<RawAgent, String> {
        let material = TlsMaterial::load(ca, cert, key).map_err(|e| e.to_string())?;
        let config = tls::quic_client_config(&material).map_err(|e| e.to_string())?;
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().map_err(|_| "addr")?)
            .map_err(|e| e.to_string())?;
        endpoint.set_default_client_config(config);
        let conn = endpoint
            .connect(addr, "localhost")
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        Ok(RawAgent {
            id: id.to_string(),
            conn,
            _endpoint: endpoint,
        })
    }

    /// Sends `bytes` as-is on a new stream and reads the reply frame.
    pub async fn send_raw(&self, bytes: &[u8]) -> Result<ServerMessage, String> {
        let (mut send, mut recv) = self.conn.open_bi().await.map_err(|e| e.to_string())?;
        // The server may stop reading early (oversized frames); that is fine.
        let _ = send.write_all(bytes).await;
        let _ = send.finish();
        let reply = frame::read_frame(&mut recv, 64 * 1024)
            .await
            .map_err(|e| e.to_string())?;
        ServerMessage::decode(&reply).map_err(|e| e.to_string())
    }

    /// Frames, signs with `key` and sends `batch`.
    pub async fn send_batch(
        &self,
        batch: &Batch,
        key: &sign::SigningKey,
    ) -> Result<ServerMessage, String> {
        self.send_raw(&signed_frame(batch, key)).await
    }
}

/// The framed, signed bytes of `batch`.
pub fn signed_frame(batch: &Batch, key: &sign::SigningKey) -> Vec<u8> {
    let bytes = batch.encode().expect("encode");
    let signed = SignedBatch {
        signature: sign::sign(key, &bytes),
        batch: bytes,
    };
    encode_frame(&signed.encode().expect("encode"))
}

/// A batch of `n` samples (one series per sample) from `agent`, timestamped now.
pub fn batch(agent: &str, sequence: u64, n: usize) -> Batch {
    let now = vigil_common::now_ms();
    Batch {
        header: BatchHeader {
            protocol_version: PROTOCOL_VERSION,
            agent_id: agent.into(),
            boot_id: [3; 16],
            sequence,
            created_at_ms: now,
            host: format!("{agent}.example"),
            roles: vec!["api".into()],
        },
        series: (0..n)
            .map(|i| {
                Series::new(
                    "test_metric",
                    vec![
                        Label::new("host", format!("{agent}.example")),
                        Label::new("i", i.to_string()),
                        Label::new("role", "api"),
                    ],
                    vec![Point {
                        timestamp_ms: now,
                        value: i as f64,
                    }],
                )
            })
            .collect(),
        metadata: vec![],
    }
}
