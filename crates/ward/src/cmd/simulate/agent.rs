//! One simulated agent: its enrollment, and its check-ins until the deadline, driven by
//! ward-agent's sans-IO `Core` (server order, failover, back-off, Retry-After, push holds), so
//! it decides as the real agent does and sends exactly what the real agent sends.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;
use ward_agent::core::{Action, Core, CoreConfig, Event};
use ward_agent::requests::{checkin_request, enroll_request, host_report, verify_signed};
use ward_agent::transport::entry_for;
use ward_agent::Offer;
use ward_agent::{random_fraction, AgentError, HostFacts};
use ward_proto::messages::{
    CheckinRequest, CheckinResponse, EnrollResponse, Mode, ServerListSettings, Settings,
    CHECKIN_PATH, ENROLL_PATH,
};
use ward_proto::{hex, now_ms, KeyPair};

use super::identities::Identity;
use super::report::tally;
use super::transport::{session_der, session_slot, Failure, SessionSlot, Shared};

/// What every agent is told for the run.
pub(super) struct Plan {
    pub(super) mode: Option<String>,
    pub(super) interval: Option<Duration>,
    /// Push agents make their first check-in within this long of the start.
    pub(super) ramp: Duration,
    pub(super) deadline: Instant,
}

fn host_of(index: usize, legacy: bool) -> HostFacts {
    HostFacts {
        hostname: format!("sim-{index:07}"),
        os_name: if legacy {
            "windows-xp".into()
        } else {
            "linux".into()
        },
        os_version: "simulated".into(),
        name: None,
        simulated: true,
    }
}

/// Enrolls agent `index` (capped at TLSv1 when `legacy`) with `token`.
pub(super) async fn enroll(
    shared: &Shared,
    index: usize,
    legacy: bool,
    url: &str,
    verify: bool,
    server_public: &[u8],
    token: &str,
) -> Result<Identity, Failure> {
    let refused = |error: AgentError| Failure {
        class: error.class(),
        detail: error.to_string(),
    };
    let pair = KeyPair::generate().map_err(|e| refused(AgentError::state(e)))?;
    let cap = if legacy {
        shared.legacy_offer
    } else {
        Offer::default()
    };
    let request = enroll_request(
        server_public,
        &pair,
        token,
        cap,
        None,
        &host_of(index, legacy),
        None,
    )
    .map_err(refused)?;
    let headers = [("Content-Type", "application/json".to_string())];
    let session = SessionSlot::default();
    let exchange = shared
        .exchange(
            index,
            legacy,
            url,
            verify,
            &session,
            &mut None,
            false,
            "POST",
            ENROLL_PATH,
            &headers,
            request.body.as_bytes(),
            Duration::from_secs(60),
        )
        .await
        .map(|(exchange, _)| exchange)?;
    let answer: EnrollResponse =
        verify_signed(&request.key, &request.nonce, url, &exchange).map_err(refused)?;
    let private_hex = hex(&pair
        .private_bytes()
        .map_err(|e| refused(AgentError::state(e)))?);
    Ok(Identity {
        id: answer.agent,
        key: request.key,
        private_hex,
        legacy,
        settings: Some(answer.settings),
        session: session_der(&session),
    })
}

/// Settings for an identity reused from a file that kept none: the enrollment URL only,
/// serial 0, so the first check-in brings the real ones.
pub(super) fn bootstrap_settings(url: &str) -> Settings {
    Settings {
        serial: 0,
        group: String::new(),
        server_list: ServerListSettings {
            name: String::new(),
            servers: entry_for(url, true).into_iter().collect(),
        },
        interval: Duration::from_secs(60),
        randomize: Duration::ZERO,
        mode: Mode::Pull,
        policy: Value::Null,
        trust_pem: String::new(),
        server_key: String::new(),
    }
}

/// One agent until the deadline, driven by the agent's own state machine (server order,
/// failover, back-off, Retry-After, push holds). Returns the identity with its last session,
/// and whether its last attempt failed (lost contact).
pub(super) async fn agent_loop(
    shared: &Shared,
    plan: &Plan,
    index: usize,
    mut identity: Identity,
    enrolled_url: String,
    verify: bool,
) -> (Identity, bool) {
    let session = session_slot(identity.session.as_deref());
    let cap = if identity.legacy {
        shared.legacy_offer
    } else {
        Offer::default()
    };
    let host = host_report(&host_of(index, identity.legacy), cap);
    let settings = identity
        .settings
        .clone()
        .unwrap_or_else(|| bootstrap_settings(&enrolled_url));
    let acked = if identity.settings.is_some() {
        settings.serial
    } else {
        0
    };
    let mode = plan
        .mode
        .as_deref()
        .map(|m| if m == "push" { Mode::Push } else { Mode::Pull });
    let mut core = Core::new(
        settings,
        acked,
        CoreConfig {
            mode,
            interval: plan.interval,
            max_hold: plan
                .interval
                .unwrap_or(Duration::from_secs(50))
                .min(Duration::from_secs(50)),
            ..CoreConfig::default()
        },
        Box::new(random_fraction),
    );
    let mut checked_in = false;
    let mut failed_last = false;
    // The connection its last push check-in kept.
    let mut kept = None;
    // Its last check-in failed (any failure, even one it retries at once).
    let mut failing = false;
    // Pull agents start at a random point of their first interval, as a fleet does; push
    // agents within the ramp (all at once without one: the herd after a server restart).
    let window = if core.push() {
        plan.ramp
    } else {
        plan.interval.unwrap_or(core.settings().interval)
    };
    let first = window
        .mul_f64(random_fraction())
        .min(plan.deadline.saturating_duration_since(Instant::now()));
    tokio::time::sleep(first).await;
    while Instant::now() < plan.deadline {
        let (server, acked_serial, wait) = match core.next(Instant::now()) {
            Action::Sleep(pause) => {
                let until = Instant::now() + pause;
                if until >= plan.deadline {
                    break;
                }
                tokio::time::sleep_until(until.into()).await;
                continue;
            }
            Action::Checkin {
                server,
                acked_serial,
                wait,
            } => (server, acked_serial, wait),
        };
        let wait = wait.min(plan.deadline.saturating_duration_since(Instant::now()));
        let report = CheckinRequest {
            acked_serial,
            host: host.clone(),
            server: server.url.clone(),
            wait_ms: wait.as_millis() as u64,
            trusted_cas: Vec::new(),
            reverted: core.reverted().cloned(),
            hello: None,
        };
        let request = checkin_request(&identity.id, &identity.key, &report);
        let held = !wait.is_zero();
        if held {
            let now = shared.stats.held_now.fetch_add(1, Ordering::Relaxed) + 1;
            shared.stats.held_peak.fetch_max(now, Ordering::Relaxed);
        }
        let started = Instant::now();
        let exchanged = shared
            .exchange(
                index,
                identity.legacy,
                &server.url,
                server.verify_certificate && verify,
                &session,
                &mut kept,
                // A push agent's: its next check-in (an acknowledgement, a hold) goes on the same
                // connection, as the agent's does.
                core.push(),
                "POST",
                CHECKIN_PATH,
                &request.headers,
                request.body.as_bytes(),
                wait + Duration::from_secs(30),
            )
            .await;
        // When the answer arrived: read to its end, before this side closed and checked it (a
        // change's fan-out is timed by it, not by when this task got round to the answer on a
        // simulator busy with thousands of agents).
        let received_ms = match &exchanged {
            Ok((_, at)) => *at,
            Err(_) => now_ms(),
        };
        let result = exchanged
            .map_err(|failure| failure.agent_error(&server.url))
            .and_then(|(exchange, _)| {
                let answer: CheckinResponse =
                    verify_signed(&identity.key, &request.nonce, &server.url, &exchange)?;
                Ok((exchange, answer))
            });
        if held {
            shared.stats.held_now.fetch_sub(1, Ordering::Relaxed);
        }
        let (exchange, answer) = match result {
            Ok((exchange, answer)) => (Some(exchange), Ok(answer)),
            Err(error) => (None, Err(error)),
        };
        match core.complete(Instant::now(), answer) {
            Event::CheckedIn { changed, .. } => {
                if failing {
                    shared.stats.recovered.fetch_add(1, Ordering::Relaxed);
                    shared
                        .stats
                        .last_recovered_ms
                        .fetch_max(received_ms.max(0) as u64, Ordering::Relaxed);
                }
                failing = false;
                failed_last = false;
                if held {
                    shared.stats.polls.fetch_add(1, Ordering::Relaxed);
                } else {
                    shared.stats.checkins.fetch_add(1, Ordering::Relaxed);
                    shared
                        .stats
                        .latencies_us
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(started.elapsed().as_micros() as u64);
                }
                let version = exchange
                    .and_then(|e| e.tls_version)
                    .unwrap_or_else(|| "plain HTTP".into());
                tally(&shared.stats.versions, version);
                // A change while running (the first answer only confirms enrollment).
                if changed && checked_in {
                    shared
                        .stats
                        .settings_received
                        .fetch_add(1, Ordering::Relaxed);
                    shared
                        .stats
                        .settings_at_ms
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(received_ms);
                }
                checked_in = true;
            }
            Event::Reverted { .. } => {
                // Back on the settings that worked: a failure of the new ones, counted so.
                shared.stats.fail("reverted");
                failed_last = false;
            }
            Event::Failed { error, pause } => {
                failing = true;
                shared.stats.fail(match &error {
                    AgentError::Transport { detail, .. } => {
                        detail.split(':').next().unwrap_or("transport")
                    }
                    other => other.class(),
                });
                failed_last = pause.is_some();
            }
        }
    }
    if let Some(kept) = kept.take() {
        kept.close().await;
    }
    identity.session = session_der(&session);
    // What it follows now, kept for the next run as a real agent keeps its settings file (not
    // the bootstrap settings of one that never got an answer).
    if checked_in || identity.settings.is_some() {
        identity.settings = Some(core.settings().clone());
    }
    (identity, failed_last)
}
