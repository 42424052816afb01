//! A `weftd` for one benchmark run: the release binary beside `weft-bench`, a temporary state
//! directory, free loopback ports, log level `warn`. Dropping it kills the process and removes the
//! state directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The `weftd` binary: `explicit` if given, else the one built beside this executable.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, String> {
    weft_testkit::local::binary_beside(
        "weftd",
        explicit,
        "run scripts/bench (it builds weftd and weft-bench in release mode into one target directory)",
    )
}

pub struct Weftd {
    child: Child,
    state_dir: PathBuf,
    admin_token: String,
    pub tls_addr: SocketAddr,
    pub plaintext_addr: SocketAddr,
    pub http_addr: SocketAddr,
}

/// `n` distinct free loopback ports.
fn free_ports(n: usize) -> Result<Vec<SocketAddr>, String> {
    weft_testkit::local::free_loopback_ports(n)
}

impl Weftd {
    /// Starts `binary` with a new root of `ca_key_algorithm` and waits until its admin API answers.
    pub async fn start(binary: &Path, ca_key_algorithm: &str) -> Result<Self, String> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let state_dir =
            std::env::temp_dir().join(format!("weft-bench-{}-{nanos}", std::process::id()));
        let ports = free_ports(4)?;
        let (tls_addr, plaintext_addr, http_addr, monitoring_addr) =
            (ports[0], ports[1], ports[2], ports[3]);
        let child = Command::new(binary)
            .arg("--state-dir")
            .arg(&state_dir)
            .args(["--xds-tls-addr", &tls_addr.to_string()])
            .args(["--xds-plaintext-addr", &plaintext_addr.to_string()])
            .args(["--http-addr", &http_addr.to_string()])
            .args(["--monitoring-addr", &monitoring_addr.to_string()])
            .args(["--ca-key-algorithm", ca_key_algorithm])
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let mut weftd = Weftd {
            child,
            state_dir,
            admin_token: String::new(),
            tls_addr,
            plaintext_addr,
            http_addr,
        };
        weftd.wait_ready(Duration::from_secs(30)).await?;
        Ok(weftd)
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("weftd exited during start-up ({status})"));
            }
            if let Ok((200, _)) = self.request("GET", "/healthz", None).await {
                let path = self.state_dir.join("admin-token");
                self.admin_token = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?
                    .trim()
                    .to_string();
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "weftd did not answer on {} within {timeout:?}",
                    self.http_addr
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The mesh root certificate (PEM), from the admin API.
    pub async fn root_pem(&self) -> Result<String, String> {
        self.admin("GET", "/api/v1/root-cert", None).await
    }

    /// A bootstrap token for `namespace`/`service_account`, from the admin API.
    pub async fn mint_token(
        &self,
        namespace: &str,
        service_account: &str,
    ) -> Result<String, String> {
        let body = serde_json::json!({
            "namespace": namespace,
            "serviceAccount": service_account,
            "durationSeconds": 3600,
        })
        .to_string();
        let reply = self.admin("POST", "/api/v1/tokens", Some(&body)).await?;
        let v: serde_json::Value =
            serde_json::from_str(&reply).map_err(|e| format!("token reply: {e}: {reply}"))?;
        v["token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("token reply has no token: {reply}"))
    }

    async fn admin(&self, method: &str, path: &str, body: Option<&str>) -> Result<String, String> {
        match self.request(method, path, body).await? {
            (200, body) => Ok(body),
            (status, body) => Err(format!("{method} {path}: HTTP {status}: {}", body.trim())),
        }
    }

    /// One HTTP/1.1 request to the admin API (`Connection: close`, so the body ends at EOF).
    async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, String), String> {
        let mut stream = TcpStream::connect(self.http_addr)
            .await
            .map_err(|e| format!("{}: {e}", self.http_addr))?;
        let body = body.unwrap_or("");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.http_addr,
            self.admin_token,
            body.len()
        );
        stream
            .write_all(format!("{head}{body}").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut reply = Vec::new();
        stream
            .read_to_end(&mut reply)
            .await
            .map_err(|e| e.to_string())?;
        let reply = String::from_utf8_lossy(&reply);
        let (head, body) = reply
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("{method} {path}: malformed HTTP reply"))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{method} {path}: no status in {head:?}"))?;
        Ok((status, body.to_string()))
    }

    /// CPU time (user + system) weftd has used so far.
    pub fn cpu_time(&self) -> Result<Duration, String> {
        cpu_time(&self.pid().to_string())
    }

    /// weftd's current thread count.
    pub fn threads(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|v| v.trim().parse().ok())
    }
}

impl Drop for Weftd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// CPU time (utime + stime) of `/proc/<pid>` (`pid` may be `self` or `thread-self`); clock-tick
/// resolution (10 ms), so measure over seconds.
pub fn cpu_time(pid: &str) -> Result<Duration, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| format!("{path}: unexpected format"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64, String> {
        fields
            .get(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{path}: no field {}", i + 3))
    };
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_secs_f64(
        total as f64 / clock_ticks_per_second(),
    ))
}

/// `sysconf(_SC_CLK_TCK)` via `getconf` (100 on every Linux this runs on; asked once anyway).
pub fn clock_ticks_per_second() -> f64 {
    static TCK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|v: &f64| *v > 0.0)
            .unwrap_or(100.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_time_is_readable() {
        let t = cpu_time("self").unwrap();
        assert!(t < Duration::from_secs(3600));
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
