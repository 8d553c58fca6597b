//! OpenSSL contexts from a policy: the server side (one per HTTPS listener) and the client
//! side (the agent, the scanner). This is where ward-tls touches OpenSSL; the policy model in
//! [`crate::conf`] and [`crate::protocol`] stays free of it.

use std::fmt;
use std::path::{Path, PathBuf};

use openssl::error::ErrorStack;
use openssl::ssl::{
    SslConnector, SslContext, SslContextBuilder, SslContextRef, SslFiletype, SslMethod, SslMode,
    SslOptions, SslSessionCacheMode, SslVerifyMode, SslVersion,
};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::X509;

use crate::conf::{Diagnostic, Located, Location, TlsPolicy};
use crate::protocol::TlsVersion;

/// Why a policy could not become an OpenSSL context; names the directive at fault when there
/// is one, so the operator sees `file:line`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupError {
    pub location: Option<Location>,
    pub message: String,
}

impl SetupError {
    fn at(location: Option<&Location>, message: impl Into<String>) -> SetupError {
        SetupError {
            location: location.cloned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(location) => write!(f, "{location}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for SetupError {}

/// OpenSSL's name for a version.
pub fn ssl_version(version: TlsVersion) -> SslVersion {
    match version {
        TlsVersion::Tls1_0 => SslVersion::TLS1,
        TlsVersion::Tls1_1 => SslVersion::TLS1_1,
        TlsVersion::Tls1_2 => SslVersion::TLS1_2,
        TlsVersion::Tls1_3 => SslVersion::TLS1_3,
    }
}

/// The version OpenSSL reports for a connection (`SslRef::version_str`), back in ward's terms.
pub fn version_from_openssl(name: &str) -> Option<TlsVersion> {
    TlsVersion::ALL.into_iter().find(|v| v.name() == name)
}

fn first_error(stack: &ErrorStack) -> String {
    stack
        .errors()
        .first()
        .and_then(|e| e.reason().map(str::to_string))
        .unwrap_or_else(|| stack.to_string())
}

/// Applies everything of the policy except the certificate and key.
fn apply_policy(builder: &mut SslContextBuilder, policy: &TlsPolicy) -> Result<(), SetupError> {
    let range = policy.protocol.range;
    let protocol_location = policy.protocol_location.as_ref();
    let internal = |e: ErrorStack| SetupError::at(protocol_location, first_error(&e));
    builder
        .set_min_proto_version(Some(ssl_version(range.min)))
        .map_err(internal)?;
    builder
        .set_max_proto_version(Some(ssl_version(range.max)))
        .map_err(internal)?;
    if let Some(level) = policy.forced_security_level() {
        builder.set_security_level(level);
    }
    let mut options = SslOptions::NO_COMPRESSION;
    if policy.honor_cipher_order {
        options |= SslOptions::CIPHER_SERVER_PREFERENCE;
    }
    if policy.session_tickets {
        builder.clear_options(SslOptions::NO_TICKET);
    } else {
        options |= SslOptions::NO_TICKET;
    }
    builder.set_options(options);
    // One TLS 1.3 ticket per handshake (OpenSSL sends two after a full one): an agent keeps
    // one session, and each ticket costs an encryption and a record.
    builder.set_num_tickets(1).map_err(internal)?;
    builder.set_mode(SslMode::RELEASE_BUFFERS);
    builder.set_session_cache_mode(if policy.session_cache {
        SslSessionCacheMode::SERVER
    } else {
        SslSessionCacheMode::OFF
    });
    builder.set_session_id_context(b"ward").map_err(internal)?;
    match &policy.groups {
        Some(groups) => builder.set_groups_list(&groups.value).map_err(|e| {
            SetupError::at(
                Some(&groups.location),
                format!(
                    "SSLOpenSSLConfCmd Groups: OpenSSL rejects '{}': {}",
                    groups.value,
                    first_error(&e)
                ),
            )
        })?,
        None => set_default_groups(builder).map_err(internal)?,
    }
    if let Some(list) = &policy.cipher_list {
        builder.set_cipher_list(&list.value).map_err(|e| {
            SetupError::at(
                Some(&list.location),
                format!(
                    "SSLCipherSuite: OpenSSL rejects the cipher list '{}': {}",
                    list.value,
                    first_error(&e)
                ),
            )
        })?;
    }
    if let Some(list) = &policy.tls13_ciphersuites {
        builder.set_ciphersuites(&list.value).map_err(|e| {
            SetupError::at(
                Some(&list.location),
                format!(
                    "SSLCipherSuite: OpenSSL rejects the TLSv1.3 ciphersuites '{}': {}",
                    list.value,
                    first_error(&e)
                ),
            )
        })?;
    }
    Ok(())
}

/// Checks what OpenSSL thinks of a policy without needing its certificate: the cipher lists
/// and the version range. configtest uses it.
pub fn check_policy(policy: &TlsPolicy) -> Result<Vec<Diagnostic>, SetupError> {
    let mut builder = SslContextBuilder::new(SslMethod::tls_server())
        .map_err(|e| SetupError::at(None, first_error(&e)))?;
    apply_policy(&mut builder, policy)?;
    Ok(weak_suites(&builder.build(), policy))
}

/// Warnings for the weak suites a context really enables (OpenSSL's verdict on the cipher
/// list, not a reading of its words): 3DES (Sweet32) and RC4 (RFC 7465). They exist only in
/// ward's own OpenSSL build, and only when `SSLCipherSuite` names them.
pub fn weak_suites(context: &SslContextRef, policy: &TlsPolicy) -> Vec<Diagnostic> {
    let Some(list) = &policy.cipher_list else {
        return Vec::new();
    };
    let enabled = crate::ffi::enabled_ciphers(context);
    let of = |needle: &str| -> Vec<&str> {
        enabled
            .iter()
            .filter(|name| name.contains(needle))
            .map(String::as_str)
            .collect()
    };
    let mut warnings = Vec::new();
    let des3 = of("DES-CBC3");
    if !des3.is_empty() {
        warnings.push(Diagnostic::warning(
            &list.location,
            format!(
                "SSLCipherSuite enables {} (3DES): a 64-bit block cipher, open to Sweet32 \
                 (CVE-2016-2183) on long connections; keep it only while clients that have \
                 nothing else (Windows XP, Server 2003) need it",
                des3.join(", ")
            ),
        ));
    }
    let rc4 = of("RC4");
    if !rc4.is_empty() {
        warnings.push(Diagnostic::warning(
            &list.location,
            format!(
                "SSLCipherSuite enables {} (RC4), which RFC 7465 prohibits in TLS",
                rc4.join(", ")
            ),
        ));
    }
    warnings
}

/// Resolves a path from a conf file the way Apache resolves it against `ServerRoot`.
pub fn resolve(server_root: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        server_root.join(path)
    }
}

/// Says in an admin's words why a file cannot be read, before OpenSSL would say it with an
/// error stack.
fn readable(path: &Path) -> Result<(), String> {
    match std::fs::File::open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("'{}': no such file", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(format!("'{}': permission denied", path.display()))
        }
        Err(e) => Err(format!("'{}': {e}", path.display())),
    }
}

/// Builds the server context of a listener. Relative certificate paths are resolved against
/// `server_root` (ward's data dir).
pub fn build_acceptor(policy: &TlsPolicy, server_root: &Path) -> Result<SslContext, SetupError> {
    let mut builder = SslContextBuilder::new(SslMethod::tls_server())
        .map_err(|e| SetupError::at(None, first_error(&e)))?;
    apply_policy(&mut builder, policy)?;
    if policy.certificate_files.is_empty() {
        return Err(SetupError::at(
            policy.protocol_location.as_ref(),
            "no SSLCertificateFile: the listener has no certificate",
        ));
    }
    // One certificate per key type, as Apache: OpenSSL keeps one slot per type and serves each
    // client the one it can use (an RSA-only client gets the RSA certificate).
    for (index, cert) in policy.certificate_files.iter().enumerate() {
        let key = policy.certificate_key_files.get(index).unwrap_or(cert);
        load_pair(&mut builder, server_root, cert, key)?;
    }
    // Sessions are bound to what the listener serves: its policy and its certificates. A
    // reload that changes either makes every client's next handshake a full one, so each is
    // judged (and each checks the certificate) under the new settings; otherwise it would
    // resume the session of the old ones for the tickets' lifetime (hours), and a plan that
    // says a new certificate cuts an agent off would not come true until then.
    let mut context = openssl::sha::Sha256::new();
    context.update(format!("{policy:?}").as_bytes());
    for cert in &policy.certificate_files {
        if let Ok(pem) = std::fs::read(resolve(server_root, &cert.value)) {
            context.update(&pem);
        }
    }
    builder
        .set_session_id_context(&context.finish())
        .map_err(|e| SetupError::at(policy.protocol_location.as_ref(), first_error(&e)))?;
    // A connection the server marks can hand its records over after the handshake.
    crate::handoff::enable(&mut builder);
    Ok(builder.build())
}

/// Loads one certificate chain and its key into the context's slot for the key's type.
fn load_pair(
    builder: &mut SslContextBuilder,
    server_root: &Path,
    cert: &Located<String>,
    key: &Located<String>,
) -> Result<(), SetupError> {
    let cert_path = resolve(server_root, &cert.value);
    readable(&cert_path).map_err(|why| {
        SetupError::at(Some(&cert.location), format!("SSLCertificateFile: {why}"))
    })?;
    builder
        .set_certificate_chain_file(&cert_path)
        .map_err(|e| {
            SetupError::at(
                Some(&cert.location),
                format!(
                    "SSLCertificateFile: cannot load '{}': {}",
                    cert_path.display(),
                    first_error(&e)
                ),
            )
        })?;
    let key_path = resolve(server_root, &key.value);
    readable(&key_path).map_err(|why| {
        SetupError::at(Some(&key.location), format!("SSLCertificateKeyFile: {why}"))
    })?;
    builder
        .set_private_key_file(&key_path, SslFiletype::PEM)
        .map_err(|e| {
            SetupError::at(
                Some(&key.location),
                format!(
                    "SSLCertificateKeyFile: cannot load '{}': {}",
                    key_path.display(),
                    first_error(&e)
                ),
            )
        })?;
    builder.check_private_key().map_err(|e| {
        SetupError::at(
            Some(&key.location),
            format!(
                "SSLCertificateKeyFile: the key does not match the certificate: {}",
                first_error(&e)
            ),
        )
    })?;
    Ok(())
}

/// How a client checks the server's certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerVerification {
    /// Against this CA certificate (PEM) only, including the host name.
    Ca(Vec<u8>),
    /// Against the system's trust store, including the host name.
    System,
    /// Not at all: the scanner, and server list entries with `verify_certificate = false`.
    None,
}

/// A client-side TLS configuration: the agent's and the scanner's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientTls {
    /// Lowest version to offer; `None` is OpenSSL's lowest (TLSv1).
    pub min: Option<TlsVersion>,
    /// Highest version to offer; `Some(Tls1_0)` reproduces a Windows XP client.
    pub max: Option<TlsVersion>,
    pub verification: ServerVerification,
    /// TLS <= 1.2 cipher list; `None` is OpenSSL's default, at security level 0 when the range
    /// reaches below TLSv1.2.
    pub cipher_list: Option<String>,
}

impl ClientTls {
    /// A client that speaks `min..=max` and checks nothing: the scanner's probe.
    pub fn probe(version: TlsVersion) -> ClientTls {
        ClientTls {
            min: Some(version),
            max: Some(version),
            verification: ServerVerification::None,
            cipher_list: Some("ALL:COMPLEMENTOFALL:@SECLEVEL=0".into()),
        }
    }

    /// Whether TLSv1 or TLSv1.1 may be offered.
    fn reaches_legacy(&self) -> bool {
        self.min.is_none_or(|min| min < TlsVersion::Tls1_2)
    }
}

/// Builds a client connector. The client session cache is on; a caller that wants resumption
/// keeps the `SslSession` of a connection and sets it on the next one.
pub fn build_connector(config: &ClientTls) -> Result<SslConnector, ErrorStack> {
    Ok(connector_builder(config)?.build())
}

/// The builder behind [`build_connector`], for callers that add to it (a new-session
/// callback, which TLS 1.3 resumption needs: its tickets arrive after the handshake).
pub fn connector_builder(
    config: &ClientTls,
) -> Result<openssl::ssl::SslConnectorBuilder, ErrorStack> {
    let mut builder = SslConnector::builder(SslMethod::tls_client())?;
    builder.set_min_proto_version(config.min.map(ssl_version))?;
    builder.set_max_proto_version(config.max.map(ssl_version))?;
    match &config.cipher_list {
        Some(list) => builder.set_cipher_list(list)?,
        None if config.reaches_legacy() => builder.set_cipher_list("DEFAULT:@SECLEVEL=0")?,
        None => {}
    }
    match &config.verification {
        ServerVerification::Ca(pem) => {
            // Only this CA: a fresh store, without the system's trust anchors that
            // `SslConnector::builder` loads.
            let mut store = X509StoreBuilder::new()?;
            for cert in X509::stack_from_pem(pem)? {
                store.add_cert(cert)?;
            }
            builder.set_cert_store(store.build());
            builder.set_verify(SslVerifyMode::PEER);
        }
        // `SslConnector::builder` has loaded the system's trust store already.
        ServerVerification::System => builder.set_verify(SslVerifyMode::PEER),
        ServerVerification::None => builder.set_verify(SslVerifyMode::NONE),
    }
    builder.set_session_cache_mode(SslSessionCacheMode::CLIENT);
    // OpenSSL reads a record in two reads (its header, then its body) unless it may read
    // ahead, which it does once the handshake is done (a handshake it reads exactly): the
    // answer and its close_notify then come in one `recv`. (Servers read ahead through their
    // own buffer, which an idle connection frees; a client's connection is short or its own.)
    builder.set_read_ahead(true);
    set_default_groups(&mut builder)?;
    Ok(builder)
}

/// The key-exchange groups ward offers and accepts unless a file says otherwise: the hybrid
/// post-quantum group first, then X25519 and the NIST curves. Set explicitly, never through
/// OpenSSL's `DEFAULT` (which 3.5.0-3.5.5 could answer with a less-preferred group).
pub const DEFAULT_GROUPS: &str = "X25519MLKEM768:X25519:P-256:P-384:P-521";

/// [`DEFAULT_GROUPS`] without the post-quantum group, for an OpenSSL older than 3.5.
const CLASSIC_GROUPS: &str = "X25519:P-256:P-384:P-521";

fn set_default_groups(builder: &mut SslContextBuilder) -> Result<(), ErrorStack> {
    builder
        .set_groups_list(DEFAULT_GROUPS)
        .or_else(|_| builder.set_groups_list(CLASSIC_GROUPS))
}

#[cfg(test)]
mod tests;
