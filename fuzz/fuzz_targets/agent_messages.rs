#![no_main]
//! Every `/agent/v1/*` message as its receiver reads it (ward-proto's `decode`): what the
//! server reads from an agent's request body (`EnrollRequest`, `CheckinRequest`) and what the
//! agent reads from the server's answers (`Hello`, `EnrollResponse`, `CheckinResponse`, an
//! `ErrorBody`). A message that reads must survive a round trip unchanged, byte for byte on
//! the second write; what each side then does with it (the versions the server keeps, the
//! enrollment proof, the pinned key, the ClientHello an agent reports of its stack, the
//! words of a revert report) must not panic, and a proof nobody computed never matches.

use libfuzzer_sys::fuzz_target;
use ward_proto::messages::{
    decode, error_message, CheckinRequest, CheckinResponse, EnrollRequest, EnrollResponse,
    ErrorBody, Hello,
};
use ward_proto::{enroll as proof, hex, unhex, AgentKey, KeyPair};
use ward_tls::TlsVersion;

#[path = "common.rs"]
mod common;
use common::round_trip;

/// The server's agreement key (X25519), fixed so a run is reproducible.
const SERVER_PRIVATE: [u8; 32] = [0x11; 32];

/// The server reads the ClientHello an agent reports of its stack as it reads a check-in's
/// or an enrollment's (hex, then `reported_fingerprint`): never a panic, the same
/// fingerprint each time, and only within the bound.
fn server_reads_reported_hello(hello: Option<&str>) {
    let Some(bytes) = hello.and_then(|text| unhex(text).ok()) else {
        return;
    };
    let first = ward_tls::hello::reported_fingerprint(&bytes);
    assert_eq!(first, ward_tls::hello::reported_fingerprint(&bytes));
    if first.is_some() {
        assert!(bytes.len() <= ward_tls::hello::MAX_REPORTED_HELLO);
    }
}

fuzz_target!(|data: &[u8]| {
    // The server reads request bodies.
    if let Some(request) = round_trip::<EnrollRequest>("enrollment request", data) {
        server_reads_enrollment(&request);
    }
    if let Some(request) = round_trip::<CheckinRequest>("check-in request", data) {
        for version in &request.host.tls_versions {
            let _ = TlsVersion::parse_loose(version);
        }
        server_reads_reported_hello(request.hello.as_deref());
        if let Some(reverted) = &request.reverted {
            // The words the server keeps and shows name every server the agent tried.
            let summary = reverted.summary();
            assert!(summary.starts_with(&format!("serial {}: ", reverted.serial)));
            for failure in &reverted.failures {
                assert!(summary.contains(&failure.server));
                assert!(reverted.failures_text().contains(&failure.error));
            }
        }
    }

    // The agent reads answers.
    if let Some(hello) = round_trip::<Hello>("hello", data) {
        if let Ok(server_public) = unhex(&hello.agreement_key) {
            let pair = KeyPair::from_private_bytes(&[0x22; 32]).expect("a fixed X25519 key");
            let _ = AgentKey::for_agent(&pair, &server_public);
        }
    }
    if let Some(answer) = round_trip::<EnrollResponse>("enrollment answer", data) {
        common::check_round_trip("settings", &answer.settings);
    }
    if let Some(answer) = round_trip::<CheckinResponse>("check-in answer", data) {
        if let Some(settings) = &answer.settings {
            common::check_round_trip("settings", settings);
        }
    }
    let error = round_trip::<ErrorBody>("error", data);
    assert_eq!(
        error_message(data),
        error.map(|body| body.error),
        "error_message reads an error body otherwise than decode"
    );
    // The error shape is read by the agent from any refusal, so any bytes at all.
    let _ = decode::<ErrorBody>("error", data);
});

/// What the server does with an enrollment request before it touches the store: the agent's
/// key, the key agreement, the proof. A proof the fuzzer wrote never matches unless it is
/// the real one.
fn server_reads_enrollment(request: &EnrollRequest) {
    for version in &request.host.tls_versions {
        let _ = TlsVersion::parse_loose(version);
    }
    server_reads_reported_hello(request.hello.as_deref());
    let Some(public) = unhex(&request.agent_public)
        .ok()
        .filter(|bytes| bytes.len() == 32)
    else {
        return;
    };
    let server = KeyPair::from_private_bytes(&SERVER_PRIVATE).expect("a fixed X25519 key");
    let server_public = server.public_bytes().expect("its public key");
    let Ok(key) = AgentKey::for_server(&server, &server_public, &public) else {
        return; // a low-order point: refused as "not a usable X25519 key"
    };
    let token_sha256 = proof::token_sha256("the token");
    let statement = proof::statement(
        &token_sha256,
        &request.nonce,
        request.time_ms,
        &hex(&public),
        request.agent.as_deref(),
    );
    let matches = proof::proof_matches(&key, &statement, &request.proof);
    assert_eq!(
        matches,
        request.proof == proof::proof(&key, &statement),
        "proof_matches disagrees with the proof"
    );
}
