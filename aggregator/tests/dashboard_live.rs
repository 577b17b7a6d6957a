//! The dashboard's live WebSocket over a real HTTP listener: history then
//! ticks that follow new data, panel sets, a foreign `Origin` and the
//! signed-out refused, and a client that never reads dropped and counted.

mod dashboard_support;

use std::time::Duration;

use dashboard_support::{Backend, Fixture, start, start_with};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use vigil_aggregator::http::web::config::DashboardConfig;

/// Opens the live socket as the admin with `origin`.
async fn open_live(
    f: &Fixture,
    query: &str,
    origin: &str,
    stream: tokio::net::TcpStream,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    tokio_tungstenite::tungstenite::Error,
> {
    let mut req = format!("ws://{}/ws/live?{query}", f.addr).into_client_request()?;
    req.headers_mut()
        .insert("cookie", f.admin.cookie.parse().expect("cookie"));
    req.headers_mut()
        .insert("origin", origin.parse().expect("origin"));
    tokio_tungstenite::client_async(req, stream)
        .await
        .map(|(ws, _)| ws)
}

async fn next_json(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
) -> serde_json::Value {
    let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a frame within 10 s");
    match msg {
        Some(Ok(Message::Text(t))) => serde_json::from_str(&t).expect("json"),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

async fn connect(f: &Fixture) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(f.addr)
        .await
        .expect("connect")
}

#[tokio::test]
async fn the_live_socket_pushes_history_then_ticks_that_follow_the_data() {
    let config = DashboardConfig {
        live_interval: Duration::from_millis(300),
        ..DashboardConfig::default()
    };
    let f = start_with(Backend::Sqlite, config, None).await;
    let origin = format!("http://{}", f.addr);
    let mut ws = open_live(&f, "set=overview", &origin, connect(&f).await)
        .await
        .expect("upgrade");
    let history = next_json(&mut ws).await;
    assert_eq!(history["type"], "history", "{history}");
    assert_eq!(
        history["series"].as_array().map(Vec::len),
        Some(8),
        "{history}"
    );
    let tick = next_json(&mut ws).await;
    assert_eq!(tick["type"], "tick", "{tick}");
    let cpu = |frame: &serde_json::Value| {
        frame["figures"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["id"] == "cpu"))
            .map(|x| x["text"].as_str().unwrap_or_default().to_string())
    };
    // avg(0.42, 0.2) = 31.0%
    assert_eq!(cpu(&tick).as_deref(), Some("31.0%"), "{tick}");
    assert_eq!(tick["tiles"].as_array().map(Vec::len), Some(5), "{tick}");
    assert_eq!(tick["alerts"]["firing"], 2, "{tick}");
    // New data shows up in a later frame without reconnecting.
    let now = vigil_common::now_ms();
    dashboard_support::report(&f.state, "agent-web-1", "web-1", 2, now, 0.8).await;
    let mut seen = false;
    for _ in 0..20 {
        let frame = next_json(&mut ws).await;
        if cpu(&frame).as_deref() == Some("50.0%") {
            seen = true;
            break;
        }
    }
    assert!(seen, "the new CPU figure never arrived");
    assert!(f.state.metrics.dashboard.frames_sent.get() >= 3);
    ws.send(Message::Close(None)).await.expect("close");

    // A host set: its own figures; an unknown host or set is refused.
    let mut ws = open_live(&f, "set=host&host=web-1", &origin, connect(&f).await)
        .await
        .expect("upgrade");
    let tick = next_json(&mut ws).await;
    assert_eq!(tick["type"], "tick", "{tick}");
    assert!(
        tick["figures"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["id"] == "disk" && x["text"] == "40.0%")),
        "{tick}"
    );
    for (query, status) in [("set=host&host=nope", 404), ("set=everything", 400)] {
        match open_live(&f, query, &origin, connect(&f).await).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                assert_eq!(r.status().as_u16(), status, "{query}")
            }
            other => panic!(
                "{query}: expected {status}, got {:?}",
                other.map(|_| "an open socket")
            ),
        }
    }
}

#[tokio::test]
async fn the_live_socket_refuses_a_foreign_origin_and_the_signed_out() {
    let f = start(Backend::Sqlite).await;
    for origin in ["http://evil.example", "null", "http://127.0.0.1:1"] {
        match open_live(&f, "set=overview", origin, connect(&f).await).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                assert_eq!(r.status().as_u16(), 403, "{origin}")
            }
            other => panic!(
                "{origin}: expected 403, got {:?}",
                other.map(|_| "an open socket")
            ),
        }
    }
    let refused = f.state.metrics.render();
    assert!(
        refused.contains("vigil_aggregator_dashboard_live_refused_total{reason=\"origin\"} 3"),
        "{refused}"
    );
    // Without a session: redirected to the login page, no socket.
    let mut req = format!("ws://{}/ws/live", f.addr)
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "origin",
        format!("http://{}", f.addr).parse().expect("origin"),
    );
    match tokio_tungstenite::client_async(req, connect(&f).await).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 303),
        other => panic!(
            "expected a redirect, got {:?}",
            other.map(|_| "an open socket")
        ),
    }
}

#[tokio::test]
async fn a_client_that_does_not_read_is_dropped_and_counted() {
    let config = DashboardConfig {
        live_interval: Duration::from_millis(250),
        client_queue: 1,
        ..DashboardConfig::default()
    };
    // Small kernel buffers on both ends stand in for a slow network.
    let f = start_with(Backend::Sqlite, config, Some(4096)).await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let stream = socket.connect(f.addr).await.expect("connect");
    let origin = format!("http://{}", f.addr);
    let ws = open_live(&f, "set=overview", &origin, stream)
        .await
        .expect("upgrade");
    // Never read. The server must give up on this client, not queue forever.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while f.state.metrics.dashboard.slow_clients_dropped.get() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow client was never dropped"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let text = f.state.metrics.render();
    assert!(
        text.contains("vigil_aggregator_dashboard_live_slow_clients_dropped_total 1"),
        "{text}"
    );
    // Its slot is given back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(f.state.metrics.dashboard.clients.get(), 0);
    drop(ws);
}

#[tokio::test]
async fn sockets_beyond_max_clients_are_refused_with_503() {
    let config = DashboardConfig {
        max_clients: 1,
        ..DashboardConfig::default()
    };
    let f = start_with(Backend::Sqlite, config, None).await;
    let origin = format!("http://{}", f.addr);
    let mut first = open_live(&f, "set=overview", &origin, connect(&f).await)
        .await
        .expect("upgrade");
    match open_live(&f, "set=overview", &origin, connect(&f).await).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 503),
        other => panic!("expected 503, got {:?}", other.map(|_| "an open socket")),
    }
    let text = f.state.metrics.render();
    assert!(
        text.contains("vigil_aggregator_dashboard_live_refused_total{reason=\"full\"} 1"),
        "{text}"
    );
    // Once the first one leaves, there is room again.
    first.send(Message::Close(None)).await.expect("close");
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match open_live(&f, "set=overview", &origin, connect(&f).await).await {
            Ok(_) => break,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the slot was never given back: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
