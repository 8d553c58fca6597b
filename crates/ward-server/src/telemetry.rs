//! TLS telemetry and metrics.
//!
//! Connection tasks report every handshake here. Counters for `/metrics` are atomics updated
//! in place. For the database, successful handshakes are summed in memory per minute and key
//! (no allocation, no wake-up), failures are queued, and one writer thread takes the lot and
//! writes it as one transaction every [`FLUSH_INTERVAL`] (sooner when [`MAX_BATCH_FAILURES`]
//! failures are waiting). Failed
//! handshakes are recorded one by one up to a rate (token bucket); beyond it they are only
//! counted, so a flood cannot fill the disk.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ward_store::{HandshakeCount, HandshakeFailure, HandshakeKey, Store, TelemetryBatch};
use ward_tls::TlsVersion;

use crate::config::Role;
use crate::failure::FailureKind;
use ward_tls::hello::ClientHello;

/// The batching window of the telemetry writer (stated in ARCHITECTURE.md).
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How often telemetry older than the retention is deleted.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// How long an expired enrollment token is kept before pruning deletes it.
const TOKEN_KEPT_AFTER_EXPIRY_MS: i64 = 86_400_000;
/// A batch is written early when this many failures wait.
pub const MAX_BATCH_FAILURES: usize = 1000;
/// Distinct handshake keys waiting for the writer; beyond it new keys are dropped and counted.
const MAX_PENDING_KEYS: usize = 1_000_000;

fn role_index(role: Role) -> usize {
    match role {
        Role::Console => 0,
        Role::Clients => 1,
        Role::ClientsHttp => 2,
    }
}

fn version_index(version: TlsVersion) -> usize {
    version as usize
}

fn kind_index(kind: FailureKind) -> usize {
    FailureKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(0)
}

/// Counters and gauges for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    handshakes: [[AtomicU64; 4]; 3],
    resumed: [AtomicU64; 3],
    failures: [[AtomicU64; 9]; 3],
    connections_open: [AtomicU64; 3],
    connections_total: [AtomicU64; 3],
    connections_refused: [AtomicU64; 3],
    requests: [AtomicU64; 3],
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    telemetry_dropped: AtomicU64,
    /// Agents that reported going back to the last settings that worked (each revert once).
    agent_reverts: AtomicU64,
    /// The operator's histograms and counters of the server at work.
    pub ops: crate::metrics::Operations,
    /// Completed handshakes by (listener, key-exchange group): groups are OpenSSL's static
    /// names, few in number.
    groups: Mutex<std::collections::BTreeMap<(&'static str, &'static str), u64>>,
}

impl Metrics {
    /// Counts a completed handshake's key-exchange group (`none` for RSA key exchange).
    pub fn group(&self, role: Role, group: &'static str) {
        *self
            .groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((role.name(), group))
            .or_default() += 1;
    }

    pub fn connection_opened(&self, role: Role) {
        self.connections_open[role_index(role)].fetch_add(1, Ordering::Relaxed);
        self.connections_total[role_index(role)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self, role: Role) {
        self.connections_open[role_index(role)].fetch_sub(1, Ordering::Relaxed);
    }

    pub fn connection_refused(&self, role: Role) {
        self.connections_refused[role_index(role)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed handshake that is not worth a record of its own.
    pub fn failure_only(&self, role: Role, kind: FailureKind) {
        self.failures[role_index(role)][kind_index(kind)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn request(&self, role: Role) {
        self.requests[role_index(role)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn reload(&self, ok: bool) {
        let counter = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// An agent reported a revert for the first time.
    pub fn agent_reverted(&self) {
        self.agent_reverts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn reloads(&self) -> (u64, u64) {
        (
            self.reloads_ok.load(Ordering::Relaxed),
            self.reloads_failed.load(Ordering::Relaxed),
        )
    }

    pub fn open_connections(&self) -> u64 {
        self.connections_open
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.push_str(
            "# HELP ward_tls_handshakes_total Completed TLS handshakes by listener and version.\n",
        );
        out.push_str("# TYPE ward_tls_handshakes_total counter\n");
        for role in [Role::Console, Role::Clients] {
            for version in TlsVersion::ALL {
                let value = get(&self.handshakes[role_index(role)][version_index(version)]);
                let _ = writeln!(
                    out,
                    "ward_tls_handshakes_total{{listener=\"{role}\",version=\"{version}\"}} {value}"
                );
            }
        }
        out.push_str(
            "# HELP ward_tls_handshakes_by_group_total Completed TLS handshakes by listener and key-exchange group (X25519MLKEM768 is post-quantum).\n",
        );
        out.push_str("# TYPE ward_tls_handshakes_by_group_total counter\n");
        for ((listener, group), value) in
            self.groups.lock().unwrap_or_else(|p| p.into_inner()).iter()
        {
            let _ = writeln!(
                out,
                "ward_tls_handshakes_by_group_total{{listener=\"{listener}\",group=\"{group}\"}} {value}"
            );
        }
        out.push_str(
            "# HELP ward_tls_resumed_total Completed TLS handshakes that resumed a session.\n",
        );
        out.push_str("# TYPE ward_tls_resumed_total counter\n");
        for role in [Role::Console, Role::Clients] {
            let value = get(&self.resumed[role_index(role)]);
            let _ = writeln!(out, "ward_tls_resumed_total{{listener=\"{role}\"}} {value}");
        }
        out.push_str("# HELP ward_tls_handshake_failures_total Failed TLS handshakes by listener and reason.\n");
        out.push_str("# TYPE ward_tls_handshake_failures_total counter\n");
        for role in [Role::Console, Role::Clients] {
            for kind in FailureKind::ALL {
                let value = get(&self.failures[role_index(role)][kind_index(kind)]);
                let _ = writeln!(
                    out,
                    "ward_tls_handshake_failures_total{{listener=\"{role}\",reason=\"{}\"}} {value}",
                    kind.name()
                );
            }
        }
        let per_listener: [(&str, &str, &str, &[AtomicU64; 3]); 4] = [
            ("ward_connections_open", "gauge", "Open connections by listener.", &self.connections_open),
            ("ward_connections_total", "counter", "Accepted connections by listener.", &self.connections_total),
            (
                "ward_connections_refused_total",
                "counter",
                "Connections answered 503 or closed because the listener was at its connection cap.",
                &self.connections_refused,
            ),
            ("ward_http_requests_total", "counter", "HTTP requests by listener.", &self.requests),
        ];
        for (name, kind, help, values) in per_listener {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for role in Role::ALL {
                let _ = writeln!(
                    out,
                    "{name}{{listener=\"{role}\"}} {}",
                    get(&values[role_index(role)])
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP ward_reloads_total Configuration reloads by result.\n\
             # TYPE ward_reloads_total counter\n\
             ward_reloads_total{{result=\"ok\"}} {}\n\
             ward_reloads_total{{result=\"error\"}} {}",
            get(&self.reloads_ok),
            get(&self.reloads_failed)
        );
        let _ = writeln!(
            out,
            "# HELP ward_telemetry_dropped_total Telemetry records dropped because the writer fell behind.\n\
             # TYPE ward_telemetry_dropped_total counter\n\
             ward_telemetry_dropped_total {}",
            get(&self.telemetry_dropped)
        );
        let _ = writeln!(
            out,
            "# HELP ward_agent_reverts_total Agents that went back to the last settings that worked because new ones cut them off.\n\
             # TYPE ward_agent_reverts_total counter\n\
             ward_agent_reverts_total {}",
            get(&self.agent_reverts)
        );
        out.push_str(&self.ops.render());
        out
    }
}

/// A successful handshake as counted in memory: all `Copy`, so counting allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct CountKey {
    minute: i64,
    role: Role,
    peer: IpAddr,
    version: TlsVersion,
    cipher: &'static str,
    group: &'static str,
    resumed: bool,
}

impl CountKey {
    fn to_store(self) -> HandshakeKey {
        HandshakeKey {
            minute: self.minute,
            listener: self.role.name().to_string(),
            peer: self.peer.to_string(),
            version: self.version.name().to_string(),
            cipher: self.cipher.to_string(),
            group: self.group.to_string(),
            resumed: self.resumed,
        }
    }
}

/// What waits for the next write.
#[derive(Default)]
struct Pending {
    counts: HashMap<CountKey, u64>,
    failures: Vec<HandshakeFailure>,
    dropped: HashMap<i64, u64>,
    /// Distinct ClientHellos since the last write: digest -> (bytes, last ms, count).
    hellos: HashMap<String, (Vec<u8>, i64, u64)>,
    /// The last ClientHello per (listener, peer address).
    hello_peers: HashMap<(Role, IpAddr), (String, i64)>,
    stopping: bool,
}

/// The most distinct ClientHellos held between two writes (a flood of random hellos only
/// costs this much memory; the store keeps at most `ward_store::MAX_DISTINCT_HELLOS`).
const MAX_PENDING_HELLOS: usize = 1000;

impl Pending {
    fn take_batch(&mut self) -> TelemetryBatch {
        TelemetryBatch {
            handshakes: self
                .counts
                .drain()
                .map(|(key, count)| HandshakeCount {
                    key: key.to_store(),
                    count,
                })
                .collect(),
            failures: std::mem::take(&mut self.failures),
            dropped_failures: self.dropped.drain().collect(),
            hellos: self
                .hellos
                .drain()
                .map(|(digest, (bytes, at_ms, count))| ward_store::HelloSeen {
                    digest,
                    bytes,
                    at_ms,
                    count,
                })
                .collect(),
            hello_peers: self
                .hello_peers
                .drain()
                .map(|((role, peer), (digest, at_ms))| ward_store::HelloPeer {
                    listener: role.name().to_string(),
                    peer: peer.to_string(),
                    digest,
                    at_ms,
                })
                .collect(),
        }
    }
}

/// A token bucket: `rate` per second, bursts up to `rate` (at least 1).
struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn take(&mut self, now: Instant) -> bool {
        let capacity = self.rate.max(1.0);
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Telemetry of one server: recording is a short critical section on an in-memory batch;
/// the writer thread wakes on its own timer (not per record) and writes what accumulated.
pub struct Telemetry {
    pub metrics: Metrics,
    pending: Mutex<Pending>,
    wake: Condvar,
    bucket: Mutex<Bucket>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

use ward_proto::now_ms;

/// A handshake that failed, as the connection task describes it.
pub struct FailureReport {
    pub role: Role,
    pub peer: String,
    pub offered_max: Option<String>,
    pub offered_versions: Vec<String>,
    pub server_name: Option<String>,
    pub kind: FailureKind,
    pub reason: String,
}

impl Telemetry {
    /// Starts the writer thread that owns the database side.
    pub fn start(
        store: Arc<dyn Store>,
        failures_per_second: u32,
        retention: Duration,
    ) -> Arc<Telemetry> {
        let telemetry = Arc::new(Telemetry {
            metrics: Metrics::default(),
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            bucket: Mutex::new(Bucket {
                rate: f64::from(failures_per_second),
                tokens: f64::from(failures_per_second.max(1)),
                last: Instant::now(),
            }),
            writer: Mutex::new(None),
        });
        let for_writer = telemetry.clone();
        let writer = std::thread::Builder::new()
            .name("ward-telemetry".into())
            .spawn(move || for_writer.write_loop(&*store, retention))
            .expect("the telemetry thread starts");
        *telemetry.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(writer);
        telemetry
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the raw ClientHello a peer sent on a listener, under its stack's fingerprint
    /// (the bytes of the first one seen are kept to be replayed); returns the fingerprint,
    /// which a check-in keeps with its agent.
    pub fn hello(&self, role: Role, peer: IpAddr, hello: &ClientHello, bytes: &[u8]) -> [u8; 32] {
        let sha = hello.fingerprint();
        let digest = ward_proto::hex(&sha);
        let now = now_ms();
        let mut pending = self.pending();
        let known = pending.hellos.contains_key(&digest);
        if known || pending.hellos.len() < MAX_PENDING_HELLOS {
            let entry = pending
                .hellos
                .entry(digest.clone())
                .or_insert_with(|| (bytes.to_vec(), now, 0));
            entry.1 = now;
            entry.2 += 1;
        }
        pending
            .hello_peers
            .insert((role, peer.to_canonical()), (digest, now));
        sha
    }

    pub fn handshake(
        &self,
        role: Role,
        peer: IpAddr,
        version: TlsVersion,
        cipher: &'static str,
        group: Option<&'static str>,
        resumed: bool,
    ) {
        let r = role_index(role);
        self.metrics.handshakes[r][version_index(version)].fetch_add(1, Ordering::Relaxed);
        self.metrics.group(role, group.unwrap_or("none"));
        if resumed {
            self.metrics.resumed[r].fetch_add(1, Ordering::Relaxed);
        }
        let key = CountKey {
            minute: now_ms().div_euclid(60_000),
            role,
            peer,
            version,
            cipher,
            group: group.unwrap_or(""),
            resumed,
        };
        let mut pending = self.pending();
        if pending.counts.len() >= MAX_PENDING_KEYS && !pending.counts.contains_key(&key) {
            drop(pending);
            self.metrics
                .telemetry_dropped
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        *pending.counts.entry(key).or_default() += 1;
    }

    /// Counts a failed handshake and records it unless the rate limit says no; returns
    /// whether it was recorded.
    pub fn failure(&self, report: FailureReport) -> bool {
        self.metrics.failure_only(report.role, report.kind);
        let at_ms = now_ms();
        let allowed = self
            .bucket
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(Instant::now());
        let mut pending = self.pending();
        if !allowed {
            *pending.dropped.entry(at_ms.div_euclid(60_000)).or_default() += 1;
            return false;
        }
        pending.failures.push(HandshakeFailure {
            at_ms,
            listener: report.role.name().to_string(),
            peer: report.peer,
            offered_max: report.offered_max,
            offered_versions: report.offered_versions,
            server_name: report.server_name,
            kind: report.kind.name().to_string(),
            reason: report.reason,
        });
        if pending.failures.len() >= MAX_BATCH_FAILURES {
            self.wake.notify_one();
        }
        true
    }

    /// Stops the writer after it has written everything recorded so far.
    pub fn flush_and_stop(&self) {
        self.pending().stopping = true;
        self.wake.notify_one();
        if let Some(writer) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = writer.join();
        }
    }

    fn write_loop(&self, store: &dyn Store, retention: Duration) {
        let mut next_prune = Instant::now();
        loop {
            if Instant::now() >= next_prune {
                let now = now_ms();
                let before = now - retention.as_millis().min(i64::MAX as u128) as i64;
                // An expired token is kept a day, so that an agent enrolling with it is told
                // it expired rather than that it is unknown.
                match store.prune_telemetry(before, now - TOKEN_KEPT_AFTER_EXPIRY_MS) {
                    Ok(0) => {}
                    Ok(rows) => tracing::info!(rows, "old telemetry deleted"),
                    Err(error) => tracing::error!(%error, "old telemetry not deleted"),
                }
                next_prune = Instant::now() + PRUNE_INTERVAL;
            }
            let (batch, stopping) = {
                let pending = self.pending();
                let (mut pending, _) = self
                    .wake
                    .wait_timeout_while(pending, FLUSH_INTERVAL, |p| {
                        !p.stopping && p.failures.len() < MAX_BATCH_FAILURES
                    })
                    .unwrap_or_else(|p| p.into_inner());
                (pending.take_batch(), pending.stopping)
            };
            if !batch.is_empty() {
                if let Err(error) = store.record_telemetry(&batch) {
                    tracing::error!(%error, "telemetry not written");
                }
            }
            if stopping {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_the_rate_then_refuses_until_time_passes() {
        let start = Instant::now();
        let mut bucket = Bucket {
            rate: 5.0,
            tokens: 5.0,
            last: start,
        };
        let allowed = (0..20).filter(|_| bucket.take(start)).count();
        assert_eq!(allowed, 5, "a burst of the rate, no more");
        assert!(
            !bucket.take(start + Duration::from_millis(100)),
            "half a token is not one"
        );
        assert!(bucket.take(start + Duration::from_millis(250)));
        // A long pause refills to the burst size, not beyond.
        let later = start + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| bucket.take(later)).count(), 5);
    }

    fn failure(kind: FailureKind) -> FailureReport {
        FailureReport {
            role: Role::Clients,
            peer: "127.0.0.1:1".into(),
            offered_max: Some("TLSv1".into()),
            offered_versions: vec!["TLSv1".into()],
            server_name: None,
            kind,
            reason: "client offers only TLSv1, listener accepts TLSv1.2".into(),
        }
    }

    #[test]
    fn a_flood_of_failures_is_counted_not_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            ward_store::open(&ward_store::Database::Sqlite(dir.path().join("ward.db"))).unwrap();
        let telemetry = Telemetry::start(store.clone(), 10, Duration::from_secs(86_400));
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..3 {
            telemetry.handshake(
                Role::Clients,
                peer,
                TlsVersion::Tls1_2,
                "ECDHE-ECDSA-AES128-GCM-SHA256",
                Some("x25519"),
                false,
            );
        }
        for _ in 0..1000 {
            telemetry.failure(failure(FailureKind::ProtocolVersion));
        }
        telemetry.flush_and_stop();
        let report = store.handshake_report(0, 10_000).unwrap();
        let recorded = report.failures.len();
        let dropped = report.dropped_failures;
        let counted: u64 = report.handshakes.iter().map(|h| h.count).sum();
        assert!((10..=12).contains(&recorded), "recorded {recorded}");
        assert_eq!(
            recorded as u64 + dropped,
            1000,
            "every failure recorded or counted"
        );
        assert_eq!(counted, 3, "handshakes summed under one key");
        assert!(telemetry.metrics.render().contains(
            "ward_tls_handshake_failures_total{listener=\"clients\",reason=\"protocol_version\"} 1000"
        ));
    }
}
