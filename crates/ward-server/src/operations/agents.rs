//! Agents (the seed's clients): the filtered list with presence (online, held), one agent with
//! its group's settings, moving agents to a group (guarded), and retiring them.

use std::collections::{HashMap, HashSet};

use ward_api::fleet::{
    Agent, AgentSettings, AgentsQuery, DeleteAgents, DeletedAgents, MoveAgents, MovedAgents,
};
use ward_fleet::{GroupId, Tree};
use ward_proto::now_ms;
use ward_store::{AgentFilter, Change, Mutation, StoreError};

use super::{read, render, write, MAX_LIMIT};
use crate::api::{since_ms, ApiError};
use crate::auth::Caller;
use crate::ops::{audit, find_group, referenced_group, tree_of};
use crate::state::App;

/// Whether each agent is online, by the one rule of `ward_fleet::presence`.
struct Presence<'a> {
    effective: HashMap<GroupId, ward_fleet::Effective>,
    held: &'a HashSet<String>,
    now: i64,
}

impl<'a> Presence<'a> {
    fn new(tree: &Tree, held: &'a HashSet<String>) -> Presence<'a> {
        Presence {
            effective: tree.effective_all(),
            held,
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

    fn render(&self, tree: &Tree, agent: &ward_store::AgentRecord) -> Agent {
        let (online, held) = self.of(agent);
        render::agent(tree, agent, online, held)
    }
}

/// `GET /agents`: the agents the filters keep.
pub async fn list(app: &App, query: AgentsQuery) -> Result<Vec<Agent>, ApiError> {
    read(app, move |ctx| {
        let store = ctx.store();
        let tree = tree_of(store)?;
        let mut filter = AgentFilter::default();
        if let Some(group) = &query.group {
            filter.groups = Some(tree.descendants(find_group(&tree, group)?));
        }
        filter.pending = query.pending.unwrap_or(false);
        filter.tls_max = query.tls_max.map(|v| v.name().to_string());
        if let Some(silent_for) = &query.silent_for {
            filter.offline_before_ms = Some(since_ms(silent_for).map_err(|_| {
                ApiError::bad_request(format!(
                    "silent_for: '{silent_for}' is not a duration (e.g. 1h)"
                ))
            })?);
        }
        let limit = match query.limit {
            Some(limit) if !(1..=MAX_LIMIT).contains(&limit) => {
                return Err(ApiError::bad_request(format!(
                    "limit: a number from 1 to {MAX_LIMIT}"
                )))
            }
            limit => limit,
        };
        // The online rule is applied here, so the limit counts only the agents it keeps.
        if query.online.is_none() {
            filter.limit = limit;
        }
        let agents = store.agents(&filter)?;
        let presence = Presence::new(&tree, &ctx.held);
        Ok(agents
            .iter()
            .filter(|a| query.online.is_none_or(|wanted| presence.of(a).0 == wanted))
            .take(limit.unwrap_or(usize::MAX))
            .map(|a| presence.render(&tree, a))
            .collect())
    })
    .await
}

/// `GET /agents/{id}`: the agent and what its group gives it.
pub async fn get(app: &App, id: String) -> Result<Agent, ApiError> {
    read(app, move |ctx| {
        let tree = tree_of(ctx.store())?;
        let agent = ctx
            .store()
            .agent(&id)?
            .ok_or_else(|| ApiError::not_found(format!("no agent '{id}'")))?;
        let mut answer = Presence::new(&tree, &ctx.held).render(&tree, &agent);
        answer.settings = tree.effective(agent.group).map(|effective| AgentSettings {
            server_list: effective.server_list.clone(),
            interval: ward_proto::duration::format(effective.interval),
            mode: render::mode(effective.mode),
        });
        Ok(answer)
    })
    .await
}

/// An agent the body names that the store does not know: the request's own reference.
fn named_agents(error: StoreError) -> ApiError {
    match error {
        StoreError::NotFound(message) => ApiError::unknown_reference(format!("ids: {message}")),
        other => other.into(),
    }
}

/// `POST /agents/delete`: retires agents; they are refused from then on (a retired agent
/// that comes back must enroll again), and their keys are forgotten.
pub async fn delete(
    app: &App,
    caller: &Caller,
    request: DeleteAgents,
) -> Result<DeletedAgents, ApiError> {
    let caller = caller.clone();
    let deleted = write(app, move |ctx| {
        if request.ids.is_empty() {
            return Err(ApiError::bad_request("'ids' lists no agent"));
        }
        let mut ids = request.ids.clone();
        ids.sort();
        ids.dedup();
        ctx.store()
            .apply(&Change {
                tree_version: None,
                mutation: Mutation::DeleteAgents(ids.clone()),
                bump_groups: vec![],
                bump_agents: vec![],
                audit: audit(&caller, "agent.delete", ids.join(","), None, None),
            })
            .map_err(named_agents)?;
        Ok(DeletedAgents { deleted: ids })
    })
    .await?;
    // Their check-ins are refused by the store anyway; the cached keys go too.
    app.agent_keys.remove(&deleted.deleted);
    Ok(deleted)
}

/// `POST /agents/move`: into a group, guarded: no move takes an agent's last path silently,
/// whoever asks (each agent's real ClientHello is replayed through the clients listener
/// serving now).
pub async fn move_agents(
    app: &App,
    caller: &Caller,
    request: MoveAgents,
) -> Result<MovedAgents, ApiError> {
    let caller = caller.clone();
    write(app, move |ctx| {
        let store = ctx.store();
        let tree = tree_of(store)?;
        let MoveAgents {
            ids,
            group,
            accept_cut_off,
        } = request;
        let group = referenced_group(&tree, "group", &group)?;
        if ids.is_empty() {
            return Err(ApiError::bad_request(
                "'ids' (a non-empty list of agent ids) is required",
            ));
        }
        let moves: HashMap<String, GroupId> = ids.iter().map(|id| (id.clone(), group)).collect();
        let cut = crate::impact::fleet_guard(
            store,
            &ctx.clients.context,
            ctx.clients.policy.protocol.range,
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
        let applied = store
            .apply(&Change {
                tree_version: None,
                mutation: Mutation::MoveAgents {
                    agents: ids.clone(),
                    group,
                },
                bump_groups: vec![],
                bump_agents: ids.clone(),
                audit: audit(
                    &caller,
                    "agent.move",
                    ids.join(","),
                    None,
                    Some(serde_json::json!({
                        "group": tree.path(group),
                        "accept_cut_off": accept_cut_off,
                        "cut_off": cut.iter().map(|(id, _)| id).collect::<Vec<_>>(),
                    })),
                ),
            })
            .map_err(named_agents)?;
        Ok(MovedAgents {
            moved: ids,
            group: tree.path(group),
            serial: applied.serial,
        })
    })
    .await
}
