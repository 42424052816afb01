//! The ADS gRPC service, with `DeltaAggregatedResources` served without tonic's codec.
//!
//! tonic's `EncodeBody` encodes every response into one `BytesMut` per stream and hands out
//! slices of it: the allocation grows to the largest response and stays referenced for the life
//! of the stream (~1 MiB per connection for a 1,000-service CDS; BENCHMARKS.md, "xDS push
//! engine"), and its `Streaming` decoder keeps the largest request's buffer the same way. Here
//! requests are deframed into one buffer per message ([`Deframer`]) and responses are framed a
//! chunk at a time from the resources' shared encoded bytes ([`Frames`]): nothing is retained per
//! stream between messages, and a queued response costs a list of `Arc`s, not a copy.
//! Every decoded request goes to the same stream code as SotW ([`stream::run`]).
//! `StreamAggregatedResources` (SotW) is served by the generated tonic server.

use super::stream::{self, Delta};
use super::wire::{Deframer, DeltaOut, Frames, decode_request};
use super::{Ads, XdsState};
use hyper::body::{Body as HttpBody, Frame};
use prost::bytes::Bytes;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{Service, http};
use tonic::server::NamedService;
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;

pub const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";
/// Responses queued per stream before the stream task waits for the client to read.
const QUEUED_RESPONSES: usize = 16;

/// The ADS service: delta streams here, everything else by the generated server.
#[derive(Clone)]
pub struct AdsService {
    inner: AggregatedDiscoveryServiceServer<Ads>,
    state: Arc<XdsState>,
}

impl AdsService {
    pub fn new(state: Arc<XdsState>) -> Self {
        AdsService {
            inner: AggregatedDiscoveryServiceServer::new(Ads {
                state: state.clone(),
            })
            .max_decoding_message_size(super::wire::MAX_REQUEST)
            .max_encoding_message_size(usize::MAX),
            state,
        }
    }
}

impl NamedService for AdsService {
    const NAME: &'static str = <AggregatedDiscoveryServiceServer<Ads> as NamedService>::NAME;
}

impl Service<http::Request<Body>> for AdsService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if req.uri().path() == DELTA_PATH {
            let response = delta(self.state.clone(), req);
            Box::pin(async move { Ok(response) })
        } else {
            let mut inner = self.inner.clone();
            Box::pin(async move { inner.call(req).await })
        }
    }
}

/// Starts one delta stream: authenticates the caller, then runs the stream on its own task.
fn delta(state: Arc<XdsState>, req: http::Request<Body>) -> http::Response<Body> {
    let (parts, body) = req.into_parts();
    let head = tonic::Request::from_http(http::Request::from_parts(parts, ()));
    let caller = match state.authenticate(&head) {
        Ok(c) => c,
        Err(status) => return status.into_http(),
    };
    let peer = XdsState::peer(&head);
    let (tx, rx) = mpsc::channel(QUEUED_RESPONSES);
    tokio::spawn(stream::run::<Delta>(
        state,
        caller,
        peer,
        Requests::new(body),
        tx,
    ));
    let mut response = http::Response::new(Body::new(Responses {
        rx,
        frames: None,
        done: false,
    }));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}

/// The request body as decoded requests.
pub struct Requests<B> {
    body: B,
    deframer: Deframer,
    ready: VecDeque<Vec<u8>>,
    done: bool,
}

impl<B> Requests<B> {
    pub fn new(body: B) -> Self {
        Requests {
            body,
            deframer: Deframer::default(),
            ready: VecDeque::new(),
            done: false,
        }
    }
}

impl<B> Stream for Requests<B>
where
    B: HttpBody<Data = Bytes, Error = Status> + Unpin,
{
    type Item = Result<DeltaDiscoveryRequest, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(msg) = this.ready.pop_front() {
                return Poll::Ready(Some(decode_request(&msg)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            let failed = |this: &mut Self, status: Status| {
                this.done = true;
                Poll::Ready(Some(Err(status)))
            };
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue; // trailers
                    };
                    let mut msgs = Vec::new();
                    let pushed = this.deframer.push(data, &mut msgs);
                    this.ready.extend(msgs);
                    if let Err(status) = pushed {
                        return failed(this, status);
                    }
                }
                Poll::Ready(Some(Err(status))) => return failed(this, status),
                Poll::Ready(None) => {
                    this.done = true;
                    if let Err(status) = this.deframer.finish() {
                        return failed(this, status);
                    }
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// The response body: each response framed when the connection can take it, then trailers.
pub struct Responses {
    rx: mpsc::Receiver<Result<Box<DeltaOut>, Box<Status>>>,
    frames: Option<Frames>,
    done: bool,
}

fn trailers(status: &Status) -> Frame<Bytes> {
    let mut map = http::HeaderMap::new();
    if status.add_header(&mut map).is_err() {
        map.insert("grpc-status", http::HeaderValue::from_static("13"));
    }
    Frame::trailers(map)
}

impl HttpBody for Responses {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        loop {
            if let Some(frames) = &mut this.frames {
                if let Some(chunk) = frames.next() {
                    return Poll::Ready(Some(Ok(Frame::data(chunk))));
                }
                this.frames = None;
            }
            if this.done {
                return Poll::Ready(None);
            }
            let end = match this.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(out))) => match Frames::new(*out) {
                    Ok(frames) => {
                        this.frames = Some(frames);
                        continue;
                    }
                    Err(status) => status,
                },
                Poll::Ready(Some(Err(status))) => *status,
                Poll::Ready(None) => Status::ok(""),
            };
            this.done = true;
            return Poll::Ready(Some(Ok(trailers(&end))));
        }
    }
}

#[cfg(test)]
#[path = "fast_tests.rs"]
mod tests;
