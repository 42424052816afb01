//! Test helpers: an upstream DNS server on a loopback address (port 53, as resolv.conf names
//! servers), the agent's DNS proxy started on a free port under a temporary root, and `dig`.

use super::reply::Transport;
use crate::config::{AgentConfig, ProxyType};
use crate::xds_proxy::{InterceptHandler, Intercepted, ProxyHooks};
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, UdpSocket};
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::Resource;
use weft_proto::envoy_types::pb::google::protobuf::Any;
use weft_proto::nds::NameTable;
use weft_proto::nds::name_table::NameInfo;
use weft_proto::type_url;

static NEXT: AtomicU32 = AtomicU32::new(1);

/// A loopback address of this test alone (127.53.<pid>.<n>), so tests in parallel and in other
/// test binaries never share port 53.
pub fn unique_loopback() -> Ipv4Addr {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    Ipv4Addr::new(127, 53, (pid % 250) as u8 + 1, (n % 250) as u8 + 1)
}

pub fn temp_root(name: &str) -> PathBuf {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("weft-dns-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("etc")).unwrap();
    d
}

/// A port free for both UDP and TCP on 127.0.0.1.
pub fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// What the test upstream was asked: (transport, lower-case name).
pub type Asked = Arc<Mutex<Vec<(Transport, String)>>>;

/// A careless upstream on `<ip>:53`: `outside.example.` A 192.0.2.7, `big.example.` 60 A records
/// (never truncated, whatever the query's size), NXDOMAIN for the rest.
pub async fn start_upstream(ip: Ipv4Addr) -> Asked {
    let addr = SocketAddr::new(IpAddr::V4(ip), 53);
    let udp = UdpSocket::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("test upstream on {addr} (needs root): {e}"));
    let tcp = TcpListener::bind(addr).await.unwrap();
    let asked: Asked = Arc::default();
    let a = asked.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
            if let Some(out) = upstream_answer(&buf[..n], Transport::Udp, &a) {
                let _ = udp.send_to(&out, peer).await;
            }
        }
    });
    let a = asked.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = tcp.accept().await {
            let a = a.clone();
            tokio::spawn(async move {
                while let Ok(Some(q)) = super::upstream::read_frame(&mut s).await {
                    if let Some(out) = upstream_answer(&q, Transport::Tcp, &a) {
                        let _ = super::upstream::write_frame(&mut s, &out).await;
                    }
                }
            });
        }
    });
    asked
}

fn upstream_answer(q: &[u8], t: Transport, asked: &Asked) -> Option<Vec<u8>> {
    let req = Message::from_vec(q).ok()?;
    let query = req.queries.first()?.clone();
    let name = query.name().to_ascii().to_ascii_lowercase();
    asked.lock().unwrap().push((t, name.clone()));
    let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
    resp.metadata.message_type = MessageType::Response;
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.add_query(query.clone());
    resp.edns = req.edns.clone();
    let a = |last: u8| {
        Record::from_rdata(
            query.name().clone(),
            300,
            RData::A(A(Ipv4Addr::new(192, 0, 2, last))),
        )
    };
    match (name.as_str(), query.query_type()) {
        ("outside.example.", RecordType::A) => resp.answers.push(a(7)),
        ("big.example.", RecordType::A) => resp.answers.extend((1..=60).map(a)),
        ("outside.example." | "big.example.", _) => {}
        _ => resp.metadata.response_code = ResponseCode::NXDomain,
    }
    resp.to_vec().ok()
}

pub fn info(ips: &[&str], registry: &str, short: &str, ns: &str) -> NameInfo {
    NameInfo {
        ips: ips.iter().map(|s| s.to_string()).collect(),
        registry: registry.into(),
        shortname: short.into(),
        namespace: ns.into(),
        ..Default::default()
    }
}

/// The seed lab's names as weftd would send them to the forum VM.
pub fn lab_table() -> NameTable {
    NameTable {
        table: [
            (
                "webapp.istioinaction.svc.cluster.local",
                info(&["10.96.0.10"], "Kubernetes", "webapp", "istioinaction"),
            ),
            (
                "catalog.istioinaction.svc.cluster.local",
                info(
                    &["10.96.0.11", "fd00:10:96::11"],
                    "Kubernetes",
                    "catalog",
                    "istioinaction",
                ),
            ),
            (
                "forum.forum-services.svc.cluster.local",
                info(&["10.96.0.20"], "Kubernetes", "forum", "forum-services"),
            ),
            (
                "api.partner.example",
                info(&["240.240.0.1"], "External", "", ""),
            ),
        ]
        .into_iter()
        .map(|(h, i)| (h.to_string(), i))
        .collect(),
    }
}

pub fn intercepted(table_bytes: Vec<u8>) -> Intercepted {
    Intercepted {
        node_id: "sidecar~10.0.0.9~forum.forum-services~forum-services.svc.cluster.local".into(),
        type_url: type_url::NAME_TABLE.into(),
        version_info: "v1".into(),
        resources: vec![Resource {
            resource: Some(Any {
                type_url: type_url::NAME_TABLE.into(),
                value: table_bytes,
            }),
            ..Default::default()
        }],
        removed_resources: Vec::new(),
        delta: false,
    }
}

/// The agent's DNS proxy under `root` (its `etc/resolv.conf` names `upstream`), on a free port.
pub struct Proxy {
    pub port: u16,
    pub hooks: ProxyHooks,
}

impl Proxy {
    pub async fn start(root: &Path, upstream: Ipv4Addr, extra: &[(&str, &str)]) -> Proxy {
        std::fs::write(
            root.join("etc/resolv.conf"),
            format!(
                "nameserver {upstream}\nsearch forum-services.svc.cluster.local svc.cluster.local cluster.local\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let mut env: BTreeMap<String, String> = [
            ("ISTIO_META_DNS_CAPTURE", "true"),
            ("POD_NAMESPACE", "forum-services"),
            ("POD_NAME", "forum"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        env.insert("DNS_PROXY_ADDR".into(), format!("127.0.0.1:{port}"));
        let cfg = AgentConfig::load(root, ProxyType::Sidecar, &env).unwrap();
        let mut hooks = ProxyHooks::default();
        super::start(&cfg, &mut hooks).await.unwrap();
        Proxy { port, hooks }
    }

    pub fn handler(&self) -> &InterceptHandler {
        &self.hooks.handlers[type_url::NAME_TABLE]
    }

    /// Delivers a name table as the xDS proxy would.
    pub fn deliver(&self, table: &NameTable) {
        (self.handler().0)(&intercepted(prost::Message::encode_to_vec(table))).unwrap();
    }

    pub async fn dig(&self, args: &[&str]) -> Dig {
        dig(self.port, args).await
    }
}

/// What `dig` printed, parsed.
#[derive(Debug, Default)]
pub struct Dig {
    pub status: String,
    pub flags: Vec<String>,
    /// (name, ttl, type, data)
    pub answers: Vec<(String, u32, String, String)>,
    pub edns_udp: Option<u16>,
    pub size: usize,
    pub raw: String,
}

impl Dig {
    pub fn data(&self) -> Vec<&str> {
        self.answers.iter().map(|a| a.3.as_str()).collect()
    }
    pub fn has_flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }
}

pub async fn dig(port: u16, args: &[&str]) -> Dig {
    let out = tokio::process::Command::new("dig")
        .arg("@127.0.0.1")
        .args(["-p", &port.to_string(), "+tries=1", "+time=5"])
        .args(args)
        .output()
        .await
        .expect("dig runs (apt-get install dnsutils)");
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut d = Dig {
        raw: raw.clone(),
        ..Default::default()
    };
    if args.contains(&"+short") {
        // Just the data, one record a line.
        d.answers = raw
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with(';'))
            .map(|l| (String::new(), 0, String::new(), l.to_string()))
            .collect();
        return d;
    }
    let mut in_answer = false;
    for line in raw.lines() {
        if let Some(rest) = line.strip_prefix(";; ->>HEADER<<- ") {
            d.status = rest
                .split(", ")
                .find_map(|p| p.strip_prefix("status: "))
                .unwrap_or_default()
                .to_string();
        } else if let Some(rest) = line.strip_prefix(";; flags: ") {
            let flags = rest.split(';').next().unwrap_or_default();
            d.flags = flags.split_whitespace().map(str::to_string).collect();
        } else if let Some(rest) = line.strip_prefix("; EDNS: ") {
            d.edns_udp = rest
                .rsplit("udp: ")
                .next()
                .and_then(|v| v.trim().parse().ok());
        } else if let Some(rest) = line.strip_prefix(";; MSG SIZE  rcvd: ") {
            d.size = rest.trim().parse().unwrap_or_default();
        } else if line.starts_with(";; ANSWER SECTION:") {
            in_answer = true;
        } else if line.is_empty() {
            in_answer = false;
        } else if in_answer {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 5 {
                d.answers.push((
                    f[0].to_string(),
                    f[1].parse().unwrap_or_default(),
                    f[3].to_string(),
                    f[4].to_string(),
                ));
            }
        }
    }
    d
}
