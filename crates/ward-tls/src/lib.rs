//! ward-tls: everything ward knows about TLS.
//!
//! - [`protocol`]: `SSLProtocol` with Apache httpd 2.4 semantics (pure).
//! - [`conf`]: Apache-style conf files and a listener's [`conf::TlsPolicy`] (pure).
//! - [`edit`]: changing `SSLProtocol` in a file in place, with a backup (pure core, atomic I/O).
//! - [`hello`]: ClientHello parsing (pure).
//! - [`context`]: OpenSSL server and client contexts from a policy.
//! - [`ffi`]: the few OpenSSL calls the `openssl` crate does not wrap (negotiated group,
//!   enabled ciphers), with safe wrappers.
//! - [`record`]: the record layer of an established connection (AEAD, TLS 1.2 and 1.3),
//!   for connections OpenSSL hands over (pure).
//! - [`handoff`]: watching a connection's handshake so OpenSSL can hand its records over to
//!   [`record`] and free its SSL object.
//! - [`replay`]: a real ClientHello replayed in memory through a listener's context: the
//!   exact plan's verdict (OpenSSL, no socket).
//! - [`scan`]: the protocol scanner (sockets).
//! - [`pki`]: a private CA and server certificates (ECDSA and RSA).
//! - [`profile`]: what real client stacks offer (`xp-ie8`, `java6`, ...), for honest
//!   rehearsals.
//! - [`defaults`]: the conf files ward ships.
//! - [`utc`]: UTC timestamps as text.

pub mod conf;
pub mod context;
pub mod defaults;
pub mod edit;
pub mod ffi;
pub mod handoff;
pub mod hello;
pub mod pki;
pub mod profile;
pub mod protocol;
pub mod record;
pub mod replay;
pub mod scan;
pub mod utc;

/// The OpenSSL ward runs on, as its version string says (e.g. `OpenSSL 3.5.5 27 Jan 2026`),
/// and whether it is the build ward vendors.
pub fn openssl_build() -> String {
    let origin = if cfg!(ward_vendored) {
        "built into ward"
    } else {
        "the system's"
    };
    format!("{} ({origin})", openssl::version::version())
}

pub use conf::{listener_conf, Diagnostic, ListenerConf, Location, Severity, TlsPolicy};
pub use protocol::{parse_ssl_protocol, ProtocolError, ProtocolSet, TlsVersion, VersionRange};
