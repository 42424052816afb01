//! `tcpSocket`: healthy when a TCP connection opens within the timeout (Istio's `TCPProber`,
//! which dials from an ordinary, unbound socket).

use super::{join_host_port, port, resolve};
use std::time::Duration;
use tokio::net::TcpStream;
use weft_model::networking::TcpHealthCheckConfig;

#[derive(Clone, Debug)]
pub struct TcpCheck {
    pub host: String,
    pub port: u16,
}

impl TcpCheck {
    pub fn new(cfg: &TcpHealthCheckConfig, default_host: &str) -> Result<Self, String> {
        Ok(TcpCheck {
            host: if cfg.host.is_empty() {
                default_host.to_string()
            } else {
                cfg.host.clone()
            },
            port: port(cfg.port)?,
        })
    }

    pub async fn probe(&self, timeout: Duration) -> Result<(), String> {
        let hostport = join_host_port(&self.host, self.port);
        let dial = async {
            let mut last = String::new();
            for addr in resolve(&self.host, self.port).await? {
                match TcpStream::connect(addr).await {
                    Ok(_conn) => return Ok(()),
                    Err(e) => last = format!("dial tcp {addr}: {e}"),
                }
            }
            Err(last)
        };
        match tokio::time::timeout(timeout, dial).await {
            Ok(r) => r,
            Err(_) => Err(format!("dial tcp {hostport}: i/o timeout")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use tokio::net::TcpListener;

    fn check(port: u16) -> TcpCheck {
        TcpCheck::new(
            &TcpHealthCheckConfig {
                host: String::new(),
                port: port.into(),
            },
            "127.0.0.1",
        )
        .unwrap()
    }

    #[tokio::test]
    async fn open_port_is_healthy_closed_is_not() {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let p = l.local_addr().unwrap().port();
        assert_eq!(check(p).probe(Duration::from_secs(1)).await, Ok(()));
        drop(l);
        let err = check(p).probe(Duration::from_secs(1)).await.unwrap_err();
        assert!(
            err.starts_with(&format!("dial tcp 127.0.0.1:{p}: Connection refused")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn explicit_host_wins() {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let p = l.local_addr().unwrap().port();
        let c = TcpCheck::new(
            &TcpHealthCheckConfig {
                host: "127.0.0.1".into(),
                port: p.into(),
            },
            "192.0.2.123",
        )
        .unwrap();
        assert_eq!(c.host, "127.0.0.1");
        assert_eq!(c.probe(Duration::from_secs(1)).await, Ok(()));
    }
}
