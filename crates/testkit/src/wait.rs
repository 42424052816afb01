//! Waiting for things with a timeout: a generic poll loop, TCP ports that accept connections
//! and UDP ports that are bound, all seen from inside a network namespace.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::netns::run_in_netns;

/// A sensible default timeout for waits in scenario tests.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause between two attempts of [`poll_until`].
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The outcome of one attempt in [`poll_until`].
#[derive(Debug)]
pub enum Attempt<T> {
    /// Done, with this value.
    Ready(T),
    /// Not yet; the text says what was seen (it ends up in the timeout message).
    NotYet(String),
}

/// Calls `attempt` until it returns [`Attempt::Ready`] or `timeout` passes. An `Err` from
/// `attempt` stops the wait at once. The timeout error names `what` and the last observation.
pub fn poll_until<T>(
    what: &str,
    timeout: Duration,
    mut attempt: impl FnMut() -> Result<Attempt<T>>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        let last = match attempt()? {
            Attempt::Ready(value) => return Ok(value),
            Attempt::NotYet(last) => last,
        };
        if start.elapsed() >= timeout {
            return Err(Error::new(format!(
                "timed out after {timeout:?} waiting for {what}; last attempt: {last}"
            )));
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// The address to connect to for a listener bound to `addr`: the unspecified address
/// (`0.0.0.0` / `::`) becomes loopback.
pub fn connectable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// Waits until a TCP connection to `addr`, made from inside `netns`, succeeds.
pub fn wait_for_tcp(netns: &str, addr: SocketAddr, timeout: Duration) -> Result<()> {
    let what = format!("TCP {addr} to accept connections (from network namespace {netns})");
    run_in_netns(netns, || {
        poll_until(&what, timeout, || {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                Ok(_) => Ok(Attempt::Ready(())),
                Err(e) => Ok(Attempt::NotYet(e.to_string())),
            }
        })
    })?
}

/// Waits until some socket in `netns` is bound to UDP `addr` (a socket bound to the
/// unspecified address counts for every address; an unspecified `addr` matches any socket on
/// the port). Nothing is sent: the check reads the namespace's `/proc/net/udp{,6}`.
pub fn wait_for_udp(netns: &str, addr: SocketAddr, timeout: Duration) -> Result<()> {
    let what = format!("a socket bound to UDP {addr} (in network namespace {netns})");
    run_in_netns(netns, || {
        poll_until(&what, timeout, || {
            if udp_bound_here(addr)? {
                Ok(Attempt::Ready(()))
            } else {
                Ok(Attempt::NotYet("no such UDP socket".into()))
            }
        })
    })?
}

/// Whether a socket in `netns` is bound to UDP `addr` (see [`wait_for_udp`]).
pub fn udp_bound(netns: &str, addr: SocketAddr) -> Result<bool> {
    run_in_netns(netns, || udp_bound_here(addr))?
}

/// Reads the calling thread's namespace's UDP socket tables.
fn udp_bound_here(addr: SocketAddr) -> Result<bool> {
    for table in ["udp", "udp6"] {
        // thread-self: /proc/self/net would show the main thread's namespace.
        let path = format!("/proc/thread-self/net/{table}");
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("read {path}"), e)),
        };
        if text
            .lines()
            .skip(1)
            .filter_map(|line| line.split_whitespace().nth(1))
            .filter_map(parse_proc_addr)
            .any(|bound| bound_matches(bound, addr))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

fn bound_matches(bound: SocketAddr, wanted: SocketAddr) -> bool {
    bound.port() == wanted.port()
        && (bound.ip().is_unspecified()
            || wanted.ip().is_unspecified()
            || bound.ip() == wanted.ip()
            || bound.ip().to_canonical() == wanted.ip())
}

/// Parses a `/proc/net/{tcp,udp}[6]` address such as `0100007F:0035`.
fn parse_proc_addr(field: &str) -> Option<SocketAddr> {
    let (ip_hex, port_hex) = field.split_once(':')?;
    let port = u16::from_str_radix(port_hex, 16).ok()?;
    // The kernel prints the address as 32-bit words in host byte order.
    let mut bytes = Vec::with_capacity(16);
    for chunk in ip_hex.as_bytes().chunks(8) {
        let word = u32::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_addresses() {
        let lo = u32::from_ne_bytes([127, 0, 0, 1]);
        let v4 = parse_proc_addr(&format!("{lo:08X}:0035")).unwrap();
        assert_eq!(v4, "127.0.0.1:53".parse().unwrap());
        let any6 = parse_proc_addr(&format!("{}:1F90", "0".repeat(32))).unwrap();
        assert_eq!(any6, "[::]:8080".parse().unwrap());
        assert!(parse_proc_addr("zz:1").is_none());
    }

    #[test]
    fn unspecified_bind_matches_any_address() {
        let any: SocketAddr = "0.0.0.0:53".parse().unwrap();
        let specific: SocketAddr = "198.18.0.10:53".parse().unwrap();
        assert!(bound_matches(any, specific));
        assert!(bound_matches(specific, specific));
        assert!(!bound_matches(specific, "198.18.0.11:53".parse().unwrap()));
        assert!(!bound_matches(any, "198.18.0.10:54".parse().unwrap()));
    }

    #[test]
    fn poll_until_reports_last_attempt() {
        let err = poll_until::<()>("the thing", Duration::from_millis(10), || {
            Ok(Attempt::NotYet("still missing".into()))
        })
        .unwrap_err();
        assert!(err.message().contains("the thing"), "{err}");
        assert!(err.message().contains("still missing"), "{err}");
    }
}
