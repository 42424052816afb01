//! The seed lab's configuration (pure): the seed's own manifests, embedded verbatim from
//! `crates/model/tests/seeds/` and fixed only where Istio rejects them (each fix says why), and
//! what the seed's cluster has besides them (namespaces' network label, the east-west gateway's
//! Service, istiod, webapp and catalog, the mesh networks).

use crate::error::{Error, Result};
use std::net::Ipv4Addr;

/// One replacement in a seed manifest and the reason for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fix {
    pub from: &'static str,
    pub to: &'static str,
    pub why: &'static str,
}

/// A seed manifest: its file name, verbatim text and the fixes it needs.
#[derive(Debug, Clone, Copy)]
pub struct SeedManifest {
    pub file: &'static str,
    pub verbatim: &'static str,
    pub fixes: &'static [Fix],
}

impl SeedManifest {
    /// The text with every fix applied (each must apply once).
    pub fn fixed(&self) -> Result<String> {
        let mut text = self.verbatim.to_string();
        for fix in self.fixes {
            if !text.contains(fix.from) {
                return Err(Error::new(format!(
                    "{}: {:?} not found",
                    self.file, fix.from
                )));
            }
            text = text.replacen(fix.from, fix.to, 1);
        }
        Ok(text)
    }
}

const IN_ISTIO_SYSTEM: Fix = Fix {
    from: "metadata:\n  name:",
    to: "metadata:\n  namespace: istio-system\n  name:",
    why: "applied in istio-system, as Istio's own expose-istiod is",
};

pub const CROSS_NETWORK_GATEWAY: SeedManifest = SeedManifest {
    file: "002-gateway-cross-network.yaml",
    verbatim: include_str!("../../../model/tests/seeds/002-gateway-cross-network.yaml"),
    fixes: &[
        IN_ISTIO_SYSTEM,
        Fix {
            from: "      number: 15443\n",
            to: "      number: 15443\n      name: tls\n",
            why: "a Gateway server's port needs a name",
        },
    ],
};

pub const ISTIOD_GATEWAY: SeedManifest = SeedManifest {
    file: "002-gateway-vs-istiod.yaml",
    verbatim: include_str!("../../../model/tests/seeds/002-gateway-vs-istiod.yaml"),
    fixes: &[
        IN_ISTIO_SYSTEM,
        IN_ISTIO_SYSTEM,
        Fix {
            from: "      number: 15012\n",
            to: "      number: 15012\n      name: tls-istiod\n",
            why: "a Gateway server's port needs a (unique) name",
        },
        Fix {
            from: "      number: 15017\n",
            to: "      number: 15017\n      name: tls-istiodwebhook\n",
            why: "a Gateway server's port needs a (unique) name",
        },
        Fix {
            from: "spec:\n  tls:",
            to: "spec:\n  hosts: [\"*\"]\n  gateways: [istiod-gateway]\n  tls:",
            why: "a VirtualService without hosts is a delegate, which may not have tls routes",
        },
        Fix {
            from: "    - port: 15012\n",
            to: "    - port: 15012\n      sniHosts: [\"*\"]\n",
            why: "a TLS match needs at least one SNI host",
        },
        Fix {
            from: "    - port: 15017\n",
            to: "    - port: 15017\n      sniHosts: [\"*\"]\n",
            why: "a TLS match needs at least one SNI host",
        },
    ],
};

pub const FORUM_GROUP: SeedManifest = SeedManifest {
    file: "002-workloadgroup-forum.yaml",
    verbatim: include_str!("../../../model/tests/seeds/002-workloadgroup-forum.yaml"),
    fixes: &[],
};

pub const FORUM_SERVICE: SeedManifest = SeedManifest {
    file: "002-service-forum.yaml",
    verbatim: include_str!("../../../model/tests/seeds/002-service-forum.yaml"),
    fixes: &[Fix {
        from: "  name: forum\n",
        to: "  name: forum\n  namespace: forum-services\n",
        why: "the seed applies it with -n forum-services",
    }],
};

pub const EASTWEST_OPERATOR: SeedManifest = SeedManifest {
    file: "002-istiooperator-eastwest.yaml",
    verbatim: include_str!("../../../model/tests/seeds/002-istiooperator-eastwest.yaml"),
    fixes: &[],
};

pub const MESH_STRICT: SeedManifest = SeedManifest {
    file: "002-peerauthentication-mesh-strict.yaml",
    verbatim: include_str!("../../../model/tests/seeds/002-peerauthentication-mesh-strict.yaml"),
    fixes: &[],
};

/// Every seed manifest of the lab, in the order the seed applies them.
pub const SEED_MANIFESTS: [SeedManifest; 6] = [
    EASTWEST_OPERATOR,
    CROSS_NETWORK_GATEWAY,
    ISTIOD_GATEWAY,
    FORUM_GROUP,
    FORUM_SERVICE,
    MESH_STRICT,
];

/// The seed's Gateways and VirtualService, fixed, as one file.
pub fn gateways() -> Result<String> {
    Ok(format!(
        "{}---\n{}",
        CROSS_NETWORK_GATEWAY.fixed()?,
        ISTIOD_GATEWAY.fixed()?
    ))
}

/// The lab's addresses the cluster config names.
#[derive(Debug, Clone, Copy)]
pub struct ClusterAddrs {
    /// weftd (istiod's workload).
    pub cp: Ipv4Addr,
    /// The east-west gateway's address on the VMs' network (its Service's external IP).
    pub gw_external: Ipv4Addr,
    pub webapp: Ipv4Addr,
    pub catalog: Ipv4Addr,
}

/// What the seed's cluster has besides the seed manifests: the istio-system network label, the
/// east-west gateway's Service (ports from the seed's IstioOperator; its external address is the
/// one VMs reach), istiod as a registry service (weftd's address), webapp and catalog.
pub fn cluster(a: &ClusterAddrs) -> String {
    let mut out = format!(
        "apiVersion: v1
kind: Namespace
metadata:
  name: istio-system
  labels:
    topology.istio.io/network: cluster
---
apiVersion: v1
kind: Service
metadata:
  name: istio-eastwestgateway
  namespace: istio-system
  labels:
    istio: eastwestgateway
    app: istio-eastwestgateway
    topology.istio.io/network: cluster
spec:
  type: LoadBalancer
  externalIPs: [{gw}]
  selector:
    istio: eastwestgateway
  ports:
  - name: mtls
    port: 15443
    targetPort: 15443
  - name: tcp-istiod
    port: 15012
    targetPort: 15012
  - name: tcp-webhook
    port: 15017
    targetPort: 15017
---
apiVersion: v1
kind: Service
metadata:
  name: istiod
  namespace: istio-system
spec:
  selector:
    app: istiod
  ports:
  - name: grpc-xds
    port: 15010
  - name: https-dns
    port: 15012
  - name: https-webhook
    port: 443
    targetPort: 15017
  - name: http-monitoring
    port: 15014
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: istiod
  namespace: istio-system
spec:
  address: {cp}
  labels:
    app: istiod
",
        gw = a.gw_external,
        cp = a.cp
    );
    for (name, ip) in [("webapp", a.webapp), ("catalog", a.catalog)] {
        out.push_str(&cluster_service(name, ip));
    }
    out
}

/// Service `name` in istioinaction (80 → 8080) and its workload at `ip` (service account `name`).
fn cluster_service(name: &str, ip: Ipv4Addr) -> String {
    format!(
        "---
apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: istioinaction
spec:
  selector:
    app: {name}
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: {name}
  namespace: istioinaction
spec:
  address: {ip}
  labels:
    app: {name}
  serviceAccount: {name}
"
    )
}

/// Istio's mesh networks: the vm-network (its addresses) is reached through the gateway's
/// cluster-side address.
pub fn mesh_networks(vm_net: &str, gw_internal: Ipv4Addr) -> String {
    format!(
        "networks:
  vm-network:
    endpoints:
    - fromCidr: {vm_net}
    gateways:
    - address: {gw_internal}
      port: 15443
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fix_applies_and_the_verbatim_text_stays() {
        for m in SEED_MANIFESTS {
            let fixed = m.fixed().unwrap();
            assert!(m.verbatim.starts_with("# Seed manifest"), "{}", m.file);
            assert_eq!(fixed == m.verbatim, m.fixes.is_empty(), "{}", m.file);
        }
        let gw = gateways().unwrap();
        assert_eq!(gw.matches("namespace: istio-system").count(), 3, "{gw}");
        assert!(gw.contains("gateways: [istiod-gateway]"), "{gw}");
    }

    #[test]
    fn a_fix_that_does_not_apply_is_an_error() {
        let broken = SeedManifest {
            file: "x.yaml",
            verbatim: "kind: Service\n",
            fixes: &[Fix {
                from: "kind: Gateway",
                to: "",
                why: "",
            }],
        };
        assert!(broken.fixed().unwrap_err().message().contains("x.yaml"));
    }

    #[test]
    fn cluster_config_names_every_address() {
        let text = cluster(&ClusterAddrs {
            cp: Ipv4Addr::new(198, 18, 0, 10),
            gw_external: Ipv4Addr::new(198, 18, 1, 10),
            webapp: Ipv4Addr::new(198, 18, 0, 12),
            catalog: Ipv4Addr::new(198, 18, 0, 13),
        });
        for needle in [
            "externalIPs: [198.18.1.10]",
            "address: 198.18.0.10",
            "name: webapp\n  namespace: istioinaction",
            "address: 198.18.0.12",
            "name: catalog\n  namespace: istioinaction",
            "address: 198.18.0.13",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
        let nets = mesh_networks("198.18.1.0/24", Ipv4Addr::new(198, 18, 0, 11));
        assert!(nets.contains("fromCidr: 198.18.1.0/24"), "{nets}");
        assert!(nets.contains("address: 198.18.0.11"), "{nets}");
    }
}
