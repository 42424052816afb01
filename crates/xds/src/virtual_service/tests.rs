use super::*;
use weft_model::load::{Outcome, load_str};

fn snapshot(yaml: &str) -> Snapshot {
    let resources = load_str("vs.yaml", yaml)
        .into_iter()
        .map(|e| match e.outcome {
            Outcome::Valid { resource, .. } => Arc::new(*resource),
            o => panic!("{o:?}"),
        });
    Snapshot::new(1, resources)
}

fn names(list: &[&Arc<BoundVirtualService>]) -> Vec<String> {
    list.iter()
        .map(|v| format!("{}/{}", v.namespace, v.name))
        .collect()
}

const VISIBILITY: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a-public, namespace: team, creationTimestamp: "2024-01-01T00:00:01Z"}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: b-private, namespace: team, creationTimestamp: "2024-01-01T00:00:03Z"}
spec:
  hosts: [ratings]
  exportTo: ["."]
  http: [{route: [{destination: {host: ratings}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: c-to-web, namespace: team, creationTimestamp: "2024-01-01T00:00:02Z"}
spec:
  hosts: [details]
  exportTo: [web]
  http: [{route: [{destination: {host: details}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: e-gateway, namespace: team, creationTimestamp: "2024-01-01T00:00:00Z"}
spec:
  hosts: [shop.example.com]
  gateways: [shop-gw]
  http: [{route: [{destination: {host: shop}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: f-both, namespace: web, creationTimestamp: "2024-01-01T00:00:00Z"}
spec:
  hosts: [front]
  gateways: [mesh, team/shop-gw]
  exportTo: ["."]
  http: [{route: [{destination: {host: front}}]}]
"#;

#[test]
fn visibility_and_order_follow_istio() {
    let vss = VirtualServices::new(&snapshot(VISIBILITY));
    // Own namespace's private ones first, then exported by name, then public by creation.
    assert_eq!(
        names(&vss.for_mesh("team")),
        vec!["team/b-private", "team/a-public"]
    );
    assert_eq!(
        names(&vss.for_mesh("web")),
        vec!["web/f-both", "team/c-to-web", "team/a-public"]
    );
    assert_eq!(names(&vss.for_mesh("other")), vec!["team/a-public"]);
    // Gateway names resolve in the VirtualService's namespace.
    assert_eq!(
        names(&vss.for_gateway("team", "team/shop-gw")),
        vec!["team/e-gateway"]
    );
    assert_eq!(
        names(&vss.for_gateway("web", "team/shop-gw")),
        vec!["web/f-both", "team/e-gateway"]
    );
    // Short names resolved in the resource's namespace.
    let a = vss.for_mesh("other")[0];
    assert_eq!(a.spec.hosts, vec!["reviews.team.svc.cluster.local"]);
    let dest = a.spec.http[0].route[0].destination.as_ref().unwrap();
    assert_eq!(dest.host, "reviews.team.svc.cluster.local");
    assert!(!vss.http_routes_depend_on_labels());
    assert!(!vss.has_mesh_l4_routes());
}

const DELEGATION: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root, namespace: front}
spec:
  hosts: [bookinfo.example.com]
  http:
  - match: [{uri: {prefix: /productpage}}]
    delegate: {name: productpage, namespace: pp}
  - match: [{uri: {prefix: /reviews}}]
    delegate: {name: reviews}
  - match: [{uri: {prefix: /secret}}]
    delegate: {name: hidden, namespace: pp}
  - route: [{destination: {host: fallback}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage, namespace: pp}
spec:
  http:
  - match: [{uri: {exact: /productpage/v1}}]
    route: [{destination: {host: productpage, subset: v1}}]
  - route: [{destination: {host: productpage}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: hidden, namespace: pp}
spec:
  exportTo: ["."]
  http:
  - route: [{destination: {host: secret}}]
"#;

#[test]
fn delegates_are_merged_into_their_root() {
    let vss = VirtualServices::new(&snapshot(DELEGATION));
    let all = vss.for_mesh("front");
    assert_eq!(names(&all), vec!["front/root"], "delegates are not roots");
    let http = &all[0].spec.http;
    // productpage's two routes (narrowed to the root's prefix), nothing for the missing
    // `front/reviews` nor the delegate not exported to `front`, then the root's last route.
    assert_eq!(http.len(), 3, "{http:#?}");
    let uri = |i: usize| http[i].match_[0].uri.clone().unwrap();
    assert_eq!(uri(0).exact.as_deref(), Some("/productpage/v1"));
    assert_eq!(uri(1).prefix.as_deref(), Some("/productpage"));
    // The delegate's short names resolve in the delegate's namespace.
    let dest = http[0].route[0].destination.as_ref().unwrap();
    assert_eq!(dest.host, "productpage.pp.svc.cluster.local");
    assert_eq!(dest.subset, "v1");
    let last = http[2].route[0].destination.as_ref().unwrap();
    assert_eq!(last.host, "fallback.front.svc.cluster.local");
}
