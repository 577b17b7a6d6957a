//! `[notify]` in the aggregator's configuration.

use serde::Deserialize;

/// `[notify]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {}
