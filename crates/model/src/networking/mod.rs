//! networking.istio.io kinds.

mod common;
mod destination_rule;
mod gateway;
#[cfg(test)]
mod samples_tests;
mod service_entry;
mod sidecar;
mod traffic_policy;
mod virtual_service;
mod virtual_service_unreachable;
mod virtual_service_validate;
mod workload_entry;
mod workload_group;

pub use common::{Destination, MatchLabelsSelector, PortSelector, WorkloadSelector};
pub use destination_rule::*;
pub use gateway::*;
pub use service_entry::*;
pub use sidecar::*;
pub use traffic_policy::*;
pub use virtual_service::*;
pub use workload_entry::*;
pub use workload_group::*;
