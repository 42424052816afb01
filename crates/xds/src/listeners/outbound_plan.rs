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
//! When two ask for one key: HTTP over TCP, TCP over HTTP and sniffed over TCP merge into a
//! sniffed listener; sniffed over HTTP replaces it; TCP over TCP (or over sniffed) adds only chains
//! that do not match the same traffic (the first match-all chain wins). Mongo and MySQL never share
//! a port with another protocol.

use crate::listeners::outbound::reserved_port;
use crate::names::outbound_cluster;
use crate::registry::{Protocol, Registry, Service, ServiceSource};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

pub(crate) const WILDCARD: &str = "0.0.0.0";

/// What a chain does with the connections it matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// `tcp_proxy` to this cluster.
    Tcp(String),
    /// HTTP connection manager with this RDS route configuration.
    Http(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Chain {
    /// `server_names` (TLS by SNI); empty: any.
    pub sni: Vec<String>,
    /// Matches sniffed plaintext HTTP only (`raw_buffer`, `http/1.1` or `h2c`).
    pub sniffed_http: bool,
    pub action: Action,
}

impl Chain {
    /// Istio's `isMatchAll`: such a chain becomes the listener's default chain.
    pub fn is_match_all(&self) -> bool {
        self.sni.is_empty() && !self.sniffed_http
    }

    /// Istio's `conflictsWith`: both match the same traffic.
    fn conflicts_with(&self, other: &Chain) -> bool {
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v.dedup();
            v
        };
        self.sniffed_http == other.sniffed_http && sorted(&self.sni) == sorted(&other.sni)
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
fn chains_for(svc: &Service, port: u32, protocol: Protocol, bind: &str, k: Kind) -> Vec<Chain> {
    let cluster = outbound_cluster(port, &svc.hostname);
    let wildcard = bind == WILDCARD;
    let tcp = || Chain {
        // On the wildcard bind, TLS services are told apart by SNI.
        sni: if wildcard && matches!(protocol, Protocol::Tls | Protocol::Https) {
            vec![svc.hostname.clone()]
        } else {
            Vec::new()
        },
        sniffed_http: false,
        action: Action::Tcp(cluster.clone()),
    };
    let http = |rds: String| Chain {
        sni: Vec::new(),
        sniffed_http: (wildcard && protocol != Protocol::HttpProxy) || k == Kind::Auto,
        action: Action::Http(rds),
    };
    match k {
        Kind::Http => vec![http(port.to_string())],
        Kind::Tcp => vec![tcp()],
        Kind::Auto => {
            let rds = if wildcard {
                port.to_string()
            } else {
                sniffed_route_name(&svc.hostname, port)
            };
            vec![tcp(), http(rds)]
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

fn add(out: &mut BTreeMap<String, Entry>, svc: &Arc<Service>, port: u32, protocol: Protocol) {
    let Some(k) = kind(protocol) else {
        return;
    };
    for bind in binds(svc, k) {
        let mut chains = chains_for(svc, port, protocol, &bind, k);
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
pub(crate) fn plan(registry: &Registry) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    for svc in registry.services() {
        for p in &svc.ports {
            if !reserved_port(p.port) {
                add(&mut out, svc, p.port, p.protocol);
            }
        }
    }
    out
}
