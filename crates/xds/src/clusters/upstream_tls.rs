//! TLS towards the upstream (Istio's `buildUpstreamTLSSettings` and
//! `applyUpstreamTLSSettings`): the DestinationRule's `tls` when set, else auto mTLS.
//!
//! - `DISABLE`: plaintext, even to sidecars.
//! - `ISTIO_MUTUAL`: mTLS to every endpoint (one `transport_socket`, overriding auto mTLS's
//!   per-endpoint choice), SNI and SANs from the rule or Istio's defaults.
//! - `SIMPLE` / `MUTUAL`: TLS with the files the rule names (`caCertificates`, default: the OS
//!   bundle; `clientCertificate` and `privateKey` for MUTUAL), `sni` (else Envoy's auto SNI from
//!   the Host header) and `subjectAltNames` (else auto SAN validation). A `credentialName` is
//!   not served to sidecars (as Istio, for rules without a workload selector): no TLS.
//! - unset: auto mTLS for in-mesh services: `tlsMode: istio` endpoints get mTLS, others
//!   plaintext; an ORIGINAL_DST cluster gets mTLS only if every endpoint has a sidecar.

use super::draft::Draft;
use crate::registry::{Service, ServiceSource, TlsMode};
use crate::tls::{TLS_SOCKET, istio_mutual_upstream, raw_buffer};
use crate::util::{one_field_struct, transport_socket};
use std::net::IpAddr;
use weft_model::networking::ClientTlsSettings;
use weft_proto::envoy_types::pb::envoy::config::cluster::v3::cluster;
use weft_proto::envoy_types::pb::envoy::config::core::v3::{
    DataSource, TransportSocket, UpstreamHttpProtocolOptions, data_source,
};
use weft_proto::envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, SubjectAltNameMatcher, TlsCertificate,
    TlsParameters, UpstreamTlsContext, common_tls_context, subject_alt_name_matcher,
    tls_parameters,
};
use weft_proto::envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use weft_proto::envoy_types::util::pack_any;

/// What pilot-agent resolves `caCertificates: system` to first (Debian/Ubuntu's bundle).
/// Istio's agent probes a list of distribution paths; translation cannot look, so it names the
/// first.
pub(crate) const OS_ROOT_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The cluster's service and the SNI Istio gives its ISTIO_MUTUAL connections.
pub(crate) struct Upstream<'a> {
    pub svc: &'a Service,
    pub port: u32,
    pub sni: String,
}

pub(crate) fn apply(draft: &mut Draft, tls: Option<&ClientTlsSettings>, up: &Upstream<'_>) {
    let original_dst = draft.kind() == Some(cluster::DiscoveryType::OriginalDst);
    let Some(tls) = tls else {
        auto_mtls(draft, up, original_dst);
        return;
    };
    let socket = match tls.mode.as_str() {
        "ISTIO_MUTUAL" => {
            let sni = if tls.sni.is_empty() {
                up.sni.clone()
            } else {
                tls.sni.clone()
            };
            let sans = if tls.subject_alt_names.is_empty() {
                &up.svc.identities
            } else {
                &tls.subject_alt_names
            };
            let h2 = draft.is_h2();
            Some(istio_mutual_upstream(sni, sans, h2))
        }
        "SIMPLE" => files(draft, tls, up.svc, false),
        "MUTUAL" => files(draft, tls, up.svc, true),
        _ => None,
    };
    draft.cluster.transport_socket = socket;
}

fn auto_mtls(draft: &mut Draft, up: &Upstream<'_>, original_dst: bool) {
    if !up.svc.auto_mtls() {
        return;
    }
    let h2 = draft.is_h2();
    let socket = istio_mutual_upstream(up.sni.clone(), &up.svc.identities, h2);
    if original_dst {
        // Passthrough: no per-endpoint choice; mTLS only if every endpoint has a sidecar.
        let eps = up.svc.endpoints(up.port);
        if !eps.is_empty() && eps.iter().all(|e| e.tls_mode == TlsMode::Istio) {
            draft.cluster.transport_socket = Some(socket);
        }
        return;
    }
    draft.cluster.transport_socket_matches = vec![
        cluster::TransportSocketMatch {
            name: "tlsMode-istio".into(),
            r#match: Some(one_field_struct("tlsMode", "istio")),
            transport_socket: Some(socket),
        },
        cluster::TransportSocketMatch {
            name: "tlsMode-disabled".into(),
            r#match: Some(Default::default()),
            transport_socket: Some(raw_buffer()),
        },
    ];
}

fn file(path: &str) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(data_source::Specifier::Filename(path.to_string())),
        ..Default::default()
    })
}

/// A SAN matcher of the SAN's evident type: URI for `scheme://…`, IP for addresses, else DNS.
fn san_matcher(san: &str) -> SubjectAltNameMatcher {
    let san_type = if san.contains("://") {
        subject_alt_name_matcher::SanType::Uri
    } else if san.parse::<IpAddr>().is_ok() {
        subject_alt_name_matcher::SanType::IpAddress
    } else {
        subject_alt_name_matcher::SanType::Dns
    };
    SubjectAltNameMatcher {
        san_type: san_type as i32,
        matcher: Some(StringMatcher {
            match_pattern: Some(string_matcher::MatchPattern::Exact(san.to_string())),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// SIMPLE and MUTUAL TLS from files (Istio's `constructUpstreamTLS`).
fn files(
    draft: &mut Draft,
    tls: &ClientTlsSettings,
    svc: &Service,
    mutual: bool,
) -> Option<TransportSocket> {
    if !tls.credential_name.is_empty() {
        return None;
    }
    if mutual && (tls.client_certificate.is_empty() || tls.private_key.is_empty()) {
        return None;
    }
    let insecure = tls.insecure_skip_verify == Some(true);
    if tls.sni.is_empty() {
        // Envoy takes the SNI (and, without explicit SANs, the name to verify) from the Host.
        let opts = draft
            .http()
            .upstream_http_protocol_options
            .get_or_insert_with(UpstreamHttpProtocolOptions::default);
        opts.auto_sni = true;
        opts.auto_san_validation = tls.subject_alt_names.is_empty() && !insecure;
    }
    // A ServiceEntry's own subjectAltNames (and its workloads' identities) when the rule has none.
    let sans: &[String] = if matches!(svc.source, ServiceSource::ServiceEntry(_))
        && tls.subject_alt_names.is_empty()
    {
        &svc.identities
    } else {
        &tls.subject_alt_names
    };
    let validation = if insecure {
        CertificateValidationContext::default()
    } else {
        let ca = if tls.ca_certificates.is_empty() {
            OS_ROOT_BUNDLE
        } else {
            &tls.ca_certificates
        };
        CertificateValidationContext {
            trusted_ca: file(ca),
            match_typed_subject_alt_names: sans.iter().map(|s| san_matcher(s)).collect(),
            crl: (!tls.ca_crl.is_empty())
                .then(|| file(&tls.ca_crl))
                .flatten(),
            ..Default::default()
        }
    };
    let common = CommonTlsContext {
        tls_params: Some(TlsParameters {
            tls_minimum_protocol_version: tls_parameters::TlsProtocol::TlSv12 as i32,
            tls_maximum_protocol_version: tls_parameters::TlsProtocol::TlSv13 as i32,
            ..Default::default()
        }),
        tls_certificates: if mutual {
            vec![TlsCertificate {
                certificate_chain: file(&tls.client_certificate),
                private_key: file(&tls.private_key),
                ..Default::default()
            }]
        } else {
            vec![]
        },
        validation_context_type: Some(
            common_tls_context::ValidationContextType::ValidationContext(validation),
        ),
        alpn_protocols: if draft.is_h2() {
            vec!["h2".into()]
        } else {
            vec![]
        },
        ..Default::default()
    };
    let ctx = UpstreamTlsContext {
        common_tls_context: Some(common),
        sni: tls.sni.clone(),
        ..Default::default()
    };
    Some(transport_socket(TLS_SOCKET, pack_any(ctx)))
}
