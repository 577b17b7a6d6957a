//! deploy/debian/ and the crates' `[package.metadata.deb]`: the Debian
//! packages cargo-deb builds (from the binaries the tests run) hold the
//! binaries, units, conffiles and maintainer scripts they should; their
//! default configs pass `check-config` once certificates are in place; and on
//! this machine (as root) the packages install, run, share the user vigil,
//! are removed with their configs kept, and are purged without a trace but
//! the user, which the test then deletes.

use std::path::Path;
use std::process::Command;

use super::deb_tools::{AGENT, AGGREGATOR, contents, deb, field, run, run_ok, unpack};
use super::layout::{Layout, agent_cert, assert_rules_found, ca, read, repo, server_cert};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Files (not folders) a package must hold: (permissions, path in the
/// package, the repository file it must equal, if any).
type Expected = [(&'static str, &'static str, Option<&'static str>)];

const AGENT_FILES: &Expected = &[
    ("-rwxr-xr-x", "./usr/bin/vigil-agent", None),
    (
        "-rw-r-----",
        "./etc/vigil/agent.toml",
        Some("deploy/debian/agent.toml"),
    ),
    (
        "-rw-r--r--",
        "./usr/lib/systemd/system/vigil-agent.service",
        Some("deploy/systemd/vigil-agent.service"),
    ),
    (
        "-rw-r--r--",
        "./usr/lib/sysusers.d/vigil-agent.conf",
        Some("deploy/systemd/vigil.sysusers.conf"),
    ),
    ("-rw-r--r--", "./usr/share/doc/vigil-agent/copyright", None),
    (
        "-rw-r--r--",
        "./usr/share/doc/vigil-agent/examples/agent.example.toml",
        Some("deploy/agent.example.toml"),
    ),
    (
        "-rw-r--r--",
        "./usr/share/doc/vigil-agent/examples/api-host.toml",
        Some("deploy/examples/api-host.toml"),
    ),
    (
        "-rw-r--r--",
        "./usr/share/doc/vigil-agent/examples/db-host.toml",
        Some("deploy/examples/db-host.toml"),
    ),
    (
        "-rw-r--r--",
        "./usr/share/doc/vigil-agent/examples/cache-host.toml",
        Some("deploy/examples/cache-host.toml"),
    ),
];

const AGGREGATOR_FILES: &Expected = &[
    ("-rwxr-xr-x", "./usr/bin/vigil-aggregator", None),
    ("-rwxr-xr-x", "./usr/bin/vigil-certs", None),
    (
        "-rw-r-----",
        "./etc/vigil/aggregator.toml",
        Some("deploy/debian/aggregator.toml"),
    ),
    (
        "-rw-r--r--",
        "./etc/vigil/rules/vigil-default.rules.yml",
        Some("deploy/rules/vigil-default.rules.yml"),
    ),
    (
        "-rw-r--r--",
        "./usr/lib/systemd/system/vigil-aggregator.service",
        Some("deploy/systemd/vigil-aggregator.service"),
    ),
    (
        "-rw-r--r--",
        "./usr/lib/sysusers.d/vigil-aggregator.conf",
        Some("deploy/systemd/vigil.sysusers.conf"),
    ),
    (
        "-rw-r--r--",
        "./usr/share/doc/vigil-aggregator/copyright",
        None,
    ),
    (
        "-rw-r--r--",
        "./usr/share/doc/vigil-aggregator/examples/aggregator.example.toml",
        Some("deploy/aggregator.example.toml"),
    ),
    (
        "-rw-r--r--",
        "./usr/share/doc/vigil-aggregator/examples/aggregator-postgres.toml",
        Some("deploy/examples/aggregator.toml"),
    ),
    (
        "-rw-r--r--",
        "./usr/share/doc/vigil-aggregator/examples/notify.example.yml",
        Some("deploy/notify.example.yml"),
    ),
    (
        "-rw-r--r--",
        "./usr/share/doc/vigil-aggregator/examples/vigil-default.test.yml",
        Some("deploy/rules/vigil-default.test.yml"),
    ),
];

/// Checks `package`'s .deb: control fields, exactly `files` (root-owned,
/// with their modes and contents), the conffiles, the binaries' versions
/// and the maintainer scripts' systemd and user handling.
fn check_package(package: &str, files: &Expected, conffiles: &[&str], bins: &[&str]) {
    let deb = deb(package);
    assert_eq!(field(&deb, "Package"), package);
    assert_eq!(field(&deb, "Version"), format!("{VERSION}-1"));
    let arch = run_ok(Command::new("dpkg").arg("--print-architecture"));
    assert_eq!(field(&deb, "Architecture"), arch.trim());
    let depends = field(&deb, "Depends");
    assert!(depends.contains("libc6"), "{package}: Depends: {depends}");
    assert!(
        depends.contains("systemd | systemd-standalone-sysusers"),
        "{package}: Depends: {depends}"
    );

    let mut got = contents(&deb);
    got.sort();
    let mut want: Vec<(String, String, String)> = files
        .iter()
        .map(|(mode, path, _)| (mode.to_string(), "0/0".to_string(), path.to_string()))
        .collect();
    want.sort();
    assert_eq!(got, want, "{package}: files (mode, owner, path)");

    let dir = tempfile::tempdir().expect("tempdir");
    let (control, root) = unpack(&deb, dir.path());
    for (_, path, source) in files {
        if let Some(source) = source {
            let packaged = std::fs::read_to_string(root.join(path)).expect("packaged file");
            assert!(
                packaged == read(source),
                "{package}: {path} differs from {source}"
            );
        }
    }
    for bin in bins {
        let out = run_ok(Command::new(root.join("usr/bin").join(bin)).arg("--version"));
        assert_eq!(out.trim(), format!("{bin} {VERSION}"), "{package}: {bin}");
    }

    let conf = std::fs::read_to_string(control.join("conffiles")).expect("conffiles");
    assert_eq!(
        conf.lines().collect::<Vec<_>>(),
        conffiles,
        "{package}: conffiles"
    );

    let script = |name: &str| {
        let path = control.join(name);
        run_ok(Command::new("sh").arg("-n").arg(&path));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            !text.contains("#DEBHELPER#"),
            "{package} {name}: token left"
        );
        text
    };
    let unit = format!("{package}.service");
    let postinst = script("postinst");
    let sysusers = postinst
        .find(&format!(
            "systemd-sysusers ${{DPKG_ROOT:+--root=\"$DPKG_ROOT\"}} {package}.conf"
        ))
        .unwrap_or_else(|| panic!("{package} postinst creates no user:\n{postinst}"));
    let uses_user = postinst
        .find("install -d -o vigil -g vigil")
        .unwrap_or_else(|| panic!("{package} postinst makes no data folder:\n{postinst}"));
    assert!(
        sysusers < uses_user,
        "{package} postinst uses vigil before creating it"
    );
    for wanted in [
        format!("deb-systemd-helper enable {unit}"),
        format!("deb-systemd-invoke try-restart {unit}"),
    ] {
        assert!(
            postinst.contains(&wanted),
            "{package} postinst lacks {wanted:?}"
        );
    }
    // Enabled, never started by an install: no start action anywhere.
    assert!(
        !postinst.contains("deb-systemd-invoke start") && !postinst.contains("_dh_action=start"),
        "{package} postinst starts the service:\n{postinst}"
    );
    let prerm = script("prerm");
    assert!(
        prerm.contains(&format!("deb-systemd-invoke stop {unit}")),
        "{prerm}"
    );
    let postrm = script("postrm");
    assert!(
        postrm.contains(&format!("deb-systemd-helper purge {unit}")),
        "{postrm}"
    );
    assert!(postrm.contains("rm -rf /var/lib/vigil"), "{postrm}");
    assert!(
        !postrm.contains("userdel") && !postrm.contains("deluser"),
        "{postrm}"
    );
}

#[test]
fn agent_package_holds_binary_unit_config_and_scripts() {
    // The release build script at least parses (it is run by hand: a
    // release build takes too long for the test run).
    run_ok(
        Command::new("bash")
            .arg("-n")
            .arg(repo().join("deploy/debian/build.sh")),
    );
    check_package(
        AGENT,
        AGENT_FILES,
        &["/etc/vigil/agent.toml"],
        &["vigil-agent"],
    );
}

#[test]
fn aggregator_package_holds_binaries_unit_configs_and_scripts() {
    check_package(
        AGGREGATOR,
        AGGREGATOR_FILES,
        &[
            "/etc/vigil/aggregator.toml",
            "/etc/vigil/rules/vigil-default.rules.yml",
        ],
        &["vigil-aggregator", "vigil-certs"],
    );
}

/// Runs `bin check-config --config config` (as `user`, when given).
pub(super) fn check_config(bin: &str, config: &Path, user: Option<&str>) -> (Option<i32>, String) {
    let mut cmd = match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--", bin]);
            c
        }
        None => Command::new(bin),
    };
    let r = run(cmd.args(["check-config", "--config"]).arg(config));
    (r.code, r.out)
}

/// The agent's default config, its absolute paths moved under `host`, with
/// this agent's identity installed as the config's comment says: returns the
/// config's path there.
fn agent_default_in(host: &Layout, text: &str) -> std::path::PathBuf {
    let config = host.install_config("/etc/vigil/agent.toml", text);
    let certs = host.mkdir("/etc/vigil/certs");
    let issued = host.mkdir("/issued");
    ca(&certs);
    agent_cert(&certs, &issued, "changeme");
    for (from, to) in [
        ("crt", "agent.crt"),
        ("key", "agent.key"),
        ("sign.key", "agent.sign.key"),
    ] {
        std::fs::copy(issued.join(format!("changeme.{from}")), certs.join(to)).expect("copy");
    }
    host.mkdir("/var/lib/vigil-agent");
    config
}

/// The aggregator's default config under `host`, with its TLS files and the
/// default rules where the config and the package put them.
fn aggregator_default_in(host: &Layout, text: &str) -> std::path::PathBuf {
    let config = host.install_config("/etc/vigil/aggregator.toml", text);
    let certs = host.mkdir("/etc/vigil/certs");
    ca(&certs);
    server_cert(&certs, &certs, &["vigil.example.com"]);
    host.write(
        "/etc/vigil/rules/vigil-default.rules.yml",
        read("deploy/rules/vigil-default.rules.yml"),
    );
    host.mkdir("/var/lib/vigil");
    config
}

#[test]
fn default_configs_pass_check_config_once_certificates_are_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = read("deploy/debian/agent.toml");
    let host = Layout::new(dir.path().join("agent"));
    let bare = host.install_config("/etc/vigil/agent.toml", &agent);
    // As installed: refused until the identity is there, naming it.
    let (code, out) = check_config(
        &vigil_tests::binary(AGENT).display().to_string(),
        &bare,
        None,
    );
    assert_eq!(code, Some(64), "{out}");
    assert!(
        out.contains("aggregator.ca") && out.contains("agent.crt"),
        "{out}"
    );
    let config = agent_default_in(&host, &agent);
    let (code, out) = check_config(
        &vigil_tests::binary(AGENT).display().to_string(),
        &config,
        None,
    );
    assert_eq!(
        code,
        Some(0),
        "deploy/debian/agent.toml with its identity:\n{out}"
    );

    let text = read("deploy/debian/aggregator.toml");
    let host = Layout::new(dir.path().join("aggregator"));
    let bare = host.install_config("/etc/vigil/aggregator.toml", &text);
    let bin = vigil_tests::binary(AGGREGATOR).display().to_string();
    let (code, out) = check_config(&bin, &bare, None);
    assert_eq!(code, Some(64), "{out}");
    assert!(out.contains("certs/ca.crt"), "{out}");
    let config = aggregator_default_in(&host, &text);
    let (code, out) = check_config(&bin, &config, None);
    assert_eq!(
        code,
        Some(0),
        "deploy/debian/aggregator.toml with its TLS files:\n{out}"
    );
    assert_rules_found(&host, &text, "deploy/debian/aggregator.toml");
}
