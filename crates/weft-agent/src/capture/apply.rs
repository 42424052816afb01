//! Installing and removing the rules with the host's `iptables` tools (nft- or legacy-backed,
//! whichever `iptables` is).
//!
//! Install is one `iptables-restore --noflush -w` transaction per address family that first
//! removes every `ISTIO_*` chain and every jump to one (whatever an earlier run, a crashed agent
//! or Istio left behind, istio#52961) and then creates the new rules: the host goes from the old
//! rules to the new ones at once, never through a state without capture, and a restart never
//! fails on leftovers. If that transaction is refused (say the state changed while we read it),
//! the leftovers are removed rule by rule, ignoring what is already gone, and the new rules are
//! restored on their own.

use super::rules::{CHAIN_PREFIX, Family, Ruleset};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long one `iptables*` command may take (istio#29249: a hung `iptables-restore` must not
/// hang the agent).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The command-line tools of one address family.
#[derive(Clone, Copy, Debug)]
pub struct Tools {
    pub iptables: &'static str,
    pub save: &'static str,
    pub restore: &'static str,
}

impl Tools {
    pub fn for_family(family: Family) -> Tools {
        match family {
            Family::V4 => Tools {
                iptables: "iptables",
                save: "iptables-save",
                restore: "iptables-restore",
            },
            Family::V6 => Tools {
                iptables: "ip6tables",
                save: "ip6tables-save",
                restore: "ip6tables-restore",
            },
        }
    }

    /// Whether all three tools are on `PATH`.
    pub fn available(&self) -> bool {
        [self.iptables, self.save, self.restore]
            .iter()
            .all(|t| find_in_path(t).is_some())
    }

    fn path(&self, tool: &str) -> Result<PathBuf, String> {
        find_in_path(tool).ok_or_else(|| {
            format!("{tool} not found in PATH (install the iptables package, or run the agent with capture off)")
        })
    }
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What removing the current `ISTIO_*` state of one table takes, from `iptables-save` output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableCleanup {
    /// Rules in other chains that jump to an `ISTIO_*` chain, as `-D chain ...` words.
    pub delete_jumps: Vec<Vec<String>>,
    /// The `ISTIO_*` chains (flushed, then deleted).
    pub chains: Vec<String>,
}

impl TableCleanup {
    fn is_empty(&self) -> bool {
        self.delete_jumps.is_empty() && self.chains.is_empty()
    }

    /// The removal as `iptables` argument lists (without `-t table`): jumps first, then every
    /// chain flushed, then every chain deleted (so chains jumping to each other go too).
    pub fn commands(&self) -> Vec<Vec<String>> {
        let flush = self
            .chains
            .iter()
            .map(|c| vec!["-F".to_string(), c.clone()]);
        let delete = self
            .chains
            .iter()
            .map(|c| vec!["-X".to_string(), c.clone()]);
        self.delete_jumps
            .iter()
            .cloned()
            .chain(flush)
            .chain(delete)
            .collect()
    }
}

/// Parses `iptables-save` output into what must go, per table.
pub fn cleanup_plan(save_output: &str) -> BTreeMap<String, TableCleanup> {
    let mut plan: BTreeMap<String, TableCleanup> = BTreeMap::new();
    let mut table = String::new();
    for line in save_output.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('*') {
            table = name.trim().to_string();
        } else if let Some(decl) = line.strip_prefix(':') {
            let chain = decl.split_whitespace().next().unwrap_or_default();
            if chain.starts_with(CHAIN_PREFIX) {
                plan.entry(table.clone())
                    .or_default()
                    .chains
                    .push(chain.to_string());
            }
        } else if line.starts_with("-A ") {
            let words = split_words(line);
            let chain = &words[1];
            let jumps_to_istio = words
                .windows(2)
                .any(|w| (w[0] == "-j" || w[0] == "-g") && w[1].starts_with(CHAIN_PREFIX));
            if !chain.starts_with(CHAIN_PREFIX) && jumps_to_istio {
                let mut delete = words;
                delete[0] = "-D".to_string();
                plan.entry(table.clone())
                    .or_default()
                    .delete_jumps
                    .push(delete);
            }
        }
    }
    plan.retain(|_, t| !t.is_empty());
    plan
}

/// Splits an `iptables-save` rule into words, honouring the double quotes it puts around
/// comments and other arguments with spaces.
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Words back into one `iptables-restore` line.
fn join_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if w.is_empty() || w.contains(char::is_whitespace) || w.contains('"') {
                format!("\"{}\"", w.replace('\\', "\\\\").replace('"', "\\\""))
            } else {
                w.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One `iptables-restore --noflush` input that removes `plan` and then adds `new` (if any),
/// table by table.
pub fn transaction_text(plan: &BTreeMap<String, TableCleanup>, new: Option<&Ruleset>) -> String {
    let mut tables: Vec<String> = plan.keys().cloned().collect();
    if let Some(r) = new {
        tables.extend(r.tables().iter().map(|t| t.name().to_string()));
    }
    tables.sort();
    tables.dedup();
    let mut out = String::new();
    for table in tables {
        out.push_str(&format!("* {table}\n"));
        if let Some(cleanup) = plan.get(&table) {
            for cmd in cleanup.commands() {
                out.push_str(&join_words(&cmd));
                out.push('\n');
            }
        }
        if let Some(r) = new
            && let Some(t) = r.tables().into_iter().find(|t| t.name() == table)
        {
            for line in r.table_lines(t) {
                out.push_str(&line);
                out.push('\n');
            }
        }
        out.push_str("COMMIT\n");
    }
    out
}

/// Output of a finished command.
struct Output {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `program args`, feeding `stdin`, for at most [`COMMAND_TIMEOUT`].
fn run(program: &Path, args: &[&str], stdin: Option<&str>) -> Result<Output, String> {
    let describe = || {
        std::iter::once(program.display().to_string())
            .chain(args.iter().map(|a| a.to_string()))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", describe()))?;
    let writer = child.stdin.take().map(|mut pipe| {
        let input = stdin.unwrap_or_default().to_string();
        thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        })
    });
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} did not finish within {COMMAND_TIMEOUT:?} and was killed",
                    describe()
                ));
            }
            Err(e) => return Err(format!("waiting for {}: {e}", describe())),
        }
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    Ok(Output {
        success: status.success(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

fn run_checked(program: &Path, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let out = run(program, args, stdin)?;
    if out.success {
        Ok(out.stdout)
    } else {
        Err(format!(
            "{} {} failed: {}",
            program.display(),
            args.join(" "),
            out.stderr.trim()
        ))
    }
}

fn save(tools: &Tools) -> Result<String, String> {
    run_checked(&tools.path(tools.save)?, &[], None)
}

fn restore(tools: &Tools, input: &str) -> Result<(), String> {
    run_checked(
        &tools.path(tools.restore)?,
        &["--noflush", "-w"],
        Some(input),
    )
    .map(|_| ())
    .map_err(|e| format!("{e}\ninput was:\n{input}"))
}

/// Removes leftovers command by command, ignoring what no longer exists; then checks that
/// nothing is left.
fn cleanup_slowly(tools: &Tools, plan: &BTreeMap<String, TableCleanup>) -> Result<(), String> {
    let iptables = tools.path(tools.iptables)?;
    for (table, cleanup) in plan {
        for cmd in cleanup.commands() {
            let mut args = vec!["-w", "-t", table.as_str()];
            args.extend(cmd.iter().map(String::as_str));
            match run(&iptables, &args, None) {
                Ok(o) if o.success => {}
                Ok(o) => tracing::debug!(
                    "{} {}: {} (ignored)",
                    tools.iptables,
                    args.join(" "),
                    o.stderr.trim()
                ),
                Err(e) => return Err(e),
            }
        }
    }
    let left = cleanup_plan(&save(tools)?);
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} rules could not be removed: {left:?}",
            tools.iptables
        ))
    }
}

/// Replaces whatever `ISTIO_*` state the family has with `new` (or with nothing).
pub fn replace(tools: &Tools, new: Option<&Ruleset>) -> Result<(), String> {
    let plan = cleanup_plan(&save(tools)?);
    if plan.is_empty() && new.is_none() {
        tracing::debug!("{}: no capture rules to remove", tools.iptables);
        return Ok(());
    }
    for (table, c) in &plan {
        tracing::info!(
            "{}: removing previous rules from table {table}: {} jump(s), chains {}",
            tools.iptables,
            c.delete_jumps.len(),
            c.chains.join(" ")
        );
    }
    let input = transaction_text(&plan, new);
    match restore(tools, &input) {
        Ok(()) => return Ok(()),
        Err(e) => tracing::warn!("one-step replace failed, removing rule by rule: {e}"),
    }
    // Re-read: the failed transaction changed nothing, but the state may have moved on.
    let plan = cleanup_plan(&save(tools)?);
    cleanup_slowly(tools, &plan)?;
    match new {
        Some(r) => restore(tools, &r.restore_text()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVED: &str = r#"# Generated by iptables-save v1.8.9 (nf_tables)
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:ISTIO_INBOUND - [0:0]
:ISTIO_OUTPUT_DNS - [0:0]
-A PREROUTING -j ISTIO_INBOUND
-A OUTPUT -j ISTIO_OUTPUT_DNS
-A ISTIO_INBOUND -p udp -m udp --sport 53 -j CT --zone 1
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:ISTIO_OUTPUT - [0:0]
:MY_CHAIN - [0:0]
-A PREROUTING -p tcp -m comment --comment "keep me -j ISTIO_X" -j MY_CHAIN
-A OUTPUT -m comment --comment "jump two" -j ISTIO_OUTPUT
-A OUTPUT -j ISTIO_OUTPUT
-A MY_CHAIN -g ISTIO_OUTPUT
-A ISTIO_OUTPUT -j ISTIO_REDIRECT
COMMIT
*filter
:INPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
COMMIT
"#;

    #[test]
    fn plans_removal_of_every_istio_chain_and_jump() {
        let plan = cleanup_plan(SAVED);
        assert_eq!(plan.keys().collect::<Vec<_>>(), ["nat", "raw"]);
        let nat = &plan["nat"];
        assert_eq!(nat.chains, ["ISTIO_OUTPUT"]);
        assert_eq!(
            nat.delete_jumps,
            [
                vec![
                    "-D",
                    "OUTPUT",
                    "-m",
                    "comment",
                    "--comment",
                    "jump two",
                    "-j",
                    "ISTIO_OUTPUT"
                ],
                vec!["-D", "OUTPUT", "-j", "ISTIO_OUTPUT"],
                vec!["-D", "MY_CHAIN", "-g", "ISTIO_OUTPUT"],
            ]
        );
        assert_eq!(plan["raw"].chains, ["ISTIO_INBOUND", "ISTIO_OUTPUT_DNS"]);
        assert_eq!(plan["raw"].delete_jumps.len(), 2);
        assert!(cleanup_plan("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n").is_empty());
    }

    #[test]
    fn transaction_removes_then_adds() {
        let text = transaction_text(&cleanup_plan(SAVED), None);
        assert_eq!(
            text,
            "* nat\n\
             -D OUTPUT -m comment --comment \"jump two\" -j ISTIO_OUTPUT\n\
             -D OUTPUT -j ISTIO_OUTPUT\n\
             -D MY_CHAIN -g ISTIO_OUTPUT\n\
             -F ISTIO_OUTPUT\n\
             -X ISTIO_OUTPUT\n\
             COMMIT\n\
             * raw\n\
             -D PREROUTING -j ISTIO_INBOUND\n\
             -D OUTPUT -j ISTIO_OUTPUT_DNS\n\
             -F ISTIO_INBOUND\n\
             -F ISTIO_OUTPUT_DNS\n\
             -X ISTIO_INBOUND\n\
             -X ISTIO_OUTPUT_DNS\n\
             COMMIT\n"
        );
    }

    #[test]
    fn words_round_trip() {
        let w = split_words(r#"-A X -m comment --comment "a \"b\" c" -j Y"#);
        assert_eq!(
            w,
            [
                "-A",
                "X",
                "-m",
                "comment",
                "--comment",
                "a \"b\" c",
                "-j",
                "Y"
            ]
        );
        assert_eq!(
            join_words(&w),
            r#"-A X -m comment --comment "a \"b\" c" -j Y"#
        );
    }
}
