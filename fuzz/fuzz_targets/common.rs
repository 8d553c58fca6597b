//! What several targets share: the message round trip, the fixed keys and nonce, and the
//! answer as the agent's transport hands it over. Each target includes it with `#[path]`.
#![allow(dead_code)]

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;
use ward_agent::transport::Exchange;
use ward_proto::messages::{decode, encode, header};
use ward_proto::{sign_response, AgentKey};

/// The per-agent key the seeds were signed with (`examples/seeds.rs`).
pub const KEY: [u8; 32] = [0x5a; 32];
/// Any other key: nothing signed with [`KEY`] may pass under it.
pub const OTHER_KEY: [u8; 32] = [0xa5; 32];
/// The nonce of the request an answer is bound to.
pub const NONCE: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
/// The server's clock when the seeds' requests arrive (2025-12-02).
pub const NOW_MS: i64 = 1_764_700_000_000;
/// The server the agent asked.
pub const SERVER: &str = "http://mgr1:8014";

pub fn key() -> AgentKey {
    AgentKey::from_bytes(KEY)
}

pub fn other_key() -> AgentKey {
    AgentKey::from_bytes(OTHER_KEY)
}

/// Reads `bytes` as `T` the way both sides do; when that works, what ward writes back must
/// read as the same message, and writing it again must give the same bytes (the bytes a MAC
/// covers).
pub fn round_trip<T>(what: &'static str, bytes: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let message: T = decode(what, bytes).ok()?;
    check_round_trip(what, &message);
    Some(message)
}

/// [`round_trip`] for a message already read.
pub fn check_round_trip<T>(what: &'static str, message: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let written = encode(message);
    let again: T = decode(what, written.as_bytes())
        .unwrap_or_else(|e| panic!("{what}: ward refuses what it wrote: {e}\n{written}"));
    assert_eq!(
        &again, message,
        "{what}: a round trip changed the message\n{written}"
    );
    assert_eq!(
        encode(&again),
        written,
        "{what}: writing the message again gives other bytes"
    );
}

/// `exchange` with its `X-Ward-Mac` headers replaced by `mac` (or removed).
pub fn with_mac(exchange: &Exchange, mac: Option<String>) -> Exchange {
    let mut headers: Vec<(String, String)> = exchange
        .headers
        .iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case(header::MAC))
        .cloned()
        .collect();
    if let Some(mac) = mac {
        headers.push((header::MAC.to_string(), mac));
    }
    Exchange {
        status: exchange.status,
        headers,
        body: exchange.body.clone(),
        channel: exchange.channel,
        tls_version: exchange.tls_version.clone(),
    }
}

/// A 200 answer carrying `body`, signed with `key` for [`NONCE`], as the agent receives it.
pub fn signed_answer(key: &AgentKey, body: &[u8]) -> Exchange {
    Exchange {
        status: 200,
        headers: vec![
            ("Content-Type".into(), "application/json".into()),
            (header::MAC.into(), sign_response(key, NONCE, 200, body)),
        ],
        body: body.to_vec(),
        channel: "http",
        tls_version: None,
    }
}
