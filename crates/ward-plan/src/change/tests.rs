use ward_tls::{TlsVersion, VersionRange};

use super::*;

fn current() -> TlsPolicy {
    conf::listener_conf(
        "sslforclients.conf",
        "SSLProtocol all -SSLv3\nSSLCertificateFile certs/server.pem\nSSLCertificateKeyFile keys/server.key\n",
    )
    .policy
    .expect("a valid file")
}

fn range(min: TlsVersion, max: TlsVersion) -> VersionRange {
    VersionRange { min, max }
}

#[test]
fn each_part_changes_only_its_directive() {
    let base = current();
    let protocol = Change {
        protocol: Some("all -SSLv3 -TLSv1 -TLSv1.1".into()),
        ..Change::default()
    }
    .apply(&base)
    .unwrap();
    assert_eq!(
        protocol.protocol.range,
        range(TlsVersion::Tls1_2, TlsVersion::Tls1_3)
    );
    assert_eq!(protocol.certificate_files, base.certificate_files);
    assert_eq!(protocol.cipher_list, None);

    let ciphers = Change {
        cipher_suite: Some("HIGH:DES-CBC3-SHA".into()),
        cipher_suite_tls13: Some("TLS_AES_256_GCM_SHA384".into()),
        ..Change::default()
    }
    .apply(&base)
    .unwrap();
    assert_eq!(ciphers.protocol, base.protocol);
    assert_eq!(
        ciphers.cipher_list.map(|c| c.value).as_deref(),
        Some("HIGH:DES-CBC3-SHA:!aNULL:!eNULL:!EXP")
    );
    assert_eq!(
        ciphers.tls13_ciphersuites.map(|c| c.value).as_deref(),
        Some("TLS_AES_256_GCM_SHA384")
    );

    let certificate = Change {
        certificate: Some(CertificatePair {
            certificate: "/etc/other.pem".into(),
            key: "/etc/other.key".into(),
        }),
        ..Change::default()
    }
    .apply(&base)
    .unwrap();
    let files: Vec<&str> = certificate
        .certificate_files
        .iter()
        .map(|c| c.value.as_str())
        .collect();
    assert_eq!(files, ["/etc/other.pem"]);
    assert_eq!(certificate.certificate_key_files[0].value, "/etc/other.key");
    assert_eq!(certificate.protocol, base.protocol);
}

#[test]
fn a_preset_expands_to_its_directives() {
    let change = Change {
        preset: Some("mozilla-old".into()),
        ..Change::default()
    };
    let directives = change.directives().unwrap();
    assert_eq!(directives[0], ("SSLProtocol", "all -SSLv3".to_string()));
    assert!(directives[1].1.ends_with("DES-CBC3-SHA"), "{directives:?}");
    let policy = change.apply(&current()).unwrap();
    assert_eq!(
        policy.protocol.range,
        range(TlsVersion::Tls1_0, TlsVersion::Tls1_3)
    );
    assert!(change
        .summary()
        .starts_with("preset mozilla-old; SSLProtocol all -SSLv3"));
    let modern = Change {
        preset: Some("mozilla-modern".into()),
        ..Change::default()
    }
    .apply(&current())
    .unwrap();
    assert_eq!(
        modern.protocol.range,
        range(TlsVersion::Tls1_3, TlsVersion::Tls1_3)
    );
}

#[test]
fn a_whole_conf_file_is_the_policy() {
    let text = "SSLProtocol -all +TLSv1.2\nSSLCipherSuite ECDHE+AESGCM\nSSLCertificateFile a.pem\n";
    let policy = Change {
        conf: Some(("proposed.conf".into(), text.into())),
        ..Change::default()
    }
    .apply(&current())
    .unwrap();
    assert_eq!(
        policy.protocol.range,
        range(TlsVersion::Tls1_2, TlsVersion::Tls1_2)
    );
    assert_eq!(policy.certificate_files[0].value, "a.pem");
    assert_eq!(
        policy.certificate_files[0].location.to_string(),
        "proposed.conf:3"
    );
}

#[test]
fn bad_proposals_are_refused_with_the_reason() {
    let pair = || {
        Some(CertificatePair {
            certificate: "a.pem".into(),
            key: "a.key".into(),
        })
    };
    // (change, a word the error must contain)
    let cases: Vec<(Change, &str)> = vec![
        (Change::default(), "nothing proposed"),
        (
            Change {
                conf: Some(("x.conf".into(), "SSLProtocol all\n".into())),
                protocol: Some("all".into()),
                ..Change::default()
            },
            "do not go together",
        ),
        (
            Change {
                preset: Some("mozilla-old".into()),
                cipher_suite: Some("HIGH".into()),
                ..Change::default()
            },
            "preset names them",
        ),
        (
            Change {
                preset: Some("fips-9000".into()),
                ..Change::default()
            },
            "mozilla-intermediate",
        ),
        (
            Change {
                protocol: Some("all -TLSv9".into()),
                ..Change::default()
            },
            "protocol 'all -TLSv9'",
        ),
        (
            Change {
                protocol: Some("all\nSSLCipherSuite NULL".into()),
                ..Change::default()
            },
            "one line",
        ),
        (
            Change {
                cipher_suite: Some("NO-SUCH-SUITE".into()),
                ..Change::default()
            },
            "cipher_suite 'NO-SUCH-SUITE'",
        ),
        (
            Change {
                cipher_suite_tls13: Some("TLS_NOPE".into()),
                ..Change::default()
            },
            "cipher_suite_tls13",
        ),
        (
            Change {
                certificate: Some(CertificatePair {
                    certificate: "a.pem\nSSLProtocol all".into(),
                    key: "a.key".into(),
                }),
                ..Change::default()
            },
            "certificate: one line",
        ),
        (
            Change {
                conf: Some(("x.conf".into(), "SSLProtocol +TLSv9\n".into())),
                ..Change::default()
            },
            "x.conf:1",
        ),
        (
            Change {
                conf: Some(("x.conf".into(), "\n  # only a comment\n\t\n".into())),
                ..Change::default()
            },
            "x.conf: the proposed conf file has no directive",
        ),
        (
            Change {
                conf: Some(("y.conf".into(), String::new())),
                ..Change::default()
            },
            "y.conf: the proposed conf file has no directive",
        ),
    ];
    for (change, word) in cases {
        let error = change.apply(&current()).expect_err(word).to_string();
        assert!(error.contains(word), "{error} (wanted '{word}')");
    }
    // A certificate alone is a change.
    assert!(Change {
        certificate: pair(),
        ..Change::default()
    }
    .apply(&current())
    .is_ok());
}
