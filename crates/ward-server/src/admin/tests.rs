//! The admin API in process: the validation table runs the real routes on an `App` over a
//! fresh data dir, with no socket and no server process.

use http_body_util::BodyExt;
use serde_json::Value;

use super::*;
use crate::state::test_app;

/// A request to the admin API as the local admin, in process: routed by ward-api's table,
/// dispatched to the operation, answered.
async fn call(app: &App, method: &str, path: &str, body: &str) -> (u16, Value) {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let caller = Caller {
        name: "table".into(),
        role: Role::Admin,
        session: None,
    };
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let body = Bytes::from(body.to_string());
    let response = match ward_api::route(method, &segments) {
        Ok(matched) => {
            let request = Request {
                matched,
                query,
                body: &body,
            };
            dispatch(app, &caller, &request)
                .await
                .unwrap_or_else(|error| error.response())
        }
        Err(Unrouted::NotFound) => {
            error_response(StatusCode::NOT_FOUND, "not_found", "no such resource")
        }
        Err(Unrouted::MethodNotAllowed(allow)) => method_not_allowed(&allow),
    };
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_a_reason_and_change_nothing() {
    let (_dir, app) = test_app();
    let (status, _) = call(&app, "POST", "groups", r#"{"name": "Legacy"}"#).await;
    assert_eq!(status, 201);
    let audit_before = app.store.audit(0, 1000).unwrap().len();
    let root = crate::ops::tree_of(&*app.store).unwrap().root();
    let root_path = format!("groups/{root}");
    // (method, path, body, status, code, a word the message must hold)
    let table: &[(&str, &str, &str, u16, &str, &str)] = &[
        ("POST", "groups", "{", 400, "bad_request", "JSON"),
        ("POST", "groups", "[]", 400, "bad_request", "object"),
        ("POST", "groups", r#"{}"#, 400, "bad_request", "name"),
        (
            "POST",
            "groups",
            r#"{"name": "X", "colour": "red"}"#,
            400,
            "bad_request",
            "colour",
        ),
        (
            "POST",
            "groups",
            r#"{"name": 7}"#,
            400,
            "bad_request",
            "name",
        ),
        (
            "POST",
            "groups",
            r#"{"name": "Legacy"}"#,
            409,
            "conflict",
            "Legacy",
        ),
        (
            "POST",
            "groups",
            r#"{"name": "a/b"}"#,
            400,
            "bad_request",
            "/",
        ),
        (
            "POST",
            "groups",
            r#"{"name": "Leg\u200bacy"}"#,
            400,
            "bad_request",
            "U+200B",
        ),
        (
            "POST",
            "serverlists",
            r#"{"name": "Default\u202e", "servers": ["1:https://mgr1:443"]}"#,
            400,
            "bad_request",
            "U+202E",
        ),
        (
            "POST",
            "groups",
            r#"{"name": "X", "parent": "Nowhere"}"#,
            409,
            "unknown_reference",
            "Nowhere",
        ),
        (
            "PATCH",
            &root_path,
            r#"{"interval": "1.5s"}"#,
            400,
            "bad_request",
            "1.5s",
        ),
        (
            "PATCH",
            &root_path,
            r#"{"interval": "366d"}"#,
            400,
            "bad_request",
            "more than a year",
        ),
        (
            "PATCH",
            &root_path,
            r#"{"randomize": "18446744073709551615s"}"#,
            400,
            "bad_request",
            "randomize",
        ),
        (
            "PATCH",
            &root_path,
            r#"{"mode": "sometimes"}"#,
            400,
            "bad_request",
            "mode",
        ),
        (
            "PATCH",
            &root_path,
            r#"{"server_list": "Missing"}"#,
            409,
            "unknown_reference",
            "Missing",
        ),
        (
            "PATCH",
            &root_path,
            r#"{"inherit": ["interval"]}"#,
            409,
            "conflict",
            "root",
        ),
        ("DELETE", &root_path, "", 409, "in_use", "root"),
        ("GET", "groups/999999", "", 404, "not_found", "999999"),
        (
            "POST",
            "serverlists",
            r#"{"name": "L", "servers": []}"#,
            400,
            "bad_request",
            "",
        ),
        (
            "POST",
            "serverlists",
            r#"{"name": "L", "servers": ["1:ftp://x:21"]}"#,
            400,
            "bad_request",
            "ftp",
        ),
        (
            "DELETE",
            "serverlists/Default",
            "",
            409,
            "in_use",
            "Default",
        ),
        (
            "POST",
            "agents/move",
            r#"{"ids": [], "group": "My Company"}"#,
            400,
            "bad_request",
            "",
        ),
        (
            "POST",
            "agents/move",
            r#"{"ids": ["ghost"], "group": "My Company"}"#,
            409,
            "unknown_reference",
            "ghost",
        ),
        (
            "POST",
            "agents/delete",
            r#"{"ids": ["ghost"]}"#,
            409,
            "unknown_reference",
            "ghost",
        ),
        (
            "POST",
            "agents/delete",
            r#"{"ids": "ghost"}"#,
            400,
            "bad_request",
            "ids",
        ),
        (
            "GET",
            "agents?pending=maybe",
            "",
            400,
            "bad_request",
            "pending",
        ),
        (
            "GET",
            "agents?online=maybe",
            "",
            400,
            "bad_request",
            "online",
        ),
        (
            "GET",
            "agents?tls_max=TLSv9",
            "",
            400,
            "bad_request",
            "TLSv9",
        ),
        ("GET", "agents?colour=red", "", 400, "bad_request", "colour"),
        (
            "POST",
            "tokens",
            r#"{"group": "My Company", "expires": "soon"}"#,
            400,
            "bad_request",
            "soon",
        ),
        (
            "POST",
            "tokens",
            r#"{"group": "Nowhere"}"#,
            409,
            "unknown_reference",
            "Nowhere",
        ),
        (
            "POST",
            "accounts",
            r#"{"name": "a", "password": "short", "role": "admin"}"#,
            400,
            "bad_request",
            "12",
        ),
        (
            "POST",
            "accounts",
            r#"{"name": "a", "password": "long enough pass", "role": "king"}"#,
            400,
            "bad_request",
            "role",
        ),
        (
            "POST",
            "accounts/ghost/password",
            r#"{"password": "long enough pass"}"#,
            404,
            "not_found",
            "ghost",
        ),
        ("DELETE", "accounts/ghost", "", 404, "not_found", "ghost"),
        (
            "GET",
            "audit?since=yesterday",
            "",
            400,
            "bad_request",
            "yesterday",
        ),
        ("GET", "nothing-here", "", 404, "not_found", ""),
    ];
    for (method, path, body, status, code, word) in table {
        let (got, answer) = call(&app, method, path, body).await;
        assert_eq!(got, *status, "{method} {path} {body}: {answer}");
        assert_eq!(
            answer["error"]["code"], *code,
            "{method} {path} {body}: {answer}"
        );
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(word), "{method} {path} {body}: {message}");
    }
    assert_eq!(
        app.store.audit(0, 1000).unwrap().len(),
        audit_before,
        "no refused request was applied or audited"
    );
}
