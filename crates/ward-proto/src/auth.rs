//! Request and response authentication with the per-agent key.

use std::collections::{HashMap, VecDeque};
use std::fmt;

use crate::encoding::hex;
use crate::keys::{hmac, AgentKey};

/// How far a request's time may be from the server's clock, either way. Also how long a nonce
/// is remembered: an older request is refused for its time, so its nonce need not be kept.
pub const MAX_SKEW_MS: i64 = 5 * 60 * 1000;

/// What a request carries besides its MAC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestAuth {
    pub agent: String,
    /// Unix milliseconds when the agent sent it.
    pub time_ms: i64,
    /// 16 random bytes, hex.
    pub nonce: String,
}

impl RequestAuth {
    /// A fresh nonce for a request sent at `time_ms`.
    pub fn new(agent: &str, time_ms: i64) -> RequestAuth {
        let mut nonce = [0u8; 16];
        openssl::rand::rand_bytes(&mut nonce).expect("the system has randomness");
        RequestAuth {
            agent: agent.to_string(),
            time_ms,
            nonce: hex(&nonce),
        }
    }
}

fn body_hash(body: &[u8]) -> [u8; 32] {
    crate::encoding::sha256(body)
}

/// Why a message was refused. `Display` is the reason the server logs and answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthError {
    BadMac,
    /// The request's time is too far from the server's clock.
    Stale {
        skew_ms: i64,
    },
    Replayed,
    MalformedNonce,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::BadMac => f.write_str("the message authentication code does not match"),
            AuthError::Stale { skew_ms } => write!(
                f,
                "the request time is {} s from the server's clock (at most {} s allowed)",
                skew_ms / 1000,
                MAX_SKEW_MS / 1000
            ),
            AuthError::Replayed => f.write_str("this request was already received (replay)"),
            AuthError::MalformedNonce => f.write_str("the nonce is not 32 hex digits"),
        }
    }
}

impl std::error::Error for AuthError {}

/// The parts of a request that its MAC covers.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub auth: &'a RequestAuth,
    pub body: &'a [u8],
}

fn request_mac(key: &AgentKey, request: &Request<'_>) -> [u8; 32] {
    let auth = request.auth;
    hmac(
        key.as_bytes(),
        &[
            b"ward-req-v1",
            request.method.as_bytes(),
            request.path.as_bytes(),
            auth.agent.as_bytes(),
            &auth.time_ms.to_be_bytes(),
            auth.nonce.as_bytes(),
            &body_hash(request.body),
        ],
    )
}

/// A request signed by `agent` at `time_ms` with a fresh nonce: its authentication headers
/// (`X-Ward-Agent`, `X-Ward-Time`, `X-Ward-Nonce`, `X-Ward-Mac`) and the nonce its answer
/// must be bound to.
pub fn signed_headers(
    key: &AgentKey,
    agent: &str,
    method: &str,
    path: &str,
    body: &[u8],
    time_ms: i64,
) -> (Vec<(&'static str, String)>, String) {
    use crate::messages::header;
    let auth = RequestAuth::new(agent, time_ms);
    let mac = sign_request(
        key,
        &Request {
            method,
            path,
            auth: &auth,
            body,
        },
    );
    let headers = vec![
        (header::AGENT, auth.agent),
        (header::TIME, time_ms.to_string()),
        (header::NONCE, auth.nonce.clone()),
        (header::MAC, mac),
    ];
    (headers, auth.nonce)
}

/// The MAC an agent puts on a request (hex).
pub fn sign_request(key: &AgentKey, request: &Request<'_>) -> String {
    hex(&request_mac(key, request))
}

fn mac_matches(expected: &[u8; 32], presented_hex: &str) -> bool {
    let expected = hex(expected);
    expected.len() == presented_hex.len()
        && openssl::memcmp::eq(expected.as_bytes(), presented_hex.as_bytes())
}

/// Nonces seen recently, per agent, so a replayed request is refused.
#[derive(Default)]
pub struct ReplayCache {
    seen: HashMap<String, VecDeque<(i64, String)>>,
}

impl ReplayCache {
    /// Remembers `nonce` of `agent`, seen at `at_ms`: a restarted server reloads the window it
    /// kept, so a request captured before the restart is still refused.
    pub fn remember(&mut self, agent: &str, nonce: &str, at_ms: i64) {
        let list = self.seen.entry(agent.to_string()).or_default();
        if !list.iter().any(|(_, n)| n == nonce) {
            list.push_back((at_ms, nonce.to_string()));
        }
    }

    /// Records `nonce` under `key` (an agent id, or an enrolling key); false when it was seen
    /// within the window.
    pub fn check_and_remember(&mut self, agent: &str, nonce: &str, now_ms: i64) -> bool {
        let list = self.seen.entry(agent.to_string()).or_default();
        while list
            .front()
            .is_some_and(|(at, _)| now_ms - at > 2 * MAX_SKEW_MS)
        {
            list.pop_front();
        }
        if list.iter().any(|(_, n)| n == nonce) {
            return false;
        }
        list.push_back((now_ms, nonce.to_string()));
        true
    }
}

/// Checks a request the server received at `now_ms`. The MAC is checked first, so nothing is
/// remembered for a forged request.
pub fn verify_request(
    key: &AgentKey,
    request: &Request<'_>,
    mac_hex: &str,
    now_ms: i64,
    replay: &mut ReplayCache,
) -> Result<(), AuthError> {
    let auth = request.auth;
    if auth.nonce.len() != 32 || !auth.nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AuthError::MalformedNonce);
    }
    if !mac_matches(&request_mac(key, request), mac_hex) {
        return Err(AuthError::BadMac);
    }
    // The time is the sender's: any i64, so no plain subtraction (it overflows).
    let skew_ms = now_ms.saturating_sub(auth.time_ms);
    if skew_ms.unsigned_abs() > MAX_SKEW_MS.unsigned_abs() {
        return Err(AuthError::Stale { skew_ms });
    }
    if !replay.check_and_remember(&auth.agent, &auth.nonce, now_ms) {
        return Err(AuthError::Replayed);
    }
    Ok(())
}

fn response_mac(key: &AgentKey, request_nonce: &str, status: u16, body: &[u8]) -> [u8; 32] {
    hmac(
        key.as_bytes(),
        &[
            b"ward-resp-v1",
            request_nonce.as_bytes(),
            &status.to_be_bytes(),
            &body_hash(body),
        ],
    )
}

/// The MAC a server puts on its response to the request with `request_nonce` (hex).
pub fn sign_response(key: &AgentKey, request_nonce: &str, status: u16, body: &[u8]) -> String {
    hex(&response_mac(key, request_nonce, status, body))
}

/// Checks a response against the request the agent sent.
pub fn verify_response(
    key: &AgentKey,
    request_nonce: &str,
    status: u16,
    body: &[u8],
    mac_hex: &str,
) -> Result<(), AuthError> {
    if mac_matches(&response_mac(key, request_nonce, status, body), mac_hex) {
        Ok(())
    } else {
        Err(AuthError::BadMac)
    }
}

#[cfg(test)]
mod tests;
