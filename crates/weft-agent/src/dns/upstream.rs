//! Forwarding a query to the resolv.conf servers over the transport it came in on: UDP to UDP
//! (a fresh connected socket per query, a 64 KiB receive buffer), TCP to TCP (a connection per
//! query). Servers are tried one after another in a shuffled order, each with its own timeout,
//! as Istio's agent does.

use super::reply::{MAX_MESSAGE, Transport};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The first reply from any of `servers`, or `None` when all of them failed.
pub async fn exchange(
    servers: &[SocketAddr],
    request: &[u8],
    transport: Transport,
    timeout: Duration,
) -> Option<Vec<u8>> {
    let mut order = servers.to_vec();
    fastrand::shuffle(&mut order);
    for server in order {
        let attempt = async {
            match transport {
                Transport::Udp => udp(server, request).await,
                Transport::Tcp => tcp(server, request).await,
            }
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(reply)) => return Some(reply),
            Ok(Err(e)) => tracing::info!(target: "dns", %server, "upstream failure: {e}"),
            Err(_) => tracing::info!(
                target: "dns",
                %server,
                "upstream failure: no answer in {timeout:?}"
            ),
        }
    }
    None
}

fn id_of(message: &[u8]) -> Option<[u8; 2]> {
    message.get(..2).map(|b| [b[0], b[1]])
}

async fn udp(server: SocketAddr, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let local = match server.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket = UdpSocket::bind(SocketAddr::new(local, 0)).await?;
    socket.connect(server).await?;
    socket.send(request).await?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let n = socket.recv(&mut buf).await?;
        // Only a reply with the query's id (a connected socket already filters the source).
        if n >= 12 && id_of(&buf[..n]) == id_of(request) {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn tcp(server: SocketAddr, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(server).await?;
    stream.set_nodelay(true)?;
    write_frame(&mut stream, request).await?;
    read_frame(&mut stream).await?.ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed without a reply")
    })
}

/// Writes one length-prefixed DNS message (RFC 1035 §4.2.2).
pub async fn write_frame<W: AsyncWriteExt + Unpin>(
    w: &mut W,
    message: &[u8],
) -> std::io::Result<()> {
    let len = u16::try_from(message.len()).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "message over 65535 bytes")
    })?;
    let mut frame = Vec::with_capacity(message.len() + 2);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(message);
    w.write_all(&frame).await
}

/// Reads one length-prefixed DNS message; `None` at a clean end of stream.
pub async fn read_frame<R: AsyncReadExt + Unpin>(r: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
    r.read_exact(&mut message).await?;
    Ok(Some(message))
}
