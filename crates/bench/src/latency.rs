//! Added latency of the mesh for HTTP with mutual TLS, three ways in the same run and the same
//! lab (network namespaces, release binaries):
//!
//! - `direct`: client → the server's application, no proxy;
//! - `weftd`: client → (capture) → the client's Envoy → mTLS → the server's Envoy → application,
//!   both Envoys run by weft-agent and configured by weftd;
//! - `static`: the same path through two Envoys with a hand-written minimal mTLS configuration
//!   (the floor for stock Envoy), using the same workload certificates.
//!
//! The load is open loop: `rate` requests per second spread over `connections` keep-alive
//! HTTP/1.1 connections, each request's latency measured from its scheduled send time (no
//! coordinated omission); the response body is `size` bytes. Rounds interleave the three targets
//! so that machine noise hits them alike.

use crate::stats::{Percentiles, ms};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};
use weft_testkit::mesh::{ControlPlane, MeshWorkload};
use weft_testkit::{EnvoyOptions, Host, Lab};

pub struct Config {
    pub rate: u32,
    pub connections: usize,
    pub seconds: u64,
    pub rounds: usize,
    pub size: usize,
}

const NS: &str = "bench";
const APP_PORT: u16 = 8080;
/// The static server Envoy's mTLS port and the static client Envoy's plaintext port.
const STATIC_TLS_PORT: u16 = 16443;
const STATIC_CLIENT_PORT: u16 = 16080;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// `weft-bench http-server`: answers every request with `size` bytes (keep-alive, a thread per
/// connection).
pub fn serve(listen: SocketAddr, size: usize) -> Result<(), String> {
    let listener = TcpListener::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
    let head =
        format!("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {size}\r\n\r\n");
    let mut response = head.into_bytes();
    response.extend(std::iter::repeat_n(b'x', size));
    let response: &'static [u8] = Box::leak(response.into_boxed_slice());
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        std::thread::spawn(move || {
            let _ = conn.set_nodelay(true);
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut writer = conn;
            while let Ok(Some(body_len)) = read_head(&mut reader) {
                let mut body = vec![0u8; body_len];
                if reader.read_exact(&mut body).is_err() || writer.write_all(response).is_err() {
                    return;
                }
            }
        });
    }
    Ok(())
}

/// Reads one request or response head; returns its Content-Length (`None` at end of stream).
fn read_head(r: &mut impl BufRead) -> std::io::Result<Option<usize>> {
    let mut len = 0;
    let mut first = true;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if line == "\r\n" && !first {
            return Ok(Some(len));
        }
        first = false;
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap_or(0);
        }
    }
}

/// Runs the open-loop load against `addr` with `authority` and returns every latency.
fn load(
    addr: SocketAddr,
    authority: &str,
    cfg: &Config,
    seconds: u64,
) -> Result<Vec<Duration>, String> {
    let interval = Duration::from_secs_f64(cfg.connections as f64 / f64::from(cfg.rate));
    let per_conn = (seconds as f64 / interval.as_secs_f64()) as usize;
    let request = format!("GET /bench HTTP/1.1\r\nhost: {authority}\r\n\r\n");
    let start = Instant::now() + Duration::from_millis(200);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..cfg.connections)
            .map(|k| {
                let request = request.as_bytes();
                s.spawn(move || -> Result<Vec<Duration>, String> {
                    let conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                        .map_err(|e| format!("connect {addr}: {e}"))?;
                    conn.set_nodelay(true).map_err(err)?;
                    conn.set_read_timeout(Some(Duration::from_secs(10)))
                        .map_err(err)?;
                    let mut reader = BufReader::new(conn.try_clone().map_err(err)?);
                    let mut writer = conn;
                    let offset = interval.mul_f64(k as f64 / cfg.connections as f64);
                    let mut out = Vec::with_capacity(per_conn);
                    let mut body = Vec::new();
                    for i in 0..per_conn {
                        let due = start + offset + interval * i as u32;
                        let now = Instant::now();
                        if due > now {
                            std::thread::sleep(due - now);
                        }
                        writer.write_all(request).map_err(err)?;
                        let len = read_head(&mut reader)
                            .map_err(err)?
                            .ok_or("connection closed")?;
                        body.resize(len, 0);
                        reader.read_exact(&mut body).map_err(err)?;
                        out.push(due.elapsed());
                    }
                    Ok(out)
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.join().map_err(|_| "load thread panicked".to_string())??);
        }
        Ok(all)
    })
}

fn static_server_yaml(certs: &Path, client_san: &str) -> String {
    format!(
        r#"static_resources:
  listeners:
  - name: mtls_in
    address: {{socket_address: {{address: 0.0.0.0, port_value: {STATIC_TLS_PORT}}}}}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificates: [{{certificate_chain: {{filename: {c}/cert-chain.pem}}, private_key: {{filename: {c}/key.pem}}}}]
            validation_context:
              trusted_ca: {{filename: {c}/root-cert.pem}}
              match_typed_subject_alt_names: [{{san_type: URI, matcher: {{exact: "{client_san}"}}}}]
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: in
          route_config:
            virtual_hosts: [{{name: app, domains: ["*"], routes: [{{match: {{prefix: /}}, route: {{cluster: app}}}}]}}]
          http_filters: [{{name: envoy.filters.http.router, typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}}]
  clusters:
  - name: app
    type: STATIC
    connect_timeout: 5s
    load_assignment:
      cluster_name: app
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {APP_PORT}}}}}}}}}]}}]
"#,
        c = certs.display()
    )
}

fn static_client_yaml(certs: &Path, server: SocketAddr, server_san: &str) -> String {
    format!(
        r#"static_resources:
  listeners:
  - name: out
    address: {{socket_address: {{address: 127.0.0.1, port_value: {STATIC_CLIENT_PORT}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: out
          route_config:
            virtual_hosts: [{{name: app, domains: ["*"], routes: [{{match: {{prefix: /}}, route: {{cluster: server}}}}]}}]
          http_filters: [{{name: envoy.filters.http.router, typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}}]
  clusters:
  - name: server
    type: STATIC
    connect_timeout: 5s
    load_assignment:
      cluster_name: server
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: {ip}, port_value: {port}}}}}}}}}]}}]
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        common_tls_context:
          tls_certificates: [{{certificate_chain: {{filename: {c}/cert-chain.pem}}, private_key: {{filename: {c}/key.pem}}}}]
          validation_context:
            trusted_ca: {{filename: {c}/root-cert.pem}}
            match_typed_subject_alt_names: [{{san_type: URI, matcher: {{exact: "{server_san}"}}}}]
"#,
        c = certs.display(),
        ip = server.ip(),
        port = server.port()
    )
}

fn mesh_yaml(client: &Host, server: &Host) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: app, namespace: {NS}}}
spec:
  selector: {{app: server}}
  ports: [{{name: http, port: 80, targetPort: {APP_PORT}}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: server, namespace: {NS}}}
spec: {{address: {}, labels: {{app: server}}, serviceAccount: server}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: client, namespace: {NS}}}
spec: {{address: {}, labels: {{app: client}}, serviceAccount: client}}
",
        server.ip(),
        client.ip()
    )
}

fn wait_file(path: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        if Instant::now() > deadline {
            return Err(format!("{} did not appear", path.display()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

pub fn run(cfg: &Config) -> Result<(), String> {
    let bench = std::env::current_exe().map_err(err)?;
    let lab = Lab::new("lat").map_err(err)?;
    let net = lab.network("mesh").map_err(err)?;
    let cp_host = lab.host("cp", &[&net]).map_err(err)?;
    let c1 = lab.host("c1", &[&net]).map_err(err)?;
    let s1 = lab.host("s1", &[&net]).map_err(err)?;
    let c2 = lab.host("c2", &[&net]).map_err(err)?;
    let s2 = lab.host("s2", &[&net]).map_err(err)?;
    for h in [&c1, &s1] {
        h.set_default_route(cp_host.ip()).map_err(err)?;
    }
    let app = |host: &Host| {
        let mut cmd = std::process::Command::new(&bench);
        cmd.args(["http-server", "--listen", &format!("0.0.0.0:{APP_PORT}")])
            .args(["--size", &cfg.size.to_string()]);
        host.spawn_command("app", &cmd)
    };
    let _apps = (app(&s1).map_err(err)?, app(&s2).map_err(err)?);
    for s in [&s1, &s2] {
        s.wait_for_tcp(
            SocketAddr::from((s.ip(), APP_PORT)),
            Duration::from_secs(10),
        )
        .map_err(err)?;
    }

    let config = lab.dir().join("config");
    std::fs::create_dir_all(&config).map_err(err)?;
    std::fs::write(config.join("mesh.yaml"), mesh_yaml(&c1, &s1)).map_err(err)?;
    let cp = ControlPlane::start(
        &cp_host,
        &lab.dir().join("state"),
        &["--config-dir", &config.to_string_lossy()],
    )
    .map_err(err)?;
    let mut workloads = Vec::new();
    for (name, host) in [("client", &c1), ("server", &s1)] {
        workloads.push(MeshWorkload::start(lab.dir(), &cp, host, NS, name, name).map_err(err)?);
    }
    let vip: std::net::IpAddr = cp
        .service_vip(NS, "app")
        .map_err(err)?
        .parse()
        .map_err(err)?;
    let weftd_target = SocketAddr::from((vip, 80));
    let authority = format!("app.{NS}.svc.cluster.local");
    // The static pair uses the certificates the agents obtained.
    let (client_certs, server_certs) = (
        workloads[0].root.path("etc/certs"),
        workloads[1].root.path("etc/certs"),
    );
    for c in [&client_certs, &server_certs] {
        wait_file(&c.join("cert-chain.pem"))?;
    }
    let san = |sa: &str| format!("spiffe://cluster.local/ns/{NS}/sa/{sa}");
    let opts = |port| {
        let mut o = EnvoyOptions::new(port);
        o.concurrency = 2;
        o.log_level = "warning".into();
        o
    };
    let _static_server = s2
        .start_envoy_with(
            "static-server",
            &static_server_yaml(&server_certs, &san("client")),
            &opts(15100),
        )
        .map_err(err)?;
    let _static_client = c2
        .start_envoy_with(
            "static-client",
            &static_client_yaml(
                &client_certs,
                SocketAddr::from((s2.ip(), STATIC_TLS_PORT)),
                &san("server"),
            ),
            &opts(15100),
        )
        .map_err(err)?;

    let targets: [(&str, &Host, SocketAddr); 3] = [
        ("direct", &c2, SocketAddr::from((s2.ip(), APP_PORT))),
        ("weftd", &c1, weftd_target),
        (
            "static",
            &c2,
            SocketAddr::from(([127, 0, 0, 1], STATIC_CLIENT_PORT)),
        ),
    ];
    // Warm-up: every path answers (the weftd path once its Envoys are configured).
    let deadline = Instant::now() + Duration::from_secs(60);
    for (name, host, addr) in &targets {
        loop {
            let once = Config {
                rate: 10,
                connections: 1,
                seconds: 1,
                rounds: 1,
                size: cfg.size,
            };
            match host
                .with_netns(|| load(*addr, &authority, &once, 1))
                .map_err(err)?
            {
                Ok(_) => break,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => {
                    return Err(format!(
                        "{name} path does not answer: {e}\n{}",
                        workloads
                            .iter()
                            .map(|w| w.agent.log_tail(10))
                            .collect::<Vec<_>>()
                            .join("\n")
                    ));
                }
            }
        }
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); targets.len()];
    for round in 0..cfg.rounds {
        for (i, (name, host, addr)) in targets.iter().enumerate() {
            let got = host
                .with_netns(|| load(*addr, &authority, cfg, cfg.seconds))
                .map_err(err)??;
            let p = Percentiles::of(got.clone()).ok_or("no samples")?;
            eprintln!(
                "round {}: {name}: {} requests, p50 {} p90 {} p99 {} ms",
                round + 1,
                p.count,
                ms(p.p50),
                ms(p.p90),
                ms(p.p99)
            );
            samples[i].extend(got);
        }
    }
    let p: Vec<Percentiles> = samples
        .into_iter()
        .map(|s| Percentiles::of(s).ok_or("no samples"))
        .collect::<Result<_, _>>()?;
    println!(
        "\n{} rps over {} connections, {}-byte responses, {} rounds × {} s per path\n",
        cfg.rate, cfg.connections, cfg.size, cfg.rounds, cfg.seconds
    );
    println!("| path | requests | p50 | p90 | p99 | added p50 / p90 / p99 vs direct |");
    println!("|---|---|---|---|---|---|");
    for ((name, _, _), q) in targets.iter().zip(&p) {
        let added = |a: Duration, b: Duration| ms(a.saturating_sub(b));
        println!(
            "| {name} | {} | {} ms | {} ms | {} ms | {} / {} / {} ms |",
            q.count,
            ms(q.p50),
            ms(q.p90),
            ms(q.p99),
            added(q.p50, p[0].p50),
            added(q.p90, p[0].p90),
            added(q.p99, p[0].p99)
        );
    }
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    println!(
        "\nweftd / static: p50 {:.2}×, p90 {:.2}×, p99 {:.2}× (target: p99 within 1.10×)",
        ratio(p[1].p50, p[2].p50),
        ratio(p[1].p90, p[2].p90),
        ratio(p[1].p99, p[2].p99)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_and_open_loop_client_talk_http() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        std::thread::spawn(move || serve(addr, 1024));
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(10));
        }
        let cfg = Config {
            rate: 200,
            connections: 4,
            seconds: 1,
            rounds: 1,
            size: 1024,
        };
        let got = load(addr, "x", &cfg, 1).unwrap();
        assert_eq!(got.len(), 200);
        assert!(got.iter().all(|d| *d < Duration::from_secs(1)));
    }
}
