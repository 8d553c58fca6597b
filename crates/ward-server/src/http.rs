//! Routing by listener role and the handlers. Thin: check, call, map to a response.
//!
//! - every listener: `GET /healthz`;
//! - console only: `GET /metrics` and the admin API under `/api/v1/` (bearer token);
//! - clients and clients-http only: the agent API under `/agent/v1/`.
//!
//! A path that belongs to another listener's API is answered 404 as if it did not exist.

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::header;
use hyper::{Method, Request, StatusCode};
use serde_json::json;
use ward_proto::messages::{encode, Hello, CHECKIN_PATH, ENROLL_PATH, HELLO_PATH};

use crate::api::{
    error_response, json_response, json_text, method_not_allowed, read_body, respond, too_large,
    ConnTls, HttpResponse,
};
use crate::config::Role;
use crate::state::App;
use crate::{admin, agent_api};

fn not_found() -> HttpResponse {
    error_response(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such resource on this listener",
    )
}

pub async fn handle(
    shared: &App,
    role: Role,
    tls: Option<ConnTls>,
    peer: SocketAddr,
    claim: &crate::api::AddressClaim,
    request: Request<Incoming>,
) -> HttpResponse {
    shared.telemetry.metrics.request(role);
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    tracing::debug!(%method, path, %peer, "request");

    // Refuse a body announced as too large before anything else. A body is only read by the
    // handlers that use one, under its route's size limit and a time limit: the admin API's
    // after authentication, the agent API's (small) before the MAC can be checked.
    let limit = body_limit(&shared.config.limits, role, &path);
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
                Method::GET => {
                    let mut text = shared.telemetry.metrics.render();
                    text.push_str(&format!(
                        "# HELP ward_push_held_agents Push agents whose check-in is held open now.\n\
                         # TYPE ward_push_held_agents gauge\n\
                         ward_push_held_agents {}\n",
                        shared.held.count()
                    ));
                    if let Some(bytes) = ward_tls::ffi::allocated_bytes() {
                        text.push_str(&format!(
                            "# HELP ward_tls_library_bytes Memory the TLS library (OpenSSL) holds now: contexts, sessions and each connection's state.\n\
                             # TYPE ward_tls_library_bytes gauge\n\
                             ward_tls_library_bytes {bytes}\n"
                        ));
                    }
                    text.push_str(&certificate_metrics(shared));
                    respond(StatusCode::OK, "text/plain; version=0.0.4", text)
                }
                _ => method_not_allowed("GET"),
            };
        }
        if path == "/api/v1" || path.starts_with("/api/v1/") {
            return admin_api(shared, peer, &path, request).await;
        }
        // The web console has every other path, but never the agent API's: those stay 404
        // here, as if they did not exist.
        let agent_path = path == "/agent" || path.starts_with("/agent/");
        if let Some(web) = shared.web.get().filter(|_| !agent_path) {
            return web.serve(shared, peer, request).await;
        }
    }
    if role.serves_agent_api() && (path == ENROLL_PATH || path == CHECKIN_PATH) {
        if method != Method::POST {
            return method_not_allowed("POST");
        }
        let (parts, body) = request.into_parts();
        let body = match read_body(&shared.config.limits, limit, body).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        return if path == ENROLL_PATH {
            agent_api::enroll(shared, role, body).await
        } else {
            agent_api::checkin(shared, role, peer, tls, claim, &parts.headers, body).await
        };
    }
    if role.serves_agent_api() && (path == "/agent/v1" || path.starts_with("/agent/v1/")) {
        return agent(shared, role, &method, &path);
    }
    not_found()
}

/// The one request of a connection beyond an agent listener's caps: a check-in is shed with
/// a signed 503 (`agent_api::shed`), anything else gets the plain 503 `message`.
pub async fn shed(
    shared: &App,
    role: Role,
    request: Request<Incoming>,
    message: &str,
) -> HttpResponse {
    let limit = shared.config.limits.checkin_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if role.serves_agent_api()
        && request.method() == Method::POST
        && request.uri().path() == CHECKIN_PATH
        && declared.is_some_and(|length| length <= limit as u64)
    {
        let (parts, body) = request.into_parts();
        if let Ok(body) = read_body(&shared.config.limits, limit, body).await {
            return agent_api::shed(shared, role, &parts.headers, body, message).await;
        }
    }
    crate::api::too_busy(message)
}

/// The admin API (the console listener only).
async fn admin_api(
    shared: &App,
    peer: SocketAddr,
    path: &str,
    request: Request<Incoming>,
) -> HttpResponse {
    let (parts, body) = request.into_parts();
    admin::serve(
        shared,
        peer,
        &parts.method,
        path,
        parts.uri.query(),
        &parts.headers,
        body,
    )
    .await
}

/// Seconds until each listener's certificates expire, for alerting.
fn certificate_metrics(shared: &App) -> String {
    let mut text = String::from(
        "# HELP ward_tls_certificate_expiry_seconds Seconds until the certificate expires \
         (negative: expired).\n# TYPE ward_tls_certificate_expiry_seconds gauge\n",
    );
    for role in [Role::Console, Role::Clients] {
        let tls = shared.tls.current(role);
        for (file, seconds) in
            crate::listener_tls::certificate_expiry(&tls.policy, shared.data.root())
        {
            let file = file.replace('\\', "\\\\").replace('"', "\\\"");
            text.push_str(&format!(
                "ward_tls_certificate_expiry_seconds{{listener=\"{}\",file=\"{file}\"}} {seconds}\n",
                role.name()
            ));
        }
    }
    text
}

/// The largest body `path` on `role` reads.
fn body_limit(limits: &crate::config::Limits, role: Role, path: &str) -> usize {
    match path {
        ENROLL_PATH if role.serves_agent_api() => limits.enroll_body_bytes,
        CHECKIN_PATH if role.serves_agent_api() => limits.checkin_body_bytes,
        _ => limits.max_body_bytes,
    }
}

fn agent(shared: &App, role: Role, method: &Method, path: &str) -> HttpResponse {
    match path {
        // The server's identity: what an agent pins at enrollment.
        HELLO_PATH => match *method {
            Method::GET => {
                let agreement = shared.agreement();
                let hello = Hello {
                    server: "ward".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    listener: role.name().into(),
                    agreement_key: ward_proto::hex(&agreement.current.public),
                    agreement_key_sha256: agreement.current.sha256.to_string(),
                };
                json_text(StatusCode::OK, encode(&hello))
            }
            _ => method_not_allowed("GET"),
        },
        _ => not_found(),
    }
}
