//! Test meshes: `svc-<s>` Services in `ns-<s mod 3>` (port 80 → 8080) and WorkloadEntries
//! `wl-<w>` (10.1.0.<w+1>) spread over them, turned into push contexts.

use std::sync::Arc;
use weft_model::load::{Outcome, load_str};
use weft_model::snapshot::Snapshot;
use weft_xds::{Allocations, MeshConfig, Proxy, PushContext};

#[derive(Clone)]
pub struct Mesh {
    pub services: usize,
    /// Per WorkloadEntry: the service it belongs to and its weight.
    pub entries: Vec<(usize, u32)>,
    /// More documents.
    pub extra: String,
}

pub fn ns(s: usize) -> String {
    format!("ns-{}", s % 3)
}

impl Mesh {
    pub fn new(services: usize, entries: usize) -> Mesh {
        Mesh {
            services,
            entries: (0..entries).map(|w| (w % services.max(1), 1)).collect(),
            extra: String::new(),
        }
    }

    pub fn yaml(&self) -> String {
        let mut y = String::new();
        for s in 0..self.services {
            y += &format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{s}\n  namespace: {}\nspec:\n  clusterIP: 10.96.{}.{}\n  selector:\n    app: svc-{s}\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n---\n",
                ns(s),
                s / 250,
                s % 250 + 1
            );
        }
        for (w, (s, weight)) in self.entries.iter().enumerate() {
            y += &format!(
                "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: wl-{w}\n  namespace: {}\nspec:\n  address: {}\n  labels:\n    app: svc-{s}\n  weight: {weight}\n  serviceAccount: sa-{s}\n---\n",
                ns(*s),
                ip(w)
            );
        }
        y + &self.extra
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        let resources = load_str("mesh.yaml", &self.yaml())
            .into_iter()
            .map(|e| match e.outcome {
                Outcome::Valid { resource, .. } => Arc::new(*resource),
                other => panic!("{other:?}"),
            });
        Arc::new(Snapshot::new(1, resources))
    }

    pub fn context(&self, prev: Option<&PushContext>) -> PushContext {
        let (alloc, mesh) = (Allocations::new(), MeshConfig::default());
        match prev {
            Some(p) => PushContext::next(p, self.snapshot(), &alloc, &mesh),
            None => PushContext::new(self.snapshot(), &alloc, &mesh),
        }
    }

    /// The sidecar of WorkloadEntry `w`.
    pub fn proxy(&self, w: usize) -> Proxy {
        Proxy::sidecar(&format!("wl-{w}"), &ns(self.entries[w].0), &ip(w), &[])
    }
}

pub fn ip(w: usize) -> String {
    format!("10.1.{}.{}", w / 250, w % 250 + 1)
}

pub fn eds_name(s: usize) -> String {
    format!("outbound|80||svc-{s}.{}.svc.cluster.local", ns(s))
}
