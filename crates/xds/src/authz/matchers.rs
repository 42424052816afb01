//! Envoy matchers for AuthorizationPolicy values, with Istio's globbing: `*` alone means "present",
//! a leading `*` a suffix match, a trailing `*` a prefix match, anything else an exact match.

use weft_proto::envoy_types::pb::envoy::config::core::v3::CidrRange;
use weft_proto::envoy_types::pb::envoy::config::route::v3::{HeaderMatcher, header_matcher};
use weft_proto::envoy_types::pb::envoy::r#type::matcher::v3::{
    PathMatcher, RegexMatcher, StringMatcher, path_matcher, string_matcher,
};

pub fn exact(v: &str, ignore_case: bool) -> StringMatcher {
    string(string_matcher::MatchPattern::Exact(v.into()), ignore_case)
}

pub fn prefix(v: &str, ignore_case: bool) -> StringMatcher {
    string(string_matcher::MatchPattern::Prefix(v.into()), ignore_case)
}

pub fn suffix(v: &str, ignore_case: bool) -> StringMatcher {
    string(string_matcher::MatchPattern::Suffix(v.into()), ignore_case)
}

pub fn regex(re: &str) -> StringMatcher {
    string(
        string_matcher::MatchPattern::SafeRegex(RegexMatcher {
            regex: re.into(),
            ..Default::default()
        }),
        false,
    )
}

fn string(p: string_matcher::MatchPattern, ignore_case: bool) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(p),
        ignore_case,
    }
}

/// Quotes regex metacharacters (RE2 syntax, as Go's `regexp.QuoteMeta`).
pub fn quote_meta(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A glob value matched against `prefix` + value (principals are matched against
/// `spiffe://` + the value).
pub fn glob_with_prefix(v: &str, pre: &str) -> StringMatcher {
    if v == "*" {
        regex(".+")
    } else if let Some(rest) = v.strip_prefix('*') {
        if pre.is_empty() {
            suffix(rest, false)
        } else {
            regex(&format!("{pre}.*{}", quote_meta(rest)))
        }
    } else if let Some(rest) = v.strip_suffix('*') {
        prefix(&format!("{pre}{rest}"), false)
    } else {
        exact(&format!("{pre}{v}"), false)
    }
}

pub fn glob(v: &str) -> StringMatcher {
    glob_with_prefix(v, "")
}

fn header_with(name: &str, v: &str, ignore_case: bool) -> HeaderMatcher {
    let spec = if v == "*" {
        header_matcher::HeaderMatchSpecifier::PresentMatch(true)
    } else if let Some(rest) = v.strip_prefix('*') {
        header_matcher::HeaderMatchSpecifier::StringMatch(suffix(rest, ignore_case))
    } else if let Some(rest) = v.strip_suffix('*') {
        header_matcher::HeaderMatchSpecifier::StringMatch(prefix(rest, ignore_case))
    } else {
        header_matcher::HeaderMatchSpecifier::StringMatch(exact(v, ignore_case))
    };
    HeaderMatcher {
        name: name.into(),
        header_match_specifier: Some(spec),
        ..Default::default()
    }
}

/// A request header (or `:method`) against a glob value, case-sensitive.
pub fn header(name: &str, v: &str) -> HeaderMatcher {
    header_with(name, v, false)
}

/// `:authority` against a glob host, case-insensitive.
pub fn host(v: &str) -> HeaderMatcher {
    header_with(":authority", v, true)
}

/// The request path (without the query) against a glob value.
pub fn path(v: &str) -> PathMatcher {
    PathMatcher {
        rule: Some(path_matcher::Rule::Path(glob(v))),
    }
}

/// `10.0.0.1` (a /32 or /128) or `10.0.0.0/8`.
pub fn cidr(v: &str) -> Result<CidrRange, String> {
    let (ip, len) = match v.split_once('/') {
        Some((ip, len)) => (
            ip,
            Some(
                len.parse::<u32>()
                    .map_err(|_| format!("invalid CIDR {v:?}"))?,
            ),
        ),
        None => (v, None),
    };
    let addr: std::net::IpAddr = ip.parse().map_err(|_| format!("invalid IP {v:?}"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    if len > max {
        return Err(format!("invalid CIDR {v:?}"));
    }
    Ok(CidrRange {
        address_prefix: addr.to_string(),
        prefix_len: Some(weft_proto::envoy_types::pb::google::protobuf::UInt32Value { value: len }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(m: &StringMatcher) -> string_matcher::MatchPattern {
        m.match_pattern.clone().unwrap()
    }

    #[test]
    fn globs_follow_istio() {
        use string_matcher::MatchPattern as P;
        assert_eq!(pattern(&glob("/api/*")), P::Prefix("/api/".into()));
        assert_eq!(pattern(&glob("*.png")), P::Suffix(".png".into()));
        assert_eq!(pattern(&glob("/healthz")), P::Exact("/healthz".into()));
        assert!(matches!(pattern(&glob("*")), P::SafeRegex(r) if r.regex == ".+"));
        let p = "spiffe://";
        assert_eq!(
            pattern(&glob_with_prefix("cluster.local/ns/a/sa/b", p)),
            P::Exact("spiffe://cluster.local/ns/a/sa/b".into())
        );
        assert_eq!(
            pattern(&glob_with_prefix("cluster.local/ns/a/*", p)),
            P::Prefix("spiffe://cluster.local/ns/a/".into())
        );
        assert!(
            matches!(pattern(&glob_with_prefix("*/sa/b.c", p)), P::SafeRegex(r) if r.regex == "spiffe://.*/sa/b\\.c")
        );
        let h = host("*.example.com");
        assert!(matches!(
            h.header_match_specifier,
            Some(header_matcher::HeaderMatchSpecifier::StringMatch(ref m)) if m.ignore_case
        ));
        assert!(matches!(
            header(":method", "*").header_match_specifier,
            Some(header_matcher::HeaderMatchSpecifier::PresentMatch(true))
        ));
    }

    #[test]
    fn cidrs() {
        let c = cidr("10.1.0.0/16").unwrap();
        assert_eq!(
            (c.address_prefix.as_str(), c.prefix_len.unwrap().value),
            ("10.1.0.0", 16)
        );
        assert_eq!(cidr("10.1.2.3").unwrap().prefix_len.unwrap().value, 32);
        assert_eq!(cidr("fd00::1").unwrap().prefix_len.unwrap().value, 128);
        assert!(cidr("10.1.2.3/33").is_err());
        assert!(cidr("nope").is_err());
        assert_eq!(quote_meta("a.b*c"), "a\\.b\\*c");
    }
}
