//! ward-tls: everything ward knows about TLS.
//!
//! - [`protocol`]: `SSLProtocol` with Apache httpd 2.4 semantics (pure).
//! - [`conf`]: Apache-style conf files and a listener's [`conf::TlsPolicy`] (pure).
//! - [`edit`]: changing `SSLProtocol` in a file in place, with a backup (pure core, atomic I/O).
//! - [`hello`]: ClientHello parsing (pure).
//! - [`context`]: OpenSSL server and client contexts from a policy.
//! - [`scan`]: the protocol scanner (sockets).
//! - [`pki`]: a private CA and server certificates.
//! - [`defaults`]: the conf files ward ships.
//! - [`utc`]: UTC timestamps as text.

pub mod conf;
pub mod context;
pub mod defaults;
pub mod edit;
pub mod hello;
pub mod pki;
pub mod protocol;
pub mod scan;
pub mod utc;

pub use conf::{listener_conf, Diagnostic, ListenerConf, Location, Severity, TlsPolicy};
pub use protocol::{parse_ssl_protocol, ProtocolError, ProtocolSet, TlsVersion, VersionRange};
