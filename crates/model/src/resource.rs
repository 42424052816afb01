//! A decoded mesh resource: apiVersion, kind, metadata and a typed spec.

use crate::core::{NamespaceSpec, ServiceAccountFields, ServiceSpec};
use crate::decode::decode;
use crate::kind::Kind;
use crate::meta::ObjectMeta;
use crate::networking::{
    DestinationRule, Gateway, ServiceEntry, Sidecar, VirtualService, WorkloadEntry, WorkloadGroup,
};
use crate::security::{AuthorizationPolicy, PeerAuthentication};
use crate::validate::{Context, Report, Validate, common};
use serde_json::{Map, Value};

/// The typed body of a resource, one variant per kind.
#[derive(Clone, Debug, PartialEq)]
pub enum Spec {
    Namespace(NamespaceSpec),
    ServiceAccount(ServiceAccountFields),
    Service(ServiceSpec),
    ServiceEntry(ServiceEntry),
    WorkloadEntry(WorkloadEntry),
    WorkloadGroup(WorkloadGroup),
    VirtualService(VirtualService),
    DestinationRule(DestinationRule),
    Gateway(Gateway),
    Sidecar(Sidecar),
    PeerAuthentication(PeerAuthentication),
    AuthorizationPolicy(AuthorizationPolicy),
}

/// A mesh resource as loaded from a file or the API.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    pub api_version: String,
    pub kind: Kind,
    pub metadata: ObjectMeta,
    pub spec: Spec,
    /// Status is kept as written (runtime state such as WorkloadEntry conditions).
    pub status: Option<Value>,
}

impl Resource {
    /// Namespace the resource lives in (`default` when not written; empty for Namespace).
    pub fn namespace(&self) -> &str {
        effective_namespace(self.kind, &self.metadata)
    }

    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// The resource as a Kubernetes JSON object (`apiVersion`, `kind`, `metadata`, `spec`,
    /// `status`); a ServiceAccount's fields are top-level. Loading it back gives an equal resource.
    pub fn to_json(&self) -> Value {
        fn value<T: serde::Serialize>(v: &T) -> Value {
            serde_json::to_value(v).unwrap_or_else(|_| Value::Object(Map::new()))
        }
        let mut obj = Map::new();
        obj.insert("apiVersion".into(), Value::String(self.api_version.clone()));
        obj.insert("kind".into(), Value::String(self.kind.name().to_string()));
        obj.insert("metadata".into(), value(&self.metadata));
        let spec = match &self.spec {
            Spec::ServiceAccount(s) => {
                if let Value::Object(fields) = value(s) {
                    obj.extend(fields);
                }
                None
            }
            Spec::Namespace(s) => Some(value(s)),
            Spec::Service(s) => Some(value(s)),
            Spec::ServiceEntry(s) => Some(value(s)),
            Spec::WorkloadEntry(s) => Some(value(s)),
            Spec::WorkloadGroup(s) => Some(value(s)),
            Spec::VirtualService(s) => Some(value(s)),
            Spec::DestinationRule(s) => Some(value(s)),
            Spec::Gateway(s) => Some(value(s)),
            Spec::Sidecar(s) => Some(value(s)),
            Spec::PeerAuthentication(s) => Some(value(s)),
            Spec::AuthorizationPolicy(s) => Some(value(s)),
        };
        if let Some(spec) = spec {
            obj.insert("spec".into(), spec);
        }
        if let Some(status) = &self.status {
            obj.insert("status".into(), status.clone());
        }
        Value::Object(obj)
    }
}

pub fn effective_namespace(kind: Kind, meta: &ObjectMeta) -> &str {
    if !kind.namespaced() {
        ""
    } else if meta.namespace.is_empty() {
        "default"
    } else {
        &meta.namespace
    }
}

/// Top-level keys each kind allows besides `apiVersion`, `kind` and `metadata`.
fn body_keys(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::ServiceAccount => &[
            "secrets",
            "imagePullSecrets",
            "automountServiceAccountToken",
        ],
        _ => &["spec", "status"],
    }
}

/// Decodes and validates one document already known to be `kind`.
/// Returns the resource when it decoded, and every problem found.
pub fn decode_resource(
    kind: Kind,
    api_version: &str,
    obj: &Map<String, Value>,
) -> (Option<Resource>, Report) {
    let mut report = Report::default();
    for key in obj.keys() {
        let known = matches!(key.as_str(), "apiVersion" | "kind" | "metadata")
            || body_keys(kind).contains(&key.as_str());
        if !known {
            report.error("", format!("unknown field {key:?}"));
        }
    }
    let empty = Value::Object(Map::new());
    let metadata: Option<ObjectMeta> = match obj.get("metadata") {
        None | Some(Value::Null) => Some(ObjectMeta::default()),
        Some(v) => decode(v, "metadata", &mut report),
    };
    let spec_value = obj.get("spec").filter(|v| !v.is_null()).unwrap_or(&empty);
    let spec = match kind {
        Kind::ServiceAccount => {
            let mut body = obj.clone();
            body.retain(|k, _| body_keys(kind).contains(&k.as_str()));
            decode(&Value::Object(body), "", &mut report).map(Spec::ServiceAccount)
        }
        Kind::Namespace => decode(spec_value, "spec", &mut report).map(Spec::Namespace),
        Kind::Service => decode(spec_value, "spec", &mut report).map(Spec::Service),
        Kind::ServiceEntry => decode(spec_value, "spec", &mut report).map(Spec::ServiceEntry),
        Kind::WorkloadEntry => decode(spec_value, "spec", &mut report).map(Spec::WorkloadEntry),
        Kind::WorkloadGroup => decode(spec_value, "spec", &mut report).map(Spec::WorkloadGroup),
        Kind::VirtualService => decode(spec_value, "spec", &mut report).map(Spec::VirtualService),
        Kind::DestinationRule => decode(spec_value, "spec", &mut report).map(Spec::DestinationRule),
        Kind::Gateway => decode(spec_value, "spec", &mut report).map(Spec::Gateway),
        Kind::Sidecar => decode(spec_value, "spec", &mut report).map(Spec::Sidecar),
        Kind::PeerAuthentication => {
            decode(spec_value, "spec", &mut report).map(Spec::PeerAuthentication)
        }
        Kind::AuthorizationPolicy => {
            decode(spec_value, "spec", &mut report).map(Spec::AuthorizationPolicy)
        }
    };
    let (Some(metadata), Some(spec)) = (metadata, spec) else {
        return (None, report);
    };
    let resource = Resource {
        api_version: api_version.to_string(),
        kind,
        metadata,
        spec,
        status: obj.get("status").filter(|v| !v.is_null()).cloned(),
    };
    validate_metadata(&resource, &mut report);
    let ctx = Context {
        meta: &resource.metadata,
        namespace: resource.namespace(),
    };
    resource.spec.as_validate().validate(&ctx, &mut report);
    (Some(resource), report)
}

fn validate_metadata(r: &Resource, report: &mut Report) {
    let m = &r.metadata;
    if m.name.is_empty() && m.generate_name.is_empty() {
        report.error(
            "metadata.name",
            "Required value: name or generateName is required",
        );
    } else if !m.name.is_empty() {
        let check = match r.kind {
            Kind::Namespace | Kind::Service => common::k8s_dns1123_label(&m.name),
            _ => common::k8s_dns1123_subdomain(&m.name),
        };
        report.check("metadata.name", check);
    }
    if !m.namespace.is_empty() {
        report.check(
            "metadata.namespace",
            common::k8s_dns1123_label(&m.namespace),
        );
    }
    common::labels(&m.labels, "metadata.labels", report);
    if m.annotations.contains_key("istio.io/dry-run") && r.kind != Kind::AuthorizationPolicy {
        report.error(
            "metadata.annotations",
            format!(
                "{}/{} has unsupported annotation istio.io/dry-run, please remove the annotation",
                r.namespace(),
                m.name
            ),
        );
    }
}

impl Spec {
    fn as_validate(&self) -> &dyn Validate {
        match self {
            Spec::Namespace(s) => s,
            Spec::ServiceAccount(s) => s,
            Spec::Service(s) => s,
            Spec::ServiceEntry(s) => s,
            Spec::WorkloadEntry(s) => s,
            Spec::WorkloadGroup(s) => s,
            Spec::VirtualService(s) => s,
            Spec::DestinationRule(s) => s,
            Spec::Gateway(s) => s,
            Spec::Sidecar(s) => s,
            Spec::PeerAuthentication(s) => s,
            Spec::AuthorizationPolicy(s) => s,
        }
    }
}
