//! Running stock Envoy in a host with a static bootstrap config.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Result;
use crate::http::{HttpResponse, http_get};
use crate::process::Process;
use crate::wait::{Attempt, poll_until};

/// How Envoy is started by [`crate::Host::start_envoy_with`].
#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    /// Admin port, bound on `127.0.0.1` inside the host's namespace. It is merged into the
    /// config with `--config-yaml`, so the YAML needs no `admin:` section.
    pub admin_port: u16,
    /// `--concurrency` (worker threads); 1 keeps small machines responsive.
    pub concurrency: u32,
    /// `--log-level`.
    pub log_level: String,
    /// Extra command-line arguments (not `--concurrency`, `--log-level`, `-c`,
    /// `--config-yaml` or `--disable-hot-restart`, which the kit sets).
    pub extra_args: Vec<String>,
    /// How long to wait for the admin `/ready` endpoint to answer `LIVE`.
    pub ready_timeout: Duration,
}

impl EnvoyOptions {
    /// Defaults: concurrency 1, log level `info`, 30 s to become ready.
    pub fn new(admin_port: u16) -> Self {
        Self {
            admin_port,
            concurrency: 1,
            log_level: "info".into(),
            extra_args: Vec::new(),
            ready_timeout: Duration::from_secs(30),
        }
    }

    /// The command-line arguments for a config written to `config_path`.
    pub fn args(&self, config_path: &Path) -> Vec<String> {
        let mut args = vec![
            "-c".to_owned(),
            config_path.display().to_string(),
            "--config-yaml".to_owned(),
            admin_yaml(self.admin_port),
            // Several Envoys share one machine: hot restart would make them fight over the
            // same shared-memory region and domain socket.
            "--disable-hot-restart".to_owned(),
            "--concurrency".to_owned(),
            self.concurrency.to_string(),
            "--log-level".to_owned(),
            self.log_level.clone(),
        ];
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// The bootstrap fragment that puts Envoy's admin interface on `127.0.0.1:port`.
pub fn admin_yaml(port: u16) -> String {
    format!("admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}")
}

/// A running Envoy started by [`crate::Host::start_envoy`].
#[derive(Debug, Clone)]
pub struct Envoy {
    pub(crate) process: Process,
    pub(crate) admin: SocketAddr,
    pub(crate) config_path: PathBuf,
}

impl Envoy {
    /// The Envoy process (log, pid, stop).
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// The admin address (reachable from inside the host's namespace).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// Where its bootstrap config was written.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// `GET path` on the admin interface (e.g. `/ready`, `/clusters`, `/config_dump`).
    pub fn admin_get(&self, path: &str) -> Result<HttpResponse> {
        http_get(
            self.process.netns(),
            self.admin,
            path,
            Duration::from_secs(5),
        )
    }

    /// Waits until `/ready` answers `200 LIVE`; fails early (with its log) if Envoy exits.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        poll_until(
            &format!(
                "Envoy {:?} to be ready (admin {})",
                self.process.name(),
                self.admin
            ),
            timeout,
            || {
                self.process.ensure_running()?;
                Ok(match self.admin_get("/ready") {
                    Ok(r) if r.status == 200 => Attempt::Ready(()),
                    Ok(r) => Attempt::NotYet(format!("/ready: {} {}", r.status, r.body.trim())),
                    Err(e) => Attempt::NotYet(e.to_string()),
                })
            },
        )
    }
}

/// The admin address for `port`.
pub(crate) fn admin_addr(port: u16) -> SocketAddr {
    (Ipv4Addr::LOCALHOST, port).into()
}
