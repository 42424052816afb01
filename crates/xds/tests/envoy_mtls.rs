//! Two real Envoys speak Istio mTLS with the generated configuration: the webapp sidecar's
//! outbound HTTP listener routes `Host: forum.forum-services` to `outbound|80||forum...`, whose
//! tlsMode-istio endpoint is dialled with ISTIO_MUTUAL (SNI, SAN check on forum's SPIFFE
//! identity, ALPN `istio`); the forum sidecar's `virtualInbound` takes it on its STRICT chain and
//! forwards it to the application with the caller's identity in `x-forwarded-client-cert`,
//! from source 127.0.0.6. Plaintext to the STRICT port is refused.
//!
//! Without iptables there is no capture, so the test re-addresses what capture would provide:
//! the webapp listener `0.0.0.0_80` is bound on 127.0.0.1 (instead of being reached through
//! `virtualOutbound`), the forum endpoint and `virtualInbound` sit on a free loopback port P (the
//! inbound chain's destination port 8080 becomes P), and `inbound|8080||` (ORIGINAL_DST, which
//! without a REDIRECT would dial Envoy itself) becomes a STATIC cluster to the test's
//! application, keeping the generated 127.0.0.6 source binding. Certificates come from Weft's CA
//! as static secrets named like the agent's SDS ones (`default`, `ROOTCA`).

mod common;

use common::envoy::{envoy_binary, static_cluster, static_resources, temp_dir};
use common::mesh::{
    addr, bootstrap, fix_clusters, fix_listener, free_port, get, http_application, secrets, start,
};
use common::snapshot;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant, SystemTime};
use weft_identity::{CertificateAuthority, KeyAlgorithm};
use weft_proto::envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint;
use weft_proto::envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};
use weft_xds::{Allocations, MeshConfig, Proxy, PushContext};

const FORUM_HOST: &str = "forum.forum-services.svc.cluster.local";

/// The application: answers every request with its peer address and the XFCC header.
fn application() -> u16 {
    http_application(|head, peer| {
        let xfcc = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("x-forwarded-client-cert")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default();
        format!("peer={}\nxfcc={xfcc}\n", peer.ip())
    })
}

#[test]
fn webapp_calls_forum_over_istio_mtls() {
    let Some(envoy) = envoy_binary() else {
        eprintln!("skipped: no Envoy binary (set ENVOY_BINARY)");
        return;
    };
    let dir = temp_dir("mtls");
    let snap = snapshot(include_str!("../testdata/forum.yaml"));
    let mut allocations = Allocations::new();
    allocations.insert(
        ("forum-services".into(), "forum".into()),
        "10.96.0.20".parse().unwrap(),
    );
    let ctx = PushContext::new(snap, &allocations, &MeshConfig::default());
    let ca =
        CertificateAuthority::new_root(KeyAlgorithm::EcdsaP256, "weft-test", SystemTime::now())
            .unwrap();
    let app_port = application();
    let inbound_port = free_port();
    let outbound_port = free_port();

    // Forum: virtualInbound on P; inbound|8080|| to the application.
    let forum = Proxy::sidecar(
        "forum-vm",
        "forum-services",
        "198.18.1.10",
        &[("app", "forum")],
    );
    let (listeners, mut clusters) = static_resources(&ctx, &forum);
    let mut inbound = listeners
        .into_iter()
        .find(|l| l.name == "virtualInbound")
        .unwrap();
    inbound.address = Some(addr("127.0.0.1", inbound_port));
    for chain in &mut inbound.filter_chains {
        if let Some(m) = &mut chain.filter_chain_match
            && m.destination_port.as_ref().is_some_and(|p| p.value == 8080)
        {
            m.destination_port = Some(UInt32Value {
                value: u32::from(inbound_port),
            });
        }
    }
    fix_listener(&mut inbound);
    let app = clusters
        .iter_mut()
        .find(|c| c.name == "inbound|8080||")
        .unwrap();
    let bind = app.upstream_bind_config.clone();
    *app = static_cluster("inbound|8080||", addr("127.0.0.1", app_port));
    app.upstream_bind_config = bind;
    fix_clusters(&mut clusters);
    let _forum_envoy = start(
        &envoy,
        &dir,
        "forum",
        bootstrap(
            &forum,
            vec![inbound],
            clusters,
            secrets(&ca, "forum-services", "forum-sa"),
        ),
    );

    // Webapp: 0.0.0.0_80 bound on 127.0.0.1:Q; forum's endpoint at 127.0.0.1:P.
    let webapp = Proxy::sidecar(
        "webapp",
        "istioinaction",
        "198.18.1.20",
        &[("app", "webapp")],
    );
    let (listeners, mut clusters) = static_resources(&ctx, &webapp);
    let mut outbound = listeners
        .into_iter()
        .find(|l| l.name == "0.0.0.0_80")
        .unwrap();
    outbound.address = Some(addr("127.0.0.1", outbound_port));
    outbound.bind_to_port = Some(BoolValue { value: true });
    let forum_cluster = clusters
        .iter_mut()
        .find(|c| c.name == format!("outbound|80||{FORUM_HOST}"))
        .unwrap();
    for ep in forum_cluster
        .load_assignment
        .as_mut()
        .unwrap()
        .endpoints
        .iter_mut()
        .flat_map(|l| l.lb_endpoints.iter_mut())
    {
        if let Some(lb_endpoint::HostIdentifier::Endpoint(e)) = &mut ep.host_identifier {
            e.address = Some(addr("127.0.0.1", inbound_port));
        }
    }
    fix_clusters(&mut clusters);
    let _webapp_envoy = start(
        &envoy,
        &dir,
        "webapp",
        bootstrap(
            &webapp,
            vec![outbound],
            clusters,
            secrets(&ca, "istioinaction", "webapp"),
        ),
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    let response = loop {
        match get(outbound_port, "forum.forum-services") {
            Ok(r) if r.starts_with("HTTP/1.1 200") => break r,
            other if Instant::now() > deadline => {
                let logs = ["forum", "webapp"].map(|n| {
                    std::fs::read_to_string(dir.join(format!("{n}.log"))).unwrap_or_default()
                });
                panic!(
                    "no 200 through the mesh: {other:?}\nforum:\n{}\nwebapp:\n{}",
                    logs[0], logs[1]
                );
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    assert!(
        response.contains("URI=spiffe://cluster.local/ns/istioinaction/sa/webapp"),
        "{response}"
    );
    assert!(response.contains("peer=127.0.0.6"), "{response}");
    // The VIP and the full host name route the same way.
    for host in ["10.96.0.20", FORUM_HOST] {
        let r = get(outbound_port, host).unwrap();
        assert!(r.starts_with("HTTP/1.1 200"), "{host}: {r}");
    }

    // STRICT: plaintext straight to the inbound port gets no HTTP answer.
    let mut s = TcpStream::connect(("127.0.0.1", inbound_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = write!(s, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let _ = s.shutdown(Shutdown::Write);
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(!out.contains("HTTP/1.1"), "plaintext was answered: {out}");
    let _ = std::fs::remove_dir_all(&dir);
}
