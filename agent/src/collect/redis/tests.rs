//! Against the real Redis on `REDIS_URL` (default `redis://127.0.0.1:6379`),
//! plus fake servers on 127.0.0.1 port 0 for replies a real one never sends.
//! An unreachable Redis fails the tests with a message; nothing is skipped.

use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

fn redis_url() -> String {
    std::env::var("REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into())
}

fn config(url: &str) -> RedisCollectConfig {
    RedisCollectConfig {
        url: url.into(),
        timeout: Duration::from_secs(2),
        ..RedisCollectConfig::default()
    }
}

/// A plain client to drive the real server.
async fn client() -> Connection {
    let url = redis_url();
    let t = config(&url).target().expect("REDIS_URL parses");
    let s = Duration::from_secs(5);
    Connection::connect(&t.host, t.port, s, s).await.unwrap_or_else(|e| {
        panic!(
            "Redis is unreachable at {url}: {e}. These tests need it: start it \
             (redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no) \
             or set REDIS_URL"
        )
    })
}

async fn run(c: &mut Connection, args: &[&str]) -> Reply {
    let reply = c
        .command(args)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(!matches!(reply, Reply::Error(_)), "{args:?}: {reply:?}");
    reply
}

fn ctx() -> Context {
    Context::new(vigil_common::now_ms(), "h", "cache")
}

fn value(series: &[Series], name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    series
        .iter()
        .find(|s| s.name == name && label.is_none_or(|(k, v)| s.label(k) == Some(v)))
        .map(|s| s.points[0].value)
}

async fn collect_up(c: &mut RedisCollector) -> Vec<Series> {
    let s = c.collect(&ctx()).await.expect("collect succeeds");
    assert_eq!(value(&s, "redis_up", None), Some(1.0), "{s:#?}");
    s
}

#[tokio::test]
async fn hits_misses_and_keys_follow_real_traffic() {
    let mut c = RedisCollector::new(config(&redis_url())).expect("collector");
    let mut r = client().await;
    // Database 13, unique keys: parallel tests and other users are unaffected.
    run(&mut r, &["SELECT", "13"]).await;
    let tag: u64 = rand::rng().random();
    let keys: Vec<String> = (0..3).map(|i| format!("vigil:test:{tag:x}:{i}")).collect();
    let before = collect_up(&mut c).await;
    let db13 = Some(("db", "db13"));
    let base_keys = value(&before, "redis_db_keys", db13).unwrap_or(0.0);
    let base = |name| value(&before, name, None).unwrap_or_else(|| panic!("no {name}"));

    for k in &keys {
        run(&mut r, &["SET", k, "v", "EX", "600"]).await;
    }
    for _ in 0..5 {
        assert_eq!(
            run(&mut r, &["GET", &keys[0]]).await,
            Reply::Bulk(Some(b"v".to_vec()))
        );
    }
    for _ in 0..4 {
        let missing = format!("vigil:test:{tag:x}:missing");
        assert_eq!(run(&mut r, &["GET", &missing]).await, Reply::Bulk(None));
    }
    let after = collect_up(&mut c).await;
    let delta = |name| value(&after, name, None).expect(name) - base(name);
    let (hits, misses) = (
        delta("redis_keyspace_hits_total"),
        delta("redis_keyspace_misses_total"),
    );
    // Other clients may add to either, but not make ours disappear; 5 vs 4
    // also catches swapped fields.
    assert!(hits >= 5.0 && misses >= 4.0, "hits {hits}, misses {misses}");
    assert!(delta("redis_commands_processed_total") >= 12.0);
    let keys_now = value(&after, "redis_db_keys", db13).expect("db13 keys");
    assert!(keys_now >= base_keys + 3.0, "{base_keys} -> {keys_now}");
    assert!(value(&after, "redis_db_keys_expiring", db13).expect("expiring") >= 3.0);
    assert!(value(&after, "redis_memory_used_bytes", None).expect("memory") > 0.0);
    assert!(value(&after, "redis_memory_max_bytes", None).is_some());
    assert!(value(&after, "redis_connected_clients", None).expect("clients") >= 2.0);
    assert!(value(&after, "redis_uptime_seconds", None).is_some());
    assert_eq!(
        value(
            &after,
            "redis_replication_role",
            Some(("replication_role", "master"))
        ),
        Some(1.0)
    );
    assert!(value(&after, "redis_rdb_last_bgsave_ok", None).is_some());
    assert!(value(&after, "redis_aof_enabled", None).is_some());
    let families: Vec<&str> = FAMILIES.iter().map(|f| f.0).collect();
    for s in &after {
        s.validate().expect("valid");
        assert!(
            families.contains(&s.name.as_str()),
            "undocumented {}",
            s.name
        );
        assert_eq!(s.label("role"), Some("cache"));
    }
    let mut del = vec!["DEL"];
    del.extend(keys.iter().map(String::as_str));
    run(&mut r, &del).await;
}

#[tokio::test]
async fn unreachable_and_refused_are_down_not_errors() {
    let real = config(&redis_url()).target().expect("url");
    let wrong_password = format!(
        "redis://vigil_no_such_user:wrong@{}:{}",
        real.host, real.port
    );
    for url in ["redis://127.0.0.1:1".to_string(), wrong_password] {
        let mut c = RedisCollector::new(config(&url)).expect("collector");
        for _ in 0..2 {
            let s = c
                .collect(&ctx())
                .await
                .unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(s.len(), 1, "{url}: {s:#?}");
            assert_eq!(value(&s, "redis_up", None), Some(0.0), "{url}");
        }
    }
}

/// A one-connection fake server: reads one command, sends `reply`, then keeps
/// the connection open (or closes it when `close`).
async fn fake(reply: Vec<u8>, close: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = [0u8; 256];
            if sock.read(&mut buf).await.unwrap_or(0) == 0 {
                continue;
            }
            let _ = sock.write_all(&reply).await;
            if !close {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        }
    });
    format!("redis://{addr}")
}

#[tokio::test]
async fn broken_servers_give_errors_never_panics_or_unbounded_reads() {
    let huge = format!("${}\r\n", 1u64 << 40).into_bytes();
    let info = |body: &str| format!("${}\r\n{body}\r\n", body.len()).into_bytes();
    // Oversized announced length: refused before reading or allocating it.
    let url = fake(huge, false).await;
    let mut c = RedisCollector::new(config(&url)).expect("collector");
    let err = c.collect(&ctx()).await.expect_err("oversized");
    assert!(err.to_string().contains("exceeds"), "{err}");
    // Not RESP at all.
    let url = fake(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(), true).await;
    let mut c = RedisCollector::new(config(&url)).expect("collector");
    assert!(c.collect(&ctx()).await.is_err());
    // A line that never ends: capped, an error.
    let url = fake(vec![b'+'; 100_000], false).await;
    let mut c = RedisCollector::new(config(&url)).expect("collector");
    assert!(c.collect(&ctx()).await.is_err());
    // Garbage INFO body: tolerant parse, up with whatever parsed.
    let url = fake(
        info("junk\r\n:::\r\nkeyspace_hits:x\r\nkeyspace_misses:9\r\n\u{7f}"),
        false,
    )
    .await;
    let mut c = RedisCollector::new(config(&url)).expect("collector");
    let s = collect_up(&mut c).await;
    assert_eq!(value(&s, "redis_keyspace_misses_total", None), Some(9.0));
    assert_eq!(s.len(), 2, "{s:#?}");
    // A reply cut short by a closed connection, and a server that never answers.
    let url = fake(b"$100\r\nrole:master\r\n".to_vec(), true).await;
    let mut c = RedisCollector::new(config(&url)).expect("collector");
    assert_eq!(
        value(&c.collect(&ctx()).await.expect("down"), "redis_up", None),
        Some(0.0)
    );
    let url = fake(Vec::new(), false).await;
    let mut c = RedisCollector::new(RedisCollectConfig {
        timeout: Duration::from_millis(300),
        ..config(&url)
    })
    .expect("collector");
    let started = std::time::Instant::now();
    assert_eq!(
        value(&c.collect(&ctx()).await.expect("down"), "redis_up", None),
        Some(0.0)
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "bounded by the timeout"
    );
}

#[tokio::test]
async fn auth_uses_the_acl_user_and_password_file() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.expect("accept");
        let mut seen = Vec::new();
        let mut buf = [0u8; 512];
        let info = b"$19\r\nconnected_clients:7\r\n";
        for reply in [&b"+OK\r\n"[..], &info[..]] {
            let n = sock.read(&mut buf).await.expect("read");
            seen.extend_from_slice(&buf[..n]);
            sock.write_all(reply).await.expect("write");
        }
        String::from_utf8(seen).expect("utf8")
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("redis.pw");
    std::fs::write(&pw, "s3cret\n").expect("write");
    let mut c = RedisCollector::new(RedisCollectConfig {
        username: Some("monitor".into()),
        password_file: Some(pw),
        ..config(&format!("redis://ignored:inurl@{addr}"))
    })
    .expect("collector");
    let s = c.collect(&ctx()).await;
    let seen = server.await.expect("server");
    assert_eq!(
        seen,
        "*3\r\n$4\r\nAUTH\r\n$7\r\nmonitor\r\n$6\r\ns3cret\r\n*1\r\n$4\r\nINFO\r\n"
    );
    let s = s.expect("collect");
    assert_eq!(value(&s, "redis_up", None), Some(1.0));
    assert_eq!(value(&s, "redis_connected_clients", None), Some(7.0));
}

#[test]
fn every_family_is_documented() {
    let doc = include_str!("../../../../docs/metrics.md");
    for (name, ..) in FAMILIES {
        assert!(
            doc.contains(&format!("| `{name}` |")),
            "{name} missing from docs/metrics.md"
        );
    }
}
