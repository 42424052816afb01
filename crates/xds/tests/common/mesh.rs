//! Running generated configuration in real Envoys without capture: addresses, static secrets
//! in place of the agent's SDS, bootstraps, processes.

use super::decode;
use prost::Message;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};
use weft_identity::{CertificateAuthority, Identity, KeyAlgorithm};
use weft_proto::envoy_types::pb::envoy::config::bootstrap::v3::{Bootstrap, bootstrap};
use weft_proto::envoy_types::pb::envoy::config::cluster::v3::Cluster;
use weft_proto::envoy_types::pb::envoy::config::core::v3::{
    Address, DataSource, Node, SocketAddress, TransportSocket, address, data_source,
    socket_address, transport_socket,
};
use weft_proto::envoy_types::pb::envoy::config::listener::v3::Listener;
use weft_proto::envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, Secret, TlsCertificate,
    UpstreamTlsContext, common_tls_context, secret,
};
use weft_proto::envoy_types::util::pack_any;
use weft_xds::Proxy;

pub fn addr(ip: &str, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.into(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port.into())),
            ..Default::default()
        })),
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn inline(s: &str) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(data_source::Specifier::InlineString(s.into())),
        ..Default::default()
    })
}

/// `default` (chain + key) and `ROOTCA` for `identity`.
pub fn secrets(ca: &CertificateAuthority, ns: &str, sa: &str) -> Vec<Secret> {
    let key = KeyAlgorithm::EcdsaP256.generate().unwrap();
    let chain = ca
        .sign_key(
            &key,
            &Identity::new("cluster.local", ns, sa),
            Duration::from_secs(3600),
            SystemTime::now(),
        )
        .unwrap();
    vec![
        Secret {
            name: "default".into(),
            r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                certificate_chain: inline(&chain.concat()),
                private_key: inline(&key.serialize_pem()),
                ..Default::default()
            })),
        },
        Secret {
            name: "ROOTCA".into(),
            r#type: Some(secret::Type::ValidationContext(
                CertificateValidationContext {
                    trusted_ca: inline(ca.root_pem()),
                    ..Default::default()
                },
            )),
        },
    ]
}

/// SDS references without a config source are looked up in the static secrets.
pub fn use_static_secrets(ts: &mut TransportSocket) {
    fn strip(c: &mut CommonTlsContext) {
        for s in &mut c.tls_certificate_sds_secret_configs {
            s.sds_config = None;
        }
        if let Some(common_tls_context::ValidationContextType::CombinedValidationContext(v)) =
            &mut c.validation_context_type
            && let Some(s) = &mut v.validation_context_sds_secret_config
        {
            s.sds_config = None;
        }
    }
    let Some(transport_socket::ConfigType::TypedConfig(any)) = &mut ts.config_type else {
        return;
    };
    if any.type_url.ends_with(".UpstreamTlsContext") {
        let mut ctx: UpstreamTlsContext = decode(any);
        strip(ctx.common_tls_context.as_mut().unwrap());
        *any = pack_any(ctx);
    } else if any.type_url.ends_with(".DownstreamTlsContext") {
        let mut ctx: DownstreamTlsContext = decode(any);
        strip(ctx.common_tls_context.as_mut().unwrap());
        *any = pack_any(ctx);
    }
}

pub fn fix_clusters(clusters: &mut [Cluster]) {
    for c in clusters {
        for m in &mut c.transport_socket_matches {
            if let Some(ts) = &mut m.transport_socket {
                use_static_secrets(ts);
            }
        }
    }
}

pub fn fix_listener(l: &mut Listener) {
    for chain in &mut l.filter_chains {
        if let Some(ts) = &mut chain.transport_socket {
            use_static_secrets(ts);
        }
    }
}

pub struct Envoy(Child);

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn start(envoy: &Path, dir: &Path, name: &str, b: Bootstrap) -> Envoy {
    let file = dir.join(format!("{name}.pb"));
    std::fs::write(&file, b.encode_to_vec()).unwrap();
    let child = Command::new(envoy)
        .args([
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "-l",
            "info",
            "-c",
        ])
        .arg(&file)
        .arg("--log-path")
        .arg(dir.join(format!("{name}.log")))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start envoy");
    Envoy(child)
}

pub fn bootstrap(
    proxy: &Proxy,
    listeners: Vec<Listener>,
    clusters: Vec<Cluster>,
    secrets: Vec<Secret>,
) -> Bootstrap {
    Bootstrap {
        node: Some(Node {
            id: proxy.id.clone(),
            cluster: format!("{}.{}", proxy.name, proxy.namespace),
            ..Default::default()
        }),
        static_resources: Some(bootstrap::StaticResources {
            listeners,
            clusters,
            secrets,
        }),
        ..Default::default()
    }
}

/// A one-request-per-connection HTTP/1.1 application on a free loopback port: for each request
/// `body(head, peer)` gives the 200 response's body (`head`: the request line and headers).
pub fn http_application(body: fn(&str, std::net::SocketAddr) -> String) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(50) {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let Ok(peer) = conn.peer_addr() else { continue };
            let body = body(&String::from_utf8_lossy(&buf), peer);
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// One HTTP/1.1 `GET /hello` to a loopback port; the whole response, or what went wrong.
pub fn get(port: u16, host: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    write!(
        s,
        "GET /hello HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}
