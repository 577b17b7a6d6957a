//! `[alerting]` in the aggregator's configuration.

use serde::Deserialize;

/// `[alerting]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertingConfig {}
