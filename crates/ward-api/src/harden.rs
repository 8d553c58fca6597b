//! What a client of the harden engine decides, pure: from the server's plan (the type the
//! server writes), which agents are at a risk harden cannot help, whether harden may start,
//! what the wait step still waits for (with or without accepting risk), whether to stage
//! again, whether verify's scan of a listener matches the plan, where to reach a listener and
//! how long to pause between questions. `ward tls harden` and the console's harden wizard
//! both decide by it; their I/O (the admin API, the scanner, the terminal, the browser) stays
//! with them.

use std::net::SocketAddr;
use std::time::Duration;

pub use crate::server::SiteServer;
pub use crate::tls::{AgentLine, HardenState, ListenerChoice, Plan, Risk, TlsChange};

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

/// The agents at a risk harden cannot help: capability unknown, offline, or reverted.
pub fn beyond_help(plan: &Plan) -> Agents {
    let counts = &plan.impact.counts;
    Agents {
        count: counts.at_risk_for(Risk::CapabilityUnknown)
            + counts.at_risk_for(Risk::Offline)
            + counts.at_risk_for(Risk::Reverted),
        ids: at_risk_ids(plan, |risk| !risk.harden_can_help()),
    }
}

/// Why the wait step stops at once: agents went back to their last working settings (their
/// new settings cut them off, so waiting cannot bring them), each with its reason.
pub fn reverted(plan: &Plan) -> Option<String> {
    let lines: Vec<String> = plan
        .impact
        .at_risk
        .iter()
        .filter(|a| a.risk == Some(Risk::Reverted))
        .map(|a| match &a.reason {
            Some(reason) => format!("{} ({reason})", a.id),
            None => a.id.clone(),
        })
        .collect();
    let count = plan.impact.counts.at_risk_for(Risk::Reverted);
    (count > 0).then(|| {
        format!(
            "{count} agent(s) reverted to the last settings that worked: {}",
            lines.join("; ")
        )
    })
}

/// Whether harden may start: not while agents it cannot help are at risk, unless
/// `--accept-risk`. The refusal names them.
pub fn may_start(plan: &Plan, accept_risk: bool) -> Result<(), String> {
    let risky = beyond_help(plan);
    if risky.count == 0 || accept_risk {
        return Ok(());
    }
    Err(format!(
        "{} agent(s) at risk that harden cannot bring along (capability unknown, offline, or \
         reverted to settings their group no longer has): {}; nothing was changed. Bring them \
         online, or rerun with --accept-risk",
        risky.count,
        risky.some(usize::MAX)
    ))
}

/// Whether the wait step stages again: someone (enrolled meanwhile) would be cut off.
/// Staging twice is harmless.
pub fn restage(plan: &Plan) -> bool {
    plan.impact.counts.cut_off > 0
}

/// The agents the wait step is for: moved (or still to be moved) and not yet acknowledged.
/// Without `--accept-risk` that includes agents that went silent or unknown meanwhile (at the
/// start there were none, or harden stopped): TLS is not touched while they would be lost.
pub fn waiting_for(plan: &Plan, accept_risk: bool) -> Agents {
    let counts = &plan.impact.counts;
    let mut count = counts.cut_off + counts.at_risk_for(Risk::Pending);
    let mut ids: Vec<String> = plan.impact.cut_off.iter().map(|a| a.id.clone()).collect();
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
    plan.impact
        .at_risk
        .iter()
        .filter(|a| a.risk.is_some_and(&keep))
        .map(|a| a.id.clone())
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

/// The agents silent on both of two servers' readiness (`silent_since`): on a site, an agent
/// whose push check-in one server holds is heard from, though the others do not hold it.
pub fn silent_on_both(first: Vec<AgentLine>, second: &[AgentLine]) -> Vec<AgentLine> {
    first
        .into_iter()
        .filter(|agent| second.iter().any(|other| other.id == agent.id))
        .collect()
}

/// One of the site's other servers that a harden or rollback acts on: its name, where its
/// console is reached, and the name its certificate carries (its host name).
#[derive(Debug, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub address: String,
    pub host: String,
}

/// Which of the site's servers besides the one this command talks to a harden or rollback
/// acts on (`servers` as `GET /servers` lists them), with `excluded` (`--exclude NAME`) left
/// out. Refused, before anything changes: an excluded name that is no other server of the
/// site, and a server that is not alive (the site would be left half done).
pub fn members(servers: &[SiteServer], excluded: &[String]) -> Result<Vec<Member>, String> {
    let names = || {
        servers
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for name in excluded {
        match servers.iter().find(|s| &s.name == name) {
            None => {
                return Err(format!(
                    "--exclude {name}: no server of that name on the site (its servers: {})",
                    names()
                ))
            }
            Some(server) if server.this => {
                return Err(format!(
                    "--exclude {name}: that is the server this command talks to; run it \
                     through another server of the site"
                ))
            }
            Some(_) => {}
        }
    }
    let mut members = Vec::new();
    for server in servers
        .iter()
        .filter(|s| !s.this && !excluded.contains(&s.name))
    {
        if !server.alive {
            return Err(format!(
                "server {name} is not alive (last heartbeat {at}), so its listeners cannot be \
                 changed with the others': nothing was changed. Start it again, or leave it \
                 out with --exclude {name} (its listeners then stay as they are)",
                name = server.name,
                at = server.last_heartbeat
            ));
        }
        let console = server
            .listeners
            .iter()
            .find(|l| l.role == "console")
            .ok_or_else(|| format!("server {}: no console listener on record", server.name))?;
        let (host, _) = server
            .name
            .rsplit_once(':')
            .ok_or_else(|| format!("server {}: its name has no console port", server.name))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        members.push(Member {
            name: server.name.clone(),
            address: reachable(&console.address, &host)?,
            host,
        });
    }
    Ok(members)
}

/// The change a recorded harden makes (its state as the server keeps it): what resuming it,
/// planning it again while it waits, and applying it send.
pub fn change_of(state: &HardenState) -> TlsChange {
    let listener = match state.listener.as_str() {
        "clients" => ListenerChoice::Clients,
        "console" => ListenerChoice::Console,
        _ => ListenerChoice::All,
    };
    let (certificate, key) = match &state.certificate {
        Some((certificate, key)) => (Some(certificate.clone()), Some(key.clone())),
        None => (None, None),
    };
    TlsChange {
        protocol: Some(state.protocol.clone()).filter(|words| !words.is_empty()),
        cipher_suite: state.cipher_suite.clone(),
        cipher_suite_tls13: state.cipher_suite_tls13.clone(),
        certificate,
        key,
        listener: Some(listener),
        ..TlsChange::default()
    }
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
            ..AgentLine::default()
        };
        let by_reason = [
            (Risk::CapabilityUnknown, unknown),
            (Risk::Offline, offline),
            (Risk::Pending, pending),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
        Plan {
            impact: crate::tls::Impact {
                agents: 100,
                counts: crate::tls::Counts {
                    cut_off: cut,
                    at_risk: unknown + offline + pending,
                    at_risk_by_reason: by_reason,
                    ..Default::default()
                },
                cut_off: cut_off.split_whitespace().map(line).collect(),
                at_risk: at_risk
                    .split_whitespace()
                    .map(|entry| {
                        let (id, risk) = entry.split_once(':').unwrap();
                        AgentLine {
                            risk: Some(serde_json::from_value(json!(risk)).unwrap()),
                            ..line(id)
                        }
                    })
                    .collect(),
                untrusted_certificate: Default::default(),
                ok: cut + unknown + offline + pending == 0,
            },
            protocol: String::new(),
            change: String::new(),
            listener: "all".into(),
            warnings: Vec::new(),
            listeners: Default::default(),
            offline_intervals: 3,
            peers: Vec::new(),
        }
    }

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
                "4 agent(s) at risk that harden cannot bring along (capability unknown, \
                 offline, or reverted to settings their group no longer has): a, b and 2 more; \
                 nothing was changed. Bring them online, or rerun with --accept-risk",
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

    fn server(name: &str, this: bool, alive: bool, console: &str) -> SiteServer {
        SiteServer {
            name: name.into(),
            this,
            alive,
            version: "0".into(),
            started: "2026-12-05T00:00:00Z".into(),
            last_heartbeat: "2026-12-05T00:00:00Z".into(),
            listeners: vec![crate::server::SiteListener {
                role: "console".into(),
                address: console.into(),
                tls: "TLSv1.2-TLSv1.3".into(),
            }],
        }
    }

    #[test]
    fn a_site_harden_acts_on_every_other_live_server_unless_excluded() {
        let site = [
            server("mgr1:8445", true, true, "0.0.0.0:8445"),
            server("mgr2:8445", false, true, "0.0.0.0:8445"),
            server("mgr3:9445", false, false, "10.0.0.3:9445"),
            server("[fd00::4]:8445", false, true, "[::]:8445"),
        ];
        let excluded = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        // (excluded, the members as (name, address, host), or the start of the refusal)
        type Expected = Result<&'static [(&'static str, &'static str, &'static str)], &'static str>;
        let table: &[(&[&str], Expected)] = &[
            // A server that is down stops it, by name, with the way out.
            (&[], Err("server mgr3:9445 is not alive")),
            (
                &["mgr3:9445"],
                Ok(&[
                    ("mgr2:8445", "mgr2:8445", "mgr2"),
                    ("[fd00::4]:8445", "[fd00::4]:8445", "fd00::4"),
                ]),
            ),
            (&["mgr3:9445", "mgr2:8445", "[fd00::4]:8445"], Ok(&[])),
            // Only the site's other servers can be left out.
            (
                &["mgr9:8445"],
                Err("--exclude mgr9:8445: no server of that name"),
            ),
            (
                &["mgr1:8445"],
                Err("--exclude mgr1:8445: that is the server this command"),
            ),
        ];
        for (names, expected) in table {
            let got = members(&site, &excluded(names));
            match (got, expected) {
                (Ok(got), Ok(expected)) => {
                    let got: Vec<(&str, &str, &str)> = got
                        .iter()
                        .map(|m| (m.name.as_str(), m.address.as_str(), m.host.as_str()))
                        .collect();
                    assert_eq!(&got, expected, "{names:?}");
                }
                (Err(got), Err(expected)) => {
                    assert!(got.starts_with(expected), "{names:?}: {got}");
                }
                (got, expected) => panic!("{names:?}: {got:?}, expected {expected:?}"),
            }
        }
        let down = members(&site, &[]).unwrap_err();
        assert!(
            down.contains("nothing was changed") && down.contains("--exclude mgr3:9445"),
            "{down}"
        );
        // A site of one server (or a server alone on its database): nobody else.
        assert_eq!(members(&site[..1], &[]), Ok(vec![]));
        assert_eq!(members(&[], &[]), Ok(vec![]));
        // A listener on one address is reached there; its certificate still by host name.
        let bound = [server("mgr5:8445", false, true, "10.0.0.5:8445")];
        assert_eq!(
            members(&bound, &[]),
            Ok(vec![Member {
                name: "mgr5:8445".into(),
                address: "10.0.0.5:8445".into(),
                host: "mgr5".into(),
            }])
        );
    }

    #[test]
    fn an_agent_is_silent_on_a_site_only_when_silent_on_every_server() {
        let lines = |ids: &str| -> Vec<AgentLine> {
            ids.split_whitespace()
                .map(|id| AgentLine {
                    id: id.into(),
                    ..AgentLine::default()
                })
                .collect()
        };
        let ids = |agents: Vec<AgentLine>| {
            agents
                .into_iter()
                .map(|a| a.id)
                .collect::<Vec<_>>()
                .join(" ")
        };
        // (silent on the first server, on the second, on the site)
        let table = [
            ("a b c", "a b c", "a b c"),
            // b is held on the second server: heard from.
            ("a b c", "a c", "a c"),
            ("a", "", ""),
            ("", "a", ""),
        ];
        for (first, second, site) in table {
            assert_eq!(
                ids(silent_on_both(lines(first), &lines(second))),
                site,
                "{first} / {second}"
            );
        }
    }

    #[test]
    fn a_recorded_harden_is_the_change_it_makes() {
        let state = |protocol: &str, listener: &str, suite: Option<&str>| HardenState {
            protocol: protocol.into(),
            cipher_suite: suite.map(str::to_string),
            listener: listener.into(),
            ..HardenState::default()
        };
        let cases = [
            (
                state("-all +TLSv1.2", "clients", None),
                Some("-all +TLSv1.2"),
                ListenerChoice::Clients,
                None,
            ),
            (
                state("TLSv1.3", "console", None),
                Some("TLSv1.3"),
                ListenerChoice::Console,
                None,
            ),
            (
                state("", "all", Some("ECDHE+AESGCM")),
                None,
                ListenerChoice::All,
                Some("ECDHE+AESGCM"),
            ),
        ];
        for (recorded, protocol, listener, suite) in cases {
            let change = change_of(&recorded);
            assert_eq!(change.protocol.as_deref(), protocol, "{recorded:?}");
            assert_eq!(change.listener, Some(listener), "{recorded:?}");
            assert_eq!(change.cipher_suite.as_deref(), suite, "{recorded:?}");
            assert_eq!(change.preset, None);
        }
        let mut with_pair = state("TLSv1.2", "all", None);
        with_pair.certificate = Some(("/c.pem".into(), "/k.pem".into()));
        let change = change_of(&with_pair);
        assert_eq!(
            (change.certificate.as_deref(), change.key.as_deref()),
            (Some("/c.pem"), Some("/k.pem"))
        );
    }
}
