//! Judging the fleet, pure: each agent's verdict under a proposed clients listener
//! (`ward_plan::reach`), the agents a change would take the last path from (flagged after and
//! not before), and the counts. No store, no OpenSSL: the fleet is read and replayed by
//! [`super::fleet`]; table-tested below.

use std::collections::{BTreeMap, HashSet};

use ward_api::tls::Counts;
use ward_plan::reach::{self, Clients, Risk, Verdict, Via};
use ward_tls::VersionRange;

use super::fleet::{facts, Fleet};
use super::Untrusted;

/// Each agent's verdict under `range`: the full answer for the plan and for staging.
pub(crate) struct Assessment {
    /// (index into `fleet.agents`, verdict) for every agent that is not unaffected, by id.
    pub flagged: Vec<(usize, Verdict)>,
    pub unaffected_https: u64,
    pub unaffected_http: u64,
    /// Simulated agents (a rehearsal's leftovers) that are offline or of unknown capability:
    /// not real machines, so they block nothing.
    pub simulated_ignored: u64,
}

pub(crate) fn assess(
    fleet: &Fleet,
    range: VersionRange,
    untrusted: &Untrusted,
    now: i64,
) -> Assessment {
    let mut assessment = Assessment {
        flagged: Vec::new(),
        unaffected_https: 0,
        unaffected_http: 0,
        simulated_ignored: 0,
    };
    for (index, agent) in fleet.agents.iter().enumerate() {
        let facts = facts(fleet, agent, now);
        let group = fleet.group_facts(agent.group);
        let clients = Clients {
            range,
            untrusted: untrusted.for_agent(agent, fleet.served(agent)),
        };
        match reach::judge(&facts, group, clients) {
            Verdict::Unaffected { via: Via::Https } => assessment.unaffected_https += 1,
            Verdict::Unaffected { via: Via::Http } => assessment.unaffected_http += 1,
            Verdict::AtRisk(Risk::Offline | Risk::Unknown) if agent.simulated => {
                assessment.simulated_ignored += 1
            }
            verdict => assessment.flagged.push((index, verdict)),
        }
    }
    // Stable output: by id (the store reads in storage order).
    assessment
        .flagged
        .sort_by(|a, b| fleet.agents[a.0].id.cmp(&fleet.agents[b.0].id));
    assessment
}

/// The agents `after` flags that `before` did not (they lose their last path): indices into
/// `after`'s fleet with their verdicts, by id.
pub(crate) fn lost<'a>(
    before: (&Fleet, &Assessment),
    after: (&Fleet, &'a Assessment),
) -> Vec<&'a (usize, Verdict)> {
    let flagged_before: HashSet<&str> = before
        .1
        .flagged
        .iter()
        .map(|(index, _)| before.0.agents[*index].id.as_str())
        .collect();
    after
        .1
        .flagged
        .iter()
        .filter(|(index, _)| !flagged_before.contains(after.0.agents[*index].id.as_str()))
        .collect()
}

/// The agents by verdict.
pub(crate) fn counts(assessment: &Assessment) -> Counts {
    let mut counts = Counts {
        unaffected: assessment.unaffected_https + assessment.unaffected_http,
        unaffected_over_https: assessment.unaffected_https,
        unaffected_over_http: assessment.unaffected_http,
        simulated_ignored: assessment.simulated_ignored,
        at_risk_by_reason: BTreeMap::new(),
        ..Counts::default()
    };
    for (_, verdict) in &assessment.flagged {
        match verdict {
            Verdict::CutOff => counts.cut_off += 1,
            Verdict::AtRisk(risk) => {
                counts.at_risk += 1;
                *counts
                    .at_risk_by_reason
                    .entry(super::render::risk(*risk))
                    .or_default() += 1;
            }
            Verdict::Unaffected { .. } => {}
        }
    }
    counts
}

#[cfg(test)]
mod tests;
