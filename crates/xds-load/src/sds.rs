//! A static SDS server for the real-Envoy check. weftd's clusters and listeners take their
//! certificates from `sds-grpc` (the agent's part) with `initial_fetch_timeout: 0`, so without an
//! SDS server Envoy keeps every mTLS cluster warming and never asks for listeners. This serves
//! `default` (a self-signed P-256 certificate with the workload's SPIFFE ID, made with the
//! `openssl` CLI) and `ROOTCA` (the same certificate) over state-of-the-world SDS on a Unix socket.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::{Request, Response, Status, Streaming};
use weft_proto::envoy_types::pb::envoy::config::core::v3::{DataSource, data_source};
use weft_proto::envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, Secret, TlsCertificate, secret,
};
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use weft_proto::envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::{
    SecretDiscoveryService, SecretDiscoveryServiceServer,
};
use weft_proto::envoy_types::pb::google::protobuf::Any;
use weft_proto::envoy_types::util::pack_any;

/// A self-signed certificate and key (PEM) for `spiffe_id`, written with `openssl` into `dir`.
pub fn self_signed(dir: &Path, spiffe_id: &str) -> Result<(String, String), String> {
    let key = dir.join("sds-key.pem");
    let cert = dir.join("sds-cert.pem");
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/O=weft-xds-load"])
        .args(["-addext", &format!("subjectAltName=URI:{spiffe_id}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .map_err(|e| format!("openssl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl req failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let read =
        |p: &PathBuf| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    Ok((read(&cert)?, read(&key)?))
}

fn inline(pem: &str) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(data_source::Specifier::InlineBytes(pem.as_bytes().to_vec())),
        ..Default::default()
    })
}

/// `default` and `ROOTCA` from one certificate.
pub fn secrets(cert_pem: &str, key_pem: &str) -> BTreeMap<String, Any> {
    let default = Secret {
        name: "default".into(),
        r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: inline(cert_pem),
            private_key: inline(key_pem),
            ..Default::default()
        })),
    };
    let root = Secret {
        name: "ROOTCA".into(),
        r#type: Some(secret::Type::ValidationContext(
            CertificateValidationContext {
                trusted_ca: inline(cert_pem),
                ..Default::default()
            },
        )),
    };
    [("default", default), ("ROOTCA", root)]
        .into_iter()
        .map(|(n, s)| (n.to_string(), pack_any(s)))
        .collect()
}

#[derive(Clone)]
struct StaticSds {
    secrets: Arc<BTreeMap<String, Any>>,
}

#[tonic::async_trait]
impl SecretDiscoveryService for StaticSds {
    type DeltaSecretsStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;
    type StreamSecretsStream = ReceiverStream<Result<DiscoveryResponse, Status>>;

    async fn delta_secrets(
        &self,
        _: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaSecretsStream>, Status> {
        Err(Status::unimplemented("state-of-the-world SDS only"))
    }

    /// Answers every request that is not an ACK with the secrets it names.
    async fn stream_secrets(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamSecretsStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let secrets = self.secrets.clone();
        tokio::spawn(async move {
            let mut nonce = 0u64;
            let mut names: Vec<String> = Vec::new();
            while let Ok(Some(req)) = inbound.message().await {
                if !req.response_nonce.is_empty() && req.resource_names == names {
                    continue; // an ACK
                }
                names = req.resource_names.clone();
                nonce += 1;
                let resp = DiscoveryResponse {
                    version_info: "1".into(),
                    type_url: req.type_url.clone(),
                    nonce: nonce.to_string(),
                    resources: names
                        .iter()
                        .filter_map(|n| secrets.get(n).cloned())
                        .collect(),
                    ..Default::default()
                };
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn fetch_secrets(
        &self,
        _: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        Err(Status::unimplemented("streaming SDS only"))
    }
}

/// Serves `secrets` on the Unix socket `path` in the background.
pub fn serve(path: &Path, secrets: BTreeMap<String, Any>) -> Result<(), String> {
    let _ = std::fs::remove_file(path);
    let listener =
        tokio::net::UnixListener::bind(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let service = SecretDiscoveryServiceServer::new(StaticSds {
        secrets: Arc::new(secrets),
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(UnixListenerStream::new(listener)),
    );
    Ok(())
}
