//! `create-token`, `list-tokens`, `revoke-token` through the real binary.

mod cli_support;

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vigil-aggregator"))
}

fn run(args: &[&str], config: &std::path::Path) -> (Option<i32>, String, String) {
    let out = bin()
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn tokens_are_created_listed_and_revoked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let config = cli_support::minimal_config(d);

    let (code, out, err) = run(
        &["create-token", "--name", "grafana", "--scope", "read"],
        &config,
    );
    assert_eq!(code, Some(0), "{err}");
    let secret = out.trim().to_string();
    assert!(secret.starts_with("vgl_"));
    // `--role` is kept as an alias.
    let (code, _, err) = run(
        &["create-token", "--name", "ops", "--role", "write"],
        &config,
    );
    assert_eq!(code, Some(0), "{err}");

    let (code, _, err) = run(&["create-token", "--name", "x", "--scope", "root"], &config);
    assert_eq!(code, Some(1));
    assert!(err.contains("unknown scope \"root\""), "{err}");

    let (code, out, err) = run(&["list-tokens"], &config);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("NAME"), "{out}");
    let grafana = out
        .lines()
        .find(|l| l.starts_with("grafana"))
        .expect("listed");
    assert!(
        grafana.contains(" read ") && grafana.trim_end().ends_with('-'),
        "{grafana}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("ops") && l.contains(" write ")),
        "{out}"
    );
    assert!(!out.contains(&secret), "the secret is never listed");

    let (code, out, err) = run(&["revoke-token", "--name", "grafana"], &config);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("revoked token grafana"));
    let (code, _, err) = run(&["revoke-token", "--name", "grafana"], &config);
    assert_eq!(code, Some(1));
    assert!(err.contains("no live token named \"grafana\""), "{err}");

    let (_, out, _) = run(&["list-tokens"], &config);
    let grafana = out
        .lines()
        .find(|l| l.starts_with("grafana"))
        .expect("still listed");
    assert!(
        !grafana.trim_end().ends_with(" -"),
        "revocation time shown: {grafana}"
    );
}

#[test]
fn access_settings_are_validated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    vigil_certs::create_ca(d, "CA", 30, false).expect("ca");
    vigil_certs::issue_server(d, d, &["localhost".into()], 30, false).expect("server");
    let config = d.join("aggregator.toml");
    let quic = "[quic]\nca = \"ca.crt\"\ncert = \"server.crt\"\nkey = \"server.key\"\n";
    std::fs::write(
        &config,
        format!("[http]\nanonymous_read = true\nrate_limit_per_ip = {{ per_second = 0, burst = 1 }}\n{quic}"),
    )
    .expect("write");
    let out = bin()
        .arg("check-config")
        .arg("--config")
        .arg(&config)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    std::fs::write(
        &config,
        format!("[http]\nrate_limit_per_token = {{ per_second = 5, burst = 0 }}\n{quic}"),
    )
    .expect("write");
    let out = bin()
        .arg("check-config")
        .arg("--config")
        .arg(&config)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rate_limit_per_token"), "{err}");
}
