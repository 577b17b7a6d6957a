//! Notifications, with Alertmanager's semantics and configuration shape:
//! the route tree, grouping and its timers ([`dispatch`]), inhibition,
//! silences and maintenance ([`silence`]), receivers (webhook, Slack, email,
//! Alertmanager; [`receivers`]) and the persisted outbox every notification
//! goes through ([`outbox`]). Configured by `[notify]` ([`config`]).

pub mod config;
pub mod dispatch;
pub mod outbox;
pub mod receivers;
pub mod silence;
