//! The demo's steps, each narrating what it does and checking what it shows.

pub mod cleanup;
mod cluster;
mod dns;
mod forum;
mod strict;
mod traffic;

use crate::narrate::{command, output, short};
use weft_testkit::Host;
use weft_testkit::Process;
use weft_testkit::seed_lab::stats;

/// `Err(message)` unless `cond`.
fn check(cond: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(message()) }
}

/// A kit error as a step error.
fn kit<T>(r: weft_testkit::Result<T>) -> Result<T, String> {
    r.map_err(|e| e.to_string())
}

/// How a long-running process was started, as typed in its host (`... &`).
fn started(p: &Process) -> String {
    let line = p.command_line();
    let line = line
        .strip_prefix(&format!("ip netns exec {} ", p.netns()))
        .unwrap_or(line);
    format!("{} &", short(line))
}

/// Shows and returns the Envoy `/stats` counters of `host` under `prefix` that end with one of
/// `names` (`curl -s localhost:15000/stats | grep ...`).
fn show_stats(host: &Host, prefix: &str, names: &[&str]) -> Vec<String> {
    command(
        host.name(),
        &format!(
            "curl -s localhost:15000/stats | grep -E '^{}\\.({})'",
            prefix.replace('|', "\\|"),
            names.join("|")
        ),
    );
    let lines: Vec<String> = stats(host, prefix)
        .into_iter()
        .filter(|l| {
            names
                .iter()
                .any(|n| l.starts_with(&format!("{prefix}.{n}:")))
        })
        .collect();
    output(&lines.join("\n"), 10);
    lines
}

/// The lines of `text` containing any of `needles`.
fn lines_with(text: &str, needles: &[&str]) -> String {
    text.lines()
        .filter(|l| needles.iter().any(|n| l.contains(n)))
        .collect::<Vec<_>>()
        .join("\n")
}
