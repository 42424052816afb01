//! The seed lab (seed 002, "extending the mesh to VMs") across two networks, with real Envoys,
//! built step by step; shared by the scenario test (`crates/weftd/tests/seed_lab_scenario.rs`)
//! and the demo (`weft-demo`), which narrates each step:
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
//! the gateway's address. The forum bundle is made from the seed's WorkloadGroup with
//! `--ingressIP <gateway>`, so the VM agent's control-plane connection goes through the
//! gateway's `PASSTHROUGH` 15012 server (expose-istiod) to weftd, and mesh traffic both ways
//! goes through its `AUTO_PASSTHROUGH` 15443 server (the gateway is the vm-network's gateway in
//! the mesh networks). The agents' DNS proxies answer mesh names from weftd's name tables; the VM's
//! forwards other names to its DNS server.

pub mod manifests;
mod probe;
mod start;
mod waits;

pub use probe::{
    Call, ENVOY_ADMIN, admin, call, clusters, connect, dig, health_of, stat, stats,
    workload_entries,
};

use crate::error::{Error, Result};
use crate::host::Host;
use crate::lab::{Lab, Network};
use crate::mesh::VmRoot;
use crate::process::Process;
use manifests::ClusterAddrs;
use std::net::Ipv4Addr;
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

/// A name outside the mesh, which only the VMs' DNS server knows, and its address.
pub const OUTSIDE_NAME: &str = "www.example.com";
pub const OUTSIDE_ADDR: &str = "203.0.113.10";

/// The agent's DNS proxy settings of the lab's workloads: DNS capture, and every query of their
/// apps captured (the lab's hosts share this machine's `/etc/resolv.conf`, which names a server
/// they cannot reach; `CAPTURE_ALL_DNS` sends those queries to the agent too).
pub const DNS_ENV: &[(&str, &str)] = &[
    ("ISTIO_META_DNS_CAPTURE", "true"),
    ("CAPTURE_ALL_DNS", "true"),
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
    /// The VMs' DNS server (not in the mesh).
    pub dns: Host,
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
        let dns = lab.host("dns", &[&vm_net])?;
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
            dns,
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

    /// The WorkloadEntry weftd creates for the VM: `forum-<ip>-vm-network`.
    pub fn forum_entry(&self) -> String {
        format!("forum-{}-vm-network", self.forum.ip())
    }
}
