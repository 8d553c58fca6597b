//! The judge on a fleet made in memory: one agent of each kind, judged under a range, and the
//! agents a narrower range takes the last path from.

use std::collections::{HashMap, HashSet};

use ward_fleet::{serverlist, Group, OwnSettings, Tree};
use ward_store::AgentTls;
use ward_tls::{TlsVersion, VersionRange};

use super::*;
use crate::impact::fleet::index;

const NOW: i64 = 1_000_000_000_000;

/// The root group on an HTTPS list, and `Legacy` under it on the HTTP copy.
fn tree_and_lists() -> (Tree, Vec<ward_fleet::ServerList>) {
    let https = serverlist::build(
        "Default",
        vec![serverlist::parse_spec("1:https://mgr1:443").unwrap()],
    )
    .unwrap();
    let http = serverlist::build(
        "Default-http",
        vec![serverlist::parse_spec("1:http://mgr1:8014").unwrap()],
    )
    .unwrap();
    let mut root = ward_fleet::group::default_root("My Company", "Default");
    root.id = 1;
    let legacy = Group {
        id: 2,
        parent: Some(1),
        name: "Legacy".into(),
        own: OwnSettings {
            server_list: Some("Default-http".into()),
            ..OwnSettings::default()
        },
    };
    (Tree::new(vec![root, legacy]).unwrap(), vec![https, http])
}

/// An agent that speaks `versions` (rank bits: 1 TLSv1 ... 8 TLSv1.3), in `group`, seen
/// `silent_ms` ago over `https` (`None`: never).
fn agent(id: &str, group: i64, versions: u8, https: Option<bool>, silent_ms: i64) -> AgentTls {
    AgentTls {
        id: id.into(),
        group,
        versions,
        negotiated: https
            .filter(|h| *h)
            .map(|_| (8 - versions.leading_zeros()) as u8),
        https,
        peer: None,
        last_checkin_ms: https.map(|_| NOW - silent_ms),
        enrolled_ms: NOW - silent_ms,
        serial: 1,
        acked_serial: 1,
        simulated: false,
        post_quantum: false,
        hello: None,
        trusted_cas: None,
        agreement_key: None,
        reported_hello: None,
        refused_serial: None,
    }
}

/// A threshold beyond what i64 holds (long intervals, many of them) is the largest there is,
/// not an overflow: the fuzzer found `+ RECORDING_LAG` after a saturated product.
#[test]
fn an_offline_threshold_too_large_to_hold_saturates() {
    let (_, lists) = tree_and_lists();
    let mut root = ward_fleet::group::default_root("My Company", "Default");
    root.id = 1;
    root.own.interval = Some(std::time::Duration::from_millis(i64::MAX as u64 / 2));
    let tree = Tree::new(vec![root]).unwrap();
    let groups = index(&tree, &lists, 3);
    assert_eq!(groups[&1].1, i64::MAX);
}

fn fleet(agents: Vec<AgentTls>) -> Fleet {
    let (tree, lists) = tree_and_lists();
    let groups = index(&tree, &lists, 3);
    Fleet {
        tree,
        lists,
        agents,
        groups,
        held: HashSet::new(),
        replayed: HashMap::new(),
        refusals: HashMap::new(),
        served_key: HashMap::new(),
        intervals: 3,
        acknowledged: false,
    }
}

fn range(min: TlsVersion) -> VersionRange {
    VersionRange::new(min, TlsVersion::Tls1_3)
}

/// (id, group, version bits, channel, silent for, the verdict's name under TLS 1.2 and up)
#[test]
fn each_agent_is_judged_by_what_ward_knows_of_it() {
    type Case<'a> = (&'a str, i64, u8, Option<bool>, i64, &'a str);
    let cases: &[Case] = &[
        ("modern", 1, 0b1100, Some(true), 1_000, "unaffected"),
        ("xp-on-https", 1, 0b0001, Some(true), 1_000, "cut_off"),
        ("xp-on-http", 2, 0b0001, Some(false), 1_000, "unaffected"),
        ("never-seen", 1, 0, None, 1_000, "at_risk"),
        // Offline, but it speaks TLS 1.2: it has a path when it comes back.
        (
            "offline-modern",
            1,
            0b1100,
            Some(true),
            30 * 86_400_000,
            "unaffected",
        ),
    ];
    let agents = cases
        .iter()
        .map(|(id, group, bits, https, silent, _)| agent(id, *group, *bits, *https, *silent))
        .collect();
    let fleet = fleet(agents);
    let assessment = assess(
        &fleet,
        range(TlsVersion::Tls1_2),
        &Untrusted::default(),
        NOW,
    );
    for (id, .., expected) in cases {
        let index = fleet.agents.iter().position(|a| a.id == *id).unwrap();
        let verdict = assessment
            .flagged
            .iter()
            .find(|(i, _)| *i == index)
            .map_or("unaffected", |(_, v)| v.name());
        assert_eq!(verdict, *expected, "{id}");
    }
    assert_eq!(
        (assessment.unaffected_https, assessment.unaffected_http),
        (2, 1)
    );
    let counts = counts(&assessment);
    assert_eq!(
        (counts.cut_off, counts.at_risk, counts.unaffected),
        (1, 1, 3)
    );
    assert_eq!(counts.at_risk_by_reason.values().sum::<u64>(), 1);
}

#[test]
fn a_narrower_range_loses_only_those_it_takes_the_last_path_from() {
    let agents = vec![
        agent("modern", 1, 0b1100, Some(true), 1_000),
        agent("xp-on-https", 1, 0b0001, Some(true), 1_000),
        agent("xp-on-http", 2, 0b0001, Some(false), 1_000),
        agent("never-seen", 1, 0, None, 1_000),
    ];
    let fleet = fleet(agents);
    let before = assess(
        &fleet,
        range(TlsVersion::Tls1_0),
        &Untrusted::default(),
        NOW,
    );
    let after = assess(
        &fleet,
        range(TlsVersion::Tls1_2),
        &Untrusted::default(),
        NOW,
    );
    let lost: Vec<&str> = lost((&fleet, &before), (&fleet, &after))
        .iter()
        .map(|(index, _)| fleet.agents[*index].id.as_str())
        .collect();
    // The agent never seen is at risk before and after: not this change's doing.
    assert_eq!(lost, ["xp-on-https"]);
    // The same range before and after loses nobody.
    assert!(lost_nobody(&fleet, range(TlsVersion::Tls1_2)));
}

fn lost_nobody(fleet: &Fleet, range: VersionRange) -> bool {
    let a = assess(fleet, range, &Untrusted::default(), NOW);
    let b = assess(fleet, range, &Untrusted::default(), NOW);
    lost((fleet, &a), (fleet, &b)).is_empty()
}
