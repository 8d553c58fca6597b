use super::*;

fn default_text() -> String {
    default_toml(default_addresses())
}

#[test]
fn default_file_parses_to_the_seed_ports() {
    let config = parse("ward.toml", &default_text()).unwrap();
    assert_eq!(config.console.to_string(), "0.0.0.0:8445");
    assert_eq!(config.clients.to_string(), "0.0.0.0:443");
    assert_eq!(config.clients_http.to_string(), "0.0.0.0:8014");
    assert_eq!(config.agent_interval, Duration::from_secs(300));
    assert_eq!(config.limits.max_connections, 100_000);
}

#[test]
fn errors_name_file_and_line() {
    let cases = [
        (
            default_text().replace("console = \"0.0.0.0:8445\"", "console = \"nowhere\""),
            "ward.toml:9: console: 'nowhere' is not an address:port (e.g. 0.0.0.0:8445 or [::]:443)",
        ),
        (
            default_text().replace("interval = \"5m\"", "interval = \"5 minutes\""),
            "ward.toml:21: interval: '5 minutes': unknown unit 'minutes' (ms, s, m, h or d)",
        ),
        (
            default_text().replace("max_connections = 100000", "max_connections = 0"),
            "ward.toml:29: max_connections: must be at least 1",
        ),
        (
            default_text().replace("handshake_timeout = \"10s\"", "handshake_timeout = \"0s\""),
            "ward.toml:35: handshake_timeout: must be more than 0s",
        ),
        (
            default_text().replace("path = \"ward.db\"", "path = \"mysql://db/ward\""),
            "ward.toml:17: path: 'mysql://' is not an engine this ward has (a path names an \
             SQLite file, a postgres:// URL a PostgreSQL database)",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(parse("ward.toml", &text).unwrap_err().to_string(), expected);
    }
    // A PostgreSQL URL is a database setting like a path.
    let config = parse(
        "ward.toml",
        &default_text().replace("path = \"ward.db\"", "path = \"postgres://db/ward\""),
    )
    .unwrap();
    assert_eq!(config.database, "postgres://db/ward");
    let error = parse(
        "ward.toml",
        &default_text().replace("[agents]", "[agents]\ncolour = 1"),
    )
    .unwrap_err();
    assert_eq!(error.line, Some(20), "{error}");
    assert!(error.message.contains("unknown field `colour`"), "{error}");
    let error = parse("w.toml", "[listeners\n").unwrap_err();
    assert_eq!(error.line, Some(1), "{error}");
}

#[test]
fn durations() {
    let cases = [
        ("500ms", Ok(Duration::from_millis(500))),
        ("10s", Ok(Duration::from_secs(10))),
        ("5m", Ok(Duration::from_secs(300))),
        ("1h30m", Ok(Duration::from_secs(5400))),
        ("1h 30m", Ok(Duration::from_secs(5400))),
        ("10 s", Ok(Duration::from_secs(10))),
        ("7d", Ok(Duration::from_secs(604_800))),
        ("", Err("empty duration (expected e.g. 10s, 5m, 1h)")),
        ("10", Err("'10': a unit is missing (ms, s, m, h or d)")),
        ("3w", Err("'3w': unknown unit 'w' (ms, s, m, h or d)")),
        (
            "m",
            Err("'m' is not a duration (expected e.g. 10s, 5m, 1h)"),
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(
            parse_duration(text),
            expected.map_err(str::to_string),
            "{text}"
        );
    }
}

#[test]
fn durations_format_and_read_back() {
    for (secs, text) in [
        (0, "0s"),
        (90, "1m30s"),
        (300, "5m"),
        (5400, "1h30m"),
        (86_400, "1d"),
    ] {
        let duration = Duration::from_secs(secs);
        assert_eq!(format_duration(duration), text);
        assert_eq!(parse_duration(text), Ok(duration));
    }
    assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
}

#[test]
fn connection_caps_fit_the_open_file_limit_and_keep_room_for_the_console() {
    // (open files, max_connections) -> every cap, and the sum with refusals and the reserve
    // never above the limit.
    for (files, max) in [
        (1024, 10_000),
        (20_000, 10_000),
        (1_048_576, 10_000),
        (256, 10_000),
        (100, 10_000),
        (4096, 50),
    ] {
        let caps = connection_caps(files, max);
        let total = caps.console + caps.agents + 3 * caps.refusals;
        if files > FILES_RESERVED + 64 {
            assert!(total + FILES_RESERVED <= files, "{files}/{max}: {caps:?}");
        }
        assert!(caps.console >= 1 && caps.agents >= 1 && caps.agent_listener >= 1);
        assert!(caps.agent_listener <= caps.agents, "{caps:?}");
        assert!(
            caps.console <= max && caps.agent_listener <= max,
            "{caps:?}"
        );
    }
    // The ulimit -n 1024 of a service manager: the console keeps its own slots.
    let caps = connection_caps(1024, 10_000);
    assert_eq!(caps.refusals, 30);
    assert_eq!(caps.console, 87);
    assert_eq!((caps.agents, caps.agent_listener), (783, 783));
    // This machine's 20,000: one agent listener may hold all the agents' share (before, each
    // had half, and 15,000 push agents on HTTPS stopped at 8,626).
    let caps = connection_caps(20_000, 100_000);
    assert_eq!((caps.console, caps.agents), (1916, 17_252));
    assert_eq!(caps.agent_listener, caps.agents);
    // Plenty of files: the configured cap, per listener.
    let caps = connection_caps(1_048_576, 10_000);
    assert_eq!(
        (caps.console, caps.agents, caps.agent_listener),
        (10_000, 20_000, 10_000)
    );
}
