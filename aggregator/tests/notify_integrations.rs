//! Each receiver integration end to end through the outbox: Slack and
//! Alertmanager to a real local HTTP receiver, email to a small SMTP
//! server (AUTH PLAIN / LOGIN, STARTTLS and implicit TLS with a certificate
//! from a test CA).

mod notify_support;

use std::time::Duration;

use serde_json::json;
use tokio::task::JoinHandle;
use vigil_aggregator::metrics::Metrics;
use vigil_aggregator::notify::Deliver;
use vigil_aggregator::notify::outbox::Outbox;
use vigil_aggregator::notify::receivers::GlobalConfig;

use notify_support::smtp::{self, SmtpServer};
use notify_support::*;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn slack_message_reaches_the_incoming_webhook() {
    let (store, backend) = open(false).await;
    let receiver = Receiver::default();
    let (url, server) = receiver.start().await;
    let yaml = "- name: team\n  slack_configs:\n    - channel: '#ops'\n      username: vigil\n      send_resolved: true\n";
    let global: GlobalConfig =
        serde_norway::from_str(&format!("slack_api_url: {url}/services/T0/B0/XYZ\n")).unwrap();
    let outbox = Outbox::new(
        store.db(),
        &receivers(yaml),
        &global,
        Metrics::new().notify.clone(),
        "http://vigil.test:8080",
        fast(),
    )
    .unwrap();
    let task = outbox.spawn();
    outbox
        .enqueue(notification("team", "k-slack"))
        .await
        .unwrap();
    let got = wait_requests(&receiver, 1, WAIT).await;
    assert_eq!(got[0].path, "/services/T0/B0/XYZ");
    let body = &got[0].body;
    assert_eq!(body["channel"], "#ops");
    assert_eq!(body["username"], "vigil");
    let a = &body["attachments"][0];
    assert_eq!(a["color"], "danger");
    assert_eq!(a["title"], "[FIRING:1] HighCpu");
    assert_eq!(a["title_link"], "http://vigil.test:8080");
    assert_eq!(a["mrkdwn_in"], json!(["text"]));
    let text = a["text"].as_str().unwrap();
    assert!(
        text.contains("*[FIRING] HighCpu [critical] on web-1 — CPU above 90% on web-1*"),
        "{text}"
    );
    assert!(
        text.contains("*[RESOLVED] HighCpu [critical] on web-2"),
        "{text}"
    );
    assert!(
        text.contains("<https://vigil.test/docs/runbooks/HighCpu.md|Runbook>"),
        "{text}"
    );
    assert!(text.contains("Started 2026-01-01T00:00:00Z"), "{text}");
    assert!(text.contains("resolved 2026-01-01T00:01:00.500Z"), "{text}");
    task.stop().await;
    server.abort();
    backend.close().await;
}

#[tokio::test]
async fn alertmanager_forward_posts_api_v2_alerts() {
    let (store, backend) = open(false).await;
    let receiver = Receiver::default();
    let (url, server) = receiver.start().await;
    let yaml = format!(
        "- name: team\n  alertmanager_configs:\n    - url: {url}/\n      http_config: {{bearer_token: t0ken}}\n"
    );
    let outbox = outbox(store.db(), &yaml, &Metrics::new(), fast());
    let task = outbox.spawn();
    outbox.enqueue(notification("team", "k-am")).await.unwrap();
    let got = wait_requests(&receiver, 1, WAIT).await;
    assert_eq!(got[0].path, "/api/v2/alerts");
    assert_eq!(got[0].headers["authorization"], "Bearer t0ken");
    let expected = json!([
        {
            "labels": {"alertname": "HighCpu", "host": "web-1", "severity": "critical", "team": "platform"},
            "annotations": {"summary": "CPU above 90% on web-1",
                            "runbook_url": "https://vigil.test/docs/runbooks/HighCpu.md"},
            "startsAt": "2026-01-01T00:00:00Z",
            "generatorURL": "http://vigil.test:8080/graph?g0.expr=cpu"
        },
        {
            "labels": {"alertname": "HighCpu", "host": "web-2", "severity": "critical", "team": "platform"},
            "annotations": {"summary": "CPU above 90% on web-2",
                            "runbook_url": "https://vigil.test/docs/runbooks/HighCpu.md"},
            "startsAt": "2025-12-31T23:50:00Z",
            "endsAt": "2026-01-01T00:01:00.500Z",
            "generatorURL": "http://vigil.test:8080/graph?g0.expr=cpu"
        }
    ]);
    assert_eq!(got[0].body, expected);
    task.stop().await;
    server.abort();
    backend.close().await;
}

/// Email through the test SMTP server, with AUTH `mechanism`.
async fn email_delivered(mechanism: &'static str) {
    let (store, backend) = open(false).await;
    let server = SmtpServer::default();
    let (addr, task_smtp) = server
        .start(smtp::Settings {
            auth: mechanism,
            tls: None,
            reject_rcpt: false,
            implicit_tls: false,
        })
        .await;
    let yaml = format!(
        "- name: team\n  email_configs:\n    - to: 'ops@example.com, Oncall <oncall@example.com>'\n      \
         smarthost: '{addr}'\n      require_tls: false\n      hello: vigil.test\n      \
         auth_username: vigil\n      auth_password: sm7p-pass\n      send_resolved: true\n      \
         headers: {{X-Vigil-Team: platform}}\n"
    );
    let global: GlobalConfig =
        serde_norway::from_str("smtp_from: Vigil <vigil@example.com>\n").unwrap();
    let outbox = Outbox::new(
        store.db(),
        &receivers(&yaml),
        &global,
        Metrics::new().notify.clone(),
        "http://vigil.test:8080",
        fast(),
    )
    .unwrap();
    let task = outbox.spawn();
    outbox
        .enqueue(notification("team", "k-mail"))
        .await
        .unwrap();
    wait_rows(&store.db(), WAIT, "delivered", |r| {
        r[0].status == "delivered"
    })
    .await;
    let mails = server.mails();
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(m.ehlo, "vigil.test");
    assert_eq!(
        m.auth,
        Some((
            "vigil".into(),
            "sm7p-pass".into(),
            mechanism.split(' ').next().unwrap().into()
        ))
    );
    assert_eq!(m.from, "<vigil@example.com>");
    assert_eq!(m.to, ["<ops@example.com>", "<oncall@example.com>"]);
    let data = smtp::quoted_printable_decode(&m.data);
    for needle in [
        "Subject: [FIRING:1] HighCpu\r\n",
        "From: Vigil <vigil@example.com>\r\n",
        "To: ops@example.com, Oncall <oncall@example.com>\r\n",
        "X-Vigil-Team: platform\r\n",
        "Content-Type: multipart/alternative",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Type: text/html; charset=utf-8",
        "[FIRING] HighCpu [critical] on web-1 — CPU above 90% on web-1",
        "[RESOLVED] HighCpu [critical] on web-2",
        "Runbook: https://vigil.test/docs/runbooks/HighCpu.md",
        "Started 2026-01-01T00:00:00Z",
        "<a href=\"https://vigil.test/docs/runbooks/HighCpu.md\">Runbook</a>",
    ] {
        assert!(data.contains(needle), "{needle:?} not in:\n{data}");
    }
    task.stop().await;
    task_smtp.abort();
    backend.close().await;
}

#[tokio::test]
async fn email_is_delivered_to_an_smtp_server_with_auth_plain() {
    email_delivered("PLAIN LOGIN").await;
}

#[tokio::test]
async fn email_is_delivered_to_an_smtp_server_with_auth_login() {
    email_delivered("LOGIN").await;
}

fn email_yaml(addr: &str, extra: &str) -> String {
    format!(
        "- name: team\n  email_configs:\n    - to: ops@example.com\n      from: vigil@example.com\n      \
         smarthost: '{addr}'\n      auth_username: vigil\n      auth_password: tls-pass\n{extra}"
    )
}

#[tokio::test]
async fn email_uses_starttls_when_required() {
    let (store, backend) = open(false).await;
    let certs = tempfile::tempdir().unwrap();
    let (acceptor, ca) = test_tls(certs.path());
    let server = SmtpServer::default();
    let (addr, task_smtp) = server
        .start(smtp::Settings {
            auth: "PLAIN",
            tls: Some(acceptor),
            reject_rcpt: false,
            implicit_tls: false,
        })
        .await;
    let extra = format!(
        "      tls_config: {{ca_file: '{}', server_name: localhost}}\n",
        ca.display()
    );
    let outbox = outbox(
        store.db(),
        &email_yaml(&addr, &extra),
        &Metrics::new(),
        fast(),
    );
    let task = outbox.spawn();
    outbox.enqueue(notification("team", "k-tls")).await.unwrap();
    wait_rows(&store.db(), WAIT, "delivered", |r| {
        r[0].status == "delivered"
    })
    .await;
    let mails = server.mails();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].tls, "the message went over STARTTLS");
    assert_eq!(
        mails[0].auth,
        Some(("vigil".into(), "tls-pass".into(), "PLAIN".into()))
    );
    task.stop().await;
    task_smtp.abort();
    backend.close().await;
}

/// An SMTP server speaking TLS from the first byte ("port 465" style) on a
/// random port, with a certificate from the CA in `dir`.
async fn implicit_tls_server(dir: &std::path::Path) -> (SmtpServer, String, JoinHandle<()>) {
    let (acceptor, _) = test_tls(dir);
    let server = SmtpServer::default();
    let (addr, task) = server
        .start(smtp::Settings {
            auth: "PLAIN",
            tls: Some(acceptor),
            implicit_tls: true,
            reject_rcpt: false,
        })
        .await;
    (server, addr, task)
}

#[tokio::test]
async fn email_uses_implicit_tls_on_any_port_when_forced() {
    let (store, backend) = open(false).await;
    let certs = tempfile::tempdir().unwrap();
    let (server, addr, task_smtp) = implicit_tls_server(certs.path()).await;
    let extra = format!(
        "      force_implicit_tls: true\n      tls_config: {{ca_file: '{}', server_name: localhost}}\n",
        vigil_certs::ca_paths(certs.path()).0.display()
    );
    let outbox = outbox(
        store.db(),
        &email_yaml(&addr, &extra),
        &Metrics::new(),
        fast(),
    );
    let task = outbox.spawn();
    outbox
        .enqueue(notification("team", "k-implicit"))
        .await
        .unwrap();
    wait_rows(&store.db(), WAIT, "delivered", |r| {
        r[0].status == "delivered"
    })
    .await;
    let mails = server.mails();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].tls, "the whole session was TLS");
    assert_eq!(
        mails[0].auth,
        Some(("vigil".into(), "tls-pass".into(), "PLAIN".into()))
    );
    assert_eq!(mails[0].to, ["<ops@example.com>"]);
    task.stop().await;
    task_smtp.abort();
    backend.close().await;
}

#[tokio::test]
async fn email_over_implicit_tls_refuses_a_certificate_from_another_ca() {
    let (store, backend) = open(false).await;
    let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_, our_ca) = test_tls(ours.path());
    let (server, addr, task_smtp) = implicit_tls_server(theirs.path()).await;
    // global.smtp_force_implicit_tls applies when the receiver says nothing.
    let global: GlobalConfig = serde_norway::from_str("smtp_force_implicit_tls: true\n").unwrap();
    let extra = format!(
        "      tls_config: {{ca_file: '{}', server_name: localhost}}\n",
        our_ca.display()
    );
    let outbox = Outbox::new(
        store.db(),
        &receivers(&email_yaml(&addr, &extra)),
        &global,
        Metrics::new().notify.clone(),
        "http://vigil.test:8080",
        fast(),
    )
    .unwrap();
    let task = outbox.spawn();
    outbox
        .enqueue(notification("team", "k-implicit-bad"))
        .await
        .unwrap();
    wait_rows(&store.db(), WAIT, "a failed attempt", |r| {
        r[0].last_error.is_some()
    })
    .await;
    let row = &rows(&store.db()).await[0];
    let error = row.last_error.as_deref().unwrap();
    assert!(error.contains("certificate"), "{error}");
    assert!(!error.contains("tls-pass"), "{error}");
    assert_eq!(row.status, "pending", "a TLS failure is retried");
    assert!(server.mails().is_empty(), "nothing delivered");
    task.stop().await;
    task_smtp.abort();
    backend.close().await;
}

#[tokio::test]
async fn email_is_not_sent_in_clear_when_tls_is_required_but_not_offered() {
    let (store, backend) = open(false).await;
    let server = SmtpServer::default();
    let (addr, task_smtp) = server
        .start(smtp::Settings {
            auth: "PLAIN",
            tls: None,
            reject_rcpt: false,
            implicit_tls: false,
        })
        .await;
    // require_tls defaults to true.
    let outbox = outbox(store.db(), &email_yaml(&addr, ""), &Metrics::new(), fast());
    let task = outbox.spawn();
    outbox
        .enqueue(notification("team", "k-notls"))
        .await
        .unwrap();
    wait_rows(&store.db(), WAIT, "a failed attempt", |r| {
        r[0].last_error.is_some()
    })
    .await;
    let row = &rows(&store.db()).await[0];
    let error = row.last_error.as_deref().unwrap();
    assert!(error.contains("STARTTLS"), "{error}");
    assert!(!error.contains("tls-pass"), "{error}");
    assert!(server.mails().is_empty(), "nothing sent in clear text");
    task.stop().await;
    task_smtp.abort();
    backend.close().await;
}

#[tokio::test]
async fn email_without_a_common_auth_mechanism_fails_clearly() {
    let (store, backend) = open(false).await;
    let server = SmtpServer::default();
    let (addr, task_smtp) = server
        .start(smtp::Settings {
            // Advertises a mechanism lettre does not speak: no common AUTH.
            auth: "CRAM-MD5",
            tls: None,
            reject_rcpt: false,
            implicit_tls: false,
        })
        .await;
    let extra = "      require_tls: false\n";
    let outbox = outbox(
        store.db(),
        &email_yaml(&addr, extra),
        &Metrics::new(),
        fast(),
    );
    let task = outbox.spawn();
    outbox
        .enqueue(notification("team", "k-noauth"))
        .await
        .unwrap();
    wait_rows(&store.db(), WAIT, "an error", |r| r[0].last_error.is_some()).await;
    let error = rows(&store.db()).await[0].last_error.clone().unwrap();
    assert!(error.contains("authentication"), "{error}");
    assert!(server.mails().is_empty());
    task.stop().await;
    task_smtp.abort();
    backend.close().await;
}

#[tokio::test]
async fn email_rejected_by_the_server_is_not_retried() {
    let (store, backend) = open(false).await;
    let server = SmtpServer::default();
    let (addr, task_smtp) = server
        .start(smtp::Settings {
            auth: "PLAIN",
            tls: None,
            reject_rcpt: true,
            implicit_tls: false,
        })
        .await;
    let extra = "      require_tls: false\n";
    let outbox = outbox(
        store.db(),
        &email_yaml(&addr, extra),
        &Metrics::new(),
        fast(),
    );
    let task = outbox.spawn();
    outbox.enqueue(notification("team", "k-550")).await.unwrap();
    wait_rows(&store.db(), WAIT, "failed", |r| r[0].status == "failed").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let row = &rows(&store.db()).await[0];
    assert_eq!(row.attempts, 1, "a 5xx reply is permanent");
    assert!(
        row.last_error.as_deref().unwrap().contains("no such user"),
        "{row:?}"
    );
    assert!(server.mails().is_empty());
    task.stop().await;
    task_smtp.abort();
    backend.close().await;
}

#[tokio::test]
async fn webhook_over_https_trusts_the_configured_ca_only() {
    let (store, backend) = open(false).await;
    let certs = tempfile::tempdir().unwrap();
    let (acceptor, ca) = test_tls(certs.path());
    let receiver = Receiver::default();
    let (addr, server) = receiver.start_tls(acceptor).await;
    let yaml = format!(
        "- name: trusted\n  webhook_configs:\n    - url: https://{addr}/hook\n      \
         http_config:\n        tls_config: {{ca_file: '{}', server_name: localhost}}\n\
         - name: untrusted\n  webhook_configs:\n    - url: https://{addr}/hook\n      \
         http_config:\n        tls_config: {{server_name: localhost}}\n",
        ca.display()
    );
    let outbox = outbox(store.db(), &yaml, &Metrics::new(), fast());
    let task = outbox.spawn();
    outbox
        .enqueue(notification("trusted", "k-tls-ok"))
        .await
        .unwrap();
    outbox
        .enqueue(notification("untrusted", "k-tls-bad"))
        .await
        .unwrap();
    wait_rows(&store.db(), WAIT, "one delivered, one failing", |r| {
        let of = |name: &str| r.iter().find(|r| r.receiver == name).cloned();
        of("trusted").is_some_and(|r| r.status == "delivered")
            && of("untrusted").is_some_and(|r| r.last_error.is_some())
    })
    .await;
    let got = receiver.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body["receiver"], "trusted");
    let rows = rows(&store.db()).await;
    let bad = rows.iter().find(|r| r.receiver == "untrusted").unwrap();
    assert_eq!(bad.status, "pending", "a TLS failure is retried");
    assert!(
        bad.last_error.as_deref().unwrap().contains("TLS"),
        "{bad:?}"
    );
    task.stop().await;
    server.abort();
    backend.close().await;
}
