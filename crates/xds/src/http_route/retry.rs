//! Retries (Istio's `retry.ConvertPolicy`) and route timeouts (`setTimeout`).

use crate::util::{duration, secs, u32_value};
use weft_model::networking::HttpRetry;
use weft_proto::envoy_types::pb::envoy::config::route::v3::{
    RetryPolicy, RouteAction, retry_policy,
};
use weft_proto::envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use weft_proto::envoy_types::pb::envoy::extensions::retry::priority::previous_priorities::v3::PreviousPrioritiesConfig;
use weft_proto::envoy_types::util::pack_any;

const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";

/// The status codes Go's `http.StatusText` names: what Istio reads as a status code in
/// `retryOn` (anything else is passed to Envoy as a retry condition).
fn is_known_status(code: i64) -> bool {
    matches!(
        code,
        100..=103
            | 200..=208
            | 226
            | 300..=305
            | 307
            | 308
            | 400..=418
            | 421..=426
            | 428
            | 429
            | 431
            | 451
            | 500..=508
            | 510
            | 511
    )
}

/// `parseRetryOn`: conditions joined back with `,`, numbers that are status codes apart.
fn parse_retry_on(retry_on: &str) -> (String, Vec<u32>) {
    let mut conditions = Vec::new();
    let mut codes = Vec::new();
    for part in retry_on.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<i64>() {
            Ok(code) if is_known_status(code) => codes.push(code as u32),
            _ => conditions.push(part),
        }
    }
    (conditions.join(","), codes)
}

fn previous_hosts() -> retry_policy::RetryHostPredicate {
    retry_policy::RetryHostPredicate {
        name: "envoy.retry_host_predicates.previous_hosts".into(),
        config_type: Some(retry_policy::retry_host_predicate::ConfigType::TypedConfig(
            pack_any(PreviousHostsPredicate::default()),
        )),
    }
}

fn previous_priorities() -> retry_policy::RetryPriority {
    retry_policy::RetryPriority {
        name: "envoy.retry_priorities.previous_priorities".into(),
        config_type: Some(retry_policy::retry_priority::ConfigType::TypedConfig(
            pack_any(PreviousPrioritiesConfig {
                update_frequency: 2,
            }),
        )),
    }
}

/// Istio's default outbound retry policy: 2 retries on connection failures, refused streams and
/// gRPC `unavailable`/`cancelled`, avoiding the hosts already tried (unless the route hashes
/// requests to one host).
pub(crate) fn default_policy(consistent_hash: bool) -> RetryPolicy {
    RetryPolicy {
        retry_on: DEFAULT_RETRY_ON.into(),
        num_retries: u32_value(2),
        host_selection_retry_max_attempts: 5,
        retry_host_predicate: if consistent_hash {
            Vec::new()
        } else {
            vec![previous_hosts()]
        },
        ..Default::default()
    }
}

/// Istio's `ConvertPolicy`: unset → the default policy; `attempts: 0` → no retries; else the
/// default overridden by what the VirtualService sets. Status codes in `retryOn` become
/// `retriable_status_codes` (with the `retriable-status-codes` condition added).
pub(crate) fn policy(retry: Option<&HttpRetry>, consistent_hash: bool) -> Option<RetryPolicy> {
    let Some(r) = retry else {
        return Some(default_policy(consistent_hash));
    };
    if r.attempts <= 0 {
        return None;
    }
    let mut out = default_policy(consistent_hash);
    out.num_retries = u32_value(r.attempts as u32);
    if !r.retry_on.is_empty() {
        let (conditions, codes) = parse_retry_on(&r.retry_on);
        out.retry_on = conditions;
        if !codes.is_empty() && !out.retry_on.contains("retriable-status-codes") {
            out.retry_on.push_str(",retriable-status-codes");
        }
        out.retriable_status_codes = codes;
    }
    if let Some(t) = &r.per_try_timeout {
        out.per_try_timeout = Some(duration(t));
    }
    if let Some(ignore) = r.retry_ignore_previous_hosts {
        out.retry_host_predicate = if ignore {
            vec![previous_hosts()]
        } else {
            Vec::new()
        };
    }
    if r.retry_remote_localities == Some(true) {
        out.retry_priority = Some(previous_priorities());
    }
    if let Some(b) = &r.backoff {
        out.retry_back_off = Some(retry_policy::RetryBackOff {
            base_interval: Some(duration(b)),
            ..Default::default()
        });
    }
    Some(out)
}

/// `setTimeout`: the VirtualService's timeout, else none (0); gRPC's `grpc-timeout` header is
/// honoured up to the same bound. Like istiod this uses `max_grpc_timeout`: with the newer
/// `max_stream_duration` set on a route, Envoy ignores the route's `timeout`.
#[allow(deprecated)]
pub(crate) fn set_timeout(action: &mut RouteAction, timeout: Option<&weft_model::Duration>) {
    let t = match timeout {
        Some(d) => Some(duration(d)),
        None => secs(0),
    };
    action.timeout = t;
    action.max_grpc_timeout = t;
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_model::Duration;

    #[test]
    fn retry_on_splits_status_codes_from_conditions() {
        assert_eq!(
            parse_retry_on("gateway-error, 503,,cancelled,999,foo"),
            ("gateway-error,cancelled,999,foo".to_string(), vec![503])
        );
        let r = HttpRetry {
            attempts: 3,
            retry_on: "5xx,429".into(),
            per_try_timeout: Some(Duration::parse("2s").unwrap()),
            retry_remote_localities: Some(true),
            retry_ignore_previous_hosts: Some(false),
            ..Default::default()
        };
        let p = policy(Some(&r), false).unwrap();
        assert_eq!(p.retry_on, "5xx,retriable-status-codes");
        assert_eq!(p.retriable_status_codes, vec![429]);
        assert_eq!(p.num_retries, u32_value(3));
        assert_eq!(p.per_try_timeout, secs(2));
        assert!(p.retry_host_predicate.is_empty());
        assert!(p.retry_priority.is_some());
        assert_eq!(p.host_selection_retry_max_attempts, 5);
    }

    #[test]
    fn defaults_and_disabling() {
        let d = policy(None, false).unwrap();
        assert_eq!(d.retry_on, DEFAULT_RETRY_ON);
        assert_eq!(d.retry_host_predicate.len(), 1);
        assert!(policy(None, true).unwrap().retry_host_predicate.is_empty());
        let off = HttpRetry::default();
        assert_eq!(policy(Some(&off), false), None);
        // gRPC conditions pass through; unset retryOn keeps the default conditions.
        let grpc = HttpRetry {
            attempts: 2,
            retry_on: "unavailable,resource-exhausted".into(),
            ..Default::default()
        };
        assert_eq!(
            policy(Some(&grpc), false).unwrap().retry_on,
            "unavailable,resource-exhausted"
        );
        let only_attempts = HttpRetry {
            attempts: 4,
            ..Default::default()
        };
        assert_eq!(
            policy(Some(&only_attempts), false).unwrap().retry_on,
            DEFAULT_RETRY_ON
        );
    }
}
