//! deploy/k8s/: every manifest parses; names, labels, ports, mounts and
//! security settings agree with each other, with the Dockerfile and with the
//! configs; and the ConfigMaps' configs pass `check-config` in a copy of
//! each pod's filesystem, built from its volume mounts (Secrets filled with
//! freshly issued certificates under the keys the template names).

use std::collections::BTreeSet;

use super::k8s_files::{DIR, container, empty_dirs, find, manifests, pod_filesystem, s, seq};
use super::layout::{
    agent_cert, assert_config_ok, assert_rules_found, ca, port_of, read, server_cert, toml_str,
};

const NAMESPACE: &str = "vigil";
const SECRETS_TEMPLATE: &str = "secrets.template.yml";
/// The node name the agent's template is checked with.
const NODE: &str = "node-1";

#[test]
fn manifests_parse_and_follow_the_conventions() {
    let all = manifests();
    let kinds: BTreeSet<String> = all
        .iter()
        .filter(|(f, _)| f != "kustomization.yaml")
        .map(|(_, v)| format!("{}/{}", s(&v["kind"]), s(&v["metadata"]["name"])))
        .collect();
    let names: BTreeSet<&str> = kinds.iter().map(String::as_str).collect();
    for want in [
        "Namespace/vigil",
        "ConfigMap/vigil-aggregator-config",
        "ConfigMap/vigil-rules",
        "ConfigMap/vigil-agent-config",
        "Deployment/vigil-aggregator",
        "Service/vigil-aggregator",
        "Service/vigil-ingest",
        "PodDisruptionBudget/vigil-aggregator",
        "DaemonSet/vigil-agent",
        "Secret/vigil-aggregator-tls",
        "Secret/vigil-agent-identities",
        "Secret/vigil-postgres",
    ] {
        assert!(names.contains(want), "{want} missing from {DIR}: {names:?}");
    }

    for (file, doc) in &all {
        if file == "kustomization.yaml" {
            continue;
        }
        let what = format!(
            "{file}: {}/{}",
            s(&doc["kind"]),
            s(&doc["metadata"]["name"])
        );
        assert!(doc["apiVersion"].as_str().is_some(), "{what}: apiVersion");
        assert_eq!(
            doc["metadata"]["labels"]["app.kubernetes.io/part-of"].as_str(),
            Some("vigil"),
            "{what}"
        );
        if doc["kind"] != "Namespace" {
            assert_eq!(
                doc["metadata"]["namespace"].as_str(),
                Some(NAMESPACE),
                "{what}"
            );
        }
        // Secrets exist only as templates: placeholders, never key material.
        if doc["kind"] == "Secret" {
            assert_eq!(
                file, SECRETS_TEMPLATE,
                "{what}: real Secrets are not committed"
            );
            for (k, v) in doc["stringData"].as_mapping().expect("stringData") {
                assert!(
                    s(v).starts_with("REPLACE: "),
                    "{what}: {} is not a placeholder",
                    s(k)
                );
            }
        }
    }
    for (file, _) in &all {
        let text = read(&format!("{DIR}/{file}"));
        assert!(
            !text.contains("PRIVATE KEY-----"),
            "{file} holds a private key"
        );
    }

    // kubectl apply -k applies every manifest but the Secrets' template.
    let (_, kustomization) = all
        .iter()
        .find(|(f, _)| f == "kustomization.yaml")
        .expect("kustomization");
    let mut resources: Vec<&str> = seq(&kustomization["resources"]).iter().map(s).collect();
    resources.sort_unstable();
    let mut files: Vec<&str> = all
        .iter()
        .map(|(f, _)| f.as_str())
        .filter(|f| *f != "kustomization.yaml" && *f != SECRETS_TEMPLATE)
        .collect();
    files.sort_unstable();
    files.dedup();
    assert_eq!(resources, files, "kustomization.yaml resources");

    // The rule pack in the ConfigMap is deploy/rules' file, byte for byte.
    let rules = find(&all, "ConfigMap", "vigil-rules");
    assert_eq!(
        s(&rules["data"]["vigil-default.rules.yml"]),
        read("deploy/rules/vigil-default.rules.yml"),
        "deploy/k8s/rules-config.yml is out of date with deploy/rules/vigil-default.rules.yml"
    );
}

#[test]
fn workloads_are_locked_down() {
    let all = manifests();
    let version = env!("CARGO_PKG_VERSION");
    for (kind, name) in [
        ("Deployment", "vigil-aggregator"),
        ("DaemonSet", "vigil-agent"),
    ] {
        let w = find(&all, kind, name);
        let pod = &w["spec"]["template"]["spec"];
        let what = format!("{kind} {name}");
        // Selector and labels agree.
        for (k, v) in w["spec"]["selector"]["matchLabels"]
            .as_mapping()
            .expect("matchLabels")
        {
            assert_eq!(
                &w["spec"]["template"]["metadata"]["labels"][s(k)],
                v,
                "{what}: selector"
            );
        }
        let sc = &pod["securityContext"];
        assert_eq!(sc["runAsNonRoot"].as_bool(), Some(true), "{what}");
        // The image's user (Dockerfile: USER 10001:10001).
        assert_eq!(sc["runAsUser"].as_u64(), Some(10001), "{what}");
        assert_eq!(sc["runAsGroup"].as_u64(), Some(10001), "{what}");
        assert_eq!(
            sc["seccompProfile"]["type"].as_str(),
            Some("RuntimeDefault"),
            "{what}"
        );
        assert_eq!(
            pod["automountServiceAccountToken"].as_bool(),
            Some(false),
            "{what}"
        );
        for c in seq(&pod["containers"]) {
            let csc = &c["securityContext"];
            assert_eq!(
                csc["allowPrivilegeEscalation"].as_bool(),
                Some(false),
                "{what}"
            );
            assert_eq!(
                csc["readOnlyRootFilesystem"].as_bool(),
                Some(true),
                "{what}"
            );
            assert_ne!(csc["privileged"].as_bool(), Some(true), "{what}");
            assert_eq!(
                seq(&csc["capabilities"]["drop"])
                    .iter()
                    .map(s)
                    .collect::<Vec<_>>(),
                ["ALL"],
                "{what}"
            );
            assert!(
                seq(&csc["capabilities"]["add"]).is_empty(),
                "{what}: no capability added"
            );
            assert_eq!(
                s(&c["image"]),
                format!("vigil:{version}"),
                "{what}: image tag"
            );
            assert!(
                c["resources"]["limits"]["memory"].as_str().is_some(),
                "{what}: memory limit"
            );
            // Host paths, if any are ever added, are read-only.
            for m in seq(&c["volumeMounts"]) {
                let volume = seq(&pod["volumes"])
                    .iter()
                    .find(|v| v["name"] == m["name"])
                    .unwrap_or_else(|| panic!("{what}: mount {:?} has no volume", m["name"]));
                if volume.get("hostPath").is_some() {
                    assert_eq!(
                        m["readOnly"].as_bool(),
                        Some(true),
                        "{what}: hostPath {:?}",
                        m["name"]
                    );
                }
            }
        }
        for v in seq(&pod["volumes"]) {
            if let Some(cm) = v["configMap"]["name"].as_str() {
                find(&all, "ConfigMap", cm);
            }
            if let Some(secret) = v["secret"]["secretName"].as_str() {
                find(&all, "Secret", secret);
            }
        }
    }

    // The agent sees the node: its processes and network, through /proc.
    let ds = find(&all, "DaemonSet", "vigil-agent");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"].as_bool(), Some(true));
    assert_eq!(pod["hostPID"].as_bool(), Some(true));
    assert_eq!(pod["dnsPolicy"].as_str(), Some("ClusterFirstWithHostNet"));
    assert!(pod.get("hostIPC").is_none());

    // One aggregator, never two at once; the budget covers it.
    let dep = find(&all, "Deployment", "vigil-aggregator");
    assert_eq!(dep["spec"]["replicas"].as_u64(), Some(1));
    assert_eq!(dep["spec"]["strategy"]["type"].as_str(), Some("Recreate"));
    let pdb = find(&all, "PodDisruptionBudget", "vigil-aggregator");
    assert_eq!(pdb["spec"]["selector"], dep["spec"]["selector"]);
    assert!(pdb["spec"]["maxUnavailable"].as_u64().is_some());
}

#[test]
fn ports_names_and_configs_agree() {
    let all = manifests();
    let dep = find(&all, "Deployment", "vigil-aggregator");
    let agg = container(dep, "aggregator");
    let agg_toml =
        s(&find(&all, "ConfigMap", "vigil-aggregator-config")["data"]["aggregator.toml"])
            .to_string();
    let agent_toml =
        s(&find(&all, "ConfigMap", "vigil-agent-config")["data"]["agent.toml"]).to_string();

    // Container ports are the config's listen ports, with the right protocol.
    let port = |name: &str| {
        seq(&agg["ports"])
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no container port {name}"))
    };
    let http = port_of(&toml_str(&agg_toml, "http.listen"));
    let quic = port_of(&toml_str(&agg_toml, "quic.listen"));
    assert_eq!(
        port("http")["containerPort"].as_u64(),
        Some(u64::from(http))
    );
    assert_eq!(port("http")["protocol"].as_str(), Some("TCP"));
    assert_eq!(
        port("quic")["containerPort"].as_u64(),
        Some(u64::from(quic))
    );
    assert_eq!(port("quic")["protocol"].as_str(), Some("UDP"));
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(
            agg[probe]["httpGet"]["port"].as_str(),
            Some("http"),
            "{probe}"
        );
    }
    assert_eq!(
        agg["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    assert_eq!(
        agg["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );

    // Each Service selects the aggregator's pods and targets a port it has.
    let pod_labels = &dep["spec"]["template"]["metadata"]["labels"];
    for (svc_name, port_name, protocol) in [
        ("vigil-aggregator", "http", "TCP"),
        ("vigil-ingest", "quic", "UDP"),
    ] {
        let svc = find(&all, "Service", svc_name);
        for (k, v) in svc["spec"]["selector"].as_mapping().expect("selector") {
            assert_eq!(&pod_labels[s(k)], v, "Service {svc_name} selector");
        }
        let ports = seq(&svc["spec"]["ports"]);
        assert_eq!(ports.len(), 1, "Service {svc_name}");
        assert_eq!(
            ports[0]["targetPort"].as_str(),
            Some(port_name),
            "Service {svc_name}"
        );
        assert_eq!(
            ports[0]["protocol"].as_str(),
            Some(protocol),
            "Service {svc_name}"
        );
        assert_eq!(
            ports[0]["port"],
            port(port_name)["containerPort"],
            "Service {svc_name}"
        );
    }

    // Agents dial the UDP Service by its cluster name, which the server
    // certificate must carry.
    let server_name = toml_str(&agent_toml, "aggregator.server_name");
    assert_eq!(server_name, format!("vigil-ingest.{NAMESPACE}.svc"));
    let agent: toml::Table = toml::from_str(&agent_toml).expect("TOML");
    let endpoints: Vec<&str> = agent["aggregator"]["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .filter_map(toml::Value::as_str)
        .collect();
    assert_eq!(endpoints, [format!("{server_name}:{quic}")]);
    let tls = find(&all, "Secret", "vigil-aggregator-tls");
    assert!(
        s(&tls["stringData"]["server.crt"]).contains(&server_name),
        "the template says which name to issue"
    );
}

#[test]
fn configmap_configs_pass_check_config_in_their_pods() {
    let all = manifests();
    let dir = tempfile::tempdir().expect("tempdir");
    let agent_toml =
        s(&find(&all, "ConfigMap", "vigil-agent-config")["data"]["agent.toml"]).to_string();
    let server_name = toml_str(&agent_toml, "aggregator.server_name");

    // What an operator puts in the Secrets: vigil-certs' files.
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki).expect("pki");
    ca(&pki);
    server_cert(&pki, &pki, &[&server_name]);
    agent_cert(&pki, &pki, NODE);

    // The aggregator's pod.
    let dep = find(&all, "Deployment", "vigil-aggregator");
    let agg = container(dep, "aggregator");
    let command: Vec<&str> = seq(&agg["command"]).iter().map(s).collect();
    assert_eq!(command[..3], ["vigil-aggregator", "run", "--config"]);
    let pod = pod_filesystem(&dir.path().join("aggregator"), &all, dep, agg, &pki);
    assert_config_ok(
        "vigil-aggregator",
        &pod.path(command[3]),
        "the aggregator's ConfigMap",
    );
    let agg_toml =
        s(&find(&all, "ConfigMap", "vigil-aggregator-config")["data"]["aggregator.toml"]);
    assert_rules_found(&pod, agg_toml, "the aggregator's ConfigMap");

    // The agent's pod: its command renders the template for the node, then
    // runs the agent on the result.
    let ds = find(&all, "DaemonSet", "vigil-agent");
    let agent = container(ds, "agent");
    let template = "/etc/vigil/template/agent.toml";
    let rendered = "/run/vigil/agent.toml";
    let command: Vec<&str> = seq(&agent["command"]).iter().map(s).collect();
    assert_eq!(
        command,
        [
            "/bin/sh",
            "-ec",
            &format!(
                "sed \"s/@NODE_NAME@/$NODE_NAME/g\" {template} > {rendered} && exec vigil-agent run --config {rendered}"
            ),
        ]
    );
    let env = seq(&agent["env"])
        .iter()
        .find(|e| e["name"].as_str() == Some("NODE_NAME"))
        .expect("NODE_NAME");
    assert_eq!(
        env["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("spec.nodeName")
    );
    // The root filesystem is read-only and the agent is not root (this test
    // is, so check-config cannot tell): what it writes must be on emptyDirs.
    let spool = toml_str(&agent_toml, "spool.dir");
    for path in [rendered, spool.as_str()] {
        assert!(
            empty_dirs(ds, agent)
                .iter()
                .any(|d| path.starts_with(&format!("{d}/"))),
            "{path} is on no emptyDir: the agent cannot write it"
        );
    }
    let pod = pod_filesystem(&dir.path().join("agent"), &all, ds, agent, &pki);
    let text = std::fs::read_to_string(pod.path(template)).expect("template mounted");
    pod.write(rendered, text.replace("@NODE_NAME@", NODE));
    assert_config_ok("vigil-agent", &pod.path(rendered), "the agent's ConfigMap");
    assert_eq!(
        toml_str(&text.replace("@NODE_NAME@", NODE), "agent_id"),
        NODE
    );

    // The identities Secret's template names one node's files the same way.
    let ids = find(&all, "Secret", "vigil-agent-identities");
    let keys: BTreeSet<&str> = ids["stringData"]
        .as_mapping()
        .expect("keys")
        .keys()
        .map(s)
        .collect();
    let want: BTreeSet<String> = ["ca.crt", ".crt", ".key", ".sign.key"]
        .iter()
        .map(|k| {
            if *k == "ca.crt" {
                k.to_string()
            } else {
                format!("{NODE}{k}")
            }
        })
        .collect();
    assert_eq!(keys, want.iter().map(String::as_str).collect());
}
