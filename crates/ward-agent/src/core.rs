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

use std::time::{Duration, Instant};

use ward_proto::messages::{CheckinResponse, Mode, Settings};

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
        }
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
                let changed = match answer.settings {
                    Some(settings) => {
                        self.acked_serial = settings.serial;
                        self.settings = settings;
                        true
                    }
                    None => false,
                };
                let pause = if self.push() {
                    Duration::ZERO
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
                if round.next < round.servers.len() {
                    self.round = Some(round);
                    return Event::Failed { error, pause: None };
                }
                let pause = self.backoff(round.asked_to_wait);
                self.pause = Some(pause);
                Event::Failed {
                    error,
                    pause: Some(pause),
                }
            }
        }
    }
}

/// The longest Retry-After the agent obeys.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

#[cfg(test)]
mod tests;
