//! Health reports on the upstream stream (Istio's `HealthInformation` requests), against a fake
//! weftd that records every request and answers reports with nothing.

use super::fake_upstream::*;
use super::*;
use crate::probe::runner::Prober;
use crate::probe::{self, ProbeState};
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU16, AtomicUsize};
use std::time::Duration;
use weft_model::networking::{HttpHealthCheckConfig, ReadinessProbe};

const BAD: &str = "status code was not from [200,400), bad code 503";

/// A report as weftd sees it: `None` when healthy, `Some((code, message))` when not.
type Report = Option<(i32, String)>;

fn unhealthy() -> Report {
    Some((13, BAD.to_string()))
}

impl Fixture {
    /// The next request that reached the upstream (skipping ended streams).
    async fn request(&mut self) -> Seen {
        loop {
            match self.seen().await {
                Seen::Ended => continue,
                s => return s,
            }
        }
    }

    /// Asserts that no request reaches the upstream for a while (ended streams aside).
    async fn no_request(&mut self) {
        let until = tokio::time::Instant::now() + Duration::from_millis(300);
        while let Ok(Some(s)) = tokio::time::timeout_at(until, self.seen.recv()).await {
            assert!(
                matches!(s, Seen::Ended),
                "expected nothing upstream, got {s:?}"
            );
        }
    }

    /// The next upstream request, which must be a delta request for `t`.
    async fn delta_request(&mut self, t: &str) -> DeltaDiscoveryRequest {
        match self.request().await {
            Seen::Delta(r) if r.type_url == t => r,
            other => panic!("expected a delta {t} request, got {other:?}"),
        }
    }

    /// The next upstream request, which must be a SotW request for `t`.
    async fn sotw_request(&mut self, t: &str) -> DiscoveryRequest {
        match self.request().await {
            Seen::Sotw(r) if r.type_url == t => r,
            other => panic!("expected a SotW {t} request, got {other:?}"),
        }
    }

    /// The next upstream request, which must be a delta health report.
    async fn delta_report(&mut self) -> Report {
        let r = self.delta_request(type_url::HEALTH_INFO).await;
        assert!(r.node.is_none(), "{r:?}");
        assert!(r.resource_names_subscribe.is_empty() && r.response_nonce.is_empty());
        r.error_detail.map(|s| (s.code, s.message))
    }

    /// The next upstream request, which must be a SotW health report.
    async fn sotw_report(&mut self) -> Report {
        let r = self.sotw_request(type_url::HEALTH_INFO).await;
        assert!(r.node.is_none(), "{r:?}");
        assert!(r.resource_names.is_empty() && r.response_nonce.is_empty());
        assert!(r.version_info.is_empty());
        r.error_detail.map(|s| (s.code, s.message))
    }

    /// Opens a delta stream through the proxy whose first request (with the node) is for `t`.
    async fn open_delta(
        &mut self,
        t: &str,
    ) -> (
        mpsc::Sender<DeltaDiscoveryRequest>,
        Streaming<DeltaDiscoveryResponse>,
    ) {
        let (tx, rx) = mpsc::channel(8);
        tx.send(DeltaDiscoveryRequest {
            node: node(NODE),
            ..delta(t)
        })
        .await
        .unwrap();
        let s = self
            .client
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        (tx, s)
    }

    /// The same for SotW.
    async fn open_sotw(
        &mut self,
        t: &str,
    ) -> (mpsc::Sender<DiscoveryRequest>, Streaming<DiscoveryResponse>) {
        let (tx, rx) = mpsc::channel(8);
        tx.send(DiscoveryRequest {
            node: node(NODE),
            ..sotw(t)
        })
        .await
        .unwrap();
        let s = self
            .client
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        (tx, s)
    }
}

fn with_health(rx: watch::Receiver<Option<ProbeState>>) -> ProxyHooks {
    ProxyHooks {
        health: Some(rx),
        ..Default::default()
    }
}

#[tokio::test]
async fn reported_after_the_first_lds_request_then_only_transitions() {
    let (state, rx) = probe::channel();
    let mut f = Fixture::start(with_health(rx)).await;
    let (tx, mut d) = f.open_delta(type_url::CLUSTER).await;
    assert_eq!(next(&mut d).await.type_url, type_url::CLUSTER);
    f.delta_request(type_url::CLUSTER).await;

    // Verdicts before Envoy's first LDS request are not sent.
    state.send_replace(Some(ProbeState::unhealthy(BAD)));
    f.no_request().await;
    state.send_replace(Some(ProbeState::healthy()));
    f.no_request().await;

    // Right after the first LDS request goes up: the current state (only the latest).
    tx.send(delta(type_url::LISTENER)).await.unwrap();
    f.delta_request(type_url::LISTENER).await;
    assert_eq!(f.delta_report().await, None);

    // The same state again is no transition.
    state.send_replace(Some(ProbeState::healthy()));
    f.no_request().await;

    state.send_replace(Some(ProbeState::unhealthy(BAD)));
    assert_eq!(f.delta_report().await, unhealthy());

    // Envoy's later LDS requests do not repeat it.
    tx.send(delta(type_url::LISTENER)).await.unwrap();
    f.delta_request(type_url::LISTENER).await;
    f.no_request().await;

    state.send_replace(Some(ProbeState::healthy()));
    assert_eq!(f.delta_report().await, None);

    // Reports get no answer, so Envoy only ever sees its own types.
    assert_eq!(next(&mut d).await.type_url, type_url::LISTENER);
    assert_eq!(next(&mut d).await.type_url, type_url::LISTENER);
    nothing(&mut d).await;

    // Without a prober the stream goes on as before.
    drop(state);
    tx.send(delta(type_url::ROUTE)).await.unwrap();
    f.delta_request(type_url::ROUTE).await;
    assert_eq!(next(&mut d).await.type_url, type_url::ROUTE);
    drop(tx);
    f.stop().await;
}

#[tokio::test]
async fn resent_on_a_new_upstream_stream() {
    let (fake, metadata, seen) = start_fake().await;
    let (relay, conns) = start_relay(fake).await;
    let (state, rx) = probe::channel();
    let mut f = Fixture::start_with(upstream_to(relay), with_health(rx), metadata, seen).await;

    // No verdict yet: the first LDS request goes up alone; the verdict follows when it comes.
    let (tx, mut s) = f.open_sotw(type_url::LISTENER).await;
    assert_eq!(next(&mut s).await.type_url, type_url::LISTENER);
    f.sotw_request(type_url::LISTENER).await;
    f.no_request().await;
    state.send_replace(Some(ProbeState::unhealthy(BAD)));
    assert_eq!(f.sotw_report().await, unhealthy());

    // weftd's connection drops; Envoy's stream fails and Envoy reconnects.
    for c in conns.lock().unwrap().drain(..) {
        c.abort();
    }
    assert_ne!(failure(&mut s).await.code(), tonic::Code::Ok);
    let (tx2, mut s2) = f.open_sotw(type_url::CLUSTER).await;
    assert_eq!(next(&mut s2).await.type_url, type_url::CLUSTER);
    f.sotw_request(type_url::CLUSTER).await;
    f.no_request().await;
    // The new upstream stream gets the last state again after its first LDS request.
    tx2.send(sotw(type_url::LISTENER)).await.unwrap();
    f.sotw_request(type_url::LISTENER).await;
    assert_eq!(f.sotw_report().await, unhealthy());
    f.no_request().await;

    state.send_replace(Some(ProbeState::healthy()));
    assert_eq!(f.sotw_report().await, None);
    assert_eq!(f.metadata.lock().unwrap().len(), 2, "two upstream streams");
    drop((tx, tx2));
    f.stop().await;
}

/// An HTTP application whose answer can be changed; counts the requests it gets.
struct App {
    port: u16,
    code: Arc<AtomicU16>,
    hits: Arc<AtomicUsize>,
}

impl App {
    async fn start(code: u16) -> App {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = App {
            port,
            code: Arc::new(AtomicU16::new(code)),
            hits: Arc::default(),
        };
        let (code, hits) = (app.code.clone(), app.hits.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (code, hits) = (code.clone(), hits.clone());
                let service = hyper::service::service_fn(move |_req| {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let mut resp = hyper::Response::new(Empty::<Bytes>::new());
                    *resp.status_mut() =
                        hyper::StatusCode::from_u16(code.load(Ordering::SeqCst)).unwrap();
                    async move { Ok::<_, std::convert::Infallible>(resp) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        app
    }

    fn answer(&self, code: u16) {
        self.code.store(code, Ordering::SeqCst);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn a_real_http_app_drives_the_reports() {
    const PERIOD: Duration = Duration::from_millis(50);
    let app = App::start(200).await;
    let probe = ReadinessProbe {
        http_get: Some(HttpHealthCheckConfig {
            port: app.port.into(),
            path: "/ready".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut prober = Prober::new(&probe, "127.0.0.1").unwrap();
    prober.schedule.period = PERIOD;
    let (state, rx) = probe::channel();
    let task = prober.spawn(state);

    let mut f = Fixture::start(with_health(rx)).await;
    let (tx, mut d) = f.open_delta(type_url::LISTENER).await;
    assert_eq!(next(&mut d).await.type_url, type_url::LISTENER);
    f.delta_request(type_url::LISTENER).await;
    assert_eq!(f.delta_report().await, None, "200: healthy");

    app.answer(503);
    assert_eq!(f.delta_report().await, unhealthy(), "503: unhealthy");
    let hits = app.hits();
    f.no_request().await;
    assert!(
        app.hits() >= hits + 2,
        "still probing, reporting nothing new"
    );

    app.answer(200);
    assert_eq!(f.delta_report().await, None, "200 again: healthy");
    let hits = app.hits();
    f.no_request().await;
    assert!(app.hits() >= hits + 2);

    task.abort();
    drop(tx);
    f.stop().await;
}
