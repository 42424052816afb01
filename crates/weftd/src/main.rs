//! `weftd`: Weft's control plane (istiod's part): the CA, the xDS server and the admin API.

mod admin;
mod authn;
mod autoreg;
mod ca_service;
mod conn;
mod http;
mod metrics;
mod store;
mod tls;
mod xds;

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::net::{TcpListener, TcpSocket};
use weft_identity::KeyAlgorithm;
use weft_identity::store::{CaFiles, CaSource};
use weft_proto::ca::istio_certificate_service_server::IstioCertificateServiceServer;

#[derive(Parser, Clone)]
#[command(
    name = "weftd",
    version,
    about = "Weft control plane: CA, xDS and admin API"
)]
struct Args {
    /// Directory of Istio/Kubernetes YAML or JSON files.
    #[arg(long = "config-dir")]
    config_dir: Option<PathBuf>,
    /// Where weftd keeps durable state (CA root, admin credential, ...).
    #[arg(long = "state-dir", default_value = "/var/lib/weft")]
    state_dir: PathBuf,
    /// Trust domain of workload identities.
    #[arg(long = "trust-domain", default_value = "cluster.local")]
    trust_domain: String,
    /// Cluster ID reported to proxies.
    #[arg(long = "cluster-id", default_value = "Kubernetes")]
    cluster_id: String,
    /// xDS + CA over TLS.
    #[arg(long = "xds-tls-addr", default_value = "0.0.0.0:15012")]
    xds_tls_addr: SocketAddr,
    /// xDS + CA in plaintext (loopback/dev).
    #[arg(long = "xds-plaintext-addr", default_value = "127.0.0.1:15010")]
    xds_plaintext_addr: SocketAddr,
    /// Debug and admin HTTP API.
    #[arg(long = "http-addr", default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
    /// Where Services written without a clusterIP get their VIP from.
    #[arg(long = "service-cidr", default_value = "10.96.0.0/16")]
    service_cidr: store::Cidr,
    /// Prometheus metrics.
    #[arg(long = "monitoring-addr", default_value = "0.0.0.0:15014")]
    monitoring_addr: SocketAddr,
    /// Extra names for weftd's serving certificate (repeatable).
    #[arg(long = "extra-san")]
    extra_san: Vec<String>,
    /// Key type of a newly created root: ecdsa-p256 or rsa-2048.
    #[arg(long = "ca-key-algorithm", default_value = "ecdsa-p256")]
    ca_key_algorithm: String,
    /// Default workload certificate lifetime.
    #[arg(long = "workload-cert-ttl", default_value = "24h")]
    workload_cert_ttl: String,
    /// Istio MeshConfig YAML (trustDomain, rootNamespace, outboundTrafficPolicy.mode).
    #[arg(long = "mesh-config")]
    mesh_config: Option<PathBuf>,
    /// Istio MeshNetworks YAML (networks: their endpoints and gateways), istiod's
    /// `--networksConfig`.
    #[arg(long = "networks-config")]
    networks_config: Option<PathBuf>,
    /// Load and validate the configuration, print every problem, and exit.
    #[arg(long)]
    check: bool,
    /// How long an auto-registered WorkloadEntry outlives its proxy's last connection
    /// (Istio's PILOT_WORKLOAD_ENTRY_GRACE_PERIOD, which also sets it).
    /// Default 10s.
    #[arg(long = "workload-entry-grace-period")]
    workload_entry_grace_period: Option<String>,
    /// Log filter (e.g. info, debug, weftd=debug).
    #[arg(long = "log-level", default_value = "info")]
    log_level: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.check {
        return check(&args);
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log_level))
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("weftd: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weftd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(args: &Args) -> ExitCode {
    let Some(dir) = &args.config_dir else {
        eprintln!("weftd: --check needs --config-dir");
        return ExitCode::from(2);
    };
    let entries = match weft_model::load_path(dir) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("weftd: cannot read config: {e}");
            return ExitCode::from(2);
        }
    };
    let invalid: Vec<_> = entries.iter().filter(|e| e.is_invalid()).collect();
    for e in &invalid {
        eprintln!("weftd: rejected {e}");
    }
    let accepted = entries
        .iter()
        .filter(|e| matches!(e.outcome, weft_model::Outcome::Valid { .. }))
        .count();
    println!(
        "weftd: {accepted} resources accepted, {} rejected from {}",
        invalid.len(),
        dir.display()
    );
    if invalid.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Connections the kernel may queue for `accept` per listener (capped by `net.core.somaxconn`).
/// tokio's default, 1,024, overflows when thousands of proxies (re)connect at once: the kernel
/// then drops their SYNs and they retry 1, 3, 7 s later.
const LISTEN_BACKLOG: u32 = 4096;

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, String> {
    let listen = || {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }?;
        socket.set_reuseaddr(true)?; // as TcpListener::bind
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    };
    listen().map_err(|e| format!("cannot listen on {addr} ({what}): {e}"))
}

async fn run(args: Args) -> Result<(), String> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let now = SystemTime::now();
    let alg = KeyAlgorithm::parse(&args.ca_key_algorithm)?;
    let default_ttl = weft_model::Duration::parse(&args.workload_cert_ttl)
        .map_err(|e| format!("--workload-cert-ttl: {e}"))?
        .as_std();
    std::fs::create_dir_all(&args.state_dir)
        .and_then(|_| {
            std::fs::set_permissions(
                &args.state_dir,
                std::os::unix::fs::PermissionsExt::from_mode(0o700),
            )
        })
        .map_err(|e| format!("{}: {e}", args.state_dir.display()))?;
    let files = CaFiles::new(&args.state_dir);
    let (ca, source) = files.load_or_create(alg, &args.trust_domain, now)?;
    match source {
        CaSource::Created => tracing::info!(
            "created a new mesh root CA in {}",
            args.state_dir.join("ca").display()
        ),
        CaSource::Loaded => tracing::info!(
            "loaded the mesh root CA from {}",
            args.state_dir.join("ca").display()
        ),
        CaSource::PluggedIn => tracing::info!(
            "using the plugged-in CA from {}",
            args.state_dir.join("cacerts").display()
        ),
    }
    let ca = Arc::new(ca);
    let tokens = Arc::new(files.token_authority()?);
    let admin_token = files.admin_token()?;
    let metrics = Arc::new(metrics::Metrics::default());
    let authn = authn::Authenticator::new(tokens.clone(), args.trust_domain.clone());

    let mut sans = vec![
        "istiod.istio-system.svc".to_string(),
        "istiod.istio-system.svc.cluster.local".to_string(),
        "istiod".to_string(),
        "localhost".to_string(),
    ];
    sans.extend(args.extra_san.iter().cloned());
    let tls_config = tls::server_config(&ca, &sans, now)?;

    let mut mesh = read_mesh_config(args.mesh_config.as_deref(), &args.trust_domain)?;
    if let Some(path) = &args.networks_config {
        mesh.networks = read_networks_config(path)?;
    }
    let mesh = Arc::new(mesh);
    let (store, store_rx) = store::start(
        args.config_dir.clone(),
        args.state_dir.clone(),
        args.service_cidr,
    )
    .await?;
    // Every accepted configuration change becomes one debounced push state, whose context is
    // built from the previous one (so that it knows what changed).
    let mut previous: Option<Arc<weft_xds::PushContext>> = None;
    let push_rx = xds::push::debounced(
        store_rx,
        xds::push::DEBOUNCE_AFTER,
        xds::push::DEBOUNCE_MAX,
        move |snap: &Arc<store::StoreSnapshot>, version| {
            let (config, alloc) = (snap.config.clone(), &snap.allocations);
            let context = Arc::new(match &previous {
                Some(p) => weft_xds::PushContext::next(p, config, alloc, &mesh),
                None => weft_xds::PushContext::new(config, alloc, &mesh),
            });
            previous = Some(context.clone());
            xds::push::PushState { version, context }
        },
    );
    let grace = match args
        .workload_entry_grace_period
        .clone()
        .map(|v| ("--workload-entry-grace-period", v))
        .or_else(|| {
            std::env::var("PILOT_WORKLOAD_ENTRY_GRACE_PERIOD")
                .ok()
                .map(|v| ("PILOT_WORKLOAD_ENTRY_GRACE_PERIOD", v))
        }) {
        Some((what, v)) => weft_model::Duration::parse(&v)
            .map_err(|e| format!("{what}: {e}"))?
            .as_std(),
        None => autoreg::DEFAULT_GRACE,
    };
    let workloads = autoreg::Controller::new(store.clone(), grace);
    tokio::spawn(workloads.clone().run_sweeps());
    let xds_state = Arc::new(xds::XdsState::new(
        authn.clone(),
        workloads,
        metrics.clone(),
        push_rx,
    ));
    let grpc = || {
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
            .add_service(IstioCertificateServiceServer::new(ca_service::CaService {
                ca: ca.clone(),
                authn: authn.clone(),
                default_ttl,
                metrics: metrics.clone(),
            }))
            .add_service(xds::fast::AdsService::new(xds_state.clone()))
    };
    let tls_listener = bind(args.xds_tls_addr, "xDS/CA TLS").await?;
    let plain_listener = bind(args.xds_plaintext_addr, "xDS/CA plaintext").await?;
    let http_listener = bind(args.http_addr, "admin API").await?;
    let mon_listener = bind(args.monitoring_addr, "monitoring").await?;

    let admin = Arc::new(admin::Admin {
        store,
        admin_token,
        tokens,
        root_pem: ca.root_pem().to_string(),
        xds: xds_state.clone(),
    });
    let admin_handler: http::Handler = Arc::new(move |req| Box::pin(admin.clone().handle(req)));
    let mon_metrics = metrics.clone();
    let mon_handler: http::Handler = Arc::new(move |req: http::Req| {
        let m = mon_metrics.clone();
        Box::pin(async move {
            if req.path == "/metrics" {
                http::respond(
                    hyper::StatusCode::OK,
                    "text/plain; version=0.0.4",
                    m.render(),
                )
            } else {
                http::text(hyper::StatusCode::NOT_FOUND, "try /metrics")
            }
        })
    });

    tracing::info!(
        "weftd ready: xDS/CA TLS {} plaintext {}, admin {}, metrics {}",
        args.xds_tls_addr,
        args.xds_plaintext_addr,
        args.http_addr,
        args.monitoring_addr
    );
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config);
    let tls_srv = grpc().serve_with_incoming(conn::incoming(tls_listener, Some(acceptor)));
    let plain_srv = grpc().serve_with_incoming(conn::incoming(plain_listener, None));
    tokio::select! {
        r = tls_srv => r.map_err(|e| format!("TLS gRPC server: {e}"))?,
        r = plain_srv => r.map_err(|e| format!("plaintext gRPC server: {e}"))?,
        _ = http::serve(http_listener, admin_handler) => {},
        _ = http::serve(mon_listener, mon_handler) => {},
        _ = shutdown_signal() => tracing::info!("weftd shutting down"),
    }
    Ok(())
}

/// The mesh config: `--mesh-config` if given (Istio's MeshConfig YAML), with `--trust-domain`
/// used when the file names none.
fn read_mesh_config(
    path: Option<&std::path::Path>,
    trust_domain: &str,
) -> Result<weft_xds::MeshConfig, String> {
    let mut mesh = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            if text.trim().is_empty() {
                weft_xds::MeshConfig::default()
            } else {
                serde_saphyr::from_str(&text)
                    .map_err(|e| format!("{}: invalid mesh config: {e}", p.display()))?
            }
        }
        None => weft_xds::MeshConfig::default(),
    };
    if path.is_none() || mesh.trust_domain.is_empty() {
        mesh.trust_domain = trust_domain.to_string();
    }
    Ok(mesh)
}

/// The mesh networks file (Istio's MeshNetworks YAML); empty is no networks.
fn read_networks_config(path: &std::path::Path) -> Result<weft_xds::MeshNetworks, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if text.trim().is_empty() {
        return Ok(weft_xds::MeshNetworks::default());
    }
    let networks: weft_xds::MeshNetworks = serde_saphyr::from_str(&text)
        .map_err(|e| format!("{}: invalid mesh networks: {e}", path.display()))?;
    networks
        .validate()
        .map_err(|e| format!("{}: invalid mesh networks: {e}", path.display()))?;
    Ok(networks)
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The accept queue a listening socket got: `ss` shows it as Send-Q.
    #[tokio::test]
    async fn listeners_queue_4096_connections() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), "test").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let out = std::process::Command::new("ss")
            .args(["-ltnH", &format!("sport = :{port}")])
            .output()
            .expect("ss (iproute2) runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let backlog: u32 = text
            .split_whitespace()
            .nth(2)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no listener in ss output: {text:?}"));
        let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(backlog, LISTEN_BACKLOG.min(somaxconn));
        assert!(backlog > 1024, "more than tokio's default");
    }
}
