//! `weftctl x workload group create`: prints a WorkloadGroup exactly as istioctl does.

use serde_json::{Map, Value, json};
use std::process::ExitCode;
use weft_model::yaml_out::to_yaml;

#[derive(clap::Args)]
pub struct Args {
    /// The name of the workload group
    #[arg(long, default_value = "")]
    name: String,
    /// The namespace that the workload instances will belong to
    #[arg(short = 'n', long, default_value = "")]
    namespace: String,
    /// The labels to apply to the workload instances; e.g. -l env=prod,vers=2
    #[arg(short = 'l', long, value_delimiter = ',')]
    labels: Vec<String>,
    /// The annotations to apply to the workload instances
    #[arg(short = 'a', long, value_delimiter = ',')]
    annotations: Vec<String>,
    /// The incoming ports exposed by the workload instance
    #[arg(short = 'p', long, value_delimiter = ',')]
    ports: Vec<String>,
    /// The service identity to associate with the workload instances
    #[arg(short = 's', long = "serviceAccount", default_value = "default")]
    service_account: String,
    /// Network enables Istio to group endpoints resident in the same L3 domain/network.
    #[arg(long, default_value = "")]
    network: String,
    /// The locality associated with the endpoint.
    #[arg(long, default_value = "")]
    locality: String,
    /// The load balancing weight associated with the endpoint.
    #[arg(short = 'w', long, default_value_t = 0)]
    weight: u32,
}

fn string_map(pairs: &[String]) -> Map<String, Value> {
    pairs
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), Value::String(v.to_string()))
        })
        .collect()
}

fn port_map(pairs: &[String]) -> Result<Map<String, Value>, String> {
    pairs
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let port: u32 = v.parse().map_err(|_| {
                format!("invalid port {p:?} in --ports: expected NAME=NUMBER, e.g. http=8080")
            })?;
            Ok((k.to_string(), json!(port)))
        })
        .collect()
}

/// Builds the WorkloadGroup document (proto JSON semantics: empty fields omitted).
pub fn build(args: &Args) -> Result<Value, String> {
    if args.name.is_empty() {
        return Err("expecting a workload name".into());
    }
    if args.namespace.is_empty() {
        return Err("expecting a workload namespace".into());
    }
    let mut meta = Map::new();
    let annotations = string_map(&args.annotations);
    let labels = string_map(&args.labels);
    if !annotations.is_empty() {
        meta.insert("annotations".into(), Value::Object(annotations));
    }
    if !labels.is_empty() {
        meta.insert("labels".into(), Value::Object(labels));
    }
    let mut template = Map::new();
    let ports = port_map(&args.ports)?;
    if !ports.is_empty() {
        template.insert("ports".into(), Value::Object(ports));
    }
    for (key, value) in [
        ("serviceAccount", &args.service_account),
        ("network", &args.network),
        ("locality", &args.locality),
    ] {
        if !value.is_empty() {
            template.insert(key.into(), json!(value));
        }
    }
    if args.weight != 0 {
        template.insert("weight".into(), json!(args.weight));
    }
    Ok(json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "WorkloadGroup",
        "metadata": {"name": args.name, "namespace": args.namespace},
        "spec": {"metadata": meta, "template": template},
    }))
}

pub fn run(args: &Args) -> Result<ExitCode, String> {
    let doc = to_yaml(&build(args)?);
    // Istio prints whatever it was given; Weft refuses to print a group it would not accept.
    let problems: Vec<String> = weft_model::load_str("<generated>", &doc)
        .into_iter()
        .filter(|e| e.is_invalid())
        .map(|e| e.to_string())
        .collect();
    if !problems.is_empty() {
        return Err(format!(
            "generated WorkloadGroup is invalid: {}",
            problems.join("; ")
        ));
    }
    print!("{doc}");
    Ok(ExitCode::SUCCESS)
}
