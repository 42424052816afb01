//! Core v1 Service, with Kubernetes' own validation rules for the fields the mesh uses.

use crate::meta::StringMap;
use crate::validate::{Context, Report, Validate, common};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::collections::BTreeSet;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServicePort>,
    #[serde(default, skip_serializing_if = "StringMap::is_empty")]
    pub selector: StringMap,
    #[serde(
        default,
        rename = "clusterIP",
        skip_serializing_if = "String::is_empty"
    )]
    pub cluster_ip: String,
    #[serde(default, rename = "clusterIPs", skip_serializing_if = "Vec::is_empty")]
    pub cluster_ips: Vec<String>,
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub type_: String,
    #[serde(default, rename = "externalIPs", skip_serializing_if = "Vec::is_empty")]
    pub external_ips: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub external_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub session_affinity: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity_config: Option<Value>,
    #[serde(
        default,
        rename = "loadBalancerIP",
        skip_serializing_if = "String::is_empty"
    )]
    pub load_balancer_ip: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancer_source_ranges: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub load_balancer_class: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub external_traffic_policy: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub internal_traffic_policy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_node_port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_not_ready_addresses: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_families: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ip_family_policy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocate_load_balancer_node_ports: Option<bool>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub traffic_distribution: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub port: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<i32>,
}

impl ServicePort {
    /// Transport protocol, defaulting to TCP as Kubernetes does.
    pub fn protocol(&self) -> &str {
        if self.protocol.is_empty() {
            "TCP"
        } else {
            &self.protocol
        }
    }
}

/// Kubernetes `IntOrString` (targetPort: 8080 or targetPort: http).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IntOrString {
    Int(i64),
    String(String),
}

impl Serialize for IntOrString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            IntOrString::Int(i) => s.serialize_i64(*i),
            IntOrString::String(v) => s.serialize_str(v),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) if n.is_i64() => Ok(IntOrString::Int(n.as_i64().unwrap_or_default())),
            Value::String(s) => Ok(IntOrString::String(s)),
            other => Err(serde::de::Error::custom(format!(
                "invalid type: {other}, expected an integer or a string"
            ))),
        }
    }
}

const SERVICE_TYPES: &[&str] = &["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];

impl Validate for ServiceSpec {
    fn validate(&self, _ctx: &Context<'_>, r: &mut Report) {
        if !self.type_.is_empty() {
            r.check("spec.type", common::one_of(&self.type_, SERVICE_TYPES));
        }
        if self.ports.is_empty() && self.type_ != "ExternalName" && self.cluster_ip != "None" {
            r.error("spec.ports", "Required value");
        }
        let mut names = BTreeSet::new();
        let mut seen = BTreeSet::new();
        for (i, p) in self.ports.iter().enumerate() {
            let path = format!("spec.ports[{i}]");
            if p.name.is_empty() {
                if self.ports.len() > 1 {
                    r.error(format!("{path}.name"), "Required value");
                }
            } else {
                r.check(format!("{path}.name"), common::k8s_dns1123_label(&p.name));
                if !names.insert(p.name.clone()) {
                    r.error(
                        format!("{path}.name"),
                        format!("Duplicate value: {:?}", p.name),
                    );
                }
            }
            if !(1..=65535).contains(&p.port) {
                r.error(
                    format!("{path}.port"),
                    format!(
                        "Invalid value: {}: must be between 1 and 65535, inclusive",
                        p.port
                    ),
                );
            }
            r.check(
                format!("{path}.protocol"),
                common::one_of(p.protocol(), PROTOCOLS),
            );
            if !seen.insert((p.port, p.protocol().to_string())) {
                r.error(
                    path.clone(),
                    format!(
                        "Duplicate value: {{port: {}, protocol: {}}}",
                        p.port,
                        p.protocol()
                    ),
                );
            }
            match &p.target_port {
                Some(IntOrString::Int(n)) if !(1..=65535).contains(n) => r.error(
                    format!("{path}.targetPort"),
                    format!("Invalid value: {n}: must be between 1 and 65535, inclusive"),
                ),
                Some(IntOrString::String(s)) if !is_port_name(s) => r.error(
                    format!("{path}.targetPort"),
                    format!("Invalid value: {s:?}: must be no more than 15 characters, contain only lowercase letters, digits and '-', with at least one letter"),
                ),
                _ => {}
            }
        }
        let cip = &self.cluster_ip;
        if !cip.is_empty() && cip != "None" && cip.parse::<std::net::IpAddr>().is_err() {
            r.error(
                "spec.clusterIP",
                format!("Invalid value: {cip:?}: must be empty, 'None', or a valid IP address"),
            );
        }
        common::labels(&self.selector, "spec.selector", r);
    }
}

/// Kubernetes IANA_SVC_NAME: ≤ 15 chars, lower case alphanumerics and '-', at least one letter.
fn is_port_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && s.bytes().any(|c| c.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}
