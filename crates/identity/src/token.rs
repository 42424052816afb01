//! Bootstrap tokens: ES256 JWTs that weftd mints and checks, shaped like Kubernetes
//! service-account tokens (`sub: system:serviceaccount:<ns>:<sa>`, `aud: [istio-ca]`).

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const AUDIENCE: &str = "istio-ca";
pub const ISSUER: &str = "weftd";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub iat: u64,
    pub exp: u64,
}

/// The namespace and service account a valid token speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSubject {
    pub namespace: String,
    pub service_account: String,
    pub expires: SystemTime,
}

/// Signs and verifies tokens with one P-256 key.
pub struct TokenAuthority {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

impl TokenAuthority {
    /// From a PKCS#8 PEM private key and its SPKI PEM public key.
    pub fn from_pem(private_pem: &str, public_pem: &str) -> Result<Self, String> {
        Ok(TokenAuthority {
            encoding: EncodingKey::from_ec_pem(private_pem.as_bytes())
                .map_err(|e| format!("token signing key: {e}"))?,
            decoding: DecodingKey::from_ec_pem(public_pem.as_bytes())
                .map_err(|e| format!("token verification key: {e}"))?,
        })
    }

    pub fn mint(
        &self,
        namespace: &str,
        service_account: &str,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<String, String> {
        let claims = Claims {
            iss: ISSUER.into(),
            sub: format!("system:serviceaccount:{namespace}:{service_account}"),
            aud: vec![AUDIENCE.into()],
            iat: secs(now),
            exp: secs(now + ttl),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.encoding)
            .map_err(|e| format!("minting token: {e}"))
    }

    /// Checks signature, audience, issuer and expiry at `now`. The error says why a token was refused.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<TokenSubject, String> {
        let mut v = Validation::new(Algorithm::ES256);
        v.validate_exp = false; // checked below against `now`, not the wall clock
        v.validate_aud = false; // checked below for a clearer message
        v.set_required_spec_claims(&["exp", "sub", "aud"]);
        v.set_issuer(&[ISSUER]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::InvalidSignature => {
                    "token signature is invalid (not issued by this weftd)".to_string()
                }
                K::InvalidIssuer => format!("token issuer is not {ISSUER:?}"),
                K::InvalidAlgorithm => "token algorithm is not ES256".to_string(),
                K::MissingRequiredClaim(c) => format!("token has no {c:?} claim"),
                _ => format!("token is malformed: {e}"),
            }
        })?;
        let c = data.claims;
        if !c.aud.iter().any(|a| a == AUDIENCE) {
            return Err(format!(
                "token audience {:?} does not include {AUDIENCE:?}",
                c.aud
            ));
        }
        if secs(now) >= c.exp {
            return Err(format!(
                "token expired {}s ago",
                secs(now).saturating_sub(c.exp)
            ));
        }
        let rest = c
            .sub
            .strip_prefix("system:serviceaccount:")
            .ok_or_else(|| format!("token subject {:?} is not a service account", c.sub))?;
        let (ns, sa) = rest
            .split_once(':')
            .filter(|(n, s)| !n.is_empty() && !s.is_empty() && !s.contains(':'))
            .ok_or_else(|| format!("token subject {:?} is not a service account", c.sub))?;
        Ok(TokenSubject {
            namespace: ns.into(),
            service_account: sa.into(),
            expires: UNIX_EPOCH + Duration::from_secs(c.exp),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::KeyPair;

    fn authority() -> TokenAuthority {
        let k = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        TokenAuthority::from_pem(&k.serialize_pem(), &k.public_key_pem()).unwrap()
    }

    #[test]
    fn mint_and_verify() {
        let a = authority();
        let now = SystemTime::now();
        let t = a
            .mint("forum-services", "forum-sa", Duration::from_secs(3600), now)
            .unwrap();
        let s = a.verify(&t, now).unwrap();
        assert_eq!(
            (s.namespace.as_str(), s.service_account.as_str()),
            ("forum-services", "forum-sa")
        );
    }

    #[test]
    fn expired_token_is_refused() {
        let a = authority();
        let now = SystemTime::now();
        let t = a.mint("a", "b", Duration::from_secs(10), now).unwrap();
        let err = a.verify(&t, now + Duration::from_secs(15)).unwrap_err();
        assert_eq!(err, "token expired 5s ago");
    }

    #[test]
    fn forged_token_is_refused() {
        let now = SystemTime::now();
        let t = authority()
            .mint("a", "b", Duration::from_secs(60), now)
            .unwrap();
        let err = authority().verify(&t, now).unwrap_err();
        assert!(err.starts_with("token signature is invalid"), "{err}");
        assert!(
            authority()
                .verify("garbage", now)
                .unwrap_err()
                .starts_with("token is malformed")
        );
    }

    #[test]
    fn wrong_audience_is_refused() {
        let k = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let a = TokenAuthority::from_pem(&k.serialize_pem(), &k.public_key_pem()).unwrap();
        let now = SystemTime::now();
        let claims = Claims {
            iss: ISSUER.into(),
            sub: "system:serviceaccount:a:b".into(),
            aud: vec!["kubernetes".into()],
            iat: secs(now),
            exp: secs(now) + 60,
        };
        let t = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &a.encoding).unwrap();
        assert_eq!(
            a.verify(&t, now).unwrap_err(),
            "token audience [\"kubernetes\"] does not include \"istio-ca\""
        );
    }
}
