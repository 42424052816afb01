use super::*;
use crate::mesh::MeshConfig;
use crate::registry::Allocations;
use crate::virtual_service::VirtualServices;
use crate::virtual_service::resolve::MESH_GATEWAY;
use prost::Message;
use std::sync::Arc;
use weft_model::load::{Outcome, load_str};
use weft_model::snapshot::Snapshot;
use weft_proto::envoy_types::pb::envoy::config::route::v3::{
    header_matcher, query_parameter_matcher, route_match,
};
use weft_proto::envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy;
use weft_proto::envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
    HttpFault, fault_abort,
};
use weft_proto::envoy_types::pb::envoy::r#type::matcher::v3::string_matcher;

const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: bookinfo}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: bookinfo}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}, {name: http-admin, port: 9090}]
"#;

const ROUTES: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-route, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - name: jason
    match:
    - name: by-user
      headers:
        end-user: {exact: jason}
        x-debug: {}
      withoutHeaders:
        x-canary: {prefix: "no"}
      uri: {prefix: /api}
      ignoreUriCase: true
      queryParams:
        v: {regex: "^[12]$"}
      method: {exact: GET}
      authority: {prefix: reviews}
    - sourceLabels: {app: productpage}
      uri: {exact: /only-productpage}
    - port: 9999
      uri: {exact: /other-port}
    route:
    - destination: {host: reviews, subset: v2}
    timeout: 3s
    retries: {attempts: 3, perTryTimeout: 1s, retryOn: "gateway-error,503,cancelled"}
    fault:
      abort: {httpStatus: 418, percentage: {value: 50}}
    headers:
      request:
        set: {x-route: jason}
      response:
        remove: [x-internal]
  - name: split
    match: [{uri: {regex: "/split/.*"}}]
    route:
    - destination: {host: reviews, subset: v1}
      weight: 75
      headers:
        request: {set: {x-version: v1}}
    - destination: {host: reviews, subset: v3}
      weight: 25
    - destination: {host: reviews, subset: v9}
      weight: 0
    mirror: {host: ratings, port: {number: 9090}}
    mirrorPercentage: {value: 12.5}
    corsPolicy:
      allowOrigins: [{exact: "https://app.example"}]
      allowMethods: [GET]
  - name: moved
    match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, authority: new.example, redirectCode: 302}
  - name: teapot
    match: [{uri: {prefix: /teapot}}]
    directResponse: {status: 418, body: {string: "short and stout"}}
  - name: rewritten
    match: [{uri: {prefix: /v1}}]
    rewrite: {uri: /v2, authority: reviews.internal}
    route: [{destination: {host: ratings}}]
    retries: {attempts: 0}
  - name: rest
    route: [{destination: {host: reviews}}]
  - name: unreachable
    route: [{destination: {host: ratings}}]
"#;

struct Fixture {
    registry: Registry,
    vss: VirtualServices,
}

fn fixture(yaml: &str) -> Fixture {
    let resources = load_str("routes.yaml", yaml)
        .into_iter()
        .map(|e| match e.outcome {
            Outcome::Valid { resource, .. } => Arc::new(*resource),
            o => panic!("{o:?}"),
        });
    let snap = Snapshot::new(1, resources);
    Fixture {
        registry: Registry::build(&snap, &Allocations::new(), &MeshConfig::default()),
        vss: VirtualServices::new(&snap),
    }
}

fn routes_for(f: &Fixture, labels: &[(&str, &str)], port: u32) -> Vec<Route> {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let gateways: BTreeSet<String> = [MESH_GATEWAY.to_string()].into();
    let opts = RouteOptions {
        registry: &f.registry,
        listen_port: port,
        gateways: &gateways,
        proxy_labels: &labels,
        proxy_namespace: "bookinfo",
        tls: false,
        port_lookup: PortLookup::ListenerPort,
    };
    http_routes(f.vss.for_mesh("bookinfo")[0], &opts)
}

fn action(r: &Route) -> &weft_proto::envoy_types::pb::envoy::config::route::v3::RouteAction {
    match &r.action {
        Some(route::Action::Route(a)) => a,
        other => panic!("not a route action: {other:?}"),
    }
}

fn cluster(r: &Route) -> &str {
    match &action(r).cluster_specifier {
        Some(route_action::ClusterSpecifier::Cluster(c)) => c,
        other => panic!("{other:?}"),
    }
}

#[test]
fn routes_in_order_until_the_catch_all() {
    let f = fixture(&format!("{SERVICES}---{ROUTES}"));
    let names = |rs: &[Route]| rs.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
    // Not productpage: its source-labelled match and the other port's match are left out; the
    // route after the catch-all `rest` is never generated.
    let routes = routes_for(&f, &[("app", "web")], 9080);
    assert_eq!(
        names(&routes),
        vec![
            "jason.by-user",
            "split",
            "moved",
            "teapot",
            "rewritten",
            "rest"
        ]
    );
    let routes = routes_for(&f, &[("app", "productpage")], 9080);
    assert_eq!(routes[1].name, "jason");
    assert_eq!(routes.len(), 7);
    let on_9999 = routes_for(&f, &[], 9999);
    assert_eq!(on_9999[1].name, "jason");
    assert_eq!(
        on_9999[1].r#match.as_ref().unwrap().path_specifier,
        Some(route_match::PathSpecifier::Path("/other-port".into()))
    );
}

#[test]
fn matches_translate_as_istio() {
    let f = fixture(&format!("{SERVICES}---{ROUTES}"));
    let r = &routes_for(&f, &[], 9080)[0];
    let m = r.r#match.as_ref().unwrap();
    assert_eq!(
        m.path_specifier,
        Some(route_match::PathSpecifier::Prefix("/api".into()))
    );
    assert_eq!(m.case_sensitive.as_ref().map(|b| b.value), Some(false));
    let headers: Vec<(&str, bool, bool)> = m
        .headers
        .iter()
        .map(|h| {
            (
                h.name.as_str(),
                h.invert_match,
                h.treat_missing_header_as_empty,
            )
        })
        .collect();
    // Headers and withoutHeaders sorted by name, then :method and :authority.
    assert_eq!(
        headers,
        vec![
            ("end-user", false, false),
            ("x-canary", true, true),
            ("x-debug", false, false),
            (":method", false, false),
            (":authority", false, false),
        ]
    );
    assert_eq!(
        m.headers[2].header_match_specifier,
        Some(header_matcher::HeaderMatchSpecifier::PresentMatch(true))
    );
    let Some(header_matcher::HeaderMatchSpecifier::StringMatch(sm)) =
        &m.headers[0].header_match_specifier
    else {
        panic!("{:?}", m.headers[0]);
    };
    assert_eq!(
        sm.match_pattern,
        Some(string_matcher::MatchPattern::Exact("jason".into()))
    );
    let Some(query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(q)) =
        &m.query_parameters[0].query_parameter_match_specifier
    else {
        panic!("{:?}", m.query_parameters);
    };
    assert!(matches!(
        &q.match_pattern,
        Some(string_matcher::MatchPattern::SafeRegex(re)) if re.regex == "^[12]$"
    ));
    // The route's own settings.
    assert_eq!(
        cluster(r),
        "outbound|9080|v2|reviews.bookinfo.svc.cluster.local"
    );
    let a = action(r);
    assert_eq!(a.timeout, crate::util::secs(3));
    let retry = a.retry_policy.as_ref().unwrap();
    assert_eq!(
        retry.retry_on,
        "gateway-error,cancelled,retriable-status-codes"
    );
    assert_eq!(retry.retriable_status_codes, vec![503]);
    assert_eq!(retry.num_retries.as_ref().map(|n| n.value), Some(3));
    let fault =
        HttpFault::decode(r.typed_per_filter_config[FAULT_FILTER].value.as_slice()).unwrap();
    let abort = fault.abort.unwrap();
    assert_eq!(
        abort.error_type,
        Some(fault_abort::ErrorType::HttpStatus(418))
    );
    assert_eq!(abort.percentage.unwrap().numerator, 500_000);
    assert_eq!(
        r.request_headers_to_add[0].header.as_ref().unwrap().key,
        "x-route"
    );
    assert_eq!(r.response_headers_to_remove, vec!["x-internal".to_string()]);
    assert_eq!(
        r.decorator.as_ref().unwrap().operation,
        "reviews.bookinfo.svc.cluster.local:9080/api*"
    );
    let meta = r.metadata.as_ref().unwrap().filter_metadata["istio"].fields["config"].clone();
    assert_eq!(
        meta.kind,
        Some(
            weft_proto::envoy_types::pb::google::protobuf::value::Kind::StringValue(
                "/apis/networking.istio.io/v1/namespaces/bookinfo/virtual-service/reviews-route"
                    .into()
            )
        )
    );
}

#[test]
fn weights_mirrors_cors_redirects_and_rewrites() {
    let f = fixture(&format!("{SERVICES}---{ROUTES}"));
    let routes = routes_for(&f, &[], 9080);
    let split = &routes[1];
    let Some(route_action::ClusterSpecifier::WeightedClusters(wc)) =
        &action(split).cluster_specifier
    else {
        panic!("{split:?}");
    };
    let weights: Vec<(&str, u32)> = wc
        .clusters
        .iter()
        .map(|c| (c.name.as_str(), c.weight.as_ref().unwrap().value))
        .collect();
    assert_eq!(
        weights,
        vec![
            ("outbound|9080|v1|reviews.bookinfo.svc.cluster.local", 75),
            ("outbound|9080|v3|reviews.bookinfo.svc.cluster.local", 25),
        ]
    );
    assert_eq!(wc.clusters[0].request_headers_to_add.len(), 1);
    assert!(wc.clusters[1].host_rewrite_specifier.is_none());
    let mirror = &action(split).request_mirror_policies[0];
    assert_eq!(
        mirror.cluster,
        "outbound|9090||ratings.bookinfo.svc.cluster.local"
    );
    assert_eq!(
        mirror
            .runtime_fraction
            .as_ref()
            .unwrap()
            .default_value
            .as_ref()
            .unwrap()
            .numerator,
        125_000
    );
    assert_eq!(
        split.decorator.as_ref().unwrap().operation,
        "reviews-route:9080/split/.*"
    );
    let cors =
        CorsPolicy::decode(split.typed_per_filter_config[CORS_FILTER].value.as_slice()).unwrap();
    assert_eq!(cors.allow_methods, "GET");
    assert_eq!(cors.allow_origin_string_match.len(), 1);

    let Some(route::Action::Redirect(redirect)) = &routes[2].action else {
        panic!("{:?}", routes[2]);
    };
    assert_eq!(redirect.host_redirect, "new.example");
    assert_eq!(redirect.response_code, 1, "FOUND");
    assert_eq!(
        routes[2].decorator.as_ref().unwrap().operation,
        "reviews-route:9080/old*"
    );
    let Some(route::Action::DirectResponse(direct)) = &routes[3].action else {
        panic!("{:?}", routes[3]);
    };
    assert_eq!(direct.status, 418);

    let rewritten = action(&routes[4]);
    assert_eq!(rewritten.prefix_rewrite, "/v2");
    assert_eq!(
        rewritten.host_rewrite_specifier,
        Some(route_action::HostRewriteSpecifier::HostRewriteLiteral(
            "reviews.internal".into()
        ))
    );
    assert_eq!(rewritten.retry_policy, None, "attempts: 0 disables retries");
    // A multi-port service without a destination port: the listener's port.
    assert_eq!(
        cluster(&routes[4]),
        "outbound|9080||ratings.bookinfo.svc.cluster.local"
    );
    // No retries given: Istio's default policy; no timeout.
    let rest = action(&routes[5]);
    assert_eq!(rest.retry_policy, Some(retry::default_policy(false)));
    assert_eq!(rest.timeout, crate::util::secs(0));
}
