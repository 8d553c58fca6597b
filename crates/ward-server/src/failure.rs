//! Why a TLS handshake failed, in words an operator can act on. Pure: the inputs are what the
//! connection saw (the peeked ClientHello, the listener's range, OpenSSL's reason).

use ward_tls::hello::{version_name, ClientHello, HelloError};
use ward_tls::VersionRange;

/// A small fixed set, used as a metrics label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The client offers no version the listener accepts.
    ProtocolVersion,
    NoSharedCipher,
    /// No ClientHello, or no finished handshake, within the handshake timeout.
    Timeout,
    /// The first bytes are not TLS (plain HTTP to an HTTPS port, a port scanner...).
    NotTls,
    MalformedHello,
    /// The client closed the connection during the handshake (often: it rejected our certificate).
    Closed,
    /// The client left after the server had answered with its hello (a version and a suite
    /// were chosen): a scanner, a health check, or a client that dislikes the certificate.
    /// Not a refusal.
    Abandoned,
    /// Refused before the handshake: a connection cap (the listener's, or its address's
    /// connections not yet proven to be agents) was full. The address is kept, so readiness
    /// and plans can name the agents behind it.
    Capped,
    Other,
}

impl FailureKind {
    pub const ALL: [FailureKind; 9] = [
        FailureKind::ProtocolVersion,
        FailureKind::NoSharedCipher,
        FailureKind::Timeout,
        FailureKind::NotTls,
        FailureKind::MalformedHello,
        FailureKind::Closed,
        FailureKind::Abandoned,
        FailureKind::Capped,
        FailureKind::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FailureKind::ProtocolVersion => "protocol_version",
            FailureKind::NoSharedCipher => "no_shared_cipher",
            FailureKind::Timeout => "timeout",
            FailureKind::NotTls => "not_tls",
            FailureKind::MalformedHello => "malformed_hello",
            FailureKind::Closed => "closed",
            FailureKind::Abandoned => "abandoned",
            FailureKind::Capped => "connection_cap",
            FailureKind::Other => "other",
        }
    }
}

/// How the handshake ended, as the connection task saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandshakeEnd {
    /// The handshake timeout passed.
    TimedOut,
    /// OpenSSL failed; its first reason, when it gave one.
    OpenSsl(Option<String>),
    /// The peer closed the connection, or an I/O error.
    Closed,
    /// The server had sent its hello (this version and suite) when the peer went away.
    Abandoned { version: String, cipher: String },
}

fn versions_text(versions: &[String]) -> String {
    match versions {
        [] => "nothing".to_string(),
        [one] => one.clone(),
        [first, .., last] => format!("{first}-{last}"),
    }
}

/// Classifies a failed handshake and words the reason.
pub fn classify(
    hello: Result<&ClientHello, &HelloError>,
    range: VersionRange,
    end: &HandshakeEnd,
    handshake_timeout_secs: u64,
) -> (FailureKind, String) {
    let hello = match hello {
        Ok(hello) => hello,
        Err(HelloError::NotTls) => {
            return (
                FailureKind::NotTls,
                "not a TLS ClientHello (plain HTTP sent to an HTTPS port?)".into(),
            )
        }
        Err(HelloError::Malformed(what)) => {
            return (
                FailureKind::MalformedHello,
                format!("malformed ClientHello: {what}"),
            )
        }
        Err(HelloError::Incomplete) => {
            return match end {
                HandshakeEnd::TimedOut => (
                    FailureKind::Timeout,
                    format!("no complete ClientHello within {handshake_timeout_secs}s"),
                ),
                _ => (
                    FailureKind::Closed,
                    "connection closed before a complete ClientHello".into(),
                ),
            }
        }
    };
    let offered = hello.offered_versions();
    if !offered.iter().any(|v| range.contains(*v)) {
        let names: Vec<String> = if offered.is_empty() {
            vec![version_name(hello.max_version())]
        } else {
            offered.iter().map(|v| v.name().to_string()).collect()
        };
        return (
            FailureKind::ProtocolVersion,
            format!(
                "client offers only {}, listener accepts {range}",
                versions_text(&names)
            ),
        );
    }
    match end {
        HandshakeEnd::Abandoned { version, cipher } => (
            FailureKind::Abandoned,
            format!(
                "the client left after the server's hello ({version}, {cipher} chosen): a \
                 scanner or health check, or a client that does not trust the certificate"
            ),
        ),
        HandshakeEnd::TimedOut => (
            FailureKind::Timeout,
            format!("handshake not finished within {handshake_timeout_secs}s"),
        ),
        HandshakeEnd::OpenSsl(Some(reason)) if reason.contains("no shared cipher") => (
            FailureKind::NoSharedCipher,
            format!(
                "no cipher in common: the client offers {} suites, none allowed on this listener",
                hello.cipher_suites.len()
            ),
        ),
        HandshakeEnd::OpenSsl(Some(reason)) => (FailureKind::Other, reason.clone()),
        HandshakeEnd::OpenSsl(None) | HandshakeEnd::Closed => (
            FailureKind::Closed,
            "client closed the connection during the handshake (does it trust the server \
             certificate?)"
                .into(),
        ),
    }
}

/// The highest version a ClientHello offers, by name, and all offered versions.
pub fn offered(hello: &ClientHello) -> (String, Vec<String>) {
    let versions: Vec<String> = hello
        .offered_versions()
        .into_iter()
        .map(|v| v.name().to_string())
        .collect();
    (version_name(hello.max_version()), versions)
}

#[cfg(test)]
mod tests;
