//! `weftctl`: validate mesh config and generate VM workload artifacts, speaking istioctl's flags;
//! apply, get and delete config through weftd's admin API, speaking kubectl's.

mod client;
mod proxy_status;
mod resources;
mod table;
mod validate;
mod vm_bundle;
mod workload_entry;
mod workload_group;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "weftctl",
    version,
    about = "Weft command-line tool (istioctl-compatible where it overlaps)"
)]
struct Cli {
    /// weftd's admin API.
    #[arg(
        long,
        global = true,
        env = "WEFT_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// File holding weftd's admin token (weftd writes it to <state-dir>/admin-token).
    #[arg(
        long = "admin-token-file",
        global = true,
        env = "WEFT_ADMIN_TOKEN_FILE",
        default_value = "/var/lib/weft/admin-token"
    )]
    admin_token_file: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate Istio/Kubernetes YAML or JSON files (or directories of them).
    Validate(validate::Args),
    /// Apply configuration from files to weftd (all or nothing), as `kubectl apply -f`.
    Apply(resources::ApplyArgs),
    /// Display objects weftd serves, as `kubectl get`.
    Get(resources::GetArgs),
    /// Delete objects from weftd, by file or by kind and name, as `kubectl delete`.
    Delete(resources::DeleteArgs),
    /// Sync state of every connected proxy, as `istioctl proxy-status`.
    #[command(name = "proxy-status", alias = "ps")]
    ProxyStatus(proxy_status::Args),
    /// Experimental commands, as `istioctl x`.
    #[command(name = "x", alias = "experimental")]
    Experimental {
        #[command(subcommand)]
        command: Experimental,
    },
}

#[derive(Subcommand)]
enum Experimental {
    /// Commands to assist in configuring and deploying workloads running on VMs and other non-Kubernetes environments
    Workload {
        #[command(subcommand)]
        command: Workload,
    },
}

#[derive(Subcommand)]
enum Workload {
    /// Commands dealing with WorkloadGroup resources
    Group {
        #[command(subcommand)]
        command: Group,
    },
    /// Commands dealing with WorkloadEntry resources
    Entry {
        #[command(subcommand)]
        command: Entry,
    },
}

#[derive(Subcommand)]
enum Group {
    /// Creates a WorkloadGroup resource that provides a template for associated WorkloadEntries
    Create(workload_group::Args),
}

#[derive(Subcommand)]
enum Entry {
    /// Generates all the required configuration files for a workload instance running on a VM or non-Kubernetes environment
    Configure(workload_entry::Args),
}

/// Runs one of kubectl's verbs against weftd; failures are reported in kubectl's words.
fn kubectl<A>(
    cli: &Cli,
    run: fn(&client::Client, &A) -> Result<ExitCode, String>,
    args: &A,
) -> ExitCode {
    client::Client::new(&cli.server, &cli.admin_token_file)
        .and_then(|c| run(&c, args))
        .unwrap_or_else(|message| {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Apply(args) => Ok(kubectl(&cli, resources::apply, args)),
        Command::Get(args) => Ok(kubectl(&cli, resources::get, args)),
        Command::Delete(args) => Ok(kubectl(&cli, resources::delete, args)),
        Command::ProxyStatus(args) => Ok(kubectl(&cli, proxy_status::run, args)),
        Command::Experimental {
            command:
                Experimental::Workload {
                    command:
                        Workload::Group {
                            command: Group::Create(args),
                        },
                },
        } => workload_group::run(args),
        Command::Experimental {
            command:
                Experimental::Workload {
                    command:
                        Workload::Entry {
                            command: Entry::Configure(args),
                        },
                },
        } => workload_entry::run(args, &cli.server, &cli.admin_token_file),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("Error: {message}");
            ExitCode::FAILURE
        }
    }
}
