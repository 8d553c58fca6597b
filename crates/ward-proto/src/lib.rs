//! ward-proto: how an agent and a server trust each other's messages, even over plain HTTP.
//!
//! The construction (written down in ARCHITECTURE.md):
//!
//! 1. **Key agreement at enrollment.** The agent makes an X25519 key pair and learns the
//!    server's X25519 public key from its settings (pinned). Both sides compute the shared
//!    secret and derive the per-agent key `K = HMAC-SHA256(secret, "ward agent key v1" ||
//!    agent public || server public)`. `K` never crosses the wire; the enrollment token does
//!    not either: the agent proves it with `HMAC(K, "ward enroll v1" || token)`.
//! 2. **Every request** carries the agent id, a timestamp, a random nonce and
//!    `HMAC(K, "ward-req-v1" || method || path || agent || time || nonce || SHA-256(body))`.
//!    The server refuses an unknown agent, a bad MAC, a time more than [`MAX_SKEW_MS`] away,
//!    and a nonce it has seen within that window (replay).
//! 3. **Every response** carries `HMAC(K, "ward-resp-v1" || request nonce || status ||
//!    SHA-256(body))`: bound to the request, so a network attacker can neither alter it nor
//!    replay an old one.
//!
//! Pure: no sockets, no clock (times are arguments). OpenSSL supplies X25519, HMAC, SHA-256
//! and randomness.

mod auth;
mod keys;

pub use auth::{
    sign_request, sign_response, verify_request, verify_response, AuthError, ReplayCache, Request,
    RequestAuth, MAX_SKEW_MS,
};
pub use keys::{agree, enrollment_proof, AgentKey, KeyPair};
