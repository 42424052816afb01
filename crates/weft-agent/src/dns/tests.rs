//! The DNS proxy as a client sees it: real `dig` over UDP and TCP against the running server, a
//! test upstream for names outside the mesh, and the persisted table with no control plane.

use super::reply::Transport;
use super::testutil::{Proxy, lab_table, start_upstream, temp_root, unique_loopback};
use std::time::Duration;

#[tokio::test]
async fn mesh_names_from_the_table_over_udp_and_tcp() {
    let root = temp_root("mesh");
    let up = unique_loopback();
    let asked = start_upstream(up).await;
    let p = Proxy::start(&root, up, &[]).await;

    // Before the first table: SERVFAIL, nothing forwarded (Istio).
    let d = p.dig(&["webapp.istioinaction", "A"]).await;
    assert_eq!(d.status, "SERVFAIL", "{}", d.raw);
    p.deliver(&lab_table());

    for transport in [&[][..], &["+tcp"][..]] {
        for name in [
            "webapp.istioinaction.svc.cluster.local",
            "webapp.istioinaction",
            "webapp.istioinaction.svc",
            "WebApp.IstioInAction",
        ] {
            let d = p.dig(&[transport, &[name, "A"]].concat()).await;
            assert_eq!(d.status, "NOERROR", "{name} {transport:?}: {}", d.raw);
            assert!(d.has_flag("aa"), "authoritative: {}", d.raw);
            assert_eq!(d.answers.len(), 1, "{}", d.raw);
            assert_eq!(d.answers[0].1, 30, "TTL 30");
            assert_eq!(
                (d.answers[0].2.as_str(), d.answers[0].3.as_str()),
                ("A", "10.96.0.10")
            );
        }
    }
    // Short name in the proxy's own namespace only.
    assert_eq!(
        p.dig(&["+short", "forum", "A"]).await.data(),
        ["10.96.0.20"]
    );
    // Known name, other family: authoritative NOERROR with no answer.
    let d = p.dig(&["webapp.istioinaction", "AAAA"]).await;
    assert_eq!(
        (d.status.as_str(), d.answers.len()),
        ("NOERROR", 0),
        "{}",
        d.raw
    );
    assert!(d.has_flag("aa"));
    assert_eq!(
        p.dig(&["+short", "catalog.istioinaction", "AAAA"])
            .await
            .data(),
        ["fd00:10:96::11"]
    );
    // Search-domain CNAME: one query, the whole chain.
    let d = p
        .dig(&["api.partner.example.forum-services.svc.cluster.local", "A"])
        .await;
    assert_eq!(
        d.answers
            .iter()
            .map(|a| (a.2.as_str(), a.3.as_str()))
            .collect::<Vec<_>>(),
        [("CNAME", "api.partner.example."), ("A", "240.240.0.1")],
        "{}",
        d.raw
    );
    // None of that went upstream.
    assert!(
        asked.lock().unwrap().is_empty(),
        "{:?}",
        asked.lock().unwrap()
    );

    // `short.ns.svc.cluster.` is not a variant: it goes upstream (and is NXDOMAIN there).
    let d = p.dig(&["webapp.istioinaction.svc.cluster", "A"]).await;
    assert_eq!(d.status, "NXDOMAIN", "{}", d.raw);
    assert!(!d.has_flag("aa"));
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test]
async fn other_names_go_upstream_over_the_same_transport() {
    let root = temp_root("forward");
    let up = unique_loopback();
    let asked = start_upstream(up).await;
    let p = Proxy::start(&root, up, &[]).await;
    p.deliver(&lab_table());

    assert_eq!(
        p.dig(&["+short", "outside.example", "A"]).await.data(),
        ["192.0.2.7"]
    );
    assert_eq!(
        p.dig(&["+tcp", "+short", "outside.example", "A"])
            .await
            .data(),
        ["192.0.2.7"]
    );
    // A known name's other record types are the upstream's business too (Istio).
    let d = p.dig(&["webapp.istioinaction", "MX"]).await;
    assert_eq!(d.status, "NXDOMAIN", "{}", d.raw);
    assert_eq!(
        *asked.lock().unwrap(),
        [
            (Transport::Udp, "outside.example.".to_string()),
            (Transport::Tcp, "outside.example.".to_string()),
            (Transport::Udp, "webapp.istioinaction.".to_string()),
        ]
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test]
async fn udp_replies_fit_the_requestor_with_tc_set() {
    let root = temp_root("trunc");
    let up = unique_loopback();
    start_upstream(up).await;
    let p = Proxy::start(&root, up, &[]).await;
    let mut table = lab_table();
    let many: Vec<String> = (1..=60).map(|i| format!("10.1.0.{i}")).collect();
    table.table.insert(
        "many.example".into(),
        super::testutil::info(
            &many.iter().map(String::as_str).collect::<Vec<_>>(),
            "External",
            "",
            "",
        ),
    );
    p.deliver(&table);

    // The upstream answers 60 records whatever the query's size; the proxy reads all of them
    // (istio#61371) and fits the client's size; the same for its own answers.
    for name in ["big.example", "many.example"] {
        let d = p.dig(&["+noedns", "+ignore", name, "A"]).await;
        assert_eq!(d.status, "NOERROR", "{}", d.raw);
        assert!(d.has_flag("tc"), "TC without EDNS: {}", d.raw);
        assert!(d.size <= 512, "{} bytes: {}", d.size, d.raw);
        assert!(!d.answers.is_empty() && d.answers.len() < 60);

        let d = p.dig(&["+bufsize=700", "+ignore", name, "A"]).await;
        assert!(
            d.has_flag("tc") && d.size <= 700 && d.size > 512,
            "{}",
            d.raw
        );
        assert!(
            d.edns_udp.is_some(),
            "OPT kept in a truncated reply: {}",
            d.raw
        );

        let d = p.dig(&["+bufsize=4096", name, "A"]).await;
        assert!(!d.has_flag("tc"), "{}", d.raw);
        assert_eq!(d.answers.len(), 60, "{}", d.raw);

        // Without +ignore, dig retries over TCP and gets everything.
        let d = p.dig(&["+noedns", name, "A"]).await;
        assert_eq!(d.answers.len(), 60, "{}", d.raw);
    }
    // OPT is echoed on local answers: our size, version 0.
    let d = p.dig(&["+bufsize=4096", "webapp.istioinaction", "A"]).await;
    assert_eq!(d.edns_udp, Some(1232), "{}", d.raw);
    let d = p.dig(&["+noedns", "webapp.istioinaction", "A"]).await;
    assert_eq!(d.edns_udp, None, "{}", d.raw);
    let d = p
        .dig(&["+edns=1", "+noednsneg", "webapp.istioinaction", "A"])
        .await;
    assert_eq!(d.status, "BADVERS", "{}", d.raw);
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test]
async fn servfail_when_every_upstream_fails() {
    let root = temp_root("servfail");
    // Nothing listens on this address.
    let p = Proxy::start(
        &root,
        unique_loopback(),
        &[("DNS_FORWARD_TIMEOUT", "300ms")],
    )
    .await;
    p.deliver(&lab_table());
    for t in [&[][..], &["+tcp"][..]] {
        let started = std::time::Instant::now();
        let d = p.dig(&[t, &["outside.example", "A"]].concat()).await;
        assert_eq!(d.status, "SERVFAIL", "{}", d.raw);
        assert!(started.elapsed() < Duration::from_secs(4));
    }
    // Mesh names still resolve.
    assert_eq!(
        p.dig(&["+short", "webapp.istioinaction"]).await.data(),
        ["10.96.0.10"]
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test]
async fn the_last_table_is_served_at_start_up_without_weftd() {
    let root = temp_root("persisted");
    let up = unique_loopback();
    start_upstream(up).await;
    let first = Proxy::start(&root, up, &[]).await;
    first.deliver(&lab_table());
    let saved = root.join("var/lib/istio/dns/name-table.pb");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !saved.exists() {
        assert!(std::time::Instant::now() < deadline, "table saved");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // An agent restarted while weftd is down: no NDS at all, the saved table answers.
    let restarted = Proxy::start(&root, up, &[]).await;
    assert_eq!(
        restarted
            .dig(&["+short", "webapp.istioinaction"])
            .await
            .data(),
        ["10.96.0.10"]
    );
    assert_eq!(
        restarted.dig(&["+tcp", "+short", "forum"]).await.data(),
        ["10.96.0.20"]
    );
    // A damaged file is not fatal: SERVFAIL until weftd answers, as without one.
    std::fs::write(&saved, b"\xff\xff").unwrap();
    let damaged = Proxy::start(&root, up, &[]).await;
    assert_eq!(
        damaged.dig(&["webapp.istioinaction"]).await.status,
        "SERVFAIL"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test]
async fn a_rejected_table_leaves_the_current_one() {
    let root = temp_root("nack");
    let up = unique_loopback();
    start_upstream(up).await;
    let p = Proxy::start(&root, up, &[]).await;
    p.deliver(&lab_table());
    let err = (p.handler().0)(&super::testutil::intercepted(vec![0xff, 0xff])).unwrap_err();
    assert!(err.starts_with("failed to unmarshal name table"), "{err}");
    assert_eq!(
        p.dig(&["+short", "webapp.istioinaction"]).await.data(),
        ["10.96.0.10"]
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test]
async fn off_without_dns_capture() {
    let root = temp_root("off");
    let p = Proxy::start(
        &root,
        unique_loopback(),
        &[("ISTIO_META_DNS_CAPTURE", "false")],
    )
    .await;
    assert!(p.hooks.handlers.is_empty() && p.hooks.request_after_first_lds.is_empty());
    assert!(p.hooks.intercept_type_urls.is_empty());
    let d = super::testutil::dig(p.port, &["+time=1", "webapp.istioinaction"]).await;
    assert_eq!(d.status, "", "no server answers: {}", d.raw);
    std::fs::remove_dir_all(&root).unwrap();
}
