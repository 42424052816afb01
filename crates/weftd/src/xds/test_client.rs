//! In-process ADS clients for tests: requests framed into an HTTP body handed straight to
//! [`AdsService`], responses read from the returned body (no sockets).

use super::fast::{AdsService, DELTA_PATH};
use super::push::PushState;
use super::test_mesh::Mesh;
use super::wire::Deframer;
use super::{XdsState, admission::Admission};
use crate::authn::Authenticator;
use crate::conn::PeerInfo;
use crate::metrics::Metrics;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use prost::Message;
use prost::bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{Service, http};
use weft_identity::KeyAlgorithm;
use weft_identity::token::TokenAuthority;
use weft_proto::envoy_types::pb::envoy::config::core::v3::Node;
use weft_proto::envoy_types::pb::google::protobuf::{Empty, Struct, Value, value::Kind};

pub const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";

/// weftd's xDS side on `mesh`, with `admission` full-sync permits; push new states with `set`.
pub struct Server {
    pub state: Arc<XdsState>,
    pub service: AdsService,
    pushes: watch::Sender<Arc<PushState>>,
    version: u64,
    context: Arc<weft_xds::PushContext>,
}

impl Server {
    pub fn new(mesh: &Mesh, admission: usize) -> Server {
        let key = KeyAlgorithm::EcdsaP256.generate().unwrap();
        let tokens = TokenAuthority::from_pem(&key.serialize_pem(), &key.public_key_pem()).unwrap();
        let authn = Authenticator::new(Arc::new(tokens), "cluster.local".into());
        let context = Arc::new(mesh.context(None));
        let (pushes, rx) = watch::channel(Arc::new(PushState {
            version: 1,
            context: context.clone(),
        }));
        // The WorkloadEntry controller needs a store: an empty one in a scratch state directory.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "weftd-test-client-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let store = crate::store::open(None, &dir, "10.96.0.0/16".parse().unwrap()).unwrap();
        let workloads = crate::autoreg::Controller::new(store, crate::autoreg::DEFAULT_GRACE);
        let mut state = XdsState::new(authn, workloads, Arc::new(Metrics::default()), rx);
        state.admission = Admission::new(admission);
        let state = Arc::new(state);
        Server {
            service: AdsService::new(state.clone()),
            state,
            pushes,
            version: 1,
            context,
        }
    }

    /// Publishes the next push state, built from the previous one.
    pub fn set(&mut self, mesh: &Mesh) {
        self.version += 1;
        self.context = Arc::new(mesh.context(Some(&self.context)));
        self.pushes.send_replace(Arc::new(PushState {
            version: self.version,
            context: self.context.clone(),
        }));
    }

    pub async fn open(&mut self, path: &str) -> Client {
        self.open_as(path, false).await
    }

    /// Opens a stream as a client on the plaintext (`tls` false) or TLS port, without credentials.
    pub async fn open_as(&mut self, path: &str, tls: bool) -> Client {
        let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Status>>(64);
        let mut req = http::Request::new(Body::new(StreamBody::new(ReceiverStream::new(rx))));
        *req.uri_mut() = path.parse().unwrap();
        req.extensions_mut().insert(PeerInfo {
            remote: Some(([127, 0, 0, 1], 40000).into()),
            tls,
            certs: None,
        });
        let resp = self.service.call(req).await.unwrap();
        Client {
            headers: resp.headers().clone(),
            tx: Some(tx),
            body: resp.into_body(),
            deframer: Deframer::default(),
            msgs: VecDeque::new(),
            trailers: None,
        }
    }

    pub async fn delta(&mut self) -> Client {
        self.open(DELTA_PATH).await
    }

    pub async fn sotw(&mut self) -> Client {
        self.open(SOTW_PATH).await
    }
}

/// Envoy's node for `proxy` (id and the metadata weftd reads).
pub fn node(proxy: &weft_xds::Proxy) -> Node {
    let s = |v: &str| Value {
        kind: Some(Kind::StringValue(v.to_string())),
    };
    Node {
        id: proxy.id.clone(),
        metadata: Some(Struct {
            fields: [("NAMESPACE".to_string(), s(&proxy.namespace))].into(),
        }),
        ..Default::default()
    }
}

pub struct Client {
    pub headers: http::HeaderMap,
    tx: Option<mpsc::Sender<Result<Frame<Bytes>, Status>>>,
    body: Body,
    deframer: Deframer,
    msgs: VecDeque<Vec<u8>>,
    pub trailers: Option<http::HeaderMap>,
}

pub fn grpc_frame(msg: &[u8]) -> Bytes {
    let mut f = vec![0];
    f.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    f.extend_from_slice(msg);
    f.into()
}

impl Client {
    pub async fn send(&self, req: impl Message) {
        self.send_raw(grpc_frame(&req.encode_to_vec())).await;
    }

    pub async fn send_raw(&self, bytes: Bytes) {
        if let Some(tx) = &self.tx {
            tx.send(Ok(Frame::data(bytes))).await.unwrap();
        }
    }

    /// Ends the request stream (as a client closing its side).
    pub fn close(&mut self) {
        self.tx = None;
    }

    /// The next response, `None` once the stream ended (see `trailers`); panics after 5 s.
    pub async fn recv<T: Message + Default>(&mut self) -> Option<T> {
        self.next_within(Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("no response within 5 s"))
            .map(|m| T::decode(&m[..]).unwrap())
    }

    /// Whether nothing arrives within `wait`.
    pub async fn quiet(&mut self, wait: Duration) -> bool {
        self.next_within(wait).await.is_none()
    }

    /// The next response within `wait` (`None` on timeout or at the end).
    pub async fn recv_within<T: Message + Default>(&mut self, wait: Duration) -> Option<T> {
        self.next_within(wait)
            .await
            .flatten()
            .map(|m| T::decode(&m[..]).unwrap())
    }

    /// `Some(Some(message))`, `Some(None)` at the end, `None` on timeout.
    async fn next_within(&mut self, wait: Duration) -> Option<Option<Vec<u8>>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(m) = self.msgs.pop_front() {
                return Some(Some(m));
            }
            if self.trailers.is_some() {
                return Some(None);
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .ok()?;
            match frame {
                Some(Ok(f)) => match f.into_data() {
                    Ok(data) => {
                        let mut out = Vec::new();
                        self.deframer.push(data, &mut out).unwrap();
                        self.msgs.extend(out);
                    }
                    Err(f) => self.trailers = Some(f.into_trailers().unwrap_or_default()),
                },
                Some(Err(e)) => panic!("response body failed: {e}"),
                None => self.trailers = Some(http::HeaderMap::new()),
            }
        }
    }

    /// The stream's final grpc-status (waits for the end).
    pub async fn status(&mut self) -> String {
        while self.recv::<Empty>().await.is_some() {}
        let t = self.trailers.as_ref().unwrap();
        t.get("grpc-status")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }
}
