//! The packages on this machine: `dpkg -i` of both (and again, as an upgrade
//! would, keeping an edited config), the installed binaries and configs run
//! as the service user, then `dpkg -r` (configs and data stay) and `dpkg -P`
//! (nothing stays but the user vigil, which the test then deletes). Needs
//! root; serialised with every other run on the machine by a lock file, and
//! cleans up after an interrupted run first.

use std::path::Path;
use std::process::Command;

use super::deb::{agent_default_in, aggregator_default_in, check_config};
use super::deb_tools::{
    AGENT, AGGREGATOR, MACHINE_PATHS, Machine, deb, dpkg, run_ok, stat, status, systemd_traces,
    user,
};
use super::layout::{Layout, read};
use super::systemd::verify;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn install(package: &str) {
    let path = deb(package);
    let r = dpkg(&["--install", &path.display().to_string()]);
    assert!(r.ok(), "dpkg -i {package}: {:?}\n{}", r.code, r.out);
    assert_eq!(
        status(package),
        "ii ",
        "{package} after dpkg -i:\n{}",
        r.out
    );
}

fn exists(path: &str) -> bool {
    Path::new(path).symlink_metadata().is_ok()
}

/// The installed binary runs, its unit passes `systemd-analyze verify` where
/// it was installed and is enabled, the config is private to root and vigil,
/// refused as shipped for the certificates it names (read as vigil: the
/// permissions let the service read it), and accepted with them.
fn check_installed(package: &str, config: &str, data_dir: (&str, u32), needs: &str) {
    let (uid, gid, _) = user().expect("the package created the user vigil");
    let bin = format!("/usr/bin/{package}");
    let out = run_ok(Command::new(&bin).arg("--version"));
    assert_eq!(out.trim(), format!("{package} {VERSION}"));

    let unit = format!("/usr/lib/systemd/system/{package}.service");
    if let Err(e) = verify(&[Path::new(&unit)]) {
        panic!("installed {unit}: {e}");
    }
    let wants = format!("/etc/systemd/system/multi-user.target.wants/{package}.service");
    let link = std::fs::read_link(&wants).unwrap_or_else(|e| panic!("not enabled: {wants}: {e}"));
    assert!(
        link.ends_with(format!("systemd/system/{package}.service")),
        "{link:?}"
    );

    assert_eq!(
        stat(config),
        (0o640, 0, gid),
        "{config}: mode, owner, group"
    );
    assert_eq!(
        stat("/etc/vigil/certs"),
        (0o750, 0, gid),
        "/etc/vigil/certs"
    );
    let (dir, mode) = data_dir;
    assert_eq!(stat(dir), (mode, uid, gid), "{dir}: mode, owner, group");

    let (code, out) = check_config(&bin, Path::new(config), Some("vigil"));
    assert_eq!(
        code,
        Some(64),
        "{package} check-config of {config} as vigil:\n{out}"
    );
    // The config itself was read: only the files it names are missing.
    let unreadable = format!("cannot read {config}");
    assert!(out.contains(needs) && !out.contains(&unreadable), "{out}");
    let (code, out) = check_config(&bin, Path::new(config), Some("nobody"));
    assert_eq!(code, Some(64), "{out}");
    assert!(
        out.contains("Permission denied"),
        "{config} is readable by nobody:\n{out}"
    );

    let text = std::fs::read_to_string(config).expect("installed config");
    let dir = tempfile::tempdir().expect("tempdir");
    let host = Layout::new(dir.path().to_path_buf());
    let moved = if package == AGENT {
        agent_default_in(&host, &text)
    } else {
        aggregator_default_in(&host, &text)
    };
    let (code, out) = check_config(&bin, &moved, None);
    assert_eq!(
        code,
        Some(0),
        "installed {config} with its certificates:\n{out}"
    );
}

#[test]
fn packages_install_upgrade_remove_and_purge_on_this_machine() {
    let machine = Machine::take();

    // The agent alone: the user, its spool folder, the shared /etc/vigil.
    install(AGENT);
    let (uid, gid, entry) = user().expect("user vigil");
    assert!(
        uid < 1000 && gid < 1000,
        "vigil is not a system user: {uid}:{gid}"
    );
    assert!(
        entry.ends_with(":/var/lib/vigil:/usr/sbin/nologin"),
        "{entry}"
    );
    check_installed(
        AGENT,
        "/etc/vigil/agent.toml",
        ("/var/lib/vigil-agent", 0o700),
        "agent.crt",
    );
    assert!(
        !exists("/var/lib/vigil"),
        "the agent made the aggregator's data folder"
    );

    // Installed again, as an upgrade runs: an edited conffile is kept, as are
    // its permissions; the user is not made twice.
    let edited = format!(
        "{}\n# edited by the deb test\n",
        read("deploy/debian/agent.toml")
    );
    std::fs::write("/etc/vigil/agent.toml", &edited).expect("edit agent.toml");
    install(AGENT);
    assert_eq!(
        std::fs::read_to_string("/etc/vigil/agent.toml").ok(),
        Some(edited.clone())
    );
    assert_eq!(stat("/etc/vigil/agent.toml"), (0o640, 0, gid));
    assert_eq!(user().map(|u| (u.0, u.1)), Some((uid, gid)));

    // The aggregator beside it: the same user, its own data folder and rules.
    install(AGGREGATOR);
    assert_eq!(
        user().map(|u| (u.0, u.1)),
        Some((uid, gid)),
        "a second user vigil"
    );
    check_installed(
        AGGREGATOR,
        "/etc/vigil/aggregator.toml",
        ("/var/lib/vigil", 0o750),
        "certs/ca.crt",
    );
    assert_eq!(
        stat("/etc/vigil/rules/vigil-default.rules.yml"),
        (0o644, 0, 0)
    );
    let out = run_ok(Command::new("/usr/bin/vigil-certs").arg("--version"));
    assert_eq!(out.trim(), format!("vigil-certs {VERSION}"));

    // dpkg -r: the program and unit go; the config (edited) and spool stay.
    let r = dpkg(&["--remove", AGENT]);
    assert!(r.ok(), "dpkg -r: {}", r.out);
    assert_eq!(status(AGENT), "rc ");
    for gone in [
        "/usr/bin/vigil-agent",
        "/usr/lib/systemd/system/vigil-agent.service",
    ] {
        assert!(!exists(gone), "{gone} is left after dpkg -r");
    }
    assert_eq!(
        std::fs::read_to_string("/etc/vigil/agent.toml").ok(),
        Some(edited)
    );
    assert!(exists("/var/lib/vigil-agent"), "dpkg -r deleted the spool");

    // dpkg -P: config, spool and systemd state go; what the aggregator shares
    // (/etc/vigil/certs, the user) stays for it.
    let r = dpkg(&["--purge", AGENT]);
    assert!(r.ok(), "dpkg -P: {}", r.out);
    assert_eq!(status(AGENT), "", "dpkg still knows {AGENT}");
    for gone in ["/etc/vigil/agent.toml", "/var/lib/vigil-agent"] {
        assert!(!exists(gone), "{gone} is left after dpkg -P");
    }
    assert_eq!(
        systemd_traces("vigil-agent.service"),
        Vec::<std::path::PathBuf>::new()
    );
    assert!(
        exists("/etc/vigil/certs"),
        "purging the agent deleted the aggregator's /etc/vigil/certs"
    );
    assert_eq!(
        stat("/etc/vigil/certs"),
        (0o750, 0, gid),
        "purging the agent took the aggregator's certs folder"
    );
    assert!(user().is_some());

    let r = dpkg(&["--remove", AGGREGATOR]);
    assert!(r.ok(), "dpkg -r: {}", r.out);
    assert!(exists("/etc/vigil/aggregator.toml") && exists("/var/lib/vigil"));
    let r = dpkg(&["--purge", AGGREGATOR]);
    assert!(r.ok(), "dpkg -P: {}", r.out);
    assert_eq!(status(AGGREGATOR), "");
    for gone in MACHINE_PATHS {
        assert!(!exists(gone), "{gone} is left after purging both packages");
    }
    assert_eq!(
        systemd_traces("vigil-aggregator.service"),
        Vec::<std::path::PathBuf>::new()
    );
    // Documented: purge leaves the system user (files it owns may remain).
    assert_eq!(
        user().map(|u| (u.0, u.1)),
        Some((uid, gid)),
        "purge removed the user"
    );

    drop(machine);
    assert!(user().is_none(), "the test's cleanup left the user vigil");
}
