//! deploy/systemd/: `systemd-analyze verify` and `security` on the units, with
//! ExecStart pointed at the freshly built binaries, and the hardening and
//! paths the units promise.

use std::path::Path;
use std::process::Command;

use vigil_tests::binary;

use super::layout::{read, repo, toml_str};

/// (unit file, binary, writable data dir, highest allowed exposure in tenths).
const UNITS: [(&str, &str, &str, u32); 2] = [
    (
        "vigil-aggregator.service",
        "vigil-aggregator",
        "/var/lib/vigil",
        15,
    ),
    (
        "vigil-agent.service",
        "vigil-agent",
        "/var/lib/vigil-agent",
        20,
    ),
];

/// The `[Service]` section's settings, in order (a key may repeat).
fn service_settings(text: &str) -> Vec<(String, String)> {
    let mut section = "";
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if section == "[Service]" {
            let (k, v) = line.split_once('=').expect("key=value");
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

fn setting<'a>(settings: &'a [(String, String)], key: &str, unit: &str) -> &'a str {
    let values: Vec<&str> = settings
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        values.len(),
        1,
        "{unit}: {key}= should be set once: {values:?}"
    );
    values[0]
}

/// `systemd-analyze` itself, or a clear failure.
fn analyzer() -> &'static str {
    match Command::new("systemd-analyze").arg("--version").output() {
        Ok(out) if out.status.success() => "systemd-analyze",
        Ok(out) => panic!(
            "systemd-analyze --version failed here ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "systemd-analyze is not installed ({e}); it ships in Debian's systemd package: \
             apt-get install -y systemd"
        ),
    }
}

/// `systemd-analyze verify` on `units`: Ok, or everything it said about them.
/// Its exit code misses unknown keys and bad values (warnings), so any line
/// naming one of the files counts as a failure too.
pub(super) fn verify(units: &[&Path]) -> Result<(), String> {
    let out = Command::new(analyzer())
        .args(["verify", "--man=no"])
        .args(units)
        .output()
        .map_err(|e| format!("systemd-analyze verify could not run: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let about_ours: Vec<&str> = text
        .lines()
        .filter(|l| {
            units.iter().any(|u| {
                let name = u.file_name().and_then(|n| n.to_str()).unwrap_or("?");
                l.contains(name)
            })
        })
        .collect();
    if out.status.success() && about_ours.is_empty() {
        Ok(())
    } else {
        Err(format!("exit {}:\n{text}", out.status))
    }
}

/// A copy of unit `name` in `dir` that runs the built binary.
fn runnable_copy(dir: &Path, name: &str, bin: &str) -> std::path::PathBuf {
    let text = read(&format!("deploy/systemd/{name}"));
    let installed = format!("/usr/bin/{bin} ");
    assert!(
        text.contains(&installed),
        "{name}: ExecStart runs {installed}"
    );
    let built = format!("{} ", binary(bin).display());
    let path = dir.join(name);
    std::fs::write(&path, text.replace(&installed, &built)).expect("write unit");
    path
}

#[test]
fn units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let copies: Vec<_> = UNITS
        .iter()
        .map(|(name, bin, _, _)| runnable_copy(dir.path(), name, bin))
        .collect();
    let paths: Vec<&Path> = copies.iter().map(|p| p.as_path()).collect();
    if let Err(e) = verify(&paths) {
        panic!("systemd-analyze verify rejects the units: {e}");
    }

    // The check itself can fail: a misspelt key and a missing binary.
    let bad = dir.path().join("vigil-broken.service");
    let text = std::fs::read_to_string(&copies[0]).expect("read copy");
    std::fs::write(&bad, text.replace("ProtectSystem=", "ProtectSystm=")).expect("write");
    let e = verify(&[&bad]).expect_err("a misspelt key is reported");
    assert!(e.contains("ProtectSystm"), "{e}");
    std::fs::write(
        &bad,
        text.replace(
            &binary("vigil-aggregator").display().to_string(),
            "/nonexistent/vigil",
        ),
    )
    .expect("write");
    let e = verify(&[&bad]).expect_err("a missing binary is reported");
    assert!(e.contains("/nonexistent/vigil"), "{e}");
}

#[test]
fn units_stay_under_their_exposure_threshold() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, bin, _, threshold) in UNITS {
        let copy = runnable_copy(dir.path(), name, bin);
        let out = Command::new(analyzer())
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(format!("--threshold={threshold}"))
            .arg(&copy)
            .output()
            .expect("systemd-analyze security runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let overall = text
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or_else(|| {
                panic!(
                    "{name}: no exposure figure from systemd-analyze security:\n{text}{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        assert!(
            out.status.success(),
            "{name}: exposure above {}.{}: {overall}\n{text}",
            threshold / 10,
            threshold % 10
        );
    }
}

#[test]
fn units_are_hardened_and_agree_with_the_example_configs() {
    for (name, bin, data_dir, _) in UNITS {
        let text = read(&format!("deploy/systemd/{name}"));
        let s = service_settings(&text);
        let get = |key: &str| setting(&s, key, name);
        for (key, want) in [
            ("User", "vigil"),
            ("Group", "vigil"),
            ("ProtectSystem", "strict"),
            ("NoNewPrivileges", "yes"),
            ("CapabilityBoundingSet", ""),
            ("AmbientCapabilities", ""),
            ("PrivateDevices", "yes"),
            ("ProtectKernelTunables", "yes"),
            ("ProtectKernelModules", "yes"),
            ("ProtectKernelLogs", "yes"),
            ("ProtectControlGroups", "yes"),
            ("RestrictNamespaces", "yes"),
            ("RestrictSUIDSGID", "yes"),
            ("MemoryDenyWriteExecute", "yes"),
            ("LockPersonality", "yes"),
            ("SystemCallArchitectures", "native"),
            ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
            ("RestartPreventExitStatus", "64"),
        ] {
            assert_eq!(get(key), want, "{name}: {key}=");
        }
        // The data dir is the only writable path, and systemd creates it.
        assert_eq!(get("ReadWritePaths"), data_dir, "{name}");
        assert_eq!(
            format!("/var/lib/{}", get("StateDirectory")),
            data_dir,
            "{name}"
        );
        let filters: Vec<&str> = s
            .iter()
            .filter(|(k, _)| k == "SystemCallFilter")
            .map(|(_, v)| v.as_str())
            .collect();
        assert!(filters.contains(&"@system-service"), "{name}: {filters:?}");
        let exec = get("ExecStart");
        let config = if bin == "vigil-agent" {
            "/etc/vigil/agent.toml"
        } else {
            "/etc/vigil/aggregator.toml"
        };
        assert_eq!(
            exec,
            format!("/usr/bin/{bin} run --config {config}"),
            "{name}"
        );
    }
    // The aggregator's SIGHUP reloads rules; the agent has no reload.
    let agg = service_settings(&read("deploy/systemd/vigil-aggregator.service"));
    assert_eq!(
        setting(&agg, "ExecReload", "aggregator"),
        "/bin/kill -HUP $MAINPID"
    );
    assert_eq!(setting(&agg, "ProtectHome", "aggregator"), "yes");
    assert_eq!(setting(&agg, "PrivateTmp", "aggregator"), "yes");

    // Every example agent spools inside the agent unit's writable dir.
    for example in ["api-host", "db-host", "cache-host"] {
        let text = read(&format!("deploy/examples/{example}.toml"));
        let spool = toml_str(&text, "spool.dir");
        assert!(
            spool.starts_with("/var/lib/vigil-agent/"),
            "{example}: spool.dir {spool} is outside ReadWritePaths"
        );
    }
    let sysusers = read("deploy/systemd/vigil.sysusers.conf");
    assert!(
        sysusers.lines().any(|l| l.starts_with("u vigil ")),
        "vigil.sysusers.conf creates the user vigil"
    );
    assert!(repo().join("deploy/systemd").is_dir());
}
