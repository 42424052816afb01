//! CDS: outbound clusters per service port (the default one and one per DestinationRule
//! subset, each with its traffic policy), the passthrough/blackhole clusters, and the per-proxy
//! inbound clusters (with the DestinationRule's connection pool).
//!
//! A cluster is built as Istio's `ClusterBuilder` builds it: the base cluster and its upstream
//! protocol, then the traffic policy — connection pool ([`connection_pool`]), outlier detection
//! ([`outlier`]), load balancer ([`load_balancer`]), upstream TLS ([`upstream_tls`]) — on a
//! [`Draft`] whose HTTP protocol options are packed last.

mod connection_pool;
mod draft;
mod load_balancer;
mod outlier;
mod upstream_tls;

use crate::destination_rule::{Client, Policy, ProxySpecific, Rule, cluster_policy, tls_mode};
use crate::endpoints::{assignment, by_locality, subset_endpoints};
use crate::names::{
    BLACKHOLE_CLUSTER, INBOUND_PASSTHROUGH_BIND, INBOUND_PASSTHROUGH_CLUSTER, PASSTHROUGH_CLUSTER,
    inbound_cluster, outbound_subset_cluster, outbound_subset_sni,
};
use crate::registry::{InboundPort, Port, Protocol, Resolution, Service};
use crate::resource::NamedResource;
use crate::util::{ads_config_source, secs};
use connection_pool::{CONNECT_TIMEOUT_SECS, default_thresholds};
use draft::Draft;
use load_balancer::Locally;
use std::sync::Arc;
use upstream_tls::Upstream;
use weft_model::networking::{ConnectionPoolSettings, RetryBudget, Subset};
use weft_proto::envoy_types::pb::envoy::config::cluster::v3::{CircuitBreakers, Cluster, cluster};
use weft_proto::envoy_types::pb::envoy::config::core::v3::{
    BindConfig, SocketAddress, socket_address,
};
use weft_proto::envoy_types::pb::google::protobuf::Duration;
use weft_proto::envoy_types::util::pack_any;

/// Istio's "never" for ORIGINAL_DST cleanup on inbound clusters (the largest Envoy accepts).
const MAX_SECONDS: i64 = 9_223_372_035;

fn base(name: String, kind: cluster::DiscoveryType) -> Cluster {
    Cluster {
        name,
        connect_timeout: secs(CONNECT_TIMEOUT_SECS),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(kind as i32)),
        lb_policy: if kind == cluster::DiscoveryType::OriginalDst {
            cluster::LbPolicy::ClusterProvided as i32
        } else {
            // Istio's default load balancer.
            cluster::LbPolicy::LeastRequest as i32
        },
        circuit_breakers: Some(CircuitBreakers {
            thresholds: vec![default_thresholds()],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Istio's `setUpstreamProtocol` for a sidecar: HTTP/2 ports go HTTP/2; sniffed HTTP goes
/// upstream as it came (HTTP/1.1 or HTTP/2).
fn upstream_protocol(draft: &mut Draft, protocol: Protocol) {
    if protocol.is_http2() {
        draft.set_h2();
    } else if protocol.is_sniffed() {
        draft.use_downstream_protocol();
    }
}

/// The connection pool alone, as inbound clusters get it (and the passthrough clusters, with
/// no pool at all).
fn apply_pool(
    draft: &mut Draft,
    pool: Option<&ConnectionPoolSettings>,
    budget: Option<&RetryBudget>,
) {
    connection_pool::apply(draft, pool, budget);
}

/// Istio's `applyTrafficPolicy` for an outbound cluster.
fn apply_policy(draft: &mut Draft, policy: &Policy<'_>, up: &Upstream<'_>, local: &Locally<'_>) {
    connection_pool::apply_h2_upgrade(draft, policy.connection_pool);
    apply_pool(draft, policy.connection_pool, policy.retry_budget);
    if let Some(od) = policy.outlier_detection {
        outlier::apply(draft, od);
    }
    load_balancer::apply(draft, policy.load_balancer, local);
    upstream_tls::apply(draft, policy.tls, up);
    if draft.kind() == Some(cluster::DiscoveryType::OriginalDst) {
        draft.cluster.lb_policy = cluster::LbPolicy::ClusterProvided as i32;
    }
}

/// The outbound clusters of `svc`'s `port` under `rule`, as `client` gets them: the default
/// `outbound|<port>||<host>`, then `outbound|<port>|<subset>|<host>` per subset.
pub(crate) fn outbound(
    svc: &Service,
    port: &Port,
    rule: Option<&Rule>,
    client: &Client,
) -> Vec<Cluster> {
    let subsets = std::iter::once(None).chain(
        rule.into_iter()
            .flat_map(|r| r.spec.subsets.iter().map(Some)),
    );
    subsets
        .filter_map(|subset| outbound_one(svc, port, rule, subset, client))
        .collect()
}

/// One outbound cluster: EDS for registry endpoints, STRICT/LOGICAL_DNS for DNS
/// ServiceEntries (endpoints inline, a subset's filtered by its labels; a subset without any is
/// left out), ORIGINAL_DST for resolution NONE or a PASSTHROUGH load balancer. In-mesh services
/// get Istio's auto mTLS unless the policy sets `tls`.
fn outbound_one(
    svc: &Service,
    port: &Port,
    rule: Option<&Rule>,
    subset: Option<&Subset>,
    client: &Client,
) -> Option<Cluster> {
    let subset_name = subset.map_or("", |s| s.name.as_str());
    let name = outbound_subset_cluster(port.port, subset_name, &svc.hostname);
    let all = svc.endpoints(port.port);
    let mut kind = match svc.resolution {
        Resolution::ClientSideLb => cluster::DiscoveryType::Eds,
        Resolution::DnsRoundRobin if all.len() == 1 => cluster::DiscoveryType::LogicalDns,
        Resolution::Dns | Resolution::DnsRoundRobin => cluster::DiscoveryType::StrictDns,
        Resolution::Passthrough => cluster::DiscoveryType::OriginalDst,
    };
    let subset_passthrough = subset
        .and_then(|s| s.traffic_policy.as_ref())
        .and_then(|tp| tp.load_balancer.as_ref())
        .and_then(|lb| lb.simple.as_deref())
        == Some("PASSTHROUGH");
    if subset_passthrough {
        kind = cluster::DiscoveryType::OriginalDst;
    }
    let mut draft = Draft::new(base(name.clone(), kind));
    let dns = matches!(
        kind,
        cluster::DiscoveryType::StrictDns | cluster::DiscoveryType::LogicalDns
    );
    let groups = if dns {
        by_locality(subset_endpoints(all, rule, subset_name))
    } else {
        Vec::new()
    };
    if dns {
        if subset.is_some() && groups.is_empty() {
            return None;
        }
        let mtls = rule
            .and_then(|r| tls_mode(r, port.port, subset_name))
            .map(|m| m == "ISTIO_MUTUAL");
        draft.cluster.load_assignment = Some(assignment(&name, &groups, mtls));
        draft.cluster.dns_lookup_family = cluster::DnsLookupFamily::V4Only as i32;
    }
    upstream_protocol(&mut draft, port.protocol);
    let policy = rule
        .map(|r| cluster_policy(r, port.port, subset_name))
        .unwrap_or_default();
    let up = Upstream {
        svc,
        port: port.port,
        sni: outbound_subset_sni(port.port, subset_name, &svc.hostname),
    };
    let local = Locally {
        locality: &client.locality,
        labels: &client.labels,
        groups: &groups,
    };
    apply_policy(&mut draft, &policy, &up, &local);
    if draft.kind() == Some(cluster::DiscoveryType::Eds) {
        draft.cluster.eds_cluster_config = Some(cluster::EdsClusterConfig {
            eds_config: ads_config_source(),
            service_name: name,
        });
    }
    Some(draft.finish())
}

/// The proxy's clusters: the shared ones, with those of services built for it replaced.
pub(crate) fn for_proxy(
    shared: &[Arc<NamedResource>],
    specific: &ProxySpecific<'_>,
) -> Vec<Arc<NamedResource>> {
    let mut own = Vec::new();
    for (svc, rule) in &specific.services {
        for p in &svc.ports {
            for c in outbound(svc, p, *rule, &specific.client) {
                own.push(Arc::new(NamedResource::new(c.name.clone(), pack_any(c))));
            }
        }
    }
    specific.overlay(shared, own)
}

/// Unknown destinations, ALLOW_ANY: to wherever the client dialled.
pub(crate) fn passthrough() -> Cluster {
    let mut draft = Draft::new(base(
        PASSTHROUGH_CLUSTER.into(),
        cluster::DiscoveryType::OriginalDst,
    ));
    draft.use_downstream_protocol();
    draft.finish()
}

/// Unknown destinations, REGISTRY_ONLY: nowhere (no endpoints).
pub(crate) fn blackhole() -> Cluster {
    Cluster {
        name: BLACKHOLE_CLUSTER.into(),
        connect_timeout: secs(CONNECT_TIMEOUT_SECS),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        )),
        ..Default::default()
    }
}

fn bind_127_0_0_6() -> Option<BindConfig> {
    Some(BindConfig {
        source_address: Some(SocketAddress {
            address: INBOUND_PASSTHROUGH_BIND.into(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(0)),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Inbound traffic to ports the proxy does not declare: to the original destination, from
/// 127.0.0.6 (see [`inbound`]).
pub(crate) fn inbound_passthrough() -> Cluster {
    let mut draft = Draft::new(base(
        INBOUND_PASSTHROUGH_CLUSTER.into(),
        cluster::DiscoveryType::OriginalDst,
    ));
    draft.cluster.upstream_bind_config = bind_127_0_0_6();
    draft.use_downstream_protocol();
    draft.finish()
}

/// `inbound|<port>||` for one port the proxy serves.
///
/// ORIGINAL_DST bound to source 127.0.0.6, as istiod does today, rather than STATIC
/// 127.0.0.1:<port>: the connection goes to the address the client dialled (the workload's own
/// IP, restored by the `original_dst` listener filter after the `REDIRECT` to 15006), so an
/// application listening on 0.0.0.0 *or* only on its interface address is reached, and the
/// application sees the same destination it would without the mesh. Envoy runs as UID 1337,
/// whose loopback traffic to a non-127.0.0.1 address the capture rules would otherwise send back
/// to 15006 (`-o lo ! -d 127.0.0.1/32 ... --uid-owner 1337 -j ISTIO_IN_REDIRECT`); binding the
/// source to 127.0.0.6 hits the earlier `-o lo -s 127.0.0.6/32 -j RETURN`, so it is not
/// re-captured.
///
/// The connection pool of the DestinationRule the proxy uses for the port's service (its
/// settings for the service port) applies here too, so that the server side has the capacity
/// the clients are allowed (Istio's `buildInboundCluster`).
pub(crate) fn inbound(port: &InboundPort, rule: Option<&Rule>) -> Cluster {
    let mut draft = Draft::new(base(
        inbound_cluster(port.port),
        cluster::DiscoveryType::OriginalDst,
    ));
    draft.cluster.upstream_bind_config = bind_127_0_0_6();
    draft.cluster.cleanup_interval = Some(Duration {
        seconds: MAX_SECONDS,
        nanos: 0,
    });
    upstream_protocol(&mut draft, port.protocol);
    let policy = rule
        .map(|r| cluster_policy(r, port.service_port, ""))
        .unwrap_or_default();
    apply_pool(&mut draft, policy.connection_pool, policy.retry_budget);
    draft.finish()
}
