//! `loadBalancer` → Envoy's load-balancing policy (Istio's `applyLoadBalancer`): `simple`
//! (LEAST_REQUEST by default, LEAST_CONN being its old name; ROUND_ROBIN; RANDOM; PASSTHROUGH,
//! which makes the cluster ORIGINAL_DST), warmup (slow start), `consistentHash` (RING_HASH, or
//! MAGLEV; the hash key itself is on the routes) and the cluster side of locality load balancing.

use super::draft::Draft;
use crate::locality_lb;
use crate::registry::{Endpoint, Locality};
use crate::util::duration;
use std::collections::BTreeMap;
use weft_model::networking::{LoadBalancerSettings, WarmupConfiguration};
use weft_proto::envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use weft_proto::envoy_types::pb::envoy::config::core::v3::RuntimeDouble;
use weft_proto::envoy_types::pb::envoy::r#type::v3::Percent;
use weft_proto::envoy_types::pb::google::protobuf::UInt64Value;

use cluster::{DiscoveryType, LbPolicy};

/// Envoy's default ring size, which Istio sets explicitly.
const MIN_RING_SIZE: u64 = 1024;

/// Istio's `setWarmup`: aggression 1 (linear) and 10% minimum weight unless given; its runtime
/// key is a placeholder (the value is fixed).
fn slow_start(lb: &LoadBalancerSettings) -> Option<cluster::SlowStartConfig> {
    if let Some(w) = &lb.warmup {
        let WarmupConfiguration {
            duration: window,
            minimum_percent,
            aggression,
        } = w;
        return Some(cluster::SlowStartConfig {
            slow_start_window: window.as_ref().map(duration),
            aggression: Some(RuntimeDouble {
                default_value: aggression.unwrap_or(1.0),
                runtime_key: "(".into(),
            }),
            min_weight_percent: Some(Percent {
                value: minimum_percent.unwrap_or(10.0),
            }),
        });
    }
    lb.warmup_duration_secs
        .as_ref()
        .map(|d| cluster::SlowStartConfig {
            slow_start_window: Some(duration(d)),
            ..Default::default()
        })
}

fn least_request(c: &mut Cluster, lb: Option<&LoadBalancerSettings>) {
    c.lb_policy = LbPolicy::LeastRequest as i32;
    if let Some(s) = lb.and_then(slow_start) {
        c.lb_config = Some(cluster::LbConfig::LeastRequestLbConfig(
            cluster::LeastRequestLbConfig {
                slow_start_config: Some(s),
                ..Default::default()
            },
        ));
    }
}

fn round_robin(c: &mut Cluster, lb: &LoadBalancerSettings) {
    c.lb_policy = LbPolicy::RoundRobin as i32;
    if let Some(s) = slow_start(lb) {
        c.lb_config = Some(cluster::LbConfig::RoundRobinLbConfig(
            cluster::RoundRobinLbConfig {
                slow_start_config: Some(s),
            },
        ));
    }
}

/// Istio's `ApplyRingHashLoadBalancer`.
fn consistent_hash(c: &mut Cluster, lb: &LoadBalancerSettings) {
    let Some(ch) = &lb.consistent_hash else {
        return;
    };
    if let Some(m) = &ch.maglev {
        c.lb_policy = LbPolicy::Maglev as i32;
        if m.table_size != 0 {
            c.lb_config = Some(cluster::LbConfig::MaglevLbConfig(cluster::MaglevLbConfig {
                table_size: Some(UInt64Value {
                    value: m.table_size,
                }),
            }));
        }
    } else if let Some(r) = &ch.ring_hash {
        c.lb_policy = LbPolicy::RingHash as i32;
        if r.minimum_ring_size != 0 {
            c.lb_config = Some(ring_hash(r.minimum_ring_size));
        }
    } else {
        c.lb_policy = LbPolicy::RingHash as i32;
        let size = if ch.minimum_ring_size != 0 {
            ch.minimum_ring_size
        } else {
            MIN_RING_SIZE
        };
        c.lb_config = Some(ring_hash(size));
    }
}

fn ring_hash(size: u64) -> cluster::LbConfig {
    cluster::LbConfig::RingHashLbConfig(cluster::RingHashLbConfig {
        minimum_ring_size: Some(UInt64Value { value: size }),
        ..Default::default()
    })
}

/// The proxy a load assignment is computed for, and the registry endpoints of the cluster's
/// inline load assignment (DNS clusters), locality by locality.
pub(crate) struct Locally<'a> {
    pub locality: &'a Locality,
    pub labels: &'a BTreeMap<String, String>,
    pub groups: &'a [Vec<&'a Endpoint>],
}

/// Applies `lb` (unset: Istio's defaults). Runs after outlier detection, which decides whether
/// locality failover is on.
pub(crate) fn apply(draft: &mut Draft, lb: Option<&LoadBalancerSettings>, local: &Locally<'_>) {
    let failover = draft.cluster.outlier_detection.is_some();
    if let Some(setting) = locality_lb::effective(lb) {
        if locality_lb::locality_weighted(setting, failover) {
            draft
                .cluster
                .common_lb_config
                .get_or_insert_with(cluster::CommonLbConfig::default)
                .locality_config_specifier = Some(
                cluster::common_lb_config::LocalityConfigSpecifier::LocalityWeightedLbConfig(
                    cluster::common_lb_config::LocalityWeightedLbConfig {},
                ),
            );
        }
        if let Some(cla) = &mut draft.cluster.load_assignment {
            locality_lb::apply(
                cla,
                local.groups,
                local.locality,
                local.labels,
                setting,
                failover,
            );
        }
    }
    if draft.kind() == Some(DiscoveryType::OriginalDst) {
        draft.cluster.lb_policy = LbPolicy::ClusterProvided as i32;
        return;
    }
    let c = &mut draft.cluster;
    match lb.and_then(|lb| lb.simple.as_deref()) {
        Some("LEAST_CONN" | "LEAST_REQUEST") => least_request(c, lb),
        Some("RANDOM") => c.lb_policy = LbPolicy::Random as i32,
        Some("ROUND_ROBIN") => {
            if let Some(lb) = lb {
                round_robin(c, lb);
            }
        }
        Some("PASSTHROUGH") => {
            c.lb_policy = LbPolicy::ClusterProvided as i32;
            c.load_assignment = None;
            draft.set_kind(DiscoveryType::OriginalDst);
        }
        _ => least_request(c, lb),
    }
    if let Some(lb) = lb {
        consistent_hash(&mut draft.cluster, lb);
    }
}
