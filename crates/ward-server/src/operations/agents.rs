//! Agents (the seed's clients): the filtered list with presence (online, held), one agent with
//! its group's settings, moving agents to a group (guarded), and retiring them.

use std::collections::{HashMap, HashSet};

use ward_api::fleet::{
    Agent, AgentSettings, AgentSort, AgentsPage, AgentsQuery, DeleteAgents, DeletedAgents,
    FleetSummary, MoveAgents, MovedAgents, VersionCount,
};
use ward_api::schema::SEARCH_MAX;
use ward_fleet::{GroupId, Tree};
use ward_proto::now_ms;
use ward_store::{AgentFilter, AgentOrder, Change, Mutation, StoreError};

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

/// The store's presence rule: each group's threshold by `ward_fleet::presence`, and who is
/// held now.
fn store_presence(tree: &Tree, held: &HashSet<String>, now: i64) -> ward_store::Presence {
    let mut since: HashMap<i64, Vec<GroupId>> = HashMap::new();
    for (group, effective) in tree.effective_all() {
        since
            .entry(ward_fleet::presence::since_ms(&effective, now))
            .or_default()
            .push(group);
    }
    let mut since: Vec<(i64, Vec<GroupId>)> = since.into_iter().collect();
    // The threshold most groups share goes without a group list.
    since.sort_unstable_by_key(|(at, groups)| (std::cmp::Reverse(groups.len()), *at));
    let default_since = if since.is_empty() {
        i64::MAX
    } else {
        since.remove(0).0
    };
    let mut held: Vec<String> = held.iter().cloned().collect();
    held.sort_unstable();
    ward_store::Presence {
        held,
        default_since,
        since,
    }
}

fn store_order(sort: AgentSort) -> AgentOrder {
    match sort {
        AgentSort::Id => AgentOrder::Id,
        AgentSort::Hostname => AgentOrder::Hostname,
        AgentSort::Group => AgentOrder::Group,
        AgentSort::Online => AgentOrder::Online,
        AgentSort::Channel => AgentOrder::Channel,
        AgentSort::TlsVersion => AgentOrder::TlsVersion,
        AgentSort::Highest => AgentOrder::Highest,
        AgentSort::LastSeen => AgentOrder::LastCheckin,
        AgentSort::Pending => AgentOrder::Pending,
    }
}

/// What the store is asked for `query`: the filters, the order and the page, all done where
/// the agents are stored.
fn filter_of(
    tree: &Tree,
    held: &HashSet<String>,
    query: &AgentsQuery,
) -> Result<AgentFilter, ApiError> {
    let mut filter = AgentFilter::default();
    if let Some(group) = &query.group {
        filter.groups = Some(tree.descendants(find_group(tree, group)?));
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
    if let Some(search) = &query.search {
        if search.chars().count() > SEARCH_MAX || search.chars().any(char::is_control) {
            return Err(ApiError::bad_request(format!(
                "search: at most {SEARCH_MAX} characters, without control characters"
            )));
        }
        filter.search = Some(search.clone()).filter(|s| !s.is_empty());
    }
    if let Some(stack) = &query.stack {
        let hex = stack.len() == 64
            && stack
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !hex {
            return Err(ApiError::bad_request(format!(
                "stack: '{stack}' is not a ClientHello fingerprint (64 lower-case hex digits)"
            )));
        }
        filter.hello = Some(stack.clone());
    }
    let sort = query.sort.unwrap_or_default();
    filter.online = query.online;
    if query.online.is_some() || sort == AgentSort::Online {
        filter.presence = Some(store_presence(tree, held, now_ms()));
    }
    filter.order = store_order(sort);
    filter.descending = query.descending.unwrap_or(false);
    filter.offset = match query.offset {
        Some(offset) if offset > MAX_LIMIT => {
            return Err(ApiError::bad_request(format!(
                "offset: a number from 0 to {MAX_LIMIT}"
            )))
        }
        offset => offset.unwrap_or(0),
    };
    filter.limit = match query.limit {
        Some(limit) if !(1..=MAX_LIMIT).contains(&limit) => {
            return Err(ApiError::bad_request(format!(
                "limit: a number from 1 to {MAX_LIMIT}"
            )))
        }
        limit => limit,
    };
    Ok(filter)
}

/// `GET /agents`: the agents the filters keep, in the order asked, from the offset asked.
pub async fn list(app: &App, query: AgentsQuery) -> Result<Vec<Agent>, ApiError> {
    read(app, move |ctx| {
        let store = ctx.store();
        let tree = tree_of(store)?;
        let filter = filter_of(&tree, &ctx.held, &query)?;
        let presence = Presence::new(&tree, &ctx.held);
        Ok(store
            .agents(&filter)?
            .iter()
            .map(|a| presence.render(&tree, a))
            .collect())
    })
    .await
}

/// One page of `GET /agents` and how many agents its filters keep in all (the console's
/// list): the page and the count are each one query where the agents are stored.
pub async fn page(app: &App, query: AgentsQuery) -> Result<AgentsPage, ApiError> {
    read(app, move |ctx| {
        let store = ctx.store();
        let tree = tree_of(store)?;
        let filter = filter_of(&tree, &ctx.held, &query)?;
        let total = store.count_agents(&filter)?;
        let presence = Presence::new(&tree, &ctx.held);
        let agents = store
            .agents(&filter)?
            .iter()
            .map(|a| presence.render(&tree, a))
            .collect();
        Ok(AgentsPage { total, agents })
    })
    .await
}

/// The fleet in figures: one scan where the agents are stored, whatever their number.
pub async fn summary(app: &App) -> Result<FleetSummary, ApiError> {
    read(app, move |ctx| {
        let store = ctx.store();
        let tree = tree_of(store)?;
        let presence = store_presence(&tree, &ctx.held, now_ms());
        let mut tallies = store.agent_tally(&presence)?;
        tallies.sort_by(|a, b| (&a.channel, &a.tls_version).cmp(&(&b.channel, &b.tls_version)));
        let mut summary = FleetSummary::default();
        for tally in tallies {
            summary.agents += tally.agents;
            summary.online += tally.online;
            summary.pending += tally.pending;
            summary.reverted += tally.reverted;
            if tally.channel.as_deref() == Some("https") {
                summary.over_https += tally.agents;
                summary.post_quantum += tally.post_quantum;
            }
            summary.by_version.push(VersionCount {
                channel: tally.channel,
                tls_version: tally.tls_version,
                agents: tally.agents,
            });
        }
        Ok(summary)
    })
    .await
}

/// The IP address of a `host:port` peer as the telemetry records it (`[v6]:port` too).
fn address_of(peer: &str) -> &str {
    match peer.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => {
            host.trim_start_matches('[').trim_end_matches(']')
        }
        _ => peer,
    }
}

/// The handshakes the server refused in the last `within` from the address of agent `id`'s
/// last check-in, newest first, at most `limit`: what it (or anything behind the same
/// address) tried and failed. None before its first check-in.
pub async fn refused_from(
    app: &App,
    id: String,
    within: std::time::Duration,
    limit: usize,
) -> Result<Vec<ward_api::tls::RefusedHandshake>, ApiError> {
    read(app, move |ctx| {
        let store = ctx.store();
        let agent = store
            .agent(&id)?
            .ok_or_else(|| ApiError::not_found(format!("no agent '{id}'")))?;
        let Some(address) = agent.peer else {
            return Ok(Vec::new());
        };
        let since = now_ms() - within.as_millis().min(i64::MAX as u128) as i64;
        let mut refused: Vec<_> = store
            .recent_failures(since, 100_000)?
            .into_iter()
            .filter(|failure| address_of(&failure.peer) == address)
            .collect();
        refused.sort_by_key(|failure| std::cmp::Reverse(failure.at_ms));
        Ok(refused
            .into_iter()
            .take(limit)
            .map(|failure| ward_api::tls::RefusedHandshake {
                at: crate::api::time(failure.at_ms),
                listener: failure.listener,
                peer: failure.peer,
                offered_max: failure.offered_max,
                offered_versions: failure.offered_versions,
                reason: failure.reason,
            })
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
        let cut = ctx.guard(
            crate::impact::FleetEdit {
                tree: None,
                moves: &moves,
                lists: None,
            },
            &format!("moving them into {}", tree.path(group).unwrap_or_default()),
            accept_cut_off,
        )?;
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
                        "cut_off": cut,
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_peer_is_matched_by_its_address() {
        for (peer, address) in [
            ("127.0.0.1:443", "127.0.0.1"),
            ("[::1]:8443", "::1"),
            ("192.0.2.7", "192.0.2.7"),
        ] {
            assert_eq!(super::address_of(peer), address, "{peer}");
        }
    }
}
