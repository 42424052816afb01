//! The admin and debug HTTP API (default 127.0.0.1:8080). `/api/v1/*` needs the admin credential
//! from `<state-dir>/admin-token` as `Authorization: Bearer`; `/debug/*` is read-only.

use crate::http::{Body, Req, json, respond, text};
use crate::xds::XdsState;
use hyper::{Method, Response, StatusCode};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use weft_identity::token::TokenAuthority;

pub struct Admin {
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
