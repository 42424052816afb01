//! The DNS server: UDP and TCP listeners over one [`Resolver`], which answers from the current
//! lookup table and forwards the rest upstream.
//!
//! A query the table answers is handled inline in the socket's loop (no task, no lock held across
//! an await); only forwarded queries get a task of their own.

use super::query_log::{Labels, QueryLog};
use super::reply::{self, Outcome, Transport};
use super::table::LookupTable;
use super::upstream;
use hickory_proto::op::{Message, ResponseCode};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

/// How long a TCP connection may sit idle between queries.
const TCP_IDLE: Duration = Duration::from_secs(10);

pub struct Resolver {
    table: RwLock<Option<Arc<LookupTable>>>,
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
    log: QueryLog,
}

/// What a socket loop does with a query.
pub enum Step {
    Send(Vec<u8>),
    Forward(Pending),
    Nothing,
}

/// A query on its way upstream.
pub struct Pending {
    request: Box<Message>,
    bytes: Vec<u8>,
    labels: Option<Labels>,
    hostname: String,
}

impl Resolver {
    pub fn new(upstreams: Vec<SocketAddr>, timeout: Duration, log: QueryLog) -> Self {
        Resolver {
            table: RwLock::new(None),
            upstreams,
            timeout,
            log,
        }
    }

    /// Replaces the table every later query is answered from.
    pub fn set_table(&self, table: LookupTable) {
        let table = Arc::new(table);
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = Some(table);
    }

    fn current(&self) -> Option<Arc<LookupTable>> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Handles a query as far as it can without waiting.
    pub fn answer(&self, bytes: &[u8], transport: Transport) -> Step {
        let table = self.current();
        match reply::decide(bytes, table.as_deref()) {
            Outcome::Drop => Step::Nothing,
            Outcome::Reply {
                request,
                mut response,
                found,
            } => {
                let limit = request
                    .as_deref()
                    .map_or(512, |r| reply::size_limit(r, transport));
                if let Some(req) = request.as_deref()
                    && let Some(labels) = self.log.request(transport, req)
                {
                    let hostname = hostname(req);
                    if found {
                        labels.found(&hostname, &response);
                    } else if table.is_none()
                        && response.metadata.response_code == ResponseCode::ServFail
                    {
                        labels.before_table(&hostname);
                    }
                }
                Step::Send(reply::encode_within(&mut response, limit))
            }
            Outcome::Forward { request } => {
                let labels = self.log.request(transport, &request);
                let hostname = hostname(&request);
                if let Some(l) = &labels {
                    l.forwarding(&hostname);
                }
                Step::Forward(Pending {
                    request,
                    bytes: bytes.to_vec(),
                    labels,
                    hostname,
                })
            }
        }
    }

    /// Forwards a query and returns what the client gets (SERVFAIL when every server failed).
    pub async fn forward(&self, p: Pending, transport: Transport) -> Vec<u8> {
        let upstream = upstream::exchange(&self.upstreams, &p.bytes, transport, self.timeout).await;
        let (message, bytes) = reply::relay(&p.request, upstream.as_deref(), transport);
        if let Some(l) = &p.labels {
            l.upstream(&p.hostname, &message);
        }
        bytes
    }
}

fn hostname(request: &Message) -> String {
    request
        .queries
        .first()
        .map(|q| q.name().to_ascii().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Binds UDP and TCP on `addr`.
pub async fn bind(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), String> {
    let udp = UdpSocket::bind(addr)
        .await
        .map_err(|e| format!("DNS proxy: UDP {addr}: {e}"))?;
    let tcp = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("DNS proxy: TCP {addr}: {e}"))?;
    Ok((udp, tcp))
}

pub async fn serve_udp(socket: UdpSocket, resolver: Arc<Resolver>) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; reply::MAX_MESSAGE];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(target: "dns", "UDP receive: {e}");
                continue;
            }
        };
        match resolver.answer(&buf[..n], Transport::Udp) {
            Step::Send(out) => {
                let _ = socket.send_to(&out, peer).await;
            }
            Step::Forward(p) => {
                let (socket, resolver) = (socket.clone(), resolver.clone());
                tokio::spawn(async move {
                    let out = resolver.forward(p, Transport::Udp).await;
                    let _ = socket.send_to(&out, peer).await;
                });
            }
            Step::Nothing => {}
        }
    }
}

pub async fn serve_tcp(listener: TcpListener, resolver: Arc<Resolver>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(tcp_connection(stream, resolver.clone()));
            }
            Err(e) => {
                tracing::debug!(target: "dns", "TCP accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One TCP client: queries may be pipelined; replies go out as they are ready (RFC 7766).
async fn tcp_connection(stream: TcpStream, resolver: Arc<Resolver>) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if upstream::write_frame(&mut wr, &m).await.is_err() {
                break;
            }
        }
    });
    while let Ok(Ok(Some(frame))) =
        tokio::time::timeout(TCP_IDLE, upstream::read_frame(&mut rd)).await
    {
        match resolver.answer(&frame, Transport::Tcp) {
            Step::Send(out) => {
                if tx.send(out).await.is_err() {
                    break;
                }
            }
            Step::Forward(p) => {
                let (tx, resolver) = (tx.clone(), resolver.clone());
                tokio::spawn(async move {
                    let out = resolver.forward(p, Transport::Tcp).await;
                    let _ = tx.send(out).await;
                });
            }
            Step::Nothing => {}
        }
    }
    drop(tx);
    let _ = writer.await;
}
