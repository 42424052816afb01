//! security.istio.io kinds.

mod authorization_policy;
mod goparse;
mod peer_authentication;
mod selector;

pub use authorization_policy::*;
pub use peer_authentication::*;
pub use selector::*;
