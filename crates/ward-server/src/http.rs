//! Routing by listener role and the handlers. Thin: check, call, map to a response.
//!
//! - every listener: `GET /healthz`;
//! - console only: `GET /metrics` and the admin API under `/api/v1/` (bearer token);
//! - clients and clients-http only: the agent API under `/agent/v1/`.
//!
//! A path that belongs to another listener's API is answered 404 as if it did not exist.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::admin;
use crate::config::Role;
use crate::server::Shared;

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
    json_text(status, format!("{value}\n"))
}

/// A JSON response from text already serialised (the agent API signs these exact bytes).
pub fn json_text(status: StatusCode, text: String) -> HttpResponse {
    respond(status, "application/json", text)
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

/// What a TLS connection negotiated, and the generation of the settings it was accepted
/// under.
#[derive(Clone, Copy, Debug)]
pub struct Tls {
    pub version: ward_tls::TlsVersion,
    pub generation: u64,
}

pub async fn handle(
    shared: &Shared,
    role: Role,
    tls: Option<Tls>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> HttpResponse {
    shared.telemetry.metrics.request(role);
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    tracing::debug!(%method, path, %peer, "request");

    // Refuse a body announced as too large before anything else. A body is only read by the
    // handlers that use one, after authentication, under the size limit and a time limit.
    let limit = shared.config.limits.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return too_large(limit);
    }

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
            let (parts, body) = request.into_parts();
            return admin::handle(
                shared,
                peer,
                &parts.method,
                &path,
                parts.uri.query(),
                &parts.headers,
                body,
            )
            .await;
        }
    }
    if role.serves_agent_api() && (path == "/agent/v1/enroll" || path == "/agent/v1/checkin") {
        if method != Method::POST {
            return method_not_allowed("POST");
        }
        let (parts, body) = request.into_parts();
        let body = match read_body(shared, body).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        return if path == "/agent/v1/enroll" {
            crate::agent_api::enroll(shared, role, body).await
        } else {
            crate::agent_api::checkin(shared, role, peer, tls, &path, &parts.headers, body).await
        };
    }
    if role.serves_agent_api() && (path == "/agent/v1" || path.starts_with("/agent/v1/")) {
        return agent(shared, role, &method, &path);
    }
    not_found()
}

/// Reads a request body under the size limit and the header timeout: a client that announces
/// a body and stalls gets 408, not a connection held open.
pub async fn read_body(shared: &Shared, body: Incoming) -> Result<Bytes, HttpResponse> {
    let limit = shared.config.limits.max_body_bytes;
    let timeout = shared.config.limits.header_timeout;
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => Err(too_large(limit)),
        Ok(Err(_)) => Err(error_response(
            StatusCode::BAD_REQUEST,
            "bad_body",
            "the request body could not be read",
        )),
        Err(_) => Err(error_response(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            &format!(
                "the request body did not arrive within {}s",
                timeout.as_secs()
            ),
        )),
    }
}

fn too_large(limit: usize) -> HttpResponse {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        &format!("the request body exceeds {limit} bytes"),
    )
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
                    "agreement_key": crate::agent_api::hex(&shared.agreement_public),
                    "agreement_key_sha256": crate::agent_api::hex(&openssl::sha::sha256(&shared.agreement_public)),
                }),
            ),
            _ => method_not_allowed("GET"),
        },
        _ => not_found(),
    }
}
