use super::*;
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryResponse;
use weft_proto::envoy_types::pb::google::protobuf::Any;

fn res(name: &str, size: usize) -> Arc<NamedResource> {
    Arc::new(NamedResource::new(
        name,
        Any {
            type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
            value: (0..size).map(|i| i as u8).collect(),
        },
    ))
}

/// What tonic would send for the same response: prefix + prost's encoding.
fn prost_frame(out: &DeltaOut) -> Vec<u8> {
    let msg = out.to_message().encode_to_vec();
    let mut framed = vec![0];
    framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    framed.extend(msg);
    framed
}

fn out(updates: Vec<Arc<NamedResource>>, removed: &[&str]) -> DeltaOut {
    DeltaOut {
        system_version_info: "42".into(),
        updates,
        type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
        nonce: "7".into(),
        removed: removed.iter().map(|n| Arc::from(*n)).collect(),
    }
}

#[test]
fn framing_is_byte_for_byte_prosts_encoding() {
    let mixed = vec![
        res("small", 3),
        res("big", 10_000),
        res("mid", 4095),
        res("big2", 4096),
    ];
    // Many small ones: more than one copied chunk.
    let many: Vec<_> = (0..200).map(|i| res(&format!("r{i}"), 500)).collect();
    for (updates, removed) in [
        (mixed, vec!["gone", ""]),
        (many, vec![]),
        (vec![], vec!["only-removed"]),
        (vec![], vec![]),
    ] {
        let o = out(updates, &removed);
        let want = prost_frame(&o);
        let decoded = DeltaDiscoveryResponse::decode(&want[5..]).unwrap();
        let names: Vec<&str> = decoded.resources.iter().map(|r| r.name.as_str()).collect();
        let expected: Vec<&str> = o.updates.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, expected);
        assert_eq!(decoded.removed_resources, removed);
        assert_eq!(
            (decoded.nonce.as_str(), decoded.type_url.as_str()),
            ("7", o.type_url.as_str())
        );
        assert_eq!(decoded.system_version_info, "42");
        assert_eq!(o.encoded_len(), want.len() - 5);
        let chunks: Vec<Bytes> = Frames::new(o).unwrap().collect();
        let got: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let differs = got.iter().zip(&want).position(|(a, b)| a != b);
        assert!(
            got == want,
            "{} bytes vs prost's {}, first difference at {differs:?}",
            got.len(),
            want.len()
        );
        assert!(chunks.iter().all(|c| !c.is_empty()));
        assert!(
            chunks
                .iter()
                .all(|c| c.len() < CHUNK + INLINE || c.len() >= INLINE),
            "copied chunks stay near CHUNK"
        );
    }
    // An empty response (the answer to a first request with nothing to send) still decodes.
    let mut empty = out(vec![], &[]);
    empty.system_version_info.clear();
    let want = prost_frame(&empty);
    let got: Vec<u8> = Frames::new(empty).unwrap().flatten().collect();
    assert_eq!(got, want);
    let decoded = DeltaDiscoveryResponse::decode(&got[5..]).unwrap();
    assert_eq!(decoded.nonce, "7");
}

#[test]
fn large_resources_are_shared_not_copied() {
    let big = res("big", 100_000);
    let chunks: Vec<Bytes> = Frames::new(out(vec![big.clone()], &[])).unwrap().collect();
    assert!(
        chunks.iter().any(|c| c.as_ptr() == big.wire().as_ptr()),
        "the resource's own buffer is one of the chunks"
    );
}

fn frame(msg: &[u8]) -> Vec<u8> {
    let mut f = vec![0];
    f.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    f.extend_from_slice(msg);
    f
}

#[test]
fn deframes_partial_and_multiple_messages() {
    let a = DeltaDiscoveryRequest {
        type_url: "a".into(),
        resource_names_subscribe: vec!["x".repeat(3000)],
        ..Default::default()
    }
    .encode_to_vec();
    let b = DeltaDiscoveryRequest {
        type_url: "b".into(),
        ..Default::default()
    }
    .encode_to_vec();
    let mut stream = frame(&a);
    stream.extend(frame(&b));
    stream.extend(frame(&[])); // an empty message is a message
    stream.extend(frame(&a));
    // Every split: one byte at a time, odd sizes, all at once.
    for step in [1, 2, 3, 5, 7, 4096, stream.len()] {
        let mut d = Deframer::default();
        let mut msgs = Vec::new();
        for piece in stream.chunks(step) {
            d.push(Bytes::copy_from_slice(piece), &mut msgs).unwrap();
        }
        d.finish().unwrap();
        assert_eq!(msgs.len(), 4, "step {step}");
        assert_eq!(msgs[0], a);
        assert_eq!(msgs[1], b);
        assert!(msgs[2].is_empty());
        assert_eq!(msgs[0].capacity(), a.len(), "an exact-size buffer");
        assert_eq!(decode_request(&msgs[1]).unwrap().type_url, "b");
    }
    // Ending inside a message (header or body) is an error.
    for cut in [3, 9] {
        let mut d = Deframer::default();
        let mut msgs = Vec::new();
        d.push(&stream[..cut], &mut msgs).unwrap();
        assert_eq!(d.finish().unwrap_err().code(), tonic::Code::Internal);
    }
}

#[test]
fn refuses_too_large_and_compressed_requests_and_bad_messages() {
    let mut d = Deframer::default();
    let mut msgs = Vec::new();
    let mut header = vec![0];
    header.extend_from_slice(&((MAX_REQUEST + 1) as u32).to_be_bytes());
    let err = d.push(&header[..], &mut msgs).unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(msgs.is_empty());
    // At the limit is fine (only the header arrived: nothing allocated beyond 1 MiB).
    let mut d = Deframer::default();
    header[1..].copy_from_slice(&(MAX_REQUEST as u32).to_be_bytes());
    d.push(&header[..], &mut msgs).unwrap();
    assert!(d.msg.capacity() <= 1 << 20);

    let mut d = Deframer::default();
    let err = d.push(&[1u8, 0, 0, 0, 1, 0][..], &mut msgs).unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);

    assert_eq!(
        decode_request(&[0xff, 0xff]).unwrap_err().code(),
        tonic::Code::Internal
    );
}
