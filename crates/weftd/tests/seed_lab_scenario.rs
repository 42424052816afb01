//! The seed lab (seed 002, "extending the mesh to VMs") across two networks, with real Envoys:
//!
//! ```text
//!  network "cluster" 198.18.0.0/24            network "vm-network" 198.18.1.0/24
//!  cp      .10  weftd                          forum     .11  the VM (agent, capture, app)
//!  gw      .11 ─── east-west gateway ─── .10   outsider  .12  no mesh
//!  webapp  .12  agent, capture, app
//! ```
//!
//! The gateway (`weft-agent proxy router`) forwards nothing at the IP level: the VM reaches only
//! the gateway's address. Using the seed's own YAML (fixed where Istio rejects it): the forum
//! bundle is made with `--ingressIP <gateway>`, so the VM agent's control-plane connection goes
//! through the gateway's `PASSTHROUGH` 15012 server (expose-istiod) to weftd; the VM's app calls
//! webapp's VIP and goes through capture, Envoy and the gateway's `AUTO_PASSTHROUGH` 15443 server;
//! webapp calls forum's VIP and reaches the VM through the gateway too (the gateway is the
//! vm-network's gateway in the mesh networks); with mesh-wide STRICT mTLS a plain request to the
//! VM from outside fails while mesh traffic goes on. The gateway Envoy's stats prove each path.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};
use weft_testkit::mesh::{CAPTURE_ENV, ControlPlane, VmRoot};
use weft_testkit::vm_bundle::{configure, install, weftctl};
use weft_testkit::{Host, Lab, Process};

const SEEDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../model/tests/seeds");

/// The seed manifest `name`, with each `(from, to)` fix applied (each must apply).
fn seed(name: &str, fixes: &[(&str, &str)]) -> String {
    let mut text = std::fs::read_to_string(Path::new(SEEDS).join(name)).unwrap();
    for (from, to) in fixes {
        assert!(text.contains(from), "{name}: {from:?} not found");
        text = text.replacen(from, to, 1);
    }
    text
}

/// The seed's Gateways and VirtualService. Istio rejects them as written: servers need port
/// names, and a VirtualService without hosts is a delegate, which may not have `tls` routes and
/// whose TLS matches need `sniHosts`. Applied in istio-system, as Istio's own expose-istiod is.
fn seed_gateways() -> String {
    let ns = (
        "metadata:\n  name:",
        "metadata:\n  namespace: istio-system\n  name:",
    );
    let cross = seed(
        "002-gateway-cross-network.yaml",
        &[
            ns,
            (
                "      number: 15443\n",
                "      number: 15443\n      name: tls\n",
            ),
        ],
    );
    let istiod = seed(
        "002-gateway-vs-istiod.yaml",
        &[
            ns,
            ns,
            (
                "      number: 15012\n",
                "      number: 15012\n      name: tls-istiod\n",
            ),
            (
                "      number: 15017\n",
                "      number: 15017\n      name: tls-istiodwebhook\n",
            ),
            (
                "spec:\n  tls:",
                "spec:\n  hosts: [\"*\"]\n  gateways: [istiod-gateway]\n  tls:",
            ),
            (
                "    - port: 15012\n",
                "    - port: 15012\n      sniHosts: [\"*\"]\n",
            ),
            (
                "    - port: 15017\n",
                "    - port: 15017\n      sniHosts: [\"*\"]\n",
            ),
        ],
    );
    format!("{cross}---\n{istiod}")
}

/// What the seed's cluster has besides the seed manifests: the istio-system network label, the
/// east-west gateway's Service (ports from the seed's IstioOperator; its external address is
/// the one VMs reach), istiod as a registry service (weftd's address), and webapp.
fn cluster_config(cp: Ipv4Addr, gw_external: Ipv4Addr, webapp: Ipv4Addr) -> String {
    format!(
        "apiVersion: v1
kind: Namespace
metadata:
  name: istio-system
  labels:
    topology.istio.io/network: cluster
---
apiVersion: v1
kind: Service
metadata:
  name: istio-eastwestgateway
  namespace: istio-system
  labels:
    istio: eastwestgateway
    app: istio-eastwestgateway
    topology.istio.io/network: cluster
spec:
  type: LoadBalancer
  externalIPs: [{gw_external}]
  selector:
    istio: eastwestgateway
  ports:
  - name: mtls
    port: 15443
    targetPort: 15443
  - name: tcp-istiod
    port: 15012
    targetPort: 15012
  - name: tcp-webhook
    port: 15017
    targetPort: 15017
---
apiVersion: v1
kind: Service
metadata:
  name: istiod
  namespace: istio-system
spec:
  selector:
    app: istiod
  ports:
  - name: grpc-xds
    port: 15010
  - name: https-dns
    port: 15012
  - name: https-webhook
    port: 443
    targetPort: 15017
  - name: http-monitoring
    port: 15014
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: istiod
  namespace: istio-system
spec:
  address: {cp}
  labels:
    app: istiod
---
apiVersion: v1
kind: Service
metadata:
  name: webapp
  namespace: istioinaction
spec:
  selector:
    app: webapp
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: webapp
  namespace: istioinaction
spec:
  address: {webapp}
  labels:
    app: webapp
  serviceAccount: webapp
"
    )
}

/// Istio's mesh networks: the vm-network (its addresses) is reached through the gateway's
/// cluster-side address.
fn mesh_networks(vm_net: &str, gw_internal: Ipv4Addr) -> String {
    format!(
        "networks:
  vm-network:
    endpoints:
    - fromCidr: {vm_net}
    gateways:
    - address: {gw_internal}
      port: 15443
"
    )
}

fn write(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn wait_until(
    what: &str,
    timeout: Duration,
    mut ok: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `curl <url>` from `host` (as root: captured where capture is installed): (status, body).
fn call(host: &Host, url: &str) -> (u16, String) {
    match host.curl(
        &["-sS", "-w", "\n%{http_code}", url],
        Duration::from_secs(3),
    ) {
        Ok(out) => {
            let text = out.stdout.trim_end();
            let (body, code) = text.rsplit_once('\n').unwrap_or(("", text));
            (
                code.trim().parse().unwrap_or(0),
                format!("{body}{}", out.stderr),
            )
        }
        Err(e) => (0, e.to_string()),
    }
}

/// A counter from the Envoy admin `/stats` in `host` (0 when absent).
fn stat(host: &Host, name: &str) -> u64 {
    let stats = admin(host, "/stats");
    stats
        .lines()
        .find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(": ")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn admin(host: &Host, path: &str) -> String {
    host.http_get(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 15000)),
        path,
        Duration::from_secs(2),
    )
    .map(|r| r.body)
    .unwrap_or_default()
}

fn health_of(cp: &ControlPlane, name: &str) -> Option<String> {
    weftctl(cp, &["get", "workloadentries", "-n", "forum-services"])
        .unwrap_or_default()
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().last().map(str::to_string))
}

fn tail(p: &Process) -> String {
    p.log_tail(30)
}

#[test]
fn seed_lab_vm_joins_and_talks_to_the_cluster_through_the_east_west_gateway() {
    let lab = Lab::new("seedlab").unwrap();
    let cluster = lab.network("cluster").unwrap();
    let vm_net = lab.network("vm-network").unwrap();
    let cp_host = lab.host("cp", &[&cluster]).unwrap();
    let gw = lab.host("gw", &[&cluster, &vm_net]).unwrap();
    let webapp = lab.host("webapp", &[&cluster]).unwrap();
    let forum = lab.host("forum", &[&vm_net]).unwrap();
    let outsider = lab.host("outsider", &[&vm_net]).unwrap();
    let (gw_internal, gw_external) = (gw.ip_on(&cluster), gw.ip_on(&vm_net));
    // The gateway routes no packets between the networks; the VM's only way out is it.
    gw.run(
        &["sysctl", "-qw", "net.ipv4.ip_forward=0"],
        Duration::from_secs(5),
    )
    .unwrap()
    .checked()
    .unwrap();
    webapp.set_default_route(cp_host.ip()).unwrap();
    forum.set_default_route(gw_external).unwrap();

    let config = lab.dir().join("config");
    std::fs::create_dir_all(&config).unwrap();
    write(
        &config,
        "cluster.yaml",
        &cluster_config(cp_host.ip(), gw_external, webapp.ip()),
    );
    write(&config, "gateways.yaml", &seed_gateways());
    let group = seed("002-workloadgroup-forum.yaml", &[]);
    write(&config, "forum-group.yaml", &group);
    let forum_svc = seed(
        "002-service-forum.yaml",
        &[(
            "  name: forum\n",
            "  name: forum\n  namespace: forum-services\n",
        )],
    );
    write(&config, "forum-service.yaml", &forum_svc);
    let networks_file = lab.dir().join("mesh-networks.yaml");
    std::fs::write(&networks_file, mesh_networks(&vm_net.cidr(), gw_internal)).unwrap();
    let cp = ControlPlane::start(
        &cp_host,
        &lab.dir().join("state"),
        &[
            "--config-dir",
            &config.to_string_lossy(),
            "--networks-config",
            &networks_file.to_string_lossy(),
        ],
    )
    .unwrap();

    // The east-west gateway: `weft-agent proxy router`, labelled as the seed's IstioOperator
    // labels it, on the cluster network.
    let gw_root = VmRoot::new(&lab.dir().join("gw-root")).unwrap();
    gw_root
        .write_bundle(
            &cp,
            &gw,
            "istio-system",
            "istio-eastwestgateway",
            "istio-eastwestgateway",
            &[
                ("ISTIO_META_NETWORK", "cluster"),
                ("ISTIO_META_ROUTER_MODE", "sni-dnat"),
                (
                    "ISTIO_METAJSON_LABELS",
                    r#"{"istio":"eastwestgateway","app":"istio-eastwestgateway","topology.istio.io/network":"cluster"}"#,
                ),
            ],
        )
        .unwrap();
    let gw_agent = gw_root.start_agent(&gw, "gw-agent", &["router"]).unwrap();
    wait_until(
        "the gateway's listeners",
        Duration::from_secs(30),
        || {
            let l = admin(&gw, "/listeners");
            ["0.0.0.0_15443", "0.0.0.0_15012", "0.0.0.0_15017"]
                .iter()
                .all(|n| l.contains(n))
        },
        || {
            format!(
                "{}\ngateway agent:\n{}",
                admin(&gw, "/listeners"),
                tail(&gw_agent)
            )
        },
    );
    assert!(
        !admin(&gw, "/listeners").contains("virtualInbound"),
        "a router has no inbound listener"
    );

    // webapp: app, capture, agent, on the cluster network.
    webapp
        .start_http_server(
            "webapp",
            SocketAddr::from(([0, 0, 0, 0], 8080)),
            &["x-forwarded-client-cert"],
        )
        .unwrap();
    let webapp_root = VmRoot::new(&lab.dir().join("webapp-root")).unwrap();
    let mut webapp_env = CAPTURE_ENV.to_vec();
    webapp_env.push(("ISTIO_META_NETWORK", "cluster"));
    webapp_root
        .write_bundle(
            &cp,
            &webapp,
            "istioinaction",
            "webapp",
            "webapp",
            &webapp_env,
        )
        .unwrap();
    webapp_root.install_capture(&webapp).unwrap();
    let webapp_agent = webapp_root
        .start_agent_as_proxy_user(&webapp, "webapp-agent", &[])
        .unwrap();

    // The forum VM: the bundle from the seed's group with --ingressIP <gateway>, installed as
    // Istio's VM instructions do; the agent can only reach weftd through the gateway.
    let group_file = lab.dir().join("workloadgroup.yaml");
    std::fs::write(&group_file, &group).unwrap();
    let bundle = lab.dir().join("forum-bundle");
    let gw_ip = gw_external.to_string();
    let printed = configure(
        &cp,
        &group_file,
        &bundle,
        &[
            "--clusterID",
            "Kubernetes",
            "--autoregister",
            "--ingressIP",
            &gw_ip,
        ],
    )
    .unwrap();
    assert!(printed.contains("was successful"), "{printed}");
    let hosts = std::fs::read_to_string(bundle.join("hosts")).unwrap();
    assert_eq!(hosts.trim(), format!("{gw_ip} istiod.istio-system.svc"));
    let forum_root = VmRoot::new(&lab.dir().join("forum-root")).unwrap();
    install(&bundle, &forum_root).unwrap();
    let env_path = forum_root.path("var/lib/istio/envoy/cluster.env");
    let env = std::fs::read_to_string(&env_path).unwrap();
    assert!(env.contains("ISTIO_META_NETWORK='vm-network'"), "{env}");
    let extra: String = CAPTURE_ENV
        .iter()
        .filter(|(k, _)| !env.contains(&format!("{k}=")))
        .map(|(k, v)| format!("{k}='{v}'\n"))
        .collect();
    std::fs::write(&env_path, env + &extra).unwrap();
    forum
        .start_http_server(
            "forum",
            SocketAddr::from(([0, 0, 0, 0], 8080)),
            &["x-forwarded-client-cert"],
        )
        .unwrap();
    // No direct path from the VM to the cluster network.
    for target in [
        format!("{}:15012", cp_host.ip()),
        format!("{}:8080", webapp.ip()),
    ] {
        let out = forum
            .run(
                &[
                    "timeout",
                    "3",
                    "bash",
                    "-c",
                    &format!("echo > /dev/tcp/{}", target.replace(':', "/")),
                ],
                Duration::from_secs(5),
            )
            .unwrap();
        assert!(!out.success(), "the VM reached {target} directly");
    }
    forum_root.install_capture(&forum).unwrap();
    let forum_agent = forum_root
        .start_agent_as_proxy_user(&forum, "forum-agent", &[])
        .unwrap();

    // 1. The VM joins through the gateway (expose-istiod): registered, healthy.
    let entry = format!("forum-{}-vm-network", forum.ip());
    wait_until(
        "the VM registered through the gateway and Healthy=True",
        Duration::from_secs(40),
        || health_of(&cp, &entry).as_deref() == Some("True"),
        || {
            format!(
                "{:?}\nforum agent:\n{}",
                health_of(&cp, &entry),
                tail(&forum_agent)
            )
        },
    );
    let istiod_cluster = "cluster.outbound|15012||istiod.istio-system.svc.cluster.local";
    assert!(stat(&gw, &format!("{istiod_cluster}.upstream_cx_total")) >= 1);
    assert!(
        stat(&gw, &format!("{istiod_cluster}.upstream_cx_active")) >= 1,
        "the VM's xDS stream stays open through the gateway"
    );

    // 2. webapp → forum's VIP: webapp's Envoy has the VM as the gateway's address, and the
    //    gateway's SNI-DNAT cluster carries it, mTLS end to end.
    let forum_vip = cp.service_vip("forum-services", "forum").unwrap();
    let forum_url = format!("http://{forum_vip}/api/users");
    wait_until(
        "webapp reaches the VM",
        Duration::from_secs(30),
        || call(&webapp, &forum_url).0 == 200,
        || {
            format!(
                "{:?}\nwebapp agent:\n{}",
                call(&webapp, &forum_url),
                tail(&webapp_agent)
            )
        },
    );
    let (_, body) = call(&webapp, &forum_url);
    assert!(body.contains("server=forum"), "{body}");
    assert!(
        body.contains("URI=spiffe://cluster.local/ns/istioinaction/sa/webapp"),
        "{body}"
    );
    let webapp_clusters = admin(&webapp, "/clusters");
    assert!(
        webapp_clusters.contains(&format!(
            "outbound|80||forum.forum-services.svc.cluster.local::{gw_internal}:15443::"
        )),
        "{webapp_clusters}"
    );
    let forum_sni = "cluster.outbound_.80_._.forum.forum-services.svc.cluster.local";
    assert!(stat(&gw, &format!("{forum_sni}.upstream_cx_total")) >= 1);

    // 3. The VM's app → webapp's VIP (no DNS yet): capture, the VM's Envoy, the gateway on 15443.
    let webapp_vip = cp.service_vip("istioinaction", "webapp").unwrap();
    let webapp_url = format!("http://{webapp_vip}/api/catalog/items/1");
    wait_until(
        "the VM's app reaches webapp",
        Duration::from_secs(30),
        || call(&forum, &webapp_url).0 == 200,
        || {
            format!(
                "{:?}\nforum agent:\n{}",
                call(&forum, &webapp_url),
                tail(&forum_agent)
            )
        },
    );
    let (_, body) = call(&forum, &webapp_url);
    assert!(body.contains("server=webapp"), "{body}");
    assert!(
        body.contains("URI=spiffe://cluster.local/ns/forum-services/sa/forum-sa"),
        "{body}"
    );
    let forum_clusters = admin(&forum, "/clusters");
    assert!(
        forum_clusters.contains(&format!(
            "outbound|80||webapp.istioinaction.svc.cluster.local::{gw_external}:15443::"
        )),
        "{forum_clusters}"
    );
    let webapp_sni = "cluster.outbound_.80_._.webapp.istioinaction.svc.cluster.local";
    assert!(stat(&gw, &format!("{webapp_sni}.upstream_cx_total")) >= 1);

    // 4. A plain request from outside the mesh reaches the VM's app while mTLS is PERMISSIVE...
    let direct = format!("http://{}:8080/api/users", forum.ip());
    assert_eq!(call(&outsider, &direct).0, 200);
    // ...and fails once the seed's mesh-wide STRICT PeerAuthentication applies.
    write(
        &config,
        "strict.yaml",
        &seed("002-peerauthentication-mesh-strict.yaml", &[]),
    );
    wait_until(
        "plain requests to the VM refused",
        Duration::from_secs(20),
        || call(&outsider, &direct).0 == 0,
        || format!("{:?}", call(&outsider, &direct)),
    );
    // Mesh traffic goes on, both ways, through the gateway (its SNI-DNAT clusters carry more
    // bytes; connections may be reused, so bytes rather than connections are counted).
    let bytes = |sni: &str| stat(&gw, &format!("{sni}.upstream_cx_rx_bytes_total"));
    let before = (bytes(forum_sni), bytes(webapp_sni));
    for _ in 0..3 {
        let (code, body) = call(&webapp, &forum_url);
        assert_eq!(code, 200, "{body}");
        let (code, body) = call(&forum, &webapp_url);
        assert_eq!(code, 200, "{body}");
    }
    wait_until(
        "the gateway to count the requests' bytes",
        Duration::from_secs(10),
        || bytes(forum_sni) > before.0 && bytes(webapp_sni) > before.1,
        || format!("{before:?} → ({}, {})", bytes(forum_sni), bytes(webapp_sni)),
    );
    gw_agent.ensure_running().unwrap();
}
