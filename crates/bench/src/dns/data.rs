//! The benchmark's names (pure): one set of Kubernetes services, written as an NDS name table for
//! the agent, a hosts file for dnsmasq, and a query file for dnsperf.

use std::net::Ipv4Addr;
use weft_proto::nds::NameTable;
use weft_proto::nds::name_table::NameInfo;

/// Service `i`: `svc-<i>.ns-<i/100>.svc.cluster.local`, VIP 10.96.x.y.
pub fn service(i: usize) -> (String, Ipv4Addr) {
    let n = (i + 1) as u32;
    (
        format!("svc-{i}.ns-{}.svc.cluster.local", i / 100),
        Ipv4Addr::from(0x0a60_0000 | n),
    )
}

pub fn name_table(names: usize) -> NameTable {
    NameTable {
        table: (0..names)
            .map(|i| {
                let (host, ip) = service(i);
                let info = NameInfo {
                    ips: vec![ip.to_string()],
                    registry: "Kubernetes".into(),
                    shortname: format!("svc-{i}"),
                    namespace: format!("ns-{}", i / 100),
                    ..Default::default()
                };
                (host, info)
            })
            .collect(),
    }
}

/// dnsmasq's `--addn-hosts` file: the same names and addresses.
pub fn hosts_file(names: usize) -> String {
    (0..names)
        .map(|i| {
            let (host, ip) = service(i);
            format!("{ip} {host}\n")
        })
        .collect()
}

/// dnsperf's query file: every name once, type A.
pub fn query_file(names: usize) -> String {
    (0..names)
        .map(|i| format!("{} A\n", service(i).0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_names_everywhere() {
        assert_eq!(
            service(0),
            (
                "svc-0.ns-0.svc.cluster.local".into(),
                Ipv4Addr::new(10, 96, 0, 1)
            )
        );
        assert_eq!(service(9_999).1, Ipv4Addr::new(10, 96, 39, 16));
        let t = name_table(250);
        assert_eq!(t.table.len(), 250);
        let info = &t.table["svc-123.ns-1.svc.cluster.local"];
        assert_eq!(
            (info.shortname.as_str(), info.namespace.as_str()),
            ("svc-123", "ns-1")
        );
        assert_eq!(info.ips, ["10.96.0.124"]);
        assert_eq!(
            hosts_file(250).lines().nth(123),
            Some("10.96.0.124 svc-123.ns-1.svc.cluster.local")
        );
        assert_eq!(
            query_file(250).lines().nth(123),
            Some("svc-123.ns-1.svc.cluster.local A")
        );
    }
}
