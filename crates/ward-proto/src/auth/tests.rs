use super::*;
use crate::keys::{agree, enrollment_proof, KeyPair};

/// An agent and a server that did the key agreement.
fn keys() -> (AgentKey, AgentKey, Vec<u8>, Vec<u8>) {
    let agent = KeyPair::generate().unwrap();
    let server = KeyPair::generate().unwrap();
    let (agent_public, server_public) = (
        agent.public_bytes().unwrap(),
        server.public_bytes().unwrap(),
    );
    let on_agent = agree(&agent, &server_public, &agent_public, &server_public).unwrap();
    let on_server = agree(&server, &agent_public, &agent_public, &server_public).unwrap();
    (on_agent, on_server, agent_public, server_public)
}

const NOW: i64 = 1_795_000_000_000;

#[test]
fn both_sides_derive_the_same_key_and_others_do_not() {
    let (on_agent, on_server, agent_public, server_public) = keys();
    assert_eq!(on_agent, on_server);
    // A third party with its own key pair gets another key from the same public keys.
    let eve = KeyPair::generate().unwrap();
    let eves = agree(&eve, &server_public, &agent_public, &server_public).unwrap();
    assert_ne!(eves, on_server);
    // A pair restored from its private bytes agrees the same way.
    let server = KeyPair::generate().unwrap();
    let restored = KeyPair::from_private_bytes(&server.private_bytes().unwrap()).unwrap();
    assert_eq!(
        restored.public_bytes().unwrap(),
        server.public_bytes().unwrap()
    );
    // A malformed public key is an error, not a key.
    assert!(agree(&server, &[0u8; 5], &agent_public, &server_public).is_err());
    assert_eq!(format!("{on_agent:?}"), "AgentKey(..)", "never printed");
}

#[test]
fn enrollment_proof_binds_the_token_to_the_key() {
    let (on_agent, on_server, ..) = keys();
    assert_eq!(
        enrollment_proof(&on_agent, "tok"),
        enrollment_proof(&on_server, "tok")
    );
    assert_ne!(
        enrollment_proof(&on_agent, "tok"),
        enrollment_proof(&on_agent, "tok2")
    );
    let (other, ..) = keys();
    assert_ne!(
        enrollment_proof(&other, "tok"),
        enrollment_proof(&on_server, "tok")
    );
}

#[test]
fn request_tampering_table() {
    let (agent_key, server_key, ..) = keys();
    let auth = RequestAuth::new("agent-1", NOW);
    let body = br#"{"acked_serial": 7}"#;
    let request = Request {
        method: "POST",
        path: "/agent/v1/checkin",
        auth: &auth,
        body,
    };
    let mac = sign_request(&agent_key, &request);
    let mut replay = ReplayCache::default();
    assert_eq!(
        verify_request(&server_key, &request, &mac, NOW + 1000, &mut replay),
        Ok(())
    );

    let other_agent = RequestAuth {
        agent: "agent-2".into(),
        ..auth.clone()
    };
    let earlier = RequestAuth {
        time_ms: NOW - 1,
        ..auth.clone()
    };
    let (other_key, ..) = keys();
    let flipped_mac = {
        let mut bytes = mac.clone().into_bytes();
        bytes[0] = if bytes[0] == b'0' { b'1' } else { b'0' };
        String::from_utf8(bytes).unwrap()
    };
    let cases: Vec<(&str, Request, &AgentKey, &str, AuthError)> = vec![
        (
            "another method",
            Request {
                method: "GET",
                ..request
            },
            &server_key,
            &mac,
            AuthError::BadMac,
        ),
        (
            "another path",
            Request {
                path: "/agent/v1/enroll",
                ..request
            },
            &server_key,
            &mac,
            AuthError::BadMac,
        ),
        (
            "another body",
            Request {
                body: br#"{"acked_serial": 8}"#,
                ..request
            },
            &server_key,
            &mac,
            AuthError::BadMac,
        ),
        (
            "another agent's id",
            Request {
                auth: &other_agent,
                ..request
            },
            &server_key,
            &mac,
            AuthError::BadMac,
        ),
        (
            "another time",
            Request {
                auth: &earlier,
                ..request
            },
            &server_key,
            &mac,
            AuthError::BadMac,
        ),
        (
            "another agent's key",
            request,
            &other_key,
            &mac,
            AuthError::BadMac,
        ),
        (
            "a flipped MAC",
            request,
            &server_key,
            &flipped_mac,
            AuthError::BadMac,
        ),
        (
            "a truncated MAC",
            request,
            &server_key,
            &mac[..10],
            AuthError::BadMac,
        ),
    ];
    for (what, request, key, mac, expected) in cases {
        let mut fresh = ReplayCache::default();
        assert_eq!(
            verify_request(key, &request, mac, NOW, &mut fresh),
            Err(expected),
            "{what}"
        );
    }
}

#[test]
fn replays_and_stale_requests_are_refused() {
    let (agent_key, server_key, ..) = keys();
    let mut replay = ReplayCache::default();
    let auth = RequestAuth::new("agent-1", NOW);
    let request = Request {
        method: "POST",
        path: "/agent/v1/checkin",
        auth: &auth,
        body: b"{}",
    };
    let mac = sign_request(&agent_key, &request);
    assert_eq!(
        verify_request(&server_key, &request, &mac, NOW, &mut replay),
        Ok(())
    );
    assert_eq!(
        verify_request(&server_key, &request, &mac, NOW + 5, &mut replay),
        Err(AuthError::Replayed)
    );
    // A fresh request, but sent too long ago, or just within the window.
    let fresh = RequestAuth::new("agent-1", NOW);
    let request = Request {
        auth: &fresh,
        ..request
    };
    let mac = sign_request(&agent_key, &request);
    let late = NOW + MAX_SKEW_MS + 1;
    assert_eq!(
        verify_request(&server_key, &request, &mac, late, &mut replay),
        Err(AuthError::Stale {
            skew_ms: MAX_SKEW_MS + 1
        })
    );
    assert_eq!(
        verify_request(&server_key, &request, &mac, NOW - MAX_SKEW_MS, &mut replay),
        Ok(())
    );
    // A forged request is not remembered: the genuine one with that nonce still passes.
    let genuine = RequestAuth::new("agent-1", NOW);
    let request = Request {
        auth: &genuine,
        ..request
    };
    assert_eq!(
        verify_request(&server_key, &request, "00", NOW, &mut replay),
        Err(AuthError::BadMac)
    );
    let mac = sign_request(&agent_key, &request);
    assert_eq!(
        verify_request(&server_key, &request, &mac, NOW, &mut replay),
        Ok(())
    );
    let bad_nonce = RequestAuth {
        nonce: "zz".into(),
        ..genuine.clone()
    };
    let request = Request {
        auth: &bad_nonce,
        ..request
    };
    assert_eq!(
        verify_request(&server_key, &request, &mac, NOW, &mut replay),
        Err(AuthError::MalformedNonce)
    );
}

/// Found by fuzzing (fuzz/, target `envelope`): a signed request whose `X-Ward-Time` is far
/// from the server's clock overflowed `now - time` (a panic in a debug build; in a release
/// build a wrapped skew could even pass as fresh).
#[test]
fn any_request_time_is_judged_without_overflow() {
    let (agent_key, server_key, ..) = keys();
    for time_ms in [
        i64::MIN,
        i64::MIN + 1,
        -NOW,
        i64::MAX,
        NOW.wrapping_add(i64::MIN),
    ] {
        let auth = RequestAuth::new("agent-1", time_ms);
        let request = Request {
            method: "POST",
            path: "/agent/v1/checkin",
            auth: &auth,
            body: b"{}",
        };
        let mac = sign_request(&agent_key, &request);
        let result = verify_request(
            &server_key,
            &request,
            &mac,
            NOW,
            &mut ReplayCache::default(),
        );
        assert!(
            matches!(result, Err(AuthError::Stale { .. })),
            "time {time_ms}: {result:?}"
        );
    }
}

#[test]
fn responses_are_bound_to_their_request() {
    let (agent_key, server_key, ..) = keys();
    let first = RequestAuth::new("agent-1", NOW);
    let second = RequestAuth::new("agent-1", NOW);
    let body = br#"{"serial": 9, "server_list": "Default (HTTP 8014)"}"#;
    let mac = sign_response(&server_key, &first.nonce, 200, body);
    assert_eq!(
        verify_response(&agent_key, &first.nonce, 200, body, &mac),
        Ok(())
    );
    // Replayed as the answer to another request, altered, or with another status: refused.
    assert_eq!(
        verify_response(&agent_key, &second.nonce, 200, body, &mac),
        Err(AuthError::BadMac)
    );
    assert_eq!(
        verify_response(
            &agent_key,
            &first.nonce,
            200,
            br#"{"serial": 9, "server_list": "Evil"}"#,
            &mac
        ),
        Err(AuthError::BadMac)
    );
    assert_eq!(
        verify_response(&agent_key, &first.nonce, 503, body, &mac),
        Err(AuthError::BadMac)
    );
}

#[test]
fn reasons_read_well() {
    assert_eq!(
        AuthError::Replayed.to_string(),
        "this request was already received (replay)"
    );
    assert_eq!(
        AuthError::Stale { skew_ms: 400_000 }.to_string(),
        "the request time is 400 s from the server's clock (at most 300 s allowed)"
    );
}
