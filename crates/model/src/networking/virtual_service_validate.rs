//! Istio's VirtualService validation (`ValidateVirtualService` and the HTTP/TLS/TCP route checks),
//! with Istio's wording, each error attached at the most specific field path.

use super::common::{self, at, idx, key, oneof};
use super::virtual_service::*;
use crate::validate::{self, Context, Report, Validate};
use std::collections::BTreeMap;

const MESH_GATEWAY: &str = "mesh";
const JWT_CLAIM_PREFIX: &str = "@request.auth.claims";
const PSEUDO_HEADERS: &[&str] = &[":method", ":scheme", ":authority", ":path", ":status"];
const CORS_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "*",
];
const GRPC_STATUSES: &[&str] = &[
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
const RETRY_ON_POLICIES: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "envoy-ratelimited",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];
/// Status codes Go's `http.StatusText` knows.
const HTTP_STATUS_CODES: &[i64] = &[
    100, 101, 102, 103, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304,
    305, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415,
    416, 417, 418, 421, 422, 423, 424, 425, 426, 428, 429, 431, 451, 500, 501, 502, 503, 504, 505,
    506, 507, 508, 510, 511,
];
const KB: usize = 1024;
const MB: usize = 1024 * KB;

/// Formats a float as Go's `%v` does (`101`, `150.5`, `1e-05`).
fn go_float(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-4..1e21).contains(&a) {
        let s = format!("{v:e}");
        match s.split_once('e') {
            Some((m, e)) => {
                let (sign, digits) = match e.strip_prefix('-') {
                    Some(d) => ("-", d),
                    None => ("+", e),
                };
                format!("{m}e{sign}{digits:0>2}")
            }
            None => s,
        }
    } else {
        format!("{v}")
    }
}

/// Go's `%v` of a string slice: `[a b]`.
fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

fn is_jwt_claim(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    if !lower.starts_with(JWT_CLAIM_PREFIX) {
        return false;
    }
    let rest = &name[JWT_CLAIM_PREFIX.len()..];
    (rest.starts_with('.') && rest.len() > 1)
        || (rest.starts_with('[') && rest.ends_with(']') && rest.len() > 2)
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn header_name_syntax(name: &str) -> Result<(), String> {
    if name.chars().all(is_tchar) {
        Ok(())
    } else {
        Err(format!("header name {name} is not a valid header name"))
    }
}

/// `ValidateHTTPHeaderNameOrJwtClaimRoute`.
fn header_name_or_jwt_claim(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    if is_jwt_claim(name) || PSEUDO_HEADERS.contains(&name) {
        return Ok(());
    }
    header_name_syntax(name)
}

/// `ValidateCORSHTTPHeaderName`.
fn cors_header_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    if name == "*" {
        return Ok(());
    }
    header_name_syntax(name)
}

fn is_internal_header(name: &str) -> bool {
    name.starts_with(':') || name.eq_ignore_ascii_case("host")
}

fn is_authority_header(name: &str) -> bool {
    name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host")
}

/// `ValidateHTTPHeaderWithAuthorityOperationName` (request add/set).
fn header_op_name_with_authority(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    if is_internal_header(name) && !is_authority_header(name) {
        return Err(format!(
            "invalid header {name:?}: header cannot have \":\" prefix"
        ));
    }
    Ok(())
}

/// `ValidateHTTPHeaderOperationName` (request remove, all response operations).
fn header_op_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    if name.eq_ignore_ascii_case("host") {
        return Err(format!("invalid header {name:?}: cannot set Host header"));
    }
    if is_internal_header(name) {
        return Err(format!(
            "invalid header {name:?}: header cannot have \":\" prefix"
        ));
    }
    Ok(())
}

/// Envoy's header-value formatter syntax (`%VAR%`, `%VAR(args)%`, `%%`), as Istio ports it.
fn header_value_format(v: &str) -> Result<(), String> {
    #[derive(PartialEq)]
    enum S {
        Literal,
        VarName,
        ExpectArray,
        ExpectString,
        InString,
        ExpectDelimOrEnd,
        ExpectArgsEnd,
        ExpectVarEnd,
    }
    let b = v.as_bytes();
    let mut state = S::Literal;
    let mut pos = 0;
    while pos < b.len() {
        let ch = b[pos];
        let has_next = pos + 1 < b.len();
        match state {
            S::Literal => {
                if ch == b'%' {
                    if !has_next {
                        return Err("invalid header configuration. Un-escaped %".into());
                    }
                    if b[pos + 1] == b'%' {
                        pos += 1;
                    } else {
                        state = S::VarName;
                    }
                }
            }
            S::VarName => {
                if ch == b'%' {
                    state = S::Literal;
                } else if ch == b'(' {
                    state = S::ExpectArray;
                }
            }
            S::ExpectArray => {
                if ch == b'[' {
                    state = S::ExpectString;
                } else if ch != b' ' {
                    state = S::InString;
                }
            }
            S::ExpectDelimOrEnd => {
                if ch == b',' {
                    state = S::ExpectString;
                } else if ch == b']' {
                    state = S::ExpectArgsEnd;
                } else if ch != b' ' {
                    return Err(
                        "invalid header configuration. Expecting ',', ']', or whitespace".into(),
                    );
                }
            }
            S::ExpectString => {
                if ch == b'"' {
                    state = S::InString;
                } else if ch != b' ' {
                    return Err("invalid header configuration. Expecting '\"'".into());
                }
            }
            S::InString => {
                if ch == b'\\' {
                    if !has_next {
                        return Err(
                            "invalid header configuration. Un-terminated backslash in JSON string"
                                .into(),
                        );
                    }
                    pos += 1;
                } else if ch == b')' {
                    state = S::ExpectVarEnd;
                } else if ch == b'"' {
                    state = S::ExpectDelimOrEnd;
                }
            }
            S::ExpectArgsEnd => {
                if ch == b')' {
                    state = S::ExpectVarEnd;
                } else if ch != b' ' {
                    return Err("invalid header configuration. Expecting ')' or whitespace after '{}', but found '{}'".into());
                }
            }
            S::ExpectVarEnd => {
                if ch == b'%' {
                    state = S::Literal;
                } else if ch != b' ' {
                    return Err(
                        "invalid header configuration. Expecting '%' or whitespace after".into(),
                    );
                }
            }
        }
        pos += 1;
    }
    if state != S::Literal {
        return Err(format!(
            "invalid header configuration. Un-terminated variable expression '{v}'"
        ));
    }
    Ok(())
}

/// `ValidateHTTPHeaderValue`.
fn header_value(v: &str) -> Result<(), String> {
    let bad = |c: char| matches!(c, '\u{0}'..='\u{8}' | '\u{a}'..='\u{1f}' | '\u{7f}');
    if v.chars().any(bad) {
        return Err(format!("header value configuration {v} is invalid"));
    }
    header_value_format(v).map_err(|e| format!("header value configuration: {e}"))
}

/// Header manipulation checks for `headers` found at `path`.
fn headers_ops(h: Option<&Headers>, path: &str, report: &mut Report) {
    let Some(h) = h else {
        return;
    };
    if let Some(req) = &h.request {
        let rp = at(path, "request");
        for (field, map) in [("add", &req.add), ("set", &req.set)] {
            for (name, val) in map {
                let p = key(&at(&rp, field), name);
                report.check(p.clone(), header_op_name_with_authority(name));
                report.check(p, header_value(val));
            }
        }
        for (i, name) in req.remove.iter().enumerate() {
            report.check(idx(&at(&rp, "remove"), i), header_op_name(name));
        }
    }
    if let Some(resp) = &h.response {
        let rp = at(path, "response");
        for (field, map) in [("add", &resp.add), ("set", &resp.set)] {
            for (name, val) in map {
                let p = key(&at(&rp, field), name);
                report.check(p.clone(), header_op_name(name));
                report.check(p, header_value(val));
            }
        }
        for (i, name) in resp.remove.iter().enumerate() {
            report.check(idx(&at(&rp, "remove"), i), header_op_name(name));
        }
    }
}

/// `validateStringRegexp`.
fn string_regexp(re: &str, where_: &str) -> Result<(), String> {
    if re.len() > 1024 {
        return Err(format!(
            "{where_:?}: regex is too large, max length allowed is 1024"
        ));
    }
    common::compile_regex(re).map_err(|e| {
        format!(
            "{where_:?}: {e}; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)"
        )
    })
}

fn string_match_oneof(sm: &StringMatch, path: &str, report: &mut Report) {
    oneof(
        path,
        &[
            ("exact", sm.exact.is_some()),
            ("prefix", sm.prefix.is_some()),
            ("regex", sm.regex.is_some()),
        ],
        report,
    );
}

/// `validateStringMatchRegexp`: only the regex form is checked.
fn string_match_regexp(sm: &StringMatch, where_: &str, path: &str, report: &mut Report) {
    if let Some(re) = &sm.regex {
        let p = at(path, "regex");
        if re.is_empty() {
            report.error(
                p,
                format!("{where_:?}: regex string match should not be empty"),
            );
        } else {
            report.check(p, string_regexp(re, where_));
        }
    }
}

/// `validateStringMatch`: non-empty prefix, valid regex.
fn string_match(sm: &StringMatch, where_: &str, path: &str, report: &mut Report) {
    string_match_oneof(sm, path, report);
    if sm.prefix.as_deref() == Some("") {
        report.error(
            at(path, "prefix"),
            format!("{where_:?}: prefix string match should not be empty"),
        );
    }
    string_match_regexp(sm, where_, path, report);
}

/// `ValidateWildcardDomainForVirtualServiceBoundToGateway`.
fn wildcard_domain_for_gateway(sni: bool, domain: &str) -> Result<(), String> {
    if domain.len() > 255 {
        return Err(format!("domain name {domain:?} too long (max 255)"));
    }
    if domain.is_empty() {
        return Err("empty domain name not allowed".into());
    }
    if sni && domain.starts_with("outbound_") {
        let format = "outbound_.<PORT>_._.<HOSTNAME>";
        let parts: Vec<&str> = domain.split('_').collect();
        if parts.len() < 4 {
            return Err(format!(
                "domain name {domain} invalid, should follow '{format}' format"
            ));
        }
        let port = parts[1].trim_matches('.');
        let hostname = parts[3].trim_matches('.');
        if parts[0] != "outbound" {
            return Err(format!(
                "domain name {domain:?} invalid (label {:?} invalid)",
                parts[0]
            ));
        }
        if !port.bytes().any(|c| c.is_ascii_digit()) {
            return Err(format!(
                "domain name {domain:?} invalid (label {port:?} invalid). should follow {format} format"
            ));
        }
        if !hostname.bytes().any(|c| c.is_ascii_alphabetic()) {
            return Err(format!(
                "domain name {domain:?} invalid (label {hostname:?} invalid). should follow {format} format"
            ));
        }
        return Ok(());
    }
    validate::common::wildcard_domain(domain)
}

/// `validateGatewayNames`. Like Istio, a name without a namespace ends the checks.
fn gateway_names(names: &[String], path: &str, report: &mut Report) {
    for (i, name) in names.iter().enumerate() {
        let p = idx(path, i);
        let Some((ns, gw)) = name.split_once('/') else {
            if name.contains('.') {
                let parts: Vec<&str> = name.split('.').collect();
                report.warning(
                    p.clone(),
                    format!(
                        "using legacy gatewayName format {name:?}; prefer the <namespace>/<name> format: {:?}",
                        format!("{}/{}", parts[1], parts[0])
                    ),
                );
            }
            report.check(p, validate::common::fqdn(name));
            return;
        };
        if ns.is_empty() || gw.is_empty() {
            report.error(
                p.clone(),
                "config namespace and gateway name cannot be empty",
            );
        }
        if !validate::common::is_dns1123_label(ns) {
            report.error(p.clone(), format!("invalid value for namespace: {ns:?}"));
        }
        if !validate::common::is_dns1123_label(gw) {
            report.error(p, format!("invalid value for gateway name: {gw:?}"));
        }
    }
}

fn weight(w: i32) -> Result<(), String> {
    if w < 0 {
        Err(format!("weight {w} < 0"))
    } else {
        Ok(())
    }
}

/// `validateHTTPStatus`.
fn http_status(status: i64) -> Result<(), String> {
    if !(200..=600).contains(&status) {
        Err(format!("HTTP status {status} is not in range 200-599"))
    } else {
        Ok(())
    }
}

/// `validatePercentage`.
fn percentage(p: Option<&Percent>, path: &str, report: &mut Report) {
    if let Some(p) = p {
        let v = p.value;
        if !(0.0..=100.0).contains(&v) || (v > 0.0 && v < 0.0001) {
            report.error(
                at(path, "value"),
                format!(
                    "percentage {} is neither 0.0, nor in range [0.0001, 100.0]",
                    go_float(v)
                ),
            );
        }
    }
}

impl Validate for VirtualService {
    /// Istio's `ValidateVirtualService`.
    fn validate(&self, ctx: &Context<'_>, report: &mut Report) {
        let delegate = self.hosts.is_empty();
        if delegate {
            if !self.gateways.is_empty() {
                report.error(
                    "spec.gateways",
                    "delegate virtual service must have no gateways specified",
                );
            }
            if !self.tls.is_empty() {
                report.error(
                    "spec.tls",
                    "delegate virtual service must have no tls route specified",
                );
            }
            if !self.tcp.is_empty() {
                report.error(
                    "spec.tcp",
                    "delegate virtual service must have no tcp route specified",
                );
            }
        }
        let is_gateway = !self.gateways.iter().any(|g| g == MESH_GATEWAY);
        let (applies_to_gateway, applies_to_mesh) = if self.gateways.is_empty() {
            (false, true)
        } else {
            gateway_names(&self.gateways, "spec.gateways", report);
            (is_gateway, !is_gateway)
        };
        if !applies_to_gateway {
            for (i, h) in self.http.iter().enumerate() {
                for (j, m) in h.match_.iter().enumerate() {
                    let mp = idx(&at(&idx("spec.http", i), "match"), j);
                    for (field, map) in [
                        ("headers", &m.headers),
                        ("withoutHeaders", &m.without_headers),
                    ] {
                        for name in map.keys().filter(|k| is_jwt_claim(k)) {
                            report.error(
                                key(&at(&mp, field), name),
                                format!(
                                    "JWT claim based routing (key: {name}) is only supported for gateway, found no gateways: {}",
                                    go_list(&self.gateways)
                                ),
                            );
                        }
                    }
                }
            }
        }
        let sni = self
            .tls
            .iter()
            .any(|t| t.match_.iter().any(|m| !m.sni_hosts.is_empty()));
        let mut all_hosts_valid = true;
        for (i, h) in self.hosts.iter().enumerate() {
            let p = idx("spec.hosts", i);
            let res = if applies_to_gateway {
                wildcard_domain_for_gateway(sni, h)
            } else {
                validate::common::wildcard_domain(h)
            };
            match res {
                Err(e) => {
                    if !common::is_ip(h) {
                        report.error(p, e);
                        all_hosts_valid = false;
                    }
                }
                Ok(()) if applies_to_mesh && h == "*" => {
                    report.error(
                        p,
                        "wildcard host * is not allowed for virtual services bound to the mesh gateway",
                    );
                    all_hosts_valid = false;
                }
                Ok(()) => {}
            }
        }
        if all_hosts_valid {
            for i in 0..self.hosts.len() {
                for j in i + 1..self.hosts.len() {
                    let (a, b) = (&self.hosts[i], &self.hosts[j]);
                    if common::host_matches(a, b) {
                        report.error(
                            idx("spec.hosts", j),
                            format!("duplicate hosts in virtual service: {a} & {b}"),
                        );
                    }
                }
            }
        }
        if self.http.is_empty() && self.tcp.is_empty() && self.tls.is_empty() {
            report.error(
                "spec",
                "http, tcp or tls must be provided in virtual service",
            );
        }
        for (i, h) in self.http.iter().enumerate() {
            http_route(h, delegate, &idx("spec.http", i), report);
        }
        for (i, t) in self.tls.iter().enumerate() {
            self.tls_route(t, is_gateway, &idx("spec.tls", i), report);
        }
        for (i, t) in self.tcp.iter().enumerate() {
            tcp_route(t, &idx("spec.tcp", i), report);
        }
        common::export_to(
            ctx.namespace,
            &self.export_to,
            false,
            false,
            "spec.exportTo",
            report,
        );
        super::virtual_service_unreachable::analyze(self, report);
    }
}

/// `validateHTTPRoute`.
fn http_route(h: &HttpRoute, delegate: bool, path: &str, report: &mut Report) {
    route_conflicts(h, delegate, path, report);
    let mp = at(path, "match");
    for (j, m) in h.match_.iter().enumerate() {
        match_request(m, &idx(&mp, j), report);
    }
    headers_ops(h.headers.as_ref(), &at(path, "headers"), report);
    if let Some(c) = &h.cors_policy {
        cors_policy(c, &at(path, "corsPolicy"), report);
    }
    if let Some(f) = &h.fault {
        fault(f, &at(path, "fault"), report);
    }
    if let Some(v) = h.mirror_percent {
        if v > 100 {
            report.error(
                at(path, "mirrorPercent"),
                format!("mirror_percent must have a max value of 100 (it has {v})"),
            );
        }
        report.warning(
            at(path, "mirrorPercent"),
            "using deprecated setting \"mirrorPercent\", use \"mirrorPercentage\" instead",
        );
    }
    if let Some(p) = &h.mirror_percentage {
        let v = p.value;
        if v > 100.0 {
            report.error(
                at(path, "mirrorPercentage"),
                format!("mirror_percentage must have a max value of 100 (it has {v:.6})"),
            );
        }
        if v < 0.0 {
            report.error(
                at(path, "mirrorPercentage"),
                format!("mirror_percentage must have a min value of 0 (it has {v:.6})"),
            );
        }
    }
    common::destination(h.mirror.as_ref(), &at(path, "mirror"), report);
    let mp = at(path, "mirrors");
    for (i, m) in h.mirrors.iter().enumerate() {
        let p = idx(&mp, i);
        match &m.destination {
            None => report.error(at(&p, "destination"), "destination is required for mirrors"),
            Some(d) => {
                common::destination(Some(d), &at(&p, "destination"), report);
                if let Some(pc) = &m.percentage {
                    if pc.value > 100.0 {
                        report.error(
                            at(&p, "percentage"),
                            format!(
                                "mirror percentage must have a max value of 100 (it has {:.6})",
                                pc.value
                            ),
                        );
                    }
                    if pc.value < 0.0 {
                        report.error(
                            at(&p, "percentage"),
                            format!(
                                "mirror percentage must have a min value of 0 (it has {:.6})",
                                pc.value
                            ),
                        );
                    }
                }
            }
        }
    }
    if let Some(r) = &h.redirect {
        redirect(r, &h.match_, &at(path, "redirect"), report);
    }
    if let Some(d) = &h.direct_response {
        direct_response(d, &at(path, "directResponse"), report);
    }
    if let Some(r) = &h.retries {
        retries(r, &at(path, "retries"), report);
    }
    if let Some(r) = &h.rewrite {
        let rp = at(path, "rewrite");
        if let Err((field, e)) = rewrite(r) {
            let p = if field.is_empty() { rp } else { at(&rp, field) };
            report.error(p, e);
        }
    }
    authority_rewrite(h, path, report);
    http_route_destinations(&h.route, &at(path, "route"), report);
    if let Some(t) = &h.timeout {
        report.check(at(path, "timeout"), validate::common::duration(t));
    }
}

/// `validateHTTPRouteConflict`.
fn route_conflicts(h: &HttpRoute, delegate: bool, path: &str, report: &mut Report) {
    if !delegate && h.delegate.is_some() {
        // Root route: only `delegate` may say where traffic goes.
        if h.redirect.is_some() {
            report.error(
                at(path, "redirect"),
                format!("root HTTP route {} must not specify redirect", h.name),
            );
        }
        if !h.route.is_empty() {
            report.error(
                at(path, "route"),
                format!("root HTTP route {} must not specify route", h.name),
            );
        }
        return;
    }
    if delegate && h.delegate.is_some() {
        report.error(
            at(path, "delegate"),
            "delegate HTTP route cannot contain delegate",
        );
    }
    if h.redirect.is_some() {
        if !h.route.is_empty() {
            report.error(path, "HTTP route cannot contain both route and redirect");
        }
        if h.fault.is_some() {
            report.error(path, "HTTP route cannot contain both fault and redirect");
        }
        if h.rewrite.is_some() {
            report.error(
                path,
                "HTTP route rule cannot contain both rewrite and redirect",
            );
        }
        if h.direct_response.is_some() {
            report.error(
                path,
                "HTTP route rule cannot contain both direct_response and redirect",
            );
        }
    } else if h.direct_response.is_some() {
        if !h.route.is_empty() {
            report.error(
                path,
                "HTTP route cannot contain both route and direct_response",
            );
        }
        if h.fault.is_some() {
            report.error(
                path,
                "HTTP route cannot contain both fault and direct_response",
            );
        }
        if h.rewrite.is_some() {
            report.error(
                path,
                "HTTP route rule cannot contain both rewrite and direct_response",
            );
        }
    } else if h.route.is_empty() {
        report.error(path, "HTTP route, redirect or direct_response is required");
    }
    if h.mirror.is_some() && !h.mirrors.is_empty() {
        report.error(path, "HTTP route cannot contain both mirror and mirrors");
    }
}

/// `validateHTTPRouteMatchRequest`, for one match at `path`.
fn match_request(m: &HttpMatchRequest, path: &str, report: &mut Report) {
    for (name, sm) in &m.headers {
        let p = key(&at(path, "headers"), name);
        report.check(p.clone(), header_name_or_jwt_claim(name));
        string_match(sm, "headers", &p, report);
    }
    for (name, sm) in &m.without_headers {
        let p = key(&at(path, "withoutHeaders"), name);
        report.check(p.clone(), header_name_or_jwt_claim(name));
        // `regex: "*"` is not RE2: it means "header present".
        if sm.regex.as_deref() != Some("*") {
            string_match(sm, "withoutHeaders", &p, report);
        }
    }
    if let Some(uri) = &m.uri {
        // Unlike the others, uri allows an empty prefix.
        let p = at(path, "uri");
        string_match_oneof(uri, &p, report);
        string_match_regexp(uri, "uri", &p, report);
    }
    for (field, sm) in [
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ] {
        if let Some(sm) = sm {
            string_match(sm, field, &at(path, field), report);
        }
    }
    for (name, sm) in &m.query_params {
        string_match(
            sm,
            "queryParams",
            &key(&at(path, "queryParams"), name),
            report,
        );
    }
    if m.port != 0 {
        report.check(at(path, "port"), validate::common::port(m.port.into()));
    }
    validate::common::labels(&m.source_labels, &at(path, "sourceLabels"), report);
    gateway_names(&m.gateways, &at(path, "gateways"), report);
    if !m.source_namespace.is_empty() && !validate::common::is_dns1123_label(&m.source_namespace) {
        report.error(
            at(path, "sourceNamespace"),
            format!("sourceNamespace match {} is invalid", m.source_namespace),
        );
    }
}

/// `validateCORSPolicy`.
fn cors_policy(c: &CorsPolicy, path: &str, report: &mut Report) {
    let op = at(path, "allowOrigins");
    for (i, o) in c.allow_origins.iter().enumerate() {
        let p = idx(&op, i);
        string_match_oneof(o, &p, report);
        let value = o
            .exact
            .as_deref()
            .or(o.prefix.as_deref())
            .or(o.regex.as_deref())
            .unwrap_or_default();
        if value.is_empty() {
            report.error(
                p,
                format!("'{value}' is not a valid match type for CORS allow origins"),
            );
        } else {
            string_match_regexp(o, "corsPolicy.allowOrigins", &p, report);
        }
    }
    for (i, m) in c.allow_methods.iter().enumerate() {
        if !CORS_METHODS.contains(&m.as_str()) {
            report.error(
                idx(&at(path, "allowMethods"), i),
                format!("{m:?} is not a supported HTTP method"),
            );
        }
    }
    for (field, list) in [
        ("allowHeaders", &c.allow_headers),
        ("exposeHeaders", &c.expose_headers),
    ] {
        for (i, h) in list.iter().enumerate() {
            report.check(idx(&at(path, field), i), cors_header_name(h));
        }
    }
    if let Some(d) = &c.max_age {
        let p = at(path, "maxAge");
        report.check(p.clone(), validate::common::duration(d));
        if d.as_std().subsec_nanos() > 0 {
            report.error(p, "max_age duration is accurate only to seconds precision");
        }
    }
    if !c.unmatched_preflights.is_empty() {
        report.check(
            at(path, "unmatchedPreflights"),
            validate::common::one_of(
                &c.unmatched_preflights,
                &["UNSPECIFIED", "FORWARD", "IGNORE"],
            ),
        );
    }
}

/// `validateHTTPFaultInjection`.
fn fault(f: &HttpFaultInjection, path: &str, report: &mut Report) {
    if f.abort.is_none() && f.delay.is_none() {
        report.error(
            path,
            "HTTP fault injection must have an abort and/or a delay",
        );
    }
    if let Some(a) = &f.abort {
        let ap = at(path, "abort");
        percentage(a.percentage.as_ref(), &at(&ap, "percentage"), report);
        oneof(
            &ap,
            &[
                ("httpStatus", a.http_status.is_some()),
                ("grpcStatus", a.grpc_status.is_some()),
                ("http2Error", a.http2_error.is_some()),
            ],
            report,
        );
        if let Some(s) = &a.grpc_status
            && !GRPC_STATUSES.contains(&s.as_str())
        {
            report.error(
                at(&ap, "grpcStatus"),
                format!(
                    "gRPC status {s:?} is not supported. See https://github.com/grpc/grpc/blob/master/doc/statuscodes.md for a list of supported codes, for example 'NOT_FOUND'"
                ),
            );
        }
        if a.http2_error.is_some() {
            report.error(
                at(&ap, "http2Error"),
                "HTTP/2 abort fault injection not supported yet",
            );
        }
        if let Some(s) = a.http_status {
            report.check(at(&ap, "httpStatus"), http_status(s.into()));
        }
        if a.http_status.is_none() && a.grpc_status.is_none() && a.http2_error.is_none() {
            report.warning(ap, "abort configured, but error type not set");
        }
    }
    if let Some(d) = &f.delay {
        let dp = at(path, "delay");
        percentage(d.percentage.as_ref(), &at(&dp, "percentage"), report);
        oneof(
            &dp,
            &[
                ("fixedDelay", d.fixed_delay.is_some()),
                ("exponentialDelay", d.exponential_delay.is_some()),
            ],
            report,
        );
        if let Some(fd) = &d.fixed_delay {
            report.check(at(&dp, "fixedDelay"), validate::common::duration(fd));
        }
        if let Some(ed) = &d.exponential_delay {
            let p = at(&dp, "exponentialDelay");
            report.check(p.clone(), validate::common::duration(ed));
            report.error(p, "exponentialDelay not supported yet");
        }
    }
}

/// `validateHTTPRedirect`: like Istio, only the first problem is reported.
fn redirect(r: &HttpRedirect, matches: &[HttpMatchRequest], path: &str, report: &mut Report) {
    oneof(
        path,
        &[
            ("port", r.port.is_some()),
            ("derivePort", r.derive_port.is_some()),
        ],
        report,
    );
    if let Some(d) = &r.derive_port {
        report.check(
            at(path, "derivePort"),
            validate::common::one_of(d, &["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"]),
        );
    }
    if !r.uri.is_empty() && !r.prefix_rewrite.is_empty() {
        report.error(
            path,
            "redirect may only specify one of uri or prefix_rewrite",
        );
        return;
    }
    if !r.prefix_rewrite.is_empty()
        && matches
            .iter()
            .any(|m| m.uri.as_ref().is_some_and(|u| u.prefix.is_none()))
    {
        report.error(
            at(path, "prefixRewrite"),
            "redirect prefix_rewrite requires all URI matches to use prefix match type",
        );
        return;
    }
    if r.uri.is_empty()
        && r.prefix_rewrite.is_empty()
        && r.authority.is_empty()
        && r.port.is_none()
        && r.derive_port.is_none()
        && r.scheme.is_empty()
    {
        report.error(
            path,
            "redirect must specify URI, authority, scheme, or port",
        );
        return;
    }
    if r.redirect_code != 0 && !(300..=399).contains(&r.redirect_code) {
        report.error(
            at(path, "redirectCode"),
            format!(
                "{} is not a valid redirect code, must be 3xx",
                r.redirect_code
            ),
        );
        return;
    }
    if !r.scheme.is_empty() && r.scheme != "http" && r.scheme != "https" {
        report.error(
            at(path, "scheme"),
            "invalid redirect scheme, must be \"http\" or \"https\"",
        );
        return;
    }
    if let Some(p) = r.port
        && p > 0
    {
        report.check(at(path, "port"), validate::common::port(p.into()));
    }
}

/// Decoded length of protobuf-JSON `bytes` (standard or URL-safe base64, padding optional).
fn base64_len(s: &str) -> Option<usize> {
    let body = s.trim_end_matches('=');
    if s.len() - body.len() > 2 {
        return None;
    }
    let ok = body
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'-' | b'_'));
    if !ok || body.len() % 4 == 1 {
        return None;
    }
    Some(body.len() * 3 / 4)
}

/// `validateHTTPDirectResponse`.
fn direct_response(d: &HttpDirectResponse, path: &str, report: &mut Report) {
    if let Some(b) = &d.body {
        let bp = at(path, "body");
        oneof(
            &bp,
            &[("string", b.string.is_some()), ("bytes", b.bytes.is_some())],
            report,
        );
        let size = match (&b.string, &b.bytes) {
            (Some(s), _) => s.len(),
            (None, Some(enc)) => match base64_len(enc) {
                Some(n) => n,
                None => {
                    report.error(at(&bp, "bytes"), "illegal base64 data");
                    0
                }
            },
            (None, None) => 0,
        };
        if size > MB {
            report.error(
                bp,
                "large direct_responses may impact control plane performance, must be less than 1MB",
            );
        } else if size > 100 * KB {
            report.warning(
                bp,
                "large direct_responses may impact control plane performance",
            );
        }
    }
    // Istio converts the uint32 status to int32 before checking it.
    report.check(at(path, "status"), http_status(i64::from(d.status as i32)));
}

/// `ValidateHTTPRetry`.
fn retries(r: &HttpRetry, path: &str, report: &mut Report) {
    if r.attempts < 0 {
        report.error(at(path, "attempts"), "attempts cannot be negative");
    }
    if r.attempts == 0
        && (r.per_try_timeout.is_some()
            || !r.retry_on.is_empty()
            || r.retry_remote_localities.is_some())
    {
        report.error(
            path,
            "http retry policy configured when attempts are set to 0 (disabled)",
        );
    }
    if let Some(d) = &r.per_try_timeout {
        report.check(at(path, "perTryTimeout"), validate::common::duration(d));
    }
    if !r.retry_on.is_empty() {
        for policy in r.retry_on.split(',') {
            let code = go_atoi(policy).unwrap_or(0);
            if !HTTP_STATUS_CODES.contains(&code) && !RETRY_ON_POLICIES.contains(&policy) {
                report.error(
                    at(path, "retryOn"),
                    format!("{policy:?} is not a valid retryOn policy"),
                );
            }
        }
    }
    if let Some(d) = &r.backoff {
        report.check(at(path, "backoff"), validate::common::duration(d));
    }
}

/// Go's `strconv.Atoi` for the values that matter here.
fn go_atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let v: i64 = digits.parse().ok()?;
    Some(if s.starts_with('-') { -v } else { v })
}

/// `validateHTTPRewrite`: the first problem, with the field it concerns.
fn rewrite(r: &HttpRewrite) -> Result<(), (&'static str, String)> {
    if !r.uri.is_empty() && r.uri_regex_rewrite.is_some() {
        return Err((
            "",
            "rewrite may only contain one of URI or UriRegexRewrite".into(),
        ));
    }
    if r.uri.is_empty() && r.uri_regex_rewrite.is_none() && r.authority.is_empty() {
        return Err(("", "rewrite must specify at least one of URI, UriRegexRewrite, or authority. Only one of URI or UriRegexRewrite may be specified".into()));
    }
    if let Some(rr) = &r.uri_regex_rewrite {
        let inner = if rr.match_.is_empty() || rr.rewrite.is_empty() {
            Err("UriRegexRewrite requires both Rewrite and Match fields to be specified".into())
        } else {
            string_regexp(&rr.match_, "HTTPRewrite.UriRegexRewrite.Match")
        };
        if let Err(e) = inner {
            return Err((
                "uriRegexRewrite",
                format!("UriRegexRewrite has errors: {e}"),
            ));
        }
    }
    Ok(())
}

/// `validateAuthorityRewrite`: the authority may be rewritten in only one place.
fn authority_rewrite(h: &HttpRoute, path: &str, report: &mut Report) {
    let mut current = h
        .rewrite
        .as_ref()
        .map(|r| r.authority.clone())
        .unwrap_or_default();
    let Some(req) = h.headers.as_ref().and_then(|x| x.request.as_ref()) else {
        return;
    };
    for (field, map) in [("set", &req.set), ("add", &req.add)] {
        for (k, v) in map {
            if !is_authority_header(k) {
                continue;
            }
            if !current.is_empty() {
                report.error(
                    key(&at(&at(&at(path, "headers"), "request"), field), k),
                    format!(
                        "authority header cannot be set multiple times: have {current:?}, attempting to set {v:?}"
                    ),
                );
                return;
            }
            current = v.clone();
        }
    }
}

/// `validateHTTPRouteDestinations`.
fn http_route_destinations(routes: &[HttpRouteDestination], path: &str, report: &mut Report) {
    let mut total: i64 = 0;
    for (i, r) in routes.iter().enumerate() {
        let p = idx(path, i);
        if r.destination.is_none() {
            report.error(at(&p, "destination"), "destination is required");
        }
        headers_ops(r.headers.as_ref(), &at(&p, "headers"), report);
        common::destination(r.destination.as_ref(), &at(&p, "destination"), report);
        report.check(at(&p, "weight"), weight(r.weight));
        total += i64::from(r.weight);
    }
    if routes.len() > 1 && total == 0 {
        report.error(path, "total destination weight = 0");
    }
}

/// `validateRouteDestinations` (TLS and TCP).
fn route_destinations(routes: &[RouteDestination], path: &str, report: &mut Report) {
    let mut total: i64 = 0;
    for (i, r) in routes.iter().enumerate() {
        let p = idx(path, i);
        if r.destination.is_none() {
            report.error(at(&p, "destination"), "destination is required");
        }
        common::destination(r.destination.as_ref(), &at(&p, "destination"), report);
        report.check(at(&p, "weight"), weight(r.weight));
        total += i64::from(r.weight);
    }
    if routes.len() > 1 && total == 0 {
        report.error(path, "total destination weight = 0");
    }
}

impl VirtualService {
    /// `validateTLSRoute`.
    fn tls_route(&self, t: &TlsRoute, is_gateway: bool, path: &str, report: &mut Report) {
        let mp = at(path, "match");
        if t.match_.is_empty() {
            report.error(
                mp.clone(),
                "TLS route must have at least one match condition",
            );
        }
        for (j, m) in t.match_.iter().enumerate() {
            let p = idx(&mp, j);
            if m.sni_hosts.is_empty() {
                report.error(
                    at(&p, "sniHosts"),
                    "TLS match must have at least one SNI host",
                );
            }
            for (k, sni) in m.sni_hosts.iter().enumerate() {
                self.sni_host(sni, is_gateway, &idx(&at(&p, "sniHosts"), k), report);
            }
            l4_common(
                &m.destination_subnets,
                m.port,
                &m.source_labels,
                &m.gateways,
                &p,
                report,
            );
        }
        if t.route.is_empty() {
            report.error(at(path, "route"), "TLS route is required");
        }
        route_destinations(&t.route, &at(path, "route"), report);
    }

    /// `validateSniHost`.
    fn sni_host(&self, sni: &str, is_gateway: bool, path: &str, report: &mut Report) {
        let res = if is_gateway {
            wildcard_domain_for_gateway(true, sni)
        } else {
            validate::common::wildcard_domain(sni)
        };
        if let Err(e) = res {
            if common::is_ip(sni) {
                report.warning(
                    path,
                    format!(
                        "using an IP address ({sni:?}) goes against SNI spec and most clients do not support this"
                    ),
                );
            } else {
                report.error(path, e);
            }
            return;
        }
        if !self.hosts.iter().any(|h| common::host_subset_of(sni, h)) {
            report.error(
                path,
                format!(
                    "SNI host {sni:?} is not a compatible subset of any of the virtual service hosts: [{}]",
                    self.hosts.join(", ")
                ),
            );
        }
    }
}

/// Checks shared by TLS and TCP matches.
fn l4_common(
    subnets: &[String],
    port: u32,
    source_labels: &BTreeMap<String, String>,
    gateways: &[String],
    path: &str,
    report: &mut Report,
) {
    for (k, s) in subnets.iter().enumerate() {
        report.check(
            idx(&at(path, "destinationSubnets"), k),
            common::ip_subnet(s),
        );
    }
    if port != 0 {
        report.check(at(path, "port"), validate::common::port(port.into()));
    }
    validate::common::labels(source_labels, &at(path, "sourceLabels"), report);
    gateway_names(gateways, &at(path, "gateways"), report);
}

/// `validateTCPRoute`.
fn tcp_route(t: &TcpRoute, path: &str, report: &mut Report) {
    let mp = at(path, "match");
    for (j, m) in t.match_.iter().enumerate() {
        l4_common(
            &m.destination_subnets,
            m.port,
            &m.source_labels,
            &m.gateways,
            &idx(&mp, j),
            report,
        );
    }
    if t.route.is_empty() {
        report.error(at(path, "route"), "TCP route is required");
    }
    route_destinations(&t.route, &at(path, "route"), report);
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn go_formats() {
        assert_eq!(go_float(101.0), "101");
        assert_eq!(go_float(150.5), "150.5");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(-1.0), "-1");
    }

    #[test]
    fn header_values() {
        assert!(header_value("foo").is_ok());
        assert!(header_value("%HOSTNAME%").is_ok());
        assert!(header_value("100%%").is_ok());
        assert!(header_value("prefix %HOSTNAME% suffix").is_ok());
        assert!(header_value("%REQ(x-foo)%").is_ok());
        assert_eq!(
            header_value("abc%123").unwrap_err(),
            "header value configuration: invalid header configuration. Un-terminated variable expression 'abc%123'"
        );
        assert_eq!(
            header_value("%START_TIME%%").unwrap_err(),
            "header value configuration: invalid header configuration. Un-escaped %"
        );
    }

    #[test]
    fn jwt_claims_and_header_names() {
        assert!(is_jwt_claim("@request.auth.claims.groups"));
        assert!(is_jwt_claim("@request.auth.claims[nested][key]"));
        assert!(!is_jwt_claim("@request.auth.claims"));
        assert!(header_name_or_jwt_claim(":authority").is_ok());
        assert_eq!(
            header_name_or_jwt_claim("bad header").unwrap_err(),
            "header name bad header is not a valid header name"
        );
    }

    #[test]
    fn auto_passthrough_sni() {
        assert!(wildcard_domain_for_gateway(true, "outbound_.80_._.e2e.foobar.mesh").is_ok());
        assert!(wildcard_domain_for_gateway(true, "outbound_.xx_._.e2e.foobar.mesh").is_err());
        assert!(wildcard_domain_for_gateway(false, "outbound_.80_._.e2e.foobar.mesh").is_err());
    }

    #[test]
    fn base64_lengths() {
        assert_eq!(base64_len("aGVsbG8="), Some(5));
        assert_eq!(base64_len("aGVsbG8"), Some(5));
        assert_eq!(base64_len("a"), None);
        assert_eq!(base64_len("a$b="), None);
    }
}
