//! Reading certificates: validity, SPIFFE URIs, CA flag, public key, signature check.

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_parser::prelude::*;

/// What Weft needs to know about one certificate.
#[derive(Clone, Debug)]
pub struct CertInfo {
    /// Normalised PEM of this certificate alone.
    pub pem: String,
    pub der: Vec<u8>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub uris: Vec<String>,
    pub dns_names: Vec<String>,
    pub is_ca: bool,
    /// DER SubjectPublicKeyInfo.
    pub public_key_der: Vec<u8>,
}

fn epoch(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH
    }
}

/// Encodes DER as a PEM block with the given label.
pub fn to_pem(label: &str, der: &[u8]) -> String {
    let b64 = base64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        s.push(T[(n >> 18) as usize & 63] as char);
        s.push(T[(n >> 12) as usize & 63] as char);
        s.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        s.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    s
}

/// Splits a PEM bundle into normalised single-certificate PEMs (non-certificate blocks dropped).
pub fn split_pem(bundle: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = bundle.as_bytes();
    while let Ok((remaining, pem)) = x509_parser::pem::parse_x509_pem(rest) {
        if pem.label == "CERTIFICATE" {
            out.push(to_pem("CERTIFICATE", &pem.contents));
        }
        if remaining.len() == rest.len() {
            break;
        }
        rest = remaining;
    }
    out
}

impl CertInfo {
    /// Parses the first certificate of a PEM string.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .map_err(|e| format!("not a PEM certificate: {e}"))?;
        if block.label != "CERTIFICATE" {
            return Err(format!(
                "expected a CERTIFICATE PEM block, found {:?}",
                block.label
            ));
        }
        Self::from_der(&block.contents)
    }

    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let mut uris = Vec::new();
        let mut dns_names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(u) => uris.push(u.to_string()),
                    GeneralName::DNSName(d) => dns_names.push(d.to_string()),
                    _ => {}
                }
            }
        }
        let is_ca = cert
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|bc| bc.value.ca);
        Ok(CertInfo {
            pem: to_pem("CERTIFICATE", der),
            der: der.to_vec(),
            not_before: epoch(cert.validity().not_before.timestamp()),
            not_after: epoch(cert.validity().not_after.timestamp()),
            uris,
            dns_names,
            is_ca,
            public_key_der: cert.public_key().raw.to_vec(),
        })
    }

    /// Whether `issuer`'s key signed this certificate.
    pub fn verify_signed_by(&self, issuer: &CertInfo) -> bool {
        let (Ok((_, me)), Ok((_, them))) = (
            X509Certificate::from_der(&self.der),
            X509Certificate::from_der(&issuer.der),
        ) else {
            return false;
        };
        me.verify_signature(Some(them.public_key())).is_ok()
    }

    /// Valid at `now`.
    pub fn valid_at(&self, now: SystemTime) -> bool {
        self.not_before <= now && now < self.not_after
    }

    pub fn lifetime(&self) -> Duration {
        self.not_after
            .duration_since(self.not_before)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
