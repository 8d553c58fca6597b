//! The admin API's golden fixtures (`crates/ward-api/tests/golden/`) are what the real server
//! answers: a real server with real agents (one modern, one capped at TLS 1.0) answers each
//! main request, and each answer must have its fixture's shape (the same keys at every level,
//! and the same kind of value where both have one). `crates/ward-api/tests/golden.rs` checks
//! that ward-api's types read and write each fixture unchanged; together they pin what a
//! released CLI or console reads.
//!
//! A fixture that does not exist yet is written from the live answer and the test fails,
//! asking for it to be reviewed and committed; an existing fixture is never rewritten.

mod support;

use std::path::PathBuf;

use serde_json::Value;
use support::*;

fn golden(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../ward-api/tests/golden")
        .join(file)
}

/// An admin API request with the admin token: its status and JSON answer.
fn api(server: &Server, method: &str, path: &str, body: &str) -> (u16, Value) {
    let stream = tls_connect(server.console, &server.ca_pem(), None).unwrap();
    let mut connection = HttpConnection::new(stream);
    let bearer = format!("Bearer {}", server.token());
    let reply = connection
        .request(
            method,
            &format!("/api/v1{path}"),
            &[
                ("Content-Type", "application/json"),
                ("Authorization", &bearer),
            ],
            body,
        )
        .expect("an answer");
    (reply.status, reply.json())
}

/// Where `live` differs in shape from `fixture`: a key one has and the other lacks, or a
/// value of another kind (null matches anything: an optional field set in one and not the
/// other). Arrays compare their first elements.
fn shape_differences(path: &str, fixture: &Value, live: &Value, out: &mut Vec<String>) {
    match (fixture, live) {
        (Value::Null, _) | (_, Value::Null) => {}
        (Value::Object(a), Value::Object(b)) => {
            for key in a.keys().filter(|k| !b.contains_key(*k)) {
                out.push(format!("{path}.{key}: in the fixture, not in the answer"));
            }
            for key in b.keys().filter(|k| !a.contains_key(*k)) {
                out.push(format!("{path}.{key}: in the answer, not in the fixture"));
            }
            for (key, value) in a {
                if let Some(other) = b.get(key) {
                    shape_differences(&format!("{path}.{key}"), value, other, out);
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if let (Some(x), Some(y)) = (a.first(), b.first()) {
                shape_differences(&format!("{path}[0]"), x, y, out);
            }
        }
        (a, b) => {
            let kind = |v: &Value| match v {
                Value::Bool(_) => "boolean",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                _ => "other",
            };
            if kind(a) != kind(b) {
                out.push(format!(
                    "{path}: a {} in the fixture, a {} in the answer",
                    kind(a),
                    kind(b)
                ));
            }
        }
    }
}

#[test]
fn the_servers_answers_have_the_golden_fixtures_shapes() {
    let server = fast_server();
    let modern = https_agent(&server);
    let url = format!("https://127.0.0.1:{}", server.clients);
    let token = group_token(&server, "My Company", false);
    let old = run_agent(enroll(&server, &url, &token, Some("TLSv1")), Some("TLSv1"));
    let (status, _) = api(
        &server,
        "POST",
        "/accounts",
        r#"{"name":"alice","password":"a long enough password","role":"auditor"}"#,
    );
    assert_eq!(status, 201);

    let (_, groups) = api(&server, "GET", "/groups", "");
    let root = groups[0]["id"].as_i64().expect("the root group's id");
    let old_id = old.id();
    let answers: Vec<(&str, &str, String, &str, u16)> = vec![
        ("group.json", "GET", format!("/groups/{root}"), "", 200),
        (
            "server_list.json",
            "GET",
            "/serverlists/Default".into(),
            "",
            200,
        ),
        ("agent.json", "GET", format!("/agents/{old_id}"), "", 200),
        (
            "token.json",
            "POST",
            "/tokens".into(),
            r#"{"group":"My Company","uses":5}"#,
            201,
        ),
        ("accounts.json", "GET", "/accounts".into(), "", 200),
        ("audit.json", "GET", "/audit?limit=3".into(), "", 200),
        ("status.json", "GET", "/server".into(), "", 200),
        ("harden_status.json", "GET", "/tls/harden".into(), "", 200),
        ("ca_status.json", "GET", "/server/ca".into(), "", 200),
        (
            "key_status.json",
            "GET",
            "/server/agreement-key".into(),
            "",
            200,
        ),
        (
            "plan.json",
            "POST",
            "/tls/plan".into(),
            r#"{"protocol":"TLSv1.2 +TLSv1.3"}"#,
            200,
        ),
        ("readiness.json", "GET", "/tls/readiness".into(), "", 200),
        (
            "refusal_would_cut_off.json",
            "POST",
            "/tls/harden/apply".into(),
            r#"{"protocol":"TLSv1.2 +TLSv1.3"}"#,
            409,
        ),
    ];
    let mut problems = Vec::new();
    for (file, method, path, body, status) in &answers {
        let (got, live) = api(&server, method, path, body);
        assert_eq!(got, *status, "{method} {path}: {live}");
        let fixture_path = golden(file);
        let Ok(text) = std::fs::read_to_string(&fixture_path) else {
            let pretty = serde_json::to_string_pretty(&live).unwrap();
            std::fs::write(&fixture_path, format!("{pretty}\n")).unwrap();
            problems.push(format!(
                "{file}: no fixture yet; written from the live answer: review and commit it"
            ));
            continue;
        };
        let fixture: Value = serde_json::from_str(&text).unwrap();
        let mut differences = Vec::new();
        shape_differences("", &fixture, &live, &mut differences);
        for difference in differences {
            problems.push(format!("{file} ({method} {path}): {difference}"));
        }
    }
    drop((modern, old));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
