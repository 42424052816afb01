//! Connections from the agent to weftd: gRPC over TLS, verified against the mesh root, presenting
//! the workload certificate when there is one (so renewal works without a token).

use crate::certs::WorkloadCerts;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// How to reach weftd: a fresh gRPC channel per call (so a rotated client certificate is used on the
/// next connection) and the request headers to send (`authorization: Bearer …` when a token is
/// available, `clusterid`).
#[derive(Clone)]
pub struct Upstream {
    pub connect: Arc<dyn Fn() -> BoxFuture<Result<Channel, String>> + Send + Sync>,
    pub headers: Arc<dyn Fn() -> Vec<(String, String)> + Send + Sync>,
}

/// Where weftd is and how to check it is weftd.
#[derive(Clone, Debug)]
pub struct Target {
    /// `host:port`.
    pub address: String,
    /// What to connect to: `address`, or its host looked up in the VM's hosts file.
    pub dial: String,
    /// Name expected in weftd's certificate.
    pub server_name: String,
    /// PEM roots to trust.
    pub root_pem: String,
}

impl Target {
    /// `ISTIOD_SAN` if set, else the host part of the address.
    pub fn new(address: &str, istiod_san: Option<&str>, root_pem: String) -> Self {
        let host = address
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(address)
            .trim_matches(['[', ']']);
        Target {
            address: address.to_string(),
            dial: address.to_string(),
            server_name: istiod_san.unwrap_or(host).to_string(),
            root_pem,
        }
    }

    /// Dials `address`'s host as the hosts file at `hosts` lists it (when it does).
    pub fn with_hosts_file(mut self, hosts: &std::path::Path) -> Self {
        self.dial = crate::hosts::dial_address(&self.address, hosts);
        self
    }
}

fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("PEM certificates: {e}"))
}

fn client_config(
    target: &Target,
    client: Option<&WorkloadCerts>,
) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for der in certs_from_pem(&target.root_pem)? {
        roots
            .add(der)
            .map_err(|e| format!("root certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("the root certificate file holds no certificate".into());
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut cfg = match client {
        Some(c) => {
            let chain = certs_from_pem(&c.cert_chain_pem)?;
            let key = PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes())
                .map_err(|e| format!("workload key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("workload certificate: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

/// Opens a gRPC channel to `target` over TLS (HTTP/2), optionally presenting `client`.
pub async fn connect(target: &Target, client: Option<&WorkloadCerts>) -> Result<Channel, String> {
    let cfg = Arc::new(client_config(target, client)?);
    let server_name = ServerName::try_from(target.server_name.clone())
        .map_err(|e| format!("server name {:?}: {e}", target.server_name))?;
    let address = target.dial.clone();
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let cfg = cfg.clone();
        let server_name = server_name.clone();
        let address = address.clone();
        async move {
            let tcp = TcpStream::connect(&address).await?;
            let _ = tcp.set_nodelay(true);
            let tls = tokio_rustls::TlsConnector::from(cfg)
                .connect(server_name, tcp)
                .await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    Endpoint::from_shared(format!("http://{}", target.address))
        .map_err(|e| format!("address {:?}: {e}", target.address))?
        .connect_timeout(std::time::Duration::from_secs(10))
        .http2_keep_alive_interval(std::time::Duration::from_secs(30))
        .connect_with_connector(connector)
        .await
        .map_err(|e| {
            format!(
                "cannot connect to {} (expecting {:?}): {}",
                target.address,
                target.server_name,
                error_chain(&e)
            )
        })
}

/// An error with its causes, so "transport error" says what actually failed.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
