//! VirtualServices as istiod indexes them (`initVirtualServices`, `MergedVirtualServices`):
//! short names resolved in each resource's namespace, delegate VirtualServices merged into their
//! roots, `exportTo` applied, and the order a proxy sees them in: VirtualServices private to its
//! namespace, then those exported to it by name, then public ones, each by creation time (then
//! name, then namespace). A VirtualService without `gateways` is bound to `mesh` (sidecars).
//!
//! Several VirtualServices for one host are not merged for sidecars (Istio merges only for
//! gateways): the first in that order claims the host's virtual host, as istiod does.

pub(crate) mod binding;
mod delegate;
pub(crate) mod hosts;
pub(crate) mod resolve;

use resolve::MESH_GATEWAY;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use weft_model::Kind;
use weft_model::Spec;
use weft_model::networking::VirtualService;
use weft_model::snapshot::Snapshot;

/// Who sees a VirtualService (`exportTo`, `.` meaning its own namespace; none given: everyone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Visibility {
    Public,
    Namespaces(BTreeSet<String>),
    Nobody,
}

impl Visibility {
    fn of(export_to: &[String], namespace: &str) -> Visibility {
        if export_to.is_empty() || export_to.iter().any(|e| e == "*") {
            return Visibility::Public;
        }
        if export_to.iter().any(|e| e == "~") {
            return Visibility::Nobody;
        }
        Visibility::Namespaces(
            export_to
                .iter()
                .map(|e| if e == "." { namespace } else { e.as_str() }.to_string())
                .collect(),
        )
    }

    fn includes(&self, namespace: &str) -> bool {
        match self {
            Visibility::Public => true,
            Visibility::Namespaces(set) => set.contains(namespace),
            Visibility::Nobody => false,
        }
    }
}

/// One root VirtualService (with `hosts`), ready for translation.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BoundVirtualService {
    pub name: String,
    pub namespace: String,
    pub creation: String,
    /// Hosts, destinations and gateways resolved; delegated routes merged in.
    pub spec: VirtualService,
    pub visibility: Visibility,
}

impl BoundVirtualService {
    /// Gateways it is bound to (`mesh` when none is named).
    pub fn gateways(&self) -> Vec<&str> {
        if self.spec.gateways.is_empty() {
            vec![MESH_GATEWAY]
        } else {
            self.spec.gateways.iter().map(String::as_str).collect()
        }
    }

    fn bound_to(&self, gateway: &str) -> bool {
        self.gateways().contains(&gateway)
    }

    /// Istio's config reference (`istio.config` route and filter chain metadata).
    pub fn config_path(&self) -> String {
        format!(
            "/apis/networking.istio.io/v1/namespaces/{}/virtual-service/{}",
            self.namespace, self.name
        )
    }
}

/// Every root VirtualService of a snapshot, in Istio's order.
#[derive(Clone, Debug, Default)]
pub(crate) struct VirtualServices {
    all: Vec<Arc<BoundVirtualService>>,
    sharing: Sharing,
}

impl VirtualServices {
    pub fn new(snapshot: &Snapshot) -> VirtualServices {
        let mut roots = Vec::new();
        let mut delegates: BTreeMap<(String, String), (VirtualService, Visibility)> =
            BTreeMap::new();
        for r in snapshot.of_kind(Kind::VirtualService) {
            let Spec::VirtualService(spec) = &r.spec else {
                continue;
            };
            let ns = r.namespace().to_string();
            let mut spec = spec.clone();
            resolve::resolve(&mut spec, &ns);
            let visibility = Visibility::of(&spec.export_to, &ns);
            if spec.hosts.is_empty() {
                delegates.insert((ns, r.name().to_string()), (spec, visibility));
            } else {
                roots.push(BoundVirtualService {
                    name: r.name().to_string(),
                    namespace: ns,
                    creation: r.metadata.creation_timestamp.clone(),
                    spec,
                    visibility,
                });
            }
        }
        for vs in &mut roots {
            merge_delegates(vs, &delegates);
        }
        roots.sort_by(|a, b| {
            (&a.creation, &a.name, &a.namespace).cmp(&(&b.creation, &b.name, &b.namespace))
        });
        let all: Vec<Arc<BoundVirtualService>> = roots.into_iter().map(Arc::new).collect();
        VirtualServices {
            sharing: Sharing::of(&all),
            all,
        }
    }

    /// Istio's `VirtualServicesForGateway(proxyNamespace, gateway)`: those bound to `gateway`
    /// (`mesh` for sidecars) a proxy in `namespace` may see, private ones first, then exported to
    /// it, then public.
    pub fn for_gateway(&self, namespace: &str, gateway: &str) -> Vec<&Arc<BoundVirtualService>> {
        let bound = || self.all.iter().filter(move |vs| vs.bound_to(gateway));
        let named = |own: bool| {
            bound().filter(move |vs| {
                matches!(&vs.visibility, Visibility::Namespaces(set) if set.contains(namespace))
                    && (vs.namespace == namespace) == own
            })
        };
        named(true)
            .chain(named(false))
            .chain(bound().filter(|vs| vs.visibility == Visibility::Public))
            .collect()
    }

    /// The VirtualServices of sidecars in `namespace`.
    pub fn for_mesh(&self, namespace: &str) -> Vec<&Arc<BoundVirtualService>> {
        self.for_gateway(namespace, MESH_GATEWAY)
    }

    /// Whether some sidecar's HTTP routes depend on its labels (`sourceLabels` in a match), so
    /// route configurations cannot be shared by namespace.
    pub fn http_routes_depend_on_labels(&self) -> bool {
        self.sharing.http_by_labels
    }

    /// Whether some VirtualService bound to `mesh` has TCP or TLS routes: outbound listeners then
    /// depend on the proxy's namespace.
    pub fn has_mesh_l4_routes(&self) -> bool {
        self.sharing.l4_routes
    }

    /// Whether those TCP or TLS routes depend on the proxy's labels.
    pub fn l4_routes_depend_on_labels(&self) -> bool {
        self.sharing.l4_by_labels
    }
}

/// What the mesh-bound VirtualServices make sidecar resources depend on.
#[derive(Clone, Copy, Debug, Default)]
struct Sharing {
    http_by_labels: bool,
    l4_routes: bool,
    l4_by_labels: bool,
}

impl Sharing {
    fn of(all: &[Arc<BoundVirtualService>]) -> Sharing {
        let mut out = Sharing::default();
        for vs in all.iter().filter(|vs| vs.bound_to(MESH_GATEWAY)) {
            let spec = &vs.spec;
            out.http_by_labels |= spec
                .http
                .iter()
                .any(|h| h.match_.iter().any(|m| !m.source_labels.is_empty()));
            out.l4_routes |= !spec.tcp.is_empty() || !spec.tls.is_empty();
            out.l4_by_labels |= spec
                .tcp
                .iter()
                .any(|t| t.match_.iter().any(|m| !m.source_labels.is_empty()))
                || spec
                    .tls
                    .iter()
                    .any(|t| t.match_.iter().any(|m| !m.source_labels.is_empty()));
        }
        out
    }
}

/// Replaces every delegating HTTP route of `vs` by the delegate's routes (a delegate that is
/// missing or not exported to the root's namespace drops just that route).
fn merge_delegates(
    vs: &mut BoundVirtualService,
    delegates: &BTreeMap<(String, String), (VirtualService, Visibility)>,
) {
    if !vs.spec.http.iter().any(|h| h.delegate.is_some()) {
        return;
    }
    let mut merged = Vec::new();
    for http in std::mem::take(&mut vs.spec.http) {
        let Some(d) = &http.delegate else {
            merged.push(http);
            continue;
        };
        let ns = if d.namespace.is_empty() {
            vs.namespace.clone()
        } else {
            d.namespace.clone()
        };
        let Some((delegate, visibility)) = delegates.get(&(ns, d.name.clone())) else {
            continue;
        };
        if !visibility.includes(&vs.namespace) {
            continue;
        }
        merged.extend(delegate::merge_http_routes(&http, &delegate.http));
    }
    vs.spec.http = merged;
}

#[cfg(test)]
mod tests;
