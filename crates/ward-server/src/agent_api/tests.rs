//! The agent API's refusal table, in process: the handlers are called on an `App` over a
//! fresh data dir, with requests built from ward-proto's types; no socket, no server process.

use std::net::SocketAddr;

use http_body_util::BodyExt;
use hyper::header::HeaderValue;
use ward_proto::messages::{
    decode, encode, CheckinRequest, CheckinResponse, EnrollRequest, EnrollResponse, ErrorBody,
    HostReport,
};
use ward_store::{Change, Mutation, TokenRecord};

use super::*;
use crate::state::test_app;

const TOKEN: &str = "a-token-for-the-table";

fn peer() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

fn host() -> HostReport {
    HostReport {
        hostname: "xp-01".into(),
        os_name: "windows".into(),
        os_version: "5.1".into(),
        agent_version: "0.1.0".into(),
        tls_versions: vec!["TLSv1".into()],
        name: None,
        simulated: false,
    }
}

async fn body_of(response: HttpResponse) -> (u16, Option<String>, Vec<u8>) {
    let status = response.status().as_u16();
    let mac = response
        .headers()
        .get("x-ward-mac")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, mac, bytes.to_vec())
}

fn code(body: &[u8]) -> String {
    decode::<ErrorBody>("error", body).unwrap().error.code
}

/// An enrolled agent: its id and key.
async fn enrolled(app: &App) -> (String, AgentKey) {
    let root = crate::ops::tree_of(&*app.store).unwrap().root();
    app.store
        .apply(&Change {
            tree_version: None,
            mutation: Mutation::CreateToken(TokenRecord {
                id: 0,
                group: root,
                token_sha256: proof::token_sha256(TOKEN),
                created_ms: now_ms(),
                expires_ms: None,
                uses_left: None,
                revoked: false,
                allow_http: true,
                accept_cut_off: false,
            }),
            bump_groups: vec![],
            bump_agents: vec![],
            audit: crate::ops::audit(
                &crate::auth::Caller {
                    name: "test".into(),
                    role: crate::auth::Role::Admin,
                    session: None,
                },
                "token.create",
                "root".into(),
                None,
                None,
            ),
        })
        .unwrap();
    let pair = ward_proto::KeyPair::generate().unwrap();
    let key = AgentKey::for_agent(&pair, &app.agreement().current.public).unwrap();
    let public = hex(&pair.public_bytes().unwrap());
    let auth = RequestAuth::new("", now_ms());
    let sha = proof::token_sha256(TOKEN);
    let statement = proof::statement(&sha, &auth.nonce, auth.time_ms, &public, None);
    let request = EnrollRequest {
        agent_public: public,
        token_lookup: proof::token_lookup(&sha),
        proof: proof::proof(&key, &statement),
        nonce: auth.nonce.clone(),
        time_ms: auth.time_ms,
        host: host(),
        agent: None,
        hello: None,
    };
    let response = enroll(app, Role::ClientsHttp, encode(&request).into()).await;
    let (status, mac, body) = body_of(response).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    ward_proto::verify_response(&key, &auth.nonce, 200, &body, &mac.unwrap()).unwrap();
    let answer: EnrollResponse = decode("enroll", &body).unwrap();
    assert_eq!(answer.settings.group, "My Company");
    (answer.agent, key)
}

/// A check-in's headers as the agent sends them, and its nonce.
fn signed_checkin(agent: &str, key: &AgentKey, body: &str, time_ms: i64) -> (HeaderMap, String) {
    let (signed, nonce) =
        ward_proto::signed_headers(key, agent, "POST", CHECKIN_PATH, body.as_bytes(), time_ms);
    let mut headers = HeaderMap::new();
    for (name, value) in signed {
        headers.insert(name, HeaderValue::from_str(&value).unwrap());
    }
    (headers, nonce)
}

fn report(acked: i64) -> String {
    encode(&CheckinRequest {
        acked_serial: acked,
        host: host(),
        server: "http://127.0.0.1:8014".into(),
        wait_ms: 0,
        trusted_cas: vec![],
        reverted: None,
        hello: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkins_that_cannot_be_trusted_are_refused_and_change_nothing() {
    let (_dir, app) = test_app();
    let (agent, key) = enrolled(&app).await;
    let other = AgentKey::from_bytes([9; 32]);
    let record = || app.store.agent(&agent).unwrap().unwrap();
    let before = record();

    let genuine = report(1);
    let (replayed_headers, _) = signed_checkin(&agent, &key, &genuine, now_ms());
    // Each case: (what, headers, body, expected status, expected code, signed answer).
    let stale = now_ms() - 10 * 60 * 1000;
    let cases: Vec<(&str, HeaderMap, String, u16, &str, bool)> = vec![
        (
            "unsigned",
            HeaderMap::new(),
            genuine.clone(),
            401,
            "unsigned",
            false,
        ),
        (
            "forged MAC",
            signed_checkin(&agent, &other, &genuine, now_ms()).0,
            genuine.clone(),
            401,
            "bad_signature",
            false,
        ),
        (
            "foreign agent",
            signed_checkin("00112233445566778899aabbccddeeff", &key, &genuine, now_ms()).0,
            genuine.clone(),
            401,
            "unknown_agent",
            false,
        ),
        (
            "stale time",
            signed_checkin(&agent, &key, &genuine, stale).0,
            genuine.clone(),
            401,
            "bad_signature",
            false,
        ),
        (
            "body changed after signing",
            replayed_headers.clone(),
            report(99),
            401,
            "bad_signature",
            false,
        ),
    ];
    for (what, headers, body, status, expected, signed) in cases {
        let response = checkin(
            &app,
            Role::ClientsHttp,
            peer(),
            None,
            &Default::default(),
            &headers,
            body.into(),
        )
        .await;
        let (got, mac, answer) = body_of(response).await;
        assert_eq!(got, status, "{what}: {}", String::from_utf8_lossy(&answer));
        assert_eq!(code(&answer), expected, "{what}");
        assert_eq!(mac.is_some(), signed, "{what}");
        assert_eq!(record(), before, "{what}: nothing changed");
    }

    // Signed, but not a check-in: refused with a signed 400, naming the missing field.
    let bad = r#"{"acked_serial": 1}"#;
    let (headers, nonce) = signed_checkin(&agent, &key, bad, now_ms());
    let response = checkin(
        &app,
        Role::ClientsHttp,
        peer(),
        None,
        &Default::default(),
        &headers,
        bad.into(),
    )
    .await;
    let (status, mac, answer) = body_of(response).await;
    assert_eq!(status, 400);
    ward_proto::verify_response(&key, &nonce, 400, &answer, &mac.unwrap()).unwrap();
    let error = decode::<ErrorBody>("error", &answer).unwrap().error;
    assert!(error.message.contains("missing field"), "{}", error.message);
    assert_eq!(record(), before, "a bad body changes nothing");

    // The genuine one is answered, signed and bound to its nonce; replayed, it is refused.
    let (headers, nonce) = signed_checkin(&agent, &key, &genuine, now_ms());
    let response = checkin(
        &app,
        Role::ClientsHttp,
        peer(),
        None,
        &Default::default(),
        &headers,
        genuine.clone().into(),
    )
    .await;
    let (status, mac, answer) = body_of(response).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    ward_proto::verify_response(&key, &nonce, 200, &answer, &mac.unwrap()).unwrap();
    let answer: CheckinResponse = decode("check-in", &answer).unwrap();
    assert_eq!(answer.serial, 1);
    assert!(answer.settings.is_none(), "serial 1 is acknowledged");
    let after = record();
    assert_eq!(after.channel.as_deref(), Some("http"));
    let response = checkin(
        &app,
        Role::ClientsHttp,
        peer(),
        None,
        &Default::default(),
        &headers,
        genuine.into(),
    )
    .await;
    let (status, _, answer) = body_of(response).await;
    assert_eq!(status, 401);
    assert!(String::from_utf8_lossy(&answer).contains("replay"));
    assert_eq!(record(), after, "a replay changes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollments_that_do_not_prove_the_token_are_refused() {
    let (_dir, app) = test_app();
    let _ = enrolled(&app).await;
    let count = || app.store.agents(&Default::default()).unwrap().len();
    let before = count();
    let pair = ward_proto::KeyPair::generate().unwrap();
    let key = AgentKey::for_agent(&pair, &app.agreement().current.public).unwrap();
    let public = hex(&pair.public_bytes().unwrap());
    let sha = proof::token_sha256(TOKEN);
    let request = |token_sha: &str, time_ms: i64, claimed: Option<&str>| {
        let auth = RequestAuth::new("", time_ms);
        let statement = proof::statement(token_sha, &auth.nonce, time_ms, &public, None);
        encode(&EnrollRequest {
            agent_public: public.clone(),
            token_lookup: proof::token_lookup(&sha),
            proof: proof::proof(&key, &statement),
            nonce: auth.nonce,
            time_ms,
            host: host(),
            agent: claimed.map(str::to_string),
            hello: None,
        })
    };
    let wrong_token = proof::token_sha256("another token");
    for (what, body, status, expected) in [
        ("not JSON", "{".to_string(), 400, "bad_request"),
        (
            "missing fields",
            r#"{"agent_public": "00"}"#.to_string(),
            400,
            "bad_request",
        ),
        (
            "wrong token",
            request(&wrong_token, now_ms(), None),
            403,
            "bad_proof",
        ),
        (
            "stale",
            request(&sha, now_ms() - 3_600_000, None),
            401,
            "stale",
        ),
        (
            "an identity the proof does not cover",
            request(&sha, now_ms(), Some("someone-else")),
            403,
            "bad_proof",
        ),
    ] {
        let response = enroll(&app, Role::Clients, body.into()).await;
        let (got, _, answer) = body_of(response).await;
        assert_eq!(got, status, "{what}: {}", String::from_utf8_lossy(&answer));
        assert_eq!(code(&answer), expected, "{what}");
        assert_eq!(count(), before, "{what}: nobody enrolled");
    }
}

#[test]
fn the_cas_an_agent_reports_are_kept_checked_sorted_and_bounded() {
    let (a, b) = ("a".repeat(64), "b".repeat(64));
    let (upper, short) = ("A".repeat(64), "a".repeat(63));
    let cases: &[(&[&str], Option<String>)] = &[
        (&[], None),
        (&[&b, &a], Some(format!("{a},{b}"))),
        (&[&a, &a], Some(a.clone())),
        // Not a SHA-256 in lowercase hex: left out.
        (&[&upper, "zz", "", "a,b"], None),
        (&[&short, &b], Some(b.clone())),
    ];
    for (reported, expected) in cases {
        let reported: Vec<String> = reported.iter().map(|s| s.to_string()).collect();
        assert_eq!(&super::trusted_cas(&reported), expected, "{reported:?}");
    }
    // At most 8 are kept, whatever an agent sends.
    let many: Vec<String> = (0..100).map(|i| format!("{i:064x}")).collect();
    assert_eq!(super::trusted_cas(&many).unwrap().split(',').count(), 8);
}

/// A check-in of `agent` signed with `key`: its status.
async fn checkin_status(app: &App, agent: &str, key: &AgentKey) -> u16 {
    let body = report(1);
    let (headers, _) = signed_checkin(agent, key, &body, now_ms());
    let response = checkin(
        app,
        Role::ClientsHttp,
        peer(),
        None,
        &Default::default(),
        &headers,
        body.into(),
    )
    .await;
    body_of(response).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_key_rotation_both_keys_verify_and_after_the_switch_only_the_new_one() {
    use crate::channel::{Agreement, ServerKey};
    let (_dir, app) = test_app();
    let (agent, old_key) = enrolled(&app).await;
    let recorded = || app.store.agents_tls().unwrap()[0].agreement_key.clone();
    let set = |agreement: Agreement| *app.agreement.write().unwrap() = Arc::new(agreement);
    // Verified (and cached) under the current key.
    assert_eq!(checkin_status(&app, &agent, &old_key).await, 200);
    let current = app.agreement().current.clone();
    assert_eq!(recorded().as_deref(), Some(&*current.sha256));

    // A rotation: the agent derives its key with the next server key; both verify.
    let next = ServerKey::new(ward_proto::KeyPair::generate().unwrap()).unwrap();
    set(Agreement {
        current: current.clone(),
        next: Some(next.clone()),
        withdrawn: None,
    });
    let public = app.store.agent_public_key(&agent).unwrap().unwrap();
    let new_key = next.derive(&ward_proto::unhex(&public).unwrap()).unwrap();
    assert_eq!(checkin_status(&app, &agent, &old_key).await, 200);
    assert_eq!(checkin_status(&app, &agent, &new_key).await, 200);
    assert_eq!(recorded().as_deref(), Some(&*next.sha256));
    assert_eq!(checkin_status(&app, &agent, &old_key).await, 200);
    assert_eq!(recorded().as_deref(), Some(&*current.sha256));

    // The switch: the old key is refused, even though it verified last (it is cached).
    set(Agreement {
        current: next.clone(),
        next: None,
        withdrawn: None,
    });
    assert_eq!(checkin_status(&app, &agent, &old_key).await, 401);
    assert_eq!(checkin_status(&app, &agent, &new_key).await, 200);
    assert_eq!(checkin_status(&app, &agent, &old_key).await, 401);
    // A forged MAC is refused too.
    let forged = AgentKey::from_bytes([7; 32]);
    assert_eq!(checkin_status(&app, &agent, &forged).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_in_beyond_the_caps_is_shed_with_a_signed_spread_out_wait_and_nothing_recorded() {
    let (_dir, app) = test_app();
    let (agent, key) = enrolled(&app).await;
    let record = || app.store.agent(&agent).unwrap().unwrap();
    let before = record();
    let body = report(1);
    let mut waits = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let (headers, nonce) = signed_checkin(&agent, &key, &body, now_ms());
        let response = shed(
            &app,
            Role::ClientsHttp,
            &headers,
            body.clone().into(),
            "at its limit",
        )
        .await;
        let retry_header = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let (status, mac, answer) = body_of(response).await;
        assert_eq!(status, 503, "{}", String::from_utf8_lossy(&answer));
        // Signed, bound to this request: the agent obeys it.
        ward_proto::verify_response(&key, &nonce, 503, &answer, &mac.expect("signed")).unwrap();
        let error: ErrorBody = decode("busy", &answer).unwrap();
        assert_eq!(error.error.code, "too_busy");
        let wait = error.retry_after_s.expect("a wait in the signed body");
        assert!((1..=SHED_SPREAD.as_secs()).contains(&wait), "{wait}");
        assert!(wait <= shed_spread(40).as_secs(), "{wait}");
        assert_eq!(retry_header, Some(wait));
        waits.insert(wait);
    }
    // A few shed check-ins are told to come back soon.
    assert!(waits.iter().all(|w| *w <= 1), "{waits:?}");
    assert_eq!(record(), before, "a shed check-in records nothing");

    // One that does not verify gets the plain, unsigned 503: no instruction for anyone.
    let other = AgentKey::from_bytes([9; 32]);
    let cases = [
        ("unsigned", HeaderMap::new()),
        ("forged", signed_checkin(&agent, &other, &body, now_ms()).0),
    ];
    for (what, headers) in cases {
        let response = shed(
            &app,
            Role::ClientsHttp,
            &headers,
            body.clone().into(),
            "at its limit",
        )
        .await;
        let (status, mac, answer) = body_of(response).await;
        assert_eq!(status, 503, "{what}");
        assert!(mac.is_none(), "{what}");
        assert_eq!(code(&answer), "too_busy", "{what}");
    }
}

#[test]
fn the_wait_of_a_shed_check_in_grows_with_the_herd_up_to_its_bound() {
    // (check-ins shed over the last 5-10 s, the longest wait told)
    let table = [
        (1, 1),
        (499, 1),
        (500, 2),
        (2_000, 5),
        (6_000, 13),
        (15_000, 30),
        (1_000_000, 30),
    ];
    for (recent, spread) in table {
        assert_eq!(shed_spread(recent).as_secs(), spread, "{recent} shed");
    }
}
