//! Quick start's local agent: a child process, restarted if it dies, stopped
//! with SIGTERM (so it drains) when the aggregator stops.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};
use vigil_common::config::EXIT_CONFIG;

/// Time the agent gets to drain after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

pub struct Supervised {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Supervised {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// The `vigil-agent` binary: next to this one, else on PATH.
fn agent_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name("vigil-agent"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("vigil-agent"))
}

pub fn spawn_agent(config: PathBuf) -> Supervised {
    let (stop, mut stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        let bin = agent_binary();
        let mut delay = Duration::from_secs(1);
        loop {
            let mut child = match Command::new(&bin)
                .arg("run")
                .arg("--config")
                .arg(&config)
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .spawn()
            {
                Ok(child) => child,
                Err(e) => {
                    error!(binary = %bin.display(), error = %e, "cannot start the local agent (build it with `cargo build --release`)");
                    return;
                }
            };
            info!(pid = child.id(), "local agent started");
            tokio::select! {
                status = child.wait() => {
                    match status {
                        Ok(s) if s.code() == Some(i32::from(EXIT_CONFIG)) => {
                            error!("local agent rejected its config ({}); not restarting", config.display());
                            return;
                        }
                        Ok(s) => warn!(status = %s, "local agent exited; restarting in {delay:?}"),
                        Err(e) => warn!(error = %e, "local agent lost; restarting in {delay:?}"),
                    }
                }
                _ = &mut stopped => {
                    terminate(&mut child).await;
                    return;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = &mut stopped => return,
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    });
    Supervised { stop, task }
}

async fn terminate(child: &mut Child) {
    if let Some(pid) = child
        .id()
        .and_then(|p| rustix::process::Pid::from_raw(p as i32))
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(_) => info!("local agent stopped"),
        Err(_) => {
            warn!("local agent did not stop in time; killing it");
            let _ = child.kill().await;
        }
    }
}
