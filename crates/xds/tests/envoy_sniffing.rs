//! Protocol sniffing in real Envoys. `legacy` (testdata/sniffing.yaml, PERMISSIVE) declares no
//! protocol on its ports 8000 (an HTTP application) and 9000 (a TCP echo). Through the client
//! sidecar's `10.96.5.5_8000` listener an HTTP request is handled as HTTP (its route adds
//! `x-envoy-attempt-count`, and the client Envoy counts it under `http.outbound_10.96.5.5_8000`),
//! while non-HTTP bytes through `10.96.5.5_9000` are proxied as TCP and echoed, then cross
//! legacy's sidecar over mTLS. Straight to legacy's sidecar in plaintext, HTTP takes the sniffed
//! HTTP chain (its connection manager adds `x-request-id`) and other bytes the TCP chain.
//!
//! Without capture, as in envoy_mtls.rs: the client's two listeners are bound on loopback ports,
//! legacy's `virtualInbound` listens on two loopback ports P1, P2 standing for 8000 and 9000
//! (its chains' destination ports rewritten), and `inbound|<port>||` become STATIC clusters to
//! the test's applications.

mod common;

use common::envoy::{envoy_binary, static_cluster, static_resources, temp_dir};
use common::mesh::{
    addr, bootstrap, fix_clusters, fix_listener, free_port, get, http_application, secrets, start,
};
use common::snapshot;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};
use weft_identity::{CertificateAuthority, KeyAlgorithm};
use weft_proto::envoy_types::pb::envoy::config::bootstrap::v3::{Admin, Bootstrap};
use weft_proto::envoy_types::pb::envoy::config::cluster::v3::Cluster;
use weft_proto::envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint;
use weft_proto::envoy_types::pb::envoy::config::listener::v3::AdditionalAddress;
use weft_proto::envoy_types::pb::google::protobuf::BoolValue;
use weft_xds::{Allocations, MeshConfig, Proxy, PushContext};

const LEGACY: &str = "legacy.apps.svc.cluster.local";

/// Answers every request with the request's header lines (lower-cased) as its body.
fn headers_application() -> u16 {
    http_application(|head, _| head.to_ascii_lowercase())
}

/// Echoes every connection's bytes back.
fn echo_application() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(50) {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = conn.read(&mut chunk) {
                    if n == 0 || conn.write_all(&chunk[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// Sends bytes that are not HTTP and reads as many back.
fn echo(port: u16) -> Result<Vec<u8>, String> {
    let payload = b"\x00\x01\x02 weft raw bytes \xff\r\n";
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(payload).map_err(|e| e.to_string())?;
    let mut back = vec![0u8; payload.len()];
    s.read_exact(&mut back).map_err(|e| e.to_string())?;
    let _ = s.shutdown(Shutdown::Both);
    if back != payload {
        return Err(format!("echoed {back:?}"));
    }
    Ok(back)
}

/// `GET <path>` on 127.0.0.1:`port`; the whole response.
fn request(port: u16, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// The value of counter `name` on an Envoy admin port (0 when absent).
fn counter(admin: u16, name: &str) -> u64 {
    let body = request(admin, &format!("/stats?filter=^{name}$")).unwrap_or_default();
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Retries `f` until it succeeds or 20 s pass (Envoy takes a moment to start).
fn eventually<T>(what: &str, dir: &Path, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if Instant::now() > deadline => {
                let logs = ["legacy", "client"].map(|n| {
                    std::fs::read_to_string(dir.join(format!("{n}.log"))).unwrap_or_default()
                });
                panic!("{what}: {e}\nlegacy:\n{}\nclient:\n{}", logs[0], logs[1]);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Replaces `name` by a STATIC cluster to 127.0.0.1:`port`, keeping its source binding and
/// HTTP protocol options.
fn to_application(clusters: &mut [Cluster], name: &str, port: u16) {
    let c = clusters.iter_mut().find(|c| c.name == name).unwrap();
    let bind = c.upstream_bind_config.clone();
    let options = c.typed_extension_protocol_options.clone();
    *c = static_cluster(name, addr("127.0.0.1", port));
    c.upstream_bind_config = bind;
    c.typed_extension_protocol_options = options;
}

fn with_admin(mut b: Bootstrap, port: u16) -> Bootstrap {
    b.admin = Some(Admin {
        address: Some(addr("127.0.0.1", port)),
        ..Default::default()
    });
    b
}

#[test]
fn unnamed_ports_carry_http_as_http_and_other_bytes_as_tcp() {
    let Some(envoy) = envoy_binary() else {
        eprintln!("skipped: no Envoy binary (set ENVOY_BINARY)");
        return;
    };
    let dir = temp_dir("sniffing");
    // PERMISSIVE on both ports (the scenario's DISABLE on 9000 is for the golden files).
    let yaml = include_str!("../testdata/sniffing.yaml")
        .replace("  portLevelMtls:\n    9000:\n      mode: DISABLE\n", "");
    let ctx = PushContext::new(snapshot(&yaml), &Allocations::new(), &MeshConfig::default());
    let ca =
        CertificateAuthority::new_root(KeyAlgorithm::EcdsaP256, "weft-test", SystemTime::now())
            .unwrap();
    let (http_app, echo_app) = (headers_application(), echo_application());
    let (p1, p2) = (free_port(), free_port());
    let (legacy_admin, client_admin) = (free_port(), free_port());

    // legacy: virtualInbound on P1 (for 8000) and P2 (for 9000).
    let legacy = Proxy::sidecar("legacy", "apps", "198.18.5.10", &[("app", "legacy")]);
    let (listeners, mut clusters) = static_resources(&ctx, &legacy);
    let mut inbound = listeners
        .into_iter()
        .find(|l| l.name == "virtualInbound")
        .unwrap();
    inbound.address = Some(addr("127.0.0.1", p1));
    inbound.additional_addresses = vec![AdditionalAddress {
        address: Some(addr("127.0.0.1", p2)),
        ..Default::default()
    }];
    for chain in &mut inbound.filter_chains {
        if let Some(m) = &mut chain.filter_chain_match
            && let Some(p) = &mut m.destination_port
        {
            match p.value {
                8000 => p.value = p1.into(),
                9000 => p.value = p2.into(),
                _ => {}
            }
        }
    }
    fix_listener(&mut inbound);
    to_application(&mut clusters, "inbound|8000||", http_app);
    to_application(&mut clusters, "inbound|9000||", echo_app);
    fix_clusters(&mut clusters);
    let b = bootstrap(
        &legacy,
        vec![inbound],
        clusters,
        secrets(&ca, "apps", "legacy"),
    );
    let _legacy = start(&envoy, &dir, "legacy", with_admin(b, legacy_admin));

    // client: legacy's two sniffed listeners bound on Q1, Q2; legacy's endpoint at P1 / P2.
    let client = Proxy::sidecar("client", "apps", "198.18.5.20", &[("app", "client")]);
    let (listeners, mut clusters) = static_resources(&ctx, &client);
    let (q1, q2) = (free_port(), free_port());
    let outbound: Vec<_> = listeners
        .into_iter()
        .filter_map(|mut l| {
            let port = match l.name.as_str() {
                "10.96.5.5_8000" => q1,
                "10.96.5.5_9000" => q2,
                _ => return None,
            };
            l.address = Some(addr("127.0.0.1", port));
            l.bind_to_port = Some(BoolValue { value: true });
            Some(l)
        })
        .collect();
    assert_eq!(outbound.len(), 2);
    for (port, target) in [(8000, p1), (9000, p2)] {
        let name = format!("outbound|{port}||{LEGACY}");
        let c = clusters.iter_mut().find(|c| c.name == name).unwrap();
        for ep in c
            .load_assignment
            .as_mut()
            .unwrap()
            .endpoints
            .iter_mut()
            .flat_map(|l| l.lb_endpoints.iter_mut())
        {
            if let Some(lb_endpoint::HostIdentifier::Endpoint(e)) = &mut ep.host_identifier {
                e.address = Some(addr("127.0.0.1", target));
            }
        }
    }
    fix_clusters(&mut clusters);
    let b = bootstrap(&client, outbound, clusters, secrets(&ca, "apps", "client"));
    let _client = start(&envoy, &dir, "client", with_admin(b, client_admin));

    // HTTP on the unnamed port 8000, through both sidecars (mTLS between them).
    let response = eventually("HTTP through the client sidecar", &dir, || {
        get(q1, "legacy.apps")
            .and_then(|r| r.starts_with("HTTP/1.1 200").then_some(r.clone()).ok_or(r))
    });
    // The client's route handled it: HTTP-level, not bytes.
    assert!(response.contains("x-envoy-attempt-count: 1"), "{response}");
    let stat = "http.outbound_10.96.5.5_8000.downstream_rq_total";
    assert!(counter(client_admin, stat) >= 1, "{stat}");

    // Other bytes on the unnamed port 9000: TCP, echoed, no HTTP on that listener.
    eventually("raw bytes through the client sidecar", &dir, || echo(q2));
    assert_eq!(
        counter(
            client_admin,
            "http.outbound_10.96.5.5_9000.downstream_rq_total"
        ),
        0
    );
    let stat = format!("tcp.outbound|9000||{LEGACY}.downstream_cx_total");
    assert!(counter(client_admin, &stat) >= 1, "{stat}");

    // Plaintext straight to legacy's sidecar: HTTP is sniffed as HTTP on 8000...
    let r = get(p1, "legacy.apps").unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("x-request-id:"), "{r}");
    let stat = "http.inbound_0.0.0.0_8000.downstream_rq_total";
    assert!(counter(legacy_admin, stat) >= 1, "{stat}");
    // ... and raw bytes on 9000 are TCP.
    echo(p2).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
