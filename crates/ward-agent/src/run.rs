//! `ward agent run`: the check-in loop, driving the [`crate::core`] state machine with
//! blocking sockets until stopped. Pull: every interval plus a random delay within the
//! randomisation window, the first at once. Push: a held check-in (long poll), renewed as soon
//! as it returns; pull again while it fails.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde_json::{json, Value};
use ward_proto::messages::{CheckinRequest, CheckinResponse, Reverted, CHECKIN_PATH};
use ward_proto::{hex, now_ms, unhex, AgentKey, KeyPair};

use crate::core::{Action, Core, CoreConfig, Event, Fallback};
use crate::enroll::write_policy;
use crate::error::AgentError;
use crate::requests::{checkin_request, host_report, verify_signed};
use crate::state::{AgentState, LastWorking};
use crate::transport::{Call, Exchange, Interrupt, Transport};
use crate::{log, random_fraction, HostFacts, Offer};

/// What `ward agent status` shows.
#[derive(Clone, Debug, Default)]
pub struct Status {
    pub id: String,
    pub server: Option<String>,
    pub channel: Option<String>,
    pub tls_version: Option<String>,
    pub serial: i64,
    pub last_checkin_ms: Option<i64>,
    pub next_checkin_ms: Option<i64>,
    /// A push check-in is held open by the server right now.
    pub held: bool,
    pub last_error: Option<String>,
    pub mode: String,
    pub tls_max: Option<String>,
    pub client_profile: Option<String>,
    /// The settings are on probation: not yet confirmed by a check-in with their servers.
    pub on_probation: bool,
    /// The last revert, reported until the server hands other settings.
    pub reverted: Option<String>,
}

fn rfc3339(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |ms| {
        Value::String(ward_tls::utc::format_rfc3339(
            UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64),
        ))
    })
}

impl Status {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "server": self.server,
            "channel": self.channel,
            "tls_version": self.tls_version,
            "tls_max": self.tls_max,
            "client_profile": self.client_profile,
            "serial": self.serial,
            "last_checkin": rfc3339(self.last_checkin_ms),
            "next_checkin": rfc3339(self.next_checkin_ms),
            "held": self.held,
            "mode": self.mode,
            "last_error": self.last_error,
            "on_probation": self.on_probation,
            "reverted": self.reverted,
            "pid": std::process::id(),
        })
    }
}

#[derive(Clone)]
pub struct RunConfig {
    pub dir: PathBuf,
    /// Overrides the offer kept in the settings file (a client profile or a version cap).
    pub offer: Offer,
    pub on_change: Option<String>,
    /// After this long on a lower priority, try the higher ones again.
    pub return_after: Duration,
}

/// Stops the run loop from another thread, or asks it to re-read its settings file, waking
/// it at once, even from a held push check-in.
#[derive(Default)]
pub struct Stopper {
    flags: Mutex<Flags>,
    wake: Condvar,
    interrupt: Mutex<Option<Arc<Interrupt>>>,
}

#[derive(Default)]
struct Flags {
    stopped: bool,
    reload: bool,
}

impl Stopper {
    fn flags(&self) -> std::sync::MutexGuard<'_, Flags> {
        self.flags.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn interrupt_exchange(&self) {
        if let Some(interrupt) = &*self.interrupt.lock().unwrap_or_else(|p| p.into_inner()) {
            interrupt.interrupt();
        }
    }

    pub fn stop(&self) {
        self.flags().stopped = true;
        self.wake.notify_all();
        self.interrupt_exchange();
    }

    /// Re-read the settings file (after `ward agent import-settings`) before the next
    /// check-in, which happens at once.
    pub fn reload(&self) {
        self.flags().reload = true;
        self.wake.notify_all();
        self.interrupt_exchange();
    }

    pub fn is_stopped(&self) -> bool {
        self.flags().stopped
    }

    fn take_reload(&self) -> bool {
        std::mem::take(&mut self.flags().reload)
    }

    fn watch(&self, interrupt: Arc<Interrupt>) {
        *self.interrupt.lock().unwrap_or_else(|p| p.into_inner()) = Some(interrupt);
    }

    /// Sleeps up to `duration`, or until stopped or asked to reload.
    fn sleep(&self, duration: Duration) {
        let guard = self.flags();
        let _ = self
            .wake
            .wait_timeout_while(guard, duration, |f| !f.stopped && !f.reload)
            .unwrap_or_else(|p| p.into_inner());
    }
}

fn run_on_change(command: &str, config: &RunConfig, serial: i64) {
    let result = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .env("WARD_STATE", &config.dir)
        .env("WARD_SERIAL", serial.to_string())
        .env("WARD_POLICY", config.dir.join("policy.json"))
        .status();
    if let Err(error) = result {
        log(format_args!("--on-change failed to start: {error}"));
    }
}

/// What the loop needs from the settings file, re-read on `reload`.
struct Loaded {
    state: AgentState,
    key: AgentKey,
    transport: Transport,
    offer: Offer,
    core: Core,
    /// The fingerprints of the CAs the transport trusts, reported at every check-in.
    trusted_cas: Vec<String>,
    /// The ClientHello of the agent's stack and its fingerprint, while the server has not
    /// been told of it (the stack changed since it last reported one).
    hello: Option<(String, String)>,
}

/// Unix milliseconds `pause` from now (saturating: signed settings may say any interval).
fn after(pause: Duration) -> i64 {
    now_ms().saturating_add(i64::try_from(pause.as_millis()).unwrap_or(i64::MAX))
}

/// The key the agent signs with: derived from its own pair and the server's agreement key.
fn agent_key(state: &AgentState) -> Result<AgentKey, AgentError> {
    let key_error =
        |e: &dyn std::fmt::Display| AgentError::state(format!("settings file key: {e}"));
    let pair = KeyPair::from_private_bytes(&unhex(&state.private_key).map_err(|e| key_error(&e))?)
        .map_err(|e| key_error(&e))?;
    let server_public = unhex(&state.server_public).map_err(|e| key_error(&e))?;
    AgentKey::for_agent(&pair, &server_public).map_err(|e| key_error(&e))
}

fn load(config: &RunConfig, stopper: &Stopper) -> Result<Loaded, AgentError> {
    let state = AgentState::load(&config.dir)?;
    let offer = config.offer.or(state.offer());
    let key = agent_key(&state)?;
    let transport = Transport::new(state.trust_pem().as_bytes(), offer)?;
    stopper.watch(transport.interrupt());
    let trusted_cas = ward_tls::pki::certificate_fingerprints(state.trust_pem().as_bytes());
    let fallback = state.last_working.as_ref().map(|last| Fallback {
        settings: last.settings.clone(),
        acked_serial: last.acked_serial,
    });
    let core = Core::new(
        state.settings.clone(),
        state.acked_serial,
        CoreConfig {
            return_after: config.return_after,
            ..CoreConfig::default()
        },
        Box::new(random_fraction),
    )
    .with_fallback(fallback, state.reverted.clone(), Instant::now());
    let hello = unreported_hello(&state, &transport);
    Ok(Loaded {
        state,
        key,
        transport,
        offer,
        core,
        trusted_cas,
        hello,
    })
}

/// The ClientHello the stack sends to the first server of its settings (hex) and its
/// fingerprint, unless that fingerprint is the one last reported.
fn unreported_hello(state: &AgentState, transport: &Transport) -> Option<(String, String)> {
    let url = &state.settings.servers().first()?.url;
    let (_, host, _) = crate::transport::split_url(url).ok()?;
    let bytes = transport.client_hello(&host).ok()?;
    let fingerprint = hex(&ward_tls::hello::parse_client_hello(&bytes)
        .ok()?
        .fingerprint());
    (state.reported_hello.as_deref() != Some(fingerprint.as_str()))
        .then(|| (hex(&bytes), fingerprint))
}

/// One signed check-in: the exchange and its checked answer.
fn checkin(
    loaded: &mut Loaded,
    url: &str,
    verify_certificate: bool,
    acked_serial: i64,
    wait: Duration,
) -> Result<(Exchange, CheckinResponse), AgentError> {
    let report = CheckinRequest {
        acked_serial,
        host: host_report(&HostFacts::local(loaded.state.name.clone()), loaded.offer),
        server: url.to_string(),
        wait_ms: wait.as_millis() as u64,
        trusted_cas: loaded.trusted_cas.clone(),
        reverted: loaded.core.reverted().cloned(),
        hello: loaded.hello.as_ref().map(|(bytes, _)| bytes.clone()),
    };
    let request = checkin_request(&loaded.state.agent, &loaded.key, &report);
    let call = Call {
        method: "POST",
        path: CHECKIN_PATH,
        headers: &request.headers,
        body: request.body.as_bytes(),
        // A push agent's: its next check-in (an acknowledgement, a hold) goes on the same
        // connection.
        keep_alive: loaded.core.push(),
    };
    let timeout = wait + Duration::from_secs(30);
    let exchange = loaded
        .transport
        .exchange(url, verify_certificate, &call, timeout)?;
    let answer = verify_signed(&loaded.key, &request.nonce, url, &exchange)?;
    Ok((exchange, answer))
}

/// The check-in loop, until `stopper` says stop.
pub fn run(
    config: &RunConfig,
    stopper: &Stopper,
    status: &Mutex<Status>,
) -> Result<(), AgentError> {
    let mut loaded = load(config, stopper)?;
    let set_status =
        |f: &mut dyn FnMut(&mut Status)| f(&mut status.lock().unwrap_or_else(|p| p.into_inner()));
    let identity = |loaded: &Loaded, s: &mut Status| {
        s.id = loaded.state.agent.clone();
        s.serial = loaded.state.acked_serial;
        s.mode = loaded.core.settings().mode.name().to_string();
        s.tls_max = loaded.offer.max().map(|v| v.name().to_string());
        s.client_profile = loaded.offer.profile.map(|p| p.name.to_string());
    };
    set_status(&mut |s| identity(&loaded, s));
    loop {
        // Reset before the flags are read: a stop or reload that comes after this line
        // interrupts the next exchange; one that came before is seen below.
        loaded.transport.interrupt().reset();
        if stopper.is_stopped() {
            break;
        }
        if stopper.take_reload() {
            match load(config, stopper) {
                Ok(fresh) => {
                    log(format_args!(
                        "settings file re-read: agent {}, group {}",
                        fresh.state.agent, fresh.state.settings.group
                    ));
                    loaded = fresh;
                    set_status(&mut |s| identity(&loaded, s));
                }
                Err(error) => log(format_args!("settings file not re-read: {error}")),
            }
        }
        match loaded.core.next(Instant::now()) {
            Action::Sleep(pause) => {
                set_status(&mut |s| s.next_checkin_ms = Some(after(pause)));
                stopper.sleep(pause);
            }
            Action::Checkin {
                server,
                acked_serial,
                wait,
            } => {
                set_status(&mut |s| s.held = !wait.is_zero());
                let result = checkin(
                    &mut loaded,
                    &server.url,
                    server.verify_certificate,
                    acked_serial,
                    wait,
                );
                if stopper.is_stopped() {
                    break;
                }
                if stopper.flags().reload {
                    // Interrupted to re-read the settings file: a new core starts over.
                    continue;
                }
                let (exchange, answer) = match result {
                    Ok((exchange, answer)) => (Some(exchange), Ok(answer)),
                    Err(error) => (None, Err(error)),
                };
                match loaded.core.complete(Instant::now(), answer) {
                    Event::CheckedIn {
                        server,
                        changed,
                        pause,
                    } => {
                        if changed {
                            adopt(config, stopper, &mut loaded, &server.url)?;
                        } else {
                            confirm(config, &mut loaded)?;
                        }
                        let exchange = exchange.expect("an answer came with its exchange");
                        set_status(&mut |s| {
                            s.server = Some(server.url.clone());
                            s.channel = Some(exchange.channel.to_string());
                            s.tls_version = exchange.tls_version.clone();
                            s.serial = loaded.state.acked_serial;
                            s.last_checkin_ms = Some(now_ms());
                            s.next_checkin_ms = Some(after(pause));
                            s.held = false;
                            s.last_error = None;
                            s.mode = loaded.core.settings().mode.name().to_string();
                            s.on_probation = loaded.state.last_working.is_some();
                            s.reverted = loaded.state.reverted.as_ref().map(Reverted::summary);
                        });
                    }
                    Event::Failed { error, pause } => {
                        log(format_args!("{error}"));
                        set_status(&mut |s| {
                            s.held = false;
                            s.last_error = Some(error.to_string());
                            if let Some(pause) = pause {
                                s.next_checkin_ms = Some(after(pause));
                            }
                        });
                    }
                    Event::Reverted { error, report } => {
                        log(format_args!("{error}"));
                        revert(config, stopper, &mut loaded, report)?;
                        set_status(&mut |s| {
                            identity(&loaded, s);
                            s.held = false;
                            s.last_error = Some(error.to_string());
                            s.on_probation = false;
                            s.reverted = loaded.state.reverted.as_ref().map(Reverted::summary);
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

/// New settings from a check-in: saved with the last settings that worked (while the new
/// ones are on probation), their policy written, the key or CAs they carry taken.
fn adopt(
    config: &RunConfig,
    stopper: &Stopper,
    loaded: &mut Loaded,
    server: &str,
) -> Result<(), AgentError> {
    let trust_before = loaded.state.trust_pem().to_string();
    let previous_key = loaded.state.server_public.clone();
    loaded.state.settings = loaded.core.settings().clone();
    loaded.state.acked_serial = loaded.core.acked_serial();
    loaded.state.last_working = loaded.core.fallback().map(|fallback| LastWorking {
        settings: fallback.settings.clone(),
        acked_serial: fallback.acked_serial,
        server_public: previous_key,
    });
    loaded.state.reverted = loaded.core.reverted().cloned();
    if loaded.hello.is_some() {
        // The check-in that brought these settings carried the stack's hello.
        loaded.state.reported_hello = loaded.hello.take().map(|(_, fingerprint)| fingerprint);
    }
    // A key rotation: saved with the settings that carry it, so a crash never leaves the one
    // without the other.
    let rekeyed = loaded.state.adopt_server_key();
    loaded.state.save(&config.dir)?;
    if rekeyed {
        loaded.key = agent_key(&loaded.state)?;
        log(format_args!(
            "now signing with the server's new agreement key {}",
            &loaded.state.server_public[..16]
        ));
    }
    write_policy(&config.dir, &loaded.state)?;
    log(format_args!(
        "settings serial {} from {}: group {}, {} mode{}",
        loaded.state.acked_serial,
        server,
        loaded.state.settings.group,
        loaded.state.settings.mode.name(),
        if loaded.state.last_working.is_some() {
            " (on probation until a check-in with their servers completes)"
        } else {
            ""
        }
    ));
    if let Some(command) = &config.on_change {
        run_on_change(command, config, loaded.state.acked_serial);
    }
    if loaded.state.trust_pem() != trust_before {
        // A CA rotation: the next connection verifies against the CAs the new settings
        // name, and says so at its check-in.
        retrust(stopper, loaded);
    }
    Ok(())
}

/// A check-in without new settings: the settings it was made with work. Probation ends, and
/// a stack hello the check-in carried is known to the server.
fn confirm(config: &RunConfig, loaded: &mut Loaded) -> Result<(), AgentError> {
    let mut changed = false;
    if loaded.state.last_working.is_some() && loaded.core.fallback().is_none() {
        loaded.state.last_working = None;
        log(format_args!(
            "settings serial {} confirmed: a check-in with their servers completed",
            loaded.state.acked_serial
        ));
        changed = true;
    }
    if let Some((_, fingerprint)) = loaded.hello.take() {
        loaded.state.reported_hello = Some(fingerprint);
        changed = true;
    }
    if changed {
        loaded.state.save(&config.dir)?;
    }
    Ok(())
}

/// The settings on probation cut the agent off: back to the last that worked (their key and
/// CAs too), saved with the revert to report.
fn revert(
    config: &RunConfig,
    stopper: &Stopper,
    loaded: &mut Loaded,
    report: Reverted,
) -> Result<(), AgentError> {
    let trust_before = loaded.state.trust_pem().to_string();
    let last = loaded.state.last_working.take();
    loaded.state.settings = loaded.core.settings().clone();
    loaded.state.acked_serial = loaded.core.acked_serial();
    let rekeyed = match last {
        Some(last) if last.server_public != loaded.state.server_public => {
            loaded.state.server_public = last.server_public;
            true
        }
        _ => false,
    };
    log(format_args!(
        "reverted to settings serial {} (the last that worked): {}",
        loaded.state.acked_serial,
        report.summary()
    ));
    loaded.state.reverted = Some(report);
    loaded.state.save(&config.dir)?;
    if rekeyed {
        loaded.key = agent_key(&loaded.state)?;
    }
    write_policy(&config.dir, &loaded.state)?;
    if let Some(command) = &config.on_change {
        run_on_change(command, config, loaded.state.acked_serial);
    }
    if loaded.state.trust_pem() != trust_before {
        retrust(stopper, loaded);
    }
    Ok(())
}

/// A transport that trusts the CAs the settings name now.
fn retrust(stopper: &Stopper, loaded: &mut Loaded) {
    match Transport::new(loaded.state.trust_pem().as_bytes(), loaded.offer) {
        Ok(transport) => {
            stopper.watch(transport.interrupt());
            loaded.transport = transport;
            loaded.trusted_cas =
                ward_tls::pki::certificate_fingerprints(loaded.state.trust_pem().as_bytes());
            log(format_args!(
                "now trusting {} CA(s) from the settings",
                loaded.trusted_cas.len()
            ));
        }
        Err(error) => log(format_args!(
            "the settings' CAs are not usable, keeping the old ones: {error}"
        )),
    }
}
