//! The TLS record layer of an established connection, once OpenSSL has handed it over
//! ([`crate::handoff`]): AEAD record protection for TLS 1.2 and TLS 1.3 (AES-128-GCM,
//! AES-256-GCM, ChaCha20-Poly1305), the TLS 1.3 key update, alerts.
//!
//! Why: OpenSSL keeps about 22 KiB per connection after the handshake (the SSL object, two
//! record layers sized for 32 pipelined records, cipher contexts, the session), and a server
//! holds tens of thousands of push connections that carry a record every few minutes. What a
//! record needs is a key, an IV and a sequence number per direction: about 100 bytes. The
//! kernel's TLS offload (kTLS) does the same hand-over; this is that, in user space.
//!
//! No I/O here: whole records in, plaintext and records out. The arithmetic is OpenSSL's
//! (`EVP` ciphers and HMAC); the framing, nonces and key schedule follow RFC 8446 §5 and §7
//! and RFC 5246 §6 / RFC 5288 / RFC 7905, and the tests check them against OpenSSL peers.

use std::cell::RefCell;
use std::fmt;
use std::ops::Range;

use openssl::cipher::CipherRef;
use openssl::cipher_ctx::CipherCtx;
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::sign::Signer;

/// The most plaintext one record carries (2^14).
pub const MAX_PLAINTEXT: usize = 16 * 1024;
/// A record header: type, version, length.
pub const HEADER_LEN: usize = 5;
const TAG_LEN: usize = 16;
/// TLS 1.2 AES-GCM's explicit nonce, sent in each record.
const EXPLICIT_NONCE_LEN: usize = 8;

/// Record content types (RFC 8446 §5.1).
pub mod content {
    pub const CHANGE_CIPHER_SPEC: u8 = 20;
    pub const ALERT: u8 = 21;
    pub const HANDSHAKE: u8 = 22;
    pub const APPLICATION_DATA: u8 = 23;
}

const KEY_UPDATE: u8 = 24;
const CLOSE_NOTIFY: u8 = 0;
const USER_CANCELED: u8 = 90;

/// An AEAD this record layer protects records with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    Aes128Gcm,
    Aes256Gcm,
    ChaCha20Poly1305,
}

impl Suite {
    /// The suite of a negotiated cipher, by its symmetric cipher's NID (`SSL_CIPHER_get_cipher_nid`).
    pub fn from_cipher_nid(nid: Nid) -> Option<Suite> {
        match nid {
            Nid::AES_128_GCM => Some(Suite::Aes128Gcm),
            Nid::AES_256_GCM => Some(Suite::Aes256Gcm),
            Nid::CHACHA20_POLY1305 => Some(Suite::ChaCha20Poly1305),
            _ => None,
        }
    }

    fn key_len(self) -> usize {
        match self {
            Suite::Aes128Gcm => 16,
            Suite::Aes256Gcm | Suite::ChaCha20Poly1305 => 32,
        }
    }

    /// TLS 1.2's "write IV": the 4-byte salt for AES-GCM (RFC 5288), the whole 12-byte nonce
    /// mask for ChaCha20-Poly1305 (RFC 7905).
    fn tls12_iv_len(self) -> usize {
        match self {
            Suite::Aes128Gcm | Suite::Aes256Gcm => 4,
            Suite::ChaCha20Poly1305 => 12,
        }
    }

    /// TLS 1.2: the explicit nonce each record carries (AES-GCM's 8 bytes; none for
    /// ChaCha20-Poly1305, whose nonce is the IV XOR the sequence number).
    fn tls12_explicit_nonce_len(self) -> usize {
        match self {
            Suite::Aes128Gcm | Suite::Aes256Gcm => EXPLICIT_NONCE_LEN,
            Suite::ChaCha20Poly1305 => 0,
        }
    }

    fn cipher(self) -> &'static CipherRef {
        match self {
            Suite::Aes128Gcm => openssl::cipher::Cipher::aes_128_gcm(),
            Suite::Aes256Gcm => openssl::cipher::Cipher::aes_256_gcm(),
            Suite::ChaCha20Poly1305 => openssl::cipher::Cipher::chacha20_poly1305(),
        }
    }
}

/// The hash of the key schedule (TLS 1.3) or of the PRF (TLS 1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
}

impl Hash {
    /// The hash of a digest OpenSSL names (`SSL_CIPHER_get_handshake_digest`).
    pub fn from_digest(digest: MessageDigest) -> Option<Hash> {
        match digest.type_() {
            Nid::SHA256 => Some(Hash::Sha256),
            Nid::SHA384 => Some(Hash::Sha384),
            _ => None,
        }
    }

    /// The digest's length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
        }
    }

    fn digest(self) -> MessageDigest {
        match self {
            Hash::Sha256 => MessageDigest::sha256(),
            Hash::Sha384 => MessageDigest::sha384(),
        }
    }
}

/// The protocol version, which decides the record format and nonces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Tls12,
    Tls13,
}

/// Why a record could not be sealed or opened. Each ends the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// The record failed authentication: tampered with, or keys out of step.
    BadRecordMac,
    /// A record longer than the protocol allows.
    Overflow(usize),
    /// A record or message the protocol does not allow here.
    Unexpected(&'static str),
    /// The peer sent a fatal alert (its description code).
    Alert(u8),
    /// The 2^64 records of one key are spent.
    SequenceExhausted,
    /// OpenSSL's cipher failed.
    Crypto(String),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::BadRecordMac => f.write_str("a record failed authentication"),
            RecordError::Overflow(len) => write!(f, "a record of {len} bytes is too long"),
            RecordError::Unexpected(what) => write!(f, "unexpected {what}"),
            RecordError::Alert(code) => write!(f, "the peer sent alert {code}"),
            RecordError::SequenceExhausted => f.write_str("the record sequence is spent"),
            RecordError::Crypto(message) => write!(f, "cipher: {message}"),
        }
    }
}

impl std::error::Error for RecordError {}

impl From<ErrorStack> for RecordError {
    fn from(error: ErrorStack) -> RecordError {
        RecordError::Crypto(error.to_string())
    }
}

extern "C" {
    fn OPENSSL_cleanse(ptr: *mut std::ffi::c_void, len: usize);
}

/// Overwrites `bytes` in a way the compiler does not drop.
pub(crate) fn cleanse(bytes: &mut [u8]) {
    // SAFETY: the pointer and length describe `bytes`, borrowed mutably.
    unsafe { OPENSSL_cleanse(bytes.as_mut_ptr().cast(), bytes.len()) }
}

/// One direction's protection: its key, IV, sequence number and (TLS 1.3) traffic secret.
/// Cleared when dropped.
pub struct Protection {
    version: Version,
    suite: Suite,
    hash: Hash,
    key: [u8; 32],
    /// TLS 1.3 and ChaCha20-Poly1305: the 12-byte nonce mask. TLS 1.2 AES-GCM: the salt in the
    /// first 4 bytes.
    iv: [u8; 12],
    /// TLS 1.3: the current traffic secret, from which a key update derives the next.
    secret: [u8; 48],
    seq: u64,
}

impl Drop for Protection {
    fn drop(&mut self) {
        cleanse(&mut self.key);
        cleanse(&mut self.iv);
        cleanse(&mut self.secret);
    }
}

impl fmt::Debug for Protection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the keys.
        f.debug_struct("Protection")
            .field("version", &self.version)
            .field("suite", &self.suite)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl Protection {
    /// TLS 1.3: the protection of a traffic secret (RFC 8446 §7.3), at record `seq`.
    pub fn tls13(
        suite: Suite,
        hash: Hash,
        secret: &[u8],
        seq: u64,
    ) -> Result<Protection, RecordError> {
        if secret.len() != hash.output_len() {
            return Err(RecordError::Unexpected("traffic secret length"));
        }
        let mut protection = Protection {
            version: Version::Tls13,
            suite,
            hash,
            key: [0; 32],
            iv: [0; 12],
            secret: [0; 48],
            seq,
        };
        protection.secret[..secret.len()].copy_from_slice(secret);
        protection.derive_tls13()?;
        Ok(protection)
    }

    /// TLS 1.2: the protection of a key and IV from the key block, at record `seq`.
    fn tls12(suite: Suite, key: &[u8], iv: &[u8], seq: u64) -> Protection {
        let mut protection = Protection {
            version: Version::Tls12,
            suite,
            hash: Hash::Sha256,
            key: [0; 32],
            iv: [0; 12],
            secret: [0; 48],
            seq,
        };
        protection.key[..key.len()].copy_from_slice(key);
        protection.iv[..iv.len()].copy_from_slice(iv);
        protection
    }

    /// The next record's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    fn derive_tls13(&mut self) -> Result<(), RecordError> {
        let secret = &self.secret[..self.hash.output_len()];
        let key_len = self.suite.key_len();
        let mut key = [0u8; 32];
        expand_label(self.hash, secret, b"key", &mut key[..key_len])?;
        let mut iv = [0u8; 12];
        expand_label(self.hash, secret, b"iv", &mut iv)?;
        self.key = key;
        self.iv = iv;
        cleanse(&mut key);
        Ok(())
    }

    /// TLS 1.3 key update (RFC 8446 §7.2): the next traffic secret, its key and IV, and the
    /// sequence back at 0.
    fn update(&mut self) -> Result<(), RecordError> {
        let len = self.hash.output_len();
        let mut next = [0u8; 48];
        expand_label(
            self.hash,
            &self.secret[..len],
            b"traffic upd",
            &mut next[..len],
        )?;
        self.secret = next;
        cleanse(&mut next);
        self.seq = 0;
        self.derive_tls13()
    }

    /// The nonce of record `seq`: the IV with the sequence number XORed into its last 8 bytes.
    fn xor_nonce(&self, seq: u64) -> [u8; 12] {
        let mut nonce = self.iv;
        for (byte, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
            *byte ^= s;
        }
        nonce
    }

    /// TLS 1.2's nonce of record `seq`: AES-GCM's salt then the record's `explicit` nonce
    /// (RFC 5288), or, with no explicit nonce, the IV XOR the sequence number (RFC 7905).
    fn tls12_nonce(&self, seq: u64, explicit: &[u8]) -> [u8; 12] {
        if explicit.is_empty() {
            return self.xor_nonce(seq);
        }
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&self.iv[..4]);
        nonce[4..].copy_from_slice(explicit);
        nonce
    }

    fn next_seq(&mut self) -> Result<u64, RecordError> {
        let seq = self.seq;
        self.seq = seq.checked_add(1).ok_or(RecordError::SequenceExhausted)?;
        Ok(seq)
    }

    /// Appends one record carrying `data` (at most [`MAX_PLAINTEXT`] bytes) of `content_type`
    /// to `out`.
    pub fn seal(
        &mut self,
        content_type: u8,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), RecordError> {
        if data.len() > MAX_PLAINTEXT {
            return Err(RecordError::Overflow(data.len()));
        }
        let seq = self.next_seq()?;
        let start = out.len();
        match self.version {
            Version::Tls13 => {
                let length = data.len() + 1 + TAG_LEN;
                out.extend_from_slice(&[content::APPLICATION_DATA, 3, 3]);
                out.extend_from_slice(&(length as u16).to_be_bytes());
                out.extend_from_slice(data);
                out.push(content_type);
                let nonce = self.xor_nonce(seq);
                let (header, body) = out[start..].split_at_mut(HEADER_LEN);
                let tag = seal_in_place(self.suite, &self.key, &nonce, header, body)?;
                out.extend_from_slice(&tag);
            }
            Version::Tls12 => {
                // AES-GCM's explicit nonce is the sequence number.
                let explicit = &seq.to_be_bytes()[..self.suite.tls12_explicit_nonce_len()];
                let length = explicit.len() + data.len() + TAG_LEN;
                out.extend_from_slice(&[content_type, 3, 3]);
                out.extend_from_slice(&(length as u16).to_be_bytes());
                out.extend_from_slice(explicit);
                out.extend_from_slice(data);
                let nonce = self.tls12_nonce(seq, explicit);
                let aad = tls12_aad(seq, content_type, data.len());
                let body = &mut out[start + HEADER_LEN + explicit.len()..];
                let tag = seal_in_place(self.suite, &self.key, &nonce, &aad, body)?;
                out.extend_from_slice(&tag);
            }
        }
        Ok(())
    }

    /// Opens one whole record (header included) in place: its content type and where its
    /// plaintext now is in `record`.
    pub fn open(&mut self, record: &mut [u8]) -> Result<(u8, Range<usize>), RecordError> {
        let length = check_header(self.version, record)?;
        if record.len() != HEADER_LEN + length {
            return Err(RecordError::Unexpected("record framing"));
        }
        match self.version {
            Version::Tls13 => {
                if record[0] != content::APPLICATION_DATA {
                    return Err(RecordError::Unexpected("record type after the handshake"));
                }
                if length < 1 + TAG_LEN {
                    return Err(RecordError::BadRecordMac);
                }
                let seq = self.seq;
                let nonce = self.xor_nonce(seq);
                let (header, body) = record.split_at_mut(HEADER_LEN);
                let (sealed, tag) = body.split_at_mut(length - TAG_LEN);
                open_in_place(self.suite, &self.key, &nonce, header, sealed, tag)?;
                self.next_seq()?;
                // The inner plaintext: content, its type, then zero padding.
                let Some(last) = sealed.iter().rposition(|&b| b != 0) else {
                    return Err(RecordError::Unexpected("record without a content type"));
                };
                if last > MAX_PLAINTEXT {
                    return Err(RecordError::Overflow(last));
                }
                let content_type = sealed[last];
                Ok((content_type, HEADER_LEN..HEADER_LEN + last))
            }
            Version::Tls12 => {
                let content_type = record[0];
                if !matches!(
                    content_type,
                    content::ALERT | content::HANDSHAKE | content::APPLICATION_DATA
                ) {
                    return Err(RecordError::Unexpected("record type after the handshake"));
                }
                let nonce_len = self.suite.tls12_explicit_nonce_len();
                if length < nonce_len + TAG_LEN {
                    return Err(RecordError::BadRecordMac);
                }
                let plain_len = length - nonce_len - TAG_LEN;
                if plain_len > MAX_PLAINTEXT {
                    return Err(RecordError::Overflow(plain_len));
                }
                let seq = self.seq;
                let start = HEADER_LEN + nonce_len;
                let nonce = self.tls12_nonce(seq, &record[HEADER_LEN..start]);
                let aad = tls12_aad(seq, content_type, plain_len);
                let (sealed, tag) = record[start..].split_at_mut(plain_len);
                open_in_place(self.suite, &self.key, &nonce, &aad, sealed, tag)?;
                self.next_seq()?;
                Ok((content_type, start..start + plain_len))
            }
        }
    }
}

/// TLS 1.2's additional data: sequence number, type, version, plaintext length.
fn tls12_aad(seq: u64, content_type: u8, plain_len: usize) -> [u8; 13] {
    let mut aad = [0u8; 13];
    aad[..8].copy_from_slice(&seq.to_be_bytes());
    aad[8] = content_type;
    aad[9] = 3;
    aad[10] = 3;
    aad[11..].copy_from_slice(&(plain_len as u16).to_be_bytes());
    aad
}

/// The largest record (header included) a version allows after the handshake.
fn max_record(version: Version) -> usize {
    HEADER_LEN
        + MAX_PLAINTEXT
        + match version {
            Version::Tls13 => 256,
            Version::Tls12 => 2048,
        }
}

/// The length field of a record header, checked against the version's limits.
fn check_header(version: Version, header: &[u8]) -> Result<usize, RecordError> {
    if header.len() < HEADER_LEN {
        return Err(RecordError::Unexpected("record framing"));
    }
    if header[1] != 3 || header[2] != 3 {
        return Err(RecordError::Unexpected("record version"));
    }
    let length = u16::from_be_bytes([header[3], header[4]]) as usize;
    if HEADER_LEN + length > max_record(version) {
        return Err(RecordError::Overflow(length));
    }
    Ok(length)
}

/// How long the first record in `buffer` is (header included), once its header is there;
/// `None` while the header is not. An impossible header is an error at once.
pub fn record_len(version: Version, buffer: &[u8]) -> Result<Option<usize>, RecordError> {
    if buffer.len() < HEADER_LEN {
        return Ok(None);
    }
    Ok(Some(HEADER_LEN + check_header(version, buffer)?))
}

thread_local! {
    /// One cipher context per thread, re-keyed for each record: a connection keeps only its
    /// keys, and a record costs no allocation.
    static CONTEXT: RefCell<Option<(Suite, CipherCtx)>> = const { RefCell::new(None) };
}

/// Runs `f` on this thread's cipher context, with the cipher to initialise it with when it
/// last served another suite (`None`: re-keying is enough).
fn with_context<R>(
    suite: Suite,
    f: impl FnOnce(&mut CipherCtx, Option<&CipherRef>) -> Result<R, RecordError>,
) -> Result<R, RecordError> {
    CONTEXT.with(|slot| {
        let mut slot = slot.borrow_mut();
        let cipher = match &*slot {
            Some((current, _)) if *current == suite => None,
            _ => Some(suite.cipher()),
        };
        if cipher.is_some() {
            *slot = Some((suite, CipherCtx::new()?));
        }
        let Some((_, ctx)) = slot.as_mut() else {
            unreachable!("the context was just set");
        };
        f(ctx, cipher)
    })
}

/// Encrypts `data` in place with the AEAD and returns its tag.
fn seal_in_place(
    suite: Suite,
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    data: &mut [u8],
) -> Result<[u8; TAG_LEN], RecordError> {
    with_context(suite, |ctx, cipher| {
        ctx.encrypt_init(cipher, Some(&key[..suite.key_len()]), Some(nonce))?;
        ctx.cipher_update(aad, None)?;
        let len = data.len();
        if len > 0 {
            ctx.cipher_update_inplace(data, len)?;
        }
        ctx.cipher_final(&mut [])?;
        let mut tag = [0u8; TAG_LEN];
        ctx.tag(&mut tag)?;
        Ok(tag)
    })
}

/// Decrypts `data` in place with the AEAD, checking it against `tag`.
fn open_in_place(
    suite: Suite,
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    data: &mut [u8],
    tag: &[u8],
) -> Result<(), RecordError> {
    with_context(suite, |ctx, cipher| {
        ctx.decrypt_init(cipher, Some(&key[..suite.key_len()]), Some(nonce))?;
        ctx.set_tag(tag)?;
        ctx.cipher_update(aad, None)?;
        let len = data.len();
        if len > 0 {
            ctx.cipher_update_inplace(data, len)?;
        }
        ctx.cipher_final(&mut [])
            .map(|_| ())
            .map_err(|_| RecordError::BadRecordMac)
    })
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
fn expand_label(hash: Hash, secret: &[u8], label: &[u8], out: &mut [u8]) -> Result<(), ErrorStack> {
    let mut info = Vec::with_capacity(4 + 6 + label.len());
    info.extend_from_slice(&(out.len() as u16).to_be_bytes());
    info.push((6 + label.len()) as u8);
    info.extend_from_slice(b"tls13 ");
    info.extend_from_slice(label);
    info.push(0);
    hkdf_expand(hash, secret, &info, out)
}

/// HKDF-Expand (RFC 5869 §2.3).
fn hkdf_expand(hash: Hash, prk: &[u8], info: &[u8], out: &mut [u8]) -> Result<(), ErrorStack> {
    let key = PKey::hmac(prk)?;
    let mut previous: Vec<u8> = Vec::new();
    let mut filled = 0;
    let mut counter = 1u8;
    while filled < out.len() {
        let mut signer = Signer::new(hash.digest(), &key)?;
        signer.update(&previous)?;
        signer.update(info)?;
        signer.update(&[counter])?;
        previous = signer.sign_to_vec()?;
        let n = previous.len().min(out.len() - filled);
        out[filled..filled + n].copy_from_slice(&previous[..n]);
        filled += n;
        counter += 1;
    }
    cleanse(&mut previous);
    Ok(())
}

/// TLS 1.2's PRF (RFC 5246 §5): P_hash(secret, label + seed).
fn prf(
    hash: Hash,
    secret: &[u8],
    label: &[u8],
    seed: &[u8],
    out: &mut [u8],
) -> Result<(), ErrorStack> {
    let key = PKey::hmac(secret)?;
    let hmac = |parts: &[&[u8]]| -> Result<Vec<u8>, ErrorStack> {
        let mut signer = Signer::new(hash.digest(), &key)?;
        for part in parts {
            signer.update(part)?;
        }
        signer.sign_to_vec()
    };
    let mut a = hmac(&[label, seed])?;
    let mut filled = 0;
    while filled < out.len() {
        let mut block = hmac(&[&a, label, seed])?;
        let n = block.len().min(out.len() - filled);
        out[filled..filled + n].copy_from_slice(&block[..n]);
        filled += n;
        cleanse(&mut block);
        a = hmac(&[&a])?;
    }
    cleanse(&mut a);
    Ok(())
}

/// What the server's side of a connection needs to take its records over.
pub struct Handover<'a> {
    pub version: Version,
    pub suite: Suite,
    pub hash: Hash,
    /// TLS 1.3: the client's and server's application traffic secrets.
    /// TLS 1.2: unused (empty).
    pub client_secret: &'a [u8],
    pub server_secret: &'a [u8],
    /// TLS 1.2: the master secret and the two hello randoms.
    pub master_secret: &'a [u8],
    pub client_random: &'a [u8],
    pub server_random: &'a [u8],
    /// The sequence numbers of the next record read (the client's) and written.
    pub read_seq: u64,
    pub write_seq: u64,
}

/// What reading one record gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// Application data, at this range of the record (possibly empty).
    Data(Range<usize>),
    /// The peer's close_notify: no more data comes.
    Closed,
    /// A record with nothing for the application (a key update, a warning).
    Nothing,
}

/// Both directions of a server's established connection.
#[derive(Debug)]
pub struct Records {
    read: Protection,
    write: Protection,
}

impl Records {
    /// The server's record layer from what OpenSSL negotiated.
    pub fn server(handover: &Handover<'_>) -> Result<Records, RecordError> {
        match handover.version {
            Version::Tls13 => Ok(Records {
                read: Protection::tls13(
                    handover.suite,
                    handover.hash,
                    handover.client_secret,
                    handover.read_seq,
                )?,
                write: Protection::tls13(
                    handover.suite,
                    handover.hash,
                    handover.server_secret,
                    handover.write_seq,
                )?,
            }),
            Version::Tls12 => {
                let suite = handover.suite;
                let (key_len, iv_len) = (suite.key_len(), suite.tls12_iv_len());
                let mut block = [0u8; 2 * 32 + 2 * 12];
                let block = &mut block[..2 * (key_len + iv_len)];
                let mut seed = Vec::with_capacity(64);
                seed.extend_from_slice(handover.server_random);
                seed.extend_from_slice(handover.client_random);
                prf(
                    handover.hash,
                    handover.master_secret,
                    b"key expansion",
                    &seed,
                    block,
                )?;
                // client key, server key, client IV, server IV (no MAC keys for an AEAD).
                let (client_key, rest) = block.split_at(key_len);
                let (server_key, rest) = rest.split_at(key_len);
                let (client_iv, server_iv) = rest.split_at(iv_len);
                let records = Records {
                    read: Protection::tls12(suite, client_key, client_iv, handover.read_seq),
                    write: Protection::tls12(suite, server_key, server_iv, handover.write_seq),
                };
                cleanse(block);
                Ok(records)
            }
        }
    }

    /// The client's side of the same connection (the two directions swapped): for tests and
    /// tools that talk to a handed-over server.
    pub fn client(handover: &Handover<'_>) -> Result<Records, RecordError> {
        let server = Records::server(handover)?;
        Ok(Records {
            read: server.write,
            write: server.read,
        })
    }

    pub fn version(&self) -> Version {
        self.read.version
    }

    /// The sequence numbers of the next record read and written.
    pub fn seqs(&self) -> (u64, u64) {
        (self.read.seq, self.write.seq)
    }

    /// Appends application data to `out` as records of at most [`MAX_PLAINTEXT`] bytes.
    pub fn seal_data(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), RecordError> {
        for chunk in data.chunks(MAX_PLAINTEXT) {
            self.write.seal(content::APPLICATION_DATA, chunk, out)?;
        }
        Ok(())
    }

    /// Appends the close_notify alert to `out`.
    pub fn seal_close_notify(&mut self, out: &mut Vec<u8>) -> Result<(), RecordError> {
        self.write.seal(content::ALERT, &[1, CLOSE_NOTIFY], out)
    }

    /// Asks the peer for a key update and updates this side's write key (TLS 1.3): the
    /// KeyUpdate message goes to `out`.
    pub fn request_key_update(&mut self, out: &mut Vec<u8>) -> Result<(), RecordError> {
        if self.write.version != Version::Tls13 {
            return Err(RecordError::Unexpected("key update below TLS 1.3"));
        }
        self.write
            .seal(content::HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, 1], out)?;
        self.write.update()
    }

    /// Opens one whole record (as [`record_len`] measured it) in place. What the protocol
    /// asks in answer (a key update of this side's keys) is sealed into `replies`.
    pub fn receive(
        &mut self,
        record: &mut [u8],
        replies: &mut Vec<u8>,
    ) -> Result<Received, RecordError> {
        let (content_type, range) = self.read.open(record)?;
        match content_type {
            content::APPLICATION_DATA => Ok(Received::Data(range)),
            content::ALERT => match &record[range] {
                [_, CLOSE_NOTIFY] => Ok(Received::Closed),
                [1, USER_CANCELED] => Ok(Received::Nothing),
                [_, code] => Err(RecordError::Alert(*code)),
                _ => Err(RecordError::Unexpected("alert framing")),
            },
            content::HANDSHAKE if self.read.version == Version::Tls13 => {
                // Post-handshake messages from a client: only KeyUpdate is expected (no
                // certificate was requested, and a client sends no tickets). It must be whole
                // and the last message of its record (RFC 8446 §5.1).
                match &record[range] {
                    [KEY_UPDATE, 0, 0, 1, request] if *request <= 1 => {
                        self.read.update()?;
                        if *request == 1 {
                            self.write.seal(
                                content::HANDSHAKE,
                                &[KEY_UPDATE, 0, 0, 1, 0],
                                replies,
                            )?;
                            self.write.update()?;
                        }
                        Ok(Received::Nothing)
                    }
                    _ => Err(RecordError::Unexpected(
                        "handshake message after the handshake",
                    )),
                }
            }
            content::HANDSHAKE => Err(RecordError::Unexpected("renegotiation")),
            _ => Err(RecordError::Unexpected("record type after the handshake")),
        }
    }
}

#[cfg(test)]
mod tests;
