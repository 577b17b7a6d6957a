//! Reading the Kubernetes manifests and rebuilding a pod's filesystem from
//! its volume mounts (for k8s.rs).

use std::path::Path;

use serde::Deserialize;
use serde_norway::Value;

use super::layout::{Layout, read, repo};

pub const DIR: &str = "deploy/k8s";

/// (file, document) for every YAML document under deploy/k8s.
pub fn manifests() -> Vec<(String, Value)> {
    let mut files: Vec<_> = std::fs::read_dir(repo().join(DIR))
        .expect("deploy/k8s")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yml") || n.ends_with(".yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = read(&format!("{DIR}/{file}"));
        for doc in serde_norway::Deserializer::from_str(&text) {
            let value = Value::deserialize(doc).unwrap_or_else(|e| panic!("{file}: {e}"));
            out.push((file.clone(), value));
        }
    }
    out
}

pub fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

pub fn find<'a>(all: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    all.iter()
        .map(|(_, v)| v)
        .find(|v| v["kind"].as_str() == Some(kind) && v["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} in {DIR}"))
}

pub fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map(Vec::as_slice).unwrap_or_default()
}

/// The named container of a workload's pod template.
pub fn container<'a>(workload: &'a Value, name: &str) -> &'a Value {
    seq(&workload["spec"]["template"]["spec"]["containers"])
        .iter()
        .find(|c| c["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// Rebuilds `container`'s filesystem from its volume mounts. ConfigMap keys
/// become files (TOML configs with their paths rebased), Secret keys (as the
/// template names them) are read from `pki` (or a placeholder) and get the
/// volume's `defaultMode` (Kubernetes' 0644 when unset: the binaries refuse
/// keys other users can read, so the manifests must set it), emptyDirs
/// become folders.
pub fn pod_filesystem(
    root: &Path,
    all: &[(String, Value)],
    workload: &Value,
    container: &Value,
    pki: &Path,
) -> Layout {
    let layout = Layout::new(root.to_path_buf());
    let volumes = seq(&workload["spec"]["template"]["spec"]["volumes"]);
    for mount in seq(&container["volumeMounts"]) {
        let name = s(&mount["name"]);
        let path = s(&mount["mountPath"]);
        let volume = volumes
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("volumeMount {name} has no volume"));
        let mut mode = None;
        let files: Vec<(String, Vec<u8>)> = if let Some(cm) = volume["configMap"]["name"].as_str() {
            let data = find(all, "ConfigMap", cm)["data"]
                .as_mapping()
                .expect("ConfigMap data");
            data.iter()
                .map(|(k, v)| (s(k).to_string(), s(v).as_bytes().to_vec()))
                .collect()
        } else if let Some(secret) = volume["secret"]["secretName"].as_str() {
            mode = Some(default_mode(&volume["secret"]["defaultMode"]));
            let data = find(all, "Secret", secret)["stringData"]
                .as_mapping()
                .expect("stringData");
            data.keys()
                .map(|k| {
                    let key = s(k).to_string();
                    let bytes =
                        std::fs::read(pki.join(&key)).unwrap_or_else(|_| b"placeholder".to_vec());
                    (key, bytes)
                })
                .collect()
        } else if volume.get("emptyDir").is_some() {
            layout.mkdir(path);
            continue;
        } else {
            panic!("volume {name}: only ConfigMaps, Secrets and emptyDirs are materialised");
        };
        let sub = mount["subPath"].as_str();
        for (key, bytes) in files {
            let target = match sub {
                Some(sub) if sub == key => path.to_string(),
                Some(_) => continue,
                None => format!("{path}/{key}"),
            };
            if key.ends_with(".toml") {
                layout.install_config(&target, &String::from_utf8(bytes).expect("UTF-8"));
            } else {
                let written = layout.write(&target, bytes);
                if let Some(mode) = mode {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&written, std::fs::Permissions::from_mode(mode))
                        .expect("chmod");
                }
            }
        }
    }
    layout
}

/// A Secret volume's file mode: `defaultMode` as written (`0440`, an octal
/// string to a YAML 1.2 parser, or the number a YAML 1.1 one makes of it),
/// else Kubernetes' default 0644.
fn default_mode(value: &Value) -> u32 {
    if let Some(n) = value.as_u64() {
        return u32::try_from(n).expect("a file mode");
    }
    match value.as_str() {
        Some(text) => u32::from_str_radix(text.trim_start_matches("0o"), 8)
            .unwrap_or_else(|_| panic!("defaultMode {text:?} is not octal")),
        None => 0o644,
    }
}

/// The mount paths of `container`'s emptyDir volumes: all it may write.
pub fn empty_dirs(workload: &Value, container: &Value) -> Vec<String> {
    let volumes = seq(&workload["spec"]["template"]["spec"]["volumes"]);
    seq(&container["volumeMounts"])
        .iter()
        .filter(|m| {
            volumes
                .iter()
                .any(|v| v["name"] == m["name"] && v.get("emptyDir").is_some())
        })
        .map(|m| s(&m["mountPath"]).to_string())
        .collect()
}
