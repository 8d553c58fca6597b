use super::*;
use ward_api::fleet::VersionCount;

#[test]
fn the_fleet_is_counted_by_channel_and_negotiated_version() {
    let row = |channel: Option<&str>, version: Option<&str>, agents| VersionCount {
        channel: channel.map(str::to_string),
        tls_version: version.map(str::to_string),
        agents,
    };
    let agents = FleetSummary {
        agents: 5,
        online: 3,
        pending: 3,
        by_version: vec![
            row(None, None, 1),
            row(Some("http"), None, 1),
            row(Some("https"), Some("TLSv1"), 1),
            row(Some("https"), Some("TLSv1.3"), 2),
        ],
        ..FleetSummary::default()
    };
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
    let counts = count(&FleetSummary::default());
    assert_eq!(counts, Counts::default());
    assert!(version_bars(&counts).is_empty());
}
