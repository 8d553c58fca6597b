//! Hex and SHA-256 as the protocol writes them: lowercase hex, no separators.

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    out
}

/// Why a text is not hex.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HexError {
    OddLength,
    NotHex,
}

impl std::fmt::Display for HexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HexError::OddLength => "bad hex: odd length",
            HexError::NotHex => "bad hex: not a hex digit",
        })
    }
}

impl std::error::Error for HexError {}

/// The bytes of a hex string (either case); anything but pairs of hex digits is an error.
pub fn unhex(text: &str) -> Result<Vec<u8>, HexError> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return Err(HexError::OddLength);
    }
    let digit = |b: u8| (b as char).to_digit(16).ok_or(HexError::NotHex);
    bytes
        .chunks_exact(2)
        .map(|pair| Ok((digit(pair[0])? * 16 + digit(pair[1])?) as u8))
        .collect()
}

/// The SHA-256 of `bytes`, through OpenSSL's SHA-256 context: its one-shot `SHA256()` looks
/// the digest up by name in the provider store on every call (OpenSSL 3), which a check-in
/// paid for its body hash.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut hasher = openssl::sha::Sha256::new();
    hasher.update(bytes);
    hasher.finish()
}

/// Lowercase hex of the SHA-256 of `text`.
pub fn sha256_hex(text: &str) -> String {
    hex(&sha256(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_garbage() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(unhex("000fa5ff"), Ok(vec![0x00, 0x0f, 0xa5, 0xff]));
        assert_eq!(unhex("000FA5FF"), Ok(vec![0x00, 0x0f, 0xa5, 0xff]));
        assert_eq!(unhex(""), Ok(vec![]));
        assert_eq!(unhex("abc"), Err(HexError::OddLength));
        assert_eq!(unhex("zz"), Err(HexError::NotHex));
        assert_eq!(
            unhex("é"),
            Err(HexError::NotHex),
            "no panic inside a character"
        );
        assert_eq!(unhex("+1"), Err(HexError::NotHex));
    }

    #[test]
    fn sha256_of_the_empty_text() {
        assert_eq!(
            sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
