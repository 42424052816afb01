//! `HTTPMatchRequest` → Envoy `RouteMatch` (Istio's `TranslateRouteMatch`), and the matches
//! decided while generating (`sourceMatchHTTP`: port, source labels and namespace, gateways).

use super::RouteOptions;
use weft_model::networking::{HttpMatchRequest, StringMatch};
use weft_proto::envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, QueryParameterMatcher, Route, RouteMatch, header_matcher,
    query_parameter_matcher, route_match,
};
use weft_proto::envoy_types::pb::envoy::r#type::matcher::v3::{
    ListMatcher, MetadataMatcher, OrMatcher, RegexMatcher, StringMatcher, ValueMatcher,
    list_matcher, metadata_matcher, string_matcher, value_matcher,
};
use weft_proto::envoy_types::pb::google::protobuf::BoolValue;

const HEADER_METHOD: &str = ":method";
const HEADER_AUTHORITY: &str = ":authority";
const HEADER_SCHEME: &str = ":scheme";
/// Header names routing on JWT claims (`@request.auth.claims.a.b` or `@request.auth.claims[a][b]`).
const JWT_CLAIM_HEADER: &str = "@request.auth.claims";
const JWT_FILTER: &str = "envoy.filters.http.jwt_authn";
const JWT_PAYLOAD: &str = "payload";

/// Whether a route with match `m` exists for this proxy at all: the listener port, then the
/// gateways named by the match, else its source labels and namespace.
pub(super) fn applies(m: Option<&HttpMatchRequest>, opts: &RouteOptions<'_>) -> bool {
    let Some(m) = m else {
        return true;
    };
    if m.port != 0 && m.port != opts.listen_port {
        return false;
    }
    if !m.gateways.is_empty() {
        return m.gateways.iter().any(|g| opts.gateways.contains(g));
    }
    m.source_labels
        .iter()
        .all(|(k, v)| opts.proxy_labels.get(k) == Some(v))
        && (m.source_namespace.is_empty() || m.source_namespace == opts.proxy_namespace)
}

/// Envoy's `StringMatcher` for a `StringMatch` (`None` when it names no match type).
pub(crate) fn string_matcher(m: &StringMatch) -> Option<StringMatcher> {
    let pattern = if let Some(e) = &m.exact {
        string_matcher::MatchPattern::Exact(e.clone())
    } else if let Some(p) = &m.prefix {
        string_matcher::MatchPattern::Prefix(p.clone())
    } else if let Some(r) = &m.regex {
        string_matcher::MatchPattern::SafeRegex(regex(r))
    } else {
        return None;
    };
    Some(StringMatcher {
        match_pattern: Some(pattern),
        ..Default::default()
    })
}

pub(crate) fn regex(r: &str) -> RegexMatcher {
    RegexMatcher {
        regex: r.to_string(),
        ..Default::default()
    }
}

/// An empty match, or the regex `*` (not a regex: Istio reads it as "present").
fn is_presence(m: &StringMatch) -> bool {
    match (&m.exact, &m.prefix, &m.regex) {
        (None, None, None) => true,
        (None, None, Some(r)) => r == "*",
        _ => false,
    }
}

fn header_matcher(name: &str, m: &StringMatch) -> HeaderMatcher {
    let spec = if is_presence(m) {
        Some(header_matcher::HeaderMatchSpecifier::PresentMatch(true))
    } else {
        string_matcher(m).map(header_matcher::HeaderMatchSpecifier::StringMatch)
    };
    HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: spec,
        ..Default::default()
    }
}

fn query_matcher(name: &str, m: &StringMatch) -> QueryParameterMatcher {
    let spec = if is_presence(m) {
        Some(query_parameter_matcher::QueryParameterMatchSpecifier::PresentMatch(true))
    } else {
        string_matcher(m).map(query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch)
    };
    QueryParameterMatcher {
        name: name.to_string(),
        query_parameter_match_specifier: spec,
    }
}

/// The claim path of a JWT-claim header name (`jwt.ToRoutingClaim`), if it is one.
fn routing_claim(name: &str) -> Option<Vec<String>> {
    if !name.to_ascii_lowercase().starts_with(JWT_CLAIM_HEADER) {
        return None;
    }
    // The prefix is ASCII, so its length is a character boundary of `name`.
    let rest = &name[JWT_CLAIM_HEADER.len()..];
    if let Some(dotted) = rest.strip_prefix('.').filter(|r| !r.is_empty()) {
        return Some(dotted.split('.').map(str::to_string).collect());
    }
    if rest.len() > 2 && rest.starts_with('[') && rest.ends_with(']') {
        return Some(
            rest[1..rest.len() - 1]
                .split("][")
                .map(str::to_string)
                .collect(),
        );
    }
    None
}

/// A JWT claim match on the JWT filter's dynamic metadata (Istio's
/// `MetadataMatcherForJWTClaims`: the claim equals the value, or is a list holding it).
fn claim_matcher(claims: Vec<String>, m: &StringMatch) -> MetadataMatcher {
    let value = ValueMatcher {
        match_pattern: string_matcher(m).map(value_matcher::MatchPattern::StringMatch),
    };
    let list = ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::ListMatch(Box::new(
            ListMatcher {
                match_pattern: Some(list_matcher::MatchPattern::OneOf(Box::new(value.clone()))),
            },
        ))),
    };
    MetadataMatcher {
        filter: JWT_FILTER.into(),
        path: std::iter::once(JWT_PAYLOAD.to_string())
            .chain(claims)
            .map(|k| metadata_matcher::PathSegment {
                segment: Some(metadata_matcher::path_segment::Segment::Key(k)),
            })
            .collect(),
        value: Some(ValueMatcher {
            match_pattern: Some(value_matcher::MatchPattern::OrMatch(OrMatcher {
                value_matchers: vec![list, value],
            })),
        }),
        invert: false,
    }
}

/// Istio's `TranslateRouteMatch` (VirtualService semantics).
pub(super) fn route_match(m: Option<&HttpMatchRequest>) -> RouteMatch {
    let mut out = RouteMatch {
        path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
        ..Default::default()
    };
    let Some(m) = m else {
        return out;
    };
    for (name, sm) in &m.headers {
        match routing_claim(name) {
            Some(claims) => out.dynamic_metadata.push(claim_matcher(claims, sm)),
            None => out.headers.push(header_matcher(name, sm)),
        }
    }
    for (name, sm) in &m.without_headers {
        match routing_claim(name) {
            Some(claims) => {
                let mut mm = claim_matcher(claims, sm);
                mm.invert = true;
                out.dynamic_metadata.push(mm);
            }
            None => {
                let mut h = header_matcher(name, sm);
                h.invert_match = true;
                // `treat_missing_header_as_empty` cannot go with `present_match`.
                h.treat_missing_header_as_empty = !is_presence(sm);
                out.headers.push(h);
            }
        }
    }
    out.headers.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(uri) = &m.uri {
        if let Some(e) = &uri.exact {
            out.path_specifier = Some(route_match::PathSpecifier::Path(e.clone()));
        } else if let Some(p) = &uri.prefix {
            out.path_specifier = Some(route_match::PathSpecifier::Prefix(p.clone()));
        } else if let Some(r) = &uri.regex {
            out.path_specifier = Some(route_match::PathSpecifier::SafeRegex(regex(r)));
        }
    }
    out.case_sensitive = Some(BoolValue {
        value: !m.ignore_uri_case,
    });
    for (name, sm) in [
        (HEADER_METHOD, &m.method),
        (HEADER_AUTHORITY, &m.authority),
        (HEADER_SCHEME, &m.scheme),
    ] {
        if let Some(sm) = sm {
            out.headers.push(header_matcher(name, sm));
        }
    }
    for (name, sm) in &m.query_params {
        out.query_parameters.push(query_matcher(name, sm));
    }
    out
}

/// Istio's `IsCatchAllRoute`: matches every request (prefix `/` or regex `.*`, nothing else).
pub(crate) fn is_catch_all(r: &Route) -> bool {
    let Some(m) = &r.r#match else {
        return false;
    };
    let path = match &m.path_specifier {
        Some(route_match::PathSpecifier::Prefix(p)) => p == "/",
        Some(route_match::PathSpecifier::PathSeparatedPrefix(p)) => p == "/",
        Some(route_match::PathSpecifier::SafeRegex(r)) => r.regex == ".*",
        _ => false,
    };
    path && m.headers.is_empty() && m.query_parameters.is_empty() && m.dynamic_metadata.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_header_names() {
        assert_eq!(
            routing_claim("@request.auth.claims.group.id"),
            Some(vec!["group".to_string(), "id".to_string()])
        );
        assert_eq!(
            routing_claim("@request.auth.claims[a.b][c]"),
            Some(vec!["a.b".to_string(), "c".to_string()])
        );
        assert_eq!(routing_claim("@request.auth.claims"), None);
        assert_eq!(routing_claim("@request.auth.claims."), None);
        assert_eq!(routing_claim("x-user"), None);
    }
}
