//! The admin and debug HTTP API (default 127.0.0.1:8080). `/api/v1/*` needs the admin credential
//! from `<state-dir>/admin-token` as `Authorization: Bearer`; `/debug/*` is read-only.
//!
//! Config routes (what `weftctl apply/get/delete` speak):
//! - `POST /api/v1/apply[?namespace=NS]`: YAML or JSON documents (or, with content type
//!   [`FILES_CONTENT_TYPE`], `[{"file": NAME, "content": TEXT}, ...]` so that errors name the
//!   user's files). All or nothing: 400 `{"errors": [...], "notes": [...]}` listing every problem,
//!   or 200 `{"results": ["virtualservice.networking.istio.io/foo created", ...], ...}`.
//! - `GET /api/v1/resources/KIND[?namespace=NS|allNamespaces=true][&name=N]`:
//!   `{"kind": K, "items": [{"source": "file:PATH"|"api"|"runtime", "object": {...}, "vip": IP?}]}`.
//! - `DELETE /api/v1/resources/KIND/NS/NAME` (`KIND/NAME` when cluster-scoped): 200, 404, or 409
//!   for objects owned by a config file.
//! - `GET /api/v1/errors`: the config entries currently rejected.
//! - `GET /debug/configz`: everything served, with versions, sources, VIPs and errors.
//! - `GET /debug/ndsz?proxyID=NAME.NS`: the DNS name table the connected proxy is served, as
//!   istiod's `/debug/ndsz` (an Envoy-style config dump: `{"configs": [NameTable]}`).

use crate::http::{Body, Req, json, respond, text};
use crate::store::{Origin, StoreError, StoreHandle, StoreSnapshot};
use crate::xds::XdsState;
use hyper::{Method, Response, StatusCode};
use prost::Message;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use weft_identity::token::TokenAuthority;
use weft_model::snapshot::Key;
use weft_model::{Entry, Kind, Outcome, Resource};
use weft_proto::nds::NameTable;
use weft_proto::type_url;

/// Content type of an apply body that carries several named files.
pub const FILES_CONTENT_TYPE: &str = "application/x-weft-files+json";

pub struct Admin {
    pub store: StoreHandle,
    pub admin_token: String,
    pub tokens: Arc<TokenAuthority>,
    pub root_pem: String,
    pub xds: Arc<XdsState>,
}

/// Longest token the API mints (Istio's `istioctl --tokenDuration` has no cap; one year is plenty).
const MAX_TOKEN_SECONDS: u64 = 365 * 24 * 3600;

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Admin {
    fn authorized(&self, req: &Req) -> bool {
        req.headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| constant_time_eq(t.trim().as_bytes(), self.admin_token.as_bytes()))
    }

    pub async fn handle(self: Arc<Self>, req: Req) -> Response<Body> {
        if req.path.starts_with("/api/") && !self.authorized(&req) {
            return text(
                StatusCode::UNAUTHORIZED,
                "admin API needs `Authorization: Bearer <token>` with the token from <state-dir>/admin-token",
            );
        }
        match (&req.method, req.path.as_str()) {
            (&Method::GET, "/healthz") | (&Method::GET, "/ready") => text(StatusCode::OK, "ok"),
            (&Method::GET, "/api/v1/root-cert") => respond(
                StatusCode::OK,
                "application/x-pem-file",
                self.root_pem.clone(),
            ),
            (&Method::POST, "/api/v1/tokens") => self.mint_token(&req),
            (&Method::GET, "/debug/syncz") => json(
                StatusCode::OK,
                &self.xds.syncz(req.query_param("proxyID").as_deref()),
            ),
            (&Method::POST, "/api/v1/apply") => self.apply(&req).await,
            (&Method::GET, "/api/v1/errors") => json(
                StatusCode::OK,
                &json!({"errors": errors_json(&self.store.snapshot())}),
            ),
            (&Method::GET, "/debug/ndsz") => self.ndsz(&req),
            (&Method::GET, "/debug/configz") => {
                json(StatusCode::OK, &configz(&self.store.snapshot()))
            }
            (&Method::GET, p) if p.starts_with(RESOURCES) => self.get_resources(&req),
            (&Method::DELETE, p) if p.starts_with(RESOURCES) => self.delete_resource(&req).await,
            _ => text(
                StatusCode::NOT_FOUND,
                format!("no route for {} {}", req.method, req.path),
            ),
        }
    }

    fn mint_token(&self, req: &Req) -> Response<Body> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        struct TokenRequest {
            namespace: String,
            service_account: String,
            #[serde(default)]
            duration_seconds: Option<u64>,
        }
        let r: TokenRequest = match serde_json::from_slice(&req.body) {
            Ok(r) => r,
            Err(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "invalid token request (want {{\"namespace\", \"serviceAccount\", \"durationSeconds\"}}): {e}"
                    ),
                );
            }
        };
        for (field, v) in [
            ("namespace", &r.namespace),
            ("serviceAccount", &r.service_account),
        ] {
            if let Err(e) = weft_model::validate::common::k8s_dns1123_subdomain(v) {
                return text(StatusCode::BAD_REQUEST, format!("{field}: {e}"));
            }
        }
        let secs = r.duration_seconds.unwrap_or(3600);
        if secs == 0 || secs > MAX_TOKEN_SECONDS {
            return text(
                StatusCode::BAD_REQUEST,
                format!("durationSeconds must be between 1 and {MAX_TOKEN_SECONDS}, got {secs}"),
            );
        }
        let now = SystemTime::now();
        match self.tokens.mint(
            &r.namespace,
            &r.service_account,
            Duration::from_secs(secs),
            now,
        ) {
            Ok(token) => {
                let exp = (now + Duration::from_secs(secs))
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                tracing::info!(namespace = %r.namespace, service_account = %r.service_account, secs, "minted token");
                json(
                    StatusCode::OK,
                    &json!({"token": token, "expirationTimestamp": exp}),
                )
            }
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e),
        }
    }
}

const RESOURCES: &str = "/api/v1/resources/";

fn error_json(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json(status, &json!({"error": message.into()}))
}

fn not_found(kind: Kind, name: &str) -> Response<Body> {
    error_json(
        StatusCode::NOT_FOUND,
        format!(
            "Error from server (NotFound): {} \"{name}\" not found",
            kind.qualified_name(true)
        ),
    )
}

fn unknown_kind(word: &str) -> Response<Body> {
    error_json(
        StatusCode::NOT_FOUND,
        format!("the server doesn't have a resource type \"{word}\""),
    )
}

fn item_json(snap: &StoreSnapshot, r: &Resource, origin: &Origin) -> Value {
    let mut item = json!({"source": origin.to_string(), "object": r.to_json()});
    let key = Key::of(r);
    if r.kind == Kind::Service
        && let Some(vip) = snap
            .allocations
            .get(&(key.namespace.clone(), key.name.clone()))
    {
        item["vip"] = json!(vip.to_string());
    }
    if snap.stale.contains(&key) {
        item["servingLastValid"] = json!(true);
    }
    item
}

fn errors_json(snap: &StoreSnapshot) -> Vec<Value> {
    snap.errors
        .iter()
        .map(|e| {
            let messages: Vec<String> = match &e.outcome {
                Outcome::Invalid { errors, .. } => errors.iter().map(|f| f.to_string()).collect(),
                _ => vec![],
            };
            let stale = crate::store::merge::entry_key(e).is_some_and(|k| {
                snap.stale.contains(&k)
                    && matches!(snap.origins.get(&k), Some(Origin::File(f)) if *f == e.source.file)
            });
            json!({
                "entry": e.to_string(),
                "file": e.source.file,
                "doc": e.source.doc,
                "kind": e.kind,
                "namespace": e.namespace,
                "name": e.name,
                "messages": messages,
                "servingLastValid": stale,
            })
        })
        .collect()
}

fn configz(snap: &StoreSnapshot) -> Value {
    let items: Vec<Value> = snap
        .config
        .iter()
        .map(|(k, r)| {
            let origin = snap.origins.get(k).cloned().unwrap_or(Origin::Api);
            item_json(snap, r, &origin)
        })
        .collect();
    let allocations: serde_json::Map<String, Value> = snap
        .allocations
        .iter()
        .map(|((ns, name), ip)| (format!("{ns}/{name}"), json!(ip.to_string())))
        .collect();
    json!({
        "version": snap.version(),
        "items": items,
        "allocations": allocations,
        "errors": snap.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
    })
}

/// Gives a namespaced resource written without a namespace the request's namespace (validating
/// it again there), and rejects one written for another namespace, as `kubectl apply -n` does.
fn in_namespace(entry: Entry, ns: &str) -> Entry {
    let Outcome::Valid { resource, .. } = &entry.outcome else {
        return entry;
    };
    if !resource.kind.namespaced() {
        return entry;
    }
    let written = resource.metadata.namespace.clone();
    if written == ns {
        return entry;
    }
    if !written.is_empty() {
        return Entry {
            namespace: written.clone(),
            outcome: Outcome::Invalid {
                errors: vec![weft_model::validate::FieldError {
                    path: "metadata.namespace".into(),
                    message: format!(
                        "the namespace from the provided object \"{written}\" does not match the namespace \"{ns}\". You must pass '--namespace={written}' to perform this operation."
                    ),
                }],
                warnings: vec![],
            },
            ..entry
        };
    }
    let mut obj = resource.to_json();
    obj["metadata"]["namespace"] = json!(ns);
    let text = serde_json::to_string(&obj).unwrap_or_default();
    match weft_model::load_str(&entry.source.file, &text).pop() {
        Some(again) => Entry {
            source: entry.source,
            ..again
        },
        None => entry,
    }
}

impl Admin {
    async fn apply(&self, req: &Req) -> Response<Body> {
        let files: Vec<(String, String)> = if req
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(FILES_CONTENT_TYPE))
        {
            #[derive(serde::Deserialize)]
            struct File {
                file: String,
                content: String,
            }
            match serde_json::from_slice::<Vec<File>>(&req.body) {
                Ok(f) => f.into_iter().map(|f| (f.file, f.content)).collect(),
                Err(e) => {
                    return json(
                        StatusCode::BAD_REQUEST,
                        &json!({"errors": [format!("invalid {FILES_CONTENT_TYPE} body: {e}")]}),
                    );
                }
            }
        } else {
            match std::str::from_utf8(&req.body) {
                Ok(t) => vec![("<request>".to_string(), t.to_string())],
                Err(_) => {
                    return json(
                        StatusCode::BAD_REQUEST,
                        &json!({"errors": ["request body is not UTF-8 text"]}),
                    );
                }
            }
        };
        let namespace = req.query_param("namespace").filter(|n| !n.is_empty());
        let mut entries: Vec<Entry> = files
            .iter()
            .flat_map(|(f, t)| weft_model::load_str(f, t))
            .collect();
        if let Some(ns) = &namespace {
            entries = entries.into_iter().map(|e| in_namespace(e, ns)).collect();
        }
        let mut errors = Vec::new();
        let mut notes = Vec::new();
        let mut warnings = Vec::new();
        let mut resources = Vec::new();
        for e in entries {
            match &e.outcome {
                Outcome::Invalid { .. } => errors.push(e.to_string()),
                Outcome::Skipped { .. } => notes.push(e.to_string()),
                Outcome::Valid {
                    resource,
                    warnings: w,
                } => {
                    if !w.is_empty() {
                        warnings.push(e.to_string());
                    }
                    resources.push((**resource).clone());
                }
            }
        }
        if errors.is_empty() && resources.is_empty() {
            errors.push("no objects passed to apply".to_string());
        }
        if !errors.is_empty() {
            return json(
                StatusCode::BAD_REQUEST,
                &json!({"errors": errors, "notes": notes, "warnings": warnings}),
            );
        }
        let names: Vec<String> = resources
            .iter()
            .map(|r| format!("{}/{}", r.kind.qualified_name(false), r.name()))
            .collect();
        match self.store.apply(resources).await {
            Ok(results) => {
                let lines: Vec<String> = names
                    .iter()
                    .zip(&results)
                    .map(|(n, r)| format!("{n} {r}"))
                    .collect();
                for l in &lines {
                    tracing::info!("apply: {l}");
                }
                json(
                    StatusCode::OK,
                    &json!({"results": lines, "notes": notes, "warnings": warnings}),
                )
            }
            Err(errors) => json(
                StatusCode::BAD_REQUEST,
                &json!({"errors": errors, "notes": notes, "warnings": warnings}),
            ),
        }
    }

    fn get_resources(&self, req: &Req) -> Response<Body> {
        let word = &req.path[RESOURCES.len()..];
        if word.is_empty() || word.contains('/') {
            return error_json(
                StatusCode::BAD_REQUEST,
                "want GET /api/v1/resources/KIND[?namespace=NS|allNamespaces=true][&name=NAME]",
            );
        }
        let Some(kind) = Kind::lookup(word) else {
            return unknown_kind(word);
        };
        let all = req.query_param("allNamespaces").as_deref() == Some("true");
        let namespace = req
            .query_param("namespace")
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        let snap = self.store.snapshot();
        let items: Vec<Value> = match req.query_param("name").filter(|n| !n.is_empty()) {
            Some(name) => {
                let key = Key {
                    kind,
                    namespace: if kind.namespaced() {
                        namespace
                    } else {
                        String::new()
                    },
                    name,
                };
                match snap.get(&key) {
                    Some((r, origin)) => vec![item_json(&snap, &r, &origin)],
                    None => return not_found(kind, &key.name),
                }
            }
            None => snap
                .list(kind, (!all).then_some(namespace.as_str()))
                .iter()
                .map(|(r, o)| item_json(&snap, r, o))
                .collect(),
        };
        json(
            StatusCode::OK,
            &json!({"kind": kind.name(), "version": snap.version(), "items": items}),
        )
    }

    async fn delete_resource(&self, req: &Req) -> Response<Body> {
        let parts: Vec<&str> = req.path[RESOURCES.len()..].split('/').collect();
        let Some(kind) = Kind::lookup(parts[0]) else {
            return unknown_kind(parts[0]);
        };
        let (namespace, name) = match (kind.namespaced(), parts.as_slice()) {
            (true, [_, ns, name]) => (ns.to_string(), name.to_string()),
            (false, [_, name]) | (false, [_, "", name]) => (String::new(), name.to_string()),
            _ => {
                return error_json(
                    StatusCode::BAD_REQUEST,
                    "want DELETE /api/v1/resources/KIND/NAMESPACE/NAME (KIND/NAME for cluster-scoped kinds)",
                );
            }
        };
        if name.is_empty() {
            return error_json(StatusCode::BAD_REQUEST, "a name is required");
        }
        let key = Key {
            kind,
            namespace,
            name,
        };
        match self.store.delete(key.clone()).await {
            Ok(true) => {
                tracing::info!("deleted {key}");
                json(StatusCode::OK, &json!({"result": "deleted"}))
            }
            Ok(false) => not_found(kind, &key.name),
            Err(StoreError::Conflict(m)) => error_json(StatusCode::CONFLICT, m),
            Err(StoreError::Io(m)) => error_json(StatusCode::INTERNAL_SERVER_ERROR, m),
        }
    }
}

impl Admin {
    /// `/debug/ndsz`: the name table of a connected proxy, from the current push.
    fn ndsz(&self, req: &Req) -> Response<Body> {
        let Some(id) = req.query_param("proxyID").filter(|p| !p.is_empty()) else {
            return text(
                StatusCode::BAD_REQUEST,
                "You must provide a proxyID in the query string",
            );
        };
        // The connected proxy as its node described it (metadata included: network, labels).
        let Some(proxy) = self.xds.proxy(&id) else {
            return text(
                StatusCode::NOT_FOUND,
                format!("Proxy {id} not connected to this weftd instance"),
            );
        };
        let push = self.xds.pushes().borrow().clone();
        let configs: Vec<Value> = push
            .context
            .generate(&proxy, type_url::NAME_TABLE)
            .iter()
            .filter_map(|r| NameTable::decode(r.resource.value.as_slice()).ok())
            .map(|t| name_table_json(&t))
            .collect();
        json(StatusCode::OK, &json!({ "configs": configs }))
    }
}

/// A name table as protobuf JSON (`@type` first, empty fields left out).
fn name_table_json(t: &NameTable) -> Value {
    let table: serde_json::Map<String, Value> = t
        .table
        .iter()
        .map(|(host, info)| {
            let mut v = serde_json::Map::new();
            let fields = [
                ("ips", json!(info.ips), info.ips.is_empty()),
                ("registry", json!(info.registry), info.registry.is_empty()),
                (
                    "shortname",
                    json!(info.shortname),
                    info.shortname.is_empty(),
                ),
                (
                    "namespace",
                    json!(info.namespace),
                    info.namespace.is_empty(),
                ),
                ("altHosts", json!(info.alt_hosts), info.alt_hosts.is_empty()),
            ];
            for (k, val, empty) in fields {
                if !empty {
                    v.insert(k.into(), val);
                }
            }
            (host.clone(), Value::Object(v))
        })
        .collect();
    json!({"@type": type_url::NAME_TABLE, "table": table})
}
