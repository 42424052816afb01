//! PeerAuthentication: which mTLS mode a workload's inbound ports accept.

use std::collections::BTreeMap;
use weft_model::Spec;
use weft_model::kind::Kind;
use weft_model::security::{MutualTls, PeerAuthentication};
use weft_model::snapshot::Snapshot;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MtlsMode {
    /// Plaintext only.
    Disable,
    /// mTLS and plaintext (the default).
    Permissive,
    /// mTLS only.
    Strict,
}

impl MtlsMode {
    /// `None` for UNSET/empty (inherit).
    fn parse(m: Option<&MutualTls>) -> Option<MtlsMode> {
        match m.map(|m| m.mode.as_str()) {
            Some("DISABLE") => Some(MtlsMode::Disable),
            Some("PERMISSIVE") => Some(MtlsMode::Permissive),
            Some("STRICT") => Some(MtlsMode::Strict),
            _ => None,
        }
    }
}

/// The effective mode of one workload: a default and per-port overrides (workload ports).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MtlsPolicy {
    pub default: MtlsMode,
    pub ports: BTreeMap<u32, MtlsMode>,
}

impl MtlsPolicy {
    pub fn for_port(&self, port: u32) -> MtlsMode {
        self.ports.get(&port).copied().unwrap_or(self.default)
    }
}

struct Entry {
    namespace: String,
    name: String,
    creation: String,
    spec: PeerAuthentication,
}

impl Entry {
    fn selector(&self) -> Option<&BTreeMap<String, String>> {
        self.spec
            .selector
            .as_ref()
            .map(|s| &s.match_labels)
            .filter(|m| !m.is_empty())
    }
}

/// All PeerAuthentications of a snapshot, oldest first (then by name) within a namespace.
pub(crate) struct PeerAuthentications {
    by_ns: BTreeMap<String, Vec<Entry>>,
    root_namespace: String,
}

impl PeerAuthentications {
    pub(crate) fn new(snapshot: &Snapshot, root_namespace: &str) -> Self {
        let mut by_ns: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        for r in snapshot.of_kind(Kind::PeerAuthentication) {
            if let Spec::PeerAuthentication(pa) = &r.spec {
                by_ns
                    .entry(r.namespace().to_string())
                    .or_default()
                    .push(Entry {
                        namespace: r.namespace().to_string(),
                        name: r.name().to_string(),
                        creation: r.metadata.creation_timestamp.clone(),
                        spec: pa.clone(),
                    });
            }
        }
        for v in by_ns.values_mut() {
            v.sort_by(|a, b| (&a.creation, &a.name).cmp(&(&b.creation, &b.name)));
        }
        PeerAuthentications {
            by_ns,
            root_namespace: root_namespace.to_string(),
        }
    }

    /// Istio's precedence: PERMISSIVE < mesh-wide (root namespace, no selector) < namespace-wide
    /// (no selector) < the oldest workload policy whose selector matches `labels`; each level
    /// overrides only when its mode is set (UNSET inherits). `portLevelMtls` of the workload
    /// policy overrides per port, UNSET there inheriting the workload's mode.
    pub(crate) fn resolve(&self, namespace: &str, labels: &BTreeMap<String, String>) -> MtlsPolicy {
        let first_unselected = |ns: &str| {
            self.by_ns
                .get(ns)
                .and_then(|v| v.iter().find(|e| e.selector().is_none()))
        };
        let mesh = first_unselected(&self.root_namespace);
        let namespace_wide = first_unselected(namespace);
        let workload = self.by_ns.get(namespace).and_then(|v| {
            v.iter().find(|e| {
                e.selector()
                    .is_some_and(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
            })
        });
        let mut mode = MtlsMode::Permissive;
        for level in [mesh, namespace_wide, workload].into_iter().flatten() {
            debug_assert!(!level.namespace.is_empty());
            if let Some(m) = MtlsMode::parse(level.spec.mtls.as_ref()) {
                mode = m;
            }
        }
        let ports = workload
            .map(|w| {
                w.spec
                    .port_modes()
                    .map(|(port, m)| (port, MtlsMode::parse(Some(m)).unwrap_or(mode)))
                    .collect()
            })
            .unwrap_or_default();
        MtlsPolicy {
            default: mode,
            ports,
        }
    }
}
