//! The `weftd` under test: the release binary beside this tool, started on a generated config
//! directory and a temporary state directory with free loopback ports and `--log-level warn`
//! (its stderr goes to a log file). It can be stopped with SIGTERM and started again on the same
//! directories and ports, as an operator's restart would. Dropping it kills the process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The `weftd` binary: `explicit` if given, else the one built beside this executable.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, String> {
    weft_testkit::local::binary_beside(
        "weftd",
        explicit,
        "build both in release mode into one target directory (scripts/bench xds does)",
    )
}

/// `n` distinct free loopback ports.
pub fn free_ports(n: usize) -> Result<Vec<SocketAddr>, String> {
    weft_testkit::local::free_loopback_ports(n)
}

pub struct Weftd {
    binary: PathBuf,
    config_dir: PathBuf,
    state_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    pub plaintext_addr: SocketAddr,
    pub tls_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub monitoring_addr: SocketAddr,
}

impl Weftd {
    /// Starts weftd and waits until its admin API answers.
    pub async fn start(
        binary: &Path,
        config_dir: &Path,
        state_dir: &Path,
        log: &Path,
    ) -> Result<Self, String> {
        let ports = free_ports(4)?;
        let mut w = Weftd {
            binary: binary.to_path_buf(),
            config_dir: config_dir.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            log: log.to_path_buf(),
            child: None,
            plaintext_addr: ports[0],
            tls_addr: ports[1],
            http_addr: ports[2],
            monitoring_addr: ports[3],
        };
        w.spawn_and_wait().await?;
        Ok(w)
    }

    /// Starts the process (again) on the same directories and ports, and waits until it answers.
    pub async fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        let child = Command::new(&self.binary)
            .arg("--config-dir")
            .arg(&self.config_dir)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(["--xds-plaintext-addr", &self.plaintext_addr.to_string()])
            .args(["--xds-tls-addr", &self.tls_addr.to_string()])
            .args(["--http-addr", &self.http_addr.to_string()])
            .args(["--monitoring-addr", &self.monitoring_addr.to_string()])
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(60)).await
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                return Err(format!(
                    "weftd exited during start-up ({status}); log:\n{}",
                    self.log_tail()
                ));
            }
            if let Ok((200, _)) = http_get(self.http_addr, "/healthz").await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "weftd did not answer on {} within {timeout:?}",
                    self.http_addr
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM, then waits for the process to exit (SIGKILL after `timeout`).
    pub async fn terminate(&mut self, timeout: Duration) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .map_err(|e| format!("kill: {e}"))?;
        if !status.success() {
            return Err(format!("kill -TERM {} failed", child.id()));
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("weftd did not exit within {timeout:?} of SIGTERM"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The last lines weftd logged.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Number of lines weftd logged (warnings and errors at `--log-level warn`).
    pub fn log_lines(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    /// `/debug/syncz`, parsed.
    pub async fn syncz(&self, proxy: Option<&str>) -> Result<serde_json::Value, String> {
        let path = match proxy {
            Some(p) => format!("/debug/syncz?proxyID={p}"),
            None => "/debug/syncz".to_string(),
        };
        match http_get(self.http_addr, &path).await? {
            (200, body) => serde_json::from_str(&body).map_err(|e| format!("{path}: {e}")),
            (status, body) => Err(format!("{path}: HTTP {status}: {body}")),
        }
    }
}

impl Drop for Weftd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One HTTP/1.1 GET (`Connection: close`, so the body ends at EOF; chunked bodies are decoded).
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .map_err(|_| format!("{addr}: connect timed out"))?
        .map_err(|e| format!("{addr}: {e}"))?;
    let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut reply))
        .await
        .map_err(|_| format!("GET {path}: timed out"))?
        .map_err(|e| e.to_string())?;
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: malformed HTTP reply"))?;
    let head = String::from_utf8_lossy(&reply[..split]).to_string();
    let body = &reply[split + 4..];
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("GET {path}: no status in {head:?}"))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..eol]).unwrap_or("");
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        let rest = &body[eol + 2..];
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        body = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), b"abcde");
    }

    #[test]
    fn ports_are_distinct() {
        let p = free_ports(4).unwrap();
        for (i, a) in p.iter().enumerate() {
            assert!(a.ip().is_loopback());
            assert!(p[i + 1..].iter().all(|b| b.port() != a.port()));
        }
    }
}
