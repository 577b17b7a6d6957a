//! A machine's or container's filesystem, rebuilt under a temporary folder,
//! and `check-config` run inside it.
//!
//! Deployed configs name absolute paths (/etc/vigil/certs/ca.crt,
//! /var/lib/vigil-agent/spool). [`Layout::install_config`] rewrites every
//! absolute path in a TOML config to the same path under the layout's root,
//! so the binary checks the files exactly where the deployment puts them.

use std::path::{Path, PathBuf};
use std::process::Command;

use vigil_tests::binary;

/// The repository's root folder.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Reads a file of the repository.
pub fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A filesystem root in a temporary folder.
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: PathBuf) -> Layout {
        std::fs::create_dir_all(&root).expect("layout root");
        Layout { root }
    }

    /// Where absolute path `abs` lives in this layout.
    pub fn path(&self, abs: &str) -> PathBuf {
        assert!(abs.starts_with('/'), "{abs:?} is not an absolute path");
        self.root.join(abs.trim_start_matches('/'))
    }

    /// Creates folder `abs` (and its parents).
    pub fn mkdir(&self, abs: &str) -> PathBuf {
        let p = self.path(abs);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        p
    }

    /// Writes `contents` to `abs`, creating its folder.
    pub fn write(&self, abs: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(abs);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("parent folder");
        }
        std::fs::write(&p, contents).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        p
    }

    /// Makes `abs` a symbolic link to `target` (a volume shared by layouts).
    pub fn link(&self, abs: &str, target: &Path) {
        let p = self.path(abs);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("parent folder");
        }
        std::os::unix::fs::symlink(target, &p)
            .unwrap_or_else(|e| panic!("{} -> {}: {e}", p.display(), target.display()));
    }

    /// Installs TOML config `text` at `abs`, its absolute paths moved into
    /// this layout; returns where it was written.
    pub fn install_config(&self, abs: &str, text: &str) -> PathBuf {
        let mut table: toml::Table =
            toml::from_str(text).unwrap_or_else(|e| panic!("{abs} is not TOML: {e}"));
        for (_, value) in table.iter_mut() {
            self.rebase(value);
        }
        let text = toml::to_string(&table).expect("TOML serialises");
        self.write(abs, text)
    }

    fn rebase(&self, value: &mut toml::Value) {
        match value {
            toml::Value::String(s) if s.starts_with('/') => {
                *s = self.path(s).display().to_string();
            }
            toml::Value::String(s) if s.starts_with("sqlite:/") => {
                let path = self.path(&s["sqlite:".len()..]);
                *s = format!("sqlite:{}", path.display());
            }
            toml::Value::Array(items) => items.iter_mut().for_each(|v| self.rebase(v)),
            toml::Value::Table(t) => t.iter_mut().for_each(|(_, v)| self.rebase(v)),
            _ => {}
        }
    }
}

/// Runs `BINARY check-config --config PATH`: (exit code, stdout + stderr).
pub fn check_config(bin: &str, config: &Path) -> (i32, String) {
    let out = Command::new(binary(bin))
        .args(["check-config", "--config"])
        .arg(config)
        .output()
        .unwrap_or_else(|e| panic!("{bin} check-config: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Asserts that `check-config` accepts `config`.
pub fn assert_config_ok(bin: &str, config: &Path, what: &str) {
    let (code, text) = check_config(bin, config);
    assert!(
        code == 0 && text.contains("config OK"),
        "{what}: {bin} check-config exited {code}:\n{text}"
    );
}

/// The value of TOML key `dotted` (e.g. "aggregator.server_name") in `text`.
pub fn toml_str(text: &str, dotted: &str) -> String {
    let table: toml::Table = toml::from_str(text).expect("TOML");
    let mut value = &toml::Value::Table(table);
    for key in dotted.split('.') {
        value = value
            .get(key)
            .unwrap_or_else(|| panic!("no key {dotted:?} in:\n{text}"));
    }
    value
        .as_str()
        .unwrap_or_else(|| panic!("{dotted} is not a string"))
        .to_string()
}

/// The port of a `host:port` address.
pub fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("{addr:?} has no port"))
}

/// Issues a CA in `ca_dir`.
pub fn ca(ca_dir: &Path) {
    vigil_certs::create_ca(ca_dir, "Deploy Test CA", 30, false).expect("CA");
}

/// Issues the aggregator's certificate for `names` into `dir` (CA in `ca_dir`).
pub fn server_cert(ca_dir: &Path, dir: &Path, names: &[&str]) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    vigil_certs::issue_server(ca_dir, dir, &names, 30, false).expect("server certificate");
}

/// Issues agent `id`'s identity into `dir` (CA in `ca_dir`).
pub fn agent_cert(ca_dir: &Path, dir: &Path, id: &str) {
    vigil_certs::issue_agent(ca_dir, dir, id, 30, false).expect("agent certificate");
}

/// Asserts that each `alerting.rule_files` pattern of config `text` (absolute,
/// `DIR/NAME` or `DIR/*SUFFIX`) matches a file in `layout`: the aggregator
/// accepts a glob that matches nothing, and would then evaluate no rules.
pub fn assert_rules_found(layout: &Layout, text: &str, what: &str) {
    let table: toml::Table = toml::from_str(text).expect("TOML");
    let patterns = table["alerting"]["rule_files"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no alerting.rule_files"));
    assert!(!patterns.is_empty(), "{what}: no rule files");
    for pattern in patterns.iter().filter_map(toml::Value::as_str) {
        let (dir, name) = pattern.rsplit_once('/').expect("absolute pattern");
        let suffix = name.trim_start_matches('*');
        assert!(
            !suffix.contains(['*', '?', '[']),
            "{what}: pattern {pattern}"
        );
        let found = std::fs::read_dir(layout.path(dir))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().ends_with(suffix))
            })
            .unwrap_or(false);
        assert!(found, "{what}: rule_files {pattern} matches no file");
    }
}
