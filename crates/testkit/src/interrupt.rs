//! Tearing a lab down when the program is interrupted (Ctrl-C, `kill`, a closed terminal): the
//! lab's processes run in their own process groups, so they never see the terminal's SIGINT and
//! would outlive the program, and a program killed by a signal runs no destructors.

use crate::error::{Error, Result};
use crate::lab::Lab;
use crate::sys;
use std::io::Read;
use std::thread;

/// The signals that stop the program: SIGINT, SIGTERM, SIGHUP.
const STOP_SIGNALS: [i32; 3] = [sys::SIGINT, sys::SIGTERM, sys::SIGHUP];

impl Lab {
    /// From now on, SIGINT, SIGTERM or SIGHUP makes a watcher thread call `announce` with the
    /// signal's name, tear the lab down (processes stopped, namespaces deleted, the directory
    /// removed unless kept), say so on stderr and exit with 128 + the signal's number. Once per
    /// process.
    pub fn tear_down_on_signals(&self, announce: impl FnOnce(&str) + Send + 'static) -> Result<()> {
        let mut pipe = sys::signals_to_pipe(&STOP_SIGNALS)
            .map_err(|e| Error::io("handle SIGINT/SIGTERM/SIGHUP", e))?;
        let inner = self.inner.clone();
        thread::Builder::new()
            .name("weft-lab-signals".into())
            .spawn(move || {
                let mut sig = [0u8];
                if pipe.read_exact(&mut sig).is_err() {
                    return;
                }
                let sig = i32::from(sig[0]);
                let name = signal_name(sig);
                announce(name);
                inner.close(false);
                eprintln!("weft lab {}: torn down after {name}", inner.id);
                std::process::exit(128 + sig);
            })
            .map_err(|e| Error::io("start the signal watcher", e))?;
        Ok(())
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        sys::SIGINT => "SIGINT",
        sys::SIGTERM => "SIGTERM",
        sys::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}
