//! `vigil-aggregator enroll-token create|list|revoke`.

use std::io::Write;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use vigil_aggregator::audit::Actor;
use vigil_aggregator::config::Loaded;
use vigil_aggregator::ingest::enroll::{self, TokenError};
use vigil_aggregator::store::enroll as db;
use vigil_common::enroll::{fingerprint, fingerprint_hex};
use vigil_common::now_ms;

use crate::{EnrollTokenCommand, open_store};

pub async fn run(loaded: Loaded, command: EnrollTokenCommand) -> Result<()> {
    match command {
        EnrollTokenCommand::Create { ttl, host_name, .. } => {
            create(loaded, &ttl, host_name.as_deref()).await
        }
        EnrollTokenCommand::List { .. } => list(loaded).await,
        EnrollTokenCommand::Revoke { id, .. } => {
            let store = open_store(&loaded).await?;
            if !enroll::revoke_token(store.as_ref(), &id, Actor::cli(), None).await? {
                bail!("no unused, unrevoked enrollment token {id:?} (see enroll-token list)");
            }
            println!("revoked enrollment token {id}");
            Ok(())
        }
    }
}

fn when(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

async fn create(loaded: Loaded, ttl: &str, host_name: Option<&str>) -> Result<()> {
    let Some(settings) = &loaded.config.enroll else {
        bail!("enrollment is off: add an [enroll] section (ca_key = ...) to the config");
    };
    let ttl = humantime::parse_duration(ttl.trim()).map_err(|e| anyhow!("--ttl {ttl:?}: {e}"))?;
    let store = open_store(&loaded).await?;
    let token = enroll::create_token(
        store.as_ref(),
        ttl,
        settings.max_token_ttl,
        host_name,
        Actor::cli(),
        None,
    )
    .await
    .map_err(|e| match e {
        TokenError::Invalid(m) => anyhow!(m),
        TokenError::Store(e) => anyhow!(e),
    })?;
    let ca = loaded
        .tls
        .ca
        .first()
        .map(|c| fingerprint_hex(&fingerprint(c)))
        .unwrap_or_default();
    let id_arg = host_name.map_or(String::new(), |h| format!(" --agent-id {h}"));
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", token.token)?;
    writeln!(
        out,
        "id {}, expires {}, works once{}\n\
         on the agent's host:\n  \
         vigil-agent enroll --token {} --aggregator <this host>:{} --ca-fingerprint {ca} --dir /etc/vigil{id_arg}",
        token.id,
        when(token.expires_at_ms),
        host_name.map_or(String::new(), |h| format!(", for agent {h}")),
        token.token,
        loaded.quic_listen.port(),
    )?;
    Ok(())
}

async fn list(loaded: Loaded) -> Result<()> {
    let store = open_store(&loaded).await?;
    let now = now_ms();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<12} {:<8} {:<24} {:<21} {:<21} USED BY",
        "ID", "STATE", "HOST NAME", "CREATED", "EXPIRES"
    )?;
    for t in db::tokens(&store.db()).await? {
        writeln!(
            out,
            "{:<12} {:<8} {:<24} {:<21} {:<21} {}",
            t.id,
            t.state(now),
            t.agent_id.as_deref().unwrap_or("-"),
            when(t.created_at_ms),
            when(t.expires_at_ms),
            t.used_by.as_deref().unwrap_or("-"),
        )?;
    }
    Ok(())
}
