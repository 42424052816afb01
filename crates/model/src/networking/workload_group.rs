//! networking.istio.io WorkloadGroup: the template WorkloadEntries of a VM group are made from,
//! and how their readiness is probed.

use super::workload_entry::WorkloadEntry;
use crate::meta::StringMap;
use crate::validate::{Context, Report, Validate, common};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadGroup {
    /// Always serialized (as `metadata: {}` when empty), as istioctl writes it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: WorkloadGroupObjectMeta,
    /// Required; `None` only when not written (reported by validation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<WorkloadEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ReadinessProbe>,
}

/// Labels and annotations copied onto the WorkloadEntries made from the group.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadGroupObjectMeta {
    #[serde(default, skip_serializing_if = "StringMap::is_empty")]
    pub labels: StringMap,
    #[serde(default, skip_serializing_if = "StringMap::is_empty")]
    pub annotations: StringMap,
}

/// How the sidecar on the VM checks the application. Exactly one method is expected
/// (the proto's `health_check_method` oneof).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessProbe {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub initial_delay_seconds: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout_seconds: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub period_seconds: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub success_threshold: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failure_threshold: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpHealthCheckConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpHealthCheckConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecHealthCheckConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcHealthCheckConfig>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpHealthCheckConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub port: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// `HTTP` or `HTTPS` (empty means HTTP).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scheme: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_headers: Vec<HttpHeader>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpHeader {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpHealthCheckConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub port: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecHealthCheckConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcHealthCheckConfig {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub port: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
}

fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Accepts `null` for a struct that is always present (protobuf JSON treats it as unset).
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

impl WorkloadGroup {
    /// The group `istioctl x workload group create` writes from its flags: metadata always
    /// present, a template holding only what was given (`weight` 0 means unset), no probe.
    pub fn from_create_flags(
        labels: StringMap,
        annotations: StringMap,
        ports: BTreeMap<String, u32>,
        service_account: &str,
        network: &str,
        locality: &str,
        weight: u32,
    ) -> Self {
        WorkloadGroup {
            metadata: WorkloadGroupObjectMeta {
                labels,
                annotations,
            },
            template: Some(WorkloadEntry {
                ports,
                service_account: service_account.to_string(),
                network: network.to_string(),
                locality: locality.to_string(),
                weight: (weight != 0).then_some(weight),
                ..Default::default()
            }),
            probe: None,
        }
    }
}

impl Validate for WorkloadGroup {
    fn validate(&self, _ctx: &Context<'_>, report: &mut Report) {
        match &self.template {
            None => report.error("spec.template", "template is required"),
            Some(t) => validate_template(t, "spec.template", report),
        }
        for (k, v) in &self.metadata.labels {
            let path = format!("spec.metadata.labels[{k}]");
            for check in [common::label_key(k), common::label_value(v)] {
                if let Err(e) = check {
                    report.error(path.clone(), format!("invalid labels: {e}"));
                }
            }
        }
        if let Some(p) = &self.probe {
            validate_readiness_probe(p, "spec.probe", report);
        }
    }
}

/// Istio does not run WorkloadEntry validation on the template (address and the like are filled
/// in per instance); the CRD's own rules still apply, with the CRD's messages.
fn validate_template(t: &WorkloadEntry, path: &str, report: &mut Report) {
    if let Some(socket) = t.address.strip_prefix("unix://") {
        if !socket.starts_with('/') && !socket.starts_with('@') {
            report.error(
                format!("{path}.address"),
                "UDS must be an absolute path or abstract socket",
            );
        }
        if socket.ends_with('/') {
            report.error(format!("{path}.address"), "UDS may not be a dir");
        }
        if !t.ports.is_empty() {
            report.error(path, "UDS may not include ports");
        }
    }
    for (name, port) in &t.ports {
        let at = format!("{path}.ports[{name}]");
        if name.len() >= 63 || !common::is_dns1123_label(name) {
            report.error(at.clone(), "port name must be valid");
        }
        if !(1..=65535).contains(port) {
            report.error(at, "port must be between 1-65535");
        }
    }
}

/// Istio's `validateReadinessProbe`, reporting at `path` (`spec.probe`).
pub fn validate_readiness_probe(p: &ReadinessProbe, path: &str, report: &mut Report) {
    for (field, value) in [
        ("periodSeconds", p.period_seconds),
        ("initialDelaySeconds", p.initial_delay_seconds),
        ("timeoutSeconds", p.timeout_seconds),
        ("successThreshold", p.success_threshold),
        ("failureThreshold", p.failure_threshold),
    ] {
        if value < 0 {
            report.error(
                format!("{path}.{field}"),
                format!("{field} must be non-negative"),
            );
        }
    }
    let methods = usize::from(p.http_get.is_some())
        + usize::from(p.tcp_socket.is_some())
        + usize::from(p.exec.is_some())
        + usize::from(p.grpc.is_some());
    if methods == 0 {
        // Istio's wording for a probe without a method (Go's `%T` of nil).
        report.error(path, "unknown health check method <nil>");
    } else if methods > 1 {
        report.error(
            path,
            "only one of httpGet, tcpSocket, exec or grpc can be set",
        );
    }
    if let Some(h) = &p.http_get {
        let at = format!("{path}.httpGet");
        report.check(format!("{at}.port"), common::port(i64::from(h.port)));
        if !h.scheme.is_empty() && h.scheme != "HTTPS" && h.scheme != "HTTP" {
            report.error(
                format!("{at}.scheme"),
                "httpGet.scheme must be one of \"HTTPS\", \"HTTP\"",
            );
        }
        for (i, header) in h.http_headers.iter().enumerate() {
            report.check(
                format!("{at}.httpHeaders[{i}].name"),
                probe_header_name(&header.name),
            );
        }
    }
    if let Some(t) = &p.tcp_socket {
        report.check(
            format!("{path}.tcpSocket.port"),
            common::port(i64::from(t.port)),
        );
    }
    if let Some(e) = &p.exec
        && e.command.is_empty()
    {
        report.error(format!("{path}.exec.command"), "exec.command is required");
    }
    // Istio's webhook has no gRPC case and rejects every gRPC probe (its default branch says
    // `unknown health check method *v1alpha3.ReadinessProbe_Grpc`). The API defines gRPC probes
    // and Weft's agent runs them, so Weft accepts them and checks the port.
    if let Some(g) = &p.grpc {
        report.check(format!("{path}.grpc.port"), common::port(i64::from(g.port)));
    }
}

/// Istio's `ValidateProbeHeaderName`.
fn probe_header_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    if !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') {
        return Err(format!("header name {name} is not a valid header name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{Outcome, load_str};
    use crate::resource::Spec;

    fn load(spec: &str) -> Outcome {
        let doc = format!(
            "apiVersion: networking.istio.io/v1\nkind: WorkloadGroup\nmetadata:\n  name: billing\n  namespace: vms\nspec:\n{spec}"
        );
        let out = load_str("wg.yaml", &doc);
        assert_eq!(out.len(), 1);
        out.into_iter().next().unwrap().outcome
    }

    fn errors(spec: &str) -> Vec<String> {
        match load(spec) {
            Outcome::Invalid { errors, .. } => errors.iter().map(|e| e.to_string()).collect(),
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    fn valid(spec: &str) -> WorkloadGroup {
        match load(spec) {
            Outcome::Valid { resource, warnings } => {
                assert!(warnings.is_empty(), "{warnings:?}");
                match resource.spec {
                    Spec::WorkloadGroup(wg) => wg,
                    other => panic!("unexpected spec {other:?}"),
                }
            }
            other => panic!("expected valid, got {other:?}"),
        }
    }

    #[test]
    fn seed_group_with_http_probe_is_valid() {
        let wg = valid(
            "  metadata:\n    labels:\n      app: billing\n    annotations:\n      owner: team-a\n  template:\n    serviceAccount: billing\n    network: vm-net\n    ports:\n      http: 8080\n  probe:\n    periodSeconds: 5\n    initialDelaySeconds: 1\n    httpGet:\n      port: 8080\n      path: /api/healthz\n",
        );
        let probe = wg.probe.as_ref().unwrap();
        assert_eq!(probe.period_seconds, 5);
        assert_eq!(probe.http_get.as_ref().unwrap().path, "/api/healthz");
        assert_eq!(wg.metadata.labels["app"], "billing");
        let json = serde_json::to_value(&wg).unwrap();
        assert_eq!(json["probe"]["httpGet"]["port"], 8080);
        assert!(json["probe"].get("timeoutSeconds").is_none());
    }

    #[test]
    fn other_probe_methods_are_valid() {
        valid(
            "  template: {}\n  probe:\n    tcpSocket:\n      port: 3306\n      host: 127.0.0.1\n",
        );
        valid(
            "  template: {}\n  probe:\n    exec:\n      command: [cat, /tmp/healthy]\n    failureThreshold: 3\n    successThreshold: 1\n    timeoutSeconds: 2\n",
        );
        valid(
            "  template: {}\n  probe:\n    httpGet:\n      port: 443\n      scheme: HTTPS\n      host: vm.local\n      httpHeaders:\n      - name: X-Probe\n        value: ok\n",
        );
        valid("  metadata: null\n  template:\n    serviceAccount: sa\n");
    }

    #[test]
    fn empty_group_serializes_like_istioctl() {
        let wg = WorkloadGroup::from_create_flags(
            StringMap::new(),
            StringMap::new(),
            BTreeMap::new(),
            "default",
            "",
            "",
            0,
        );
        let json = serde_json::to_value(&wg).unwrap();
        assert_eq!(
            serde_json::to_string(&json).unwrap(),
            r#"{"metadata":{},"template":{"serviceAccount":"default"}}"#
        );
        let full = WorkloadGroup::from_create_flags(
            [("app".to_string(), "foo".to_string())].into(),
            [("a".to_string(), "b".to_string())].into(),
            [("http".to_string(), 8080)].into(),
            "sa",
            "net",
            "us-west",
            3,
        );
        assert_eq!(
            serde_json::to_string(&full).unwrap(),
            r#"{"metadata":{"labels":{"app":"foo"},"annotations":{"a":"b"}},"template":{"ports":{"http":8080},"network":"net","locality":"us-west","weight":3,"serviceAccount":"sa"}}"#
        );
        // A loaded empty group round-trips to the same shape.
        let loaded = valid("  template:\n    serviceAccount: default\n");
        assert_eq!(loaded, wg);
    }

    #[test]
    fn template_rules() {
        assert_eq!(
            errors("  {}\n"),
            vec!["spec.template: template is required"]
        );
        assert_eq!(
            errors("  template:\n    address: unix://sock/\n    ports:\n      Bad_Name: 0\n"),
            vec![
                "spec.template.address: UDS must be an absolute path or abstract socket",
                "spec.template.address: UDS may not be a dir",
                "spec.template: UDS may not include ports",
                "spec.template.ports[Bad_Name]: port name must be valid",
                "spec.template.ports[Bad_Name]: port must be between 1-65535",
            ]
        );
        assert_eq!(
            errors("  metadata:\n    labels:\n      \"-x\": \"bad value\"\n  template: {}\n"),
            vec![
                "spec.metadata.labels[-x]: invalid labels: invalid tag key: \"-x\"",
                "spec.metadata.labels[-x]: invalid labels: invalid tag value: \"bad value\"",
            ]
        );
    }

    #[test]
    fn probe_rules() {
        assert_eq!(
            errors("  template: {}\n  probe:\n    periodSeconds: -1\n    failureThreshold: -2\n"),
            vec![
                "spec.probe.periodSeconds: periodSeconds must be non-negative",
                "spec.probe.failureThreshold: failureThreshold must be non-negative",
                "spec.probe: unknown health check method <nil>",
            ]
        );
        assert_eq!(
            errors(
                "  template: {}\n  probe:\n    httpGet:\n      path: /\n      scheme: TCP\n      httpHeaders:\n      - name: \"\"\n      - name: X_Bad\n    tcpSocket:\n      port: 70000\n"
            ),
            vec![
                "spec.probe: only one of httpGet, tcpSocket, exec or grpc can be set",
                "spec.probe.httpGet.port: port number 0 must be in the range 1..65535",
                "spec.probe.httpGet.scheme: httpGet.scheme must be one of \"HTTPS\", \"HTTP\"",
                "spec.probe.httpGet.httpHeaders[0].name: header name cannot be empty",
                "spec.probe.httpGet.httpHeaders[1].name: header name X_Bad is not a valid header name",
                "spec.probe.tcpSocket.port: port number 70000 must be in the range 1..65535",
            ]
        );
        assert_eq!(
            errors("  template: {}\n  probe:\n    exec: {}\n"),
            vec!["spec.probe.exec.command: exec.command is required"]
        );
        assert_eq!(
            valid("  template: {}\n  probe:\n    grpc:\n      port: 9000\n")
                .probe
                .and_then(|p| p.grpc)
                .map(|g| g.port),
            Some(9000)
        );
        assert_eq!(
            errors("  template: {}\n  probe:\n    grpc:\n      port: 0\n"),
            vec!["spec.probe.grpc.port: port number 0 must be in the range 1..65535"]
        );
    }

    #[test]
    fn unknown_fields_are_reported() {
        assert_eq!(
            errors("  template: {}\n  probe:\n    httpGet:\n      port: 80\n      headers: []\n"),
            vec!["spec.probe.httpGet: unknown field \"headers\""]
        );
    }
}
