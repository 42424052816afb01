//! SDS for Envoy over a Unix socket: serves the workload certificate (`default`) and the trusted
//! roots (`ROOTCA`) from the agent's [`CertWatch`], the way pilot-agent's SDS server does.
//!
//! Both SotW (`StreamSecrets`) and delta (`DeltaSecrets`) streams are served. A stream answers only
//! the names Envoy asked for and stays silent until the first certificate exists; every later
//! change of the watch (rotation) is pushed on every open stream, so Envoy picks up new
//! certificates without restarting. Private keys are never logged.

use crate::certs::{CertWatch, WorkloadCerts};
use prost::Message;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::{Request, Response, Status, Streaming};
use weft_proto::envoy_types::pb::envoy::config::core::v3::{DataSource, data_source};
use weft_proto::envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, Secret, TlsCertificate, secret,
};
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use weft_proto::envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::{
    SecretDiscoveryService, SecretDiscoveryServiceServer,
};
use weft_proto::envoy_types::pb::google::protobuf::Any;
use weft_proto::type_url;

/// Name of the workload certificate secret (key + chain).
pub const WORKLOAD_SECRET: &str = "default";
/// Name of the trusted-roots secret.
pub const ROOT_SECRET: &str = "ROOTCA";

/// Serves SDS on `socket` until `shutdown` completes. A stale socket file is removed first and the
/// parent directory created.
pub async fn serve_sds(
    socket: PathBuf,
    certs: CertWatch,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    let listener = bind_unix(&socket)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let service = SdsService {
        certs,
        stop: stop_rx,
        streams: Arc::new(AtomicU64::new(0)),
    };
    tracing::info!(socket = %socket.display(), "SDS server listening");
    let result = tonic::transport::Server::builder()
        .add_service(SecretDiscoveryServiceServer::new(service))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
            shutdown.await;
            // Open streams would keep the graceful shutdown waiting forever: end them.
            let _ = stop_tx.send(true);
        })
        .await
        .map_err(|e| format!("SDS server on {}: {e}", socket.display()));
    let _ = std::fs::remove_file(&socket);
    result
}

/// Removes a stale socket, creates the parent directory and binds a listener.
pub(crate) fn bind_unix(socket: &Path) -> Result<tokio::net::UnixListener, String> {
    if let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("removing stale {}: {e}", socket.display())),
    }
    tokio::net::UnixListener::bind(socket).map_err(|e| format!("binding {}: {e}", socket.display()))
}

fn inline_bytes(pem: &str) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(data_source::Specifier::InlineBytes(pem.as_bytes().to_vec())),
        ..Default::default()
    })
}

fn hash_hex(parts: &[&str]) -> String {
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// One secret ready to send: name, version (a hash of the public part only) and the encoded Any.
#[derive(Clone)]
struct Item {
    name: String,
    version: String,
    any: Any,
}

/// Builds the named secret from `certs`, or `None` for a name this agent does not serve.
fn build_secret(name: &str, certs: &WorkloadCerts) -> Option<Item> {
    let (kind, version) = match name {
        WORKLOAD_SECRET => (
            secret::Type::TlsCertificate(TlsCertificate {
                certificate_chain: inline_bytes(&certs.cert_chain_pem),
                private_key: inline_bytes(&certs.key_pem),
                ..Default::default()
            }),
            // The chain carries the public key, so it changes whenever the key does.
            hash_hex(&[&certs.cert_chain_pem]),
        ),
        ROOT_SECRET => (
            secret::Type::ValidationContext(CertificateValidationContext {
                trusted_ca: inline_bytes(&certs.root_pem),
                ..Default::default()
            }),
            hash_hex(&[&certs.root_pem]),
        ),
        _ => return None,
    };
    let secret = Secret {
        name: name.to_string(),
        r#type: Some(kind),
    };
    Some(Item {
        name: name.to_string(),
        version,
        any: Any {
            type_url: type_url::SECRET.to_string(),
            value: secret.encode_to_vec(),
        },
    })
}

/// The served subset of `names`, in a stable order.
fn build_items<'a>(
    names: impl IntoIterator<Item = &'a String>,
    certs: &WorkloadCerts,
) -> BTreeMap<String, Item> {
    names
        .into_iter()
        .filter_map(|n| build_secret(n, certs))
        .map(|i| (i.name.clone(), i))
        .collect()
}

fn error_message(e: &Option<weft_proto::envoy_types::pb::google::rpc::Status>) -> String {
    e.as_ref()
        .map(|s| format!("code {}: {}", s.code, s.message))
        .unwrap_or_default()
}

#[derive(Clone)]
struct SdsService {
    certs: CertWatch,
    stop: watch::Receiver<bool>,
    streams: Arc<AtomicU64>,
}

type RespStream<T> = ReceiverStream<Result<T, Status>>;

/// What a stream task waits for.
enum Event<R> {
    Request(R),
    /// Envoy closed its side (or the stream failed, or the agent stops).
    End(Option<Status>),
    CertsChanged,
}

/// Waits for the next request, certificate change or stop. `certs_open` is cleared when the
/// certificate sender is gone (no more changes can come).
async fn next_event<R>(
    inbound: &mut Streaming<R>,
    certs: &mut CertWatch,
    certs_open: &mut bool,
    stop: &mut watch::Receiver<bool>,
    out_closed: impl Future<Output = ()>,
) -> Event<R>
where
    R: Message + Default + 'static,
{
    if *stop.borrow() {
        return Event::End(None);
    }
    tokio::select! {
        m = inbound.message() => match m {
            Ok(Some(r)) => Event::Request(r),
            Ok(None) => Event::End(None),
            Err(s) => Event::End(Some(s)),
        },
        c = certs.changed(), if *certs_open => match c {
            Ok(()) => Event::CertsChanged,
            Err(_) => {
                *certs_open = false;
                // Nothing changed; the caller simply waits again.
                Event::CertsChanged
            }
        },
        _ = stop.changed() => Event::End(None),
        _ = out_closed => Event::End(None),
    }
}

impl SdsService {
    fn stream_id(&self) -> u64 {
        self.streams.fetch_add(1, Ordering::Relaxed) + 1
    }
}

#[tonic::async_trait]
impl SecretDiscoveryService for SdsService {
    type StreamSecretsStream = RespStream<DiscoveryResponse>;
    type DeltaSecretsStream = RespStream<DeltaDiscoveryResponse>;

    async fn stream_secrets(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamSecretsStream>, Status> {
        let (tx, rx) = mpsc::channel(4);
        let task = SotwStream {
            id: self.stream_id(),
            inbound: request.into_inner(),
            certs: self.certs.clone(),
            stop: self.stop.clone(),
            tx,
            names: Vec::new(),
            nonce: 0,
            last_nonce: String::new(),
            sent: None,
        };
        tokio::spawn(task.run());
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn delta_secrets(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaSecretsStream>, Status> {
        let (tx, rx) = mpsc::channel(4);
        let task = DeltaStream {
            id: self.stream_id(),
            inbound: request.into_inner(),
            certs: self.certs.clone(),
            stop: self.stop.clone(),
            tx,
            subscribed: BTreeSet::new(),
            client_versions: HashMap::new(),
            nonce: 0,
        };
        tokio::spawn(task.run());
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn fetch_secrets(
        &self,
        request: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        let req = request.into_inner();
        let current = self.certs.borrow().clone();
        let Some(certs) = current else {
            return Err(Status::unavailable("no workload certificate yet"));
        };
        let items = build_items(&req.resource_names, &certs);
        Ok(Response::new(DiscoveryResponse {
            version_info: sotw_version(&items),
            resources: items.into_values().map(|i| i.any).collect(),
            type_url: type_url::SECRET.to_string(),
            ..Default::default()
        }))
    }
}

fn sotw_version(items: &BTreeMap<String, Item>) -> String {
    let parts: Vec<&str> = items
        .values()
        .flat_map(|i| [i.name.as_str(), i.version.as_str()])
        .collect();
    hash_hex(&parts)
}

/// A state-of-the-world `StreamSecrets` stream.
struct SotwStream {
    id: u64,
    inbound: Streaming<DiscoveryRequest>,
    certs: CertWatch,
    stop: watch::Receiver<bool>,
    tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
    /// The names Envoy currently wants on this stream.
    names: Vec<String>,
    nonce: u64,
    last_nonce: String,
    /// The version last sent, `None` before the first response.
    sent: Option<String>,
}

impl SotwStream {
    async fn run(mut self) {
        tracing::debug!(stream = self.id, "SDS stream opened");
        self.certs.borrow_and_update();
        let mut certs_open = true;
        let reason = loop {
            let ev = next_event(
                &mut self.inbound,
                &mut self.certs,
                &mut certs_open,
                &mut self.stop,
                self.tx.closed(),
            )
            .await;
            let ok = match ev {
                Event::End(status) => break status,
                Event::CertsChanged => self.push(false).await,
                Event::Request(req) => self.on_request(req).await,
            };
            if !ok {
                break None;
            }
        };
        match reason {
            Some(s) => tracing::debug!(stream = self.id, status = %s, "SDS stream ended"),
            None => tracing::debug!(stream = self.id, "SDS stream closed"),
        }
    }

    /// Returns false when the stream is gone.
    async fn on_request(&mut self, req: DiscoveryRequest) -> bool {
        if !req.type_url.is_empty() && req.type_url != type_url::SECRET {
            tracing::warn!(stream = self.id, type_url = %req.type_url, "SDS request for another type ignored");
            return true;
        }
        if !req.response_nonce.is_empty() && req.response_nonce != self.last_nonce {
            tracing::debug!(stream = self.id, nonce = %req.response_nonce, "stale SDS request ignored");
            return true;
        }
        let names_changed = req.resource_names != self.names;
        self.names = req.resource_names;
        if req.error_detail.is_some() {
            tracing::warn!(
                stream = self.id,
                names = ?self.names,
                version = %req.version_info,
                error = %error_message(&req.error_detail),
                "Envoy rejected SDS update (NACK)"
            );
            return if names_changed {
                self.push(false).await
            } else {
                true
            };
        }
        if req.response_nonce.is_empty() {
            // A new subscription (or Envoy reconnected): always answer.
            return self.push(true).await;
        }
        tracing::debug!(stream = self.id, version = %req.version_info, "SDS update acknowledged");
        if names_changed {
            self.push(false).await
        } else {
            true
        }
    }

    /// Sends the requested secrets if there are any and they differ from the last response (or
    /// `force`). Returns false when the stream is gone.
    async fn push(&mut self, force: bool) -> bool {
        let current = self.certs.borrow().clone();
        let Some(certs) = current else {
            return true; // no certificate yet: Envoy waits
        };
        let items = build_items(&self.names, &certs);
        if items.is_empty() {
            return true;
        }
        let version = sotw_version(&items);
        if !force && self.sent.as_deref() == Some(version.as_str()) {
            return true;
        }
        self.nonce += 1;
        let nonce = format!("{}-{}", self.id, self.nonce);
        let names: Vec<&String> = items.keys().collect();
        tracing::info!(stream = self.id, ?names, %version, "pushing SDS secrets");
        let resp = DiscoveryResponse {
            version_info: version.clone(),
            resources: items.values().map(|i| i.any.clone()).collect(),
            type_url: type_url::SECRET.to_string(),
            nonce: nonce.clone(),
            ..Default::default()
        };
        self.last_nonce = nonce;
        self.sent = Some(version);
        self.tx.send(Ok(resp)).await.is_ok()
    }
}

/// A delta `DeltaSecrets` stream.
struct DeltaStream {
    id: u64,
    inbound: Streaming<DeltaDiscoveryRequest>,
    certs: CertWatch,
    stop: watch::Receiver<bool>,
    tx: mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>,
    subscribed: BTreeSet<String>,
    /// Resource versions Envoy has (told by it at start, or sent since).
    client_versions: HashMap<String, String>,
    nonce: u64,
}

impl DeltaStream {
    async fn run(mut self) {
        tracing::debug!(stream = self.id, "delta SDS stream opened");
        self.certs.borrow_and_update();
        let mut certs_open = true;
        let mut first = true;
        let reason = loop {
            let ev = next_event(
                &mut self.inbound,
                &mut self.certs,
                &mut certs_open,
                &mut self.stop,
                self.tx.closed(),
            )
            .await;
            let ok = match ev {
                Event::End(status) => break status,
                Event::CertsChanged => self.push().await,
                Event::Request(req) => {
                    let was_first = std::mem::replace(&mut first, false);
                    self.on_request(req, was_first).await
                }
            };
            if !ok {
                break None;
            }
        };
        match reason {
            Some(s) => tracing::debug!(stream = self.id, status = %s, "delta SDS stream ended"),
            None => tracing::debug!(stream = self.id, "delta SDS stream closed"),
        }
    }

    async fn on_request(&mut self, req: DeltaDiscoveryRequest, first: bool) -> bool {
        if !req.type_url.is_empty() && req.type_url != type_url::SECRET {
            tracing::warn!(stream = self.id, type_url = %req.type_url, "delta SDS request for another type ignored");
            return true;
        }
        if !req.response_nonce.is_empty() {
            if req.error_detail.is_some() {
                tracing::warn!(
                    stream = self.id,
                    nonce = %req.response_nonce,
                    error = %error_message(&req.error_detail),
                    "Envoy rejected SDS update (NACK)"
                );
            } else {
                tracing::debug!(stream = self.id, nonce = %req.response_nonce, "SDS update acknowledged");
            }
        }
        for name in req.resource_names_unsubscribe {
            self.subscribed.remove(&name);
            self.client_versions.remove(&name);
        }
        for name in req.resource_names_subscribe {
            if first && let Some(v) = req.initial_resource_versions.get(&name) {
                self.client_versions.insert(name.clone(), v.clone());
            }
            self.subscribed.insert(name);
        }
        self.push().await
    }

    /// Sends the subscribed secrets whose version Envoy does not have yet. Returns false when
    /// the stream is gone.
    async fn push(&mut self) -> bool {
        let current = self.certs.borrow().clone();
        let Some(certs) = current else {
            return true;
        };
        let changed: Vec<Item> = build_items(&self.subscribed, &certs)
            .into_values()
            .filter(|i| self.client_versions.get(&i.name) != Some(&i.version))
            .collect();
        if changed.is_empty() {
            return true;
        }
        self.nonce += 1;
        let nonce = format!("{}-{}", self.id, self.nonce);
        let names: Vec<&str> = changed.iter().map(|i| i.name.as_str()).collect();
        tracing::info!(stream = self.id, ?names, "pushing SDS secrets (delta)");
        let resources = changed
            .iter()
            .map(|i| Resource {
                name: i.name.clone(),
                version: i.version.clone(),
                resource: Some(i.any.clone()),
                ..Default::default()
            })
            .collect();
        for i in &changed {
            self.client_versions
                .insert(i.name.clone(), i.version.clone());
        }
        let resp = DeltaDiscoveryResponse {
            system_version_info: self.nonce.to_string(),
            resources,
            type_url: type_url::SECRET.to_string(),
            nonce,
            ..Default::default()
        };
        self.tx.send(Ok(resp)).await.is_ok()
    }
}

/// Test helpers shared with the xDS proxy's tests: a gRPC channel over a Unix socket.
#[cfg(test)]
pub(crate) mod testutil {
    use hyper_util::rt::TokioIo;
    use std::path::PathBuf;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tonic::codegen::http::Uri;
    use tonic::transport::{Channel, Endpoint};

    #[derive(Clone)]
    struct UdsConnector(PathBuf);

    impl tonic::codegen::Service<Uri> for UdsConnector {
        type Response = TokioIo<tokio::net::UnixStream>;
        type Error = std::io::Error;
        type Future =
            Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Uri) -> Self::Future {
            let path = self.0.clone();
            Box::pin(async move { Ok(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) })
        }
    }

    /// Connects to a gRPC server on `path`, retrying while the server starts.
    pub(crate) async fn uds_channel(path: PathBuf) -> Channel {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let r = Endpoint::from_static("http://uds.invalid")
                .connect_with_connector(UdsConnector(path.clone()))
                .await;
            match r {
                Ok(c) => return c,
                Err(e) if tokio::time::Instant::now() > deadline => {
                    panic!("connecting to {}: {e}", path.display())
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
    }

    /// A fresh, short directory for sockets (Unix socket paths are limited to ~100 bytes).
    pub(crate) fn temp_dir(tag: &str) -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "weft-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::{temp_dir, uds_channel};
    use super::*;
    use std::time::{Duration, SystemTime};
    use weft_proto::envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;

    type CertTx = watch::Sender<Option<Arc<WorkloadCerts>>>;

    fn certs(n: u32) -> Arc<WorkloadCerts> {
        Arc::new(WorkloadCerts {
            key_pem: format!("KEY {n}"),
            cert_chain_pem: format!("CHAIN {n}"),
            root_pem: "ROOT".into(),
            not_before: SystemTime::now(),
            not_after: SystemTime::now() + Duration::from_secs(3600),
        })
    }

    struct Fixture {
        dir: PathBuf,
        tx: CertTx,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        server: tokio::task::JoinHandle<Result<(), String>>,
        client: SecretDiscoveryServiceClient<tonic::transport::Channel>,
    }

    impl Fixture {
        async fn start(initial: Option<Arc<WorkloadCerts>>) -> Self {
            let dir = temp_dir("sds");
            let socket = dir.join("sub/socket");
            // A stale file where the socket goes must not stop the server.
            std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
            std::fs::write(&socket, b"stale").unwrap();
            let (tx, rx) = watch::channel(initial);
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn(serve_sds(socket.clone(), rx, async move {
                let _ = stopped.await;
            }));
            let client = SecretDiscoveryServiceClient::new(uds_channel(socket).await);
            Fixture {
                dir,
                tx,
                stop: Some(stop),
                server,
                client,
            }
        }

        async fn stop(mut self) {
            let _ = self.stop.take().unwrap().send(());
            tokio::time::timeout(Duration::from_secs(10), self.server)
                .await
                .expect("SDS server stops with open streams")
                .unwrap()
                .unwrap();
            std::fs::remove_dir_all(&self.dir).unwrap();
        }
    }

    async fn next<T>(s: &mut Streaming<T>) -> T
    where
        T: Message + Default + 'static,
    {
        tokio::time::timeout(Duration::from_secs(10), s.message())
            .await
            .expect("a response in time")
            .expect("stream ok")
            .expect("stream open")
    }

    async fn nothing<T>(s: &mut Streaming<T>)
    where
        T: Message + Default + std::fmt::Debug + 'static,
    {
        if let Ok(m) = tokio::time::timeout(Duration::from_millis(300), s.message()).await {
            panic!("expected no message, got {m:?}");
        }
    }

    fn decode(any: &Any) -> Secret {
        assert_eq!(any.type_url, type_url::SECRET);
        Secret::decode(any.value.as_slice()).unwrap()
    }

    fn inline(ds: &Option<DataSource>) -> String {
        match ds.as_ref().and_then(|d| d.specifier.as_ref()) {
            Some(data_source::Specifier::InlineBytes(b)) => String::from_utf8(b.clone()).unwrap(),
            other => panic!("expected inline bytes, got {other:?}"),
        }
    }

    /// name → (chain or root, key) from a list of secrets.
    fn contents(secrets: impl IntoIterator<Item = Secret>) -> BTreeMap<String, (String, String)> {
        secrets
            .into_iter()
            .map(|s| {
                let v = match s.r#type {
                    Some(secret::Type::TlsCertificate(t)) => {
                        (inline(&t.certificate_chain), inline(&t.private_key))
                    }
                    Some(secret::Type::ValidationContext(v)) => {
                        (inline(&v.trusted_ca), String::new())
                    }
                    other => panic!("unexpected secret type {other:?}"),
                };
                (s.name, v)
            })
            .collect()
    }

    fn sotw_request(names: &[&str], ack: Option<&DiscoveryResponse>) -> DiscoveryRequest {
        DiscoveryRequest {
            type_url: type_url::SECRET.into(),
            resource_names: names.iter().map(|s| s.to_string()).collect(),
            version_info: ack.map(|r| r.version_info.clone()).unwrap_or_default(),
            response_nonce: ack.map(|r| r.nonce.clone()).unwrap_or_default(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn sotw_serves_requested_secrets_and_pushes_rotation() {
        let mut f = Fixture::start(None).await;
        let (req_tx, req_rx) = mpsc::channel(8);
        req_tx
            .send(sotw_request(&["default", "ROOTCA", "file-cert:/x"], None))
            .await
            .unwrap();
        let mut stream = f
            .client
            .stream_secrets(ReceiverStream::new(req_rx))
            .await
            .unwrap()
            .into_inner();

        // No certificate yet: nothing is sent.
        nothing(&mut stream).await;
        f.tx.send(Some(certs(1))).unwrap();
        let r1 = next(&mut stream).await;
        assert_eq!(r1.type_url, type_url::SECRET);
        let got = contents(r1.resources.iter().map(decode));
        assert_eq!(
            got,
            BTreeMap::from([
                ("ROOTCA".to_string(), ("ROOT".to_string(), String::new())),
                (
                    "default".to_string(),
                    ("CHAIN 1".to_string(), "KEY 1".to_string())
                ),
            ]),
            "both requested secrets, and not the unknown name"
        );

        // ACK: nothing more.
        req_tx
            .send(sotw_request(
                &["default", "ROOTCA", "file-cert:/x"],
                Some(&r1),
            ))
            .await
            .unwrap();
        nothing(&mut stream).await;

        // Rotation is pushed on the open stream.
        f.tx.send(Some(certs(2))).unwrap();
        let r2 = next(&mut stream).await;
        assert_ne!(r2.version_info, r1.version_info);
        assert_ne!(r2.nonce, r1.nonce);
        let got = contents(r2.resources.iter().map(decode));
        assert_eq!(got["default"], ("CHAIN 2".to_string(), "KEY 2".to_string()));

        // NACK is logged, not answered.
        let mut nack = sotw_request(&["default", "ROOTCA", "file-cert:/x"], Some(&r2));
        nack.version_info = r1.version_info.clone();
        nack.error_detail = Some(weft_proto::envoy_types::pb::google::rpc::Status {
            code: 3,
            message: "bad".into(),
            details: vec![],
        });
        req_tx.send(nack).await.unwrap();
        nothing(&mut stream).await;

        // Narrowing the subscription answers with only what is asked.
        req_tx
            .send(sotw_request(&["ROOTCA"], Some(&r2)))
            .await
            .unwrap();
        let r3 = next(&mut stream).await;
        let got = contents(r3.resources.iter().map(decode));
        assert_eq!(got.keys().collect::<Vec<_>>(), ["ROOTCA"]);

        // A second stream gets the current certificate right away.
        let (tx2, rx2) = mpsc::channel(1);
        tx2.send(sotw_request(&["default"], None)).await.unwrap();
        let mut s2 = f
            .client
            .stream_secrets(ReceiverStream::new(rx2))
            .await
            .unwrap()
            .into_inner();
        let got = contents(next(&mut s2).await.resources.iter().map(decode));
        assert_eq!(got["default"].0, "CHAIN 2");

        f.stop().await;
    }

    #[tokio::test]
    async fn delta_serves_subscribed_secrets_and_pushes_rotation() {
        let mut f = Fixture::start(Some(certs(1))).await;
        let (req_tx, req_rx) = mpsc::channel(8);
        req_tx
            .send(DeltaDiscoveryRequest {
                type_url: type_url::SECRET.into(),
                resource_names_subscribe: vec!["default".into(), "ROOTCA".into(), "other".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        let mut stream = f
            .client
            .delta_secrets(ReceiverStream::new(req_rx))
            .await
            .unwrap()
            .into_inner();
        let r1 = next(&mut stream).await;
        assert_eq!(r1.type_url, type_url::SECRET);
        let names: BTreeSet<_> = r1.resources.iter().map(|r| r.name.clone()).collect();
        assert_eq!(
            names,
            BTreeSet::from(["ROOTCA".to_string(), "default".to_string()])
        );
        assert!(r1.resources.iter().all(|r| !r.version.is_empty()));
        let got = contents(
            r1.resources
                .iter()
                .map(|r| decode(r.resource.as_ref().unwrap())),
        );
        assert_eq!(got["default"], ("CHAIN 1".to_string(), "KEY 1".to_string()));

        req_tx
            .send(DeltaDiscoveryRequest {
                type_url: type_url::SECRET.into(),
                response_nonce: r1.nonce.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        nothing(&mut stream).await;

        // Only the leaf changed: only `default` is sent again.
        f.tx.send(Some(certs(2))).unwrap();
        let r2 = next(&mut stream).await;
        assert_eq!(r2.resources.len(), 1);
        assert_eq!(r2.resources[0].name, "default");
        let got = contents(
            r2.resources
                .iter()
                .map(|r| decode(r.resource.as_ref().unwrap())),
        );
        assert_eq!(got["default"], ("CHAIN 2".to_string(), "KEY 2".to_string()));

        // After unsubscribing from `default`, a rotation of the root sends only ROOTCA.
        req_tx
            .send(DeltaDiscoveryRequest {
                type_url: type_url::SECRET.into(),
                response_nonce: r2.nonce.clone(),
                resource_names_unsubscribe: vec!["default".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        nothing(&mut stream).await;
        let mut c3 = (*certs(3)).clone();
        c3.root_pem = "ROOT 2".into();
        f.tx.send(Some(Arc::new(c3))).unwrap();
        let r3 = next(&mut stream).await;
        let names: Vec<_> = r3.resources.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["ROOTCA"]);

        // A reconnecting Envoy that already has the current versions gets nothing.
        let (tx2, rx2) = mpsc::channel(1);
        tx2.send(DeltaDiscoveryRequest {
            type_url: type_url::SECRET.into(),
            resource_names_subscribe: vec!["ROOTCA".into()],
            initial_resource_versions: [("ROOTCA".to_string(), r3.resources[0].version.clone())]
                .into(),
            ..Default::default()
        })
        .await
        .unwrap();
        let mut s2 = f
            .client
            .delta_secrets(ReceiverStream::new(rx2))
            .await
            .unwrap()
            .into_inner();
        nothing(&mut s2).await;

        f.stop().await;
    }

    #[tokio::test]
    async fn fetch_returns_current_value() {
        let mut f = Fixture::start(None).await;
        let err = f
            .client
            .fetch_secrets(sotw_request(&["default"], None))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        f.tx.send(Some(certs(1))).unwrap();
        let r = f
            .client
            .fetch_secrets(sotw_request(&["ROOTCA"], None))
            .await
            .unwrap()
            .into_inner();
        let got = contents(r.resources.iter().map(decode));
        assert_eq!(got.keys().collect::<Vec<_>>(), ["ROOTCA"]);
        f.stop().await;
    }

    /// Removes a test directory even when the test fails.
    struct RemoveOnDrop(PathBuf);

    impl Drop for RemoveOnDrop {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// An issued workload certificate for service account `sa` from `ca`.
    fn issue(ca: &weft_identity::CertificateAuthority, sa: &str) -> Arc<WorkloadCerts> {
        use weft_identity::{Identity, KeyAlgorithm, csr};
        let key = csr::WorkloadKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let id = Identity::new("cluster.local", "ns", sa);
        let csr_pem = csr::build_csr(&key, &id.uri()).unwrap();
        let chain = ca
            .sign(&csr_pem, &id, Duration::from_secs(3600), SystemTime::now())
            .unwrap();
        Arc::new(WorkloadCerts::from_chain(key.pem(), &chain).unwrap())
    }

    /// `GET path` on Envoy's admin; the body of a 200 answer.
    async fn admin_get(port: u16, path: &str) -> Result<String, String> {
        use http_body_util::{BodyExt, Empty};
        use hyper_util::rt::TokioIo;
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, format!("127.0.0.1:{port}"))
            .body(Empty::<tonic::codegen::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let body = String::from_utf8_lossy(&body).to_string();
        if status != hyper::StatusCode::OK {
            return Err(format!("{status}: {body}"));
        }
        Ok(body)
    }

    /// (leaf SPIFFE URIs, CA serial numbers) of what Envoy's TLS contexts hold now.
    fn envoy_certs(body: &str) -> (Vec<String>, Vec<String>) {
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let mut uris = Vec::new();
        let mut cas = Vec::new();
        for c in v["certificates"].as_array().into_iter().flatten() {
            for leaf in c["cert_chain"].as_array().into_iter().flatten() {
                for san in leaf["subject_alt_names"].as_array().into_iter().flatten() {
                    uris.extend(san["uri"].as_str().map(str::to_string));
                }
            }
            for ca in c["ca_cert"].as_array().into_iter().flatten() {
                cas.extend(ca["serial_number"].as_str().map(str::to_string));
            }
        }
        (uris, cas)
    }

    /// Real Envoy: a TLS listener gets `default` over SotW and `ROOTCA` over delta SDS from this
    /// server, and takes rotated certificates without restarting.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn envoy_takes_rotated_certificates_without_restart() {
        use weft_identity::{CertificateAuthority, KeyAlgorithm};
        let envoy = weft_testkit::envoy_binary().expect("Envoy is needed for this test");
        let ca1 = CertificateAuthority::new_root(KeyAlgorithm::EcdsaP256, "one", SystemTime::now())
            .unwrap();
        let ca2 = CertificateAuthority::new_root(KeyAlgorithm::EcdsaP256, "two", SystemTime::now())
            .unwrap();
        let guard = RemoveOnDrop(temp_dir("sds-envoy"));
        let dir = guard.0.clone();
        let log_path = dir.join("envoy.log");
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("sds/socket");
        let (tx, rx) = watch::channel(Some(issue(&ca1, "first")));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_sds(socket.clone(), rx, async move {
            let _ = stopped.await;
        }));

        let free_port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let admin_port = free_port();
        let sds = |api_type: &str| {
            serde_json::json!({
                "resource_api_version": "V3",
                "api_config_source": {
                    "api_type": api_type,
                    "transport_api_version": "V3",
                    "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}]
                }
            })
        };
        let bootstrap = serde_json::json!({
            "node": {"id": "sidecar~127.0.0.1~sds-test.ns~ns.svc.cluster.local", "cluster": "sds-test"},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
            "static_resources": {
                "listeners": [{
                    "name": "tls",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}},
                    "filter_chains": [{
                        "filters": [{
                            "name": "envoy.filters.network.tcp_proxy",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                                "stat_prefix": "tls",
                                "cluster": "sds-grpc"
                            }
                        }],
                        "transport_socket": {
                            "name": "envoy.transport_sockets.tls",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                                "require_client_certificate": true,
                                "common_tls_context": {
                                    "tls_certificate_sds_secret_configs": [{"name": "default", "sds_config": sds("GRPC")}],
                                    "validation_context_sds_secret_config": {"name": "ROOTCA", "sds_config": sds("DELTA_GRPC")}
                                }
                            }
                        }
                    }]
                }],
                "clusters": [{
                    "name": "sds-grpc",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}}
                        }
                    },
                    "load_assignment": {
                        "cluster_name": "sds-grpc",
                        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": socket.display().to_string()}}}}]}]
                    }
                }]
            }
        });
        let config = dir.join("envoy.json");
        std::fs::write(&config, bootstrap.to_string()).unwrap();
        let log = std::fs::File::create(dir.join("envoy.log")).unwrap();
        let mut child = tokio::process::Command::new(&envoy)
            .arg("-c")
            .arg(&config)
            .args(["--disable-hot-restart", "--concurrency", "1", "-l", "info"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id();

        let log_path = &log_path;
        let wait_for = |want_uri: &'static str, want_ca: Option<String>| async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                let got = admin_get(admin_port, "/certs")
                    .await
                    .map(|b| envoy_certs(&b));
                if let Ok((uris, cas)) = &got
                    && uris.iter().any(|u| u.ends_with(want_uri))
                    && !cas.is_empty()
                    && want_ca.as_ref().is_none_or(|c| !cas.contains(c))
                {
                    return cas[0].clone();
                }
                if tokio::time::Instant::now() > deadline {
                    let log = std::fs::read_to_string(log_path).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(30).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    panic!(
                        "Envoy never showed {want_uri}: {got:?}\n--- Envoy log tail ---\n{}",
                        tail.join("\n")
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let first_ca = wait_for("/sa/first", None).await;

        // Rotate the leaf, then the root: the same Envoy process takes both.
        tx.send(Some(issue(&ca1, "second"))).unwrap();
        let same_ca = wait_for("/sa/second", None).await;
        assert_eq!(same_ca, first_ca);
        tx.send(Some(issue(&ca2, "third"))).unwrap();
        wait_for("/sa/third", Some(first_ca)).await;
        assert!(child.try_wait().unwrap().is_none(), "Envoy kept running");
        assert_eq!(child.id(), pid);
        let stats = admin_get(admin_port, "/stats?filter=sds").await.unwrap();
        assert!(
            !stats
                .lines()
                .any(|l| l.contains("update_rejected") && !l.ends_with(": 0")),
            "Envoy rejected an SDS update:\n{stats}"
        );

        child.kill().await.unwrap();
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        drop(guard);
    }
}
