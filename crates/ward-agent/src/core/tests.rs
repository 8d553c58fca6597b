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

/// A change that wakes a held check-in is acknowledged after a pause spread over the group's
/// randomize window (all the group's held agents are woken at once); one found by a check-in
/// that was not held is acknowledged at once.
#[test]
fn a_pushed_change_is_acknowledged_within_the_randomize_window() {
    let now = Instant::now();
    let list = [(1, "https://a:443")];
    // (randomize of the new settings, random number, pause before the acknowledgement)
    for (randomize, random, pause) in [
        (10, 0.5, Duration::from_secs(5)),
        (10, 0.0, Duration::ZERO),
        (0, 0.9, Duration::ZERO),
        // Never beyond an interval (60 s).
        (3600, 0.5, Duration::from_secs(30)),
    ] {
        let mut agent = core(settings(1, Mode::Push, &list), random);
        let next_wait = |agent: &mut Core| match agent.next(now) {
            Action::Checkin { wait, .. } => wait,
            other => panic!("{other:?}"),
        };
        assert_eq!(next_wait(&mut agent), Duration::ZERO);
        agent.complete(now, ok(None));
        assert_eq!(next_wait(&mut agent), Duration::from_secs(50), "held");
        let mut changed = settings(2, Mode::Push, &list);
        changed.randomize = Duration::from_secs(randomize);
        let event = agent.complete(now, ok(Some(changed)));
        assert!(
            matches!(event, Event::CheckedIn { changed: true, pause: p, .. } if p == pause),
            "randomize {randomize}s, random {random}: {event:?}"
        );
        if !pause.is_zero() {
            assert_eq!(agent.next(now), Action::Sleep(pause));
        }
        assert_eq!(next_wait(&mut agent), Duration::ZERO, "then acknowledged");
    }
    // Found by a check-in that was not held: at once.
    let mut agent = core(settings(1, Mode::Push, &list), 0.5);
    assert!(matches!(agent.next(now), Action::Checkin { wait, .. } if wait.is_zero()));
    let event = agent.complete(now, ok(Some(settings(2, Mode::Push, &list))));
    assert!(
        matches!(event, Event::CheckedIn { changed: true, pause, .. } if pause.is_zero()),
        "{event:?}"
    );
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

// ---- commit confirmed: probation and revert ----------------------------------------------

/// The next check-in at `at` (sleeps skipped), answered with what `answer` gives for its
/// server: the server asked, and the event.
fn step(
    core: &mut Core,
    at: Instant,
    answer: impl Fn(&str) -> Result<CheckinResponse, AgentError>,
) -> (String, Event) {
    let server = loop {
        match core.next(at) {
            Action::Sleep(_) => continue,
            Action::Checkin { server, .. } => break server.url,
        }
    };
    let event = core.complete(at, answer(&server));
    (server, event)
}

/// Rounds of failures until the agent reverts or `rounds` have passed: the time and events.
fn fail_rounds(core: &mut Core, start: Instant, every: Duration, rounds: u32) -> Vec<Event> {
    let mut events = Vec::new();
    for round in 0..rounds {
        let at = start + every * round;
        loop {
            let (_, event) = step(core, at, down);
            let end = !matches!(event, Event::Failed { pause: None, .. });
            let reverted = matches!(event, Event::Reverted { .. });
            events.push(event);
            if reverted {
                return events;
            }
            if end {
                break;
            }
        }
    }
    events
}

#[test]
fn settings_that_cut_a_push_agent_off_are_reverted_within_its_window() {
    let old = settings(1, Mode::Push, &[(1, "https://a:443")]);
    let mut agent = core(old.clone(), 0.0);
    let start = Instant::now();
    // A move to a list whose only server is where nothing listens.
    let new = settings(7, Mode::Push, &[(1, "http://a:8014")]);
    let (_, event) = step(&mut agent, start, |_| ok(Some(new.clone())));
    assert!(matches!(event, Event::CheckedIn { changed: true, .. }));
    assert_eq!(agent.fallback().map(|f| f.acked_serial), Some(1));
    // Three failed rounds inside the 20 s window: still on the new settings.
    let events = fail_rounds(&mut agent, start, Duration::from_secs(3), 3);
    assert!(events.iter().all(|e| matches!(e, Event::Failed { .. })));
    assert_eq!(agent.acked_serial(), 7);
    // Past the window, the next failed round reverts.
    let events = fail_rounds(
        &mut agent,
        start + Duration::from_secs(21),
        Duration::ZERO,
        1,
    );
    let Some(Event::Reverted { report, .. }) = events.last() else {
        panic!("{events:?}")
    };
    assert_eq!(report.serial, 7);
    assert_eq!(
        report.failures,
        [ward_proto::messages::PathFailure {
            server: "http://a:8014".into(),
            error: "connection refused".into()
        }]
    );
    assert_eq!(
        report.summary(),
        "serial 7: http://a:8014: connection refused"
    );
    assert_eq!(agent.settings(), &old);
    assert_eq!(agent.acked_serial(), 1);
    assert_eq!(agent.fallback(), None);
    // At once, with the old settings, and the report rides along until other settings come.
    let later = start + Duration::from_secs(21);
    assert!(
        matches!(agent.next(later), Action::Checkin { ref server, .. } if server.url == "https://a:443")
    );
    assert_eq!(agent.reverted().map(|r| r.serial), Some(7));
    agent.complete(later, ok(None));
    assert_eq!(agent.reverted().map(|r| r.serial), Some(7));
    // A server that does not know reverts hands serial 7 again: not taken.
    let (_, event) = step(&mut agent, later, |_| ok(Some(new.clone())));
    assert!(matches!(event, Event::CheckedIn { changed: false, .. }));
    assert_eq!(agent.acked_serial(), 1);
    // A new change (serial 8) is taken, on probation, and the report ends.
    let fixed = settings(8, Mode::Push, &[(1, "https://b:443")]);
    let (_, event) = step(&mut agent, later, |_| ok(Some(fixed.clone())));
    assert!(matches!(event, Event::CheckedIn { changed: true, .. }));
    assert_eq!(agent.reverted(), None);
    assert_eq!(agent.fallback().map(|f| f.acked_serial), Some(1));
    // Its first check-in with the new server completes: confirmed.
    let (server, _) = step(&mut agent, later, |_| ok(None));
    assert_eq!(server, "https://b:443");
    assert_eq!(agent.fallback(), None);
}

#[test]
fn a_pull_agent_reverts_after_three_intervals_never_more_than_an_hour() {
    assert_eq!(
        probation_window(Mode::Pull, Duration::from_secs(60)),
        Duration::from_secs(180)
    );
    assert_eq!(
        probation_window(Mode::Pull, Duration::from_secs(86_400)),
        Duration::from_secs(3600)
    );
    assert_eq!(
        probation_window(Mode::Push, Duration::from_secs(86_400)),
        Duration::from_secs(20)
    );
    let mut agent = core(settings(1, Mode::Pull, &[(1, "https://a:443")]), 0.0);
    let start = Instant::now();
    let new = settings(
        2,
        Mode::Pull,
        &[(1, "https://gone:443"), (2, "http://gone:8014")],
    );
    step(&mut agent, start, |_| ok(Some(new.clone())));
    // Rounds every 50 s: the window is 180 s, so the fifth round (at 200 s) reverts.
    let events = fail_rounds(&mut agent, start, Duration::from_secs(50), 5);
    let reverted: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Event::Reverted { .. }))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(reverted, [events.len() - 1]);
    // Two servers per round, each failed: 4 rounds of 2 failures, then the reverting one.
    assert_eq!(events.len(), 10);
    let Some(Event::Reverted { report, .. }) = events.last() else {
        unreachable!()
    };
    assert_eq!(
        report.failures.len(),
        2,
        "each server of the list, its last failure"
    );
    // With a day's interval, a failed round's backoff never passes the window's end.
    let mut agent = core(settings(1, Mode::Pull, &[(1, "https://a:443")]), 0.0);
    let mut long = new.clone();
    long.interval = Duration::from_secs(86_400);
    step(&mut agent, start, |_| ok(Some(long.clone())));
    let mut at = start;
    let mut reverted_at = None;
    for _ in 0..40 {
        let (_, event) = step(&mut agent, at, down);
        match event {
            Event::Reverted { .. } => {
                reverted_at = Some(at);
                break;
            }
            Event::Failed {
                pause: Some(pause), ..
            } => at += pause,
            _ => {}
        }
    }
    let after = reverted_at.expect("reverted").duration_since(start);
    assert!(after <= Duration::from_secs(3601), "{after:?}");
}

#[test]
fn answers_are_not_a_broken_path_and_settings_that_work_are_confirmed() {
    let start = Instant::now();
    let new = settings(2, Mode::Push, &[(1, "https://b:443")]);
    let refused = |url: &str| -> Result<CheckinResponse, AgentError> {
        Err(AgentError::Refused {
            server: url.into(),
            status: 401,
            code: "unknown_agent".into(),
            message: "unknown agent".into(),
        })
    };
    // A retired agent (a signed refusal) and a busy server: however long, no revert.
    for answer in [refused as fn(&str) -> _, |url: &str| busy(url, 5)] {
        let mut agent = core(settings(1, Mode::Push, &[(1, "https://a:443")]), 0.0);
        step(&mut agent, start, |_| ok(Some(new.clone())));
        for round in 0..10 {
            let (_, event) = step(&mut agent, start + Duration::from_secs(30 * round), answer);
            assert!(matches!(event, Event::Failed { .. }), "{event:?}");
        }
        assert_eq!(agent.acked_serial(), 2);
    }
    // Settings that reach the same servers the same way (a policy change) are not on
    // probation: a server that is down then is no reason to leave them.
    let mut agent = core(settings(1, Mode::Push, &[(1, "https://a:443")]), 0.0);
    let mut same_path = settings(3, Mode::Push, &[(1, "https://a:443")]);
    same_path.policy = serde_json::json!({"x": 1});
    step(&mut agent, start, |_| ok(Some(same_path.clone())));
    assert_eq!(agent.fallback(), None);
    let events = fail_rounds(&mut agent, start, Duration::from_secs(30), 5);
    assert!(events.iter().all(|e| matches!(e, Event::Failed { .. })));
    // A blip (one failed round), then a check-in that completes: confirmed, no revert.
    let mut agent = core(settings(1, Mode::Push, &[(1, "https://a:443")]), 0.0);
    step(&mut agent, start, |_| ok(Some(new.clone())));
    fail_rounds(
        &mut agent,
        start + Duration::from_secs(30),
        Duration::ZERO,
        1,
    );
    step(&mut agent, start + Duration::from_secs(31), |_| ok(None));
    assert_eq!(agent.fallback(), None);
    let events = fail_rounds(
        &mut agent,
        start + Duration::from_secs(60),
        Duration::from_secs(30),
        5,
    );
    assert!(events.iter().all(|e| matches!(e, Event::Failed { .. })));
}

#[test]
fn a_restart_keeps_the_probation_and_the_report() {
    let start = Instant::now();
    let old = settings(1, Mode::Push, &[(1, "https://a:443")]);
    let new = settings(2, Mode::Push, &[(1, "https://gone:443")]);
    let report = Reverted {
        serial: 9,
        failures: vec![],
    };
    let mut agent = Core::new(new, 2, CoreConfig::default(), Box::new(|| 0.0)).with_fallback(
        Some(Fallback {
            settings: old.clone(),
            acked_serial: 1,
        }),
        Some(report.clone()),
        start,
    );
    assert_eq!(agent.reverted(), Some(&report));
    let events = fail_rounds(&mut agent, start, Duration::from_secs(10), 4);
    assert!(
        matches!(events.last(), Some(Event::Reverted { .. })),
        "{events:?}"
    );
    assert_eq!(agent.settings(), &old);
}
