//! Differential test against the reference: the real Apache httpd 2.4 (Debian `apache2`).
//!
//! For every SSLProtocol line below, ward's decision must match what Apache does:
//! - lines Apache rejects: the same error text (`apache2 -t`);
//! - lines Apache accepts: the same AH02532 warnings (`apache2 -t`, global context), and the
//!   same versions accepted in real handshakes, each line served by its own `<VirtualHost>` of
//!   one running Apache;
//! - lines that leave no version: Apache refuses to start, and ward reports the same error.
//!
//! What is compared, and what is not: Apache runs on Debian's OpenSSL 3.0, ward on the
//! OpenSSL 3.5 it vendors. The versions each line enables are decided by mod_ssl's parsing
//! and OpenSSL's min/max, the same in both; they are compared in real handshakes, whose
//! clients here are built on ward's OpenSSL. Cipher suites and groups are not compared (the
//! two OpenSSL builds differ there on purpose: 3DES and ML-KEM exist only in ward's).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ward_testkit::{certs, free_port, spawn, tool, wait_for_port, Certs};
use ward_tls::context::{build_connector, ClientTls};
use ward_tls::protocol::{parse_ssl_protocol, split_words, ProtocolError};
use ward_tls::TlsVersion;

const LINES: &[&str] = &[
    // The seed's lines.
    "all -SSLv2 -SSLv3",
    "all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1",
    "TLSv1.2",
    // Plain sets, holes, replacements, case.
    "all",
    "TLSv1",
    "TLSv1.1",
    "TLSv1.3",
    "-all +TLSv1.2",
    "+TLSv1.2 +TLSv1.3",
    "all -TLSv1.3",
    "all -TLSv1.1",
    "all -TLSv1.2",
    "+TLSv1 +TLSv1.2",
    "+TLSv1 +TLSv1.1",
    "+TLSv1 +TLSv1.3",
    "all TLSv1.2",
    "TLSv1.2 TLSv1.3",
    "TLSv1 TLSv1.1 TLSv1.2",
    "ALL -tlsv1 -TLSV1.1",
    "-SSLv3 TLSv1.2",
    "all -TLSv1.2 +TLSv1.2",
    // Lines Apache rejects.
    "TLSv1.0",
    "all -TLSv1.0",
    "SSLv2",
    "+SSLv3",
    "SSLv3",
    "all,-SSLv3",
    "+",
    "TLSv1.4",
    // Lines that leave nothing.
    "-all",
    "-SSLv2",
    "TLSv1.2 -TLSv1.2",
];

fn apache_conf(dir: &Path, certs: &Certs, global: &str, vhosts: &[(u16, &str)]) -> String {
    let mut conf = format!(
        "ServerRoot /etc/apache2\n\
         LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so\n\
         LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so\n\
         LoadModule ssl_module /usr/lib/apache2/modules/mod_ssl.so\n\
         PidFile {dir}/httpd.pid\n\
         ErrorLog {dir}/error.log\n\
         DefaultRuntimeDir {dir}\n\
         Mutex file:{dir} default\n\
         User nobody\n\
         Group nogroup\n\
         ServerName localhost\n\
         SSLSessionCache none\n\
         SSLCipherSuite DEFAULT:@SECLEVEL=0\n\
         {global}\n",
        dir = dir.display()
    );
    for (port, line) in vhosts {
        write!(
            conf,
            "Listen 127.0.0.1:{port}\n\
             <VirtualHost 127.0.0.1:{port}>\n\
             SSLEngine on\n\
             SSLCertificateFile {cert}\n\
             SSLCertificateKeyFile {key}\n\
             SSLProtocol {line}\n\
             </VirtualHost>\n",
            cert = certs.cert.display(),
            key = certs.key.display(),
        )
        .unwrap();
    }
    conf
}

/// `apache2 -t` on a file with `SSLProtocol LINE` in the main server: Apache's syntax error,
/// or its distinct AH02532 warnings.
fn apache_check(dir: &Path, certs: &Certs, line: &str) -> Result<BTreeSet<String>, String> {
    let path = dir.join("check.conf");
    std::fs::write(
        &path,
        apache_conf(dir, certs, &format!("SSLProtocol {line}"), &[]),
    )
    .unwrap();
    let output = Command::new(tool("apache2", "apache2"))
        .args(["-t", "-f"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        // "AH00526: Syntax error on line N of FILE:\nMESSAGE"
        let message = stderr
            .lines()
            .skip_while(|l| !l.contains("AH00526"))
            .nth(1)
            .unwrap_or(&stderr)
            .trim()
            .to_string();
        return Err(message);
    }
    Ok(stderr
        .split("[ssl:warn]")
        .filter_map(|chunk| chunk.find("AH02532").map(|at| &chunk[at..]))
        .map(|w| {
            w.lines()
                .next()
                .unwrap()
                .split("[")
                .next()
                .unwrap()
                .trim()
                .to_string()
        })
        .collect())
}

/// Which versions a server on `port` accepts, by real handshakes with ward's connector.
fn accepted_versions(port: u16) -> Vec<TlsVersion> {
    TlsVersion::ALL
        .into_iter()
        .filter(|&version| {
            let connector = build_connector(&ClientTls::probe(version)).unwrap();
            let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut config = connector.configure().unwrap();
            config.set_verify_hostname(false);
            config
                .connect("localhost", stream)
                .is_ok_and(|tls| tls.ssl().version_str() == version.name())
        })
        .collect()
}

/// The exit status of `child` if it exits within `bound`.
fn wait_exit(child: &mut std::process::Child, bound: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + bound;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn ward_decides_every_line_as_apache_does() {
    let certs = certs();
    let dir = tempfile::tempdir().unwrap();
    let mut served = Vec::new();
    let mut failures = Vec::new();
    let mut compared = 0;

    for line in LINES {
        let ward = parse_ssl_protocol(&split_words(line));
        let apache = apache_check(dir.path(), &certs, line);
        match (&ward, &apache) {
            (Err(ProtocolError::NoneAvailable), Ok(_)) => {} // checked at start-up below
            (Err(error), Err(apache_error)) => {
                if error.to_string() != *apache_error {
                    failures.push(format!(
                        "{line}: ward says {error:?}, Apache says {apache_error:?}"
                    ));
                }
                compared += 1;
            }
            (Ok(decision), Ok(apache_warnings)) => {
                let ward_warnings: BTreeSet<String> = decision.warnings.iter().cloned().collect();
                if ward_warnings != *apache_warnings {
                    failures.push(format!(
                        "{line}: warnings differ\n  ward:   {ward_warnings:?}\n  apache: {apache_warnings:?}"
                    ));
                }
                served.push((
                    free_port(),
                    *line,
                    decision.range.versions().collect::<Vec<_>>(),
                ));
            }
            (ward, apache) => failures.push(format!("{line}: ward {ward:?}, Apache {apache:?}")),
        }
    }

    // One Apache serves every accepted line on its own port.
    let vhosts: Vec<(u16, &str)> = served
        .iter()
        .map(|(port, line, _)| (*port, *line))
        .collect();
    let conf_path = dir.path().join("httpd.conf");
    std::fs::write(&conf_path, apache_conf(dir.path(), &certs, "", &vhosts)).unwrap();
    let mut apache = spawn(
        "apache2",
        Command::new(tool("apache2", "apache2"))
            .arg("-X")
            .arg("-f")
            .arg(&conf_path),
    );
    for (port, line, ward_versions) in &served {
        assert!(
            wait_for_port(*port, Duration::from_secs(10)),
            "Apache did not listen on {port} ({line}): {}; error log:\n{}",
            apache.exit_report(),
            std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
        );
        let apache_versions = accepted_versions(*port);
        if apache_versions != *ward_versions {
            failures.push(format!(
                "SSLProtocol {line}: Apache accepts {apache_versions:?}, ward decides {ward_versions:?}"
            ));
        }
        compared += 1;
    }
    drop(apache);

    // Lines that leave nothing: Apache refuses to start, ward gives the same reason.
    for line in LINES {
        if parse_ssl_protocol(&split_words(line)) != Err(ProtocolError::NoneAvailable) {
            continue;
        }
        let port = free_port();
        let path = dir.path().join("empty.conf");
        std::fs::write(&path, apache_conf(dir.path(), &certs, "", &[(port, line)])).unwrap();
        let _ = std::fs::remove_file(dir.path().join("error.log"));
        // Apache must refuse to start; if it starts after all, the daemon guard stops it.
        let mut apache = spawn(
            "apache2",
            Command::new(tool("apache2", "apache2"))
                .args(["-X", "-f"])
                .arg(&path),
        );
        let status = wait_exit(&mut apache.child, Duration::from_secs(20));
        let mut stderr = String::new();
        if let Some(mut pipe) = apache.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        }
        let log =
            std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default() + &stderr;
        let expected = ProtocolError::NoneAvailable.to_string();
        if status.is_none_or(|s| s.success()) || !log.contains(&expected) {
            failures.push(format!(
                "{line}: Apache did not stop with {expected:?}: {log}"
            ));
        }
        compared += 1;
    }

    assert!(compared >= 20, "only {compared} lines compared");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
