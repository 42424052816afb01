//! The Markdown report: header lines, a measurement table and the targets, echoed to stderr as
//! they are recorded.

use crate::Args;
use crate::config_gen::MeshSpec;
use crate::metrics;

/// A progress line on stderr.
pub fn progress(msg: impl AsRef<str>) {
    eprintln!("[xds-load] {}", msg.as_ref());
}

/// The Markdown report.
pub struct Report {
    rows: Vec<(String, String)>,
    lines: Vec<String>,
    targets: Vec<(String, bool)>,
    failures: Vec<String>,
}

impl Report {
    pub fn new(args: &Args, spec: MeshSpec) -> Self {
        let cmd: Vec<String> = std::env::args().collect();
        let mut r = Report {
            rows: Vec::new(),
            lines: Vec::new(),
            targets: Vec::new(),
            failures: Vec::new(),
        };
        r.line(format!("`{}`", cmd.join(" ")));
        r.line(format!("machine: {}", metrics::machine()));
        r.line(if args.real_envoy {
            format!(
                "mesh: {} services in {} namespaces, {} endpoints; one real Envoy (delta ADS, plaintext)",
                spec.services, spec.namespaces, spec.endpoints
            )
        } else {
            format!(
                "mesh: {} services in {} namespaces, {} endpoints; {} delta ADS clients, {} per HTTP/2 connection, {} client threads",
                spec.services,
                spec.namespaces,
                spec.endpoints,
                args.clients,
                args.clients_per_conn,
                args.client_threads
            )
        });
        r
    }

    pub fn line(&mut self, s: String) {
        progress(&s);
        self.lines.push(s);
    }

    pub fn row(&mut self, what: &str, result: String) {
        progress(format!("{what}: {result}"));
        self.rows.push((what.to_string(), result));
    }

    pub fn target(&mut self, what: &str, met: bool) {
        progress(format!(
            "target {what}: {}",
            if met { "met" } else { "MISSED" }
        ));
        self.targets.push((what.to_string(), met));
    }

    pub fn fail(&mut self, why: String) {
        progress(format!("FAILED: {why}"));
        self.failures.push(why);
    }

    /// Prints the report; true when every target is met and nothing failed.
    pub fn print(&self) -> bool {
        for l in &self.lines {
            println!("{l}  ");
        }
        println!();
        println!("| measurement | result |");
        println!("|---|---|");
        for (k, v) in &self.rows {
            println!("| {k} | {v} |");
        }
        println!();
        for (t, met) in &self.targets {
            println!("- {t}: **{}**", if *met { "met" } else { "missed" });
        }
        for f in &self.failures {
            println!("- FAILED: {f}");
        }
        self.failures.is_empty() && self.targets.iter().all(|(_, m)| *m)
    }
}
