//! What a simulation measured: the counters every agent task adds to ([`Stats`]), and the
//! report made from them at the end, printed as text or, with `--json`, as one JSON document.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::Serialize;
use serde_json::json;

#[derive(Default)]
pub(super) struct Stats {
    pub(super) checkins: AtomicU64,
    pub(super) polls: AtomicU64,
    pub(super) resumed: AtomicU64,
    pub(super) full_handshakes: AtomicU64,
    /// Exchanges on a connection an earlier push check-in kept (no handshake).
    pub(super) reused: AtomicU64,
    pub(super) held_now: AtomicUsize,
    pub(super) held_peak: AtomicUsize,
    pub(super) settings_received: AtomicU64,
    pub(super) latencies_us: Mutex<Vec<u64>>,
    pub(super) versions: Mutex<BTreeMap<String, u64>>,
    /// TLS handshakes by the key-exchange group they used.
    pub(super) groups: Mutex<BTreeMap<&'static str, u64>>,
    pub(super) failures: Mutex<BTreeMap<String, u64>>,
    /// Unix ms at which each agent got new settings during the run (push fan-out).
    pub(super) settings_at_ms: Mutex<Vec<i64>>,
    /// Check-ins that succeeded after the agent's last one failed (an outage's end).
    pub(super) recovered: AtomicU64,
    /// Unix ms of the latest of those: when the last agent was back.
    pub(super) last_recovered_ms: AtomicU64,
}

impl Stats {
    pub(super) fn fail(&self, reason: &str) {
        tally(&self.failures, reason.to_string());
    }
}

/// Counts one more `key` in `counts` (a task that panicked holding it left it usable).
pub(super) fn tally<K: Ord>(counts: &Mutex<BTreeMap<K, u64>>, key: K) {
    *counts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key)
        .or_default() += 1;
}

/// A copy of what `mutex` holds (a task that panicked holding it left it usable).
fn snapshot<T: Clone>(mutex: &Mutex<T>) -> T {
    mutex.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The `p`th percentile of `sorted` microseconds, in milliseconds (0 for none).
fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64 / 1000.0
}

/// The report, as `--json` prints it.
#[derive(Serialize)]
pub(super) struct Report {
    agents: usize,
    legacy_agents: usize,
    enrollment: Enrollment,
    seconds: f64,
    checkins: u64,
    checkins_per_second: f64,
    held_polls_returned: u64,
    held_peak: usize,
    latency_ms: Latency,
    tls: Tls,
    settings_changes: SettingsChanges,
    failures: BTreeMap<String, u64>,
    recovered: Recovered,
    lost: Lost,
    cpu: Cpu,
}

/// What the course of a run adds to the counters.
pub(super) struct Run<'a> {
    pub(super) agents: usize,
    pub(super) legacy_agents: usize,
    pub(super) enroll_failures: usize,
    pub(super) enroll_seconds: f64,
    pub(super) elapsed: f64,
    /// The agents whose last attempt failed.
    pub(super) lost: &'a [String],
    pub(super) cpu: Cpu,
}

/// The simulator's own CPU during the run, and whether it, not the server, was the limit.
#[derive(Serialize)]
pub(super) struct Cpu {
    seconds: f64,
    cores: usize,
    /// CPU time over the cores' time: near 1, the simulator could go no faster.
    busy_share: f64,
    /// Busy above 90%: the figures measure the simulator as much as the server.
    simulator_was_the_limit: bool,
}

impl Cpu {
    pub(super) fn measured(seconds: f64, elapsed: f64, cores: usize) -> Cpu {
        let busy_share = seconds / (elapsed * cores.max(1) as f64).max(f64::EPSILON);
        Cpu {
            seconds: (seconds * 1000.0).round() / 1000.0,
            cores,
            busy_share: (busy_share * 1000.0).round() / 1000.0,
            simulator_was_the_limit: busy_share > 0.9,
        }
    }
}

#[derive(Serialize)]
struct Enrollment {
    failed: usize,
    seconds: f64,
}

#[derive(Serialize)]
struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

#[derive(Serialize)]
struct Tls {
    versions: BTreeMap<String, u64>,
    groups: BTreeMap<&'static str, u64>,
    resumed: u64,
    full_handshakes: u64,
    resumed_share: f64,
    /// Exchanges on a connection a push check-in kept: no handshake at all.
    connections_reused: u64,
}

#[derive(Serialize)]
struct SettingsChanges {
    received: u64,
    first_to_last_ms: Option<i64>,
}

/// Agents back after failed check-ins (the server or its database away, a failover).
#[derive(Serialize)]
struct Recovered {
    /// Successful check-ins that followed a failed one.
    checkins: u64,
    /// Unix ms at which the last of them was answered: when every agent that lost contact
    /// was back.
    last_at_ms: Option<u64>,
}

#[derive(Serialize)]
struct Lost {
    count: usize,
    /// The first 50.
    agents: Vec<String>,
}

impl Report {
    pub(super) fn new(stats: &Stats, run: Run<'_>) -> Report {
        let Run {
            agents,
            legacy_agents: legacy,
            enroll_failures,
            enroll_seconds,
            elapsed,
            lost,
            cpu,
        } = run;
        let mut latencies = snapshot(&stats.latencies_us);
        latencies.sort_unstable();
        let checkins = stats.checkins.load(Ordering::Relaxed);
        let resumed = stats.resumed.load(Ordering::Relaxed);
        let full = stats.full_handshakes.load(Ordering::Relaxed);
        let mut fanout = snapshot(&stats.settings_at_ms);
        fanout.sort_unstable();
        Report {
            agents,
            legacy_agents: legacy,
            enrollment: Enrollment {
                failed: enroll_failures,
                seconds: enroll_seconds,
            },
            seconds: elapsed,
            checkins,
            checkins_per_second: checkins as f64 / elapsed.max(0.001),
            held_polls_returned: stats.polls.load(Ordering::Relaxed),
            held_peak: stats.held_peak.load(Ordering::Relaxed),
            latency_ms: Latency {
                p50: percentile(&latencies, 50.0),
                p90: percentile(&latencies, 90.0),
                p99: percentile(&latencies, 99.0),
                max: percentile(&latencies, 100.0),
            },
            tls: Tls {
                versions: snapshot(&stats.versions),
                groups: snapshot(&stats.groups),
                resumed,
                full_handshakes: full,
                resumed_share: if resumed + full == 0 {
                    0.0
                } else {
                    resumed as f64 / (resumed + full) as f64
                },
                connections_reused: stats.reused.load(Ordering::Relaxed),
            },
            settings_changes: SettingsChanges {
                received: stats.settings_received.load(Ordering::Relaxed),
                first_to_last_ms: fanout.last().zip(fanout.first()).map(|(l, f)| l - f),
            },
            failures: snapshot(&stats.failures),
            recovered: Recovered {
                checkins: stats.recovered.load(Ordering::Relaxed),
                last_at_ms: Some(stats.last_recovered_ms.load(Ordering::Relaxed))
                    .filter(|ms| *ms > 0),
            },
            lost: Lost {
                count: lost.len(),
                agents: lost.iter().take(50).cloned().collect(),
            },
            cpu,
        }
    }

    /// The JSON document `--json` prints.
    pub(super) fn json(&self) -> serde_json::Value {
        json!(self)
    }

    /// The report for people, numbers and lists written as in the JSON.
    pub(super) fn text(&self) -> String {
        let mut lines = vec![
            format!(
                "{} agents ({} capped at TLSv1), ran {:.1}s",
                self.agents, self.legacy_agents, self.seconds
            ),
            format!(
                "check-ins: {} ({:.1}/s); held polls returned: {}, held at once at most: {}",
                self.checkins, self.checkins_per_second, self.held_polls_returned, self.held_peak
            ),
        ];
        let l = &self.latency_ms;
        lines.push(format!(
            "latency ms: p50 {} p90 {} p99 {} max {}",
            json!(l.p50),
            json!(l.p90),
            json!(l.p99),
            json!(l.max)
        ));
        lines.push(format!(
            "TLS: {} ; key exchange {} ; resumed {} of {} handshakes{}",
            json!(self.tls.versions),
            json!(self.tls.groups),
            self.tls.resumed,
            self.tls.resumed + self.tls.full_handshakes,
            match self.tls.connections_reused {
                0 => String::new(),
                reused => format!(" ; {reused} check-ins on kept connections (no handshake)"),
            }
        ));
        if self.settings_changes.received > 0 {
            lines.push(format!(
                "settings changes received: {} (first to last {} ms)",
                self.settings_changes.received,
                json!(self.settings_changes.first_to_last_ms)
            ));
        }
        if !self.failures.is_empty() {
            lines.push(format!("failures: {}", json!(self.failures)));
        }
        if let Some(at) = self.recovered.last_at_ms {
            lines.push(format!(
                "back after failures: {} check-ins, the last at {} (unix ms)",
                self.recovered.checkins, at
            ));
        }
        lines.push(format!(
            "lost contact: {} {}",
            self.lost.count,
            json!(self.lost.agents)
        ));
        lines.push(format!(
            "simulator CPU: {} s on {} core{}, {}% busy{}",
            json!(self.cpu.seconds),
            self.cpu.cores,
            if self.cpu.cores == 1 { "" } else { "s" },
            json!((self.cpu.busy_share * 1000.0).round() / 10.0),
            if self.cpu.simulator_was_the_limit {
                ": the simulator was the limit, not the server (give it more cores, or fewer agents)"
            } else {
                ""
            }
        ));
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_the_nearest_rank_in_milliseconds() {
        let check = |sorted_us: &[u64], p: f64, expected_ms: f64| {
            assert_eq!(percentile(sorted_us, p), expected_ms, "{sorted_us:?} p{p}");
        };
        check(&[], 50.0, 0.0);
        check(&[1500], 99.0, 1.5);
        check(&[1000, 2000, 3000], 0.0, 1.0);
        check(&[1000, 2000, 3000], 50.0, 2.0);
        check(&[1000, 2000, 3000], 100.0, 3.0);
        check(&[1000, 2000, 3000, 4000], 50.0, 3.0);
    }

    fn stats() -> Stats {
        let stats = Stats::default();
        stats.checkins.store(3, Ordering::Relaxed);
        stats.polls.store(4, Ordering::Relaxed);
        stats.held_peak.store(2, Ordering::Relaxed);
        stats.resumed.store(1, Ordering::Relaxed);
        stats.full_handshakes.store(2, Ordering::Relaxed);
        stats.reused.store(6, Ordering::Relaxed);
        stats.settings_received.store(2, Ordering::Relaxed);
        *stats.latencies_us.lock().unwrap() = vec![3000, 1000, 2000];
        *stats.settings_at_ms.lock().unwrap() = vec![1_700_000_000_250, 1_700_000_000_000];
        *stats.versions.lock().unwrap() = [("TLSv1.3".into(), 5), ("plain HTTP".into(), 2)].into();
        *stats.groups.lock().unwrap() = [("X25519MLKEM768", 5)].into();
        stats.fail("connect");
        stats.recovered.store(1, Ordering::Relaxed);
        stats
            .last_recovered_ms
            .store(1_700_000_000_900, Ordering::Relaxed);
        stats
    }

    fn run(lost: &[String], cpu: Cpu) -> Run<'_> {
        Run {
            agents: 3,
            legacy_agents: 1,
            enroll_failures: 0,
            enroll_seconds: 0.5,
            elapsed: 2.0,
            lost,
            cpu,
        }
    }

    #[test]
    fn the_json_report_keeps_its_shape() {
        let report = Report::new(
            &stats(),
            run(&["x".to_string()], Cpu::measured(1.9, 2.0, 1)),
        );
        assert_eq!(
            report.json(),
            json!({
                "agents": 3,
                "legacy_agents": 1,
                "enrollment": {"failed": 0, "seconds": 0.5},
                "seconds": 2.0,
                "checkins": 3,
                "checkins_per_second": 1.5,
                "held_polls_returned": 4,
                "held_peak": 2,
                "latency_ms": {"p50": 2.0, "p90": 3.0, "p99": 3.0, "max": 3.0},
                "tls": {
                    "versions": {"TLSv1.3": 5, "plain HTTP": 2},
                    "groups": {"X25519MLKEM768": 5},
                    "resumed": 1,
                    "full_handshakes": 2,
                    "resumed_share": 1.0 / 3.0,
                    "connections_reused": 6,
                },
                "settings_changes": {"received": 2, "first_to_last_ms": 250},
                "failures": {"connect": 1},
                "recovered": {"checkins": 1, "last_at_ms": 1_700_000_000_900u64},
                "lost": {"count": 1, "agents": ["x"]},
                "cpu": {"seconds": 1.9, "cores": 1, "busy_share": 0.95, "simulator_was_the_limit": true},
            })
        );
    }

    #[test]
    fn the_text_report_writes_numbers_as_the_json_does() {
        let report = Report::new(
            &stats(),
            run(&["x".to_string()], Cpu::measured(1.9, 2.0, 1)),
        );
        assert_eq!(
            report.text(),
            "3 agents (1 capped at TLSv1), ran 2.0s\n\
             check-ins: 3 (1.5/s); held polls returned: 4, held at once at most: 2\n\
             latency ms: p50 2.0 p90 3.0 p99 3.0 max 3.0\n\
             TLS: {\"TLSv1.3\":5,\"plain HTTP\":2} ; key exchange {\"X25519MLKEM768\":5} ; resumed 1 of 3 handshakes ; 6 check-ins on kept connections (no handshake)\n\
             settings changes received: 2 (first to last 250 ms)\n\
             failures: {\"connect\":1}\n\
             back after failures: 1 check-ins, the last at 1700000000900 (unix ms)\n\
             lost contact: 1 [\"x\"]\n\
             simulator CPU: 1.9 s on 1 core, 95.0% busy: the simulator was the limit, not the \
             server (give it more cores, or fewer agents)"
        );
        let quiet = Report::new(
            &Stats::default(),
            Run {
                agents: 1,
                legacy_agents: 0,
                elapsed: 1.0,
                ..run(&[], Cpu::measured(0.5, 1.0, 2))
            },
        )
        .text();
        assert!(
            quiet.ends_with("simulator CPU: 0.5 s on 2 cores, 25.0% busy"),
            "{quiet}"
        );
        assert!(
            !quiet.contains("settings changes")
                && !quiet.contains("failures")
                && !quiet.contains("back after")
                && !quiet.contains("kept connections"),
            "{quiet}"
        );
        assert!(
            quiet.contains("latency ms: p50 0.0 p90 0.0 p99 0.0 max 0.0"),
            "{quiet}"
        );
    }
}
