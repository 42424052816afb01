//! `weftctl` run inside the control-plane host against weftd's admin API, shown as a user would
//! type it.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::narrate::{command, command_line, say, show_output};
use weft_testkit::{CommandOutput, Host, workspace_binary};

const TIMEOUT: Duration = Duration::from_secs(30);

pub struct Weftctl {
    host: Host,
    bin: PathBuf,
    token_file: PathBuf,
    flags_shown: Cell<bool>,
}

impl Weftctl {
    /// weftctl in `host`, for a weftd with its state in `state_dir`.
    pub fn new(host: &Host, state_dir: &Path) -> Result<Self, String> {
        Ok(Weftctl {
            host: host.clone(),
            bin: workspace_binary("weftctl", "weftctl").map_err(|e| e.to_string())?,
            token_file: state_dir.join("admin-token"),
            flags_shown: Cell::new(false),
        })
    }

    fn argv(&self, args: &[&str], server: bool) -> Vec<String> {
        let mut argv = vec![self.bin.display().to_string()];
        if server {
            argv.extend([
                "--server".to_string(),
                "http://127.0.0.1:8080".to_string(),
                "--admin-token-file".to_string(),
                self.token_file.display().to_string(),
            ]);
        }
        argv.extend(args.iter().map(|s| s.to_string()));
        argv
    }

    /// Runs it against weftd without showing anything.
    pub fn quiet(&self, args: &[&str]) -> Result<CommandOutput, String> {
        self.host
            .run(&self.argv(args, true), TIMEOUT)
            .map_err(|e| e.to_string())
    }

    /// Shows the command line `weftctl ARGS` (the server flags spelled out the first time).
    pub fn show_command(&self, args: &[&str]) {
        if self.flags_shown.replace(true) {
            command(self.host.name(), &command_line(&self.argv(args, false)));
        } else {
            command(self.host.name(), &command_line(&self.argv(args, true)));
            say(
                "  (every weftctl call below that talks to weftd gets the same --server and --admin-token-file)",
            );
        }
    }

    /// Shows `weftctl ARGS` and `out`.
    pub fn show(&self, args: &[&str], out: &CommandOutput, max_lines: usize) {
        self.show_command(args);
        show_output(out, max_lines);
    }

    /// Runs it against weftd and shows it; fails when it fails.
    pub fn run(&self, args: &[&str], max_lines: usize) -> Result<CommandOutput, String> {
        let out = self.quiet(args)?;
        self.show(args, &out, max_lines);
        if out.success() {
            Ok(out)
        } else {
            Err(format!("weftctl {} failed", args.join(" ")))
        }
    }

    /// Runs an offline command (`validate`) and shows it, whatever its exit status.
    pub fn offline(&self, args: &[&str], max_lines: usize) -> Result<CommandOutput, String> {
        let argv = self.argv(args, false);
        command(self.host.name(), &command_line(&argv));
        let out = self.host.run(&argv, TIMEOUT).map_err(|e| e.to_string())?;
        show_output(&out, max_lines);
        Ok(out)
    }
}
