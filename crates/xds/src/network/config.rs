//! Istio's `MeshNetworks` (the `meshNetworks` file istiod reads with `--networksConfig`), and the
//! CIDRs its `fromCidr` entries name.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// `MeshNetworks`: networks by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MeshNetworks {
    pub networks: BTreeMap<String, MeshNetwork>,
}

/// `Network`: which endpoints belong to it and through which gateways it is reached.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MeshNetwork {
    pub endpoints: Vec<NetworkEndpoints>,
    pub gateways: Vec<IstioNetworkGateway>,
}

/// `Network.NetworkEndpoints` (a oneof: `fromCidr` or `fromRegistry`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkEndpoints {
    pub from_cidr: String,
    pub from_registry: String,
}

/// `Network.IstioNetworkGateway` (a oneof: `registryServiceName` or `address`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct IstioNetworkGateway {
    pub registry_service_name: String,
    pub address: String,
    pub port: u32,
    pub locality: String,
}

impl MeshNetworks {
    /// Istio's checks of a loaded file: CIDRs parse, each gateway has a port and exactly one of
    /// `address` and `registryServiceName`.
    pub fn validate(&self) -> Result<(), String> {
        for (name, net) in &self.networks {
            for ep in &net.endpoints {
                if !ep.from_cidr.is_empty() && Cidr::parse(&ep.from_cidr).is_none() {
                    return Err(format!(
                        "network {name}: fromCidr {:?} is not a CIDR",
                        ep.from_cidr
                    ));
                }
            }
            for gw in &net.gateways {
                if gw.port == 0 || gw.port > 65535 {
                    return Err(format!(
                        "network {name}: gateway port {} is invalid",
                        gw.port
                    ));
                }
                if gw.address.is_empty() == gw.registry_service_name.is_empty() {
                    return Err(format!(
                        "network {name}: a gateway needs exactly one of address and registryServiceName"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// An IP prefix (`198.18.1.0/24`, `fd00::/64`); a bare address is a host prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    bits: u32,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (ip, bits) = match s.split_once('/') {
            Some((ip, bits)) => (ip.parse::<IpAddr>().ok()?, Some(bits.parse::<u32>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        (bits <= max).then_some(Cidr { addr: ip, bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let (net, ip, width) = match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                (u128::from(u32::from(a)), u128::from(u32::from(b)), 32)
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
            _ => return false,
        };
        if self.bits == 0 {
            return true;
        }
        let shift = width - self.bits;
        (net >> shift) == (ip >> shift)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<MeshNetworks, String> {
        let m: MeshNetworks = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        m.validate().map(|()| m)
    }

    #[test]
    fn parses_istio_mesh_networks() {
        let m = parse(
            "networks:
  vm-network:
    endpoints:
    - fromCidr: 198.18.1.0/24
    gateways:
    - address: 198.18.0.11
      port: 15443
  cluster:
    endpoints:
    - fromRegistry: Kubernetes
    gateways:
    - registryServiceName: istio-eastwestgateway.istio-system.svc.cluster.local
      port: 15443
",
        )
        .unwrap();
        assert_eq!(m.networks.len(), 2);
        assert_eq!(m.networks["vm-network"].gateways[0].address, "198.18.0.11");
        assert_eq!(
            m.networks["cluster"].endpoints[0].from_registry,
            "Kubernetes"
        );
        assert_eq!(parse("{}").unwrap(), MeshNetworks::default());
        let err = |t: &str| parse(t).unwrap_err();
        assert!(err("networks:\n  a:\n    gateways:\n    - port: 15443\n").contains("exactly one"));
        assert!(err("networks:\n  a:\n    gateways:\n    - address: 1.2.3.4\n").contains("port 0"));
        assert!(
            err("networks:\n  a:\n    endpoints:\n    - fromCidr: 1.2.3/8\n")
                .contains("not a CIDR")
        );
        assert!(err("networks:\n  a:\n    gateway: []\n").contains("unknown field"));
    }

    #[test]
    fn cidrs_contain_their_addresses_only() {
        let c = Cidr::parse("198.18.1.0/24").unwrap();
        assert!(c.contains("198.18.1.200".parse().unwrap()));
        assert!(!c.contains("198.18.2.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let host = Cidr::parse("10.0.0.1").unwrap();
        assert!(host.contains("10.0.0.1".parse().unwrap()));
        assert!(!host.contains("10.0.0.2".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        let v6 = Cidr::parse("fd00:1::/32").unwrap();
        assert!(v6.contains("fd00:1:2::3".parse().unwrap()));
        assert!(!v6.contains("fd00:2::3".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nope/8").is_none());
    }
}
