use super::*;
use crate::protocol::TlsVersion;

/// Renders a file's outcome as lines: `enabled: ...` (or `no policy`), then each diagnostic
/// as `severity line: message`.
fn outcome(text: &str) -> Vec<String> {
    let conf = listener_conf("ssl.conf", text);
    let mut lines = vec![match &conf.policy {
        Some(policy) => format!(
            "enabled: {}",
            policy
                .protocol
                .range
                .versions()
                .map(TlsVersion::name)
                .collect::<Vec<_>>()
                .join(" ")
        ),
        None => "no policy".to_string(),
    }];
    for d in &conf.diagnostics {
        lines.push(format!("{} {}: {}", d.severity, d.location.line, d.message));
    }
    lines
}

fn check(text: &str, expected: &[&str]) {
    assert_eq!(outcome(text), expected, "for file:\n{text}");
}

#[test]
fn seed_files() {
    check(
        "# comment\nSSLProtocol all -SSLv2 -SSLv3\n",
        &["enabled: TLSv1 TLSv1.1 TLSv1.2 TLSv1.3"],
    );
    check(
        "SSLProtocol all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1\n",
        &["enabled: TLSv1.2 TLSv1.3"],
    );
    // The seed's upgrade-wizard file: the old line commented out under a marker.
    check(
        "#:Overridden_by_14.3.2.2000_upgrade_wizard 2021-01-01 10:00#\n\
         #SSLProtocol all -SSLv2 -SSLv3\n\
         SSLProtocol TLSv1.2\n",
        &["enabled: TLSv1.2"],
    );
}

#[test]
fn no_directive_is_all_minus_sslv3() {
    check("", &["enabled: TLSv1 TLSv1.1 TLSv1.2 TLSv1.3"]);
}

#[test]
fn errors_carry_their_line() {
    check(
        "\n\nSSLProtocol TLSv1.0\n",
        &[
            "no policy",
            "error 3: SSLProtocol: Illegal protocol 'TLSv1.0'",
        ],
    );
    check(
        "SSLProtocol -all\n",
        &[
            "no policy",
            "error 1: No SSL protocols available [hint: SSLProtocol]",
        ],
    );
    check(
        "SSLProtcol TLSv1.2\n",
        &[
            "no policy",
            "error 1: Invalid command 'SSLProtcol', perhaps misspelled or defined by a module \
             not included in the server configuration",
        ],
    );
    check(
        "SSLHonorCipherOrder maybe\n",
        &[
            "no policy",
            "error 1: SSLHonorCipherOrder must be On or Off",
        ],
    );
    check(
        "SSLCipherSuite TLSv1.2 HIGH\n",
        &["no policy", "error 1: protocol 'TLSv1.2' not supported"],
    );
    check(
        "SSLCertificateFile a b\n",
        &[
            "no policy",
            "error 1: SSLCertificateFile takes one argument",
        ],
    );
}

#[test]
fn every_error_is_reported_not_only_the_first() {
    let conf = listener_conf(
        "x.conf",
        "SSLProtocol +SSLv3\nBogus 1\nSSLProtocol TLSv1.4\n",
    );
    let lines: Vec<usize> = conf.errors().map(|d| d.location.line).collect();
    assert_eq!(lines, vec![1, 2, 3]);
}

#[test]
fn later_directive_replaces_earlier_one() {
    check(
        "SSLProtocol all\nSSLProtocol TLSv1.2\n",
        &[
            "enabled: TLSv1.2",
            "warning 1: SSLProtocol is given again on line 2: only the last one applies, this \
             one is ignored",
        ],
    );
    // A vhost's own line replaces the global one: no warning, that is how Apache is used.
    check(
        "SSLProtocol all\n<VirtualHost _default_:443>\nSSLProtocol TLSv1.2\n</VirtualHost>\n",
        &["enabled: TLSv1.2"],
    );
}

#[test]
fn versions_below_a_hole_are_said_not_to_be_served() {
    check(
        "SSLProtocol all -TLSv1.1\n",
        &[
            "enabled: TLSv1.2 TLSv1.3",
            "warning 1: SSLProtocol: TLSv1 is below a hole in the set and is not served: \
             Apache enables only the contiguous range down from the highest version \
             (TLSv1.2-TLSv1.3)",
        ],
    );
}

#[test]
fn warnings_of_the_applied_directive() {
    check(
        "SSLProtocol all TLSv1.3\n",
        &[
            "enabled: TLSv1.3",
            "warning 1: AH02532: SSLProtocol: Protocol 'TLSv1.3' overrides already set \
             parameter(s). Check if a +/- prefix is missing.",
        ],
    );
}

#[test]
fn continuation_and_quotes() {
    check(
        "SSLProtocol all \\\n  -TLSv1 \\\n  -TLSv1.1\nSSLCipherSuite \"HIGH:!MD5\"\n",
        &["enabled: TLSv1.2 TLSv1.3"],
    );
    let conf = listener_conf("x", "SSLProtocol all \\\n -TLSv1 \\\n BAD\n");
    let error = conf.errors().next().unwrap();
    assert_eq!(
        error.location.line, 1,
        "a continued directive is named by its first line"
    );
    assert_eq!(
        error.to_string(),
        "x:1: SSLProtocol: Illegal protocol 'BAD'"
    );
}

#[test]
fn crlf_line_endings() {
    check("SSLProtocol TLSv1.2\r\n", &["enabled: TLSv1.2"]);
}

#[test]
fn vhost_protocol_replaces_global() {
    check(
        "SSLProtocol all\n\
         <VirtualHost _default_:8445>\n\
         SSLProtocol -all +TLSv1.3\n\
         </VirtualHost>\n",
        &["enabled: TLSv1.3"],
    );
    // A vhost without its own SSLProtocol inherits the global one.
    check(
        "SSLProtocol TLSv1.2\n<VirtualHost *:443>\nSSLEngine on\n</VirtualHost>\n",
        &[
            "enabled: TLSv1.2",
            "note 3: SSLEngine ignored: ward does not use this Apache directive",
        ],
    );
}

#[test]
fn real_apache_shapes_are_accepted() {
    let text = "\
<IfModule mod_ssl.c>
Listen 8445
<VirtualHost _default_:8445>
    ServerName localhost
    SSLEngine on
    SSLProtocol all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1
    SSLCipherSuite HIGH:!aNULL:!MD5
    SSLCipherSuite TLSv1.3 TLS_AES_256_GCM_SHA384
    SSLHonorCipherOrder on
    SSLCertificateFile certs/server.pem
    SSLCertificateKeyFile certs/server.key
    <Directory /var/www>
        Require all granted
    </Directory>
</VirtualHost>
</IfModule>
<IfModule !mod_ssl.c>
    SSLProtocol TLSv1
</IfModule>
";
    let conf = listener_conf("ssl.conf", text);
    assert!(!conf.has_errors(), "{:?}", conf.diagnostics);
    let policy = conf.policy.unwrap();
    assert_eq!(policy.protocol.range.to_string(), "TLSv1.2-TLSv1.3");
    assert_eq!(
        policy.cipher_list.unwrap().value,
        "HIGH:!aNULL:!MD5:!aNULL:!eNULL:!EXP"
    );
    assert_eq!(
        policy.tls13_ciphersuites.unwrap().value,
        "TLS_AES_256_GCM_SHA384"
    );
    assert!(policy.honor_cipher_order);
    assert_eq!(policy.certificate_files[0].value, "certs/server.pem");
    assert_eq!(policy.certificate_key_files[0].value, "certs/server.key");
    assert_eq!(conf.listen[0].value, "8445");
    assert_eq!(conf.virtual_host.unwrap().value, vec!["_default_:8445"]);
}

#[test]
fn malformed_sections() {
    check(
        "<VirtualHost *:443\nSSLProtocol TLSv1.2\n",
        &[
            "no policy",
            "error 1: <VirtualHost directive missing closing '>'",
        ],
    );
    check(
        "<VirtualHost *:443>\n</IfModule>\n",
        &[
            "no policy",
            "error 1: <VirtualHost> was not closed",
            "error 2: Expected </VirtualHost> but saw </IfModule>",
        ],
    );
    check(
        "</VirtualHost>\n",
        &[
            "no policy",
            "error 1: </VirtualHost> without matching <VirtualHost> section",
        ],
    );
    check(
        "<VirtualHost a:1>\n<VirtualHost b:2>\n</VirtualHost>\n</VirtualHost>\n",
        &[
            "no policy",
            "error 2: <VirtualHost> cannot occur within <VirtualHost> section",
        ],
    );
    check(
        "<Bogus x>\n</Bogus>\n",
        &[
            "no policy",
            "error 1: Invalid command '<Bogus', perhaps misspelled or defined by a module not \
             included in the server configuration",
        ],
    );
}

#[test]
fn second_vhost_is_ignored_with_a_warning() {
    check(
        "<VirtualHost a:1>\nSSLProtocol TLSv1.3\n</VirtualHost>\n\
         <VirtualHost b:2>\nSSLProtocol TLSv1\n</VirtualHost>\n",
        &[
            "enabled: TLSv1.3",
            "warning 4: ward serves one listener per file: this <VirtualHost> is ignored, the \
             first one applies",
        ],
    );
}

#[test]
fn security_level_follows_the_range_and_the_cipher_list() {
    let level = |text: &str| {
        listener_conf("x", text)
            .policy
            .unwrap()
            .forced_security_level()
    };
    assert_eq!(level("SSLProtocol all"), Some(0));
    assert_eq!(level("SSLProtocol TLSv1.1"), Some(0));
    assert_eq!(level("SSLProtocol all -TLSv1 -TLSv1.1"), None);
    assert_eq!(
        level("SSLProtocol all\nSSLCipherSuite DEFAULT:@SECLEVEL=1"),
        None
    );
}

#[test]
fn explanation_names_dropped_versions_and_security_level() {
    let policy = listener_conf("x", "SSLProtocol all -TLSv1.1")
        .policy
        .unwrap();
    let text = policy.explanation().join("\n");
    assert!(text.contains("TLSv1 below a hole"), "{text}");
    assert!(!text.contains("security level"), "{text}");
    let policy = listener_conf("x", "SSLProtocol all").policy.unwrap();
    assert!(policy
        .explanation()
        .join("\n")
        .contains("security level lowered to 0"));
}

#[test]
fn garbage_never_panics() {
    for text in [
        "\\",
        "<",
        ">",
        "</",
        "<>",
        "</>",
        "\u{0}\u{1}",
        "SSLProtocol \"",
        "<VirtualHost>\n",
        "\\\n\\\n",
        "é<ü>",
    ] {
        let _ = listener_conf("x", text);
    }
}

#[test]
fn session_directives() {
    let policy = |text: &str| listener_conf("x", text).policy.unwrap();
    let default = policy("");
    assert!(default.session_tickets && default.session_cache);
    let off = policy("SSLSessionTickets off\nSSLSessionCache none\n");
    assert!(!off.session_tickets && !off.session_cache);
    let on = policy("SSLSessionTickets On\nSSLSessionCache shmcb:/run/ssl_scache(512000)\n");
    assert!(on.session_tickets && on.session_cache);
    check(
        "SSLSessionTickets maybe\n",
        &["no policy", "error 1: SSLSessionTickets must be On or Off"],
    );
}
