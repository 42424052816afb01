//! WorkloadEntry auto-registration, health reports and clean-up, against the real weftd with
//! delta ADS clients that present bootstrap tokens as VMs do: who may join a group, what the
//! entry looks like, health turning endpoints on and off in another proxy's EDS, disconnect,
//! grace and reconnect, a restart, and manual entries named by `WORKLOAD_ENTRY`.

mod support;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Streaming};
use weft_proto::envoy_types::pb::envoy::config::core::v3::{Locality, Node};
use weft_proto::envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use weft_proto::envoy_types::pb::google::protobuf::{Struct, Value as PbValue, value::Kind};
use weft_proto::envoy_types::pb::google::rpc::Status as RpcStatus;
use weft_proto::type_url;

const NS: &str = "forum-services";
const VM_IP: &str = "198.18.2.10";
const ENTRY: &str = "forum-198.18.2.10-vm-network";
const FORUM_CLUSTER: &str = "outbound|80||forum.forum-services.svc.cluster.local";

const GROUP: &str = r#"
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: forum, namespace: forum-services}
spec:
  metadata:
    labels: {app: forum}
    annotations: {owner: web-team}
  template:
    serviceAccount: forum-sa
    ports: {http: 8080}
  probe:
    periodSeconds: 1
    httpGet: {path: /health, port: 8080}
---
apiVersion: v1
kind: Service
metadata: {name: forum, namespace: forum-services}
spec:
  selector: {app: forum}
  ports: [{name: http, port: 80, targetPort: 8080}]
"#;

fn pb(v: &Value) -> PbValue {
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(a) => {
            Kind::ListValue(weft_proto::envoy_types::pb::google::protobuf::ListValue {
                values: a.iter().map(pb).collect(),
            })
        }
        Value::Object(o) => Kind::StructValue(Struct {
            fields: o.iter().map(|(k, v)| (k.clone(), pb(v))).collect(),
        }),
    };
    PbValue { kind: Some(kind) }
}

fn node(ip: &str, name: &str, ns: &str, sa: &str, extra: Value) -> Node {
    let mut meta = json!({"NAMESPACE": ns, "SERVICE_ACCOUNT": sa, "LABELS": {"version": "v1"}});
    meta.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    let Kind::StructValue(metadata) = pb(&meta).kind.unwrap() else {
        unreachable!()
    };
    Node {
        id: format!("sidecar~{ip}~{name}.{ns}~{ns}.svc.cluster.local"),
        metadata: Some(metadata),
        locality: Some(Locality {
            region: "eu".into(),
            zone: "eu-1".into(),
            sub_zone: String::new(),
        }),
        ..Default::default()
    }
}

fn forum_node(extra: Value) -> Node {
    let mut meta = json!({
        "AUTO_REGISTER_GROUP": "forum",
        "NETWORK": "vm-network",
        "PROXY_CONFIG": {"readinessProbe": {"httpGet": {"path": "/health", "port": 8080}}},
    });
    meta.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    node(VM_IP, "forum-vm", NS, "forum-sa", meta)
}

/// One delta ADS stream.
struct Ads {
    tx: mpsc::Sender<DeltaDiscoveryRequest>,
    rx: Streaming<DeltaDiscoveryResponse>,
}

impl Ads {
    /// Opens a stream whose first request (for `url`, naming `names`) carries `node`.
    async fn open(
        ch: Channel,
        token: Option<&str>,
        node: Node,
        url: &str,
        names: &[&str],
    ) -> Result<Ads, tonic::Status> {
        let (tx, rx) = mpsc::channel(16);
        tx.send(DeltaDiscoveryRequest {
            node: Some(node),
            type_url: url.into(),
            resource_names_subscribe: names.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .await
        .unwrap();
        let mut req = tonic::Request::new(ReceiverStream::new(rx));
        if let Some(t) = token {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        let mut client = AggregatedDiscoveryServiceClient::new(ch);
        let mut stream = client.delta_aggregated_resources(req).await?.into_inner();
        // The first answer proves the stream was accepted (or carries the refusal).
        let first = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("an answer within 10 s")?;
        let first = first.expect("a response");
        let ads = Ads { tx, rx: stream };
        ads.ack(&first).await;
        Ok(ads)
    }

    async fn ack(&self, r: &DeltaDiscoveryResponse) {
        let _ = self
            .tx
            .send(DeltaDiscoveryRequest {
                type_url: r.type_url.clone(),
                response_nonce: r.nonce.clone(),
                ..Default::default()
            })
            .await;
    }

    async fn health(&self, error: Option<&str>) {
        self.tx
            .send(DeltaDiscoveryRequest {
                type_url: type_url::HEALTH_INFO.into(),
                error_detail: error.map(|m| RpcStatus {
                    code: 13,
                    message: m.into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    /// Waits for an EDS update of `cluster` and returns its endpoint addresses.
    async fn next_endpoints(&mut self, cluster: &str) -> Vec<String> {
        loop {
            let r = tokio::time::timeout(Duration::from_secs(10), self.rx.message())
                .await
                .expect("an EDS update within 10 s")
                .unwrap()
                .unwrap();
            self.ack(&r).await;
            for res in &r.resources {
                if res.name != cluster {
                    continue;
                }
                let cla: ClusterLoadAssignment =
                    prost::Message::decode(res.resource.as_ref().unwrap().value.as_slice())
                        .unwrap();
                return cla
                    .endpoints
                    .iter()
                    .flat_map(|l| &l.lb_endpoints)
                    .filter_map(|e| match &e.host_identifier {
                        Some(weft_proto::envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier::Endpoint(ep)) => {
                            ep.address.as_ref().and_then(|a| match &a.address {
                                Some(weft_proto::envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(s)) => Some(s.address.clone()),
                                _ => None,
                            })
                        }
                        _ => None,
                    })
                    .collect();
            }
        }
    }
}

fn admin(w: &Weftd, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let token = std::fs::read_to_string(w.state.join("admin-token")).unwrap();
    http(w.http, method, path, Some(token.trim()), body)
}

fn apply(w: &Weftd, yaml: &str) {
    let (status, body) = admin(w, "POST", "/api/v1/apply", Some(yaml));
    assert_eq!(status, 200, "{body}");
}

/// The WorkloadEntry `name` in `ns` as JSON, if it exists.
fn entry(w: &Weftd, ns: &str, name: &str) -> Option<Value> {
    let (status, body) = admin(
        w,
        "GET",
        &format!("/api/v1/resources/workloadentries?namespace={ns}&name={name}"),
        None,
    );
    match status {
        200 => Some(serde_json::from_str::<Value>(&body).unwrap()["items"][0]["object"].clone()),
        404 => None,
        s => panic!("GET entry: {s} {body}"),
    }
}

fn healthy(e: &Value) -> Option<String> {
    e["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Healthy")
        .map(|c| c["status"].as_str().unwrap_or_default().to_string())
}

async fn eventually(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn refused(r: Result<Ads, tonic::Status>) -> tonic::Status {
    match r {
        Ok(_) => panic!("the stream was accepted"),
        Err(s) => s,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_joins_reports_health_and_is_cleaned_up() {
    let dir = TempDir::new("autoreg");
    let state = dir.path().join("state");
    let w = Weftd::start_with(&state, &["--workload-entry-grace-period", "2s"]);
    let token = w.token(NS, "forum-sa", 600);
    let tls = || async { w.tls_channel(None).await };
    let join = |extra: Value| {
        let token = token.clone();
        async move {
            Ads::open(
                tls().await,
                Some(&token),
                forum_node(extra),
                type_url::CLUSTER,
                &[],
            )
            .await
        }
    };

    // No group yet: refused with FailedPrecondition, as Istio does.
    let s = refused(join(json!({})).await).await;
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    assert!(
        s.message()
            .contains("cannot find WorkloadGroup forum-services/forum"),
        "{s:?}"
    );
    apply(&w, GROUP);

    // Only the group's service account may join; an unauthenticated caller may not.
    let other = w.token(NS, "default", 600);
    let s = refused(
        Ads::open(
            tls().await,
            Some(&other),
            node(
                VM_IP,
                "x",
                NS,
                "default",
                json!({"AUTO_REGISTER_GROUP": "forum", "NETWORK": "vm-network"}),
            ),
            type_url::CLUSTER,
            &[],
        )
        .await,
    )
    .await;
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    assert!(s.message().contains("forum-sa"), "{s:?}");
    let plain = Ads::open(
        plain_channel(&w).await,
        None,
        forum_node(json!({})),
        type_url::CLUSTER,
        &[],
    )
    .await;
    assert_eq!(refused(plain).await.code(), Code::PermissionDenied);
    assert!(entry(&w, NS, ENTRY).is_none());

    // A webapp proxy watching forum's endpoints (plaintext, anonymous: no WorkloadEntry).
    let mut webapp = Ads::open(
        plain_channel(&w).await,
        None,
        node(
            "198.18.1.10",
            "webapp",
            "istioinaction",
            "webapp",
            json!({}),
        ),
        type_url::ENDPOINT,
        &[FORUM_CLUSTER],
    )
    .await
    .unwrap();

    // The group's proxy joins: the entry is created as Istio creates it.
    let vm = join(json!({})).await.expect("the VM joins");
    let e = entry(&w, NS, ENTRY).expect("auto-registered entry");
    let a = &e["metadata"]["annotations"];
    assert_eq!(a["istio.io/autoRegistrationGroup"], "forum");
    assert_eq!(a["owner"], "web-team");
    assert_eq!(a["proxy.istio.io/health-checks-enabled"], "true");
    assert!(
        a["istio.io/connectedAt"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert!(
        a["istio.io/workloadController"]
            .as_str()
            .is_some_and(|c| c.starts_with("weftd-"))
    );
    assert_eq!(
        e["metadata"]["labels"],
        json!({"app": "forum", "version": "v1"})
    );
    assert_eq!(e["metadata"]["ownerReferences"][0]["kind"], "WorkloadGroup");
    assert_eq!(e["metadata"]["ownerReferences"][0]["name"], "forum");
    assert_eq!(e["spec"]["address"], VM_IP);
    assert_eq!(e["spec"]["network"], "vm-network");
    assert_eq!(e["spec"]["locality"], "eu/eu-1/");
    assert_eq!(e["spec"]["serviceAccount"], "forum-sa");
    assert_eq!(healthy(&e), None);

    // Health-checked and not yet healthy: not an endpoint. Healthy → in; unhealthy → out.
    vm.health(None).await;
    let mut eps = vec![];
    for _ in 0..5 {
        eps = webapp.next_endpoints(FORUM_CLUSTER).await;
        if !eps.is_empty() {
            break;
        }
    }
    assert_eq!(eps, vec![VM_IP.to_string()]);
    assert_eq!(
        healthy(&entry(&w, NS, ENTRY).unwrap()).as_deref(),
        Some("True")
    );
    let msg = "status code was not from [200,400), bad code 503";
    vm.health(Some(msg)).await;
    assert_eq!(
        webapp.next_endpoints(FORUM_CLUSTER).await,
        Vec::<String>::new()
    );
    let e = entry(&w, NS, ENTRY).unwrap();
    assert_eq!(healthy(&e).as_deref(), Some("False"));
    let cond = e["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Healthy")
        .unwrap()
        .clone();
    assert_eq!(cond["message"], msg);
    vm.health(None).await;
    assert_eq!(
        webapp.next_endpoints(FORUM_CLUSTER).await,
        vec![VM_IP.to_string()]
    );

    // Another connected workload cannot claim the same address.
    apply(
        &w,
        GROUP
            .replace("name: forum, namespace", "name: forum2, namespace")
            .split("---")
            .next()
            .unwrap(),
    );
    let s = refused(join(json!({"AUTO_REGISTER_GROUP": "forum2"})).await).await;
    assert_eq!(s.code(), Code::AlreadyExists, "{s:?}");
    assert!(s.message().contains(ENTRY), "{s:?}");

    // Disconnect: marked, and a reconnect within the grace keeps the entry.
    drop(vm);
    eventually("disconnectedAt", 5, || {
        entry(&w, NS, ENTRY)
            .is_some_and(|e| e["metadata"]["annotations"]["istio.io/disconnectedAt"].is_string())
    })
    .await;
    let e = entry(&w, NS, ENTRY).unwrap();
    assert!(e["metadata"]["annotations"]["istio.io/connectedAt"].is_null());
    let vm = join(json!({})).await.expect("reconnects");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let e = entry(&w, NS, ENTRY).expect("kept across a reconnect within the grace");
    assert!(e["metadata"]["annotations"]["istio.io/disconnectedAt"].is_null());
    assert_eq!(
        healthy(&e).as_deref(),
        Some("True"),
        "health survives a reconnect"
    );

    // Away for longer than the grace: deleted, and gone from EDS.
    let gone_from = Instant::now();
    drop(vm);
    eventually("deletion after the grace", 10, || {
        entry(&w, NS, ENTRY).is_none()
    })
    .await;
    let took = gone_from.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "deleted after {took:?}, before the grace"
    );
    let mut eps = vec![VM_IP.to_string()];
    for _ in 0..5 {
        eps = webapp.next_endpoints(FORUM_CLUSTER).await;
        if eps.is_empty() {
            break;
        }
    }
    assert!(eps.is_empty(), "{eps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_entries_and_manual_entries_get_health() {
    let dir = TempDir::new("autoreg-restart");
    let state = dir.path().join("state");
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("legacy.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: legacy-vm\n  namespace: forum-services\n  annotations: {proxy.istio.io/health-checks-enabled: \"true\"}\nspec:\n  address: 198.18.2.20\n  serviceAccount: forum-sa\n  labels: {app: forum}\n",
    )
    .unwrap();
    let args = [
        "--workload-entry-grace-period",
        "2s",
        "--config-dir",
        config.to_str().unwrap(),
    ];
    let mut w = Weftd::start_with(&state, &args);
    apply(&w, GROUP);
    let token = w.token(NS, "forum-sa", 600);

    // A manual entry (in a config file) named by WORKLOAD_ENTRY gets the Healthy condition.
    let legacy = Ads::open(
        w.tls_channel(None).await,
        Some(&token),
        node(
            "198.18.2.20",
            "legacy-vm",
            NS,
            "forum-sa",
            json!({"WORKLOAD_ENTRY": "legacy-vm"}),
        ),
        type_url::CLUSTER,
        &[],
    )
    .await
    .unwrap();
    legacy.health(None).await;
    eventually("legacy healthy", 5, || {
        entry(&w, NS, "legacy-vm").is_some_and(|e| healthy(&e).as_deref() == Some("True"))
    })
    .await;

    let vm = Ads::open(
        w.tls_channel(None).await,
        Some(&token),
        forum_node(json!({})),
        type_url::CLUSTER,
        &[],
    )
    .await
    .unwrap();
    vm.health(None).await;
    eventually("forum healthy", 5, || {
        entry(&w, NS, ENTRY).is_some_and(|e| healthy(&e).as_deref() == Some("True"))
    })
    .await;

    // weftd restarts while both are connected: nothing is lost.
    w.stop();
    drop((vm, legacy));
    let w = Weftd::start_with(&state, &args);
    let e = entry(&w, NS, ENTRY).expect("auto-registered entry kept across a restart");
    assert_eq!(healthy(&e).as_deref(), Some("True"));
    assert_eq!(
        healthy(&entry(&w, NS, "legacy-vm").unwrap()).as_deref(),
        Some("True"),
        "a file-owned entry's status is kept across a restart"
    );
    // The VM reconnects; a manual entry whose proxy leaves loses its Healthy condition.
    let vm = Ads::open(
        w.tls_channel(None).await,
        Some(&token),
        forum_node(json!({})),
        type_url::CLUSTER,
        &[],
    )
    .await
    .unwrap();
    let legacy = Ads::open(
        w.tls_channel(None).await,
        Some(&token),
        node(
            "198.18.2.20",
            "legacy-vm",
            NS,
            "forum-sa",
            json!({"WORKLOAD_ENTRY": "legacy-vm"}),
        ),
        type_url::CLUSTER,
        &[],
    )
    .await
    .unwrap();
    drop(legacy);
    eventually("legacy Healthy dropped", 5, || {
        entry(&w, NS, "legacy-vm").is_some_and(|e| healthy(&e).is_none())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        entry(&w, NS, "legacy-vm").is_some(),
        "manual entries are never deleted"
    );
    assert!(entry(&w, NS, ENTRY).is_some(), "a connected entry stays");
    drop(vm);
}

async fn plain_channel(w: &Weftd) -> Channel {
    w.plain_channel().await
}
