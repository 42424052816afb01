//! networking.istio.io DestinationRule: policies applied to traffic for a service after routing.

use super::common::{self, MatchLabelsSelector, at, idx};
use super::traffic_policy::TrafficPolicy;
use crate::meta::StringMap;
use crate::validate::{self, Context, Report, Validate};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRule {
    #[serde(default)]
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<Box<TrafficPolicy>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<Subset>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<MatchLabelsSelector>,
}

/// A named set of endpoints of the host (selected by labels), with its own policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subset {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "StringMap::is_empty")]
    pub labels: StringMap,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<Box<TrafficPolicy>>,
}

impl Validate for DestinationRule {
    /// Istio's `ValidateDestinationRule`.
    fn validate(&self, ctx: &Context<'_>, report: &mut Report) {
        report.check("spec.host", validate::common::wildcard_domain(&self.host));
        if let Some(tp) = &self.traffic_policy {
            tp.check(ctx.namespace, "spec.trafficPolicy", report);
        }
        let mut names = BTreeSet::new();
        for (i, s) in self.subsets.iter().enumerate() {
            let p = idx("spec.subsets", i);
            if !names.insert(s.name.as_str()) {
                report.error(
                    at(&p, "name"),
                    format!("duplicate subset names: {}", s.name),
                );
            }
            report.check(at(&p, "name"), common::subset_name(&s.name));
            validate::common::labels(&s.labels, &at(&p, "labels"), report);
            if let Some(tp) = &s.traffic_policy {
                tp.check(ctx.namespace, &at(&p, "trafficPolicy"), report);
            }
        }
        common::export_to(
            ctx.namespace,
            &self.export_to,
            false,
            self.workload_selector.is_some(),
            "spec.exportTo",
            report,
        );
        common::match_labels_selector(
            self.workload_selector.as_ref(),
            "spec.workloadSelector",
            report,
        );
    }
}

#[cfg(test)]
mod tests {

    use crate::test_support::{errors, warnings};

    fn dr(spec: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: r\n  namespace: prod\nspec:\n{spec}"
        )
    }

    const FULL: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: prod
spec:
  host: reviews.prod.svc.cluster.local
  exportTo: [".", "istio-system"]
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpCookie:
          name: session-id
          path: /
          ttl: 3600s
          attributes:
          - name: SameSite
            value: Strict
        ringHash:
          minimumRingSize: 1024
      localityLbSetting:
        enabled: true
        failover:
        - from: us-east
          to: us-west
        failoverPriority: [topology.istio.io/network]
      warmup:
        duration: 60s
        minimumPercent: 10
        aggression: 1.5
    connectionPool:
      tcp:
        maxConnections: 100
        connectTimeout: 30ms
        maxConnectionDuration: 1h
        idleTimeout: 0s
        tcpKeepalive:
          probes: 9
          time: 7200s
          interval: 75s
      http:
        http1MaxPendingRequests: 1024
        http2MaxRequests: 1024
        maxRequestsPerConnection: 10
        maxRetries: 3
        idleTimeout: 1h
        h2UpgradePolicy: UPGRADE
        maxConcurrentStreams: 100
        http2KeepAlive:
          interval: 15s
          timeout: 5s
    outlierDetection:
      consecutive5xxErrors: 7
      consecutiveGatewayErrors: 5
      consecutiveLocalOriginFailures: 3
      splitExternalLocalOriginErrors: true
      interval: 5m
      baseEjectionTime: 15m
      maxEjectionPercent: 50
      minHealthPercent: 20
      outlierDetectionHttpErrorCodes: [500, 503]
    tls:
      mode: SIMPLE
      credentialName: reviews-cert
      sni: reviews.example.com
    portLevelSettings:
    - port:
        number: 9080
      loadBalancer:
        simple: LEAST_REQUEST
        zoneAwareLbSetting:
          enabled: true
          minClusterSize: 3
      tls:
        mode: MUTUAL
        clientCertificate: /etc/certs/cert.pem
        privateKey: /etc/certs/key.pem
        caCertificates: /etc/certs/ca.pem
        subjectAltNames: [reviews.example.com]
    retryBudget:
      percent: 20
      minRetryConcurrency: 3
      budgetInterval: 10s
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
    trafficPolicy:
      loadBalancer:
        simple: ROUND_ROBIN
        warmupDurationSecs: 30s
      tunnel:
        protocol: CONNECT
        targetHost: egress.example.com
        targetPort: 8443
  - name: v3
    labels:
      version: v3
    trafficPolicy:
      loadBalancer:
        consistentHash:
          useSourceIp: true
          maglev:
            tableSize: 65537
      proxyProtocol:
        version: V2
"#;

    #[test]
    fn full_example_is_valid() {
        assert!(warnings(FULL).is_empty(), "{:?}", warnings(FULL));
    }

    #[test]
    fn workload_selector_and_backend_utilization() {
        let y = dr(
            "  host: \"*.example.com\"\n  workloadSelector:\n    matchLabels:\n      app: web\n  exportTo: [\".\"]\n  trafficPolicy:\n    loadBalancer:\n      backendUtilization:\n        errorUtilizationPenaltyPercent: 10\n        metricNamesForComputingUtilization: [cpu]\n        weightUpdatePeriod: 1s\n",
        );
        assert!(warnings(&y).is_empty());
    }

    #[test]
    fn lb_oneof_conflict() {
        let y = dr(
            "  host: reviews\n  trafficPolicy:\n    loadBalancer:\n      simple: LEAST_CONN\n      consistentHash:\n        httpCookie:\n          name: session-id\n          ttl: 3600s\n",
        );
        assert_eq!(
            errors(&y),
            vec![
                "spec.trafficPolicy.loadBalancer: must validate one and only one schema (oneOf): only one of simple, consistentHash, backendUtilization can be set"
            ]
        );
    }

    #[test]
    fn consistent_hash_checks() {
        let y = dr(
            "  host: reviews\n  trafficPolicy:\n    loadBalancer:\n      consistentHash:\n        httpHeaderName: x-user\n        useSourceIp: true\n        minimumRingSize: 1024\n        maglev:\n          tableSize: 1000\n",
        );
        assert_eq!(
            errors(&y),
            vec![
                "spec.trafficPolicy.loadBalancer.consistentHash: must validate one and only one schema (oneOf): only one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName can be set",
                "spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize: only one of MinimumRingSize or Maglev/Ringhash can be specified",
                "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize: tableSize must be a prime number for maglev",
            ]
        );
        let y = dr(
            "  host: reviews\n  trafficPolicy:\n    loadBalancer:\n      consistentHash:\n        httpCookie:\n          ttl: 0s\n",
        );
        assert_eq!(
            errors(&y),
            vec![
                "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name: name required for HttpCookie"
            ]
        );
    }

    #[test]
    fn deprecated_fields_warn() {
        let y = dr(
            "  host: reviews\n  trafficPolicy:\n    outlierDetection:\n      consecutiveErrors: 5\n    loadBalancer:\n      consistentHash:\n        useSourceIp: true\n        minimumRingSize: 1024\n",
        );
        assert_eq!(
            warnings(&y),
            vec![
                "spec.trafficPolicy.outlierDetection.consecutiveErrors: outlier detection consecutive errors is deprecated, use consecutiveGatewayErrors or consecutive5xxErrors instead",
                "spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize: consistent hash MinimumRingSize is deprecated, use ConsistentHashLB's RingHash configuration instead",
            ]
        );
    }

    #[test]
    fn misplaced_field_is_unknown() {
        let y = dr(
            "  host: reviews\n  trafficPolicy:\n    connectionPool:\n      http:\n        consecutiveGatewayErrors: 5\n",
        );
        assert_eq!(
            errors(&y),
            vec![
                "spec.trafficPolicy.connectionPool.http: unknown field \"consecutiveGatewayErrors\""
            ]
        );
    }

    #[test]
    fn host_and_subsets() {
        let y = dr(
            "  host: \"\"\n  subsets:\n  - name: v1\n    labels:\n      version: \"v 1\"\n  - name: v1\n  - name: Bad_Name\n    trafficPolicy: {}\n",
        );
        assert_eq!(
            errors(&y),
            vec![
                "spec.host: empty domain name not allowed",
                "spec.subsets[0].labels[version]: invalid tag value: \"v 1\"",
                "spec.subsets[1].name: duplicate subset names: v1",
                "spec.subsets[2].name: subset name is invalid: Bad_Name",
                "spec.subsets[2].trafficPolicy: traffic policy must have at least one field",
            ]
        );
    }

    #[test]
    fn connection_pool_and_outlier_checks() {
        let y = dr(
            "  host: reviews\n  trafficPolicy:\n    connectionPool:\n      tcp:\n        maxConnections: -1\n        connectTimeout: 0.5ms\n      http:\n        http2MaxRequests: -1\n        h2UpgradePolicy: UPGRADE\n        useClientProtocol: true\n        http2KeepAlive:\n          interval: 10s\n    outlierDetection:\n      maxEjectionPercent: 101\n      consecutiveLocalOriginFailures: 2\n      outlierDetectionHttpErrorCodes: [600]\n",
        );
        assert_eq!(
            errors(&y),
            vec![
                "spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures: outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false",
                "spec.trafficPolicy.outlierDetection.maxEjectionPercent: percentage 101 is not in range 0..100",
                "spec.trafficPolicy.outlierDetection.outlierDetectionHttpErrorCodes[0]: Invalid value: 600: must be between 100 and 599, inclusive",
                "spec.trafficPolicy.connectionPool.http.http2MaxRequests: http2 max requests must be non-negative",
                "spec.trafficPolicy.connectionPool.http.useClientProtocol: use client protocol must not be true when H2UpgradePolicy is UPGRADE",
                "spec.trafficPolicy.connectionPool.http.http2KeepAlive.timeout: http2 keepalive timeout is required",
                "spec.trafficPolicy.connectionPool.tcp.maxConnections: max connections must be non-negative",
                "spec.trafficPolicy.connectionPool.tcp.connectTimeout: duration must be greater than 1ms",
            ]
        );
        let y = dr("  host: reviews\n  trafficPolicy:\n    connectionPool: {}\n");
        assert_eq!(
            errors(&y),
            vec!["spec.trafficPolicy.connectionPool: connection pool must have at least one field"]
        );
    }

    #[test]
    fn tls_checks() {
        let y = dr(
            "  host: reviews\n  trafficPolicy:\n    tls:\n      mode: MUTUAL\n    portLevelSettings:\n    - port:\n        number: 443\n      tls:\n        mode: SIMPLE\n        credentialName: cert\n        caCertificates: /ca.pem\n    - tls:\n        mode: STRICT\n    - port:\n        number: 80\n",
        );
        assert_eq!(
            errors(&y),
            vec![
                "spec.trafficPolicy.tls.clientCertificate: client certificate required for mutual tls",
                "spec.trafficPolicy.tls.privateKey: private key required for mutual tls",
                "spec.trafficPolicy.portLevelSettings[0].tls: cannot specify client certificates or CA certificate or CA CRL If credentialName is set",
                "spec.trafficPolicy.portLevelSettings[1].port: portTrafficPolicy must have valid port",
                "spec.trafficPolicy.portLevelSettings[1].tls.mode: Unsupported value: \"STRICT\": supported values: \"DISABLE\", \"SIMPLE\", \"MUTUAL\", \"ISTIO_MUTUAL\"",
                "spec.trafficPolicy.portLevelSettings[2]: port traffic policy must have at least one field",
            ]
        );
        let y = dr(
            "  host: reviews\n  trafficPolicy:\n    tls:\n      mode: SIMPLE\n      insecureSkipVerify: true\n      subjectAltNames: [a]\n      credentialName: configmap://other/ca\n",
        );
        assert_eq!(
            errors(&y),
            vec![
                "spec.trafficPolicy.tls.credentialName: invalid configmap:// credentialName: namespace must match the configuration namespace \"prod\"",
                "spec.trafficPolicy.tls: cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set true",
            ]
        );
    }

    #[test]
    fn locality_and_warmup_checks() {
        let y = dr(
            "  host: reviews\n  trafficPolicy:\n    loadBalancer:\n      localityLbSetting:\n        distribute:\n        - from: us-east/*\n          to:\n            us-east/*: 60\n            us-west/*: 30\n      warmup:\n        minimumPercent: 101\n        aggression: 0\n",
        );
        assert_eq!(
            errors(&y),
            vec![
                "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to: total locality weight 90 != 100",
                "spec.trafficPolicy.loadBalancer.warmup.duration: duration is required",
                "spec.trafficPolicy.loadBalancer.warmup.minimumPercent: minimumPercent value should be less than or equal to 100",
                "spec.trafficPolicy.loadBalancer.warmup.aggression: aggression should be greater than 0",
            ]
        );
        let y = dr(
            "  host: reviews\n  trafficPolicy:\n    loadBalancer:\n      localityLbSetting:\n        failover:\n        - from: us-east\n          to: us-east\n",
        );
        assert_eq!(
            errors(&y),
            vec![
                "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]: locality lb failover settings must specify different regions"
            ]
        );
    }

    #[test]
    fn tunnel_and_proxy_protocol() {
        let y = dr(
            "  host: reviews\n  trafficPolicy:\n    tunnel:\n      targetHost: egress\n      targetPort: 8443\n    proxyProtocol:\n      version: V1\n",
        );
        assert_eq!(
            errors(&y),
            vec!["spec.trafficPolicy: tunnel and proxyProtocol must not be set together"]
        );
        let y = dr(
            "  host: reviews\n  trafficPolicy:\n    tunnel:\n      protocol: GET\n      targetHost: \"bad host\"\n",
        );
        assert_eq!(
            errors(&y),
            vec![
                "spec.trafficPolicy.tunnel.protocol: tunnel protocol must be \"CONNECT\" or \"POST\"",
                "spec.trafficPolicy.tunnel.targetHost: tunnel target host must be valid FQDN or IP address: domain name \"bad host\" invalid (label \"bad host\" invalid); bad host is not a valid IP",
                "spec.trafficPolicy.tunnel.targetPort: tunnel target port is invalid: port number 0 must be in the range 1..65535",
            ]
        );
    }

    #[test]
    fn export_to_and_selector() {
        let y = dr("  host: reviews\n  exportTo: [prod, \".\", \"*\"]\n");
        assert_eq!(
            errors(&y),
            vec![
                "spec.exportTo[1]: duplicate entries in exportTo: . and current namespace prod",
                "spec.exportTo: cannot have both public (*) and non-public exportTo values for a resource",
            ]
        );
        let y = dr(
            "  host: reviews\n  exportTo: [other]\n  workloadSelector:\n    matchLabels:\n      app: \"*\"\n",
        );
        assert_eq!(
            errors(&y),
            vec![
                "spec.exportTo: destination rule with workload selector cannot have exportTo beyond current namespace",
                "spec.workloadSelector.matchLabels[app]: wildcard is not supported in selector: \"app=*\"",
            ]
        );
    }
}
