//! The CA benchmark: many gRPC clients calling `IstioCertificateService/CreateCertificate` on a
//! fresh weftd, divided by this machine's raw ECDSA/RSA speed (`openssl speed`, same run).
//!
//! Everything expensive that is not the CA's work happens before the clock starts: the workload
//! keys and CSRs, the tokens, the client certificates, the TLS handshakes, one warm-up request per
//! connection.

use crate::baseline::{self, LibrarySpeed, Speed};
use crate::stats::{self, Percentiles};
use crate::weftd::{self, Weftd};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use weft_identity::KeyAlgorithm;
use weft_identity::certinfo::CertInfo;
use weft_identity::csr::{WorkloadKey, build_csr};
use weft_proto::ca::IstioCertificateRequest;
use weft_proto::ca::istio_certificate_service_client::IstioCertificateServiceClient;

/// Name weftd's serving certificate is checked against (what Istio's agents expect).
const SERVER_NAME: &str = "istiod.istio-system.svc";
/// Namespace of the benchmark's workload identities (`client-<i>` service accounts).
const NAMESPACE: &str = "bench";
const TRUST_DOMAIN: &str = "cluster.local";
/// Distinct CSRs generated up front, reused round-robin.
const MAX_CSRS: usize = 2_000;
/// Issue targets, stated for a 2-core machine.
const TARGET_P256_PER_S: f64 = 10_000.0;
const TARGET_RSA_PER_S: f64 = 2_000.0;
const TARGET_P99: Duration = Duration::from_millis(50);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// `authorization: Bearer <token>` on every request (weftd verifies an ES256 JWT each time).
    Token,
    /// A workload certificate presented in the TLS handshake (verified once per connection).
    Cert,
}

pub struct Config {
    pub clients: usize,
    pub requests: usize,
    pub ca_key: KeyAlgorithm,
    /// Open loop at this many requests per second; closed loop when `None`.
    pub rate: Option<f64>,
    pub tls: bool,
    pub auth: Auth,
    pub weftd: Option<PathBuf>,
    /// Seconds per baseline measurement (`openssl speed -seconds`, each in-process operation).
    pub baseline_seconds: u32,
}

fn alg_flag(alg: KeyAlgorithm) -> &'static str {
    match alg {
        KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
        KeyAlgorithm::Rsa2048 => "rsa-2048",
    }
}

pub async fn run(cfg: &Config) -> Result<(), String> {
    if cfg.auth == Auth::Cert && !cfg.tls {
        return Err("--auth cert needs TLS (client certificates travel in the handshake)".into());
    }
    let binary = weftd::locate(cfg.weftd.as_deref())?;

    let n_csrs = cfg.requests.min(MAX_CSRS);
    eprintln!("weft-bench: generating {n_csrs} P-256 workload keys and CSRs ...");
    let csrs = Arc::new(
        tokio::task::spawn_blocking(move || generate_csrs(n_csrs))
            .await
            .map_err(|e| e.to_string())??,
    );
    eprintln!(
        "weft-bench: measuring the baselines (`openssl speed`, weft-identity in-process; one core) ..."
    );
    let (seconds, ca_key, for_peer) = (cfg.baseline_seconds, cfg.ca_key, csrs.clone());
    let peer = tokio::task::spawn_blocking(move || Peer::measure(ca_key, seconds, &for_peer))
        .await
        .map_err(|e| e.to_string())??;

    eprintln!(
        "weft-bench: starting {} with a new {} root ...",
        binary.display(),
        alg_flag(cfg.ca_key)
    );
    let weftd = Weftd::start(&binary, alg_flag(cfg.ca_key)).await?;
    let root_pem = weftd.root_pem().await?;
    eprintln!(
        "weft-bench: connecting {} clients ({}, {} auth) ...",
        cfg.clients,
        if cfg.tls { "TLS" } else { "plaintext" },
        auth_name(cfg.auth)
    );
    let clients = connect_clients(&weftd, &root_pem, cfg).await?;
    warm_up(&clients, &csrs).await?;

    eprintln!(
        "weft-bench: {} requests, {} ...",
        cfg.requests,
        match cfg.rate {
            None => "closed loop".to_string(),
            Some(r) => format!("open loop at {r}/s"),
        }
    );
    let (weftd_cpu0, own_cpu0) = (weftd.cpu_time()?, weftd::cpu_time("self")?);
    let machine0 = baseline::machine_busy();
    let outcome = match cfg.rate {
        None => closed_loop(&clients, &csrs, cfg.requests).await,
        Some(rate) => open_loop(&clients, &csrs, cfg.requests, rate).await,
    };
    let weftd_cpu = weftd.cpu_time()?.saturating_sub(weftd_cpu0);
    let own_cpu = weftd::cpu_time("self")?.saturating_sub(own_cpu0);
    // Whatever else ran meanwhile (other builds, other tests) and what the hypervisor stole.
    let (others_cpu, steal) = match (machine0, baseline::machine_busy()) {
        (Some((busy0, steal0)), Some((busy1, steal1))) => (
            Some(
                busy1
                    .saturating_sub(busy0)
                    .saturating_sub(weftd_cpu + own_cpu),
            ),
            Some(steal1.saturating_sub(steal0)),
        ),
        _ => (None, None),
    };
    let weftd_threads = weftd.threads();
    drop(clients);
    drop(weftd);

    let result = Measured {
        outcome,
        weftd_cpu,
        own_cpu,
        others_cpu,
        steal,
        weftd_threads,
    };
    print_report(cfg, &peer, &result);
    match (&result.outcome.errors, &result.outcome.first_error) {
        (0, _) => Ok(()),
        (n, first) => Err(format!(
            "{n} of {} requests failed; first error: {}",
            cfg.requests,
            first.as_deref().unwrap_or("?")
        )),
    }
}

/// The machine's one-core crypto speed: P-256 (the CSR and token signatures weftd verifies, and
/// the CA's signature with a P-256 root) and RSA-2048 when the root is RSA; and the same work done
/// by weft-identity in-process.
struct Peer {
    p256: Speed,
    rsa2048: Option<Speed>,
    library: LibrarySpeed,
}

impl Peer {
    fn measure(ca_key: KeyAlgorithm, seconds: u32, csrs: &[String]) -> Result<Self, String> {
        Ok(Peer {
            p256: baseline::openssl_speed("ecdsap256", seconds)?,
            rsa2048: match ca_key {
                KeyAlgorithm::Rsa2048 => Some(baseline::openssl_speed("rsa2048", seconds)?),
                KeyAlgorithm::EcdsaP256 => None,
            },
            library: baseline::library_speed(ca_key, csrs, f64::from(seconds))?,
        })
    }

    /// Signatures per second with the CA's key.
    fn ca_sign_per_s(&self) -> f64 {
        self.rsa2048.unwrap_or(self.p256).sign_per_s
    }
}

fn generate_csrs(n: usize) -> Result<Vec<String>, String> {
    let threads = baseline::cores().min(n.max(1));
    std::thread::scope(|s| {
        let parts: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t..n)
                        .step_by(threads)
                        .map(|i| {
                            let key = WorkloadKey::generate(KeyAlgorithm::EcdsaP256)?;
                            build_csr(&key, &spiffe_uri(&format!("workload-{i}")))
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut csrs = Vec::with_capacity(n);
        for part in parts {
            csrs.extend(part.join().map_err(|_| "CSR generation panicked")??);
        }
        Ok(csrs)
    })
}

fn spiffe_uri(service_account: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/{service_account}")
}

/// One gRPC connection to weftd and the credential its requests carry.
#[derive(Clone)]
struct Client {
    grpc: IstioCertificateServiceClient<Channel>,
    /// `Bearer <token>`, or `None` when the connection's client certificate authenticates.
    bearer: Option<MetadataValue<Ascii>>,
}

impl Client {
    /// Requests a certificate for `csr`; returns the chain (leaf first).
    async fn sign(&mut self, csr: String) -> Result<Vec<String>, String> {
        let mut req = tonic::Request::new(IstioCertificateRequest {
            csr,
            validity_duration: 0,
            metadata: None,
        });
        if let Some(b) = &self.bearer {
            req.metadata_mut().insert("authorization", b.clone());
        }
        let chain = self
            .grpc
            .create_certificate(req)
            .await
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
            .into_inner()
            .cert_chain;
        if chain.is_empty() {
            return Err("empty certificate chain".into());
        }
        Ok(chain)
    }
}

fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("PEM certificates: {e}"))
}

/// TLS to weftd: trust the mesh root, speak h2, optionally present a workload certificate.
fn tls_config(
    root_pem: &str,
    client_cert: Option<(&[String], &str)>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for der in certs_from_pem(root_pem)? {
        roots
            .add(der)
            .map_err(|e| format!("root certificate: {e}"))?;
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut cfg = match client_cert {
        Some((chain, key_pem)) => {
            let chain = certs_from_pem(&chain.concat())?;
            let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                .map_err(|e| format!("workload key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("workload certificate: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// Opens one HTTP/2 connection (its own TCP connection) to `addr`, over TLS when `tls` is given.
async fn connect(
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true);
    let channel = match tls {
        None => endpoint.connect().await,
        Some(cfg) => {
            let server_name = ServerName::try_from(SERVER_NAME).map_err(|e| e.to_string())?;
            let connector = tower::service_fn(move |_: http::Uri| {
                let (cfg, server_name) = (cfg.clone(), server_name.clone());
                async move {
                    let tcp = TcpStream::connect(addr).await?;
                    tcp.set_nodelay(true)?;
                    let tls = tokio_rustls::TlsConnector::from(cfg)
                        .connect(server_name, tcp)
                        .await?;
                    Ok::<_, std::io::Error>(TokioIo::new(tls))
                }
            });
            endpoint.connect_with_connector(connector).await
        }
    };
    channel.map_err(|e| format!("cannot connect to weftd at {addr}: {}", error_chain(&e)))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Mints a token per client (`bench/client-<i>`) and opens its connection. With certificate auth
/// the token only obtains the client's certificate, which then authenticates the connection.
async fn connect_clients(
    weftd: &Weftd,
    root_pem: &str,
    cfg: &Config,
) -> Result<Vec<Client>, String> {
    let addr = if cfg.tls {
        weftd.tls_addr
    } else {
        weftd.plaintext_addr
    };
    let server_only = tls_config(root_pem, None)?;
    let mut clients = Vec::with_capacity(cfg.clients);
    for i in 0..cfg.clients {
        let account = format!("client-{i}");
        let token = weftd.mint_token(NAMESPACE, &account).await?;
        let bearer: MetadataValue<Ascii> = format!("Bearer {token}")
            .parse()
            .map_err(|e| format!("token is not a header value: {e}"))?;
        let client = match cfg.auth {
            Auth::Token => Client {
                grpc: IstioCertificateServiceClient::new(
                    connect(addr, cfg.tls.then(|| server_only.clone())).await?,
                ),
                bearer: Some(bearer),
            },
            Auth::Cert => {
                let key = WorkloadKey::generate(KeyAlgorithm::EcdsaP256)?;
                let mut bootstrap = Client {
                    grpc: IstioCertificateServiceClient::new(
                        connect(weftd.tls_addr, Some(server_only.clone())).await?,
                    ),
                    bearer: Some(bearer),
                };
                let chain = bootstrap
                    .sign(build_csr(&key, &spiffe_uri(&account))?)
                    .await
                    .map_err(|e| format!("client certificate for {account}: {e}"))?;
                let tls = tls_config(root_pem, Some((&chain, &key.pem())))?;
                Client {
                    grpc: IstioCertificateServiceClient::new(connect(addr, Some(tls)).await?),
                    bearer: None,
                }
            }
        };
        clients.push(client);
    }
    Ok(clients)
}

/// One untimed request per connection; all must succeed, and the first certificate must name the
/// caller (not the CSR), or the benchmark would be measuring the wrong thing.
async fn warm_up(clients: &[Client], csrs: &Arc<Vec<String>>) -> Result<(), String> {
    let mut tasks = JoinSet::new();
    for (i, c) in clients.iter().enumerate() {
        let mut c = c.clone();
        let csr = csrs[i % csrs.len()].clone();
        tasks.spawn(async move { (i, c.sign(csr).await) });
    }
    while let Some(joined) = tasks.join_next().await {
        let (i, chain) = joined.map_err(|e| e.to_string())?;
        let chain = chain.map_err(|e| format!("warm-up request of client {i} failed: {e}"))?;
        let leaf = CertInfo::from_pem(&chain[0])?;
        let want = spiffe_uri(&format!("client-{i}"));
        if leaf.uris != [want.clone()] {
            return Err(format!(
                "client {i} got a certificate for {:?}, expected {want}",
                leaf.uris
            ));
        }
    }
    Ok(())
}

/// What the timed phase saw.
#[derive(Default)]
struct Outcome {
    /// Latencies of the successful requests.
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
    /// From the first send (or first scheduled send) to the last reply.
    elapsed: Duration,
    /// Open loop: how far behind schedule the pacer ever sent a request.
    max_send_lag: Option<Duration>,
}

impl Outcome {
    fn record(&mut self, latency: Duration, result: Result<Vec<String>, String>) {
        match result {
            Ok(_) => self.latencies.push(latency),
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    fn merge(&mut self, other: Outcome) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Every client sends its next request as soon as the previous one is answered, until `requests`
/// have been sent in total.
async fn closed_loop(clients: &[Client], csrs: &Arc<Vec<String>>, requests: usize) -> Outcome {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for c in clients {
        let (mut c, csrs, next) = (c.clone(), csrs.clone(), next.clone());
        tasks.spawn(async move {
            let mut part = Outcome::default();
            loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= requests {
                    return part;
                }
                let sent = Instant::now();
                let result = c.sign(csrs[i % csrs.len()].clone()).await;
                part.record(sent.elapsed(), result);
            }
        });
    }
    let mut total = Outcome::default();
    while let Some(part) = tasks.join_next().await {
        match part {
            Ok(part) => total.merge(part),
            Err(e) => total.record(Duration::ZERO, Err(format!("client task: {e}"))),
        }
    }
    total.elapsed = start.elapsed();
    total
}

/// Request `i` is due at `start + i / rate`, whatever happened to earlier ones, and is spread over
/// the connections round-robin. Latency counts from the due time, so a stall shows up in every
/// request it delays (no coordinated omission).
async fn open_loop(
    clients: &[Client],
    csrs: &Arc<Vec<String>>,
    requests: usize,
    rate: f64,
) -> Outcome {
    let start = Instant::now() + Duration::from_millis(10);
    let mut tasks = JoinSet::new();
    let mut max_lag = Duration::ZERO;
    for i in 0..requests {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due).await;
        max_lag = max_lag.max(due.elapsed());
        let mut c = clients[i % clients.len()].clone();
        let csr = csrs[i % csrs.len()].clone();
        tasks.spawn(async move {
            let result = c.sign(csr).await;
            (due.elapsed(), result)
        });
    }
    let mut total = Outcome::default();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((latency, result)) => total.record(latency, result),
            Err(e) => total.record(Duration::ZERO, Err(format!("request task: {e}"))),
        }
    }
    total.elapsed = start.elapsed();
    total.max_send_lag = Some(max_lag);
    total
}

struct Measured {
    outcome: Outcome,
    weftd_cpu: Duration,
    own_cpu: Duration,
    /// CPU used by every other process on the machine during the timed phase.
    others_cpu: Option<Duration>,
    /// CPU time stolen by the hypervisor during the timed phase.
    steal: Option<Duration>,
    weftd_threads: Option<u64>,
}

impl Measured {
    fn cpu_us_per_cert(&self) -> f64 {
        self.weftd_cpu.as_secs_f64() * 1e6 / self.outcome.latencies.len().max(1) as f64
    }
}

/// Thousands-separated integer.
fn int(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn met(ok: bool) -> &'static str {
    if ok { "**met**" } else { "**not met**" }
}

fn print_report(cfg: &Config, peer: &Peer, r: &Measured) {
    let o = &r.outcome;
    let wall = o.elapsed.as_secs_f64().max(1e-9);
    let cores = baseline::cores();
    let cores_of =
        |d: Option<Duration>| d.map_or("?".into(), |d| format!("{:.2}", d.as_secs_f64() / wall));
    println!();
    println!("command: `{}`", shell_command());
    println!(
        "machine: {cores} cores (nproc), {}; during the run other processes used {} cores, steal {} cores; weftd had {} threads at the end",
        baseline::cpu_model(),
        cores_of(r.others_cpu),
        cores_of(r.steal),
        r.weftd_threads.map_or("?".into(), |t| t.to_string())
    );
    println!();
    print_run(cfg, r);
    println!();
    print_peer(cfg, peer);
    println!();
    print_ratios(cfg, peer, r);
    println!();
    print_target(cfg, r);
}

fn print_run(cfg: &Config, r: &Measured) {
    let o = &r.outcome;
    let wall = o.elapsed.as_secs_f64().max(1e-9);
    let lat = Percentiles::of(o.latencies.clone());
    let pct =
        |f: fn(&Percentiles) -> Duration| lat.as_ref().map_or("-".into(), |p| stats::ms(f(p)));
    let load = match cfg.rate {
        None => "closed".to_string(),
        Some(rate) => format!("open {rate}/s"),
    };
    println!(
        "| CA key | load | transport | auth | clients | certs ok | errors | certs/s | p50 ms | p90 ms | p99 ms | max ms | weftd CPU s | weftd cores | weftd CPU µs/cert | bench cores |"
    );
    println!("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {load} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.0} | {:.2} |",
        alg_flag(cfg.ca_key),
        if cfg.tls { "TLS" } else { "plaintext" },
        auth_name(cfg.auth),
        cfg.clients,
        int(o.latencies.len() as f64),
        o.errors,
        int(o.per_second()),
        pct(|p| p.p50),
        pct(|p| p.p90),
        pct(|p| p.p99),
        pct(|p| p.max),
        r.weftd_cpu.as_secs_f64(),
        r.weftd_cpu.as_secs_f64() / wall,
        r.cpu_us_per_cert(),
        r.own_cpu.as_secs_f64() / wall,
    );
}

fn print_peer(cfg: &Config, peer: &Peer) {
    println!(
        "| peer, same run, one core: `openssl speed -seconds {}` | sign/s | verify/s | µs/sign | µs/verify |",
        cfg.baseline_seconds
    );
    println!("|---|---:|---:|---:|---:|");
    let mut speeds = vec![("ecdsap256", peer.p256)];
    speeds.extend(peer.rsa2048.map(|s| ("rsa2048", s)));
    for (name, s) in &speeds {
        println!(
            "| {name} | {} | {} | {:.1} | {:.1} |",
            int(s.sign_per_s),
            int(s.verify_per_s),
            s.sign_us(),
            s.verify_us()
        );
    }
    let lib = &peer.library;
    println!();
    println!(
        "| peer, same run, one core: weft-identity in-process ({} CA) | µs/op | ops/s |",
        alg_flag(cfg.ca_key)
    );
    println!("|---|---:|---:|");
    for (name, us) in [
        (
            "`CertificateAuthority::sign` (parse + verify CSR, issue)",
            lib.sign_csr_us,
        ),
        (
            "`CertificateAuthority::sign_key` (issue only)",
            lib.issue_us,
        ),
        ("`TokenAuthority::verify` (ES256)", lib.verify_token_us),
    ] {
        println!("| {name} | {us:.1} | {} |", int(1e6 / us));
    }
}

fn print_ratios(cfg: &Config, peer: &Peer, r: &Measured) {
    let cores = baseline::cores() as f64;
    let per_s = r.outcome.per_second();
    // The crypto every request costs weftd: one signature with the CA key, one P-256 verify of
    // the CSR's self-signature, and with token auth one more P-256 verify (the ES256 token). A
    // client certificate is verified once per connection, in the handshake, not per request.
    let verifies = match cfg.auth {
        Auth::Token => 2.0,
        Auth::Cert => 1.0,
    };
    let ca_sign = peer.ca_sign_per_s();
    let crypto_us = 1e6 / ca_sign + verifies * peer.p256.verify_us();
    let rough = ca_sign.min(peer.p256.verify_per_s) / 2.0;
    let per_cpu_s = 1e6 / r.cpu_us_per_cert();
    println!("| ratio | value |");
    println!("|---|---:|");
    // At a fixed rate, certs/s is the rate asked for: throughput ratios only mean something in a
    // closed loop.
    if cfg.rate.is_none() {
        println!(
            "| certs/s ÷ openssl CA sign/s (one core) | {:.3} |",
            per_s / ca_sign
        );
        println!(
            "| certs/s ÷ (min(sign/s, verify/s) ÷ 2) = ÷ {} | {:.2} |",
            int(rough),
            per_s / rough
        );
        println!(
            "| certs/s ÷ openssl bound on {cores} cores (1 sign + {verifies} P-256 verifies = {crypto_us:.1} µs/cert → {}/s per core) | {:.2} |",
            int(1e6 / crypto_us),
            per_s * crypto_us / 1e6 / cores
        );
        println!(
            "| weftd certs per CPU-second (× {cores} = projected certs/s if weftd had every core) | {} ({}) |",
            int(per_cpu_s),
            int(per_cpu_s * cores)
        );
    }
    println!(
        "| weftd CPU µs/cert ÷ openssl crypto µs/cert (1.0 = nothing but crypto) | {:.2} |",
        r.cpu_us_per_cert() / crypto_us
    );
    // A token's signature only needs checking once per token, so the per-request floor is the CSR
    // step; if weftd re-verified tokens, that would show here as overhead.
    println!(
        "| weftd CPU µs/cert ÷ in-process `CertificateAuthority::sign` µs (1.0 = no serving overhead) | {:.2} |",
        r.cpu_us_per_cert() / peer.library.sign_csr_us
    );
    if let (Some(rate), Some(lag)) = (cfg.rate, r.outcome.max_send_lag) {
        println!(
            "| open loop: achieved ÷ asked rate; pacer's worst lateness | {:.3}; {} ms |",
            per_s / rate,
            stats::ms(lag)
        );
    }
}

fn print_target(cfg: &Config, r: &Measured) {
    let o = &r.outcome;
    let cores = baseline::cores();
    let note = if cores == 2 {
        String::new()
    } else {
        format!(" (targets are stated for 2 cores; this machine has {cores})")
    };
    match cfg.rate {
        None => {
            let target = match cfg.ca_key {
                KeyAlgorithm::EcdsaP256 => TARGET_P256_PER_S,
                KeyAlgorithm::Rsa2048 => TARGET_RSA_PER_S,
            };
            println!(
                "target ≥ {}/s with a {} CA: {} ({} certs/s){note}",
                int(target),
                alg_flag(cfg.ca_key),
                met(o.per_second() >= target && o.errors == 0),
                int(o.per_second())
            );
        }
        Some(rate) => {
            let p99 = Percentiles::of(o.latencies.clone()).map(|p| p.p99);
            println!(
                "target p99 < {} ms at 500/s: {} (p99 {} ms at {rate}/s){note}",
                TARGET_P99.as_millis(),
                met(rate >= 500.0 && p99.is_some_and(|p| p < TARGET_P99) && o.errors == 0),
                p99.map_or("-".into(), stats::ms)
            );
        }
    }
}

fn auth_name(auth: Auth) -> &'static str {
    match auth {
        Auth::Token => "token",
        Auth::Cert => "cert",
    }
}

/// How this run was invoked, for copying into BENCHMARKS.md.
fn shell_command() -> String {
    let mut args = std::env::args();
    let _ = args.next();
    std::iter::once("weft-bench".to_string())
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands() {
        assert_eq!(int(0.0), "0");
        assert_eq!(int(999.4), "999");
        assert_eq!(int(1000.0), "1,000");
        assert_eq!(int(12_345_678.0), "12,345,678");
    }

    #[test]
    fn csrs_are_distinct_and_parse() {
        let csrs = generate_csrs(5).unwrap();
        assert_eq!(csrs.len(), 5);
        let mut unique = csrs.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 5);
        assert!(
            csrs.iter()
                .all(|c| c.starts_with("-----BEGIN CERTIFICATE REQUEST-----"))
        );
    }
}
