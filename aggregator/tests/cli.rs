//! The real binary: bad configuration exits 64 with every problem listed.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vigil-aggregator"))
}

/// `vigil-aggregator check-config --config <path>`, run to completion.
fn check_config(path: &std::path::Path) -> std::process::Output {
    bin()
        .args(["check-config", "--config"])
        .arg(path)
        .output()
        .expect("runs")
}

#[test]
fn bad_config_lists_every_problem_and_exits_64() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "colour = \"blue\"\n[http]\nlisten = \"nowhere\"\n[quic]\nca = \"no.crt\"\ncert = \"no.crt\"\nkey = \"no.key\"\n[database]\nurl = \"oracle://x\"\n",
    )
    .expect("write");
    for cmd in ["check-config", "run"] {
        let out = bin()
            .args([cmd, "--config"])
            .arg(&path)
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(64), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        for needle in [
            "unknown key `colour`",
            "http.listen",
            "no.crt",
            "database.url",
        ] {
            assert!(err.contains(needle), "{cmd}: {needle} missing from:\n{err}");
        }
    }
    let out = bin()
        .args(["check-config", "--config", "/nonexistent.toml"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn good_config_checks_ok_and_agents_can_be_registered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    vigil_certs::create_ca(d, "CA", 30, false).expect("ca");
    vigil_certs::issue_server(d, d, &["localhost".into()], 30, false).expect("server");
    let public = vigil_certs::issue_agent(d, d, "web-1", 30, false).expect("agent");
    let path = d.join("aggregator.toml");
    std::fs::write(
        &path,
        "[quic]\nca = \"ca.crt\"\ncert = \"server.crt\"\nkey = \"server.key\"\n",
    )
    .expect("write");

    let out = check_config(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("config OK"));

    let out = bin()
        .args([
            "register-agent",
            "--agent-id",
            "web-1",
            "--public-key",
            &public,
            "--config",
        ])
        .arg(&path)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        d.join("vigil.db").exists(),
        "SQLite file next to the config"
    );

    let out = bin()
        .args([
            "register-agent",
            "--agent-id",
            "web-1",
            "--public-key",
            "nothex",
            "--config",
        ])
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("64 hex"));

    let out = bin()
        .args(["revoke-agent", "--agent-id", "nobody", "--config"])
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not registered"));

    let out = bin()
        .args(["create-token", "--name", "grafana", "--config"])
        .arg(&path)
        .output()
        .expect("runs");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("vgl_"));
}

#[test]
fn the_example_config_in_deploy_is_valid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    vigil_certs::create_ca(&certs, "CA", 30, false).expect("ca");
    vigil_certs::issue_server(&certs, &certs, &["localhost".into()], 30, false).expect("server");
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/aggregator.example.toml"
    );
    let path = dir.path().join("aggregator.toml");
    std::fs::copy(example, &path).expect("copy example");
    // The notification config it names, next to it.
    let notify = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/notify.example.yml");
    std::fs::copy(notify, dir.path().join("notify.example.yml")).expect("copy notify example");
    let out = check_config(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_bad_notification_config_lists_every_problem_and_exits_64() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    vigil_certs::create_ca(d, "CA", 30, false).expect("ca");
    vigil_certs::issue_server(d, d, &["localhost".into()], 30, false).expect("server");
    std::fs::write(
        d.join("notify.yml"),
        "route:\n  receiver: nobody\n  group_wait: soon\n  routes:\n    - matchers: ['a=~\"(\"']\n      mute_time_intervals: [never]\nreceivers: [{name: team}]\ncolour: red\n",
    )
    .expect("write");
    let path = d.join("aggregator.toml");
    std::fs::write(
        &path,
        "[quic]\nca = \"ca.crt\"\ncert = \"server.crt\"\nkey = \"server.key\"\n[notify]\nconfig_file = \"notify.yml\"\nqueue_capacity = 0\n",
    )
    .expect("write");
    let out = check_config(&path);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "undefined receiver \"nobody\"",
        "route.group_wait",
        "invalid regex",
        "undefined time interval \"never\"",
        "unknown key `colour`",
        "notify.queue_capacity",
    ] {
        assert!(err.contains(needle), "{needle} missing from:\n{err}");
    }
    // A missing file is reported too.
    std::fs::remove_file(d.join("notify.yml")).expect("rm");
    let out = check_config(&path);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("notify.config_file: cannot read"));
}

#[test]
fn a_cluster_on_sqlite_or_with_bad_timings_exits_64() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cluster.toml");
    std::fs::write(
        &path,
        "[quic]\nca = \"no.crt\"\ncert = \"no.crt\"\nkey = \"no.key\"\n[database]\nurl = \"sqlite:x.db\"\n\
         [cluster]\nmode = \"on\"\ncheck_interval = \"10ms\"\ncheck_timeout = \"20s\"\n",
    )
    .expect("write");
    let out = check_config(&path);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "cluster.mode = \"on\" needs PostgreSQL",
        "cluster.check_interval must be at least 100ms",
        "cluster.check_interval + cluster.check_timeout must be at most 15s",
    ] {
        assert!(err.contains(needle), "{needle} missing from:\n{err}");
    }
    std::fs::write(&path, "[cluster]\nmode = \"sometimes\"\n").expect("write");
    let out = check_config(&path);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sometimes"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_key_file_other_users_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    vigil_certs::create_ca(d, "CA", 30, false).expect("ca");
    vigil_certs::issue_server(d, d, &["localhost".into()], 30, false).expect("server");
    std::fs::copy(d.join("server.key"), d.join("https.key")).expect("copy");
    let path = d.join("aggregator.toml");
    std::fs::write(
        &path,
        "[http]\ntls_cert = \"server.crt\"\ntls_key = \"https.key\"\n\
         [quic]\nca = \"ca.crt\"\ncert = \"server.crt\"\nkey = \"server.key\"\n",
    )
    .expect("write");
    let chmod = |file: &str, mode: u32| {
        std::fs::set_permissions(d.join(file), std::fs::Permissions::from_mode(mode))
            .expect("chmod");
    };
    chmod("https.key", 0o600);
    let check = || check_config(&path);
    let out = check();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (file, field) in [("server.key", "quic:"), ("https.key", "http: ")] {
        chmod(file, 0o644);
        for cmd in ["check-config", "run"] {
            let out = bin()
                .args([cmd, "--config"])
                .arg(&path)
                .output()
                .expect("runs");
            assert_eq!(out.status.code(), Some(64), "{cmd} {file}");
            let err = String::from_utf8_lossy(&out.stderr);
            let fix = format!("chmod 600 {}", d.join(file).display());
            assert!(err.contains(field) && err.contains(&fix), "{cmd}: {err}");
        }
        chmod(file, 0o600);
    }
    assert!(check().status.success());
}
