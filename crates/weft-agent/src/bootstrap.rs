//! The Envoy bootstrap, generated the way Istio's agent fills `envoy_bootstrap.json`, with stock
//! Envoy only: the node (id, cluster, Istio metadata), the admin interface on localhost, ADS over
//! the agent's Unix socket (`xds-grpc`), SDS over the agent's other socket (`sds-grpc`), and the two
//! static listeners every Istio proxy has (Prometheus on 15090, readiness on 15021).
//!
//! [`bootstrap`] is pure; [`write`] is the only I/O.

use crate::config::AgentConfig;
use serde_json::{Value, json};
use std::path::Path;

/// Ports and protocol choices that are not part of [`AgentConfig`]. Defaults are Istio's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapOptions {
    /// Envoy admin, bound on 127.0.0.1 (Istio's `proxyAdminPort`).
    pub admin_port: u16,
    /// The agent's status server (the `agent` cluster), on 127.0.0.1.
    pub status_port: u16,
    /// Envoy's own Prometheus listener (`/stats/prometheus` → admin).
    pub prometheus_port: u16,
    /// Envoy's readiness listener (`/healthz/ready` → agent).
    pub readiness_port: u16,
    /// Delta ADS (`DELTA_GRPC`, Istio's default since 1.22) or state-of-the-world (`GRPC`).
    pub delta: bool,
}

impl Default for BootstrapOptions {
    fn default() -> Self {
        BootstrapOptions {
            admin_port: 15000,
            status_port: 15020,
            prometheus_port: 15090,
            readiness_port: 15021,
            delta: true,
        }
    }
}

/// Loopback address for admin and the agent (Istio's `{{ .localhost }}` on IPv4).
const LOCALHOST: &str = "127.0.0.1";
/// Wildcard address for the static listeners (Istio's `{{ .wildcard }}` on IPv4).
const WILDCARD: &str = "0.0.0.0";

const HCM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const ROUTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// Builds the Envoy v3 bootstrap for this agent.
pub fn bootstrap(cfg: &AgentConfig, opts: &BootstrapOptions) -> Value {
    let ads = json!({"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"});
    json!({
        "node": {
            "id": cfg.node_id(),
            "cluster": cfg.node_cluster(),
            "metadata": Value::Object(cfg.metadata.clone()),
        },
        "layered_runtime": {
            "layers": [
                {"name": "global config", "static_layer": runtime_flags()},
                {"name": "admin", "admin_layer": {}},
            ]
        },
        "overload_manager": overload_manager(),
        "admin": {
            "address": socket_address(LOCALHOST, opts.admin_port),
        },
        "dynamic_resources": {
            "lds_config": ads.clone(),
            "cds_config": ads,
            "ads_config": {
                "api_type": if opts.delta { "DELTA_GRPC" } else { "GRPC" },
                "set_node_on_first_message_only": true,
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}],
            },
        },
        "static_resources": {
            "clusters": [
                tcp_cluster("prometheus_stats", opts.admin_port),
                tcp_cluster("agent", opts.status_port),
                sds_cluster(&cfg.paths.sds_socket()),
                xds_cluster(&cfg.paths.xds_socket()),
            ],
            "listeners": [
                http_listener("stats", opts.prometheus_port, "/stats/prometheus", "prometheus_stats"),
                http_listener("agent", opts.readiness_port, "/healthz/ready", "agent"),
            ],
        },
    })
}

/// Istio's static runtime layer (`pkg/bootstrap` `runtimeFlags`): room for the large regexes
/// Istio's route matching produces.
fn runtime_flags() -> Value {
    json!({
        "re2.max_program_size.error_level": "32768",
    })
}

/// No practical global limit on downstream connections, set the way current Envoy wants it (the
/// resource monitor Istio uses for `GLOBAL_DOWNSTREAM_MAX_CONNECTIONS`) rather than the deprecated
/// runtime key `overload.global_downstream_max_connections`, which Envoy 1.40 warns about. Without
/// either, Envoy warns that there is no limit at all.
fn overload_manager() -> Value {
    json!({
        "resource_monitors": [{
            "name": "envoy.resource_monitors.global_downstream_max_connections",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                "max_active_downstream_connections": 2147483647_i64,
            }
        }]
    })
}

fn socket_address(address: &str, port: u16) -> Value {
    json!({"socket_address": {"protocol": "TCP", "address": address, "port_value": port}})
}

fn load_assignment(name: &str, address: Value) -> Value {
    json!({
        "cluster_name": name,
        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
    })
}

fn pipe(path: &Path) -> Value {
    json!({"pipe": {"path": path.display().to_string()}})
}

/// A plain cluster to a loopback TCP port (`prometheus_stats`, `agent`).
fn tcp_cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "0.250s",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": load_assignment(name, socket_address(LOCALHOST, port)),
    })
}

/// `sds-grpc`: HTTP/2 to the agent's SDS socket.
fn sds_cluster(socket: &Path) -> Value {
    json!({
        "name": "sds-grpc",
        "type": "STATIC",
        "typed_extension_protocol_options": {
            HTTP_PROTOCOL_OPTIONS: {
                "@type": format!("type.googleapis.com/{HTTP_PROTOCOL_OPTIONS}"),
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": load_assignment("sds-grpc", pipe(socket)),
    })
}

/// `xds-grpc`: HTTP/2 to the agent's xDS socket, with Istio's generous circuit breakers and TCP
/// keepalive. As in Istio, each connection carries one request (`max_requests_per_connection: 1`):
/// an ADS stream is one long request, so a new stream after a failure gets a fresh connection.
/// HTTP/2 PINGs notice an agent that stopped answering without closing the socket.
fn xds_cluster(socket: &Path) -> Value {
    let thresholds = |priority: &str| {
        json!({
            "priority": priority,
            "max_connections": 100000,
            "max_pending_requests": 100000,
            "max_requests": 100000,
        })
    };
    json!({
        "name": "xds-grpc",
        "type": "STATIC",
        "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": load_assignment("xds-grpc", pipe(socket)),
        "circuit_breakers": {"thresholds": [thresholds("DEFAULT"), thresholds("HIGH")]},
        "upstream_connection_options": {"tcp_keepalive": {"keepalive_time": 300}},
        "typed_extension_protocol_options": {
            HTTP_PROTOCOL_OPTIONS: {
                "@type": format!("type.googleapis.com/{HTTP_PROTOCOL_OPTIONS}"),
                "common_http_protocol_options": {"max_requests_per_connection": 1},
                "explicit_http_config": {
                    "http2_protocol_options": {
                        "connection_keepalive": {"interval": "30s", "timeout": "10s"}
                    }
                },
            }
        },
    })
}

/// A listener on `0.0.0.0:port` whose only route sends `prefix` to `cluster`.
fn http_listener(stat_prefix: &str, port: u16, prefix: &str, cluster: &str) -> Value {
    json!({
        "name": format!("{WILDCARD}_{port}"),
        "address": socket_address(WILDCARD, port),
        "filter_chains": [{
            "filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": HCM_TYPE,
                    "codec_type": "AUTO",
                    "stat_prefix": stat_prefix,
                    "route_config": {
                        "virtual_hosts": [{
                            "name": "backend",
                            "domains": ["*"],
                            "routes": [{
                                "match": {"prefix": prefix},
                                "route": {"cluster": cluster},
                            }],
                        }]
                    },
                    "http_filters": [{
                        "name": "envoy.filters.http.router",
                        "typed_config": {"@type": ROUTER_TYPE},
                    }],
                }
            }]
        }],
    })
}

/// Writes `value` as pretty JSON to `path` atomically (a temporary file in the same directory,
/// then a rename), creating the directory if needed. Envoy never sees a half-written file.
pub fn write(path: &Path, value: &Value) -> Result<(), String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let name = path
        .file_name()
        .ok_or_else(|| format!("{}: not a file path", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut text =
        serde_json::to_string_pretty(value).map_err(|e| format!("encode bootstrap: {e}"))?;
    text.push('\n');
    std::fs::write(&tmp, text).map_err(|e| format!("write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("rename {} to {}: {e}", tmp.display(), path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Paths, ProxyType};
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    /// Stands in for the temporary root in the golden file.
    const ROOT_MARK: &str = "/ROOT";

    fn temp_root(tag: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("weft-agent-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        root
    }

    /// A VM set up as `istioctl x workload entry configure` leaves it.
    fn vm_config(root: &Path) -> AgentConfig {
        let p = Paths::new(root);
        std::fs::create_dir_all(p.cluster_env().parent().unwrap()).unwrap();
        std::fs::create_dir_all(p.mesh_config().parent().unwrap()).unwrap();
        std::fs::write(
            p.cluster_env(),
            "CANONICAL_REVISION='latest'\nCANONICAL_SERVICE='forum'\nISTIO_INBOUND_PORTS='*'\n\
             ISTIO_LOCAL_EXCLUDE_PORTS='15090,15021,15020'\nISTIO_METAJSON_LABELS='{\"app\":\"forum\",\"class\":\"vm\"}'\n\
             ISTIO_META_AUTO_REGISTER_GROUP='forum'\nISTIO_META_CLUSTER_ID='Kubernetes'\n\
             ISTIO_META_DNS_CAPTURE='true'\nISTIO_META_MESH_ID='mesh1'\nISTIO_META_NETWORK='vm-network'\n\
             ISTIO_META_WORKLOAD_NAME='forum'\nISTIO_NAMESPACE='forum-services'\nPOD_NAMESPACE='forum-services'\n\
             SERVICE_ACCOUNT='forum-sa'\nTRUST_DOMAIN='cluster.local'\n",
        )
        .unwrap();
        std::fs::write(
            p.mesh_config(),
            "defaultConfig:\n  discoveryAddress: istiod.istio-system.svc:15012\n  meshId: mesh1\n  proxyMetadata:\n    ISTIO_META_DNS_CAPTURE: \"true\"\n",
        )
        .unwrap();
        let env: BTreeMap<String, String> = [
            ("POD_NAME", "forum-vm"),
            ("INSTANCE_IP", "198.18.1.10"),
            // Pinned so that the golden file does not change with the crate version.
            ("ISTIO_META_ISTIO_VERSION", "weft-golden"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        AgentConfig::load(root, ProxyType::Sidecar, &env).unwrap()
    }

    #[test]
    fn bootstrap_matches_golden() {
        let root = temp_root("bootstrap-golden");
        let cfg = vm_config(&root);
        let got = bootstrap(&cfg, &BootstrapOptions::default());
        let text = serde_json::to_string_pretty(&got).unwrap() + "\n";
        let text = text.replace(&root.display().to_string(), ROOT_MARK);
        std::fs::remove_dir_all(&root).unwrap();

        let golden = std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("testdata/bootstrap-sidecar.json");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
            std::fs::write(&golden, &text).unwrap();
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
                golden.display()
            )
        });
        assert!(
            text == want,
            "bootstrap differs from {} (rerun with UPDATE_GOLDEN=1 and review the diff)\n{text}",
            golden.display()
        );
    }

    #[test]
    fn bootstrap_shape() {
        let root = temp_root("bootstrap-shape");
        let cfg = vm_config(&root);
        let opts = BootstrapOptions {
            admin_port: 25000,
            status_port: 25020,
            prometheus_port: 25090,
            readiness_port: 25021,
            delta: false,
        };
        let b = bootstrap(&cfg, &opts);
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(
            b["node"]["id"],
            "sidecar~198.18.1.10~forum-vm.forum-services~forum-services.svc.cluster.local"
        );
        assert_eq!(b["node"]["cluster"], "forum-vm.forum-services");
        assert_eq!(b["node"]["metadata"]["NETWORK"], "vm-network");
        assert_eq!(b["node"]["metadata"]["LABELS"]["class"], "vm");
        assert_eq!(b["admin"]["address"]["socket_address"]["port_value"], 25000);
        assert_eq!(b["dynamic_resources"]["ads_config"]["api_type"], "GRPC");
        let clusters = b["static_resources"]["clusters"].as_array().unwrap();
        let cluster = |n: &str| clusters.iter().find(|c| c["name"] == n).unwrap();
        let first_address = |n: &str| {
            cluster(n)["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
                .clone()
        };
        assert_eq!(
            first_address("xds-grpc")["pipe"]["path"],
            cfg.paths.xds_socket().display().to_string()
        );
        assert_eq!(
            first_address("sds-grpc")["pipe"]["path"],
            cfg.paths.sds_socket().display().to_string()
        );
        assert_eq!(
            first_address("prometheus_stats")["socket_address"]["port_value"],
            25000
        );
        assert_eq!(
            first_address("agent")["socket_address"]["port_value"],
            25020
        );
        let listeners = b["static_resources"]["listeners"].as_array().unwrap();
        let ports: Vec<_> = listeners
            .iter()
            .map(|l| l["address"]["socket_address"]["port_value"].clone())
            .collect();
        assert_eq!(ports, [json!(25090), json!(25021)]);
    }

    #[test]
    fn write_is_atomic_and_replaces() {
        let root = temp_root("bootstrap-write");
        let path = root.join("etc/istio/proxy/envoy-rev.json");
        write(&path, &json!({"a": 1})).unwrap();
        write(&path, &json!({"a": 2})).unwrap();
        let back: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back, json!({"a": 2}));
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["envoy-rev.json"], "no temporary file left behind");
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// Real Envoy (`--mode validate`) accepts the bootstrap, including the pipe addresses of
    /// sockets that do not exist yet.
    #[test]
    fn envoy_validates_bootstrap() {
        let envoy = weft_testkit::envoy_binary().expect("Envoy is needed for this test");
        let root = temp_root("bootstrap-validate");
        let cfg = vm_config(&root);
        for delta in [true, false] {
            let opts = BootstrapOptions {
                delta,
                ..BootstrapOptions::default()
            };
            let path = cfg.paths.bootstrap();
            write(&path, &bootstrap(&cfg, &opts)).unwrap();
            let out = std::process::Command::new(&envoy)
                .arg("--mode")
                .arg("validate")
                .arg("-c")
                .arg(&path)
                .args(["--disable-hot-restart", "-l", "warning"])
                .output()
                .unwrap_or_else(|e| panic!("run {}: {e}", envoy.display()));
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "envoy --mode validate rejected the bootstrap (delta={delta}): {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
                out.status
            );
            assert!(
                stdout.contains("OK"),
                "unexpected validate output: {stdout}{stderr}"
            );
        }
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// `weft-agent proxy router`: the same bootstrap under a `router~` node id (Istio's
    /// gateways run the same agent and bootstrap; weftd tells routers apart by the id).
    #[test]
    fn router_bootstrap_differs_only_in_the_node_id() {
        let root = temp_root("bootstrap-router");
        let sidecar = vm_config(&root);
        let mut env: BTreeMap<String, String> = sidecar.env.clone();
        env.insert("ISTIO_META_ISTIO_VERSION".into(), "weft-golden".into());
        let router = AgentConfig::load(&root, ProxyType::Router, &env).unwrap();
        let (mut a, b) = (
            bootstrap(&sidecar, &BootstrapOptions::default()),
            bootstrap(&router, &BootstrapOptions::default()),
        );
        assert_eq!(
            b["node"]["id"],
            "router~198.18.1.10~forum-vm.forum-services~forum-services.svc.cluster.local"
        );
        a["node"]["id"] = b["node"]["id"].clone();
        assert_eq!(a, b);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
