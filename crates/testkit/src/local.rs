//! Helpers for processes run on this machine's loopback (benchmarks): free ports and binaries built
//! beside the running executable.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

/// `n` distinct free loopback ports (all held open while choosing, so they differ).
pub fn free_loopback_ports(n: usize) -> Result<Vec<SocketAddr>, String> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot find a free loopback port: {e}"))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map_err(|e| e.to_string()))
        .collect()
}

/// Binary `name`: `explicit` if given (it must exist), else the one built beside this executable;
/// `hint` says how to build it when it is missing.
pub fn binary_beside(name: &str, explicit: Option<&Path>, hint: &str) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(format!("--{name} {}: no such file", p.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate this executable: {e}"))?;
    let beside = exe.with_file_name(name);
    if beside.is_file() {
        Ok(beside)
    } else {
        Err(format!("no {name} beside {}; {hint}", exe.display()))
    }
}
