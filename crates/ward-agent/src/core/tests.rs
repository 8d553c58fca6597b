use super::*;
use ward_proto::messages::{Scheme, ServerEntry, ServerListSettings};

fn entry(priority: u32, url: &str) -> ServerEntry {
    ServerEntry {
        priority,
        url: url.into(),
        address: "x".into(),
        protocol: Scheme::Https,
        port: 443,
        verify_certificate: true,
    }
}

fn settings(serial: i64, mode: Mode, servers: &[(u32, &str)]) -> Settings {
    Settings {
        serial,
        group: "My Company".into(),
        server_list: ServerListSettings {
            name: "Default".into(),
            servers: servers.iter().map(|(p, u)| entry(*p, u)).collect(),
        },
        interval: Duration::from_secs(60),
        randomize: Duration::from_secs(10),
        mode,
        policy: serde_json::Value::Null,
        trust_pem: String::new(),
        server_key: String::new(),
    }
}

/// A core whose random numbers are all `r` (0.0: no shuffle moves, no jitter).
fn core(settings: Settings, r: f64) -> Core {
    Core::new(settings, 1, CoreConfig::default(), Box::new(move || r))
}

fn ok(settings: Option<Settings>) -> Result<CheckinResponse, AgentError> {
    Ok(CheckinResponse {
        serial: settings.as_ref().map_or(1, |s| s.serial),
        settings,
    })
}

fn down(url: &str) -> Result<CheckinResponse, AgentError> {
    Err(AgentError::transport(url, "connection refused"))
}

fn busy(url: &str, seconds: u64) -> Result<CheckinResponse, AgentError> {
    Err(AgentError::Busy {
        server: url.into(),
        retry_after: Duration::from_secs(seconds),
    })
}

/// Drives `core` through `steps`: each is the answer to the next check-in, and the server
/// that check-in must go to. Returns the events.
fn drive(
    core: &mut Core,
    now: Instant,
    steps: Vec<(&str, Result<CheckinResponse, AgentError>)>,
) -> Vec<Event> {
    let mut events = Vec::new();
    for (expected, answer) in steps {
        let action = loop {
            match core.next(now) {
                Action::Sleep(_) => continue,
                action => break action,
            }
        };
        let Action::Checkin { server, .. } = action else {
            unreachable!()
        };
        assert_eq!(server.url, expected, "after {events:?}");
        events.push(core.complete(now, answer));
    }
    events
}

#[test]
fn pull_checks_in_at_the_interval_plus_randomisation() {
    let mut agent = core(settings(1, Mode::Pull, &[(1, "https://a:443")]), 0.5);
    let now = Instant::now();
    assert_eq!(
        agent.next(now),
        Action::Checkin {
            server: Candidate {
                priority: 1,
                url: "https://a:443".into(),
                verify_certificate: true
            },
            acked_serial: 1,
            wait: Duration::ZERO
        }
    );
    let event = agent.complete(now, ok(None));
    assert!(matches!(
        event,
        Event::CheckedIn { changed: false, pause, .. } if pause == Duration::from_secs(65)
    ));
    assert_eq!(agent.next(now), Action::Sleep(Duration::from_secs(65)));
}

#[test]
fn new_settings_are_acknowledged_and_followed() {
    let mut agent = core(settings(1, Mode::Pull, &[(1, "https://a:443")]), 0.0);
    let now = Instant::now();
    let moved = settings(5, Mode::Pull, &[(1, "http://b:8014")]);
    let events = drive(
        &mut agent,
        now,
        vec![
            ("https://a:443", ok(Some(moved.clone()))),
            ("http://b:8014", ok(None)),
        ],
    );
    assert!(matches!(events[0], Event::CheckedIn { changed: true, .. }));
    assert_eq!(agent.acked_serial(), 5);
    assert_eq!(agent.settings(), &moved);
}

#[test]
fn failover_goes_down_the_priorities_sticks_and_returns_after_a_while() {
    let servers = [(1, "https://p1:443"), (2, "https://p2:443")];
    let mut agent = core(settings(1, Mode::Pull, &servers), 0.0);
    let start = Instant::now();
    let events = drive(
        &mut agent,
        start,
        vec![
            ("https://p1:443", down("https://p1:443")),
            ("https://p2:443", ok(None)),
            // Sticky: the server that worked first.
            ("https://p2:443", ok(None)),
        ],
    );
    assert!(matches!(events[0], Event::Failed { pause: None, .. }));
    // After return_after, priority 1 is tried first again.
    let later = start + Duration::from_secs(3601);
    let events = drive(&mut agent, later, vec![("https://p1:443", ok(None))]);
    assert!(matches!(events[0], Event::CheckedIn { .. }));
}

#[test]
fn when_every_server_fails_it_backs_off_but_not_sooner_than_a_busy_server_asks() {
    let servers = [(1, "https://p1:443"), (1, "https://p1b:443")];
    let mut agent = core(settings(1, Mode::Pull, &servers), 0.0);
    let now = Instant::now();
    let events = drive(
        &mut agent,
        now,
        vec![
            ("https://p1b:443", busy("https://p1b:443", 30)),
            ("https://p1:443", down("https://p1:443")),
        ],
    );
    assert_eq!(
        events[1],
        Event::Failed {
            error: AgentError::transport("https://p1:443", "connection refused"),
            pause: Some(Duration::from_secs(30)),
        }
    );
    assert!(agent.last_error().is_some());
    // A Retry-After beyond an hour is not obeyed beyond an hour.
    let events = drive(
        &mut agent,
        now,
        vec![
            ("https://p1b:443", busy("https://p1b:443", 99_999)),
            ("https://p1:443", down("https://p1:443")),
        ],
    );
    assert!(matches!(events[1], Event::Failed { pause: Some(p), .. } if p == MAX_RETRY_AFTER));
}

#[test]
fn backoff_doubles_up_to_the_interval() {
    let mut agent = core(settings(1, Mode::Pull, &[(1, "https://a:443")]), 0.0);
    let now = Instant::now();
    let mut pauses = Vec::new();
    for _ in 0..8 {
        if let Event::Failed { pause: Some(p), .. } = drive(
            &mut agent,
            now,
            vec![("https://a:443", down("https://a:443"))],
        )[0]
        {
            pauses.push(p.as_secs());
        }
    }
    assert_eq!(pauses, [1, 2, 4, 8, 16, 32, 60, 60]);
}

#[test]
fn push_holds_only_once_the_serial_is_acknowledged() {
    let mut agent = core(settings(1, Mode::Push, &[(1, "https://a:443")]), 0.0);
    let now = Instant::now();
    let wait = |agent: &mut Core| match agent.next(now) {
        Action::Checkin { wait, .. } => wait,
        other => panic!("{other:?}"),
    };
    // The first check-in reports the serial; no hold.
    assert_eq!(wait(&mut agent), Duration::ZERO);
    agent.complete(now, ok(None));
    // Then held open.
    assert_eq!(wait(&mut agent), Duration::from_secs(50));
    // A change comes back: acknowledged at once by a check-in that is not held.
    agent.complete(
        now,
        ok(Some(settings(2, Mode::Push, &[(1, "https://a:443")]))),
    );
    assert_eq!(wait(&mut agent), Duration::ZERO);
    agent.complete(now, ok(None));
    assert_eq!(wait(&mut agent), Duration::from_secs(50));
}

#[test]
fn an_empty_list_is_a_failure_with_backoff() {
    let mut agent = core(settings(1, Mode::Pull, &[]), 0.0);
    assert_eq!(
        agent.next(Instant::now()),
        Action::Sleep(Duration::from_secs(1))
    );
    assert_eq!(
        agent.last_error().map(ToString::to_string).as_deref(),
        Some("the server list is empty")
    );
}

#[test]
fn the_simulator_may_override_mode_and_interval() {
    let config = CoreConfig {
        mode: Some(Mode::Pull),
        interval: Some(Duration::from_secs(5)),
        ..CoreConfig::default()
    };
    let mut agent = Core::new(
        settings(1, Mode::Push, &[(1, "https://a:443")]),
        1,
        config,
        Box::new(|| 0.9),
    );
    let now = Instant::now();
    agent.next(now);
    assert!(matches!(
        agent.complete(now, ok(None)),
        Event::CheckedIn { pause, .. } if pause == Duration::from_secs(5)
    ));
}

#[test]
fn a_forged_unsigned_503_does_not_change_when_the_agent_checks_in_next() {
    use crate::transport::Exchange;
    let key = ward_proto::AgentKey::from_bytes([7; 32]);
    let servers = [(1, "http://mgr1:8014")];
    let now = Instant::now();
    // The same round twice: once the server is simply unreachable, once a network attacker
    // answers 503 with Retry-After: 3600 and no signature.
    let forged = Exchange {
        status: 503,
        headers: vec![("retry-after".into(), "3600".into())],
        body: b"{\"error\": {\"code\": \"busy\", \"message\": \"go away\"}}".to_vec(),
        channel: "http",
        tls_version: None,
    };
    let forged =
        crate::requests::verify_signed::<CheckinResponse>(&key, "n1", "http://mgr1:8014", &forged);
    let mut attacked = core(settings(1, Mode::Pull, &servers), 0.0);
    let mut unreachable = core(settings(1, Mode::Pull, &servers), 0.0);
    let attacked = drive(&mut attacked, now, vec![("http://mgr1:8014", forged)]);
    let unreachable = drive(
        &mut unreachable,
        now,
        vec![("http://mgr1:8014", down("http://mgr1:8014"))],
    );
    let pause = |events: &[Event]| match &events[0] {
        Event::Failed { pause, .. } => *pause,
        other => panic!("{other:?}"),
    };
    assert_eq!(pause(&attacked), pause(&unreachable));
    assert!(pause(&attacked).unwrap() <= Duration::from_secs(60));
}

/// Found by fuzzing (fuzz/, target `settings`): signed settings with the longest interval the
/// duration codec reads (`18446744073709551615s`) and a randomisation window made the pull
/// pause overflow (a panic: "overflow when adding durations").
#[test]
fn the_longest_interval_does_not_overflow_the_pause() {
    let servers = [(1, "https://mgr1:443")];
    let mut longest = settings(2, Mode::Pull, &servers);
    longest.interval = ward_proto::duration::parse("18446744073709551615s").unwrap();
    longest.randomize = Duration::from_secs(60);
    let mut agent = core(settings(1, Mode::Pull, &servers), 0.5);
    let events = drive(
        &mut agent,
        Instant::now(),
        vec![("https://mgr1:443", ok(Some(longest)))],
    );
    match &events[0] {
        Event::CheckedIn { pause, .. } => assert_eq!(*pause, Duration::MAX),
        other => panic!("{other:?}"),
    }
}
