//! Routes answered by Envoy itself: redirects (`ApplyRedirect`) and direct responses
//! (`ApplyDirectResponse`).

use weft_model::networking::{HttpDirectResponse, HttpRedirect};
use weft_proto::envoy_types::pb::envoy::config::core::v3::{DataSource, data_source};
use weft_proto::envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, RedirectAction, Route, redirect_action, route,
};

/// Istio's `ApplyRedirect` on a route served on `port` (`tls`: the listener terminates TLS).
/// An unsupported redirect code leaves the route without an action, as Istio does (validation
/// admits only 301, 302, 303, 307 and 308).
pub(super) fn apply_redirect(out: &mut Route, r: &HttpRedirect, port: u32, tls: bool) {
    use redirect_action::RedirectResponseCode as Code;
    let mut action = RedirectAction {
        host_redirect: r.authority.clone(),
        path_rewrite_specifier: Some(if r.prefix_rewrite.is_empty() {
            redirect_action::PathRewriteSpecifier::PathRedirect(r.uri.clone())
        } else {
            redirect_action::PathRewriteSpecifier::PrefixRewrite(r.prefix_rewrite.clone())
        }),
        ..Default::default()
    };
    if !r.scheme.is_empty() {
        action.scheme_rewrite_specifier = Some(
            redirect_action::SchemeRewriteSpecifier::SchemeRedirect(r.scheme.clone()),
        );
    }
    if r.port.is_some() || r.derive_port.is_some() {
        if let Some(p) = r.port {
            action.port_redirect = p;
        } else if r.derive_port.as_deref() == Some("FROM_REQUEST_PORT") {
            // Envoy cannot take the request's port; routes are per listener port, so use it.
            action.port_redirect = port;
        }
        let scheme = match (r.scheme.as_str(), tls) {
            ("", true) => "https",
            ("", false) => "http",
            (s, _) => s,
        };
        // No explicit default port for the scheme.
        if (action.port_redirect == 80 && scheme == "http")
            || (action.port_redirect == 443 && scheme == "https")
        {
            action.port_redirect = 0;
        }
    }
    let code = match r.redirect_code {
        0 | 301 => Code::MovedPermanently,
        302 => Code::Found,
        303 => Code::SeeOther,
        307 => Code::TemporaryRedirect,
        308 => Code::PermanentRedirect,
        _ => {
            out.action = None;
            return;
        }
    };
    action.response_code = code as i32;
    out.action = Some(route::Action::Redirect(action));
}

/// Istio's `ApplyDirectResponse`: the status and an inline body (`string`, or base64 `bytes`).
pub(super) fn apply_direct_response(out: &mut Route, d: &HttpDirectResponse) {
    let body = d.body.as_ref().and_then(|b| {
        let specifier = if let Some(s) = &b.string {
            data_source::Specifier::InlineString(s.clone())
        } else {
            data_source::Specifier::InlineBytes(base64_decode(b.bytes.as_deref()?)?)
        };
        Some(DataSource {
            specifier: Some(specifier),
            ..Default::default()
        })
    });
    out.action = Some(route::Action::DirectResponse(DirectResponseAction {
        status: d.status,
        body,
        ..Default::default()
    }));
}

/// Protobuf-JSON `bytes`: standard or URL-safe base64, padding optional.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let digits = s.trim_end_matches('=').as_bytes();
    if digits.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= value(*c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_bodies() {
        assert_eq!(base64_decode("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(base64_decode("aGVsbG8"), Some(b"hello".to_vec()));
        assert_eq!(base64_decode("_-8"), Some(vec![0xff, 0xef]));
        assert_eq!(base64_decode("a"), None);
        assert_eq!(base64_decode("a$b="), None);
    }

    #[test]
    fn redirect_ports_and_codes() {
        let mut out = Route::default();
        let r = HttpRedirect {
            uri: "/v2".into(),
            authority: "new.example".into(),
            derive_port: Some("FROM_REQUEST_PORT".into()),
            redirect_code: 308,
            ..Default::default()
        };
        apply_redirect(&mut out, &r, 8080, false);
        let Some(route::Action::Redirect(a)) = &out.action else {
            panic!("{out:?}");
        };
        assert_eq!(a.port_redirect, 8080);
        assert_eq!(
            a.response_code,
            redirect_action::RedirectResponseCode::PermanentRedirect as i32
        );
        // Port 443 with https is implied.
        let r = HttpRedirect {
            port: Some(443),
            scheme: "https".into(),
            ..Default::default()
        };
        apply_redirect(&mut out, &r, 80, false);
        let Some(route::Action::Redirect(a)) = &out.action else {
            panic!("{out:?}");
        };
        assert_eq!(a.port_redirect, 0);
        assert_eq!(a.response_code, 0);
        let bad = HttpRedirect {
            redirect_code: 399,
            ..Default::default()
        };
        apply_redirect(&mut out, &bad, 80, false);
        assert_eq!(out.action, None);
    }
}
