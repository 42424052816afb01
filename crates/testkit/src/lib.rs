//! The Weft scenario kit: test support for building small networks of "hosts" (Linux network
//! namespaces joined by veth pairs to bridges), running real processes in them (Envoy, the
//! kit's test HTTP server, `curl`, `dig`, the agent) and tearing it all down afterwards.
//!
//! Scenario tests need root and `ip netns`; [`Lab::new`] fails with a clear message otherwise
//! (tests fail rather than skip).
//!
//! ```no_run
//! use std::time::Duration;
//! use weft_testkit::Lab;
//!
//! let lab = Lab::new("my_scenario").unwrap();
//! let net = lab.network("cluster").unwrap();
//! let server = lab.host("server", &[&net]).unwrap();
//! let client = lab.host("client", &[&net]).unwrap();
//! server
//!     .start_http_server("server", (server.ip(), 8000).into(), &[])
//!     .unwrap();
//! let out = client
//!     .curl(&[format!("http://{}:8000/hello", server.ip())], Duration::from_secs(2))
//!     .unwrap();
//! assert!(out.stdout.contains("server=server"), "{out}");
//! // Dropping `lab` stops the processes and deletes the namespaces.
//! ```
//!
//! Addresses come from the benchmark range 198.18.0.0/15 (RFC 2544): network `i` (in creation
//! order) is `198.18.i.0/24`, and hosts get `.10`, `.11`, … in the order they join it. Names
//! are unique per lab (`weft<pid>-<n>-<host>`), so tests may run in parallel.

mod binaries;
mod envoy;
mod error;
mod host;
mod http;
mod interrupt;
mod lab;
mod netns;
mod process;
mod sys;
mod wait;

pub use binaries::{
    ENVOY_BINARY_ENV, TEST_HTTP_BINARY_ENV, TEST_HTTP_BINARY_NAME, envoy_binary, test_http_binary,
    workspace_binary,
};
pub use envoy::{Envoy, EnvoyOptions, admin_yaml};
pub use error::{Error, Result};
pub use host::{Host, Interface};
pub use http::{HttpResponse, http_get};
pub mod local;
pub mod mesh;
pub mod seed_lab;
pub mod vm_bundle;
pub use lab::{KEEP_ENV, Lab, NETNS_PREFIX, Network};
pub use netns::{check_environment, ip, list_netns, netns_exists, pids_in_netns, run_in_netns};
pub use process::{CommandOutput, Process, command_from_argv, in_netns};
pub use wait::{
    Attempt, DEFAULT_TIMEOUT, connectable, poll_until, udp_bound, wait_for_tcp, wait_for_udp,
};
