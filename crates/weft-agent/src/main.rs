//! `weft-agent`: runs beside each workload (pilot-agent's part): obtains and rotates the workload
//! certificate, serves it to Envoy over SDS, proxies Envoy's xDS stream to weftd, writes the Envoy
//! bootstrap and supervises Envoy, and reports readiness.

mod bootstrap;
mod capture;
mod certs;
mod config;
mod dns;
mod envfile;
mod envoy;
mod hosts;
mod instance_ip;
mod probe;
mod proxy;
mod sds;
mod status;
#[cfg(test)]
mod unit_file_tests;
mod upstream;
mod xds_proxy;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "weft-agent", version, about = "Weft workload agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent and Envoy for this workload (`proxy`) or as a gateway (`proxy router`).
    Proxy {
        /// `sidecar` (default) or `router`.
        #[arg(default_value = "sidecar")]
        kind: String,
        /// Filesystem root the VM layout is relative to (etc/certs, var/run/secrets, ...).
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// Log filter (e.g. info, debug).
        #[arg(long = "log-level", default_value = "info")]
        log_level: String,
    },
    /// Install Istio's transparent traffic capture (iptables), or remove it.
    IstioIptables {
        /// Only remove every ISTIO_* chain and jump, then exit.
        #[arg(long = "cleanup-only")]
        cleanup_only: bool,
        /// Print the rules (iptables-restore input) and change nothing.
        #[arg(long = "dry-run")]
        dry_run: bool,
        /// Filesystem root the VM layout is relative to (cluster.env, etc/resolv.conf, ...).
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// Log filter (e.g. info, debug).
        #[arg(long = "log-level", default_value = "info")]
        log_level: String,
    },
    /// Print the version.
    Version,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Version => {
            println!("weft-agent {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::IstioIptables {
            cleanup_only,
            dry_run,
            root,
            log_level,
        } => capture::main(&root, cleanup_only, dry_run, &log_level),
        Command::Proxy {
            kind,
            root,
            log_level,
        } => {
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(&log_level))
                .with_target(false)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(std::io::stderr)
                .init();
            let proxy_type = match kind.as_str() {
                "sidecar" => config::ProxyType::Sidecar,
                "router" => config::ProxyType::Router,
                other => {
                    eprintln!("weft-agent: unknown proxy type {other:?} (use sidecar or router)");
                    return ExitCode::from(2);
                }
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("weft-agent: cannot start runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(proxy::run(root, proxy_type)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("weft-agent: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
