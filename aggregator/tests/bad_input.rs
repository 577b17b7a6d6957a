//! Bad input over real HTTP: the aggregator started as `vigil-aggregator
//! run` starts it, every operation of its OpenAPI document sent an
//! oversized body, malformed JSON, a wrong content type and garbage in
//! each documented query parameter. Every answer must come in time, never
//! be a 5xx, and a 4xx from the API must be the JSON error envelope with a
//! message. Then the query limits one by one: bad times, steps and limits,
//! bad PromQL, huge regexes and queries, too many points per series.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Bigger than every body cap in the configuration below (1 MiB).
const OVERSIZED: usize = 2 * 1024 * 1024;

/// Caps small enough that an oversized body is cheap to send.
fn start_config(dir: &Path) -> std::path::PathBuf {
    vigil_certs::create_ca(dir, "CA", 30, false).expect("ca");
    vigil_certs::issue_server(dir, dir, &["localhost".into()], 30, false).expect("server");
    let path = dir.join("aggregator.toml");
    std::fs::write(
        &path,
        // Hundreds of requests from one token and address: no rate limits.
        "[http]\nlisten = \"127.0.0.1:0\"\n\
         rate_limit_per_token = { per_second = 0, burst = 1 }\n\
         rate_limit_per_ip = { per_second = 0, burst = 1 }\n\
         login_rate_limit_per_ip = { per_minute = 0, burst = 1 }\n\
         [quic]\nlisten = \"127.0.0.1:0\"\nca = \"ca.crt\"\ncert = \"server.crt\"\nkey = \"server.key\"\n\
         [http_ingest]\nmax_compressed_bytes = 1048576\nmax_import_bytes = 1048576\n",
    )
    .expect("config");
    path
}

struct Server {
    running: vigil_aggregator::Running,
    base: String,
    token: String,
    client: reqwest::Client,
}

async fn start(dir: &Path) -> Server {
    let loaded = vigil_aggregator::Config::load(&start_config(dir)).expect("valid config");
    let running = vigil_aggregator::start(loaded).await.expect("starts");
    assert!(running.wait_store_ready(Duration::from_secs(20)).await);
    let token = vigil_aggregator::testing::add_token(&running.state, "admin", "admin")
        .await
        .expect("token");
    Server {
        base: format!("http://{}", running.http_addr),
        running,
        token,
        client: reqwest::Client::builder()
            // "Never a hang": a reply must come well within the query timeout.
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
    }
}

/// One answer: status, content type, body.
struct Answer {
    status: StatusCode,
    content_type: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

impl Server {
    async fn send(
        &self,
        method: &Method,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Answer {
        let mut req = self
            .client
            .request(method.clone(), format!("{}{path_and_query}", self.base))
            .bearer_auth(&self.token);
        if let Some(ct) = content_type {
            req = req.header(reqwest::header::CONTENT_TYPE, ct);
        }
        let started = Instant::now();
        let resp = req
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path_and_query}: no answer: {e}"));
        let status = resp.status();
        let content_type = (resp.headers().get(reqwest::header::CONTENT_TYPE))
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = resp.text().await.unwrap_or_default();
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{method} {path_and_query} took {:?}",
            started.elapsed()
        );
        Answer {
            status,
            content_type,
            body,
        }
    }

    /// An oversized body over a raw connection: the server may answer
    /// (413) and close before the body is through, which an HTTP client
    /// reports as a failed send; the answer is read all the same.
    async fn send_oversized(&self, method: &Method, path: &str, content_type: &str) -> Answer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let stream = tokio::net::TcpStream::connect(self.running.http_addr)
            .await
            .expect("connect");
        let (mut rd, mut wr) = stream.into_split();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
             Content-Type: {content_type}\r\nContent-Length: {OVERSIZED}\r\nConnection: close\r\n\r\n",
            self.token
        );
        let writer = tokio::spawn(async move {
            wr.write_all(head.as_bytes()).await?;
            wr.write_all(&vec![b'x'; OVERSIZED]).await
        });
        let mut raw = Vec::new();
        let started = Instant::now();
        let read = tokio::time::timeout(Duration::from_secs(30), async {
            // Until the head and the announced body are in, or the server closes.
            let mut buf = [0u8; 8192];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => raw.extend_from_slice(&buf[..n]),
                }
                if response_complete(&raw) {
                    break;
                }
            }
        })
        .await;
        assert!(
            read.is_ok(),
            "{method} {path}: no answer in {:?}",
            started.elapsed()
        );
        writer.abort();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("{method} {path}: no answer to an oversized body"));
        let mut lines = head.lines();
        let status = (lines.next())
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse::<u16>().ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .expect("a status line");
        let content_type = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        Answer {
            status,
            content_type,
            body: body.to_string(),
        }
    }

    async fn get(&self, path_and_query: &str) -> Answer {
        self.send(&Method::GET, path_and_query, None, Vec::new())
            .await
    }
}

/// Whether `raw` holds a whole response with a `Content-Length` body.
fn response_complete(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok());
    length.is_some_and(|n| body.len() >= n)
}

/// Never a 5xx; a 4xx from the API is the JSON error envelope with a message.
fn assert_sane(what: &str, path: &str, a: &Answer) {
    assert!(
        !a.status.is_server_error(),
        "{what}: {} {}",
        a.status,
        a.body
    );
    let api = path.starts_with("/api/") || path.starts_with("/prometheus/");
    if api && a.status.is_client_error() {
        let json = a.json();
        assert!(
            a.content_type.starts_with("application/json"),
            "{what}: {} with {:?}: {}",
            a.status,
            a.content_type,
            a.body
        );
        assert_eq!(json["status"], "error", "{what}: {}", a.body);
        let message = json["error"].as_str().unwrap_or_default();
        assert!(message.len() > 5, "{what}: no clear message: {}", a.body);
    }
}

/// A documented path with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{name}", "x")
        .replace("{id}", "1")
        .replace("{uid}", "x")
        .replace(['{', '}'], "")
}

/// The media type an operation's body is documented with.
fn body_media(op: &Value) -> Option<String> {
    op["requestBody"]["content"]
        .as_object()
        .and_then(|c| c.keys().next().cloned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_refuses_bad_input_with_a_4xx_and_a_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path()).await;
    let doc = server.get("/api/openapi.json").await.json();
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() > 30, "the document lists the routes");
    let (mut with_body, mut param_probes) = (0, 0);
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            let method: Method = method.to_uppercase().parse().expect("a method");
            let url = concrete(path);
            let what = |case: &str| format!("{method} {path} ({case})");
            let media = body_media(op);

            // An oversized body: refused (413) wherever a body is read, and
            // never a 5xx where it is not.
            let ct = media.as_deref().unwrap_or("application/json");
            let a = server.send_oversized(&method, &url, ct).await;
            assert_sane(&what("oversized body"), path, &a);
            // (Routes for the dashboard's session refuse a token first.)
            let session_only = a.status == StatusCode::UNAUTHORIZED;
            let api = path.starts_with("/api/") || path.starts_with("/prometheus/");
            if media.is_some() && !api {
                // A browser form shows the form again with the message
                // (sign-in) or sends the browser on (sign-out without a
                // session): never a success.
                assert!(
                    !a.status.is_success(),
                    "{}: {}",
                    what("oversized body"),
                    a.status
                );
            }
            if media.is_some() && api && !path.contains("{") && !session_only {
                assert_eq!(
                    a.status,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "{}: {}",
                    what("oversized body"),
                    a.body
                );
            }

            if let Some(media) = &media {
                with_body += 1;
                // Malformed content of the documented type.
                let a = server
                    .send(&method, &url, Some(media), b"{\"unterminated".to_vec())
                    .await;
                assert_sane(&what("malformed body"), path, &a);
                if media == "application/json" && !path.contains("{") && !session_only {
                    assert_eq!(
                        a.status,
                        StatusCode::BAD_REQUEST,
                        "{}: {}",
                        what("malformed JSON"),
                        a.body
                    );
                }
                // A content type the route does not take.
                let a = server
                    .send(&method, &url, Some("image/png"), b"\x89PNG".to_vec())
                    .await;
                assert_sane(&what("wrong content type"), path, &a);
                assert!(
                    if api {
                        a.status.is_client_error()
                    } else {
                        !a.status.is_success()
                    },
                    "{}: {} {}",
                    what("wrong content type"),
                    a.status,
                    a.body
                );
            }

            // Garbage in every documented query parameter, one at a time.
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            for p in params.iter().filter(|p| p["in"] == "query") {
                let name = p["name"].as_str().expect("name");
                for bad in [
                    "not-a-value",
                    "-1",
                    "99999999999999999999999999",
                    "1e400",
                    "NaN",
                    "{",
                    "%ZZ",
                    "\u{0}",
                ] {
                    let q: String = form_urlencoded::Serializer::new(String::new())
                        .append_pair(name, bad)
                        .finish();
                    let a = server
                        .send(&method, &format!("{url}?{q}"), None, Vec::new())
                        .await;
                    assert_sane(&what(&format!("{name}={bad:?}")), path, &a);
                    param_probes += 1;
                }
            }
        }
    }
    assert!(
        with_body >= 10,
        "bodies were sent to {with_body} operations"
    );
    assert!(
        param_probes >= 200,
        "{param_probes} bad parameters were sent"
    );
    server.running.shutdown().await;
}

/// A query parameter string.
fn q(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expensive_and_malformed_queries_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path()).await;
    let cases: Vec<(String, &str)> = vec![
        // Times, steps and durations.
        (q(&[("query", "up"), ("time", "yesterday")]), "time"),
        (q(&[("query", "up"), ("time", "1e400")]), "time"),
        (q(&[("query", "up"), ("timeout", "-1s")]), "timeout"),
        (q(&[("query", "up"), ("timeout", "soon")]), "timeout"),
        // PromQL.
        (q(&[("query", "sum(up")]), "unclosed left parenthesis"),
        (q(&[("query", "")]), "query"),
        (q(&[("query", "rate(up)")]), "expected type matrix"),
        // promql-parser panicked on this one (found by the fuzz target).
        (
            q(&[("query", "vector(1)[5m:1111111111111111111111]")]),
            "query",
        ),
        // A regex that compiles to more than the regex engine's size limit.
        (
            q(&[("query", "{__name__=~\"(\\\\w{1000}){1000}\"}")]),
            "query",
        ),
    ];
    for (query, needle) in &cases {
        let path = format!("/prometheus/api/v1/query?{query}");
        let a = server.get(&path).await;
        assert_sane(&path, &path, &a);
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{path}: {}", a.body);
        assert!(a.body.contains(needle), "{path}: {}", a.body);
    }

    let range = |extra: &[(&str, &str)]| {
        let mut pairs = vec![("query", "up"), ("start", "0"), ("end", "3600")];
        pairs.extend_from_slice(extra);
        format!("/prometheus/api/v1/query_range?{}", q(&pairs))
    };
    for (path, needle) in [
        (range(&[("step", "0")]), "step"),
        (range(&[("step", "-15")]), "step"),
        (range(&[]), "step"),
        (range(&[("step", "forever")]), "step"),
        // 3600 s every 0.1 s: 36,000 points, over the 11,000 limit.
        (range(&[("step", "0.1")]), "exceeded maximum resolution"),
        (
            format!(
                "/prometheus/api/v1/query_range?{}",
                q(&[
                    ("query", "up"),
                    ("start", "3600"),
                    ("end", "0"),
                    ("step", "15")
                ])
            ),
            "end",
        ),
        // The "unbounded" times clients send, with a step that fits nothing.
        (
            format!(
                "/prometheus/api/v1/query_range?{}",
                q(&[
                    ("query", "up"),
                    ("start", "-292273086-05-16T16:47:06Z"),
                    ("end", "292277025-08-18T07:12:54.999999999Z"),
                    ("step", "1"),
                ])
            ),
            "exceeded maximum resolution",
        ),
    ] {
        let a = server.get(&path).await;
        assert_sane(&path, &path, &a);
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{path}: {}", a.body);
        assert!(a.body.contains(needle), "{path}: {}", a.body);
    }

    // A query over the length limit, sent as a form body: refused before
    // it is parsed.
    let long = format!(
        "{}up",
        "up + ".repeat(vigil_aggregator::query::engine::MAX_QUERY_BYTES / 5 + 1)
    );
    let a = server
        .send(
            &Method::POST,
            "/prometheus/api/v1/query",
            Some("application/x-www-form-urlencoded"),
            q(&[("query", &long)]).into_bytes(),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(a.body.contains("longer than"), "{}", a.body);

    // A regex just under the query limit: it compiles or is refused, in time.
    let regex = format!("{{__name__=~\"{}\"}}", "(a|b)".repeat(10_000));
    let a = server
        .send(
            &Method::POST,
            "/prometheus/api/v1/query",
            Some("application/x-www-form-urlencoded"),
            q(&[("query", &regex)]).into_bytes(),
        )
        .await;
    assert_sane("long regex", "/prometheus/api/v1/query", &a);

    // Limits and selectors of the metadata endpoints.
    for (path, needle) in [
        ("/prometheus/api/v1/series?match[]=up&limit=-1", "limit"),
        ("/prometheus/api/v1/series", "match[]"),
        ("/prometheus/api/v1/series?match[]=sum(up)", "selector"),
        ("/prometheus/api/v1/labels?start=never", "start"),
        ("/prometheus/api/v1/label/job/values?end=never", "end"),
    ] {
        let a = server.get(path).await;
        assert_sane(path, path, &a);
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{path}: {}", a.body);
        assert!(a.body.contains(needle), "{path}: {}", a.body);
    }
    server.running.shutdown().await;
}
