//! Enrollment and rotation connections (ALPN `vigil-enroll/1`, protocol in
//! `vigil_common::enroll`): one request, one reply, then the agent closes.
//!
//! Bounds: at most [`MAX_CONCURRENT`] enrollment connections are served at
//! once (more are closed with `close::BUSY`); a request frame is at most
//! `MAX_ENROLL_FRAME` bytes and must arrive within [`REQUEST_TIMEOUT`].
//!
//! Every outcome is counted in `vigil_aggregator_enrollments_total{reason}`
//! and logged; [`Enroller::handle`] is the one place an enrollment or
//! rotation is decided.

pub mod config;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use tracing::{info, warn};
use vigil_common::enroll::{
    EnrollReply, EnrollRequest, MAX_ENROLL_FRAME, Refusal, rotation_message,
};
use vigil_common::frame::{read_frame, write_frame};
use vigil_common::sign::{self, VerifyingKey};
use vigil_common::wire::close;
use vigil_common::{now_ms, tls};

use super::agents::{AgentKeys, AgentStatus};
use crate::audit::{self, Action, Actor, Event};
use crate::auth;
use crate::metrics::{Metrics, Reason};
use crate::store::{Store, enroll as db};
use config::EnrollConfig;

/// Enrollment connections served at once.
pub const MAX_CONCURRENT: usize = 16;
/// Time allowed for the request to arrive.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Time the reply is given to reach the agent before the connection is closed.
const REPLY_LINGER: Duration = Duration::from_secs(5);
/// Longest refusal message kept in an audit record, in characters.
const MAX_AUDIT_MESSAGE: usize = 512;

/// Serves enrollment and rotation (only with `[enroll]`).
pub struct Enroller {
    ca: Arc<vigil_certs::Ca>,
    config: EnrollConfig,
    store: Arc<dyn Store>,
    store_ready: Arc<AtomicBool>,
    keys: Arc<AgentKeys>,
    metrics: Arc<Metrics>,
    slots: Semaphore,
}

/// What was decided, for the log, the counter, the audit log and the reply.
struct Decided {
    /// `enrolled`, `re-enrolled` or `rotated` (the counter's reason).
    what: &'static str,
    reply: EnrollReply,
    /// What approved it: the enrollment token, or the agent's own keys.
    by: Actor,
    details: serde_json::Value,
}

/// What happened, for the log, the counter and the reply.
type Outcome = Result<Decided, (Refusal, String)>;

impl Enroller {
    pub fn new(
        ca: Arc<vigil_certs::Ca>,
        config: EnrollConfig,
        store: Arc<dyn Store>,
        store_ready: Arc<AtomicBool>,
        keys: Arc<AgentKeys>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Enroller {
            ca,
            config,
            store,
            store_ready,
            keys,
            metrics,
            slots: Semaphore::new(MAX_CONCURRENT),
        }
    }

    /// Serves one enrollment connection: one request, one reply.
    pub async fn serve(&self, conn: quinn::Connection) {
        let Ok(_slot) = self.slots.try_acquire() else {
            self.count("busy");
            conn.close(close::BUSY.into(), b"too many enrollments at once; retry");
            return;
        };
        let exchange = async {
            let (mut send, mut recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
            let frame = read_frame(&mut recv, MAX_ENROLL_FRAME)
                .await
                .map_err(|e| e.to_string())?;
            let reply = self.handle(&conn, &frame).await;
            let bytes = reply.encode().map_err(|e| e.to_string())?;
            write_frame(&mut send, &bytes)
                .await
                .map_err(|e| e.to_string())?;
            send.finish().map_err(|e| e.to_string())
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok(())) => {
                // The agent closes once it has read the reply.
                let _ = tokio::time::timeout(REPLY_LINGER, conn.closed()).await;
            }
            Ok(Err(e)) => warn!(error = %e, "enrollment exchange failed"),
            Err(_) => warn!("no enrollment request within {REQUEST_TIMEOUT:?}"),
        }
        conn.close(close::SHUTDOWN.into(), b"done");
    }

    fn count(&self, what: &str) {
        self.metrics
            .enrollments
            .get_or_create(&Reason::new(what))
            .inc();
    }

    /// Decides one request. Every enrollment, re-enrollment, rotation and
    /// refusal is decided, logged, counted and audited here (once each).
    pub async fn handle(&self, conn: &quinn::Connection, frame: &[u8]) -> EnrollReply {
        let remote = conn.remote_address();
        let source = Some(remote.ip().to_string());
        // Who asked, for a refusal's audit record: the agent's certificate
        // (rotation), else the id the request claimed.
        let decoded = EnrollRequest::decode(frame);
        let (asker, target, request) = match &decoded {
            Ok(EnrollRequest::Enroll {
                agent_id, hostname, ..
            }) => (
                Actor::anonymous(""),
                agent_id.clone().unwrap_or_else(|| hostname.clone()),
                "enroll",
            ),
            Ok(EnrollRequest::Rotate { .. }) => {
                let id = tls::peer_agent_id(conn).unwrap_or_default();
                (Actor::agent(&id), id, "rotate")
            }
            Err(_) => (Actor::anonymous(""), String::new(), "undecodable"),
        };
        let outcome = match decoded {
            Err(e) => Err((
                Refusal::BadRequest,
                format!("cannot decode the request: {e}"),
            )),
            Ok(_) if !self.store_ready.load(Ordering::Acquire) => Err((
                Refusal::Unavailable,
                "the aggregator's database is not ready; retry shortly".into(),
            )),
            Ok(EnrollRequest::Enroll {
                token,
                agent_id,
                hostname,
                csr_pem,
                signing_key,
            }) => {
                self.enroll(&token, agent_id, &hostname, &csr_pem, &signing_key)
                    .await
            }
            Ok(EnrollRequest::Rotate {
                csr_pem,
                signing_key,
                proof,
            }) => self.rotate(conn, &csr_pem, &signing_key, &proof).await,
        };
        let db = self.store.db();
        match outcome {
            Ok(Decided {
                what,
                reply,
                by,
                details,
            }) => {
                if let EnrollReply::Enrolled { agent_id, .. } = &reply {
                    info!(agent = %agent_id, %remote, "agent {what}");
                    if what == "rotated" {
                        audit::note(
                            &db,
                            Event::new(by, Action::AgentRotate, agent_id.as_str())
                                .details(details)
                                .source(source),
                        )
                        .await;
                    } else {
                        audit::enrollment(&db, agent_id, by, source, details).await;
                    }
                }
                self.count(what);
                reply
            }
            Err((code, message)) => {
                warn!(%remote, %code, "enrollment refused: {message}");
                self.count(code.as_str());
                audit::note(
                    &db,
                    Event::new(asker, Action::AgentEnrollRefused, target)
                        .details(serde_json::json!({
                            "request": request,
                            "code": code.as_str(),
                            // Bounded: it may quote what the request claimed.
                            "message": message.chars().take(MAX_AUDIT_MESSAGE).collect::<String>(),
                        }))
                        .source(source),
                )
                .await;
                EnrollReply::Refused { code, message }
            }
        }
    }

    fn grace_until(&self, now: i64) -> i64 {
        now.saturating_add(i64::try_from(self.config.key_grace.as_millis()).unwrap_or(i64::MAX))
    }

    async fn enroll(
        &self,
        token: &str,
        requested: Option<String>,
        hostname: &str,
        csr_pem: &str,
        signing_key: &[u8; 32],
    ) -> Outcome {
        let unavailable = |e: crate::store::StoreError| {
            warn!(error = %e, "enrollment: storage failed");
            (
                Refusal::Unavailable,
                "the aggregator's database is unavailable; retry shortly".to_string(),
            )
        };
        let hash = auth::token_hash(token.trim());
        let db = self.store.db();
        let now = now_ms();
        let Some(peeked) = db::token_by_hash(&db, &hash).await.map_err(unavailable)? else {
            return Err(db::refusal(None, "", now));
        };
        // Which id: asked for, else the token's, else the host name.
        let agent_id = requested
            .or_else(|| peeked.agent_id.clone())
            .unwrap_or_else(|| hostname.to_string());
        if peeked.state(now) != "live" {
            // Nothing is signed for a token that cannot be used.
            return Err(db::refusal(Some(&peeked), &agent_id, now));
        }
        if !vigil_certs::is_valid_agent_id(&agent_id) {
            return Err((
                Refusal::BadRequest,
                format!(
                    "{agent_id:?} is not a valid agent id (1-128 of A-Z a-z 0-9 . _ -); \
                     pass --agent-id"
                ),
            ));
        }
        let key = public_key(signing_key)?;
        let cert_pem = self.sign(csr_pem, &agent_id)?;
        match db::enroll(
            &db,
            &hash,
            &agent_id,
            key.as_bytes(),
            now,
            self.grace_until(now),
        )
        .await
        .map_err(unavailable)?
        {
            db::Enrolled::Refused(code, message) => Err((code, message)),
            db::Enrolled::Done {
                previous_valid_until_ms,
            } => {
                self.keys.forget(&agent_id);
                let re_enrolled = previous_valid_until_ms.is_some();
                Ok(Decided {
                    what: if re_enrolled {
                        "re-enrolled"
                    } else {
                        "enrolled"
                    },
                    by: Actor::enroll_token(&peeked.id),
                    details: serde_json::json!({
                        "re_enrolled": re_enrolled,
                        "hostname": hostname,
                        "public_key": sign::public_key_to_hex(&key),
                        "previous_key_valid_until_ms": previous_valid_until_ms,
                    }),
                    reply: EnrollReply::Enrolled {
                        agent_id,
                        cert_pem,
                        ca_pem: self.ca.cert_pem().to_string(),
                        previous_key_valid_until_ms: previous_valid_until_ms,
                    },
                })
            }
        }
    }

    async fn rotate(
        &self,
        conn: &quinn::Connection,
        csr_pem: &str,
        signing_key: &[u8; 32],
        proof: &[u8],
    ) -> Outcome {
        let Some(agent_id) = tls::peer_agent_id(conn) else {
            return Err((
                Refusal::NotAuthorized,
                "rotation needs the agent's current client certificate".into(),
            ));
        };
        let status = self.keys.fresh_status(&agent_id).await.map_err(|e| {
            warn!(error = %e, "rotation: storage failed");
            (
                Refusal::Unavailable,
                "the aggregator's database is unavailable; retry shortly".to_string(),
            )
        })?;
        let current = match status {
            AgentStatus::Unknown => {
                return Err((
                    Refusal::NotAuthorized,
                    format!("agent {agent_id:?} is not registered"),
                ));
            }
            AgentStatus::Revoked => {
                return Err((Refusal::Revoked, format!("agent {agent_id:?} is revoked")));
            }
            AgentStatus::Active(keys) => keys.current,
        };
        if !sign::verify(
            &current,
            &rotation_message(&agent_id, signing_key, csr_pem),
            proof,
        ) {
            return Err((
                Refusal::NotAuthorized,
                format!(
                    "the rotation proof does not verify with {agent_id:?}'s current signing key"
                ),
            ));
        }
        let key = public_key(signing_key)?;
        let cert_pem = self.sign(csr_pem, &agent_id)?;
        let until = self.grace_until(now_ms());
        let rotated = db::rotate(
            &self.store.db(),
            &agent_id,
            current.as_bytes(),
            key.as_bytes(),
            until,
        )
        .await
        .map_err(|e| {
            warn!(error = %e, "rotation: storage failed");
            (
                Refusal::Unavailable,
                "the aggregator's database is unavailable; retry shortly".to_string(),
            )
        })?;
        if !rotated {
            return Err((
                Refusal::NotAuthorized,
                format!("{agent_id:?} was revoked or re-keyed meanwhile"),
            ));
        }
        self.keys.forget(&agent_id);
        Ok(Decided {
            what: "rotated",
            by: Actor::agent(&agent_id),
            details: serde_json::json!({
                "public_key": sign::public_key_to_hex(&key),
                "previous_key_valid_until_ms": until,
            }),
            reply: EnrollReply::Enrolled {
                agent_id,
                cert_pem,
                ca_pem: self.ca.cert_pem().to_string(),
                previous_key_valid_until_ms: Some(until),
            },
        })
    }

    fn sign(&self, csr_pem: &str, agent_id: &str) -> Result<String, (Refusal, String)> {
        self.ca
            .sign_agent_csr(csr_pem, agent_id, self.config.cert_days)
            .map_err(|e| (Refusal::BadRequest, e.to_string()))
    }
}

fn public_key(bytes: &[u8; 32]) -> Result<VerifyingKey, (Refusal, String)> {
    VerifyingKey::from_bytes(bytes).map_err(|_| {
        (
            Refusal::BadRequest,
            "the signing public key is not a valid Ed25519 key".to_string(),
        )
    })
}

/// Prefix of enrollment tokens (API tokens are `vgl_` + hex).
pub const TOKEN_PREFIX: &str = "vgl_enroll_";

/// A token just created: the secret is shown once.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NewToken {
    pub id: String,
    pub token: String,
    pub agent_id: Option<String>,
    pub expires_at_ms: i64,
}

/// Why a token could not be created.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Creates a one-time enrollment token valid for `ttl` (1 minute to
/// `max_ttl`), bound to `agent_id` if given, and records it in the audit
/// log as `by` (from `source`): the CLI's `enroll-token create` and
/// `POST /api/v1/enroll-tokens` both come here.
pub async fn create_token(
    store: &dyn Store,
    ttl: Duration,
    max_ttl: Duration,
    agent_id: Option<&str>,
    by: Actor,
    source: Option<String>,
) -> Result<NewToken, TokenError> {
    if ttl < config::MIN_TOKEN_TTL || ttl > max_ttl {
        return Err(TokenError::Invalid(format!(
            "the token lifetime must be between 1m and {} (enroll.max_token_ttl)",
            humantime::format_duration(max_ttl)
        )));
    }
    if let Some(id) = agent_id {
        if !vigil_certs::is_valid_agent_id(id) {
            return Err(TokenError::Invalid(format!(
                "invalid host name {id:?}: use 1-128 characters from A-Z a-z 0-9 . _ -, \
                 not starting with '.' or '-'"
            )));
        }
    }
    let random = auth::new_token()
        .map_err(|_| TokenError::Invalid("the system random number generator failed".into()))?;
    let token = format!("{TOKEN_PREFIX}{}", &random[auth::TOKEN_PREFIX.len()..]);
    let now = now_ms();
    let expires_at_ms = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
    let id = db::insert_token(
        &store.db(),
        &auth::token_hash(&token),
        agent_id,
        now,
        expires_at_ms,
    )
    .await?;
    info!(token = %id, agent = ?agent_id, "enrollment token created");
    // The token itself is shown once and never recorded.
    audit::note(
        &store.db(),
        Event::new(by, Action::EnrollTokenCreate, id.as_str())
            .details(serde_json::json!({
                "host_name": agent_id,
                "expires_at_ms": expires_at_ms,
            }))
            .source(source),
    )
    .await;
    Ok(NewToken {
        id,
        token,
        agent_id: agent_id.map(str::to_owned),
        expires_at_ms,
    })
}

/// Revokes an unused token (recorded in the audit log as `by`); false if
/// there is no unused, unrevoked token `id`. The CLI's `enroll-token
/// revoke` and `DELETE /api/v1/enroll-tokens/{id}` both come here.
pub async fn revoke_token(
    store: &dyn Store,
    id: &str,
    by: Actor,
    source: Option<String>,
) -> Result<bool, crate::store::StoreError> {
    let revoked = db::revoke_token(&store.db(), id, now_ms()).await?;
    if revoked {
        info!(token = %id, "enrollment token revoked");
        audit::note(
            &store.db(),
            Event::new(by, Action::EnrollTokenRevoke, id)
                .details(serde_json::json!({}))
                .source(source),
        )
        .await;
    }
    Ok(revoked)
}
