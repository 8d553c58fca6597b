//! X25519 key pairs and the per-agent key.

use std::fmt;

use openssl::derive::Deriver;
use openssl::error::ErrorStack;
use openssl::pkey::{Id, PKey, Private, Public};

/// The per-agent key shared by one agent and its server.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentKey(pub(crate) [u8; 32]);

impl AgentKey {
    pub fn from_bytes(bytes: [u8; 32]) -> AgentKey {
        AgentKey(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The agent's side of the agreement: its pair and the server's (pinned) public key.
    pub fn for_agent(pair: &KeyPair, server_public: &[u8]) -> Result<AgentKey, ErrorStack> {
        let agent_public = pair.public_bytes()?;
        agree(pair, server_public, &agent_public, server_public)
    }

    /// The server's side: its pair (whose public half is `server_public`) and the agent's
    /// public key.
    pub fn for_server(
        server: &KeyPair,
        server_public: &[u8],
        agent_public: &[u8],
    ) -> Result<AgentKey, ErrorStack> {
        agree(server, agent_public, agent_public, server_public)
    }
}

impl fmt::Debug for AgentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AgentKey(..)")
    }
}

/// An X25519 key pair.
#[derive(Clone)]
pub struct KeyPair {
    key: PKey<Private>,
}

impl KeyPair {
    pub fn generate() -> Result<KeyPair, ErrorStack> {
        Ok(KeyPair {
            key: PKey::generate_x25519()?,
        })
    }

    pub fn from_private_bytes(bytes: &[u8]) -> Result<KeyPair, ErrorStack> {
        Ok(KeyPair {
            key: PKey::private_key_from_raw_bytes(bytes, Id::X25519)?,
        })
    }

    pub fn private_bytes(&self) -> Result<Vec<u8>, ErrorStack> {
        self.key.raw_private_key()
    }

    pub fn public_bytes(&self) -> Result<Vec<u8>, ErrorStack> {
        self.key.raw_public_key()
    }
}

pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let key = PKey::hmac(key).expect("an HMAC key of any length");
    let mut signer = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &key)
        .expect("HMAC-SHA256 is available");
    for part in parts {
        // Each part is length-prefixed, so no two different lists of parts sign alike.
        signer
            .update(&(part.len() as u64).to_be_bytes())
            .expect("HMAC update");
        signer.update(part).expect("HMAC update");
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(&signer.sign_to_vec().expect("HMAC final"));
    out
}

/// Both sides of the key agreement: `mine` with the peer's public key. The agent calls it
/// with its pair and the server's public key, the server with its pair and the agent's; both
/// get the same key. Fails on a malformed or low-order public key.
pub fn agree(
    mine: &KeyPair,
    peer_public: &[u8],
    agent_public: &[u8],
    server_public: &[u8],
) -> Result<AgentKey, ErrorStack> {
    let peer: PKey<Public> = PKey::public_key_from_raw_bytes(peer_public, Id::X25519)?;
    let mut deriver = Deriver::new(&mine.key)?;
    deriver.set_peer(&peer)?;
    let secret = deriver.derive_to_vec()?;
    Ok(AgentKey(hmac(
        &secret,
        &[b"ward agent key v1", agent_public, server_public],
    )))
}

/// What the agent sends instead of its enrollment token: proof that it holds the token, bound
/// to the key only it and the server can compute.
pub fn enrollment_proof(key: &AgentKey, token: &str) -> [u8; 32] {
    hmac(&key.0, &[b"ward enroll v1", token.as_bytes()])
}
