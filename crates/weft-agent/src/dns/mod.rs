//! The agent's DNS proxy (Istio's `pkg/dns/client`): on 127.0.0.1:15053, UDP and TCP, it answers
//! the mesh's names from the NDS name table weftd sends and forwards every other query to the
//! `resolv.conf` servers.
//!
//! | module | what it does |
//! |---|---|
//! | `settings` | whether to run, address, timeout, query log (from the agent's environment) |
//! | `resolv_conf` | upstream servers and search domains |
//! | `table` | name table → lookup table with Istio's name variants and search CNAMEs (pure) |
//! | `reply` | one query → reply, error or forward; EDNS and truncation (pure) |
//! | `upstream` | forwarding over UDP or TCP |
//! | `server` | the listeners and the shared resolver |
//! | `nds` | decoding intercepted NDS responses |
//! | `persist` | the last table on disk, served at start-up |
//! | `query_log` | Istio's `dns:debug` query lines |

mod nds;
#[cfg(test)]
mod nds_tests;
mod persist;
mod query_log;
mod reply;
mod resolv_conf;
mod server;
mod settings;
mod table;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;
mod upstream;

use crate::config::{AgentConfig, ProxyType};
use crate::xds_proxy::{InterceptHandler, ProxyHooks};
use query_log::QueryLog;
use resolv_conf::ResolvConf;
use server::Resolver;
use std::sync::Arc;
use table::{LookupTable, ProxyScope};
use weft_proto::type_url;

/// The proxy's DNS domain without its namespace (Istio's `<ns>.svc.cluster.local`, the namespace
/// removed); the agent's node id uses the same cluster domain.
const PROXY_DOMAIN: &str = "svc.cluster.local";

/// Starts the DNS proxy when the agent's settings ask for it (`ISTIO_META_DNS_CAPTURE=true` on a
/// sidecar, `ISTIO_META_ENABLE_DNS_SERVER=true` anywhere) and has the xDS proxy request NDS and
/// hand the tables to it. Serves the persisted table, if any, until weftd sends one.
pub async fn start(cfg: &AgentConfig, hooks: &mut ProxyHooks) -> Result<(), String> {
    let Some(settings) = settings::from_env(&cfg.env, cfg.proxy_type == ProxyType::Sidecar)? else {
        return Ok(());
    };
    let resolv_path = resolv_conf::path_for(&cfg.paths.root);
    let resolv = match std::fs::read_to_string(&resolv_path) {
        Ok(text) => {
            let (rc, problems) = ResolvConf::parse(&text);
            for p in problems {
                tracing::warn!(target: "dns", "{}: {p}", resolv_path.display());
            }
            rc
        }
        Err(e) => {
            tracing::warn!(target: "dns", "{}: {e}; names outside the mesh will not resolve", resolv_path.display());
            ResolvConf::default()
        }
    };
    if resolv.nameservers.is_empty() {
        tracing::warn!(target: "dns", "{}: no nameserver; names outside the mesh get SERVFAIL", resolv_path.display());
    }
    let scope = ProxyScope {
        namespace: cfg.namespace.clone(),
        domain: PROXY_DOMAIN.to_string(),
        first_search: resolv.first_search().map(str::to_string),
    };
    let resolver = Arc::new(Resolver::new(
        resolv.nameservers.clone(),
        settings.forward_timeout,
        QueryLog {
            enabled: settings.query_log,
        },
    ));

    let saved = persist::path(&cfg.paths.root);
    let loaded = persist::load(&saved);
    if let Some((table, _)) = &loaded {
        let lookup = LookupTable::build(table, &scope);
        tracing::info!(target: "dns", names = lookup.len(), file = %saved.display(), "serving the saved name table until weftd sends one");
        resolver.set_table(lookup);
    }
    let persister = persist::Persister::start(saved, loaded.as_ref().map(|(_, b)| b.as_slice()));
    drop(loaded);
    trim_heap();

    let has_v6 = resolv.nameservers.iter().any(|s| s.is_ipv6());
    for addr in settings::listen_addrs(&settings.addr, has_v6)? {
        let (udp, tcp) = server::bind(addr).await?;
        tokio::spawn(server::serve_udp(udp, resolver.clone()));
        tokio::spawn(server::serve_tcp(tcp, resolver.clone()));
        tracing::info!(target: "dns", %addr, search = ?resolv.search, servers = ?resolv.nameservers, "DNS proxy listening (UDP, TCP)");
    }

    let received = std::sync::atomic::AtomicBool::new(false);
    let handler = move |got: &crate::xds_proxy::Intercepted| -> Result<(), String> {
        let Some((table, bytes)) = nds::decode(got)? else {
            return Ok(());
        };
        let first = !received.swap(true, std::sync::atomic::Ordering::Relaxed);
        let lookup = LookupTable::build(&table, &scope);
        drop(table);
        if first {
            tracing::info!(target: "dns", names = lookup.len(), version = %got.version_info, "name table received");
        } else {
            tracing::debug!(target: "dns", names = lookup.len(), version = %got.version_info, "updated lookup table");
        }
        resolver.set_table(lookup);
        persister.save(bytes);
        trim_heap();
        Ok(())
    };
    let nt = type_url::NAME_TABLE.to_string();
    hooks.intercept_type_urls.push(nt.clone());
    hooks.request_after_first_lds.push(nt.clone());
    hooks
        .handlers
        .insert(nt, InterceptHandler(Arc::new(handler)));
    Ok(())
}

/// Gives the heap pages freed by a table change (the decoded message, the old table) back to the
/// system. glibc keeps them otherwise, and a 10,000-name table's decoding garbage would stay in the
/// agent's RSS for good.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer; it only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}
