//! `vigil-demo-api`: a realistic ML prediction service to monitor (see
//! `vigil_tests::demo`). `quickstart --demo` starts it next to the agent.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use vigil_tests::demo::{Demo, Knobs, app};

#[derive(Parser)]
#[command(
    name = "vigil-demo-api",
    version,
    about = "A demo ML prediction API with Prometheus metrics"
)]
struct Cli {
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Probability (0..1) that a prediction fails with HTTP 500.
    #[arg(long, default_value_t = 0.01)]
    error_rate: f64,
    /// Milliseconds added to every inference.
    #[arg(long, default_value_t = 0.0)]
    extra_latency_ms: f64,
    /// Input drift, 0..1.
    #[arg(long, default_value_t = 0.0)]
    drift: f64,
    /// Predictions per second the service makes against itself.
    #[arg(long, default_value_t = 5.0)]
    self_traffic_rps: f64,
    /// Extra gauge series on /metrics (to reach a target size for benchmarks).
    #[arg(long, default_value_t = 0)]
    synthetic_series: usize,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let knobs = Knobs {
        error_rate: cli.error_rate,
        extra_latency_ms: cli.extra_latency_ms,
        drift: cli.drift,
        healthy: true,
        self_traffic_rps: cli.self_traffic_rps,
    };
    let problems = knobs.problems();
    if !problems.is_empty() {
        for p in problems {
            eprintln!("vigil-demo-api: {p}");
        }
        return ExitCode::from(64);
    }
    let listener = match tokio::net::TcpListener::bind(cli.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("vigil-demo-api: cannot listen on {}: {e}", cli.listen);
            return ExitCode::FAILURE;
        }
    };
    let demo = Demo::new(knobs, cli.synthetic_series);
    demo.spawn_background();
    if let Ok(addr) = listener.local_addr() {
        println!("vigil-demo-api listening on http://{addr}");
    }
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let sigterm = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    let stop = async {
        tokio::select! {
            _ = shutdown => {}
            _ = sigterm => {}
        }
    };
    match axum::serve(listener, app(demo))
        .with_graceful_shutdown(stop)
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil-demo-api: {e}");
            ExitCode::FAILURE
        }
    }
}
