//! Workload identity for Weft: SPIFFE names, the certificate authority (root creation, plugged-in
//! CA certificates, CSR signing with the caller's identity), bootstrap tokens, and the agent side
//! (keys and CSRs, certificate inspection for rotation).
//!
//! Everything here except [`store`] is pure: given keys and a clock value, it computes.

pub mod ca;
pub mod certinfo;
pub mod csr;
pub mod spiffe;
pub mod store;
pub mod token;

pub use ca::{CertificateAuthority, KeyAlgorithm, SignError};
pub use spiffe::Identity;
