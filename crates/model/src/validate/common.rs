//! Checks shared by several kinds, with Istio's (or Kubernetes') wording.

use crate::meta::StringMap;

/// `ValidatePort`.
pub fn port(port: i64) -> Result<(), String> {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(format!("port number {port} must be in the range 1..65535"))
    }
}

/// DNS-1123 label as Istio's `labels.IsDNS1123Label` (mixed case allowed, ≤ 63).
pub fn is_dns1123_label(value: &str) -> bool {
    let b = value.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// Istio's `IsWildcardDNS1123Label`: `*`, or a label optionally prefixed by `*` or `*-`.
pub fn is_wildcard_dns1123_label(value: &str) -> bool {
    if value == "*" {
        return true;
    }
    let rest = value
        .strip_prefix("*-")
        .or_else(|| value.strip_prefix('*'))
        .unwrap_or(value);
    value.len() <= 63 && is_dns1123_label(rest)
}

fn dns1123_preconditions(name: &str) -> Result<(), String> {
    if name.len() > 255 {
        return Err(format!("domain name {name:?} too long (max 255)"));
    }
    if name.is_empty() {
        return Err("empty domain name not allowed".to_string());
    }
    Ok(())
}

/// `ValidateDNS1123Labels`.
pub fn dns1123_labels(domain: &str) -> Result<(), String> {
    let parts: Vec<&str> = domain.split('.').collect();
    let tld = parts[parts.len() - 1];
    if !tld.is_empty() && tld.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "domain name {domain:?} invalid (top level domain {tld:?} cannot be all-numeric)"
        ));
    }
    for (i, label) in parts.iter().enumerate() {
        if i == parts.len() - 1 && label.is_empty() {
            return Ok(());
        }
        if !is_dns1123_label(label) {
            return Err(format!(
                "domain name {domain:?} invalid (label {label:?} invalid)"
            ));
        }
    }
    Ok(())
}

/// `ValidateFQDN`.
pub fn fqdn(name: &str) -> Result<(), String> {
    dns1123_preconditions(name)?;
    dns1123_labels(name)
}

/// `ValidateWildcardDomain`: wildcards only in the first label.
pub fn wildcard_domain(domain: &str) -> Result<(), String> {
    dns1123_preconditions(domain)?;
    let (first, rest) = match domain.split_once('.') {
        Some((f, r)) => (f, Some(r)),
        None => (domain, None),
    };
    if !is_wildcard_dns1123_label(first) {
        return Err(format!(
            "domain name {domain:?} invalid (label {first:?} invalid)"
        ));
    }
    match rest {
        Some(r) => dns1123_labels(r),
        None => Ok(()),
    }
}

/// Kubernetes DNS-1123 subdomain (lower case), used for `metadata.name`.
pub fn k8s_dns1123_subdomain(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
        && !value.bytes().any(|c| c.is_ascii_uppercase());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "Invalid value: {value:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        ))
    }
}

/// Kubernetes DNS-1123 label (lower case), used for namespaces and port names.
pub fn k8s_dns1123_label(value: &str) -> Result<(), String> {
    let b = value.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "Invalid value: {value:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        ))
    }
}

fn is_qualified_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Istio's label key check (`labels.ValidateTagKey`): optional DNS prefix `a.b/` plus a qualified name.
pub fn label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if p.len() > 253 {
            return Err(format!("invalid tag key: {key:?} (DNS prefix is too long)"));
        }
        if !p.split('.').all(is_dns1123_label) {
            return Err(format!("invalid tag key: {key:?}"));
        }
    }
    if name.len() > 63 && name.split('/').count() == 1 && is_qualified_name(&name[..63]) {
        return Err(format!("invalid tag key: {key:?} (name is too long)"));
    }
    if !is_qualified_name(name) {
        return Err(format!("invalid tag key: {key:?}"));
    }
    Ok(())
}

/// Istio's label value check: empty or a qualified name.
pub fn label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_qualified_name(value) {
        Ok(())
    } else {
        Err(format!("invalid tag value: {value:?}"))
    }
}

/// Validates every key and value of a label map, reporting at `path`.
pub fn labels(map: &StringMap, path: &str, report: &mut super::Report) {
    for (k, v) in map {
        report.check(format!("{path}[{k}]"), label_key(k));
        report.check(format!("{path}[{k}]"), label_value(v));
    }
}

/// Istio's `ValidateDuration`: > 1ms and millisecond precision.
pub fn duration(d: &crate::Duration) -> Result<(), String> {
    let v = d.as_std();
    if v < std::time::Duration::from_millis(1) {
        return Err("duration must be greater than 1ms".into());
    }
    if !v.subsec_nanos().is_multiple_of(1_000_000) {
        return Err("only durations to ms precision are supported".into());
    }
    Ok(())
}

/// Kubernetes enum wording for a field whose value is not one of `allowed`.
pub fn one_of(value: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        let list: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
        Err(format!(
            "Unsupported value: {value:?}: supported values: {}",
            list.join(", ")
        ))
    }
}

/// `ValidateIPAddress` / CIDR check, returns true for `a.b.c.d`, IPv6, or CIDR forms.
pub fn is_ip_or_cidr(value: &str) -> bool {
    match value.split_once('/') {
        Some((ip, len)) => {
            let Ok(ip) = ip.parse::<std::net::IpAddr>() else {
                return false;
            };
            let max = if ip.is_ipv4() { 32 } else { 128 };
            len.parse::<u8>().is_ok_and(|l| l <= max)
        }
        None => value.parse::<std::net::IpAddr>().is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        assert!(wildcard_domain("*.example.com").is_ok());
        assert!(wildcard_domain("*").is_ok());
        assert!(wildcard_domain("reviews").is_ok());
        assert_eq!(
            wildcard_domain("$MYDOMAIN").unwrap_err(),
            "domain name \"$MYDOMAIN\" invalid (label \"$MYDOMAIN\" invalid)"
        );
        assert_eq!(
            wildcard_domain("foo.*.com").unwrap_err(),
            "domain name \"*.com\" invalid (label \"*\" invalid)"
        );
        assert!(fqdn("istio.io.").is_ok());
        assert!(fqdn("1.2.3.4").is_err());
    }

    #[test]
    fn label_keys_and_values() {
        assert!(label_key("app").is_ok());
        assert!(label_key("app.kubernetes.io/name").is_ok());
        assert!(label_key("-bad").is_err());
        assert!(label_value("").is_ok());
        assert!(label_value("v1.2_x").is_ok());
        assert!(label_value("bad value").is_err());
    }

    #[test]
    fn durations() {
        assert!(duration(&crate::Duration::parse("1ms").unwrap()).is_ok());
        assert!(duration(&crate::Duration::parse("0s").unwrap()).is_err());
        assert!(duration(&crate::Duration::parse("1.5ms").unwrap()).is_err());
    }
}
