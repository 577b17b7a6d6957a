use super::*;

/// A CA and agent `id`'s files in `dir`, named as vigil-certs names them.
fn certs(dir: &Path, id: &str) {
    vigil_certs::create_ca(dir, "Test CA", 30, false).expect("ca");
    vigil_certs::issue_agent(dir, dir, id, 30, false).expect("agent");
}

const GOOD: &str = r#"
agent_id = "web-1"
host = "web-1"
roles = ["api", "db"]
interval = "2s"

[aggregator]
endpoints = ["127.0.0.1:4433", "[::1]:4433", "agg.example.com:4433"]
server_name = "localhost"
ca = "ca.crt"
cert = "web-1.crt"
key = "web-1.key"
signing_key = "web-1.sign.key"
"#;

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn problems(result: Result<AgentConfig, ConfigError>) -> Vec<String> {
    match result {
        Ok(c) => panic!("expected problems, got {c:?}"),
        Err(e) => e.problems(),
    }
}

#[test]
fn good_config_loads_with_defaults_and_resolved_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    certs(dir.path(), "web-1");
    let config = AgentConfig::load(&write(dir.path(), GOOD)).expect("valid");
    assert_eq!(config.agent_id, "web-1");
    assert_eq!(config.role(), "api");
    assert_eq!(config.interval, Duration::from_secs(2));
    assert_eq!(config.max_batch_samples, DEFAULT_MAX_BATCH_SAMPLES);
    assert_eq!(config.spool.dir, dir.path().join(DEFAULT_SPOOL_DIR));
    assert_eq!(config.spool.max_bytes, DEFAULT_SPOOL_MAX_BYTES);
    assert_eq!(config.spool.segment_bytes, DEFAULT_SPOOL_SEGMENT_BYTES);
    assert!(config.spool.fsync);
    assert_eq!(
        config.spool.replay_batches_per_second,
        DEFAULT_REPLAY_BATCHES_PER_SECOND
    );
    assert_eq!(config.shutdown.drain_timeout, DEFAULT_DRAIN_TIMEOUT);
    assert_eq!(config.aggregator.ack_timeout, DEFAULT_ACK_TIMEOUT);
    assert!(config.collect.system.enabled);
    assert_eq!(config.aggregator.ca, dir.path().join("ca.crt"));
    assert_eq!(config.aggregator.endpoints.len(), 3);
    config.validate().expect("a loaded config validates");
}

/// Parsing only the required keys gives what `AgentConfig::new` builds.
#[test]
fn optional_keys_take_the_same_defaults_as_new() {
    let text = r#"
agent_id = "a1"
[aggregator]
endpoints = ["127.0.0.1:4433"]
server_name = "localhost"
ca = "/v/ca.crt"
cert = "/v/a1.crt"
key = "/v/a1.key"
signing_key = "/v/a1.sign.key"
"#;
    let parsed = AgentConfig::from_toml(text, Path::new(".")).expect("valid");
    let agg = AggregatorConfig::new(
        vec!["127.0.0.1:4433".into()],
        "localhost",
        "/v/ca.crt",
        "/v/a1.crt",
        "/v/a1.key",
        "/v/a1.sign.key",
    );
    let mut built = AgentConfig::new("a1", agg);
    // `new` falls back to the agent id when the hostname cannot be read.
    built.host = default_host().unwrap_or_default();
    // The spool folder is relative to the config file's folder when parsed,
    // to the working directory when built.
    assert_eq!(built.spool.dir, Path::new(DEFAULT_SPOOL_DIR));
    assert_eq!(parsed.spool.dir, Path::new(".").join(DEFAULT_SPOOL_DIR));
    built.spool.dir = parsed.spool.dir.clone();
    assert_eq!(parsed, built);
    assert_eq!(parsed.role(), DEFAULT_ROLE);
    assert_eq!(parsed.interval, DEFAULT_INTERVAL);
    assert_eq!(parsed.aggregator.backoff_max, crate::backoff::DEFAULT_MAX);
}

#[test]
fn every_problem_is_reported_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    certs(dir.path(), "web-1");
    let text = GOOD
        .replace("interval = \"2s\"", "interval = \"5ms\"\ncolour = \"blue\"")
        .replace(
            "endpoints = [\"127.0.0.1:4433\", \"[::1]:4433\", \"agg.example.com:4433\"]",
            "endpoints = []\nretries = 3",
        )
        .replace("web-1.sign.key", "missing.sign.key");
    let found = problems(AgentConfig::load(&write(dir.path(), &text)));
    let has = |needle: &str| found.iter().any(|p| p.starts_with(needle));
    assert!(has("unknown key `colour`"), "{found:#?}");
    assert!(has("unknown key `aggregator.retries`"), "{found:#?}");
    assert!(has("interval: 5ms is out of range"), "{found:#?}");
    assert!(
        has("aggregator.endpoints: must list at least one"),
        "{found:#?}"
    );
    assert!(has("aggregator.signing_key: "), "{found:#?}");
    assert_eq!(found.len(), 5, "{found:#?}");
}

/// Values of the right type: every bad one is reported.
const OUT_OF_RANGE: &str = r#"
agent_id = ".bad"
roles = ["api", "api", ""]
interval = "10ms"
max_batch_samples = 0
[aggregator]
endpoints = ["nohost", "::1:80", "h:0"]
server_name = "bad name!"
ca = ""
cert = "c.crt"
key = "c.key"
signing_key = "s.key"
backoff_base = "2s"
backoff_max = "1s"
[spool]
dir = ""
max_bytes = 5000
segment_bytes = 100
replay_batches_per_second = 0
[shutdown]
drain_timeout = "1h"
"#;

#[test]
fn bad_values_are_all_reported() {
    let found = problems(AgentConfig::from_toml(
        OUT_OF_RANGE,
        Path::new("/etc/vigil"),
    ));
    let expect = [
        "agent_id: \".bad\" is not a valid agent id",
        "roles: \"api\" is listed twice",
        "roles: \"\" is not a valid role",
        "interval: 10ms is out of range",
        "max_batch_samples: must be from 1",
        "aggregator.endpoints: \"nohost\": expected host:port",
        "aggregator.endpoints: \"::1:80\": IPv6 addresses must be written in brackets",
        "aggregator.endpoints: \"h:0\": port must be",
        "aggregator.server_name: \"bad name!\"",
        "aggregator.ca: must name a file",
        "aggregator.backoff_max: 1s is out of range",
        "spool.dir: must name a folder",
        "spool.segment_bytes: 100 is out of range (4096 to 1073741824)",
        "spool.max_bytes: 5000 is out of range (8192, twice spool.segment_bytes",
        "spool.replay_batches_per_second: 0 is out of range (0.01 to 100000)",
        "shutdown.drain_timeout: 1h is out of range",
    ];
    for e in expect {
        assert!(
            found.iter().any(|p| p.starts_with(e)),
            "missing {e:?} in {found:#?}"
        );
    }
    assert_eq!(found.len(), expect.len(), "{found:#?}");
}

/// A wrongly typed value ends the parse: it is the only problem reported,
/// even next to values that would fail their checks.
#[test]
fn a_type_error_is_reported_on_its_own() {
    for (old, bad, why) in [
        (
            "interval = \"10ms\"",
            "interval = \"soon\"",
            "expected a duration",
        ),
        (
            "max_batch_samples = 0",
            "max_batch_samples = -1",
            "invalid value",
        ),
        (
            "roles = [\"api\", \"api\", \"\"]",
            "roles = 5",
            "invalid type",
        ),
        (
            "[shutdown]",
            "[collect.system]\nenabled = \"yes\"\n[shutdown]",
            "expected a boolean",
        ),
        ("max_bytes = 5000", "max_bytes = -5", "invalid value"),
        (
            "replay_batches_per_second = 0",
            "replay_batches_per_second = \"fast\"",
            "invalid type",
        ),
    ] {
        let text = OUT_OF_RANGE.replace(old, bad);
        let found = problems(AgentConfig::from_toml(&text, Path::new(".")));
        assert_eq!(found.len(), 1, "{bad}: {found:#?}");
        let line = bad.lines().find(|l| !l.starts_with('[')).unwrap_or(bad);
        assert!(found[0].contains(line), "{bad}: {found:#?}");
        assert!(found[0].contains(why), "{bad}: {found:#?}");
    }
}

/// A missing required key is reported alone too (by name), however many
/// values would fail their checks.
#[test]
fn a_missing_required_key_is_reported_on_its_own() {
    const AGGREGATOR: [&str; 6] = [
        "endpoints = []",
        "server_name = \"bad name!\"",
        "ca = \"\"",
        "cert = \"c.crt\"",
        "key = \"c.key\"",
        "signing_key = \"s.key\"",
    ];
    let missing = |text: &str, key: &str| {
        let found = problems(AgentConfig::from_toml(text, Path::new(".")));
        assert_eq!(found.len(), 1, "{key}: {found:#?}");
        let expected = format!("missing field `{key}`");
        assert!(found[0].ends_with(&expected), "{key}: {found:#?}");
    };
    let table = format!("[aggregator]\n{}", AGGREGATOR.join("\n"));
    missing(&format!("roles = [\"\"]\n{table}"), "agent_id");
    missing("agent_id = \".bad\"", "aggregator");
    for (i, line) in AGGREGATOR.iter().enumerate() {
        let kept: Vec<&str> = (AGGREGATOR.iter().enumerate())
            .filter_map(|(j, l)| (j != i).then_some(*l))
            .collect();
        let text = format!("agent_id = \"a1\"\n[aggregator]\n{}", kept.join("\n"));
        missing(&text, line.split(' ').next().unwrap_or_default());
    }
}

/// The spool table: relative folder resolved against the config file, sizes
/// checked against each other, a fractional replay rate accepted.
#[test]
fn spool_settings_parse_and_are_checked_together() {
    let text = format!(
        "{GOOD}\n[spool]\ndir = \"data/spool\"\nmax_bytes = 65536\nsegment_bytes = 32768\n\
         fsync = false\nreplay_batches_per_second = 0.5\n"
    );
    let c = AgentConfig::from_toml(&text, Path::new("/etc/vigil")).expect("valid");
    assert_eq!(c.spool.dir, Path::new("/etc/vigil/data/spool"));
    assert_eq!((c.spool.max_bytes, c.spool.segment_bytes), (65536, 32768));
    assert!(!c.spool.fsync);
    assert_eq!(c.spool.replay_batches_per_second, 0.5);
    let absolute = text.replace("data/spool", "/var/lib/vigil/spool");
    let c = AgentConfig::from_toml(&absolute, Path::new("/etc/vigil")).expect("valid");
    assert_eq!(c.spool.dir, Path::new("/var/lib/vigil/spool"));

    let small = text.replace("max_bytes = 65536", "max_bytes = 65535");
    let found = problems(AgentConfig::from_toml(&small, Path::new(".")));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].starts_with("spool.max_bytes: 65535 is out of range (65536"));
    let nan = text.replace("= 0.5", "= nan");
    let found = problems(AgentConfig::from_toml(&nan, Path::new(".")));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].starts_with("spool.replay_batches_per_second: NaN"));
}

/// A spool folder that cannot exist is a configuration problem, found with
/// the others and before anything is created.
#[test]
fn an_unusable_spool_folder_is_reported_with_the_other_problems() {
    let dir = tempfile::tempdir().expect("tempdir");
    certs(dir.path(), "web-1");
    std::fs::write(dir.path().join("plain-file"), "x").expect("write");
    for (spool, culprit) in [
        ("plain-file", "plain-file: the spool folder exists"),
        (
            "plain-file/spool",
            "plain-file: the folder it would be created in exists",
        ),
    ] {
        let text = format!("{GOOD}\n[spool]\ndir = {spool:?}\n").replace("web-1.key", "nope.key");
        let found = problems(AgentConfig::load(&write(dir.path(), &text)));
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(found[0].starts_with("aggregator.key: "), "{found:#?}");
        let expected = format!("spool.dir: {}", dir.path().join(culprit).display());
        assert!(found[1].starts_with(&expected), "{found:#?}");
    }
    // A folder that does not exist yet, under a writable one, is fine.
    let text = format!("{GOOD}\n[spool]\ndir = \"new/deeper/spool\"\n");
    AgentConfig::load(&write(dir.path(), &text)).expect("creatable spool folder");
    assert!(!dir.path().join("new").exists(), "checking creates nothing");
}

#[test]
fn missing_and_mismatched_files_are_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let found = problems(AgentConfig::load(&write(dir.path(), GOOD)));
    for key in ["ca", "cert", "key", "signing_key"] {
        let prefix = format!("aggregator.{key}: ");
        assert!(
            found.iter().any(|p| p.starts_with(&prefix)),
            "no {key} in {found:#?}"
        );
    }
    assert_eq!(found.len(), 4, "{found:#?}");

    // Files present, but issued for another agent id.
    certs(dir.path(), "web-2");
    let text = GOOD.replace("web-1.", "web-2.");
    let found = problems(AgentConfig::load(&write(dir.path(), &text)));
    assert_eq!(
        found,
        vec![
            "aggregator.cert: certificate common name \"web-2\" does not match agent_id \"web-1\""
        ]
    );
}

#[test]
fn syntax_errors_and_unreadable_files_are_reported() {
    let found = problems(AgentConfig::from_toml("agent_id = ", Path::new(".")));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].starts_with("TOML parse error"), "{found:?}");
    let found = problems(AgentConfig::load(Path::new("/nonexistent/agent.toml")));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with("cannot read /nonexistent/agent.toml"),
        "{found:?}"
    );
}

#[test]
fn endpoints_are_checked() {
    for ok in [
        "127.0.0.1:4433",
        "[::1]:4433",
        "agg.example.com:1",
        "localhost:65535",
    ] {
        assert!(check_endpoint(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "4433",
        ":4433",
        "host:",
        "host:65536",
        "host:x",
        "[::1:4433",
        "a b:1",
    ] {
        assert!(check_endpoint(bad).is_err(), "{bad}");
    }
}

#[test]
fn programmatic_config_validates_files_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let agg = AggregatorConfig::new(
        vec!["127.0.0.1:1".into()],
        "localhost",
        d.join("ca.crt"),
        d.join("a1.crt"),
        d.join("a1.key"),
        d.join("a1.sign.key"),
    );
    let config = AgentConfig::new("a1", agg);
    assert_eq!(config.validate().expect_err("no files").problems().len(), 4);
    certs(d, "a1");
    config.validate().expect("valid once the files exist");
}

/// The committed example must stay valid: parsed as is, then loaded for real
/// next to certificates generated under the names it uses.
#[test]
fn example_config_is_valid() {
    let text = include_str!("../../../deploy/agent.example.toml");
    let parsed = AgentConfig::from_toml(text, Path::new("/etc/vigil")).expect("example parses");
    assert_eq!(parsed.aggregator.ca, Path::new("/etc/vigil/ca.crt"));
    let dir = tempfile::tempdir().expect("tempdir");
    certs(dir.path(), &parsed.agent_id);
    let loaded = AgentConfig::load(&write(dir.path(), text)).expect("example loads");
    assert_eq!(loaded.agent_id, parsed.agent_id);
}
