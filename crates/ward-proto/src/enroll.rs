//! Enrollment without sending the token: what both sides compute from it.
//!
//! The server stores only a token's SHA-256. The agent names the token by a lookup derived
//! from that hash, and proves it holds the token with an HMAC, under the freshly agreed agent
//! key, of a statement that binds the token to everything the request decides: its nonce and
//! time, the agent's public key, and the identity it claims (re-registration).

use crate::encoding::{hex, sha256_hex};
use crate::keys::{enrollment_proof, AgentKey};

/// What the server stores of an enrollment token (the token is shown once, then forgotten).
pub fn token_sha256(token: &str) -> String {
    sha256_hex(token.trim())
}

/// What an agent sends to name its token without sending it: derived from the token's
/// SHA-256, which the server stores.
pub fn token_lookup(token_sha256: &str) -> String {
    sha256_hex(&format!("{token_sha256}:lookup"))
}

/// The text both sides put under the enrollment proof.
pub fn statement(
    token_sha256: &str,
    nonce: &str,
    time_ms: i64,
    agent_public_hex: &str,
    existing: Option<&str>,
) -> String {
    format!(
        "{token_sha256}:{nonce}:{time_ms}:{agent_public_hex}:{}",
        existing.unwrap_or("")
    )
}

/// The proof an agent sends (hex).
pub fn proof(key: &AgentKey, statement: &str) -> String {
    hex(&enrollment_proof(key, statement))
}

/// Whether `presented` (hex) is the proof of `statement` under `key`, in constant time.
pub fn proof_matches(key: &AgentKey, statement: &str, presented: &str) -> bool {
    let expected = proof(key, statement);
    expected.len() == presented.len()
        && openssl::memcmp::eq(expected.as_bytes(), presented.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyPair;

    #[test]
    fn both_sides_agree_on_the_proof_and_nothing_else_passes() {
        let server = KeyPair::generate().unwrap();
        let server_public = server.public_bytes().unwrap();
        let agent = KeyPair::generate().unwrap();
        let agent_public = agent.public_bytes().unwrap();
        let agent_side = AgentKey::for_agent(&agent, &server_public).unwrap();
        let server_side = AgentKey::for_server(&server, &server_public, &agent_public).unwrap();
        assert_eq!(agent_side, server_side);

        let sha = token_sha256(" secret-token\n");
        assert_eq!(sha, token_sha256("secret-token"), "the token is trimmed");
        let text = statement(&sha, "n1", 7, &hex(&agent_public), None);
        let presented = proof(&agent_side, &text);
        assert!(proof_matches(&server_side, &text, &presented));
        let other_token = statement(&token_sha256("other"), "n1", 7, &hex(&agent_public), None);
        assert!(!proof_matches(&server_side, &other_token, &presented));
        let claimed = statement(&sha, "n1", 7, &hex(&agent_public), Some("someone"));
        assert!(!proof_matches(&server_side, &claimed, &presented));
        assert!(!proof_matches(&server_side, &text, &presented[..10]));
        assert_ne!(token_lookup(&sha), sha);
    }
}
