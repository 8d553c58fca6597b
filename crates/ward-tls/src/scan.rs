//! The protocol scanner: one handshake pinned to each protocol version, in the spirit of
//! testssl.sh. TLSv1 to TLSv1.3 go through OpenSSL; SSLv3, which Debian's OpenSSL cannot
//! speak, goes through a hand-built ClientHello and a look at the server's first answer.
//!
//! I/O at the edge: blocking sockets with timeouts, one thread per probe.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::thread;
use std::time::Duration;

use crate::context::{build_connector, ClientTls};
use crate::protocol::TlsVersion;

/// A protocol the scanner probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Probe {
    Ssl3,
    Tls(TlsVersion),
}

impl Probe {
    /// SSLv3, then TLSv1 to TLSv1.3.
    pub const ALL: [Probe; 5] = [
        Probe::Ssl3,
        Probe::Tls(TlsVersion::Tls1_0),
        Probe::Tls(TlsVersion::Tls1_1),
        Probe::Tls(TlsVersion::Tls1_2),
        Probe::Tls(TlsVersion::Tls1_3),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Probe::Ssl3 => "SSLv3",
            Probe::Tls(version) => version.name(),
        }
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The answer to one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The server completed a handshake at this version, with this cipher.
    Accepted { cipher: String },
    /// The server refused this version; `reason` says how.
    Refused { reason: String },
}

impl Outcome {
    pub fn accepted(&self) -> bool {
        matches!(self, Outcome::Accepted { .. })
    }
}

#[derive(Clone, Debug)]
pub struct ScanConfig {
    /// Bound on each socket operation of a probe (connect, each read, each write).
    pub timeout: Duration,
    /// The name sent as SNI; defaults to the target's host part when it is not an address.
    pub server_name: Option<String>,
}

impl Default for ScanConfig {
    fn default() -> ScanConfig {
        ScanConfig {
            timeout: Duration::from_secs(5),
            server_name: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ScanReport {
    pub target: String,
    pub address: SocketAddr,
    /// One entry per [`Probe::ALL`], in that order.
    pub results: Vec<(Probe, Outcome)>,
    /// The TLS 1.3 key-exchange groups of [`SCAN_GROUPS`], each offered alone, and whether
    /// the server took it (empty when it refuses TLS 1.3).
    pub groups: Vec<(&'static str, bool)>,
}

/// The groups a scan offers one at a time over TLS 1.3, post-quantum first.
pub const SCAN_GROUPS: &[&str] = &[
    "X25519MLKEM768",
    "SecP256r1MLKEM768",
    "X25519",
    "P-256",
    "P-384",
    "P-521",
    "ffdhe2048",
];

impl ScanReport {
    pub fn accepted(&self) -> impl Iterator<Item = Probe> + '_ {
        self.results
            .iter()
            .filter(|(_, outcome)| outcome.accepted())
            .map(|(probe, _)| *probe)
    }
}

#[derive(Debug)]
pub enum ScanError {
    /// The target is not `HOST:PORT`, or the host does not resolve.
    BadTarget(String),
    /// Nothing accepts TCP connections there: no table of refusals for a dead target.
    Unreachable { target: String, error: io::Error },
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScanError::BadTarget(message) => f.write_str(message),
            ScanError::Unreachable { target, error } => {
                write!(f, "cannot connect to {target}: {error}")
            }
        }
    }
}

impl std::error::Error for ScanError {}

/// Scans `target` (`HOST:PORT`, `[::1]:443`): first checks that it accepts TCP at all, then
/// runs every probe concurrently, each bounded by `config.timeout`.
pub fn scan(target: &str, config: &ScanConfig) -> Result<ScanReport, ScanError> {
    let (host, _) = target
        .rsplit_once(':')
        .ok_or_else(|| ScanError::BadTarget(format!("{target}: expected HOST:PORT")))?;
    let address = target
        .to_socket_addrs()
        .map_err(|e| ScanError::BadTarget(format!("{target}: {e}")))?
        .next()
        .ok_or_else(|| ScanError::BadTarget(format!("{target}: no address")))?;
    TcpStream::connect_timeout(&address, config.timeout).map_err(|error| {
        ScanError::Unreachable {
            target: target.to_string(),
            error,
        }
    })?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let server_name = config.server_name.clone().or_else(|| {
        host.parse::<std::net::IpAddr>()
            .is_err()
            .then(|| host.to_string())
    });

    let results: Vec<(Probe, Outcome)> = thread::scope(|scope| {
        let handles: Vec<_> = Probe::ALL
            .into_iter()
            .map(|probe| {
                let server_name = server_name.as_deref();
                scope.spawn(move || {
                    (
                        probe,
                        run_probe(probe, address, server_name, config.timeout),
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a probe thread does not panic"))
            .collect()
    });
    let tls13 = results
        .iter()
        .any(|(probe, outcome)| *probe == Probe::Tls(TlsVersion::Tls1_3) && outcome.accepted());
    let groups = if tls13 {
        thread::scope(|scope| {
            let handles: Vec<_> = SCAN_GROUPS
                .iter()
                .map(|group| {
                    let server_name = server_name.as_deref();
                    scope.spawn(move || {
                        (
                            *group,
                            probe_group(group, address, server_name, config.timeout),
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a probe thread does not panic"))
                .collect()
        })
    } else {
        Vec::new()
    };
    Ok(ScanReport {
        target: target.to_string(),
        address,
        results,
        groups,
    })
}

/// One TLS 1.3 handshake offering only `group`: whether the server completes it.
fn probe_group(
    group: &str,
    address: SocketAddr,
    server_name: Option<&str>,
    timeout: Duration,
) -> bool {
    let Ok(stream) = connect(address, timeout) else {
        return false;
    };
    let Ok(mut builder) = crate::context::connector_builder(&ClientTls::probe(TlsVersion::Tls1_3))
    else {
        return false;
    };
    // A group this OpenSSL does not know cannot be offered: not accepted, as far as we know.
    if builder.set_groups_list(group).is_err() {
        return false;
    }
    let connector = builder.build();
    let Ok(mut config) = connector.configure() else {
        return false;
    };
    config.set_use_server_name_indication(server_name.is_some());
    config.set_verify_hostname(false);
    match config.connect(server_name.unwrap_or(""), stream) {
        Ok(mut tls) => {
            let _ = tls.shutdown();
            true
        }
        Err(_) => false,
    }
}

fn connect(address: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&address, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn run_probe(
    probe: Probe,
    address: SocketAddr,
    server_name: Option<&str>,
    timeout: Duration,
) -> Outcome {
    let stream = match connect(address, timeout) {
        Ok(stream) => stream,
        Err(e) => {
            return Outcome::Refused {
                reason: format!("connect: {e}"),
            }
        }
    };
    match probe {
        Probe::Ssl3 => probe_sslv3(stream),
        Probe::Tls(version) => probe_tls(version, stream, server_name),
    }
}

fn probe_tls(version: TlsVersion, stream: TcpStream, server_name: Option<&str>) -> Outcome {
    let connector = match build_connector(&ClientTls::probe(version)) {
        Ok(connector) => connector,
        Err(e) => {
            return Outcome::Refused {
                reason: format!("local OpenSSL cannot offer {version}: {e}"),
            }
        }
    };
    let mut config = match connector.configure() {
        Ok(config) => config,
        Err(e) => {
            return Outcome::Refused {
                reason: e.to_string(),
            }
        }
    };
    config.set_use_server_name_indication(server_name.is_some());
    config.set_verify_hostname(false);
    match config.connect(server_name.unwrap_or(""), stream) {
        Ok(mut tls) => {
            let negotiated = tls.ssl().version_str().to_string();
            let cipher = tls
                .ssl()
                .current_cipher()
                .map(|c| c.name().to_string())
                .unwrap_or_default();
            let _ = tls.shutdown();
            if negotiated == version.name() {
                Outcome::Accepted { cipher }
            } else {
                Outcome::Refused {
                    reason: format!("server negotiated {negotiated}"),
                }
            }
        }
        Err(e) => Outcome::Refused {
            reason: handshake_reason(&e),
        },
    }
}

fn handshake_reason<S: fmt::Debug>(error: &openssl::ssl::HandshakeError<S>) -> String {
    use openssl::ssl::HandshakeError;
    match error {
        HandshakeError::SetupFailure(stack) => stack.to_string(),
        HandshakeError::Failure(mid) | HandshakeError::WouldBlock(mid) => {
            let error = mid.error();
            if let Some(stack) = error.ssl_error() {
                if let Some(reason) = stack.errors().first().and_then(|e| e.reason()) {
                    return reason.to_string();
                }
            }
            if let Some(io) = error.io_error() {
                return io.to_string();
            }
            "connection closed during handshake".to_string()
        }
    }
}

/// Cipher suites an SSLv3 server may choose, with OpenSSL's names.
const SSLV3_SUITES: &[(u16, &str)] = &[
    (0xc014, "ECDHE-RSA-AES256-SHA"),
    (0xc00a, "ECDHE-ECDSA-AES256-SHA"),
    (0xc013, "ECDHE-RSA-AES128-SHA"),
    (0xc009, "ECDHE-ECDSA-AES128-SHA"),
    (0x0039, "DHE-RSA-AES256-SHA"),
    (0x0033, "DHE-RSA-AES128-SHA"),
    (0x0035, "AES256-SHA"),
    (0x002f, "AES128-SHA"),
    (0x000a, "DES-CBC3-SHA"),
    (0x0016, "EDH-RSA-DES-CBC3-SHA"),
    (0x0005, "RC4-SHA"),
    (0x0004, "RC4-MD5"),
];

/// An SSLv3 ClientHello: record and client version 3.0, the suites above, no extensions but
/// the elliptic-curve ones an ECDSA server needs to pick an ECDHE suite.
pub fn sslv3_client_hello(random: [u8; 32]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&[3, 0]);
    body.extend_from_slice(&random);
    body.push(0); // no session id
    body.extend_from_slice(&((SSLV3_SUITES.len() * 2) as u16).to_be_bytes());
    for (suite, _) in SSLV3_SUITES {
        body.extend_from_slice(&suite.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // null compression
    let extensions: &[u8] = &[
        0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x17, 0x00, 0x18, // groups: P-256, P-384
        0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, // point formats: uncompressed
    ];
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend_from_slice(extensions);

    let mut handshake = vec![1];
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![22, 3, 0];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

/// What a server's first bytes say about an SSLv3 ClientHello.
pub fn sslv3_verdict(response: &[u8]) -> Outcome {
    let refused = |reason: String| Outcome::Refused { reason };
    match response {
        [] => refused("connection closed without an answer".into()),
        [21, _, _, _, _, _level, description, ..] => {
            refused(format!("alert: {}", alert_name(*description)))
        }
        [22, _, _, _, _, 2, _, _, _, major, minor, rest @ ..] => {
            let version = u16::from_be_bytes([*major, *minor]);
            if version != 0x0300 {
                return refused(format!(
                    "server answered {}",
                    crate::hello::version_name(version)
                ));
            }
            // random (32), session id length and id, then the suite.
            let suite = rest
                .get(32)
                .map(|&len| 33 + usize::from(len))
                .and_then(|at| rest.get(at..at + 2))
                .map(|b| u16::from_be_bytes([b[0], b[1]]));
            let cipher = match suite {
                Some(suite) => SSLV3_SUITES
                    .iter()
                    .find(|(id, _)| *id == suite)
                    .map_or_else(|| format!("0x{suite:04x}"), |(_, name)| name.to_string()),
                None => String::new(),
            };
            Outcome::Accepted { cipher }
        }
        _ => refused("unexpected answer".into()),
    }
}

fn alert_name(description: u8) -> String {
    match description {
        0 => "close notify".into(),
        10 => "unexpected message".into(),
        40 => "handshake failure".into(),
        47 => "illegal parameter".into(),
        50 => "decode error".into(),
        70 => "protocol version".into(),
        71 => "insufficient security".into(),
        80 => "internal error".into(),
        other => format!("alert {other}"),
    }
}

fn probe_sslv3(mut stream: TcpStream) -> Outcome {
    let mut random = [0u8; 32];
    if openssl::rand::rand_bytes(&mut random).is_err() {
        return Outcome::Refused {
            reason: "no randomness".into(),
        };
    }
    if let Err(e) = stream.write_all(&sslv3_client_hello(random)) {
        return Outcome::Refused {
            reason: format!("send: {e}"),
        };
    }
    let mut response = Vec::new();
    let mut buffer = [0u8; 512];
    // Read until the verdict cannot change: an alert, or a ServerHello long enough to hold
    // the cipher suite, or the end of the stream.
    while response.len() < 128 {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buffer[..n]),
            Err(e) if response.is_empty() => {
                return Outcome::Refused {
                    reason: format!("no answer: {e}"),
                }
            }
            Err(_) => break,
        }
        if response.len() >= 7 && response[0] == 21 {
            break;
        }
    }
    sslv3_verdict(&response)
}

#[cfg(test)]
mod tests;
