//! The dashboard's live socket as a browser opens it: `GET
//! /ws/live?set=host&host=<probe host>` with the session cookie and the
//! page's own `Origin`. Every `tick` frame's `cpu` figure carries the probe's
//! latest sequence number (scaled, see [`super::config::LIVE_SCALE`]).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::config::{LIVE_PANEL, LIVE_SCALE};
use super::{Plan, ProbeError, Shared, stopped};

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Pause before reopening a socket that closed.
const REOPEN_PAUSE: Duration = Duration::from_millis(200);

async fn open(plan: &Plan, host: &str, cookie: &str) -> Result<Socket, ProbeError> {
    let host: String = form_urlencoded::byte_serialize(host.as_bytes()).collect();
    let url = format!("ws://{}/ws/live?set=host&host={host}", plan.http);
    let bad = |e: &dyn std::fmt::Display| ProbeError::Live(format!("{url}: {e}"));
    let mut req = url.as_str().into_client_request().map_err(|e| bad(&e))?;
    let h = req.headers_mut();
    h.insert("cookie", cookie.parse().map_err(|e| bad(&e))?);
    h.insert(
        "origin",
        format!("http://{}", plan.http)
            .parse()
            .map_err(|e| bad(&e))?,
    );
    let stream = tokio::net::TcpStream::connect(plan.http)
        .await
        .map_err(|e| bad(&e))?;
    let (ws, _) = tokio_tungstenite::client_async(req, stream)
        .await
        .map_err(|e| bad(&e))?;
    Ok(ws)
}

/// What one text frame says: the sequence number in a tick's panel.
fn sequence(text: &str) -> Result<Option<u64>, &'static str> {
    let frame: serde_json::Value = serde_json::from_str(text).map_err(|_| "live_decode")?;
    match frame["type"].as_str() {
        Some("tick") => Ok(frame["figures"]
            .as_array()
            .and_then(|f| f.iter().find(|x| x["id"] == LIVE_PANEL))
            .and_then(|x| x["value"].as_f64())
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|v| (v * LIVE_SCALE).round() as u64)),
        Some("error") => Err("live_error_frame"),
        _ => Ok(None),
    }
}

/// Reads frames until the socket ends (`Ok`) or `stop`.
async fn read(ws: &mut Socket, shared: &Shared, stop: &mut watch::Receiver<bool>) -> bool {
    loop {
        let msg = tokio::select! {
            m = ws.next() => m,
            _ = stopped(stop) => return true,
        };
        match msg {
            Some(Ok(Message::Text(t))) => match sequence(&t) {
                Ok(Some(seq)) => shared.lock().seen_live(seq, Instant::now()),
                Ok(None) => {}
                Err(kind) => shared.lock().error(kind),
            },
            Some(Ok(_)) => {}
            None | Some(Err(_)) => return false,
        }
    }
}

/// Opens the socket (an error if it cannot: not signed in, foreign
/// origin, unknown host) and reads it until `stop`, reopening it when it
/// closes (counted as `live_reopened`).
pub async fn start(
    plan: &Plan,
    host: &str,
    cookie: &str,
    shared: Shared,
    mut stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, ProbeError> {
    let mut ws = open(plan, host, cookie).await?;
    let (plan, host, cookie) = (plan.clone(), host.to_string(), cookie.to_string());
    Ok(tokio::spawn(async move {
        loop {
            if read(&mut ws, &shared, &mut stop).await {
                let _ = ws.close(None).await;
                return;
            }
            shared.lock().error("live_reopened");
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(REOPEN_PAUSE) => {}
                    _ = stopped(&mut stop) => return,
                }
                match open(&plan, &host, &cookie).await {
                    Ok(s) => {
                        ws = s;
                        break;
                    }
                    Err(_) => shared.lock().error("live_open"),
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_figure_of_a_tick_is_the_sequence() {
        let t = r#"{"type":"tick","t":1,"figures":[{"id":"memory","value":0.5},{"id":"cpu","value":0.000123}]}"#;
        assert_eq!(sequence(t), Ok(Some(123)));
        assert_eq!(
            sequence(r#"{"type":"tick","figures":[{"id":"cpu","value":null}]}"#),
            Ok(None)
        );
        assert_eq!(sequence(r#"{"type":"history"}"#), Ok(None));
        assert_eq!(
            sequence(r#"{"type":"error","message":"x"}"#),
            Err("live_error_frame")
        );
        assert_eq!(sequence("not json"), Err("live_decode"));
    }
}
