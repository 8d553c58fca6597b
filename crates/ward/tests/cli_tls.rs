//! `ward tls ...` as an operator runs it: the real binary, real files, a real TLS peer.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn ward(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(output)))
}

#[test]
fn explain_accepts_values_that_begin_with_a_dash() {
    for args in [
        &["tls", "explain", "-all +TLSv1.2"][..],
        &["tls", "explain", "--", "-all", "+TLSv1.2"][..],
        &["tls", "explain", "-all", "+TLSv1.2"][..],
    ] {
        let output = ward(args);
        assert!(output.status.success(), "{args:?}: {output:?}");
        assert!(
            stdout(&output).contains("enabled: TLSv1.2\n"),
            "{args:?}: {}",
            stdout(&output)
        );
    }
}

#[test]
fn explain_json_shape() {
    let cases = [
        (
            vec!["--json", "all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1"],
            r#"["TLSv1.2","TLSv1.3"]"#,
            0,
            Value::Null,
        ),
        (
            vec!["-all +TLSv1.2", "--json"],
            r#"["TLSv1.2"]"#,
            0,
            Value::Null,
        ),
        (
            vec!["--json", "TLSv1.0"],
            "[]",
            1,
            serde_json::json!({"code": "invalid_protocol", "message": "SSLProtocol: Illegal protocol 'TLSv1.0'"}),
        ),
    ];
    for (words, enabled, code, error) in cases {
        let mut args = vec!["tls", "explain"];
        args.extend(words.iter().copied());
        let output = ward(&args);
        assert_eq!(output.status.code(), Some(code), "{args:?}");
        let value = json(&output);
        assert_eq!(value["enabled"].to_string(), enabled, "{args:?}");
        assert_eq!(value["error"], error, "{args:?}");
        assert!(value["warnings"].is_array());
    }
    let value = json(&ward(&["tls", "explain", "--json", "all TLSv1.2"]));
    assert_eq!(
        value["warnings"][0].as_str().unwrap().split(':').next(),
        Some("AH02532")
    );
    let value = json(&ward(&["tls", "explain", "--json", "all"]));
    assert_eq!(value["security_level"], 0);
}

#[test]
fn explain_file_reports_errors_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sslforclients.conf");
    std::fs::write(&path, "# x\n\nSSLProtocol all -TLSv1.0\n").unwrap();
    let output = ward(&["tls", "explain", "--file", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains(&format!(
            "error: {}:3: SSLProtocol: Illegal protocol 'TLSv1.0'",
            path.display()
        )),
        "{}",
        stdout(&output)
    );
    std::fs::write(&path, "SSLProtocol all\nSSLCipherSuite NOSUCHCIPHER\n").unwrap();
    let output = ward(&["tls", "explain", "--json", "--file", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let value = json(&output);
    assert!(
        value["error"]["message"]
            .as_str()
            .unwrap()
            .contains(":2: SSLCipherSuite: OpenSSL rejects"),
        "{value}"
    );
}

#[test]
fn edit_then_restore_is_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ssl.conf");
    let original = "# console\nSSLProtocol all -SSLv2 -SSLv3\r\nSSLHonorCipherOrder on";
    std::fs::write(&path, original).unwrap();
    let file = path.to_str().unwrap();
    let output = ward(&["tls", "edit", file, "--protocol", "-all +TLSv1.2", "--json"]);
    assert!(output.status.success(), "{output:?}");
    let value = json(&output);
    assert_eq!(value["changed"], true);
    let backup = value["backup"].as_str().unwrap().to_string();
    let edited = std::fs::read_to_string(&path).unwrap();
    assert!(
        edited.contains("#:Overridden_by_ward_tls_edit "),
        "{edited}"
    );
    assert!(edited.contains("\n#SSLProtocol all -SSLv2 -SSLv3\r\nSSLProtocol -all +TLSv1.2\r\n"));
    let explained = json(&ward(&["tls", "explain", "--json", "--file", file]));
    assert_eq!(explained["enabled"].to_string(), r#"["TLSv1.2"]"#);
    // The same edit again changes nothing.
    let again = json(&ward(&[
        "tls",
        "edit",
        file,
        "--protocol",
        "-all +TLSv1.2",
        "--json",
    ]));
    assert_eq!(again["changed"], false);
    // A bad value is refused and changes nothing.
    let refused = ward(&["tls", "edit", file, "--protocol", "TLSv1.0"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Illegal protocol 'TLSv1.0'"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), edited);
    let restored = ward(&["tls", "restore", file, "--backup", &backup]);
    assert!(restored.status.success(), "{restored:?}");
    assert_eq!(std::fs::read(&path).unwrap(), original.as_bytes());
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn scan_json_against_openssl_s_server() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ward_tls::pki::new_ca("test").unwrap();
    let server = ward_tls::pki::new_server_cert(&ca, &["localhost"], &[]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, server.cert_pem().unwrap()).unwrap();
    std::fs::write(&key, server.key_pem().unwrap()).unwrap();
    let port = ward_testkit::free_port();
    let _server = Server(
        Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-tls1_2", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl is installed (scripts/test installs it)"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "s_server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let target = format!("127.0.0.1:{port}");
    let output = ward(&["tls", "scan", &target, "--json"]);
    assert!(output.status.success(), "{output:?}");
    let value = json(&output);
    assert_eq!(value["target"], target.as_str());
    let accepted: Vec<(&str, bool)> = ["SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]
        .into_iter()
        .map(|name| (name, value["protocols"][name]["accepted"] == true))
        .collect();
    assert_eq!(
        accepted,
        vec![
            ("SSLv3", false),
            ("TLSv1", false),
            ("TLSv1.1", false),
            ("TLSv1.2", true),
            ("TLSv1.3", false)
        ]
    );
    assert!(value["protocols"]["TLSv1.2"]["cipher"]
        .as_str()
        .unwrap()
        .contains("ECDHE-ECDSA"));
    // The human table says the same.
    let table = stdout(&ward(&["tls", "scan", &target]));
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("TLSv1.2") && l.contains("accepted")),
        "{table}"
    );
}

#[test]
fn scan_of_a_dead_target_is_an_error() {
    let port = ward_testkit::free_port();
    let output = ward(&["tls", "scan", &format!("127.0.0.1:{port}")]);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty(), "no table for a dead target");
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot connect to 127.0.0.1:"));
    // With --json, the error is JSON on stdout, and no report.
    let output = ward(&["tls", "scan", &format!("127.0.0.1:{port}"), "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let value = json(&output);
    assert!(value["protocols"].is_null(), "{value}");
    assert!(value["error"]["message"]
        .as_str()
        .unwrap()
        .contains("cannot connect to 127.0.0.1:"));
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["tls", "--help"][..],
        &["tls", "explain", "--help"][..],
        &["tls", "edit", "--help"][..],
        &["tls", "restore", "--help"][..],
        &["tls", "scan", "--help"][..],
        &["tls", "handshakes", "--help"][..],
        &["server", "--help"][..],
        &["server", "init", "--help"][..],
        &["server", "configtest", "--help"][..],
        &["server", "reload", "--help"][..],
        &["server", "rotate-ca", "--help"][..],
        &["server", "rotate-ca", "switch", "--help"][..],
        &["server", "rotate-key", "--help"][..],
        &["server", "rotate-key", "status", "--help"][..],
    ] {
        let output = ward(args);
        assert!(output.status.success(), "{args:?}");
        assert!(stdout(&output).contains("Usage:"), "{args:?}");
    }
}

#[test]
fn explain_file_shows_how_long_each_certificate_has_left() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ward");
    let port = |n: u16| format!("127.0.0.1:{}", 20000 + n);
    let init = ward(&[
        "server",
        "init",
        "--data",
        data.to_str().unwrap(),
        "--console-addr",
        &port(1),
        "--clients-addr",
        &port(2),
        "--clients-http-addr",
        &port(3),
    ]);
    assert!(init.status.success(), "{init:?}");
    let conf = data.join("conf/ssl/sslforclients.conf");
    let explain = |extra: &[&str]| {
        let mut args = vec!["tls", "explain", "--file", conf.to_str().unwrap()];
        args.extend(extra);
        ward(&args)
    };
    let answer = json(&explain(&["--json"]));
    let certificates = answer["certificates"].as_array().unwrap();
    assert_eq!(certificates.len(), 2, "{answer}");
    for certificate in certificates {
        let days = certificate["days_left"].as_i64().unwrap();
        assert!((700..=730).contains(&days), "{certificate}");
        assert_eq!(certificate["expired"], false);
    }
    assert!(stdout(&explain(&[])).contains("certificate certs/server.pem: expires in"));
    // An expired one says so.
    let ca = ward_tls::pki::new_ca("test CA").unwrap();
    let ip = [std::net::IpAddr::from([127, 0, 0, 1])];
    let expired = ward_tls::pki::new_server_cert_for(
        ward_tls::pki::KeyType::EcdsaP256,
        &ca,
        &["localhost"],
        &ip,
        0,
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    std::fs::write(data.join("certs/server.pem"), expired.cert_pem().unwrap()).unwrap();
    let answer = json(&explain(&["--json"]));
    assert_eq!(answer["certificates"][0]["expired"], true, "{answer}");
    assert!(stdout(&explain(&[])).contains("certificate certs/server.pem: expired"));
}
