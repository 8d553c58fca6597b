//! The plans' answers (ward-api's types): an agent's line with its reason, the agents' part
//! of a plan, a guard's plan of who would lose their last path, and the words for what a
//! replayed stack is served or refused.

use std::collections::HashMap;

use ward_api::tls::{AgentLine, GuardPlan, Impact as ImpactAnswer};
use ward_plan::reach::{self, AgentFacts, Verdict};
use ward_store::{AgentTls, Store};

use super::fleet::{facts, rank_version, Fleet};
use super::judge;
use super::Impact;
use crate::api::ApiError;

/// One agent's line in a plan or readiness answer.
pub(crate) fn agent_line(fleet: &Fleet, agent: &AgentTls, facts: &AgentFacts) -> AgentLine {
    AgentLine {
        id: agent.id.clone(),
        group: fleet.tree.path(agent.group),
        highest: facts.capability.highest().map(|v| v.name().to_string()),
        versions: facts
            .capability
            .versions
            .iter()
            .map(|v| v.name().to_string())
            .collect(),
        knowledge: Some(facts.capability.knowledge.name().to_string()),
        channel: agent
            .https
            .map(|https| if https { "https" } else { "http" }.to_string()),
        tls_version: agent
            .negotiated
            .and_then(rank_version)
            .map(|v| v.name().to_string()),
        last_checkin: agent.last_checkin_ms.map(crate::api::time),
        serial: Some(agent.serial),
        acked_serial: Some(agent.acked_serial),
        evidence: Some(
            match (facts.replayed, &agent.hello) {
                (Some(_), Some(_)) => "replayed",
                // Only the hello its stack reports of itself: never seen over TLS.
                (Some(_), None) => "self_reported",
                (None, _) => facts.capability.knowledge.name(),
            }
            .to_string(),
        ),
        ..AgentLine::default()
    }
}

/// One agent's line with its reason, as plans list it.
fn reasoned_line(impact: &Impact, index: usize, verdict: &Verdict, now: i64) -> AgentLine {
    let fleet = &impact.fleet;
    let agent = &fleet.agents[index];
    let facts = facts(fleet, agent, now);
    let group = fleet.group_facts(agent.group);
    let mut line = agent_line(fleet, agent, &facts);
    let mut reason = reach::explain(&facts, group, impact.clients_for(agent), verdict);
    replay_words(fleet, agent, &facts, &mut reason);
    line.reason = Some(reason);
    line
}

/// What a replay adds to an agent's reason: the replay's own words (what the stack offers,
/// and why OpenSSL refuses it), and whose hello it was when ward never saw the agent over
/// TLS (the one its stack reports of itself).
pub(crate) fn replay_words(
    fleet: &Fleet,
    agent: &AgentTls,
    facts: &AgentFacts,
    reason: &mut String,
) {
    if let Some(refusal) = super::fleet::replay_key(agent).and_then(|h| fleet.refusals.get(h)) {
        reason.push_str(": ");
        reason.push_str(refusal);
    }
    if agent.hello.is_none() && agent.reported_hello.is_some() && facts.replayed.is_some() {
        reason.push_str(" (the ClientHello its stack reports of itself: never seen over TLS)");
    }
}

/// The agents' part of a plan: counts, and at most `limit` lines of each of cut off and at
/// risk, every line with its reason. Harden's plan and staging answer in this shape.
pub(crate) fn impact(impact: &Impact, limit: usize, now: i64) -> ImpactAnswer {
    let mut cut_off = Vec::new();
    let mut at_risk = Vec::new();
    for (index, verdict) in &impact.assessment.flagged {
        match verdict {
            Verdict::CutOff if cut_off.len() < limit => {
                cut_off.push(reasoned_line(impact, *index, verdict, now));
            }
            Verdict::AtRisk(risk) if at_risk.len() < limit => {
                let mut line = reasoned_line(impact, *index, verdict, now);
                line.risk = Some(self::risk(*risk));
                at_risk.push(line);
            }
            _ => {}
        }
    }
    let counts = judge::counts(&impact.assessment);
    ImpactAnswer {
        agents: impact.fleet.agents.len(),
        ok: counts.cut_off == 0 && counts.at_risk == 0,
        counts,
        cut_off,
        at_risk,
        untrusted_certificate: impact.untrusted.default.clone(),
    }
}

/// A guard's plan: the agents `after` takes the last path from (`before` gave them one),
/// listed with their reasons (the first 1000), with the other peers judged (`peers`).
pub(crate) fn guard_plan(
    before: &Impact,
    after: &Impact,
    peers: Vec<ward_api::tls::PeerLine>,
    now: i64,
) -> (usize, GuardPlan) {
    let lost = judge::lost(
        (&before.fleet, &before.assessment),
        (&after.fleet, &after.assessment),
    );
    let distrusting = lost
        .iter()
        .filter(|(index, _)| {
            let agent = &after.fleet.agents[*index];
            let group = after.fleet.group_facts(agent.group);
            after.clients_for(agent).distrust(group.list).is_some()
        })
        .count();
    let cut_off: Vec<AgentLine> = lost
        .iter()
        .take(1000)
        .map(|(index, verdict)| {
            let mut line = reasoned_line(after, *index, verdict, now);
            line.verdict = Some(verdict.name().to_string());
            line
        })
        .collect();
    let mut message = format!(
        "{} agent(s) would lose their last working path to the server",
        lost.len()
    );
    if distrusting > 0 {
        message.push_str(&format!(
            "; {distrusting} agents do not trust this certificate ({})",
            after
                .untrusted
                .default
                .iter()
                .map(|(host, why)| format!("{host}: {why}"))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    let peers_cut_off = peers.iter().filter(|p| p.verdict == "cut_off").count();
    (
        lost.len(),
        GuardPlan {
            plan_failed: None,
            lost: lost.len(),
            untrusting: Some(distrusting),
            message,
            cut_off,
            untrusted_certificate: Some(after.untrusted.default.clone()),
            counts: Some(judge::counts(&after.assessment)),
            peers: Some(peers),
            peers_cut_off: Some(peers_cut_off),
            simulated_ignored: None,
        },
    )
}

/// A risk as the API names it.
pub(crate) fn risk(risk: reach::Risk) -> ward_api::tls::Risk {
    match risk {
        reach::Risk::Unknown => ward_api::tls::Risk::CapabilityUnknown,
        reach::Risk::Offline => ward_api::tls::Risk::Offline,
        reach::Risk::Pending => ward_api::tls::Risk::Pending,
        reach::Risk::Reverted => ward_api::tls::Risk::Reverted,
    }
}

/// What a plan or readiness says of connections a cap refused (`connection_cap` failures in
/// `failures`): per address, how often, and the agents last seen from it. One line each.
pub(crate) fn cap_refusals(
    fleet: &Fleet,
    failures: &[ward_store::HandshakeFailure],
) -> Vec<String> {
    let mut by_address: std::collections::BTreeMap<std::net::IpAddr, (u64, String)> =
        std::collections::BTreeMap::new();
    for failure in failures.iter().filter(|f| f.kind == "connection_cap") {
        let Some(address) = peer_address(&failure.peer) else {
            continue;
        };
        let entry = by_address
            .entry(address)
            .or_insert_with(|| (0, failure.reason.clone()));
        entry.0 += 1;
    }
    by_address
        .into_iter()
        .map(|(address, (count, reason))| {
            let agents: Vec<&str> = fleet
                .agents
                .iter()
                .filter(|a| a.peer.map(|p| p.to_canonical()) == Some(address))
                .map(|a| a.id.as_str())
                .collect();
            let behind = match agents.len() {
                0 => "no agent was last seen from it".to_string(),
                n => format!(
                    "{n} agent(s) were last seen from it: {}{}",
                    agents[..n.min(5)].join(", "),
                    if n > 5 { ", ..." } else { "" }
                ),
            };
            format!("{count} connection(s) from {address} {reason}; {behind}")
        })
        .collect()
}

/// The IP address of `ip:port` (or of a bare address).
fn peer_address(peer: &str) -> Option<std::net::IpAddr> {
    peer.parse::<std::net::SocketAddr>()
        .map(|s| s.ip())
        .or_else(|_| peer.parse())
        .ok()
        .map(|ip| ip.to_canonical())
}

/// Fills in the host name of every line, in one store read.
pub(crate) fn fill_hostnames(
    store: &dyn Store,
    lines: &mut [&mut Vec<AgentLine>],
) -> Result<(), ApiError> {
    let ids: Vec<String> = lines
        .iter()
        .flat_map(|lines| lines.iter().map(|line| line.id.clone()))
        .collect();
    let names: HashMap<String, String> = store.hostnames(&ids)?;
    for lines in lines.iter_mut() {
        for line in lines.iter_mut() {
            line.hostname = names.get(&line.id).cloned();
            // A reverted agent's line says what it reported: the serial and each failure.
            if line.risk == Some(ward_api::tls::Risk::Reverted) {
                if let Some(revert) = store.agent(&line.id)?.and_then(|a| a.reverted) {
                    let reason = line.reason.get_or_insert_with(String::new);
                    reason.push_str(&format!(
                        "; it reverted serial {}: {}",
                        revert.serial, revert.reason
                    ));
                }
            }
        }
    }
    Ok(())
}

/// "would be served TLSv1.2 with ECDHE-RSA-AES128-GCM-SHA256 (X25519, the RSA certificate)".
pub(crate) fn served_words(
    version: ward_tls::TlsVersion,
    cipher: &str,
    group: Option<&str>,
    certificate: Option<&str>,
) -> String {
    let mut how = Vec::new();
    how.push(group.unwrap_or("RSA key exchange").to_string());
    if let Some(key) = certificate {
        how.push(format!("the {key} certificate"));
    }
    format!(
        "would be served {version} with {cipher} ({})",
        how.join(", ")
    )
}

/// "offers only TLSv1, with RSA key exchange 4, 3DES 1; the proposed listener refuses it: no
/// shared cipher".
pub(crate) fn refused_words(hello: &[u8], reason: &str) -> String {
    match ward_tls::hello::parse_client_hello(hello) {
        Ok(parsed) => format!(
            "{}; the proposed listener refuses it: {reason}",
            ward_tls::hello::describe_offer(&parsed)
        ),
        Err(_) => format!("the proposed listener refuses it: {reason}"),
    }
}
