//! networking.istio.io Gateway: a load balancer at the mesh edge (ports, hosts and TLS served).

use super::common::{
    self, Protocol, UNIX_ADDRESS_PREFIX, at, idx, is_false, is_zero_u32, port_text,
};
use crate::meta::StringMap;
use crate::validate::{self, Context, Report, Validate};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Gateway {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<Server>,
    #[serde(default, skip_serializing_if = "StringMap::is_empty")]
    pub selector: StringMap,
}

/// `Server`: one port (or socket) the gateway listens on, with its hosts and TLS.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Server {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bind: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsSettings>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_endpoint: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// `Port` of a gateway server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    #[serde(default)]
    pub number: u32,
    #[serde(default)]
    pub protocol: String,
    #[serde(default)]
    pub name: String,
    /// Deprecated; has no effect on gateways.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub target_port: u32,
}

/// `ServerTLSSettings` (gateway servers and sidecar ingress listeners).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerTlsSettings {
    #[serde(default, skip_serializing_if = "is_false")]
    pub https_redirect: bool,
    /// `PASSTHROUGH` (default), `SIMPLE`, `MUTUAL`, `AUTO_PASSTHROUGH`, `ISTIO_MUTUAL`, `OPTIONAL_MUTUAL`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server_certificate: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub private_key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_certificates: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_crl: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub credential_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credential_names: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_cert_credential_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_certificates: Vec<TlsCertificate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verify_certificate_spki: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verify_certificate_hash: Vec<String>,
    /// `TLS_AUTO`, `TLSV1_0`, `TLSV1_1`, `TLSV1_2`, `TLSV1_3`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub min_protocol_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub max_protocol_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cipher_suites: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ecdh_curves: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
}

/// `ServerTLSSettings.TLSCertificate`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsCertificate {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server_certificate: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub private_key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_certificates: String,
}

const SERVER_TLS_MODES: &[&str] = &[
    "PASSTHROUGH",
    "SIMPLE",
    "MUTUAL",
    "AUTO_PASSTHROUGH",
    "ISTIO_MUTUAL",
    "OPTIONAL_MUTUAL",
];
const TLS_PROTOCOLS: &[&str] = &["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"];
const CIPHER_SUITES: &[&str] = &[
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA",
    "AES256-SHA",
    "DES-CBC3-SHA",
];

/// `security.IsValidCipherSuite`.
fn valid_cipher_suite(cs: &str) -> bool {
    if cs.is_empty() || cs == "ALL" {
        return true;
    }
    let first = cs.chars().next().unwrap_or_default();
    // Operators such as `-` and `+` are let through without parsing the expression.
    !first.is_alphanumeric() || CIPHER_SUITES.contains(&cs)
}

fn go_set_list(set: &BTreeSet<&str>) -> String {
    let items: Vec<&str> = set.iter().copied().collect();
    format!("[{}]", items.join(" "))
}

impl ServerTlsSettings {
    /// The mode, with protobuf's default.
    pub fn effective_mode(&self) -> &str {
        if self.mode.is_empty() {
            "PASSTHROUGH"
        } else {
            &self.mode
        }
    }

    fn is_passthrough(&self) -> bool {
        matches!(self.effective_mode(), "PASSTHROUGH" | "AUTO_PASSTHROUGH")
    }

    /// `validateTLSOptions`, reporting under `path` (the `tls` block).
    pub(crate) fn check(&self, path: &str, report: &mut Report) {
        if !self.mode.is_empty() {
            report.check(
                at(path, "mode"),
                validate::common::one_of(&self.mode, SERVER_TLS_MODES),
            );
        }
        for (field, v) in [
            ("minProtocolVersion", &self.min_protocol_version),
            ("maxProtocolVersion", &self.max_protocol_version),
        ] {
            if !v.is_empty() {
                report.check(at(path, field), validate::common::one_of(v, TLS_PROTOCOLS));
            }
        }
        if matches!(self.min_protocol_version.as_str(), "TLSV1_0" | "TLSV1_1")
            && self.cipher_suites.is_empty()
        {
            report.warning(
                at(path, "minProtocolVersion"),
                "TLS version below TLSV1_2 require setting compatible ciphers as by default they no longer include compatible ciphers.",
            );
        }
        let mut invalid = BTreeSet::new();
        let mut valid = BTreeSet::new();
        let mut duplicate = BTreeSet::new();
        for cs in &self.cipher_suites {
            if !valid_cipher_suite(cs) {
                invalid.insert(cs.as_str());
            } else if !valid.insert(cs.as_str()) {
                duplicate.insert(cs.as_str());
            }
        }
        if !invalid.is_empty() {
            report.warning(
                at(path, "cipherSuites"),
                format!("ignoring invalid cipher suites: {}", go_set_list(&invalid)),
            );
        }
        if !duplicate.is_empty() {
            report.warning(
                at(path, "cipherSuites"),
                format!(
                    "ignoring duplicate cipher suites: {}",
                    go_set_list(&duplicate)
                ),
            );
        }
        let mode = self.effective_mode();
        if mode == "ISTIO_MUTUAL" {
            let checks = [
                (
                    !self.server_certificate.is_empty(),
                    "serverCertificate",
                    "ISTIO_MUTUAL TLS cannot have associated server certificate",
                ),
                (
                    !self.private_key.is_empty(),
                    "privateKey",
                    "ISTIO_MUTUAL TLS cannot have associated private key",
                ),
                (
                    !self.ca_certificates.is_empty(),
                    "caCertificates",
                    "ISTIO_MUTUAL TLS cannot have associated CA bundle",
                ),
                (
                    !self.tls_certificates.is_empty(),
                    "tlsCertificates",
                    "ISTIO_MUTUAL TLS cannot have associated tlsCertificates",
                ),
                (
                    !self.credential_name.is_empty(),
                    "credentialName",
                    "ISTIO_MUTUAL TLS cannot have associated credentialName",
                ),
                (
                    !self.credential_names.is_empty(),
                    "credentialNames",
                    "ISTIO_MUTUAL TLS cannot have associated credentialNames",
                ),
            ];
            for (bad, field, msg) in checks {
                if bad {
                    report.error(at(path, field), msg);
                }
            }
            return;
        }
        if self.is_passthrough()
            && (!self.ca_crl.is_empty()
                || !self.server_certificate.is_empty()
                || !self.private_key.is_empty()
                || !self.ca_certificates.is_empty()
                || !self.tls_certificates.is_empty()
                || !self.credential_name.is_empty()
                || !self.credential_names.is_empty())
        {
            report.warning(
                path,
                format!("{mode} mode does not use certificates, they will be ignored"),
            );
        }
        let sources = [
            !self.server_certificate.is_empty() && !self.private_key.is_empty(),
            !self.credential_name.is_empty(),
            !self.credential_names.is_empty(),
            !self.tls_certificates.is_empty(),
        ];
        if sources.iter().filter(|s| **s).count() > 1 {
            report.error(
                path,
                "only one of credential_name, credential_names, server_certificate/private_key, tls_certificates should be specified",
            );
        }
        let terminating = matches!(mode, "SIMPLE" | "MUTUAL" | "OPTIONAL_MUTUAL");
        if terminating && (!self.credential_name.is_empty() || !self.credential_names.is_empty()) {
            // Credentials are fetched remotely.
            return;
        }
        if terminating {
            let prefix = if mode == "SIMPLE" {
                "SIMPLE TLS"
            } else {
                "MUTUAL TLS"
            };
            if prefix == "MUTUAL TLS" && self.ca_certificates.is_empty() {
                report.error(
                    at(path, "caCertificates"),
                    format!("{prefix} requires a client CA bundle"),
                );
            }
            if self.tls_certificates.len() > 2 {
                report.warning(
                    at(path, "tlsCertificates"),
                    format!("{prefix} can support up to 2 server certificates"),
                );
            }
            let certs: Vec<(String, &str, &str)> = if self.tls_certificates.is_empty() {
                vec![(
                    path.to_string(),
                    self.server_certificate.as_str(),
                    self.private_key.as_str(),
                )]
            } else {
                self.tls_certificates
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        (
                            idx(&at(path, "tlsCertificates"), i),
                            c.server_certificate.as_str(),
                            c.private_key.as_str(),
                        )
                    })
                    .collect()
            };
            for (p, cert, key) in certs {
                if cert.is_empty() {
                    report.error(
                        at(&p, "serverCertificate"),
                        format!("{prefix} requires a server certificate"),
                    );
                }
                if key.is_empty() {
                    report.error(
                        at(&p, "privateKey"),
                        format!("{prefix} requires a private key"),
                    );
                }
            }
        }
        if !self.ca_crl.is_empty() {
            if !self.credential_name.is_empty() {
                report.error(
                    at(path, "caCrl"),
                    "CRL is not supported with credentialName. CRL has to be specified in the credential",
                );
            }
            if mode == "SIMPLE" {
                report.error(at(path, "caCrl"), "CRL is not supported with SIMPLE TLS");
            }
        }
    }
}

impl Port {
    fn text(&self) -> String {
        port_text(self.number, &self.protocol, &self.name, self.target_port)
    }
}

/// `validateServerPort` and `validateServerBind`; returns whether the port had errors.
fn server_port(port: Option<&Port>, bind: &str, path: &str, report: &mut Report) -> bool {
    let before = report.errors.len();
    let pp = at(path, "port");
    match port {
        None => report.error(pp.clone(), "port is required"),
        Some(p) => {
            if Protocol::parse(&p.protocol) == Protocol::Unsupported {
                report.error(
                    at(&pp, "protocol"),
                    format!(
                        "invalid protocol {:?}, supported protocols are HTTP, HTTP2, GRPC, GRPC-WEB, MONGO, REDIS, MYSQL, TCP",
                        p.protocol
                    ),
                );
            }
            if p.number > 0 || !bind.starts_with(UNIX_ADDRESS_PREFIX) {
                report.check(at(&pp, "number"), validate::common::port(p.number.into()));
            }
            if p.target_port > 0 {
                report.error(
                    at(&pp, "targetPort"),
                    "targetPort has no impact on Gateways",
                );
            }
            if p.name.is_empty() {
                report.error(
                    at(&pp, "name"),
                    format!("port name must be set: {}", p.text()),
                );
            }
        }
    }
    let port_failed = report.errors.len() > before;
    let bp = at(path, "bind");
    if let Some(addr) = bind.strip_prefix(UNIX_ADDRESS_PREFIX) {
        report.check(bp, common::unix_address(addr));
        if let Some(p) = port
            && p.number != 0
        {
            report.error(
                at(&pp, "number"),
                format!("port number must be 0 for unix domain socket: {}", p.text()),
            );
        }
    } else if !bind.is_empty() {
        report.check(bp, common::ip_address(bind));
    }
    port_failed
}

/// `validateServer`.
fn server(s: &Server, path: &str, report: &mut Report) {
    if s.hosts.is_empty() {
        report.error(
            at(path, "hosts"),
            "server config must contain at least one host",
        );
    }
    for (i, h) in s.hosts.iter().enumerate() {
        for e in common::namespace_slash_wildcard_hostname(h, true) {
            report.error(idx(&at(path, "hosts"), i), e);
        }
    }
    let port_failed = server_port(s.port.as_ref(), &s.bind, path, report);
    if let Some(tls) = &s.tls {
        tls.check(&at(path, "tls"), report);
    }
    let Some(port) = s.port.as_ref().filter(|_| !port_failed) else {
        return;
    };
    let p = Protocol::parse(&port.protocol);
    match &s.tls {
        None if p.is_tls() => {
            report.error(
                at(path, "tls"),
                "server must have TLS settings for HTTPS/TLS protocols",
            );
        }
        Some(tls) if !p.is_tls() => {
            if p.is_http() {
                // Only an HTTP→HTTPS redirect is allowed on plain text HTTP ports.
                if !tls.is_passthrough()
                    || !tls.ca_certificates.is_empty()
                    || !tls.private_key.is_empty()
                    || !tls.server_certificate.is_empty()
                {
                    report.error(
                        at(path, "tls"),
                        "server cannot have TLS settings for plain text HTTP ports",
                    );
                }
            } else {
                report.error(
                    at(path, "tls"),
                    "server cannot have TLS settings for non HTTPS/TLS ports",
                );
            }
        }
        _ => {}
    }
}

impl Validate for Gateway {
    /// Istio's `ValidateGateway`.
    fn validate(&self, ctx: &Context<'_>, report: &mut Report) {
        let name = &ctx.meta.name;
        if !name.is_empty() && !validate::common::is_dns1123_label(name) {
            report.error("metadata.name", format!("invalid gateway name: {name:?}"));
        }
        if self.servers.is_empty() {
            report.error("spec.servers", "gateway must have at least one server");
        }
        for (i, s) in self.servers.iter().enumerate() {
            server(s, &idx("spec.servers", i), report);
        }
        let mut port_names: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, s) in self.servers.iter().enumerate() {
            let Some(p) = &s.port else {
                continue;
            };
            let sp = idx("spec.servers", i);
            if port_names.insert(p.name.as_str(), i).is_some() {
                report.error(
                    at(&at(&sp, "port"), "name"),
                    format!(
                        "port names in servers must be unique: duplicate name {}",
                        p.name
                    ),
                );
            }
            if !Protocol::parse(&p.protocol).is_http()
                && s.tls.as_ref().is_some_and(|t| t.https_redirect)
            {
                report.warning(
                    at(&at(&sp, "tls"), "httpsRedirect"),
                    "tls.httpsRedirect should only be used with http servers",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {

    use crate::test_support::{errors, warnings};

    fn gw(servers: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: gw\nspec:\n  selector:\n    istio: ingressgateway\n  servers:\n{servers}"
        )
    }

    const FULL: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: my-gateway
  namespace: some-config-namespace
spec:
  selector:
    app: my-gateway-controller
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - uk.bookinfo.com
    - eu.bookinfo.com
    tls:
      httpsRedirect: true
  - port:
      number: 443
      name: https-443
      protocol: HTTPS
    hosts:
    - uk.bookinfo.com
    - eu.bookinfo.com
    tls:
      mode: SIMPLE
      serverCertificate: /etc/certs/servercert.pem
      privateKey: /etc/certs/privatekey.pem
      minProtocolVersion: TLSV1_2
      maxProtocolVersion: TLSV1_3
      cipherSuites: [ECDHE-RSA-AES128-GCM-SHA256, "-AES128-SHA"]
  - port:
      number: 9443
      name: https-9443
      protocol: HTTPS
    hosts:
    - "bookinfo-namespace/*.bookinfo.com"
    tls:
      mode: SIMPLE
      credentialName: bookinfo-secret
  - port:
      number: 9080
      name: http-wildcard
      protocol: HTTP
    hosts:
    - "*"
  - port:
      number: 2379
      name: mongo
      protocol: MONGO
    hosts:
    - "*"
  - port:
      number: 8443
      name: mtls
      protocol: HTTPS
    bind: 0.0.0.0
    name: mutual
    hosts:
    - "./*.example.com"
    tls:
      mode: MUTUAL
      tlsCertificates:
      - serverCertificate: /etc/certs/rsa.pem
        privateKey: /etc/certs/rsa-key.pem
      - serverCertificate: /etc/certs/ecdsa.pem
        privateKey: /etc/certs/ecdsa-key.pem
      caCertificates: /etc/certs/ca.pem
      subjectAltNames: [client.example.com]
      verifyCertificateSpki: [abc]
      verifyCertificateHash: [def]
  - port:
      number: 15443
      name: tls
      protocol: tls
    hosts:
    - "*.local"
    tls:
      mode: AUTO_PASSTHROUGH
  - port:
      number: 0
      name: uds
      protocol: HTTP
    bind: unix:///var/run/gw.sock
    hosts:
    - "*"
"#;

    #[test]
    fn full_example_is_valid() {
        assert!(warnings(FULL).is_empty(), "{:?}", warnings(FULL));
    }

    #[test]
    fn lowercase_protocol_is_accepted() {
        let y = gw(
            "  - port:\n      number: 443\n      name: tls\n      protocol: tls\n    hosts: [\"*.example.com\"]\n    tls:\n      mode: PASSTHROUGH\n",
        );
        assert!(warnings(&y).is_empty());
    }

    #[test]
    fn port_without_protocol() {
        let y = gw("  - port:\n      number: 80\n      name: http\n    hosts: [\"*\"]\n");
        assert_eq!(
            errors(&y),
            vec![
                "spec.servers[0].port.protocol: invalid protocol \"\", supported protocols are HTTP, HTTP2, GRPC, GRPC-WEB, MONGO, REDIS, MYSQL, TCP"
            ]
        );
    }

    #[test]
    fn server_requirements() {
        let y = gw(
            "  - port:\n      number: 70000\n      protocol: HTTP\n      targetPort: 8080\n  - hosts: [\"ns/foo\"]\n",
        );
        assert_eq!(
            errors(&y),
            vec![
                "spec.servers[0].hosts: server config must contain at least one host",
                "spec.servers[0].port.number: port number 70000 must be in the range 1..65535",
                "spec.servers[0].port.targetPort: targetPort has no impact on Gateways",
                "spec.servers[0].port.name: port name must be set: number:70000 protocol:\"HTTP\" target_port:8080",
                "spec.servers[1].hosts[0]: short names (non FQDN) are not allowed",
                "spec.servers[1].port: port is required",
            ]
        );
        let y = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: my.gateway\nspec: {}\n";
        assert_eq!(
            errors(y),
            vec![
                "metadata.name: invalid gateway name: \"my.gateway\"",
                "spec.servers: gateway must have at least one server",
            ]
        );
    }

    #[test]
    fn tls_requirements() {
        let y = gw(
            "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*\"]\n  - port: {number: 444, name: https2, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls:\n      mode: SIMPLE\n  - port: {number: 445, name: https3, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls:\n      mode: MUTUAL\n      credentialName: a\n      serverCertificate: /c.pem\n      privateKey: /k.pem\n",
        );
        assert_eq!(
            errors(&y),
            vec![
                "spec.servers[0].tls: server must have TLS settings for HTTPS/TLS protocols",
                "spec.servers[1].tls.serverCertificate: SIMPLE TLS requires a server certificate",
                "spec.servers[1].tls.privateKey: SIMPLE TLS requires a private key",
                "spec.servers[2].tls: only one of credential_name, credential_names, server_certificate/private_key, tls_certificates should be specified",
            ]
        );
        let y = gw(
            "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n    tls:\n      mode: SIMPLE\n      credentialName: c\n  - port: {number: 81, name: tcp, protocol: TCP}\n    hosts: [\"*\"]\n    tls:\n      httpsRedirect: true\n  - port: {number: 82, name: mtls, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls:\n      mode: ISTIO_MUTUAL\n      credentialName: c\n",
        );
        assert_eq!(
            errors(&y),
            vec![
                "spec.servers[0].tls: server cannot have TLS settings for plain text HTTP ports",
                "spec.servers[1].tls: server cannot have TLS settings for non HTTPS/TLS ports",
                "spec.servers[2].tls.credentialName: ISTIO_MUTUAL TLS cannot have associated credentialName",
            ]
        );
    }

    #[test]
    fn passthrough_warnings() {
        let y = gw(
            "  - port: {number: 443, name: tls, protocol: TLS}\n    hosts: [\"*\"]\n    tls:\n      mode: PASSTHROUGH\n      credentialName: c\n      minProtocolVersion: TLSV1_0\n      cipherSuites: [BOGUS, AES128-SHA, AES128-SHA]\n",
        );
        assert_eq!(
            warnings(&y),
            vec![
                "spec.servers[0].tls.cipherSuites: ignoring invalid cipher suites: [BOGUS]",
                "spec.servers[0].tls.cipherSuites: ignoring duplicate cipher suites: [AES128-SHA]",
                "spec.servers[0].tls: PASSTHROUGH mode does not use certificates, they will be ignored",
            ]
        );
    }

    #[test]
    fn duplicate_port_names_and_bind() {
        let y = gw(
            "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n    bind: not-an-ip\n  - port: {number: 81, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n    bind: unix://relative\n",
        );
        assert_eq!(
            errors(&y),
            vec![
                "spec.servers[0].bind: not-an-ip is not a valid IP",
                "spec.servers[1].bind: relative is not an absolute path to a file",
                "spec.servers[1].port.number: port number must be 0 for unix domain socket: number:81 protocol:\"HTTP\" name:\"http\"",
                "spec.servers[1].port.name: port names in servers must be unique: duplicate name http",
            ]
        );
    }

    #[test]
    fn bad_enum_and_unknown_field() {
        let y = gw(
            "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls:\n      mode: STRICT\n      credentialName: c\n      sni: x\n",
        );
        assert_eq!(
            errors(&y),
            vec![
                "spec.servers[0].tls: unknown field \"sni\"",
                "spec.servers[0].tls.mode: Unsupported value: \"STRICT\": supported values: \"PASSTHROUGH\", \"SIMPLE\", \"MUTUAL\", \"AUTO_PASSTHROUGH\", \"ISTIO_MUTUAL\", \"OPTIONAL_MUTUAL\"",
            ]
        );
    }
}
