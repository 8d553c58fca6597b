use super::*;
use crate::context::{build_connector, ClientTls, ServerVerification};

/// The ClientHello real OpenSSL sends for a client capped at `min..=max`.
fn openssl_hello(min: Option<TlsVersion>, max: Option<TlsVersion>, sni: &str) -> Vec<u8> {
    let connector = build_connector(&ClientTls {
        min,
        max,
        verification: ServerVerification::None,
        cipher_list: None,
    })
    .unwrap();
    crate::replay::client_hello(connector.configure().unwrap(), sni)
        .expect("the handshake waits for the server")
}

#[test]
fn openssl_hellos_by_version_cap() {
    use TlsVersion::*;
    let cases = [
        // (min, max, legacy_version, supported_versions, offered)
        (
            None,
            None,
            0x0303,
            vec![0x0304, 0x0303, 0x0302, 0x0301],
            vec![Tls1_0, Tls1_1, Tls1_2, Tls1_3],
        ),
        (None, Some(Tls1_0), 0x0301, vec![], vec![Tls1_0]),
        (None, Some(Tls1_1), 0x0302, vec![], vec![Tls1_0, Tls1_1]),
        (
            Some(Tls1_2),
            Some(Tls1_2),
            0x0303,
            vec![],
            vec![Tls1_0, Tls1_1, Tls1_2],
        ),
        (
            Some(Tls1_2),
            None,
            0x0303,
            vec![0x0304, 0x0303],
            vec![Tls1_2, Tls1_3],
        ),
        (Some(Tls1_3), None, 0x0303, vec![0x0304], vec![Tls1_3]),
    ];
    for (min, max, legacy, supported, offered) in cases {
        let bytes = openssl_hello(min, max, "agent.example");
        let hello = parse_client_hello(&bytes).unwrap();
        assert_eq!(hello.legacy_version, legacy, "{min:?}..{max:?}");
        assert_eq!(hello.supported_versions, supported, "{min:?}..{max:?}");
        assert_eq!(hello.offered_versions(), offered, "{min:?}..{max:?}");
        assert_eq!(hello.server_name.as_deref(), Some("agent.example"));
        assert!(!hello.cipher_suites.is_empty());
        assert!(!hello.sslv2_format);
    }
}

#[test]
fn every_prefix_is_incomplete_not_an_error() {
    let bytes = openssl_hello(None, None, "x");
    for end in 0..bytes.len() {
        assert_eq!(
            parse_client_hello(&bytes[..end]),
            Err(HelloError::Incomplete),
            "{end}"
        );
    }
    assert!(parse_client_hello(&bytes).is_ok());
}

/// Splits one ClientHello record into records of at most `size` bytes of payload.
fn fragment(bytes: &[u8], size: usize) -> Vec<u8> {
    let version = [bytes[1], bytes[2]];
    let payload = &bytes[5..];
    let mut out = Vec::new();
    for chunk in payload.chunks(size) {
        out.push(22);
        out.extend_from_slice(&version);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

#[test]
fn fragmented_across_records() {
    let bytes = openssl_hello(None, None, "frag.example");
    let whole = parse_client_hello(&bytes).unwrap();
    for size in [16, 64, 200] {
        let fragmented = fragment(&bytes, size);
        assert_eq!(
            parse_client_hello(&fragmented).as_ref(),
            Ok(&whole),
            "size {size}"
        );
        for end in 0..fragmented.len() {
            assert_eq!(
                parse_client_hello(&fragmented[..end]),
                Err(HelloError::Incomplete),
                "size {size}, end {end}"
            );
        }
    }
}

#[test]
fn garbage_and_not_tls() {
    let cases: &[(&[u8], HelloError)] = &[
        (b"GET / HTTP/1.1\r\n", HelloError::NotTls),
        (
            &[0x16, 3, 1, 0, 0],
            HelloError::Malformed("record length out of range"),
        ),
        (
            &[0x16, 3, 1, 0xff, 0xff],
            HelloError::Malformed("record length out of range"),
        ),
        (
            &[0x16, 3, 1, 0, 4, 2, 0, 0, 0],
            HelloError::Malformed("first handshake message is not a ClientHello"),
        ),
        (
            &[0x16, 3, 1, 0, 4, 1, 0, 0, 1, 0x17],
            HelloError::Malformed("a non-handshake record inside the ClientHello"),
        ),
        (
            &[0x16, 3, 1, 0, 4, 1, 0, 0, 0],
            HelloError::Malformed("a length runs past its enclosing structure"),
        ),
        (
            &[0x16, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff],
            HelloError::Malformed("ClientHello too large"),
        ),
    ];
    for (bytes, expected) in cases {
        assert_eq!(
            parse_client_hello(bytes).unwrap_err(),
            *expected,
            "{bytes:?}"
        );
    }
}

#[test]
fn corrupted_bytes_never_panic() {
    let bytes = openssl_hello(None, Some(TlsVersion::Tls1_2), "x");
    // Flip every byte of a real hello in turn; any answer is fine, a panic is not.
    for index in 0..bytes.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut corrupt = bytes.clone();
            corrupt[index] ^= flip;
            let _ = parse_client_hello(&corrupt);
        }
    }
}

#[test]
fn sslv2_format_hello() {
    // An SSLv2-compatible hello offering TLSv1 with two TLS suites and one SSLv2 spec.
    let mut body = vec![1, 3, 1, 0, 9, 0, 0, 0, 16];
    body.extend_from_slice(&[0, 0, 0x2f, 0, 0, 0x0a, 0x07, 0x00, 0xc0]);
    body.extend_from_slice(&[0xaa; 16]);
    let mut bytes = vec![0x80 | (body.len() >> 8) as u8, body.len() as u8];
    bytes.extend_from_slice(&body);
    let hello = parse_client_hello(&bytes).unwrap();
    assert!(hello.sslv2_format);
    assert_eq!(hello.legacy_version, 0x0301);
    assert_eq!(hello.cipher_suites, vec![0x002f, 0x000a]);
    assert_eq!(hello.offered_versions(), vec![TlsVersion::Tls1_0]);
    assert_eq!(parse_client_hello(&bytes[..5]), Err(HelloError::Incomplete));
}

#[test]
fn grease_is_ignored() {
    assert!(is_grease(0x0a0a));
    assert!(is_grease(0xfafa));
    assert!(!is_grease(0x0a1a));
    assert!(!is_grease(0x0304));
}

#[test]
fn version_names() {
    let cases = [
        (0x0300, "SSLv3"),
        (0x0301, "TLSv1"),
        (0x0303, "TLSv1.2"),
        (0x0304, "TLSv1.3"),
        (0x7f1c, "0x7f1c"),
    ];
    for (wire, name) in cases {
        assert_eq!(version_name(wire), name);
    }
}

#[test]
fn needed_len_agrees_with_the_parser_on_every_prefix() {
    let bytes = openssl_hello(None, None, "x");
    for fragmented in [bytes.clone(), fragment(&bytes, 16), fragment(&bytes, 200)] {
        let needed = needed_len(&fragmented).unwrap().unwrap();
        assert_eq!(needed, fragmented.len());
        for end in 0..fragmented.len() {
            match needed_len(&fragmented[..end]) {
                Ok(None) => {}
                Ok(Some(n)) => assert!(n > end, "claims {n} bytes suffice at {end}"),
                Err(e) => panic!("prefix {end}: {e}"),
            }
        }
    }
    assert_eq!(needed_len(b"GET /"), Err(HelloError::NotTls));
    assert_eq!(needed_len(&[]), Ok(None));
    // Too many records, in both functions.
    let tiny = fragment(&bytes, 1);
    assert_eq!(
        needed_len(&tiny),
        Err(HelloError::Malformed(
            "ClientHello split into too many records"
        ))
    );
    assert_eq!(
        parse_client_hello(&tiny),
        Err(HelloError::Malformed(
            "ClientHello split into too many records"
        ))
    );
}

#[test]
fn a_stacks_fingerprint_is_the_same_on_every_connection_and_differs_between_stacks() {
    let one = parse_client_hello(&openssl_hello(None, None, "a.example")).unwrap();
    let two = parse_client_hello(&openssl_hello(None, None, "a.example")).unwrap();
    assert_ne!(
        openssl_hello(None, None, "a.example"),
        openssl_hello(None, None, "a.example"),
        "the bytes differ (random, key shares)"
    );
    assert_eq!(one.fingerprint(), two.fingerprint());
    assert!(!one.groups.is_empty() && one.extensions.contains(&0x002b));
    let capped =
        parse_client_hello(&openssl_hello(None, Some(TlsVersion::Tls1_0), "a.example")).unwrap();
    assert_ne!(one.fingerprint(), capped.fingerprint());
}

#[test]
fn suites_are_classed_as_openssl_describes_them() {
    // TLS_AES_128_GCM_SHA256, ECDHE-ECDSA-AES128-GCM-SHA256, ECDHE-RSA-AES128-SHA,
    // AES128-SHA, DES-CBC3-SHA, the renegotiation SCSV, a GREASE value, a code nobody uses.
    let classes = suite_classes(&[
        0x1301, 0xC02B, 0xC013, 0x002F, 0x000A, 0x00FF, 0x0A0A, 0x1234,
    ]);
    let expected: std::collections::BTreeMap<&str, usize> = [
        ("TLS 1.3", 1),
        ("ECDHE AEAD", 1),
        ("ECDHE CBC", 1),
        ("RSA key exchange", 2),
        ("3DES", 1),
        ("unknown", 1),
    ]
    .into();
    assert_eq!(classes, expected);
}

#[test]
fn ja4_matches_the_reference_example() {
    // The Chrome ClientHello of FoxIO's JA4 documentation: 15 suites (one GREASE left out),
    // 16 extensions (SNI and ALPN counted, not hashed), ALPN h2.
    let hello = ClientHello {
        record_version: 0x0301,
        legacy_version: 0x0303,
        supported_versions: vec![0x0304, 0x0303],
        server_name: Some("example.com".into()),
        cipher_suites: vec![
            0x0a0a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
            0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
        ],
        sslv2_format: false,
        extensions: vec![
            0x0000, 0x0017, 0xff01, 0x000a, 0x000b, 0x0023, 0x0010, 0x0005, 0x000d, 0x0012, 0x0033,
            0x002d, 0x002b, 0x001b, 0x4469, 0x0015,
        ],
        groups: vec![0x001d, 0x0017, 0x0018],
        alpn: Some(b"h2".to_vec()),
        signature_algorithms: vec![
            0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
        ],
    };
    assert_eq!(hello.ja4(), "t13d1516h2_8daaf6152771_e5627efa2ab1");
    // A parsed OpenSSL hello has the shape: TLS 1.3, SNI, no ALPN.
    let parsed = parse_client_hello(&openssl_hello(None, None, "localhost")).unwrap();
    let ja4 = parsed.ja4();
    assert!(ja4.starts_with("t13d") && ja4[8..10] == *"00", "{ja4}");
    assert_eq!(ja4.len(), 36, "{ja4}");
    assert!(!parsed.signature_algorithms.is_empty());
}

#[test]
fn a_fingerprint_is_the_sha256_of_its_stored_text_form() {
    // Fingerprints are kept in the store; their value must not move between versions. This
    // is the text form the first version hashed, built here the slow way.
    let hello = ClientHello {
        legacy_version: 0x0303,
        supported_versions: vec![0x0304, 0x0303],
        cipher_suites: vec![0x0a0a, 0x1301, 0xc02b],
        extensions: vec![0x002b, 0x000a, 0x0029, 0x0000, 0x0015, 0x000d],
        groups: vec![0x11ec, 0x001d],
        server_name: Some("a.example".into()),
        ..parse_client_hello(&openssl_hello(None, None, "a.example")).unwrap()
    };
    let text = "ward-fp-1|0303|[772, 771]|[4865, 49195]|[0, 10, 13, 43]|[4588, 29]|true";
    assert_eq!(hello.fingerprint(), openssl::sha::sha256(text.as_bytes()));

    // The first version's formula, against hellos of every shape: empty lists, no SNI, the
    // extreme values, a text longer than the hashing buffer, and real OpenSSL hellos.
    let first_version = |h: &ClientHello| {
        let suites: Vec<&u16> = h.cipher_suites.iter().filter(|s| !is_grease(**s)).collect();
        let extensions = h.fingerprinted_extensions();
        let text = format!(
            "ward-fp-1|{:04x}|{:?}|{:?}|{extensions:?}|{:?}|{}",
            h.legacy_version,
            h.supported_versions,
            suites,
            h.groups,
            h.server_name.is_some()
        );
        openssl::sha::sha256(text.as_bytes())
    };
    let real = parse_client_hello(&openssl_hello(None, None, "a.example")).unwrap();
    let capped =
        parse_client_hello(&openssl_hello(None, Some(TlsVersion::Tls1_0), "b.example")).unwrap();
    let cases = [
        ClientHello {
            legacy_version: 0,
            supported_versions: vec![],
            cipher_suites: vec![],
            extensions: vec![],
            groups: vec![],
            server_name: None,
            ..real.clone()
        },
        ClientHello {
            legacy_version: 0xffff,
            supported_versions: vec![0, 9, 10, 99, 100, 65535],
            cipher_suites: (0..200).collect(),
            extensions: (0..120).rev().collect(),
            groups: vec![u16::MAX; 40],
            server_name: None,
            ..real.clone()
        },
        real,
        capped,
    ];
    for hello in &cases {
        assert_eq!(hello.fingerprint(), first_version(hello), "{hello:?}");
    }
}
