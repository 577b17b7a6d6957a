//! Reading compose.yml's resolved form and the Dockerfile, and rebuilding a
//! container's filesystem from them (for compose.rs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_norway::Value;
use vigil_tests::binary;

use super::layout::{Layout, repo};

pub const COMPOSE: &str = "deploy/docker/compose.yml";

/// The compose command: the plugin, else Debian's docker-compose; or a clear failure.
pub fn compose_command() -> Vec<&'static str> {
    let works = |cmd: &[&str]| {
        Command::new(cmd[0])
            .args(&cmd[1..])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works(&["docker", "compose", "version"]) {
        vec!["docker", "compose"]
    } else if works(&["docker-compose", "version"]) {
        vec!["docker-compose"]
    } else {
        panic!(
            "neither `docker compose` (the compose plugin) nor `docker-compose` runs here, and \
             this test needs one to check deploy/docker/compose.yml. On Debian: \
             apt-get install -y --no-install-recommends docker-compose"
        )
    }
}

pub fn compose(args: &[&str]) -> Output {
    let cmd = compose_command();
    let mut c = Command::new(cmd[0]);
    c.args(&cmd[1..])
        .arg("-f")
        .arg(repo().join(COMPOSE))
        .args(args);
    // Only the file's own defaults count.
    for var in [
        "VIGIL_VERSION",
        "VIGIL_DB_PASSWORD",
        "COMPOSE_PROFILES",
        "COMPOSE_FILE",
        "COMPOSE_PROJECT_NAME",
    ] {
        c.env_remove(var);
    }
    c.output().expect("compose runs")
}

/// The resolved configuration, as `compose config` prints it.
pub fn resolved(profile: Option<&str>) -> Value {
    let mut args = Vec::new();
    if let Some(p) = profile {
        args.extend(["--profile", p]);
    }
    args.push("config");
    let out = compose(&args);
    assert!(
        out.status.success(),
        "compose config {profile:?} rejects {COMPOSE}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_norway::from_slice(&out.stdout).expect("compose config prints YAML")
}

pub fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|items| items.iter().map(s).collect())
        .unwrap_or_default()
}

/// A volume or bind mount, from the short or the long syntax.
#[derive(Debug)]
pub struct Mount {
    pub source: String,
    pub target: String,
    pub named: bool,
    pub read_only: bool,
}

pub fn mounts(service: &Value) -> Vec<Mount> {
    let Some(items) = service["volumes"].as_sequence() else {
        return Vec::new();
    };
    items
        .iter()
        .map(|m| match m {
            Value::String(text) => {
                let parts: Vec<&str> = text.split(':').collect();
                Mount {
                    source: parts[0].to_string(),
                    target: parts[1].to_string(),
                    named: !parts[0].starts_with(['/', '.']),
                    read_only: parts
                        .get(2)
                        .is_some_and(|o| o.split(',').any(|f| f == "ro")),
                }
            }
            long => Mount {
                source: s(&long["source"]),
                target: s(&long["target"]),
                named: s(&long["type"]) == "volume",
                read_only: long["read_only"].as_bool().unwrap_or(false),
            },
        })
        .collect()
}

/// (host ip, published, target, protocol) of each published port.
pub fn ports(service: &Value) -> Vec<(String, u16, u16, String)> {
    let Some(items) = service["ports"].as_sequence() else {
        return Vec::new();
    };
    items
        .iter()
        .map(|p| match p {
            Value::String(text) => {
                let (addr, proto) = text.split_once('/').unwrap_or((text, "tcp"));
                let parts: Vec<&str> = addr.split(':').collect();
                let (ip, published, target) = match parts.as_slice() {
                    [ip, p, t] => (ip.to_string(), p, t),
                    [p, t] => (String::new(), p, t),
                    _ => panic!("port {text:?}"),
                };
                let n = |x: &str| x.parse::<u16>().expect("port number");
                (ip, n(published), n(target), proto.to_string())
            }
            long => {
                let n = |v: &Value| s(v).parse::<u16>().expect("port number");
                let proto = long["protocol"].as_str().unwrap_or("tcp").to_string();
                let ip = long["host_ip"].as_str().unwrap_or("").to_string();
                (ip, n(&long["published"]), n(&long["target"]), proto)
            }
        })
        .collect()
}

/// The `${NAME:-/default/path}` settings of a shell script.
pub fn script_defaults(script: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for piece in script.split("${").skip(1) {
        if let Some((name, rest)) = piece.split_once(":-") {
            if let Some((default, _)) = rest.split_once('}') {
                out.insert(name.to_string(), default.to_string());
            }
        }
    }
    out
}

/// The `COPY` lines (not `--from`) of Dockerfile stage `stage`, and its last `USER`.
pub fn stage(dockerfile: &str, stage: &str) -> (Vec<(Vec<String>, String)>, Option<String>) {
    let mut inside = false;
    let mut copies = Vec::new();
    let mut user = None;
    for line in dockerfile.lines().map(str::trim) {
        if let Some(from) = line.strip_prefix("FROM ") {
            inside = from.ends_with(&format!(" AS {stage}"));
            continue;
        }
        if !inside {
            continue;
        }
        if let Some(rest) = line.strip_prefix("COPY ") {
            if !rest.starts_with("--from") {
                let mut words: Vec<String> = rest.split_whitespace().map(String::from).collect();
                let dest = words.pop().expect("COPY destination");
                copies.push((words, dest));
            }
        } else if let Some(u) = line.strip_prefix("USER ") {
            user = Some(u.to_string());
        }
    }
    (copies, user)
}

/// One container's filesystem: the image's files, then its mounts; named
/// volumes are folders under `volumes`, shared with the other containers.
/// TOML config files are installed with their paths rebased.
pub fn container(
    root: &Path,
    service: &Value,
    image_files: &[(Vec<String>, String)],
    volumes: &Path,
) -> Layout {
    let layout = Layout::new(root.to_path_buf());
    for (sources, dest) in image_files {
        for src in sources {
            let name = Path::new(src)
                .file_name()
                .and_then(|n| n.to_str())
                .expect("file name");
            let target = layout.mkdir(dest).join(name);
            std::fs::copy(repo().join(src), &target).expect("copy image file");
        }
    }
    for m in mounts(service) {
        if m.named {
            let dir = volumes.join(&m.source);
            std::fs::create_dir_all(&dir).expect("volume");
            layout.link(&m.target, &dir);
        } else if m.source.ends_with(".toml") {
            let text = std::fs::read_to_string(&m.source).expect("bind-mounted config");
            layout.install_config(&m.target, &text);
        } else {
            layout.link(&m.target, Path::new(&m.source));
        }
    }
    layout
}

pub fn run_script(script: &Path, env: &[(String, PathBuf)], extra: &[(&str, String)]) -> String {
    let bin_dir = binary("vigil-certs")
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("sh");
    cmd.arg(script).env("PATH", path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("sh runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{} failed:\n{text}", script.display());
    text
}

/// The script a one-shot service runs, its env defaults mapped to where its
/// mounts put them in `layout`.
pub fn one_shot(service: &Value, layout: &Layout) -> (PathBuf, Vec<(String, PathBuf)>) {
    let command = strings(&service["command"]);
    let script = layout.path(&command[0]);
    assert!(
        script.is_file(),
        "{} is not in the image (COPY)",
        command[0]
    );
    let text = std::fs::read_to_string(&script).expect("script");
    let env = script_defaults(&text)
        .into_iter()
        .filter(|(_, default)| default.starts_with('/'))
        .map(|(name, default)| (name, layout.path(&default)))
        .collect();
    (script, env)
}
