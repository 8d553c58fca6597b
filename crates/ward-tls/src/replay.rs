//! The exact plan's verdict: a client's real ClientHello replayed, in memory and with no
//! socket, through a listener's OpenSSL context, exactly as the server would build it. The
//! server's own answer is the verdict: its hello (with the version, suite, group and the
//! certificate's key type it chose), or the alert it sends.
//!
//! So a protocol, cipher, certificate, security level or group change is predicted by
//! OpenSSL itself, not by a model of it.

use std::io::{self, Read, Write};

use openssl::pkey::Id;
use openssl::ssl::{ErrorCode, Ssl, SslContextRef, SslStream};

use crate::protocol::TlsVersion;

/// What the listener would answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It answers with its hello: the handshake would go on.
    Served {
        version: TlsVersion,
        cipher: String,
        /// The key-exchange group; `None` for RSA key exchange.
        group: Option<&'static str>,
        /// The key type of the certificate it would send (`RSA`, `EC`, ...).
        certificate: Option<&'static str>,
    },
    /// It refuses: OpenSSL's reason (`unsupported protocol`, `no shared cipher`, ...).
    Refused { reason: String },
}

impl Verdict {
    pub fn served(&self) -> bool {
        matches!(self, Verdict::Served { .. })
    }
}

/// The client's side of a replay: the hello to read once, then nothing more; what the server
/// writes is kept.
struct Replay<'a> {
    hello: &'a [u8],
    written: Vec<u8>,
}

impl Read for Replay<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.hello.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.hello.len());
        buf[..n].copy_from_slice(&self.hello[..n]);
        self.hello = &self.hello[n..];
        Ok(n)
    }
}

impl Write for Replay<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.written.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn key_type(id: Id) -> &'static str {
    match id {
        Id::RSA => "RSA",
        Id::EC => "EC",
        Id::ED25519 => "Ed25519",
        Id::ED448 => "Ed448",
        Id::DSA => "DSA",
        _ => "other",
    }
}

/// A transport that keeps what a client writes and never has anything to read.
#[derive(Debug, Default)]
struct Capture(Vec<u8>);

impl Read for Capture {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The ClientHello (records included) a client configured as `config` sends to
/// `server_name`, without sending it anywhere: for tests and benchmarks that need real hellos.
pub fn client_hello(
    config: openssl::ssl::ConnectConfiguration,
    server_name: &str,
) -> Result<Vec<u8>, String> {
    match config.connect(server_name, Capture::default()) {
        Err(openssl::ssl::HandshakeError::WouldBlock(mid)) => Ok(mid.get_ref().0.clone()),
        Err(openssl::ssl::HandshakeError::SetupFailure(error)) => Err(error.to_string()),
        Err(openssl::ssl::HandshakeError::Failure(mid)) => Err(mid.error().to_string()),
        Ok(_) => Err("the handshake completed without a server (impossible)".into()),
    }
}

/// Replays `hello` (the raw bytes a client sent, records included) through `context`.
pub fn replay(context: &SslContextRef, hello: &[u8]) -> Verdict {
    let refused = |reason: String| Verdict::Refused { reason };
    let ssl = match Ssl::new(context) {
        Ok(ssl) => ssl,
        Err(e) => return refused(format!("the context cannot make a connection: {e}")),
    };
    let mut stream = match SslStream::new(
        ssl,
        Replay {
            hello,
            written: Vec::new(),
        },
    ) {
        Ok(stream) => stream,
        Err(e) => return refused(e.to_string()),
    };
    match stream.accept() {
        // Waiting for the client's next flight: the server has answered with its hello.
        Err(error) if error.code() == ErrorCode::WANT_READ => {
            let ssl = stream.ssl();
            // Below TLS 1.3 the chosen suite is pending until the handshake finishes.
            let Some(cipher) = crate::ffi::chosen_cipher(ssl) else {
                return refused("no answer to the ClientHello (incomplete?)".into());
            };
            let Some(version) = TlsVersion::parse_loose(ssl.version_str()) else {
                return refused(format!("an unexpected version {}", ssl.version_str()));
            };
            Verdict::Served {
                version,
                cipher: cipher.name().to_string(),
                group: crate::ffi::negotiated_group(ssl),
                certificate: ssl
                    .certificate()
                    .and_then(|c| c.public_key().ok())
                    .map(|k| key_type(k.id())),
            }
        }
        Ok(()) => refused("the handshake completed without the client (impossible)".into()),
        Err(error) => {
            let reason = error
                .ssl_error()
                .and_then(|stack| stack.errors().first())
                .and_then(|e| e.reason())
                .map(str::to_string)
                .unwrap_or_else(|| error.to_string());
            refused(reason)
        }
    }
}
