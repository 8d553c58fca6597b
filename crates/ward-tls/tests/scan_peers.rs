//! The scanner against real servers: nginx and Apache httpd, each with several protocol sets,
//! must agree with `openssl s_client` on every version (accepted or not, and the cipher).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ward_testkit::{certs, free_port, s_client, spawn, tool, wait_for_port, Certs};
use ward_tls::scan::{scan, Outcome, Probe, ScanConfig};
use ward_tls::TlsVersion;

fn nginx_conf(dir: &Path, certs: &Certs, servers: &[(u16, &str)]) -> String {
    let mut conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {dir}/nginx.pid;\n\
         error_log {dir}/error.log;\nevents {{ worker_connections 64; }}\nhttp {{\n\
         access_log off;\nclient_body_temp_path {dir}/body;\nproxy_temp_path {dir}/proxy;\n\
         fastcgi_temp_path {dir}/fastcgi;\nuwsgi_temp_path {dir}/uwsgi;\nscgi_temp_path {dir}/scgi;\n",
        dir = dir.display()
    );
    for (port, protocols) in servers {
        write!(
            conf,
            "server {{\n listen 127.0.0.1:{port} ssl;\n ssl_certificate {cert};\n \
             ssl_certificate_key {key};\n ssl_protocols {protocols};\n \
             ssl_ciphers DEFAULT:@SECLEVEL=0;\n ssl_prefer_server_ciphers on;\n \
             location / {{ return 200 \"ok\\n\"; }}\n}}\n",
            cert = certs.cert.display(),
            key = certs.key.display(),
        )
        .unwrap();
    }
    conf.push_str("}\n");
    conf
}

fn apache_conf(dir: &Path, certs: &Certs, vhosts: &[(u16, &str)]) -> String {
    let mut conf = format!(
        "ServerRoot /etc/apache2\n\
         LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so\n\
         LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so\n\
         LoadModule ssl_module /usr/lib/apache2/modules/mod_ssl.so\n\
         PidFile {dir}/httpd.pid\nErrorLog {dir}/error.log\nDefaultRuntimeDir {dir}\n\
         Mutex file:{dir} default\nUser nobody\nGroup nogroup\nServerName localhost\n\
         SSLSessionCache none\nSSLCipherSuite DEFAULT:@SECLEVEL=0\nSSLHonorCipherOrder on\n",
        dir = dir.display()
    );
    for (port, protocols) in vhosts {
        write!(
            conf,
            "Listen 127.0.0.1:{port}\n<VirtualHost 127.0.0.1:{port}>\nSSLEngine on\n\
             SSLCertificateFile {cert}\nSSLCertificateKeyFile {key}\nSSLProtocol {protocols}\n\
             </VirtualHost>\n",
            cert = certs.cert.display(),
            key = certs.key.display(),
        )
        .unwrap();
    }
    conf
}

/// Scans every port and compares each TLS version with `openssl s_client`; returns the
/// disagreements, and checks that the scanner found at least one accepted version per port.
fn compare(daemon: &mut ward_testkit::Daemon, ports: &[(u16, &str)]) -> Vec<String> {
    let server = daemon.name;
    let mut failures = Vec::new();
    let config = ScanConfig {
        timeout: Duration::from_secs(5),
        server_name: None,
    };
    for (port, protocols) in ports {
        assert!(
            wait_for_port(*port, Duration::from_secs(10)),
            "{server} is not listening on {port}: {}",
            daemon.exit_report()
        );
        let report = scan(&format!("127.0.0.1:{port}"), &config).unwrap();
        assert_eq!(report.results.len(), Probe::ALL.len());
        assert!(
            report.accepted().count() > 0,
            "{server} {protocols}: nothing accepted"
        );
        for (probe, outcome) in &report.results {
            let Probe::Tls(version) = probe else {
                // Debian's OpenSSL has no SSLv3, neither for s_client nor for the servers.
                if outcome.accepted() {
                    failures.push(format!("{server} {protocols}: SSLv3 accepted?"));
                }
                continue;
            };
            let reference = s_client(*port, *version);
            let agree = match (outcome, &reference) {
                (Outcome::Accepted { cipher }, Some((protocol, reference_cipher))) => {
                    protocol == version.name() && cipher == reference_cipher
                }
                (Outcome::Refused { .. }, None) => true,
                _ => false,
            };
            if !agree {
                failures.push(format!(
                    "{server} ssl_protocols {protocols}, {version}: scanner {outcome:?}, s_client {reference:?}"
                ));
            }
        }
    }
    failures
}

fn start_nginx(dir: &Path, conf: &Path) -> ward_testkit::Daemon {
    spawn(
        "nginx",
        Command::new(tool("nginx", "nginx"))
            .arg("-c")
            .arg(conf)
            .arg("-e")
            .arg(dir.join("error.log")),
    )
}

#[test]
fn scanner_agrees_with_s_client_on_nginx() {
    let certs = certs();
    let dir = tempfile::tempdir().unwrap();
    let sets = [
        "TLSv1 TLSv1.1 TLSv1.2 TLSv1.3",
        "TLSv1",
        "TLSv1 TLSv1.1",
        "TLSv1.2",
        "TLSv1.2 TLSv1.3",
        "TLSv1.3",
    ];
    let servers: Vec<(u16, &str)> = sets.iter().map(|s| (free_port(), *s)).collect();
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, nginx_conf(dir.path(), &certs, &servers)).unwrap();
    let mut nginx = start_nginx(dir.path(), &path);
    let failures = compare(&mut nginx, &servers);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn scanner_agrees_with_s_client_on_apache() {
    let certs = certs();
    let dir = tempfile::tempdir().unwrap();
    let sets = [
        "all -SSLv2 -SSLv3",
        "all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1",
        "TLSv1.2",
        "TLSv1",
        "all -TLSv1.1",
        "+TLSv1.1 +TLSv1.2",
    ];
    let vhosts: Vec<(u16, &str)> = sets.iter().map(|s| (free_port(), *s)).collect();
    let path = dir.path().join("httpd.conf");
    std::fs::write(&path, apache_conf(dir.path(), &certs, &vhosts)).unwrap();
    let mut apache = spawn(
        "apache2",
        Command::new(tool("apache2", "apache2"))
            .arg("-X")
            .arg("-f")
            .arg(&path),
    );
    let failures = compare(&mut apache, &vhosts);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn scanner_sees_a_tls1_only_server_the_way_an_xp_client_would() {
    // A sanity check on the scanner's own verdicts, independent of s_client.
    let certs = certs();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, nginx_conf(dir.path(), &certs, &[(port, "TLSv1")])).unwrap();
    let _nginx = start_nginx(dir.path(), &path);
    assert!(wait_for_port(port, Duration::from_secs(10)));
    let report = scan(&format!("127.0.0.1:{port}"), &ScanConfig::default()).unwrap();
    let accepted: Vec<Probe> = report.accepted().collect();
    assert_eq!(accepted, vec![Probe::Tls(TlsVersion::Tls1_0)]);
}
