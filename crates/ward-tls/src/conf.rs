//! Apache-style conf files (`ssl.conf`, `sslforclients.conf`): the parser and the decision of
//! one listener's TLS policy from a parsed file.
//!
//! Pure: the caller reads the file and hands over its text. The parser never panics and never
//! stops at the first problem: every error and warning comes back as a [`Diagnostic`] with its
//! file:line, so `configtest` can print them all at once.

mod directives;

use std::fmt;
use std::sync::Arc;

use crate::protocol::{self, ProtocolDecision, ProtocolError, ProtocolSet};

/// Where a directive stands: the file as the operator named it, and the 1-based line where the
/// directive starts (a directive continued with `\` spans several lines).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    pub file: Arc<str>,
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The file cannot be used; the listener keeps (or never gets) a policy.
    Error,
    /// The file works but probably not as its author meant.
    Warning,
    /// Information, such as a directive ward reads but does not act on.
    Note,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        })
    }
}

/// One finding about a conf file. `Display` gives `file:line: message`, as Apache prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub location: Location,
    pub message: String,
}

impl Diagnostic {
    pub fn error(location: &Location, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            location: location.clone(),
            message: message.into(),
        }
    }

    pub fn warning(location: &Location, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            location: location.clone(),
            message: message.into(),
        }
    }

    fn note(location: &Location, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Note,
            location: location.clone(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

impl std::error::Error for Diagnostic {}

/// One directive as written: its name, its words, and where it stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    /// The argument text after the name, continuations joined, untrimmed of inner spaces.
    pub raw_args: String,
    pub args: Vec<String>,
    pub location: Location,
    /// The last physical line of the directive (equal to `location.line` unless continued).
    pub last_line: usize,
}

impl Directive {
    pub(crate) fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

/// A `<VirtualHost ...>` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualHost {
    pub addresses: Vec<String>,
    pub location: Location,
    /// The line of `</VirtualHost>`.
    pub end_line: usize,
    pub directives: Vec<Directive>,
}

/// A parsed conf file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfFile {
    pub file: Arc<str>,
    /// Directives of the main server, including those inside `<IfModule>`-style wrappers.
    pub global: Vec<Directive>,
    pub virtual_hosts: Vec<VirtualHost>,
    pub diagnostics: Vec<Diagnostic>,
}

impl ConfFile {
    /// The directive named `name` that applies to the file's listener: the first vhost's last
    /// one, else the main server's last one (a vhost's own replaces the global one).
    pub fn applied(&self, name: &str) -> Option<&Directive> {
        self.applied_by(|d| d.is(name))
    }

    /// The last directive matching `which` that applies to the file's listener (the first
    /// vhost's own, else the main server's).
    pub fn applied_by(&self, which: impl Fn(&Directive) -> bool) -> Option<&Directive> {
        let is = |d: &&Directive| which(d);
        self.virtual_hosts
            .first()
            .and_then(|v| v.directives.iter().rfind(is))
            .or_else(|| self.global.iter().rfind(is))
    }

    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }
}

/// A logical line: physical lines joined where one ends with a backslash.
struct LogicalLine {
    first: usize,
    last: usize,
    text: String,
}

fn logical_lines(text: &str) -> Vec<LogicalLine> {
    let mut lines = Vec::new();
    let mut pending: Option<LogicalLine> = None;
    for (index, physical) in text.lines().enumerate() {
        let number = index + 1;
        let physical = physical.strip_suffix('\r').unwrap_or(physical);
        let (body, continues) = match physical.strip_suffix('\\') {
            Some(body) => (body, true),
            None => (physical, false),
        };
        let line = match pending.take() {
            Some(mut line) => {
                line.last = number;
                line.text.push_str(body);
                line
            }
            None => LogicalLine {
                first: number,
                last: number,
                text: body.to_string(),
            },
        };
        if continues {
            pending = Some(line);
        } else {
            lines.push(line);
        }
    }
    lines.extend(pending);
    lines
}

/// How the parser treats the inside of a section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SectionMode {
    /// `<IfModule mod_ssl.c>` and friends: read as if the condition held.
    Transparent,
    /// `<VirtualHost>`: collected into its own block.
    VirtualHost,
    /// `<Directory>`, `<Location>`, `<IfModule !...>`: nothing inside is for ward.
    Skipped,
}

struct OpenSection {
    name: String,
    mode: SectionMode,
    location: Location,
}

/// Parses an Apache-style conf file. `file` is how diagnostics name it.
pub fn parse_conf(file: &str, text: &str) -> ConfFile {
    let file: Arc<str> = Arc::from(file);
    let mut conf = ConfFile {
        file: file.clone(),
        global: Vec::new(),
        virtual_hosts: Vec::new(),
        diagnostics: Vec::new(),
    };
    let mut stack: Vec<OpenSection> = Vec::new();
    let mut current_vhost: Option<VirtualHost> = None;

    for line in logical_lines(text) {
        let location = Location {
            file: file.clone(),
            line: line.first,
        };
        let trimmed = line.text.trim_matches(protocol::is_apache_space);
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix("</") {
            let Some(name) = rest.strip_suffix('>') else {
                conf.diagnostics.push(Diagnostic::error(
                    &location,
                    format!("</{rest} directive missing closing '>'"),
                ));
                continue;
            };
            let name = name.trim_matches(protocol::is_apache_space);
            match stack.pop() {
                Some(open) if open.name.eq_ignore_ascii_case(name) => {
                    if open.mode == SectionMode::VirtualHost {
                        if let Some(mut vhost) = current_vhost.take() {
                            vhost.end_line = line.first;
                            conf.virtual_hosts.push(vhost);
                        }
                    }
                }
                Some(open) => {
                    conf.diagnostics.push(Diagnostic::error(
                        &location,
                        format!("Expected </{}> but saw </{name}>", open.name),
                    ));
                    stack.push(open);
                }
                None => conf.diagnostics.push(Diagnostic::error(
                    &location,
                    format!("</{name}> without matching <{name}> section"),
                )),
            }
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix('<') {
            let Some(inner) = rest.strip_suffix('>') else {
                let name = rest.split_whitespace().next().unwrap_or("");
                conf.diagnostics.push(Diagnostic::error(
                    &location,
                    format!("<{name} directive missing closing '>'"),
                ));
                continue;
            };
            let (name, args) = split_name(inner);
            let args = protocol::split_words(args);
            let inside_skipped = stack.iter().any(|s| s.mode == SectionMode::Skipped);
            let mode = match directives::section_kind(name) {
                None => {
                    conf.diagnostics.push(Diagnostic::error(
                        &location,
                        invalid_command(&format!("<{name}")),
                    ));
                    // Track it anyway so that its closing tag matches.
                    SectionMode::Skipped
                }
                Some(directives::SectionKind::VirtualHost) => {
                    if current_vhost.is_some() {
                        conf.diagnostics.push(Diagnostic::error(
                            &location,
                            "<VirtualHost> cannot occur within <VirtualHost> section",
                        ));
                        SectionMode::Skipped
                    } else if inside_skipped {
                        SectionMode::Skipped
                    } else {
                        if args.is_empty() {
                            conf.diagnostics.push(Diagnostic::error(
                                &location,
                                "<VirtualHost> directive requires additional arguments",
                            ));
                        }
                        current_vhost = Some(VirtualHost {
                            addresses: args.clone(),
                            location: location.clone(),
                            end_line: line.last,
                            directives: Vec::new(),
                        });
                        SectionMode::VirtualHost
                    }
                }
                Some(directives::SectionKind::Conditional) => {
                    if args.first().is_some_and(|a| a.starts_with('!'))
                        && name.eq_ignore_ascii_case("IfModule")
                    {
                        SectionMode::Skipped
                    } else {
                        SectionMode::Transparent
                    }
                }
                Some(directives::SectionKind::Other) => {
                    conf.diagnostics.push(Diagnostic::note(
                        &location,
                        format!("<{name}> section ignored: ward serves no files or paths"),
                    ));
                    SectionMode::Skipped
                }
            };
            stack.push(OpenSection {
                name: name.to_string(),
                mode,
                location,
            });
            continue;
        }

        let (name, raw_args) = split_name(trimmed);
        if stack.iter().any(|s| s.mode == SectionMode::Skipped) {
            continue;
        }
        let directive = Directive {
            name: name.to_string(),
            raw_args: raw_args.to_string(),
            args: protocol::split_words(raw_args),
            location: location.clone(),
            last_line: line.last,
        };
        match directives::directive_kind(name) {
            directives::DirectiveKind::Tls | directives::DirectiveKind::Listen => {
                check_arguments(&directive, &mut conf.diagnostics);
                match current_vhost.as_mut() {
                    Some(vhost) => vhost.directives.push(directive),
                    None => conf.global.push(directive),
                }
            }
            directives::DirectiveKind::KnownApache => conf.diagnostics.push(Diagnostic::note(
                &location,
                format!("{name} ignored: ward does not use this Apache directive"),
            )),
            directives::DirectiveKind::Unknown => conf
                .diagnostics
                .push(Diagnostic::error(&location, invalid_command(name))),
        }
    }
    for open in stack {
        conf.diagnostics.push(Diagnostic::error(
            &open.location,
            format!("<{}> was not closed", open.name),
        ));
    }
    conf
}

fn invalid_command(name: &str) -> String {
    format!(
        "Invalid command '{name}', perhaps misspelled or defined by a module not included in \
         the server configuration"
    )
}

fn split_name(text: &str) -> (&str, &str) {
    let text = text.trim_matches(protocol::is_apache_space);
    match text.find(protocol::is_apache_space) {
        Some(end) => (
            &text[..end],
            text[end..].trim_start_matches(protocol::is_apache_space),
        ),
        None => (text, ""),
    }
}

/// Checks a directive's words the way Apache checks them when it reads the line.
fn check_arguments(directive: &Directive, diagnostics: &mut Vec<Diagnostic>) {
    let location = &directive.location;
    let args = &directive.args;
    let mut error = |message: String| diagnostics.push(Diagnostic::error(location, message));
    if directive.is("SSLProtocol") {
        match protocol::parse_ssl_protocol(args) {
            // An empty set is fatal only for the directive that finally applies.
            Ok(_) | Err(ProtocolError::NoneAvailable) => {}
            Err(e) => error(e.to_string()),
        }
    } else if directive.is("SSLCipherSuite") {
        match args.len() {
            1 => {}
            2 if args[0] == "SSL" || args[0] == "TLSv1.3" => {}
            2 => error(format!("protocol '{}' not supported", args[0])),
            _ => error("SSLCipherSuite takes one or two arguments".into()),
        }
    } else if directive.is("SSLHonorCipherOrder") || directive.is("SSLSessionTickets") {
        if parse_flag(args).is_none() {
            error(format!("{} must be On or Off", directive.name));
        }
    } else if directive.is("SSLSessionCache") {
        if args.len() != 1 {
            error("SSLSessionCache takes one argument".into());
        }
    } else if directive.is("SSLCertificateFile") || directive.is("SSLCertificateKeyFile") {
        if args.len() != 1 {
            error(format!("{} takes one argument", directive.name));
        }
    } else if directive.is("Listen") && !(1..=2).contains(&args.len()) {
        error("Listen requires 1 or 2 arguments".into());
    }
}

/// Apache's FLAG arguments: `on` or `off`, any case.
fn parse_flag(args: &[String]) -> Option<bool> {
    match args {
        [flag] if flag.eq_ignore_ascii_case("on") => Some(true),
        [flag] if flag.eq_ignore_ascii_case("off") => Some(false),
        _ => None,
    }
}

/// A setting together with the directive that set it, so later errors can name file:line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    pub location: Location,
}

/// The TLS policy of one listener, as Apache would run it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPolicy {
    /// The `SSLProtocol` outcome; Apache's default (`all` minus SSLv3) when none is given.
    pub protocol: ProtocolDecision,
    /// Where that `SSLProtocol` was; `None` for the default.
    pub protocol_location: Option<Location>,
    /// The TLS <= 1.2 cipher list handed to OpenSSL, with Apache's `:!aNULL:!eNULL:!EXP`.
    pub cipher_list: Option<Located<String>>,
    /// The TLS 1.3 ciphersuites (`SSLCipherSuite TLSv1.3 ...`).
    pub tls13_ciphersuites: Option<Located<String>>,
    pub honor_cipher_order: bool,
    /// `SSLSessionTickets`; on unless the file says off.
    pub session_tickets: bool,
    /// `SSLSessionCache`: ward keeps an in-process session cache unless the file says `none`
    /// or `nonenotnull` (Apache's default is no cache; ward's is a cache, for agents that
    /// resume).
    pub session_cache: bool,
    /// `SSLCertificateFile`, once per key type (RSA and ECDSA, as in Apache 2.4): OpenSSL
    /// serves each client the one it can use.
    pub certificate_files: Vec<Located<String>>,
    /// `SSLCertificateKeyFile`: the Nth goes with the Nth certificate; a certificate without
    /// one holds its key in the same file.
    pub certificate_key_files: Vec<Located<String>>,
    /// `SSLOpenSSLConfCmd Groups LIST` (or `Curves`): the key-exchange groups, in order of
    /// preference; ward's default when absent (post-quantum first).
    pub groups: Option<Located<String>>,
}

impl TlsPolicy {
    /// The policy of a listener whose file says nothing: Apache's defaults.
    pub fn apache_default() -> TlsPolicy {
        let set = ProtocolSet::APACHE_DEFAULT;
        TlsPolicy {
            protocol: ProtocolDecision {
                set,
                range: set.enabled_range().expect("the default set is not empty"),
                warnings: Vec::new(),
            },
            protocol_location: None,
            cipher_list: None,
            tls13_ciphersuites: None,
            honor_cipher_order: false,
            session_tickets: true,
            session_cache: true,
            certificate_files: Vec::new(),
            certificate_key_files: Vec::new(),
            groups: None,
        }
    }

    /// The OpenSSL security level ward forces on the listener: 0 when TLSv1 or TLSv1.1 is in
    /// range (OpenSSL 3 refuses them above level 0), unless the cipher list names its own
    /// `@SECLEVEL`. `None` leaves OpenSSL's default.
    pub fn forced_security_level(&self) -> Option<u32> {
        let cipher_sets_level = self
            .cipher_list
            .as_ref()
            .is_some_and(|c| c.value.to_ascii_uppercase().contains("@SECLEVEL"));
        (self.protocol.range.includes_legacy() && !cipher_sets_level).then_some(0)
    }

    /// Sentences that explain the policy to an operator, beyond the enabled versions.
    pub fn explanation(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let dropped = self.protocol.dropped();
        if !dropped.is_empty() {
            let names: Vec<&str> = dropped.iter().map(|v| v.name()).collect();
            notes.push(format!(
                "{} below a hole in the set and not enabled: Apache enables only the \
                 contiguous range down from the highest version ({})",
                names.join(", "),
                self.protocol.range
            ));
        }
        if self.protocol_location.is_none() {
            notes.push("no SSLProtocol directive: Apache's default, all minus SSLv3".into());
        }
        if self.forced_security_level().is_some() {
            notes.push(format!(
                "OpenSSL security level lowered to 0 because {} is enabled: OpenSSL 3 refuses \
                 TLSv1 and TLSv1.1 above level 0 (set @SECLEVEL in SSLCipherSuite to choose \
                 otherwise)",
                self.protocol.range.min
            ));
        }
        notes
    }
}

/// What a conf file decides for its listener: the policy when the file has no error, and
/// every diagnostic of the file and of the decision.
#[derive(Clone, Debug)]
pub struct ListenerConf {
    pub policy: Option<TlsPolicy>,
    pub listen: Vec<Located<String>>,
    /// Addresses of the `<VirtualHost>` whose settings apply, if any.
    pub virtual_host: Option<Located<Vec<String>>>,
    pub diagnostics: Vec<Diagnostic>,
}

impl ListenerConf {
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }
}

/// Parses a file's text and decides its listener's policy. ward serves one listener per file:
/// the main server's directives apply, and the first `<VirtualHost>`'s own directives replace
/// them one by one (a vhost's `SSLProtocol` replaces the global one, it does not add to it).
pub fn listener_conf(file: &str, text: &str) -> ListenerConf {
    let conf = parse_conf(file, text);
    let mut diagnostics = conf.diagnostics.clone();
    let mut policy = TlsPolicy::apache_default();
    let mut listen = Vec::new();

    let vhost = conf.virtual_hosts.first();
    for extra in conf.virtual_hosts.iter().skip(1) {
        diagnostics.push(Diagnostic::warning(
            &extra.location,
            "ward serves one listener per file: this <VirtualHost> is ignored, the first one \
             applies",
        ));
    }
    let vhost_directives = vhost.map(|v| v.directives.as_slice()).unwrap_or_default();
    let in_vhost =
        |directive: &Directive| vhost_directives.iter().any(|d| std::ptr::eq(d, directive));
    let mut vhost_certificates = false;
    for directive in conf.global.iter().chain(vhost_directives) {
        let located = |value: String| Located {
            value,
            location: directive.location.clone(),
        };
        if directive.is("SSLCipherSuite") {
            match directive.args.as_slice() {
                [list] => policy.cipher_list = Some(located(apache_cipher_list(list))),
                [protocol, list] if protocol == "SSL" => {
                    policy.cipher_list = Some(located(apache_cipher_list(list)))
                }
                [protocol, list] if protocol == "TLSv1.3" => {
                    policy.tls13_ciphersuites = Some(located(list.clone()))
                }
                _ => {}
            }
        } else if directive.is("SSLHonorCipherOrder") {
            if let Some(flag) = parse_flag(&directive.args) {
                policy.honor_cipher_order = flag;
            }
        } else if directive.is("SSLSessionTickets") {
            if let Some(flag) = parse_flag(&directive.args) {
                policy.session_tickets = flag;
            }
        } else if directive.is("SSLSessionCache") {
            if let [kind] = directive.args.as_slice() {
                policy.session_cache = !(kind.eq_ignore_ascii_case("none")
                    || kind.eq_ignore_ascii_case("nonenotnull"));
            }
        } else if directive.is("SSLCertificateFile") || directive.is("SSLCertificateKeyFile") {
            if let [path] = directive.args.as_slice() {
                // A vhost's own certificates and keys replace the main server's, as in Apache,
                // whichever of the two it names first.
                if in_vhost(directive) && !vhost_certificates {
                    vhost_certificates = true;
                    policy.certificate_files.clear();
                    policy.certificate_key_files.clear();
                }
                if directive.is("SSLCertificateFile") {
                    policy.certificate_files.push(located(path.clone()));
                } else {
                    policy.certificate_key_files.push(located(path.clone()));
                }
            }
        } else if directive.is("SSLOpenSSLConfCmd") {
            match directive.args.as_slice() {
                [command, list]
                    if command.eq_ignore_ascii_case("Groups")
                        || command.eq_ignore_ascii_case("Curves") =>
                {
                    policy.groups = Some(located(list.clone()))
                }
                [command, ..] => diagnostics.push(Diagnostic::warning(
                    &directive.location,
                    format!(
                        "SSLOpenSSLConfCmd {command} is not applied by ward (only Groups and \
                         Curves are): ward sets its listeners' other OpenSSL options itself"
                    ),
                )),
                [] => {}
            }
        } else if directive.is("Listen") {
            if let Some(address) = directive.args.first() {
                listen.push(located(address.clone()));
            }
        }
    }

    // Several SSLProtocol lines in one scope: only the last applies (each starts from the
    // empty set), which an admin editing the first one would not expect.
    for scope in [conf.global.as_slice(), vhost_directives] {
        let lines: Vec<&Directive> = scope.iter().filter(|d| d.is("SSLProtocol")).collect();
        if let Some((last, earlier)) = lines.split_last() {
            for directive in earlier {
                diagnostics.push(Diagnostic::warning(
                    &directive.location,
                    format!(
                        "SSLProtocol is given again on line {}: only the last one applies, this \
                         one is ignored",
                        last.location.line
                    ),
                ));
            }
        }
    }
    if let Some(directive) = conf.applied("SSLProtocol") {
        policy.protocol_location = Some(directive.location.clone());
        match protocol::parse_ssl_protocol(&directive.args) {
            Ok(decision) => {
                for warning in &decision.warnings {
                    diagnostics.push(Diagnostic::warning(&directive.location, warning.clone()));
                }
                let dropped = decision.dropped();
                if !dropped.is_empty() {
                    let names: Vec<&str> = dropped.iter().map(|v| v.name()).collect();
                    diagnostics.push(Diagnostic::warning(
                        &directive.location,
                        format!(
                            "SSLProtocol: {} is below a hole in the set and is not served: \
                             Apache enables only the contiguous range down from the highest \
                             version ({})",
                            names.join(", "),
                            decision.range
                        ),
                    ));
                }
                policy.protocol = decision;
            }
            Err(ProtocolError::NoneAvailable) => diagnostics.push(Diagnostic::error(
                &directive.location,
                ProtocolError::NoneAvailable.to_string(),
            )),
            // Already reported by the parser.
            Err(_) => {}
        }
    }
    diagnostics.sort_by_key(|d| d.location.line);
    let has_errors = diagnostics.iter().any(|d| d.severity == Severity::Error);
    ListenerConf {
        policy: (!has_errors).then_some(policy),
        listen,
        virtual_host: vhost.map(|v| Located {
            value: v.addresses.clone(),
            location: v.location.clone(),
        }),
        diagnostics,
    }
}

/// Apache always appends `:!aNULL:!eNULL:!EXP` to the TLS <= 1.2 cipher list.
pub fn apache_cipher_list(list: &str) -> String {
    format!("{list}:!aNULL:!eNULL:!EXP")
}

#[cfg(test)]
mod tests;
