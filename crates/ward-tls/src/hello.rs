//! ClientHello parsing: what a client offered, read from the first bytes of a connection before
//! OpenSSL sees them. This is how ward can say "this client offers only TLSv1" about a
//! handshake that failed.
//!
//! Pure and total: any input gives a value or an error, never a panic. Handles a ClientHello
//! fragmented across several records and the SSLv2-compatible format that old Windows clients
//! send. [`HelloError::Incomplete`] tells a caller that peeks to wait for more bytes.

use std::fmt;

use crate::protocol::TlsVersion;

/// What a client offered in its ClientHello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientHello {
    /// The version in the (first) record header; 0x0002 for an SSLv2-format hello.
    pub record_version: u16,
    /// `legacy_version` (`client_version` before TLS 1.3).
    pub legacy_version: u16,
    /// The `supported_versions` extension, GREASE values removed; empty when absent.
    pub supported_versions: Vec<u16>,
    /// The `server_name` extension's host name.
    pub server_name: Option<String>,
    /// Offered cipher suites, in the client's order.
    pub cipher_suites: Vec<u16>,
    /// True for the SSLv2-compatible ClientHello format.
    pub sslv2_format: bool,
    /// The extension types, in the client's order, GREASE values removed.
    pub extensions: Vec<u16>,
    /// The `supported_groups` extension, GREASE values removed.
    pub groups: Vec<u16>,
    /// The first protocol of the `application_layer_protocol_negotiation` extension.
    pub alpn: Option<Vec<u8>>,
    /// The `signature_algorithms` extension, in the client's order.
    pub signature_algorithms: Vec<u16>,
}

/// Text fed to SHA-256 through a small buffer (the fingerprint's; see there).
struct HashedText {
    hasher: openssl::sha::Sha256,
    buffer: [u8; 256],
    len: usize,
}

impl HashedText {
    fn new() -> HashedText {
        HashedText {
            // The context, not the one-shot `SHA256()`, which OpenSSL 3 looks up by name.
            hasher: openssl::sha::Sha256::new(),
            buffer: [0; 256],
            len: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.len + bytes.len() > self.buffer.len() {
            self.hasher.update(&self.buffer[..self.len]);
            self.len = 0;
        }
        if bytes.len() > self.buffer.len() {
            self.hasher.update(bytes);
        } else {
            self.buffer[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        }
    }

    /// `[1, 22, 333]`, as `{:?}` writes a list of numbers.
    fn list(&mut self, values: impl Iterator<Item = u16>) {
        self.push(b"[");
        for (i, value) in values.enumerate() {
            if i > 0 {
                self.push(b", ");
            }
            let mut digits = [0u8; 5];
            let mut at = digits.len();
            let mut rest = value;
            loop {
                at -= 1;
                digits[at] = b'0' + (rest % 10) as u8;
                rest /= 10;
                if rest == 0 {
                    break;
                }
            }
            self.push(&digits[at..]);
        }
        self.push(b"]");
    }

    fn finish(mut self) -> [u8; 32] {
        self.hasher.update(&self.buffer[..self.len]);
        self.hasher.finish()
    }
}

impl ClientHello {
    /// A fingerprint of the client's TLS stack, the same on every connection it makes (in the
    /// spirit of JA4): versions, suites, extension types (sorted: some stacks shuffle them),
    /// groups and whether it names the server. Random parts (the random, key shares, session
    /// ids, tickets) and the extensions only a resumption or its padding adds are left out.
    pub fn fingerprint(&self) -> [u8; 32] {
        let extensions = self.fingerprinted_extensions();
        // The text, "ward-fp-1|0303|[772, 771]|[4865, 49195]|[0, 10]|[29]|true" (the lists
        // as Rust's `{:?}` writes them: the stored fingerprints were made so), is written
        // by hand into a buffer that is hashed as it fills: no string, no formatting
        // machinery, one SHA-256 update per 256 bytes (every handshake computes it).
        let mut text = HashedText::new();
        text.push(b"ward-fp-1|");
        for shift in [12, 8, 4, 0] {
            text.push(&[b"0123456789abcdef"[usize::from((self.legacy_version >> shift) & 0xf)]]);
        }
        text.push(b"|");
        text.list(self.supported_versions.iter().copied());
        text.push(b"|");
        text.list(
            self.cipher_suites
                .iter()
                .copied()
                .filter(|s| !is_grease(*s)),
        );
        text.push(b"|");
        text.list(extensions.into_iter());
        text.push(b"|");
        text.list(self.groups.iter().copied());
        text.push(if self.server_name.is_some() {
            b"|true"
        } else {
            b"|false"
        });
        text.finish()
    }

    /// The extension types a fingerprint counts, sorted: without padding, pre_shared_key
    /// and early_data, which are present or not by chance of the moment.
    fn fingerprinted_extensions(&self) -> Vec<u16> {
        let mut extensions: Vec<u16> = self
            .extensions
            .iter()
            .copied()
            .filter(|e| !matches!(e, 0x0015 | 0x0029 | 0x002a))
            .collect();
        extensions.sort_unstable();
        extensions
    }

    /// The client's JA4 fingerprint (FoxIO's JA4 TLS client fingerprint, over TCP):
    /// `t13d1516h2_8daaf6152771_e5627efa2ab1` is version, SNI or not, how many suites and
    /// extensions, the ALPN's first and last characters; then the first 12 hex digits of the
    /// SHA-256 of the sorted suites, and of the sorted extensions (without SNI and ALPN) with
    /// the signature algorithms in order. GREASE values never count.
    pub fn ja4(&self) -> String {
        let version = match self.max_version() {
            0x0304 => "13",
            0x0303 => "12",
            0x0302 => "11",
            0x0301 => "10",
            0x0300 => "s3",
            0x0002 => "s2",
            _ => "00",
        };
        let sni = if self.extensions.contains(&EXT_SERVER_NAME) {
            'd'
        } else {
            'i'
        };
        let ciphers: Vec<u16> = self
            .cipher_suites
            .iter()
            .copied()
            .filter(|s| !is_grease(*s))
            .collect();
        let alpn = match self.alpn.as_deref() {
            None | Some([]) => "00".to_string(),
            Some(value) => {
                let (first, last) = (value[0], value[value.len() - 1]);
                if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
                    format!("{}{}", first as char, last as char)
                } else {
                    let hex = hex_of(value);
                    let chars: Vec<char> = hex.chars().collect();
                    format!("{}{}", chars[0], chars[chars.len() - 1])
                }
            }
        };
        let a = format!(
            "t{version}{sni}{:02}{:02}{alpn}",
            ciphers.len().min(99),
            self.extensions.len().min(99)
        );
        let hash12 = |text: &str| hex_of(&openssl::sha::sha256(text.as_bytes()))[..12].to_string();
        let listed = |values: &[u16]| {
            values
                .iter()
                .map(|v| format!("{v:04x}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut sorted = ciphers;
        sorted.sort_unstable();
        let b = if sorted.is_empty() {
            "000000000000".to_string()
        } else {
            hash12(&listed(&sorted))
        };
        let mut extensions: Vec<u16> = self
            .extensions
            .iter()
            .copied()
            .filter(|e| !matches!(*e, EXT_SERVER_NAME | EXT_ALPN))
            .collect();
        extensions.sort_unstable();
        let c = if extensions.is_empty() && self.signature_algorithms.is_empty() {
            "000000000000".to_string()
        } else if self.signature_algorithms.is_empty() {
            hash12(&listed(&extensions))
        } else {
            hash12(&format!(
                "{}_{}",
                listed(&extensions),
                listed(&self.signature_algorithms)
            ))
        };
        format!("{a}_{b}_{c}")
    }

    /// The highest version the client offers, as on the wire (0x0300 is SSLv3).
    pub fn max_version(&self) -> u16 {
        self.supported_versions
            .iter()
            .copied()
            .max()
            .unwrap_or(self.legacy_version)
    }

    /// The TLS versions the client offers: the `supported_versions` list when present,
    /// otherwise every version from TLSv1 up to `legacy_version` (the pre-1.3 rule).
    pub fn offered_versions(&self) -> Vec<TlsVersion> {
        if self.supported_versions.is_empty() {
            TlsVersion::ALL
                .into_iter()
                .filter(|v| v.wire() <= self.legacy_version)
                .collect()
        } else {
            TlsVersion::ALL
                .into_iter()
                .filter(|v| self.supported_versions.contains(&v.wire()))
                .collect()
        }
    }
}

/// A version number as people write it: `SSLv3`, `TLSv1.2`, or hex for anything else.
pub fn version_name(wire: u16) -> String {
    match wire {
        0x0002 => "SSLv2".into(),
        0x0300 => "SSLv3".into(),
        _ => match TlsVersion::from_wire(wire) {
            Some(version) => version.name().into(),
            None => format!("0x{wire:04x}"),
        },
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HelloError {
    /// The bytes end before the ClientHello does; more may come.
    Incomplete,
    /// The first byte is no TLS handshake record (e.g. plain HTTP on a TLS port).
    NotTls,
    /// The bytes are a handshake, but not a well-formed ClientHello.
    Malformed(&'static str),
}

impl fmt::Display for HelloError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HelloError::Incomplete => f.write_str("ClientHello incomplete"),
            HelloError::NotTls => f.write_str("not a TLS handshake"),
            HelloError::Malformed(what) => write!(f, "malformed ClientHello: {what}"),
        }
    }
}

impl std::error::Error for HelloError {}

/// The largest record payload TLS allows (2^14 plus expansion).
const MAX_RECORD: usize = 16_384 + 2_048;
/// A ClientHello larger than this is refused rather than buffered.
pub const MAX_HELLO: usize = 64 * 1024;

/// A ClientHello split into more records than this is refused. Real clients use one or two; a
/// post-quantum ClientHello (about 1.6 KB with an X25519MLKEM768 key share) cut into the
/// smallest fragments seen in tests (16 bytes) takes about 100.
pub const MAX_RECORDS: usize = 256;

const HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0x0000;
const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;
const EXT_SUPPORTED_GROUPS: u16 = 0x000a;
const EXT_SIGNATURE_ALGORITHMS: u16 = 0x000d;
const EXT_ALPN: u16 = 0x0010;

/// Parses the ClientHello at the start of `bytes`.
/// The largest ClientHello an agent may report of its own stack (a post-quantum hello is
/// about 1.6 KB).
pub const MAX_REPORTED_HELLO: usize = 8192;

/// A ClientHello an agent reports of its own stack: its fingerprint when the bytes are one
/// (records included) within [`MAX_REPORTED_HELLO`]; `None` for anything else, which the
/// server leaves out rather than refusing the check-in that carried it.
pub fn reported_fingerprint(bytes: &[u8]) -> Option<[u8; 32]> {
    if bytes.len() > MAX_REPORTED_HELLO {
        return None;
    }
    parse_client_hello(bytes)
        .ok()
        .map(|hello| hello.fingerprint())
}

pub fn parse_client_hello(bytes: &[u8]) -> Result<ClientHello, HelloError> {
    let Some(&first) = bytes.first() else {
        return Err(HelloError::Incomplete);
    };
    if first & 0x80 != 0 {
        return parse_sslv2_hello(bytes);
    }
    if first != HANDSHAKE {
        return Err(HelloError::NotTls);
    }
    // Gather the handshake message from as many records as it spans.
    let mut message = Vec::new();
    let mut rest = bytes;
    let mut record_version = None;
    let mut records = 0;
    loop {
        if let Some(length) = handshake_length(&message) {
            if length > MAX_HELLO {
                return Err(HelloError::Malformed("ClientHello too large"));
            }
            if message.len() >= 4 + length {
                break;
            }
        }
        records += 1;
        if records > MAX_RECORDS {
            return Err(HelloError::Malformed(
                "ClientHello split into too many records",
            ));
        }
        let mut record = Reader::new(rest);
        let content_type = record.u8()?;
        if content_type != HANDSHAKE {
            return Err(HelloError::Malformed(
                "a non-handshake record inside the ClientHello",
            ));
        }
        let version = record.u16()?;
        record_version.get_or_insert(version);
        let length = usize::from(record.u16()?);
        if length == 0 || length > MAX_RECORD {
            return Err(HelloError::Malformed("record length out of range"));
        }
        message.extend_from_slice(record.bytes(length)?);
        if message.len() > MAX_HELLO {
            return Err(HelloError::Malformed("ClientHello too large"));
        }
        rest = record.remaining();
    }
    let record_version = record_version.unwrap_or_default();
    let mut header = Reader::complete(&message);
    if header.u8()? != CLIENT_HELLO {
        return Err(HelloError::Malformed(
            "first handshake message is not a ClientHello",
        ));
    }
    let length = header.u24()?;
    parse_hello_body(Reader::complete(header.bytes(length)?), record_version)
}

/// How many bytes from the start of `bytes` hold the whole ClientHello, judged from the
/// record headers alone, without copying: `Ok(Some(n))` once known (wait until `n` bytes
/// are there, then call [`parse_client_hello`]), `Ok(None)` while more bytes are needed to
/// tell. Cheap enough to call after every read, so a client that sends its hello a byte at a
/// time costs linear work, not quadratic.
pub fn needed_len(bytes: &[u8]) -> Result<Option<usize>, HelloError> {
    let Some(&first) = bytes.first() else {
        return Ok(None);
    };
    if first & 0x80 != 0 {
        return Ok(match bytes {
            [high, low, ..] => Some(2 + usize::from(u16::from_be_bytes([*high, *low]) & 0x7fff)),
            _ => None,
        });
    }
    if first != HANDSHAKE {
        return Err(HelloError::NotTls);
    }
    let mut position = 0;
    let mut payload = 0;
    let mut header = [0u8; 4];
    for _ in 0..MAX_RECORDS {
        let Some(record_header) = bytes.get(position..position + 5) else {
            return Ok(None);
        };
        if record_header[0] != HANDSHAKE {
            return Err(HelloError::Malformed(
                "a non-handshake record inside the ClientHello",
            ));
        }
        let length = usize::from(u16::from_be_bytes([record_header[3], record_header[4]]));
        if length == 0 || length > MAX_RECORD {
            return Err(HelloError::Malformed("record length out of range"));
        }
        let body = position + 5;
        for (index, byte) in bytes.iter().skip(body).take(length).enumerate() {
            if payload + index < 4 {
                header[payload + index] = *byte;
            }
        }
        if payload < 4 && bytes.len() < body + (4 - payload).min(length) {
            return Ok(None);
        }
        payload += length;
        position = body + length;
        if payload >= 4 {
            let message = 4 + handshake_length(&header).expect("four bytes");
            if message > MAX_HELLO {
                return Err(HelloError::Malformed("ClientHello too large"));
            }
            if payload >= message {
                return Ok(Some(position));
            }
        }
    }
    Err(HelloError::Malformed(
        "ClientHello split into too many records",
    ))
}

fn handshake_length(message: &[u8]) -> Option<usize> {
    match message {
        [_, a, b, c, ..] => Some(usize::from(*a) << 16 | usize::from(*b) << 8 | usize::from(*c)),
        _ => None,
    }
}

fn parse_hello_body(mut body: Reader<'_>, record_version: u16) -> Result<ClientHello, HelloError> {
    let legacy_version = body.u16()?;
    body.bytes(32)?; // random
    let session_id_length = usize::from(body.u8()?);
    if session_id_length > 32 {
        return Err(HelloError::Malformed("session id longer than 32 bytes"));
    }
    body.bytes(session_id_length)?;
    let suites_length = usize::from(body.u16()?);
    if suites_length % 2 != 0 {
        return Err(HelloError::Malformed("odd cipher suites length"));
    }
    let mut suites = Reader::complete(body.bytes(suites_length)?);
    let mut cipher_suites = Vec::with_capacity(suites_length / 2);
    while !suites.is_empty() {
        cipher_suites.push(suites.u16()?);
    }
    let compression_length = usize::from(body.u8()?);
    body.bytes(compression_length)?;

    let mut hello = ClientHello {
        record_version,
        legacy_version,
        supported_versions: Vec::new(),
        server_name: None,
        cipher_suites,
        sslv2_format: false,
        extensions: Vec::new(),
        groups: Vec::new(),
        alpn: None,
        signature_algorithms: Vec::new(),
    };
    if body.is_empty() {
        return Ok(hello); // no extensions: SSLv3 and early TLS
    }
    let extensions_length = usize::from(body.u16()?);
    let mut extensions = Reader::complete(body.bytes(extensions_length)?);
    while !extensions.is_empty() {
        let kind = extensions.u16()?;
        let length = usize::from(extensions.u16()?);
        let mut data = Reader::complete(extensions.bytes(length)?);
        if !is_grease(kind) {
            hello.extensions.push(kind);
        }
        match kind {
            EXT_SUPPORTED_GROUPS => {
                let list_length = usize::from(data.u16()?);
                if list_length % 2 != 0 {
                    return Err(HelloError::Malformed("odd supported_groups length"));
                }
                let mut list = Reader::complete(data.bytes(list_length)?);
                while !list.is_empty() {
                    let group = list.u16()?;
                    if !is_grease(group) {
                        hello.groups.push(group);
                    }
                }
            }
            EXT_SUPPORTED_VERSIONS => {
                let list_length = usize::from(data.u8()?);
                if list_length % 2 != 0 {
                    return Err(HelloError::Malformed("odd supported_versions length"));
                }
                let mut list = Reader::complete(data.bytes(list_length)?);
                while !list.is_empty() {
                    let version = list.u16()?;
                    if !is_grease(version) {
                        hello.supported_versions.push(version);
                    }
                }
            }
            EXT_SIGNATURE_ALGORITHMS => {
                let list_length = usize::from(data.u16()?);
                if list_length % 2 != 0 {
                    return Err(HelloError::Malformed("odd signature_algorithms length"));
                }
                let mut list = Reader::complete(data.bytes(list_length)?);
                while !list.is_empty() {
                    hello.signature_algorithms.push(list.u16()?);
                }
            }
            EXT_ALPN => {
                let list_length = usize::from(data.u16()?);
                let mut list = Reader::complete(data.bytes(list_length)?);
                if !list.is_empty() {
                    let length = usize::from(list.u8()?);
                    hello.alpn = Some(list.bytes(length)?.to_vec());
                }
            }
            EXT_SERVER_NAME => {
                let list_length = usize::from(data.u16()?);
                let mut list = Reader::complete(data.bytes(list_length)?);
                while !list.is_empty() {
                    let name_type = list.u8()?;
                    let name_length = usize::from(list.u16()?);
                    let name = list.bytes(name_length)?;
                    if name_type == 0 && hello.server_name.is_none() {
                        hello.server_name = Some(String::from_utf8_lossy(name).into_owned());
                    }
                }
            }
            _ => {}
        }
    }
    Ok(hello)
}

/// RFC 8701 GREASE values: 0x?a?a with both bytes equal.
fn is_grease(value: u16) -> bool {
    value & 0x0f0f == 0x0a0a && value >> 8 == value & 0xff
}

/// The SSLv2-compatible ClientHello (RFC 5246 appendix E.2): a two-byte header with the high
/// bit set, then message type 1, the client version, and 3-byte cipher specs.
fn parse_sslv2_hello(bytes: &[u8]) -> Result<ClientHello, HelloError> {
    let mut header = Reader::new(bytes);
    let length = usize::from(header.u16()? & 0x7fff);
    let mut body = Reader::complete(header.bytes(length)?);
    if body.u8()? != CLIENT_HELLO {
        return Err(HelloError::Malformed("SSLv2 record is not a ClientHello"));
    }
    let legacy_version = body.u16()?;
    let specs_length = usize::from(body.u16()?);
    let session_id_length = usize::from(body.u16()?);
    let challenge_length = usize::from(body.u16()?);
    if specs_length % 3 != 0 {
        return Err(HelloError::Malformed(
            "cipher spec length not a multiple of 3",
        ));
    }
    let mut specs = Reader::complete(body.bytes(specs_length)?);
    body.bytes(session_id_length)?;
    body.bytes(challenge_length)?;
    let mut cipher_suites = Vec::new();
    while !specs.is_empty() {
        let high = specs.u8()?;
        let low = specs.u16()?;
        if high == 0 {
            cipher_suites.push(low);
        }
    }
    Ok(ClientHello {
        record_version: 0x0002,
        legacy_version,
        supported_versions: Vec::new(),
        server_name: None,
        cipher_suites,
        sslv2_format: true,
        extensions: Vec::new(),
        groups: Vec::new(),
        alpn: None,
        signature_algorithms: Vec::new(),
    })
}

/// A bounds-checked reader. Running out of bytes means `Incomplete` for the connection's byte
/// stream, but `Malformed` inside a message whose length is already known.
struct Reader<'a> {
    bytes: &'a [u8],
    short: HelloError,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader {
            bytes,
            short: HelloError::Incomplete,
        }
    }

    fn complete(bytes: &'a [u8]) -> Reader<'a> {
        Reader {
            bytes,
            short: HelloError::Malformed("a length runs past its enclosing structure"),
        }
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn remaining(&self) -> &'a [u8] {
        self.bytes
    }

    fn bytes(&mut self, count: usize) -> Result<&'a [u8], HelloError> {
        if self.bytes.len() < count {
            return Err(self.short.clone());
        }
        let (head, tail) = self.bytes.split_at(count);
        self.bytes = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, HelloError> {
        Ok(self.bytes(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, HelloError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u24(&mut self) -> Result<usize, HelloError> {
        let b = self.bytes(3)?;
        Ok(usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }
}

#[cfg(test)]
mod tests;

/// What kind of suites a ClientHello offers, as OpenSSL describes each one: `TLS 1.3`,
/// `ECDHE AEAD`, `ECDHE CBC`, `DHE`, `RSA key exchange`, and the weak ciphers `3DES` and `RC4`
/// (a suite may count twice: RSA key exchange with 3DES); suites this OpenSSL does not know
/// count as `unknown`. Class -> how many suites.
pub fn suite_classes(cipher_suites: &[u16]) -> std::collections::BTreeMap<&'static str, usize> {
    use openssl::ssl::{Ssl, SslContext, SslMethod};
    let mut classes = std::collections::BTreeMap::new();
    let bytes: Vec<u8> = cipher_suites.iter().flat_map(|s| s.to_be_bytes()).collect();
    let known = SslContext::builder(SslMethod::tls())
        .map(|b| b.build())
        .and_then(|context| Ssl::new(&context))
        .and_then(|ssl| {
            ssl.bytes_to_cipher_list(&bytes, false).map(|lists| {
                lists
                    .suites
                    .iter()
                    .map(|cipher| cipher.description())
                    .collect::<Vec<_>>()
            })
        });
    let descriptions = known.unwrap_or_default();
    let signalling = cipher_suites
        .iter()
        .filter(|s| matches!(**s, 0x00FF | 0x5600) || (**s & 0x0F0F) == 0x0A0A)
        .count();
    for description in &descriptions {
        let field = |name: &str| {
            description
                .split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or("")
                .to_string()
        };
        let (kx, enc, mac) = (field("Kx="), field("Enc="), field("Mac="));
        let class = if description.contains(" TLSv1.3 ") {
            "TLS 1.3"
        } else if kx == "RSA" {
            "RSA key exchange"
        } else if kx.starts_with("ECDH") {
            if mac == "AEAD" {
                "ECDHE AEAD"
            } else {
                "ECDHE CBC"
            }
        } else if kx.starts_with("DH") {
            "DHE"
        } else {
            "other"
        };
        *classes.entry(class).or_insert(0) += 1;
        if enc.starts_with("3DES") {
            *classes.entry("3DES").or_insert(0) += 1;
        }
        if enc.starts_with("RC4") {
            *classes.entry("RC4").or_insert(0) += 1;
        }
    }
    let unknown = cipher_suites
        .len()
        .saturating_sub(descriptions.len() + signalling);
    if unknown > 0 {
        classes.insert("unknown", unknown);
    }
    classes
}

/// What a ClientHello offers, in an admin's words: `offers only TLSv1, with RSA key exchange
/// 4, 3DES 1` or `offers TLSv1.2 to TLSv1.3, with TLS 1.3 3, ECDHE AEAD 12, ...`.
pub fn describe_offer(hello: &ClientHello) -> String {
    let versions = hello.offered_versions();
    let span = match (versions.first(), versions.last()) {
        (Some(low), Some(high)) if low == high => format!("only {}", low.name()),
        (Some(low), Some(high)) => format!("{} to {}", low.name(), high.name()),
        _ => "no version ward knows".to_string(),
    };
    let classes: Vec<String> = suite_classes(&hello.cipher_suites)
        .into_iter()
        .map(|(class, n)| format!("{class} {n}"))
        .collect();
    format!("offers {span}, with {}", classes.join(", "))
}

/// Lowercase hex.
fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
