//! The few Linux system calls the kit needs that std does not wrap (kept here so the crate
//! needs no `libc` dependency).

use std::ffi::c_int;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `SIGKILL`.
pub(crate) const SIGKILL: c_int = 9;
/// `SIGTERM`.
pub(crate) const SIGTERM: c_int = 15;
/// `CLONE_NEWNET` from `<sched.h>`.
const CLONE_NEWNET: c_int = 0x4000_0000;

unsafe extern "C" {
    fn setns(fd: c_int, nstype: c_int) -> c_int;
    fn kill(pid: c_int, sig: c_int) -> c_int;
    safe fn geteuid() -> u32;
}

/// Moves the calling thread into the network namespace opened as `ns`.
pub(crate) fn enter_netns(ns: &File) -> io::Result<()> {
    // SAFETY: `ns` is an open file descriptor for the lifetime of the call; setns only changes
    // the calling thread's network namespace.
    let rc = unsafe { setns(ns.as_raw_fd(), CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sends `sig` to a single process.
pub(crate) fn signal_pid(pid: u32, sig: c_int) -> io::Result<()> {
    send(pid_arg(pid)?, sig)
}

/// Sends `sig` to every process of the process group `pgid`.
pub(crate) fn signal_group(pgid: u32, sig: c_int) -> io::Result<()> {
    send(-pid_arg(pgid)?, sig)
}

fn pid_arg(pid: u32) -> io::Result<c_int> {
    match c_int::try_from(pid) {
        Ok(p) if p > 1 => Ok(p),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to signal pid {pid}"),
        )),
    }
}

fn send(target: c_int, sig: c_int) -> io::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    let rc = unsafe { kill(target, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The effective user id of this process.
pub(crate) fn effective_uid() -> u32 {
    geteuid()
}
