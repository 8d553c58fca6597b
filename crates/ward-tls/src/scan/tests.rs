use super::*;
use crate::hello::parse_client_hello;

#[test]
fn sslv3_hello_is_well_formed() {
    let hello = parse_client_hello(&sslv3_client_hello([7; 32])).unwrap();
    assert_eq!(hello.record_version, 0x0300);
    assert_eq!(hello.legacy_version, 0x0300);
    assert!(hello.supported_versions.is_empty());
    assert!(
        hello.offered_versions().is_empty(),
        "SSLv3 only, no TLS version"
    );
    assert_eq!(hello.cipher_suites.len(), SSLV3_SUITES.len());
}

#[test]
fn sslv3_verdicts() {
    let mut server_hello = vec![22, 3, 0, 0, 74, 2, 0, 0, 70, 3, 0];
    server_hello.extend_from_slice(&[0; 32]);
    server_hello.extend_from_slice(&[0, 0x00, 0x2f, 0]);
    let mut tls12_hello = server_hello.clone();
    tls12_hello[9..11].copy_from_slice(&[3, 3]);
    let cases: Vec<(Vec<u8>, Outcome)> = vec![
        (
            vec![],
            Outcome::Refused {
                reason: "connection closed without an answer".into(),
            },
        ),
        (
            vec![21, 3, 0, 0, 2, 2, 70],
            Outcome::Refused {
                reason: "alert: protocol version".into(),
            },
        ),
        (
            vec![21, 3, 1, 0, 2, 2, 40],
            Outcome::Refused {
                reason: "alert: handshake failure".into(),
            },
        ),
        (
            server_hello,
            Outcome::Accepted {
                cipher: "AES128-SHA".into(),
            },
        ),
        (
            tls12_hello,
            Outcome::Refused {
                reason: "server answered TLSv1.2".into(),
            },
        ),
        (
            b"HTTP/1.1 400".to_vec(),
            Outcome::Refused {
                reason: "unexpected answer".into(),
            },
        ),
    ];
    for (bytes, expected) in cases {
        assert_eq!(sslv3_verdict(&bytes), expected, "{bytes:?}");
    }
}

#[test]
fn unreachable_target_is_an_error_not_a_table() {
    // Port 1 on loopback: nothing listens there on a test machine.
    let port = 1;
    let error = scan(&format!("127.0.0.1:{port}"), &ScanConfig::default()).unwrap_err();
    assert!(matches!(error, ScanError::Unreachable { .. }), "{error}");
    assert!(error
        .to_string()
        .starts_with(&format!("cannot connect to 127.0.0.1:{port}: ")));
    let error = scan("no-port-here", &ScanConfig::default()).unwrap_err();
    assert_eq!(error.to_string(), "no-port-here: expected HOST:PORT");
}
