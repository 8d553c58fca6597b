//! The admin API under `/api/v1/` on the console listener: authentication, routing, and the
//! error shape. Every change goes through [`fleet`], which applies it with its serial bumps
//! and audit entry in one store transaction.

pub mod auth;
pub(crate) mod fleet;
mod openapi;
mod status;
pub(crate) mod wire;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, Method, StatusCode};
use serde_json::{json, Value};
use ward_store::{Session, StoreError};

use crate::http::{error_response, json_response, read_body, HttpResponse};
use crate::server::Shared;
use auth::{Caller, Role};
use hyper::body::Incoming;

pub use fleet::initialise as initialise_fleet;
pub use wire::entry_json;

/// A refusal, with the status, a stable code and a sentence.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
        }
    }

    fn response(&self) -> HttpResponse {
        let mut response = error_response(self.status, self.code, &self.message);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        let (status, code) = match &error {
            StoreError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            StoreError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            StoreError::InUse(_) => (StatusCode::CONFLICT, "in_use"),
            StoreError::Invalid(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            // A database that stays busy past the busy timeout: the caller may retry.
            StoreError::Database(message)
                if message.contains("locked") || message.contains("busy") =>
            {
                (StatusCode::SERVICE_UNAVAILABLE, "busy")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(%error, "store failure");
        }
        ApiError {
            status,
            code,
            message: error.to_string(),
        }
    }
}

pub type ApiResult = Result<HttpResponse, ApiError>;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Parses a JSON object body; anything else is the caller's mistake.
pub fn object(body: &Bytes) -> Result<serde_json::Map<String, Value>, ApiError> {
    if body.is_empty() {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request(
            "the request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::bad_request(format!(
            "the request body is not valid JSON: {e}"
        ))),
    }
}

/// Runs blocking store work off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "internal",
        message: format!("task failed: {e}"),
    })?
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// The caller behind a request's bearer token, if any.
async fn authenticate(shared: &Shared, headers: &HeaderMap) -> Option<Caller> {
    let presented = bearer(headers)?;
    let expected = shared.admin_token.as_bytes();
    if presented.len() == expected.len() && openssl::memcmp::eq(presented.as_bytes(), expected) {
        return Some(Caller {
            name: auth::LOCAL_ADMIN.into(),
            role: Role::Admin,
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
        Ok(store
            .account(&session.account)?
            .map(|account| (account, session)))
    })
    .await
    .ok()??;
    let (account, _) = found;
    Some(Caller {
        role: Role::parse(&account.role)?,
        name: account.name,
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

/// Everything under `/api/v1/`.
pub async fn handle(
    shared: &Shared,
    peer: SocketAddr,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Incoming,
) -> HttpResponse {
    // HEAD is answered as GET; hyper leaves the body out.
    let head_as_get = Method::GET;
    let method = if *method == Method::HEAD {
        &head_as_get
    } else {
        method
    };
    if path == "/api/v1/openapi.json" {
        return match *method {
            Method::GET => json_response(StatusCode::OK, &openapi::document()),
            _ => error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this resource allows GET",
            ),
        };
    }
    if path == "/api/v1/login" && *method == Method::POST {
        let body = match read_body(shared, body).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        return login(shared, peer, &body)
            .await
            .unwrap_or_else(|e| e.response());
    }
    let Some(caller) = authenticate(shared, headers).await else {
        return unauthorized();
    };
    let body = match read_body(shared, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    // A plan is a question, not a change: auditors may ask it.
    let read_only = matches!(*method, Method::GET | Method::HEAD) || path == "/api/v1/tls/plan";
    if !read_only && caller.role != Role::Admin {
        return error_response(
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!("{} is an auditor: read-only", caller.name),
        );
    }
    let segments: Vec<String> = path
        .trim_start_matches("/api/v1")
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (segments.as_slice(), method) {
        (["server"], &Method::GET) => {
            return json_response(StatusCode::OK, &status::server_status(shared))
        }
        (["server", "reload"], &Method::POST) => return status::reload(shared, &caller).await,
        (["server"], _) | (["server", "reload"], _) => {
            return error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "GET /server, POST /server/reload",
            )
        }
        _ => {}
    }
    if let Some(result) = crate::harden::route(
        shared,
        &caller,
        method,
        &segments,
        query.unwrap_or(""),
        &body,
    )
    .await
    {
        return result.unwrap_or_else(|e| e.response());
    }
    let request = fleet::Request {
        shared,
        caller: &caller,
        method,
        segments: &segments,
        query: query.unwrap_or(""),
        body: &body,
    };
    let writes = !read_only;
    match fleet::route(request).await {
        Some(Ok(response)) => {
            // A new fleet version: the cached settings may be stale (push agents are woken
            // by the store, for the changes that concern them).
            if writes && response.status().is_success() {
                shared.fleet_version.send_modify(|v| *v += 1);
            }
            response
        }
        Some(Err(error)) => error.response(),
        None => error_response(StatusCode::NOT_FOUND, "not_found", "no such resource"),
    }
}

async fn login(shared: &Shared, peer: SocketAddr, body: &Bytes) -> ApiResult {
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
    if user.chars().count() > crate::admin::auth::MAX_USER_CHARS {
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
            "too many failed logins for this account or from this address; wait and retry",
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
        // Verify against a dummy hash for unknown accounts too, so timing does not tell them.
        let hash = account
            .as_ref()
            .map(|a| a.password_hash.clone())
            .unwrap_or_else(|| DUMMY_HASH.to_string());
        Ok(account.filter(|_| auth::verify_password(&password, &hash)))
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
        return Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "invalid_login",
            message: "invalid user or password".into(),
        });
    };
    let (token, hash) = auth::new_token();
    let expires_ms = now_ms() + auth::SESSION_LIFETIME.as_millis() as i64;
    let store = shared.store.clone();
    let session = Session {
        token_sha256: hash,
        account: account.name.clone(),
        expires_ms,
    };
    blocking(move || Ok(store.create_session(&session)?)).await?;
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

/// An argon2id hash of a random password, verified against when the account does not exist.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0Bi4EuvQbUc9L+MwYXv4D4HxU8LCbxJSP6c9o9NqkPc";

fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' && index + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(high), Some(low)) = (hex(bytes[index + 1]), hex(bytes[index + 2])) {
                out.push((high * 16 + low) as u8);
                index += 3;
                continue;
            }
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query parameters, decoded (`+` is a space).
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode(&key.replace('+', " ")),
                percent_decode(&value.replace('+', " ")),
            )
        })
        .collect()
}

/// How long ago `since` is, for `?since=1h`.
pub fn since_ms(text: &str) -> Result<i64, ApiError> {
    let duration: Duration = crate::config::parse_duration(text)
        .map_err(|e| ApiError::bad_request(format!("since: {e}")))?;
    Ok(now_ms() - duration.as_millis().min(i64::MAX as u128) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("Legacy%20XP"), "Legacy XP");
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("bad%zz%"), "bad%zz%");
        assert_eq!(percent_decode("%e3%82%b5"), "サ");
        assert_eq!(
            percent_decode("%éé"),
            "%éé",
            "no panic inside a UTF-8 character"
        );
        assert_eq!(
            query_pairs("group=My+Company%2FLegacy&pending=true&x"),
            vec![
                ("group".to_string(), "My Company/Legacy".to_string()),
                ("pending".to_string(), "true".to_string()),
                ("x".to_string(), String::new()),
            ]
        );
    }

    #[test]
    fn the_dummy_hash_parses() {
        assert!(!auth::verify_password("anything", DUMMY_HASH));
        assert!(argon2::password_hash::PasswordHash::new(DUMMY_HASH).is_ok());
    }
}
