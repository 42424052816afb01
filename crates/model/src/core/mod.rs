//! Core Kubernetes kinds the mesh reads: Namespace, ServiceAccount, Service.

mod namespace;
mod service;
mod service_account;

pub use namespace::NamespaceSpec;
pub use service::{IntOrString, ServicePort, ServiceSpec};
pub use service_account::ServiceAccountFields;
