//! Scale smoke test at a tenth of the benchmark shape (100 services, 500 VM sidecars): every proxy
//! gets the whole mesh, built once and shared. Full-size timings come from the xDS load benchmark
//! (BENCHMARKS.md).

mod common;

use std::time::Instant;
use weft_proto::type_url;
use weft_xds::{Allocations, MeshConfig, Proxy, PushContext};

fn mesh_yaml(services: usize, per_service: usize) -> String {
    let mut y = String::new();
    for s in 0..services {
        let ns = format!("ns{}", s % 20);
        y += &format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc{s}\n  namespace: {ns}\nspec:\n  selector:\n    app: svc{s}\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n  - name: tcp-db\n    port: {}\n---\n",
            5000 + s % 7
        );
        for w in 0..per_service {
            y += &format!(
                "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: svc{s}-{w}\n  namespace: {ns}\nspec:\n  address: 10.{}.{}.{}\n  labels:\n    app: svc{s}\n  serviceAccount: svc{s}\n---\n",
                s / 250,
                s % 250,
                w + 1
            );
        }
    }
    y
}

fn run(services: usize, per_service: usize) -> std::time::Duration {
    let snap = common::snapshot(&mesh_yaml(services, per_service));
    let mut alloc = Allocations::new();
    for s in 0..services {
        alloc.insert(
            (format!("ns{}", s % 20), format!("svc{s}")),
            format!("240.240.{}.{}", s / 250, s % 250 + 1)
                .parse()
                .unwrap(),
        );
    }
    let start = Instant::now();
    let ctx = PushContext::new(snap, &alloc, &MeshConfig::default());
    let mut sent = 0usize;
    let mut per_proxy = std::collections::BTreeSet::new();
    for s in 0..services {
        for w in 0..per_service {
            let ns = format!("ns{}", s % 20);
            let ip = format!("10.{}.{}.{}", s / 250, s % 250, w + 1);
            let p = Proxy::sidecar(&format!("svc{s}-{w}"), &ns, &ip, &[]);
            let mut this = 0;
            for url in [
                type_url::CLUSTER,
                type_url::ENDPOINT,
                type_url::LISTENER,
                type_url::ROUTE,
            ] {
                this += ctx.generate(&p, url).len();
            }
            sent += this;
            per_proxy.insert(this);
        }
    }
    let took = start.elapsed();
    eprintln!(
        "{services} services, {} proxies: {sent} resources handed out in {took:?}",
        services * per_service
    );
    // Every sidecar sees every service: two outbound clusters (and their endpoints) per service.
    let min = *per_proxy.iter().next().unwrap();
    assert!(
        min > 4 * services,
        "each proxy must get the whole mesh, got {per_proxy:?}"
    );
    took
}

#[test]
fn a_tenth_of_the_benchmark() {
    let took = run(100, 5);
    // Generous even for a debug build on a busy 2-core machine; a quadratic regression blows it.
    assert!(took < std::time::Duration::from_secs(60), "took {took:?}");
}
