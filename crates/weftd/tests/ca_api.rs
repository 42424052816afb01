//! weftd's CA (`IstioCertificateService` on the TLS and plaintext gRPC ports) and admin API, tested
//! against the real binary: token and mTLS authentication, what the issued chain looks like, every
//! refusal's gRPC code and reason, durable state across a restart, and a plugged-in CA.

mod support;

use rustls::pki_types::CertificateSigningRequestDer;
use rustls::pki_types::pem::PemObject;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};
use support::*;
use tonic::Code;
use tonic::transport::Channel;
use weft_identity::certinfo::{CertInfo, to_pem};
use weft_identity::csr::{WorkloadKey, build_csr};
use weft_identity::token::TokenAuthority;
use weft_identity::{CertificateAuthority, KeyAlgorithm};
use weft_proto::ca::IstioCertificateRequest;
use weft_proto::ca::istio_certificate_service_client::IstioCertificateServiceClient;

const DAY: u64 = 24 * 3600;
/// The most an issued certificate is backdated.
const BACKDATE: Duration = Duration::from_secs(60);
/// What a workload's CSR claims; weftd must ignore it.
const CLAIMED: &str = "spiffe://cluster.local/ns/istio-system/sa/admin";

/// One `CreateCertificate` call.
async fn create(
    ch: Channel,
    csr: &str,
    validity_duration: i64,
    token: Option<&str>,
) -> Result<Vec<String>, tonic::Status> {
    let mut req = tonic::Request::new(IstioCertificateRequest {
        csr: csr.to_string(),
        validity_duration,
        metadata: None,
    });
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    IstioCertificateServiceClient::new(ch)
        .create_certificate(req)
        .await
        .map(|r| r.into_inner().cert_chain)
}

/// A fresh key and a CSR that claims [`CLAIMED`].
fn key_and_csr() -> (WorkloadKey, String) {
    let key = WorkloadKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let csr = build_csr(&key, CLAIMED).unwrap();
    (key, csr)
}

fn expect_refusal<T: std::fmt::Debug>(
    what: &str,
    res: Result<T, tonic::Status>,
    code: Code,
    needle: &str,
) {
    let st = res.expect_err(what);
    assert_eq!(st.code(), code, "{what}: {st:?}");
    assert!(
        st.message().to_lowercase().contains(needle),
        "{what}: message should mention {needle:?}: {:?}",
        st.message()
    );
}

fn leaf_of(chain: &[String]) -> CertInfo {
    CertInfo::from_pem(&chain[0]).unwrap()
}

fn spiffe(ns: &str, sa: &str) -> String {
    format!("spiffe://cluster.local/ns/{ns}/sa/{sa}")
}

/// Checks a leaf's lifetime: `ttl` plus a backdate of at most a minute, ending `ttl` after
/// the request (which happened between `before` and `after`).
fn assert_lifetime(leaf: &CertInfo, ttl: Duration, before: SystemTime, after: SystemTime) {
    let life = leaf.lifetime();
    assert!(
        life >= ttl && life <= ttl + BACKDATE,
        "lifetime {life:?}, want {ttl:?} (+ ≤ 60 s backdate)"
    );
    let slack = Duration::from_secs(1);
    assert!(
        leaf.not_after + slack >= before + ttl && leaf.not_after <= after + ttl + slack,
        "notAfter is not request time + {ttl:?}"
    );
    assert!(leaf.not_before <= before, "notBefore is in the future");
}

// ---------------------------------------------------------------------------------------------
// 1 + 3. Token-authenticated issuance, lifetimes, malformed requests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_issuance_chain_identity_and_lifetimes() {
    let dir = TempDir::new("issue");
    let w = Weftd::start(&dir.path().join("state"));
    let root = w.root_pem();
    let root_info = CertInfo::from_pem(&root).expect("API root is a certificate");
    assert!(root_info.is_ca);
    let token = w.token("forum-services", "forum-sa", 600);
    let ch = w.tls_channel(None).await;

    // Default lifetime, identity from the token (not the CSR's claim), chain = [leaf, root].
    let (_key, csr) = key_and_csr();
    let before = SystemTime::now();
    let chain = create(ch.clone(), &csr, 0, Some(&token)).await.unwrap();
    let after = SystemTime::now();
    assert_eq!(chain.len(), 2, "leaf then root: {chain:#?}");
    assert_eq!(chain[1], root, "the chain ends in the API's root");
    let leaf = leaf_of(&chain);
    assert_eq!(leaf.uris, vec![spiffe("forum-services", "forum-sa")]);
    assert!(!leaf.is_ca);
    assert!(leaf.verify_signed_by(&root_info));
    assert!(leaf.valid_at(SystemTime::now()));
    assert_lifetime(&leaf, Duration::from_secs(DAY), before, after);

    // An explicit hour.
    let before = SystemTime::now();
    let chain = create(ch.clone(), &csr, 3600, Some(&token)).await.unwrap();
    let after = SystemTime::now();
    assert_lifetime(&leaf_of(&chain), Duration::from_secs(3600), before, after);

    // A year is capped at 90 days.
    let before = SystemTime::now();
    let chain = create(ch.clone(), &csr, 365 * DAY as i64, Some(&token))
        .await
        .unwrap();
    let after = SystemTime::now();
    assert_lifetime(
        &leaf_of(&chain),
        Duration::from_secs(90 * DAY),
        before,
        after,
    );

    // Negative lifetime.
    expect_refusal(
        "negative validity_duration",
        create(ch.clone(), &csr, -1, Some(&token)).await,
        Code::InvalidArgument,
        "validity_duration",
    );

    // Malformed CSRs: not PEM at all, and a real CSR whose signature was tampered with.
    expect_refusal(
        "garbage CSR",
        create(ch.clone(), "not a csr", 0, Some(&token)).await,
        Code::InvalidArgument,
        "csr",
    );
    let mut der = CertificateSigningRequestDer::from_pem_slice(csr.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec();
    *der.last_mut().unwrap() ^= 0x01;
    let tampered = to_pem("CERTIFICATE REQUEST", &der);
    assert_ne!(tampered, csr);
    expect_refusal(
        "CSR with a corrupted signature",
        create(ch.clone(), &tampered, 0, Some(&token)).await,
        Code::InvalidArgument,
        "csr",
    );
    // An empty CSR is malformed too.
    expect_refusal(
        "empty CSR",
        create(ch, "", 0, Some(&token)).await,
        Code::InvalidArgument,
        "csr",
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Refused credentials
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_are_unauthenticated_with_the_reason() {
    let dir = TempDir::new("refused");
    let w = Weftd::start(&dir.path().join("state"));
    let short = w.token("forum-services", "forum-sa", 1);
    let ch = w.tls_channel(None).await;
    let (_key, csr) = key_and_csr();

    expect_refusal(
        "no credentials",
        create(ch.clone(), &csr, 0, None).await,
        Code::Unauthenticated,
        "credentials",
    );
    expect_refusal(
        "garbage token",
        create(ch.clone(), &csr, 0, Some("garbage")).await,
        Code::Unauthenticated,
        "malformed",
    );

    // A token signed with some other key.
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let forged = TokenAuthority::from_pem(&other.serialize_pem(), &other.public_key_pem())
        .unwrap()
        .mint(
            "forum-services",
            "forum-sa",
            Duration::from_secs(600),
            SystemTime::now(),
        )
        .unwrap();
    expect_refusal(
        "forged token",
        create(ch.clone(), &csr, 0, Some(&forged)).await,
        Code::Unauthenticated,
        "signature",
    );

    // Tokens signed with weftd's real key but with the wrong audience, issuer or subject.
    let key_pem = std::fs::read_to_string(w.state.join("ca/token-signing-key.pem")).unwrap();
    let enc = jsonwebtoken::EncodingKey::from_ec_pem(key_pem.as_bytes()).unwrap();
    let sign = |claims: serde_json::Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
            &claims,
            &enc,
        )
        .unwrap()
    };
    let now = unix_now();
    let good_claims = serde_json::json!({
        "iss": "weftd", "sub": "system:serviceaccount:forum-services:forum-sa",
        "aud": ["istio-ca"], "iat": now, "exp": now + 600,
    });
    // Control: the hand-made token is accepted, so the refusals below are for the one change.
    let chain = create(ch.clone(), &csr, 0, Some(&sign(good_claims.clone())))
        .await
        .expect("a correctly hand-signed token");
    assert_eq!(
        leaf_of(&chain).uris,
        vec![spiffe("forum-services", "forum-sa")]
    );
    let with = |k: &str, v: serde_json::Value| {
        let mut c = good_claims.clone();
        c[k] = v;
        sign(c)
    };
    expect_refusal(
        "wrong audience",
        create(
            ch.clone(),
            &csr,
            0,
            Some(&with("aud", serde_json::json!(["kubernetes"]))),
        )
        .await,
        Code::Unauthenticated,
        "audience",
    );
    expect_refusal(
        "wrong issuer",
        create(
            ch.clone(),
            &csr,
            0,
            Some(&with("iss", serde_json::json!("kubernetes/serviceaccount"))),
        )
        .await,
        Code::Unauthenticated,
        "issuer",
    );
    expect_refusal(
        "subject not a service account",
        create(
            ch.clone(),
            &csr,
            0,
            Some(&with("sub", serde_json::json!("system:admin"))),
        )
        .await,
        Code::Unauthenticated,
        "service account",
    );

    // The 1-second token, once it has run out.
    std::thread::sleep(Duration::from_secs(2));
    expect_refusal(
        "expired token",
        create(ch.clone(), &csr, 0, Some(&short)).await,
        Code::Unauthenticated,
        "expired",
    );
}

// ---------------------------------------------------------------------------------------------
// 4 + 5. mTLS renewal; the plaintext port
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_renewal_and_plaintext_port() {
    let dir = TempDir::new("mtls");
    let w = Weftd::start(&dir.path().join("state"));
    let token = w.token("vm-ns", "vm-sa", 600);
    let (key, csr) = key_and_csr();
    let chain = create(w.tls_channel(None).await, &csr, 0, Some(&token))
        .await
        .unwrap();
    let issued = Issued { key, chain };

    // Renewal with the certificate alone: the new certificate carries the same identity.
    let mtls = w.tls_channel(Some(&issued)).await;
    let (_k2, csr2) = key_and_csr();
    let renewed = create(mtls.clone(), &csr2, 0, None)
        .await
        .expect("mTLS renewal");
    assert_eq!(renewed.len(), 2);
    assert_eq!(leaf_of(&renewed).uris, vec![spiffe("vm-ns", "vm-sa")]);
    assert_ne!(
        leaf_of(&renewed).public_key_der,
        leaf_of(&issued.chain).public_key_der,
        "the renewed certificate is for the new CSR's key"
    );

    // A token for another identity does not override the certificate presented.
    let other = w.token("other-ns", "other-sa", 600);
    let chain = create(mtls.clone(), &csr2, 0, Some(&other)).await.unwrap();
    assert_eq!(leaf_of(&chain).uris, vec![spiffe("vm-ns", "vm-sa")]);

    // Plaintext port: a token works, nothing does not.
    let plain = w.plain_channel().await;
    let chain = create(plain.clone(), &csr, 0, Some(&token)).await.unwrap();
    assert_eq!(chain.len(), 2);
    assert_eq!(leaf_of(&chain).uris, vec![spiffe("vm-ns", "vm-sa")]);
    expect_refusal(
        "plaintext without credentials",
        create(plain, &csr, 0, None).await,
        Code::Unauthenticated,
        "credentials",
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Durable state: restart, file modes, a damaged root
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_root_and_damage_stops_startup() {
    let dir = TempDir::new("restart");
    let state = dir.path().join("state");
    let mut w = Weftd::start(&state);
    let root = w.root_pem();
    let admin = w.admin_token();
    let token = w.token("vm-ns", "vm-sa", 600);
    let (key, csr) = key_and_csr();
    let chain = create(w.tls_channel(None).await, &csr, 0, Some(&token))
        .await
        .unwrap();
    let issued = Issued { key, chain };

    // Secrets are owner-only.
    for f in [
        "ca/ca-key.pem",
        "ca/root-cert.pem",
        "ca/token-signing-key.pem",
        "admin-token",
    ] {
        let mode = std::fs::metadata(state.join(f))
            .unwrap_or_else(|e| panic!("{f}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f} has mode {:o}", mode & 0o777);
    }
    let mode = std::fs::metadata(&state).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "state dir has mode {:o}", mode & 0o777);

    let status = w.stop();
    assert!(status.success(), "SIGTERM should be a clean exit: {status}");

    // Same state dir: same root, same admin credential, tokens and certificates still good.
    let w = Weftd::start(&state);
    assert_eq!(w.root_pem(), root, "the root survives a restart");
    assert_eq!(w.admin_token(), admin);
    let (_k, csr2) = key_and_csr();
    let renewed = create(w.tls_channel(Some(&issued)).await, &csr2, 0, None)
        .await
        .expect("a certificate issued before the restart renews over mTLS");
    assert_eq!(leaf_of(&renewed).uris, vec![spiffe("vm-ns", "vm-sa")]);
    assert_eq!(renewed[1], root);
    let chain = create(w.tls_channel(None).await, &csr2, 0, Some(&token))
        .await
        .expect("a token minted before the restart still works");
    assert_eq!(leaf_of(&chain).uris, vec![spiffe("vm-ns", "vm-sa")]);
    drop(w);

    // A damaged root stops weftd, naming the file, and is not replaced.
    let root_file = state.join("ca/root-cert.pem");
    std::fs::write(&root_file, "-----BEGIN CERTIFICATE-----\ngarbage\n").unwrap();
    let (status, stderr) = run_to_exit(&state);
    assert!(!status.success(), "weftd must refuse a damaged root");
    assert!(
        stderr.contains("root-cert.pem"),
        "the error should name root-cert.pem:\n{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&root_file).unwrap(),
        "-----BEGIN CERTIFICATE-----\ngarbage\n",
        "the damaged root must not be silently regenerated"
    );

    // Likewise a damaged key, once the root is restored.
    std::fs::write(&root_file, &root).unwrap();
    let key_file = state.join("ca/ca-key.pem");
    let key_pem = std::fs::read_to_string(&key_file).unwrap();
    std::fs::write(&key_file, "not a key\n").unwrap();
    let (status, stderr) = run_to_exit(&state);
    assert!(!status.success(), "weftd must refuse a damaged CA key");
    assert!(
        stderr.contains("ca-key.pem"),
        "the error should name ca-key.pem:\n{stderr}"
    );
    // And with both restored it starts again with the same root.
    std::fs::write(&key_file, key_pem).unwrap();
    let w = Weftd::start(&state);
    assert_eq!(w.root_pem(), root);
}

// ---------------------------------------------------------------------------------------------
// 7. Admin API errors
// ---------------------------------------------------------------------------------------------

#[test]
fn admin_api_refusals() {
    let dir = TempDir::new("admin");
    let w = Weftd::start(&dir.path().join("state"));
    let admin = w.admin_token();
    let good = r#"{"namespace":"a","serviceAccount":"b","durationSeconds":60}"#;

    let (s, _) = http(w.http, "GET", "/healthz", None, None);
    assert_eq!(s, 200, "health needs no credential");
    for (what, bearer) in [
        ("no admin token", None),
        ("wrong admin token", Some("0123456789abcdef")),
        ("empty admin token", Some("")),
    ] {
        let (s, body) = http(w.http, "POST", "/api/v1/tokens", bearer, Some(good));
        assert_eq!(s, 401, "{what}: {body}");
        assert!(body.contains("admin-token"), "{what}: {body}");
        let (s, _) = http(w.http, "GET", "/api/v1/root-cert", bearer, None);
        assert_eq!(s, 401, "{what}: root-cert");
    }

    let post = |body: &str| http(w.http, "POST", "/api/v1/tokens", Some(&admin), Some(body));
    let (s, body) = post("{not json");
    assert_eq!(s, 400, "{body}");
    for field in ["namespace", "serviceAccount", "durationSeconds"] {
        assert!(body.contains(field), "bad JSON reply names {field}: {body}");
    }
    let (s, body) = post(r#"{"namespace":"a"}"#);
    assert_eq!(s, 400, "missing serviceAccount: {body}");
    assert!(body.contains("serviceAccount"), "{body}");
    let (s, body) = post(r#"{"namespace":"a","serviceAccount":"b","durationSeconds":0}"#);
    assert_eq!(s, 400, "durationSeconds 0: {body}");
    assert!(body.contains("durationSeconds"), "{body}");
    let (s, body) = post(r#"{"namespace":"a","serviceAccount":"b","durationSeconds":-5}"#);
    assert_eq!(s, 400, "negative durationSeconds: {body}");
    let (s, body) = post(r#"{"namespace":"Not_A_Name","serviceAccount":"b"}"#);
    assert_eq!(s, 400, "invalid namespace: {body}");
    assert!(body.contains("namespace"), "{body}");
    let (s, body) = post(r#"{"namespace":"a","serviceAccount":"b","audience":"x"}"#);
    assert_eq!(s, 400, "unknown field: {body}");

    let (s, body) = post(good);
    assert_eq!(s, 200, "{body}");
    let (s, _) = http(w.http, "GET", "/api/v1/nothing", Some(&admin), None);
    assert_eq!(s, 404);
}

// ---------------------------------------------------------------------------------------------
// 8. A plugged-in CA (Istio's cacerts)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugged_in_intermediate_ca() {
    let dir = TempDir::new("plugged");
    let state = dir.path().join("state");
    let now = SystemTime::now();
    let root =
        CertificateAuthority::new_root(KeyAlgorithm::EcdsaP256, "plugged-root", now).unwrap();
    let root_key = rcgen::KeyPair::from_pem(&root.key_pem()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(root.cert_pem(), &root_key).unwrap();
    let inter_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, "weft-test-intermediate");
    params.distinguished_name = dn;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + Duration::from_secs(365 * DAY)).into();
    let inter = params.signed_by(&inter_key, &issuer).unwrap().pem();

    let cacerts = state.join("cacerts");
    std::fs::create_dir_all(&cacerts).unwrap();
    std::fs::write(cacerts.join("ca-cert.pem"), &inter).unwrap();
    std::fs::write(cacerts.join("ca-key.pem"), inter_key.serialize_pem()).unwrap();
    std::fs::write(cacerts.join("root-cert.pem"), root.root_pem()).unwrap();
    std::fs::write(
        cacerts.join("cert-chain.pem"),
        format!("{inter}{}", root.root_pem()),
    )
    .unwrap();

    let w = Weftd::start(&state);
    let api_root = w.root_pem();
    assert_eq!(api_root, root.root_pem(), "the API serves the plugged root");
    assert!(
        !state.join("ca/root-cert.pem").exists(),
        "no self-signed root is created beside a plugged-in CA"
    );

    // Issuing with a token: [leaf, intermediate, root], each signed by the next.
    let token = w.token("forum-services", "forum-sa", 600);
    let (key, csr) = key_and_csr();
    let chain = create(w.tls_channel(None).await, &csr, 0, Some(&token))
        .await
        .unwrap();
    assert_eq!(chain.len(), 3, "leaf, intermediate, root: {chain:#?}");
    let inter_info = CertInfo::from_pem(&inter).unwrap();
    assert_eq!(chain[1], inter_info.pem);
    assert_eq!(chain[2], api_root);
    let leaf = leaf_of(&chain);
    assert_eq!(leaf.uris, vec![spiffe("forum-services", "forum-sa")]);
    assert!(leaf.verify_signed_by(&inter_info));
    assert!(inter_info.verify_signed_by(&CertInfo::from_pem(&api_root).unwrap()));

    // The certificate (with its intermediate) renews over mTLS.
    let issued = Issued { key, chain };
    let (_k, csr2) = key_and_csr();
    let renewed = create(w.tls_channel(Some(&issued)).await, &csr2, 0, None)
        .await
        .expect("mTLS renewal through the intermediate");
    assert_eq!(
        leaf_of(&renewed).uris,
        vec![spiffe("forum-services", "forum-sa")]
    );
    assert_eq!(renewed.len(), 3);
}
