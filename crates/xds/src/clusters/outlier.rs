//! `outlierDetection` → Envoy's `outlier_detection`, exactly as Istio maps it
//! (`applyOutlierDetection`): success-rate ejection off, each configured consecutive-error
//! count enforced at 100% (0 disables it), and the panic threshold set to `minHealthPercent` (0
//! by default: Envoy keeps ejected hosts out even when few are left).

use super::draft::Draft;
use crate::util::{duration, u32_value};
use weft_model::networking::OutlierDetection;
use weft_proto::envoy_types::pb::envoy::config::cluster::v3::{
    OutlierDetection as EnvoyOutlierDetection, cluster,
};
use weft_proto::envoy_types::pb::envoy::config::common::matcher::v3::{
    HttpHeadersMatch, MatchPredicate, match_predicate,
};
use weft_proto::envoy_types::pb::envoy::config::route::v3::{HeaderMatcher, header_matcher};
use weft_proto::envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options;
use weft_proto::envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use weft_proto::envoy_types::pb::envoy::r#type::v3::Percent;

fn enforcing(count: u32) -> Option<weft_proto::envoy_types::pb::google::protobuf::UInt32Value> {
    u32_value(if count > 0 { 100 } else { 0 })
}

pub(crate) fn apply(draft: &mut Draft, od: &OutlierDetection) {
    let mut out = EnvoyOutlierDetection {
        enforcing_success_rate: u32_value(0),
        ..Default::default()
    };
    if let Some(n) = od.consecutive_5xx_errors {
        out.consecutive_5xx = u32_value(n);
        out.enforcing_consecutive_5xx = enforcing(n);
    }
    if let Some(n) = od.consecutive_gateway_errors {
        out.consecutive_gateway_failure = u32_value(n);
        out.enforcing_consecutive_gateway_failure = enforcing(n);
    }
    out.interval = od.interval.as_ref().map(duration);
    out.base_ejection_time = od.base_ejection_time.as_ref().map(duration);
    if let Ok(p) = u32::try_from(od.max_ejection_percent)
        && p > 0
    {
        out.max_ejection_percent = u32_value(p);
    }
    if od.split_external_local_origin_errors {
        out.split_external_local_origin_errors = true;
        if let Some(n) = od.consecutive_local_origin_failures.filter(|n| *n > 0) {
            out.consecutive_local_origin_failure = u32_value(n);
            out.enforcing_consecutive_local_origin_failure = u32_value(100);
        }
        out.enforcing_local_origin_success_rate = u32_value(0);
    }
    draft.cluster.outlier_detection = Some(out);
    if od.min_health_percent >= 0 {
        draft
            .cluster
            .common_lb_config
            .get_or_insert_with(cluster::CommonLbConfig::default)
            .healthy_panic_threshold = Some(Percent {
            value: f64::from(od.min_health_percent),
        });
    }
    if !od.outlier_detection_http_error_codes.is_empty() {
        error_codes(draft, &od.outlier_detection_http_error_codes);
    }
}

/// `outlierDetectionHttpErrorCodes`: only these statuses count as errors (instead of 5xx).
fn error_codes(draft: &mut Draft, codes: &[u32]) {
    let mut rules: Vec<MatchPredicate> = codes
        .iter()
        .map(|code| MatchPredicate {
            rule: Some(match_predicate::Rule::HttpResponseHeadersMatch(
                HttpHeadersMatch {
                    headers: vec![HeaderMatcher {
                        name: ":status".into(),
                        header_match_specifier: Some(
                            header_matcher::HeaderMatchSpecifier::StringMatch(StringMatcher {
                                match_pattern: Some(string_matcher::MatchPattern::Exact(
                                    code.to_string(),
                                )),
                                ..Default::default()
                            }),
                        ),
                        ..Default::default()
                    }],
                },
            )),
        })
        .collect();
    let predicate = if rules.len() == 1 {
        rules.remove(0)
    } else {
        MatchPredicate {
            rule: Some(match_predicate::Rule::OrMatch(match_predicate::MatchSet {
                rules,
            })),
        }
    };
    draft.http().outlier_detection = Some(http_protocol_options::OutlierDetection {
        error_matcher: Some(predicate),
    });
}
