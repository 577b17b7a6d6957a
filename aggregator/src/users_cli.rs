//! `create-user` and `reset-password`: dashboard accounts from the command
//! line. The password comes from stdin when it is piped (one line), else a
//! random one is generated and printed once; only its Argon2id hash is
//! stored.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Result, anyhow};
use vigil_aggregator::audit::Action;
use vigil_aggregator::config::Loaded;
use vigil_aggregator::http::session::{accounts, password};

/// The password to set and whether it was generated (and must be shown).
fn password_from_stdin_or_generated() -> Result<(String, bool)> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let generated = password::generate().map_err(|e| anyhow!(e))?;
        return Ok((generated, true));
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        let generated = password::generate().map_err(|e| anyhow!(e))?;
        return Ok((generated, true));
    }
    Ok((password, false))
}

pub async fn create_user(loaded: Loaded, name: &str, role: &str) -> Result<()> {
    let role = accounts::parse_role(role)?;
    accounts::validate_name(name)?;
    let (password, generated) = password_from_stdin_or_generated()?;
    password::validate(&password)?;
    let store = super::open_store(&loaded).await?;
    accounts::create(&store.db(), name, role, &password).await?;
    super::cli_audit(
        &store,
        Action::UserCreate,
        name,
        serde_json::json!({"role": role.as_str()}),
    )
    .await;
    let mut out = std::io::stdout().lock();
    writeln!(out, "created user {name} (role {})", role.as_str())?;
    if generated {
        writeln!(out, "password: {password}\n(shown only once)")?;
    }
    Ok(())
}

pub async fn reset_password(loaded: Loaded, name: &str) -> Result<()> {
    let (password, generated) = password_from_stdin_or_generated()?;
    password::validate(&password)?;
    let store = super::open_store(&loaded).await?;
    accounts::set_password(&store.db(), name, &password).await?;
    super::cli_audit(
        &store,
        Action::UserPassword,
        name,
        serde_json::json!({"password": "reset"}),
    )
    .await;
    let mut out = std::io::stdout().lock();
    writeln!(out, "password of {name} reset; their sessions have ended")?;
    if generated {
        writeln!(out, "password: {password}\n(shown only once)")?;
    }
    Ok(())
}
