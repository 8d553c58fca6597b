//! `SSLProtocol` with the exact semantics of Apache httpd 2.4 mod_ssl built on OpenSSL 3.
//!
//! This module is pure: no I/O, no OpenSSL calls. It mirrors two places of mod_ssl:
//! `ssl_cmd_protocol_parse()` (ssl_engine_config.c), which turns the directive's words into a
//! bit set, and `ssl_init_ctx_protocol()` (ssl_engine_init.c), which turns the set into an
//! OpenSSL min/max range "without holes".

use std::fmt;

/// A TLS protocol version that OpenSSL 3 can negotiate. SSLv3 is deliberately absent: Debian's
/// OpenSSL is built without it, so Apache (and ward) can never enable it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    Tls1_0,
    Tls1_1,
    Tls1_2,
    Tls1_3,
}

impl TlsVersion {
    /// Every version, lowest first.
    pub const ALL: [TlsVersion; 4] = [
        TlsVersion::Tls1_0,
        TlsVersion::Tls1_1,
        TlsVersion::Tls1_2,
        TlsVersion::Tls1_3,
    ];

    /// The name Apache and OpenSSL use: `TLSv1`, `TLSv1.1`, `TLSv1.2`, `TLSv1.3`.
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::Tls1_0 => "TLSv1",
            TlsVersion::Tls1_1 => "TLSv1.1",
            TlsVersion::Tls1_2 => "TLSv1.2",
            TlsVersion::Tls1_3 => "TLSv1.3",
        }
    }

    /// The version number on the wire (`ProtocolVersion` of RFC 8446).
    pub fn wire(self) -> u16 {
        match self {
            TlsVersion::Tls1_0 => 0x0301,
            TlsVersion::Tls1_1 => 0x0302,
            TlsVersion::Tls1_2 => 0x0303,
            TlsVersion::Tls1_3 => 0x0304,
        }
    }

    pub fn from_wire(wire: u16) -> Option<TlsVersion> {
        TlsVersion::ALL.into_iter().find(|v| v.wire() == wire)
    }

    /// Parses the spellings an operator is likely to type on a command line: `TLSv1`,
    /// `TLSv1.0`, `tls1.2`, `1.2`, `1`. This is *not* the SSLProtocol word parser, which is
    /// strict on purpose (see [`parse_ssl_protocol`]).
    pub fn parse_loose(text: &str) -> Option<TlsVersion> {
        let lower = text.trim().to_ascii_lowercase();
        let number = lower
            .strip_prefix("tlsv")
            .or_else(|| lower.strip_prefix("tls"))
            .unwrap_or(&lower);
        match number {
            "1" | "1.0" | "10" => Some(TlsVersion::Tls1_0),
            "1.1" | "11" => Some(TlsVersion::Tls1_1),
            "1.2" | "12" => Some(TlsVersion::Tls1_2),
            "1.3" | "13" => Some(TlsVersion::Tls1_3),
            _ => None,
        }
    }

    /// The version just below this one, if OpenSSL 3 has it.
    pub fn next_lower(self) -> Option<TlsVersion> {
        match self {
            TlsVersion::Tls1_0 => None,
            TlsVersion::Tls1_1 => Some(TlsVersion::Tls1_0),
            TlsVersion::Tls1_2 => Some(TlsVersion::Tls1_1),
            TlsVersion::Tls1_3 => Some(TlsVersion::Tls1_2),
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// mod_ssl's `ssl_proto_t` restricted to what OpenSSL 3 offers: a set of TLS versions.
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct ProtocolSet(u8);

impl ProtocolSet {
    pub const EMPTY: ProtocolSet = ProtocolSet(0);
    /// `all`: TLSv1 through TLSv1.3 (SSLv3 does not exist in this build).
    pub const ALL: ProtocolSet = ProtocolSet(0b1111);
    /// What a listener gets with no `SSLProtocol` directive at all: `all` minus SSLv3.
    pub const APACHE_DEFAULT: ProtocolSet = ProtocolSet::ALL;

    pub fn only(version: TlsVersion) -> ProtocolSet {
        ProtocolSet(version.bit())
    }

    pub fn contains(self, version: TlsVersion) -> bool {
        self.0 & version.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: ProtocolSet) -> ProtocolSet {
        ProtocolSet(self.0 | other.0)
    }

    pub fn difference(self, other: ProtocolSet) -> ProtocolSet {
        ProtocolSet(self.0 & !other.0)
    }

    /// The versions in the set, lowest first.
    pub fn iter(self) -> impl Iterator<Item = TlsVersion> {
        TlsVersion::ALL
            .into_iter()
            .filter(move |v| self.contains(*v))
    }

    /// What `ssl_init_ctx_protocol()` makes of the set: OpenSSL's max is the highest version,
    /// and the min walks down from there while the next version is present, so everything
    /// below the first hole is dropped (`all -TLSv1.1` serves TLSv1.2 and TLSv1.3 only).
    /// `None` for the empty set, which Apache refuses to start with.
    pub fn enabled_range(self) -> Option<VersionRange> {
        let max = self.iter().last()?;
        let mut min = max;
        while let Some(lower) = min.next_lower().filter(|v| self.contains(*v)) {
            min = lower;
        }
        Some(VersionRange { min, max })
    }
}

impl fmt::Debug for ProtocolSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl FromIterator<TlsVersion> for ProtocolSet {
    fn from_iter<I: IntoIterator<Item = TlsVersion>>(iter: I) -> ProtocolSet {
        iter.into_iter()
            .fold(ProtocolSet::EMPTY, |set, v| set.union(ProtocolSet::only(v)))
    }
}

/// A contiguous range of versions, the only shape OpenSSL's min/max can express.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VersionRange {
    pub min: TlsVersion,
    pub max: TlsVersion,
}

impl VersionRange {
    pub fn new(min: TlsVersion, max: TlsVersion) -> VersionRange {
        assert!(min <= max, "a version range runs from low to high");
        VersionRange { min, max }
    }

    pub fn contains(self, version: TlsVersion) -> bool {
        self.min <= version && version <= self.max
    }

    pub fn versions(self) -> impl Iterator<Item = TlsVersion> {
        TlsVersion::ALL
            .into_iter()
            .filter(move |v| self.contains(*v))
    }

    /// True when TLSv1 or TLSv1.1 is in the range: OpenSSL 3 only serves those at security
    /// level 0.
    pub fn includes_legacy(self) -> bool {
        self.min < TlsVersion::Tls1_2
    }
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

/// Why Apache refuses an `SSLProtocol` value. `Display` is Apache's own wording.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// `SSLv2` or `+SSLv2`.
    Sslv2Unsupported,
    /// `SSLv3` or `+SSLv3`: Debian's OpenSSL 3 is built with `no-ssl3`.
    Sslv3Unsupported,
    /// A word that names no protocol, such as `TLSv1.0`.
    Illegal(String),
    /// The words leave no version enabled; Apache stops at start-up (AH02231).
    NoneAvailable,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Sslv2Unsupported => {
                f.write_str("SSLProtocol: SSLv2 is no longer supported")
            }
            ProtocolError::Sslv3Unsupported => {
                f.write_str("SSLv3 not supported by this version of OpenSSL")
            }
            ProtocolError::Illegal(word) => write!(f, "SSLProtocol: Illegal protocol '{word}'"),
            ProtocolError::NoneAvailable => {
                f.write_str("No SSL protocols available [hint: SSLProtocol]")
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

/// The outcome of one `SSLProtocol` directive that Apache accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolDecision {
    /// The set as mod_ssl stores it, before the "no holes" rule.
    pub set: ProtocolSet,
    /// The versions OpenSSL will really negotiate.
    pub range: VersionRange,
    /// Apache's warnings, in Apache's words (AH02532).
    pub warnings: Vec<String>,
}

impl ProtocolDecision {
    /// Versions the words asked for that the "no holes" rule drops.
    pub fn dropped(&self) -> ProtocolSet {
        self.set
            .difference(self.range.versions().collect::<ProtocolSet>())
    }
}

/// Decides one `SSLProtocol` directive from its words, exactly as mod_ssl does: the set starts
/// empty, words are case-insensitive, `+`/`-` add or remove, a bare word replaces the set (with
/// AH02532 when it was not empty), `-SSLv2`/`-SSLv3` do nothing, and the result must not be
/// empty.
pub fn parse_ssl_protocol<S: AsRef<str>>(words: &[S]) -> Result<ProtocolDecision, ProtocolError> {
    let mut set = ProtocolSet::EMPTY;
    let mut warnings = Vec::new();
    for word in words {
        let word = word.as_ref();
        let (action, name) = match word.as_bytes().first() {
            Some(b'+') => (Some('+'), &word[1..]),
            Some(b'-') => (Some('-'), &word[1..]),
            _ => (None, word),
        };
        let this = if name.eq_ignore_ascii_case("SSLv2") {
            if action == Some('-') {
                continue;
            }
            return Err(ProtocolError::Sslv2Unsupported);
        } else if name.eq_ignore_ascii_case("SSLv3") {
            if action == Some('-') {
                continue;
            }
            return Err(ProtocolError::Sslv3Unsupported);
        } else if name.eq_ignore_ascii_case("all") {
            ProtocolSet::ALL
        } else if let Some(version) = TlsVersion::ALL
            .into_iter()
            .find(|v| name.eq_ignore_ascii_case(v.name()))
        {
            ProtocolSet::only(version)
        } else {
            return Err(ProtocolError::Illegal(name.to_string()));
        };
        set = match action {
            Some('-') => set.difference(this),
            Some(_) => set.union(this),
            None => {
                if !set.is_empty() {
                    warnings.push(format!(
                        "AH02532: SSLProtocol: Protocol '{name}' overrides already set \
                         parameter(s). Check if a +/- prefix is missing."
                    ));
                }
                this
            }
        };
    }
    let range = set.enabled_range().ok_or(ProtocolError::NoneAvailable)?;
    Ok(ProtocolDecision {
        set,
        range,
        warnings,
    })
}

/// Whitespace as Apache's `apr_isspace` (C `isspace` in the C locale) sees it: ASCII only.
/// A no-break or ideographic space is part of a word, so `all\u{3000}-TLSv1` is one
/// (illegal) word for Apache, and for ward.
pub fn is_apache_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// Splits a directive's arguments the way Apache's `ap_getword_conf()` does: on whitespace,
/// with `"..."` or `'...'` quoting and a backslash escaping the quote character inside quotes.
pub fn split_words(args: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = args.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| is_apache_space(*c)) {
            chars.next();
        }
        let Some(&first) = chars.peek() else {
            break;
        };
        let mut word = String::new();
        if first == '"' || first == '\'' {
            chars.next();
            while let Some(c) = chars.next() {
                if c == '\\' && chars.peek() == Some(&first) {
                    word.push(first);
                    chars.next();
                } else if c == first {
                    break;
                } else {
                    word.push(c);
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if is_apache_space(c) {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests;
