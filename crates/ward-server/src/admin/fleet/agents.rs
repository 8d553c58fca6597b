//! Agents (the seed's clients): the filtered list with presence (online, held), one agent with
//! its effective settings, moving agents to a group, and retiring them.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use serde_json::{json, Value};
use ward_fleet::{GroupId, Tree};
use ward_proto::now_ms;
use ward_store::{AgentFilter, Change, Mutation, Store};

use super::{limit, ok};
use crate::admin::wire;
use crate::api::{query_pairs, since_ms, typed, ApiError, ApiResult};
use crate::auth::Caller;
use crate::ops::{audit, find_group, tree_of};

/// Whether each agent is online, by the one rule of `ward_fleet::presence`.
struct Presence {
    effective: HashMap<GroupId, ward_fleet::Effective>,
    held: HashSet<String>,
    now: i64,
}

impl Presence {
    fn new(tree: &Tree, held: &HashSet<String>) -> Presence {
        Presence {
            effective: tree.effective_all(),
            held: held.clone(),
            now: now_ms(),
        }
    }

    /// (online, held)
    fn of(&self, agent: &ward_store::AgentRecord) -> (bool, bool) {
        let held = self.held.contains(&agent.id);
        let online = self.effective.get(&agent.group).is_some_and(|effective| {
            ward_fleet::presence::online(effective, agent.last_checkin_ms, held, self.now)
        });
        (online, held)
    }

    fn json(&self, tree: &Tree, agent: &ward_store::AgentRecord) -> Value {
        let (online, held) = self.of(agent);
        wire::agent_json(tree, agent, online, held)
    }
}

fn yes_no(key: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "" | "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::bad_request(format!("{key}: true or false"))),
    }
}

pub(super) fn agents(store: &dyn Store, query: &str, held: &HashSet<String>) -> ApiResult {
    let tree = tree_of(store)?;
    let mut filter = AgentFilter::default();
    let mut online = None;
    for (key, value) in query_pairs(query) {
        match key.as_str() {
            "group" => filter.groups = Some(tree.descendants(find_group(&tree, &value)?)),
            "pending" => filter.pending = yes_no("pending", &value)?,
            "online" => online = Some(yes_no("online", &value)?),
            "tls_max" => {
                let version = ward_tls::TlsVersion::parse_loose(&value).ok_or_else(|| {
                    ApiError::bad_request(format!("tls_max: '{value}' is not a TLS version"))
                })?;
                filter.tls_max = Some(version.name().to_string());
            }
            "silent_for" => {
                filter.offline_before_ms = Some(since_ms(&value).map_err(|_| {
                    ApiError::bad_request(format!(
                        "silent_for: '{value}' is not a duration (e.g. 1h)"
                    ))
                })?)
            }
            "limit" => filter.limit = Some(limit(&value)?),
            other => {
                return Err(ApiError::bad_request(format!(
                "unknown parameter '{other}' (group, pending, online, tls_max, silent_for, limit)"
            )))
            }
        }
    }
    // The online rule is applied here, so the limit counts only the agents it keeps.
    let limit = filter.limit.take().filter(|_| online.is_some());
    if online.is_none() {
        filter.limit = limit;
    }
    let agents = store.agents(&filter)?;
    let presence = Presence::new(&tree, held);
    ok(Value::Array(
        agents
            .iter()
            .filter(|a| online.is_none_or(|wanted| presence.of(a).0 == wanted))
            .take(limit.unwrap_or(usize::MAX))
            .map(|a| presence.json(&tree, a))
            .collect(),
    ))
}

pub(super) fn agent(store: &dyn Store, id: &str, held: &HashSet<String>) -> ApiResult {
    let tree = tree_of(store)?;
    let agent = store
        .agent(id)?
        .ok_or_else(|| ApiError::not_found(format!("no agent '{id}'")))?;
    let mut value = Presence::new(&tree, held).json(&tree, &agent);
    if let Some(effective) = tree.effective(agent.group) {
        value["settings"] = json!({
            "server_list": effective.server_list,
            "interval": crate::config::format_duration(effective.interval),
            "mode": effective.mode.name(),
        });
    }
    ok(value)
}

/// `POST /agents/delete` (read again by `route` to forget the retired agents' keys).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeleteAgents {
    pub(super) ids: Vec<String>,
}

/// Retires agents: they are refused from then on (a retired agent that comes back must
/// enroll again).
pub(super) fn delete_agents(store: &dyn Store, caller: &Caller, body: &Bytes) -> ApiResult {
    let request: DeleteAgents = typed(body)?;
    if request.ids.is_empty() {
        return Err(ApiError::bad_request("'ids' lists no agent"));
    }
    let mut ids = request.ids.clone();
    ids.sort();
    ids.dedup();
    store.apply(&Change {
        mutation: Mutation::DeleteAgents(ids.clone()),
        bump_groups: vec![],
        bump_agents: vec![],
        audit: audit(caller, "agent.delete", ids.join(","), None, None),
    })?;
    ok(json!({"deleted": ids}))
}

/// `POST /agents/move`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveAgents {
    ids: Vec<String>,
    /// The group's path.
    group: String,
    /// Move even agents whose new server list would leave them no path (audited).
    #[serde(default)]
    accept_cut_off: bool,
}

pub(super) fn move_agents(
    store: &dyn Store,
    caller: &Caller,
    body: &Bytes,
    clients: &crate::listener_tls::ListenerTls,
) -> ApiResult {
    let tree = tree_of(store)?;
    let MoveAgents {
        ids,
        group,
        accept_cut_off,
    } = typed(body)?;
    let group = find_group(&tree, &group)?;
    if ids.is_empty() {
        return Err(ApiError::bad_request(
            "'ids' (a non-empty list of agent ids) is required",
        ));
    }
    // No move takes an agent's last path silently, whoever asks: each agent's real
    // ClientHello is replayed through the clients listener serving now.
    let moves: std::collections::HashMap<String, ward_fleet::GroupId> =
        ids.iter().map(|id| (id.clone(), group)).collect();
    let cut = crate::impact::fleet_guard(
        store,
        &clients.context,
        clients.policy.protocol.range,
        crate::impact::FleetEdit {
            tree: None,
            moves: &moves,
        },
    )?;
    if !cut.is_empty() && !accept_cut_off {
        return Err(crate::impact::refuse_fleet_edit(
            &format!("moving them into {}", tree.path(group).unwrap_or_default()),
            &cut,
        ));
    }
    let applied = store.apply(&Change {
        mutation: Mutation::MoveAgents {
            agents: ids.clone(),
            group,
        },
        bump_groups: vec![],
        bump_agents: ids.clone(),
        audit: audit(
            caller,
            "agent.move",
            ids.join(","),
            None,
            Some(json!({
                "group": tree.path(group),
                "accept_cut_off": accept_cut_off,
                "cut_off": cut.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            })),
        ),
    })?;
    ok(json!({"moved": ids, "group": tree.path(group), "serial": applied.serial}))
}
