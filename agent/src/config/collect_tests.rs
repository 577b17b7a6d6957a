//! `[collect.postgres]` and `[collect.redis]`: role defaults and validation.

use super::*;

const BASE: &str = r#"
agent_id = "db-1"
host = "db-1"
ROLES
[aggregator]
endpoints = ["127.0.0.1:4433"]
server_name = "localhost"
ca = "/v/ca.crt"
cert = "/v/db-1.crt"
key = "/v/db-1.key"
signing_key = "/v/db-1.sign.key"
"#;

fn parse(roles: &str, extra: &str) -> Result<AgentConfig, ConfigError> {
    let text = format!("{}{extra}", BASE.replace("ROLES", roles));
    AgentConfig::from_toml(&text, Path::new("/etc/vigil"))
}

fn enabled(c: &AgentConfig) -> (bool, bool) {
    (
        c.collect.postgres.is_enabled(&c.roles),
        c.collect.redis.is_enabled(&c.roles),
    )
}

#[test]
fn roles_decide_the_default_collectors() {
    let cases = [
        ("", (false, false)),
        ("roles = [\"api\"]", (false, false)),
        ("roles = [\"db\"]", (true, false)),
        ("roles = [\"cache\"]", (false, true)),
        ("roles = [\"api\", \"cache\", \"db\"]", (true, true)),
    ];
    for (roles, expected) in cases {
        let c = parse(roles, "").expect("valid");
        assert_eq!(enabled(&c), expected, "{roles}");
    }
}

#[test]
fn explicit_enabled_wins_over_roles() {
    let c = parse(
        "roles = [\"db\", \"cache\"]",
        "[collect.postgres]\nenabled = false\n[collect.redis]\nenabled = false\n",
    )
    .expect("valid");
    assert_eq!(enabled(&c), (false, false));
    let c = parse(
        "roles = [\"api\"]",
        "[collect.postgres]\nenabled = true\n[collect.redis]\nenabled = true\n",
    )
    .expect("valid");
    assert_eq!(enabled(&c), (true, true));
}

#[test]
fn defaults_and_relative_password_files() {
    let c = parse(
        "roles = [\"db\"]",
        "[collect.postgres]\npassword_file = \"pg.pw\"\nstatements_order_by = \"mean_time\"\n\
         [collect.redis]\nusername = \"monitor\"\npassword_file = \"/run/redis.pw\"\n",
    )
    .expect("valid");
    let pg = &c.collect.postgres;
    assert_eq!(pg.url, postgres::DEFAULT_URL);
    assert_eq!(
        pg.password_file.as_deref(),
        Some(Path::new("/etc/vigil/pg.pw"))
    );
    assert_eq!(pg.statements_order_by, StatementsOrder::MeanTime);
    assert_eq!(pg.statements_top, postgres::DEFAULT_STATEMENTS_TOP);
    assert_eq!(pg.query_timeout, postgres::DEFAULT_QUERY_TIMEOUT);
    let r = &c.collect.redis;
    assert_eq!(r.url, redis::DEFAULT_URL);
    assert_eq!(r.password_file.as_deref(), Some(Path::new("/run/redis.pw")));
    assert_eq!(
        r.target().expect("target").username.as_deref(),
        Some("monitor")
    );
}

#[test]
fn collector_problems_are_reported_with_the_others() {
    let found = match parse(
        "roles = [\"db\"]\ninterval = \"1ms\"",
        r#"
[collect.postgres]
url = "mysql://root:hunter2@h/db"
connect_timeout = "0s"
query_timeout = "2m"
statements_top = 1000
statements_query_length = 3
password_file = ""
typo = 1
[collect.redis]
url = "rediss://cache:6380"
username = "a b"
timeout = "10ms"
"#,
    ) {
        Ok(c) => panic!("expected problems, got {c:?}"),
        Err(e) => e.problems(),
    };
    let expect = [
        "unknown key `collect.postgres.typo`",
        "interval: 1ms is out of range",
        "collect.postgres.url: \"mysql://root:***@h/db\" is not a postgres://",
        "collect.postgres.password_file: must name a file",
        "collect.postgres.connect_timeout: 0s is out of range",
        "collect.postgres.query_timeout: 2m is out of range",
        "collect.postgres.statements_top: must be from 0 to 100",
        "collect.postgres.statements_query_length: must be from 16",
        "collect.redis.url: \"rediss://cache:6380\": TLS (rediss://) is not supported",
        "collect.redis.username: must be non-empty",
        "collect.redis.timeout: 10ms is out of range",
    ];
    for e in expect {
        assert!(
            found.iter().any(|p| p.starts_with(e)),
            "missing {e:?} in {found:#?}"
        );
    }
    assert_eq!(found.len(), expect.len(), "{found:#?}");
    assert!(found.iter().all(|p| !p.contains("hunter2")), "{found:#?}");
}

/// A missing password file stops an enabled collector's config, not a
/// disabled one's.
#[test]
fn password_files_are_checked_when_the_collector_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = "[collect.postgres]\npassword_file = \"missing.pw\"\n\
                 [collect.redis]\npassword_file = \"missing.pw\"\n";
    let c = parse("roles = [\"db\"]", extra).expect("values are fine");
    let mut p = Vec::new();
    c.collect.postgres.file_problems(&c.roles, &mut p);
    c.collect.redis.file_problems(&c.roles, &mut p);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0].starts_with("collect.postgres.password_file: cannot read"),
        "{p:#?}"
    );

    let pw = dir.path().join("pg.pw");
    std::fs::write(&pw, "secret\n").expect("write");
    let mut c = c;
    c.collect.postgres.password_file = Some(pw);
    let mut p = Vec::new();
    c.collect.postgres.file_problems(&c.roles, &mut p);
    assert!(p.is_empty(), "{p:#?}");
}

/// The example config documents the defaults of both tables.
#[test]
fn example_config_shows_the_defaults() {
    let text = include_str!("../../../deploy/agent.example.toml");
    let c = AgentConfig::from_toml(text, Path::new("/etc/vigil")).expect("example parses");
    assert!(text.contains("[collect.postgres]") && text.contains("[collect.redis]"));
    assert_eq!(c.collect.postgres, PostgresCollectConfig::default());
    assert_eq!(c.collect.redis, RedisCollectConfig::default());
}

#[test]
fn a_redis_user_needs_a_password() {
    for extra in [
        "[collect.redis]\nusername = \"mon\"\n",
        "[collect.redis]\nurl = \"redis://mon@h:6379\"\n",
    ] {
        let found = match parse("", extra) {
            Ok(_) => panic!("{extra}: accepted"),
            Err(e) => e.problems(),
        };
        assert_eq!(
            found,
            ["collect.redis.username: needs a password (in url or password_file)"],
            "{extra}"
        );
    }
    let ok = "[collect.redis]\nurl = \"redis://mon:pw@h:6379\"\n";
    parse("", ok).expect("user and password");
}
