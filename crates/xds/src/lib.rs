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
//! clusters; route configurations are per proxy namespace (short host names).
//! SDS (`default`, `ROOTCA`) is served by the agent through the bootstrap's `sds-grpc` cluster.

mod authn;
mod clusters;
mod context;
mod endpoints;
mod listeners;
mod mesh;
mod proxy;
pub mod registry;
mod resource;
mod routes;
mod scope;
mod shared;
mod tls;
mod util;

pub use authn::{MtlsMode, MtlsPolicy};
pub use context::{Generation, PushContext};
pub use mesh::{MeshConfig, OutboundTrafficPolicy, OutboundTrafficPolicyMode};
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
        format!("outbound|{port}||{host}")
    }

    /// `inbound|<port>||` (port: the workload's port, i.e. the service's target port).
    pub fn inbound_cluster(port: u32) -> String {
        format!("inbound|{port}||")
    }

    /// `outbound_.<port>_._.<host>`: the SNI of ISTIO_MUTUAL connections.
    pub fn outbound_sni(port: u32, host: &str) -> String {
        format!("outbound_.{port}_._.{host}")
    }
}
