//! The service registry: Services and ServiceEntries with their endpoints (WorkloadEntries and
//! ServiceEntry endpoints), as istiod's service registries model them. Built once per snapshot;
//! everything is ordered deterministically.

use crate::DOMAIN_SUFFIX;
use crate::mesh::MeshConfig;
use crate::proxy::Proxy;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use weft_model::Spec;
use weft_model::core::{IntOrString, ServiceSpec};
use weft_model::kind::Kind;
use weft_model::networking::{ServiceEntry, WorkloadEntry};
use weft_model::resource::Resource;
use weft_model::snapshot::Snapshot;

/// VIPs weftd's store assigned. Key: `(namespace, name)` where name is the Service's
/// `metadata.name` for core Services and the host for ServiceEntries (Istio's
/// `Attributes.Name`). Services with a usable `clusterIP` (ServiceEntries with `addresses`) use
/// their own and are not looked up.
pub type Allocations = BTreeMap<(String, String), IpAddr>;

/// WorkloadEntry label choosing the endpoint's TLS mode.
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";
/// WorkloadEntry annotation: only `Healthy=True` entries are endpoints.
pub const HEALTH_CHECKS_ANNOTATION: &str = "proxy.istio.io/health-checks-enabled";

/// Istio's `protocol.Instance`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Http,
    Http2,
    Grpc,
    GrpcWeb,
    HttpProxy,
    Https,
    Tls,
    Tcp,
    Mongo,
    Redis,
    MySql,
    Udp,
    /// No protocol given: sniffed (HTTP or TCP, decided per connection by Envoy's
    /// `http_inspector`), as Istio does.
    Unsupported,
}

impl Protocol {
    /// Istio's `protocol.Parse` (case-insensitive).
    pub fn parse(s: &str) -> Protocol {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "grpc" => Protocol::Grpc,
            "grpc-web" => Protocol::GrpcWeb,
            "http" => Protocol::Http,
            "http_proxy" => Protocol::HttpProxy,
            "http2" => Protocol::Http2,
            "https" => Protocol::Https,
            "tls" => Protocol::Tls,
            "mongo" => Protocol::Mongo,
            "redis" => Protocol::Redis,
            "mysql" => Protocol::MySql,
            _ => Protocol::Unsupported,
        }
    }

    /// Istio's `kube.ConvertProtocol`: UDP by transport, else `appProtocol`, else the port
    /// name's prefix before `-` (`http-web` → HTTP); well-known ports default to TCP.
    pub fn from_kubernetes(port: i32, name: &str, transport: &str, app: Option<&str>) -> Protocol {
        if transport.eq_ignore_ascii_case("UDP") {
            return Protocol::Udp;
        }
        let mut name = name;
        if let Some(app) = app {
            match app {
                "kubernetes.io/h2c" => return Protocol::Http2,
                "kubernetes.io/ws" => return Protocol::Http,
                "kubernetes.io/wss" => return Protocol::Https,
                _ => name = app,
            }
        }
        if name.len() >= 8 && name[..8].eq_ignore_ascii_case("grpc-web") {
            return Protocol::GrpcWeb;
        }
        let prefix = name.split('-').next().unwrap_or_default();
        match Protocol::parse(prefix) {
            Protocol::Unsupported if matches!(port, 25 | 53 | 3306 | 27017) => Protocol::Tcp,
            p => p,
        }
    }

    /// Served through the HTTP connection manager (outbound `0.0.0.0_<port>` + RDS).
    /// `Unsupported` is not: it is sniffed (see [`Protocol::is_sniffed`]).
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Protocol::Http
                | Protocol::Http2
                | Protocol::Grpc
                | Protocol::GrpcWeb
                | Protocol::HttpProxy
        )
    }

    /// Istio's `IsTCP`: proxied as opaque bytes (TLS ones maybe by SNI).
    pub fn is_tcp(self) -> bool {
        matches!(
            self,
            Protocol::Tcp
                | Protocol::Https
                | Protocol::Tls
                | Protocol::Mongo
                | Protocol::Redis
                | Protocol::MySql
        )
    }

    /// Undeclared: Envoy decides per connection whether it is HTTP (Istio's protocol sniffing).
    pub fn is_sniffed(self) -> bool {
        self == Protocol::Unsupported
    }

    /// Istio's `IsHTTPOrSniffed`: has a virtual host in the outbound route configurations.
    pub fn is_http_or_sniffed(self) -> bool {
        self.is_http() || self.is_sniffed()
    }

    /// Upstream connections use HTTP/2.
    pub fn is_http2(self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Grpc | Protocol::GrpcWeb)
    }

    pub fn is_grpc(self) -> bool {
        matches!(self, Protocol::Grpc | Protocol::GrpcWeb)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Http2 => "HTTP2",
            Protocol::Grpc => "GRPC",
            Protocol::GrpcWeb => "GRPC-Web",
            Protocol::HttpProxy => "HTTP_PROXY",
            Protocol::Https => "HTTPS",
            Protocol::Tls => "TLS",
            Protocol::Tcp => "TCP",
            Protocol::Mongo => "Mongo",
            Protocol::Redis => "Redis",
            Protocol::MySql => "MySQL",
            Protocol::Udp => "UDP",
            Protocol::Unsupported => "UnsupportedProtocol",
        }
    }
}

/// Where a service port sends traffic on a workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetPort {
    /// A number; a workload's `ports[<service port name>]` overrides it (as Istio).
    Number(u32),
    /// A name to look up in the workload's `ports`; workloads without it are not endpoints.
    Name(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    pub name: String,
    pub port: u32,
    pub protocol: Protocol,
    pub target: TargetPort,
}

impl Port {
    /// The port on a workload with `ports` (WorkloadEntry `ports` map), or `None` when the
    /// workload does not serve it.
    pub fn endpoint_port(&self, ports: &BTreeMap<String, u32>) -> Option<u32> {
        match &self.target {
            TargetPort::Number(n) => Some(
                ports
                    .get(&self.name)
                    .copied()
                    .filter(|p| *p > 0)
                    .unwrap_or(*n),
            ),
            TargetPort::Name(name) => ports.get(name).copied().filter(|p| *p > 0),
        }
    }
}

/// How a service's endpoints are found (Istio's `model.Resolution`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Endpoints sent over EDS.
    ClientSideLb,
    /// Envoy resolves the endpoints' host names (STRICT_DNS).
    Dns,
    /// Envoy resolves one host name and connects to one address at a time (LOGICAL_DNS).
    DnsRoundRobin,
    /// Traffic goes to the address the client dialled (ORIGINAL_DST).
    Passthrough,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceSource {
    Kubernetes,
    /// From the ServiceEntry with this `metadata.name`.
    ServiceEntry(String),
}

/// Which workloads a service selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector(pub BTreeMap<String, String>);

impl Selector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Locality {
    pub region: String,
    pub zone: String,
    pub sub_zone: String,
}

impl Locality {
    /// `region/zone/subzone`, any part optional.
    pub fn parse(s: &str) -> Locality {
        let mut parts = s.splitn(3, '/');
        let mut next = || parts.next().unwrap_or_default().to_string();
        Locality {
            region: next(),
            zone: next(),
            sub_zone: next(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Speaks Istio mTLS (`tlsMode: istio`).
    Istio,
    /// Anything else: plaintext.
    Disabled,
}

/// An address traffic for one service port can be sent to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// IP (or, for DNS resolution, a host name).
    pub address: String,
    pub port: u32,
    /// Load-balancing weight, ≥ 1.
    pub weight: u32,
    pub locality: Locality,
    pub network: String,
    pub service_account: String,
    pub tls_mode: TlsMode,
    /// `namespace/name` of the WorkloadEntry (or `namespace/<serviceentry>-<i>` for inline ones).
    pub workload: String,
    /// The workload's labels, with the topology labels Istio adds (see [`topology_labels`]):
    /// what DestinationRule subsets and failover priorities select by. Shared by its ports.
    pub labels: Arc<BTreeMap<String, String>>,
}

/// One host of the mesh (a Service, or one host of a ServiceEntry).
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    pub hostname: String,
    pub namespace: String,
    /// Service name, or the host for ServiceEntries.
    pub name: String,
    pub source: ServiceSource,
    /// VIPs: clusterIP(s) / ServiceEntry addresses, else the allocated one. May be empty.
    pub addresses: Vec<IpAddr>,
    /// A Kubernetes Service with `clusterIP: None`: DNS answers with its endpoints' addresses.
    pub headless: bool,
    pub ports: Vec<Port>,
    pub resolution: Resolution,
    pub mesh_external: bool,
    pub creation: String,
    /// Workloads (WorkloadEntries in the service's namespace) the service selects.
    pub selector: Option<Selector>,
    /// Endpoints per service port number, healthy only, ordered.
    pub endpoints: BTreeMap<u32, Vec<Endpoint>>,
    /// SPIFFE identities its endpoints may present (every selected workload, healthy or not, so
    /// health changes touch EDS only), plus ServiceEntry `subjectAltNames`. Sorted.
    pub identities: Vec<String>,
}

impl Service {
    /// The first address: what listeners are named by (`<vip>_<port>`).
    pub fn vip(&self) -> Option<IpAddr> {
        self.addresses.first().copied()
    }

    pub fn port(&self, number: u32) -> Option<&Port> {
        self.ports.iter().find(|p| p.port == number)
    }

    pub fn endpoints(&self, port: u32) -> &[Endpoint] {
        self.endpoints
            .get(&port)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Whether clients send Istio mTLS to tlsMode-istio endpoints (not for MESH_EXTERNAL).
    pub fn auto_mtls(&self) -> bool {
        !self.mesh_external
    }
}

/// Kubernetes' and Istio's topology labels, which Istio adds to every endpoint's (and proxy's)
/// labels (`AugmentLabels`).
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
pub const SUBZONE_LABEL: &str = "topology.istio.io/subzone";
pub const NETWORK_LABEL: &str = "topology.istio.io/network";

/// `labels` plus region, zone and subzone from `locality` and the network (unless the labels
/// name one), as Istio's `AugmentLabels`.
pub fn topology_labels(
    labels: &BTreeMap<String, String>,
    locality: &Locality,
    network: &str,
) -> BTreeMap<String, String> {
    let mut out = labels.clone();
    for (key, value) in [
        (REGION_LABEL, &locality.region),
        (ZONE_LABEL, &locality.zone),
        (SUBZONE_LABEL, &locality.sub_zone),
    ] {
        if !value.is_empty() {
            out.insert(key.to_string(), value.clone());
        }
    }
    if !network.is_empty() && out.get(NETWORK_LABEL).is_none_or(|v| v.is_empty()) {
        out.insert(NETWORK_LABEL.to_string(), network.to_string());
    }
    out
}

/// A WorkloadEntry as the registry sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    pub namespace: String,
    pub name: String,
    pub creation: String,
    /// `spec.labels` merged with `metadata.labels` (metadata wins, as Istio).
    pub labels: BTreeMap<String, String>,
    pub spec: WorkloadEntry,
    pub tls_mode: TlsMode,
    /// False when health checks are enabled and the entry is not `Healthy=True`.
    pub healthy: bool,
}

/// A port this proxy serves (inbound).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboundPort {
    /// The workload's port (the service's target port): what `inbound|<port>||` is named by.
    pub port: u32,
    pub protocol: Protocol,
    pub service_host: String,
    pub service_port: u32,
}

#[derive(Clone, Debug, Default)]
pub struct Registry {
    services: Vec<Arc<Service>>,
    by_host: BTreeMap<String, usize>,
    /// Service indexes per namespace.
    services_by_ns: BTreeMap<String, Vec<usize>>,
    workloads: Vec<Workload>,
    /// Workload indexes by `(namespace, name)` and by `(namespace, address)`.
    workload_by_name: BTreeMap<(String, String), usize>,
    workloads_by_address: BTreeMap<(String, String), Vec<usize>>,
}

impl Registry {
    pub fn build(snapshot: &Snapshot, allocations: &Allocations, mesh: &MeshConfig) -> Registry {
        let workloads: Vec<Workload> = snapshot
            .of_kind(Kind::WorkloadEntry)
            .filter_map(|r| workload(r))
            .collect();
        let mut services: Vec<Service> = Vec::new();
        for r in snapshot.of_kind(Kind::Service) {
            if let Spec::Service(spec) = &r.spec
                && let Some(svc) = kube_service(r, spec, allocations, &workloads, mesh)
            {
                services.push(svc);
            }
        }
        for r in snapshot.of_kind(Kind::ServiceEntry) {
            if let Spec::ServiceEntry(se) = &r.spec {
                services.extend(entry_services(r, se, allocations, &workloads, mesh));
            }
        }
        // One service per host: Kubernetes first, then the oldest, then by namespace/name.
        services.sort_by(|a, b| {
            let rank = |s: &Service| matches!(s.source, ServiceSource::ServiceEntry(_));
            (&a.hostname, rank(a), &a.creation, &a.namespace, &a.name).cmp(&(
                &b.hostname,
                rank(b),
                &b.creation,
                &b.namespace,
                &b.name,
            ))
        });
        services.dedup_by(|later, first| later.hostname == first.hostname);
        let by_host = services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.hostname.clone(), i))
            .collect();
        let mut services_by_ns: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, s) in services.iter().enumerate() {
            services_by_ns
                .entry(s.namespace.clone())
                .or_default()
                .push(i);
        }
        let mut workload_by_name = BTreeMap::new();
        let mut workloads_by_address: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
        for (i, w) in workloads.iter().enumerate() {
            workload_by_name.insert((w.namespace.clone(), w.name.clone()), i);
            workloads_by_address
                .entry((w.namespace.clone(), w.spec.address.clone()))
                .or_default()
                .push(i);
        }
        Registry {
            services: services.into_iter().map(Arc::new).collect(),
            by_host,
            services_by_ns,
            workloads,
            workload_by_name,
            workloads_by_address,
        }
    }

    /// All services, ordered by host name.
    pub fn services(&self) -> &[Arc<Service>] {
        &self.services
    }

    pub fn service(&self, hostname: &str) -> Option<&Arc<Service>> {
        self.by_host.get(hostname).map(|i| &self.services[*i])
    }

    /// All WorkloadEntries, ordered by namespace/name.
    pub fn workloads(&self) -> &[Workload] {
        &self.workloads
    }

    /// The WorkloadEntry a proxy runs as: metadata `WORKLOAD_ENTRY`, else the (first by name)
    /// entry in its namespace whose address is the proxy's IP.
    pub fn proxy_workload(&self, proxy: &Proxy) -> Option<&Workload> {
        let ns = proxy.namespace.clone();
        if let Some(name) = proxy.workload_entry()
            && let Some(i) = self.workload_by_name.get(&(ns.clone(), name.to_string()))
        {
            return Some(&self.workloads[*i]);
        }
        if proxy.ip.is_empty() {
            return None;
        }
        // Workloads are ordered by name: the first is the one.
        self.workloads_by_address
            .get(&(ns, proxy.ip.clone()))
            .and_then(|v| v.first())
            .map(|i| &self.workloads[*i])
    }

    /// The labels policies select the proxy by: its WorkloadEntry's, overlaid with the node's.
    pub fn proxy_labels(&self, proxy: &Proxy) -> BTreeMap<String, String> {
        let mut labels = self
            .proxy_workload(proxy)
            .map(|w| w.labels.clone())
            .unwrap_or_default();
        labels.extend(proxy.labels.clone());
        labels
    }

    /// The ports this proxy serves: every port of every service in its namespace that selects
    /// it, by workload port (first service by host wins a port).
    pub fn inbound_ports(&self, proxy: &Proxy) -> Vec<InboundPort> {
        let workload = self.proxy_workload(proxy);
        let mut labels = workload.map(|w| w.labels.clone()).unwrap_or_default();
        labels.extend(proxy.labels.clone());
        let empty = BTreeMap::new();
        let ports_map = workload.map(|w| &w.spec.ports).unwrap_or(&empty);
        let mut out: BTreeMap<u32, InboundPort> = BTreeMap::new();
        // Kubernetes services before ServiceEntries, then by host.
        let mut selecting: Vec<&Arc<Service>> = self
            .services_by_ns
            .get(&proxy.namespace)
            .into_iter()
            .flatten()
            .map(|i| &self.services[*i])
            .filter(|s| s.selector.as_ref().is_some_and(|sel| sel.matches(&labels)))
            .collect();
        selecting.sort_by_key(|s| matches!(s.source, ServiceSource::ServiceEntry(_)));
        for svc in selecting {
            for p in &svc.ports {
                if p.protocol == Protocol::Udp {
                    continue;
                }
                let Some(port) = p.endpoint_port(ports_map) else {
                    continue;
                };
                out.entry(port).or_insert_with(|| InboundPort {
                    port,
                    protocol: p.protocol,
                    service_host: svc.hostname.clone(),
                    service_port: p.port,
                });
            }
        }
        out.into_values().collect()
    }
}

fn tls_mode(labels: &BTreeMap<String, String>, service_account: &str) -> TlsMode {
    match labels.get(TLS_MODE_LABEL) {
        Some(v) if v == "istio" => TlsMode::Istio,
        Some(_) => TlsMode::Disabled,
        None if !service_account.is_empty() => TlsMode::Istio,
        None => TlsMode::Disabled,
    }
}

fn workload(r: &Resource) -> Option<Workload> {
    let Spec::WorkloadEntry(we) = &r.spec else {
        return None;
    };
    let mut labels = we.labels.clone();
    labels.extend(r.metadata.labels.clone());
    let checked = r
        .metadata
        .annotations
        .get(HEALTH_CHECKS_ANNOTATION)
        .is_some_and(|v| v == "true");
    Some(Workload {
        namespace: r.namespace().to_string(),
        name: r.name().to_string(),
        creation: r.metadata.creation_timestamp.clone(),
        tls_mode: tls_mode(&labels, &we.service_account),
        labels,
        spec: we.clone(),
        healthy: !checked || is_healthy(r.status.as_ref()),
    })
}

/// `status.conditions` has `{type: Healthy, status: "True"}`.
fn is_healthy(status: Option<&Value>) -> bool {
    status
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .is_some_and(|conds| {
            conds.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Healthy")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

fn is_ip(addr: &str) -> bool {
    addr.parse::<IpAddr>().is_ok()
}

/// A workload's endpoint for one service port, if it serves it with a usable address.
fn endpoint_for(
    port: &Port,
    we: &WorkloadEntry,
    tls: TlsMode,
    workload_id: String,
    labels: &Arc<BTreeMap<String, String>>,
    dns: bool,
) -> Option<Endpoint> {
    let addr = we.address.as_str();
    let usable = if dns {
        !addr.is_empty() && !addr.starts_with("unix://")
    } else {
        is_ip(addr)
    };
    if !usable {
        return None;
    }
    Some(Endpoint {
        address: addr.to_string(),
        port: port.endpoint_port(&we.ports)?,
        weight: we.weight.filter(|w| *w > 0).unwrap_or(1),
        locality: Locality::parse(&we.locality),
        network: we.network.clone(),
        service_account: we.service_account.clone(),
        tls_mode: tls,
        workload: workload_id,
        labels: Arc::clone(labels),
    })
}

/// Fills endpoints and identities from the workloads `selector` picks in `namespace`.
fn select_workloads(
    svc: &mut Service,
    workloads: &[Workload],
    mesh: &MeshConfig,
    identities: &mut BTreeSet<String>,
) {
    let Some(selector) = svc.selector.clone() else {
        return;
    };
    let dns = matches!(svc.resolution, Resolution::Dns | Resolution::DnsRoundRobin);
    // Workloads are ordered by namespace: binary-search this namespace's run.
    let start = workloads.partition_point(|w| w.namespace < svc.namespace);
    let end = workloads.partition_point(|w| w.namespace <= svc.namespace);
    for w in workloads[start..end]
        .iter()
        .filter(|w| selector.matches(&w.labels))
    {
        if !w.spec.service_account.is_empty() {
            identities.insert(mesh.spiffe_uri(&w.namespace, &w.spec.service_account));
        }
        if !w.healthy {
            continue;
        }
        let labels = Arc::new(topology_labels(
            &w.labels,
            &Locality::parse(&w.spec.locality),
            &w.spec.network,
        ));
        for p in &svc.ports {
            let id = format!("{}/{}", w.namespace, w.name);
            if let Some(ep) = endpoint_for(p, &w.spec, w.tls_mode, id, &labels, dns) {
                svc.endpoints.entry(p.port).or_default().push(ep);
            }
        }
    }
}

fn kube_service(
    r: &Resource,
    spec: &ServiceSpec,
    allocations: &Allocations,
    workloads: &[Workload],
    mesh: &MeshConfig,
) -> Option<Service> {
    if spec.type_ == "ExternalName" {
        // Not modelled yet (Istio: a DNS cluster to spec.externalName).
        return None;
    }
    let (ns, name) = (r.namespace().to_string(), r.name().to_string());
    let mut addresses: Vec<IpAddr> = Vec::new();
    for ip in std::iter::once(&spec.cluster_ip).chain(&spec.cluster_ips) {
        if let Ok(ip) = ip.parse::<IpAddr>()
            && !addresses.contains(&ip)
        {
            addresses.push(ip);
        }
    }
    if addresses.is_empty()
        && let Some(ip) = allocations.get(&(ns.clone(), name.clone()))
    {
        addresses.push(*ip);
    }
    let ports = spec
        .ports
        .iter()
        .filter(|p| p.protocol().eq_ignore_ascii_case("TCP"))
        .filter(|p| (1..=65535).contains(&p.port))
        .map(|p| Port {
            name: p.name.clone(),
            port: p.port as u32,
            protocol: Protocol::from_kubernetes(
                p.port,
                &p.name,
                p.protocol(),
                p.app_protocol.as_deref(),
            ),
            target: match &p.target_port {
                Some(IntOrString::Int(n)) if (1..=65535).contains(n) => {
                    TargetPort::Number(*n as u32)
                }
                Some(IntOrString::String(s)) => TargetPort::Name(s.clone()),
                _ => TargetPort::Number(p.port as u32),
            },
        })
        .collect();
    let headless = spec.cluster_ip == "None"
        || (spec.cluster_ip.is_empty() && spec.cluster_ips.first().is_some_and(|ip| ip == "None"));
    let mut svc = Service {
        hostname: format!("{name}.{ns}.svc.{DOMAIN_SUFFIX}"),
        namespace: ns,
        name,
        source: ServiceSource::Kubernetes,
        addresses,
        headless,
        ports,
        resolution: Resolution::ClientSideLb,
        mesh_external: false,
        creation: r.metadata.creation_timestamp.clone(),
        // A selector-less Service has no endpoints the mesh knows of.
        selector: (!spec.selector.is_empty()).then(|| Selector(spec.selector.clone())),
        endpoints: BTreeMap::new(),
        identities: Vec::new(),
    };
    let mut identities = BTreeSet::new();
    select_workloads(&mut svc, workloads, mesh, &mut identities);
    svc.identities = identities.into_iter().collect();
    Some(svc)
}

fn entry_services(
    r: &Resource,
    se: &ServiceEntry,
    allocations: &Allocations,
    workloads: &[Workload],
    mesh: &MeshConfig,
) -> Vec<Service> {
    let ns = r.namespace().to_string();
    let resolution = match se.effective_resolution() {
        "STATIC" => Resolution::ClientSideLb,
        "DNS" => Resolution::Dns,
        "DNS_ROUND_ROBIN" => Resolution::DnsRoundRobin,
        // NONE, and DYNAMIC_DNS (not modelled): the client's destination is used as is.
        _ => Resolution::Passthrough,
    };
    let ports: Vec<Port> = se
        .ports
        .iter()
        .filter(|p| (1..=65535).contains(&p.number))
        .map(|p| Port {
            name: p.name.clone(),
            port: p.number,
            protocol: Protocol::parse(&p.protocol),
            target: TargetPort::Number(if p.target_port > 0 {
                p.target_port
            } else {
                p.number
            }),
        })
        .filter(|p| p.protocol != Protocol::Udp)
        .collect();
    let mut own: Vec<IpAddr> = Vec::new();
    for a in &se.addresses {
        // Single addresses and /32 (/128) prefixes; wider CIDRs are not modelled yet.
        let ip = match a.split_once('/') {
            None => a.parse::<IpAddr>().ok(),
            Some((ip, bits)) => ip
                .parse::<IpAddr>()
                .ok()
                .filter(|ip| bits == if ip.is_ipv4() { "32" } else { "128" }),
        };
        if let Some(ip) = ip
            && !own.contains(&ip)
        {
            own.push(ip);
        }
    }
    let mut out = Vec::new();
    for host in &se.hosts {
        let mut addresses = own.clone();
        if addresses.is_empty()
            && resolution != Resolution::Passthrough
            && let Some(ip) = allocations.get(&(ns.clone(), host.clone()))
        {
            addresses.push(*ip);
        }
        let mut svc = Service {
            hostname: host.clone(),
            namespace: ns.clone(),
            name: host.clone(),
            source: ServiceSource::ServiceEntry(r.name().to_string()),
            addresses,
            headless: false,
            ports: ports.clone(),
            resolution,
            mesh_external: se.effective_location() != "MESH_INTERNAL",
            creation: r.metadata.creation_timestamp.clone(),
            selector: se
                .workload_selector
                .as_ref()
                .map(|s| Selector(s.labels.clone())),
            endpoints: BTreeMap::new(),
            identities: Vec::new(),
        };
        let mut identities: BTreeSet<String> = se.subject_alt_names.iter().cloned().collect();
        let dns = matches!(resolution, Resolution::Dns | Resolution::DnsRoundRobin);
        if svc.selector.is_some() {
            select_workloads(&mut svc, workloads, mesh, &mut identities);
        } else if !se.endpoints.is_empty() {
            for (i, we) in se.endpoints.iter().enumerate() {
                if !we.service_account.is_empty() {
                    identities.insert(mesh.spiffe_uri(&ns, &we.service_account));
                }
                let tls = tls_mode(&we.labels, &we.service_account);
                let labels = Arc::new(topology_labels(
                    &we.labels,
                    &Locality::parse(&we.locality),
                    &we.network,
                ));
                for p in &svc.ports {
                    let id = format!("{ns}/{}-{i}", r.name());
                    if let Some(ep) = endpoint_for(p, we, tls, id, &labels, dns) {
                        svc.endpoints.entry(p.port).or_default().push(ep);
                    }
                }
            }
        } else if dns && !host.starts_with('*') {
            // DNS without endpoints: Envoy resolves the host itself.
            for p in &svc.ports {
                let TargetPort::Number(port) = p.target else {
                    continue;
                };
                svc.endpoints.entry(p.port).or_default().push(Endpoint {
                    address: host.clone(),
                    port,
                    weight: 1,
                    locality: Locality::default(),
                    network: String::new(),
                    service_account: String::new(),
                    tls_mode: TlsMode::Disabled,
                    workload: format!("{ns}/{}", r.name()),
                    labels: Arc::default(),
                });
            }
        }
        svc.identities = identities.into_iter().collect();
        out.push(svc);
    }
    out
}
