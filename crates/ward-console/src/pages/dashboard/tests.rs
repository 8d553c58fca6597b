use super::*;
use crate::pages::test_agents::agent;

#[test]
fn the_fleet_is_counted_by_channel_and_negotiated_version() {
    let agents = [
        agent(
            "a",
            "a",
            Some("https"),
            Some("TLSv1.3"),
            &["TLSv1.3"],
            true,
            false,
            None,
        ),
        agent(
            "b",
            "b",
            Some("https"),
            Some("TLSv1.3"),
            &["TLSv1.3"],
            false,
            true,
            None,
        ),
        agent(
            "c",
            "c",
            Some("https"),
            Some("TLSv1"),
            &["TLSv1"],
            true,
            false,
            None,
        ),
        agent("d", "d", Some("http"), None, &["TLSv1"], true, true, None),
        agent("e", "e", None, None, &[], false, true, None),
    ];
    let counts = count(&agents);
    assert_eq!(
        (counts.agents, counts.online, counts.offline, counts.pending),
        (5, 3, 2, 3)
    );
    assert_eq!(counts.plain_http, 1);
    assert_eq!(counts.never, 1);
    let bars: Vec<(String, u64, &str)> = version_bars(&counts)
        .into_iter()
        .map(|bar| (bar.label, bar.value, bar.class))
        .collect();
    assert_eq!(
        bars,
        [
            ("clients · TLSv1.3".to_string(), 2, ""),
            ("clients · TLSv1".to_string(), 1, "legacy"),
            ("clients-http · plain".to_string(), 1, "plain"),
            ("never checked in".to_string(), 1, "none"),
        ]
    );
}

#[test]
fn an_empty_fleet_draws_no_bar() {
    let counts = count(&[]);
    assert_eq!(counts, Counts::default());
    assert!(version_bars(&counts).is_empty());
}
