//! deploy/examples/: each config passes `check-config` with its files where
//! the systemd layout puts them (/etc/vigil/certs, /var/lib/vigil-agent).

use super::layout::{
    Layout, agent_cert, assert_config_ok, assert_rules_found, ca, check_config, read, server_cert,
    toml_str,
};

#[test]
fn host_examples_pass_agent_check_config() {
    for example in ["api-host", "db-host", "cache-host"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let host = Layout::new(dir.path().join("root"));
        let text = read(&format!("deploy/examples/{example}.toml"));
        let config = host.install_config("/etc/vigil/agent.toml", &text);

        // Without its certificates the config is refused (exit 64): the
        // check reads the files, so passing below means they line up.
        let (code, out) = check_config("vigil-agent", &config);
        assert_eq!(code, 64, "{example} without certificates:\n{out}");
        assert!(out.contains("aggregator.ca"), "{example}:\n{out}");

        let certs = host.mkdir("/etc/vigil/certs");
        ca(&certs);
        agent_cert(&certs, &certs, &toml_str(&text, "agent_id"));
        host.mkdir("/var/lib/vigil-agent");
        if example == "cache-host" {
            host.write("/etc/vigil/redis.password", "not-a-real-password\n");
        }
        assert_config_ok("vigil-agent", &config, example);
    }
}

#[test]
fn aggregator_example_passes_check_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = Layout::new(dir.path().join("root"));
    let text = read("deploy/examples/aggregator.toml");
    let config = host.install_config("/etc/vigil/aggregator.toml", &text);
    let certs = host.mkdir("/etc/vigil/certs");
    ca(&certs);
    server_cert(&certs, &certs, &["vigil.example.com"]);
    host.write(
        "/etc/vigil/rules/vigil-default.rules.yml",
        read("deploy/rules/vigil-default.rules.yml"),
    );
    // The rule glob must not pick up the rule pack's unit tests.
    host.write(
        "/etc/vigil/rules/vigil-default.test.yml",
        read("deploy/rules/vigil-default.test.yml"),
    );
    assert_config_ok(
        "vigil-aggregator",
        &config,
        "deploy/examples/aggregator.toml",
    );
    assert_rules_found(&host, &text, "deploy/examples/aggregator.toml");

    // The examples' agents dial the name this certificate carries.
    for example in ["api-host", "db-host", "cache-host"] {
        let agent = read(&format!("deploy/examples/{example}.toml"));
        assert_eq!(
            toml_str(&agent, "aggregator.server_name"),
            "vigil.example.com"
        );
    }
}
