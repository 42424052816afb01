//! The few Linux system calls the kit needs that std does not wrap (kept here so the crate
//! needs no `libc` dependency).

use std::ffi::c_int;
use std::fs::File;
use std::io::{self, PipeReader};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

/// `SIGHUP`.
pub(crate) const SIGHUP: c_int = 1;
/// `SIGINT`.
pub(crate) const SIGINT: c_int = 2;
/// `SIGKILL`.
pub(crate) const SIGKILL: c_int = 9;
/// `SIGTERM`.
pub(crate) const SIGTERM: c_int = 15;
/// `CLONE_NEWNET` from `<sched.h>`.
const CLONE_NEWNET: c_int = 0x4000_0000;

unsafe extern "C" {
    fn setns(fd: c_int, nstype: c_int) -> c_int;
    fn signal(sig: c_int, handler: extern "C" fn(c_int)) -> usize;
    fn write(fd: c_int, buf: *const u8, count: usize) -> isize;
    fn __errno_location() -> *mut c_int;
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

/// The write end of the pipe [`signals_to_pipe`] sends signals into (-1: none yet).
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

/// The signal handler: writes the signal's number to the pipe (async-signal-safe: one `write`,
/// errno preserved).
extern "C" fn on_signal(sig: c_int) {
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = sig as u8;
        // SAFETY: errno is this thread's; `byte` outlives the write; a failed write is ignored.
        unsafe {
            let errno = *__errno_location();
            let _ = write(fd, &byte, 1);
            *__errno_location() = errno;
        }
    }
}

/// From now on, each of `signals` writes its number (one byte) into the returned pipe instead
/// of running its default action. Handlers, unlike ignored or blocked signals, are not passed on
/// to the programs the process starts (exec resets them), and the pipe is close-on-exec. Once per
/// process.
pub(crate) fn signals_to_pipe(signals: &[c_int]) -> io::Result<PipeReader> {
    let (reader, writer) = std::io::pipe()?;
    let fd = writer.into_raw_fd();
    if SIGNAL_PIPE
        .compare_exchange(-1, fd, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        // SAFETY: `fd` was just taken from `writer` and is owned here.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "signals are already sent to a pipe",
        ));
    }
    for &sig in signals {
        // SAFETY: `on_signal` is async-signal-safe; SIG_ERR is (sighandler_t)-1.
        if unsafe { signal(sig, on_signal) } == usize::MAX {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(reader)
}
