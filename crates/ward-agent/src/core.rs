//! The agent's check-in state machine, sans I/O: which server to ask next, how long to hold
//! a push check-in, what to do with an answer or a failure, and how long to pause. `ward
//! agent run` drives it with blocking sockets, `ward simulate` with tokio tasks, and the
//! tests with a table of answers; all three run exactly this logic.
//!
//! Each round tries the servers in [`select::order`] (priority 1 in random order, then 2,
//! ...; sticky to the last good server, back to higher priorities after `return_after`).
//! The first server that answers ends the round; when all fail, the agent backs off with
//! jitter, never sooner than a busy server's Retry-After. A push agent holds its check-in
//! open only once its current serial is acknowledged, so a change is confirmed at once.
//!
//! **Commit confirmed.** New settings are on probation until a verified check-in completes
//! with a server they name; the settings that brought them (the last that worked) are kept.
//! When every server of the new settings fails on the path itself (a transport failure or an
//! answer that cannot be verified) for [`REVERT_ROUNDS`] rounds in a row and for the
//! probation window ([`probation_window`]: 20 s for push, three intervals for pull, never more
//! than an hour), the agent goes back to the last settings that worked and reports the serial
//! it left and what failed with each server ([`Reverted`]). A signed refusal or a busy
//! server is an answer, not a broken path: such a round does not count. The server stops
//! handing that serial; the agent refuses it too, should an older server hand it again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ward_proto::messages::{CheckinResponse, Mode, PathFailure, Reverted, Settings};

use crate::error::AgentError;
use crate::select::{self, Candidate};

/// How the core runs. The simulator may override the mode and the interval of the settings.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// After this long on a lower priority, try the higher ones again.
    pub return_after: Duration,
    /// The longest a push check-in asks the server to hold it.
    pub max_hold: Duration,
    /// Pull or push whatever the settings say.
    pub mode: Option<Mode>,
    /// This interval (and no randomisation) whatever the settings say.
    pub interval: Option<Duration>,
}

impl Default for CoreConfig {
    fn default() -> CoreConfig {
        CoreConfig {
            return_after: Duration::from_secs(3600),
            max_hold: Duration::from_secs(50),
            mode: None,
            interval: None,
        }
    }
}

/// What the driver should do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Check in with `server`, acknowledging `acked_serial`, held up to `wait` (push).
    Checkin {
        server: Candidate,
        acked_serial: i64,
        wait: Duration,
    },
    /// Nothing to do for this long.
    Sleep(Duration),
}

/// What an answer or a failure meant.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The server answered. With `changed`, the core now follows new settings (at
    /// [`Core::settings`]): the driver saves them and applies the policy.
    CheckedIn {
        server: Candidate,
        changed: bool,
        pause: Duration,
    },
    /// That server failed. `pause` is set when it was the round's last: every server failed.
    Failed {
        error: AgentError,
        pause: Option<Duration>,
    },
    /// Every server of the settings on probation kept failing: the core follows the last
    /// settings that worked again (at [`Core::settings`], serial [`Core::acked_serial`]) and
    /// reports `report` at its next check-ins, which come at once.
    Reverted { error: AgentError, report: Reverted },
}

/// The last settings that worked: those of the last completed, verified check-in before the
/// settings on probation were taken.
#[derive(Clone, Debug, PartialEq)]
pub struct Fallback {
    pub settings: Settings,
    pub acked_serial: i64,
}

/// Rounds of failures (every server of the settings on probation failed on the path) before
/// the agent reverts: one is a blip, three in a row over the window is a path that is gone.
pub const REVERT_ROUNDS: u32 = 3;

/// How long settings on probation may keep failing before the agent reverts: 20 s for push
/// (a push agent is told of a change at once and checks in at once: seconds tell), three
/// intervals for pull (a server restart or a short outage is not a reason to leave), never
/// more than an hour.
pub fn probation_window(mode: Mode, interval: Duration) -> Duration {
    match mode {
        Mode::Push => Duration::from_secs(20),
        Mode::Pull => interval.saturating_mul(3).min(Duration::from_secs(3600)),
    }
}

struct Probation {
    fallback: Fallback,
    since: Instant,
    failed_rounds: u32,
    /// The last path failure of each server tried, by URL.
    failures: BTreeMap<String, String>,
    /// The round under way met an answer (a refusal, a busy server): it does not count.
    answered: bool,
}

struct Round {
    servers: Vec<Candidate>,
    next: usize,
    wait: Duration,
    prefer_higher: bool,
    asked_to_wait: Duration,
}

/// One agent's check-in state.
pub struct Core {
    config: CoreConfig,
    settings: Settings,
    acked_serial: i64,
    /// The serial the server last heard acknowledged.
    reported: Option<i64>,
    sticky: Option<String>,
    sticky_since: Option<Instant>,
    failures: u32,
    round: Option<Round>,
    pause: Option<Duration>,
    last_error: Option<AgentError>,
    random: Box<dyn FnMut() -> f64 + Send>,
    probation: Option<Probation>,
    /// The revert to report at each check-in, until the server hands other settings.
    reverted: Option<Reverted>,
}

impl Core {
    /// `random` gives uniform numbers in [0, 1): OpenSSL's generator in the agent, a fixed
    /// sequence in tests.
    pub fn new(
        settings: Settings,
        acked_serial: i64,
        config: CoreConfig,
        random: Box<dyn FnMut() -> f64 + Send>,
    ) -> Core {
        Core {
            config,
            settings,
            acked_serial,
            reported: None,
            sticky: None,
            sticky_since: None,
            failures: 0,
            round: None,
            pause: None,
            last_error: None,
            random,
            probation: None,
            reverted: None,
        }
    }

    /// Puts the settings on probation, with the last that worked (from the settings file: a
    /// restart keeps the probation, its window starting again), and the revert still to
    /// report.
    pub fn with_fallback(
        mut self,
        fallback: Option<Fallback>,
        reverted: Option<Reverted>,
        now: Instant,
    ) -> Core {
        self.probation = fallback.map(|fallback| Probation {
            fallback,
            since: now,
            failed_rounds: 0,
            failures: BTreeMap::new(),
            answered: false,
        });
        self.reverted = reverted;
        self
    }

    /// The last settings that worked, while the current ones are on probation.
    pub fn fallback(&self) -> Option<&Fallback> {
        self.probation.as_ref().map(|p| &p.fallback)
    }

    /// The revert the next check-in reports.
    pub fn reverted(&self) -> Option<&Reverted> {
        self.reverted.as_ref()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn acked_serial(&self) -> i64 {
        self.acked_serial
    }

    /// The failure of the last attempt, until a check-in succeeds.
    pub fn last_error(&self) -> Option<&AgentError> {
        self.last_error.as_ref()
    }

    pub fn push(&self) -> bool {
        self.config.mode.unwrap_or(self.settings.mode) == Mode::Push
    }

    fn interval(&self) -> Duration {
        self.config.interval.unwrap_or(self.settings.interval)
    }

    fn randomize(&self) -> Duration {
        match self.config.interval {
            Some(_) => Duration::ZERO,
            None => self.settings.randomize,
        }
    }

    fn candidates(&self) -> Vec<Candidate> {
        self.settings
            .servers()
            .iter()
            .map(|s| Candidate {
                priority: s.priority,
                url: s.url.clone(),
                verify_certificate: s.verify_certificate,
            })
            .collect()
    }

    fn shuffle(&mut self, list: &mut [Candidate]) {
        for i in (1..list.len()).rev() {
            let j = ((self.random)() * (i + 1) as f64) as usize;
            list.swap(i, j.min(i));
        }
    }

    /// The next thing to do at `now`.
    pub fn next(&mut self, now: Instant) -> Action {
        if let Some(pause) = self.pause.take() {
            if !pause.is_zero() {
                return Action::Sleep(pause);
            }
        }
        if self.round.is_none() {
            let wait = if self.push() && self.reported == Some(self.acked_serial) {
                self.config.max_hold
            } else {
                Duration::ZERO
            };
            let prefer_higher = self.sticky_since.is_some_and(|since| {
                now.saturating_duration_since(since) >= self.config.return_after
            });
            // A random permutation of the whole list: `order` keeps each priority level's
            // servers in this order, so each level is shuffled.
            let mut candidates = self.candidates();
            self.shuffle(&mut candidates);
            let servers = select::order(
                &candidates,
                &|_: &mut [Candidate]| {},
                self.sticky.as_deref(),
                prefer_higher,
            );
            if servers.is_empty() {
                self.last_error = Some(AgentError::State("the server list is empty".into()));
                let pause = self.backoff(Duration::ZERO);
                return Action::Sleep(pause);
            }
            self.round = Some(Round {
                servers,
                next: 0,
                wait,
                prefer_higher,
                asked_to_wait: Duration::ZERO,
            });
        }
        let round = self.round.as_mut().expect("a round is under way");
        let server = round.servers[round.next].clone();
        round.next += 1;
        Action::Checkin {
            server,
            acked_serial: self.acked_serial,
            wait: round.wait,
        }
    }

    /// After every server failed: doubling from 1 s up to the interval, with jitter, never
    /// sooner than a busy server asked.
    fn backoff(&mut self, asked_to_wait: Duration) -> Duration {
        self.failures += 1;
        let cap = self.interval().max(Duration::from_secs(1));
        let jitter = (self.random)();
        select::backoff(self.failures - 1, Duration::from_secs(1), cap, jitter).max(asked_to_wait)
    }

    /// The outcome of the check-in [`Core::next`] asked for, completed at `now`.
    pub fn complete(&mut self, now: Instant, result: Result<CheckinResponse, AgentError>) -> Event {
        let Some(mut round) = self.round.take() else {
            // An answer nobody asked for: ignore it, as a new round will ask again.
            return Event::Failed {
                error: AgentError::State("no check-in was under way".into()),
                pause: None,
            };
        };
        let server = round.servers[round.next - 1].clone();
        match result {
            Ok(answer) => {
                self.failures = 0;
                self.last_error = None;
                self.reported = Some(self.acked_serial);
                if self.sticky.as_deref() != Some(server.url.as_str()) {
                    self.sticky = Some(server.url.clone());
                    self.sticky_since = Some(now);
                } else if round.prefer_higher || self.sticky_since.is_none() {
                    self.sticky_since = Some(now);
                }
                // A verified check-in with these settings: they work.
                self.probation = None;
                let refused_again = self
                    .reverted
                    .as_ref()
                    .is_some_and(|r| answer.settings.as_ref().map(|s| s.serial) == Some(r.serial));
                let changed = match answer.settings {
                    // The serial this agent left: not taken again (a server that does not
                    // know reverts hands it again).
                    Some(_) if refused_again => false,
                    // The same path (servers, CAs, key): nothing to put on probation.
                    Some(settings) if same_path(&settings, &self.settings) => {
                        self.settings = settings;
                        self.acked_serial = self.settings.serial;
                        self.reverted = None;
                        true
                    }
                    Some(settings) => {
                        self.probation = Some(Probation {
                            fallback: Fallback {
                                settings: std::mem::replace(&mut self.settings, settings),
                                acked_serial: self.acked_serial,
                            },
                            since: now,
                            failed_rounds: 0,
                            failures: BTreeMap::new(),
                            answered: false,
                        });
                        self.acked_serial = self.settings.serial;
                        self.reverted = None;
                        true
                    }
                    None => false,
                };
                let pause = if self.push() {
                    if changed && !round.wait.is_zero() {
                        // A change woke every held agent of the group at once: their
                        // acknowledgements spread over the group's randomize window (at
                        // most an interval), or 15,000 agents behind one NAT come back in
                        // the same second, a herd the server sheds.
                        self.settings
                            .randomize
                            .min(self.interval())
                            .mul_f64((self.random)())
                    } else {
                        Duration::ZERO
                    }
                } else {
                    let spread = self.randomize().mul_f64((self.random)());
                    // Signed settings may say any interval the codec reads (up to
                    // u64::MAX seconds): never overflow.
                    self.interval().saturating_add(spread)
                };
                self.pause = Some(pause);
                Event::CheckedIn {
                    server,
                    changed,
                    pause,
                }
            }
            Err(error) => {
                if let Some(asked) = error.retry_after() {
                    round.asked_to_wait = round.asked_to_wait.max(asked.min(MAX_RETRY_AFTER));
                }
                self.last_error = Some(error.clone());
                if let Some(probation) = &mut self.probation {
                    if error.is_path_failure() {
                        probation
                            .failures
                            .insert(server.url.clone(), error.detail().to_string());
                    } else {
                        probation.answered = true;
                    }
                }
                if round.next < round.servers.len() {
                    self.round = Some(round);
                    return Event::Failed { error, pause: None };
                }
                if let Some(report) = self.end_failed_round(now) {
                    return Event::Reverted { error, report };
                }
                let mut pause = self.backoff(round.asked_to_wait);
                if let Some(probation) = &self.probation {
                    // The window's end is a round: never a backoff past it.
                    let window = probation_window(self.mode(), self.interval());
                    let left = (probation.since + window).saturating_duration_since(now);
                    if round.asked_to_wait.is_zero() {
                        pause = pause.min(left.max(Duration::from_secs(1)));
                    }
                }
                self.pause = Some(pause);
                Event::Failed {
                    error,
                    pause: Some(pause),
                }
            }
        }
    }
}

/// Whether two settings reach the servers the same way: the same servers (URL and whether
/// the certificate is checked), the same CAs, the same agreement key. Settings that differ
/// only in their policy, interval or mode cannot cut an agent off that the others did not.
pub fn same_path(a: &Settings, b: &Settings) -> bool {
    let servers = |s: &Settings| -> Vec<(String, bool)> {
        s.servers()
            .iter()
            .map(|e| (e.url.clone(), e.verify_certificate))
            .collect()
    };
    servers(a) == servers(b) && a.trust_pem == b.trust_pem && a.server_key == b.server_key
}

impl Core {
    fn mode(&self) -> Mode {
        self.config.mode.unwrap_or(self.settings.mode)
    }

    /// A round in which every server failed, on probation: counts it when every failure was
    /// the path's, and reverts once the rounds and the window are both past. The report.
    fn end_failed_round(&mut self, now: Instant) -> Option<Reverted> {
        let window = probation_window(self.mode(), self.interval());
        let probation = self.probation.as_mut()?;
        if std::mem::take(&mut probation.answered) {
            probation.failed_rounds = 0;
            return None;
        }
        probation.failed_rounds += 1;
        let due = now.saturating_duration_since(probation.since) >= window;
        if probation.failed_rounds < REVERT_ROUNDS || !due {
            return None;
        }
        let probation = self.probation.take().expect("on probation");
        let report = Reverted {
            serial: self.settings.serial,
            failures: probation
                .failures
                .into_iter()
                .map(|(server, error)| PathFailure { server, error })
                .collect(),
        };
        self.settings = probation.fallback.settings;
        self.acked_serial = probation.fallback.acked_serial;
        self.reverted = Some(report.clone());
        // The last settings that worked, at once, from their first server.
        self.reported = None;
        self.sticky = None;
        self.sticky_since = None;
        self.failures = 0;
        self.pause = Some(Duration::ZERO);
        Some(report)
    }
}

/// The longest Retry-After the agent obeys.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

#[cfg(test)]
mod tests;
