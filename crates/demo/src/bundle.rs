//! The pieces of a VM's bundle the demo writes itself (pure): `cluster.env` with the keys
//! `istioctl x workload entry configure` writes, quoted the way Istio quotes them, and the claims of a
//! bootstrap token for display. Also the embedded config templates' rendering.

use serde_json::Value;
use std::collections::BTreeMap;

/// A VM of the demo: who it is in the mesh and what it exposes.
pub struct VmSpec {
    /// WorkloadGroup / workload name (`forum`).
    pub workload: &'static str,
    /// `POD_NAME`: the proxy's name in `proxy-status` (`forum-vm`).
    pub pod_name: &'static str,
    pub namespace: &'static str,
    pub service_account: &'static str,
    /// WorkloadGroup template ports (`http=8080`); none means every inbound port is captured.
    pub ports: &'static [(&'static str, u16)],
    pub network: &'static str,
}

impl VmSpec {
    /// The SPIFFE identity its certificate carries.
    pub fn spiffe(&self) -> String {
        format!(
            "spiffe://cluster.local/ns/{}/sa/{}",
            self.namespace, self.service_account
        )
    }

    /// `name.namespace`, as proxy-status names it.
    pub fn proxy_id(&self) -> String {
        format!("{}.{}", self.pod_name, self.namespace)
    }
}

/// Istio's `shellescape.Quote`: empty is `''`; a value made only of `\ w @ % + = : , . / -`
/// (Istio's pattern `[^\\w@%+=:,./-]`, whose `\\w` is a literal backslash and `w`) stays bare;
/// anything else is single-quoted with `'` written as `'"'"'`.
pub fn istio_quote(value: &str) -> String {
    if value.is_empty() {
        return "''".into();
    }
    if value.chars().all(|c| "\\w@%+=:,./-".contains(c)) {
        return value.into();
    }
    format!("'{}'", value.replace('\'', "'\"'\"'"))
}

/// `cluster.env` for `vm`: Istio's keys (sorted, quoted as istioctl writes them) for a VM talking to
/// weftd at `ca_addr` directly (so `ISTIOD_SAN` names the certificate weftd serves on it).
pub fn cluster_env(vm: &VmSpec, instance_ip: &str, ca_addr: &str, istiod_san: &str) -> String {
    let inbound = if vm.ports.is_empty() {
        "*".to_string()
    } else {
        vm.ports
            .iter()
            .map(|(_, p)| p.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut labels = serde_json::Map::new();
    labels.insert("app".into(), vm.workload.into());
    labels.insert("service.istio.io/canonical-name".into(), vm.workload.into());
    labels.insert(
        "service.istio.io/canonical-revision".into(),
        "latest".into(),
    );
    let vars: BTreeMap<&str, String> = [
        ("CANONICAL_REVISION", "latest".to_string()),
        ("CANONICAL_SERVICE", vm.workload.to_string()),
        ("CA_ADDR", ca_addr.to_string()),
        ("ISTIOD_SAN", istiod_san.to_string()),
        ("ISTIO_INBOUND_PORTS", inbound),
        (
            "ISTIO_LOCAL_EXCLUDE_PORTS",
            "22,15090,15021,15020".to_string(),
        ),
        ("ISTIO_METAJSON_LABELS", Value::Object(labels).to_string()),
        ("ISTIO_META_CLUSTER_ID", "Kubernetes".to_string()),
        ("ISTIO_META_MESH_ID", "cluster.local".to_string()),
        ("ISTIO_META_NETWORK", vm.network.to_string()),
        ("ISTIO_META_WORKLOAD_NAME", vm.workload.to_string()),
        ("ISTIO_NAMESPACE", vm.namespace.to_string()),
        ("ISTIO_SERVICE", format!("{}.{}", vm.workload, vm.namespace)),
        ("ISTIO_SERVICE_CIDR", "*".to_string()),
        ("ISTIO_SVC_IP", instance_ip.to_string()),
        ("POD_NAME", vm.pod_name.to_string()),
        ("POD_NAMESPACE", vm.namespace.to_string()),
        ("SERVICE_ACCOUNT", vm.service_account.to_string()),
        ("TRUST_DOMAIN", "cluster.local".to_string()),
    ]
    .into_iter()
    .collect();
    vars.iter()
        .map(|(k, v)| format!("{k}={}\n", istio_quote(v)))
        .collect()
}

/// The claims of a JWT (its middle part, base64url without padding), as JSON.
pub fn jwt_claims(token: &str) -> Result<Value, String> {
    let payload = token
        .trim()
        .split('.')
        .nth(1)
        .ok_or("the token is not a JWT (no payload part)")?;
    let bytes = base64url_decode(payload)?;
    serde_json::from_slice(&bytes).map_err(|e| format!("the token's payload is not JSON: {e}"))
}

fn base64url_decode(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return Err(format!("invalid base64url character {:?}", c as char)),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// Fills `{{KEY}}` placeholders of an embedded template; every placeholder must be given.
pub fn render(template: &str, values: &[(&str, &str)]) -> Result<String, String> {
    let mut out = template.to_string();
    for (k, v) in values {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    match out.find("{{") {
        Some(i) => Err(format!(
            "template placeholder left unfilled: {}",
            out[i..].lines().next().unwrap_or_default()
        )),
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORUM: VmSpec = VmSpec {
        workload: "forum",
        pod_name: "forum-vm",
        namespace: "forum-services",
        service_account: "forum-sa",
        ports: &[("http", 8080)],
        network: "vm-network",
    };

    #[test]
    fn quoting_follows_istio() {
        assert_eq!(istio_quote(""), "''");
        assert_eq!(istio_quote("www"), "www");
        assert_eq!(istio_quote("latest"), "'latest'");
        assert_eq!(istio_quote("it's"), r#"'it'"'"'s'"#);
    }

    #[test]
    fn cluster_env_has_istios_keys_sorted() {
        let env = cluster_env(
            &FORUM,
            "198.18.0.11",
            "198.18.0.10:15012",
            "istiod.istio-system.svc",
        );
        let keys: Vec<&str> = env.lines().filter_map(|l| l.split('=').next()).collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(keys, sorted);
        assert!(env.contains("ISTIO_INBOUND_PORTS='8080'\n"), "{env}");
        assert!(env.contains("SERVICE_ACCOUNT='forum-sa'\n"), "{env}");
        assert!(env.contains("ISTIO_SERVICE_CIDR='*'\n"), "{env}");
        assert!(
            env.contains(r#"ISTIO_METAJSON_LABELS='{"app":"forum","#),
            "{env}"
        );
    }

    #[test]
    fn jwt_claims_are_decoded() {
        // {"sub":"system:serviceaccount:ns:sa"}
        let token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6bnM6c2EifQ.sig";
        assert_eq!(
            jwt_claims(token).unwrap()["sub"],
            "system:serviceaccount:ns:sa"
        );
        assert!(jwt_claims("nodots").is_err());
    }

    #[test]
    fn templates_render_and_refuse_gaps() {
        assert_eq!(
            render("a: {{X}}\nb: {{X}}\n", &[("X", "1")]).unwrap(),
            "a: 1\nb: 1\n"
        );
        assert!(render("a: {{Y}}\n", &[("X", "1")]).is_err());
    }
}
