//! The proxy against a fake weftd.

use super::fake_upstream::*;
use super::*;
use std::sync::Mutex;
use std::time::Duration;

#[tokio::test]
async fn proxies_sotw_and_delta_with_upstream_headers() {
    let mut f = Fixture::start(ProxyHooks::default()).await;

    // SotW.
    let (tx, mut s) = open_cds_stream(&mut f).await;
    let r1 = next(&mut s).await;
    assert_eq!(r1.type_url, type_url::CLUSTER);
    assert_eq!(r1.resources, vec![fake_any(type_url::CLUSTER)]);
    match f.seen().await {
        Seen::Sotw(r) => assert_eq!(r.node.unwrap().id, NODE, "forwarded unchanged"),
        other => panic!("unexpected {other:?}"),
    }
    // An ACK is forwarded, and answered by nothing.
    tx.send(DiscoveryRequest {
        version_info: r1.version_info.clone(),
        response_nonce: r1.nonce.clone(),
        ..sotw(type_url::CLUSTER)
    })
    .await
    .unwrap();
    match f.seen().await {
        Seen::Sotw(r) => assert_eq!(r.response_nonce, r1.nonce),
        other => panic!("unexpected {other:?}"),
    }
    nothing(&mut s).await;
    tx.send(sotw(type_url::LISTENER)).await.unwrap();
    assert_eq!(next(&mut s).await.type_url, type_url::LISTENER);
    assert!(matches!(f.seen().await, Seen::Sotw(_)));

    // Envoy closing its stream closes the upstream one.
    drop(tx);
    assert!(
        tokio::time::timeout(Duration::from_secs(10), s.message())
            .await
            .unwrap()
            .unwrap()
            .is_none()
    );
    assert!(matches!(f.seen().await, Seen::Ended));

    // Delta.
    let (tx, rx) = mpsc::channel(8);
    tx.send(DeltaDiscoveryRequest {
        node: node(NODE),
        resource_names_subscribe: vec!["a".into()],
        ..delta(type_url::ENDPOINT)
    })
    .await
    .unwrap();
    let mut d = f
        .client
        .delta_aggregated_resources(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let r = next(&mut d).await;
    assert_eq!(r.type_url, type_url::ENDPOINT);
    assert_eq!(r.resources[0].name, "r1");
    match f.seen().await {
        Seen::Delta(r) => assert_eq!(r.resource_names_subscribe, ["a"]),
        other => panic!("unexpected {other:?}"),
    }

    {
        let md = f.metadata.lock().unwrap();
        assert_eq!(md.len(), 2, "one upstream stream per Envoy stream");
        for m in md.iter() {
            assert_eq!(m.get("authorization").unwrap(), "Bearer test-token");
            assert_eq!(m.get("clusterid").unwrap(), "Kubernetes");
        }
    }
    drop(tx);
    f.stop().await;
}

#[tokio::test]
async fn intercepted_types_go_to_the_agent_and_are_acked_upstream() {
    let (got_tx, mut got) = mpsc::channel(8);
    let hooks = ProxyHooks {
        intercept_type_urls: vec![type_url::NAME_TABLE.to_string()],
        intercepted: Some(got_tx),
        request_after_first_lds: vec![type_url::NAME_TABLE.to_string()],
        ..Default::default()
    };
    let mut f = Fixture::start(hooks).await;

    // SotW: Envoy's first LDS request makes the proxy ask for NDS itself.
    let (tx, rx) = mpsc::channel(8);
    tx.send(DiscoveryRequest {
        node: node(NODE),
        ..sotw(type_url::LISTENER)
    })
    .await
    .unwrap();
    let mut s = f
        .client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut s).await.type_url, type_url::LISTENER);
    let i = tokio::time::timeout(Duration::from_secs(10), got.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(i.type_url, type_url::NAME_TABLE);
    assert_eq!(i.node_id, NODE);
    assert!(!i.delta);
    assert_eq!(
        i.resources[0].resource,
        Some(fake_any(type_url::NAME_TABLE))
    );
    let mut requests = Vec::new();
    for _ in 0..3 {
        match f.seen().await {
            Seen::Sotw(r) => requests.push(r),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(requests[0].type_url, type_url::LISTENER);
    assert_eq!(requests[1].type_url, type_url::NAME_TABLE);
    assert!(requests[1].response_nonce.is_empty());
    // The ACK carries the NDS response's version and nonce (response 2 of the stream).
    assert_eq!(requests[2].type_url, type_url::NAME_TABLE);
    assert_eq!(requests[2].version_info, i.version_info);
    assert_eq!(requests[2].response_nonce, "nonce-2");
    assert!(requests[2].error_detail.is_none());
    // A second LDS request does not subscribe again; NDS never reaches Envoy.
    tx.send(sotw(type_url::LISTENER)).await.unwrap();
    assert_eq!(next(&mut s).await.type_url, type_url::LISTENER);
    nothing(&mut s).await;
    assert!(got.try_recv().is_err());

    // Delta.
    let (dtx, drx) = mpsc::channel(8);
    dtx.send(DeltaDiscoveryRequest {
        node: node(NODE),
        ..delta(type_url::LISTENER)
    })
    .await
    .unwrap();
    let mut d = f
        .client
        .delta_aggregated_resources(ReceiverStream::new(drx))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut d).await.type_url, type_url::LISTENER);
    let i = tokio::time::timeout(Duration::from_secs(10), got.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(i.type_url, type_url::NAME_TABLE);
    assert!(i.delta);
    assert_eq!(i.resources[0].name, "r2");
    assert_eq!(i.removed_resources, ["gone"]);
    nothing(&mut d).await;
    let mut acked = false;
    while let Ok(Some(seen)) = tokio::time::timeout(Duration::from_secs(10), f.seen.recv()).await {
        if let Seen::Delta(r) = seen
            && r.type_url == type_url::NAME_TABLE
            && r.response_nonce == "nonce-2"
        {
            acked = true;
            break;
        }
    }
    assert!(acked, "the proxy ACKed the delta NDS response upstream");
    drop((tx, dtx));
    f.stop().await;
}

#[tokio::test]
async fn upstream_failure_ends_envoy_stream_with_its_status() {
    let mut f = Fixture::start(ProxyHooks::default()).await;
    let (tx, mut s) = open_cds_stream(&mut f).await;
    next(&mut s).await;
    tx.send(sotw("fail")).await.unwrap();
    let st = failure(&mut s).await;
    assert_eq!(st.code(), tonic::Code::Internal);
    assert_eq!(st.message(), "boom");

    // Same for delta.
    let (dtx, drx) = mpsc::channel(8);
    dtx.send(delta("fail")).await.unwrap();
    let mut d = f
        .client
        .delta_aggregated_resources(ReceiverStream::new(drx))
        .await
        .unwrap()
        .into_inner();
    let st = failure(&mut d).await;
    assert_eq!(st.code(), tonic::Code::Internal);
    drop((tx, dtx));
    f.stop().await;
}

#[tokio::test]
async fn unreachable_upstream_is_unavailable() {
    // A port nothing listens on.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (_seen_tx, seen) = mpsc::unbounded_channel();
    let mut f = Fixture::start_with(
        upstream_to(addr),
        ProxyHooks::default(),
        Arc::new(Mutex::new(Vec::new())),
        seen,
    )
    .await;
    let (tx, mut s) = open_cds_stream(&mut f).await;
    let st = failure(&mut s).await;
    assert_eq!(st.code(), tonic::Code::Unavailable);
    assert!(st.message().contains(&addr.to_string()), "{}", st.message());
    drop(tx);
    f.stop().await;
}

#[tokio::test]
async fn shutdown_ends_open_streams() {
    let mut f = Fixture::start(ProxyHooks::default()).await;
    let (tx, mut s) = open_cds_stream(&mut f).await;
    next(&mut s).await;
    f.stop().await;
    let st = failure(&mut s).await;
    assert_eq!(st.code(), tonic::Code::Unavailable);
    drop(tx);
}

#[tokio::test]
async fn upstream_connection_drop_ends_envoy_stream_with_error() {
    let (fake, metadata, seen) = start_fake().await;
    let (relay, conns) = start_relay(fake).await;
    let mut f =
        Fixture::start_with(upstream_to(relay), ProxyHooks::default(), metadata, seen).await;
    let (tx, mut s) = open_cds_stream(&mut f).await;
    next(&mut s).await;
    for c in conns.lock().unwrap().drain(..) {
        c.abort();
    }
    let st = failure(&mut s).await;
    assert_ne!(st.code(), tonic::Code::Ok);

    // Envoy reconnects: a new stream gets a new upstream connection.
    let (tx2, rx2) = mpsc::channel(8);
    tx2.send(DiscoveryRequest {
        node: node(NODE),
        ..sotw(type_url::LISTENER)
    })
    .await
    .unwrap();
    let mut s2 = f
        .client
        .stream_aggregated_resources(ReceiverStream::new(rx2))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut s2).await.type_url, type_url::LISTENER);
    drop((tx, tx2));
    f.stop().await;
}
