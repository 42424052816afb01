//! `/debug/ndsz` end to end: weftd with a config directory holding a Service (VIP allocated) and
//! a DNS ServiceEntry without addresses (address auto-allocated from 240.240.0.0/16); a proxy
//! connected over ADS gets its name table shown, and the ServiceEntry keeps its address when
//! weftd restarts on the same state directory.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;
use weft_proto::envoy_types::pb::envoy::config::core::v3::Node;
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use weft_proto::type_url;
use weft_testkit::local::free_loopback_ports;

const CONFIG: &str = "apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: apps
spec:
  ports:
  - name: http
    port: 80
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: api
  namespace: apps
spec:
  hosts: [api.example.com]
  resolution: DNS
  ports:
  - {number: 443, name: tls, protocol: TLS}
";

struct Weftd {
    child: Child,
    log: PathBuf,
    plain: SocketAddr,
    http: SocketAddr,
}

impl Drop for Weftd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(base: &Path, run: usize) -> Weftd {
    let a = free_loopback_ports(4).unwrap();
    let log = base.join(format!("weftd-{run}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_weftd"))
        .arg("--state-dir")
        .arg(base.join("state"))
        .arg("--config-dir")
        .arg(base.join("config"))
        .args(["--xds-tls-addr", &a[0].to_string()])
        .args(["--xds-plaintext-addr", &a[1].to_string()])
        .args(["--http-addr", &a[2].to_string()])
        .args(["--monitoring-addr", &a[3].to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .expect("spawn weftd");
    let w = Weftd {
        child,
        log,
        plain: a[1],
        http: a[2],
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.iter().any(|addr| TcpStream::connect(addr).is_err()) {
        assert!(
            Instant::now() < deadline,
            "weftd not ready:\n{}",
            std::fs::read_to_string(&w.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    w
}

/// `GET path`: status and body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: weftd\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// Opens an ADS stream as sidecar `client.apps` and waits for its first response, so weftd
/// knows the proxy. The stream stays open while the returned sender lives.
async fn connect(w: &Weftd) -> tokio::sync::mpsc::Sender<DiscoveryRequest> {
    let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{}", w.plain))
        .await
        .expect("connect ADS");
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(DiscoveryRequest {
        node: Some(Node {
            id: "sidecar~10.0.0.9~client.apps~apps.svc.cluster.local".into(),
            ..Default::default()
        }),
        type_url: type_url::CLUSTER.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut responses = client
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("ADS stream")
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(10), responses.next())
        .await
        .expect("a CDS response")
        .expect("stream open")
        .expect("no error");
    assert_eq!(first.type_url, type_url::CLUSTER);
    // Keep reading in the background so the stream stays healthy.
    tokio::spawn(async move { while responses.next().await.is_some() {} });
    tx
}

fn table(w: &Weftd) -> serde_json::Map<String, Value> {
    let (status, body) = get(w.http, "/debug/ndsz?proxyID=client.apps");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let configs = v["configs"].as_array().expect("configs");
    assert_eq!(configs.len(), 1, "{body}");
    assert_eq!(configs[0]["@type"], type_url::NAME_TABLE);
    configs[0]["table"].as_object().expect("table").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndsz_shows_the_name_table_and_auto_addresses_survive_restart() {
    let base = std::env::temp_dir().join(format!("weftd-ndsz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(base.join("config")).unwrap();
    std::fs::create_dir_all(base.join("state")).unwrap();
    std::fs::write(base.join("config/apps.yaml"), CONFIG).unwrap();

    let w = start(&base, 1);
    // Not connected yet / no proxy named: Istio's answers.
    assert_eq!(get(w.http, "/debug/ndsz").0, 400);
    assert_eq!(get(w.http, "/debug/ndsz?proxyID=client.apps").0, 404);
    let _ads = connect(&w).await;
    let t = table(&w);
    let web = &t["web.apps.svc.cluster.local"];
    assert_eq!(web["registry"], "Kubernetes");
    assert_eq!(web["shortname"], "web");
    assert_eq!(web["namespace"], "apps");
    assert!(
        web["ips"][0].as_str().unwrap().starts_with("10.96."),
        "{web}"
    );
    let api = &t["api.example.com"];
    assert_eq!(api["registry"], "External");
    assert_eq!(api["ips"], serde_json::json!(["240.240.0.1"]));
    assert!(api.get("shortname").is_none(), "{api}");
    drop(_ads);
    drop(w);

    // Restart on the same state directory: the same addresses.
    let w = start(&base, 2);
    let _ads = connect(&w).await;
    let again = table(&w);
    assert_eq!(again, t);
    drop(w);
    let _ = std::fs::remove_dir_all(&base);
}
