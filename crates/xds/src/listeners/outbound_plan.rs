//! Which outbound listeners exist and what their filter chains carry, before any Envoy message is
//! built: Istio's rules for services sharing a `<bind>_<port>` key (`buildSidecarOutboundListener`).
//!
//! Each service port asks for a listener by protocol:
//! - HTTP: `0.0.0.0_<port>`, one HTTP chain routed by RDS `"<port>"`. On the wildcard bind the
//!   chain matches sniffed HTTP only (`application_protocols` `http/1.1`, `h2c` from the
//!   `http_inspector`), so other bytes fall through to the default chain.
//! - TCP (TCP, TLS, HTTPS, Mongo, Redis, MySQL): `<vip>_<port>` (`0.0.0.0_<port>` for an
//!   address-less ServiceEntry, TLS ones matched by SNI), one chain to the service's cluster.
//! - Unsupported (no protocol declared): sniffed, as TCP plus an HTTP chain whose route
//!   configuration is the service's own `"<host>:<port>"` on a VIP, or `"<port>"` on 0.0.0.0.
//!
//! A TCP or TLS service port's chains come from the VirtualServices the proxy sees
//! ([`tcp_routes`]): `tcp` routes by destination subnet, `tls` routes by SNI, else one chain to
//! the service.
//!
//! When two ask for one key: HTTP over TCP, TCP over HTTP and sniffed over TCP merge into a
//! sniffed listener; sniffed over HTTP replaces it; TCP over TCP (or over sniffed) adds only chains
//! that do not match the same traffic (the first match-all chain wins). Mongo and MySQL never share
//! a port with another protocol.

use super::tcp_routes::{self, L4Scope};
use crate::listeners::outbound::reserved_port;
use crate::names::outbound_cluster;
use crate::registry::{Protocol, Registry, Service, ServiceSource};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

pub(crate) const WILDCARD: &str = "0.0.0.0";

/// Where `tcp_proxy` sends a chain's connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TcpTarget {
    /// One cluster (also the stat prefix).
    Cluster(String),
    /// Weighted clusters (weights > 0), with the stat prefix `<vs name>.<vs namespace>`.
    Weighted {
        stat_prefix: String,
        clusters: Vec<(String, u32)>,
    },
}

/// What a chain does with the connections it matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// `tcp_proxy`.
    Tcp(TcpTarget),
    /// HTTP connection manager with this RDS route configuration.
    Http(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Chain {
    /// `server_names` (TLS by SNI); empty (or holding `*`): any.
    pub sni: Vec<String>,
    /// `prefix_ranges` (destination subnets); empty: any.
    pub destination_cidrs: Vec<String>,
    /// Matches sniffed plaintext HTTP only (`raw_buffer`, `http/1.1` or `h2c`).
    pub sniffed_http: bool,
    pub action: Action,
    /// The VirtualService it comes from (`istio.config` filter chain metadata).
    pub config: Option<String>,
}

impl Chain {
    /// A chain proxying everything it matches to one cluster.
    pub fn tcp(cluster: String) -> Chain {
        Chain {
            sni: Vec::new(),
            destination_cidrs: Vec::new(),
            sniffed_http: false,
            action: Action::Tcp(TcpTarget::Cluster(cluster)),
            config: None,
        }
    }

    /// `server_names` as the chain match carries them: sorted, none when `*` is among them.
    pub fn server_names(&self) -> Vec<String> {
        if self.sni.iter().any(|s| s == "*") {
            return Vec::new();
        }
        let mut v = self.sni.clone();
        v.sort();
        v
    }

    /// Istio's `isMatchAll`: such a chain becomes the listener's default chain.
    pub fn is_match_all(&self) -> bool {
        self.server_names().is_empty() && !self.sniffed_http && self.destination_cidrs.is_empty()
    }

    /// Istio's `conflictsWith`: both match the same traffic.
    fn conflicts_with(&self, other: &Chain) -> bool {
        let sni = |c: &Chain| -> BTreeSet<String> {
            c.sni.iter().filter(|s| *s != "*").cloned().collect()
        };
        let cidrs = |c: &Chain| -> BTreeSet<String> {
            c.destination_cidrs
                .iter()
                .filter_map(|d| tcp_routes::masked_cidr(d))
                .collect()
        };
        self.sniffed_http == other.sniffed_http
            && sni(self) == sni(other)
            && cidrs(self) == cidrs(other)
    }
}

/// One outbound listener to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub bind: String,
    pub port: u32,
    /// What later services on the same key are weighed against (Unsupported once sniffed).
    pub protocol: Protocol,
    /// In the order they were added.
    pub chains: Vec<Chain>,
}

impl Entry {
    pub fn name(&self) -> String {
        format!("{}_{}", self.bind, self.port)
    }

    /// RDS route configuration names the entry's HTTP chains use.
    pub fn route_names(&self) -> impl Iterator<Item = &str> {
        self.chains.iter().filter_map(|c| match &c.action {
            Action::Http(rds) => Some(rds.as_str()),
            Action::Tcp(_) => None,
        })
    }

    fn merge(&mut self, incoming: Vec<Chain>) {
        for chain in incoming {
            if !self.chains.iter().any(|c| c.conflicts_with(&chain)) {
                self.chains.push(chain);
            }
        }
    }
}

/// How one service port asks for its listener (Istio's `ListenerProtocol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Http,
    Tcp,
    Auto,
}

fn kind(p: Protocol) -> Option<Kind> {
    if p.is_http() {
        Some(Kind::Http)
    } else if p.is_tcp() {
        Some(Kind::Tcp)
    } else if p.is_sniffed() {
        Some(Kind::Auto)
    } else {
        None // UDP
    }
}

fn ip_string(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => v6.to_string(),
    }
}

/// The route configuration name of a sniffed service port bound to `bind`.
pub(crate) fn sniffed_route_name(host: &str, port: u32) -> String {
    format!("{host}:{port}")
}

/// The chains one service port brings to a listener on `bind`.
fn chains_for(
    svc: &Service,
    port: u32,
    protocol: Protocol,
    bind: &str,
    k: Kind,
    l4: Option<&L4Scope<'_>>,
) -> Vec<Chain> {
    let wildcard = bind == WILDCARD;
    let tcp = || -> Vec<Chain> {
        let tls = matches!(protocol, Protocol::Tls | Protocol::Https);
        let (mut out, needs_own) = match l4 {
            Some(scope) => tcp_routes::chains(svc, port, tls, scope),
            None => (Vec::new(), true),
        };
        if needs_own {
            let mut chain = Chain::tcp(outbound_cluster(port, &svc.hostname));
            // On the wildcard bind, TLS services are told apart by SNI.
            if wildcard && tls {
                chain.sni = vec![svc.hostname.clone()];
            }
            out.push(chain);
        }
        out
    };
    let http = |rds: String| Chain {
        sni: Vec::new(),
        destination_cidrs: Vec::new(),
        sniffed_http: (wildcard && protocol != Protocol::HttpProxy) || k == Kind::Auto,
        action: Action::Http(rds),
        config: None,
    };
    match k {
        Kind::Http => vec![http(port.to_string())],
        Kind::Tcp => tcp(),
        Kind::Auto => {
            let rds = if wildcard {
                port.to_string()
            } else {
                sniffed_route_name(&svc.hostname, port)
            };
            let mut chains = tcp();
            chains.push(http(rds));
            chains
        }
    }
}

/// Binds a service port listens on: 0.0.0.0 for HTTP; else its VIPs, or 0.0.0.0 for an
/// address-less ServiceEntry. Kubernetes services without a VIP (headless) get no TCP or sniffed
/// listener: their traffic is passthrough (per-endpoint listeners are not modelled yet).
fn binds(svc: &Service, k: Kind) -> Vec<String> {
    if k == Kind::Http {
        return vec![WILDCARD.into()];
    }
    if !svc.addresses.is_empty() {
        return svc.addresses.iter().map(ip_string).collect();
    }
    match svc.source {
        ServiceSource::ServiceEntry(_) => vec![WILDCARD.into()],
        ServiceSource::Kubernetes => Vec::new(),
    }
}

/// Istio's `isConflictWithWellKnownPort`: Mongo and MySQL keep their port to themselves.
fn well_known_conflict(incoming: Protocol, existing: Protocol) -> bool {
    let special = |p| matches!(p, Protocol::Mongo | Protocol::MySql);
    (special(incoming) || special(existing)) && incoming != existing
}

fn add(
    out: &mut BTreeMap<String, Entry>,
    svc: &Arc<Service>,
    port: u32,
    protocol: Protocol,
    l4: Option<&L4Scope<'_>>,
) {
    let Some(k) = kind(protocol) else {
        return;
    };
    for bind in binds(svc, k) {
        let mut chains = chains_for(svc, port, protocol, &bind, k, l4);
        // An HTTP chain on 0.0.0.0 matches sniffed HTTP only: the listener is sniffed.
        let sniffed = chains.iter().any(|c| c.sniffed_http);
        let entry_protocol = if sniffed {
            Protocol::Unsupported
        } else {
            protocol
        };
        let key = format!("{bind}_{port}");
        let Some(cur) = out.get_mut(&key) else {
            out.insert(
                key,
                Entry {
                    bind,
                    port,
                    protocol: entry_protocol,
                    chains,
                },
            );
            continue;
        };
        let existing = cur.protocol;
        if k == Kind::Http && !existing.is_tcp() {
            continue; // already HTTP or sniffed: its RDS "<port>" has this service
        }
        if well_known_conflict(protocol, existing) {
            continue;
        }
        match k {
            Kind::Auto if existing.is_http() => {
                // Sniffed over HTTP: replaces it.
                cur.protocol = Protocol::Unsupported;
                cur.chains = chains;
            }
            Kind::Auto if !existing.is_tcp() => {
                // Sniffed over sniffed: only the TCP chains are new.
                chains.retain(|c| matches!(c.action, Action::Tcp(_)));
                cur.merge(chains);
            }
            Kind::Tcp if existing.is_tcp() || existing.is_sniffed() => cur.merge(chains),
            _ => {
                // HTTP over TCP, TCP over HTTP, sniffed over TCP: merged and sniffed.
                cur.merge(chains);
                cur.protocol = Protocol::Unsupported;
            }
        }
    }
}

/// Every outbound listener but `virtualOutbound`, by name. Services are taken by host name.
/// `l4`: the VirtualServices (and proxy) TCP and TLS routes come from; `None`: none.
pub(crate) fn plan(registry: &Registry, l4: Option<&L4Scope<'_>>) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    for svc in registry.services() {
        for p in &svc.ports {
            if !reserved_port(p.port) {
                add(&mut out, svc, p.port, p.protocol, l4);
            }
        }
    }
    out
}
