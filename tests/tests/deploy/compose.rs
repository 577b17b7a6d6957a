//! deploy/docker/: `docker compose config` accepts compose.yml (with and
//! without the `ecosystem` profile); the resolved services are wired as
//! promised; the `certs` and `setup` one-shots run for real (setup against
//! PostgreSQL); and each service's config passes `check-config` in a copy of
//! its container's filesystem: image files from the Dockerfile's COPY lines,
//! bind mounts, and named volumes shared between services.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use serde_norway::Value;
use sqlx::Connection;
use vigil_aggregator::testing::PgTestDb;

use super::compose_files::{
    COMPOSE, compose_command, container, mounts, one_shot, ports, resolved, run_script, s, stage,
    strings,
};
use super::layout::{assert_config_ok, assert_rules_found, port_of, read, repo, toml_str};

const DEFAULT_SERVICES: [&str; 6] = [
    "postgres",
    "certs",
    "setup",
    "aggregator",
    "agent",
    "demo-api",
];
const VIGIL_SERVICES: [&str; 5] = ["certs", "setup", "aggregator", "agent", "demo-api"];
const PROFILE: &str = "ecosystem";
const PROFILE_SERVICES: [&str; 2] = ["prometheus", "grafana"];

#[test]
fn compose_config_accepts_the_file_with_and_without_the_profile() {
    let plain = resolved(None);
    let full = resolved(Some(PROFILE));
    let names = |v: &Value| -> Vec<String> {
        v["services"]
            .as_mapping()
            .expect("services")
            .keys()
            .map(s)
            .collect()
    };
    for svc in DEFAULT_SERVICES {
        assert!(
            names(&plain).contains(&svc.to_string()),
            "{svc} missing: {:?}",
            names(&plain)
        );
    }
    let mut all: Vec<&str> = DEFAULT_SERVICES
        .iter()
        .chain(&PROFILE_SERVICES)
        .copied()
        .collect();
    all.sort_unstable();
    let mut got = names(&full);
    got.sort_unstable();
    assert_eq!(got, all);
    for (name, svc) in full["services"].as_mapping().expect("services") {
        let name = s(name);
        let profiles = strings(&svc["profiles"]);
        if PROFILE_SERVICES.contains(&name.as_str()) {
            assert_eq!(profiles, [PROFILE], "{name}");
        } else {
            assert!(
                profiles.is_empty(),
                "{name} runs without a profile: {profiles:?}"
            );
        }
    }

    // A broken file is refused: the check can fail.
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("compose.yml");
    std::fs::write(
        &bad,
        read(COMPOSE).replace("    depends_on:\n", "    depends_onn:\n"),
    )
    .expect("write");
    let cmd = compose_command();
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .arg("-f")
        .arg(&bad)
        .args(["config", "-q"])
        .output()
        .expect("compose runs");
    assert!(!out.status.success(), "a misspelt key must be refused");
}

#[test]
fn compose_services_are_wired_as_documented() {
    let full = resolved(Some(PROFILE));
    let svc = |name: &str| full["services"][name].clone();
    let dockerfile = read("deploy/docker/Dockerfile");

    for name in VIGIL_SERVICES {
        let service = svc(name);
        let build = &service["build"];
        assert_eq!(
            s(&build["dockerfile"]),
            "deploy/docker/Dockerfile",
            "{name}"
        );
        assert_eq!(
            Path::new(&s(&build["context"])),
            repo(),
            "{name}: build context"
        );
        let target = s(&build["target"]);
        let (_, user) = stage(&dockerfile, &target);
        assert_eq!(
            user.as_deref(),
            Some("10001:10001"),
            "{name}: stage {target} runs as vigil"
        );
        assert_eq!(
            service["read_only"].as_bool(),
            Some(true),
            "{name}: read-only root"
        );
        assert_eq!(
            strings(&service["cap_drop"]),
            ["ALL"],
            "{name}: no capabilities"
        );
    }
    // The production image holds no demo API, the demo image nothing else.
    assert_eq!(s(&svc("demo-api")["build"]["target"]), "demo-api");
    for name in ["certs", "setup", "aggregator", "agent"] {
        assert_eq!(s(&svc(name)["build"]["target"]), "vigil", "{name}");
    }

    // Start order: certificates, then setup (with PostgreSQL up), then the rest.
    let condition = |from: &str, on: &str| s(&svc(from)["depends_on"][on]["condition"]);
    assert_eq!(
        condition("setup", "certs"),
        "service_completed_successfully"
    );
    assert_eq!(condition("setup", "postgres"), "service_healthy");
    for name in ["aggregator", "agent", "prometheus", "grafana"] {
        assert_eq!(
            condition(name, "setup"),
            "service_completed_successfully",
            "{name}"
        );
    }

    // Published ports are the ones the aggregator's config listens on.
    let agg_config = read("deploy/docker/aggregator.toml");
    let http = port_of(&toml_str(&agg_config, "http.listen"));
    let quic = port_of(&toml_str(&agg_config, "quic.listen"));
    let published = ports(&svc("aggregator"));
    assert!(
        published.contains(&("127.0.0.1".into(), http, http, "tcp".into())),
        "HTTP {http} on 127.0.0.1 only: {published:?}"
    );
    assert!(
        published
            .iter()
            .any(|(_, p, t, proto)| *p == quic && *t == quic && proto == "udp"),
        "QUIC {quic}/udp: {published:?}"
    );

    // The agent dials the aggregator service and scrapes the demo API service.
    let agent: toml::Table = toml::from_str(&read("deploy/docker/agent.toml")).expect("TOML");
    let endpoints: Vec<&str> = agent["aggregator"]["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .filter_map(toml::Value::as_str)
        .collect();
    assert_eq!(endpoints, [format!("aggregator:{quic}")]);
    let demo_listen = strings(&svc("demo-api")["command"]);
    let demo_port = port_of(demo_listen.last().expect("--listen ADDR"));
    let url = agent["collect"]["scrape"][0]["url"]
        .as_str()
        .expect("scrape url");
    assert_eq!(url, format!("http://demo-api:{demo_port}/metrics"));

    // Grafana reads Vigil under /prometheus on the same port, with setup's token.
    let datasources = read("deploy/docker/grafana/provisioning/datasources/vigil.yml");
    assert!(datasources.contains(&format!("url: http://aggregator:{http}/prometheus")));
    assert!(datasources.contains("$__file{/var/lib/vigil-secrets/grafana.token}"));
    let prometheus = read("deploy/docker/prometheus/prometheus.yml");
    assert!(prometheus.contains(&format!("http://aggregator:{http}/api/v1/write")));
    assert!(prometheus.contains("credentials_file: /var/lib/vigil-secrets/prometheus.token"));
    // The dashboards Grafana provisions are the ones Vigil exports.
    let grafana_mounts = mounts(&svc("grafana"));
    let dashboards = grafana_mounts
        .iter()
        .find(|m| m.target == "/var/lib/grafana-dashboards/vigil")
        .expect("dashboards mounted");
    assert_eq!(
        Path::new(&dashboards.source),
        repo().join("aggregator/dashboards")
    );
    assert!(dashboards.read_only);
}

#[tokio::test]
async fn compose_one_shots_and_configs_work_in_their_containers() {
    let full = resolved(Some(PROFILE));
    let svc = |name: &str| full["services"][name].clone();
    let dockerfile = read("deploy/docker/Dockerfile");
    let (image_files, _) = stage(&dockerfile, "vigil");
    let dir = tempfile::tempdir().expect("tempdir");
    let volumes = dir.path().join("volumes");
    let root = |name: &str| dir.path().join("containers").join(name);

    // certs: the real script, twice (the second run keeps everything).
    let certs = container(&root("certs"), &svc("certs"), &image_files, &volumes);
    let (script, env) = one_shot(&svc("certs"), &certs);
    let certs_service = svc("certs");
    let settings: Vec<(&str, String)> = certs_service["environment"]
        .as_mapping()
        .expect("environment")
        .iter()
        .map(|(k, v)| (k.as_str().expect("name"), s(v)))
        .collect();
    run_script(&script, &env, &settings);
    let ca_before = std::fs::read(volumes.join("vigil-ca/ca.crt")).expect("CA in its volume");
    let server_before =
        std::fs::read(volumes.join("aggregator-certs/server.crt")).expect("server cert");
    run_script(&script, &env, &settings);
    assert_eq!(
        std::fs::read(volumes.join("vigil-ca/ca.crt")).expect("ca"),
        ca_before
    );
    assert_eq!(
        std::fs::read(volumes.join("aggregator-certs/server.crt")).expect("crt"),
        server_before
    );
    // Each container gets only its own keys.
    assert!(!volumes.join("aggregator-certs/ca.key").exists());
    assert!(!volumes.join("agent-certs/ca.key").exists());
    assert!(!volumes.join("agent-certs/server.key").exists());

    // aggregator and agent: their configs in their containers.
    let aggregator = container(
        &root("aggregator"),
        &svc("aggregator"),
        &image_files,
        &volumes,
    );
    assert_config_ok(
        "vigil-aggregator",
        &aggregator.path("/etc/vigil/aggregator.toml"),
        "compose aggregator",
    );
    let agg_toml = read("deploy/docker/aggregator.toml");
    assert_rules_found(&aggregator, &agg_toml, "compose aggregator");
    let agent = container(&root("agent"), &svc("agent"), &image_files, &volumes);
    assert_config_ok(
        "vigil-agent",
        &agent.path("/etc/vigil/agent.toml"),
        "compose agent",
    );
    let agent_config = read("deploy/docker/agent.toml");
    // The root filesystem is read-only and the agent is not root (this test
    // is, so check-config cannot tell): the spool must be on a volume.
    let spool = toml_str(&agent_config, "spool.dir");
    assert!(
        mounts(&svc("agent"))
            .iter()
            .any(|m| m.named && !m.read_only && spool.starts_with(&format!("{}/", m.target))),
        "the agent's spool {spool} is on no writable volume"
    );
    let server_names = settings
        .iter()
        .find(|(k, _)| *k == "VIGIL_SERVER_NAMES")
        .map(|(_, v)| v.clone())
        .expect("VIGIL_SERVER_NAMES");
    let server_name = toml_str(&agent_config, "aggregator.server_name");
    assert!(
        server_names.split_whitespace().any(|n| n == server_name),
        "the agent dials {server_name:?}, the certificate names {server_names:?}"
    );

    // setup: against a real PostgreSQL, twice.
    let db = PgTestDb::create().await.unwrap_or_else(|e| panic!("{e}"));
    let setup = container(&root("setup"), &svc("setup"), &image_files, &volumes);
    let config_path = setup.path("/etc/vigil/aggregator.toml");
    let mut config: toml::Table =
        toml::from_str(&std::fs::read_to_string(&config_path).expect("config")).expect("TOML");
    config["database"]["url"] = toml::Value::String(db.url.clone());
    std::fs::write(&config_path, toml::to_string(&config).expect("TOML")).expect("write");
    let (script, env) = one_shot(&svc("setup"), &setup);
    let first = run_script(&script, &env, &[]);
    assert!(first.contains("registered agent demo-host"), "{first}");
    assert!(
        first.contains("created user admin") && first.contains("password: "),
        "{first}"
    );
    let second = run_script(&script, &env, &[]);
    assert!(second.contains("dashboard user admin exists"), "{second}");
    assert!(second.contains("token grafana exists"), "{second}");

    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    let agents: Vec<String> = sqlx::query_scalar("SELECT agent_id FROM agents")
        .fetch_all(&mut conn)
        .await
        .expect("agents");
    assert_eq!(agents, ["demo-host"]);
    for (name, scope) in [("grafana", "read"), ("prometheus", "write")] {
        let file = volumes.join("vigil-secrets").join(format!("{name}.token"));
        let token = std::fs::read_to_string(&file).expect("token file");
        let token = token.trim();
        assert!(token.starts_with("vgl_"), "{name}: {token:?}");
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o644,
            "{name}: readable by Grafana's and Prometheus' users"
        );
        let (role, hash): (String, Vec<u8>) =
            sqlx::query_as("SELECT role, token_sha256 FROM api_tokens WHERE name = $1")
                .bind(name)
                .fetch_one(&mut conn)
                .await
                .expect("token row");
        assert_eq!(role, scope, "{name}");
        assert_eq!(
            hash,
            vigil_aggregator::auth::token_hash(token),
            "{name}: the file holds the live token"
        );
    }
    drop(conn);
    db.drop_db().await;
}
