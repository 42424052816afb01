//! Weft's service registry and sidecar xDS translation.
//!
//! Pure: a [`PushContext`] is built once per [`Snapshot`](weft_model::snapshot::Snapshot) (plus the
//! VIP [`Allocations`] and the [`MeshConfig`]) and turns a [`Proxy`] and a type URL into Envoy
//! resources. No I/O, no clocks, no locks: the only interior mutability is `OnceLock` caches of
//! the resources every sidecar shares (outbound clusters, endpoints, outbound listeners, routes),
//! which are built on first use and handed out as `Arc` clones so that one encoded resource serves
//! every proxy, and of each resource's delta wire form ([`NamedResource::wire`]).
//!
//! A context built with [`PushContext::next`] from its predecessor records, per shared list, what
//! changed ([`SharedList::delta_from`]) and whose own resources may have changed
//! ([`PushContext::own_unchanged`]), so that a push costs a connection O(changes), not O(mesh).
//!
//! Names follow istiod exactly (`outbound|80||host`, `inbound|8080||`, `virtualOutbound`,
//! `virtualInbound`, SNI `outbound_.80_._.host`, route configurations named by port) so that the
//! seed documents and `istioctl proxy-config`-style tooling read the same. Everything is built from
//! stock Envoy features.
//!
//! # Wiring (ADS)
//!
//! Envoy asks, in order: CDS (`type_url::CLUSTER`), then EDS (`type_url::ENDPOINT`) naming the
//! EDS clusters it got (resource name = cluster name; every EDS cluster has an assignment, maybe
//! empty, and Envoy's cluster warming waits for it: `initial_fetch_timeout` is 0), then LDS
//! (`type_url::LISTENER`), then RDS (`type_url::ROUTE`) naming the route configurations the HTTP
//! listeners reference (`"80"`, `"3000"`, ...). [`PushContext::generate`] returns *all*
//! resources of a type for the proxy: for EDS and RDS (SotW) send those the request names.
//! Shared resources are the same `Arc` for every proxy of a context; their `version` is a hash of
//! the encoded bytes, equal across contexts when the content is equal, so a new snapshot only
//! reaches proxies whose resources changed. Per proxy: `virtualInbound` and the `inbound|<port>||`
//! clusters; route configurations are per proxy namespace (short host names, DestinationRule
//! hash policies). DestinationRules depend on the proxy's namespace (and labels, for rules with
//! a workload selector) and locality load balancing on its locality: the shared clusters and
//! endpoints use the rules of a namespace without rules of its own, and a proxy that sees other
//! rules, or is somewhere locality load balancing looks at, gets those services' clusters and
//! endpoints built for it (`destination_rule::ProxySpecific`). When a cluster changes, its
//! endpoints must be sent again even if they did not: Envoy keeps an updated cluster warming
//! until it gets them.
//! SDS (`default`, `ROOTCA`) is served by the agent through the bootstrap's `sds-grpc` cluster.
//!
//! # VirtualServices
//!
//! `virtual_service` indexes them as istiod does (short names, `exportTo`, delegates, the order a
//! proxy sees them in) and binds their hosts to services per outbound port (`binding`);
//! `http_route` translates HTTP routes (`http_routes`, also for gateways); `routes` assembles
//! RDS; `listeners::tcp_routes` turns `tcp`/`tls` routes into outbound filter chains. Route
//! configurations are then shared per namespace (per proxy when a match uses `sourceLabels`), and
//! outbound listeners per namespace once `mesh` VirtualServices have TCP or TLS routes.
//! NDS (`type_url::NAME_TABLE`, requested by the agent) is one unnamed resource per proxy: the
//! DNS name table.

mod authn;
pub mod authz;
mod clusters;
mod context;
mod destination_rule;
mod endpoints;
mod gateway;
mod http_route;
mod listeners;
mod locality_lb;
mod mesh;
mod name_table;
pub mod network;
mod proxy;
pub mod registry;
mod resource;
mod routes;
mod scope;
mod shared;
mod tls;
mod util;
mod virtual_service;

pub use authn::{MtlsMode, MtlsPolicy};
pub use context::{Generation, PushContext};
pub use mesh::{MeshConfig, OutboundTrafficPolicy, OutboundTrafficPolicyMode};
pub use name_table::{REGISTRY_EXTERNAL, REGISTRY_KUBERNETES};
pub use network::{MeshNetworks, NetworkView, Networks};
pub use proxy::{Proxy, ProxyKind};
pub use registry::{Allocations, Registry};
pub use resource::NamedResource;
pub use shared::{Change, ListDelta, SharedList};

/// The cluster domain of every Kubernetes-style host (`<name>.<ns>.svc.cluster.local`).
pub const DOMAIN_SUFFIX: &str = "cluster.local";

/// Well-known cluster and listener names (as istiod).
pub mod names {
    pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";
    pub const BLACKHOLE_CLUSTER: &str = "BlackHoleCluster";
    pub const INBOUND_PASSTHROUGH_CLUSTER: &str = "InboundPassthroughCluster";
    pub const VIRTUAL_OUTBOUND: &str = "virtualOutbound";
    pub const VIRTUAL_INBOUND: &str = "virtualInbound";
    /// The default chain of an outbound listener none of whose chains matches everything.
    pub const PASSTHROUGH_FILTER_CHAIN: &str = "PassthroughFilterChain";
    /// The sniffed-HTTP passthrough chains of `virtualInbound`.
    pub const VIRTUAL_INBOUND_CATCH_ALL_HTTP: &str = "virtualInbound-catchall-http";
    /// The agent's SDS cluster (declared in the bootstrap).
    pub const SDS_CLUSTER: &str = "sds-grpc";
    /// SDS resource names served by the agent.
    pub const SDS_DEFAULT: &str = "default";
    pub const SDS_ROOT: &str = "ROOTCA";
    /// Capture ports.
    pub const OUTBOUND_CAPTURE_PORT: u32 = 15001;
    pub const INBOUND_CAPTURE_PORT: u32 = 15006;
    /// Source address of Envoy's connections to the local application (exempt from capture by
    /// `-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN`).
    pub const INBOUND_PASSTHROUGH_BIND: &str = "127.0.0.6";

    /// `outbound|<port>||<host>`.
    pub fn outbound_cluster(port: u32, host: &str) -> String {
        outbound_subset_cluster(port, "", host)
    }

    /// `outbound|<port>|<subset>|<host>`: a DestinationRule subset's cluster (Istio's
    /// `BuildSubsetKey`); an empty subset is the service port's default cluster.
    pub fn outbound_subset_cluster(port: u32, subset: &str, host: &str) -> String {
        format!("outbound|{port}|{subset}|{host}")
    }

    /// `(port, subset, host)` of an `outbound|<port>|<subset>|<host>` name (Istio's
    /// `ParseSubsetKey`, outbound only).
    pub fn parse_outbound_cluster(name: &str) -> Option<(u32, &str, &str)> {
        let mut parts = name.splitn(4, '|');
        if parts.next()? != "outbound" {
            return None;
        }
        let port = parts.next()?.parse().ok()?;
        let subset = parts.next()?;
        let host = parts.next()?;
        Some((port, subset, host))
    }

    /// `inbound|<port>||` (port: the workload's port, i.e. the service's target port).
    pub fn inbound_cluster(port: u32) -> String {
        format!("inbound|{port}||")
    }

    /// `outbound_.<port>_._.<host>`: the SNI of ISTIO_MUTUAL connections.
    pub fn outbound_sni(port: u32, host: &str) -> String {
        outbound_subset_sni(port, "", host)
    }

    /// `outbound_.<port>_.<subset>_.<host>`: the SNI of ISTIO_MUTUAL connections of a subset's
    /// cluster (Istio's `BuildDNSSrvSubsetKey`).
    pub fn outbound_subset_sni(port: u32, subset: &str, host: &str) -> String {
        format!("outbound_.{port}_.{subset}_.{host}")
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn subset_names_round_trip() {
            let name = outbound_subset_cluster(80, "v1", "reviews.bookinfo.svc.cluster.local");
            assert_eq!(name, "outbound|80|v1|reviews.bookinfo.svc.cluster.local");
            assert_eq!(
                parse_outbound_cluster(&name),
                Some((80, "v1", "reviews.bookinfo.svc.cluster.local"))
            );
            assert_eq!(
                parse_outbound_cluster(&outbound_cluster(9080, "a.b")),
                Some((9080, "", "a.b"))
            );
            assert_eq!(parse_outbound_cluster("inbound|80||"), None);
            assert_eq!(parse_outbound_cluster("outbound|x||a"), None);
            assert_eq!(parse_outbound_cluster("PassthroughCluster"), None);
            assert_eq!(
                outbound_subset_sni(80, "v1", "a.b"),
                "outbound_.80_.v1_.a.b"
            );
            assert_eq!(outbound_sni(80, "a.b"), "outbound_.80_._.a.b");
        }
    }
}
