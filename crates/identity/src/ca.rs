//! The certificate authority: a signing key and certificate chain, and CSR signing in which the
//! identity always comes from the authenticated caller, never from the CSR.

use crate::spiffe::Identity;
pub use rcgen::KeyPair;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyUsagePurpose, SanType, SerialNumber,
};
use std::fmt;
use std::time::{Duration, SystemTime};
use time::OffsetDateTime;

/// Default workload certificate lifetime (Istio's `DEFAULT_WORKLOAD_CERT_TTL`).
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// Longest lifetime a caller may ask for (Istio's `MAX_WORKLOAD_CERT_TTL`).
pub const MAX_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
/// Self-signed root lifetime (Istio's default: 10 years).
pub const ROOT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Backdate issued certificates slightly to tolerate clock skew: a minute, but never more than 5% of
/// the lifetime, so a short-lived certificate's rotation point (half its lifetime) stays in the future.
const BACKDATE: Duration = Duration::from_secs(60);

fn backdate(ttl: Duration) -> Duration {
    BACKDATE.min(ttl / 20)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlgorithm {
    EcdsaP256,
    Rsa2048,
}

impl KeyAlgorithm {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "ecdsa" | "ecdsa-p256" | "p256" | "ec" => Ok(KeyAlgorithm::EcdsaP256),
            "rsa" | "rsa2048" | "rsa-2048" => Ok(KeyAlgorithm::Rsa2048),
            _ => Err(format!(
                "unknown key algorithm {s:?} (use ecdsa-p256 or rsa-2048)"
            )),
        }
    }

    pub fn generate(self) -> Result<KeyPair, String> {
        match self {
            KeyAlgorithm::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyAlgorithm::Rsa2048 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            }
        }
        .map_err(|e| format!("key generation failed: {e}"))
    }
}

/// Why a signing request was refused. Maps to gRPC codes at the server.
#[derive(Debug, PartialEq, Eq)]
pub enum SignError {
    /// The CSR could not be parsed or its signature is wrong (gRPC InvalidArgument).
    BadCsr(String),
    /// Signing itself failed (gRPC Internal).
    Internal(String),
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignError::BadCsr(m) => write!(f, "invalid CSR: {m}"),
            SignError::Internal(m) => write!(f, "signing failed: {m}"),
        }
    }
}

/// A CA able to issue workload certificates.
pub struct CertificateAuthority {
    /// The signing certificate's subject and key, parsed once (not per signature).
    issuer: Issuer<'static, KeyPair>,
    /// The signing certificate (PEM).
    cert_pem: String,
    /// Certificates between the signing certificate and the root, leaf-most first (PEM, may be empty).
    intermediates: Vec<String>,
    /// The root of trust (PEM). Equal to `cert_pem` for a self-signed root.
    root_pem: String,
}

fn to_offset(t: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from(t)
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("system random source");
    bytes[0] &= 0x7f; // positive
    SerialNumber::from_slice(&bytes)
}

fn issuer(cert_pem: &str, key: KeyPair) -> Result<Issuer<'static, KeyPair>, String> {
    Issuer::from_ca_cert_pem(cert_pem, key).map_err(|e| format!("CA certificate: {e}"))
}

impl CertificateAuthority {
    /// Creates a new self-signed root CA, as istiod does on first start.
    pub fn new_root(alg: KeyAlgorithm, org: &str, now: SystemTime) -> Result<Self, String> {
        let key = alg.generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, org);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = to_offset(now - BACKDATE);
        params.not_after = to_offset(now + ROOT_TTL);
        params.serial_number = Some(random_serial());
        let cert = params
            .self_signed(&key)
            .map_err(|e| format!("self-signing root failed: {e}"))?;
        let pem = cert.pem();
        Ok(CertificateAuthority {
            issuer: issuer(&pem, key)?,
            cert_pem: pem.clone(),
            intermediates: vec![],
            root_pem: pem,
        })
    }

    /// Builds a CA from existing material (state dir or plugged-in `cacerts`).
    /// `chain_pem` holds the certificates from the signing cert (exclusive) up to the root (inclusive
    /// or not); the root is not repeated in the issued chain's middle.
    pub fn from_pem(
        key_pem: &str,
        cert_pem: &str,
        chain_pem: &str,
        root_pem: &str,
    ) -> Result<Self, String> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| format!("private key: {e}"))?;
        let cert = crate::certinfo::CertInfo::from_pem(cert_pem)
            .map_err(|e| format!("certificate: {e}"))?;
        if cert.public_key_der != rcgen::PublicKeyData::subject_public_key_info(&key) {
            return Err("private key does not match the CA certificate".into());
        }
        if !cert.is_ca {
            return Err("CA certificate is not a CA (basicConstraints CA:FALSE)".into());
        }
        let root = crate::certinfo::CertInfo::from_pem(root_pem)
            .map_err(|e| format!("root certificate: {e}"))?;
        let root_norm = root.pem.clone();
        let intermediates: Vec<String> = crate::certinfo::split_pem(chain_pem)
            .into_iter()
            .filter(|c| *c != root_norm && *c != cert.pem)
            .collect();
        Ok(CertificateAuthority {
            issuer: issuer(&cert.pem, key)?,
            cert_pem: cert.pem,
            intermediates,
            root_pem: root_norm,
        })
    }

    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Clamps a requested lifetime: zero means the default; never above [`MAX_TTL`].
    pub fn effective_ttl(requested: Duration, default: Duration) -> Duration {
        if requested.is_zero() {
            default
        } else {
            requested.min(MAX_TTL)
        }
    }

    /// Signs `csr_pem` for `identity`, valid for `ttl` from `now`. The CSR's own subject and SANs
    /// are ignored. Returns the chain: leaf, intermediates, root last.
    pub fn sign(
        &self,
        csr_pem: &str,
        identity: &Identity,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Vec<String>, SignError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| SignError::BadCsr(e.to_string()))?;
        self.sign_key(&csr.public_key, identity, ttl, now)
    }

    /// Signs a certificate for an already-known public key (used for the CA's own serving cert).
    pub fn sign_key(
        &self,
        public_key: &impl rcgen::PublicKeyData,
        identity_or_dns: &Identity,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Vec<String>, SignError> {
        let uri = identity_or_dns.uri();
        let san = rcgen::string::Ia5String::try_from(uri.as_str())
            .map_err(|e| SignError::BadCsr(e.to_string()))?;
        self.issue(public_key, vec![SanType::URI(san)], ttl, now)
    }

    /// Issues a server certificate with DNS SANs (weftd's own serving certificate).
    pub fn sign_dns(
        &self,
        public_key: &impl rcgen::PublicKeyData,
        dns_names: &[String],
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Vec<String>, SignError> {
        let mut sans = Vec::new();
        for name in dns_names {
            if let Ok(ip) = name.parse::<std::net::IpAddr>() {
                sans.push(SanType::IpAddress(ip));
            } else {
                let n = rcgen::string::Ia5String::try_from(name.as_str())
                    .map_err(|e| SignError::Internal(e.to_string()))?;
                sans.push(SanType::DnsName(n));
            }
        }
        self.issue(public_key, sans, ttl, now)
    }

    fn issue(
        &self,
        public_key: &impl rcgen::PublicKeyData,
        sans: Vec<SanType>,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Vec<String>, SignError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = to_offset(now - backdate(ttl));
        params.not_after = to_offset(now + ttl);
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let leaf = params
            .signed_by(public_key, &self.issuer)
            .map_err(|e| SignError::Internal(e.to_string()))?;
        let mut chain = vec![leaf.pem()];
        if self.cert_pem != self.root_pem {
            chain.push(self.cert_pem.clone());
        }
        chain.extend(self.intermediates.iter().cloned());
        chain.push(self.root_pem.clone());
        Ok(chain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certinfo::CertInfo;
    use crate::csr::{WorkloadKey, build_csr};

    fn now() -> SystemTime {
        SystemTime::now()
    }

    #[test]
    fn san_comes_from_identity_not_csr() {
        let ca = CertificateAuthority::new_root(KeyAlgorithm::EcdsaP256, "cluster.local", now())
            .unwrap();
        let key = WorkloadKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        // The CSR claims to be an admin; the CA must ignore that.
        let csr = build_csr(&key, "spiffe://cluster.local/ns/istio-system/sa/admin").unwrap();
        let id = Identity::new("cluster.local", "forum", "forum-sa");
        let chain = ca.sign(&csr, &id, DEFAULT_TTL, now()).unwrap();
        assert_eq!(chain.len(), 2, "leaf then root");
        let leaf = CertInfo::from_pem(&chain[0]).unwrap();
        assert_eq!(
            leaf.uris,
            vec!["spiffe://cluster.local/ns/forum/sa/forum-sa"]
        );
        assert!(!leaf.is_ca);
        assert_eq!(chain[1], ca.root_pem());
        let lifetime = leaf.not_after.duration_since(leaf.not_before).unwrap();
        assert_eq!(lifetime, DEFAULT_TTL + BACKDATE);
        // A 20 s certificate is backdated by 1 s only, so half its life is still ahead.
        let short = ca.sign(&csr, &id, Duration::from_secs(20), now()).unwrap();
        let short = CertInfo::from_pem(&short[0]).unwrap();
        assert_eq!(short.lifetime(), Duration::from_secs(21));
        assert!(leaf.verify_signed_by(&CertInfo::from_pem(ca.root_pem()).unwrap()));
    }

    #[test]
    fn ttl_bounds() {
        assert_eq!(
            CertificateAuthority::effective_ttl(Duration::ZERO, DEFAULT_TTL),
            DEFAULT_TTL
        );
        assert_eq!(
            CertificateAuthority::effective_ttl(Duration::from_secs(3600), DEFAULT_TTL),
            Duration::from_secs(3600)
        );
        assert_eq!(
            CertificateAuthority::effective_ttl(Duration::from_secs(365 * 86400), DEFAULT_TTL),
            MAX_TTL
        );
    }

    #[test]
    fn malformed_csr_is_bad_csr() {
        let ca = CertificateAuthority::new_root(KeyAlgorithm::EcdsaP256, "td", now()).unwrap();
        let id = Identity::new("td", "a", "b");
        let err = ca.sign("not a csr", &id, DEFAULT_TTL, now()).unwrap_err();
        assert!(matches!(err, SignError::BadCsr(_)), "{err}");
    }

    #[test]
    fn intermediate_chain_order() {
        let root = CertificateAuthority::new_root(KeyAlgorithm::EcdsaP256, "root", now()).unwrap();
        // An intermediate CA signed by the root, plugged in as Istio's cacerts would be.
        let inter_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = &root.issuer;
        let inter = params.signed_by(&inter_key, issuer).unwrap().pem();
        let chain_pem = format!("{inter}{}", root.root_pem());
        let ca = CertificateAuthority::from_pem(
            &inter_key.serialize_pem(),
            &inter,
            &chain_pem,
            root.root_pem(),
        )
        .unwrap();
        let key = WorkloadKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let csr = build_csr(&key, "spiffe://x/ns/a/sa/b").unwrap();
        let chain = ca
            .sign(&csr, &Identity::new("x", "a", "b"), DEFAULT_TTL, now())
            .unwrap();
        assert_eq!(chain.len(), 3);
        assert_eq!(chain[1], CertInfo::from_pem(&inter).unwrap().pem);
        assert_eq!(chain[2], root.root_pem());
    }

    #[test]
    fn rsa_root_signs() {
        let ca = CertificateAuthority::new_root(KeyAlgorithm::Rsa2048, "td", now()).unwrap();
        let key = WorkloadKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let csr = build_csr(&key, "spiffe://td/ns/a/sa/b").unwrap();
        let chain = ca
            .sign(&csr, &Identity::new("td", "a", "b"), DEFAULT_TTL, now())
            .unwrap();
        let leaf = CertInfo::from_pem(&chain[0]).unwrap();
        assert!(leaf.verify_signed_by(&CertInfo::from_pem(ca.root_pem()).unwrap()));
    }

    #[test]
    fn mismatched_key_is_refused() {
        let a = CertificateAuthority::new_root(KeyAlgorithm::EcdsaP256, "a", now()).unwrap();
        let b = CertificateAuthority::new_root(KeyAlgorithm::EcdsaP256, "b", now()).unwrap();
        let err = CertificateAuthority::from_pem(&b.key_pem(), a.cert_pem(), "", a.root_pem())
            .err()
            .unwrap();
        assert_eq!(err, "private key does not match the CA certificate");
    }
}
