//! Routing by listener role and the handlers. Thin: check, call, map to a response.
//!
//! - every listener: `GET /healthz`;
//! - console only: `GET /metrics` and the admin API under `/api/v1/` (bearer token);
//! - clients and clients-http only: the agent API under `/agent/v1/`.
//!
//! A path that belongs to another listener's API is answered 404 as if it did not exist.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::config::Role;
use crate::server::{self, Shared};

pub type HttpResponse = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> HttpResponse {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub fn json_response(status: StatusCode, value: &Value) -> HttpResponse {
    respond(status, "application/json", format!("{value}\n"))
}

/// The error shape of every API: a stable code and a sentence.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    json_response(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

fn not_found() -> HttpResponse {
    error_response(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such resource on this listener",
    )
}

fn method_not_allowed(allowed: &'static str) -> HttpResponse {
    let mut response = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("this resource allows {allowed}"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allowed));
    response
}

pub async fn handle(
    shared: &Shared,
    role: Role,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> HttpResponse {
    shared.telemetry.metrics.request(role);
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    tracing::debug!(%method, path, %peer, "request");

    // Refuse an oversized body before reading it; read the rest under the same bound.
    let limit = shared.config.limits.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return too_large(limit);
    }
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => return too_large(limit),
        Err(_) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "bad_body",
                "the request body could not be read",
            )
        }
    };

    if path == "/healthz" {
        return match method {
            Method::GET | Method::HEAD => json_response(
                StatusCode::OK,
                &json!({"status": "ok", "listener": role.name()}),
            ),
            _ => method_not_allowed("GET, HEAD"),
        };
    }
    if role.serves_admin_api() {
        if path == "/metrics" {
            return match method {
                Method::GET => respond(
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    shared.telemetry.metrics.render(),
                ),
                _ => method_not_allowed("GET"),
            };
        }
        if path == "/api/v1" || path.starts_with("/api/v1/") {
            return admin(shared, &method, &path, &parts.headers, &body).await;
        }
    }
    if role.serves_agent_api() && (path == "/agent/v1" || path.starts_with("/agent/v1/")) {
        return agent(shared, role, &method, &path);
    }
    not_found()
}

fn too_large(limit: usize) -> HttpResponse {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        &format!("the request body exceeds {limit} bytes"),
    )
}

fn authorized(shared: &Shared, headers: &hyper::HeaderMap) -> bool {
    let Some(presented) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let expected = shared.admin_token.as_bytes();
    presented.len() == expected.len() && openssl::memcmp::eq(presented.as_bytes(), expected)
}

async fn admin(
    shared: &Shared,
    method: &Method,
    path: &str,
    headers: &hyper::HeaderMap,
    _body: &Bytes,
) -> HttpResponse {
    if !authorized(shared, headers) {
        let mut response = error_response(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this API needs 'Authorization: Bearer TOKEN' (on the server host: the admin.token file of the data dir)",
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    match path {
        "/api/v1/server" => match *method {
            Method::GET => json_response(StatusCode::OK, &server_status(shared)),
            _ => method_not_allowed("GET"),
        },
        "/api/v1/server/reload" => match *method {
            Method::POST => match server::reload(shared).await {
                Ok(findings) => json_response(
                    StatusCode::OK,
                    &json!({"reloaded": true, "findings": findings_json(&findings)}),
                ),
                Err(findings) => json_response(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &json!({
                        "error": {
                            "code": "config_invalid",
                            "message": "the new settings have errors; the old ones keep serving",
                        },
                        "findings": findings_json(&findings),
                    }),
                ),
            },
            _ => method_not_allowed("POST"),
        },
        _ => not_found(),
    }
}

pub fn findings_json(findings: &[crate::listener_tls::Finding]) -> Value {
    json!(findings
        .iter()
        .map(|f| json!({"severity": f.severity.to_string(), "message": f.text}))
        .collect::<Vec<_>>())
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn server_status(shared: &Shared) -> Value {
    let listener = |role: Role| {
        let mut value = json!({"address": shared.config.address(role).to_string(), "tls": null});
        if role.is_tls() {
            let tls = shared.tls.current(role);
            let policy = &tls.policy;
            value["tls"] = json!({
                "file": tls.file.display().to_string(),
                "enabled": policy.protocol.range.versions().map(|v| v.name()).collect::<Vec<_>>(),
                "security_level": policy.forced_security_level(),
            });
        }
        value
    };
    let (reloads_ok, reloads_failed) = shared.telemetry.metrics.reloads();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "started": unix_seconds(shared.started),
        "uptime_seconds": shared.started.elapsed().unwrap_or(Duration::ZERO).as_secs(),
        "data_dir": shared.data.root().display().to_string(),
        "listeners": {
            "console": listener(Role::Console),
            "clients": listener(Role::Clients),
            "clients-http": listener(Role::ClientsHttp),
        },
        "reloads": {"ok": reloads_ok, "failed": reloads_failed},
    })
}

fn agent(shared: &Shared, role: Role, method: &Method, path: &str) -> HttpResponse {
    match path {
        // The server's identity: what an agent pins at enrollment.
        "/agent/v1/hello" => match *method {
            Method::GET => json_response(
                StatusCode::OK,
                &json!({
                    "server": "ward",
                    "version": env!("CARGO_PKG_VERSION"),
                    "listener": role.name(),
                    "signing_key": shared.signing_public_hex,
                }),
            ),
            _ => method_not_allowed("GET"),
        },
        _ => not_found(),
    }
}
