//! The agent's status server (15020, Istio's `statusPort`):
//!
//! - `/healthz/ready`: ready when Envoy is `LIVE` (admin `/ready`), the workload has a
//!   certificate, and the application readiness probe (if any) passes — the same verdict the agent
//!   reports to weftd, which itself ANDs Envoy's readiness with the application's, as Istio does.
//!   Envoy's readiness listener (15021) routes here.
//! - `/healthz/live`: the agent answers.
//! - `/stats/prometheus`: Envoy's metrics merged with the agent's own.

use crate::certs::{CertWatch, WorkloadCerts};
use crate::envoy::admin_request;
use crate::probe::ProbeState;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long a readiness check waits for Envoy's admin.
const READY_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a scrape waits for Envoy's metrics.
const STATS_TIMEOUT: Duration = Duration::from_secs(5);

/// The agent's own metrics. Other parts bump the counters; `/stats/prometheus` shows them.
/// Names follow Istio's agent where it has one.
#[derive(Debug, Default)]
pub struct AgentMetrics {
    /// Envoy restarts after an unexpected exit (`weft_agent_envoy_restarts_total`).
    pub envoy_restarts: AtomicU64,
    /// xDS requests from Envoy through the proxy (`istio_agent_xds_proxy_requests`).
    pub xds_proxy_requests: AtomicU64,
    /// xDS responses to Envoy through the proxy (`istio_agent_xds_proxy_responses`).
    pub xds_proxy_responses: AtomicU64,
    /// Certificate signing requests sent (`istio_agent_num_outgoing_requests{request_type="csr"}`).
    pub csr_requests: AtomicU64,
    /// Certificate signing requests that failed
    /// (`istio_agent_num_failed_outgoing_requests{request_type="csr"}`).
    pub csr_failures: AtomicU64,
    /// DNS queries answered by the proxy (`istio_agent_dns_requests_total`).
    pub dns_requests: AtomicU64,
    /// DNS queries forwarded upstream (`istio_agent_dns_upstream_requests_total`).
    pub dns_upstream_requests: AtomicU64,
}

impl AgentMetrics {
    /// The metrics in Prometheus text format; the certificate expiry only when there is one.
    pub fn render(&self, certs: Option<&WorkloadCerts>, now: SystemTime) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        if let Some(c) = certs {
            let left = match c.not_after.duration_since(now) {
                Ok(d) => d.as_secs_f64(),
                Err(e) => -e.duration().as_secs_f64(),
            };
            metric(
                "istio_agent_cert_expiry_seconds",
                "gauge",
                "The time remaining, in seconds, before the certificate chain will expire.",
                &[("{resource_name=\"default\"}", left.floor())],
            );
        }
        metric(
            "weft_agent_envoy_restarts_total",
            "counter",
            "Times Envoy was restarted after it exited unexpectedly.",
            &[("", get(&self.envoy_restarts))],
        );
        metric(
            "istio_agent_xds_proxy_requests",
            "counter",
            "The total number of Xds Proxy Requests",
            &[("", get(&self.xds_proxy_requests))],
        );
        metric(
            "istio_agent_xds_proxy_responses",
            "counter",
            "The total number of Xds Proxy Responses",
            &[("", get(&self.xds_proxy_responses))],
        );
        metric(
            "istio_agent_num_outgoing_requests",
            "counter",
            "Number of total outgoing requests (e.g. to a token exchange server, CA, etc.)",
            &[("{request_type=\"csr\"}", get(&self.csr_requests))],
        );
        metric(
            "istio_agent_num_failed_outgoing_requests",
            "counter",
            "Number of failed outgoing requests (e.g. to a token exchange server, CA, etc.)",
            &[("{request_type=\"csr\"}", get(&self.csr_failures))],
        );
        metric(
            "istio_agent_dns_requests_total",
            "counter",
            "Total number of DNS requests.",
            &[("", get(&self.dns_requests))],
        );
        metric(
            "istio_agent_dns_upstream_requests_total",
            "counter",
            "Total number of DNS requests forwarded to upstream.",
            &[("", get(&self.dns_upstream_requests))],
        );
        out
    }
}

/// What the status server looks at.
#[derive(Clone, Debug)]
pub struct StatusState {
    /// Envoy's admin port on 127.0.0.1.
    pub admin_port: u16,
    pub certs: CertWatch,
    /// The application readiness prober's verdicts (`None`: no probe configured).
    pub app_health: Option<watch::Receiver<Option<ProbeState>>>,
    pub metrics: Arc<AgentMetrics>,
}

impl StatusState {
    /// A state with no application probe.
    pub fn new(admin_port: u16, certs: CertWatch, metrics: Arc<AgentMetrics>) -> Self {
        StatusState {
            admin_port,
            certs,
            app_health: None,
            metrics,
        }
    }

    /// Also require the application readiness probe (its channel, when one is configured).
    pub fn with_app_health(mut self, app: Option<watch::Receiver<Option<ProbeState>>>) -> Self {
        self.app_health = app;
        self
    }

    /// `Ok` when the workload is ready; otherwise every reason it is not, one per line.
    pub async fn readiness(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if let Err(e) = envoy_ready(self.admin_port).await {
            problems.push(e);
        }
        if self.certs.borrow().is_none() {
            problems.push("no workload certificate yet".into());
        }
        if let Some(app) = &self.app_health {
            match &*app.borrow() {
                Some(ProbeState { healthy: true, .. }) => {}
                Some(ProbeState { message, .. }) => problems.push(format!(
                    "application readiness probe failing: {}",
                    message.as_deref().unwrap_or("unhealthy")
                )),
                None => problems.push("application readiness probe has no result yet".into()),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }

    /// Envoy's Prometheus metrics (when its admin answers) followed by the agent's.
    pub async fn prometheus(&self) -> String {
        let mut out = match admin_request(
            self.admin_port,
            Method::GET,
            "/stats/prometheus",
            STATS_TIMEOUT,
        )
        .await
        {
            Ok((StatusCode::OK, body)) => String::from_utf8_lossy(&body).into_owned(),
            Ok((code, _)) => format!("# Envoy metrics unavailable: admin answered {code}\n"),
            Err(e) => format!("# Envoy metrics unavailable: {}\n", e.replace('\n', " ")),
        };
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        let certs = self.certs.borrow().clone();
        out.push_str(&self.metrics.render(certs.as_deref(), SystemTime::now()));
        out
    }
}

/// Whether Envoy is `LIVE` (its admin `/ready`); the error says why not.
pub async fn envoy_ready(admin_port: u16) -> Result<(), String> {
    match admin_request(admin_port, Method::GET, "/ready", READY_TIMEOUT).await {
        Ok((StatusCode::OK, body)) if body.trim_ascii() == b"LIVE" => Ok(()),
        Ok((code, body)) => Err(format!(
            "Envoy is not ready: admin /ready answered {} {}",
            code.as_u16(),
            String::from_utf8_lossy(body.trim_ascii())
        )),
        Err(e) => Err(format!("Envoy is not ready: {e}")),
    }
}

const INDEX: &str = "weft-agent status\n\
GET /healthz/ready     ready: Envoy LIVE, workload certificate, application probe\n\
GET /healthz/live      the agent is running\n\
GET /stats/prometheus  Envoy's metrics merged with the agent's\n";

fn text(code: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

async fn handle(
    state: StatusState,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n"));
    }
    let resp = match req.uri().path() {
        "/healthz/ready" => match state.readiness().await {
            Ok(()) => text(StatusCode::OK, ""),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, why + "\n"),
        },
        "/healthz/live" => text(StatusCode::OK, ""),
        "/stats/prometheus" => {
            let mut r = text(StatusCode::OK, state.prometheus().await);
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/" => text(StatusCode::OK, INDEX),
        _ => text(StatusCode::NOT_FOUND, format!("not found\n\n{INDEX}")),
    };
    Ok(resp)
}

/// Binds `addr` and serves the status endpoints until the task is dropped.
pub async fn serve_status(addr: SocketAddr, state: StatusState) -> Result<(), String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("status server: bind {addr}: {e}"))?;
    serve_status_on(listener, state).await
}

/// Serves the status endpoints on an already bound listener (tests bind port 0).
pub async fn serve_status_on(listener: TcpListener, state: StatusState) -> Result<(), String> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "status server listening");
    }
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!("status server: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("status server connection: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::sync::atomic::AtomicBool;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A fake Envoy admin: `/ready` answers `LIVE` or 503 `PRE_INITIALIZING` per `live`;
    /// `/stats/prometheus` answers one metric.
    async fn fake_admin(live: Arc<AtomicBool>) -> u16 {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let live = live.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let req = String::from_utf8_lossy(&buf);
                    let (code, body) = if req.starts_with("GET /ready ") {
                        if live.load(Ordering::SeqCst) {
                            ("200 OK", "LIVE\n")
                        } else {
                            ("503 Service Unavailable", "PRE_INITIALIZING\n")
                        }
                    } else if req.starts_with("GET /stats/prometheus ") {
                        (
                            "200 OK",
                            "# TYPE envoy_server_live gauge\nenvoy_server_live{} 1",
                        )
                    } else {
                        ("404 Not Found", "")
                    };
                    let resp = format!(
                        "HTTP/1.1 {code}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        port
    }

    fn certs() -> Arc<WorkloadCerts> {
        Arc::new(WorkloadCerts {
            key_pem: String::new(),
            cert_chain_pem: String::new(),
            root_pem: String::new(),
            not_before: SystemTime::now(),
            not_after: SystemTime::now() + Duration::from_secs(3600),
        })
    }

    async fn get(port: u16, path: &str) -> (u16, String) {
        let (code, body) = admin_request(port, Method::GET, path, Duration::from_secs(3))
            .await
            .unwrap();
        (code.as_u16(), String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn readiness_follows_envoy_certs_and_app() {
        let live = Arc::new(AtomicBool::new(false));
        let admin_port = fake_admin(live.clone()).await;
        let (cert_tx, cert_rx) = watch::channel(None);
        let metrics = Arc::new(AgentMetrics::default());
        let (app, app_rx) = crate::probe::channel();
        let state =
            StatusState::new(admin_port, cert_rx, metrics.clone()).with_app_health(Some(app_rx));
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(serve_status_on(listener, state));

        let (code, body) = get(port, "/healthz/ready").await;
        assert_eq!(code, 503);
        assert!(
            body.contains("Envoy is not ready: admin /ready answered 503 PRE_INITIALIZING"),
            "{body}"
        );
        assert!(body.contains("no workload certificate yet"), "{body}");
        assert!(
            body.contains("application readiness probe has no result yet"),
            "{body}"
        );

        live.store(true, Ordering::SeqCst);
        cert_tx.send(Some(certs())).unwrap();
        let (code, body) = get(port, "/healthz/ready").await;
        assert_eq!(
            (code, body.trim()),
            (503, "application readiness probe has no result yet")
        );

        app.send_replace(Some(ProbeState::healthy()));
        assert_eq!(get(port, "/healthz/ready").await, (200, String::new()));

        app.send_replace(Some(ProbeState::unhealthy(
            "status code was not from [200,400), bad code 503",
        )));
        let (code, body) = get(port, "/healthz/ready").await;
        assert_eq!(
            (code, body.trim()),
            (
                503,
                "application readiness probe failing: status code was not from [200,400), bad code 503"
            )
        );
        app.send_replace(Some(ProbeState::healthy()));
        assert_eq!(get(port, "/healthz/ready").await.0, 200);

        live.store(false, Ordering::SeqCst);
        assert_eq!(get(port, "/healthz/ready").await.0, 503);

        assert_eq!(get(port, "/healthz/live").await.0, 200);
        let (code, body) = get(port, "/").await;
        assert_eq!(code, 200);
        assert!(body.contains("/stats/prometheus"), "{body}");
        assert_eq!(get(port, "/nope").await.0, 404);
        server.abort();
    }

    #[tokio::test]
    async fn envoy_admin_down_is_not_ready() {
        // A port nothing listens on.
        let admin_port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (_tx, rx) = watch::channel(Some(certs()));
        let state = StatusState::new(admin_port, rx, Arc::default());
        let err = state.readiness().await.unwrap_err();
        assert!(
            err.starts_with("Envoy is not ready: GET http://127.0.0.1:"),
            "{err}"
        );
        let metrics = state.prometheus().await;
        assert!(
            metrics.starts_with("# Envoy metrics unavailable: "),
            "{metrics}"
        );
        assert!(
            metrics.contains("\nweft_agent_envoy_restarts_total 0\n"),
            "{metrics}"
        );
    }

    #[tokio::test]
    async fn merges_envoy_and_agent_metrics() {
        let admin_port = fake_admin(Arc::new(AtomicBool::new(true))).await;
        let (_tx, rx) = watch::channel(Some(certs()));
        let metrics = Arc::new(AgentMetrics::default());
        metrics.envoy_restarts.fetch_add(3, Ordering::Relaxed);
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(serve_status_on(
            listener,
            StatusState::new(admin_port, rx, metrics),
        ));
        let (code, body) = get(port, "/stats/prometheus").await;
        assert_eq!(code, 200);
        assert!(
            body.starts_with("# TYPE envoy_server_live gauge\nenvoy_server_live{} 1\n# HELP "),
            "{body}"
        );
        assert!(
            body.contains("\nweft_agent_envoy_restarts_total 3\n"),
            "{body}"
        );
        let expiry = body
            .lines()
            .find_map(|l| {
                l.strip_prefix("istio_agent_cert_expiry_seconds{resource_name=\"default\"} ")
            })
            .expect("cert expiry metric");
        let secs: f64 = expiry.parse().unwrap();
        assert!((3590.0..=3600.0).contains(&secs), "{secs}");
        server.abort();
    }

    #[test]
    fn renders_expired_certificate_as_negative() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let c = WorkloadCerts {
            key_pem: String::new(),
            cert_chain_pem: String::new(),
            root_pem: String::new(),
            not_before: now - Duration::from_secs(3600),
            not_after: now - Duration::from_secs(60),
        };
        let text = AgentMetrics::default().render(Some(&c), now);
        assert!(
            text.contains("istio_agent_cert_expiry_seconds{resource_name=\"default\"} -60\n"),
            "{text}"
        );
        let text = AgentMetrics::default().render(None, now);
        assert!(!text.contains("cert_expiry"), "{text}");
    }
}
