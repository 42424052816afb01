//! Starting the seed lab's programs: weftd, the east-west gateway, webapp and catalog, the VM's
//! bundle, app and agent, and the VMs' DNS server.

use super::{
    Bundle, DNS_ENV, GATEWAY_ENV, OUTSIDE_ADDR, OUTSIDE_NAME, SeedLab, Workload, manifests,
};
use crate::error::{Error, Result};
use crate::host::Host;
use crate::mesh::{CAPTURE_ENV, ControlPlane, VmRoot};
use crate::process::Process;
use crate::vm_bundle::{install, weftctl};
use std::net::SocketAddr;
use std::time::Duration;

impl SeedLab {
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

    /// Starts workload `name` (webapp or catalog) in istioinaction on `host`: the app (which
    /// echoes the client certificate Envoy saw) on 8080, capture (DNS too: the lab has no cluster
    /// DNS, the agent answers mesh names), and the agent as istio-proxy.
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
        env.extend_from_slice(DNS_ENV);
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

    /// Installs the bundle into the VM's root as Istio's VM instructions do, gives the VM its
    /// DNS server in the root's `etc/resolv.conf`, then adds Istio's VM capture defaults and
    /// [`DNS_ENV`] where `cluster.env` does not set them; returns the root and the lines added.
    pub fn install_forum(&self, bundle: &Bundle) -> Result<(VmRoot, String)> {
        let root = VmRoot::new(&self.dir().join("forum-root"))?;
        install(&bundle.dir, &root)?;
        std::fs::write(
            root.path("etc/resolv.conf"),
            format!("nameserver {}\n", self.dns.ip()),
        )
        .map_err(|e| Error::io("write etc/resolv.conf", e))?;
        let path = root.path("var/lib/istio/envoy/cluster.env");
        let env = std::fs::read_to_string(&path).map_err(|e| Error::io("read cluster.env", e))?;
        let added: String = CAPTURE_ENV
            .iter()
            .chain(DNS_ENV)
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

    /// Starts the VMs' DNS server (dnsmasq, logging every query) on the dns host: it knows only
    /// [`OUTSIDE_NAME`].
    pub fn start_dns_server(&self) -> Result<Process> {
        let ip = self.dns.ip();
        let p = self.dns.spawn(
            "dnsmasq",
            &[
                "dnsmasq",
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                &format!("--listen-address={ip}"),
                "--bind-interfaces",
                &format!("--host-record={OUTSIDE_NAME},{OUTSIDE_ADDR}"),
                "--log-queries",
                "--log-facility=-",
                "--pid-file=",
                "--user=root",
            ],
        )?;
        self.dns
            .wait_for_udp(SocketAddr::from((ip, 53)), Duration::from_secs(10))
            .or_else(|e| p.ensure_running().and(Err(e)))?;
        Ok(p)
    }
}
