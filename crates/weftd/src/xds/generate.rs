//! What each proxy is sent: the pure translation in `weft-xds`, one [`PushContext`] per push.

use std::sync::Arc;
pub use weft_xds::{NamedResource, Proxy, PushContext};

/// Produces the resources of one type for one proxy. Pure; resources shared between proxies are
/// returned as clones of the same `Arc` (encoded once).
pub trait Generator: Send + Sync + 'static {
    fn generate(&self, proxy: &Proxy, type_url: &str) -> Vec<Arc<NamedResource>>;
}

impl Generator for PushContext {
    fn generate(&self, proxy: &Proxy, type_url: &str) -> Vec<Arc<NamedResource>> {
        PushContext::generate(self, proxy, type_url)
    }
}
