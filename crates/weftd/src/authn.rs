//! Who is calling: a workload certificate presented over mTLS (already verified against the mesh
//! root by the TLS layer), or an `authorization: Bearer <token>` issued by this weftd.

use crate::conn::PeerInfo;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tonic::Status;
use weft_identity::Identity;
use weft_identity::certinfo::CertInfo;
use weft_identity::token::{TokenAuthority, TokenSubject};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    Certificate,
    Token,
}

#[derive(Clone, Debug)]
pub struct Caller {
    pub identity: Identity,
    pub credential: Credential,
}

#[derive(Clone)]
pub struct Authenticator {
    pub tokens: Arc<TokenAuthority>,
    pub trust_domain: String,
    /// Tokens whose signature was already verified (a VM sends the same token on every call until
    /// it has a certificate): skips the ES256 verification, never the expiry check.
    verified: Arc<Mutex<HashMap<String, TokenSubject>>>,
}

/// Bound on remembered tokens; the cache is simply cleared when full.
const VERIFIED_CACHE: usize = 4096;

impl Authenticator {
    pub fn new(tokens: Arc<TokenAuthority>, trust_domain: String) -> Self {
        Authenticator {
            tokens,
            trust_domain,
            verified: Arc::default(),
        }
    }

    fn verify_token(&self, token: &str, now: SystemTime) -> Result<TokenSubject, String> {
        let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = cache.get(token) {
            if now < s.expires {
                return Ok(s.clone());
            }
            cache.remove(token);
        }
        drop(cache);
        let subject = self.tokens.verify(token, now)?;
        let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= VERIFIED_CACHE {
            cache.clear();
        }
        cache.insert(token.to_string(), subject.clone());
        Ok(subject)
    }

    /// Authenticates a gRPC request. A valid client certificate wins; otherwise a bearer token is
    /// required. Errors are `Unauthenticated` with the reason.
    pub fn authenticate<T>(&self, req: &tonic::Request<T>) -> Result<Caller, Status> {
        let peer = req.extensions().get::<PeerInfo>();
        if let Some(leaf) = peer.and_then(|p| p.certs.as_ref()).and_then(|c| c.first()) {
            return self.caller_of_certificate(leaf);
        }
        let Some(value) = req.metadata().get("authorization") else {
            return Err(Status::unauthenticated(
                "no credentials: send `authorization: Bearer <token>` or present a workload certificate over mTLS",
            ));
        };
        let value = value
            .to_str()
            .map_err(|_| Status::unauthenticated("authorization header is not text"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                Status::unauthenticated("authorization header is not `Bearer <token>`")
            })?;
        let subject = self
            .verify_token(token.trim(), SystemTime::now())
            .map_err(|e| Status::unauthenticated(format!("authentication failed: {e}")))?;
        Ok(Caller {
            identity: Identity::new(
                &self.trust_domain,
                &subject.namespace,
                &subject.service_account,
            ),
            credential: Credential::Token,
        })
    }

    fn caller_of_certificate(&self, der: &[u8]) -> Result<Caller, Status> {
        let cert = CertInfo::from_der(der)
            .map_err(|e| Status::unauthenticated(format!("client certificate: {e}")))?;
        let uri = cert
            .uris
            .iter()
            .find(|u| u.starts_with("spiffe://"))
            .ok_or_else(|| {
                Status::unauthenticated("client certificate has no spiffe:// URI SAN")
            })?;
        let identity = Identity::parse(uri).map_err(Status::unauthenticated)?;
        if identity.trust_domain != self.trust_domain {
            return Err(Status::unauthenticated(format!(
                "client certificate trust domain {:?} is not this mesh's {:?}",
                identity.trust_domain, self.trust_domain
            )));
        }
        Ok(Caller {
            identity,
            credential: Credential::Certificate,
        })
    }
}
