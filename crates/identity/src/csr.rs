//! The agent side: a workload key and a CSR naming the identity it asks for.

use crate::ca::KeyAlgorithm;
use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};

/// A workload private key.
pub struct WorkloadKey {
    pub key: KeyPair,
}

impl WorkloadKey {
    pub fn generate(alg: KeyAlgorithm) -> Result<Self, String> {
        Ok(WorkloadKey {
            key: alg.generate()?,
        })
    }

    pub fn from_pem(pem: &str) -> Result<Self, String> {
        KeyPair::from_pem(pem)
            .map(|key| WorkloadKey { key })
            .map_err(|e| format!("private key: {e}"))
    }

    /// PKCS#8 PEM.
    pub fn pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// DER SubjectPublicKeyInfo, to match against a certificate.
    pub fn public_key_der(&self) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(&self.key)
    }
}

/// Builds a PEM CSR with `spiffe_uri` as its URI SAN (the CA ignores it, but Istio's agent sends it).
pub fn build_csr(key: &WorkloadKey, spiffe_uri: &str) -> Result<String, String> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    let uri = rcgen::string::Ia5String::try_from(spiffe_uri).map_err(|e| e.to_string())?;
    params.subject_alt_names = vec![SanType::URI(uri)];
    params
        .serialize_request(&key.key)
        .and_then(|csr| csr.pem())
        .map_err(|e| format!("building CSR: {e}"))
}
