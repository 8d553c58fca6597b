use super::*;

/// Renders what Apache decides for `args` as one line: the enabled versions (or the error),
/// then each warning after ` | `. Keeping the expectation a string makes the table readable.
fn decide(args: &str) -> String {
    match parse_ssl_protocol(&split_words(args)) {
        Ok(decision) => {
            let mut out = decision
                .range
                .versions()
                .map(TlsVersion::name)
                .collect::<Vec<_>>()
                .join(" ");
            for warning in &decision.warnings {
                out.push_str(" | ");
                out.push_str(warning);
            }
            out
        }
        Err(error) => format!("error: {error}"),
    }
}

fn overrides(word: &str) -> String {
    format!(
        "AH02532: SSLProtocol: Protocol '{word}' overrides already set parameter(s). \
         Check if a +/- prefix is missing."
    )
}

#[test]
fn ssl_protocol_table() {
    let all = "TLSv1 TLSv1.1 TLSv1.2 TLSv1.3";
    let cases: &[(&str, String)] = &[
        // The seed's lines, in the order the article shows them.
        ("all -SSLv2 -SSLv3", all.into()),
        (
            "all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1",
            "TLSv1.2 TLSv1.3".into(),
        ),
        ("TLSv1.2", "TLSv1.2".into()),
        // Single words and `all`.
        ("all", all.into()),
        ("TLSv1", "TLSv1".into()),
        ("TLSv1.1", "TLSv1.1".into()),
        ("TLSv1.3", "TLSv1.3".into()),
        ("+TLSv1.2", "TLSv1.2".into()),
        ("+TLSv1.2 +TLSv1.3", "TLSv1.2 TLSv1.3".into()),
        ("-all +TLSv1.2", "TLSv1.2".into()),
        ("-all +TLSv1.2 +TLSv1.3", "TLSv1.2 TLSv1.3".into()),
        ("all -TLSv1.3", "TLSv1 TLSv1.1 TLSv1.2".into()),
        ("all -TLSv1", "TLSv1.1 TLSv1.2 TLSv1.3".into()),
        // Case does not matter.
        (
            "ALL -sslv2 -SSLV3 -tlsv1 -TLSV1.1",
            "TLSv1.2 TLSv1.3".into(),
        ),
        ("tlsv1.2", "TLSv1.2".into()),
        ("All", all.into()),
        // -SSLv2 and -SSLv3 are no-ops, alone they leave nothing.
        (
            "-SSLv2",
            "error: No SSL protocols available [hint: SSLProtocol]".into(),
        ),
        (
            "-SSLv3 -SSLv2",
            "error: No SSL protocols available [hint: SSLProtocol]".into(),
        ),
        ("TLSv1.2 -SSLv3", "TLSv1.2".into()),
        // Holes: the range runs from the highest version down to the first gap.
        ("all -TLSv1.1", "TLSv1.2 TLSv1.3".into()),
        ("all -TLSv1.2", "TLSv1.3".into()),
        ("+TLSv1 +TLSv1.2", "TLSv1.2".into()),
        ("+TLSv1 +TLSv1.3", "TLSv1.3".into()),
        ("+TLSv1 +TLSv1.1 +TLSv1.3", "TLSv1.3".into()),
        ("+TLSv1 +TLSv1.1", "TLSv1 TLSv1.1".into()),
        ("all -TLSv1.3 -TLSv1.1", "TLSv1.2".into()),
        // A bare word replaces the set, and Apache warns when the set was not empty.
        ("all TLSv1.2", format!("TLSv1.2 | {}", overrides("TLSv1.2"))),
        (
            "TLSv1.2 TLSv1.3",
            format!("TLSv1.3 | {}", overrides("TLSv1.3")),
        ),
        ("+TLSv1.3 all", format!("{all} | {}", overrides("all"))),
        ("-all TLSv1.2", "TLSv1.2".into()),
        ("-SSLv3 TLSv1.2", "TLSv1.2".into()),
        (
            "TLSv1 TLSv1.1 TLSv1.2",
            format!(
                "TLSv1.2 | {} | {}",
                overrides("TLSv1.1"),
                overrides("TLSv1.2")
            ),
        ),
        // Removing then re-adding.
        ("all -TLSv1.2 +TLSv1.2", all.into()),
        ("-all +all -TLSv1 -TLSv1.1", "TLSv1.2 TLSv1.3".into()),
        // An empty result is fatal.
        (
            "",
            "error: No SSL protocols available [hint: SSLProtocol]".into(),
        ),
        (
            "-all",
            "error: No SSL protocols available [hint: SSLProtocol]".into(),
        ),
        (
            "all -all",
            "error: No SSL protocols available [hint: SSLProtocol]".into(),
        ),
        (
            "TLSv1.2 -TLSv1.2",
            "error: No SSL protocols available [hint: SSLProtocol]".into(),
        ),
        // SSLv2 and SSLv3 cannot be enabled.
        (
            "SSLv2",
            "error: SSLProtocol: SSLv2 is no longer supported".into(),
        ),
        (
            "+SSLv2",
            "error: SSLProtocol: SSLv2 is no longer supported".into(),
        ),
        (
            "all +SSLv2",
            "error: SSLProtocol: SSLv2 is no longer supported".into(),
        ),
        (
            "SSLv3",
            "error: SSLv3 not supported by this version of OpenSSL".into(),
        ),
        (
            "+SSLv3",
            "error: SSLv3 not supported by this version of OpenSSL".into(),
        ),
        (
            "all +sslv3",
            "error: SSLv3 not supported by this version of OpenSSL".into(),
        ),
        // Unknown words, in Apache's words; the prefix is not part of the reported word.
        (
            "TLSv1.0",
            "error: SSLProtocol: Illegal protocol 'TLSv1.0'".into(),
        ),
        (
            "all -TLSv1.0",
            "error: SSLProtocol: Illegal protocol 'TLSv1.0'".into(),
        ),
        (
            "+TLSv1.4",
            "error: SSLProtocol: Illegal protocol 'TLSv1.4'".into(),
        ),
        (
            "TLS1.2",
            "error: SSLProtocol: Illegal protocol 'TLS1.2'".into(),
        ),
        ("+", "error: SSLProtocol: Illegal protocol ''".into()),
        (
            "all,-SSLv3",
            "error: SSLProtocol: Illegal protocol 'all,-SSLv3'".into(),
        ),
        (
            "all # comment",
            "error: SSLProtocol: Illegal protocol '#'".into(),
        ),
        (
            "--TLSv1",
            "error: SSLProtocol: Illegal protocol '-TLSv1'".into(),
        ),
        // The first error stops the directive, as in Apache.
        (
            "SSLv2 TLSv1.0",
            "error: SSLProtocol: SSLv2 is no longer supported".into(),
        ),
        // Quoting as ap_getword_conf does it.
        ("\"TLSv1.2\"", "TLSv1.2".into()),
        ("'all' '-TLSv1'", "TLSv1.1 TLSv1.2 TLSv1.3".into()),
    ];
    assert!(cases.len() >= 30);
    let mut failures = Vec::new();
    for (args, expected) in cases {
        let actual = decide(args);
        if &actual != expected {
            failures.push(format!(
                "SSLProtocol {args}\n  expected: {expected}\n  actual:   {actual}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn dropped_versions_below_a_hole_are_reported() {
    let decision = parse_ssl_protocol(&split_words("all -TLSv1.1")).unwrap();
    assert_eq!(
        decision.dropped().iter().collect::<Vec<_>>(),
        vec![TlsVersion::Tls1_0]
    );
    let decision = parse_ssl_protocol(&split_words("all -TLSv1.3")).unwrap();
    assert!(decision.dropped().is_empty());
}

#[test]
fn loose_version_spellings() {
    let cases = [
        ("TLSv1", Some(TlsVersion::Tls1_0)),
        ("TLSv1.0", Some(TlsVersion::Tls1_0)),
        ("1.0", Some(TlsVersion::Tls1_0)),
        ("tls1.1", Some(TlsVersion::Tls1_1)),
        ("1.2", Some(TlsVersion::Tls1_2)),
        ("TLSv1.3", Some(TlsVersion::Tls1_3)),
        ("SSLv3", None),
        ("1.4", None),
        ("", None),
    ];
    for (text, expected) in cases {
        assert_eq!(TlsVersion::parse_loose(text), expected, "{text}");
    }
}

#[test]
fn split_words_table() {
    let cases: &[(&str, &[&str])] = &[
        ("", &[]),
        ("  all   -SSLv3 ", &["all", "-SSLv3"]),
        ("\"a b\" c", &["a b", "c"]),
        ("'a \\' b'", &["a ' b"]),
        ("\"unterminated", &["unterminated"]),
        ("tab\tsep", &["tab", "sep"]),
        ("vt\x0bsep", &["vt", "sep"]),
        // Apache splits on ASCII whitespace only.
        ("all\u{3000}-TLSv1", &["all\u{3000}-TLSv1"]),
        ("all\u{a0}-TLSv1", &["all\u{a0}-TLSv1"]),
    ];
    for (input, expected) in cases {
        assert_eq!(split_words(input), *expected, "{input:?}");
    }
}
