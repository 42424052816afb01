//! `grpc`: the gRPC health protocol (`grpc.health.v1.Health/Check`) over plaintext HTTP/2;
//! healthy iff the answer is `SERVING` (Istio's `GRPCProber`, same messages).

use super::{PROBE_USER_AGENT, go_duration, join_host_port, port};
use prost::Message;
use std::marker::PhantomData;
use std::time::Duration;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Endpoint;
use weft_model::networking::GrpcHealthCheckConfig;

pub const HEALTH_CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    pub service: String,
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct HealthCheckResponse {
    #[prost(enumeration = "ServingStatus", tag = "1")]
    pub status: i32,
}

/// `grpc.health.v1.HealthCheckResponse.ServingStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ServingStatus {
    Unknown = 0,
    Serving = 1,
    NotServing = 2,
    ServiceUnknown = 3,
}

impl ServingStatus {
    fn name(status: i32) -> String {
        match ServingStatus::try_from(status) {
            Ok(ServingStatus::Unknown) => "UNKNOWN".into(),
            Ok(ServingStatus::Serving) => "SERVING".into(),
            Ok(ServingStatus::NotServing) => "NOT_SERVING".into(),
            Ok(ServingStatus::ServiceUnknown) => "SERVICE_UNKNOWN".into(),
            Err(_) => status.to_string(),
        }
    }
}

/// A prost codec (the agent has no `tonic-prost`): encodes `E`, decodes `D`.
pub struct ProtoCodec<E, D>(PhantomData<fn() -> (E, D)>);

impl<E, D> Default for ProtoCodec<E, D> {
    fn default() -> Self {
        ProtoCodec(PhantomData)
    }
}

pub struct ProtoEncoder<E>(PhantomData<fn() -> E>);
pub struct ProtoDecoder<D>(PhantomData<fn() -> D>);

impl<E, D> Codec for ProtoCodec<E, D>
where
    E: Message + Send + 'static,
    D: Message + Default + Send + 'static,
{
    type Encode = E;
    type Decode = D;
    type Encoder = ProtoEncoder<E>;
    type Decoder = ProtoDecoder<D>;

    fn encoder(&mut self) -> Self::Encoder {
        ProtoEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProtoDecoder(PhantomData)
    }
}

impl<E: Message> Encoder for ProtoEncoder<E> {
    type Item = E;
    type Error = Status;

    fn encode(&mut self, item: E, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("encode: {e}")))
    }
}

impl<D: Message + Default> Decoder for ProtoDecoder<D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        D::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(format!("decode: {e}")))
    }
}

#[derive(Clone, Debug)]
pub struct GrpcCheck {
    pub host: String,
    pub port: u16,
    pub service: String,
}

impl GrpcCheck {
    /// Istio always dials the default host for gRPC (the API has no host field).
    pub fn new(cfg: &GrpcHealthCheckConfig, default_host: &str) -> Result<Self, String> {
        Ok(GrpcCheck {
            host: default_host.to_string(),
            port: port(cfg.port)?,
            service: cfg.service.clone(),
        })
    }

    pub async fn probe(&self, timeout: Duration) -> Result<(), String> {
        match tokio::time::timeout(timeout, self.check(timeout)).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "health rpc probe timed out after {}: context deadline exceeded",
                go_duration(timeout)
            )),
        }
    }

    async fn check(&self, timeout: Duration) -> Result<(), String> {
        let port = self.port;
        let connect_err =
            |e: String| format!("failed to connect health check grpc service on port {port}: {e}");
        let channel =
            Endpoint::from_shared(format!("http://{}", join_host_port(&self.host, self.port)))
                .map_err(|e| connect_err(e.to_string()))?
                .user_agent(PROBE_USER_AGENT)
                .map_err(|e| connect_err(e.to_string()))?
                .connect_timeout(timeout)
                .connect()
                .await
                .map_err(|e| connect_err(crate::upstream::error_chain(&e)))?;
        let mut client = tonic::client::Grpc::new(channel);
        client
            .ready()
            .await
            .map_err(|e| connect_err(crate::upstream::error_chain(&e)))?;
        let mut req = tonic::Request::new(HealthCheckRequest {
            service: self.service.clone(),
        });
        req.set_timeout(timeout);
        let resp = client
            .unary::<_, HealthCheckResponse, _>(
                req,
                http::uri::PathAndQuery::from_static(HEALTH_CHECK_PATH),
                ProtoCodec::default(),
            )
            .await;
        match resp {
            Ok(r) if r.get_ref().status == ServingStatus::Serving as i32 => Ok(()),
            Ok(r) => Err(format!(
                "health rpc probe on port {port} for service {:?}: status {}",
                self.service,
                ServingStatus::name(r.get_ref().status)
            )),
            Err(s) => Err(match s.code() {
                tonic::Code::Unimplemented => format!(
                    "service on port {port} doesn't implement the grpc health protocol grpc.health.v1.Health: {}",
                    status_text(&s)
                ),
                tonic::Code::DeadlineExceeded => format!(
                    "health rpc probe timed out after {}: {}",
                    go_duration(timeout),
                    status_text(&s)
                ),
                code => format!(
                    "health rpc probe failed with status {code:?}: {}",
                    status_text(&s)
                ),
            }),
        }
    }
}

/// Go's rendering of a gRPC status error.
fn status_text(s: &Status) -> String {
    format!("rpc error: code = {:?} desc = {}", s.code(), s.message())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::convert::Infallible;
    use std::net::{Ipv4Addr, SocketAddr};
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll};
    use tonic::codegen::{BoxFuture, Service};
    use tonic::server::{NamedService, UnaryService};

    /// A gRPC health server: the status of each service name (absent: `NOT_FOUND`, like
    /// grpc-go's health server); `implemented: false` answers `UNIMPLEMENTED` to everything.
    #[derive(Clone, Default)]
    pub(crate) struct HealthServer {
        pub statuses: Arc<Mutex<BTreeMap<String, ServingStatus>>>,
        pub implemented: bool,
    }

    struct CheckSvc(HealthServer);

    impl UnaryService<HealthCheckRequest> for CheckSvc {
        type Response = HealthCheckResponse;
        type Future = BoxFuture<tonic::Response<HealthCheckResponse>, Status>;

        fn call(&mut self, req: tonic::Request<HealthCheckRequest>) -> Self::Future {
            let found = self
                .0
                .statuses
                .lock()
                .unwrap()
                .get(&req.get_ref().service)
                .copied();
            Box::pin(async move {
                match found {
                    Some(s) => Ok(tonic::Response::new(HealthCheckResponse {
                        status: s as i32,
                    })),
                    None => Err(Status::not_found("unknown service")),
                }
            })
        }
    }

    impl<B> Service<http::Request<B>> for HealthServer
    where
        B: tonic::codegen::Body + Send + 'static,
        B::Error: Into<tonic::codegen::StdError> + Send + 'static,
    {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = BoxFuture<Self::Response, Infallible>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<B>) -> Self::Future {
            let this = self.clone();
            Box::pin(async move {
                if this.implemented && req.uri().path() == HEALTH_CHECK_PATH {
                    let mut grpc = tonic::server::Grpc::new(ProtoCodec::<
                        HealthCheckResponse,
                        HealthCheckRequest,
                    >::default());
                    return Ok(grpc.unary(CheckSvc(this), req).await);
                }
                Ok(Status::unimplemented("").into_http())
            })
        }
    }

    impl NamedService for HealthServer {
        const NAME: &'static str = "grpc.health.v1.Health";
    }

    pub(crate) async fn serve(server: HealthServer) -> SocketAddr {
        let l = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(server)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l)),
        );
        addr
    }

    fn check(port: u16, service: &str) -> GrpcCheck {
        GrpcCheck::new(
            &GrpcHealthCheckConfig {
                port: port.into(),
                service: service.into(),
            },
            "127.0.0.1",
        )
        .unwrap()
    }

    const T: Duration = Duration::from_secs(2);

    #[tokio::test]
    async fn serving_is_healthy_other_statuses_are_not() {
        let server = HealthServer {
            implemented: true,
            ..Default::default()
        };
        {
            let mut s = server.statuses.lock().unwrap();
            s.insert(String::new(), ServingStatus::Serving);
            s.insert("billing".into(), ServingStatus::NotServing);
        }
        let port = serve(server.clone()).await.port();
        assert_eq!(check(port, "").probe(T).await, Ok(()));
        assert_eq!(
            check(port, "billing").probe(T).await,
            Err(format!(
                "health rpc probe on port {port} for service \"billing\": status NOT_SERVING"
            ))
        );
        server
            .statuses
            .lock()
            .unwrap()
            .insert("billing".into(), ServingStatus::Serving);
        assert_eq!(check(port, "billing").probe(T).await, Ok(()));
        assert_eq!(
            check(port, "nope").probe(T).await,
            Err(
                "health rpc probe failed with status NotFound: rpc error: code = NotFound desc = unknown service"
                    .into()
            )
        );
    }

    #[tokio::test]
    async fn unimplemented_and_refused() {
        let port = serve(HealthServer::default()).await.port();
        let err = check(port, "").probe(T).await.unwrap_err();
        assert!(
            err.starts_with(&format!(
                "service on port {port} doesn't implement the grpc health protocol grpc.health.v1.Health: rpc error: code = Unimplemented"
            )),
            "{err}"
        );
        let closed = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = check(closed, "").probe(T).await.unwrap_err();
        assert!(
            err.starts_with(&format!(
                "failed to connect health check grpc service on port {closed}: "
            )),
            "{err}"
        );
    }
}
