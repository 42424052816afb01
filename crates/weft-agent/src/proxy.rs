//! `weft-agent proxy`: wires the pieces together and runs until SIGTERM.

use crate::bootstrap::{self, BootstrapOptions};
use crate::certs::{self, CertManager};
use crate::config::{AgentConfig, ProxyType};
use crate::envoy::{EnvoySpec, EnvoySupervisor, find_envoy_binary};
use crate::probe::{self, runner::Precheck};
use crate::status::{AgentMetrics, StatusState, envoy_ready, serve_status};
use crate::upstream::{self, Target, Upstream};
use crate::xds_proxy::{ProxyHooks, serve_xds_proxy};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub async fn run(root: PathBuf, proxy_type: ProxyType) -> Result<(), String> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let cfg = Arc::new(AgentConfig::load(&root, proxy_type, &env)?);
    tracing::info!(node = %cfg.node_id(), identity = %cfg.spiffe_uri(), discovery = %cfg.discovery_address, "starting");

    // Set-up errors stop the agent at once, naming the file and the fix.
    let root_pem = certs::read_root(&cfg)?;
    let envoy_binary = find_envoy_binary(&cfg.env)?;
    let opts = BootstrapOptions::default();

    // The application readiness probe (mesh config `readinessProbe`), Envoy's readiness first.
    let admin_port = opts.admin_port;
    let envoy_first: Precheck = Arc::new(move || Box::pin(envoy_ready(admin_port)));
    let app_health = probe::start(&cfg, Some(envoy_first))
        .map_err(|e| format!("{}: {e}", cfg.paths.mesh_config().display()))?;

    // The DNS proxy before anything waits for weftd: it serves the saved name table at once, and
    // NDS reaches it through the xDS proxy's hooks.
    let mut hooks = ProxyHooks::default();
    crate::dns::start(&cfg, &mut hooks).await?;

    let (manager, cert_watch) = CertManager::new(cfg.clone());
    if manager.load_existing().is_none() {
        if certs::read_token(&cfg.paths.token()).is_none() {
            return Err(format!(
                "{}: no bootstrap token and no valid certificate in {} (create the bundle with `weftctl x workload entry configure`)",
                cfg.paths.token().display(),
                cfg.output_certs.display()
            ));
        }
        // The first certificate: retry until weftd answers (it may still be starting).
        let mut wait = Duration::from_millis(200);
        loop {
            match manager.request().await {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!("first certificate request failed, retrying in {wait:?}: {e}");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
    tokio::spawn(manager.run());

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    // SDS and the xDS proxy for Envoy.
    let sds = tokio::spawn(crate::sds::serve_sds(
        cfg.paths.sds_socket(),
        cert_watch.clone(),
        stopped(stop_rx.clone()),
    ));
    let target = Target::new(&cfg.discovery_address, cfg.istiod_san.as_deref(), root_pem)
        .with_hosts_file(&cfg.paths.hosts());
    let certs_for_xds = cert_watch.clone();
    let token_path = cfg.paths.token();
    let cluster_id = cfg.cluster_id.clone();
    let connect_certs = cert_watch.clone();
    let up = Upstream {
        connect: Arc::new(move || {
            let target = target.clone();
            let current = connect_certs.borrow().clone();
            Box::pin(async move { upstream::connect(&target, current.as_deref()).await })
        }),
        headers: Arc::new(move || {
            let mut h = vec![("clusterid".to_string(), cluster_id.clone())];
            // The workload certificate authenticates the stream; the token is only needed before it exists.
            if certs_for_xds.borrow().is_none()
                && let Some(t) = certs::read_token(&token_path)
            {
                h.push(("authorization".to_string(), format!("Bearer {t}")));
            }
            h
        }),
    };
    hooks.health = app_health.clone();
    let xds = tokio::spawn(serve_xds_proxy(
        cfg.paths.xds_socket(),
        up,
        hooks,
        stopped(stop_rx.clone()),
    ));

    // Status/readiness and Envoy.
    let metrics = Arc::new(AgentMetrics::default());
    let status = StatusState::new(opts.admin_port, cert_watch.clone(), metrics.clone())
        .with_app_health(app_health);
    let status_addr = format!("127.0.0.1:{}", opts.status_port)
        .parse()
        .map_err(|e| format!("status address: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = serve_status(status_addr, status).await {
            tracing::error!("status server: {e}");
        }
    });
    bootstrap::write(&cfg.paths.bootstrap(), &bootstrap::bootstrap(&cfg, &opts))?;
    let mut spec = EnvoySpec::new(envoy_binary, cfg.paths.bootstrap());
    spec.admin_port = opts.admin_port;
    if let Some(level) = cfg.env.get("ENVOY_LOG_LEVEL") {
        spec.log_level = level.clone();
    }
    let supervisor = EnvoySupervisor::new(spec, metrics);
    let envoy = tokio::spawn(supervisor.run(stop_rx.clone()));

    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutting down: draining Envoy"),
        r = sds => return Err(format!("SDS server stopped: {}", join_result(r))),
        r = xds => return Err(format!("xDS proxy stopped: {}", join_result(r))),
    }
    let _ = stop_tx.send(true);
    match envoy.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(format!("Envoy supervisor: {e}")),
    }
}

fn join_result(r: Result<Result<(), String>, tokio::task::JoinError>) -> String {
    match r {
        Ok(Ok(())) => "ended".into(),
        Ok(Err(e)) => e,
        Err(e) => e.to_string(),
    }
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
