//! The admin API under `/api/v1/` on the console listener: the gate ([`authorize`]: login,
//! authentication, auditors read only) and the routes for the server and the fleet. Every
//! change goes through [`fleet`], which applies it with its serial bumps and audit entry in
//! one store transaction. Harden's routes (`/api/v1/tls/`) live in `crate::harden`, behind
//! the same gate; neither module imports the other.

mod agreement;
mod ca;
pub(crate) mod fleet;
pub mod openapi;
mod status;
pub(crate) mod wire;

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, Method, StatusCode};
use serde_json::{json, Value};
use ward_proto::now_ms;
use ward_store::Session;

use crate::api::{
    blocking, error_response, json_response, method_not_allowed, object, percent_decode, read_body,
    ApiError, ApiResult, HttpResponse,
};
use crate::auth::{self, Caller, Role};
use crate::state::App;

pub use wire::entry_json;

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// The caller behind a request's bearer token, if any.
async fn authenticate(shared: &App, headers: &HeaderMap) -> Option<Caller> {
    let presented = bearer(headers)?;
    let expected = shared.admin_token.as_bytes();
    if presented.len() == expected.len() && openssl::memcmp::eq(presented.as_bytes(), expected) {
        return Some(Caller {
            name: auth::LOCAL_ADMIN.into(),
            role: Role::Admin,
            session: None,
        });
    }
    let hash = auth::sha256_hex(presented);
    let store = shared.store.clone();
    let found = blocking(move || {
        let Some(session) = store.session(&hash)? else {
            return Ok(None);
        };
        if session.expires_ms <= now_ms() {
            return Ok(None);
        }
        // A disabled account's sessions are ended when it is disabled; checked here too.
        Ok(store
            .account(&session.account)?
            .filter(|account| !account.disabled)
            .map(|account| (account, session)))
    })
    .await
    .ok()??;
    let (account, session) = found;
    Some(Caller {
        role: Role::parse(&account.role)?,
        name: account.name,
        session: Some(session.token_sha256),
    })
}

fn unauthorized() -> HttpResponse {
    let mut response = error_response(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "this API needs 'Authorization: Bearer TOKEN': log in with POST /api/v1/login, or on the \
         server host use the admin.token file of the data dir",
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// An authenticated admin request, ready for its route (here, or harden's).
pub struct Authorized {
    pub caller: Caller,
    pub method: Method,
    /// The path below `/api/v1/`, split and percent-decoded.
    pub segments: Vec<String>,
    pub query: String,
    pub body: Bytes,
}

impl Authorized {
    pub fn segments(&self) -> Vec<&str> {
        self.segments.iter().map(String::as_str).collect()
    }
}

/// The gate of `/api/v1/`: answers what needs no caller (the API's description, login) and
/// refuses the unauthenticated and auditors' writes; anything else comes back authorized.
pub async fn authorize(
    shared: &App,
    peer: SocketAddr,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Authorized, HttpResponse> {
    // HEAD is answered as GET; hyper leaves the body out.
    let method = if *method == Method::HEAD {
        Method::GET
    } else {
        method.clone()
    };
    if path == "/api/v1/openapi.json" {
        return Err(match method {
            Method::GET => json_response(StatusCode::OK, &openapi::document()),
            _ => method_not_allowed("GET"),
        });
    }
    if path == "/api/v1/login" && method == Method::POST {
        let body = read_body(
            &shared.config.limits,
            shared.config.limits.max_body_bytes,
            body,
        )
        .await?;
        return Err(login(shared, peer, &body)
            .await
            .unwrap_or_else(|e| e.response()));
    }
    let Some(caller) = authenticate(shared, headers).await else {
        return Err(unauthorized());
    };
    let body = read_body(
        &shared.config.limits,
        shared.config.limits.max_body_bytes,
        body,
    )
    .await?;
    // A plan is a question, not a change: auditors may ask it.
    // A logout ends the caller's own session: anyone may.
    let read_only =
        method == Method::GET || path == "/api/v1/tls/plan" || path == "/api/v1/session";
    if !read_only && caller.role != Role::Admin {
        return Err(error_response(
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!("{} is an auditor: read-only", caller.name),
        ));
    }
    let mut segments: Vec<String> = path
        .trim_start_matches("/api/v1")
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    // One word for one thing: the seed's "clients" are ward's agents. `/clients` stays as an
    // alias of `/agents` for scripts written against the first release.
    if segments.first().map(String::as_str) == Some("clients") {
        segments[0] = "agents".into();
    }
    Ok(Authorized {
        caller,
        method,
        segments,
        query: query.unwrap_or("").to_string(),
        body,
    })
}

/// The admin API's own routes: the server, and the fleet.
pub async fn route(shared: &App, request: &Authorized) -> HttpResponse {
    let segments = request.segments();
    let method = &request.method;
    match (segments.as_slice(), method) {
        (["server"], &Method::GET) => {
            return json_response(StatusCode::OK, &status::server_status(shared))
        }
        (["server", "reload"], &Method::POST) => {
            return status::reload(shared, &request.caller, &request.body).await
        }
        (["server", "ca"], &Method::GET) => return ca::status(shared).await,
        (["server", "ca", "rotate"], &Method::POST) => {
            return ca::rotate(shared, &request.caller).await
        }
        (["server", "ca", "switch"], &Method::POST) => {
            return ca::switch(shared, &request.caller, &request.body).await
        }
        (["server", "agreement-key"], &Method::GET) => return agreement::status(shared).await,
        (["server", "agreement-key", "rotate"], &Method::POST) => {
            return agreement::rotate(shared, &request.caller).await
        }
        (["server", "agreement-key", "switch"], &Method::POST) => {
            return agreement::switch(shared, &request.caller, &request.body).await
        }
        (["server", "ca", "abort"], &Method::POST) => {
            return ca::abort(shared, &request.caller, &request.body).await
        }
        (["server", "agreement-key", "abort"], &Method::POST) => {
            return agreement::abort(shared, &request.caller, &request.body).await
        }
        (["server", "certificates", "renew"], &Method::POST) => {
            return status::renew(shared, &request.caller, &request.body).await
        }
        (["server"], _)
        | (["server", "reload"], _)
        | (["server", "certificates", "renew"], _)
        | (["server", "ca" | "agreement-key"], _)
        | (["server", "ca" | "agreement-key", "rotate" | "switch" | "abort"], _) => {
            return error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "GET /server, POST /server/reload, POST /server/certificates/renew, GET \
                 /server/ca and /server/agreement-key, POST /server/ca/rotate, \
                 /server/ca/switch, /server/ca/abort, /server/agreement-key/rotate, \
                 /server/agreement-key/switch and /server/agreement-key/abort",
            )
        }
        _ => {}
    }
    let fleet_request = fleet::Request {
        shared,
        caller: &request.caller,
        method,
        segments: &segments,
        query: &request.query,
        body: &request.body,
    };
    match fleet::route(fleet_request).await {
        Some(Ok(response)) => {
            if *method != Method::GET && response.status().is_success() {
                shared.fleet_changed();
            }
            response
        }
        Some(Err(error)) => error.response(),
        None => error_response(StatusCode::NOT_FOUND, "not_found", "no such resource"),
    }
}

async fn login(shared: &App, peer: SocketAddr, body: &Bytes) -> ApiResult {
    let body = object(body)?;
    let user = body
        .get("user")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("'user' (a string) is required"))?
        .to_string();
    let password = body
        .get("password")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("'password' (a string) is required"))?
        .to_string();
    if user.chars().count() > crate::auth::MAX_USER_CHARS {
        return Err(ApiError::bad_request("'user' is too long"));
    }
    let begun = shared
        .login_limiter
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .begin(&user, peer.ip(), Instant::now());
    if let Err(wait) = begun {
        let mut response = error_response(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_failures",
            "too many failed logins for this account from this address (or from this address); \
             wait as Retry-After says, each further failure doubles the wait",
        );
        let seconds = wait.as_secs().max(1).to_string();
        if let Ok(value) = HeaderValue::from_str(&seconds) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return Ok(response);
    }
    // Few password checks at once: each takes argon2's memory and a blocking thread.
    let permit = shared.argon2_permits.acquire().await;
    let store = shared.store.clone();
    let account_name = user.clone();
    let verified = blocking(move || {
        let account = store.account(&account_name)?;
        Ok(checked_login(account, &password, auth::verify_password))
    })
    .await;
    drop(permit);
    let finish = |failed: bool| {
        shared
            .login_limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .finish(&user, peer.ip(), Instant::now(), failed);
    };
    let verified = match verified {
        Ok(verified) => verified,
        Err(error) => {
            finish(false);
            return Err(error);
        }
    };
    finish(verified.is_none());
    let Some(account) = verified else {
        tracing::warn!(user, %peer, "failed login");
        return Err(ApiError::client(
            StatusCode::UNAUTHORIZED,
            "invalid_login",
            "invalid user or password",
        ));
    };
    if account.disabled {
        // Said only to who knows the password: the account exists, and is disabled.
        return Err(ApiError::client(
            StatusCode::FORBIDDEN,
            "account_disabled",
            format!(
                "account '{}' is disabled; an admin can enable it",
                account.name
            ),
        ));
    }
    let (token, hash) = auth::new_token();
    let expires_ms = now_ms() + auth::SESSION_LIFETIME.as_millis() as i64;
    let store = shared.store.clone();
    let session = Session {
        token_sha256: hash,
        account: account.name.clone(),
        expires_ms,
    };
    // Only if no password change, disable or revoke came in since the password was checked.
    let checked_against = account.credential_version;
    match blocking(move || Ok(store.create_session(&session, checked_against))).await? {
        Ok(()) => {}
        Err(ward_store::StoreError::Conflict(_)) => {
            tracing::warn!(user, %peer, "login raced a credential change: no session");
            return Err(ApiError::client(
                StatusCode::UNAUTHORIZED,
                "invalid_login",
                "invalid user or password",
            ));
        }
        Err(error) => return Err(error.into()),
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "token": token,
            "user": account.name,
            "role": account.role,
            "expires": wire::time(expires_ms),
        }),
    ))
}

/// The account `password` opens, if any. An unknown account costs one password check too,
/// against [`DUMMY_HASH`], exactly as a known one does: timing does not tell which names exist.
fn checked_login(
    account: Option<ward_store::Account>,
    password: &str,
    verify: impl Fn(&str, &str) -> bool,
) -> Option<ward_store::Account> {
    let hash = account
        .as_ref()
        .map_or(DUMMY_HASH, |a| a.password_hash.as_str());
    let matches = verify(password, hash);
    account.filter(|_| matches)
}

/// An argon2id hash of a random password, verified against when the account does not exist.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0Bi4EuvQbUc9L+MwYXv4D4HxU8LCbxJSP6c9o9NqkPc";

#[cfg(test)]
mod tests;
