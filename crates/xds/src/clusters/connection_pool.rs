//! `connectionPool` → circuit breakers, connect timeout, TCP keepalive and HTTP protocol options
//! (Istio's `applyConnectionPool`, `applyH2Upgrade`, `applyTCPKeepalive`). Zero means unset:
//! Istio's thresholds stay at their effectively unlimited defaults.

use super::draft::Draft;
use crate::util::{duration, secs, u32_value};
use weft_model::networking::{ConnectionPoolSettings, RetryBudget, TcpKeepalive};
use weft_proto::envoy_types::pb::envoy::config::cluster::v3::{
    CircuitBreakers, UpstreamConnectionOptions, circuit_breakers,
};
use weft_proto::envoy_types::pb::envoy::config::core::v3::{
    HttpProtocolOptions as CommonHttpProtocolOptions, KeepaliveSettings,
    TcpKeepalive as EnvoyTcpKeepalive,
};
use weft_proto::envoy_types::pb::envoy::r#type::v3::Percent;

/// Istio's connect timeout (`MeshConfig.connectTimeout` default).
pub(crate) const CONNECT_TIMEOUT_SECS: i64 = 10;

/// Istio's defaults: effectively unlimited (Envoy's own 1024 would throttle a busy sidecar).
pub(crate) fn default_thresholds() -> circuit_breakers::Thresholds {
    let max = u32_value(u32::MAX);
    circuit_breakers::Thresholds {
        max_connections: max,
        max_pending_requests: max,
        max_requests: max,
        max_retries: max,
        track_remaining: true,
        ..Default::default()
    }
}

fn positive(v: i32) -> Option<u32> {
    u32::try_from(v).ok().filter(|v| *v > 0)
}

/// `retryBudget` → the thresholds' retry budget (20% and 3 concurrent retries by default).
fn retry_budget(b: &RetryBudget) -> circuit_breakers::thresholds::RetryBudget {
    circuit_breakers::thresholds::RetryBudget {
        budget_percent: Some(Percent {
            value: b.percent.unwrap_or(20.0),
        }),
        budget_interval: b.budget_interval.as_ref().map(duration),
        min_retry_concurrency: u32_value(if b.min_retry_concurrency > 0 {
            b.min_retry_concurrency
        } else {
            3
        }),
    }
}

/// Outbound only: HTTP/2 upstream when `h2UpgradePolicy: UPGRADE` (and not
/// `useClientProtocol`). `DEFAULT` follows the mesh's `h2UpgradePolicy`, DO_NOT_UPGRADE by
/// default, so it never upgrades. A cluster whose upstream protocol is already chosen (HTTP/2
/// ports, sniffed ports following the downstream) keeps it.
pub(crate) fn apply_h2_upgrade(draft: &mut Draft, pool: Option<&ConnectionPoolSettings>) {
    if let Some(http) = pool.and_then(|p| p.http.as_ref())
        && !http.use_client_protocol
        && http.h2_upgrade_policy == "UPGRADE"
    {
        draft.set_h2();
    }
}

fn keepalive(k: &TcpKeepalive) -> EnvoyTcpKeepalive {
    EnvoyTcpKeepalive {
        keepalive_probes: (k.probes > 0).then_some(k.probes).and_then(u32_value),
        keepalive_time: k
            .time
            .as_ref()
            .and_then(|t| u32_value(t.as_std().as_secs() as u32)),
        keepalive_interval: k
            .interval
            .as_ref()
            .and_then(|t| u32_value(t.as_std().as_secs() as u32)),
    }
}

/// Applies `pool` (unset: the defaults) and `budget` to the cluster.
pub(crate) fn apply(
    draft: &mut Draft,
    pool: Option<&ConnectionPoolSettings>,
    budget: Option<&RetryBudget>,
) {
    let mut threshold = default_thresholds();
    threshold.retry_budget = budget.map(retry_budget);
    draft.cluster.connect_timeout = secs(CONNECT_TIMEOUT_SECS);
    let http = pool.and_then(|p| p.http.as_ref());
    let tcp = pool.and_then(|p| p.tcp.as_ref());
    let mut idle_timeout = None;
    if let Some(h) = http {
        if let Some(v) = positive(h.http2_max_requests) {
            threshold.max_requests = u32_value(v);
        }
        if let Some(v) = positive(h.http1_max_pending_requests) {
            threshold.max_pending_requests = u32_value(v);
        }
        if let Some(v) = positive(h.max_retries) {
            threshold.max_retries = u32_value(v);
        }
        idle_timeout = h.idle_timeout.as_ref();
    }
    if let Some(t) = tcp {
        if let Some(d) = &t.connect_timeout {
            draft.cluster.connect_timeout = Some(duration(d));
        }
        if let Some(v) = positive(t.max_connections) {
            threshold.max_connections = u32_value(v);
        }
        idle_timeout = idle_timeout.or(t.idle_timeout.as_ref());
        if let Some(k) = &t.tcp_keepalive {
            draft.cluster.upstream_connection_options = Some(UpstreamConnectionOptions {
                tcp_keepalive: Some(keepalive(k)),
                ..Default::default()
            });
        }
    }
    draft.cluster.circuit_breakers = Some(CircuitBreakers {
        thresholds: vec![threshold],
        ..Default::default()
    });
    let max_duration = tcp.and_then(|t| t.max_connection_duration.as_ref());
    let per_connection = http.and_then(|h| positive(h.max_requests_per_connection));
    let streams = http.and_then(|h| positive(h.max_concurrent_streams));
    let h2_keepalive = http.and_then(|h| h.http2_keep_alive.as_ref());
    if max_duration.is_some()
        || idle_timeout.is_some()
        || per_connection.is_some()
        || streams.is_some()
        || h2_keepalive.is_some()
    {
        let common = draft
            .http()
            .common_http_protocol_options
            .get_or_insert_with(CommonHttpProtocolOptions::default);
        if let Some(d) = idle_timeout {
            common.idle_timeout = Some(duration(d));
        }
        if let Some(n) = per_connection {
            common.max_requests_per_connection = u32_value(n);
        }
        if let Some(d) = max_duration {
            common.max_connection_duration = Some(duration(d));
        }
        if let Some(h2) = draft.h2_options() {
            if let Some(n) = streams {
                h2.max_concurrent_streams = u32_value(n);
            }
            if let Some(k) = h2_keepalive {
                h2.connection_keepalive = Some(KeepaliveSettings {
                    interval: k.interval.as_ref().map(duration),
                    timeout: k.timeout.as_ref().map(duration),
                    ..Default::default()
                });
            }
        }
    }
    if http.is_some_and(|h| h.use_client_protocol) {
        draft.use_downstream_protocol();
    }
}
