//! Wiring: open the store, bind QUIC and HTTP, run until told to stop, then
//! drain in order (stop accepting, finish commits, close connections).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};
use vigil_common::tls;

use crate::alert::AlertSink;
use crate::cluster::jobs::{LeaderJobs, NotifyJobs, Term};
use crate::cluster::lock::Election;
use crate::cluster::{self, Cluster};
use crate::config::Loaded;
use crate::http::{self, AppState};
use crate::ingest::{self, Ingest};
use crate::metrics::Metrics;
use crate::notify::dispatch::Dispatcher;
use crate::notify::mutes::Mutes;
use crate::notify::outbox::Outbox;
use crate::store::{self, Store, StoreError};

/// How long shutdown waits for agents to see the connection close.
const CLOSE_WAIT: Duration = Duration::from_secs(3);
/// How long shutdown waits for the leader jobs to stop and the lead to
/// be handed back.
const LEAD_STOP_WAIT: Duration = Duration::from_secs(15);
/// How often a cluster node reloads silences and maintenance windows
/// (another node's API may have changed them).
const MUTES_REFRESH: Duration = Duration::from_secs(5);

/// Why the aggregator could not start.
#[derive(Debug, Error)]
pub enum StartError {
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("notifications: {}", .0.join("; "))]
    Notify(Vec<String>),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running aggregator.
pub struct Running {
    pub http_addr: SocketAddr,
    pub quic_addr: SocketAddr,
    pub state: AppState,
    /// What the evaluator sends alerts to (the notification dispatcher, or
    /// only silences/maintenance without `[notify]`).
    pub sink: Arc<dyn AlertSink>,
    /// This node's part in the cluster (`[cluster]`).
    pub cluster: Arc<Cluster>,
    /// The single-run jobs: running here (alone), or the election that
    /// runs them while this node leads.
    leadership: Leadership,
    ingest: Arc<Ingest>,
    endpoint: quinn::Endpoint,
    stop: watch::Sender<bool>,
    /// Servers that finish on their own once `stop` is sent.
    servers: Vec<JoinHandle<()>>,
    /// Helpers that are simply cancelled at shutdown.
    background: Vec<JoinHandle<()>>,
}

/// Who runs the single-run jobs ([`LeaderJobs`]).
enum Leadership {
    /// `[cluster] mode = "off"`: this process, from start to shutdown.
    Single(Term),
    /// A cluster node: the election task starts and stops them.
    Elected {
        stop: watch::Sender<bool>,
        task: JoinHandle<()>,
    },
}

impl Leadership {
    async fn stop(self) {
        match self {
            Leadership::Single(term) => term.stop().await,
            Leadership::Elected { stop, task } => {
                let _ = stop.send(true);
                let abort = task.abort_handle();
                if tokio::time::timeout(LEAD_STOP_WAIT, task).await.is_err() {
                    warn!("the leader jobs did not stop in time; cancelling them");
                    abort.abort();
                }
            }
        }
    }
}

/// Opens the store and migrates it. A database that is merely unreachable
/// does not stop the start: migration is retried in the background while
/// `/readyz` says not ready and agents are told to retry. Any other storage
/// error (a bad SQLite path, a failed migration) is fatal.
pub async fn start(loaded: Loaded) -> Result<Running, StartError> {
    let config = &loaded.config;
    let store = store::open(
        &config.database.url,
        &loaded.base_dir,
        config.database.max_connections,
    )?;
    let metrics = Arc::new(Metrics::new());
    let layers = store::layered(store, &config.storage, metrics.storage.clone());
    let clustered = config.cluster.enabled();
    if clustered {
        // Other nodes ingest too: only the database has every sample.
        layers.head.disable();
    }
    let store = layers.store.clone();
    let store_ready = Arc::new(AtomicBool::new(false));
    let mut background = Vec::new();
    match store.migrate().await {
        Ok(()) => {
            store_ready.store(true, Ordering::Release);
            metrics.database_up.set(1);
        }
        Err(e) if e.is_connection() => {
            warn!(error = %e, "database unreachable; will keep retrying, ingest waits");
            background.push(tokio::spawn(migrate_until_ready(
                store.clone(),
                store_ready.clone(),
                metrics.clone(),
            )));
        }
        Err(e) => return Err(e.into()),
    }

    let quic_config = match &loaded.enroll_ca {
        Some(_) => {
            tls::quic_server_config_enrolling(&loaded.tls, config.ingest.max_streams_per_agent)?
        }
        None => tls::quic_server_config(&loaded.tls, config.ingest.max_streams_per_agent)?,
    };
    let endpoint = bind_quic(
        quic_config,
        loaded.quic_listen,
        config.quic.receive_buffer_bytes,
        &metrics,
    )
    .map_err(|source| StartError::Bind {
        what: "QUIC",
        addr: loaded.quic_listen,
        source,
    })?;
    let quic_addr = endpoint.local_addr().map_err(|source| StartError::Bind {
        what: "QUIC",
        addr: loaded.quic_listen,
        source,
    })?;
    let listener = tokio::net::TcpListener::bind(loaded.http_listen)
        .await
        .map_err(|source| StartError::Bind {
            what: "HTTP",
            addr: loaded.http_listen,
            source,
        })?;
    let http_addr = listener.local_addr().map_err(|source| StartError::Bind {
        what: "HTTP",
        addr: loaded.http_listen,
        source,
    })?;

    let (stop, stopped) = watch::channel(false);
    let mut ingest = Ingest::new(
        store.clone(),
        metrics.clone(),
        config.ingest.clone(),
        store_ready.clone(),
    );
    if let (Some(ca), Some(enroll)) = (&loaded.enroll_ca, &config.enroll) {
        ingest = ingest.with_enrollment(ca.clone(), enroll.clone());
    }
    let ingest = Arc::new(ingest);
    // Revocations made by the CLI or another aggregator close connections here.
    background.push(ingest::live::spawn_watcher(
        ingest.live.clone(),
        store.clone(),
        store_ready.clone(),
    ));
    let mut servers = Vec::new();
    servers.push(tokio::spawn(ingest::serve(
        endpoint.clone(),
        ingest.clone(),
        stopped.clone(),
    )));

    background.push(tokio::spawn(watch_database(
        store.clone(),
        store_ready.clone(),
        metrics.clone(),
    )));

    // Silences and maintenance, loaded once the database is ready.
    let mutes = Arc::new(Mutes::new(store.db(), crate::notify::mutes::system_clock()));
    background.push(tokio::spawn(load_mutes(mutes.clone(), store_ready.clone())));
    background.push(mutes.clone().spawn_gc());
    if clustered {
        background.push(tokio::spawn(refresh_mutes(
            mutes.clone(),
            store_ready.clone(),
        )));
    }
    // Where the evaluator hands its alerts: the dispatcher when [notify]
    // names a notification config, else only the mutes (nothing notified).
    // Notifications go dispatcher -> outbox (persisted) -> receivers.
    let mut notify_jobs = None;
    let sink: Arc<dyn AlertSink> = match &config.notify.plan {
        Some(plan) => {
            let outbox = Outbox::new(
                store.db(),
                &plan.receivers,
                &plan.global,
                metrics.notify.clone(),
                &config.alerting.external_url,
                config.notify.outbox.clone(),
            )
            .map_err(StartError::Notify)?;
            let dispatcher = Dispatcher::stopped(
                plan.clone(),
                (&config.notify).into(),
                store.db(),
                mutes.clone(),
                Arc::new(outbox.clone()),
                metrics.dispatch.clone(),
            );
            notify_jobs = Some(NotifyJobs {
                dispatcher: dispatcher.clone(),
                outbox,
            });
            dispatcher
        }
        None => mutes.clone(),
    };

    let engine = Arc::new(crate::query::Engine::default());
    let alerting = Arc::new(crate::alert::eval::Evaluator::new(
        store.clone(),
        layers.source.clone(),
        engine.clone(),
        sink.clone(),
        metrics.alerting.clone(),
        config.alerting.clone(),
        loaded.base_dir.clone(),
    ));
    if let Err(e) = alerting.reload().await {
        // Checked by Config::load already; a file changed since then.
        error!(errors = %e.0.join("; "), "rule files are invalid; evaluating no rules until a reload succeeds");
    }
    // Evaluation, notification and rollups run once: here, or on the
    // cluster's leader.
    let jobs = LeaderJobs {
        evaluator: alerting.clone(),
        notify: notify_jobs,
        rollups: layers.rollups.clone(),
        head: layers.head.clone(),
        takeover_delay: config.cluster.takeover_delay(),
    };
    let node = config
        .cluster
        .node_name
        .clone()
        .unwrap_or_else(|| cluster::default_node_name(http_addr.port()));
    let cluster = Cluster::new(node, clustered, metrics.cluster.clone());
    let leadership = if clustered {
        let (stop, stopped) = watch::channel(false);
        let election = Election {
            cluster: cluster.clone(),
            config: config.cluster.clone(),
            url: config.database.url.clone(),
            ready: store_ready.clone(),
            jobs,
        };
        Leadership::Elected {
            stop,
            task: election.spawn(stopped),
        }
    } else {
        Leadership::Single(jobs.start(None).await)
    };
    match alerting.clone().reload_on_sighup() {
        Ok(task) => background.push(task),
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGHUP; reload rules with POST /api/v1/rules/reload")
        }
    }
    let state = AppState {
        store,
        metrics,
        store_ready,
        source: layers.source.clone(),
        engine,
        alerting,
        mutes,
    };
    // Sessions: shared with the pruner that deletes expired ones.
    let sessions = Arc::new(http::session::Sessions::new(config.http.session_policy()));
    background.push(
        sessions
            .clone()
            .spawn_pruner(state.store.db(), state.store_ready.clone()),
    );
    let app = http::app_with_dashboard(
        state.clone(),
        &config.http.access_policy(),
        sessions,
        config.dashboard.clone(),
    )
    .layer(axum::Extension(std::sync::Arc::new(
        http::ingest::IngestLimits::from_config(config),
    )))
    .layer(axum::Extension(ingest.live.clone()))
    .layer(axum::Extension(Arc::new(
        http::agents::EnrollSettings::from_loaded(&loaded),
    )))
    .layer(axum::Extension(cluster.clone()));
    let mut http_stop = stopped;
    let shutdown = async move {
        let _ = http_stop.wait_for(|s| *s).await;
    };
    let scheme = if loaded.http_tls.is_some() {
        "https"
    } else {
        "http"
    };
    servers.push(match &loaded.http_tls {
        Some(tls) => {
            use axum::serve::ListenerExt;
            // tap_io keeps `ConnectInfo<SocketAddr>` (per-IP limits) working.
            let listener = http::tls::TlsListener::new(listener, tls.clone())
                .map_err(|source| StartError::Bind {
                    what: "HTTPS",
                    addr: loaded.http_listen,
                    source,
                })?
                .tap_io(|_| {});
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
                {
                    error!(error = %e, "HTTPS server failed");
                }
            })
        }
        None => {
            use axum::serve::ListenerExt;
            // Nagle's algorithm would hold a small write (a live frame, the
            // tail of a streamed reply) until the client's delayed ACK, up
            // to 40 ms on Linux.
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
                {
                    error!(error = %e, "HTTP server failed");
                }
            })
        }
    });
    info!(%http_addr, %quic_addr, scheme, backend = state.store.backend(), "aggregator started");
    Ok(Running {
        http_addr,
        quic_addr,
        state,
        sink,
        cluster,
        leadership,
        ingest,
        endpoint,
        stop,
        servers,
        background,
    })
}

/// The QUIC endpoint on `addr`, with the UDP receive buffer asked to be
/// `rcvbuf` bytes (`quic.receive_buffer_bytes`). What the kernel granted
/// is exported; less than asked is logged with the setting that caps it.
fn bind_quic(
    config: quinn::ServerConfig,
    addr: SocketAddr,
    rcvbuf: usize,
    metrics: &Metrics,
) -> std::io::Result<quinn::Endpoint> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(e) = socket.set_recv_buffer_size(rcvbuf) {
        warn!(error = %e, bytes = rcvbuf, "cannot set the QUIC socket's receive buffer");
    }
    socket.bind(&addr.into())?;
    // Linux reports twice what it grants for data (the rest is its own
    // bookkeeping), and grants at most net.core.rmem_max.
    let reported = socket.recv_buffer_size().unwrap_or(0);
    let granted = if cfg!(target_os = "linux") {
        reported / 2
    } else {
        reported
    };
    metrics
        .quic_receive_buffer
        .set(i64::try_from(granted).unwrap_or(i64::MAX));
    if granted < rcvbuf {
        warn!(
            asked = rcvbuf,
            granted,
            "the kernel granted the QUIC socket a smaller receive buffer than \
             quic.receive_buffer_bytes asks; under load packets are dropped and \
             acks slow down: raise net.core.rmem_max (sysctl) to at least the setting"
        );
    }
    let runtime = quinn::default_runtime()
        .ok_or_else(|| std::io::Error::other("no async runtime for the QUIC endpoint"))?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(config),
        socket.into(),
        runtime,
    )
}

async fn migrate_until_ready(store: Arc<dyn Store>, ready: Arc<AtomicBool>, metrics: Arc<Metrics>) {
    let mut delay = Duration::from_millis(500);
    loop {
        tokio::time::sleep(delay).await;
        match store.migrate().await {
            Ok(()) => {
                ready.store(true, Ordering::Release);
                metrics.database_up.set(1);
                info!("database reachable and migrated; ingest resumes");
                return;
            }
            Err(e) => {
                warn!(error = %e, "database still unavailable");
                delay = (delay * 2).min(Duration::from_secs(15));
            }
        }
    }
}

/// Reloads silences and maintenance windows every [`MUTES_REFRESH`] (a
/// cluster node: the leader must apply a silence made on a follower).
async fn refresh_mutes(mutes: Arc<Mutes>, ready: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(MUTES_REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if ready.load(Ordering::Acquire)
            && let Err(e) = mutes.load().await
        {
            warn!(error = %e, "silences and maintenance not refreshed; retrying");
        }
    }
}

/// How often the storage watch pings the database, and how long it waits.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// Keeps `database_up` true to the database once it is migrated: a ping
/// every [`WATCH_EVERY`], each change logged. `/metrics` and the dashboard's
/// storage banner read it, so an outage shows within seconds even when no
/// agent is sending and nobody polls `/readyz`.
async fn watch_database(store: Arc<dyn Store>, ready: Arc<AtomicBool>, metrics: Arc<Metrics>) {
    let mut was_up = true;
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        if !ready.load(Ordering::Acquire) {
            continue;
        }
        let up = matches!(
            tokio::time::timeout(WATCH_EVERY, store.ping()).await,
            Ok(Ok(()))
        );
        metrics.database_up.set(i64::from(up));
        metrics.database_unreachable.store(!up, Ordering::Release);
        if up != was_up {
            if up {
                info!("database reachable again");
            } else {
                warn!("database unreachable: agents are told to retry and keep their batches");
            }
            was_up = up;
        }
    }
}

/// Loads silences and maintenance windows once the store is ready.
async fn load_mutes(mutes: Arc<Mutes>, ready: Arc<AtomicBool>) {
    let mut delay = Duration::from_millis(200);
    loop {
        if ready.load(Ordering::Acquire) {
            match mutes.load().await {
                Ok(()) => return,
                Err(e) => warn!(error = %e, "silences and maintenance not loaded yet; retrying"),
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(15));
    }
}

impl Running {
    /// Waits (up to `timeout`) until the store is migrated and reachable.
    pub async fn wait_store_ready(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.state.store_ready.load(Ordering::Acquire) {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        true
    }

    /// Stops accepting, lets in-flight commits finish (their acks go out),
    /// closes agent connections and the HTTP server.
    pub async fn shutdown(self) {
        info!("aggregator shutting down");
        let _ = self.stop.send(true);
        self.ingest.drain_commits().await;
        ingest::close(&self.endpoint, CLOSE_WAIT).await;
        self.leadership.stop().await;
        for task in self.background {
            task.abort();
        }
        // Recording rule output still queued for the database.
        match tokio::time::timeout(CLOSE_WAIT, self.state.store.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "could not flush recording rule output"),
            Err(_) => warn!("recording rule output not flushed in time"),
        }
        for task in self.servers {
            let abort = task.abort_handle();
            if tokio::time::timeout(CLOSE_WAIT, task).await.is_err() {
                warn!("a server did not stop in time; cancelling it");
                abort.abort();
            }
        }
        info!("aggregator stopped");
    }
}
