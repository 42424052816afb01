//! `weft-xds-load`: load test of weftd's xDS push engine, in the manner of pilot-load's `adsc`
//! mode: a generated mesh (M services, E endpoints) in a config directory, a real weftd on it,
//! and N simulated delta ADS clients that decode and ACK everything. Measures initial sync,
//! convergence of a config change (file write → every client's ACK), weftd RSS and CPU, and a
//! restart storm (all clients reconnect with `initial_resource_versions`). `--real-envoy` instead
//! runs one stock Envoy against the mesh and checks that it accepts everything (no NACKs).
//!
//! Progress goes to stderr; the results, as Markdown, to stdout.

mod client;
mod config_gen;
mod envoy;
mod load;
mod metrics;
mod report;
mod sds;
mod weftd;

use clap::{Parser, ValueEnum};
use config_gen::{ConfigDir, MeshSpec};
use report::progress;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Parser, Clone)]
#[command(
    name = "weft-xds-load",
    version,
    about = "Load test of weftd's xDS push engine: N simulated delta ADS clients (or one real Envoy)"
)]
struct Args {
    /// Simulated delta ADS clients (sidecars).
    #[arg(long, default_value_t = 500)]
    clients: usize,
    /// Services (core `Service`s, port 80 → 8080).
    #[arg(long, default_value_t = 100)]
    services: usize,
    /// Namespaces the services are spread over.
    #[arg(long, default_value_t = 10)]
    namespaces: usize,
    /// WorkloadEntries in total (default: one per client, so every client is a registered VM).
    #[arg(long)]
    endpoints: Option<usize>,
    /// Clients sharing one HTTP/2 connection (1 = one connection per client, like real Envoys).
    #[arg(long = "clients-per-conn", default_value_t = 1)]
    clients_per_conn: usize,
    /// Tokio worker threads of the client side.
    #[arg(long = "client-threads", default_value_t = 2)]
    client_threads: usize,
    /// Config changes to measure convergence of, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Event::Endpoint, Event::Weight, Event::Service])]
    events: Vec<Event>,
    /// Start the clients at this rate (clients/s) instead of all at once (0).
    #[arg(long = "connect-rate", default_value_t = 0.0)]
    connect_rate: f64,
    /// Skip the weftd restart (reconnect storm) phase.
    #[arg(long = "no-reconnect")]
    no_reconnect: bool,
    /// Envoy's ADS retry backoff: base interval (ms).
    #[arg(long = "backoff-base-ms", default_value_t = 500)]
    backoff_base_ms: u64,
    /// Envoy's ADS retry backoff: maximum interval (ms).
    #[arg(long = "backoff-max-ms", default_value_t = 30_000)]
    backoff_max_ms: u64,
    /// Longest wait for any one phase (seconds).
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// One real Envoy instead of simulated clients (use with --services 1000).
    #[arg(long = "real-envoy")]
    real_envoy: bool,
    /// The Envoy binary for --real-envoy.
    #[arg(long, default_value = "/usr/local/bin/envoy")]
    envoy: PathBuf,
    /// The weftd binary (default: the one beside weft-xds-load).
    #[arg(long)]
    weftd: Option<PathBuf>,
    /// Keep the work directory (config, state, logs) instead of removing it.
    #[arg(long)]
    keep: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum Event {
    /// Add an endpoint (WorkloadEntry) to one service: one EDS resource changes for everyone.
    Endpoint,
    /// Change one endpoint's weight: one EDS resource changes for everyone.
    Weight,
    /// Add a service: CDS, EDS and every namespace's RDS change for everyone.
    Service,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("weft-xds-load: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let work = std::env::temp_dir().join(format!(
        "weft-xds-load-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
    ));
    let result = runtime.block_on(async {
        let run = async {
            if args.real_envoy {
                envoy::check(&args, &work).await
            } else {
                load::run(&args, &work).await
            }
        };
        // On Ctrl-C or SIGTERM the run is dropped, which stops weftd and Envoy.
        tokio::select! {
            r = run => r,
            _ = interrupted() => Err("interrupted".to_string()),
        }
    });
    runtime.shutdown_timeout(Duration::from_millis(100));
    if args.keep {
        eprintln!("work directory kept: {}", work.display());
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("weft-xds-load: some targets were missed or checks failed");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("weft-xds-load: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn mesh_spec(args: &Args) -> MeshSpec {
    MeshSpec {
        services: args.services.max(1),
        namespaces: args.namespaces.max(1),
        endpoints: args.endpoints.unwrap_or(args.clients),
    }
}

fn setup(args: &Args, work: &Path) -> Result<(PathBuf, ConfigDir), String> {
    let binary = weftd::locate(args.weftd.as_deref())?;
    let spec = mesh_spec(args);
    let t = Instant::now();
    let cfg = ConfigDir::create(&work.join("config"), spec)?;
    progress(format!(
        "generated {} services in {} namespaces, {} WorkloadEntries in {:?} ({})",
        spec.services,
        spec.namespaces,
        spec.endpoints,
        t.elapsed(),
        cfg.path().display()
    ));
    Ok((binary, cfg))
}
