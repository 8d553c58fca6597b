//! Handlers for groups, server lists, clients, tokens, accounts and the audit log.
//!
//! Every write takes the server's fleet lock, reads the tree, checks the change with
//! ward-fleet, computes the serial bumps, and hands one `Change` to the store, so the check
//! and the write see the same state.
use std::collections::HashSet;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{json, Map, Value};
use ward_fleet::group::Field;
use ward_fleet::serverlist::{self, Protocol};
use ward_fleet::{name, serial, Group, GroupId, Mode, OwnSettings, ServerList, Tree};
use ward_store::{Account, AgentFilter, Change, Mutation, Store, TokenRecord};

use super::wire;
use crate::api::{
    blocking, json_response, object, only_keys, query_pairs, required, since_ms, string, ApiError,
    ApiResult,
};
use crate::auth::{self, Caller, Role};
use crate::ops::{audit, create_group, find_group, tree_error, tree_of};
use crate::state::App;
use ward_proto::duration::parse as parse_duration;
use ward_proto::messages::{SettingsPackage, SETTINGS_PACKAGE_FORMAT};
use ward_proto::now_ms;

pub struct Request<'a> {
    pub shared: &'a App,
    pub caller: &'a Caller,
    pub method: &'a Method,
    pub segments: &'a [&'a str],
    pub query: &'a str,
    pub body: &'a Bytes,
}

fn ok(value: Value) -> ApiResult {
    Ok(json_response(StatusCode::OK, &value))
}

fn created(value: Value) -> ApiResult {
    Ok(json_response(StatusCode::CREATED, &value))
}

fn method_not_allowed(allowed: &str) -> ApiResult {
    Err(ApiError::client(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("this resource allows {allowed}"),
    ))
}

fn group_id(tree: &Tree, segment: &str) -> Result<GroupId, ApiError> {
    segment
        .parse::<GroupId>()
        .ok()
        .filter(|id| tree.get(*id).is_some())
        .ok_or_else(|| ApiError::not_found(format!("no group {segment}")))
}

pub async fn route(request: Request<'_>) -> Option<ApiResult> {
    let Request {
        shared,
        caller,
        method,
        segments,
        query,
        body,
    } = request;
    let store = shared.store.clone();
    let caller = caller.clone();
    let body = body.clone();
    let query = query.to_string();
    let retiring = *method == Method::POST && segments == ["clients", "delete"];
    let segments: Vec<String> = segments.iter().map(|s| s.to_string()).collect();
    let body_owned = body.clone();
    let method = method.clone();
    // Only a settings export needs the server's identity (and reads the CA file).
    let identity = (segments.last().map(String::as_str) == Some("export")).then(|| {
        (
            ward_proto::hex(&shared.agreement_public),
            std::fs::read_to_string(shared.data.ca_cert()).unwrap_or_default(),
        )
    });
    // Push agents whose check-in is held now: online, whatever their last check-in says.
    let held = if segments.first().map(String::as_str) == Some("clients") {
        shared.held.snapshot()
    } else {
        Default::default()
    };
    let _write_guard = if method == Method::GET || method == Method::HEAD {
        None
    } else {
        Some(shared.fleet_lock.lock().await)
    };
    let result = blocking(move || {
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let store: &dyn Store = &*store;
        match segments.as_slice() {
            ["groups"] => Ok(Some(groups(store, &caller, &method, &body)?)),
            ["groups", id] => Ok(Some(group(store, &caller, &method, id, &body)?)),
            ["groups", id, "move"] if method == Method::POST => {
                Ok(Some(move_group(store, &caller, id, &body)?))
            }
            ["groups", id, "export"] if method == Method::POST => {
                let identity = identity.as_ref().expect("read for export routes");
                Ok(Some(export_settings(store, &caller, id, identity)?))
            }
            ["serverlists"] => Ok(Some(server_lists(store, &caller, &method, &body)?)),
            ["serverlists", name] => Ok(Some(server_list(store, &caller, &method, name)?)),
            ["serverlists", name, "copy"] if method == Method::POST => {
                Ok(Some(copy_list(store, &caller, name, &body)?))
            }
            ["clients"] if method == Method::GET => Ok(Some(clients(store, &query, &held)?)),
            ["clients", "delete"] if method == Method::POST => {
                Ok(Some(delete_clients(store, &caller, &body)?))
            }
            ["clients", "move"] if method == Method::POST => {
                Ok(Some(move_clients(store, &caller, &body)?))
            }
            ["clients", id] if method == Method::GET => Ok(Some(client(store, id, &held)?)),
            ["accounts"] if method == Method::GET => Ok(Some(list_accounts(store)?)),
            ["accounts", name] if method == Method::DELETE => {
                Ok(Some(delete_account(store, &caller, name)?))
            }
            ["accounts", name, "password"] if method == Method::POST => {
                Ok(Some(set_password(store, &caller, name, &body)?))
            }
            ["tokens"] => Ok(Some(tokens(store, &caller, &method, &body)?)),
            ["tokens", id, "revoke"] if method == Method::POST => {
                Ok(Some(revoke_token(store, &caller, id)?))
            }
            ["audit"] if method == Method::GET => Ok(Some(audit_log(store, &query)?)),
            ["accounts"] if method == Method::POST => {
                Ok(Some(create_account(store, &caller, &body)?))
            }
            ["clients" | "audit" | "accounts", ..]
            | ["groups" | "serverlists" | "tokens", _, _] => Ok(Some(method_not_allowed(
                "the methods listed in /api/v1/openapi.json",
            )?)),
            _ => Ok(None),
        }
    })
    .await;
    // Retired agents' keys are forgotten (their check-ins are refused by the store anyway).
    if let (true, Ok(Some(response))) = (retiring, &result) {
        if response.status().is_success() {
            if let Ok(request) = crate::api::typed::<DeleteClients>(&body_owned) {
                shared.agent_keys.remove(&request.ids);
            }
        }
    }
    match result {
        Ok(Some(response)) => Some(Ok(response)),
        Ok(None) => None,
        Err(error) => Some(Err(error)),
    }
}

// ---- groups ------------------------------------------------------------------------------

fn groups(store: &dyn Store, caller: &Caller, method: &Method, body: &Bytes) -> ApiResult {
    let tree = tree_of(store)?;
    match *method {
        Method::GET => {
            let effective = tree.effective_all();
            let mut list: Vec<&Group> = tree.groups().collect();
            list.sort_by_key(|g| tree.path(g.id));
            ok(Value::Array(
                list.iter()
                    .map(|g| wire::group_json(&tree, g, effective.get(&g.id)))
                    .collect(),
            ))
        }
        Method::POST => {
            let body = object(body)?;
            only_keys(&body, &["name", "parent"])?;
            let group_name = required(&body, "name")?;
            name::check_name(&group_name)
                .map_err(|e| ApiError::bad_request(format!("name: {e}")))?;
            let parent = match string(&body, "parent")? {
                Some(path) => find_group(&tree, &path)?,
                None => tree.root(),
            };
            let group = Group {
                id: 0,
                parent: Some(parent),
                name: group_name,
                own: OwnSettings::default(),
            };
            let id = create_group(
                store,
                &tree,
                caller,
                group,
                "group.create",
                json!({"parent": tree.path(parent)}),
            )?;
            let tree = tree_of(store)?;
            let group = tree
                .get(id)
                .ok_or_else(|| ApiError::not_found("the new group vanished"))?;
            created(wire::group_json(&tree, group, tree.effective(id).as_ref()))
        }
        _ => method_not_allowed("GET, POST"),
    }
}

/// Applies `own` changes from a PATCH body to `group`.
fn patch_settings(
    store: &dyn Store,
    group: &mut Group,
    body: &Map<String, Value>,
) -> Result<(), ApiError> {
    only_keys(
        body,
        &[
            "name",
            "server_list",
            "interval",
            "randomize",
            "mode",
            "policy",
            "inherit",
        ],
    )?;
    if let Some(new_name) = string(body, "name")? {
        if group.parent.is_none() && new_name.is_empty() {
            return Err(ApiError::bad_request("name: a name cannot be empty"));
        }
        name::check_name(&new_name).map_err(|e| ApiError::bad_request(format!("name: {e}")))?;
        group.name = new_name;
    }
    if let Some(list) = string(body, "server_list")? {
        if !store.server_lists()?.iter().any(|l| l.name == list) {
            return Err(ApiError::not_found(format!("no server list '{list}'")));
        }
        group.own.server_list = Some(list);
    }
    for (key, slot) in [
        ("interval", &mut group.own.interval),
        ("randomize", &mut group.own.randomize),
    ] {
        if let Some(text) = string(body, key)? {
            let duration =
                parse_duration(&text).map_err(|e| ApiError::bad_request(format!("{key}: {e}")))?;
            if key == "interval" && duration.is_zero() {
                return Err(ApiError::bad_request("interval: must be more than 0s"));
            }
            *slot = Some(duration);
        }
    }
    if let Some(mode) = string(body, "mode")? {
        group.own.mode =
            Some(Mode::parse(&mode).ok_or_else(|| {
                ApiError::bad_request(format!("mode: '{mode}' is not pull or push"))
            })?);
    }
    match body.get("policy") {
        None | Some(Value::Null) => {}
        Some(policy @ Value::Object(_)) => group.own.policy = Some(policy.clone()),
        Some(_) => return Err(ApiError::bad_request("policy: must be a JSON object")),
    }
    match body.get("inherit") {
        None | Some(Value::Null) => {}
        Some(Value::Array(fields)) => {
            for field in fields {
                let name = field.as_str().unwrap_or_default();
                let field = Field::parse(name).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "inherit: '{name}' is not one of server_list, interval, randomize, mode, policy"
                    ))
                })?;
                if group.parent.is_none() {
                    return Err(ApiError::bad_request(format!(
                        "inherit: the root group has nothing to inherit {} from",
                        field.name()
                    )));
                }
                group.own.clear(field);
            }
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "inherit: must be a list of field names",
            ))
        }
    }
    Ok(())
}

fn group(store: &dyn Store, caller: &Caller, method: &Method, id: &str, body: &Bytes) -> ApiResult {
    let tree = tree_of(store)?;
    let id = group_id(&tree, id)?;
    let current = tree
        .get(id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("no such group"))?;
    let path = tree.path(id).unwrap_or_default();
    match *method {
        Method::GET => ok(wire::group_json(
            &tree,
            &current,
            tree.effective(id).as_ref(),
        )),
        Method::PATCH => {
            let body = object(body)?;
            let mut changed = current.clone();
            patch_settings(store, &mut changed, &body)?;
            let after = tree.with_group(changed.clone()).map_err(tree_error)?;
            let bump_groups = serial::affected_groups(&tree, &after, &[]);
            let before_json = wire::group_json(&tree, &current, None);
            let after_json = wire::group_json(&after, &changed, None);
            store.apply(&Change {
                mutation: Mutation::UpdateGroup(changed),
                bump_groups,
                bump_agents: vec![],
                audit: audit(
                    caller,
                    "group.update",
                    path,
                    Some(before_json["own"].clone()),
                    Some(after_json["own"].clone()),
                ),
            })?;
            let tree = tree_of(store)?;
            let group = tree
                .get(id)
                .ok_or_else(|| ApiError::not_found("the group vanished"))?;
            ok(wire::group_json(&tree, group, tree.effective(id).as_ref()))
        }
        Method::DELETE => {
            if id == tree.root() {
                return Err(ApiError::conflict(
                    "in_use",
                    "the root group cannot be deleted",
                ));
            }
            store.apply(&Change {
                mutation: Mutation::DeleteGroup(id),
                bump_groups: vec![],
                bump_agents: vec![],
                audit: audit(
                    caller,
                    "group.delete",
                    path.clone(),
                    Some(wire::group_json(&tree, &current, None)),
                    None,
                ),
            })?;
            ok(json!({"deleted": path}))
        }
        _ => method_not_allowed("GET, PATCH, DELETE"),
    }
}

fn move_group(store: &dyn Store, caller: &Caller, id: &str, body: &Bytes) -> ApiResult {
    let tree = tree_of(store)?;
    let id = group_id(&tree, id)?;
    let body = object(body)?;
    only_keys(&body, &["parent"])?;
    let parent = find_group(&tree, &required(&body, "parent")?)?;
    let after = tree.moved(id, parent).map_err(tree_error)?;
    let before_path = tree.path(id).unwrap_or_default();
    let bump_groups = serial::affected_groups(&tree, &after, &[]);
    store.apply(&Change {
        mutation: Mutation::MoveGroup { id, parent },
        bump_groups,
        bump_agents: vec![],
        audit: audit(
            caller,
            "group.move",
            before_path.clone(),
            Some(json!({"path": before_path})),
            Some(json!({"path": after.path(id)})),
        ),
    })?;
    let group = after
        .get(id)
        .ok_or_else(|| ApiError::not_found("the group vanished"))?;
    ok(wire::group_json(
        &after,
        group,
        after.effective(id).as_ref(),
    ))
}

/// The seed's communication-settings package for a group: its server list, the server's
/// agreement key and CA, and a new enrollment token (30 days, may enroll over HTTP), so an
/// orphaned agent can be brought back with `ward agent import-settings`.
fn export_settings(
    store: &dyn Store,
    caller: &Caller,
    id: &str,
    identity: &(String, String),
) -> ApiResult {
    let tree = tree_of(store)?;
    let id = group_id(&tree, id)?;
    let effective = tree
        .effective(id)
        .ok_or_else(|| ApiError::not_found("no such group"))?;
    let lists = store.server_lists()?;
    let (token, hash) = auth::new_token();
    let record = TokenRecord {
        id: 0,
        group: id,
        token_sha256: hash,
        created_ms: now_ms(),
        expires_ms: Some(now_ms() + 30 * 86_400_000),
        uses_left: None,
        revoked: false,
        allow_http: true,
    };
    let path = tree.path(id).unwrap_or_default();
    store.apply(&Change {
        mutation: Mutation::CreateToken(record),
        bump_groups: vec![],
        bump_agents: vec![],
        audit: audit(
            caller,
            "group.export_settings",
            path.clone(),
            None,
            Some(json!({"token_expires_days": 30})),
        ),
    })?;
    let package = SettingsPackage {
        format: SETTINGS_PACKAGE_FORMAT.into(),
        group: path,
        server_public: identity.0.clone(),
        ca_pem: identity.1.clone(),
        token,
        settings: crate::ops::settings_for(&tree, id, &effective, &lists, 0),
    };
    ok(serde_json::to_value(&package).map_err(|e| ApiError::internal(e.to_string()))?)
}

// ---- server lists ------------------------------------------------------------------------

fn used_by(tree: &Tree, list: &str) -> Vec<String> {
    let mut paths: Vec<String> = tree
        .groups()
        .filter(|g| g.own.server_list.as_deref() == Some(list))
        .filter_map(|g| tree.path(g.id))
        .collect();
    paths.sort();
    paths
}

fn create_list(store: &dyn Store, caller: &Caller, list: ServerList) -> ApiResult {
    let tree = tree_of(store)?;
    let value = wire::list_json(&list, vec![]);
    store.apply(&Change {
        mutation: Mutation::CreateServerList(list.clone()),
        bump_groups: vec![],
        bump_agents: vec![],
        audit: audit(
            caller,
            "serverlist.create",
            list.name.clone(),
            None,
            Some(value.clone()),
        ),
    })?;
    created(wire::list_json(&list, used_by(&tree, &list.name)))
}

fn server_lists(store: &dyn Store, caller: &Caller, method: &Method, body: &Bytes) -> ApiResult {
    match *method {
        Method::GET => {
            let tree = tree_of(store)?;
            let lists = store.server_lists()?;
            ok(Value::Array(
                lists
                    .iter()
                    .map(|l| wire::list_json(l, used_by(&tree, &l.name)))
                    .collect(),
            ))
        }
        Method::POST => {
            let body = object(body)?;
            only_keys(&body, &["name", "servers"])?;
            let list_name = required(&body, "name")?;
            let specs = match body.get("servers") {
                Some(Value::Array(specs)) => specs,
                _ => {
                    return Err(ApiError::bad_request(
                        "'servers' (a list of 'PRIORITY:PROTO://ADDRESS:PORT') is required",
                    ))
                }
            };
            let mut entries = Vec::new();
            for spec in specs {
                let spec = spec.as_str().ok_or_else(|| {
                    ApiError::bad_request("each server is a string like 1:https://mgr1:443")
                })?;
                entries.push(
                    serverlist::parse_spec(spec)
                        .map_err(|e| ApiError::bad_request(e.to_string()))?,
                );
            }
            let list = serverlist::build(&list_name, entries)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            create_list(store, caller, list)
        }
        _ => method_not_allowed("GET, POST"),
    }
}

fn find_list(store: &dyn Store, name: &str) -> Result<ServerList, ApiError> {
    store
        .server_lists()?
        .into_iter()
        .find(|l| l.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no server list '{name}'")))
}

fn server_list(store: &dyn Store, caller: &Caller, method: &Method, name: &str) -> ApiResult {
    let tree = tree_of(store)?;
    let list = find_list(store, name)?;
    match *method {
        Method::GET => ok(wire::list_json(&list, used_by(&tree, name))),
        Method::DELETE => {
            store.apply(&Change {
                mutation: Mutation::DeleteServerList(name.to_string()),
                bump_groups: vec![],
                bump_agents: vec![],
                audit: audit(
                    caller,
                    "serverlist.delete",
                    name.to_string(),
                    Some(wire::list_json(&list, vec![])),
                    None,
                ),
            })?;
            ok(json!({"deleted": name}))
        }
        _ => method_not_allowed("GET, DELETE"),
    }
}

fn copy_list(store: &dyn Store, caller: &Caller, name: &str, body: &Bytes) -> ApiResult {
    let list = find_list(store, name)?;
    let body = object(body)?;
    only_keys(&body, &["name", "protocol", "port"])?;
    let new_name = required(&body, "name")?;
    let protocol = match string(&body, "protocol")? {
        Some(p) => Protocol::parse(&p).ok_or_else(|| {
            ApiError::bad_request(format!("protocol: '{p}' is not http or https"))
        })?,
        None => Protocol::Http,
    };
    let port = match body.get("port") {
        None | Some(Value::Null) => 8014,
        Some(Value::Number(n)) => n
            .as_u64()
            .filter(|p| (1..=65535).contains(p))
            .ok_or_else(|| ApiError::bad_request("port: a number from 1 to 65535"))?
            as u16,
        Some(_) => return Err(ApiError::bad_request("port: a number from 1 to 65535")),
    };
    let copy = serverlist::http_copy(&list, &new_name, protocol, port)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    create_list(store, caller, copy)
}

// ---- clients -----------------------------------------------------------------------------

/// Whether each agent is online, by the one rule of `ward_fleet::presence`.
struct Presence {
    effective: std::collections::HashMap<GroupId, ward_fleet::Effective>,
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

fn clients(store: &dyn Store, query: &str, held: &HashSet<String>) -> ApiResult {
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

fn client(store: &dyn Store, id: &str, held: &HashSet<String>) -> ApiResult {
    let tree = tree_of(store)?;
    let agent = store
        .agent(id)?
        .ok_or_else(|| ApiError::not_found(format!("no client '{id}'")))?;
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

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteClients {
    ids: Vec<String>,
}

/// Retires agents: they are refused from then on (a retired agent that comes back must
/// enroll again).
fn delete_clients(store: &dyn Store, caller: &Caller, body: &Bytes) -> ApiResult {
    let request: DeleteClients = crate::api::typed(body)?;
    if request.ids.is_empty() {
        return Err(ApiError::bad_request("'ids' lists no client"));
    }
    let mut ids = request.ids.clone();
    ids.sort();
    ids.dedup();
    store.apply(&Change {
        mutation: Mutation::DeleteAgents(ids.clone()),
        bump_groups: vec![],
        bump_agents: vec![],
        audit: audit(caller, "client.delete", ids.join(","), None, None),
    })?;
    ok(json!({"deleted": ids}))
}

fn list_accounts(store: &dyn Store) -> ApiResult {
    let accounts = store.accounts()?;
    ok(Value::Array(
        accounts
            .iter()
            .map(|a| json!({"name": a.name, "role": a.role}))
            .collect(),
    ))
}

fn delete_account(store: &dyn Store, caller: &Caller, name: &str) -> ApiResult {
    store.apply(&Change {
        mutation: Mutation::DeleteAccount(name.to_string()),
        bump_groups: vec![],
        bump_agents: vec![],
        audit: audit(caller, "account.delete", name.to_string(), None, None),
    })?;
    ok(json!({"deleted": name}))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
}

/// A new password; the account's sessions end.
fn set_password(store: &dyn Store, caller: &Caller, name: &str, body: &Bytes) -> ApiResult {
    let request: NewPassword = crate::api::typed(body)?;
    if request.password.chars().count() < 12 {
        return Err(ApiError::bad_request(
            "the password must have at least 12 characters",
        ));
    }
    let password_hash = auth::hash_password(&request.password).map_err(ApiError::internal)?;
    store.apply(&Change {
        mutation: Mutation::SetPassword {
            account: name.to_string(),
            password_hash,
        },
        bump_groups: vec![],
        bump_agents: vec![],
        audit: audit(caller, "account.password", name.to_string(), None, None),
    })?;
    ok(json!({"account": name, "sessions_ended": true}))
}

fn move_clients(store: &dyn Store, caller: &Caller, body: &Bytes) -> ApiResult {
    let tree = tree_of(store)?;
    let body = object(body)?;
    only_keys(&body, &["ids", "group"])?;
    let group = find_group(&tree, &required(&body, "group")?)?;
    let ids: Vec<String> = match body.get("ids") {
        Some(Value::Array(ids)) if !ids.is_empty() => ids
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::bad_request("ids: a list of client ids"))
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(ApiError::bad_request(
                "'ids' (a non-empty list of client ids) is required",
            ))
        }
    };
    let applied = store.apply(&Change {
        mutation: Mutation::MoveAgents {
            agents: ids.clone(),
            group,
        },
        bump_groups: vec![],
        bump_agents: ids.clone(),
        audit: audit(
            caller,
            "client.move",
            ids.join(","),
            None,
            Some(json!({"group": tree.path(group)})),
        ),
    })?;
    ok(json!({"moved": ids, "group": tree.path(group), "serial": applied.serial}))
}

// ---- tokens, accounts, audit -------------------------------------------------------------

fn tokens(store: &dyn Store, caller: &Caller, method: &Method, body: &Bytes) -> ApiResult {
    let tree = tree_of(store)?;
    match *method {
        Method::GET => ok(Value::Array(
            store
                .tokens()?
                .iter()
                .map(|t| wire::token_json(&tree, t))
                .collect(),
        )),
        Method::POST => {
            let body = object(body)?;
            only_keys(&body, &["group", "expires", "uses", "allow_http"])?;
            let allow_http = match body.get("allow_http") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(ApiError::bad_request("allow_http: true or false")),
            };
            let group = find_group(&tree, &required(&body, "group")?)?;
            let expires_ms = match string(&body, "expires")? {
                Some(text) => {
                    let duration = parse_duration(&text)
                        .map_err(|e| ApiError::bad_request(format!("expires: {e}")))?;
                    let millis = i64::try_from(duration.as_millis()).ok();
                    Some(
                        millis
                            .and_then(|m| now_ms().checked_add(m))
                            .ok_or_else(|| ApiError::bad_request("expires: too far away"))?,
                    )
                }
                None => None,
            };
            let uses_left = match body.get("uses") {
                None | Some(Value::Null) => None,
                Some(Value::Number(n)) => Some(
                    n.as_i64()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| ApiError::bad_request("uses: a number of at least 1"))?,
                ),
                Some(_) => return Err(ApiError::bad_request("uses: a number of at least 1")),
            };
            let (token, hash) = auth::new_token();
            let record = TokenRecord {
                id: 0,
                group,
                token_sha256: hash,
                created_ms: now_ms(),
                expires_ms,
                uses_left,
                revoked: false,
                allow_http,
            };
            let applied = store.apply(&Change {
                mutation: Mutation::CreateToken(record.clone()),
                bump_groups: vec![],
                bump_agents: vec![],
                audit: audit(
                    caller,
                    "token.create",
                    tree.path(group).unwrap_or_default(),
                    None,
                    Some(json!({"expires_ms": expires_ms, "uses": uses_left})),
                ),
            })?;
            let mut value = wire::token_json(
                &tree,
                &TokenRecord {
                    id: applied.new_id.unwrap_or_default(),
                    ..record
                },
            );
            value["token"] = Value::String(token);
            created(value)
        }
        _ => method_not_allowed("GET, POST"),
    }
}

fn revoke_token(store: &dyn Store, caller: &Caller, id: &str) -> ApiResult {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::not_found(format!("no token {id}")))?;
    store.apply(&Change {
        mutation: Mutation::RevokeToken(id),
        bump_groups: vec![],
        bump_agents: vec![],
        audit: audit(caller, "token.revoke", id.to_string(), None, None),
    })?;
    ok(json!({"revoked": id}))
}

fn create_account(store: &dyn Store, caller: &Caller, body: &Bytes) -> ApiResult {
    let body = object(body)?;
    only_keys(&body, &["name", "password", "role"])?;
    let account_name = required(&body, "name")?;
    name::check_name(&account_name).map_err(|e| ApiError::bad_request(format!("name: {e}")))?;
    let password = required(&body, "password")?;
    if password.chars().count() < 12 {
        return Err(ApiError::bad_request("password: at least 12 characters"));
    }
    let role = required(&body, "role")?;
    let role = Role::parse(&role)
        .ok_or_else(|| ApiError::bad_request(format!("role: '{role}' is not admin or auditor")))?;
    let password_hash = auth::hash_password(&password).map_err(ApiError::bad_request)?;
    store.apply(&Change {
        mutation: Mutation::CreateAccount(Account {
            name: account_name.clone(),
            password_hash,
            role: role.name().into(),
        }),
        bump_groups: vec![],
        bump_agents: vec![],
        audit: audit(
            caller,
            "account.create",
            account_name.clone(),
            None,
            Some(json!({"role": role.name()})),
        ),
    })?;
    created(json!({"name": account_name, "role": role.name()}))
}

/// The largest `limit` a listing takes.
const MAX_LIMIT: usize = 10_000_000;

fn limit(value: &str) -> Result<usize, ApiError> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| ApiError::bad_request(format!("limit: a number from 1 to {MAX_LIMIT}")))
}

fn audit_log(store: &dyn Store, query: &str) -> ApiResult {
    let mut since = 0;
    let mut limit = 1000;
    for (key, value) in query_pairs(query) {
        match key.as_str() {
            "since" => since = since_ms(&value)?,
            "limit" => limit = self::limit(&value)?,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter '{other}'"
                )))
            }
        }
    }
    ok(Value::Array(
        store
            .audit(since, limit)?
            .iter()
            .map(wire::audit_json)
            .collect(),
    ))
}
