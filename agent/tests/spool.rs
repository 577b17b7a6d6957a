//! The real `vigil-agent` binary killed with SIGKILL while the aggregator is
//! down, restarted, killed again, restarted: once the server comes up, every
//! batch each killed process had spooled arrives, with its original signed
//! bytes, boot id and sequence.

mod common;

use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::server::{ack_all, serve};
use common::{Pki, free_udp_addr, wait_until};
use vigil_agent::spool::{RecordInfo, inspect};

const BIN: &str = env!("CARGO_BIN_EXE_vigil-agent");
const WAIT: Duration = Duration::from_secs(30);

fn config(pki: &Pki, endpoint: &str) -> String {
    format!(
        r#"
agent_id = "{id}"
roles = ["api"]
interval = "100ms"
[aggregator]
endpoints = ["{endpoint}"]
server_name = "localhost"
ca = "ca.crt"
cert = "{id}.crt"
key = "{id}.key"
signing_key = "{id}.sign.key"
connect_timeout = "200ms"
backoff_base = "20ms"
backoff_max = "200ms"
[spool]
dir = "spool"
replay_batches_per_second = 50
[collect.system]
enabled = false
[shutdown]
drain_timeout = "2s"
"#,
        id = pki.agent_id
    )
}

fn start(config: &Path, log: &Path) -> Child {
    let stderr = File::create(log).expect("log file");
    Command::new(BIN)
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn vigil-agent")
}

fn records(dir: &Path) -> Vec<RecordInfo> {
    inspect(dir).unwrap_or_default()
}

/// The pending records of boot `boot`.
fn of_boot(dir: &Path, boot: [u8; 16]) -> Vec<RecordInfo> {
    let mut r: Vec<RecordInfo> = records(dir)
        .into_iter()
        .filter(|r| r.boot_id == boot && !r.removed)
        .collect();
    r.sort_by_key(|r| r.sequence);
    r
}

/// Boot ids in the spool, other than `known`.
fn new_boot(dir: &Path, known: &[[u8; 16]]) -> Option<[u8; 16]> {
    records(dir)
        .iter()
        .map(|r| r.boot_id)
        .find(|b| !known.contains(b))
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_agents_resume_the_spool_and_every_spooled_batch_arrives() {
    let pki = Pki::new("crash-agent");
    let addr = free_udp_addr();
    let config = pki.path("agent.toml");
    std::fs::write(&config, self::config(&pki, &addr.to_string())).expect("config");
    let spool = pki.path("spool");

    // Two processes, each killed (SIGKILL) once it has spooled a few batches
    // of its own, the aggregator down all along.
    let mut boots: Vec<[u8; 16]> = Vec::new();
    let mut expected: Vec<RecordInfo> = Vec::new();
    for (i, min) in [(1, 6), (2, 4)] {
        let mut child = start(&config, &pki.path(&format!("agent-{i}.log")));
        let mut boot = None;
        wait_until(WAIT, "batches spooled by this process", || {
            boot = boot.or_else(|| new_boot(&spool, &boots));
            boot.is_some_and(|b| of_boot(&spool, b).len() >= min)
        })
        .await;
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        let boot = boot.expect("boot id");
        let spooled = of_boot(&spool, boot);
        let sequences: Vec<u64> = spooled.iter().map(|r| r.sequence).collect();
        assert_eq!(
            sequences,
            (1..=spooled.len() as u64).collect::<Vec<_>>(),
            "boot {i}: nothing lost before the kill"
        );
        boots.push(boot);
        expected.extend(spooled);
    }

    // A third process resumes the spool; then the server comes up.
    let mut last = start(&config, &pki.path("agent-3.log"));
    wait_until(WAIT, "the third process spooling", || {
        new_boot(&spool, &boots).is_some()
    })
    .await;
    let (_, log, _server) = serve(&pki, addr, ack_all());
    let want: BTreeSet<([u8; 16], u64)> =
        expected.iter().map(|r| (r.boot_id, r.sequence)).collect();
    wait_until(
        WAIT,
        "every batch of the killed processes delivered",
        || {
            let batches = log.batches.lock().expect("lock");
            let got: BTreeSet<([u8; 16], u64)> = batches
                .iter()
                .map(|b| (b.header.boot_id, b.header.sequence))
                .collect();
            want.is_subset(&got)
        },
    )
    .await;
    let status = Command::new("kill")
        .args(["-TERM", &last.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert!(last.wait().expect("wait").success(), "clean exit");

    let payloads = log.payloads.lock().expect("lock").clone();
    for r in &expected {
        assert!(
            payloads.contains(&r.payload),
            "boot {:?} seq {}: not delivered with its original bytes",
            r.boot_id,
            r.sequence
        );
    }
    assert_eq!(*log.bad_signatures.lock().expect("lock"), 0);
    // The third process numbered its own batches from 1, under a new boot id.
    let batches = log.batches.lock().expect("lock").clone();
    let third: Vec<u64> = (batches.iter())
        .filter(|b| !boots.contains(&b.header.boot_id))
        .map(|b| b.header.sequence)
        .collect();
    assert!(third.contains(&1), "{third:?}");
    let stderr = std::fs::read_to_string(pki.path("agent-3.log")).expect("log");
    assert!(stderr.contains("spool opened"), "{stderr}");
}

/// Two agents must not share a spool folder: the second one does not start.
#[tokio::test]
async fn a_spool_folder_in_use_is_refused() {
    let pki = Pki::new("twin");
    let config = pki.agent_config(vec![free_udp_addr().to_string()]);
    let first = vigil_agent::Agent::start(config.clone())
        .await
        .expect("first starts");
    match vigil_agent::Agent::start(config.clone()).await {
        Err(e @ vigil_agent::AgentError::Spool(_)) => {
            let text = e.to_string();
            assert!(
                text.contains("in use by another running vigil-agent"),
                "{text}"
            );
            assert!(
                text.contains(&config.spool.dir.display().to_string()),
                "{text}"
            );
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a second agent started on the same spool"),
    }
    let _ = first.shutdown(Duration::from_millis(100)).await;
    // Released on shutdown: the folder can be used again.
    let again = vigil_agent::Agent::start(config).await.expect("restarts");
    let _ = again.shutdown(Duration::from_millis(100)).await;
}
