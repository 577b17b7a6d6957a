//! Checks on one received frame, in the order that does the least work for
//! an attacker: envelope, agent registration, signature over the exact bytes,
//! then decoding, identity and content.

use std::time::Duration;

use vigil_common::model::{Label, Series};
use vigil_common::wire::WireError;
use vigil_common::{Batch, Reject, RejectCode, SignedBatch, sign};

use super::agents::{AgentStatus, KeyUsed};
use crate::metrics::SampleDrop;

/// A typed rejection with a message for the agent's log.
pub fn reject(sequence: Option<u64>, code: RejectCode, message: impl Into<String>) -> Reject {
    Reject {
        sequence,
        code,
        message: message.into(),
    }
}

/// Step 1: the envelope must decode.
pub fn open_envelope(frame: &[u8]) -> Result<SignedBatch, Reject> {
    SignedBatch::decode(frame).map_err(|e| {
        reject(
            None,
            RejectCode::Malformed,
            format!("cannot decode envelope: {e}"),
        )
    })
}

/// Steps 2-6: registration, signature (with the current key, else the
/// previous one while `now_ms` is inside its grace period), decoding,
/// identity, content.
pub fn verify(
    signed: &SignedBatch,
    cert_agent_id: &str,
    status: &AgentStatus,
    now_ms: i64,
) -> Result<(Batch, KeyUsed), Reject> {
    let keys = match status {
        AgentStatus::Unknown => {
            return Err(reject(
                None,
                RejectCode::UnknownAgent,
                format!("agent {cert_agent_id:?} is not registered"),
            ));
        }
        AgentStatus::Revoked => {
            return Err(reject(
                None,
                RejectCode::RevokedAgent,
                format!("agent {cert_agent_id:?} is revoked"),
            ));
        }
        AgentStatus::Active(keys) => keys,
    };
    let used = if sign::verify(&keys.current, &signed.batch, &signed.signature) {
        KeyUsed::Current
    } else if keys.previous.as_ref().is_some_and(|(key, until)| {
        now_ms < *until && sign::verify(key, &signed.batch, &signed.signature)
    }) {
        KeyUsed::Previous
    } else {
        return Err(reject(
            None,
            RejectCode::BadSignature,
            format!("signature does not verify with the key registered for {cert_agent_id:?}"),
        ));
    };
    let batch = Batch::decode(&signed.batch).map_err(|e| match e {
        WireError::UnsupportedVersion(_) => {
            reject(None, RejectCode::UnsupportedVersion, e.to_string())
        }
        _ => reject(
            None,
            RejectCode::Malformed,
            format!("cannot decode batch: {e}"),
        ),
    })?;
    let seq = Some(batch.header.sequence);
    if batch.header.agent_id != cert_agent_id {
        return Err(reject(
            seq,
            RejectCode::AgentMismatch,
            format!(
                "batch agent id {:?} differs from certificate {cert_agent_id:?}",
                batch.header.agent_id
            ),
        ));
    }
    check_content(&batch).map_err(|m| reject(seq, RejectCode::InvalidBatch, m))?;
    Ok((batch, used))
}

fn check_content(batch: &Batch) -> Result<(), String> {
    let h = &batch.header;
    if h.host.is_empty() || h.host.len() > 255 {
        return Err("host must be 1-255 characters".into());
    }
    if let Some(role) = h.roles.iter().find(|r| r.is_empty() || r.len() > 64) {
        return Err(format!("invalid role {role:?}"));
    }
    batch.series.iter().try_for_each(Series::validate)
}

/// Adds the header's `host` label to series without one, and removes points
/// outside `[now - max_age, now + max_skew]`, returning how many of each kind
/// were removed.
pub fn normalize(
    batch: &mut Batch,
    now_ms: i64,
    max_age: Duration,
    max_skew: Duration,
) -> Vec<(SampleDrop, u64)> {
    let oldest = now_ms.saturating_sub(i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX));
    let newest = now_ms.saturating_add(i64::try_from(max_skew.as_millis()).unwrap_or(i64::MAX));
    let (mut too_old, mut too_new) = (0u64, 0u64);
    let host = batch.header.host.clone();
    for series in &mut batch.series {
        if series.label("host").is_none() {
            let at = series.labels.partition_point(|l| l.name.as_str() < "host");
            series.labels.insert(at, Label::new("host", host.clone()));
        }
        series.points.retain(|p| {
            if p.timestamp_ms < oldest {
                too_old += 1;
                false
            } else if p.timestamp_ms > newest {
                too_new += 1;
                false
            } else {
                true
            }
        });
    }
    batch.series.retain(|s| !s.points.is_empty());
    vec![(SampleDrop::TooOld, too_old), (SampleDrop::TooNew, too_new)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::agents::Keys;
    use vigil_common::Point;
    use vigil_common::wire::{BatchHeader, PROTOCOL_VERSION};

    fn batch(agent: &str, ts: &[i64]) -> Batch {
        Batch {
            header: BatchHeader {
                protocol_version: PROTOCOL_VERSION,
                agent_id: agent.into(),
                boot_id: [1; 16],
                sequence: 3,
                created_at_ms: 0,
                host: "h1".into(),
                roles: vec!["db".into()],
            },
            series: vec![Series::new(
                "m",
                vec![Label::new("role", "db")],
                ts.iter()
                    .map(|&t| Point {
                        timestamp_ms: t,
                        value: 1.0,
                    })
                    .collect(),
            )],
            metadata: vec![],
        }
    }

    fn signed(b: &Batch, key: &sign::SigningKey) -> SignedBatch {
        let bytes = b.encode().expect("encode");
        SignedBatch {
            signature: sign::sign(key, &bytes),
            batch: bytes,
        }
    }

    #[test]
    fn each_failure_has_its_code() {
        let key = sign::generate_signing_key().expect("key");
        let other = sign::generate_signing_key().expect("key");
        let active = AgentStatus::Active(std::sync::Arc::new(Keys::one(key.verifying_key())));
        let good = signed(&batch("a1", &[1]), &key);
        assert!(verify(&good, "a1", &active, 0).is_ok());
        let verify = |s: &SignedBatch, id: &str, st: &AgentStatus| verify(s, id, st, 0);

        let code = |r: Result<(Batch, KeyUsed), Reject>| r.expect_err("rejected").code;
        assert_eq!(
            code(verify(&good, "a1", &AgentStatus::Unknown)),
            RejectCode::UnknownAgent
        );
        assert_eq!(
            code(verify(&good, "a1", &AgentStatus::Revoked)),
            RejectCode::RevokedAgent
        );
        assert_eq!(
            code(verify(&signed(&batch("a1", &[1]), &other), "a1", &active)),
            RejectCode::BadSignature
        );
        assert_eq!(
            code(verify(&good, "a2", &active)),
            RejectCode::AgentMismatch
        );

        let mut bad = batch("a1", &[1]);
        bad.series[0].name = "bad-name".into();
        assert_eq!(
            code(verify(&signed(&bad, &key), "a1", &active)),
            RejectCode::InvalidBatch
        );
        let mut v2 = batch("a1", &[1]);
        v2.header.protocol_version = 2;
        assert_eq!(
            code(verify(&signed(&v2, &key), "a1", &active)),
            RejectCode::UnsupportedVersion
        );

        let garbage = SignedBatch {
            batch: vec![1, 2, 3],
            signature: sign::sign(&key, &[1, 2, 3]),
        };
        assert_eq!(code(verify(&garbage, "a1", &active)), RejectCode::Malformed);
        assert_eq!(
            open_envelope(&[0xff; 9]).expect_err("garbage").code,
            RejectCode::Malformed
        );
    }

    #[test]
    fn previous_key_is_accepted_only_inside_its_grace_period() {
        let old = sign::generate_signing_key().expect("key");
        let new = sign::generate_signing_key().expect("key");
        let other = sign::generate_signing_key().expect("key");
        let status = AgentStatus::Active(std::sync::Arc::new(Keys {
            current: new.verifying_key(),
            previous: Some((old.verifying_key(), 1_000)),
        }));
        let by = |k: &sign::SigningKey, now: i64| {
            verify(&signed(&batch("a1", &[1]), k), "a1", &status, now).map(|(_, used)| used)
        };
        assert_eq!(by(&new, 500), Ok(KeyUsed::Current));
        assert_eq!(by(&old, 500), Ok(KeyUsed::Previous));
        assert_eq!(by(&new, 5_000), Ok(KeyUsed::Current));
        let code = |r: Result<KeyUsed, Reject>| r.expect_err("rejected").code;
        assert_eq!(code(by(&old, 1_000)), RejectCode::BadSignature);
        assert_eq!(code(by(&other, 500)), RejectCode::BadSignature);
    }

    #[test]
    fn normalize_adds_host_and_drops_out_of_bounds_points() {
        let now = 1_000_000_000;
        let mut b = batch("a1", &[now - 120_000, now, now + 120_000]);
        let drops = normalize(
            &mut b,
            now,
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        assert_eq!(
            drops,
            vec![(SampleDrop::TooOld, 1), (SampleDrop::TooNew, 1)]
        );
        assert_eq!(b.sample_count(), 1);
        assert_eq!(b.series[0].label("host"), Some("h1"));
        assert!(b.series[0].validate().is_ok(), "labels stay sorted");

        let mut all_old = batch("a1", &[0]);
        normalize(
            &mut all_old,
            now,
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        assert!(all_old.series.is_empty());
    }
}
