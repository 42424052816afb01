//! Workload certificates: request, write, rotate. (Being written; this is the contract other
//! modules use.)

use std::sync::Arc;
use std::time::SystemTime;

/// The certificate material the agent currently holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadCerts {
    /// PKCS#8 PEM private key.
    pub key_pem: String,
    /// PEM chain: leaf first, then intermediates (root excluded).
    pub cert_chain_pem: String,
    /// PEM root certificate(s) to trust.
    pub root_pem: String,
    pub not_after: SystemTime,
}

/// Latest certificates; `None` until the first one is issued. SDS watches this.
pub type CertWatch = tokio::sync::watch::Receiver<Option<Arc<WorkloadCerts>>>;
