//! Network namespaces through `ip netns`: create, delete, list, and run code inside one.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::sys;

/// Where `ip netns` keeps its namespace handles.
const NETNS_DIRS: [&str; 2] = ["/run/netns", "/var/run/netns"];

/// Serialises `ip netns add`/`del` within this process: the first `ip netns add` on a machine
/// sets up the `/run/netns` mount, which races when done concurrently.
static NETNS_LOCK: Mutex<()> = Mutex::new(());

/// Runs `ip ARGS` in the root namespace and returns its stdout, or an error quoting stderr.
pub fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| Error::io("cannot run `ip` (is iproute2 installed and on PATH?)", e))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::new(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Checks that scenario tests can run here: we are root and `ip netns` works.
///
/// Scenario tests call this (through [`crate::Lab::new`]) and FAIL with its message otherwise;
/// they never skip silently.
pub fn check_environment() -> Result<()> {
    let uid = sys::effective_uid();
    if uid != 0 {
        return Err(Error::new(format!(
            "weft scenario tests need root to create network namespaces (effective uid is {uid}); \
             run them as root (CI does)"
        )));
    }
    ip(&["netns", "list"]).map_err(|e| {
        Error::new(format!(
            "weft scenario tests need `ip netns` (iproute2) with network namespace support: {e}"
        ))
    })?;
    Ok(())
}

/// Names of all network namespaces on the machine (`ip netns list`).
pub fn list_netns() -> Result<Vec<String>> {
    Ok(ip(&["netns", "list"])?
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Whether the named network namespace exists.
pub fn netns_exists(name: &str) -> bool {
    netns_path(name).is_some()
}

fn netns_path(name: &str) -> Option<PathBuf> {
    NETNS_DIRS
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.exists())
}

/// Creates a network namespace and brings up its `lo`.
pub(crate) fn add_netns(name: &str) -> Result<()> {
    {
        let _guard = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        ip(&["netns", "add", name])?;
    }
    ip(&["-n", name, "link", "set", "lo", "up"])?;
    Ok(())
}

/// Pids of the processes whose network namespace is `name` (`ip netns pids`).
pub fn pids_in_netns(name: &str) -> Vec<u32> {
    ip(&["netns", "pids", name])
        .map(|out| out.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Kills every process left in the namespace, then deletes it.
pub(crate) fn delete_netns(name: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = pids_in_netns(name);
        if pids.is_empty() || Instant::now() > deadline {
            break;
        }
        for pid in pids {
            let _ = sys::signal_pid(pid, sys::SIGKILL);
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _guard = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    ip(&["netns", "del", name]).map(|_| ())
}

/// Runs `f` on a fresh thread that has entered the network namespace `netns`, and returns its
/// result. Sockets created inside `f` live in that namespace. A panic in `f` is propagated.
pub fn run_in_netns<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    let path = netns_path(netns)
        .ok_or_else(|| Error::new(format!("network namespace {netns:?} does not exist")))?;
    let file = File::open(&path).map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    thread::scope(|scope| {
        let worker = scope.spawn(move || {
            sys::enter_netns(&file)
                .map_err(|e| Error::io(format!("setns into network namespace {netns:?}"), e))?;
            Ok(f())
        });
        match worker.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}
