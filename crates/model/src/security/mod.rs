//! security.istio.io kinds.

mod authorization_policy;
mod peer_authentication;

pub use authorization_policy::*;
pub use peer_authentication::*;
