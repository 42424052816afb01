//! Narration: step headings, the command-equivalent of each piece of evidence and its real output
//! (indented), and the summary table of steps with ✔/✘.

use std::ffi::OsStr;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use weft_testkit::seed_lab::Call;
use weft_testkit::{CommandOutput, Host, Process};

/// Lines of a process log printed when a step fails.
const FAILURE_TAIL: usize = 30;

/// Paths shown shortened: (prefix, what it is shown as), longest first.
static SHORTHANDS: OnceLock<Vec<(String, String)>> = OnceLock::new();

/// Registers the lab directory (shown as `$LAB`) and the binary directory (binaries shown by name).
pub fn set_shorthands(lab_dir: &Path, bin_dir: Option<&Path>) {
    let mut list = vec![(lab_dir.display().to_string(), "$LAB".to_string())];
    if let Some(bin) = bin_dir {
        list.push((format!("{}/", bin.display()), String::new()));
    }
    list.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    let _ = SHORTHANDS.set(list);
}

/// `text` with the lab directory written as `$LAB` and workspace binaries by their names.
pub fn short(text: &str) -> String {
    let mut out = text.to_string();
    for (prefix, shown) in SHORTHANDS.get().map(Vec::as_slice).unwrap_or_default() {
        out = out.replace(prefix.as_str(), shown);
    }
    out
}

/// A path for display (see [`short`]).
pub fn show(path: &Path) -> String {
    short(&path.display().to_string())
}

/// A command line for display: arguments with spaces or shell characters are single-quoted.
pub fn command_line<S: AsRef<OsStr>>(argv: &[S]) -> String {
    argv.iter()
        .map(|a| {
            let a = short(&a.as_ref().to_string_lossy());
            let plain = !a.is_empty()
                && a.chars().all(|c| {
                    c.is_ascii_alphanumeric() || "-_./:=,@%+$".contains(c) || !c.is_ascii()
                });
            if plain {
                a
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn styled(code: &str, text: &str) -> String {
    static COLOR: OnceLock<bool> = OnceLock::new();
    if *COLOR
        .get_or_init(|| std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none())
    {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// A step heading.
pub fn heading(number: usize, title: &str, what: &str) {
    println!();
    println!(
        "{}",
        styled(
            "1",
            &format!("━━ {number}. {title} ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━")
        )
    );
    println!("   {}", styled("2", what));
}

/// A sentence of narration.
pub fn say(text: &str) {
    for line in text.lines() {
        println!("   {line}");
    }
}

/// A command as the user would type it, on `host`.
pub fn command(host: &str, line: &str) {
    println!(
        "   {} {}",
        styled("36", &format!("[{host}]$")),
        styled("1", line)
    );
}

/// Output of a command (or file contents), indented; at most `max` lines, then how many were left out.
pub fn output(text: &str, max: usize) {
    let lines: Vec<&str> = text.trim_end_matches('\n').lines().collect();
    for line in lines.iter().take(max) {
        println!("      {}", short(line));
    }
    if lines.len() > max {
        println!(
            "      {}",
            styled("2", &format!("… ({} more lines)", lines.len() - max))
        );
    }
}

/// A check that passed.
pub fn ok(text: &str) {
    println!("   {} {text}", styled("32", "✔"));
}

/// Runs `argv` in `host`, shows the command line and its output (stdout then stderr), and returns
/// the output. `Err` when it cannot be run at all (timeout, missing program).
pub fn run_shown<S: AsRef<OsStr>>(
    host: &Host,
    argv: &[S],
    timeout: Duration,
    max_lines: usize,
) -> Result<CommandOutput, String> {
    command(host.name(), &command_line(argv));
    let out = host.run(argv, timeout).map_err(|e| e.to_string())?;
    show_output(&out, max_lines);
    Ok(out)
}

/// Shows a command's stdout, then its stderr, then its exit status if it failed.
pub fn show_output(out: &CommandOutput, max_lines: usize) {
    let mut text = out.stdout.clone();
    if !out.stderr.trim().is_empty() {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&out.stderr);
    }
    output(&text, max_lines);
    if !out.success() {
        output(
            &format!(
                "(exit status {})",
                out.code().map_or("signal".to_string(), |c| c.to_string())
            ),
            1,
        );
    }
}

/// Prints the tail of each process's log (after a failed step).
pub fn log_tails(processes: &[Process]) {
    for p in processes {
        println!(
            "   {}",
            styled(
                "33",
                &format!(
                    "last {FAILURE_TAIL} lines of {} ({}):",
                    p.name(),
                    show(p.log_path())
                )
            )
        );
        output(&p.log_tail(FAILURE_TAIL), FAILURE_TAIL);
    }
}

/// Shows a curl run from `host`: its command line and what it printed.
pub fn show_call(host: &str, call: &Call, max_lines: usize) {
    command(host, &command_line(&call.argv));
    output(&call.output, max_lines);
}

/// The outcome of one step.
pub struct StepResult {
    pub title: String,
    pub state: State,
    pub took: Duration,
    pub note: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum State {
    Passed,
    Failed,
    Skipped,
}

/// Runs the steps, records their outcome, and prints log tails when one fails.
pub struct Steps {
    pub results: Vec<StepResult>,
}

impl Steps {
    pub fn new() -> Self {
        Steps {
            results: Vec::new(),
        }
    }

    /// Whether a step has failed so far (later steps are then skipped).
    pub fn failed(&self) -> bool {
        self.results.iter().any(|r| r.state == State::Failed)
    }

    /// Runs step `title`: `f` narrates and checks, returning a one-line note for the summary.
    /// On failure, prints the error; returns whether it passed.
    pub fn run(
        &mut self,
        title: &str,
        what: &str,
        f: impl FnOnce() -> Result<String, String>,
    ) -> bool {
        heading(self.results.len() + 1, title, what);
        let start = Instant::now();
        let result = f();
        let took = start.elapsed();
        let (state, note) = match result {
            Ok(note) => (State::Passed, note),
            Err(e) => {
                println!("   {} {}", styled("31", "✘"), styled("31", "step failed:"));
                output(&e, 60);
                let first_line = e.lines().next().unwrap_or_default();
                (State::Failed, first_line.chars().take(90).collect())
            }
        };
        self.results.push(StepResult {
            title: title.to_string(),
            state,
            took,
            note,
        });
        state == State::Passed
    }

    /// Records a step that could not run because an earlier one failed.
    pub fn skip(&mut self, title: &str, why: &str) {
        self.results.push(StepResult {
            title: title.to_string(),
            state: State::Skipped,
            took: Duration::ZERO,
            note: why.to_string(),
        });
    }

    pub fn all_passed(&self) -> bool {
        self.results.iter().all(|r| r.state == State::Passed)
    }

    /// The summary table.
    pub fn print_summary(&self, total: Duration) {
        println!();
        println!(
            "{}",
            styled(
                "1",
                "━━ Summary ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━"
            )
        );
        let width = self
            .results
            .iter()
            .map(|r| r.title.chars().count())
            .max()
            .unwrap_or(0);
        for (i, r) in self.results.iter().enumerate() {
            let mark = match r.state {
                State::Passed => styled("32", "✔"),
                State::Failed => styled("31", "✘"),
                State::Skipped => styled("33", "–"),
            };
            println!(
                "   {mark} {:>2}. {:<width$}  {:>6.1}s  {}",
                i + 1,
                r.title,
                r.took.as_secs_f64(),
                r.note
            );
        }
        let passed = self
            .results
            .iter()
            .filter(|r| r.state == State::Passed)
            .count();
        println!(
            "   {passed}/{} steps passed in {:.1}s",
            self.results.len(),
            total.as_secs_f64()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_quote_what_a_shell_would_split() {
        assert_eq!(
            command_line(&["curl", "-sS", "http://10.96.0.1/api/users"]),
            "curl -sS http://10.96.0.1/api/users"
        );
        assert_eq!(
            command_line(&["sh", "-c", "a b", "it's"]),
            r"sh -c 'a b' 'it'\''s'"
        );
    }
}
