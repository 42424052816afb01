//! Transparent traffic capture: Istio's VM iptables rules (`pilot-agent istio-iptables`).
//!
//! - [`settings`]: Istio's environment variables (`ISTIO_INBOUND_PORTS`, `ISTIO_SERVICE_CIDR`, …)
//!   resolved against a few host facts (proxy user, resolv.conf, IPv6 addresses). Pure.
//! - [`rules`]: the rules as `iptables-restore` input, golden-tested. Pure.
//! - [`apply`]: installing and removing them with the host's `iptables` tools.
//!
//! Settings come from the agent's merged environment ([`AgentConfig::load`]: sidecar.env,
//! cluster.env, mesh `proxyMetadata`, process environment), so `weft-agent istio-iptables` sees
//! exactly what `weft-agent proxy` sees. The rules need root (or `CAP_NET_ADMIN`).
//!
//! Weft's departures from Istio: SSH (22) is never captured inbound; an unset
//! `ISTIO_LOCAL_EXCLUDE_PORTS` means `22,15090,15021,15020` (what `workload entry configure`
//! writes); TPROXY is refused; IPv6 rules follow the host's addresses (`ISTIO_DUAL_STACK`
//! overrides) and never capture DNS.

pub mod apply;
pub mod rules;
pub mod settings;

use crate::config::{AgentConfig, ProxyType};
use apply::Tools;
use rules::{Family, Ruleset};
use settings::{Dns, Facts, Inbound, Outbound, Settings};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

/// What to install: IPv4 rules always, IPv6 rules when the host has IPv6.
#[derive(Clone, Debug)]
pub struct Plan {
    pub settings: Settings,
    pub v4: Ruleset,
    pub v6: Option<Ruleset>,
}

impl Plan {
    /// Resolves the capture settings from the agent's merged environment and the host under
    /// `cfg.paths.root`, logging anything adjusted.
    pub fn from_config(cfg: &AgentConfig) -> Result<Plan, String> {
        let facts = Facts::gather(&cfg.paths.root, &cfg.env);
        Plan::new(&cfg.env, &facts)
    }

    pub fn new(env: &BTreeMap<String, String>, facts: &Facts) -> Result<Plan, String> {
        let (settings, notes) = Settings::resolve(env, facts)?;
        for note in notes {
            tracing::warn!("{note}");
        }
        Ok(Plan {
            v4: Ruleset::generate(&settings, Family::V4),
            v6: settings
                .ipv6
                .then(|| Ruleset::generate(&settings, Family::V6)),
            settings,
        })
    }

    /// What `--dry-run` prints: the IPv4 `iptables-restore` input, then (if any) the IPv6 one
    /// after a comment line.
    pub fn text(&self) -> String {
        let mut out = self.v4.restore_text();
        if let Some(v6) = &self.v6 {
            out.push_str("# IPv6 (ip6tables-restore)\n");
            out.push_str(&v6.restore_text());
        }
        out
    }
}

/// Installs the capture rules `cfg` asks for, replacing any earlier Weft/Istio rules in one
/// step per address family. Idempotent; needs root or `CAP_NET_ADMIN`.
pub fn install(cfg: &AgentConfig) -> Result<(), String> {
    let plan = Plan::from_config(cfg)?;
    log_settings(&plan.settings);
    apply::replace(&Tools::for_family(Family::V4), Some(&plan.v4))?;
    let v6 = Tools::for_family(Family::V6);
    match &plan.v6 {
        Some(rules) if v6.available() => apply::replace(&v6, Some(rules))?,
        Some(_) => tracing::warn!(
            "IPv6 capture is on (the host has IPv6 addresses, or ISTIO_DUAL_STACK=true) but ip6tables is not installed: IPv6 traffic is not captured"
        ),
        None => {
            // No IPv6 capture wanted; still remove what an earlier run may have left.
            if v6.available()
                && let Err(e) = apply::replace(&v6, None)
            {
                tracing::debug!("IPv6 cleanup skipped: {e}");
            }
        }
    }
    tracing::info!(
        "traffic capture installed (IPv4{})",
        if plan.v6.is_some() && v6.available() {
            " and IPv6"
        } else {
            ""
        }
    );
    Ok(())
}

/// Removes every `ISTIO_*` chain and every jump to one, IPv4 and IPv6 (when `ip6tables` is
/// installed). Safe to call when nothing is installed; needs root or `CAP_NET_ADMIN`.
/// Blocking (runs `iptables-save`/`iptables-restore`): from async code, call it through
/// `tokio::task::spawn_blocking`.
pub fn cleanup() -> Result<(), String> {
    apply::replace(&Tools::for_family(Family::V4), None)?;
    let v6 = Tools::for_family(Family::V6);
    if v6.available() {
        // A host without IPv6 support cannot have IPv6 rules either.
        if let Err(e) = apply::replace(&v6, None) {
            tracing::debug!("IPv6 cleanup skipped: {e}");
        }
    }
    tracing::info!("traffic capture removed");
    Ok(())
}

fn log_settings(s: &Settings) {
    fn list<T: std::fmt::Display>(items: &[T]) -> String {
        if items.is_empty() {
            return "-".into();
        }
        items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
    let inbound = match &s.inbound {
        Inbound::Off => "off".to_string(),
        Inbound::All { exclude } => format!("* except {}", list(exclude)),
        Inbound::Ports(ports) => list(ports),
    };
    let outbound = match &s.outbound {
        Outbound::Off => "off".to_string(),
        Outbound::All => "*".to_string(),
        Outbound::Cidrs(cidrs) => list(cidrs),
    };
    let dns = match &s.dns {
        Dns::Off => "off".to_string(),
        Dns::All => "all".to_string(),
        Dns::Servers(servers) => format!("to {}", list(servers)),
    };
    tracing::info!(
        "capture: inbound {inbound} -> {}; outbound {outbound} (also ports {}, except to {}, except ports {}) -> {}; \
         DNS {dns} -> {}; proxy uid {} gid {}; IPv6 {}",
        s.inbound_capture_port,
        list(&s.outbound_ports),
        list(&s.outbound_exclude_cidrs),
        list(&s.outbound_exclude_ports),
        s.envoy_port,
        settings::DNS_CAPTURE_PORT,
        list(&s.proxy_uids),
        list(&s.proxy_gids),
        if s.ipv6 { "on" } else { "off" },
    );
}

/// `weft-agent istio-iptables [--cleanup-only] [--dry-run] [--root DIR]`.
pub fn main(root: &Path, cleanup_only: bool, dry_run: bool, log_level: &str) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(log_level))
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let result = if cleanup_only {
        if dry_run {
            eprintln!("dry run: would remove every ISTIO_* chain and every jump to one");
            Ok(())
        } else {
            cleanup()
        }
    } else {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        AgentConfig::load(root, ProxyType::Sidecar, &env).and_then(|cfg| {
            if dry_run {
                Plan::from_config(&cfg).map(|plan| print!("{}", plan.text()))
            } else {
                install(&cfg)
            }
        })
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft-agent istio-iptables: {e}");
            ExitCode::FAILURE
        }
    }
}
