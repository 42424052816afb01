//! The mesh under test as a config directory: `M` core `Service`s (`svc-<s>` in namespace
//! `ns-<s % K>`, port `http` 80 → 8080, selector `app: svc-<s>`) and `E` WorkloadEntries
//! (`load-<j>`, spread round-robin over the services, with the service's labels and service
//! account). Simulated client `j` *is* WorkloadEntry `load-<j>` (same namespace, IP and service
//! account), so it gets an inbound cluster and `virtualInbound` like a real VM sidecar.
//!
//! One file per service; every change rewrites one file through a rename (as editors and
//! ConfigMap swaps do), so the store sees exactly one changed file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Sizes of the generated mesh.
#[derive(Clone, Copy, Debug)]
pub struct MeshSpec {
    pub services: usize,
    pub namespaces: usize,
    pub endpoints: usize,
}

/// Who simulated client `index` is.
#[derive(Clone, Debug)]
pub struct Workload {
    pub name: String,
    pub namespace: String,
    pub ip: String,
    pub service_account: String,
}

impl Workload {
    /// Istio's sidecar node id: `sidecar~<ip>~<name>.<ns>~<ns>.svc.cluster.local`.
    pub fn node_id(&self) -> String {
        format!(
            "sidecar~{}~{}.{}~{}.svc.cluster.local",
            self.ip, self.name, self.namespace, self.namespace
        )
    }
}

impl MeshSpec {
    pub fn namespace_of(&self, service: usize) -> String {
        format!("ns-{}", service % self.namespaces.max(1))
    }

    /// The service whose endpoint (and client) `index` is.
    pub fn service_of(&self, index: usize) -> usize {
        index % self.services.max(1)
    }

    /// Client `index` (WorkloadEntry `load-<index>` when `index < endpoints`).
    pub fn workload(&self, index: usize) -> Workload {
        let s = self.service_of(index);
        Workload {
            name: format!("load-{index}"),
            namespace: self.namespace_of(s),
            ip: ip(index),
            service_account: format!("svc-{s}"),
        }
    }
}

/// 10.x.y.z for index 0.. (skipping .0 host parts is not needed: these are just labels).
fn ip(index: usize) -> String {
    let n = index + 1;
    format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff)
}

/// The config directory and the changes made to it since it was generated.
pub struct ConfigDir {
    dir: PathBuf,
    spec: MeshSpec,
    /// Extra endpoints added to a service (their IPs).
    extra: BTreeMap<usize, Vec<String>>,
    /// Endpoint weights changed from the default (none).
    weights: BTreeMap<usize, u32>,
    /// Services added after generation (`svc-<M>`, `svc-<M+1>`, ...).
    added_services: usize,
    extra_ips: usize,
}

impl ConfigDir {
    /// Writes the whole mesh under `dir` (created).
    pub fn create(dir: &Path, spec: MeshSpec) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let cfg = ConfigDir {
            dir: dir.to_path_buf(),
            spec,
            extra: BTreeMap::new(),
            weights: BTreeMap::new(),
            added_services: 0,
            extra_ips: 0,
        };
        for s in 0..spec.services {
            cfg.write_service(s)?;
        }
        Ok(cfg)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn spec(&self) -> MeshSpec {
        self.spec
    }

    fn service_yaml(&self, s: usize) -> String {
        let ns = self.spec.namespace_of(s);
        let mut y = format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{s}\n  namespace: {ns}\nspec:\n  selector:\n    app: svc-{s}\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n"
        );
        let entry = |y: &mut String, name: &str, address: &str, weight: Option<u32>| {
            let _ = write!(
                y,
                "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  address: {address}\n  labels:\n    app: svc-{s}\n  serviceAccount: svc-{s}\n"
            );
            if let Some(w) = weight {
                let _ = writeln!(y, "  weight: {w}");
            }
        };
        if s < self.spec.services {
            for j in (s..self.spec.endpoints).step_by(self.spec.services.max(1)) {
                entry(
                    &mut y,
                    &format!("load-{j}"),
                    &ip(j),
                    self.weights.get(&j).copied(),
                );
            }
        }
        for (k, address) in self.extra.get(&s).into_iter().flatten().enumerate() {
            entry(&mut y, &format!("extra-{s}-{k}"), address, None);
        }
        y
    }

    /// Writes `svc-<s>.yaml` through a hidden temporary file and a rename.
    fn write_service(&self, s: usize) -> Result<(), String> {
        let name = format!("svc-{s}.yaml");
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let path = self.dir.join(&name);
        std::fs::write(&tmp, self.service_yaml(s))
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    fn next_extra_ip(&mut self) -> String {
        self.extra_ips += 1;
        format!("10.250.{}.{}", self.extra_ips >> 8, self.extra_ips & 0xff)
    }

    /// Adds an endpoint to service `s`; returns what changed.
    pub fn add_endpoint(&mut self, s: usize) -> Result<String, String> {
        let address = self.next_extra_ip();
        self.extra.entry(s).or_default().push(address.clone());
        self.write_service(s)?;
        Ok(format!("endpoint {address} added to svc-{s}"))
    }

    /// Sets the weight of endpoint `load-<j>`; returns what changed.
    pub fn set_weight(&mut self, j: usize, weight: u32) -> Result<String, String> {
        if j >= self.spec.endpoints {
            return Err(format!("there is no endpoint load-{j}"));
        }
        self.weights.insert(j, weight);
        self.write_service(self.spec.service_of(j))?;
        Ok(format!("weight of load-{j} set to {weight}"))
    }

    /// Adds a new service `svc-<M+n>` (with one endpoint); returns what changed.
    pub fn add_service(&mut self) -> Result<String, String> {
        let s = self.spec.services + self.added_services;
        self.added_services += 1;
        let address = self.next_extra_ip();
        self.extra.entry(s).or_default().push(address);
        self.write_service(s)?;
        Ok(format!(
            "service svc-{s} added in {}",
            self.spec.namespace_of(s)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_spread_over_services_and_clients_are_workloads() {
        let spec = MeshSpec {
            services: 3,
            namespaces: 2,
            endpoints: 7,
        };
        let dir = std::env::temp_dir().join(format!("weft-xds-load-test-{}", std::process::id()));
        let mut cfg = ConfigDir::create(&dir, spec).unwrap();
        let svc1 = std::fs::read_to_string(dir.join("svc-1.yaml")).unwrap();
        assert!(svc1.contains("name: svc-1\n  namespace: ns-1"));
        assert_eq!(svc1.matches("kind: WorkloadEntry").count(), 2); // load-1, load-4
        let w = spec.workload(4);
        assert_eq!(w.namespace, "ns-1");
        assert!(svc1.contains(&format!("address: {}", w.ip)));
        assert_eq!(
            w.node_id(),
            "sidecar~10.0.0.5~load-4.ns-1~ns-1.svc.cluster.local"
        );
        cfg.add_endpoint(1).unwrap();
        cfg.set_weight(4, 7).unwrap();
        let svc1 = std::fs::read_to_string(dir.join("svc-1.yaml")).unwrap();
        assert_eq!(svc1.matches("kind: WorkloadEntry").count(), 3);
        assert!(svc1.contains("weight: 7"));
        cfg.add_service().unwrap();
        assert!(dir.join("svc-3.yaml").is_file());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
