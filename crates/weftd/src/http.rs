//! A minimal HTTP/1.1 server for the admin and monitoring ports (hyper, one task per connection).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::net::TcpListener;

pub type Body = Full<Bytes>;
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
pub type Handler = Arc<dyn Fn(Req) -> BoxFuture<Response<Body>> + Send + Sync>;

/// A request with its body read (admin requests are small).
pub struct Req {
    pub method: hyper::Method,
    pub path: String,
    pub query: String,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Req {
    pub fn query_param(&self, key: &str) -> Option<String> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == key).then(|| v.replace("%7E", "~").replace("%2F", "/"))
        })
    }
}

pub fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .unwrap_or_default()
}

pub fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut s = body.into();
    if !s.ends_with('\n') {
        s.push('\n');
    }
    respond(status, "text/plain; charset=utf-8", s)
}

pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
    s.push('\n');
    respond(status, "application/json", s)
}

const MAX_BODY: usize = 8 << 20;

/// Serves `handler` on `listener` until the process ends.
pub async fn serve(listener: TcpListener, handler: Handler) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let handler = handler.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
                        Ok(b) => b.to_bytes(),
                        Err(_) => {
                            return Ok::<_, std::convert::Infallible>(text(
                                StatusCode::PAYLOAD_TOO_LARGE,
                                "request body too large",
                            ));
                        }
                    };
                    let req = Req {
                        method: parts.method,
                        path: parts.uri.path().to_string(),
                        query: parts.uri.query().unwrap_or_default().to_string(),
                        headers: parts.headers,
                        body,
                    };
                    Ok(handler(req).await)
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await;
        });
    }
}
