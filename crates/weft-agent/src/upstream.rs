//! Connections from the agent to weftd. (Being written; this is the contract other modules use.)

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// How to reach weftd: a fresh gRPC channel per call (so a rotated client certificate is used on the
/// next connection) and the request headers to send (`authorization: Bearer …` when a token is
/// available, `clusterid`).
#[derive(Clone)]
pub struct Upstream {
    pub connect: Arc<dyn Fn() -> BoxFuture<Result<tonic::transport::Channel, String>> + Send + Sync>,
    pub headers: Arc<dyn Fn() -> Vec<(String, String)> + Send + Sync>,
}
