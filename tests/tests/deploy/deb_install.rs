//! The packages on this machine, used as docs/deploy.md tells an operator:
//! `dpkg -i` of both (the agent twice, as an upgrade runs, keeping an edited
//! config); the installed configs refused as shipped, then accepted as vigil
//! once certificates are in /etc/vigil/certs; the aggregator's documented
//! commands run as vigil against its SQLite file; then `dpkg -r` (configs,
//! keys and data stay) and `dpkg -P` (only the keys put there by hand and the
//! user vigil stay; the test then deletes them). Needs root; serialised with
//! every other run on the machine by a lock file, and cleans up after an
//! interrupted run first.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::deb::check_config;
use super::deb_tools::{
    AGENT, AGGREGATOR, CERTS, CERTS_MARKER, MACHINE_PATHS, Machine, USER, deb, dpkg, run, run_ok,
    stat, status, systemd_traces, user,
};
use super::layout::{ca, read, server_cert};
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

/// The installed binary runs; its unit passes `systemd-analyze verify` where
/// it was installed and is enabled; config, certs folder and data folder have
/// their owners and modes; the config as shipped is read by vigil and refused
/// for the missing file `needs`, and unreadable to anyone else.
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
    assert_eq!(stat(CERTS), (0o750, 0, gid), "{CERTS}");
    let (dir, mode) = data_dir;
    assert_eq!(stat(dir), (mode, uid, gid), "{dir}: mode, owner, group");

    let (code, out) = check_config(&bin, Path::new(config), Some(USER));
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
}

/// Copies `files` (source, name) into /etc/vigil/certs as the configs'
/// comments say: root:vigil, 0640.
fn put_certs(files: &[(PathBuf, &str)]) {
    let (_, gid, _) = user().expect("user vigil");
    for (from, name) in files {
        let to = Path::new(CERTS).join(name);
        std::fs::copy(from, &to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
        std::os::unix::fs::chown(&to, Some(0), Some(gid)).expect("chown");
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    }
}

/// `check-config` of the installed `config` as vigil passes.
fn config_ok_as_vigil(package: &str, config: &str) {
    let (code, out) = check_config(
        &format!("/usr/bin/{package}"),
        Path::new(config),
        Some(USER),
    );
    assert_eq!(
        code,
        Some(0),
        "{package} check-config of {config} as vigil:\n{out}"
    );
}

/// `vigil-aggregator ARGS --config /etc/vigil/aggregator.toml` as vigil.
fn aggregator_as_vigil(args: &[&str]) -> String {
    run_ok(
        Command::new("runuser")
            .args(["-u", USER, "--", "/usr/bin/vigil-aggregator"])
            .args(args)
            .args(["--config", "/etc/vigil/aggregator.toml"]),
    )
}

#[test]
fn packages_install_upgrade_remove_and_purge_on_this_machine() {
    let machine = Machine::take();
    // The operator's CA and the identities it issues, off the machine.
    let issued = tempfile::tempdir().expect("tempdir");
    let ca_dir = issued.path().join("ca");
    std::fs::create_dir(&ca_dir).expect("ca dir");
    ca(&ca_dir);

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
    // Its identity as the config's comment says: then it passes, as vigil.
    std::fs::write(Path::new(CERTS).join(CERTS_MARKER), "").expect("marker");
    let public_key = vigil_certs::issue_agent(&ca_dir, issued.path(), "changeme", 30, false)
        .expect("agent identity");
    let i = |name: &str| issued.path().join(name);
    put_certs(&[
        (ca_dir.join("ca.crt"), "ca.crt"),
        (i("changeme.crt"), "agent.crt"),
        (i("changeme.key"), "agent.key"),
        (i("changeme.sign.key"), "agent.sign.key"),
    ]);
    config_ok_as_vigil(AGENT, "/etc/vigil/agent.toml");

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
    config_ok_as_vigil(AGENT, "/etc/vigil/agent.toml");

    // The aggregator beside it: the same user, its data folder and rules.
    install(AGGREGATOR);
    assert_eq!(
        user().map(|u| (u.0, u.1)),
        Some((uid, gid)),
        "a second user vigil"
    );
    let config = "/etc/vigil/aggregator.toml";
    check_installed(AGGREGATOR, config, ("/var/lib/vigil", 0o750), "server.crt");
    assert_eq!(
        stat("/etc/vigil/rules/vigil-default.rules.yml"),
        (0o644, 0, 0)
    );
    let out = run_ok(Command::new("/usr/bin/vigil-certs").arg("--version"));
    assert_eq!(out.trim(), format!("vigil-certs {VERSION}"));
    server_cert(&ca_dir, issued.path(), &["vigil.example.com"]);
    put_certs(&[
        (i("server.crt"), "server.crt"),
        (i("server.key"), "server.key"),
    ]);
    config_ok_as_vigil(AGGREGATOR, config);
    // The documented first steps, as vigil: the SQLite file is the service's.
    let out = aggregator_as_vigil(&["create-user", "--name", "admin", "--role", "admin"]);
    assert!(out.contains("admin"), "{out}");
    let out = aggregator_as_vigil(&[
        "register-agent",
        "--agent-id",
        "changeme",
        "--public-key",
        &public_key,
    ]);
    assert!(out.contains("registered agent changeme"), "{out}");
    assert_eq!(stat("/var/lib/vigil/vigil.db").1, uid, "vigil.db's owner");

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

    // dpkg -P: its config, spool and systemd state go; the keys stay.
    let r = dpkg(&["--purge", AGENT]);
    assert!(r.ok(), "dpkg -P: {}", r.out);
    assert_eq!(status(AGENT), "", "dpkg still knows {AGENT}");
    for gone in ["/etc/vigil/agent.toml", "/var/lib/vigil-agent"] {
        assert!(!exists(gone), "{gone} is left after dpkg -P");
    }
    assert_eq!(systemd_traces("vigil-agent.service"), Vec::<PathBuf>::new());
    assert!(
        exists("/etc/vigil/certs/agent.key"),
        "purge deleted a key put there by hand"
    );
    assert!(user().is_some());

    // The aggregator: dpkg -r keeps config and database; dpkg -P deletes both.
    let r = dpkg(&["--remove", AGGREGATOR]);
    assert!(r.ok(), "dpkg -r: {}", r.out);
    assert!(exists(config) && exists("/var/lib/vigil/vigil.db"));
    let r = dpkg(&["--purge", AGGREGATOR]);
    assert!(r.ok(), "dpkg -P: {}", r.out);
    assert_eq!(status(AGGREGATOR), "");
    for gone in [config, "/etc/vigil/rules", "/var/lib/vigil"] {
        assert!(!exists(gone), "{gone} is left after dpkg -P");
    }
    assert_eq!(
        systemd_traces("vigil-aggregator.service"),
        Vec::<PathBuf>::new()
    );
    // What stays, as documented: the keys put there by hand (so /etc/vigil)
    // and the system user.
    let mut left: Vec<String> = std::fs::read_dir("/etc/vigil")
        .expect("/etc/vigil")
        .chain(std::fs::read_dir(CERTS).expect("certs"))
        .map(|e| e.expect("entry").path().display().to_string())
        .collect();
    left.sort();
    let mut kept: Vec<String> = [
        "agent.crt",
        "agent.key",
        "agent.sign.key",
        "ca.crt",
        "server.crt",
        "server.key",
        CERTS_MARKER,
    ]
    .iter()
    .map(|n| format!("{CERTS}/{n}"))
    .chain([CERTS.to_string()])
    .collect();
    kept.sort();
    assert_eq!(left, kept, "/etc/vigil after purging both packages");
    assert_eq!(
        user().map(|u| (u.0, u.1)),
        Some((uid, gid)),
        "purge removed the user"
    );

    drop(machine);
    for gone in MACHINE_PATHS {
        assert!(!exists(gone), "the test's cleanup left {gone}");
    }
    assert!(user().is_none(), "the test's cleanup left the user vigil");
    let r = run(Command::new("getent").args(["group", USER]));
    assert!(!r.ok(), "the test's cleanup left the group vigil");
}
