//! `httpGet`: Istio's `HTTPProber`. A `GET` over HTTP/1.1 with `Connection: close`,
//! `User-Agent: istio-probe/1.0` (unless a header sets one) and the probe's headers (a `Host`
//! header sets the host); HTTPS without certificate verification. Healthy iff the final status is
//! in [200,400). Redirects are followed like Go's `http.Client` does for Istio (up to 10).
//!
//! Source address: Istio's dialer binds every HTTP probe to 127.0.0.6 (`::6` on IPv6), the
//! address Istio's iptables rules let through uncaptured. Linux accepts that source for any
//! *local* destination (loopback or the VM's own instance IP, which is where probes point), and
//! refuses it (`EINVAL`) for a remote one, where Istio's probe would simply fail. Weft binds the
//! same way, and when the kernel refuses the source (remote `httpGet.host`, or `::6` not
//! configured on `lo`) it dials again from an ordinary socket rather than failing the probe.

use super::{PROBE_USER_AGENT, join_host_port, port, resolve};
use http::header::{CONNECTION, HOST, USER_AGENT};
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use weft_model::networking::HttpHealthCheckConfig;

/// Istio's probe source addresses (`UpstreamLocalAddressIPv4/IPv6`).
pub const PROBE_SOURCE_V4: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);
pub const PROBE_SOURCE_V6: Ipv6Addr = Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 6);

/// Go's `http.Client` default redirect limit.
const MAX_REDIRECTS: usize = 10;

/// Headers Go drops when a redirect leaves the original host.
const SENSITIVE: [&str; 4] = ["authorization", "www-authenticate", "cookie", "cookie2"];

#[derive(Clone, Debug)]
pub struct HttpCheck {
    /// `http(s)://host:port/path?query`.
    pub url: Uri,
    /// The probe's headers, in order (`Host` and `User-Agent` included when given).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl HttpCheck {
    pub fn new(cfg: &HttpHealthCheckConfig, default_host: &str) -> Result<Self, String> {
        let scheme = match cfg.scheme.to_ascii_lowercase().as_str() {
            "" | "http" => "http",
            "https" => "https",
            other => {
                return Err(format!(
                    "readinessProbe.httpGet.scheme: unsupported {other:?}"
                ));
            }
        };
        let host = if cfg.host.is_empty() {
            default_host
        } else {
            cfg.host.as_str()
        };
        let path = if cfg.path.is_empty() {
            "/".to_string()
        } else if cfg.path.starts_with('/') {
            cfg.path.clone()
        } else {
            format!("/{}", cfg.path)
        };
        let hostport = join_host_port(host, port(cfg.port)?);
        let url: Uri = format!("{scheme}://{hostport}{path}")
            .parse()
            .map_err(|e| {
                format!("readinessProbe.httpGet: bad URL {scheme}://{hostport}{path}: {e}")
            })?;
        let mut headers = Vec::new();
        for h in &cfg.http_headers {
            let name = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|e| format!("readinessProbe.httpGet.httpHeaders {:?}: {e}", h.name))?;
            let value = HeaderValue::from_str(&h.value)
                .map_err(|e| format!("readinessProbe.httpGet.httpHeaders {:?}: {e}", h.name))?;
            headers.push((name, value));
        }
        Ok(HttpCheck { url, headers })
    }

    pub async fn probe(&self, timeout: Duration) -> Result<(), String> {
        match tokio::time::timeout(timeout, self.follow()).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "Get \"{}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                self.url
            )),
        }
    }

    /// The request chain: the probe URL, then each redirect's `Location`.
    async fn follow(&self) -> Result<(), String> {
        let mut url = self.url.clone();
        let mut headers = self.headers.clone();
        let mut redirects = 0;
        loop {
            let (code, location) = get(&url, &headers)
                .await
                .map_err(|e| format!("Get \"{url}\": {e}"))?;
            if let (true, Some(loc)) = (is_redirect(code), location) {
                let next =
                    resolve_location(&url, &loc).map_err(|e| format!("Get \"{url}\": {e}"))?;
                if redirects == MAX_REDIRECTS {
                    return Err(format!(
                        "Get \"{next}\": stopped after {MAX_REDIRECTS} redirects"
                    ));
                }
                if next.authority() != url.authority() {
                    // A custom Host only applies to the original host; credentials stay there.
                    headers.retain(|(n, _)| n != HOST && !SENSITIVE.contains(&n.as_str()));
                }
                url = next;
                redirects += 1;
                continue;
            }
            let code = code.as_u16();
            return if (200..400).contains(&code) {
                Ok(())
            } else {
                Err(format!(
                    "status code was not from [200,400), bad code {code}"
                ))
            };
        }
    }
}

fn is_redirect(code: StatusCode) -> bool {
    matches!(code.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// Resolves a `Location` against the URL that answered it (RFC 3986 §5.2, without dot-segment
/// removal).
fn resolve_location(base: &Uri, loc: &str) -> Result<Uri, String> {
    let loc = loc.split('#').next().unwrap_or_default();
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map(|a| a.as_str()).unwrap_or_default();
    let target = if let Some((s, _)) = loc.split_once("://")
        && !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        let s = s.to_ascii_lowercase();
        if s != "http" && s != "https" {
            return Err(format!("unsupported protocol scheme \"{s}\""));
        }
        loc.to_string()
    } else if loc.starts_with("//") {
        format!("{scheme}:{loc}")
    } else if loc.starts_with('/') {
        format!("{scheme}://{authority}{loc}")
    } else {
        let base_path = base.path();
        let rel = if loc.is_empty() {
            base.path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into())
        } else if loc.starts_with('?') {
            format!("{base_path}{loc}")
        } else {
            let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
            let dir = if dir.is_empty() { "/" } else { dir };
            format!("{dir}{loc}")
        };
        format!("{scheme}://{authority}{rel}")
    };
    target
        .parse::<Uri>()
        .map_err(|e| format!("failed to parse Location header \"{loc}\": {e}"))
}

/// One `GET`: the status and the `Location` header.
async fn get(
    url: &Uri,
    headers: &[(HeaderName, HeaderValue)],
) -> Result<(StatusCode, Option<String>), String> {
    let https = url.scheme_str() == Some("https");
    let authority = url
        .authority()
        .ok_or_else(|| "http: no Host in request URL".to_string())?;
    let host = authority.host();
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path = url.path_and_query().map_or("/", |p| p.as_str());

    let mut req = Request::builder().method(Method::GET).uri(path);
    let custom_host = headers.iter().find(|(n, _)| n == HOST).map(|(_, v)| v);
    match custom_host {
        Some(v) => req = req.header(HOST, v),
        None => req = req.header(HOST, authority.as_str()),
    }
    for (n, v) in headers.iter().filter(|(n, _)| n != HOST) {
        req = req.header(n, v);
    }
    if !headers.iter().any(|(n, _)| n == USER_AGENT) {
        req = req.header(USER_AGENT, PROBE_USER_AGENT);
    }
    req = req.header(CONNECTION, "close");
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad request: {e}"))?;

    let tcp = dial(host, port).await?;
    let resp = if https {
        let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
            .map_err(|e| format!("server name {host:?}: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(insecure_tls_config()?)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("tls: {e}"))?;
        exchange(tls, req).await?
    } else {
        exchange(tcp, req).await?
    };
    let location = resp
        .headers()
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string);
    Ok((resp.status(), location))
}

/// Sends `req` on a fresh HTTP/1.1 connection and returns the response head; the body is not
/// read (the connection is closed).
async fn exchange<IO>(
    io: IO,
    req: Request<Empty<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| crate::upstream::error_chain(&e))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender.send_request(req).await;
    driver.abort();
    resp.map_err(|e| crate::upstream::error_chain(&e))
}

/// Connects to `host:port`, trying each address in turn, from Istio's probe source address.
async fn dial(host: &str, port: u16) -> Result<TcpStream, String> {
    let mut last = String::new();
    for addr in resolve(host, port).await? {
        match connect_from_probe_source(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("dial tcp {addr}: {e}"),
        }
    }
    Err(last)
}

/// Connects from 127.0.0.6 / `::6`; when the kernel refuses that source for `addr` (not a local
/// destination, or `::6` not on `lo`), from an ordinary socket instead.
pub async fn connect_from_probe_source(addr: SocketAddr) -> io::Result<TcpStream> {
    let (socket, source) = match addr.ip() {
        IpAddr::V4(_) => (TcpSocket::new_v4()?, IpAddr::V4(PROBE_SOURCE_V4)),
        IpAddr::V6(_) => (TcpSocket::new_v6()?, IpAddr::V6(PROBE_SOURCE_V6)),
    };
    if socket.bind(SocketAddr::new(source, 0)).is_ok() {
        match socket.connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::InvalidInput
                        | io::ErrorKind::AddrNotAvailable
                        | io::ErrorKind::NetworkUnreachable
                ) => {}
            Err(e) => return Err(e),
        }
    }
    TcpStream::connect(addr).await
}

/// TLS for HTTPS probes only: any certificate is accepted (Go's `InsecureSkipVerify`, as Istio
/// and Kubernetes probe). Handshake signatures are still checked. TLS 1.2 and 1.3 only.
fn insecure_tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("tls: {e}"))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
                .with_no_client_auth();
            Ok(Arc::new(cfg))
        })
        .clone()
}

#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use weft_model::networking::HttpHeader;

    /// One request the server saw: the peer address and the request head.
    type Seen = Arc<Mutex<Vec<(SocketAddr, String)>>>;

    /// Reads a request head, answers by path: `/ok` 200, `/found` 302 without Location,
    /// `/redirect` 302 to `/down`, `/down` 503, `/loop` 302 to itself, anything else 404.
    async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, peer: SocketAddr, seen: Seen) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let head = String::from_utf8_lossy(&buf).into_owned();
        let path = head.split(' ').nth(1).unwrap_or_default().to_string();
        seen.lock().unwrap().push((peer, head));
        let (status, extra) = match path.as_str() {
            "/ok" | "/ok?x=1" => ("200 OK", ""),
            "/found" => ("302 Found", ""),
            "/redirect" => ("302 Found", "location: /down\r\n"),
            "/down" => ("503 Service Unavailable", ""),
            "/loop" => ("302 Found", "location: loop\r\n"),
            _ => ("404 Not Found", ""),
        };
        let resp = format!("HTTP/1.1 {status}\r\n{extra}content-length: 0\r\n\r\n");
        let _ = s.write_all(resp.as_bytes()).await;
        let _ = s.shutdown().await;
    }

    async fn server(tls: Option<tokio_rustls::TlsAcceptor>) -> (u16, Seen) {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = l.local_addr().unwrap().port();
        let seen: Seen = Arc::default();
        let seen2 = seen.clone();
        tokio::spawn(async move {
            while let Ok((s, peer)) = l.accept().await {
                let seen = seen2.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(acc) => {
                            if let Ok(s) = acc.accept(s).await {
                                answer(s, peer, seen).await;
                            }
                        }
                        None => answer(s, peer, seen).await,
                    }
                });
            }
        });
        (port, seen)
    }

    fn check(port: u16, path: &str, headers: &[(&str, &str)]) -> HttpCheck {
        HttpCheck::new(
            &HttpHealthCheckConfig {
                path: path.into(),
                port: port.into(),
                host: String::new(),
                scheme: String::new(),
                http_headers: headers
                    .iter()
                    .map(|(n, v)| HttpHeader {
                        name: n.to_string(),
                        value: v.to_string(),
                    })
                    .collect(),
            },
            "127.0.0.1",
        )
        .unwrap()
    }

    const T: Duration = Duration::from_secs(2);

    #[tokio::test]
    async fn status_codes_decide() {
        let (port, seen) = server(None).await;
        assert_eq!(check(port, "/ok", &[]).probe(T).await, Ok(()));
        assert_eq!(check(port, "/found", &[]).probe(T).await, Ok(()));
        assert_eq!(
            check(port, "/down", &[]).probe(T).await,
            Err("status code was not from [200,400), bad code 503".into())
        );
        // Redirects are followed: the final answer counts.
        assert_eq!(
            check(port, "/redirect", &[]).probe(T).await,
            Err("status code was not from [200,400), bad code 503".into())
        );
        assert_eq!(
            check(port, "/loop", &[]).probe(T).await,
            Err(format!(
                "Get \"http://127.0.0.1:{port}/loop\": stopped after 10 redirects"
            ))
        );
        let paths: Vec<String> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, h)| h.lines().next().unwrap().to_string())
            .collect();
        assert_eq!(
            &paths[..5],
            [
                "GET /ok HTTP/1.1",
                "GET /found HTTP/1.1",
                "GET /down HTTP/1.1",
                "GET /redirect HTTP/1.1",
                "GET /down HTTP/1.1",
            ]
        );
        assert_eq!(paths.len(), 5 + 11);
    }

    #[tokio::test]
    async fn headers_user_agent_and_source_address() {
        let (port, seen) = server(None).await;
        assert_eq!(
            check(
                port,
                "ok?x=1",
                &[("X-Probe", "yes"), ("X-Multi", "a"), ("X-Multi", "b")]
            )
            .probe(T)
            .await,
            Ok(())
        );
        assert_eq!(
            check(
                port,
                "/ok",
                &[("User-Agent", "custom/2"), ("Host", "app.example")]
            )
            .probe(T)
            .await,
            Ok(())
        );
        let seen = seen.lock().unwrap().clone();
        let (peer, head) = &seen[0];
        assert_eq!(peer.ip(), IpAddr::V4(PROBE_SOURCE_V4), "{head}");
        let head = head.to_ascii_lowercase();
        assert!(head.starts_with("get /ok?x=1 http/1.1\r\n"), "{head}");
        for line in [
            format!("host: 127.0.0.1:{port}\r\n"),
            "user-agent: istio-probe/1.0\r\n".into(),
            "connection: close\r\n".into(),
            "x-probe: yes\r\n".into(),
            "x-multi: a\r\n".into(),
            "x-multi: b\r\n".into(),
        ] {
            assert!(head.contains(&line), "{line:?} missing in {head}");
        }
        let (peer, head) = &seen[1];
        assert_eq!(peer.ip(), IpAddr::V4(PROBE_SOURCE_V4));
        let head = head.to_ascii_lowercase();
        assert!(head.contains("user-agent: custom/2\r\n"), "{head}");
        assert!(!head.contains("istio-probe"), "{head}");
        assert!(head.contains("host: app.example\r\n"), "{head}");
        assert_eq!(head.matches("host:").count(), 1, "{head}");
    }

    #[tokio::test]
    async fn connection_refused_and_timeout() {
        let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = check(port, "/", &[]).probe(T).await.unwrap_err();
        assert!(
            err.starts_with(&format!(
                "Get \"http://127.0.0.1:{port}/\": dial tcp 127.0.0.1:{port}: Connection refused"
            )),
            "{err}"
        );
        // A server that accepts and never answers.
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = l.local_addr().unwrap().port();
        let _hold = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                conns.push(s);
            }
        });
        let err = check(port, "/slow", &[])
            .probe(Duration::from_millis(200))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            format!(
                "Get \"http://127.0.0.1:{port}/slow\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            )
        );
    }

    #[tokio::test]
    async fn https_without_verification() {
        let ca = weft_identity::CertificateAuthority::new_root(
            weft_identity::KeyAlgorithm::EcdsaP256,
            "probe-test",
            std::time::SystemTime::now(),
        )
        .unwrap();
        let chain = vec![CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(ca.key_pem().as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let (port, seen) = server(Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))).await;
        let mut c = check(port, "/ok", &[]);
        assert_eq!(c.url.scheme_str(), Some("http"));
        c = HttpCheck::new(
            &HttpHealthCheckConfig {
                path: "/down".into(),
                port: port.into(),
                scheme: "HTTPS".into(),
                ..Default::default()
            },
            "127.0.0.1",
        )
        .unwrap();
        assert_eq!(c.url.to_string(), format!("https://127.0.0.1:{port}/down"));
        assert_eq!(
            c.probe(T).await,
            Err("status code was not from [200,400), bad code 503".into())
        );
        c.url = format!("https://127.0.0.1:{port}/ok").parse().unwrap();
        assert_eq!(c.probe(T).await, Ok(()));
        assert_eq!(seen.lock().unwrap().len(), 2);
        // Plain HTTP against the TLS port fails with a connection error, not a status.
        let err = check(port, "/ok", &[]).probe(T).await.unwrap_err();
        assert!(
            err.starts_with(&format!("Get \"http://127.0.0.1:{port}/ok\": ")),
            "{err}"
        );
    }

    #[test]
    fn defaults_and_locations() {
        let c = HttpCheck::new(
            &HttpHealthCheckConfig {
                port: 8080,
                ..Default::default()
            },
            "10.1.2.3",
        )
        .unwrap();
        assert_eq!(c.url.to_string(), "http://10.1.2.3:8080/");
        let c = HttpCheck::new(
            &HttpHealthCheckConfig {
                port: 8080,
                host: "fd00::5".into(),
                path: "/healthz".into(),
                ..Default::default()
            },
            "10.1.2.3",
        )
        .unwrap();
        assert_eq!(c.url.to_string(), "http://[fd00::5]:8080/healthz");

        let base: Uri = "http://h:1/a/b?q=1".parse().unwrap();
        let r = |l: &str| resolve_location(&base, l).map(|u| u.to_string());
        assert_eq!(r("/x").unwrap(), "http://h:1/x");
        assert_eq!(r("c").unwrap(), "http://h:1/a/c");
        assert_eq!(r("?z").unwrap(), "http://h:1/a/b?z");
        assert_eq!(r("//o:2/p").unwrap(), "http://o:2/p");
        assert_eq!(r("https://o/p#frag").unwrap(), "https://o/p");
        assert_eq!(
            r("ftp://o/p").unwrap_err(),
            "unsupported protocol scheme \"ftp\""
        );
    }

    #[tokio::test]
    async fn ipv6_loopback_falls_back_to_an_unbound_source() {
        // ::6 is normally not configured on lo; the probe must still reach ::1.
        let Ok(l) = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).await else {
            return; // no IPv6 here
        };
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, peer)) = l.accept().await {
                tokio::spawn(answer(s, peer, Arc::default()));
            }
        });
        let c = HttpCheck::new(
            &HttpHealthCheckConfig {
                port: port.into(),
                path: "/ok".into(),
                ..Default::default()
            },
            "::1",
        )
        .unwrap();
        assert_eq!(c.probe(T).await, Ok(()));
    }
}
