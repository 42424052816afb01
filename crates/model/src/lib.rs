//! Weft's resource model: the Istio and Kubernetes kinds a mesh is configured with,
//! how they are loaded from YAML/JSON, and how they are validated (Istio's rules and wording).
//!
//! Everything here is pure: no network, no clocks, no global state. The only I/O is
//! [`load::load_path`], which reads the files it is given.

pub mod core;
pub mod decode;
pub mod duration;
pub mod kind;
pub mod load;
pub mod meta;
pub mod networking;
pub mod resource;
pub mod security;
pub mod snapshot;
#[cfg(test)]
mod test_support;
pub mod validate;
pub mod yaml_out;

pub use duration::Duration;
pub use kind::Kind;
pub use load::{Entry, Outcome, Source, load_path, load_str};
pub use meta::ObjectMeta;
pub use resource::{Resource, Spec};
