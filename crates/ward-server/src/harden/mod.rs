//! The hardening engine: TLS readiness of the fleet, plans for a proposed `SSLProtocol`, and
//! the steps of `ward tls harden` that change the server (stage, apply, rollback), under
//! `/api/v1/tls/` on the console.
//!
//! The decisions are [`model`]'s (pure). This module reads the store, writes through
//! `Store::apply` (audited, serials bumped), edits the conf files with ward-tls's editor, and
//! keeps the state of the last harden in `<data>/harden/state.json` (written atomically), so
//! an interrupted harden can be resumed or rolled back from any admin client.

pub mod model;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use ward_fleet::serverlist::{self, Protocol};
use ward_fleet::{Group, GroupId, OwnSettings, ServerList, Tree};
use ward_store::{AgentTls, Change, Mutation, Store};
use ward_tls::edit::{self, EditOutcome};
use ward_tls::protocol::ProtocolDecision;
use ward_tls::{ProtocolSet, TlsVersion, VersionRange};

use crate::admin::fleet::{audit, create_group, find_group, only_keys, string, tree_of};
use crate::admin::{auth::Caller, blocking, now_ms, object, query_pairs, ApiError, ApiResult};
use crate::config::Role;
use crate::http::json_response;
use crate::server::Shared;
use model::{AgentFacts, Capability, GroupFacts, Risk, Verdict, Via};

/// Default: an agent silent for more than this many check-in intervals counts as offline.
pub const OFFLINE_INTERVALS: u32 = 3;
/// The name of the legacy subgroup harden creates under each affected group.
pub const LEGACY_NAME: &str = "Legacy TLS";
/// Agents listed per category in a plan or readiness answer, unless the caller asks.
const DEFAULT_LIMIT: usize = 1000;

/// What `ward tls harden` did last, kept across restarts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HardenState {
    pub protocol: String,
    /// `clients`, `console` or `all`.
    pub listener: String,
    pub legacy_group: Option<String>,
    pub legacy_name: String,
    /// `staged`, `applied` or `rolled_back`.
    pub step: String,
    pub started_ms: i64,
    pub updated_ms: i64,
    pub applied_ms: Option<i64>,
    /// Agents moved by staging, and where from.
    pub moved: Vec<Moved>,
    /// The conf files as they were before the last harden that changed them.
    pub originals: Vec<Original>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moved {
    pub agent: String,
    pub from: GroupId,
    pub to: GroupId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Original {
    /// The conf file.
    pub file: PathBuf,
    /// A copy of its bytes before the harden, in the harden dir.
    pub saved: PathBuf,
}

fn state_path(root: &Path) -> PathBuf {
    root.join("harden").join("state.json")
}

fn internal(message: impl Into<String>) -> ApiError {
    ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "internal",
        message: message.into(),
    }
}

fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError {
        status: StatusCode::CONFLICT,
        code,
        message: message.into(),
    }
}

pub fn read_state(root: &Path) -> Result<Option<HardenState>, ApiError> {
    let path = state_path(root);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| internal(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(internal(format!("{}: {e}", path.display()))),
    }
}

fn write_state(root: &Path, state: &HardenState) -> Result<(), ApiError> {
    let path = state_path(root);
    let dir = path.parent().expect("state has a dir");
    std::fs::create_dir_all(dir).map_err(|e| internal(format!("{}: {e}", dir.display())))?;
    let mut text = serde_json::to_vec_pretty(state).map_err(|e| internal(e.to_string()))?;
    text.push(b'\n');
    edit::write_atomic(&path, &text).map_err(|e| internal(format!("{}: {e}", path.display())))
}

/// A proposed `SSLProtocol` value for one or both HTTPS listeners.
#[derive(Clone, Debug)]
pub struct Proposal {
    pub words: String,
    pub decision: ProtocolDecision,
    /// The listeners it is for: `Console`, `Clients` or both.
    pub roles: Vec<Role>,
    pub listener: String,
}

impl Proposal {
    pub fn parse(words: &str, listener: &str) -> Result<Proposal, ApiError> {
        let roles = match listener {
            "all" => vec![Role::Console, Role::Clients],
            "clients" => vec![Role::Clients],
            "console" => vec![Role::Console],
            other => {
                return Err(ApiError::bad_request(format!(
                    "listener: '{other}' is not clients, console or all"
                )))
            }
        };
        if words.contains(['\n', '\r']) {
            return Err(ApiError::bad_request("protocol: one line only"));
        }
        let split = ward_tls::protocol::split_words(words);
        let decision = ward_tls::parse_ssl_protocol(&split)
            .map_err(|e| ApiError::bad_request(format!("protocol '{words}': {e}")))?;
        Ok(Proposal {
            words: split.join(" "),
            decision,
            roles,
            listener: listener.to_string(),
        })
    }

    fn from_body(body: &Map<String, Value>) -> Result<Proposal, ApiError> {
        let words = string(body, "protocol")?.ok_or_else(|| {
            ApiError::bad_request("'protocol' (the SSLProtocol words) is required")
        })?;
        let listener = string(body, "listener")?.unwrap_or_else(|| "all".into());
        Proposal::parse(&words, &listener)
    }

    /// The range the clients listener would serve.
    fn clients_range(&self, shared: &Shared) -> VersionRange {
        if self.roles.contains(&Role::Clients) {
            self.decision.range
        } else {
            shared.tls.current(Role::Clients).policy.protocol.range
        }
    }
}

fn offline_intervals(body: &Map<String, Value>) -> Result<u32, ApiError> {
    match body.get("offline_intervals") {
        None | Some(Value::Null) => Ok(OFFLINE_INTERVALS),
        Some(value) => value
            .as_u64()
            .filter(|n| (1..=1000).contains(n))
            .map(|n| n as u32)
            .ok_or_else(|| ApiError::bad_request("offline_intervals: a number from 1 to 1000")),
    }
}

fn limit(body: &Map<String, Value>) -> Result<usize, ApiError> {
    match body.get("limit") {
        None | Some(Value::Null) => Ok(DEFAULT_LIMIT),
        Some(value) => value
            .as_u64()
            .map(|n| n.min(10_000_000) as usize)
            .ok_or_else(|| ApiError::bad_request("limit: a number")),
    }
}

/// The fleet as the plan reads it: the tree, the lists, every agent's TLS facts, and what
/// each group gives its agents.
struct Fleet {
    tree: Tree,
    lists: Vec<ServerList>,
    agents: Vec<AgentTls>,
    /// Per group: index into `lists` of its effective list, and the offline threshold.
    groups: HashMap<GroupId, (Option<usize>, i64)>,
    /// Push agents connected right now.
    held: HashSet<String>,
}

impl Fleet {
    fn read(store: &dyn Store, intervals: u32, held: HashSet<String>) -> Result<Fleet, ApiError> {
        let tree = tree_of(store)?;
        let lists = store.server_lists()?;
        let agents = store.agents_tls()?;
        let groups = tree
            .effective_all()
            .into_iter()
            .map(|(id, effective)| {
                let list = lists.iter().position(|l| l.name == effective.server_list);
                let cycle = (effective.interval + effective.randomize).as_millis() as i64;
                (id, (list, cycle.saturating_mul(intervals as i64)))
            })
            .collect();
        Ok(Fleet {
            tree,
            lists,
            agents,
            groups,
            held,
        })
    }

    fn group_facts(&self, group: GroupId) -> GroupFacts<'_> {
        let (list, offline_after_ms) = self.groups.get(&group).copied().unwrap_or((None, 0));
        GroupFacts {
            list: list.map(|i| &self.lists[i]),
            offline_after_ms,
        }
    }
}

fn facts(fleet: &Fleet, agent: &AgentTls, now: i64) -> AgentFacts {
    // A push agent whose check-in the server holds is connected: not silent at all.
    let silent_ms = if !fleet.held.is_empty() && fleet.held.contains(&agent.id) {
        0
    } else {
        now - agent.last_checkin_ms.unwrap_or(agent.enrolled_ms)
    };
    AgentFacts {
        group: agent.group,
        capability: Capability::of(
            version_set(agent.versions),
            agent.negotiated.and_then(rank_version),
        ),
        pending: agent.acked_serial < agent.serial,
        silent_ms,
    }
}

/// The store's rank bits (bit 0 `TLSv1` ... bit 3 `TLSv1.3`) as a set.
fn version_set(bits: u8) -> ProtocolSet {
    TlsVersion::ALL
        .into_iter()
        .enumerate()
        .filter(|(index, _)| bits & (1 << index) != 0)
        .map(|(_, version)| version)
        .collect()
}

/// The store's rank (1 `TLSv1` ... 4 `TLSv1.3`) as a version.
fn rank_version(rank: u8) -> Option<TlsVersion> {
    TlsVersion::ALL
        .get(usize::from(rank).checked_sub(1)?)
        .copied()
}

/// Fills in `"hostname"` of every agent line in `arrays` of `value`, in one store read.
fn fill_hostnames(store: &dyn Store, value: &mut Value, arrays: &[&str]) -> Result<(), ApiError> {
    let ids: Vec<String> = arrays
        .iter()
        .flat_map(|key| value[*key].as_array().into_iter().flatten())
        .filter_map(|line| line["id"].as_str().map(str::to_string))
        .collect();
    let names = store.hostnames(&ids)?;
    for key in arrays {
        for line in value[*key].as_array_mut().into_iter().flatten() {
            let name = line["id"].as_str().and_then(|id| names.get(id)).cloned();
            line["hostname"] = json!(name);
        }
    }
    Ok(())
}

/// The agents whose push check-in is held right now.
fn held(shared: &Shared) -> HashSet<String> {
    let held = shared.held.lock().unwrap_or_else(|p| p.into_inner());
    held.keys().cloned().collect()
}

/// One agent's line in a plan or readiness answer.
fn agent_json(fleet: &Fleet, agent: &AgentTls, facts: &AgentFacts) -> Value {
    json!({
        "id": agent.id,
        "group": fleet.tree.path(agent.group),
        "highest": facts.capability.highest().map(|v| v.name()),
        "versions": facts.capability.versions.iter().map(|v| v.name()).collect::<Vec<_>>(),
        "knowledge": facts.capability.knowledge.name(),
        "channel": agent.https.map(|https| if https { "https" } else { "http" }),
        "tls_version": agent.negotiated.and_then(rank_version).map(|v| v.name()),
        "last_checkin": agent.last_checkin_ms.map(crate::admin::wire::time),
        "serial": agent.serial,
        "acked_serial": agent.acked_serial,
    })
}

/// Each agent's verdict under `range`: the full answer for the plan and for staging.
struct Assessment {
    /// (index into `fleet.agents`, verdict) for every agent that is not unaffected, by id.
    flagged: Vec<(usize, Verdict)>,
    unaffected_https: u64,
    unaffected_http: u64,
}

fn assess(fleet: &Fleet, range: VersionRange, now: i64) -> Assessment {
    let mut assessment = Assessment {
        flagged: Vec::new(),
        unaffected_https: 0,
        unaffected_http: 0,
    };
    for (index, agent) in fleet.agents.iter().enumerate() {
        let facts = facts(fleet, agent, now);
        let group = fleet.group_facts(agent.group);
        match model::judge(&facts, group, range) {
            Verdict::Unaffected { via: Via::Https } => assessment.unaffected_https += 1,
            Verdict::Unaffected { via: Via::Http } => assessment.unaffected_http += 1,
            verdict => assessment.flagged.push((index, verdict)),
        }
    }
    // Stable output: by id (the store reads in storage order).
    assessment
        .flagged
        .sort_by(|a, b| fleet.agents[a.0].id.cmp(&fleet.agents[b.0].id));
    assessment
}

fn listeners_json(shared: &Shared, proposal: &Proposal) -> Value {
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
        },
        "cut_off": cut_off,
        "at_risk": at_risk,
        "ok": cut_count == 0 && risk_count == 0,
    })
}

/// Routes `/api/v1/tls/...`. `None` for paths that are not its.
pub async fn route(
    shared: &Shared,
    caller: &Caller,
    method: &Method,
    segments: &[&str],
    query: &str,
    body: &Bytes,
) -> Option<ApiResult> {
    let result = match (segments, method) {
        (["tls", "readiness"], &Method::GET) => readiness(shared, query).await,
        (["tls", "plan"], &Method::POST) => plan(shared, body).await,
        (["tls", "harden"], &Method::GET) => match read_state(shared.data.root()) {
            Ok(state) => Ok(json_response(StatusCode::OK, &json!({"state": state}))),
            Err(e) => Err(e),
        },
        (["tls", "harden", "stage"], &Method::POST) => stage(shared, caller, body).await,
        (["tls", "harden", "apply"], &Method::POST) => apply(shared, caller, body).await,
        (["tls", "rollback"], &Method::POST) => rollback(shared, caller, body).await,
        (["tls", ..], _) => Err(ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "method_not_allowed",
            message: "GET /tls/readiness, POST /tls/plan, GET /tls/harden, POST \
                      /tls/harden/stage, POST /tls/harden/apply, POST /tls/rollback"
                .into(),
        }),
        _ => return None,
    };
    Some(result)
}

async fn plan(shared: &Shared, body: &Bytes) -> ApiResult {
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
    let store = shared.store.clone();
    let value = blocking(move || {
        let now = now_ms();
        let fleet = Fleet::read(&*store, intervals, held)?;
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
        Ok(value)
    })
    .await?;
    Ok(json_response(StatusCode::OK, &value))
}

/// Which listener an agent reached the server through last.
fn listener_of(https: Option<bool>) -> &'static str {
    match https {
        Some(true) => "clients",
        Some(false) => "clients-http",
        None => "never_checked_in",
    }
}

async fn readiness(shared: &Shared, query: &str) -> ApiResult {
    let mut limit = DEFAULT_LIMIT;
    let mut intervals = OFFLINE_INTERVALS;
    let mut silent_since: Option<i64> = None;
    for (key, value) in query_pairs(query) {
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("{key}: a number")))
        };
        match key.as_str() {
            "limit" => limit = number()?.min(10_000_000) as usize,
            "offline_intervals" => {
                intervals = number()?.clamp(1, 1000) as u32;
            }
            "silent_since" => silent_since = Some(number()?.min(i64::MAX as u64) as i64),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter '{other}' (expected limit, offline_intervals, silent_since)"
                )))
            }
        }
    }
    let held = held(shared);
    let store = shared.store.clone();
    let value = blocking(move || {
        let now = now_ms();
        let fleet = Fleet::read(&*store, intervals, held)?;
        // Refused handshakes of the last day, newest first: the lost agents' ClientHellos.
        let report = store.handshake_report(now - 86_400_000, 10_000)?;
        let mut value = readiness_json(
            &fleet,
            &report.failures,
            intervals,
            limit,
            silent_since,
            now,
        );
        fill_hostnames(&*store, &mut value, &["lost", "silent_since"])?;
        Ok(value)
    })
    .await?;
    Ok(json_response(StatusCode::OK, &value))
}

fn readiness_json(
    fleet: &Fleet,
    failures: &[ward_store::HandshakeFailure],
    intervals: u32,
    limit: usize,
    silent_since: Option<i64>,
    now: i64,
) -> Value {
    // The newest refusal per peer address.
    let mut refused: HashMap<IpAddr, &ward_store::HandshakeFailure> = HashMap::new();
    for failure in failures {
        if let Ok(address) = failure.peer.parse::<std::net::SocketAddr>() {
            refused
                .entry(address.ip().to_canonical())
                .or_insert(failure);
        }
    }
    // Per listener and highest version: how many, and the first `limit` ids.
    let mut by_listener: HashMap<&str, HashMap<&str, (usize, Vec<&str>)>> = HashMap::new();
    let mut by_group: HashMap<GroupId, HashMap<&str, u64>> = HashMap::new();
    let mut knowledge: HashMap<&str, u64> = HashMap::new();
    let mut lost = Vec::new();
    let mut silent = Vec::new();
    let mut lost_count = 0u64;
    for agent in &fleet.agents {
        let facts = facts(fleet, agent, now);
        let highest = facts
            .capability
            .highest()
            .map(|v| v.name())
            .unwrap_or("unknown");
        let bucket = by_listener
            .entry(listener_of(agent.https))
            .or_default()
            .entry(highest)
            .or_default();
        bucket.0 += 1;
        if bucket.1.len() < limit {
            bucket.1.push(&agent.id);
        }
        *by_group
            .entry(agent.group)
            .or_default()
            .entry(highest)
            .or_default() += 1;
        *knowledge
            .entry(facts.capability.knowledge.name())
            .or_default() += 1;
        let last = agent.last_checkin_ms.unwrap_or(agent.enrolled_ms);
        let refusal = agent
            .peer
            .and_then(|peer| refused.get(&peer.to_canonical()))
            .filter(|f| f.at_ms > last);
        let offline_after = fleet.group_facts(agent.group).offline_after_ms;
        let with_refusal = |mut line: Value| {
            if let Some(failure) = refusal {
                line["refused"] = json!({
                    "at": crate::admin::wire::time(failure.at_ms),
                    "listener": failure.listener,
                    "peer": failure.peer,
                    "offered_max": failure.offered_max,
                    "offered_versions": failure.offered_versions,
                    "reason": failure.reason,
                });
            }
            line
        };
        if facts.silent_ms > offline_after {
            lost_count += 1;
            if lost.len() < limit {
                let mut line = with_refusal(agent_json(fleet, agent, &facts));
                line["silent_for"] = json!(model::human(facts.silent_ms));
                lost.push(line);
            }
        }
        if let Some(since) = silent_since {
            // Heard from before `since` but not after, while not offline at `since`. A held
            // push check-in counts as heard: reloads end held TLS check-ins, so one held now
            // runs under the current settings.
            let held = fleet.held.contains(&agent.id);
            if !held && last < since && since - last <= offline_after && silent.len() < limit {
                silent.push(with_refusal(agent_json(fleet, agent, &facts)));
            }
        }
    }
    let listeners: Map<String, Value> = by_listener
        .into_iter()
        .map(|(listener, buckets)| {
            let buckets: Map<String, Value> = buckets
                .into_iter()
                .map(|(version, (count, ids))| {
                    (version.to_string(), json!({"count": count, "agents": ids}))
                })
                .collect();
            (listener.to_string(), Value::Object(buckets))
        })
        .collect();
    let mut groups: Vec<(String, Value)> = by_group
        .into_iter()
        .map(|(id, counts)| {
            (
                fleet.tree.path(id).unwrap_or_else(|| id.to_string()),
                json!(counts),
            )
        })
        .collect();
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    let mut value = json!({
        "agents": fleet.agents.len(),
        "knowledge": knowledge,
        "listeners": listeners,
        "groups": groups.into_iter().collect::<Map<String, Value>>(),
        "offline_intervals": intervals,
        "lost_count": lost_count,
        "lost": lost,
    });
    if silent_since.is_some() {
        value["silent_since"] = json!(silent);
    }
    value
}

// ---- stage ---------------------------------------------------------------------------------

/// Makes sure the HTTP variant of `list` exists: the same servers on the clients-http port.
fn ensure_http_list(
    store: &dyn Store,
    caller: &Caller,
    lists: &mut Vec<ServerList>,
    list: &str,
    port: u16,
    report: &mut Vec<String>,
) -> Result<String, ApiError> {
    let name = model::http_list_name(list);
    let source = lists
        .iter()
        .find(|l| l.name == list)
        .ok_or_else(|| ApiError::not_found(format!("no server list '{list}'")))?;
    let copy = serverlist::http_copy(source, &name, Protocol::Http, port)
        .map_err(|e| ApiError::bad_request(format!("{name}: {e}")))?;
    match lists.iter().find(|l| l.name == name) {
        Some(existing)
            if existing
                .levels
                .iter()
                .flatten()
                .any(|e| e.protocol == Protocol::Http) =>
        {
            return Ok(name)
        }
        Some(_) => {
            return Err(conflict(
                "conflict",
                format!("server list '{name}' exists but has no HTTP entry; rename or delete it"),
            ))
        }
        None => {}
    }
    store.apply(&Change {
        mutation: Mutation::CreateServerList(copy.clone()),
        bump_groups: vec![],
        bump_agents: vec![],
        audit: audit(
            caller,
            "harden.stage.serverlist",
            name.clone(),
            None,
            Some(json!({"copy_of": list, "port": port})),
        ),
    })?;
    report.push(format!(
        "created server list '{name}' (HTTP copy of '{list}', port {port})"
    ));
    lists.push(copy);
    Ok(name)
}

fn has_http(lists: &[ServerList], name: &str) -> bool {
    lists.iter().find(|l| l.name == name).is_some_and(|l| {
        l.levels
            .iter()
            .flatten()
            .any(|e| e.protocol == Protocol::Http)
    })
}

/// Makes sure a group named `name` under `parent` exists and reaches the server over HTTP
/// through `http_list`; returns its id.
fn ensure_legacy_group(
    store: &dyn Store,
    caller: &Caller,
    parent: GroupId,
    name: &str,
    http_list: &str,
    lists: &[ServerList],
    report: &mut Vec<String>,
) -> Result<GroupId, ApiError> {
    let tree = tree_of(store)?;
    let parent_path = tree.path(parent).unwrap_or_default();
    let existing = tree
        .children(parent)
        .iter()
        .copied()
        .find(|id| tree.get(*id).is_some_and(|g| g.name == name));
    if let Some(id) = existing {
        let effective = tree
            .effective(id)
            .ok_or_else(|| internal("group vanished"))?;
        if has_http(lists, &effective.server_list) {
            return Ok(id);
        }
        let mut group = tree
            .get(id)
            .cloned()
            .ok_or_else(|| internal("group vanished"))?;
        let before = group.own.server_list.clone();
        group.own.server_list = Some(http_list.to_string());
        let after = tree
            .with_group(group.clone())
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        store.apply(&Change {
            mutation: Mutation::UpdateGroup(group),
            bump_groups: ward_fleet::serial::affected_groups(&tree, &after, &[]),
            bump_agents: vec![],
            audit: audit(
                caller,
                "harden.stage.group",
                tree.path(id).unwrap_or_default(),
                Some(json!({"server_list": before})),
                Some(json!({"server_list": http_list})),
            ),
        })?;
        report.push(format!(
            "set server list '{http_list}' on group '{}'",
            tree.path(id).unwrap_or_default()
        ));
        return Ok(id);
    }
    let group = Group {
        id: 0,
        parent: Some(parent),
        name: name.to_string(),
        own: OwnSettings {
            server_list: Some(http_list.to_string()),
            ..OwnSettings::default()
        },
    };
    let id = create_group(
        store,
        &tree,
        caller,
        group,
        "harden.stage.group",
        json!({"parent": parent_path, "server_list": http_list}),
    )?;
    report.push(format!(
        "created group '{parent_path}/{name}' with server list '{http_list}', inheriting \
         everything else"
    ));
    Ok(id)
}

/// The one group of `--legacy-group PATH`: found, or created under its parent (which must
/// exist), and reaching the server over HTTP.
fn ensure_group_at(
    store: &dyn Store,
    caller: &Caller,
    path: &str,
    lists: &mut Vec<ServerList>,
    port: u16,
    report: &mut Vec<String>,
) -> Result<GroupId, ApiError> {
    let tree = tree_of(store)?;
    // Where it goes is checked before anything is written.
    let (parent, name) = match tree.find(path) {
        Ok(Some(id)) if id == tree.root() => {
            return Err(ApiError::bad_request(
                "legacy_group: the root group cannot be the legacy group",
            ))
        }
        Ok(Some(id)) => {
            let group = tree.get(id).ok_or_else(|| internal("group vanished"))?;
            (group.parent.unwrap_or(tree.root()), group.name.clone())
        }
        _ => {
            let trimmed = path.trim_end_matches('/');
            let (parent, name) = match trimmed.rsplit_once('/') {
                Some((parent_path, name)) => (find_group(&tree, parent_path)?, name),
                // A bare name: a group under the root.
                None => (tree.root(), trimmed),
            };
            ward_fleet::name::check_name(name)
                .map_err(|e| ApiError::bad_request(format!("legacy_group: {e}")))?;
            (parent, name.to_string())
        }
    };
    let root_list = tree
        .effective(tree.root())
        .ok_or_else(|| internal("no root group"))?
        .server_list;
    let http_list = ensure_http_list(store, caller, lists, &root_list, port, report)?;
    ensure_legacy_group(store, caller, parent, &name, &http_list, lists, report)
}

fn new_run(
    previous: Option<HardenState>,
    proposal: &Proposal,
    legacy: &Option<String>,
    name: &str,
) -> HardenState {
    let now = now_ms();
    let same = previous.as_ref().is_some_and(|p| {
        p.step == "staged"
            && p.protocol == proposal.words
            && p.listener == proposal.listener
            && &p.legacy_group == legacy
            && p.legacy_name == name
    });
    match previous {
        Some(state) if same => state,
        previous => HardenState {
            protocol: proposal.words.clone(),
            listener: proposal.listener.clone(),
            legacy_group: legacy.clone(),
            legacy_name: name.to_string(),
            step: "staged".into(),
            started_ms: now,
            updated_ms: now,
            applied_ms: None,
            // Agents moved by earlier runs stay on record until a rollback moves them back,
            // and the files until a harden changes them again.
            moved: previous
                .as_ref()
                .map(|p| p.moved.clone())
                .unwrap_or_default(),
            originals: previous.map(|p| p.originals).unwrap_or_default(),
        },
    }
}

async fn stage(shared: &Shared, caller: &Caller, body: &Bytes) -> ApiResult {
    let body = object(body)?;
    only_keys(
        &body,
        &[
            "protocol",
            "listener",
            "legacy_group",
            "legacy_name",
            "offline_intervals",
        ],
    )?;
    let proposal = Proposal::from_body(&body)?;
    let intervals = offline_intervals(&body)?;
    let legacy_group = string(&body, "legacy_group")?;
    let legacy_name = string(&body, "legacy_name")?.unwrap_or_else(|| LEGACY_NAME.into());
    ward_fleet::name::check_name(&legacy_name)
        .map_err(|e| ApiError::bad_request(format!("legacy_name: {e}")))?;
    let range = proposal.clients_range(shared);
    let port = shared.config.address(Role::ClientsHttp).port();
    let root = shared.data.root().to_path_buf();
    let held = held(shared);
    let store = shared.store.clone();
    let caller = caller.clone();
    let _guard = shared.fleet_lock.lock().await;
    let value = blocking(move || {
        let store: &dyn Store = &*store;
        let now = now_ms();
        let fleet = Fleet::read(store, intervals, held)?;
        let assessment = assess(&fleet, range, now);
        let mut state = new_run(read_state(&root)?, &proposal, &legacy_group, &legacy_name);
        // Everyone who would lose contact moves, offline ones too: they find the HTTP list
        // if they come back before the change.
        let mut targets: HashMap<GroupId, Vec<String>> = HashMap::new();
        for (index, verdict) in &assessment.flagged {
            if matches!(verdict, Verdict::CutOff | Verdict::AtRisk(Risk::Offline)) {
                let agent = &fleet.agents[*index];
                targets.entry(agent.group).or_default().push(agent.id.clone());
            }
        }
        let mut lists = fleet.lists.clone();
        let mut report = Vec::new();
        let mut moved = Vec::new();
        let mut sources: Vec<GroupId> = targets.keys().copied().collect();
        sources.sort_unstable();
        let single = match (&legacy_group, sources.is_empty()) {
            (Some(path), false) => Some(ensure_group_at(store, &caller, path, &mut lists, port, &mut report)?),
            _ => None,
        };
        for source in sources {
            let agents = &targets[&source];
            let destination = match single {
                Some(id) => id,
                None => {
                    let list = fleet
                        .tree
                        .effective(source)
                        .ok_or_else(|| internal("group vanished"))?
                        .server_list;
                    let http = ensure_http_list(store, &caller, &mut lists, &list, port, &mut report)?;
                    ensure_legacy_group(store, &caller, source, &legacy_name, &http, &lists, &mut report)?
                }
            };
            let tree = tree_of(store)?;
            let applied = store.apply(&Change {
                mutation: Mutation::MoveAgents {
                    agents: agents.clone(),
                    group: destination,
                },
                bump_groups: vec![],
                bump_agents: agents.clone(),
                audit: audit(
                    &caller,
                    "harden.stage.move",
                    agents.join(","),
                    Some(json!({"group": tree.path(source)})),
                    Some(json!({"group": tree.path(destination), "protocol": proposal.words})),
                ),
            })?;
            report.push(format!(
                "moved {} agent(s) from '{}' to '{}' (serial {})",
                agents.len(),
                tree.path(source).unwrap_or_default(),
                tree.path(destination).unwrap_or_default(),
                applied.serial.unwrap_or_default()
            ));
            for agent in agents {
                moved.push(json!({"agent": agent, "from": tree.path(source), "to": tree.path(destination)}));
                state.moved.push(Moved {
                    agent: agent.clone(),
                    from: source,
                    to: destination,
                });
            }
        }
        state.updated_ms = now_ms();
        write_state(&root, &state)?;
        Ok(json!({"steps": report, "moved": moved, "state": state}))
    })
    .await?;
    // Push agents pick their new settings up at once.
    shared.fleet_version.send_modify(|v| *v += 1);
    Ok(json_response(StatusCode::OK, &value))
}

// ---- apply and rollback ------------------------------------------------------------------

fn saved_copy(root: &Path, file: &Path, stamp: i64) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "conf".into());
    root.join("harden").join(format!("{name}.{stamp}.orig"))
}

async fn apply(shared: &Shared, caller: &Caller, body: &Bytes) -> ApiResult {
    let body = object(body)?;
    only_keys(&body, &["protocol", "listener"])?;
    let proposal = Proposal::from_body(&body)?;
    let _guard = shared.fleet_lock.lock().await;
    let root = shared.data.root().to_path_buf();
    let files: Vec<(Role, PathBuf)> = proposal
        .roles
        .iter()
        .map(|role| (*role, shared.tls.current(*role).file.clone()))
        .collect();
    let before: Map<String, Value> = files
        .iter()
        .map(|(role, _)| {
            let range = shared.tls.current(*role).policy.protocol.range;
            (role.name().to_string(), json!(range.to_string()))
        })
        .collect();
    // Copies of every file first, then the edits: a failure part-way puts them all back.
    let stamp = now_ms();
    let words = proposal.words.clone();
    let edit_root = root.clone();
    let edited = blocking(move || {
        let mut originals = Vec::new();
        let mut changed = Vec::new();
        for (_, file) in &files {
            let saved = saved_copy(&edit_root, file, stamp);
            std::fs::create_dir_all(saved.parent().expect("harden dir"))
                .map_err(|e| internal(format!("{}: {e}", saved.display())))?;
            let bytes =
                std::fs::read(file).map_err(|e| internal(format!("{}: {e}", file.display())))?;
            edit::write_atomic(&saved, &bytes)
                .map_err(|e| internal(format!("{}: {e}", saved.display())))?;
            originals.push(Original {
                file: file.clone(),
                saved,
            });
        }
        for (index, (_, file)) in files.iter().enumerate() {
            match edit::edit_file(file, &words, "ward_harden", SystemTime::now()) {
                Ok(EditOutcome::Unchanged) => {}
                Ok(EditOutcome::Changed { backup }) => changed.push((file.clone(), backup)),
                Err(error) => {
                    for original in &originals[..index] {
                        let _ = edit::restore_backup(&original.file, &original.saved);
                    }
                    return Err(ApiError {
                        status: StatusCode::UNPROCESSABLE_ENTITY,
                        code: "edit_refused",
                        message: error.to_string(),
                    });
                }
            }
        }
        Ok((originals, changed))
    })
    .await?;
    let (originals, changed) = edited;
    let findings = match crate::server::reload(shared).await {
        Ok(findings) => findings,
        Err(findings) => {
            // Put the files back as they were, and the old settings keep serving.
            for original in &originals {
                let _ = edit::restore_backup(&original.file, &original.saved);
            }
            let _ = crate::server::reload(shared).await;
            return Err(ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "reload_refused",
                message: format!(
                    "the edited files were refused, so they were put back: {}",
                    findings
                        .iter()
                        .filter(|f| f.severity == ward_tls::Severity::Error)
                        .map(|f| f.text.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            });
        }
    };
    let after: Map<String, Value> = proposal
        .roles
        .iter()
        .map(|role| {
            let range = shared.tls.current(*role).policy.protocol.range;
            (role.name().to_string(), json!(range.to_string()))
        })
        .collect();
    let mut state =
        read_state(&root)?.unwrap_or_else(|| new_run(None, &proposal, &None, LEGACY_NAME));
    if changed.is_empty() {
        // Nothing changed: the copies are not needed, and a rollback still goes back to
        // before the harden that did change the files.
        for original in &originals {
            let _ = std::fs::remove_file(&original.saved);
        }
    } else {
        for old in &state.originals {
            let _ = std::fs::remove_file(&old.saved);
        }
        state.originals = originals;
    }
    state.protocol = proposal.words.clone();
    state.listener = proposal.listener.clone();
    state.step = "applied".into();
    state.applied_ms = Some(now_ms());
    state.updated_ms = now_ms();
    write_state(&root, &state)?;
    let store = shared.store.clone();
    let entry = audit(
        caller,
        "tls.harden.apply",
        proposal.listener.clone(),
        Some(Value::Object(before)),
        Some(
            json!({"protocol": proposal.words, "ranges": after.clone(), "changed": changed.iter().map(|(f, _)| f.display().to_string()).collect::<Vec<_>>()}),
        ),
    );
    blocking(move || {
        store.apply(&Change {
            mutation: Mutation::Nothing,
            bump_groups: vec![],
            bump_agents: vec![],
            audit: entry,
        })?;
        Ok(())
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "changed": changed.iter().map(|(file, backup)| json!({"file": file.display().to_string(), "backup": backup.display().to_string()})).collect::<Vec<_>>(),
            "ranges": after,
            "findings": crate::listener_tls::findings_json(&findings),
            "state": state,
        }),
    ))
}

async fn rollback(shared: &Shared, caller: &Caller, body: &Bytes) -> ApiResult {
    let body = if body.is_empty() {
        Map::new()
    } else {
        object(body)?
    };
    only_keys(&body, &["move_back"])?;
    let move_back = match body.get("move_back") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad_request("move_back: true or false")),
    };
    let _guard = shared.fleet_lock.lock().await;
    let root = shared.data.root().to_path_buf();
    let mut state = read_state(&root)?
        .filter(|s| !s.originals.is_empty())
        .ok_or_else(|| {
            conflict(
                "nothing_to_roll_back",
                "no harden has changed the conf files: nothing to roll back",
            )
        })?;
    let originals = state.originals.clone();
    blocking(move || {
        for original in &originals {
            edit::restore_backup(&original.file, &original.saved).map_err(|e| {
                internal(format!(
                    "{} from {}: {e}",
                    original.file.display(),
                    original.saved.display()
                ))
            })?;
        }
        Ok(())
    })
    .await?;
    let reloaded = crate::server::reload(shared).await;
    let mut steps = vec![format!(
        "restored {}",
        state
            .originals
            .iter()
            .map(|o| o.file.display().to_string())
            .collect::<Vec<_>>()
            .join(" and ")
    )];
    if let Err(findings) = &reloaded {
        return Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "reload_refused",
            message: format!(
                "the files were restored but the reload was refused (the old settings keep \
                 serving): {}",
                findings
                    .iter()
                    .map(|f| f.text.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        });
    }
    steps.push("reloaded".into());
    let store = shared.store.clone();
    let caller = caller.clone();
    let moved = std::mem::take(&mut state.moved);
    let (steps, kept) = blocking(move || {
        let mut steps = steps;
        let mut kept = Vec::new();
        if move_back {
            let tree = tree_of(&*store)?;
            let mut back: HashMap<GroupId, Vec<String>> = HashMap::new();
            for m in &moved {
                if tree.get(m.from).is_some() {
                    back.entry(m.from).or_default().push(m.agent.clone());
                } else {
                    kept.push(m.clone());
                }
            }
            for (group, agents) in back {
                store.apply(&Change {
                    mutation: Mutation::MoveAgents {
                        agents: agents.clone(),
                        group,
                    },
                    bump_groups: vec![],
                    bump_agents: agents.clone(),
                    audit: audit(
                        &caller,
                        "tls.rollback.move",
                        agents.join(","),
                        None,
                        Some(json!({"group": tree.path(group)})),
                    ),
                })?;
                steps.push(format!(
                    "moved {} agent(s) back to '{}'",
                    agents.len(),
                    tree.path(group).unwrap_or_default()
                ));
            }
        } else {
            kept = moved;
        }
        store.apply(&Change {
            mutation: Mutation::Nothing,
            bump_groups: vec![],
            bump_agents: vec![],
            audit: audit(
                &caller,
                "tls.rollback",
                "conf".into(),
                None,
                Some(json!({"move_back": move_back})),
            ),
        })?;
        Ok((steps, kept))
    })
    .await?;
    state.moved = kept;
    state.step = "rolled_back".into();
    state.updated_ms = now_ms();
    write_state(&root, &state)?;
    shared.fleet_version.send_modify(|v| *v += 1);
    Ok(json_response(
        StatusCode::OK,
        &json!({"steps": steps, "state": state}),
    ))
}
