//! HTTP plumbing shared by every API: responses, the error shape and [`ApiError`] (one
//! constructor per source, which fixes the status and the log level), bodies read under a
//! size and a time limit, query strings, and blocking store work off the async threads.
//!
//! Depends on nothing of ward-server but `config`: the agent API, the admin API and harden all
//! build on it, never on each other.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::Value;
use ward_proto::messages::{encode, ErrorBody};
use ward_store::StoreError;

use crate::config::Limits;

pub type HttpResponse = Response<Full<Bytes>>;

pub fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> HttpResponse {
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

/// A typed answer as JSON.
pub fn typed_response<T: serde::Serialize>(status: StatusCode, value: &T) -> HttpResponse {
    match serde_json::to_string(value) {
        Ok(text) => json_text(status, format!("{text}\n")),
        Err(e) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &format!("the answer could not be written: {e}"),
        ),
    }
}

/// The error shape of every API (`ward_proto::messages::ErrorBody`): a stable code and a
/// sentence.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    json_text(status, encode(&ErrorBody::new(code, message)))
}

/// An unsigned 503 `too_busy` with `Retry-After: 5`: what a server over its caps says to a
/// request it cannot verify (an agent takes it as a transport failure, and backs off as it
/// would).
pub fn too_busy(message: &str) -> HttpResponse {
    let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE, "too_busy", message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

pub fn method_not_allowed(allowed: &'static str) -> HttpResponse {
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

/// Where a refusal comes from. It decides the log level: a caller's mistake is not the
/// operator's problem, a store or internal failure is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The admin client (or anyone) sent something wrong: 4xx, not logged above debug.
    Client,
    /// An agent was refused (unsigned, forged, replayed, unknown): 4xx, logged as a warning.
    Agent,
    /// The operator's configuration (conf files, ward.toml) stops the action: logged as a
    /// warning.
    Config,
    /// The database: busy (503, retry) or failing (500, logged as an error).
    Store,
    /// A bug or a failed task: 500, logged as an error.
    Internal,
}

/// A refusal, with the status, a stable code, a sentence and where it came from; a guard's
/// refusal also carries what it refused on (its plan, the findings, the agents).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub source: Source,
    pub detail: Option<Box<Detail>>,
}

/// What a guard's refusal says beside its sentence (ward-api's `Refusal` without the error).
#[derive(Debug, Default)]
pub struct Detail {
    pub plan: Option<ward_api::tls::GuardPlan>,
    pub findings: Option<Vec<ward_api::server::Finding>>,
    pub count: Option<usize>,
    pub agents: Option<Vec<ward_api::tls::AgentLine>>,
}

impl ApiError {
    /// The caller's mistake, with any 4xx status.
    pub fn client(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            source: Source::Client,
            detail: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::client(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::client(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A request body names something that does not exist (a group, a server list, an
    /// agent): 409, so that 404 keeps meaning the path's own resource.
    pub fn unknown_reference(message: impl Into<String>) -> ApiError {
        ApiError::client(StatusCode::CONFLICT, "unknown_reference", message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::client(StatusCode::CONFLICT, code, message)
    }

    /// An agent's request refused.
    pub fn agent(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            source: Source::Agent,
            detail: None,
        }
    }

    /// The operator's configuration stops the action (409: fix the files, then retry).
    pub fn config(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::CONFLICT,
            code,
            message: message.into(),
            source: Source::Config,
            detail: None,
        }
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: message.into(),
            source: Source::Internal,
            detail: None,
        }
    }

    /// 409 `would_cut_off`: a guard refused the change (nothing changed), with its plan.
    pub fn would_cut_off(message: impl Into<String>, plan: ward_api::tls::GuardPlan) -> ApiError {
        ApiError::conflict("would_cut_off", message).with(Detail {
            plan: Some(plan),
            ..Detail::default()
        })
    }

    /// The refusal with what it refused on.
    pub fn with(mut self, detail: Detail) -> ApiError {
        self.detail = Some(Box::new(detail));
        self
    }

    /// Logs the refusal at its source's level.
    pub fn log(&self) {
        let (status, code, message) = (self.status.as_u16(), self.code, &self.message);
        match self.source {
            Source::Client => tracing::debug!(status, code, message, "request refused"),
            Source::Agent => tracing::warn!(status, code, message, "agent request refused"),
            Source::Config => tracing::warn!(status, code, message, "refused by configuration"),
            Source::Store if self.status == StatusCode::SERVICE_UNAVAILABLE => {
                tracing::warn!(code, message, "database busy")
            }
            Source::Store | Source::Internal => {
                tracing::error!(status, code, message, "request failed")
            }
        }
    }

    /// The response, logged once. A busy server says when to retry.
    pub fn response(&self) -> HttpResponse {
        self.log();
        let mut response = match &self.detail {
            None => error_response(self.status, self.code, &self.message),
            Some(detail) => {
                let refusal = ward_api::Refusal {
                    error: ward_api::ErrorDetail {
                        code: self.code.to_string(),
                        message: self.message.clone(),
                    },
                    plan: detail.plan.clone(),
                    findings: detail.findings.clone(),
                    count: detail.count,
                    agents: detail.agents.clone(),
                };
                typed_response(self.status, &refusal)
            }
        };
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
        let (status, code, source) = match &error {
            StoreError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", Source::Client),
            StoreError::Conflict(_) => (StatusCode::CONFLICT, "conflict", Source::Client),
            StoreError::InUse(_) => (StatusCode::CONFLICT, "in_use", Source::Client),
            // Checked against a read another writer changed since: read again and retry.
            StoreError::Stale(_) => (StatusCode::CONFLICT, "stale", Source::Client),
            StoreError::Invalid(_) => (StatusCode::BAD_REQUEST, "bad_request", Source::Client),
            // Locked past the busy timeout: the caller may retry.
            StoreError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy", Source::Store),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal", Source::Store),
        };
        ApiError {
            status,
            code,
            message: error.to_string(),
            source,
            detail: None,
        }
    }
}

pub type ApiResult = Result<HttpResponse, ApiError>;

/// Runs blocking store work off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("task failed: {e}")))?
}

/// Reads a request body under `limit` bytes and the header timeout: a client that announces
/// a body and stalls gets 408, not a connection held open; a longer body gets 413 once
/// `limit` bytes have arrived, never buffered whole.
pub async fn read_body(
    limits: &Limits,
    limit: usize,
    body: Incoming,
) -> Result<Bytes, HttpResponse> {
    let timeout = limits.header_timeout;
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

pub fn too_large(limit: usize) -> HttpResponse {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        &format!("the request body exceeds {limit} bytes"),
    )
}

/// A typed request body (an empty body is `{}`). With `#[serde(deny_unknown_fields)]` a typo
/// is an error, not a no-op. Every refusal is a 400 `bad_request` that names the field (its
/// path, for nested ones): `unknown field `colour``, `missing field `name``, `'port': invalid
/// value: ...`.
pub fn typed<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let body: &[u8] = if body.is_empty() { b"{}" } else { body };
    if !body.trim_ascii_start().starts_with(b"{") {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    // Syntax first, then the shape: a value of the wrong kind is named as such (an enum given
    // `true` is "invalid type: boolean", not "not valid JSON").
    let mut value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?;
    integral_numbers(&mut value);
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || inner.to_string().starts_with("unknown field") {
            ApiError::bad_request(inner.to_string())
        } else {
            ApiError::bad_request(format!("{path}: {inner}"))
        }
    })
}

/// JSON Schema's integers include `5.0` (a number whose fraction is zero), and so does the
/// document: such numbers become integers before the typed read, which would refuse a float
/// for an integer field. A policy document is the admin's own, kept as sent.
fn integral_numbers(value: &mut Value) {
    match value {
        Value::Number(number) if number.is_f64() => {
            let float = number.as_f64().unwrap_or(f64::NAN);
            if float.fract() == 0.0 && float.abs() < 9.0e15 {
                *value = Value::from(float as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        Value::Object(fields) => {
            for (key, field) in fields.iter_mut() {
                if key != "policy" {
                    integral_numbers(field);
                }
            }
        }
        _ => {}
    }
}

pub fn percent_decode(segment: &str) -> String {
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

/// How long ago `since` is, for `?since=1h`.
pub fn since_ms(text: &str) -> Result<i64, ApiError> {
    let duration: Duration = ward_proto::duration::parse(text)
        .map_err(|e| ApiError::bad_request(format!("since: {e}")))?;
    Ok(ward_proto::now_ms() - duration.as_millis().min(i64::MAX as u128) as i64)
}

/// A time as the APIs write it: RFC 3339, UTC.
pub fn time(ms: i64) -> String {
    ward_tls::utc::format_rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
}

/// A connection's place in its address's count of connections not yet proven to be agents
/// (the per-address cap): held from accept, and released once the connection carries a
/// verified check-in, when it counts against its agent instead. Thousands of agents behind one
/// NAT address are then held at once, while unauthenticated connections from one address stay
/// capped.
#[derive(Default)]
pub struct AddressClaim(std::sync::Mutex<Option<Box<dyn Send>>>);

impl AddressClaim {
    pub fn new(guard: impl Send + 'static) -> AddressClaim {
        AddressClaim(std::sync::Mutex::new(Some(Box::new(guard))))
    }

    /// Gives the place back (once; later calls do nothing).
    pub fn release(&self) {
        let guard = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(guard);
    }
}

/// What a TLS connection negotiated, and the generation of the settings it was accepted
/// under.
#[derive(Clone, Copy, Debug)]
pub struct ConnTls {
    pub version: ward_tls::TlsVersion,
    /// The key-exchange group (`None` with RSA key exchange).
    pub group: Option<&'static str>,
    /// The SHA-256 of the ClientHello the client sent.
    pub hello: Option<[u8; 32]>,
    pub generation: u64,
}

/// Whether a connection that negotiated `tls` was accepted under listener settings a reload
/// has replaced since (`generation` is the current one). Plain HTTP has none to outlive.
pub fn outdated(tls: Option<ConnTls>, generation: u64) -> bool {
    tls.is_some_and(|t| t.generation != generation)
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
    }

    /// `5.0` is an integer to JSON Schema and to the typed read; `5.5` is not, and a policy
    /// document keeps its numbers as sent.
    #[test]
    fn integral_floats_read_as_integers() {
        #[derive(serde::Deserialize, Debug)]
        struct Body {
            port: u16,
            policy: Option<Value>,
        }
        let read: Body = typed(&Bytes::from_static(
            br#"{"port":8014.0,"policy":{"a":1.0}}"#,
        ))
        .unwrap();
        assert_eq!(read.port, 8014);
        assert_eq!(read.policy.unwrap()["a"].as_f64(), Some(1.0));
        assert!(read_port(br#"{"port":8014.5}"#).contains("port: invalid type: floating point"));
        assert!(read_port(br#"{"port":70000.0}"#).contains("port: invalid value"));
        fn read_port(body: &'static [u8]) -> String {
            typed::<Body>(&Bytes::from_static(body))
                .unwrap_err()
                .message
        }
    }

    #[test]
    fn store_errors_keep_their_kind() {
        for (error, status) in [
            (StoreError::NotFound("x".into()), StatusCode::NOT_FOUND),
            (StoreError::Conflict("x".into()), StatusCode::CONFLICT),
            (StoreError::InUse("x".into()), StatusCode::CONFLICT),
            (StoreError::Stale("x".into()), StatusCode::CONFLICT),
            (StoreError::Invalid("x".into()), StatusCode::BAD_REQUEST),
            (
                StoreError::Busy("x".into()),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                StoreError::Database("disk I/O error".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ] {
            let api = ApiError::from(error.clone());
            assert_eq!(api.status, status, "{error}");
            let response = api.response();
            assert_eq!(
                response.headers().contains_key(header::RETRY_AFTER),
                status == StatusCode::SERVICE_UNAVAILABLE,
                "{error}"
            );
        }
    }
}
