//! Types and checks shared by the networking.istio.io kinds (Istio's wording throughout).

use crate::meta::StringMap;
use crate::validate::{Report, common};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// `networking.v1alpha3.WorkloadSelector` (Sidecar, ServiceEntry): `labels`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSelector {
    #[serde(default, skip_serializing_if = "StringMap::is_empty")]
    pub labels: StringMap,
}

/// `istio.type.v1beta1.WorkloadSelector` (DestinationRule): `matchLabels`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchLabelsSelector {
    #[serde(default, skip_serializing_if = "StringMap::is_empty")]
    pub match_labels: StringMap,
}

/// `PortSelector`: a port on the destination service.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortSelector {
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub number: u32,
}

/// `Destination`: a service (and optionally subset and port) traffic is sent to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    #[serde(default)]
    pub host: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subset: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
}

pub(crate) fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

pub(crate) fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}

pub(crate) fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

pub(crate) fn is_false(v: &bool) -> bool {
    !*v
}

/// `path.field`.
pub(crate) fn at(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// `path[i]`.
pub(crate) fn idx(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// `path[key]` (map entries, as `common::labels` writes them).
pub(crate) fn key(path: &str, k: &str) -> String {
    format!("{path}[{k}]")
}

/// A protobuf `oneof`: reports when more than one member is set.
pub(crate) fn oneof(path: &str, members: &[(&str, bool)], report: &mut Report) {
    if members.iter().filter(|(_, set)| *set).count() > 1 {
        let names: Vec<&str> = members.iter().map(|(n, _)| *n).collect();
        report.error(
            path,
            format!(
                "must validate one and only one schema (oneOf): only one of {} can be set",
                names.join(", ")
            ),
        );
    }
}

/// Istio's `protocol.Instance`, parsed case-insensitively.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    Tcp,
    Udp,
    Grpc,
    GrpcWeb,
    Http,
    HttpProxy,
    Http2,
    Https,
    Tls,
    Mongo,
    Redis,
    MySql,
    Unsupported,
}

impl Protocol {
    pub(crate) fn parse(s: &str) -> Protocol {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "grpc" => Protocol::Grpc,
            "grpc-web" => Protocol::GrpcWeb,
            "http" => Protocol::Http,
            "http_proxy" => Protocol::HttpProxy,
            "http2" => Protocol::Http2,
            "https" => Protocol::Https,
            "tls" => Protocol::Tls,
            "mongo" => Protocol::Mongo,
            "redis" => Protocol::Redis,
            "mysql" => Protocol::MySql,
            _ => Protocol::Unsupported,
        }
    }

    pub(crate) fn is_http(self) -> bool {
        matches!(
            self,
            Protocol::Http
                | Protocol::Http2
                | Protocol::HttpProxy
                | Protocol::Grpc
                | Protocol::GrpcWeb
        )
    }

    pub(crate) fn is_tcp(self) -> bool {
        matches!(
            self,
            Protocol::Tcp
                | Protocol::Https
                | Protocol::Tls
                | Protocol::Mongo
                | Protocol::Redis
                | Protocol::MySql
        )
    }

    pub(crate) fn is_tls(self) -> bool {
        matches!(self, Protocol::Https | Protocol::Tls)
    }
}

/// `ValidatePortName`.
pub(crate) fn port_name(name: &str) -> Result<(), String> {
    if common::is_dns1123_label(name) {
        Ok(())
    } else {
        Err(format!("invalid port name: {name}"))
    }
}

/// `ValidateProtocol`: empty (sniffing) or a known protocol.
pub(crate) fn protocol(p: &str) -> Result<(), String> {
    if !p.is_empty() && Protocol::parse(p) == Protocol::Unsupported {
        Err(format!("unsupported protocol: {p}"))
    } else {
        Ok(())
    }
}

/// Go's `netip.ParseAddr` (IPv6 may carry a `%zone`).
pub(crate) fn is_ip(addr: &str) -> bool {
    if addr.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    match addr.split_once('%') {
        Some((ip, zone)) => !zone.is_empty() && ip.parse::<std::net::Ipv6Addr>().is_ok(),
        None => false,
    }
}

/// `ValidateIPAddress`.
pub(crate) fn ip_address(addr: &str) -> Result<(), String> {
    if is_ip(addr) {
        Ok(())
    } else {
        Err(format!("{addr} is not a valid IP"))
    }
}

/// `ValidateIPSubnet`: CIDR (`a.b.c.d/xx`, `2001:1::1/64`) or a plain address.
pub(crate) fn ip_subnet(subnet: &str) -> Result<(), String> {
    if subnet.matches('/').count() == 1 {
        let ok = subnet.split_once('/').is_some_and(|(ip, bits)| {
            let Ok(ip) = ip.parse::<std::net::IpAddr>() else {
                return false;
            };
            let max = if ip.is_ipv4() { 32 } else { 128 };
            !bits.is_empty()
                && bits.bytes().all(|b| b.is_ascii_digit())
                && (bits == "0" || !bits.starts_with('0'))
                && bits.parse::<u32>().is_ok_and(|b| b <= max)
        });
        return if ok {
            Ok(())
        } else {
            Err(format!("{subnet} is not a valid CIDR block"))
        };
    }
    ip_address(subnet)
}

/// `ValidateUnixAddress` (the part after `unix://`).
pub(crate) fn unix_address(addr: &str) -> Result<(), String> {
    if addr.is_empty() {
        return Err("unix address must not be empty".into());
    }
    if addr.starts_with('@') {
        return Ok(());
    }
    if !addr.starts_with('/') || addr.ends_with('/') {
        return Err(format!("{addr} is not an absolute path to a file"));
    }
    Ok(())
}

pub(crate) const UNIX_ADDRESS_PREFIX: &str = "unix://";

/// `ValidatePartialWildCard`.
pub(crate) fn partial_wildcard(host: &str) -> Result<(), String> {
    if host.contains('*') && host.len() != 1 && !host.starts_with("*.") {
        Err(format!("partial wildcard {host:?} not allowed"))
    } else {
        Ok(())
    }
}

fn sidecar_or_gateway_hostname_part(hostname: &str, is_gateway: bool, errs: &mut Vec<String>) {
    if hostname != "*" && !hostname.contains('.') {
        errs.push("short names (non FQDN) are not allowed".into());
    }
    if let Err(e) = common::wildcard_domain(hostname) {
        // Gateways also accept an IP address as the host.
        if !is_gateway || !is_ip(hostname) {
            errs.push(e);
        }
    }
    if let Err(e) = partial_wildcard(hostname) {
        errs.push(e);
    }
}

/// `ValidateNamespaceSlashWildcardHostname`: `ns/host` entries of Gateways and Sidecars.
pub(crate) fn namespace_slash_wildcard_hostname(hostname: &str, is_gateway: bool) -> Vec<String> {
    let mut errs = Vec::new();
    let Some((ns, host)) = hostname.split_once('/') else {
        if is_gateway {
            sidecar_or_gateway_hostname_part(hostname, true, &mut errs);
        } else {
            errs.push("host must be of form namespace/dnsName".into());
        }
        return errs;
    };
    if ns.is_empty() || host.is_empty() {
        errs.push("config namespace and dnsName in host entry cannot be empty".into());
    }
    if !is_gateway {
        let bare = ns.strip_prefix('~').unwrap_or(ns);
        if !bare.is_empty() && bare != "*" && bare != "." && !common::is_dns1123_label(bare) {
            errs.push(format!("invalid namespace value {ns:?} in sidecar"));
        }
    } else if ns != "*" && ns != "." && !common::is_dns1123_label(ns) {
        errs.push(format!("invalid namespace value {ns:?} in gateway"));
    }
    sidecar_or_gateway_hostname_part(host, is_gateway, &mut errs);
    errs
}

fn is_wildcarded(h: &str) -> bool {
    h.starts_with('*')
}

/// `host.Name.Matches`: the two hosts have a non-empty intersection.
pub(crate) fn host_matches(n: &str, o: &str) -> bool {
    match (is_wildcarded(n), is_wildcarded(o)) {
        (true, true) => {
            if n.len() < o.len() {
                o[1..].ends_with(&n[1..])
            } else {
                n[1..].ends_with(&o[1..])
            }
        }
        (true, false) => o.ends_with(&n[1..]),
        (false, true) => n.ends_with(&o[1..]),
        (false, false) => n == o,
    }
}

/// `host.Name.SubsetOf`: every name matched by `n` is matched by `o`.
pub(crate) fn host_subset_of(n: &str, o: &str) -> bool {
    match (is_wildcarded(n), is_wildcarded(o)) {
        (true, true) => n.len() >= o.len() && n[1..].ends_with(&o[1..]),
        (true, false) => false,
        (false, true) => n.ends_with(&o[1..]),
        (false, false) => n == o,
    }
}

/// `visibility.Instance.Validate`.
fn visibility(v: &str) -> Result<(), String> {
    match v {
        "." | "*" => Ok(()),
        "~" => Err("exportTo ~ (none) is not allowed for Istio configuration objects".into()),
        _ if common::is_dns1123_label(v) => Ok(()),
        _ => Err("only .,*, or a valid DNS 1123 label is allowed as exportTo entry".into()),
    }
}

/// `validateExportTo`, reporting under `path` (`spec.exportTo`).
pub(crate) fn export_to(
    namespace: &str,
    export_to: &[String],
    is_service_entry: bool,
    is_dr_with_selector: bool,
    path: &str,
    report: &mut Report,
) {
    if export_to.is_empty() {
        return;
    }
    let mut set: BTreeSet<&str> = BTreeSet::new();
    for (i, e) in export_to.iter().enumerate() {
        let p = idx(path, i);
        let key = if e == "." { namespace } else { e.as_str() };
        if set.contains(key) {
            if key != e {
                report.error(
                    p,
                    format!("duplicate entries in exportTo: . and current namespace {namespace}"),
                );
            } else {
                report.error(p, format!("duplicate entries in exportTo for entry {e}"));
            }
        } else if is_service_entry && e == "~" {
            set.insert(key);
        } else {
            match visibility(key) {
                Ok(()) => {
                    set.insert(key);
                }
                Err(m) => report.error(p, m),
            }
        }
    }
    if is_dr_with_selector && !set.is_empty() {
        if set.contains(namespace) {
            if set.len() > 1 {
                report.error(
                    path,
                    "destination rule with workload selector cannot have multiple entries in exportTo",
                );
            }
        } else {
            report.error(
                path,
                "destination rule with workload selector cannot have exportTo beyond current namespace",
            );
        }
    }
    if set.contains("*") && export_to.len() > 1 {
        report.error(
            path,
            "cannot have both public (*) and non-public exportTo values for a resource",
        );
    }
    if set.contains("~") && export_to.len() > 1 {
        report.error(
            path,
            "cannot export service entry to no one (~) and someone",
        );
    }
}

/// `ValidateAlphaWorkloadSelector`: errors (at `path.labels[key]`) and whether the selector is
/// present but empty (Istio's callers turn that into a warning).
pub(crate) fn alpha_workload_selector(
    selector: Option<&WorkloadSelector>,
    path: &str,
    report: &mut Report,
) -> bool {
    let Some(sel) = selector else {
        return false;
    };
    for (k, v) in &sel.labels {
        let p = key(&at(path, "labels"), k);
        if k.is_empty() {
            report.error(
                p.clone(),
                format!(
                    "empty key is not supported in selector: {:?}",
                    format!("{k}={v}")
                ),
            );
        }
        if k.contains('*') || v.contains('*') {
            report.error(
                p,
                format!(
                    "wildcard is not supported in selector: {:?}",
                    format!("{k}={v}")
                ),
            );
        }
    }
    sel.labels.is_empty()
}

/// `validateWorkloadSelector` (`matchLabels` form).
pub(crate) fn match_labels_selector(
    selector: Option<&MatchLabelsSelector>,
    path: &str,
    report: &mut Report,
) {
    let Some(sel) = selector else {
        return;
    };
    for (k, v) in &sel.match_labels {
        let p = key(&at(path, "matchLabels"), k);
        if k.is_empty() {
            report.error(
                p.clone(),
                format!(
                    "empty key is not supported in selector: {:?}",
                    format!("{k}={v}")
                ),
            );
        }
        if k.contains('*') || v.contains('*') {
            report.error(
                p,
                format!(
                    "wildcard is not supported in selector: {:?}",
                    format!("{k}={v}")
                ),
            );
        }
    }
    if sel.match_labels.is_empty() {
        report.warning(path, "workload selector specified without labels");
    }
}

/// `validateSubsetName`.
pub(crate) fn subset_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("subset name cannot be empty".into());
    }
    if !common::is_dns1123_label(name) {
        return Err(format!("subset name is invalid: {name}"));
    }
    Ok(())
}

/// `validateDestination`, reporting under `path` (the destination itself).
pub(crate) fn destination(dest: Option<&Destination>, path: &str, report: &mut Report) {
    let Some(d) = dest else {
        return;
    };
    if d.host == "*" {
        report.error(
            at(path, "host"),
            format!("invalid destination host {}", d.host),
        );
    } else {
        report.check(at(path, "host"), common::wildcard_domain(&d.host));
    }
    if !d.subset.is_empty() {
        report.check(at(path, "subset"), subset_name(&d.subset));
    }
    if let Some(p) = &d.port {
        report.check(
            at(&at(path, "port"), "number"),
            common::port(p.number.into()),
        );
    }
}

/// A port rendered the way Go prints the proto message (`number:80 protocol:"HTTP"`).
pub(crate) fn port_text(number: u32, protocol: &str, name: &str, target_port: u32) -> String {
    let mut parts = Vec::new();
    if number != 0 {
        parts.push(format!("number:{number}"));
    }
    if !protocol.is_empty() {
        parts.push(format!("protocol:{protocol:?}"));
    }
    if !name.is_empty() {
        parts.push(format!("name:{name:?}"));
    }
    if target_port != 0 {
        parts.push(format!("target_port:{target_port}"));
    }
    parts.join(" ")
}

/// Compiles a regex as Go's RE2 would accept it: first with Unicode semantics, then (for
/// features this build lacks, like Unicode case folding) byte-oriented.
pub(crate) fn compile_regex(re: &str) -> Result<(), String> {
    let Err(first) = regex::Regex::new(re) else {
        return Ok(());
    };
    if regex::bytes::RegexBuilder::new(re)
        .unicode(false)
        .build()
        .is_ok()
    {
        return Ok(());
    }
    let text = first.to_string();
    let detail = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim()
        .trim_start_matches("error: ")
        .to_string();
    Err(format!("error parsing regexp: {detail}: `{re}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_match_and_subset() {
        assert!(host_matches("*.foo.com", "*.com"));
        assert!(host_matches("a.foo.com", "*.foo.com"));
        assert!(!host_matches("a.foo.com", "b.foo.com"));
        assert!(host_subset_of("a.foo.com", "*.foo.com"));
        assert!(!host_subset_of("*.foo.com", "a.foo.com"));
        assert!(host_subset_of("*.a.foo.com", "*.foo.com"));
    }

    #[test]
    fn subnets_and_protocols() {
        assert!(ip_subnet("10.0.0.0/8").is_ok());
        assert!(ip_subnet("2001:db8::/32").is_ok());
        assert_eq!(
            ip_subnet("10.0.0.0/33").unwrap_err(),
            "10.0.0.0/33 is not a valid CIDR block"
        );
        assert_eq!(ip_subnet("foo").unwrap_err(), "foo is not a valid IP");
        assert_eq!(Protocol::parse("tls"), Protocol::Tls);
        assert_eq!(Protocol::parse("GRPC-Web"), Protocol::GrpcWeb);
        assert_eq!(protocol("foo").unwrap_err(), "unsupported protocol: foo");
    }

    #[test]
    fn regexes() {
        assert!(compile_regex("^/api/v[0-9]+/.*").is_ok());
        assert!(compile_regex("(?i)foo").is_ok());
        let e = compile_regex("(abc").unwrap_err();
        assert!(e.starts_with("error parsing regexp: "), "{e}");
    }

    #[test]
    fn namespaced_hosts() {
        assert!(namespace_slash_wildcard_hostname("*/*", false).is_empty());
        assert!(namespace_slash_wildcard_hostname("./foo.com", false).is_empty());
        assert!(namespace_slash_wildcard_hostname("~istio-system/*", false).is_empty());
        assert_eq!(
            namespace_slash_wildcard_hostname("foo.com", false),
            vec!["host must be of form namespace/dnsName"]
        );
        assert!(namespace_slash_wildcard_hostname("foo.com", true).is_empty());
        assert!(namespace_slash_wildcard_hostname("1.2.3.4", true).is_empty());
        assert_eq!(
            namespace_slash_wildcard_hostname("ns/foo", true),
            vec!["short names (non FQDN) are not allowed"]
        );
    }
}
