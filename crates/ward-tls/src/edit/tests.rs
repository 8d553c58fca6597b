use super::*;
use std::time::Duration;

const MARKER: &str = "#:Overridden_by_ward_test 2026-11-28 15:04:05 UTC#";

fn replace(text: &str, new_args: &str) -> String {
    replace_ssl_protocol("ssl.conf", text, new_args, MARKER)
        .unwrap()
        .expect("a change")
}

#[test]
fn seed_edit_comments_out_the_old_line_under_a_marker() {
    let before = "# TLS for port 443\nSSLProtocol all -SSLv2 -SSLv3\nSSLHonorCipherOrder on\n";
    let after = replace(before, "all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1");
    assert_eq!(
        after,
        "# TLS for port 443\n\
         #:Overridden_by_ward_test 2026-11-28 15:04:05 UTC#\n\
         #SSLProtocol all -SSLv2 -SSLv3\n\
         SSLProtocol all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1\n\
         SSLHonorCipherOrder on\n"
    );
    let policy = conf::listener_conf("x", &after).policy.unwrap();
    assert_eq!(policy.protocol.range.to_string(), "TLSv1.2-TLSv1.3");
}

#[test]
fn edit_keeps_indentation_crlf_and_the_directive_spelling() {
    let before = "<VirtualHost _default_:8445>\r\n    sslprotocol all\r\n</VirtualHost>\r\n";
    let after = replace(before, "TLSv1.2");
    assert_eq!(
        after,
        "<VirtualHost _default_:8445>\r\n    \
         #:Overridden_by_ward_test 2026-11-28 15:04:05 UTC#\r\n    \
         #sslprotocol all\r\n    \
         sslprotocol TLSv1.2\r\n\
         </VirtualHost>\r\n"
    );
}

#[test]
fn edit_targets_the_directive_that_applies() {
    // The vhost's own SSLProtocol applies, not the global one.
    let before = "SSLProtocol all\n<VirtualHost a:1>\nSSLProtocol TLSv1\n</VirtualHost>\n";
    let after = replace(before, "TLSv1.2");
    assert!(
        after.starts_with("SSLProtocol all\n<VirtualHost a:1>\n#:Over"),
        "{after}"
    );
    assert!(after.contains("#SSLProtocol TLSv1\nSSLProtocol TLSv1.2\n</VirtualHost>"));
    // Of two global lines, the last applies.
    let after = replace("SSLProtocol all\nSSLProtocol TLSv1.3\n", "TLSv1.2");
    assert!(after.starts_with("SSLProtocol all\n#:Over"), "{after}");
}

#[test]
fn edit_of_a_continued_directive_comments_every_line() {
    let before = "SSLProtocol all \\\n  -TLSv1\nX_after\n";
    // X_after is not a directive ward knows; use a real one to keep the file valid.
    let before = before.replace("X_after", "ServerName a");
    let after = replace(&before, "TLSv1.2");
    assert_eq!(
        after,
        format!("{MARKER}\n#SSLProtocol all \\\n  #-TLSv1\nSSLProtocol TLSv1.2\nServerName a\n")
    );
    let policy = conf::listener_conf("x", &after).policy.unwrap();
    assert_eq!(policy.protocol.range.to_string(), "TLSv1.2");
}

#[test]
fn edit_without_final_newline() {
    let after = replace("SSLProtocol all", "TLSv1.2");
    assert_eq!(
        after,
        format!("{MARKER}\n#SSLProtocol all\nSSLProtocol TLSv1.2\n")
    );
}

#[test]
fn edit_inserts_when_there_is_no_directive() {
    assert_eq!(
        replace("ServerName a\n", "TLSv1.2"),
        format!("ServerName a\n{MARKER}\nSSLProtocol TLSv1.2\n")
    );
    assert_eq!(
        replace("<VirtualHost a:1>\nSSLEngine on\n</VirtualHost>\n", "TLSv1.2"),
        format!("<VirtualHost a:1>\nSSLEngine on\n    {MARKER}\n    SSLProtocol TLSv1.2\n</VirtualHost>\n")
    );
    assert_eq!(
        replace("", "TLSv1.2"),
        format!("{MARKER}\nSSLProtocol TLSv1.2\n")
    );
}

#[test]
fn dangling_continuation_at_the_end_does_not_swallow_the_new_line() {
    // Found by the conf_parser fuzz target: the last line ends with a backslash.
    for input in [
        "SSLProtocol TLSv1 \\\n",
        "SSLProtocol TLSv1 \\",
        "SSLHonorCipherOrder on \\\n",
    ] {
        let after = replace(input, "all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1");
        let conf = conf::listener_conf("x", &after);
        let policy = conf
            .policy
            .unwrap_or_else(|| panic!("{input:?} became {after:?}: {:?}", conf.diagnostics));
        assert_eq!(
            policy.protocol.range.to_string(),
            "TLSv1.2-TLSv1.3",
            "{input:?} became {after:?}"
        );
    }
    assert_eq!(
        replace("SSLProtocol TLSv1 \\\n", "TLSv1.2"),
        format!("{MARKER}\n#SSLProtocol TLSv1 \\\n\nSSLProtocol TLSv1.2\n")
    );
}

#[test]
fn same_words_are_no_change() {
    let text = "SSLProtocol  all   -SSLv2 -SSLv3\n";
    assert_eq!(
        replace_ssl_protocol("x", text, "all -SSLv2 -SSLv3", MARKER).unwrap(),
        None
    );
}

#[test]
fn refusals_change_nothing() {
    let error = replace_ssl_protocol("x", "SSLProtocol all\n", "TLSv1.0", MARKER).unwrap_err();
    assert_eq!(
        error.to_string(),
        "new value refused: SSLProtocol: Illegal protocol 'TLSv1.0'"
    );
    let error =
        replace_ssl_protocol("x", "SSLProtocol all\nBogus\n", "TLSv1.2", MARKER).unwrap_err();
    assert!(
        error.to_string().contains("x:2: Invalid command 'Bogus'"),
        "{error}"
    );
}

#[test]
fn a_value_on_several_lines_is_refused() {
    let error = replace_ssl_protocol("x", "SSLProtocol all\n", "all\n-TLSv1", MARKER).unwrap_err();
    assert_eq!(error.to_string(), "new value refused: it must be one line");
}

#[test]
fn file_edit_and_rollback_are_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sslforclients.conf");
    let original =
        "# keep me\r\n  SSLProtocol all -SSLv2 -SSLv3\r\n\tSSLHonorCipherOrder on \n# tail";
    fs::write(&path, original).unwrap();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
    let outcome = edit_file(&path, "all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1", "ward_test", now).unwrap();
    let EditOutcome::Changed { backup } = outcome else {
        panic!("expected a change");
    };
    assert_eq!(fs::read_to_string(&backup).unwrap(), original);
    let edited = fs::read_to_string(&path).unwrap();
    assert!(
        edited.contains("#:Overridden_by_ward_test 2026-11-18 "),
        "{edited}"
    );
    // Running the same edit again changes nothing.
    assert_eq!(
        edit_file(&path, "all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1", "ward_test", now).unwrap(),
        EditOutcome::Unchanged
    );
    restore_backup(&path, &backup).unwrap();
    assert_eq!(fs::read(&path).unwrap(), original.as_bytes());
    // A second edit in the same second gets its own backup.
    let first = edit_file(&path, "TLSv1.2", "ward_test", now).unwrap();
    restore_backup(
        &path,
        match &first {
            EditOutcome::Changed { backup } => backup,
            EditOutcome::Unchanged => panic!("expected a change"),
        },
    )
    .unwrap();
    let second = edit_file(&path, "TLSv1.3", "ward_test", now).unwrap();
    assert_ne!(first, second);
}

#[test]
fn failed_edit_leaves_no_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ssl.conf");
    fs::write(&path, "SSLProtocol all\n").unwrap();
    assert!(edit_file(&path, "+SSLv3", "t", SystemTime::now()).is_err());
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("ssl.conf")]);
    assert_eq!(fs::read_to_string(&path).unwrap(), "SSLProtocol all\n");
}

#[test]
fn cipher_suites_are_edited_like_the_protocol() {
    let marker = "#:Overridden_by_test#";
    // (file, setting, value, the edited file's lines that must be there)
    let cases: &[(&str, Setting, &str, &[&str])] = &[
        // Replaced where it applies, the old line commented under the marker.
        (
            "SSLProtocol all\nSSLCipherSuite HIGH:DES-CBC3-SHA\n",
            Setting::CipherSuite,
            "HIGH:!3DES",
            &[
                marker,
                "#SSLCipherSuite HIGH:DES-CBC3-SHA",
                "SSLCipherSuite HIGH:!3DES",
            ],
        ),
        // The TLS 1.3 form is a separate setting: the TLS 1.2 list is untouched.
        (
            "SSLCipherSuite HIGH\nSSLCipherSuite TLSv1.3 TLS_AES_128_GCM_SHA256\n",
            Setting::CipherSuiteTls13,
            "TLS_AES_256_GCM_SHA384",
            &[
                "SSLCipherSuite HIGH",
                "#SSLCipherSuite TLSv1.3 TLS_AES_128_GCM_SHA256",
                "SSLCipherSuite TLSv1.3 TLS_AES_256_GCM_SHA384",
            ],
        ),
        // Absent: added at the end (or inside the first vhost).
        (
            "SSLProtocol all\n",
            Setting::CipherSuite,
            "ECDHE+AESGCM",
            &["SSLProtocol all", marker, "SSLCipherSuite ECDHE+AESGCM"],
        ),
        (
            "<VirtualHost *:443>\nSSLProtocol all\n</VirtualHost>\n",
            Setting::CipherSuite,
            "HIGH",
            &["    SSLCipherSuite HIGH", "</VirtualHost>"],
        ),
    ];
    for (text, setting, value, lines) in cases {
        let edited = replace_setting("t.conf", text, *setting, value, marker)
            .unwrap()
            .unwrap_or_else(|| panic!("{text:?}: no edit"));
        for line in *lines {
            assert!(
                edited.lines().any(|l| l == *line),
                "{line:?} missing from:\n{edited}"
            );
        }
        // Running it again changes nothing.
        assert_eq!(
            replace_setting("t.conf", &edited, *setting, value, marker).unwrap(),
            None
        );
    }
    // A list with spaces would be two arguments: refused, nothing written.
    assert!(replace_setting(
        "t.conf",
        "SSLProtocol all\n",
        Setting::CipherSuite,
        "HIGH MEDIUM",
        marker
    )
    .is_err());
}

#[test]
fn several_settings_in_one_write_with_one_backup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sslforclients.conf");
    std::fs::write(
        &path,
        "SSLProtocol all -SSLv3\nSSLCipherSuite HIGH:DES-CBC3-SHA\n",
    )
    .unwrap();
    let outcome = edit_file_settings(
        &path,
        &[
            Edit::Setting(Setting::Protocol, "all -SSLv3 -TLSv1 -TLSv1.1".into()),
            Edit::Setting(Setting::CipherSuite, "HIGH:!3DES".into()),
        ],
        "test",
        std::time::SystemTime::now(),
    )
    .unwrap();
    let EditOutcome::Changed { backup } = outcome else {
        panic!("nothing changed")
    };
    assert_eq!(
        std::fs::read_to_string(backup).unwrap(),
        "SSLProtocol all -SSLv3\nSSLCipherSuite HIGH:DES-CBC3-SHA\n"
    );
    let policy = crate::conf::listener_conf("x", &std::fs::read_to_string(&path).unwrap())
        .policy
        .unwrap();
    assert_eq!(policy.protocol.range.min, crate::TlsVersion::Tls1_2);
    assert_eq!(
        policy.cipher_list.unwrap().value,
        "HIGH:!3DES:!aNULL:!eNULL:!EXP"
    );
}

#[test]
fn the_certificates_that_apply_are_replaced_by_one_pair() {
    let marker = "#:Overridden_by_test#";
    let both = "SSLProtocol all\nSSLCertificateFile certs/server.pem\nSSLCertificateKeyFile certs/server.key\n\
                SSLCertificateFile certs/server-rsa.pem\nSSLCertificateKeyFile certs/server-rsa.key\n";
    let edited = replace_certificate("t.conf", both, "/etc/new.pem", "/etc/new.key", marker)
        .unwrap()
        .unwrap();
    assert_eq!(
        edited,
        "SSLProtocol all\n#:Overridden_by_test#\nSSLCertificateFile /etc/new.pem\n\
         SSLCertificateKeyFile /etc/new.key\n#SSLCertificateFile certs/server.pem\n\
         #SSLCertificateKeyFile certs/server.key\n#SSLCertificateFile certs/server-rsa.pem\n\
         #SSLCertificateKeyFile certs/server-rsa.key\n"
    );
    // Again: nothing to do.
    assert_eq!(
        replace_certificate("t.conf", &edited, "/etc/new.pem", "/etc/new.key", marker).unwrap(),
        None
    );
    // A vhost's own certificates are the ones that apply: the global ones stay.
    let vhost =
        "SSLCertificateFile global.pem\n<VirtualHost *:443>\n  SSLCertificateFile v.pem\n  \
                 SSLCertificateKeyFile v.key\n</VirtualHost>\n";
    let edited = replace_certificate("t.conf", vhost, "n.pem", "n.key", marker)
        .unwrap()
        .unwrap();
    assert!(
        edited.starts_with("SSLCertificateFile global.pem\n"),
        "{edited}"
    );
    assert!(edited.contains("  SSLCertificateFile n.pem\n  SSLCertificateKeyFile n.key\n  #SSLCertificateFile v.pem"), "{edited}");
    // None at all: added at the end.
    let edited = replace_certificate("t.conf", "SSLProtocol all\n", "n.pem", "n.key", marker)
        .unwrap()
        .unwrap();
    assert!(
        edited.ends_with("SSLCertificateFile n.pem\nSSLCertificateKeyFile n.key\n"),
        "{edited}"
    );
    // A path with a space would be two arguments.
    assert!(replace_certificate("t.conf", both, "a b.pem", "k", marker).is_err());
}
