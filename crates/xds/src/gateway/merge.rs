//! Which Gateway servers a router serves, merged into listeners (Istio's `mergeGateways`).
//!
//! A Gateway applies to a router when its selector is empty or a subset of the router's labels,
//! in any namespace. Its servers are taken oldest Gateway first; a server's port is translated
//! to the target port of the router's Service with that port, if any (Istio's legacy selector
//! behaviour). Per listener (bind address and port) the first server decides: a plaintext HTTP
//! server makes an HTTP listener (more HTTP servers merge into it), another plaintext server a
//! TCP listener of that one server, a TLS server a TLS listener that takes every further TLS
//! server whose hosts are not already taken on the port. Servers that conflict are left out, as
//! istiod leaves them out (it counts them as rejected configuration).

use crate::registry::Protocol;
use std::collections::BTreeMap;
use weft_model::Spec;
use weft_model::kind::Kind;
use weft_model::networking::{Gateway, Server};
use weft_model::snapshot::Snapshot;

/// One server of one Gateway, as a router serves it.
#[derive(Clone, Debug)]
pub(crate) struct BoundServer<'a> {
    /// `namespace/name` of the Gateway.
    pub gateway: String,
    pub server: &'a Server,
    /// Hosts in Istio's canonical forms: `host` or `namespace/host`.
    pub hosts: Vec<String>,
}

impl BoundServer<'_> {
    pub fn number(&self) -> u32 {
        self.server
            .port
            .as_ref()
            .map(|p| p.number)
            .unwrap_or_default()
    }

    pub fn protocol(&self) -> Protocol {
        Protocol::parse(
            self.server
                .port
                .as_ref()
                .map(|p| p.protocol.as_str())
                .unwrap_or_default(),
        )
    }

    /// `tls.mode`, when the server has TLS settings.
    pub fn tls_mode(&self) -> Option<&str> {
        self.server.tls.as_ref().map(|t| t.effective_mode())
    }

    /// Istio's `IsTLSServer`: TLS settings on a non-HTTP port.
    fn is_tls(&self) -> bool {
        self.server.tls.is_some() && !self.protocol().is_http()
    }

    /// The server's hosts without namespaces (Istio's `GetSNIHostsForServer`), sorted, unique.
    pub fn sni_hosts(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .hosts
            .iter()
            .map(|h| h.split_once('/').map_or(h.as_str(), |(_, h)| h).to_string())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListenerClass {
    /// Plaintext HTTP servers (routes from VirtualService `http`).
    Http,
    /// One plaintext non-HTTP server (VirtualService `tcp`).
    Tcp,
    /// TLS servers, told apart by SNI.
    Tls,
}

/// One listener a router has: its servers, in order.
#[derive(Clone, Debug)]
pub(crate) struct MergedListener<'a> {
    pub bind: String,
    pub port: u32,
    pub class: ListenerClass,
    pub servers: Vec<BoundServer<'a>>,
}

impl MergedListener<'_> {
    /// `<bind>_<port>`, `0.0.0.0_<port>` without a bind address (Istio's listener name).
    pub fn name(&self) -> String {
        format!("{}_{}", self.address(), self.port)
    }

    pub fn address(&self) -> &str {
        if self.bind.is_empty() {
            "0.0.0.0"
        } else {
            &self.bind
        }
    }
}

/// Istio's `sanitizeServerHostNamespace`: `./h` is the Gateway's namespace, `*/h` any (`h`).
fn sanitize_hosts(hosts: &[String], namespace: &str) -> Vec<String> {
    let mut out = Vec::new();
    for h in hosts {
        match h.split_once('/') {
            Some(("*", "*")) => return vec!["*".to_string()],
            Some(("*", host)) => out.push(host.to_string()),
            Some((".", host)) => out.push(format!("{namespace}/{host}")),
            _ => out.push(h.clone()),
        }
    }
    out
}

/// The Gateways that apply to a router with `labels`, oldest first.
fn selected<'a>(
    snapshot: &'a Snapshot,
    labels: &BTreeMap<String, String>,
) -> Vec<(String, &'a str, &'a Gateway)> {
    let mut out: Vec<(&str, String, &str, &Gateway)> = snapshot
        .of_kind(Kind::Gateway)
        .filter_map(|r| match &r.spec {
            Spec::Gateway(g) => Some((r, g)),
            _ => None,
        })
        .filter(|(_, g)| g.selector.iter().all(|(k, v)| labels.get(k) == Some(v)))
        .map(|(r, g)| {
            (
                r.metadata.creation_timestamp.as_str(),
                format!("{}/{}", r.namespace(), r.name()),
                r.namespace(),
                g,
            )
        })
        .collect();
    out.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    out.into_iter().map(|(_, n, ns, g)| (n, ns, g)).collect()
}

/// The listeners of a router with `labels`; `target_port` translates a server port. Ordered by
/// listener name.
pub(crate) fn merge<'a>(
    snapshot: &'a Snapshot,
    labels: &BTreeMap<String, String>,
    target_port: impl Fn(u32) -> u32,
) -> Vec<MergedListener<'a>> {
    let mut listeners: BTreeMap<(String, u32), MergedListener<'a>> = BTreeMap::new();
    // Per port: TLS host → bind it is taken on (Istio's `CheckDuplicates`).
    let mut tls_hosts: BTreeMap<u32, BTreeMap<String, String>> = BTreeMap::new();
    for (gateway, namespace, gw) in selected(snapshot, labels) {
        for server in &gw.servers {
            let Some(port) = &server.port else { continue };
            let bound = BoundServer {
                gateway: gateway.clone(),
                server,
                hosts: sanitize_hosts(&server.hosts, namespace),
            };
            let resolved = target_port(port.number);
            if server.tls.is_some() {
                let known = tls_hosts.entry(resolved).or_default();
                if bound
                    .hosts
                    .iter()
                    .any(|h| known.get(h) == Some(&server.bind))
                {
                    continue;
                }
                for h in &bound.hosts {
                    known.insert(h.clone(), server.bind.clone());
                }
            }
            let key = (server.bind.clone(), resolved);
            match listeners.get_mut(&key) {
                None => {
                    let class = if bound.is_tls() {
                        ListenerClass::Tls
                    } else if bound.protocol().is_http() {
                        ListenerClass::Http
                    } else {
                        ListenerClass::Tcp
                    };
                    listeners.insert(
                        key,
                        MergedListener {
                            bind: server.bind.clone(),
                            port: resolved,
                            class,
                            servers: vec![bound],
                        },
                    );
                }
                Some(l) => {
                    let fits = match l.class {
                        ListenerClass::Http => !bound.is_tls() && bound.protocol().is_http(),
                        ListenerClass::Tcp => false,
                        ListenerClass::Tls => bound.is_tls(),
                    };
                    if fits {
                        l.servers.push(bound);
                    }
                }
            }
        }
    }
    let mut out: Vec<MergedListener<'a>> = listeners.into_values().collect();
    out.sort_by_key(|l| l.name());
    out
}
