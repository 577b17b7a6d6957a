//! HTTPS on the HTTP listener (`[http] tls_cert` / `tls_key`): the real
//! aggregator serves the dashboard and API over TLS with a certificate from
//! the project's own CA (vigil-certs), cookies come back `Secure`, and a
//! bad TLS setup stops `check-config` / `run` with exit 64.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vigil_aggregator::http::session::{Role, accounts};

fn certs(dir: &Path) {
    vigil_certs::create_ca(dir, "CA", 30, false).expect("ca");
    vigil_certs::issue_server(dir, dir, &["localhost".into()], 30, false).expect("server");
}

fn write_config(dir: &Path, http_extra: &str) -> std::path::PathBuf {
    let path = dir.join("aggregator.toml");
    std::fs::write(
        &path,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n{http_extra}\n\
             [quic]\nlisten = \"127.0.0.1:0\"\nca = \"ca.crt\"\ncert = \"server.crt\"\nkey = \"server.key\"\n"
        ),
    )
    .expect("config");
    path
}

/// One HTTP/1.1 request over TLS, trusting only the Vigil CA in `dir`.
async fn https(dir: &Path, addr: SocketAddr, request: String) -> (u16, Vec<String>, String) {
    vigil_common::tls::install_default_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in vigil_common::tls::load_certs(&dir.join("ca.crt")).expect("ca") {
        roots.add(cert).expect("root");
    }
    let config = vigil_common::tls::http_client_config(roots).expect("client config");
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    tls.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut raw))
        .await
        .expect("in time")
        .ok();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    (
        status,
        lines.map(str::to_string).collect(),
        body.to_string(),
    )
}

fn header<'a>(headers: &'a [String], name: &str, starts: &str) -> Option<&'a str> {
    headers.iter().find_map(|h| {
        let (k, v) = h.split_once(':')?;
        (k.eq_ignore_ascii_case(name) && v.trim().starts_with(starts)).then_some(v.trim())
    })
}

#[tokio::test]
async fn the_tls_listener_serves_https_and_marks_cookies_secure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    certs(d);
    let path = write_config(d, "tls_cert = \"server.crt\"\ntls_key = \"server.key\"");
    let loaded = vigil_aggregator::Config::load(&path).expect("valid config");
    let running = vigil_aggregator::start(loaded).await.expect("starts");
    assert!(running.wait_store_ready(Duration::from_secs(10)).await);
    let addr = running.http_addr;
    accounts::create(
        &running.state.store.db(),
        "ann",
        Role::Viewer,
        common::web::PASSWORD,
    )
    .await
    .expect("user");

    let host = format!("localhost:{}", addr.port());
    let (status, headers, body) = https(
        d,
        addr,
        format!("GET /login HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let csrf_cookie = header(&headers, "set-cookie", "vigil_login_csrf=").expect("cookie");
    assert!(csrf_cookie.ends_with("; Secure"), "{csrf_cookie}");
    let token = csrf_cookie
        .split(';')
        .next()
        .and_then(|c| c.split_once('='))
        .map(|(_, v)| v.to_string())
        .expect("token");

    let form = format!(
        "username=ann&password={}&csrf_token={token}&next=%2Fhosts",
        common::web::PASSWORD.replace(' ', "+")
    );
    let (status, headers, body) = https(
        d,
        addr,
        format!(
            "POST /login HTTP/1.1\r\nHost: {host}\r\nOrigin: https://{host}\r\n\
             Cookie: vigil_login_csrf={token}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{form}",
            form.len()
        ),
    )
    .await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(header(&headers, "location", ""), Some("/hosts"));
    let session = header(&headers, "set-cookie", "vigil_session=").expect("session cookie");
    let id = session
        .split(';')
        .next()
        .and_then(|c| c.split_once('='))
        .map(|(_, v)| v.to_string())
        .expect("id");
    assert_eq!(
        session,
        format!("vigil_session={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age=604800; Secure")
    );

    // The API over HTTPS with that cookie (through the guard's per-IP limit).
    let (status, _, body) = https(
        d,
        addr,
        format!(
            "GET /api/v1/session HTTP/1.1\r\nHost: {host}\r\nCookie: vigil_session={id}\r\n\
             Connection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"user\":\"ann\""), "{body}");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
    running.shutdown().await;
}

#[test]
fn a_bad_tls_setup_exits_64_with_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    certs(d);
    // A second certificate whose key does not belong to the first one.
    let other = d.join("other");
    std::fs::create_dir(&other).expect("dir");
    vigil_certs::issue_server(d, &other, &["localhost".into()], 30, false).expect("server");
    for (extra, needle) in [
        (
            "tls_cert = \"missing.crt\"\ntls_key = \"server.key\"",
            "missing.crt",
        ),
        (
            "tls_cert = \"server.crt\"\ntls_key = \"other/server.key\"",
            "do not make a usable certificate and key",
        ),
        (
            "tls_cert = \"server.crt\"",
            "http.tls_cert and http.tls_key must be given together",
        ),
        ("session_idle_timeout = \"1s\"", "http.session_idle_timeout"),
        ("session_max_age = \"10s\"", "http.session_max_age"),
    ] {
        let path = write_config(d, extra);
        for cmd in ["check-config", "run"] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil-aggregator"))
                .args([cmd, "--config"])
                .arg(&path)
                .output()
                .expect("runs");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(64), "{cmd} {extra}: {err}");
            assert!(err.contains(needle), "{cmd}: {needle:?} not in {err}");
        }
    }
    // And the good one passes.
    let path = write_config(d, "tls_cert = \"server.crt\"\ntls_key = \"server.key\"");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil-aggregator"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
