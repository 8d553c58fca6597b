//! `POST /api/v1/tls/plan`: who a proposed `SSLProtocol` value would cut off or put at risk.
//! Agents are judged by what they report and how they last checked in; every peer seen on a
//! listener (`peers`) is judged exactly: its last real ClientHello is replayed in memory
//! through the proposed listener context, and OpenSSL's answer is the verdict.

use super::*;

fn listeners_json(shared: &App, proposal: &Proposal) -> Value {
    let mut out = Map::new();
    for role in [Role::Console, Role::Clients] {
        let current = shared.tls.current(role);
        let planned = proposal.roles.contains(&role);
        let after = if planned {
            proposal.decision.range
        } else {
            current.policy.protocol.range
        };
        out.insert(
            role.name().into(),
            json!({
                "file": current.file.display().to_string(),
                "current": current.policy.protocol.range.versions().map(|v| v.name()).collect::<Vec<_>>(),
                "planned": after.versions().map(|v| v.name()).collect::<Vec<_>>(),
                "changes": planned && after != current.policy.protocol.range,
                "serves_agents": role == Role::Clients,
            }),
        );
    }
    Value::Object(out)
}

#[allow(clippy::too_many_arguments)]
fn plan_json(
    listeners: Value,
    proposal: &Proposal,
    fleet: &Fleet,
    assessment: &Assessment,
    range: VersionRange,
    intervals: u32,
    limit: usize,
    now: i64,
) -> Value {
    let mut cut_off = Vec::new();
    let mut at_risk = Vec::new();
    let mut risks: HashMap<&str, u64> = HashMap::new();
    let (mut cut_count, mut risk_count) = (0u64, 0u64);
    // Only the agents listed get their line and sentence written.
    let line = |index: usize, verdict: &Verdict| {
        let agent = &fleet.agents[index];
        let facts = facts(fleet, agent, now);
        let group = fleet.group_facts(agent.group);
        let mut line = agent_json(fleet, agent, &facts);
        line["reason"] = json!(model::explain(&facts, group, range, verdict));
        line
    };
    for (index, verdict) in &assessment.flagged {
        match verdict {
            Verdict::CutOff => {
                cut_count += 1;
                if cut_off.len() < limit {
                    cut_off.push(line(*index, verdict));
                }
            }
            Verdict::AtRisk(risk) => {
                risk_count += 1;
                *risks.entry(risk.name()).or_default() += 1;
                if at_risk.len() < limit {
                    let mut line = line(*index, verdict);
                    line["risk"] = json!(risk.name());
                    at_risk.push(line);
                }
            }
            Verdict::Unaffected { .. } => {}
        }
    }
    json!({
        "protocol": proposal.words,
        "listener": proposal.listener,
        "warnings": proposal.decision.warnings,
        "listeners": listeners,
        "offline_intervals": intervals,
        "agents": fleet.agents.len(),
        "counts": {
            "cut_off": cut_count,
            "at_risk": risk_count,
            "at_risk_by_reason": risks,
            "unaffected": assessment.unaffected_https + assessment.unaffected_http,
            "unaffected_over_https": assessment.unaffected_https,
            "unaffected_over_http": assessment.unaffected_http,
            "simulated_ignored": assessment.simulated_ignored,
        },
        "cut_off": cut_off,
        "at_risk": at_risk,
        "ok": cut_count == 0 && risk_count == 0,
    })
}

/// Routes `/api/v1/tls/...`. `None` for paths that are not its.
/// Every peer seen on a planned listener since `since_ms`, judged by replaying its last
/// ClientHello through the proposed context: `{listener, address, fingerprint, verdict,
/// reason}`, with `verdict` `unaffected` or `cut_off`.
fn peers_json(
    store: &dyn Store,
    proposed: &[(Role, Result<openssl::ssl::SslContext, String>)],
    since_ms: i64,
) -> Result<Vec<Value>, ApiError> {
    let hellos: HashMap<String, Vec<u8>> = store
        .client_hellos()?
        .into_iter()
        .map(|h| (h.digest, h.bytes))
        .collect();
    let peers = store.hello_peers(since_ms)?;
    let mut verdicts: HashMap<(Role, &str), ward_tls::replay::Verdict> = HashMap::new();
    let mut out = Vec::new();
    for peer in &peers {
        let Some((role, context)) = proposed.iter().find(|(r, _)| r.name() == peer.listener) else {
            continue;
        };
        let (verdict, reason) = match (context, hellos.get(&peer.digest)) {
            (Err(error), _) => (
                "unknown",
                format!("the proposed listener cannot be built: {error}"),
            ),
            (_, None) => (
                "unknown",
                "its ClientHello was not kept (more distinct stacks than the bound)".to_string(),
            ),
            (Ok(context), Some(bytes)) => {
                let verdict = verdicts
                    .entry((*role, peer.digest.as_str()))
                    .or_insert_with(|| ward_tls::replay::replay(context, bytes));
                match verdict {
                    ward_tls::replay::Verdict::Served {
                        version, cipher, ..
                    } => (
                        "unaffected",
                        format!("would be served {version} with {cipher}"),
                    ),
                    ward_tls::replay::Verdict::Refused { reason } => (
                        "cut_off",
                        format!("the proposed listener refuses it: {reason}"),
                    ),
                }
            }
        };
        out.push(json!({
            "listener": peer.listener,
            "address": peer.peer,
            "fingerprint": peer.digest,
            "last_seen": crate::api::time(peer.at_ms),
            "verdict": verdict,
            "reason": reason,
        }));
    }
    Ok(out)
}

pub(super) async fn plan(shared: &App, body: &Bytes) -> ApiResult {
    let body = object(body)?;
    only_keys(
        &body,
        &["protocol", "listener", "offline_intervals", "limit"],
    )?;
    let proposal = Proposal::from_body(&body)?;
    let intervals = offline_intervals(&body)?;
    let limit = limit(&body)?;
    let range = proposal.clients_range(shared);
    let listeners = listeners_json(shared, &proposal);
    let held = held(shared);
    // The proposed listeners, as the server would build them from the changed files.
    let planned: Vec<(Role, ward_tls::TlsPolicy)> = proposal
        .roles
        .iter()
        .map(|role| {
            let mut policy = shared.tls.current(*role).policy.clone();
            policy.protocol = proposal.decision.clone();
            (*role, policy)
        })
        .collect();
    let root = shared.data.root().to_path_buf();
    let clients = proposal.clients_policy(shared);
    let store = shared.store.clone();
    let value = blocking(move || {
        let now = now_ms();
        let proposed: Vec<(Role, Result<openssl::ssl::SslContext, String>)> = planned
            .iter()
            .map(|(role, policy)| {
                (
                    *role,
                    ward_tls::context::build_acceptor(policy, &root).map_err(|e| e.to_string()),
                )
            })
            .collect();
        let peers = peers_json(&*store, &proposed, now - 86_400_000)?;
        let fleet = Fleet::read_replayed(&*store, intervals, held, clients.as_ref())?;
        let assessment = assess(&fleet, range, now);
        let mut value = plan_json(
            listeners,
            &proposal,
            &fleet,
            &assessment,
            range,
            intervals,
            limit,
            now,
        );
        fill_hostnames(&*store, &mut value, &["cut_off", "at_risk"])?;
        value["peers"] = json!(peers);
        Ok(value)
    })
    .await?;
    Ok(json_response(StatusCode::OK, &value))
}
