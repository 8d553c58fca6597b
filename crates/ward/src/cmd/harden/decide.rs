//! What `ward tls harden` decides, pure: the server's plan read once into types, and from it
//! which agents are at a risk harden cannot help, whether harden may start, what the wait step
//! still waits for (with or without `--accept-risk`), whether to stage again, whether verify's
//! scan of a listener matches the plan, where to reach a listener and how long to pause
//! between questions. The I/O (the admin API, the scanner, the terminal) stays in `mod.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

/// The server's answer to `POST /api/v1/tls/plan` (`plan_json` in ward-server's
/// `harden::plan`), as far as the CLI reads it. Fields the CLI does not read are ignored; one
/// it reads that is missing is an error.
#[derive(Debug)]
pub struct Plan {
    /// Apache's warnings about the proposed value.
    pub warnings: Vec<String>,
    pub listeners: Listeners,
    /// Agents in the fleet.
    pub agents: u64,
    pub counts: Counts,
    /// The first agents that would be cut off (the count covers everyone).
    pub cut_off: Vec<AgentLine>,
    /// The first agents at risk (the count covers everyone).
    pub at_risk: Vec<AtRisk>,
    /// Nobody would be cut off or at risk.
    pub ok: bool,
    /// Every peer seen on a planned listener, judged by replaying its real ClientHello
    /// (absent from older servers: empty).
    pub peers: Vec<PeerLine>,
    /// The change, in conf words (absent from older servers).
    pub change: Option<String>,
    /// Hosts whose verifying agents would refuse the proposed clients certificate, and why.
    pub untrusted_certificate: std::collections::BTreeMap<String, String>,
}

/// A peer of a listener and what the proposed listener would answer its ClientHello.
#[derive(Debug, Deserialize)]
pub struct PeerLine {
    pub listener: String,
    pub address: String,
    /// `unaffected`, `cut_off` or `unknown`.
    pub verdict: String,
    pub reason: String,
}

/// The two HTTPS listeners.
#[derive(Debug, Deserialize)]
pub struct Listeners {
    pub console: Listener,
    pub clients: Listener,
}

/// One listener before and after the proposed change.
#[derive(Debug, Deserialize)]
pub struct Listener {
    /// Its conf file.
    pub file: String,
    /// The versions it accepts now, lowest first.
    pub current: Vec<String>,
    /// The versions it will accept, lowest first.
    pub planned: Vec<String>,
    /// The proposal changes it.
    pub changes: bool,
}

/// How many agents fall where: these cover the whole fleet, the lists only the first.
#[derive(Debug, Deserialize)]
pub struct Counts {
    pub cut_off: u64,
    pub at_risk: u64,
    pub at_risk_by_reason: RiskCounts,
    pub unaffected: u64,
    pub unaffected_over_https: u64,
    pub unaffected_over_http: u64,
    /// Offline or unknown simulated agents, which block nothing (absent from older servers).
    #[serde(default)]
    pub simulated_ignored: u64,
}

/// Agents at risk, by risk. The server names only the risks someone runs: one it leaves out
/// counts 0.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RiskCounts {
    pub capability_unknown: u64,
    pub offline: u64,
    pub pending: u64,
}

/// One agent a plan lists.
#[derive(Debug, Deserialize)]
pub struct AgentLine {
    pub id: String,
    pub hostname: Option<String>,
    /// Its group's path.
    pub group: Option<String>,
    /// Why it is listed, in a sentence.
    pub reason: String,
}

/// An agent at risk, and which risk.
#[derive(Debug, Deserialize)]
pub struct AtRisk {
    #[serde(flatten)]
    pub agent: AgentLine,
    pub risk: Risk,
}

/// Why an agent may lose contact although ward cannot say it would be cut off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    /// Nobody knows which versions it speaks.
    CapabilityUnknown,
    /// Silent for longer than `--offline-intervals`: it would not be moved in time.
    Offline,
    /// Moved, and has not yet acknowledged its new settings.
    Pending,
}

impl Risk {
    pub fn name(self) -> &'static str {
        match self {
            Risk::CapabilityUnknown => "capability_unknown",
            Risk::Offline => "offline",
            Risk::Pending => "pending",
        }
    }

    /// Harden brings a pending agent along by waiting for it; an offline agent, or one whose
    /// capability is unknown, it cannot.
    pub fn harden_can_help(self) -> bool {
        self == Risk::Pending
    }
}

impl Plan {
    /// Reads the server's plan answer.
    pub fn read(answer: &Value) -> Result<Plan, String> {
        Ok(Plan {
            warnings: part(answer, "warnings")?,
            listeners: part(answer, "listeners")?,
            agents: part(answer, "agents")?,
            counts: part(answer, "counts")?,
            cut_off: part(answer, "cut_off")?,
            at_risk: part(answer, "at_risk")?,
            ok: part(answer, "ok")?,
            peers: match answer.get("peers") {
                Some(_) => part(answer, "peers")?,
                None => Vec::new(),
            },
            change: answer["change"].as_str().map(str::to_string),
            untrusted_certificate: match answer.get("untrusted_certificate") {
                Some(_) => part(answer, "untrusted_certificate")?,
                None => Default::default(),
            },
        })
    }
}

/// The member `key` of the plan answer, named in the error when it cannot be read.
fn part<T: DeserializeOwned>(answer: &Value, key: &str) -> Result<T, String> {
    let value = answer
        .get(key)
        .ok_or_else(|| format!("the server's plan has no `{key}`"))?;
    T::deserialize(value).map_err(|e| format!("the server's plan: {key}: {e}"))
}

/// Some agents: how many there are in all, and the first the plan lists.
#[derive(Debug, PartialEq, Eq)]
pub struct Agents {
    pub count: u64,
    pub ids: Vec<String>,
}

impl Agents {
    /// The first `named` ids and how many more there are: "a, b, c and 7 more".
    pub fn some(&self, named: usize) -> String {
        let ids = &self.ids[..self.ids.len().min(named)];
        let mut text = ids.join(", ");
        if self.count > ids.len() as u64 {
            text.push_str(&format!(" and {} more", self.count - ids.len() as u64));
        }
        text
    }
}

/// The agents at a risk harden cannot help: capability unknown, or offline.
pub fn beyond_help(plan: &Plan) -> Agents {
    let by_reason = &plan.counts.at_risk_by_reason;
    Agents {
        count: by_reason.capability_unknown + by_reason.offline,
        ids: at_risk_ids(plan, |risk| !risk.harden_can_help()),
    }
}

/// Whether harden may start: not while agents it cannot help are at risk, unless
/// `--accept-risk`. The refusal names them.
pub fn may_start(plan: &Plan, accept_risk: bool) -> Result<(), String> {
    let risky = beyond_help(plan);
    if risky.count == 0 || accept_risk {
        return Ok(());
    }
    Err(format!(
        "{} agent(s) at risk that harden cannot bring along (capability unknown, or offline): \
         {}; nothing was changed. Bring them online, or rerun with --accept-risk",
        risky.count,
        risky.some(usize::MAX)
    ))
}

/// Whether the wait step stages again: someone (enrolled meanwhile) would be cut off.
/// Staging twice is harmless.
pub fn restage(plan: &Plan) -> bool {
    plan.counts.cut_off > 0
}

/// The agents the wait step is for: moved (or still to be moved) and not yet acknowledged.
/// Without `--accept-risk` that includes agents that went silent or unknown meanwhile (at the
/// start there were none, or harden stopped): TLS is not touched while they would be lost.
pub fn waiting_for(plan: &Plan, accept_risk: bool) -> Agents {
    let counts = &plan.counts;
    let mut count = counts.cut_off + counts.at_risk_by_reason.pending;
    let mut ids: Vec<String> = plan.cut_off.iter().map(|a| a.id.clone()).collect();
    if accept_risk {
        ids.extend(at_risk_ids(plan, Risk::harden_can_help));
    } else {
        count += beyond_help(plan).count;
        ids.extend(at_risk_ids(plan, |_| true));
    }
    Agents { count, ids }
}

/// The ids of the agents the plan lists at risk whose risk passes `keep`, in its order.
fn at_risk_ids(plan: &Plan, keep: impl Fn(Risk) -> bool) -> Vec<String> {
    plan.at_risk
        .iter()
        .filter(|a| keep(a.risk))
        .map(|a| a.agent.id.clone())
        .collect()
}

/// Whether a listener accepts what the plan says: the same versions (both lists lowest
/// first).
pub fn as_planned(accepted: &[String], planned: &[String]) -> bool {
    accepted == planned
}

/// Verify's verdict once each listener was scanned: the names of those that accept other
/// versions than planned.
pub fn verified(mismatches: &[&str]) -> Result<(), String> {
    if mismatches.is_empty() {
        return Ok(());
    }
    Err(format!(
        "verify: {} accept(s) other versions than planned; `ward tls rollback` puts the files back",
        mismatches.join(" and ")
    ))
}

/// How long to wait before asking the server again, after a question that took `took`: half
/// a second for a small fleet, and never so often that a plan over a million agents keeps the
/// server busy (at most a fifth of its time).
pub fn poll_pause(took: Duration) -> Duration {
    (took * 4).max(Duration::from_millis(500))
}

/// Where to reach a listener the server reports as `address`: a listener on every address
/// is reached on the host this client talks to (the server's own loopback on its host).
pub fn reachable(address: &str, server_host: &str) -> Result<String, String> {
    let parsed: SocketAddr = address.parse().map_err(|_| {
        format!("the server reported a listener address '{address}' ward cannot read")
    })?;
    if !parsed.ip().is_unspecified() {
        return Ok(parsed.to_string());
    }
    Ok(if server_host.contains(':') {
        format!("[{server_host}]:{}", parsed.port())
    } else {
        format!("{server_host}:{}", parsed.port())
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A plan with these counts (cut off, capability unknown, offline, pending) listing these
    /// agents cut off ("a b") and at risk ("c:offline d:pending").
    fn plan(counts: [u64; 4], cut_off: &str, at_risk: &str) -> Plan {
        let [cut, unknown, offline, pending] = counts;
        let line = |id: &str| AgentLine {
            id: id.to_string(),
            hostname: None,
            group: None,
            reason: String::new(),
        };
        let listener = || Listener {
            file: String::new(),
            current: Vec::new(),
            planned: Vec::new(),
            changes: false,
        };
        Plan {
            warnings: Vec::new(),
            change: None,
            untrusted_certificate: Default::default(),
            listeners: Listeners {
                console: listener(),
                clients: listener(),
            },
            agents: 100,
            counts: Counts {
                cut_off: cut,
                at_risk: unknown + offline + pending,
                at_risk_by_reason: RiskCounts {
                    capability_unknown: unknown,
                    offline,
                    pending,
                },
                unaffected: 0,
                unaffected_over_https: 0,
                unaffected_over_http: 0,
                simulated_ignored: 0,
            },
            cut_off: cut_off.split_whitespace().map(line).collect(),
            at_risk: at_risk
                .split_whitespace()
                .map(|entry| {
                    let (id, risk) = entry.split_once(':').unwrap();
                    AtRisk {
                        agent: line(id),
                        risk: Risk::deserialize(json!(risk)).unwrap(),
                    }
                })
                .collect(),
            ok: cut + unknown + offline + pending == 0,
            peers: Vec::new(),
        }
    }

    /// (count, "id, id") for an expected `Agents`.
    fn agents(agents: Agents) -> (u64, String) {
        (agents.count, agents.ids.join(", "))
    }

    #[test]
    fn harden_cannot_help_agents_offline_or_of_unknown_capability() {
        let check = |counts, at_risk, expected: (u64, &str)| {
            let plan = plan(counts, "", at_risk);
            assert_eq!(
                agents(beyond_help(&plan)),
                (expected.0, expected.1.to_string()),
                "{counts:?} {at_risk}"
            );
        };
        check([0, 0, 0, 0], "", (0, ""));
        check([3, 0, 0, 0], "", (0, ""));
        check([0, 0, 0, 2], "a:pending b:pending", (0, ""));
        check([0, 1, 0, 0], "a:capability_unknown", (1, "a"));
        check([0, 0, 1, 0], "a:offline", (1, "a"));
        check(
            [0, 1, 1, 1],
            "a:pending b:offline c:capability_unknown",
            (2, "b, c"),
        );
        check(
            [0, 60, 0, 0],
            "a:capability_unknown b:capability_unknown",
            (60, "a, b"),
        );
    }

    #[test]
    fn harden_starts_only_when_nobody_is_beyond_help_or_the_risk_is_accepted() {
        let check = |counts, at_risk, accept_risk, expected: Result<(), &str>| {
            let plan = plan(counts, "", at_risk);
            assert_eq!(
                may_start(&plan, accept_risk),
                expected.map_err(str::to_string),
                "{counts:?} {at_risk} accept_risk: {accept_risk}"
            );
        };
        check([0, 0, 0, 0], "", false, Ok(()));
        check([4, 0, 0, 0], "", false, Ok(()));
        check([0, 0, 0, 1], "a:pending", false, Ok(()));
        check([0, 0, 1, 0], "a:offline", true, Ok(()));
        check(
            [0, 1, 3, 0],
            "a:capability_unknown b:offline",
            false,
            Err(
                "4 agent(s) at risk that harden cannot bring along (capability unknown, or \
                 offline): a, b and 2 more; nothing was changed. Bring them online, or rerun \
                 with --accept-risk",
            ),
        );
    }

    #[test]
    fn the_wait_is_for_moved_agents_and_without_accept_risk_for_those_at_risk() {
        // counts: cut off, capability unknown, offline, pending
        let check = |counts, cut_off, at_risk, without: (u64, &str), with: (u64, &str)| {
            let plan = plan(counts, cut_off, at_risk);
            for (accept_risk, expected) in [(false, without), (true, with)] {
                assert_eq!(
                    agents(waiting_for(&plan, accept_risk)),
                    (expected.0, expected.1.to_string()),
                    "{counts:?} {cut_off} {at_risk} accept_risk: {accept_risk}"
                );
            }
        };
        check([0, 0, 0, 0], "", "", (0, ""), (0, ""));
        check([2, 0, 0, 0], "a b", "", (2, "a, b"), (2, "a, b"));
        check([7, 0, 0, 0], "a b", "", (7, "a, b"), (7, "a, b"));
        check([0, 0, 0, 1], "", "c:pending", (1, "c"), (1, "c"));
        check([0, 0, 1, 0], "", "d:offline", (1, "d"), (0, ""));
        check([0, 1, 0, 0], "", "e:capability_unknown", (1, "e"), (0, ""));
        check(
            [1, 1, 1, 1],
            "a",
            "b:capability_unknown c:offline d:pending",
            (4, "a, b, c, d"),
            (2, "a, d"),
        );
    }

    #[test]
    fn the_wait_stages_again_when_someone_would_be_cut_off() {
        let check = |counts, expected| {
            assert_eq!(restage(&plan(counts, "", "")), expected, "{counts:?}");
        };
        check([0, 0, 0, 0], false);
        check([0, 1, 1, 1], false);
        check([1, 0, 0, 0], true);
        check([9, 0, 0, 3], true);
    }

    #[test]
    fn some_agents_are_named_and_the_rest_counted() {
        let check = |count, ids: &str, named, expected| {
            let some = Agents {
                count,
                ids: ids.split_whitespace().map(str::to_string).collect(),
            };
            assert_eq!(some.some(named), expected, "{count} {ids} {named}");
        };
        check(0, "", 5, "");
        check(2, "a b", 5, "a, b");
        check(9, "a b", 5, "a, b and 7 more");
        check(9, "a b c d e f g", 5, "a, b, c, d, e and 4 more");
        check(3, "a b c", usize::MAX, "a, b, c");
    }

    #[test]
    fn a_listener_is_as_planned_when_it_accepts_exactly_the_planned_versions() {
        let check = |accepted: &str, planned: &str, expected| {
            let words = |text: &str| -> Vec<String> {
                text.split_whitespace().map(str::to_string).collect()
            };
            assert_eq!(
                as_planned(&words(accepted), &words(planned)),
                expected,
                "accepted {accepted} planned {planned}"
            );
        };
        check("TLSv1.2 TLSv1.3", "TLSv1.2 TLSv1.3", true);
        check("TLSv1.3", "TLSv1.3", true);
        check("", "", true);
        check("TLSv1 TLSv1.1 TLSv1.2 TLSv1.3", "TLSv1.2 TLSv1.3", false);
        check("TLSv1.3", "TLSv1.2 TLSv1.3", false);
        check("", "TLSv1.3", false);
        check("SSLv3 TLSv1.2 TLSv1.3", "TLSv1.2 TLSv1.3", false);
    }

    #[test]
    fn verify_names_the_listeners_that_are_not_as_planned() {
        let check = |mismatches: &[&str], expected: Result<(), &str>| {
            assert_eq!(
                verified(mismatches),
                expected.map_err(str::to_string),
                "{mismatches:?}"
            );
        };
        check(&[], Ok(()));
        check(
            &["clients"],
            Err("verify: clients accept(s) other versions than planned; `ward tls rollback` puts the files back"),
        );
        check(
            &["console", "clients"],
            Err("verify: console and clients accept(s) other versions than planned; `ward tls rollback` puts the files back"),
        );
    }

    /// A plan answer as ward-server's `plan_json` writes it.
    fn answer() -> Value {
        json!({
            "protocol": "-all +TLSv1.2 +TLSv1.3",
            "listener": "all",
            "warnings": [],
            "listeners": {
                "clients": {"file": "conf/ssl/sslforclients.conf", "current": ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"],
                            "planned": ["TLSv1.2", "TLSv1.3"], "changes": true, "serves_agents": true},
                "console": {"file": "conf/ssl/ssl.conf", "current": ["TLSv1.2", "TLSv1.3"],
                            "planned": ["TLSv1.2", "TLSv1.3"], "changes": false, "serves_agents": false},
            },
            "offline_intervals": 3,
            "agents": 5,
            "counts": {
                "cut_off": 1, "at_risk": 2, "at_risk_by_reason": {"offline": 1, "pending": 1},
                "unaffected": 2, "unaffected_over_https": 1, "unaffected_over_http": 1,
            },
            "cut_off": [{"id": "a", "group": "Default", "highest": "TLSv1", "versions": ["TLSv1"],
                         "knowledge": "reported", "channel": "https", "tls_version": "TLSv1",
                         "last_checkin": "2025-01-01T00:00:00Z", "serial": 3, "acked_serial": 3,
                         "reason": "speaks TLSv1 at most", "hostname": "xp1"}],
            "at_risk": [
                {"id": "b", "group": "Default", "reason": "silent", "risk": "offline", "hostname": null},
                {"id": "c", "group": null, "reason": "moved", "risk": "pending", "hostname": "c1"},
            ],
            "ok": false,
        })
    }

    #[test]
    fn the_plan_is_read_from_what_the_server_sends() {
        let plan = Plan::read(&answer()).unwrap();
        assert_eq!(plan.agents, 5);
        assert_eq!(plan.listeners.clients.planned, ["TLSv1.2", "TLSv1.3"]);
        assert!(plan.listeners.clients.changes && !plan.listeners.console.changes);
        assert_eq!(plan.counts.at_risk_by_reason.capability_unknown, 0);
        assert_eq!(plan.counts.at_risk_by_reason.offline, 1);
        assert_eq!(plan.cut_off[0].hostname.as_deref(), Some("xp1"));
        assert_eq!(plan.at_risk[0].agent.hostname, None);
        assert_eq!(plan.at_risk[1].agent.group, None);
        assert_eq!(plan.at_risk[1].risk, Risk::Pending);
        assert!(!plan.ok);
    }

    #[test]
    fn a_plan_missing_what_harden_reads_is_refused_by_name() {
        // (where, what is done there, the error)
        let check = |pointer: &str, change: Option<Value>, expected: Result<(), &str>| {
            let mut answer = answer();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            let parent = answer.pointer_mut(parent).unwrap();
            match &change {
                Some(value) => parent[key] = value.clone(),
                None => match parent {
                    Value::Object(map) => drop(map.remove(key)),
                    Value::Array(items) => drop(items.remove(key.parse::<usize>().unwrap())),
                    _ => unreachable!(),
                },
            }
            assert_eq!(
                Plan::read(&answer).map(drop),
                expected.map_err(str::to_string),
                "{pointer} {change:?}"
            );
        };
        check("/counts/at_risk_by_reason/offline", None, Ok(()));
        check("/counts/at_risk_by_reason/someday", Some(json!(4)), Ok(()));
        check("/cut_off/0/someday", Some(json!("new")), Ok(()));
        check("/someday", Some(json!({})), Ok(()));
        check("/at_risk/0/hostname", None, Ok(()));
        check(
            "/counts/cut_off",
            None,
            Err("the server's plan: counts: missing field `cut_off`"),
        );
        check(
            "/counts/at_risk_by_reason",
            None,
            Err("the server's plan: counts: missing field `at_risk_by_reason`"),
        );
        check(
            "/counts/cut_off",
            Some(json!(-1)),
            Err("the server's plan: counts: invalid value: integer `-1`, expected u64"),
        );
        check("/counts", None, Err("the server's plan has no `counts`"));
        check("/cut_off", None, Err("the server's plan has no `cut_off`"));
        check(
            "/cut_off/0/id",
            None,
            Err("the server's plan: cut_off: missing field `id`"),
        );
        check(
            "/at_risk/1/risk",
            None,
            Err("the server's plan: at_risk: missing field `risk`"),
        );
        check("/at_risk/1/risk", Some(json!("bored")), Err("the server's plan: at_risk: unknown variant `bored`, expected one of `capability_unknown`, `offline`, `pending`"));
        check(
            "/listeners/clients",
            None,
            Err("the server's plan: listeners: missing field `clients`"),
        );
        check(
            "/listeners/console/planned",
            None,
            Err("the server's plan: listeners: missing field `planned`"),
        );
        check("/ok", None, Err("the server's plan has no `ok`"));
    }

    #[test]
    fn listeners_are_reached_where_the_client_reaches_the_server() {
        for (reported, host, expected) in [
            ("0.0.0.0:8443", "mgr1.example.com", "mgr1.example.com:8443"),
            ("0.0.0.0:8443", "127.0.0.1", "127.0.0.1:8443"),
            ("[::]:8443", "::1", "[::1]:8443"),
            ("192.0.2.7:8443", "mgr1", "192.0.2.7:8443"),
            ("[2001:db8::7]:443", "mgr1", "[2001:db8::7]:443"),
        ] {
            assert_eq!(
                reachable(reported, host).as_deref(),
                Ok(expected),
                "{reported} via {host}"
            );
        }
        assert!(reachable("not an address", "mgr1").is_err());
    }

    #[test]
    fn polls_back_off_with_the_size_of_the_answer() {
        for (took_ms, pause_ms) in [(0, 500), (40, 500), (125, 500), (700, 2800), (2000, 8000)] {
            assert_eq!(
                poll_pause(Duration::from_millis(took_ms)),
                Duration::from_millis(pause_ms),
                "{took_ms} ms"
            );
        }
    }
}
