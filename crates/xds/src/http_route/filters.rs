//! Per-route configuration of the HTTP filters every Istio HTTP connection manager carries before
//! the router: fault injection (`TranslateFault`) and CORS (`TranslateCORSPolicy`).

use super::matching::string_matcher;
use crate::util::duration;
use weft_model::networking::{CorsPolicy, HttpFaultInjection, Percent};
use weft_proto::envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent;
use weft_proto::envoy_types::pb::envoy::extensions::filters::common::fault::v3::{
    FaultDelay, fault_delay,
};
use weft_proto::envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy as EnvoyCors;
use weft_proto::envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
    FaultAbort, HttpFault, fault_abort,
};
use weft_proto::envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use weft_proto::envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent};
use weft_proto::envoy_types::pb::google::protobuf::BoolValue;

/// The fault filter's name (per-route configuration key).
pub(crate) const FAULT_FILTER: &str = "envoy.filters.http.fault";
/// The CORS filter's name (per-route configuration key).
pub(crate) const CORS_FILTER: &str = "envoy.filters.http.cors";

/// gRPC status names as Istio accepts them (`grpc.SupportedGRPCStatus`), by code.
const GRPC_STATUS: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// `translatePercentToFractionalPercent`: per million, truncated.
pub(crate) fn percent(p: &Percent) -> FractionalPercent {
    FractionalPercent {
        numerator: (p.value * 10000.0) as u32,
        denominator: fractional_percent::DenominatorType::Million as i32,
    }
}

/// `translateIntegerToFractionalPercent`: per hundred.
pub(crate) fn integer_percent(p: i64) -> FractionalPercent {
    FractionalPercent {
        numerator: p.clamp(0, i64::from(u32::MAX)) as u32,
        denominator: fractional_percent::DenominatorType::Hundred as i32,
    }
}

pub(crate) fn runtime_percent(p: FractionalPercent) -> RuntimeFractionalPercent {
    RuntimeFractionalPercent {
        default_value: Some(p),
        ..Default::default()
    }
}

/// Istio's `TranslateFault`: a fixed delay and an HTTP or gRPC abort, each with its percentage.
/// Exponential delays and HTTP/2 errors are not translated (Istio drops them too); `None` when
/// nothing is left.
pub(crate) fn fault(f: &HttpFaultInjection) -> Option<HttpFault> {
    let delay = f.delay.as_ref().and_then(|d| {
        let fixed = d.fixed_delay.as_ref()?;
        Some(FaultDelay {
            percentage: Some(match &d.percentage {
                Some(p) => percent(p),
                None => integer_percent(i64::from(d.percent)),
            }),
            fault_delay_secifier: Some(fault_delay::FaultDelaySecifier::FixedDelay(duration(
                fixed,
            ))),
        })
    });
    let abort = f.abort.as_ref().and_then(|a| {
        let error_type = if let Some(status) = a.http_status {
            fault_abort::ErrorType::HttpStatus(status.max(0) as u32)
        } else if let Some(name) = &a.grpc_status {
            // Validation admits only known names; Istio's lookup gives 0 (OK) otherwise.
            let code = GRPC_STATUS.iter().position(|s| s == name).unwrap_or(0);
            fault_abort::ErrorType::GrpcStatus(code as u32)
        } else {
            return None;
        };
        Some(FaultAbort {
            percentage: a.percentage.as_ref().map(percent),
            error_type: Some(error_type),
            ..Default::default()
        })
    });
    if delay.is_none() && abort.is_none() {
        return None;
    }
    Some(HttpFault {
        delay,
        abort,
        ..Default::default()
    })
}

fn exact(s: &str) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(string_matcher::MatchPattern::Exact(s.to_string())),
        ..Default::default()
    }
}

/// Istio's `TranslateCORSPolicy` (enabled for every request of the route; preflights that do
/// not match are forwarded unless `unmatchedPreflights: IGNORE`).
pub(crate) fn cors(c: &CorsPolicy) -> EnvoyCors {
    let allow_origin_string_match = if !c.allow_origins.is_empty() {
        c.allow_origins.iter().filter_map(string_matcher).collect()
    } else {
        c.allow_origin.iter().map(|o| exact(o)).collect()
    };
    EnvoyCors {
        allow_origin_string_match,
        allow_methods: c.allow_methods.join(","),
        allow_headers: c.allow_headers.join(","),
        expose_headers: c.expose_headers.join(","),
        max_age: c
            .max_age
            .as_ref()
            .map(|d| d.as_std().as_secs().to_string())
            .unwrap_or_default(),
        allow_credentials: c.allow_credentials.map(|value| BoolValue { value }),
        filter_enabled: Some(runtime_percent(integer_percent(100))),
        forward_not_matching_preflights: Some(BoolValue {
            value: c.unmatched_preflights != "IGNORE",
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_model::Duration;
    use weft_model::networking::{FaultAbort as Abort, FaultDelay as Delay};

    #[test]
    fn fault_translation_follows_istio() {
        let f = HttpFaultInjection {
            delay: Some(Delay {
                fixed_delay: Some(Duration::parse("2s").unwrap()),
                percentage: Some(Percent { value: 12.5 }),
                ..Default::default()
            }),
            abort: Some(Abort {
                grpc_status: Some("UNAVAILABLE".into()),
                ..Default::default()
            }),
        };
        let out = fault(&f).unwrap();
        let delay = out.delay.unwrap();
        assert_eq!(delay.percentage.unwrap().numerator, 125_000);
        let abort = out.abort.unwrap();
        assert_eq!(
            abort.error_type,
            Some(fault_abort::ErrorType::GrpcStatus(14))
        );
        assert_eq!(abort.percentage, None);
        // An exponential delay alone translates to nothing.
        let only_exp = HttpFaultInjection {
            delay: Some(Delay {
                exponential_delay: Some(Duration::parse("1s").unwrap()),
                percent: 50,
                ..Default::default()
            }),
            abort: None,
        };
        assert_eq!(fault(&only_exp), None);
        // The deprecated integer percent, per hundred.
        let legacy = HttpFaultInjection {
            delay: Some(Delay {
                fixed_delay: Some(Duration::parse("1s").unwrap()),
                percent: 30,
                ..Default::default()
            }),
            abort: None,
        };
        let p = fault(&legacy).unwrap().delay.unwrap().percentage.unwrap();
        assert_eq!((p.numerator, p.denominator), (30, 0));
    }

    #[test]
    fn cors_translation_follows_istio() {
        let c = CorsPolicy {
            allow_origin: vec!["https://old.example".into()],
            allow_methods: vec!["GET".into(), "POST".into()],
            max_age: Some(Duration::parse("24h").unwrap()),
            unmatched_preflights: "IGNORE".into(),
            ..Default::default()
        };
        let out = cors(&c);
        assert_eq!(
            out.allow_origin_string_match,
            vec![exact("https://old.example")]
        );
        assert_eq!(out.allow_methods, "GET,POST");
        assert_eq!(out.max_age, "86400");
        assert_eq!(
            out.forward_not_matching_preflights,
            Some(BoolValue { value: false })
        );
        assert_eq!(out.allow_credentials, None);
    }
}
