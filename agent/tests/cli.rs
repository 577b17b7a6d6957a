//! The real `vigil-agent` binary: exit codes, problem reports, signals.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Pki;

const BIN: &str = env!("CARGO_BIN_EXE_vigil-agent");

fn agent(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run vigil-agent")
}

fn good_config(pki: &Pki, endpoint: &str) -> String {
    format!(
        r#"
agent_id = "{id}"
roles = ["api"]
interval = "200ms"
[aggregator]
endpoints = ["{endpoint}"]
server_name = "localhost"
ca = "ca.crt"
cert = "{id}.crt"
key = "{id}.key"
signing_key = "{id}.sign.key"
connect_timeout = "200ms"
[shutdown]
drain_timeout = "500ms"
"#,
        id = pki.agent_id
    )
}

fn write(dir: &Path, text: &str) -> String {
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).expect("write config");
    path.display().to_string()
}

#[test]
fn bad_config_exits_64_and_lists_every_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        r#"
agent_id = "web-1"
interval = "5ms"
flavour = "vanilla"
[aggregator]
endpoints = []
server_name = "localhost"
ca = "missing-ca.crt"
cert = "web-1.crt"
key = "web-1.key"
signing_key = "web-1.sign.key"
colour = "red"
"#,
    );
    for command in ["check-config", "run"] {
        let out = agent(&[command, "--config", &path]);
        assert_eq!(out.status.code(), Some(64), "{command}");
        assert!(out.stdout.is_empty(), "{command}: nothing on stdout");
        let stderr = String::from_utf8_lossy(&out.stderr);
        for needle in [
            "unknown key `flavour`",
            "unknown key `aggregator.colour`",
            "interval: 5ms is out of range",
            "aggregator.endpoints: must list at least one",
            "aggregator.ca: ",
            "aggregator.cert: ",
            "aggregator.key: ",
            "aggregator.signing_key: ",
        ] {
            assert!(
                stderr.contains(needle),
                "{command}: no {needle:?} in\n{stderr}"
            );
        }
        assert!(
            !stderr.contains("agent started"),
            "{command}: nothing started"
        );
    }
}

#[test]
fn an_unusable_spool_folder_stops_the_start() {
    let pki = Pki::new("web-9");
    std::fs::write(pki.path("occupied"), "a file, not a folder").expect("write");
    let text = format!(
        "{}\n[spool]\ndir = \"occupied/spool\"\n",
        good_config(&pki, "127.0.0.1:4433")
    );
    let path = write(pki.dir(), &text);
    for command in ["check-config", "run"] {
        let out = agent(&[command, "--config", &path]);
        assert_eq!(out.status.code(), Some(64), "{command}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let expected = format!("spool.dir: {}", pki.path("occupied").display());
        assert!(stderr.contains(&expected), "{command}: {stderr}");
        assert!(!stderr.contains("agent started"), "{command}: {stderr}");
    }
}

#[test]
fn missing_config_file_exits_64() {
    let out = agent(&["check-config", "--config", "/nonexistent/agent.toml"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/agent.toml"));
}

#[test]
fn check_config_accepts_a_good_config() {
    let pki = Pki::new("web-7");
    let path = write(pki.dir(), &good_config(&pki, "127.0.0.1:4433"));
    let out = agent(&["check-config", "--config", &path]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "config OK");
}

#[test]
fn run_stops_gracefully_on_sigterm() {
    let pki = Pki::new("web-8");
    // Nothing listens there: the agent spools batches and keeps retrying.
    let addr = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port");
    let path = write(pki.dir(), &good_config(&pki, &addr.to_string()));
    let mut child = Command::new(BIN)
        .args(["run", "--config", &path])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "still running"
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let started = Instant::now();
    let out = child.wait_with_output().expect("wait");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "drain is bounded"
    );
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in ["agent started", "SIGTERM", "agent stopped"] {
        assert!(stderr.contains(needle), "no {needle:?} in\n{stderr}");
    }
}

#[test]
fn a_key_file_other_users_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let pki = Pki::new("web-6");
    let path = write(pki.dir(), &good_config(&pki, "127.0.0.1:4433"));
    let chmod = |file: &str, mode: u32| {
        std::fs::set_permissions(pki.path(file), std::fs::Permissions::from_mode(mode))
            .expect("chmod");
    };
    for (file, field, mode) in [
        ("web-6.key", "aggregator.key", 0o644),
        ("web-6.sign.key", "aggregator.signing_key", 0o604),
    ] {
        chmod(file, mode);
        for command in ["check-config", "run"] {
            let out = agent(&[command, "--config", &path]);
            assert_eq!(out.status.code(), Some(64), "{command} {file}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            let fix = format!("chmod 600 {}", pki.path(file).display());
            assert!(
                stderr.contains(field) && stderr.contains(&fix),
                "{command}: {stderr}"
            );
            assert!(!stderr.contains("agent started"), "{command}: {stderr}");
        }
        chmod(file, 0o600);
    }
    // Group-readable is refused unless root owns the file (a deliberate
    // root:vigil 0640).
    chmod("web-6.key", 0o640);
    let root = std::fs::metadata(pki.path("web-6.key"))
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .expect("metadata");
    let out = agent(&["check-config", "--config", &path]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if root {
        assert_eq!(
            out.status.code(),
            Some(0),
            "root:group 0640 is allowed: {stderr}"
        );
        // The same mode on a file another user owns is refused.
        std::os::unix::fs::chown(pki.path("web-6.key"), Some(65534), None).expect("chown");
        let out = agent(&["check-config", "--config", &path]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{stderr}");
        assert!(
            stderr.contains("readable by its group and not owned by root"),
            "{stderr}"
        );
    } else {
        assert_eq!(out.status.code(), Some(64), "{stderr}");
        assert!(stderr.contains("readable by its group"), "{stderr}");
    }
}
