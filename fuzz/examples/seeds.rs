//! Writes the seeds of the agent-protocol targets (`seeds/agent_messages`, `seeds/envelope`,
//! `seeds/settings`, `seeds/policy`) from ward's own types and functions: the golden fixtures
//! of ward-proto read and written back, requests built and signed as the agent builds them,
//! answers signed as the server signs them. Deterministic (fixed keys, nonces and times), so
//! running it again changes nothing:
//!
//! ```sh
//! cargo run --manifest-path fuzz/Cargo.toml --example seeds
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use ward_agent::transport::request_message;
use ward_proto::messages::{
    decode, encode, header, CheckinRequest, CheckinResponse, EnrollRequest, EnrollResponse,
    ErrorBody, Hello, Mode, Settings, SettingsPackage, CHECKIN_PATH, ENROLL_PATH,
};
use ward_proto::{
    enroll as proof, hex, sign_request, sign_response, AgentKey, KeyPair, Request, RequestAuth,
};

// The same values as fuzz_targets/common.rs.
const KEY: [u8; 32] = [0x5a; 32];
const NONCE: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
const NOW_MS: i64 = 1_764_700_000_000;
const AGENT: &str = "5f0c2a7e9b3d4c1a8e6f2b7d9c0a1e3f";

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn golden<T: DeserializeOwned>(file: &'static str) -> T {
    let path = fuzz_dir()
        .join("../crates/ward-proto/tests/golden")
        .join(file);
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    decode(file, &bytes).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn write(target: &str, name: &str, bytes: impl AsRef<[u8]>) {
    let dir = fuzz_dir().join("seeds").join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
}

fn message<T: Serialize>(target: &str, name: &str, value: &T) {
    write(target, name, encode(value));
}

fn main() {
    let key = AgentKey::from_bytes(KEY);

    // agent_messages: every fixture as ward writes it, and an enrollment built as the agent
    // builds it, with a real proof.
    let hello: Hello = golden("hello.json");
    let enroll_request: EnrollRequest = golden("enroll_request.json");
    let reregister: EnrollRequest = golden("enroll_request_reregister.json");
    let checkin_request: CheckinRequest = golden("checkin_request.json");
    let checkin_push: CheckinRequest = golden("checkin_request_push.json");
    let checkin_reverted: CheckinRequest = golden("checkin_request_reverted.json");
    let enroll_response: EnrollResponse = golden("enroll_response.json");
    let with_settings: CheckinResponse = golden("checkin_response_settings.json");
    let unchanged: CheckinResponse = golden("checkin_response_unchanged.json");
    let error: ErrorBody = golden("error.json");
    let package: SettingsPackage = golden("settings_package.json");
    message("agent_messages", "hello.json", &hello);
    message("agent_messages", "enroll_request.json", &enroll_request);
    message(
        "agent_messages",
        "enroll_request_reregister.json",
        &reregister,
    );
    message("agent_messages", "checkin_request.json", &checkin_request);
    message("agent_messages", "checkin_request_push.json", &checkin_push);
    message(
        "agent_messages",
        "checkin_request_reverted.json",
        &checkin_reverted,
    );
    message("agent_messages", "enroll_response.json", &enroll_response);
    message(
        "agent_messages",
        "checkin_response_settings.json",
        &with_settings,
    );
    message(
        "agent_messages",
        "checkin_response_unchanged.json",
        &unchanged,
    );
    message("agent_messages", "error.json", &error);
    let server = KeyPair::from_private_bytes(&[0x11; 32]).unwrap();
    let server_public = server.public_bytes().unwrap();
    let agent_pair = KeyPair::from_private_bytes(&[0x22; 32]).unwrap();
    let agent_public = agent_pair.public_bytes().unwrap();
    let agent_key = AgentKey::for_agent(&agent_pair, &server_public).unwrap();
    let token_sha256 = proof::token_sha256("the token");
    let statement = proof::statement(&token_sha256, NONCE, NOW_MS, &hex(&agent_public), None);
    let proven = EnrollRequest {
        agent_public: hex(&agent_public),
        token_lookup: proof::token_lookup(&token_sha256),
        proof: proof::proof(&agent_key, &statement),
        nonce: NONCE.into(),
        time_ms: NOW_MS,
        ..enroll_request.clone()
    };
    message("agent_messages", "enroll_request_proven.json", &proven);

    // envelope, server side (first byte 0): the agent's HTTP request, signed.
    let checkin_body = encode(&checkin_request);
    let signed_request = |auth: &RequestAuth, body: &str| {
        let mac = sign_request(
            &key,
            &Request {
                method: "POST",
                path: CHECKIN_PATH,
                auth,
                body: body.as_bytes(),
            },
        );
        let headers = vec![
            ("Content-Type", "application/json".to_string()),
            (header::AGENT, auth.agent.clone()),
            (header::TIME, auth.time_ms.to_string()),
            (header::NONCE, auth.nonce.clone()),
            (header::MAC, mac),
        ];
        let message = request_message(
            "POST",
            CHECKIN_PATH,
            "mgr1:8014",
            &headers,
            body.as_bytes(),
            false,
        );
        [&[0u8][..], &message].concat()
    };
    let fresh = RequestAuth {
        agent: AGENT.into(),
        time_ms: NOW_MS - 1_500,
        nonce: NONCE.into(),
    };
    write(
        "envelope",
        "checkin_fresh.http",
        signed_request(&fresh, &checkin_body),
    );
    let stale = RequestAuth {
        time_ms: NOW_MS - 6 * 60 * 1000,
        ..fresh.clone()
    };
    let push_body = encode(&checkin_push);
    write(
        "envelope",
        "checkin_push_stale.http",
        signed_request(&stale, &push_body),
    );
    let unsigned = request_message(
        "POST",
        ENROLL_PATH,
        "mgr1:8014",
        &[("Content-Type", "application/json".to_string())],
        encode(&proven).as_bytes(),
        false,
    );
    write(
        "envelope",
        "enroll_unsigned.http",
        [&[0u8][..], &unsigned].concat(),
    );

    // envelope, agent side (first byte 1): the server's HTTP answers, as hyper writes them.
    let answer = |status: u16, reason: &str, body: &str, signed: bool, extra: &[(&str, &str)]| {
        let mut head = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n",
            body.len()
        );
        if signed {
            let mac = sign_response(&key, NONCE, status, body.as_bytes());
            head.push_str(&format!("x-ward-mac: {mac}\r\n"));
        }
        for (name, value) in extra {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("date: Tue, 02 Dec 2025 18:26:40 GMT\r\n\r\n");
        [&[1u8][..], head.as_bytes(), body.as_bytes()].concat()
    };
    let settings_body = encode(&with_settings);
    write(
        "envelope",
        "answer_settings.http",
        answer(200, "OK", &settings_body, true, &[]),
    );
    write(
        "envelope",
        "answer_unchanged.http",
        answer(200, "OK", &encode(&unchanged), true, &[]),
    );
    let refusal = encode(&error);
    write(
        "envelope",
        "answer_unknown_agent.http",
        answer(401, "Unauthorized", &refusal, false, &[]),
    );
    let busy = encode(&ErrorBody::new(
        "busy",
        "the server is busy: try again later",
    ));
    write(
        "envelope",
        "answer_busy_signed.http",
        answer(
            503,
            "Service Unavailable",
            &busy,
            true,
            &[("retry-after", "30")],
        ),
    );
    write(
        "envelope",
        "answer_busy_unsigned.http",
        answer(
            503,
            "Service Unavailable",
            &busy,
            false,
            &[("retry-after", "3600")],
        ),
    );
    let bad = encode(&ErrorBody::new(
        "bad_request",
        "malformed check-in request: missing field `server`",
    ));
    write(
        "envelope",
        "answer_bad_request.http",
        answer(400, "Bad Request", &bad, true, &[]),
    );

    // settings: the exported package, one with several servers in push mode with a policy,
    // and the settings of a check-in answer alone.
    message("settings", "package.json", &package);
    let mut settings: Settings = with_settings
        .settings
        .clone()
        .expect("the fixture has settings");
    settings.mode = Mode::Push;
    let mut several = package.clone();
    several.group = settings.group.clone();
    several.settings = settings.clone();
    message("settings", "package_push_two_servers.json", &several);
    // As `ward group export-settings` prints it: pretty, with a newline.
    write(
        "settings",
        "package_pretty.json",
        serde_json::to_string_pretty(&package).unwrap() + "\n",
    );
    message("settings", "checkin_settings.json", &with_settings.settings);

    // policy: documents as an admin writes them (`ward group set --policy FILE`), and as the
    // agent writes them back to policy.json.
    let policies: [(&str, Value); 5] = [
        ("empty.json", json!({})),
        (
            "scan.json",
            with_settings.settings.as_ref().unwrap().policy.clone(),
        ),
        (
            "antivirus.json",
            json!({"av": "legacy", "updates": {"window": "02:00-04:00", "days": ["sat", "sun"]}}),
        ),
        (
            "mixed.json",
            json!({"firewall": {"allow": [22, 443, 8014], "log": false}, "max_cpu": 0.75,
                   "owner": "IT Ops – Zürich", "tags": ["xp", "legacy"], "retries": -3,
                   "limit": 18446744073709551615u64, "note": null}),
        ),
        (
            "nested.json",
            json!({"a": {"b": {"c": {"d": [[1, 2], [3.5e-7, "x"]]}}}}),
        ),
    ];
    for (name, policy) in policies {
        write("policy", name, format!("{policy:#}\n"));
    }
}
