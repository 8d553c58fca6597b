use super::*;
use ward_tls::TlsVersion::*;

fn hello(legacy: u16, supported: &[u16]) -> ClientHello {
    ClientHello {
        record_version: 0x0301,
        legacy_version: legacy,
        supported_versions: supported.to_vec(),
        server_name: None,
        cipher_suites: vec![0x002f, 0xc02b],
        sslv2_format: false,
        extensions: Vec::new(),
        groups: Vec::new(),
        alpn: None,
        signature_algorithms: Vec::new(),
    }
}

/// (what was read, listener range, how it ended, expected kind, expected sentence)
type Case<'a> = (
    Result<&'a ClientHello, &'a HelloError>,
    VersionRange,
    HandshakeEnd,
    FailureKind,
    &'a str,
);

#[test]
fn classification_table() {
    let modern = VersionRange::new(Tls1_2, Tls1_3);
    let tls13 = VersionRange::new(Tls1_3, Tls1_3);
    let all = VersionRange::new(Tls1_0, Tls1_3);
    let xp = hello(0x0301, &[]);
    let tls11 = hello(0x0302, &[]);
    let tls12 = hello(0x0303, &[]);
    let ssl3 = hello(0x0300, &[]);
    let modern_client = hello(0x0303, &[0x0304, 0x0303]);
    let openssl = |r: &str| HandshakeEnd::OpenSsl(Some(r.into()));
    let cases: Vec<Case> = vec![
        (Ok(&xp), modern, openssl("unsupported protocol"), FailureKind::ProtocolVersion,
         "client offers only TLSv1, listener accepts TLSv1.2-TLSv1.3"),
        (Ok(&tls11), modern, openssl("unsupported protocol"), FailureKind::ProtocolVersion,
         "client offers only TLSv1-TLSv1.1, listener accepts TLSv1.2-TLSv1.3"),
        (Ok(&tls12), tls13, openssl("unsupported protocol"), FailureKind::ProtocolVersion,
         "client offers only TLSv1-TLSv1.2, listener accepts TLSv1.3"),
        (Ok(&ssl3), all, openssl("unsupported protocol"), FailureKind::ProtocolVersion,
         "client offers only SSLv3, listener accepts TLSv1-TLSv1.3"),
        (Ok(&modern_client), modern, openssl("no shared cipher"), FailureKind::NoSharedCipher,
         "no cipher in common: the client offers 2 suites, none allowed on this listener"),
        (Ok(&modern_client), modern, HandshakeEnd::TimedOut, FailureKind::Timeout,
         "handshake not finished within 10s"),
        (Ok(&modern_client), modern, HandshakeEnd::Closed, FailureKind::Closed,
         "client closed the connection during the handshake (does it trust the server certificate?)"),
        (Ok(&modern_client), modern, openssl("bad key share"), FailureKind::Other, "bad key share"),
        (Err(&HelloError::NotTls), modern, HandshakeEnd::Closed, FailureKind::NotTls,
         "not a TLS ClientHello (plain HTTP sent to an HTTPS port?)"),
        (Err(&HelloError::Incomplete), modern, HandshakeEnd::TimedOut, FailureKind::Timeout,
         "no complete ClientHello within 10s"),
        (Err(&HelloError::Incomplete), modern, HandshakeEnd::Closed, FailureKind::Closed,
         "connection closed before a complete ClientHello"),
        (Err(&HelloError::Malformed("odd cipher suites length")), modern, HandshakeEnd::Closed,
         FailureKind::MalformedHello, "malformed ClientHello: odd cipher suites length"),
    ];
    for (hello, range, end, kind, text) in cases {
        assert_eq!(
            classify(hello, range, &end, 10),
            (kind, text.to_string()),
            "{hello:?} {range} {end:?}"
        );
    }
}

#[test]
fn offered_names() {
    assert_eq!(
        offered(&hello(0x0301, &[])),
        ("TLSv1".into(), vec!["TLSv1".into()])
    );
    assert_eq!(
        offered(&hello(0x0303, &[0x0304, 0x0303])),
        ("TLSv1.3".into(), vec!["TLSv1.2".into(), "TLSv1.3".into()])
    );
}
