//! The scenario lab: named hosts (network namespaces) on named networks (bridges in a
//! per-lab "switch" namespace), processes run in them, and teardown on drop.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::host::{Host, Interface};
use crate::netns::{self, ip};
use crate::process::{self, CommandOutput, Process};
use crate::sys;

/// Prefix of every namespace the kit creates: `weft<pid>-<n>-…`.
pub const NETNS_PREFIX: &str = "weft";
/// Set to `1` to keep every lab's directory (logs, configs) even when the test passes.
pub const KEEP_ENV: &str = "WEFT_KEEP_LABS";
/// Lines of each log printed when a test fails.
const TAIL_LINES: usize = 40;
/// Grace period between SIGTERM and SIGKILL on teardown.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// Hosts get addresses from `.10` upwards on each network, in joining order.
const FIRST_HOST_OCTET: u32 = 10;

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);
static STALE_CLEANUP: Once = Once::new();

/// A scenario: network namespaces, bridges, processes and a directory for logs and configs.
///
/// Dropping the lab tears everything down: processes (whole process groups) are stopped, the
/// namespaces deleted, and the directory removed — unless the thread is panicking (a failed
/// test), in which case the tail of every log is printed and the directory is kept and named.
pub struct Lab {
    pub(crate) inner: Arc<LabInner>,
}

pub(crate) struct LabInner {
    pub(crate) id: String,
    pub(crate) dir: PathBuf,
    switch_ns: String,
    state: Mutex<LabState>,
}

#[derive(Default)]
struct LabState {
    networks: Vec<NetworkState>,
    hosts: Vec<String>,
    host_names: Vec<String>,
    processes: Vec<Process>,
    keep_dir: bool,
    /// Teardown has begun (on drop or on a signal).
    closed: bool,
}

struct NetworkState {
    name: String,
    hosts_joined: u32,
}

/// A network: a /24 from the benchmark range 198.18.0.0/15 (RFC 2544), one per network in
/// creation order (`198.18.0.0/24`, `198.18.1.0/24`, …), switched by a bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub(crate) name: String,
    pub(crate) index: u32,
    pub(crate) subnet: Ipv4Addr,
}

impl Network {
    /// The name it was created with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its network address (`198.18.N.0`).
    pub fn subnet(&self) -> Ipv4Addr {
        self.subnet
    }

    /// Its prefix length (24).
    pub fn prefix_len(&self) -> u8 {
        24
    }

    /// Its CIDR, e.g. `198.18.1.0/24` (for routes).
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.subnet, self.prefix_len())
    }

    /// The address `.n` in this network.
    pub fn addr(&self, n: u8) -> Ipv4Addr {
        let [a, b, c, _] = self.subnet.octets();
        Ipv4Addr::new(a, b, c, n)
    }
}

impl Lab {
    /// Creates an empty lab. `label` (usually the test's name) names its directory under the
    /// system temp dir. Fails with a clear message if we are not root or `ip netns` is missing
    /// (see [`netns::check_environment`]).
    pub fn new(label: &str) -> Result<Lab> {
        netns::check_environment()?;
        STALE_CLEANUP.call_once(remove_stale_namespaces);
        let id = format!(
            "{NETNS_PREFIX}{}-{}",
            std::process::id(),
            LAB_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(format!("{id}-{}", sanitize(label)));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let switch_ns = format!("{id}-sw");
        let lab = Lab {
            inner: Arc::new(LabInner {
                id,
                dir,
                switch_ns: switch_ns.clone(),
                state: Mutex::new(LabState::default()),
            }),
        };
        netns::add_netns(&switch_ns)?;
        lab.inner.state().hosts.push(switch_ns);
        Ok(lab)
    }

    /// The lab's id (`weft<pid>-<n>`), the prefix of all its namespaces.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The lab's directory: process logs (`<name>.log`), `commands.log`, Envoy configs.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The namespace holding the lab's bridges.
    pub fn switch_netns(&self) -> &str {
        &self.inner.switch_ns
    }

    /// All namespaces the lab has created (switch and hosts).
    pub fn namespaces(&self) -> Vec<String> {
        self.inner.state().hosts.clone()
    }

    /// All processes started in the lab.
    pub fn processes(&self) -> Vec<Process> {
        self.inner.state().processes.clone()
    }

    /// Keeps the lab's directory after drop even if the test passes.
    pub fn keep_dir(&self) {
        self.inner.state().keep_dir = true;
    }

    /// Creates a network with the next free /24 of 198.18.0.0/15 and its bridge.
    pub fn network(&self, name: &str) -> Result<Network> {
        validate_name("network", name)?;
        let index = {
            let mut state = self.inner.state();
            if state.closed {
                return Err(Error::new("the lab is being torn down"));
            }
            if state.networks.iter().any(|n| n.name == name) {
                return Err(Error::new(format!("network {name:?} already exists")));
            }
            let index = state.networks.len() as u32;
            if index >= 512 {
                return Err(Error::new("at most 512 networks fit in 198.18.0.0/15"));
            }
            state.networks.push(NetworkState {
                name: name.to_owned(),
                hosts_joined: 0,
            });
            index
        };
        let bridge = format!("br{index}");
        let sw = &self.inner.switch_ns;
        ip(&["-n", sw, "link", "add", &bridge, "type", "bridge"])?;
        ip(&["-n", sw, "link", "set", &bridge, "up"])?;
        Ok(Network {
            name: name.to_owned(),
            index,
            subnet: Ipv4Addr::new(198, 18 + (index / 256) as u8, (index % 256) as u8, 0),
        })
    }

    /// Creates a host attached to `networks` (interface `eth<i>` on `networks[i]`), with the
    /// next free address `.10`, `.11`, … on each.
    pub fn host(&self, name: &str, networks: &[&Network]) -> Result<Host> {
        validate_name("host", name)?;
        if name == "sw" {
            return Err(Error::new(
                "host name \"sw\" is reserved for the lab's switch",
            ));
        }
        let netns = format!("{}-{name}", self.inner.id);
        let (host_index, addrs) = {
            let mut state = self.inner.state();
            if state.closed {
                return Err(Error::new("the lab is being torn down"));
            }
            if state.host_names.iter().any(|h| h == name) {
                return Err(Error::new(format!("host {name:?} already exists")));
            }
            let mut addrs = Vec::new();
            for net in networks {
                let joined = &mut state.networks[net.index as usize].hosts_joined;
                let octet = FIRST_HOST_OCTET + *joined;
                if octet > 254 {
                    return Err(Error::new(format!("network {:?} is full", net.name)));
                }
                *joined += 1;
                addrs.push(net.addr(octet as u8));
            }
            state.host_names.push(name.to_owned());
            state.hosts.push(netns.clone());
            (state.host_names.len() - 1, addrs)
        };
        netns::add_netns(&netns)?;
        let sw = &self.inner.switch_ns;
        let mut interfaces = Vec::new();
        for (i, (net, addr)) in networks.iter().zip(addrs).enumerate() {
            let inside = format!("eth{i}");
            let outside = format!("h{host_index}n{}", net.index);
            let bridge = format!("br{}", net.index);
            ip(&[
                "-n", sw, "link", "add", &outside, "type", "veth", "peer", "name", &inside,
                "netns", &netns,
            ])?;
            ip(&["-n", sw, "link", "set", &outside, "master", &bridge, "up"])?;
            let cidr = format!("{addr}/{}", net.prefix_len());
            ip(&["-n", &netns, "addr", "add", &cidr, "dev", &inside])?;
            ip(&["-n", &netns, "link", "set", &inside, "up"])?;
            interfaces.push(Interface {
                network: net.name.clone(),
                name: inside,
                addr,
            });
        }
        Ok(Host {
            lab: self.inner.clone(),
            name: name.to_owned(),
            netns,
            interfaces,
        })
    }

    /// Prints the tail of every process log (and of `commands.log`) to stderr.
    pub fn dump_logs(&self) {
        self.inner.dump_logs();
    }
}

impl fmt::Debug for Lab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lab")
            .field("id", &self.inner.id)
            .field("dir", &self.inner.dir)
            .finish()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let failed = thread::panicking();
        if failed {
            self.inner.dump_logs();
        }
        self.inner.close(failed);
    }
}

impl LabInner {
    fn state(&self) -> MutexGuard<'_, LabState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tears everything down, then removes the directory unless it is kept (`keep`, the lab's
    /// own flag or `$WEFT_KEEP_LABS=1`), in which case it is named.
    pub(crate) fn close(&self, keep: bool) {
        self.teardown();
        let keep =
            keep || self.state().keep_dir || std::env::var_os(KEEP_ENV).is_some_and(|v| v == "1");
        if keep {
            eprintln!(
                "weft lab {}: logs and configs kept in {}",
                self.id,
                self.dir.display()
            );
        } else if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!(
                "weft lab {}: cannot remove {}: {e}",
                self.id,
                self.dir.display()
            );
        }
    }

    fn dump_logs(&self) {
        let processes = self.state().processes.clone();
        eprintln!("==== weft lab {} ({}) ====", self.id, self.dir.display());
        for p in &processes {
            let status = match p.exit_status() {
                Some(s) => s.to_string(),
                None => "running".into(),
            };
            eprintln!(
                "---- {} in {} (pid {}, {status}): last {TAIL_LINES} lines of {} ----\n{}",
                p.name(),
                p.netns(),
                p.pid(),
                p.log_path().display(),
                p.log_tail(TAIL_LINES)
            );
        }
        let commands = self.dir.join("commands.log");
        if let Ok(text) = fs::read_to_string(&commands) {
            eprintln!(
                "---- last {TAIL_LINES} lines of {} ----\n{}",
                commands.display(),
                process::tail(&text, TAIL_LINES)
            );
        }
        eprintln!("==== end of weft lab {} ====", self.id);
    }

    fn teardown(&self) {
        let (processes, namespaces) = {
            let mut state = self.state();
            state.closed = true;
            (
                std::mem::take(&mut state.processes),
                std::mem::take(&mut state.hosts),
            )
        };
        for p in &processes {
            p.signal(sys::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline && processes.iter().any(Process::is_running) {
            thread::sleep(Duration::from_millis(10));
        }
        for p in &processes {
            p.kill();
        }
        // Hosts first, the switch (created first) last.
        for ns in namespaces.iter().rev() {
            if let Err(e) = netns::delete_netns(ns) {
                eprintln!("weft lab {}: {e}", self.id);
            }
        }
    }

    /// Registers a process for teardown; one started after teardown began is stopped at once.
    pub(crate) fn register(&self, process: Process) {
        let mut state = self.state();
        if state.closed {
            drop(state);
            process.kill();
        } else {
            state.processes.push(process);
        }
    }

    /// A log path for a process called `name` that no other process of the lab uses.
    pub(crate) fn log_path(&self, name: &str) -> PathBuf {
        let base = sanitize(name);
        let mut candidate = self.dir.join(format!("{base}.log"));
        let mut n = 2;
        while candidate.exists() {
            candidate = self.dir.join(format!("{base}-{n}.log"));
            n += 1;
        }
        candidate
    }

    pub(crate) fn record_command(&self, host: &str, result: &Result<CommandOutput>) {
        let entry = match result {
            Ok(out) => format!("[{host}] {out}\n"),
            Err(e) => format!("[{host}] {e}\n"),
        };
        let path = self.dir.join("commands.log");
        let _guard = self.state();
        if let Ok(mut file) = OpenOptions::new().create(true).append(true).open(path) {
            let _ = file.write_all(entry.as_bytes());
        }
    }
}

/// Host and network names: 1–32 characters of `[A-Za-z0-9_-]`.
fn validate_name(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::new(format!(
            "{kind} name {name:?} must be 1-32 characters of letters, digits, '-' and '_'"
        )))
    }
}

/// Makes `text` safe as a file-name component.
pub(crate) fn sanitize(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if cleaned.is_empty() || cleaned.starts_with('.') {
        format!("_{cleaned}")
    } else {
        cleaned
    }
}

/// Deletes namespaces left by kit processes that no longer exist (e.g. a test run killed
/// with SIGKILL, which runs no destructors).
fn remove_stale_namespaces() {
    let Ok(names) = netns::list_netns() else {
        return;
    };
    let me = std::process::id();
    for name in names {
        let Some(pid) = owner_pid(&name) else {
            continue;
        };
        if pid != me && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = netns::delete_netns(&name);
        }
    }
}

/// The pid in a kit namespace name `weft<pid>-<n>-…`.
fn owner_pid(netns: &str) -> Option<u32> {
    let rest = netns.strip_prefix(NETNS_PREFIX)?;
    let (pid, rest) = rest.split_once('-')?;
    let (counter, _) = rest.split_once('-')?;
    counter.parse::<u32>().ok()?;
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_parses_only_kit_names() {
        assert_eq!(owner_pid("weft123-4-gateway"), Some(123));
        assert_eq!(owner_pid("weft123-4-sw"), Some(123));
        assert_eq!(owner_pid("weftx-4-a"), None);
        assert_eq!(owner_pid("weft123-a"), None);
        assert_eq!(owner_pid("other"), None);
    }

    #[test]
    fn names_are_validated_and_sanitized() {
        assert!(validate_name("host", "gw-1").is_ok());
        assert!(validate_name("host", "").is_err());
        assert!(validate_name("host", "a/b").is_err());
        assert_eq!(sanitize("a b/c"), "a_b_c");
        assert_eq!(sanitize(".."), "_..");
    }

    #[test]
    fn networks_have_predictable_addresses() {
        let net = Network {
            name: "n".into(),
            index: 257,
            subnet: Ipv4Addr::new(198, 19, 1, 0),
        };
        assert_eq!(net.addr(10), Ipv4Addr::new(198, 19, 1, 10));
        assert_eq!(net.cidr(), "198.19.1.0/24");
    }
}
