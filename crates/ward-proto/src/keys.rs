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

/// HMAC-SHA256 (RFC 2104) of the length-prefixed `parts` under `key`.
pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new(key);
    for part in parts {
        // Each part is length-prefixed, so no two different lists of parts sign alike.
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac.finish()
}

/// HMAC-SHA256 on OpenSSL's SHA-256 context (`SHA256_Init`/`_Update`/`_Final`: its assembly,
/// no allocation), not on `EVP_DigestSign`. That path fetched the HMAC, the SHA-256 and the
/// key's methods from OpenSSL 3's provider store by name, and allocated a key and two
/// contexts, on every call. A check-in verifies one MAC and signs one, and that cost 3.6% of
/// its server CPU (perf, `ward simulate` at capacity). Tested against RFC 4231's vectors and
/// against OpenSSL's own HMAC.
struct HmacSha256 {
    inner: openssl::sha::Sha256,
    outer: openssl::sha::Sha256,
}

impl HmacSha256 {
    const BLOCK: usize = 64;

    fn new(key: &[u8]) -> HmacSha256 {
        use openssl::sha::Sha256;
        let mut block = [0u8; Self::BLOCK];
        if key.len() > Self::BLOCK {
            block[..32].copy_from_slice(&crate::encoding::sha256(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let padded = |pad: u8| {
            let mut hasher = Sha256::new();
            hasher.update(&block.map(|byte| byte ^ pad));
            hasher
        };
        HmacSha256 {
            inner: padded(0x36),
            outer: padded(0x5c),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
    }

    fn finish(self) -> [u8; 32] {
        let mut outer = self.outer;
        outer.update(&self.inner.finish());
        outer.finish()
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::hex;

    fn openssl_hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
        let key = PKey::hmac(key).unwrap();
        let mut signer =
            openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &key).unwrap();
        signer.update(data).unwrap();
        signer.sign_to_vec().unwrap()
    }

    fn ours(key: &[u8], data: &[u8]) -> [u8; 32] {
        let mut mac = HmacSha256::new(key);
        mac.update(data);
        mac.finish()
    }

    #[test]
    fn hmac_sha256_gives_rfc_4231s_vectors() {
        let cases: &[(&[u8], &[u8], &str)] = &[
            // Test case 1.
            (
                &[0x0b; 20],
                b"Hi There",
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            // Test case 2: a key shorter than the output.
            (
                b"Jefe",
                b"what do ya want for nothing?",
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            // Test case 6: a key longer than the block, hashed first.
            (
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First",
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
        ];
        for (key, data, want) in cases {
            assert_eq!(hex(&ours(key, data)), *want, "key of {} bytes", key.len());
        }
    }

    #[test]
    fn hmac_matches_openssl_at_every_key_length_around_the_block() {
        // (OpenSSL refuses an empty HMAC key; ward never has one.)
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for key_len in [1, 31, 32, 33, 63, 64, 65, 127, 128, 129, 200] {
            let key: Vec<u8> = (0..key_len).map(|i| (i * 13 + 1) as u8).collect();
            for data_len in [0, 1, 55, 56, 64, 65, 300] {
                assert_eq!(
                    ours(&key, &data[..data_len]).to_vec(),
                    openssl_hmac(&key, &data[..data_len]),
                    "key {key_len} bytes, data {data_len} bytes"
                );
            }
        }
    }

    #[test]
    fn parts_are_length_prefixed_so_a_split_signs_differently() {
        let key = [7u8; 32];
        assert_ne!(hmac(&key, &[b"ab", b"c"]), hmac(&key, &[b"a", b"bc"]));
        let mut joined = Vec::new();
        for part in [&b"ab"[..], b"c"] {
            joined.extend_from_slice(&(part.len() as u64).to_be_bytes());
            joined.extend_from_slice(part);
        }
        assert_eq!(
            hmac(&key, &[b"ab", b"c"]).to_vec(),
            openssl_hmac(&key, &joined)
        );
    }
}
