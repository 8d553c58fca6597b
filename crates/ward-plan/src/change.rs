//! A proposed TLS change, applied to a listener's current policy: what `ward tls plan` and
//! harden propose, and what a plan builds the proposed OpenSSL context from.
//!
//! Either directive by directive (`SSLProtocol`, `SSLCipherSuite` for TLS 1.2 and below and
//! for TLS 1.3, the certificate and key, or a preset that names the first three), or a whole
//! proposed conf file. Everything the change does not name stays as the listener has it.

use std::fmt;
use std::sync::Arc;

use openssl::ssl::{SslContextBuilder, SslMethod};
use ward_tls::conf::{self, Diagnostic, Located, Location, TlsPolicy};
use ward_tls::protocol::{self, ProtocolError};

use crate::preset;

/// A certificate file and its key file, as `SSLCertificateFile` / `SSLCertificateKeyFile`
/// name them (relative paths are resolved against the server's data dir).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificatePair {
    pub certificate: String,
    pub key: String,
}

/// A proposed change. At least one field is set; `conf` goes alone, and `preset` does not
/// mix with the directives it names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// `SSLProtocol` words.
    pub protocol: Option<String>,
    /// `SSLCipherSuite LIST` (TLS 1.2 and below).
    pub cipher_suite: Option<String>,
    /// `SSLCipherSuite TLSv1.3 LIST`.
    pub cipher_suite_tls13: Option<String>,
    /// Replaces every certificate of the listener with this one.
    pub certificate: Option<CertificatePair>,
    /// A preset's name: its protocol and suites.
    pub preset: Option<String>,
    /// A whole proposed conf file: its name (for locations) and text.
    pub conf: Option<(String, String)>,
}

#[derive(Debug)]
#[non_exhaustive]
pub enum ChangeError {
    /// Nothing proposed.
    Empty,
    /// Two parts that do not go together.
    Conflict(&'static str, &'static str),
    UnknownPreset(String),
    /// A value spans lines (it would write a second directive).
    MultiLine(&'static str),
    Protocol(String, ProtocolError),
    /// OpenSSL matches no suite in the list.
    Ciphers {
        field: &'static str,
        list: String,
        reason: String,
    },
    /// The proposed conf file has errors.
    Conf(Vec<Diagnostic>),
    /// The proposed conf file has no directive at all: it would serve every default, which
    /// is never what a proposal that names a whole file means.
    EmptyConf(String),
}

impl fmt::Display for ChangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeError::Empty => f.write_str(
                "nothing proposed: give a protocol, a cipher suite, a certificate, a preset or a \
                 conf file",
            ),
            ChangeError::Conflict(a, b) => write!(f, "{a} and {b} do not go together"),
            ChangeError::UnknownPreset(name) => write!(
                f,
                "preset '{name}' is not one ward knows ({})",
                preset::names()
            ),
            ChangeError::MultiLine(field) => write!(f, "{field}: one line only"),
            ChangeError::Protocol(words, error) => write!(f, "protocol '{words}': {error}"),
            ChangeError::Ciphers {
                field,
                list,
                reason,
            } => write!(f, "{field} '{list}': OpenSSL refuses it: {reason}"),
            ChangeError::EmptyConf(name) => write!(
                f,
                "{name}: the proposed conf file has no directive (it would serve Apache's \
                 defaults, TLSv1 to TLSv1.3): send the whole file"
            ),
            ChangeError::Conf(errors) => {
                f.write_str("the proposed conf file has errors")?;
                for error in errors {
                    write!(f, "\n  {error}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ChangeError {}

fn one_line(field: &'static str, value: &str) -> Result<(), ChangeError> {
    if value.contains(['\n', '\r']) {
        Err(ChangeError::MultiLine(field))
    } else {
        Ok(())
    }
}

fn openssl_refusal(error: &openssl::error::ErrorStack) -> String {
    error
        .errors()
        .first()
        .and_then(|e| e.reason())
        .unwrap_or("no cipher matches")
        .to_string()
}

impl Change {
    /// The directives this change sets, in the words a conf file would use, with a preset
    /// expanded: `("SSLProtocol", "all -SSLv3")`, `("SSLCipherSuite", LIST)`,
    /// `("SSLCipherSuite TLSv1.3", LIST)`, `("SSLCertificateFile", PATH)`,
    /// `("SSLCertificateKeyFile", PATH)`. Empty for a whole conf file.
    pub fn directives(&self) -> Result<Vec<(&'static str, String)>, ChangeError> {
        self.check()?;
        let preset = match &self.preset {
            Some(name) => {
                Some(preset::find(name).ok_or_else(|| ChangeError::UnknownPreset(name.clone()))?)
            }
            None => None,
        };
        let protocol = self
            .protocol
            .clone()
            .or_else(|| preset.map(|p| p.protocol.to_string()));
        let ciphers = self
            .cipher_suite
            .clone()
            .or_else(|| preset.and_then(|p| p.cipher_suite.map(str::to_string)));
        let tls13 = self
            .cipher_suite_tls13
            .clone()
            .or_else(|| preset.and_then(|p| p.cipher_suite_tls13.map(str::to_string)));
        let mut out = Vec::new();
        if let Some(words) = protocol {
            out.push(("SSLProtocol", protocol::split_words(&words).join(" ")));
        }
        if let Some(list) = ciphers {
            out.push(("SSLCipherSuite", list));
        }
        if let Some(list) = tls13 {
            out.push(("SSLCipherSuite TLSv1.3", list));
        }
        if let Some(pair) = &self.certificate {
            out.push(("SSLCertificateFile", pair.certificate.clone()));
            out.push(("SSLCertificateKeyFile", pair.key.clone()));
        }
        Ok(out)
    }

    fn check(&self) -> Result<(), ChangeError> {
        let directive = self.protocol.is_some()
            || self.cipher_suite.is_some()
            || self.cipher_suite_tls13.is_some()
            || self.certificate.is_some();
        if self.conf.is_some() && (directive || self.preset.is_some()) {
            return Err(ChangeError::Conflict(
                "a whole conf file",
                "any other change",
            ));
        }
        if self.conf.is_none() && !directive && self.preset.is_none() {
            return Err(ChangeError::Empty);
        }
        if self.preset.is_some()
            && (self.protocol.is_some()
                || self.cipher_suite.is_some()
                || self.cipher_suite_tls13.is_some())
        {
            return Err(ChangeError::Conflict(
                "a preset",
                "protocol or cipher suites (the preset names them)",
            ));
        }
        for (field, value) in [
            ("protocol", &self.protocol),
            ("cipher_suite", &self.cipher_suite),
            ("cipher_suite_tls13", &self.cipher_suite_tls13),
        ] {
            if let Some(value) = value {
                one_line(field, value)?;
            }
        }
        if let Some(pair) = &self.certificate {
            one_line("certificate", &pair.certificate)?;
            one_line("key", &pair.key)?;
        }
        Ok(())
    }

    /// One line for an admin: `SSLProtocol all -SSLv3; SSLCipherSuite HIGH` or `conf file
    /// NAME`.
    pub fn summary(&self) -> String {
        if let Some((name, _)) = &self.conf {
            return format!("the conf file {name}");
        }
        let mut parts: Vec<String> = Vec::new();
        if let Some(name) = &self.preset {
            parts.push(format!("preset {name}"));
        }
        match self.directives() {
            Ok(directives) => parts.extend(
                directives
                    .into_iter()
                    .map(|(name, value)| format!("{name} {value}")),
            ),
            Err(e) => parts.push(format!("(invalid: {e})")),
        }
        parts.join("; ")
    }

    /// The listener's policy with this change made. Nothing is read from disk: certificate
    /// paths are checked when the context is built.
    pub fn apply(&self, current: &TlsPolicy) -> Result<TlsPolicy, ChangeError> {
        self.check()?;
        if let Some((name, text)) = &self.conf {
            let says_nothing = text.lines().all(|line| {
                let line = line.trim();
                line.is_empty() || line.starts_with('#')
            });
            if says_nothing {
                return Err(ChangeError::EmptyConf(name.clone()));
            }
            let listener = conf::listener_conf(name, text);
            return match listener.policy {
                Some(policy) if !listener.has_errors() => Ok(policy),
                _ => Err(ChangeError::Conf(listener.errors().cloned().collect())),
            };
        }
        let mut policy = current.clone();
        let at = Location {
            file: Arc::from("(proposed)"),
            line: 0,
        };
        let located = |value: String| Located {
            value,
            location: at.clone(),
        };
        let directives = self.directives()?;
        let mut probe = SslContextBuilder::new(SslMethod::tls_server()).ok();
        let mut certificates = Vec::new();
        let mut keys = Vec::new();
        for (name, value) in directives {
            match name {
                "SSLProtocol" => {
                    let words = protocol::split_words(&value);
                    policy.protocol = ward_tls::parse_ssl_protocol(&words)
                        .map_err(|e| ChangeError::Protocol(value.clone(), e))?;
                    policy.protocol_location = Some(at.clone());
                }
                "SSLCipherSuite" => {
                    let list = conf::apache_cipher_list(&value);
                    if let Some(Err(e)) = probe.as_mut().map(|p| p.set_cipher_list(&list)) {
                        return Err(ChangeError::Ciphers {
                            field: "cipher_suite",
                            list: value,
                            reason: openssl_refusal(&e),
                        });
                    }
                    policy.cipher_list = Some(located(list));
                }
                "SSLCipherSuite TLSv1.3" => {
                    if let Some(Err(e)) = probe.as_mut().map(|p| p.set_ciphersuites(&value)) {
                        return Err(ChangeError::Ciphers {
                            field: "cipher_suite_tls13",
                            list: value,
                            reason: openssl_refusal(&e),
                        });
                    }
                    policy.tls13_ciphersuites = Some(located(value));
                }
                "SSLCertificateFile" => certificates.push(located(value)),
                "SSLCertificateKeyFile" => keys.push(located(value)),
                _ => unreachable!("directives() names only these"),
            }
        }
        if !certificates.is_empty() {
            policy.certificate_files = certificates;
            policy.certificate_key_files = keys;
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests;
