//! The seed lab (seed 002, "extending the mesh to VMs") across two networks, with real Envoys,
//! built step by step; shared by the scenario test (`crates/weftd/tests/seed_lab_scenario.rs`)
//! and the demo (`weft-demo`), which narrates each step:
//!
//! ```text
//!  network "cluster" 198.18.0.0/24            network "vm-network" 198.18.1.0/24
//!  cp      .10  weftd                          forum     .11  the VM (agent, capture, app)
//!  gw      .11 ─── east-west gateway ─── .10   outsider  .12  no mesh
//!  webapp  .12  agent, capture, app
//!  catalog .13  agent, capture, app
//! ```
//!
//! The gateway (`weft-agent proxy router`) forwards nothing at the IP level: the VM reaches only
//! the gateway's address. The forum bundle is made from the seed's WorkloadGroup with
//! `--ingressIP <gateway>`, so the VM agent's control-plane connection goes through the
//! gateway's `PASSTHROUGH` 15012 server (expose-istiod) to weftd, and mesh traffic both ways
//! goes through its `AUTO_PASSTHROUGH` 15443 server (the gateway is the vm-network's gateway in
//! the mesh networks).

pub mod manifests;
mod probe;

pub use probe::{
    Call, ENVOY_ADMIN, admin, call, clusters, connect, health_of, stat, stats, workload_entries,
};

use crate::error::{Error, Result};
use crate::host::Host;
use crate::lab::{Lab, Network};
use crate::mesh::{CAPTURE_ENV, ControlPlane, VmRoot};
use crate::process::Process;
use crate::vm_bundle::{install, weftctl};
use crate::wait::{Attempt, poll_until};
use manifests::ClusterAddrs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The east-west gateway's settings: labelled as the seed's IstioOperator labels it.
pub const GATEWAY_ENV: &[(&str, &str)] = &[
    ("ISTIO_META_NETWORK", "cluster"),
    ("ISTIO_META_ROUTER_MODE", "sni-dnat"),
    (
        "ISTIO_METAJSON_LABELS",
        r#"{"istio":"eastwestgateway","app":"istio-eastwestgateway","topology.istio.io/network":"cluster"}"#,
    ),
];

/// The gateway's listeners: mesh traffic, istiod, istiod's webhook.
pub const GATEWAY_LISTENERS: [&str; 3] = ["0.0.0.0_15443", "0.0.0.0_15012", "0.0.0.0_15017"];

/// The gateway Envoy's cluster carrying the VMs' control-plane connections.
pub const ISTIOD_CLUSTER: &str = "cluster.outbound|15012||istiod.istio-system.svc.cluster.local";

/// The gateway Envoy's SNI-DNAT cluster for port 80 of `host` (`forum.forum-services`).
pub fn sni_cluster(host: &str) -> String {
    format!("cluster.outbound_.80_._.{host}.svc.cluster.local")
}

/// A workload on the cluster network: its app, root and agent.
pub struct Workload {
    pub root: VmRoot,
    pub app: Process,
    pub agent: Process,
}

/// What `weftctl x workload entry configure` made for the forum VM.
pub struct Bundle {
    /// The weftctl arguments (after the server flags).
    pub args: Vec<String>,
    pub dir: PathBuf,
    /// What it printed.
    pub printed: String,
}

/// The lab's networks and hosts.
pub struct SeedLab {
    pub lab: Lab,
    pub cluster: Network,
    pub vm_net: Network,
    pub cp: Host,
    pub gw: Host,
    pub webapp: Host,
    pub catalog: Host,
    pub forum: Host,
    pub outsider: Host,
}

impl SeedLab {
    /// Creates the networks and hosts. The gateway does not forward packets; webapp's and
    /// catalog's default route is the control-plane host, the VM's is the gateway.
    pub fn new(lab: Lab) -> Result<SeedLab> {
        let cluster = lab.network("cluster")?;
        let vm_net = lab.network("vm-network")?;
        let cp = lab.host("cp", &[&cluster])?;
        let gw = lab.host("gw", &[&cluster, &vm_net])?;
        let webapp = lab.host("webapp", &[&cluster])?;
        let catalog = lab.host("catalog", &[&cluster])?;
        let forum = lab.host("forum", &[&vm_net])?;
        let outsider = lab.host("outsider", &[&vm_net])?;
        gw.run(
            &["sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward"],
            Duration::from_secs(5),
        )?
        .checked()?;
        webapp.set_default_route(cp.ip())?;
        catalog.set_default_route(cp.ip())?;
        forum.set_default_route(gw.ip_on(&vm_net))?;
        std::fs::create_dir_all(lab.dir().join("config"))
            .map_err(|e| Error::io("create the config directory", e))?;
        Ok(SeedLab {
            lab,
            cluster,
            vm_net,
            cp,
            gw,
            webapp,
            catalog,
            forum,
            outsider,
        })
    }

    pub fn dir(&self) -> &Path {
        self.lab.dir()
    }

    /// weftd's (watched) config directory.
    pub fn config_dir(&self) -> PathBuf {
        self.dir().join("config")
    }

    /// The gateway's address on the cluster network.
    pub fn gw_internal(&self) -> Ipv4Addr {
        self.gw.ip_on(&self.cluster)
    }

    /// The gateway's address on the VMs' network (the only one the VM reaches).
    pub fn gw_external(&self) -> Ipv4Addr {
        self.gw.ip_on(&self.vm_net)
    }

    /// Writes `name` in the config directory the way editors do (a temporary file renamed
    /// over it), so weftd never reads a half-written file.
    pub fn write_config_file(&self, name: &str, text: &str) -> Result<()> {
        let dir = self.config_dir();
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).map_err(|e| Error::io(format!("write {name}"), e))?;
        std::fs::rename(&tmp, dir.join(name)).map_err(|e| Error::io(format!("rename {name}"), e))
    }

    /// The initial config directory (the cluster's objects, the seed's gateways, forum's group
    /// and Service) and the mesh networks file; returns the files written.
    pub fn write_config(&self) -> Result<Vec<(String, String)>> {
        let cluster = manifests::cluster(&ClusterAddrs {
            cp: self.cp.ip(),
            gw_external: self.gw_external(),
            webapp: self.webapp.ip(),
            catalog: self.catalog.ip(),
        });
        let files = vec![
            ("cluster.yaml".to_string(), cluster),
            ("gateways.yaml".to_string(), manifests::gateways()?),
            (
                "forum-group.yaml".to_string(),
                manifests::FORUM_GROUP.fixed()?,
            ),
            (
                "forum-service.yaml".to_string(),
                manifests::FORUM_SERVICE.fixed()?,
            ),
        ];
        for (name, text) in &files {
            self.write_config_file(name, text)?;
        }
        let networks = manifests::mesh_networks(&self.vm_net.cidr(), self.gw_internal());
        std::fs::write(self.networks_file(), &networks)
            .map_err(|e| Error::io("write mesh-networks.yaml", e))?;
        Ok(files)
    }

    /// The mesh networks file (`--networks-config`).
    pub fn networks_file(&self) -> PathBuf {
        self.dir().join("mesh-networks.yaml")
    }

    /// The seed's mesh-wide STRICT PeerAuthentication, added to the config directory; returns
    /// the file's name.
    pub fn apply_strict(&self) -> Result<&'static str> {
        let name = "strict.yaml";
        self.write_config_file(name, &manifests::MESH_STRICT.fixed()?)?;
        Ok(name)
    }

    /// weftd's arguments besides the kit's defaults.
    pub fn weftd_args(&self) -> Vec<String> {
        vec![
            "--config-dir".into(),
            self.config_dir().display().to_string(),
            "--networks-config".into(),
            self.networks_file().display().to_string(),
        ]
    }

    /// Starts weftd in the control-plane host (state in `<lab>/state`).
    pub fn start_weftd(&self) -> Result<ControlPlane> {
        let args = self.weftd_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ControlPlane::start(&self.cp, &self.dir().join("state"), &args)
    }

    /// Starts the east-west gateway: `weft-agent proxy router` with a bundle for
    /// istio-system/istio-eastwestgateway (process `gw-agent`).
    pub fn start_gateway(&self, cp: &ControlPlane) -> Result<(VmRoot, Process)> {
        let root = VmRoot::new(&self.dir().join("gw-root"))?;
        root.write_bundle(
            cp,
            &self.gw,
            "istio-system",
            "istio-eastwestgateway",
            "istio-eastwestgateway",
            GATEWAY_ENV,
        )?;
        let agent = root.start_agent(&self.gw, "gw-agent", &["router"])?;
        Ok((root, agent))
    }

    /// Waits for the gateway's three listeners; returns Envoy's `/listeners`.
    pub fn wait_gateway(&self, agent: &Process) -> Result<String> {
        poll_until("the gateway's listeners", Duration::from_secs(30), || {
            agent.ensure_running()?;
            let listeners = admin(&self.gw, "/listeners");
            Ok(if GATEWAY_LISTENERS.iter().all(|n| listeners.contains(n)) {
                Attempt::Ready(listeners)
            } else {
                Attempt::NotYet(listeners)
            })
        })
    }

    /// Starts workload `name` (webapp or catalog) in istioinaction on `host`: the app (which
    /// echoes the client certificate Envoy saw) on 8080, capture, and the agent as istio-proxy.
    pub fn start_cluster_workload(
        &self,
        cp: &ControlPlane,
        host: &Host,
        name: &str,
    ) -> Result<Workload> {
        let app = host.start_http_server(
            name,
            SocketAddr::from(([0, 0, 0, 0], 8080)),
            &["x-forwarded-client-cert"],
        )?;
        let root = VmRoot::new(&self.dir().join(format!("{name}-root")))?;
        let mut env = CAPTURE_ENV.to_vec();
        env.push(("ISTIO_META_NETWORK", "cluster"));
        root.write_bundle(cp, host, "istioinaction", name, name, &env)?;
        root.install_capture(host)?;
        let agent = root.start_agent_as_proxy_user(host, &format!("{name}-agent"), &[])?;
        Ok(Workload { root, app, agent })
    }

    /// `weftctl x workload entry configure` for the seed's forum group with the gateway as the
    /// ingress address (in the control-plane host; the group file is `<lab>/workloadgroup.yaml`).
    pub fn configure_forum(&self, cp: &ControlPlane) -> Result<Bundle> {
        let group = self.dir().join("workloadgroup.yaml");
        std::fs::write(&group, manifests::FORUM_GROUP.fixed()?)
            .map_err(|e| Error::io("write workloadgroup.yaml", e))?;
        let dir = self.dir().join("forum-bundle");
        let args: Vec<String> = [
            "x",
            "workload",
            "entry",
            "configure",
            "-f",
            &group.display().to_string(),
            "-o",
            &dir.display().to_string(),
            "--clusterID",
            "Kubernetes",
            "--autoregister",
            "--ingressIP",
            &self.gw_external().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let printed = weftctl(cp, &argv)?;
        Ok(Bundle { args, dir, printed })
    }

    /// Installs the bundle into the VM's root as Istio's VM instructions do, then adds Istio's
    /// VM capture defaults that `cluster.env` does not set; returns the root and the lines
    /// added.
    pub fn install_forum(&self, bundle: &Bundle) -> Result<(VmRoot, String)> {
        let root = VmRoot::new(&self.dir().join("forum-root"))?;
        install(&bundle.dir, &root)?;
        let path = root.path("var/lib/istio/envoy/cluster.env");
        let env = std::fs::read_to_string(&path).map_err(|e| Error::io("read cluster.env", e))?;
        let added: String = CAPTURE_ENV
            .iter()
            .filter(|(k, _)| !env.contains(&format!("{k}=")))
            .map(|(k, v)| format!("{k}='{v}'\n"))
            .collect();
        std::fs::write(&path, env + &added).map_err(|e| Error::io("write cluster.env", e))?;
        Ok((root, added))
    }

    /// The VM's app (`forum`, echoing the client certificate Envoy saw) on 8080.
    pub fn start_forum_app(&self) -> Result<Process> {
        self.forum.start_http_server(
            "forum",
            SocketAddr::from(([0, 0, 0, 0], 8080)),
            &["x-forwarded-client-cert"],
        )
    }

    /// Installs capture on the VM and starts its agent as istio-proxy (process `forum-agent`).
    pub fn start_forum_agent(&self, root: &VmRoot) -> Result<Process> {
        root.install_capture(&self.forum)?;
        root.start_agent_as_proxy_user(&self.forum, "forum-agent", &[])
    }

    /// The WorkloadEntry weftd creates for the VM: `forum-<ip>-vm-network`.
    pub fn forum_entry(&self) -> String {
        format!("forum-{}-vm-network", self.forum.ip())
    }

    /// Waits until the VM's entry is registered and Healthy; returns the
    /// `weftctl get workloadentries -n forum-services` table.
    pub fn wait_forum_healthy(&self, cp: &ControlPlane, agent: &Process) -> Result<String> {
        let entry = self.forum_entry();
        poll_until(
            "the VM registered through the gateway and Healthy=True",
            Duration::from_secs(40),
            || {
                agent.ensure_running()?;
                let table = workload_entries(cp);
                Ok(if health_of(&table, &entry).as_deref() == Some("True") {
                    Attempt::Ready(table)
                } else {
                    Attempt::NotYet(table)
                })
            },
        )
    }

    /// Repeats `curl ARGS` from `from` until it answers 200 (or `timeout`), with `agents` still
    /// running; returns that call.
    pub fn wait_call(
        &self,
        from: &Host,
        args: &[&str],
        timeout: Duration,
        agents: &[&Process],
    ) -> Result<Call> {
        poll_until(
            &format!("{} to answer 200 from {}", args.join(" "), from.name()),
            timeout,
            || {
                for a in agents {
                    a.ensure_running()?;
                }
                let c = call(from, args);
                Ok(if c.ok() {
                    Attempt::Ready(c)
                } else {
                    Attempt::NotYet(c.output)
                })
            },
        )
    }

    /// Repeats `curl ARGS` from `from` until it gets no answer at all (or `timeout`); returns
    /// that call.
    pub fn wait_call_fails(&self, from: &Host, args: &[&str], timeout: Duration) -> Result<Call> {
        poll_until(
            &format!("{} to fail from {}", args.join(" "), from.name()),
            timeout,
            || {
                let c = call(from, args);
                Ok(if c.status == 0 {
                    Attempt::Ready(c)
                } else {
                    Attempt::NotYet(c.output)
                })
            },
        )
    }

    /// Waits until the gateway's counter `<cluster>.<counter>` exceeds its `before` value for
    /// each `(cluster, before)`; returns the new values.
    pub fn wait_stat_above(
        &self,
        before: &[(&str, u64)],
        counter: &str,
        timeout: Duration,
    ) -> Result<Vec<u64>> {
        poll_until(&format!("the gateway's {counter} to grow"), timeout, || {
            let now: Vec<u64> = before
                .iter()
                .map(|(c, _)| stat(&self.gw, &format!("{c}.{counter}")))
                .collect();
            Ok(if now.iter().zip(before).all(|(n, (_, b))| n > b) {
                Attempt::Ready(now)
            } else {
                Attempt::NotYet(format!("{before:?} -> {now:?}"))
            })
        })
    }
}
