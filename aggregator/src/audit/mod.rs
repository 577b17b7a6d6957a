//! The audit log: who changed what, when, and from where.
//!
//! Every state change an operator, a token, the CLI or the aggregator itself
//! makes (acknowledgements, silences, maintenance, rule reloads, tokens,
//! users, agent registration, enrollment and revocation, sign-ins) is one
//! row in `audit_log` (migration 0011, SQL in [`store`]). Rows are only
//! inserted, never updated; `GET /api/v1/audit` and the dashboard's `/audit`
//! page (admins only, `http/audit.rs`, `http/web/audit.rs`) read them.
//!
//! - [`Actor`]: the kind (`user`, `token`, `cli`, `system`, `anonymous`) and
//!   name of whoever made the change.
//! - [`Action`]: a fixed set of dotted names (`alert.ack`, `user.create`,
//!   ...); the query API refuses unknown ones.
//! - `details` is JSON chosen by the caller and never holds a secret: a
//!   password change is recorded as `{"password": "changed"}`, a token by its
//!   name and scope only.
//!
//! The audit row is written right after the change itself, not in its
//! transaction. [`note`] never fails the change: a failed audit write is
//! logged at error level (target `vigil::audit`) with the whole event, so
//! the log still holds what the database refused.

pub mod store;

use serde::Serialize;

use crate::store::{Db, StoreError};

pub use store::{Filter, Page, Record, query};

/// Who made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorKind {
    /// A dashboard user (session cookie or sign-in form).
    User,
    /// An API token.
    Token,
    /// A `vigil-aggregator` command on the aggregator's host.
    Cli,
    /// The aggregator itself (SIGHUP reload, quick start).
    System,
    /// A request without credentials (failed sign-ins).
    Anonymous,
    /// An agent acting on its own identity (key rotation, proven by its
    /// current certificate and signing key).
    Agent,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::Token => "token",
            ActorKind::Cli => "cli",
            ActorKind::System => "system",
            ActorKind::Anonymous => "anonymous",
            ActorKind::Agent => "agent",
        }
    }
}

/// The kind and name of whoever made a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub kind: ActorKind,
    pub name: String,
}

impl Actor {
    /// A dashboard user.
    pub fn user(name: &str) -> Actor {
        Actor {
            kind: ActorKind::User,
            name: name.to_string(),
        }
    }

    /// An API token, by its name.
    pub fn token(name: &str) -> Actor {
        Actor {
            kind: ActorKind::Token,
            name: name.to_string(),
        }
    }

    /// A command run on the aggregator's host: named after the local user
    /// (`$USER`, else `cli`), which is all a command line knows.
    pub fn cli() -> Actor {
        let name = std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty() && u.len() <= 64 && !u.chars().any(char::is_control))
            .unwrap_or_else(|| "cli".to_string());
        Actor {
            kind: ActorKind::Cli,
            name,
        }
    }

    /// The aggregator itself; `what` says which part (`sighup`, `quickstart`).
    pub fn system(what: &str) -> Actor {
        Actor {
            kind: ActorKind::System,
            name: what.to_string(),
        }
    }

    /// An agent, by its id (rotation: authenticated by its current keys).
    pub fn agent(id: &str) -> Actor {
        Actor {
            kind: ActorKind::Agent,
            name: id.to_string(),
        }
    }

    /// A one-time enrollment token, by its id (`enroll:<id>`): what
    /// approved an enrollment.
    pub fn enroll_token(id: &str) -> Actor {
        Actor {
            kind: ActorKind::Token,
            name: format!("enroll:{id}"),
        }
    }

    /// No credentials; `name` is what the request claimed (a sign-in's user
    /// name), if anything.
    pub fn anonymous(name: &str) -> Actor {
        Actor {
            kind: ActorKind::Anonymous,
            name: name.to_string(),
        }
    }
}

/// Generates [`Action`] with its dotted names, kept in one table so the
/// query API's list of valid actions cannot drift from the enum.
macro_rules! actions {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// What was done.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Action {
            $($(#[$doc])* $variant,)*
        }

        impl Action {
            /// Every action, in the order of the table.
            pub const ALL: &'static [Action] = &[$(Action::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Action::$variant => $name,)*
                }
            }
        }
    };
}

actions! {
    /// An alert acknowledged (API or dashboard).
    AlertAck => "alert.ack",
    /// A silence created.
    SilenceCreate => "silence.create",
    /// A silence edited (in place or expire-and-replace).
    SilenceUpdate => "silence.update",
    /// A silence expired now.
    SilenceExpire => "silence.expire",
    /// A maintenance window started.
    MaintenanceStart => "maintenance.start",
    /// A maintenance window stopped.
    MaintenanceStop => "maintenance.stop",
    /// Rule files reloaded (API, SIGHUP); `details.ok` says whether the new
    /// files were taken.
    RulesReload => "rules.reload",
    /// An API token created or replaced.
    TokenCreate => "token.create",
    /// An API token revoked.
    TokenRevoke => "token.revoke",
    /// A dashboard user created.
    UserCreate => "user.create",
    /// A user's role, password or disabled flag changed (by an admin).
    UserUpdate => "user.update",
    /// A user deleted.
    UserDelete => "user.delete",
    /// A password set: by its user, or reset from the CLI.
    UserPassword => "user.password",
    /// An agent's public key registered (or re-keyed) by hand.
    AgentRegister => "agent.register",
    /// An agent enrolled itself with a one-time token, or re-enrolled
    /// (`details.re_enrolled`; see [`enrollment`]).
    AgentEnroll => "agent.enroll",
    /// An agent rotated its keys (proven by its current ones).
    AgentRotate => "agent.rotate",
    /// An enrollment or rotation request refused (`details.code`,
    /// `details.message`).
    AgentEnrollRefused => "agent.enroll_refused",
    /// A one-time enrollment token created (`details`: its bound host, its
    /// expiry; never the token).
    EnrollTokenCreate => "enroll_token.create",
    /// An unused enrollment token revoked.
    EnrollTokenRevoke => "enroll_token.revoke",
    /// An agent revoked.
    AgentRevoke => "agent.revoke",
    /// A successful dashboard sign-in.
    Login => "session.login",
    /// A refused sign-in (wrong password, unknown or disabled user).
    LoginFailed => "session.login_failed",
    /// A sign-out.
    Logout => "session.logout",
}

impl std::str::FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> Result<Action, String> {
        Action::ALL
            .iter()
            .copied()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
                format!("unknown action {s:?}: expected one of {}", names.join(", "))
            })
    }
}

/// One change to record.
#[derive(Debug, Clone)]
pub struct Event {
    pub actor: Actor,
    pub action: Action,
    /// What was changed: an alert id, a silence id, a user or token name.
    pub target: String,
    /// More about the change; never a secret.
    pub details: serde_json::Value,
    /// The client's address, when the change came over the network.
    pub source: Option<String>,
}

impl Event {
    pub fn new(actor: Actor, action: Action, target: impl Into<String>) -> Event {
        Event {
            actor,
            action,
            target: target.into(),
            details: serde_json::Value::Object(Default::default()),
            source: None,
        }
    }

    pub fn details(mut self, details: serde_json::Value) -> Event {
        self.details = details;
        self
    }

    pub fn source(mut self, source: Option<String>) -> Event {
        self.source = source;
        self
    }
}

/// What the audit log keeps of a rule reload (API or SIGHUP): whether the
/// new files were taken, and their counts or the number of problems.
pub fn reload_details(
    result: &Result<crate::alert::eval::Loaded, crate::alert::eval::ReloadErrors>,
) -> serde_json::Value {
    match result {
        Ok(l) => serde_json::json!({"ok": true, "groups": l.groups, "rules": l.rules}),
        Err(e) => serde_json::json!({"ok": false, "errors": e.0.len()}),
    }
}

/// Longest `target` or actor name stored; longer ones are cut (on a char
/// boundary), so a huge user-supplied name cannot bloat the log.
pub const MAX_FIELD_BYTES: usize = 256;

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Writes `event` now; the id of its row.
pub async fn record(db: &Db, event: &Event, at_ms: i64) -> Result<i64, StoreError> {
    store::insert(db, event, at_ms).await
}

/// Writes `event`; a failure is logged with the whole event (so the record
/// survives in the log) and otherwise ignored: the change it describes has
/// already happened.
pub async fn note(db: &Db, event: Event) {
    let now = now_ms();
    if let Err(e) = record(db, &event, now).await {
        tracing::error!(
            target: "vigil::audit",
            error = %e,
            actor_kind = event.actor.kind.as_str(),
            actor = %event.actor.name,
            action = event.action.as_str(),
            target_name = %event.target,
            details = %event.details,
            "cannot write the audit record"
        );
    }
}

/// The hook for agent enrollment: call once an agent has enrolled (its key
/// registered through the enrollment flow). `by` is whoever approved it (the
/// enrollment token's name, or an operator), `source` the agent's address.
pub async fn enrollment(
    db: &Db,
    agent_id: &str,
    by: Actor,
    source: Option<String>,
    details: serde_json::Value,
) {
    note(
        db,
        Event::new(by, Action::AgentEnroll, agent_id)
            .details(details)
            .source(source),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_and_unknown_ones_are_listed() {
        for a in Action::ALL {
            assert_eq!(a.as_str().parse::<Action>(), Ok(*a));
        }
        let err = "user.hack".parse::<Action>().expect_err("unknown");
        assert!(
            err.contains("alert.ack") && err.contains("user.hack"),
            "{err}"
        );
    }

    #[test]
    fn cli_actor_never_takes_control_characters() {
        let a = Actor::cli();
        assert_eq!(a.kind, ActorKind::Cli);
        assert!(!a.name.is_empty() && !a.name.chars().any(char::is_control));
    }
}
