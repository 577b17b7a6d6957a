//! Quick start's children (the local agent, the demo API): processes restarted
//! if they die, stopped with SIGTERM (so the agent drains) when the aggregator
//! stops. A child that exits 64 (bad configuration) is not restarted.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};
use vigil_common::config::EXIT_CONFIG;

/// Time a child gets to stop after SIGTERM before it is killed.
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

/// A Vigil binary: next to this one (as `cargo build` lays them out), else on PATH.
pub fn sibling_binary(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name(name))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Runs `program args...` as `name` until [`Supervised::stop`].
pub fn spawn(name: &'static str, program: PathBuf, args: Vec<OsString>) -> Supervised {
    let (stop, mut stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        let bin = program;
        let mut delay = Duration::from_secs(1);
        loop {
            let mut child = match Command::new(&bin)
                .args(&args)
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .spawn()
            {
                Ok(child) => child,
                Err(e) => {
                    error!(binary = %bin.display(), error = %e, "cannot start the {name} (build it with `cargo build --release`)");
                    return;
                }
            };
            info!(pid = child.id(), "{name} started");
            tokio::select! {
                status = child.wait() => {
                    match status {
                        Ok(s) if s.code() == Some(i32::from(EXIT_CONFIG)) => {
                            error!("{name} rejected its configuration; not restarting");
                            return;
                        }
                        Ok(s) => warn!(status = %s, "{name} exited; restarting in {delay:?}"),
                        Err(e) => warn!(error = %e, "{name} lost; restarting in {delay:?}"),
                    }
                }
                _ = &mut stopped => {
                    terminate(name, &mut child).await;
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

async fn terminate(name: &str, child: &mut Child) {
    if let Some(pid) = child
        .id()
        .and_then(|p| rustix::process::Pid::from_raw(p as i32))
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(_) => info!("{name} stopped"),
        Err(_) => {
            warn!("{name} did not stop in time; killing it");
            let _ = child.kill().await;
        }
    }
}
