//! Editing a conf file in place, the way the seed's upgrade wizard does it: the old directive is
//! commented out under a dated marker line, the new one follows, and every other byte stays.
//!
//! [`replace_ssl_protocol`] is the pure part. [`edit_file`] adds the I/O: a backup beside the
//! file, then an atomic replace (temp file, fsync, rename, fsync of the directory), so a crash
//! leaves either the old file or the new one. [`restore_backup`] undoes an edit byte for byte.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::conf::{self, Diagnostic};
use crate::protocol::{self, ProtocolError};
use crate::utc::{format_utc, utc_fields};

#[derive(Debug)]
#[non_exhaustive]
pub enum EditError {
    /// The file has errors of its own; ward does not edit a file it cannot read correctly.
    BrokenFile(Vec<Diagnostic>),
    /// The new value is not a valid `SSLProtocol`.
    InvalidValue(ProtocolError),
    Io {
        path: PathBuf,
        error: io::Error,
    },
    NotUtf8(PathBuf),
    /// The new value spans lines, which would write a second, broken directive.
    MultiLine,
    /// The edited text would not apply the new value (a bug; nothing was written).
    Unverified(String),
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EditError::BrokenFile(errors) => {
                f.write_str("the file has errors; fix them before editing it")?;
                for error in errors {
                    write!(f, "\n  {error}")?;
                }
                Ok(())
            }
            EditError::InvalidValue(error) => write!(f, "new value refused: {error}"),
            EditError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            EditError::NotUtf8(path) => write!(f, "{}: not a UTF-8 text file", path.display()),
            EditError::MultiLine => f.write_str("new value refused: it must be one line"),
            EditError::Unverified(why) => write!(f, "edit refused, nothing written: {why}"),
        }
    }
}

impl std::error::Error for EditError {}

/// The marker line written above a replaced directive, e.g.
/// `#:Overridden_by_ward_tls_harden 2026-11-28 15:04:05 UTC#`.
pub fn marker_line(label: &str, now: SystemTime) -> String {
    format!("#:Overridden_by_{label} {}#", format_utc(now))
}

/// The file parsed, or its errors: ward does not edit a file it cannot read correctly.
fn parse_unbroken(file: &str, text: &str) -> Result<conf::ConfFile, EditError> {
    let parsed = conf::parse_conf(file, text);
    if parsed.has_errors() {
        let errors = parsed
            .diagnostics
            .into_iter()
            .filter(|d| d.severity == conf::Severity::Error)
            .collect();
        return Err(EditError::BrokenFile(errors));
    }
    Ok(parsed)
}

/// A directive an edit can set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    /// `SSLProtocol WORDS`.
    Protocol,
    /// `SSLCipherSuite LIST` (TLS 1.2 and below; also `SSLCipherSuite SSL LIST`).
    CipherSuite,
    /// `SSLCipherSuite TLSv1.3 LIST`.
    CipherSuiteTls13,
}

impl Setting {
    /// Whether `directive` is this setting.
    fn matches(self, directive: &conf::Directive) -> bool {
        match self {
            Setting::Protocol => directive.is("SSLProtocol"),
            Setting::CipherSuite => {
                directive.is("SSLCipherSuite")
                    && (directive.args.len() == 1
                        || (directive.args.len() == 2 && directive.args[0] == "SSL"))
            }
            Setting::CipherSuiteTls13 => {
                directive.is("SSLCipherSuite")
                    && directive.args.len() == 2
                    && directive.args[0] == "TLSv1.3"
            }
        }
    }

    /// The directive's words before the value.
    fn prefix(self) -> &'static str {
        match self {
            Setting::Protocol => "SSLProtocol",
            Setting::CipherSuite => "SSLCipherSuite",
            Setting::CipherSuiteTls13 => "SSLCipherSuite TLSv1.3",
        }
    }

    /// Whether `directive` (this setting) already says `value`.
    fn says(self, directive: &conf::Directive, value: &str) -> bool {
        match self {
            Setting::Protocol => {
                protocol::split_words(&directive.raw_args) == protocol::split_words(value)
            }
            Setting::CipherSuite | Setting::CipherSuiteTls13 => {
                directive.args.last().map(String::as_str) == Some(value.trim())
            }
        }
    }

    /// Whether `policy` (the edited file's) applies `value` for this setting.
    fn applied(self, policy: &conf::TlsPolicy, value: &str) -> Result<(), String> {
        let (now, wanted) = match self {
            Setting::Protocol => {
                let decision = protocol::parse_ssl_protocol(&protocol::split_words(value))
                    .map_err(|e| e.to_string())?;
                if policy.protocol.set == decision.set {
                    return Ok(());
                }
                return Err(format!(
                    "the edited file would apply {} instead of {}",
                    policy.protocol.range, decision.range
                ));
            }
            Setting::CipherSuite => (
                policy.cipher_list.as_ref().map(|c| c.value.clone()),
                conf::apache_cipher_list(value.trim()),
            ),
            Setting::CipherSuiteTls13 => (
                policy.tls13_ciphersuites.as_ref().map(|c| c.value.clone()),
                value.trim().to_string(),
            ),
        };
        if now.as_deref() == Some(wanted.as_str()) {
            Ok(())
        } else {
            Err(format!(
                "the edited file would apply {} '{}' instead of '{wanted}'",
                self.prefix(),
                now.unwrap_or_default()
            ))
        }
    }
}

/// Replaces the `SSLProtocol` that applies to the file's listener (the first vhost's own, or
/// else the last global one) with `new_args`. Returns `None` when the directive already says
/// exactly that (same words), so running an edit twice changes nothing.
pub fn replace_ssl_protocol(
    file: &str,
    text: &str,
    new_args: &str,
    marker: &str,
) -> Result<Option<String>, EditError> {
    replace_setting(file, text, Setting::Protocol, new_args, marker)
}

/// Replaces the `setting` that applies to the file's listener (the first vhost's own, or else
/// the last global one) with `value`, or adds it where it would apply. Returns `None` when
/// the directive already says exactly that, so running an edit twice changes nothing. The
/// edited text is parsed again and must apply exactly `value`.
pub fn replace_setting(
    file: &str,
    text: &str,
    setting: Setting,
    value: &str,
    marker: &str,
) -> Result<Option<String>, EditError> {
    if value.contains(['\n', '\r']) {
        return Err(EditError::MultiLine);
    }
    if setting == Setting::Protocol {
        protocol::parse_ssl_protocol(&protocol::split_words(value))
            .map_err(EditError::InvalidValue)?;
    } else if value.trim().is_empty() || value.trim().contains(char::is_whitespace) {
        return Err(EditError::Unverified(format!(
            "{} takes one list without spaces, not '{value}'",
            setting.prefix()
        )));
    }
    let parsed = parse_unbroken(file, text)?;
    let vhost = parsed.virtual_hosts.first();
    let target = parsed.applied_by(|d| setting.matches(d));
    let new_line = format!("{} {}", setting.prefix(), value.trim());

    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out = String::with_capacity(text.len() + marker.len() + new_line.len() + 32);
    match target {
        Some(directive) => {
            if setting.says(directive, value) {
                return Ok(None);
            }
            let first = directive.location.line - 1;
            let last = directive.last_line - 1;
            let (indent, eol) = shape_of(lines[first]);
            out.extend(lines[..first].iter().copied());
            push_line(&mut out, indent, marker, eol);
            for line in &lines[first..=last] {
                let content = line.trim_start();
                out.push_str(&line[..line.len() - content.len()]);
                out.push('#');
                out.push_str(content);
            }
            // The last commented line may lack a newline at the end of the file.
            if !out.ends_with('\n') {
                out.push_str(if eol.is_empty() { "\n" } else { eol });
            }
            end_dangling_continuation(&mut out, eol);
            let written = match setting {
                // Keep the file's own spelling of the directive name.
                Setting::Protocol => format!("{} {}", directive.name, value.trim()),
                _ => new_line.clone(),
            };
            push_line(&mut out, indent, &written, eol);
            out.extend(lines[last + 1..].iter().copied());
        }
        None => {
            // Insert where it applies: inside the first vhost, or at the end of the file.
            let insert_at = vhost.map_or(lines.len(), |v| v.end_line - 1);
            let eol = lines.first().map_or("\n", |l| shape_of(l).1);
            let eol = if eol.is_empty() { "\n" } else { eol };
            let indent = if vhost.is_some() { "    " } else { "" };
            out.extend(lines[..insert_at].iter().copied());
            if !out.is_empty() && !out.ends_with('\n') {
                out.push_str(eol);
            }
            end_dangling_continuation(&mut out, eol);
            push_line(&mut out, indent, marker, eol);
            push_line(&mut out, indent, &new_line, eol);
            out.extend(lines[insert_at..].iter().copied());
        }
    }
    // The edited file must apply exactly the new value; check before anyone writes it.
    let policy = edited_policy(file, &out)?;
    match setting.applied(&policy, value) {
        Ok(()) => Ok(Some(out)),
        Err(why) => Err(EditError::Unverified(why)),
    }
}

/// The policy the edited text `out` would apply; refused when it would have errors.
fn edited_policy(file: &str, out: &str) -> Result<conf::TlsPolicy, EditError> {
    let mut edited = conf::listener_conf(file, out);
    if let Some(policy) = edited.policy.take() {
        return Ok(policy);
    }
    Err(EditError::Unverified(format!(
        "the edited file would have errors: {}",
        edited
            .errors()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    )))
}

/// Replaces the certificates that apply to the file's listener (the first vhost's own when it
/// names any, else the main server's: every `SSLCertificateFile` and `SSLCertificateKeyFile`
/// there) with one pair, `certificate` and `key`. The old lines are commented out and the new
/// pair follows the marker where the first of them stood (or where it would apply). `None`
/// when the file already names exactly that pair. The edited text must apply exactly it.
pub fn replace_certificate(
    file: &str,
    text: &str,
    certificate: &str,
    key: &str,
    marker: &str,
) -> Result<Option<String>, EditError> {
    for value in [certificate, key] {
        if value.contains(['\n', '\r']) {
            return Err(EditError::MultiLine);
        }
        if value.trim().is_empty() || value.trim().contains(char::is_whitespace) {
            return Err(EditError::Unverified(format!(
                "a certificate or key path without spaces, not '{value}'"
            )));
        }
    }
    let (certificate, key) = (certificate.trim(), key.trim());
    let parsed = parse_unbroken(file, text)?;
    let is_certificate =
        |d: &&conf::Directive| d.is("SSLCertificateFile") || d.is("SSLCertificateKeyFile");
    let vhost = parsed.virtual_hosts.first();
    let in_vhost: Vec<&conf::Directive> = vhost
        .map(|v| v.directives.iter().filter(is_certificate).collect())
        .unwrap_or_default();
    let targets: Vec<&conf::Directive> = if in_vhost.is_empty() {
        parsed.global.iter().filter(is_certificate).collect()
    } else {
        in_vhost
    };
    let now: Vec<(&str, &str)> = targets
        .iter()
        .map(|d| {
            (
                d.name.as_str(),
                d.args.first().map(String::as_str).unwrap_or(""),
            )
        })
        .collect();
    let pair_now = now.len() == 2
        && now
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("SSLCertificateFile") && *v == certificate)
        && now
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("SSLCertificateKeyFile") && *v == key);
    if pair_now {
        return Ok(None);
    }
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let commented: std::collections::HashSet<usize> = targets
        .iter()
        .flat_map(|d| (d.location.line - 1)..d.last_line)
        .collect();
    let new_lines = [
        format!("SSLCertificateFile {certificate}"),
        format!("SSLCertificateKeyFile {key}"),
    ];
    let mut out = String::with_capacity(text.len() + 200);
    let insert_at = match targets.first() {
        Some(first) => first.location.line - 1,
        None => vhost.map_or(lines.len(), |v| v.end_line - 1),
    };
    let default_eol = lines.first().map_or("\n", |l| shape_of(l).1);
    let default_eol = if default_eol.is_empty() {
        "\n"
    } else {
        default_eol
    };
    for (index, line) in lines.iter().enumerate() {
        if index == insert_at {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push_str(default_eol);
            }
            end_dangling_continuation(&mut out, default_eol);
            let (indent, eol) = match targets.first() {
                Some(_) => shape_of(line),
                None if vhost.is_some() => ("    ", default_eol),
                None => ("", default_eol),
            };
            push_line(&mut out, indent, marker, eol);
            for new in &new_lines {
                push_line(&mut out, indent, new, eol);
            }
        }
        if commented.contains(&index) {
            let content = line.trim_start();
            out.push_str(&line[..line.len() - content.len()]);
            out.push('#');
            out.push_str(content);
            if !out.ends_with('\n') {
                out.push_str(default_eol);
            }
        } else {
            out.push_str(line);
        }
    }
    if insert_at >= lines.len() {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push_str(default_eol);
        }
        end_dangling_continuation(&mut out, default_eol);
        push_line(&mut out, "", marker, default_eol);
        for new in &new_lines {
            push_line(&mut out, "", new, default_eol);
        }
    }
    let policy = edited_policy(file, &out)?;
    let files: Vec<&str> = policy
        .certificate_files
        .iter()
        .map(|c| c.value.as_str())
        .collect();
    let keys: Vec<&str> = policy
        .certificate_key_files
        .iter()
        .map(|c| c.value.as_str())
        .collect();
    if files == [certificate] && keys == [key] {
        Ok(Some(out))
    } else {
        Err(EditError::Unverified(format!(
            "the edited file would name {files:?} and {keys:?}, not {certificate} and {key}"
        )))
    }
}

/// `text` with every edit made in turn (pure); `None` when it already says all of them.
pub fn apply_edits(
    file: &str,
    text: &str,
    edits: &[Edit],
    marker: &str,
) -> Result<Option<String>, EditError> {
    let mut edited: Option<String> = None;
    for edit in edits {
        if let Some(next) = edit.apply(file, edited.as_deref().unwrap_or(text), marker)? {
            edited = Some(next);
        }
    }
    Ok(edited.filter(|edited| edited != text))
}

/// One edit of a conf file: a setting's value, or the listener's certificate and key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    Setting(Setting, String),
    Certificate { certificate: String, key: String },
}

impl Edit {
    /// The edited text, or `None` when the file already says it.
    pub fn apply(&self, file: &str, text: &str, marker: &str) -> Result<Option<String>, EditError> {
        match self {
            Edit::Setting(setting, value) => replace_setting(file, text, *setting, value, marker),
            Edit::Certificate { certificate, key } => {
                replace_certificate(file, text, certificate, key, marker)
            }
        }
    }
}

/// A last line that ends with `\` continues into whatever follows it: a file whose final line
/// dangles like that would swallow the line ward writes next (found by fuzzing). An empty line
/// ends the continuation; nothing else changes.
fn end_dangling_continuation(out: &mut String, eol: &str) {
    let last = out.trim_end_matches(['\n', '\r']);
    if last.len() < out.len() && last.ends_with('\\') {
        out.push_str(if eol.is_empty() { "\n" } else { eol });
    }
}

/// A line's leading whitespace and its line ending (`"\r\n"`, `"\n"` or `""` at end of file).
fn shape_of(line: &str) -> (&str, &str) {
    let content = line.trim_start_matches([' ', '\t']);
    let indent = &line[..line.len() - content.len()];
    let eol = if line.ends_with("\r\n") {
        "\r\n"
    } else if line.ends_with('\n') {
        "\n"
    } else {
        ""
    };
    (indent, eol)
}

fn push_line(out: &mut String, indent: &str, content: &str, eol: &str) {
    out.push_str(indent);
    out.push_str(content);
    out.push_str(if eol.is_empty() { "\n" } else { eol });
}

/// What [`edit_file`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EditOutcome {
    /// The directive already had that value; the file was not touched.
    Unchanged,
    /// The file was replaced; `backup` holds the bytes it had before.
    Changed { backup: PathBuf },
}

/// Edits `SSLProtocol` in the file at `path`, keeping a backup beside it named
/// `<file>.<UTC stamp>.bak`. Nothing is written if the file or the new value is invalid.
pub fn edit_file(
    path: &Path,
    new_args: &str,
    label: &str,
    now: SystemTime,
) -> Result<EditOutcome, EditError> {
    edit_file_settings(
        path,
        &[Edit::Setting(Setting::Protocol, new_args.to_string())],
        label,
        now,
    )
}

/// Makes every edit in the file at `path` in one write, keeping a backup beside it named
/// `<file>.<UTC stamp>.bak`. Nothing is written if the file or a value is invalid, and nothing
/// when the file already says all of them.
pub fn edit_file_settings(
    path: &Path,
    edits: &[Edit],
    label: &str,
    now: SystemTime,
) -> Result<EditOutcome, EditError> {
    let io_error = |error| EditError::Io {
        path: path.to_path_buf(),
        error,
    };
    let bytes = fs::read(path).map_err(io_error)?;
    let text = String::from_utf8(bytes).map_err(|_| EditError::NotUtf8(path.to_path_buf()))?;
    let marker = marker_line(label, now);
    let Some(new_text) = apply_edits(&path.display().to_string(), &text, edits, &marker)? else {
        return Ok(EditOutcome::Unchanged);
    };
    let backup = unused_backup_path(path, now);
    write_atomic(&backup, text.as_bytes()).map_err(|error| EditError::Io {
        path: backup.clone(),
        error,
    })?;
    write_atomic(path, new_text.as_bytes()).map_err(io_error)?;
    Ok(EditOutcome::Changed { backup })
}

/// Puts a backup's bytes back in place of `path`, atomically.
pub fn restore_backup(path: &Path, backup: &Path) -> io::Result<()> {
    let bytes = fs::read(backup)?;
    write_atomic(path, &bytes)
}

fn unused_backup_path(path: &Path, now: SystemTime) -> PathBuf {
    let (year, month, day, hour, minute, second) = utc_fields(now);
    let stamp = format!("{year:04}{month:02}{day:02}T{hour:02}{minute:02}{second:02}Z");
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut candidate = path.with_file_name(format!("{name}.{stamp}.bak"));
    let mut counter = 1;
    while candidate.exists() {
        candidate = path.with_file_name(format!("{name}.{stamp}-{counter}.bak"));
        counter += 1;
    }
    candidate
}

/// Writes `bytes` over `path` atomically (ward-fs: a temporary file created with the final
/// mode, fsync, rename over, fsync of the directory), keeping the mode the file has.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    ward_fs::replace(path, bytes, 0o644)
}

#[cfg(test)]
mod tests;
