//! `exec`: runs the command (argv, no shell); healthy on exit status 0 (Istio's `ExecProber`).
//! The child is killed when the timeout passes.

use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;
use weft_model::networking::ExecHealthCheckConfig;

/// How much of the command's output a failure message keeps (its end).
const OUTPUT_TAIL: usize = 512;

#[derive(Clone, Debug)]
pub struct ExecCheck {
    pub command: Vec<String>,
}

impl ExecCheck {
    pub fn new(cfg: &ExecHealthCheckConfig) -> Result<Self, String> {
        if cfg.command.is_empty() || cfg.command[0].is_empty() {
            return Err("readinessProbe.exec.command: exec.command is required".into());
        }
        Ok(ExecCheck {
            command: cfg.command.clone(),
        })
    }

    pub async fn probe(&self, timeout: Duration) -> Result<(), String> {
        let child = Command::new(&self.command[0])
            .args(&self.command[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("exec {:?}: {e}", self.command[0]))?;
        // On timeout the future (and with it the child) is dropped, which kills the child.
        let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => return Err(format!("exec {:?}: {e}", self.command[0])),
            Err(_) => {
                return Err(format!(
                    "command timeout exceeded: {} elapsed, command killed",
                    super::go_duration(timeout)
                ));
            }
        };
        if out.status.success() {
            return Ok(());
        }
        let mut msg = exit_text(&out.status);
        let mut output = out.stdout;
        output.extend_from_slice(&out.stderr);
        let tail = tail(&output);
        if !tail.is_empty() {
            msg.push_str(": ");
            msg.push_str(&tail);
        }
        Err(msg)
    }
}

/// Go's wording: `exit status N` or `signal: N`.
fn exit_text(status: &std::process::ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!("signal: {sig}");
        }
    }
    status.to_string()
}

/// The last [`OUTPUT_TAIL`] bytes of the output, trimmed, `…`-prefixed when cut.
fn tail(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    let text = text.trim();
    if text.len() <= OUTPUT_TAIL {
        return text.to_string();
    }
    let mut start = text.len() - OUTPUT_TAIL;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(argv: &[&str]) -> ExecCheck {
        ExecCheck::new(&ExecHealthCheckConfig {
            command: argv.iter().map(|s| s.to_string()).collect(),
        })
        .unwrap()
    }

    const T: Duration = Duration::from_secs(2);

    #[tokio::test]
    async fn exit_status_decides() {
        assert_eq!(check(&["true"]).probe(T).await, Ok(()));
        assert_eq!(
            check(&["false"]).probe(T).await,
            Err("exit status 1".into())
        );
        assert_eq!(
            check(&["sh", "-c", "echo starting; echo 'db down' >&2; exit 3"])
                .probe(T)
                .await,
            Err("exit status 3: starting\ndb down".into())
        );
    }

    #[tokio::test]
    async fn missing_command_and_timeout() {
        let err = check(&["/nonexistent/probe"]).probe(T).await.unwrap_err();
        assert!(err.starts_with("exec \"/nonexistent/probe\": "), "{err}");
        let started = std::time::Instant::now();
        let err = check(&["sleep", "5"])
            .probe(Duration::from_millis(200))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            "command timeout exceeded: 200ms elapsed, command killed"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn output_tail_is_bounded() {
        let long = "x".repeat(2000) + "END";
        let t = tail(long.as_bytes());
        assert!(t.starts_with('…') && t.ends_with("END"), "{t}");
        assert_eq!(t.chars().count(), OUTPUT_TAIL + 1);
        assert!(ExecCheck::new(&ExecHealthCheckConfig { command: vec![] }).is_err());
    }
}
