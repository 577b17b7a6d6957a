//! What the CLI tests share: the smallest aggregator config that passes
//! `check-config`, with a CA and server certificate made in `dir`.

use std::path::{Path, PathBuf};

/// Writes `dir/aggregator.toml` (QUIC certificates only, everything else
/// default) and returns its path.
pub fn minimal_config(dir: &Path) -> PathBuf {
    vigil_certs::create_ca(dir, "CA", 30, false).expect("ca");
    vigil_certs::issue_server(dir, dir, &["localhost".into()], 30, false).expect("server");
    let config = dir.join("aggregator.toml");
    std::fs::write(
        &config,
        "[quic]\nca = \"ca.crt\"\ncert = \"server.crt\"\nkey = \"server.key\"\n",
    )
    .expect("write");
    config
}
