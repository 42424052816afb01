//! The weftd test harness shared by the integration tests: scratch directories, the real weftd
//! binary on free loopback ports, its admin API, and gRPC channels (TLS with or without a client
//! certificate, plaintext).
#![allow(dead_code)] // each test binary uses a different part

use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tonic::transport::{Channel, Endpoint};
use weft_identity::csr::WorkloadKey;

pub const SERVER_NAME: &str = "istiod.istio-system.svc";

// ---------------------------------------------------------------------------------------------
// Scratch directories and the weftd process
// ---------------------------------------------------------------------------------------------

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "weftd-ca-api-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Four distinct free loopback ports (held together while picked, so they differ).
pub fn free_addrs() -> [SocketAddr; 4] {
    let ls: Vec<TcpListener> = (0..4)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let a: Vec<SocketAddr> = ls.iter().map(|l| l.local_addr().unwrap()).collect();
    [a[0], a[1], a[2], a[3]]
}

/// A running weftd; killed when dropped.
pub struct Weftd {
    child: Option<Child>,
    pub state: PathBuf,
    log: PathBuf,
    pub tls: SocketAddr,
    pub plain: SocketAddr,
    pub http: SocketAddr,
}

pub static LOGS: AtomicUsize = AtomicUsize::new(0);

pub fn log_path(state: &Path) -> PathBuf {
    // Next to the state dir, not in it (weftd owns that directory).
    let parent = state.parent().unwrap_or(Path::new("/tmp"));
    parent.join(format!(
        "weftd-{}.log",
        LOGS.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Runs weftd on `state` and returns its exit status and stderr, for starts that must fail.
pub fn run_to_exit(state: &Path) -> (ExitStatus, String) {
    let [tls, plain, http, mon] = free_addrs();
    let log = log_path(state);
    let mut child = spawn(state, &log, [tls, plain, http, mon]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, std::fs::read_to_string(&log).unwrap_or_default());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "weftd kept running; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn spawn(state: &Path, log: &Path, addrs: [SocketAddr; 4]) -> Child {
    spawn_with(state, log, addrs, &[])
}

pub fn spawn_with(
    state: &Path,
    log: &Path,
    [tls, plain, http, mon]: [SocketAddr; 4],
    extra: &[&str],
) -> Child {
    let stderr = std::fs::File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_weftd"))
        .arg("--state-dir")
        .arg(state)
        .args(["--xds-tls-addr", &tls.to_string()])
        .args(["--xds-plaintext-addr", &plain.to_string()])
        .args(["--http-addr", &http.to_string()])
        .args(["--monitoring-addr", &mon.to_string()])
        .args(["--log-level", "info"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr))
        .spawn()
        .expect("spawn weftd")
}

impl Weftd {
    /// Starts weftd on `state` and waits until all four ports accept connections.
    pub fn start(state: &Path) -> Weftd {
        Weftd::start_with(state, &[])
    }

    /// Starts weftd on `state` with extra command-line arguments.
    pub fn start_with(state: &Path, extra: &[&str]) -> Weftd {
        let mut last = String::new();
        // A picked port can be taken by someone else before weftd binds it: retry then.
        for _ in 0..3 {
            let addrs = free_addrs();
            let log = log_path(state);
            let child = spawn_with(state, &log, addrs, extra);
            let mut w = Weftd {
                child: Some(child),
                state: state.to_path_buf(),
                log,
                tls: addrs[0],
                plain: addrs[1],
                http: addrs[2],
            };
            match w.wait_ready(&addrs) {
                Ok(()) => return w,
                Err(e) if e.contains("cannot listen") => last = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("{last}")
    }

    pub fn wait_ready(&mut self, addrs: &[SocketAddr]) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let child = self.child.as_mut().unwrap();
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Err(format!("weftd exited early ({status}):\n{}", self.stderr()));
            }
            if addrs.iter().all(|a| TcpStream::connect(a).is_ok()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("weftd not ready after 10 s:\n{}", self.stderr()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.state.join("admin-token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Stops weftd with SIGTERM, as an init system would, and returns its exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("weftd is running");
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("weftd ignored SIGTERM for 10 s:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn root_pem(&self) -> String {
        let (status, body) = http(
            self.http,
            "GET",
            "/api/v1/root-cert",
            Some(&self.admin_token()),
            None,
        );
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Mints a bootstrap token through the admin API.
    pub fn token(&self, ns: &str, sa: &str, secs: u64) -> String {
        let body =
            serde_json::json!({"namespace": ns, "serviceAccount": sa, "durationSeconds": secs})
                .to_string();
        let before = unix_now();
        let (status, resp) = http(
            self.http,
            "POST",
            "/api/v1/tokens",
            Some(&self.admin_token()),
            Some(&body),
        );
        assert_eq!(status, 200, "{resp}");
        let v: serde_json::Value = serde_json::from_str(&resp).unwrap();
        let exp = v["expirationTimestamp"]
            .as_u64()
            .expect("expirationTimestamp");
        assert!(
            exp >= before + secs && exp <= unix_now() + secs + 1,
            "expirationTimestamp {exp} is not now + {secs}"
        );
        v["token"].as_str().expect("token").to_string()
    }

    pub async fn tls_channel(&self, client: Option<&Issued>) -> Channel {
        tls_channel(self.tls, &self.root_pem(), client).await
    }

    pub async fn plain_channel(&self) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.plain))
            .unwrap()
            .connect()
            .await
            .expect("plaintext gRPC connect")
    }
}

impl Drop for Weftd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

/// A one-shot HTTP/1.1 request; returns the status code and body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = body.unwrap_or("");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    if let Some(t) = bearer {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let resp = String::from_utf8(resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").expect("HTTP response head");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "unexpected chunked response: {head}"
    );
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("HTTP status");
    (status, body.to_string())
}

pub fn install_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A workload's key and the chain weftd issued for it.
pub struct Issued {
    pub key: WorkloadKey,
    pub chain: Vec<String>,
}

/// A gRPC channel over TLS to `addr`, trusting `root_pem`, presenting `client` if given.
pub async fn tls_channel(addr: SocketAddr, root_pem: &str, client: Option<&Issued>) -> Channel {
    install_crypto();
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(der.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut cfg = match client {
        Some(c) => {
            let chain: Vec<CertificateDer<'static>> = c
                .chain
                .iter()
                .map(|p| CertificateDer::from_pem_slice(p.as_bytes()).unwrap())
                .collect();
            let key = PrivateKeyDer::from_pem_slice(c.key.pem().as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let cfg = Arc::new(cfg);
    let connector = tower::service_fn(move |_: hyper::Uri| {
        let cfg = cfg.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let tls = tokio_rustls::TlsConnector::from(cfg)
                .connect(ServerName::try_from(SERVER_NAME).unwrap(), tcp)
                .await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(10))
        .connect_with_connector(connector)
        .await
        .expect("TLS gRPC connect")
}
