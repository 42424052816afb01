//! weftd's TLS identity on 15012: a serving certificate signed by the mesh CA, and optional client
//! certificates verified against the mesh root (so workloads can renew with their certificate).

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use weft_identity::CertificateAuthority;
use weft_identity::certinfo::CertInfo;

/// Serving certificate lifetime; weftd issues a fresh one at every start.
const SERVING_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

pub fn pem_to_der_chain(chain: &[String]) -> Result<Vec<CertificateDer<'static>>, String> {
    chain
        .iter()
        .map(|p| CertInfo::from_pem(p).map(|c| CertificateDer::from(c.der)))
        .collect()
}

/// Builds the rustls server config for the TLS xDS/CA port.
pub fn server_config(
    ca: &CertificateAuthority,
    sans: &[String],
    now: SystemTime,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let key = weft_identity::KeyAlgorithm::EcdsaP256.generate()?;
    let chain = ca
        .sign_dns(&key, sans, SERVING_TTL, now)
        .map_err(|e| e.to_string())?;
    let certs = pem_to_der_chain(&chain)?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));

    let mut roots = rustls::RootCertStore::empty();
    let root = CertInfo::from_pem(ca.root_pem())?;
    roots
        .add(CertificateDer::from(root.der))
        .map_err(|e| format!("root certificate: {e}"))?;
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("client verifier: {e}"))?;
    let mut cfg = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key_der)
        .map_err(|e| format!("serving certificate: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}
