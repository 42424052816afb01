//! What differs between state-of-the-world and delta ADS, so one proxy loop serves both.

use super::Intercepted;
use weft_proto::envoy_types::pb::google::rpc::Status as RpcStatus;
use crate::probe::{self, ProbeState};
use crate::upstream::BoxFuture;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};
use tokio_stream::wrappers::ReceiverStream;
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};

/// What differs between SotW and delta ADS.
pub(super) trait Flavor: Send + 'static {
    type Req: prost::Message + Default + Send + 'static;
    type Resp: prost::Message + Default + Send + 'static;
    const KIND: &'static str;
    fn node_id(req: &Self::Req) -> Option<&str>;
    fn request_type_url(req: &Self::Req) -> &str;
    fn response_type_url(resp: &Self::Resp) -> &str;
    /// The proxy's own initial request for `type_url`.
    fn subscribe(type_url: &str) -> Self::Req;
    /// The `HealthInformation` request reporting `state`.
    fn health(state: &ProbeState) -> Self::Req;
    /// Turns an intercepted response into what the agent gets and the ACK to send upstream.
    fn consume(resp: Self::Resp, node_id: &str) -> (Intercepted, Self::Req);
    /// Makes an ACK a NACK.
    fn reject(ack: &mut Self::Req, detail: RpcStatus);
    fn open(
        client: AggregatedDiscoveryServiceClient<Channel>,
        request: Request<ReceiverStream<Self::Req>>,
    ) -> BoxFuture<Result<Response<Streaming<Self::Resp>>, Status>>;
}

pub(super) struct Sotw;
pub(super) struct Delta;

impl Flavor for Sotw {
    type Req = DiscoveryRequest;
    type Resp = DiscoveryResponse;
    const KIND: &'static str = "sotw";

    fn node_id(req: &DiscoveryRequest) -> Option<&str> {
        req.node.as_ref().map(|n| n.id.as_str())
    }
    fn request_type_url(req: &DiscoveryRequest) -> &str {
        &req.type_url
    }
    fn response_type_url(resp: &DiscoveryResponse) -> &str {
        &resp.type_url
    }
    fn subscribe(type_url: &str) -> DiscoveryRequest {
        DiscoveryRequest {
            type_url: type_url.to_string(),
            ..Default::default()
        }
    }
    fn health(state: &ProbeState) -> DiscoveryRequest {
        probe::health_request(state)
    }
    fn consume(resp: DiscoveryResponse, node_id: &str) -> (Intercepted, DiscoveryRequest) {
        let ack = DiscoveryRequest {
            type_url: resp.type_url.clone(),
            version_info: resp.version_info.clone(),
            response_nonce: resp.nonce.clone(),
            ..Default::default()
        };
        let resources = resp
            .resources
            .into_iter()
            .map(|any| Resource {
                version: resp.version_info.clone(),
                resource: Some(any),
                ..Default::default()
            })
            .collect();
        let got = Intercepted {
            node_id: node_id.to_string(),
            type_url: resp.type_url,
            version_info: resp.version_info,
            resources,
            removed_resources: Vec::new(),
            delta: false,
        };
        (got, ack)
    }
    fn reject(ack: &mut DiscoveryRequest, detail: RpcStatus) {
        ack.error_detail = Some(detail);
    }
    fn open(
        mut client: AggregatedDiscoveryServiceClient<Channel>,
        request: Request<ReceiverStream<DiscoveryRequest>>,
    ) -> BoxFuture<Result<Response<Streaming<DiscoveryResponse>>, Status>> {
        Box::pin(async move { client.stream_aggregated_resources(request).await })
    }
}

impl Flavor for Delta {
    type Req = DeltaDiscoveryRequest;
    type Resp = DeltaDiscoveryResponse;
    const KIND: &'static str = "delta";

    fn node_id(req: &DeltaDiscoveryRequest) -> Option<&str> {
        req.node.as_ref().map(|n| n.id.as_str())
    }
    fn request_type_url(req: &DeltaDiscoveryRequest) -> &str {
        &req.type_url
    }
    fn response_type_url(resp: &DeltaDiscoveryResponse) -> &str {
        &resp.type_url
    }
    fn subscribe(type_url: &str) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: type_url.to_string(),
            ..Default::default()
        }
    }
    fn health(state: &ProbeState) -> DeltaDiscoveryRequest {
        probe::delta_health_request(state)
    }
    fn consume(
        resp: DeltaDiscoveryResponse,
        node_id: &str,
    ) -> (Intercepted, DeltaDiscoveryRequest) {
        let ack = DeltaDiscoveryRequest {
            type_url: resp.type_url.clone(),
            response_nonce: resp.nonce.clone(),
            ..Default::default()
        };
        let mut removed = resp.removed_resources;
        removed.extend(resp.removed_resource_names.into_iter().map(|n| n.name));
        let got = Intercepted {
            node_id: node_id.to_string(),
            type_url: resp.type_url,
            version_info: resp.system_version_info,
            resources: resp.resources,
            removed_resources: removed,
            delta: true,
        };
        (got, ack)
    }
    fn reject(ack: &mut DeltaDiscoveryRequest, detail: RpcStatus) {
        ack.error_detail = Some(detail);
    }
    fn open(
        mut client: AggregatedDiscoveryServiceClient<Channel>,
        request: Request<ReceiverStream<DeltaDiscoveryRequest>>,
    ) -> BoxFuture<Result<Response<Streaming<DeltaDiscoveryResponse>>, Status>> {
        Box::pin(async move { client.delta_aggregated_resources(request).await })
    }
}
