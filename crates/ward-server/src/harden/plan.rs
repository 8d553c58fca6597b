//! `POST /api/v1/tls/plan`: who a proposed TLS change (`SSLProtocol`, cipher lists, a
//! certificate, a preset or a whole conf file) would cut off or put at risk. Every agent with
//! a kept ClientHello, and every other peer seen on a planned listener (`peers`), is judged
//! exactly: its real hello is replayed in memory through the proposed listener context, and
//! OpenSSL's answer is the verdict; the certificate is checked as the agents check it.

use super::*;
use crate::impact::{exact_with_peers, impact_json, Running};

/// Per HTTPS listener: its file, the versions it serves now and would serve, and whether the
/// change touches it.
fn listeners_json(shared: &App, planned: &[(Role, ward_tls::TlsPolicy)]) -> Value {
    let mut out = Map::new();
    for role in [Role::Console, Role::Clients] {
        let current = shared.tls.current(role);
        let after = planned
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, policy)| policy);
        let range = after.unwrap_or(&current.policy).protocol.range;
        out.insert(
            role.name().into(),
            json!({
                "file": current.file.display().to_string(),
                "current": current.policy.protocol.range.versions().map(|v| v.name()).collect::<Vec<_>>(),
                "planned": range.versions().map(|v| v.name()).collect::<Vec<_>>(),
                "changes": after.is_some_and(|policy| *policy != current.policy),
                "serves_agents": role == Role::Clients,
            }),
        );
    }
    Value::Object(out)
}

pub(super) async fn plan(shared: &App, body: &Bytes) -> ApiResult {
    let body = object(body)?;
    only_keys(
        &body,
        &[PROPOSAL_KEYS, &["offline_intervals", "limit"]].concat(),
    )?;
    let proposal = Proposal::from_body(&body)?;
    let intervals = offline_intervals(&body)?;
    let limit = limit(&body)?;
    let planned = proposal.planned(shared)?;
    let listeners = listeners_json(shared, &planned);
    let held = held(shared);
    let running = Running::clients(shared);
    let root = shared.data.root().to_path_buf();
    let store = shared.store.clone();
    let value = blocking(move || {
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
        let mut value = impact_json(&impact, limit, now);
        fill_hostnames(&*store, &mut value, &["cut_off", "at_risk"])?;
        value["protocol"] = json!(proposal.words);
        value["change"] = json!(proposal.change.summary());
        value["listener"] = json!(proposal.listener);
        value["warnings"] = json!(proposal
            .decision
            .as_ref()
            .map(|d| d.warnings.clone())
            .unwrap_or_default());
        value["listeners"] = listeners;
        value["offline_intervals"] = json!(intervals);
        value["peers"] = json!(peers);
        Ok(value)
    })
    .await?;
    Ok(json_response(StatusCode::OK, &value))
}
