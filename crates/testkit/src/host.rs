//! A host of a lab: a network namespace with interfaces on the lab's networks, where
//! processes, commands, waits and Envoy run.

use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::binaries::{envoy_binary, test_http_binary};
use crate::envoy::{Envoy, EnvoyOptions, admin_addr};
use crate::error::{Error, Result};
use crate::http::{HttpResponse, http_get};
use crate::lab::{LabInner, Network, sanitize};
use crate::netns::{ip, run_in_netns};
use crate::process::{self, CommandOutput, Process, command_from_argv, describe, in_netns};
use crate::wait::{self, connectable};

/// One interface of a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// The network it is attached to.
    pub network: String,
    /// Its name inside the host (`eth0`, `eth1`, … in the order the networks were given).
    pub name: String,
    /// Its address (with the network's /24).
    pub addr: Ipv4Addr,
}

/// A host: a network namespace with `lo` up and one interface per network it joined.
///
/// Cheap to clone. Processes started through it are registered with its [`crate::Lab`] and stopped
/// when the lab is dropped.
#[derive(Clone)]
pub struct Host {
    pub(crate) lab: Arc<LabInner>,
    pub(crate) name: String,
    pub(crate) netns: String,
    pub(crate) interfaces: Vec<Interface>,
}

impl Host {
    /// The name it was created with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its network namespace (for `ip netns exec` / `ip -n`).
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// Its interfaces, one per network, in the order given at creation.
    pub fn interfaces(&self) -> &[Interface] {
        &self.interfaces
    }

    /// Its address on its first network.
    ///
    /// # Panics
    /// If the host joined no network.
    pub fn ip(&self) -> Ipv4Addr {
        self.interfaces
            .first()
            .unwrap_or_else(|| panic!("host {:?} has no network interface", self.name))
            .addr
    }

    /// Its address on `network`.
    ///
    /// # Panics
    /// If the host is not on that network.
    pub fn ip_on(&self, network: &Network) -> Ipv4Addr {
        self.interfaces
            .iter()
            .find(|i| i.network == network.name)
            .unwrap_or_else(|| panic!("host {:?} is not on network {:?}", self.name, network.name))
            .addr
    }

    /// Adds a route to `destination` (a CIDR such as `198.18.1.0/24`) via `gateway`.
    pub fn add_route(&self, destination: &str, gateway: Ipv4Addr) -> Result<()> {
        let gw = gateway.to_string();
        ip(&["-n", &self.netns, "route", "add", destination, "via", &gw]).map(|_| ())
    }

    /// Sets the default route via `gateway`.
    pub fn set_default_route(&self, gateway: Ipv4Addr) -> Result<()> {
        self.add_route("default", gateway)
    }

    /// Turns on IPv4 forwarding in this host (for gateways between networks).
    pub fn enable_forwarding(&self) -> Result<()> {
        self.run(
            &["sysctl", "-w", "net.ipv4.ip_forward=1"],
            wait::DEFAULT_TIMEOUT,
        )?
        .checked()
        .map(|_| ())
    }

    /// Starts `argv` in this host as a long-running process called `name` (its output goes to
    /// `<lab dir>/<name>.log`).
    pub fn spawn<S: AsRef<OsStr>>(&self, name: &str, argv: &[S]) -> Result<Process> {
        self.spawn_command(name, &command_from_argv(argv))
    }

    /// Like [`Host::spawn`] for a prepared `Command` (program, args, env changes and working
    /// directory are used; stdio is replaced by the log file).
    pub fn spawn_command(&self, name: &str, cmd: &Command) -> Result<Process> {
        let log_path = self.lab.log_path(name);
        let process = Process::spawn(name, &self.netns, in_netns(&self.netns, cmd), &log_path)?;
        self.lab.register(process.clone());
        Ok(process)
    }

    /// Runs `argv` in this host to completion and returns its output (whatever its exit
    /// status); fails if it runs longer than `timeout`. Also appended to `commands.log`.
    pub fn run<S: AsRef<OsStr>>(&self, argv: &[S], timeout: Duration) -> Result<CommandOutput> {
        self.run_command(&command_from_argv(argv), timeout)
    }

    /// Like [`Host::run`] for a prepared `Command`.
    pub fn run_command(&self, cmd: &Command, timeout: Duration) -> Result<CommandOutput> {
        let result = process::run_to_completion(in_netns(&self.netns, cmd), describe(cmd), timeout);
        self.lab.record_command(&self.name, &result);
        result
    }

    /// Runs `curl -sS --max-time <max_time> ARGS` in this host (`args` ends with the URL).
    pub fn curl<S: AsRef<OsStr>>(&self, args: &[S], max_time: Duration) -> Result<CommandOutput> {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "--max-time",
            &format!("{:.3}", max_time.as_secs_f64()),
        ])
        .args(args);
        self.run_command(&cmd, max_time + Duration::from_secs(5))
    }

    /// Runs `f` on a thread inside this host's namespace (e.g. to open sockets there).
    pub fn with_netns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        run_in_netns(&self.netns, f)
    }

    /// Waits until a TCP connection to `addr` from this host succeeds.
    pub fn wait_for_tcp(&self, addr: SocketAddr, timeout: Duration) -> Result<()> {
        wait::wait_for_tcp(&self.netns, addr, timeout)
    }

    /// Waits until a socket in this host is bound to UDP `addr`.
    pub fn wait_for_udp(&self, addr: SocketAddr, timeout: Duration) -> Result<()> {
        wait::wait_for_udp(&self.netns, addr, timeout)
    }

    /// `GET path` on `addr` from this host with the kit's small HTTP client.
    pub fn http_get(
        &self,
        addr: SocketAddr,
        path: &str,
        timeout: Duration,
    ) -> Result<HttpResponse> {
        http_get(&self.netns, addr, path, timeout)
    }

    /// Starts the kit's test HTTP server (`weft-test-http`) on `listen`, answering as `name`
    /// and echoing the request headers `echo_headers`; returns once it accepts connections.
    pub fn start_http_server(
        &self,
        name: &str,
        listen: SocketAddr,
        echo_headers: &[&str],
    ) -> Result<Process> {
        let mut cmd = Command::new(test_http_binary()?);
        cmd.args(["--name", name, "--listen", &listen.to_string()]);
        for header in echo_headers {
            cmd.args(["--echo-header", header]);
        }
        let process = self.spawn_command(name, &cmd)?;
        self.wait_for_tcp(connectable(listen), wait::DEFAULT_TIMEOUT)
            .or_else(|e| process.ensure_running().and(Err(e)))?;
        Ok(process)
    }

    /// Writes `config_yaml` to `<lab dir>/<name>.yaml` and starts Envoy on it with the admin
    /// interface on `127.0.0.1:admin_port` and `--disable-hot-restart`; returns once `/ready`
    /// answers `LIVE`.
    pub fn start_envoy(&self, name: &str, config_yaml: &str, admin_port: u16) -> Result<Envoy> {
        self.start_envoy_with(name, config_yaml, &EnvoyOptions::new(admin_port))
    }

    /// Like [`Host::start_envoy`] with explicit options.
    pub fn start_envoy_with(
        &self,
        name: &str,
        config_yaml: &str,
        options: &EnvoyOptions,
    ) -> Result<Envoy> {
        let binary = envoy_binary()?;
        let config_path = self.lab.dir.join(format!("{}.yaml", sanitize(name)));
        fs::write(&config_path, config_yaml)
            .map_err(|e| Error::io(format!("write {}", config_path.display()), e))?;
        let mut cmd = Command::new(binary);
        cmd.args(options.args(&config_path));
        let process = self.spawn_command(name, &cmd)?;
        let envoy = Envoy {
            process,
            admin: admin_addr(options.admin_port),
            config_path,
        };
        envoy.wait_ready(options.ready_timeout).map_err(|e| {
            if !envoy.process.is_running() {
                return e; // the message already holds the log's tail
            }
            Error::new(format!(
                "{e}\nlast lines of {}:\n{}",
                envoy.process.log_path().display(),
                envoy.process.log_tail(30)
            ))
        })?;
        Ok(envoy)
    }
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("name", &self.name)
            .field("netns", &self.netns)
            .field("interfaces", &self.interfaces)
            .finish()
    }
}
