//! Each HTTPS listener's TLS, built from its conf file: loading, checking (configtest) and the
//! atomically swappable slot that reload replaces.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use openssl::ssl::SslContext;
use ward_tls::conf::{self, Located, Severity, TlsPolicy};
use ward_tls::context;

use crate::config::{Config, Role};
use crate::datadir::DataDir;

/// A built, checked acceptor and the policy it came from.
pub struct ListenerTls {
    pub context: SslContext,
    pub policy: TlsPolicy,
    pub file: PathBuf,
}

/// Findings as JSON: `[{"severity", "message"}]`, for the API and the CLI.
pub fn findings_json(findings: &[Finding]) -> serde_json::Value {
    serde_json::json!(findings
        .iter()
        .map(|f| serde_json::json!({"severity": f.severity.to_string(), "message": f.text}))
        .collect::<Vec<_>>())
}

/// One line of configtest or reload output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// `file:line: message`, or `file: message` when no line applies.
    pub text: String,
}

impl Finding {
    fn new(severity: Severity, text: impl Into<String>) -> Finding {
        Finding {
            severity,
            text: text.into(),
        }
    }
}

/// Reads `file` and builds its listener's acceptor. Every diagnostic comes back as a finding;
/// the acceptor only when there is no error.
pub fn load(
    role: Role,
    file: &Path,
    data: &DataDir,
    address: SocketAddr,
) -> (Option<ListenerTls>, Vec<Finding>) {
    let mut findings = Vec::new();
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            findings.push(Finding::new(
                Severity::Error,
                format!("{}: {e}", file.display()),
            ));
            return (None, findings);
        }
    };
    let listener = conf::listener_conf(&file.display().to_string(), &text);
    for diagnostic in &listener.diagnostics {
        findings.push(Finding::new(diagnostic.severity, diagnostic.to_string()));
    }
    findings.extend(address_mismatches(
        role,
        address,
        &listener.listen,
        listener.virtual_host.as_ref(),
    ));
    let Some(policy) = listener.policy else {
        return (None, findings);
    };
    if policy.forced_security_level().is_some() {
        findings.push(Finding::new(
            Severity::Note,
            format!(
                "{}: {role} listener serves {}; OpenSSL security level lowered to 0 so that \
                 {} clients can handshake",
                file.display(),
                policy.protocol.range,
                policy.protocol.range.min
            ),
        ));
    }
    // Certificates over time: an expired one is an error (every agent that checks it refuses
    // it), one with less than 30 days left a warning.
    let mut expired = false;
    for (file, seconds) in certificate_expiry(&policy, data.root()) {
        let days = seconds / 86_400;
        if seconds <= 0 {
            expired = true;
            findings.push(Finding::new(
                Severity::Error,
                format!(
                    "{file}: the certificate has expired: agents that check it refuse it; run \
                     `ward server renew-cert`"
                ),
            ));
        } else if seconds < RENEW_BEFORE_SECONDS {
            findings.push(Finding::new(
                Severity::Warning,
                format!(
                    "{file}: the certificate expires in {days} day(s); ward renews it by itself \
                     (unless [certificates] auto_renew = false), or run `ward server renew-cert`"
                ),
            ));
        }
    }
    if expired {
        return (None, findings);
    }
    match context::build_acceptor(&policy, data.root()) {
        Ok(context) => {
            for warning in context::weak_suites(&context, &policy) {
                findings.push(Finding::new(warning.severity, warning.to_string()));
            }
            if policy.session_tickets {
                match data.read_ticket_keys() {
                    // None yet (a data dir from before ticket keys, seen by configtest):
                    // `ward server` makes one at start.
                    Ok(None) => {}
                    Ok(Some(keys)) => {
                        ward_tls::ffi::set_ticket_keys(keys);
                        // Browsers use a TLS 1.3 ticket once; agents keep theirs.
                        let renewal = match role {
                            Role::Console => ward_tls::ffi::Renewal::EveryResumption,
                            Role::Clients | Role::ClientsHttp => {
                                ward_tls::ffi::Renewal::WhenHalfSpent
                            }
                        };
                        if !ward_tls::ffi::use_ticket_keys(&context, renewal) {
                            findings.push(Finding::new(
                                Severity::Warning,
                                format!(
                                    "{}: OpenSSL refused the session ticket keys: tickets will \
                                     not survive a restart",
                                    file.display()
                                ),
                            ));
                        }
                    }
                    Err(error) => {
                        findings.push(Finding::new(Severity::Error, error.to_string()));
                        return (None, findings);
                    }
                }
            }
            (
                Some(ListenerTls {
                    context,
                    policy,
                    file: file.to_path_buf(),
                }),
                findings,
            )
        }
        Err(error) => {
            let text = match &error.location {
                Some(_) => error.to_string(),
                None => format!("{}: {error}", file.display()),
            };
            findings.push(Finding::new(Severity::Error, text));
            (None, findings)
        }
    }
}

/// Certificates with fewer seconds left than this are renewed (and warned about).
pub const RENEW_BEFORE_SECONDS: i64 = 30 * 86_400;

/// Each certificate file of `policy` (as the conf names it) and the seconds until its leaf
/// expires; files that cannot be read are left to the context build to report.
pub fn certificate_expiry(policy: &TlsPolicy, root: &Path) -> Vec<(String, i64)> {
    policy
        .certificate_files
        .iter()
        .filter_map(|file| {
            let path = if Path::new(&file.value).is_absolute() {
                PathBuf::from(&file.value)
            } else {
                root.join(&file.value)
            };
            let pem = std::fs::read(&path).ok()?;
            let cert = openssl::x509::X509::from_pem(&pem).ok()?;
            let seconds = ward_tls::pki::seconds_left(&cert).ok()?;
            Some((file.value.clone(), seconds))
        })
        .collect()
}

/// `Listen` and `<VirtualHost>` are accepted so a real Apache file can be dropped in, but
/// ward.toml decides the address: say so when they disagree.
fn address_mismatches(
    role: Role,
    address: SocketAddr,
    listen: &[Located<String>],
    virtual_host: Option<&Located<Vec<String>>>,
) -> Vec<Finding> {
    let port_of =
        |value: &str| -> Option<u16> { value.rsplit(':').next().and_then(|p| p.parse().ok()) };
    let mut findings = Vec::new();
    let mut check = |value: &str, location: &conf::Location, what: &str| {
        if let Some(port) = port_of(value) {
            if port != address.port() {
                findings.push(Finding::new(
                    Severity::Warning,
                    format!(
                        "{location}: {what} {value} differs from the {role} address {address} in \
                         ward.toml, which is the one ward uses"
                    ),
                ));
            }
        }
    };
    for item in listen {
        check(&item.value, &item.location, "Listen");
    }
    if let Some(vhost) = virtual_host {
        for value in &vhost.value {
            check(value, &vhost.location, "<VirtualHost>");
        }
    }
    findings
}

/// The acceptors in service, both behind one lock so a reload swaps them together. A reload
/// builds new ones first and swaps them in only when both are good; a connection takes an
/// `Arc` at accept time and keeps it, so open connections keep their settings.
pub struct TlsSlots {
    both: RwLock<(Arc<ListenerTls>, Arc<ListenerTls>)>,
}

impl TlsSlots {
    pub fn new(console: ListenerTls, clients: ListenerTls) -> TlsSlots {
        TlsSlots {
            both: RwLock::new((Arc::new(console), Arc::new(clients))),
        }
    }

    /// The acceptor of an HTTPS listener.
    pub fn current(&self, role: Role) -> Arc<ListenerTls> {
        let both = self.both.read().unwrap_or_else(|p| p.into_inner());
        match role {
            Role::Console => both.0.clone(),
            Role::Clients => both.1.clone(),
            Role::ClientsHttp => unreachable!("the clients-http listener has no TLS"),
        }
    }

    pub fn replace(&self, console: ListenerTls, clients: ListenerTls) {
        *self.both.write().unwrap_or_else(|p| p.into_inner()) =
            (Arc::new(console), Arc::new(clients));
    }
}

/// Loads both HTTPS listeners' TLS. All or nothing: `None` when either has an error.
pub fn load_all(
    data: &DataDir,
    config: &Config,
) -> (Option<(ListenerTls, ListenerTls)>, Vec<Finding>) {
    let (console, mut findings) = load(Role::Console, &data.ssl_conf(), data, config.console);
    let (clients, more) = load(Role::Clients, &data.clients_conf(), data, config.clients);
    findings.extend(more);
    match (console, clients) {
        (Some(console), Some(clients)) => (Some((console, clients)), findings),
        _ => (None, findings),
    }
}
