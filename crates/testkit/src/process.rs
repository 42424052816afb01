//! Processes run inside a host's network namespace: long-running ones with their output in a
//! log file ([`Process`]), and commands run to completion with a timeout ([`CommandOutput`]).

use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::sys;
use crate::wait::{Attempt, poll_until};

/// Builds the command that runs `cmd` (program, arguments, environment changes and working
/// directory) inside the network namespace `netns` via `ip netns exec`.
///
/// `Command::env_clear` cannot be observed on a `Command` and is therefore not carried over.
pub fn in_netns(netns: &str, cmd: &Command) -> Command {
    let mut wrapped = Command::new("ip");
    wrapped.args(["netns", "exec", netns]);
    wrapped.arg(cmd.get_program()).args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}

/// Builds a `Command` from an argument vector (`argv[0]` is the program).
///
/// # Panics
/// If `argv` is empty.
pub fn command_from_argv<S: AsRef<OsStr>>(argv: &[S]) -> Command {
    let (program, args) = argv.split_first().expect("argv must name a program");
    let mut cmd = Command::new(program);
    cmd.args(args);
    cmd
}

/// Renders a command line for messages and logs.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let a = a.to_string_lossy();
            if a.is_empty() || a.contains(char::is_whitespace) {
                format!("{a:?}")
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A long-running process started in a host, with stdout and stderr going to one log file.
///
/// Cheap to clone; all clones refer to the same process. The process runs in its own process
/// group, and the [`crate::Lab`] that started it kills that group on teardown.
#[derive(Clone)]
pub struct Process {
    inner: Arc<ProcessInner>,
}

struct ProcessInner {
    name: String,
    netns: String,
    pid: u32,
    log_path: PathBuf,
    command_line: String,
    state: Mutex<ProcessState>,
}

struct ProcessState {
    child: Child,
    status: Option<ExitStatus>,
}

impl Process {
    /// Spawns `cmd` (already wrapped for its namespace) with output appended to `log_path`.
    pub(crate) fn spawn(
        name: &str,
        netns: &str,
        mut cmd: Command,
        log_path: &Path,
    ) -> Result<Process> {
        let command_line = describe(&cmd);
        let log = File::create(log_path)
            .map_err(|e| Error::io(format!("create log file {}", log_path.display()), e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| Error::io("duplicate log file handle", e))?;
        cmd.stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("start process {name:?} ({command_line})"), e))?;
        Ok(Process {
            inner: Arc::new(ProcessInner {
                name: name.to_owned(),
                netns: netns.to_owned(),
                pid: child.id(),
                log_path: log_path.to_owned(),
                command_line,
                state: Mutex::new(ProcessState {
                    child,
                    status: None,
                }),
            }),
        })
    }

    /// The name given when the process was started (also the log file's stem).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.inner.pid
    }

    /// The network namespace it runs in.
    pub fn netns(&self) -> &str {
        &self.inner.netns
    }

    /// The file receiving its stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.inner.log_path
    }

    /// The command line it was started with.
    pub fn command_line(&self) -> &str {
        &self.inner.command_line
    }

    fn state(&self) -> MutexGuard<'_, ProcessState> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Its exit status if it has exited (never blocks).
    pub fn exit_status(&self) -> Option<ExitStatus> {
        let mut state = self.state();
        if state.status.is_none() {
            state.status = state.child.try_wait().ok().flatten();
        }
        state.status
    }

    /// Whether it is still running.
    pub fn is_running(&self) -> bool {
        self.exit_status().is_none()
    }

    /// `Ok` if it is running, otherwise an error with its exit status and the tail of its log.
    pub fn ensure_running(&self) -> Result<()> {
        match self.exit_status() {
            None => Ok(()),
            Some(status) => Err(Error::new(format!(
                "process {:?} ({}) exited with {status}; last lines of {}:\n{}",
                self.name(),
                self.command_line(),
                self.log_path().display(),
                self.log_tail(30)
            ))),
        }
    }

    /// Everything it has written so far (lossily decoded).
    pub fn log(&self) -> String {
        fs::read(self.log_path())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }

    /// Waits until its log contains `needle`; fails early if the process exits.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<()> {
        poll_until(
            &format!("{needle:?} in the log of process {:?}", self.name()),
            timeout,
            || {
                if self.log().contains(needle) {
                    return Ok(Attempt::Ready(()));
                }
                self.ensure_running()?;
                Ok(Attempt::NotYet("not logged yet".into()))
            },
        )
    }

    /// Sends `sig` to its whole process group, unless it has already been reaped.
    pub(crate) fn signal(&self, sig: i32) {
        let state = self.state();
        if state.status.is_none() {
            // The group leader is not reaped yet, so its pid (= pgid) cannot have been reused.
            let _ = sys::signal_group(self.pid(), sig);
        }
    }

    /// Asks it to stop (SIGTERM to its process group), waits up to `grace`, then kills the
    /// group (SIGKILL). Returns its exit status.
    pub fn stop(&self, grace: Duration) -> Option<ExitStatus> {
        self.signal(sys::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(10));
        }
        self.kill()
    }

    /// Kills its process group (SIGKILL) and reaps it. Returns its exit status.
    pub fn kill(&self) -> Option<ExitStatus> {
        self.signal(sys::SIGKILL);
        let mut state = self.state();
        if state.status.is_none() {
            state.status = state.child.wait().ok();
        }
        state.status
    }
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.inner.name)
            .field("pid", &self.inner.pid)
            .field("netns", &self.inner.netns)
            .field("log_path", &self.inner.log_path)
            .finish()
    }
}

/// The result of a command run to completion.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// The command line (for messages).
    pub command: String,
    /// How it exited.
    pub status: ExitStatus,
    /// Its standard output (lossily decoded).
    pub stdout: String,
    /// Its standard error (lossily decoded).
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl CommandOutput {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Its exit code, if it exited normally.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// `Ok(self)` if it succeeded, otherwise an error with its status and output.
    pub fn checked(self) -> Result<CommandOutput> {
        if self.success() {
            Ok(self)
        } else {
            Err(Error::new(format!("command failed: {self}")))
        }
    }
}

impl fmt::Display for CommandOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` exited with {} after {:.2?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command,
            self.status,
            self.elapsed,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Runs `cmd` (already wrapped for its namespace) to completion, capturing its output. Kills
/// its process group and fails if it is still running after `timeout`. `command` is the
/// description used in messages.
pub(crate) fn run_to_completion(
    mut cmd: Command,
    command: String,
    timeout: Duration,
) -> Result<CommandOutput> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io(format!("start `{command}`"), e))?;
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());
    let deadline = start + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => break None,
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(Error::io(format!("wait for `{command}`"), e)),
        }
    };
    if status.is_none() {
        let _ = sys::signal_group(child.id(), sys::SIGKILL);
        let _ = child.wait();
    }
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    match status {
        Some(status) => Ok(CommandOutput {
            command,
            status,
            stdout,
            stderr,
            elapsed: start.elapsed(),
        }),
        None => Err(Error::new(format!(
            "`{command}` did not finish within {timeout:?} and was killed\n--- stdout ---\n{}\n--- stderr ---\n{}",
            stdout.trim_end(),
            stderr.trim_end()
        ))),
    }
}

fn collect(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// The last `lines` lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
