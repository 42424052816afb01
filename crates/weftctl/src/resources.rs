//! `weftctl apply`, `get` and `delete`: kubectl's verbs against weftd's admin API, with kubectl's
//! flags, output and wording.

use crate::client::{Client, Response, encode};
use crate::table;
use serde_json::{Value, json};
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;
use weft_model::Kind;

/// Content type of an apply body that carries several named files (weftd's admin API).
const FILES_CONTENT_TYPE: &str = "application/x-weft-files+json";

fn lookup(word: &str) -> Result<Kind, String> {
    Kind::lookup(word).ok_or_else(|| format!("the server doesn't have a resource type \"{word}\""))
}

/// Files named by `-f`: `-` is standard input, a directory gives its config files.
fn read_files(paths: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for p in paths {
        if p == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| format!("reading standard input: {e}"))?;
            out.push(("<stdin>".to_string(), text));
            continue;
        }
        let files = weft_model::load::config_files(Path::new(p))
            .map_err(|e| format!("the path \"{p}\" does not exist: {e}"))?;
        if files.is_empty() {
            return Err(format!(
                "error reading [{p}]: recognized file extensions are [.json .yaml .yml]"
            ));
        }
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
            out.push((f.display().to_string(), text));
        }
    }
    Ok(out)
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[derive(clap::Args)]
pub struct ApplyArgs {
    /// Files or directories to apply (`-` for standard input; repeatable).
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<String>,
    /// Namespace for objects that name none.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
}

pub fn apply(client: &Client, args: &ApplyArgs) -> Result<ExitCode, String> {
    let files = read_files(&args.files)?;
    let body: Vec<Value> = files
        .iter()
        .map(|(f, t)| json!({"file": f, "content": t}))
        .collect();
    let path = match &args.namespace {
        Some(ns) => format!("/api/v1/apply?namespace={}", encode(ns)),
        None => "/api/v1/apply".to_string(),
    };
    let body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
    let resp = client.request("POST", &path, Some(FILES_CONTENT_TYPE), &body)?;
    let v = resp.json();
    for w in strings(&v, "warnings") {
        eprintln!("Warning: {w}");
    }
    for n in strings(&v, "notes") {
        eprintln!("note: {n}");
    }
    match resp.status {
        200 => {
            for line in strings(&v, "results") {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        400 => {
            for e in strings(&v, "errors") {
                eprintln!("error: {e}");
            }
            eprintln!("nothing was applied");
            Ok(ExitCode::FAILURE)
        }
        s => Err(format!("weftd answered {s}: {}", resp.message())),
    }
}

#[derive(clap::Args)]
pub struct GetArgs {
    /// Kind (name, plural or short name such as vs, dr, gw, se, we, wg, svc); comma-separated for several.
    kinds: String,
    /// Names (all objects when none).
    names: Vec<String>,
    /// Namespace (default: default).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// List across all namespaces.
    #[arg(short = 'A', long = "all-namespaces")]
    all_namespaces: bool,
    /// Output format: yaml, json or wide.
    #[arg(short = 'o', long, value_parser = ["yaml", "json", "wide"])]
    output: Option<String>,
}

/// Objects of one kind, as the admin API lists them.
struct Listed {
    kind: Kind,
    items: Vec<Value>,
}

/// Builds the tables for `listed`: one per kind, names prefixed by kind when there are several.
pub fn tables(
    listed: &[(Kind, Vec<Value>)],
    all_namespaces: bool,
    wide: bool,
    now: SystemTime,
) -> String {
    let several = listed.len() > 1;
    let mut blocks = Vec::new();
    for (kind, items) in listed {
        if items.is_empty() {
            continue;
        }
        let ns_column = all_namespaces && kind.namespaced();
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut header: Vec<String> = table::columns(*kind, wide)
            .iter()
            .map(|s| s.to_string())
            .collect();
        if ns_column {
            header.insert(0, "NAMESPACE".into());
        }
        rows.push(header);
        for item in items {
            let mut r = table::row(*kind, item, wide, now);
            if several {
                r[0] = format!("{}/{}", kind.qualified_name(false), r[0]);
            }
            if ns_column {
                let ns = item["object"]["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("default");
                r.insert(0, ns.to_string());
            }
            rows.push(r);
        }
        blocks.push(table::render(&rows));
    }
    blocks.join("\n")
}

/// `-o json`: 4-space indent, as kubectl prints.
fn to_json_text(v: &Value) -> String {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    let _ = serde::Serialize::serialize(v, &mut ser);
    let mut s = String::from_utf8(out).unwrap_or_default();
    s.push('\n');
    s
}

pub fn get(client: &Client, args: &GetArgs) -> Result<ExitCode, String> {
    let mut kinds = Vec::new();
    for word in args.kinds.split(',').filter(|w| !w.is_empty()) {
        match lookup(word) {
            Ok(k) => kinds.push(k),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    let namespace = args.namespace.clone().unwrap_or_else(|| "default".into());
    let scope = if args.all_namespaces {
        "allNamespaces=true".to_string()
    } else {
        format!("namespace={}", encode(&namespace))
    };
    let mut listed: Vec<Listed> = Vec::new();
    let mut not_found = Vec::new();
    for &kind in &kinds {
        let base = format!("/api/v1/resources/{}?{scope}", kind.plural());
        let mut items = Vec::new();
        let queries: Vec<String> = if args.names.is_empty() {
            vec![base]
        } else {
            args.names
                .iter()
                .map(|n| format!("{base}&name={}", encode(n)))
                .collect()
        };
        for q in queries {
            let resp: Response = client.request("GET", &q, None, b"")?;
            match resp.status {
                200 => items.extend(resp.json()["items"].as_array().cloned().unwrap_or_default()),
                404 => not_found.push(resp.message()),
                s => return Err(format!("weftd answered {s}: {}", resp.message())),
            }
        }
        listed.push(Listed { kind, items });
    }
    let objects: Vec<Value> = listed
        .iter()
        .flat_map(|l| l.items.iter().map(|i| i["object"].clone()))
        .collect();
    let single = kinds.len() == 1 && args.names.len() == 1;
    match args.output.as_deref() {
        Some(format @ ("yaml" | "json")) if !objects.is_empty() || args.names.is_empty() => {
            let doc = if single && objects.len() == 1 {
                objects[0].clone()
            } else {
                json!({"apiVersion": "v1", "items": objects, "kind": "List", "metadata": {"resourceVersion": ""}})
            };
            if format == "yaml" {
                print!("{}", weft_model::yaml_out::to_yaml(&doc));
            } else {
                print!("{}", to_json_text(&doc));
            }
        }
        Some("yaml" | "json") => {}
        _ => {
            let pairs: Vec<(Kind, Vec<Value>)> =
                listed.into_iter().map(|l| (l.kind, l.items)).collect();
            let out = tables(
                &pairs,
                args.all_namespaces,
                args.output.as_deref() == Some("wide"),
                SystemTime::now(),
            );
            print!("{out}");
            if out.is_empty() && args.names.is_empty() {
                if args.all_namespaces || kinds.iter().all(|k| !k.namespaced()) {
                    eprintln!("No resources found");
                } else {
                    eprintln!("No resources found in {namespace} namespace.");
                }
            }
        }
    }
    for m in &not_found {
        eprintln!("{m}");
    }
    Ok(if not_found.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[derive(clap::Args)]
pub struct DeleteArgs {
    /// Files or directories whose objects to delete (`-` for standard input; repeatable).
    #[arg(short = 'f', long = "filename")]
    files: Vec<String>,
    /// KIND NAME... or KIND/NAME...
    args: Vec<String>,
    /// Namespace (default: default).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Treat "not found" as success.
    #[arg(long = "ignore-not-found")]
    ignore_not_found: bool,
}

/// The objects `delete` names: `(kind, namespace, name)`.
fn delete_targets(args: &DeleteArgs) -> Result<Vec<(Kind, String, String)>, String> {
    let default_ns = args.namespace.clone().unwrap_or_else(|| "default".into());
    let ns_for = |k: Kind, written: &str| {
        if !k.namespaced() {
            String::new()
        } else if written.is_empty() {
            default_ns.clone()
        } else {
            written.to_string()
        }
    };
    let mut out = Vec::new();
    if !args.files.is_empty() {
        if !args.args.is_empty() {
            return Err("when -f is given, no KIND or NAME arguments are accepted".into());
        }
        for (file, text) in read_files(&args.files)? {
            for e in weft_model::load_str(&file, &text) {
                let Some(kind) = Kind::ALL.into_iter().find(|k| k.name() == e.kind) else {
                    continue;
                };
                if !e.name.is_empty() {
                    out.push((kind, ns_for(kind, &e.namespace), e.name.clone()));
                }
            }
        }
        return Ok(out);
    }
    let Some(first) = args.args.first() else {
        return Err("you must provide one or more resources by argument or filename (-f)".into());
    };
    if first.contains('/') {
        for a in &args.args {
            let (k, name) = a
                .split_once('/')
                .ok_or_else(|| format!("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'weftctl delete {first}' instead of 'weftctl delete {first} {a}')"))?;
            let kind = lookup(k)?;
            out.push((kind, ns_for(kind, ""), name.to_string()));
        }
    } else {
        if args.args.len() < 2 {
            return Err(format!(
                "resource(s) were provided, but no name was specified (weftctl delete {first} NAME)"
            ));
        }
        for word in first.split(',') {
            let kind = lookup(word)?;
            for name in &args.args[1..] {
                out.push((kind, ns_for(kind, ""), name.clone()));
            }
        }
    }
    Ok(out)
}

pub fn delete(client: &Client, args: &DeleteArgs) -> Result<ExitCode, String> {
    let targets = match delete_targets(args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut failed = false;
    for (kind, ns, name) in targets {
        let path = if kind.namespaced() {
            format!(
                "/api/v1/resources/{}/{}/{}",
                kind.plural(),
                encode(&ns),
                encode(&name)
            )
        } else {
            format!("/api/v1/resources/{}/{}", kind.plural(), encode(&name))
        };
        let resp = client.request("DELETE", &path, None, b"")?;
        match resp.status {
            200 => println!("{} \"{name}\" deleted", kind.qualified_name(false)),
            404 if args.ignore_not_found => {}
            404 => {
                eprintln!("{}", resp.message());
                failed = true;
            }
            _ => {
                eprintln!("error: {}", resp.message());
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_kinds_and_all_namespaces() {
        let now = SystemTime::UNIX_EPOCH;
        let gw = json!({"source": "api", "object": {"metadata": {"name": "gw", "namespace": "istio-system"}}});
        let vs = json!({"source": "api", "object": {"metadata": {"name": "vs", "namespace": "shop"}, "spec": {"hosts": ["x"], "gateways": ["istio-system/gw"]}}});
        let out = tables(
            &[
                (Kind::Gateway, vec![gw]),
                (Kind::VirtualService, vec![vs]),
                (Kind::Sidecar, vec![]),
            ],
            true,
            false,
            now,
        );
        assert_eq!(
            out,
            "NAMESPACE      NAME                             AGE\n\
             istio-system   gateway.networking.istio.io/gw   <unknown>\n\
             \n\
             NAMESPACE   NAME                                    GATEWAYS              HOSTS   AGE\n\
             shop        virtualservice.networking.istio.io/vs   [\"istio-system/gw\"]   [\"x\"]   <unknown>\n"
        );
    }

    #[test]
    fn delete_targets_from_args() {
        let a = |args: &[&str], ns: Option<&str>| DeleteArgs {
            files: vec![],
            args: args.iter().map(|s| s.to_string()).collect(),
            namespace: ns.map(String::from),
            ignore_not_found: false,
        };
        assert_eq!(
            delete_targets(&a(&["vs", "a", "b"], Some("shop"))).unwrap(),
            [
                (Kind::VirtualService, "shop".into(), "a".into()),
                (Kind::VirtualService, "shop".into(), "b".into())
            ]
        );
        assert_eq!(
            delete_targets(&a(&["gw/x", "ns/y"], None)).unwrap(),
            [
                (Kind::Gateway, "default".into(), "x".into()),
                (Kind::Namespace, String::new(), "y".into())
            ]
        );
        assert!(delete_targets(&a(&["vs"], None)).is_err());
        assert_eq!(
            delete_targets(&a(&["foo", "x"], None)).unwrap_err(),
            "the server doesn't have a resource type \"foo\""
        );
    }
}
