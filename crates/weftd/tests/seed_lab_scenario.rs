//! The seed lab (seed 002, "extending the mesh to VMs") across two networks, with real Envoys,
//! built by `weft_testkit::seed_lab` (which `scripts/demo` narrates):
//!
//! ```text
//!  network "cluster" 198.18.0.0/24            network "vm-network" 198.18.1.0/24
//!  cp      .10  weftd                          forum     .11  the VM (agent, capture, app)
//!  gw      .11 ─── east-west gateway ─── .10   outsider  .12  no mesh
//!  webapp  .12  agent, capture, app            dns       .13  the VMs' DNS server (dnsmasq)
//!  catalog .13  agent, capture, app
//! ```
//!
//! The gateway (`weft-agent proxy router`) forwards nothing at the IP level: the VM reaches only
//! the gateway's address. Using the seed's own YAML (fixed where Istio rejects it): the forum
//! bundle is made with `--ingressIP <gateway>`, so the VM agent's control-plane connection goes
//! through the gateway's `PASSTHROUGH` 15012 server (expose-istiod) to weftd; on the VM the
//! agent's DNS proxy answers mesh names with their VIPs and forwards other names to the VM's DNS
//! server; the VM's app calls `webapp.istioinaction` and `catalog.istioinaction` and goes through
//! capture, Envoy and the gateway's `AUTO_PASSTHROUGH` 15443 server (one SNI cluster per
//! service); webapp calls `forum.forum-services` and reaches the VM through the gateway too (the gateway is the vm-network's gateway in the mesh
//! networks); with mesh-wide STRICT mTLS a plain request to the VM from outside fails while mesh
//! traffic goes on. The gateway Envoy's stats prove each path.

use std::time::Duration;
use weft_testkit::Lab;
use weft_testkit::seed_lab::{
    ISTIOD_CLUSTER, OUTSIDE_ADDR, OUTSIDE_NAME, SeedLab, admin, call, clusters, connect,
    sni_cluster, stat,
};

#[test]
fn seed_lab_vm_joins_and_talks_to_the_cluster_through_the_east_west_gateway() {
    let s = SeedLab::new(Lab::new("seedlab").unwrap()).unwrap();
    let (gw_internal, gw_external) = (s.gw_internal(), s.gw_external());
    s.write_config().unwrap();
    let cp = s.start_weftd().unwrap();
    let dns = s.start_dns_server().unwrap();

    // The east-west gateway: `weft-agent proxy router` on the cluster network.
    let (_gw_root, gw_agent) = s.start_gateway(&cp).unwrap();
    s.wait_gateway(&gw_agent).unwrap();
    assert!(
        !admin(&s.gw, "/listeners").contains("virtualInbound"),
        "a router has no inbound listener"
    );

    // webapp and catalog: app, capture, agent, on the cluster network.
    let webapp = s.start_cluster_workload(&cp, &s.webapp, "webapp").unwrap();
    let catalog = s
        .start_cluster_workload(&cp, &s.catalog, "catalog")
        .unwrap();

    // The forum VM: the bundle from the seed's group with --ingressIP <gateway>, installed as
    // Istio's VM instructions do; the agent can only reach weftd through the gateway.
    let bundle = s.configure_forum(&cp).unwrap();
    assert!(
        bundle.printed.contains("was successful"),
        "{}",
        bundle.printed
    );
    let hosts = std::fs::read_to_string(bundle.dir.join("hosts")).unwrap();
    assert_eq!(
        hosts.trim(),
        format!("{gw_external} istiod.istio-system.svc")
    );
    let (forum_root, _) = s.install_forum(&bundle).unwrap();
    let env = std::fs::read_to_string(forum_root.path("var/lib/istio/envoy/cluster.env")).unwrap();
    assert!(env.contains("ISTIO_META_NETWORK='vm-network'"), "{env}");
    s.start_forum_app().unwrap();
    // No direct path from the VM to the cluster network.
    for target in [
        format!("{}:15012", s.cp.ip()),
        format!("{}:8080", s.webapp.ip()),
    ] {
        let c = connect(&s.forum, &target);
        assert_eq!(
            c.status, 0,
            "the VM reached {target} directly: {}",
            c.output
        );
    }
    assert_eq!(connect(&s.forum, &format!("{gw_external}:15012")).status, 1);
    let forum_agent = s.start_forum_agent(&forum_root).unwrap();

    // 1. The VM joins through the gateway (expose-istiod): registered, healthy.
    s.wait_forum_healthy(&cp, &forum_agent).unwrap();
    assert!(stat(&s.gw, &format!("{ISTIOD_CLUSTER}.upstream_cx_total")) >= 1);
    assert!(
        stat(&s.gw, &format!("{ISTIOD_CLUSTER}.upstream_cx_active")) >= 1,
        "the VM's xDS stream stays open through the gateway"
    );

    // 2. DNS on the VM: the agent answers mesh names from weftd's name table and forwards
    //    other names to the VM's DNS server.
    let long = Duration::from_secs(30);
    let forum_vip = cp.service_vip("forum-services", "forum").unwrap();
    let webapp_vip = cp.service_vip("istioinaction", "webapp").unwrap();
    let catalog_vip = cp.service_vip("istioinaction", "catalog").unwrap();
    assert_ne!(catalog_vip, webapp_vip);
    for (name, vip) in [
        ("webapp.istioinaction", &webapp_vip),
        ("catalog.istioinaction", &catalog_vip),
        ("forum.forum-services", &forum_vip),
    ] {
        let got = s.wait_dig(&s.forum, name, vip, long).unwrap();
        assert_eq!(got.output.trim(), vip.as_str(), "{name}");
    }
    let got = s
        .wait_dig(&s.forum, OUTSIDE_NAME, OUTSIDE_ADDR, long)
        .unwrap();
    assert_eq!(got.output.trim(), OUTSIDE_ADDR);
    let asked = format!("query[A] {OUTSIDE_NAME} from {}", s.forum.ip());
    assert!(dns.log().contains(&asked), "{}", dns.log());

    // 3. webapp → forum.forum-services (webapp's agent resolves it): webapp's Envoy has the VM
    //    as the gateway's address, and the gateway's SNI-DNAT cluster carries it, mTLS end to end.
    let forum_url = "http://forum.forum-services/api/users".to_string();
    let got = s
        .wait_call(
            &s.webapp,
            &[&forum_url],
            long,
            &[&webapp.agent, &forum_agent],
        )
        .unwrap();
    assert!(got.output.contains("server=forum"), "{}", got.output);
    assert!(
        got.output
            .contains("URI=spiffe://cluster.local/ns/istioinaction/sa/webapp"),
        "{}",
        got.output
    );
    let forum_cluster = "outbound|80||forum.forum-services.svc.cluster.local";
    let endpoints = clusters(&s.webapp, forum_cluster);
    assert!(
        endpoints
            .iter()
            .any(|l| l.starts_with(&format!("{forum_cluster}::{gw_internal}:15443::"))),
        "{endpoints:?}"
    );
    let forum_sni = sni_cluster("forum.forum-services");
    assert!(stat(&s.gw, &format!("{forum_sni}.upstream_cx_total")) >= 1);

    // 4. The VM's app → webapp.istioinaction and catalog.istioinaction: DNS capture, traffic
    //    capture, the VM's Envoy, the gateway on 15443, which picks the service by SNI.
    let webapp_url = "webapp.istioinaction/api/catalog/items/1".to_string();
    let got = s
        .wait_call(&s.forum, &[&webapp_url], long, &[&forum_agent])
        .unwrap();
    assert!(got.output.contains("server=webapp"), "{}", got.output);
    assert!(
        got.output
            .contains("URI=spiffe://cluster.local/ns/forum-services/sa/forum-sa"),
        "{}",
        got.output
    );
    let webapp_cluster = "outbound|80||webapp.istioinaction.svc.cluster.local";
    let endpoints = clusters(&s.forum, webapp_cluster);
    assert!(
        endpoints
            .iter()
            .any(|l| l.starts_with(&format!("{webapp_cluster}::{gw_external}:15443::"))),
        "{endpoints:?}"
    );
    let webapp_sni = sni_cluster("webapp.istioinaction");
    assert!(stat(&s.gw, &format!("{webapp_sni}.upstream_cx_total")) >= 1);
    let catalog_url = "catalog.istioinaction/items".to_string();
    let got = s
        .wait_call(&s.forum, &[&catalog_url], long, &[&catalog.agent])
        .unwrap();
    assert!(got.output.contains("server=catalog"), "{}", got.output);
    let catalog_sni = sni_cluster("catalog.istioinaction");
    assert!(stat(&s.gw, &format!("{catalog_sni}.upstream_cx_total")) >= 1);

    // 5. A plain request from outside the mesh reaches the VM's app while mTLS is PERMISSIVE...
    let direct = format!("http://{}:8080/api/users", s.forum.ip());
    assert_eq!(call(&s.outsider, &[&direct]).status, 200);
    // ...and fails once the seed's mesh-wide STRICT PeerAuthentication applies.
    s.apply_strict().unwrap();
    s.wait_call_fails(&s.outsider, &[&direct], Duration::from_secs(20))
        .unwrap();
    // Mesh traffic goes on, both ways, through the gateway (its SNI-DNAT clusters carry more
    // bytes; connections may be reused, so bytes rather than connections are counted).
    let bytes = |sni: &str| stat(&s.gw, &format!("{sni}.upstream_cx_rx_bytes_total"));
    let before = (bytes(&forum_sni), bytes(&webapp_sni));
    for _ in 0..3 {
        let got = call(&s.webapp, &[&forum_url]);
        assert_eq!(got.status, 200, "{}", got.output);
        let got = call(&s.forum, &[&webapp_url]);
        assert_eq!(got.status, 200, "{}", got.output);
    }
    s.wait_stat_above(
        &[(&forum_sni, before.0), (&webapp_sni, before.1)],
        "upstream_cx_rx_bytes_total",
        Duration::from_secs(10),
    )
    .unwrap();
    gw_agent.ensure_running().unwrap();
}
