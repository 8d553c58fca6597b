//! ward-proto: the agent <-> server protocol, once, for both sides.
//!
//! - [`messages`]: every `/agent/v1/*` message and the settings package, as serde types
//!   (required fields required, unknown fields ignored), pinned by golden fixtures.
//! - [`duration`]: the one duration codec (`5m`, `1h30m`, `500ms`) of ward.toml, the admin API
//!   and the agent protocol.
//! - [`encoding`]: hex and SHA-256 as the protocol writes them.
//! - [`enroll`]: the token lookup, the enrollment statement and its proof.
//! - [`policy`]: the limits of a policy document, checked by the server and by the agent.
//! - key agreement and message authentication, below.
//!
//! How an agent and a server trust each other's messages, even over plain HTTP:
//!
//! 1. **Key agreement at enrollment.** The agent makes an X25519 key pair and learns the
//!    server's X25519 public key from `/agent/v1/hello` (checked against a pin over plain
//!    HTTP) or a settings package. Both sides compute the shared secret and derive the
//!    per-agent key `K = HMAC-SHA256(secret, "ward agent key v1" || agent public || server
//!    public)` ([`AgentKey::for_agent`], [`AgentKey::for_server`]). `K` never crosses the
//!    wire; the enrollment token does not either: see [`enroll`].
//! 2. **Every request** carries the agent id, a timestamp, a random nonce and
//!    `HMAC(K, "ward-req-v1" || method || path || agent || time || nonce || SHA-256(body))`.
//!    The server refuses an unknown agent, a bad MAC, a time more than [`MAX_SKEW_MS`] away,
//!    and a nonce it has seen within that window (replay).
//! 3. **Every response** carries `HMAC(K, "ward-resp-v1" || request nonce || status ||
//!    SHA-256(body))`: bound to the request, so a network attacker can neither alter it nor
//!    replay an old one.
//!
//! Pure: no sockets. The clock is read in one place, [`now_ms`]; every check takes the time
//! as an argument. OpenSSL supplies X25519, HMAC, SHA-256 and randomness.

mod auth;
pub mod duration;
pub mod encoding;
pub mod enroll;
mod keys;
pub mod messages;
pub mod policy;

pub use auth::{
    sign_request, sign_response, signed_headers, verify_request, verify_response, AuthError,
    ReplayCache, Request, RequestAuth, MAX_SKEW_MS,
};
pub use encoding::{hex, unhex};
pub use keys::{agree, enrollment_proof, AgentKey, KeyPair};

/// Unix time in milliseconds: the one place ward's protocol code reads the clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
