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
use crate::config::Loaded;
use crate::http::{self, AppState};
use crate::ingest::{self, Ingest};
use crate::metrics::Metrics;
use crate::notify::dispatch::Dispatcher;
use crate::notify::mutes::Mutes;
use crate::notify::outbox::{Outbox, OutboxTask};
use crate::store::{self, Store, StoreError};

/// How long shutdown waits for agents to see the connection close.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

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
    /// Delivers the notification outbox (with `[notify]`).
    outbox: Option<OutboxTask>,
    ingest: Arc<Ingest>,
    endpoint: quinn::Endpoint,
    stop: watch::Sender<bool>,
    /// Servers that finish on their own once `stop` is sent.
    servers: Vec<JoinHandle<()>>,
    /// Helpers that are simply cancelled at shutdown.
    background: Vec<JoinHandle<()>>,
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
    let endpoint = quinn::Endpoint::server(quic_config, loaded.quic_listen).map_err(|source| {
        StartError::Bind {
            what: "QUIC",
            addr: loaded.quic_listen,
            source,
        }
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

    // Trims the head, extends rollups, applies retention.
    background.push(layers.rollups.clone().spawn(layers.head.clone()));

    // Silences and maintenance, loaded once the database is ready.
    let mutes = Arc::new(Mutes::new(store.db(), crate::notify::mutes::system_clock()));
    background.push(tokio::spawn(load_mutes(mutes.clone(), store_ready.clone())));
    background.push(mutes.clone().spawn_gc());
    // Where the evaluator hands its alerts: the dispatcher when [notify]
    // names a notification config, else only the mutes (nothing notified).
    // Notifications go dispatcher -> outbox (persisted) -> receivers.
    let mut outbox_task = None;
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
            outbox_task = Some(outbox.spawn());
            let (dispatcher, task) = Dispatcher::start(
                plan.clone(),
                (&config.notify).into(),
                store.db(),
                mutes.clone(),
                Arc::new(outbox),
                metrics.dispatch.clone(),
            );
            background.push(task);
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
    background.push(alerting.clone().spawn());
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
    )));
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
        outbox: outbox_task,
        ingest,
        endpoint,
        stop,
        servers,
        background,
    })
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
        if let Some(outbox) = self.outbox {
            outbox.stop().await;
        }
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
