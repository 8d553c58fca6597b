//! `POST /tls/plan`: who a proposed TLS change (`SSLProtocol`, cipher lists, a certificate, a
//! preset or a whole conf file) would cut off or put at risk. Every agent with a kept
//! ClientHello, and every other peer seen on a planned listener (`peers`), is judged exactly:
//! its real hello is replayed in memory through the proposed listener context, and OpenSSL's
//! answer is the verdict; the certificate is checked as the agents check it.

use std::collections::BTreeMap;

use ward_api::tls::{ListenerPlan, Plan, PlanRequest};

use super::*;
use crate::impact::{exact_with_peers, Running};

/// Per HTTPS listener: its file, the versions it serves now and would serve, and whether the
/// change touches it.
fn listeners(
    shared: &App,
    planned: &[(Role, ward_tls::TlsPolicy)],
) -> BTreeMap<String, ListenerPlan> {
    [Role::Console, Role::Clients]
        .into_iter()
        .map(|role| {
            let current = shared.tls.current(role);
            let after = planned
                .iter()
                .find(|(r, _)| *r == role)
                .map(|(_, policy)| policy);
            let range = after.unwrap_or(&current.policy).protocol.range;
            let names = |range: ward_tls::VersionRange| {
                range.versions().map(|v| v.name().to_string()).collect()
            };
            (
                role.name().to_string(),
                ListenerPlan {
                    file: current.file.display().to_string(),
                    current: names(current.policy.protocol.range),
                    planned: names(range),
                    changes: after.is_some_and(|policy| *policy != current.policy),
                    serves_agents: role == Role::Clients,
                },
            )
        })
        .collect()
}

/// The exact plan of a proposed change.
pub async fn plan(shared: &App, request: PlanRequest) -> Result<Plan, ApiError> {
    let intervals = offline_intervals(request.offline_intervals)?;
    let limit = limit(request.limit)?;
    let proposal = Proposal::from_request(request.change())?;
    let planned = proposal.planned(shared)?;
    let listeners = listeners(shared, &planned);
    let held = held(shared);
    let running = Running::clients(shared);
    let root = shared.data.root().to_path_buf();
    let store = shared.store.clone();
    blocking(move || {
        let now = now_ms();
        let (impact, peers) = exact_with_peers(
            &*store,
            &root,
            &running,
            &planned,
            intervals,
            held,
            now,
            now - 86_400_000,
        )?;
        // Agents a connection cap refused in the last day: the plan cannot see them now.
        let refused = store.recent_failures(now - 86_400_000, 10_000)?;
        let capped = crate::impact::render::cap_refusals(&impact.fleet, &refused);
        let mut impact = crate::impact::render::impact(&impact, limit, now);
        fill_hostnames(&*store, &mut [&mut impact.cut_off, &mut impact.at_risk])?;
        let mut warnings = proposal
            .decision
            .as_ref()
            .map(|d| d.warnings.clone())
            .unwrap_or_default();
        warnings.extend(capped);
        Ok(Plan {
            impact,
            protocol: proposal.words.clone(),
            change: proposal.change.summary(),
            listener: proposal.listener.clone(),
            warnings,
            listeners,
            offline_intervals: intervals,
            peers,
        })
    })
    .await
}
