//! The kinds Weft understands, with their API groups and served versions.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Namespace,
    ServiceAccount,
    Service,
    ServiceEntry,
    WorkloadEntry,
    WorkloadGroup,
    VirtualService,
    DestinationRule,
    Gateway,
    Sidecar,
    PeerAuthentication,
    AuthorizationPolicy,
}

pub const NETWORKING_GROUP: &str = "networking.istio.io";
pub const SECURITY_GROUP: &str = "security.istio.io";

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::Namespace,
        Kind::ServiceAccount,
        Kind::Service,
        Kind::ServiceEntry,
        Kind::WorkloadEntry,
        Kind::WorkloadGroup,
        Kind::VirtualService,
        Kind::DestinationRule,
        Kind::Gateway,
        Kind::Sidecar,
        Kind::PeerAuthentication,
        Kind::AuthorizationPolicy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::ServiceAccount => "ServiceAccount",
            Kind::Service => "Service",
            Kind::ServiceEntry => "ServiceEntry",
            Kind::WorkloadEntry => "WorkloadEntry",
            Kind::WorkloadGroup => "WorkloadGroup",
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
            Kind::Gateway => "Gateway",
            Kind::Sidecar => "Sidecar",
            Kind::PeerAuthentication => "PeerAuthentication",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
        }
    }

    /// API group ("" for core).
    pub fn group(self) -> &'static str {
        match self {
            Kind::Namespace | Kind::ServiceAccount | Kind::Service => "",
            Kind::PeerAuthentication | Kind::AuthorizationPolicy => SECURITY_GROUP,
            _ => NETWORKING_GROUP,
        }
    }

    /// Versions served for this kind, newest first.
    pub fn versions(self) -> &'static [&'static str] {
        match self.group() {
            "" => &["v1"],
            SECURITY_GROUP => &["v1", "v1beta1"],
            _ => &["v1", "v1beta1", "v1alpha3"],
        }
    }

    /// Preferred `apiVersion` string when Weft writes a resource.
    pub fn api_version(self) -> String {
        match self.group() {
            "" => "v1".to_string(),
            g => format!("{g}/v1"),
        }
    }

    /// Whether the resource lives in a namespace (all but `Namespace`).
    pub fn namespaced(self) -> bool {
        self != Kind::Namespace
    }

    /// Lower-case plural, as kubectl and the admin API name it.
    pub fn plural(self) -> String {
        let lower = self.name().to_ascii_lowercase();
        match lower.strip_suffix('y') {
            // policy → policies, but gateway → gateways.
            Some(stem) if !stem.ends_with(['a', 'e', 'i', 'o', 'u']) => format!("{stem}ies"),
            _ => format!("{lower}s"),
        }
    }

    /// How kubectl names the kind in its messages: `virtualservice.networking.istio.io`
    /// (`virtualservices.networking.istio.io` when `plural`); `service` / `services` for core kinds.
    pub fn qualified_name(self, plural: bool) -> String {
        let name = if plural {
            self.plural()
        } else {
            self.name().to_ascii_lowercase()
        };
        match self.group() {
            "" => name,
            g => format!("{name}.{g}"),
        }
    }

    /// Finds a kind from a name, plural or short name as kubectl accepts them (`vs`, `dr`, `we`, ...).
    pub fn lookup(word: &str) -> Option<Kind> {
        let w = word.to_ascii_lowercase();
        let w = w.split('.').next().unwrap_or_default().to_string();
        let short = match w.as_str() {
            "ns" => Some(Kind::Namespace),
            "sa" => Some(Kind::ServiceAccount),
            "svc" => Some(Kind::Service),
            "se" => Some(Kind::ServiceEntry),
            "we" => Some(Kind::WorkloadEntry),
            "wg" => Some(Kind::WorkloadGroup),
            "vs" => Some(Kind::VirtualService),
            "dr" => Some(Kind::DestinationRule),
            "gw" => Some(Kind::Gateway),
            "pa" => Some(Kind::PeerAuthentication),
            "ap" => Some(Kind::AuthorizationPolicy),
            _ => None,
        };
        short.or_else(|| {
            Kind::ALL
                .into_iter()
                .find(|k| k.name().eq_ignore_ascii_case(&w) || k.plural() == w)
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Result of matching `apiVersion` + `kind` against what Weft serves.
#[derive(Debug, PartialEq, Eq)]
pub enum KindMatch {
    /// A mesh kind in a served version.
    Mesh(Kind),
    /// A known kind in a version that is not served: kubectl's wording.
    UnservedVersion(String),
    /// Not a mesh kind (Deployment, ServiceMonitor, IstioOperator, ...): skipped with a note.
    Other,
}

pub fn match_kind(api_version: &str, kind: &str) -> KindMatch {
    let (group, version) = match api_version.rsplit_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let Some(k) = Kind::ALL
        .into_iter()
        .find(|k| k.name() == kind && k.group() == group)
    else {
        return KindMatch::Other;
    };
    if k.versions().contains(&version) {
        KindMatch::Mesh(k)
    } else {
        KindMatch::UnservedVersion(format!(
            "no matches for kind \"{kind}\" in version \"{api_version}\""
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_served_versions() {
        assert_eq!(
            match_kind("networking.istio.io/v1alpha3", "VirtualService"),
            KindMatch::Mesh(Kind::VirtualService)
        );
        assert_eq!(
            match_kind("security.istio.io/v1beta1", "PeerAuthentication"),
            KindMatch::Mesh(Kind::PeerAuthentication)
        );
        assert_eq!(match_kind("v1", "Service"), KindMatch::Mesh(Kind::Service));
        assert_eq!(match_kind("apps/v1", "Deployment"), KindMatch::Other);
        assert_eq!(
            match_kind("security.istio.io/v1alpha3", "PeerAuthentication"),
            KindMatch::UnservedVersion(
                "no matches for kind \"PeerAuthentication\" in version \"security.istio.io/v1alpha3\""
                    .into()
            )
        );
    }

    #[test]
    fn looks_up_short_names() {
        assert_eq!(Kind::lookup("vs"), Some(Kind::VirtualService));
        assert_eq!(Kind::lookup("workloadentries"), Some(Kind::WorkloadEntry));
        assert_eq!(
            Kind::lookup("AuthorizationPolicy"),
            Some(Kind::AuthorizationPolicy)
        );
        assert_eq!(Kind::lookup("nope"), None);
        assert_eq!(Kind::lookup("gateways"), Some(Kind::Gateway));
        assert_eq!(
            Kind::lookup("authorizationpolicies"),
            Some(Kind::AuthorizationPolicy)
        );
    }

    #[test]
    fn names_kinds_like_kubectl() {
        assert_eq!(
            Kind::VirtualService.qualified_name(false),
            "virtualservice.networking.istio.io"
        );
        assert_eq!(
            Kind::Gateway.qualified_name(true),
            "gateways.networking.istio.io"
        );
        assert_eq!(
            Kind::AuthorizationPolicy.qualified_name(true),
            "authorizationpolicies.security.istio.io"
        );
        assert_eq!(Kind::Service.qualified_name(false), "service");
    }
}
