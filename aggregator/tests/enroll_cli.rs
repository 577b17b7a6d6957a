//! `enroll-token create|list|revoke` and the `[enroll]` config checks,
//! through the real binary.

mod cli_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn run(args: &[&str], config: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil-aggregator"))
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

fn enrolling_config(dir: &Path) -> std::path::PathBuf {
    let config = cli_support::minimal_config(dir);
    let mut text = std::fs::read_to_string(&config).expect("read");
    text.push_str("[enroll]\nca_key = \"ca.key\"\nmax_token_ttl = \"2d\"\n");
    std::fs::write(&config, text).expect("write");
    config
}

#[test]
fn tokens_are_created_listed_and_revoked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = enrolling_config(dir.path());

    let (code, out, err) = run(
        &[
            "enroll-token",
            "create",
            "--ttl",
            "1h",
            "--host-name",
            "web-1",
        ],
        &config,
    );
    assert_eq!(code, Some(0), "{err}");
    let mut lines = out.lines();
    let token = lines.next().expect("token line");
    assert!(
        token.starts_with("vgl_enroll_") && token.len() == 11 + 64,
        "{out}"
    );
    assert!(out.contains("works once, for agent web-1"), "{out}");
    // The command to run on the host carries the CA's fingerprint.
    let ca = vigil_common::tls::load_certs(&dir.path().join("ca.crt")).expect("ca");
    let fp = vigil_common::enroll::fingerprint_hex(&vigil_common::enroll::fingerprint(&ca[0]));
    assert!(
        out.contains(&format!("--token {token} "))
            && out.contains(&format!("--ca-fingerprint {fp}")),
        "{out}"
    );
    let (code, _, err) = run(&["enroll-token", "create", "--ttl", "10m"], &config);
    assert_eq!(code, Some(0), "{err}");

    let (code, out, err) = run(&["enroll-token", "list"], &config);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("ID"), "{out}");
    assert!(!out.contains(token), "the secret is never listed: {out}");
    let web = out.lines().find(|l| l.contains("web-1")).expect("listed");
    assert!(web.contains(" live "), "{web}");
    let id = web.split_whitespace().next().expect("id").to_string();
    assert_eq!(id.len(), 12);

    let (code, out, err) = run(&["enroll-token", "revoke", "--id", &id], &config);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&id));
    let (_, out, _) = run(&["enroll-token", "list"], &config);
    let web = out.lines().find(|l| l.contains("web-1")).expect("listed");
    assert!(web.contains(" revoked "), "{web}");
    // Twice, or an unknown id: a clear error.
    let (code, _, err) = run(&["enroll-token", "revoke", "--id", &id], &config);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("no unused, unrevoked enrollment token"),
        "{err}"
    );

    // Bad lifetimes and host names.
    for (ttl, host, expect) in [
        ("soon", None, "--ttl \"soon\""),
        ("10s", None, "between 1m and 2days"),
        ("3d", None, "between 1m and 2days"),
        ("1h", Some("../x"), "invalid host name"),
    ] {
        let mut args = vec!["enroll-token", "create", "--ttl", ttl];
        if let Some(h) = host {
            args.extend(["--host-name", h]);
        }
        let (code, _, err) = run(&args, &config);
        assert_eq!(code, Some(1), "{ttl}");
        assert!(err.contains(expect), "{ttl}: {err}");
    }
}

#[test]
fn enrollment_off_or_misconfigured_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = cli_support::minimal_config(dir.path());
    let (code, _, err) = run(&["enroll-token", "create", "--ttl", "1h"], &config);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("enrollment is off: add an [enroll] section"),
        "{err}"
    );

    // A CA key others can read is refused before anything starts (exit 64).
    let mut text = std::fs::read_to_string(&config).expect("read");
    text.push_str("[enroll]\nca_key = \"ca.key\"\n");
    std::fs::write(&config, text).expect("write");
    let key = dir.path().join("ca.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (code, _, err) = run(&["check-config"], &config);
    assert_eq!(code, Some(64));
    assert!(
        err.contains("enroll.ca_key: ") && err.contains("chmod 600"),
        "{err}"
    );

    // A key that is not the CA's, a missing key, and bad values: all reported.
    let other = tempfile::tempdir().expect("tempdir");
    vigil_certs::create_ca(other.path(), "Other", 30, false).expect("other ca");
    let text = std::fs::read_to_string(&config).expect("read").replace(
        "[enroll]\nca_key = \"ca.key\"",
        &format!(
            "[enroll]\nca_key = {:?}\ncert_days = 0\nkey_grace = \"0s\"",
            other.path().join("ca.key")
        ),
    );
    std::fs::write(&config, text).expect("write");
    let (code, _, err) = run(&["check-config"], &config);
    assert_eq!(code, Some(64));
    for expect in [
        "the key does not belong to the CA certificate",
        "enroll.cert_days must be between 1 and 36500",
        "enroll.key_grace must be at least 1s",
    ] {
        assert!(err.contains(expect), "{expect}: {err}");
    }
    std::fs::write(
        &config,
        "[quic]\nca = \"ca.crt\"\ncert = \"server.crt\"\nkey = \"server.key\"\n[enroll]\nca_key = \"missing.key\"\n",
    )
    .expect("write");
    let (code, _, err) = run(&["check-config"], &config);
    assert_eq!(code, Some(64));
    assert!(err.contains("enroll.ca_key: cannot read"), "{err}");
}
