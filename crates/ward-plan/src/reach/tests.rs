use ward_fleet::serverlist::{self, ServerEntry};

use super::*;

fn list(name: &str, urls: &[&str]) -> ServerList {
    let entries = urls
        .iter()
        .map(|spec| serverlist::parse_spec(spec).expect("spec"))
        .collect::<Vec<(u32, ServerEntry)>>();
    serverlist::build(name, entries).expect("list")
}

/// The set named by `names`; names ward does not know count as nothing (as the store reads
/// them).
fn versions(names: &[&str]) -> ProtocolSet {
    names
        .iter()
        .filter_map(|n| TlsVersion::parse_loose(n))
        .collect()
}

fn capability(reported: &[&str], negotiated: Option<&str>) -> Capability {
    Capability::of(
        versions(reported),
        negotiated.and_then(TlsVersion::parse_loose),
    )
}

const TLS12_UP: VersionRange = VersionRange {
    min: TlsVersion::Tls1_2,
    max: TlsVersion::Tls1_3,
};

#[test]
fn capability_table() {
    use Knowledge::*;
    /// (reported, negotiated, knowledge, highest)
    type Case<'a> = (
        &'a [&'a str],
        Option<&'a str>,
        Knowledge,
        Option<TlsVersion>,
    );
    let cases: &[Case] = &[
        (&["TLSv1"], None, Reported, Some(TlsVersion::Tls1_0)),
        (
            &["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"],
            Some("TLSv1.3"),
            Reported,
            Some(TlsVersion::Tls1_3),
        ),
        // A report wins over what was seen.
        (
            &["TLSv1"],
            Some("TLSv1.2"),
            Reported,
            Some(TlsVersion::Tls1_0),
        ),
        (&[], Some("TLSv1.2"), Observed, Some(TlsVersion::Tls1_2)),
        (&[], None, Unknown, None),
        // Names ward does not know count as nothing.
        (&["SSLv2", "bogus"], None, Unknown, None),
        (
            &["bogus"],
            Some("TLSv1.1"),
            Observed,
            Some(TlsVersion::Tls1_1),
        ),
    ];
    for (reported, negotiated, knowledge, highest) in cases {
        let capability = capability(reported, *negotiated);
        assert_eq!(
            (capability.knowledge, capability.highest()),
            (*knowledge, *highest),
            "{reported:?} {negotiated:?}"
        );
    }
}

#[test]
fn judge_table() {
    use Verdict::*;
    let https = list("default", &["1:https://mgr1:443"]);
    let both = list("mixed", &["1:https://mgr1:443", "2:http://mgr1:8014"]);
    let http = list("default-http", &["1:http://mgr1:8014"]);
    let tls1: &[&str] = &["TLSv1"];
    let modern: &[&str] = &["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"];
    let hour = 3_600_000;
    // (case, reported, negotiated, list, pending, silent, verdict)
    type Case<'a> = (
        &'a str,
        &'a [&'a str],
        Option<&'a str>,
        Option<&'a ServerList>,
        bool,
        i64,
        Verdict,
    );
    let cases: Vec<Case> = vec![
        (
            "modern over https",
            modern,
            None,
            Some(&https),
            false,
            0,
            Unaffected { via: Via::Https },
        ),
        (
            "capped at TLSv1, https only",
            tls1,
            None,
            Some(&https),
            false,
            0,
            CutOff,
        ),
        (
            "capped, an HTTP fallback entry",
            tls1,
            None,
            Some(&both),
            false,
            0,
            Unaffected { via: Via::Http },
        ),
        (
            "capped, HTTP list",
            tls1,
            None,
            Some(&http),
            false,
            0,
            Unaffected { via: Via::Http },
        ),
        (
            "capped, HTTP list not acknowledged",
            tls1,
            None,
            Some(&http),
            true,
            0,
            AtRisk(Risk::Pending),
        ),
        (
            "capped, HTTP list not acknowledged, silent",
            tls1,
            None,
            Some(&http),
            true,
            4 * hour,
            AtRisk(Risk::Offline),
        ),
        (
            "capped, HTTP list acknowledged, silent",
            tls1,
            None,
            Some(&http),
            false,
            4 * hour,
            Unaffected { via: Via::Http },
        ),
        (
            "modern, pending, https still works",
            modern,
            None,
            Some(&https),
            true,
            0,
            Unaffected { via: Via::Https },
        ),
        (
            "capped and silent for 4 h",
            tls1,
            None,
            Some(&https),
            false,
            4 * hour,
            AtRisk(Risk::Offline),
        ),
        (
            "capped, silent exactly the limit",
            tls1,
            None,
            Some(&https),
            false,
            3 * hour,
            CutOff,
        ),
        (
            "unknown, https only",
            &[],
            None,
            Some(&https),
            false,
            0,
            AtRisk(Risk::Unknown),
        ),
        (
            "unknown, HTTP entry",
            &[],
            None,
            Some(&both),
            false,
            0,
            Unaffected { via: Via::Http },
        ),
        (
            "observed TLSv1.2",
            &[],
            Some("TLSv1.2"),
            Some(&https),
            false,
            0,
            Unaffected { via: Via::Https },
        ),
        (
            "observed TLSv1 only",
            &[],
            Some("TLSv1"),
            Some(&https),
            false,
            0,
            CutOff,
        ),
        (
            "modern, no list at all",
            modern,
            None,
            None,
            false,
            0,
            CutOff,
        ),
        (
            "modern, HTTP list",
            modern,
            None,
            Some(&http),
            false,
            0,
            Unaffected { via: Via::Http },
        ),
    ];
    for (case, reported, negotiated, list, pending, silent_ms, expected) in cases {
        let agent = AgentFacts {
            group: 1,
            capability: capability(reported, negotiated),
            pending,
            silent_ms,
            replayed: None,
            reverted: false,
        };
        let group = GroupFacts {
            list,
            offline_after_ms: 3 * hour,
        };
        let verdict = judge(&agent, group, Clients::serving(TLS12_UP));
        assert_eq!(verdict, expected, "{case}");
        assert!(!explain(&agent, group, Clients::serving(TLS12_UP), &verdict).is_empty());
    }
}

#[test]
fn the_old_range_keeps_capped_agents() {
    let https = list("default", &["1:https://mgr1:443"]);
    let agent = AgentFacts {
        group: 1,
        capability: capability(&["TLSv1"], None),
        pending: false,
        silent_ms: 0,
        replayed: None,
        reverted: false,
    };
    let group = GroupFacts {
        list: Some(&https),
        offline_after_ms: 1,
    };
    let all = VersionRange::new(TlsVersion::Tls1_0, TlsVersion::Tls1_3);
    assert_eq!(
        judge(&agent, group, Clients::serving(all)),
        Verdict::Unaffected { via: Via::Https }
    );
    let reason = explain(
        &agent,
        group,
        Clients::serving(TLS12_UP),
        &judge(&agent, group, Clients::serving(TLS12_UP)),
    );
    assert_eq!(
        reason,
        "it speaks TLSv1 at most (reported), below TLSv1.2-TLSv1.3, and server list 'default' \
         has no HTTP entry"
    );
}

#[test]
fn human_durations() {
    for (ms, text) in [
        (0, "0s"),
        (999, "0s"),
        (42_000, "42s"),
        (3_600_000, "1h"),
        (11_100_000, "3h 5m"),
        (93_784_000, "1d 2h"),
        (-5, "0s"),
    ] {
        assert_eq!(human(ms), text, "{ms}");
    }
}

#[test]
fn a_replayed_clienthello_is_the_exact_evidence() {
    use Verdict::{CutOff, Unaffected};
    let https = list("default", &["1:https://mgr1:443"]);
    let group = GroupFacts {
        list: Some(&https),
        offline_after_ms: 1_000_000,
    };
    // (reported versions, replayed verdict, expected): the replay wins over what the agent
    // says it speaks, both ways (a cipher or certificate change the versions cannot show).
    let cases: &[(&[&str], Option<bool>, Verdict)] = &[
        (&["TLSv1.2", "TLSv1.3"], Some(false), CutOff),
        (&["TLSv1"], Some(true), Unaffected { via: Via::Https }),
        (&["TLSv1.2"], None, Unaffected { via: Via::Https }),
        (&[], Some(true), Unaffected { via: Via::Https }),
        (&[], Some(false), CutOff),
    ];
    for (reported, replayed, expected) in cases {
        let agent = AgentFacts {
            group: 1,
            capability: capability(reported, None),
            pending: false,
            silent_ms: 0,
            replayed: *replayed,
            reverted: false,
        };
        let verdict = judge(&agent, group, Clients::serving(TLS12_UP));
        assert_eq!(&verdict, expected, "{reported:?} {replayed:?}");
        let why = explain(&agent, group, Clients::serving(TLS12_UP), &verdict);
        if replayed.is_some() {
            assert!(why.contains("replayed"), "{why}");
        }
    }
}

#[test]
fn a_certificate_the_agent_would_not_trust_takes_its_https_path() {
    use Verdict::{AtRisk, CutOff, Unaffected};
    let untrusted: std::collections::BTreeMap<String, String> = [(
        "mgr1".to_string(),
        "it does not chain to ward's CA".to_string(),
    )]
    .into();
    let distrusting = Clients {
        range: TLS12_UP,
        untrusted: &untrusted,
    };
    let https = list("https", &["1:https://mgr1:443"]);
    let mut unverified = list("unverified", &["1:https://mgr1:443"]);
    unverified.levels[0][0].verify_certificate = false;
    let two_hosts = list("two", &["1:https://mgr1:443", "2:https://mgr2:443"]);
    let with_http = list("mixed", &["1:https://mgr1:443", "2:http://mgr1:8014"]);
    // (list, silent, expected): the agent speaks TLS 1.2 and its hello is served.
    let cases: &[(&ServerList, i64, Verdict)] = &[
        (&https, 0, CutOff),
        (&https, 5_000_000, AtRisk(Risk::Offline)),
        (&unverified, 0, Unaffected { via: Via::Https }),
        (&two_hosts, 0, Unaffected { via: Via::Https }),
        (&with_http, 0, Unaffected { via: Via::Http }),
    ];
    for (list, silent_ms, expected) in cases {
        let group = GroupFacts {
            list: Some(list),
            offline_after_ms: 1_000_000,
        };
        let agent = AgentFacts {
            group: 1,
            capability: capability(&["TLSv1.2"], None),
            pending: false,
            silent_ms: *silent_ms,
            replayed: Some(true),
            reverted: false,
        };
        let verdict = judge(&agent, group, distrusting);
        assert_eq!(&verdict, expected, "{}", list.name);
        // The same agent under a trusted certificate keeps HTTPS.
        assert_eq!(
            judge(&agent, group, Clients::serving(TLS12_UP)),
            Unaffected { via: Via::Https },
            "{}",
            list.name
        );
        if !matches!(verdict, Unaffected { .. }) {
            let why = explain(&agent, group, distrusting, &verdict);
            assert!(
                why.contains("would not trust") && why.contains("mgr1"),
                "{why}"
            );
        }
    }
}

/// An agent that went back to its last working settings is not judged by its group's list:
/// at risk, even when its own hello would be served over HTTPS (the list's HTTPS server is
/// what it could not reach).
#[test]
fn a_reverted_agent_is_at_risk_whatever_its_groups_list_says() {
    let http = list("legacy", &["1:http://mgr1:8014"]);
    let https = list("default", &["1:https://mgr1:443"]);
    let reverted = |replayed| AgentFacts {
        group: 1,
        capability: capability(&["TLSv1"], None),
        pending: true,
        silent_ms: 0,
        replayed,
        reverted: true,
    };
    let group = |list| GroupFacts {
        list: Some(list),
        offline_after_ms: 3_600_000,
    };
    let clients = Clients::serving(TLS12_UP);
    for (agent, list, expected) in [
        (reverted(None), &http, Verdict::AtRisk(Risk::Reverted)),
        (
            reverted(Some(false)),
            &https,
            Verdict::AtRisk(Risk::Reverted),
        ),
        (
            reverted(Some(true)),
            &https,
            Verdict::AtRisk(Risk::Reverted),
        ),
    ] {
        let verdict = judge(&agent, group(list), clients);
        assert_eq!(verdict, expected);
        let why = explain(&agent, group(list), clients, &verdict);
        assert!(
            why.contains("went back to the last settings that worked"),
            "{why}"
        );
    }
}
