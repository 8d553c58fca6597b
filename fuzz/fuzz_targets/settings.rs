#![no_main]
//! The settings an agent follows, from the two places they come from: a settings package
//! (`ward group export-settings` writes it, an admin carries and may edit it, `ward agent
//! import-settings` reads it with `ward_agent::read_package`), or, when the input is no
//! package, the `settings` of a check-in answer. Then everything the agent does with them:
//!
//! - a package that reads round-trips unchanged, and what `import_settings` takes from it
//!   (the first server, the server key to pin) does not panic;
//! - the settings, signed by the server for the agent's request, are read back equal by
//!   `verify_signed`; signed with another key, or changed, they are refused;
//! - the agent's settings file (`agent.json`) keeps them equal;
//! - every server URL splits as the transport splits it (http or https only);
//! - the agent's check-in state machine (`ward_agent::core::Core`) takes them as a check-in's
//!   answer and then fails every server: it never panics, the settings are the ones it
//!   follows, a pull agent pauses for its interval plus at most its randomisation, and the
//!   back-off stays within the interval (at least 1 s).

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use ward_agent::core::{Action, Core, CoreConfig, Event};
use ward_agent::requests::verify_signed;
use ward_agent::state::AgentState;
use ward_agent::transport::split_url;
use ward_agent::{read_package, AgentError};
use ward_proto::messages::{
    decode, encode, CheckinResponse, Mode, Settings, SETTINGS_PACKAGE_FORMAT,
};
use ward_proto::unhex;

#[path = "common.rs"]
mod common;
use common::{key, other_key, signed_answer, with_mac, NONCE, SERVER};

fuzz_target!(|data: &[u8]| {
    // `import-settings` reads the file as text.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let settings = match read_package(text) {
        Ok(package) => {
            assert_eq!(package.format, SETTINGS_PACKAGE_FORMAT);
            let written = encode(&package);
            let again = read_package(&written)
                .unwrap_or_else(|e| panic!("the agent refuses a package ward wrote: {e}"));
            assert_eq!(again, package, "a round trip changed the package");
            assert_eq!(encode(&again), written);
            // What import_settings takes before it enrolls.
            let _ = package.settings.servers().first();
            let _ = unhex(&package.server_public);
            package.settings
        }
        Err(_) => match decode::<Settings>("settings", data) {
            Ok(settings) => settings,
            Err(_) => return,
        },
    };
    common::check_round_trip("settings", &settings);
    signed_delivery(&settings);
    settings_file(&settings);
    for server in settings.servers() {
        if let Ok((scheme, _, _)) = split_url(&server.url) {
            assert!(scheme == "http" || scheme == "https", "{scheme}");
        }
    }
    check_in(settings);
});

/// The settings as the server sends them: a check-in answer, MAC'd for the agent's request.
fn signed_delivery(settings: &Settings) {
    let answer = CheckinResponse {
        serial: settings.serial,
        settings: Some(settings.clone()),
    };
    let body = encode(&answer);
    let read = verify_signed::<CheckinResponse>(
        &key(),
        NONCE,
        SERVER,
        &signed_answer(&key(), body.as_bytes()),
    );
    assert_eq!(
        read.as_ref(),
        Ok(&answer),
        "signed settings were not read back"
    );

    let forged = signed_answer(&other_key(), body.as_bytes());
    let forged = verify_signed::<CheckinResponse>(&key(), NONCE, SERVER, &forged);
    assert!(
        matches!(forged, Err(AgentError::Untrusted { .. })),
        "settings signed with another key: {forged:?}"
    );

    // The signed bytes with one more byte: the MAC no longer covers them.
    let genuine = signed_answer(&key(), body.as_bytes());
    let mut changed = with_mac(&genuine, genuine.header("X-Ward-Mac").map(str::to_string));
    changed.body.push(b' ');
    let changed = verify_signed::<CheckinResponse>(&key(), NONCE, SERVER, &changed);
    assert!(
        matches!(changed, Err(AgentError::Untrusted { .. })),
        "changed settings were read: {changed:?}"
    );
}

/// `DIR/agent.json` as `AgentState::save` writes it and `AgentState::load` reads it.
fn settings_file(settings: &Settings) {
    // Through the wire form, so a field the state file gains later needs no change here.
    let state: AgentState = serde_json::from_value(serde_json::json!({
        "agent": "0123456789abcdef0123456789abcdef",
        "private_key": "22".repeat(32),
        "server_public": "11".repeat(32),
        "settings": settings,
        "acked_serial": settings.serial,
    }))
    .expect("a valid state");
    assert_eq!(&state.settings, settings);
    let text = serde_json::to_string_pretty(&state).expect("the state serialises");
    let loaded: AgentState = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the agent cannot read its own settings file: {e}\n{text}"));
    assert_eq!(loaded, state, "the settings file changed the settings");
}

/// The settings every agent starts from in these runs: one pull server.
fn first_settings() -> Settings {
    serde_json::from_str(
        r#"{"serial": 1, "group": "My Company", "mode": "pull", "interval": "5m",
            "randomize": "1m", "policy": {},
            "server_list": {"name": "Default", "servers": [{"priority": 1,
            "url": "https://mgr1:443", "address": "mgr1", "protocol": "https", "port": 443,
            "verify_certificate": true}]}}"#,
    )
    .expect("valid settings")
}

fn check_in(settings: Settings) {
    let randoms = [0.0, 0.5, 0.999_999];
    let mut next_random = 0;
    let random = Box::new(move || {
        next_random += 1;
        randoms[next_random % randoms.len()]
    });
    let mut core = Core::new(first_settings(), 1, CoreConfig::default(), random);
    let now = Instant::now();
    let Action::Checkin { .. } = core.next(now) else {
        panic!("a new agent does not check in");
    };
    let answer = CheckinResponse {
        serial: settings.serial,
        settings: Some(settings.clone()),
    };
    let pause = match core.complete(now, Ok(answer)) {
        Event::CheckedIn { changed, pause, .. } => {
            assert!(changed);
            if settings.mode == Mode::Pull {
                assert!(
                    pause >= settings.interval,
                    "{pause:?} < {:?}",
                    settings.interval
                );
                assert!(pause - settings.interval <= settings.randomize);
            } else {
                assert_eq!(pause, Duration::ZERO);
            }
            pause
        }
        other => panic!("a check-in's answer: {other:?}"),
    };
    assert_eq!(core.settings(), &settings);
    assert_eq!(core.acked_serial(), settings.serial);
    if !pause.is_zero() {
        assert_eq!(core.next(now), Action::Sleep(pause));
    }

    // Every server fails: the agent backs off within its interval.
    let cap = settings.interval.max(Duration::from_secs(1));
    for _ in 0..settings.servers().len().min(64) + 2 {
        match core.next(now) {
            Action::Sleep(pause) => {
                assert!(pause <= cap.max(Duration::from_millis(100)), "{pause:?}");
            }
            Action::Checkin { server, .. } => {
                assert!(
                    settings.servers().iter().any(|s| s.url == server.url),
                    "{} is not in the settings",
                    server.url
                );
                let failed = AgentError::transport(&server.url, "connection refused");
                if let Event::Failed {
                    pause: Some(pause), ..
                } = core.complete(now, Err(failed))
                {
                    assert!(pause <= cap.max(Duration::from_millis(100)), "{pause:?}");
                }
            }
        }
    }
}
