//! What an operator watches of the server at work, beside the TLS telemetry counters: latency
//! histograms (check-ins by listener and channel, handshakes by result, the group commit's
//! batch size and commit time, the admin API by route) and counters (check-ins by result,
//! wake-ups delivered to held check-ins, signed 503s shed, connections refused by each cap),
//! in the Prometheus text format. Observing is a few atomic additions; nothing allocates on
//! the check-in path but the first time an admin route is seen.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::config::Role;

/// Latency buckets, in seconds: from half a millisecond (a resumed check-in) to ten seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Batch-size buckets of the group commit (at most 1024 check-ins a batch).
const BATCH_BUCKETS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// Batch-size buckets of the touches' writes (a second of them; written early past 8192).
const TOUCH_BUCKETS: [f64; 9] = [
    1.0, 8.0, 64.0, 256.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0,
];

/// A histogram with fixed buckets: a count per bucket (not cumulative; summed when
/// rendered), the sum of the values in micro-units, and the count.
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn latency() -> Histogram {
        Histogram::new(&LATENCY_BUCKETS)
    }

    pub fn observe(&self, value: f64) {
        let index = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((value.max(0.0) * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn observe_duration(&self, duration: Duration) {
        self.observe(duration.as_secs_f64());
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Its samples: `name_bucket{labels,le=...}` cumulative, `name_sum`, `name_count`.
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let separator = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (index, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let le = match self.bounds.get(index) {
                Some(bound) => format!("{bound}"),
                None => "+Inf".to_string(),
            };
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{separator}le=\"{le}\"}} {cumulative}"
            );
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {}", self.count());
    }
}

/// How a check-in ended, for `ward_agent_checkins_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckinResult {
    /// Answered (new settings or none).
    Ok,
    /// Refused: unsigned, forged, replayed, unknown, malformed.
    Refused,
    /// A signed 503: the store was busy; the agent waits as told.
    Busy,
    /// The server failed.
    Error,
}

impl CheckinResult {
    const ALL: [CheckinResult; 4] = [
        CheckinResult::Ok,
        CheckinResult::Refused,
        CheckinResult::Busy,
        CheckinResult::Error,
    ];

    /// By the answer's status.
    pub fn of_status(status: u16) -> CheckinResult {
        match status {
            200..=299 => CheckinResult::Ok,
            503 => CheckinResult::Busy,
            500..=599 => CheckinResult::Error,
            _ => CheckinResult::Refused,
        }
    }

    fn name(self) -> &'static str {
        match self {
            CheckinResult::Ok => "ok",
            CheckinResult::Refused => "refused",
            CheckinResult::Busy => "busy",
            CheckinResult::Error => "error",
        }
    }
}

/// How a handshake ended, for the handshake latency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeResult {
    Full,
    Resumed,
    Failed,
}

impl HandshakeResult {
    const ALL: [HandshakeResult; 3] = [
        HandshakeResult::Full,
        HandshakeResult::Resumed,
        HandshakeResult::Failed,
    ];

    fn name(self) -> &'static str {
        match self {
            HandshakeResult::Full => "full",
            HandshakeResult::Resumed => "resumed",
            HandshakeResult::Failed => "failed",
        }
    }
}

/// Which cap refused a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    /// The listener's own cap on open connections.
    Listener,
    /// Its address's connections not yet proven to be agents.
    Address,
}

/// The two TLS listeners, then clients-http.
fn role_index(role: Role) -> usize {
    match role {
        Role::Console => 0,
        Role::Clients => 1,
        Role::ClientsHttp => 2,
    }
}

/// The operator's histograms and counters.
pub struct Operations {
    /// Per agent listener (clients, clients-http): the server's time to record a check-in
    /// (from its request to the durable write; a push check-in's hold is not counted).
    checkin_latency: [Histogram; 2],
    checkins: [[AtomicU64; 4]; 2],
    /// Per TLS listener (console, clients) and result.
    handshake_latency: [[Histogram; 3]; 2],
    commit_batch: Histogram,
    commit_seconds: Histogram,
    /// Check-ins that changed nothing but when they came, answered at once.
    touches: AtomicU64,
    /// The writes of those, each of many.
    touch_batch: Histogram,
    touch_seconds: Histogram,
    /// By admin API route (method and path template).
    admin_latency: Mutex<BTreeMap<(&'static str, &'static str), Histogram>>,
    /// Held push check-ins that returned with new settings.
    wakeups: AtomicU64,
    /// For each of them, the time from the change's commit to its answer.
    wakeup_latency: Histogram,
    /// Per listener and cap.
    refused: [[AtomicU64; 2]; 3],
    /// Per listener: refused connections closed at once, unanswered.
    unanswered: [AtomicU64; 3],
    /// Kept TLS connections whose records left OpenSSL (0), and those OpenSSL kept (1).
    handovers: [AtomicU64; 2],
}

impl Default for Operations {
    fn default() -> Operations {
        Operations {
            checkin_latency: [Histogram::latency(), Histogram::latency()],
            checkins: Default::default(),
            handshake_latency: [
                [
                    Histogram::latency(),
                    Histogram::latency(),
                    Histogram::latency(),
                ],
                [
                    Histogram::latency(),
                    Histogram::latency(),
                    Histogram::latency(),
                ],
            ],
            commit_batch: Histogram::new(&BATCH_BUCKETS),
            commit_seconds: Histogram::latency(),
            touches: AtomicU64::new(0),
            touch_batch: Histogram::new(&TOUCH_BUCKETS),
            touch_seconds: Histogram::latency(),
            admin_latency: Mutex::new(BTreeMap::new()),
            wakeups: AtomicU64::new(0),
            wakeup_latency: Histogram::latency(),
            refused: Default::default(),
            unanswered: Default::default(),
            handovers: Default::default(),
        }
    }
}

/// The agent listeners' index (clients 0, clients-http 1); `None` for the console.
fn agent_index(role: Role) -> Option<usize> {
    match role {
        Role::Clients => Some(0),
        Role::ClientsHttp => Some(1),
        Role::Console => None,
    }
}

impl Operations {
    pub fn checkin_recorded(&self, role: Role, took: Duration) {
        if let Some(index) = agent_index(role) {
            self.checkin_latency[index].observe_duration(took);
        }
    }

    pub fn checkin_answered(&self, role: Role, result: CheckinResult) {
        if let Some(index) = agent_index(role) {
            let position = CheckinResult::ALL
                .iter()
                .position(|r| *r == result)
                .unwrap_or(0);
            self.checkins[index][position].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn handshake(&self, role: Role, result: HandshakeResult, took: Duration) {
        let index = match role {
            Role::Console => 0,
            Role::Clients => 1,
            Role::ClientsHttp => return,
        };
        let position = HandshakeResult::ALL
            .iter()
            .position(|r| *r == result)
            .unwrap_or(0);
        self.handshake_latency[index][position].observe_duration(took);
    }

    pub fn committed(&self, batch: usize, took: Duration) {
        self.commit_batch.observe(batch as f64);
        self.commit_seconds.observe_duration(took);
    }

    pub fn touched(&self) {
        self.touches.fetch_add(1, Ordering::Relaxed);
    }

    pub fn touches_written(&self, batch: usize, took: Duration) {
        self.touch_batch.observe(batch as f64);
        self.touch_seconds.observe_duration(took);
    }

    pub fn admin_request(&self, method: &'static str, path: &'static str, took: Duration) {
        let mut routes = self.admin_latency.lock().unwrap_or_else(|p| p.into_inner());
        routes
            .entry((method, path))
            .or_insert_with(Histogram::latency)
            .observe_duration(took);
    }

    /// A held check-in answered with new settings, `since_change` after the change that
    /// woke it was committed (`None`: it found them without a wake, as after a lag).
    pub fn woken(&self, since_change: Option<Duration>) {
        self.wakeups.fetch_add(1, Ordering::Relaxed);
        if let Some(took) = since_change {
            self.wakeup_latency.observe_duration(took);
        }
    }

    pub fn refused(&self, role: Role, cap: Cap) {
        let position = match cap {
            Cap::Listener => 0,
            Cap::Address => 1,
        };
        self.refused[role_index(role)][position].fetch_add(1, Ordering::Relaxed);
    }

    /// A connection refused at a cap and closed at once, beyond the refusal budget or the
    /// refusals in flight.
    pub fn unanswered(&self, role: Role) {
        self.unanswered[role_index(role)].fetch_add(1, Ordering::Relaxed);
    }

    /// A kept TLS connection's records left OpenSSL (`true`), or OpenSSL kept them.
    pub fn handover(&self, handed_over: bool) {
        self.handovers[usize::from(!handed_over)].fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text of all of them.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let agent_listeners = [("clients", "https"), ("clients-http", "http")];
        out.push_str(
            "# HELP ward_agent_checkin_seconds The server's time to record a check-in, from its request to the durable write (a push check-in's hold not counted).\n\
             # TYPE ward_agent_checkin_seconds histogram\n",
        );
        for (index, (listener, channel)) in agent_listeners.iter().enumerate() {
            self.checkin_latency[index].render(
                &mut out,
                "ward_agent_checkin_seconds",
                &format!("listener=\"{listener}\",channel=\"{channel}\""),
            );
        }
        out.push_str(
            "# HELP ward_agent_checkins_total Check-ins answered, by listener and result (busy: a signed 503 shed while the store was busy).\n\
             # TYPE ward_agent_checkins_total counter\n",
        );
        for (index, (listener, _)) in agent_listeners.iter().enumerate() {
            for (position, result) in CheckinResult::ALL.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "ward_agent_checkins_total{{listener=\"{listener}\",result=\"{}\"}} {}",
                    result.name(),
                    get(&self.checkins[index][position])
                );
            }
        }
        out.push_str(
            "# HELP ward_tls_handshake_seconds Time from the first byte of a connection to the end of its TLS handshake, by listener and result.\n\
             # TYPE ward_tls_handshake_seconds histogram\n",
        );
        for (index, listener) in ["console", "clients"].iter().enumerate() {
            for (position, result) in HandshakeResult::ALL.iter().enumerate() {
                self.handshake_latency[index][position].render(
                    &mut out,
                    "ward_tls_handshake_seconds",
                    &format!("listener=\"{listener}\",result=\"{}\"", result.name()),
                );
            }
        }
        out.push_str(
            "# HELP ward_checkin_commit_batch_size Check-ins written by one group commit.\n\
             # TYPE ward_checkin_commit_batch_size histogram\n",
        );
        self.commit_batch
            .render(&mut out, "ward_checkin_commit_batch_size", "");
        out.push_str(
            "# HELP ward_checkin_commit_seconds Time of one group commit, durable.\n\
             # TYPE ward_checkin_commit_seconds histogram\n",
        );
        self.commit_seconds
            .render(&mut out, "ward_checkin_commit_seconds", "");
        let _ = writeln!(
            out,
            "# HELP ward_checkin_touches_total Check-ins that changed nothing but when they came: answered at once, their times written in batches.\n\
             # TYPE ward_checkin_touches_total counter\n\
             ward_checkin_touches_total {}",
            get(&self.touches)
        );
        out.push_str(
            "# HELP ward_checkin_touch_batch_size Touches written by one transaction.\n\
             # TYPE ward_checkin_touch_batch_size histogram\n",
        );
        self.touch_batch
            .render(&mut out, "ward_checkin_touch_batch_size", "");
        out.push_str(
            "# HELP ward_checkin_touch_write_seconds Time of one write of touches, durable.\n\
             # TYPE ward_checkin_touch_write_seconds histogram\n",
        );
        self.touch_seconds
            .render(&mut out, "ward_checkin_touch_write_seconds", "");
        out.push_str(
            "# HELP ward_admin_request_seconds Admin API requests, by route (the operation).\n\
             # TYPE ward_admin_request_seconds histogram\n",
        );
        for ((method, path), histogram) in self
            .admin_latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            histogram.render(
                &mut out,
                "ward_admin_request_seconds",
                &format!("method=\"{method}\",route=\"{path}\""),
            );
        }
        let _ = writeln!(
            out,
            "# HELP ward_tls_handovers_total Kept agent connections whose TLS records left OpenSSL for ward's record layer (handed_over), or stayed with OpenSSL (kept: a suite or state the hand-over does not take).\n\
             # TYPE ward_tls_handovers_total counter\n\
             ward_tls_handovers_total{{result=\"handed_over\"}} {}\n\
             ward_tls_handovers_total{{result=\"kept\"}} {}",
            get(&self.handovers[0]),
            get(&self.handovers[1])
        );
        let _ = writeln!(
            out,
            "# HELP ward_push_wakeups_total Held push check-ins that returned with new settings.\n\
             # TYPE ward_push_wakeups_total counter\n\
             ward_push_wakeups_total {}",
            get(&self.wakeups)
        );
        out.push_str(
            "# HELP ward_push_wakeup_seconds Time from a change's commit to the answer of each held push check-in it woke: the fan-out of a change.\n\
             # TYPE ward_push_wakeup_seconds histogram\n",
        );
        self.wakeup_latency
            .render(&mut out, "ward_push_wakeup_seconds", "");
        out.push_str(
            "# HELP ward_connections_capped_total Connections refused before the handshake, by listener and the cap that was full.\n\
             # TYPE ward_connections_capped_total counter\n",
        );
        for role in Role::ALL {
            for (position, cap) in ["listener", "address"].iter().enumerate() {
                let _ = writeln!(
                    out,
                    "ward_connections_capped_total{{listener=\"{role}\",cap=\"{cap}\"}} {}",
                    get(&self.refused[role_index(role)][position])
                );
            }
        }
        out.push_str(
            "# HELP ward_connections_unanswered_total Connections refused at a cap and closed at once, without a handshake or an answer: beyond the refusal budget (answers a second) or the refusals in flight.\n\
             # TYPE ward_connections_unanswered_total counter\n",
        );
        for role in Role::ALL {
            let _ = writeln!(
                out,
                "ward_connections_unanswered_total{{listener=\"{role}\"}} {}",
                get(&self.unanswered[role_index(role)])
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Buckets are cumulative when rendered, with `+Inf` equal to the count and the sum in
    /// seconds.
    #[test]
    fn a_histogram_renders_cumulative_buckets() {
        let histogram = Histogram::latency();
        for seconds in [0.0004, 0.003, 0.003, 20.0] {
            histogram.observe(seconds);
        }
        let mut out = String::new();
        histogram.render(&mut out, "x", "a=\"b\"");
        let value = |le: &str| -> u64 {
            out.lines()
                .find(|l| l.starts_with(&format!("x_bucket{{a=\"b\",le=\"{le}\"}}")))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap()
        };
        assert_eq!(value("0.0005"), 1);
        assert_eq!(value("0.0025"), 1);
        assert_eq!(value("0.005"), 3);
        assert_eq!(value("10"), 3);
        assert_eq!(value("+Inf"), 4);
        assert!(out.contains("x_count{a=\"b\"} 4"), "{out}");
        assert!(out.contains("x_sum{a=\"b\"} 20.0064"), "{out}");
    }

    #[test]
    fn check_in_results_are_classified_by_status() {
        assert_eq!(CheckinResult::of_status(200), CheckinResult::Ok);
        assert_eq!(CheckinResult::of_status(401), CheckinResult::Refused);
        assert_eq!(CheckinResult::of_status(400), CheckinResult::Refused);
        assert_eq!(CheckinResult::of_status(503), CheckinResult::Busy);
        assert_eq!(CheckinResult::of_status(500), CheckinResult::Error);
    }
}
