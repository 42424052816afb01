//! weftd's own Prometheus metrics (served on the monitoring port), using Istio's names where
//! Istio has one.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default)]
pub struct Metrics {
    pub csr_count: AtomicU64,
    pub certs_issued: AtomicU64,
    pub csr_auth_failures: AtomicU64,
    pub csr_parse_errors: AtomicU64,
    pub xds_connections: AtomicU64,
    pub xds_pushes: AtomicU64,
    pub xds_rejects: AtomicU64,
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, kind: &str, v: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                v.load(Relaxed)
            );
        };
        counter(
            "citadel_server_csr_count",
            "The number of CSRs received by the CA.",
            "counter",
            &self.csr_count,
        );
        counter(
            "citadel_server_success_cert_issuance_count",
            "The number of certificates issuances that have succeeded.",
            "counter",
            &self.certs_issued,
        );
        counter(
            "citadel_server_authentication_failure_count",
            "The number of authentication failures.",
            "counter",
            &self.csr_auth_failures,
        );
        counter(
            "citadel_server_csr_parsing_err_count",
            "The number of errors occurred when parsing the CSR.",
            "counter",
            &self.csr_parse_errors,
        );
        counter(
            "pilot_xds",
            "Number of endpoints connected to this pilot using XDS.",
            "gauge",
            &self.xds_connections,
        );
        counter(
            "pilot_xds_pushes",
            "Pilot build and send errors for lds, rds, cds and eds.",
            "counter",
            &self.xds_pushes,
        );
        counter(
            "pilot_total_xds_rejects",
            "Total number of XDS responses from pilot rejected by proxy.",
            "counter",
            &self.xds_rejects,
        );
        out
    }
}
