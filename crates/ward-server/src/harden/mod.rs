//! The hardening engine: TLS readiness of the fleet, plans for a proposed `SSLProtocol`, and
//! the steps of `ward tls harden` that change the server (stage, apply, rollback), under
//! `/api/v1/tls/` on the console.
//!
//! - [`model`]: the decisions, pure and table-tested;
//! - `readiness`, `plan`: the read-only answers;
//! - `steps`: stage, apply and rollback, which write through `Store::apply` (audited, serials
//!   bumped) and edit the conf files with ward-tls's editor;
//! - this file: the proposal, the fleet as plans read it, the state of the last harden
//!   (`<data>/harden/state.json`, written atomically, so an interrupted harden can be resumed
//!   or rolled back from any admin client), and the routes.

/// The pure model harden judges with; it lives in [`crate::reach`], beside the admin API
/// that asks the same question when agents move.
pub use crate::reach as model;
mod plan;
mod readiness;
mod steps;

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

use crate::api::{
    blocking, json_response, object, only_keys, query_pairs, string, ApiError, ApiResult,
    HttpResponse,
};
use crate::auth::Caller;
use crate::config::Role;
use crate::ops::{audit, create_group, find_group, tree_of};
use crate::state::App;
use model::{AgentFacts, Capability, GroupFacts, Risk, Verdict, Via};
use ward_proto::now_ms;

/// Default: an agent silent for more than this many check-in intervals counts as offline.
pub const OFFLINE_INTERVALS: u32 = 3;
/// The name of the legacy subgroup harden creates under each affected group.
pub const LEGACY_NAME: &str = "Legacy TLS";
/// Agents listed per category in a plan or readiness answer, unless the caller asks.
const DEFAULT_LIMIT: usize = 1000;

/// The last step a harden finished (`staged`, `applied`, `rolled_back` in the state file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    #[default]
    Staged,
    Applied,
    RolledBack,
}

/// What `ward tls harden` did last, kept across restarts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HardenState {
    pub protocol: String,
    /// `clients`, `console` or `all`.
    pub listener: String,
    pub legacy_group: Option<String>,
    pub legacy_name: String,
    pub step: Step,
    pub started_ms: i64,
    pub updated_ms: i64,
    pub applied_ms: Option<i64>,
    /// Agents moved by staging, and where from.
    pub moved: Vec<Moved>,
    /// The conf files as they were before the last harden that changed them.
    pub originals: Vec<Original>,
    /// Copies taken by an apply that has not finished: written before the first edit, so a
    /// crash mid-apply leaves the way back on record (rollback uses them, `--resume` keeps
    /// them as the originals).
    #[serde(default)]
    pub applying: Vec<Original>,
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
    ApiError::internal(message)
}

fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::conflict(code, message)
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
    /// The clients listener's policy as this proposal would make it, with the data dir its
    /// certificate paths are relative to; `None` when the proposal leaves that listener alone.
    fn clients_policy(&self, shared: &App) -> Option<(ward_tls::TlsPolicy, PathBuf)> {
        self.roles.contains(&Role::Clients).then(|| {
            let mut policy = shared.tls.current(Role::Clients).policy.clone();
            policy.protocol = self.decision.clone();
            (policy, shared.data.root().to_path_buf())
        })
    }

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
    fn clients_range(&self, shared: &App) -> VersionRange {
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
    /// Per agent stack (ClientHello fingerprint): whether its real hello, replayed through
    /// the proposed clients listener, is served. Empty when nothing is replayed.
    replayed: HashMap<std::sync::Arc<str>, bool>,
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
            replayed: HashMap::new(),
        })
    }

    /// The fleet as [`Fleet::read`] reads it, with every agent's stack replayed through the
    /// clients listener `proposed` would build (when it changes that listener).
    fn read_replayed(
        store: &dyn Store,
        intervals: u32,
        held: HashSet<String>,
        proposed: Option<&(ward_tls::TlsPolicy, PathBuf)>,
    ) -> Result<Fleet, ApiError> {
        let mut fleet = Fleet::read(store, intervals, held)?;
        if let Some((policy, root)) = proposed {
            // A proposed listener that cannot be built replays nothing: the model decides.
            if let Ok(context) = ward_tls::context::build_acceptor(policy, root) {
                fleet.replay(store, &context)?;
            }
        }
        Ok(fleet)
    }

    /// Replays every agent stack's kept ClientHello through `proposed` (the clients listener
    /// as the proposal would build it): the exact evidence of [`model::AgentFacts::replayed`].
    fn replay(
        &mut self,
        store: &dyn Store,
        proposed: &openssl::ssl::SslContextRef,
    ) -> Result<(), ApiError> {
        let wanted: HashSet<&str> = self
            .agents
            .iter()
            .filter_map(|a| a.hello.as_deref())
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let mut replayed = HashMap::new();
        for hello in store.client_hellos()? {
            if !wanted.contains(hello.digest.as_str()) {
                continue;
            }
            let served = ward_tls::replay::replay(proposed, &hello.bytes).served();
            if let Some(key) = self
                .agents
                .iter()
                .find_map(|a| a.hello.clone().filter(|h| **h == *hello.digest))
            {
                replayed.insert(key, served);
            }
        }
        self.replayed = replayed;
        Ok(())
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
        replayed: agent
            .hello
            .as_ref()
            .and_then(|hello| fleet.replayed.get(hello).copied()),
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
fn held(shared: &App) -> HashSet<String> {
    shared.held.snapshot()
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
        "last_checkin": agent.last_checkin_ms.map(crate::api::time),
        "serial": agent.serial,
        "acked_serial": agent.acked_serial,
        "evidence": if facts.replayed.is_some() { "replayed" } else { facts.capability.knowledge.name() },
    })
}

/// Each agent's verdict under `range`: the full answer for the plan and for staging.
struct Assessment {
    /// (index into `fleet.agents`, verdict) for every agent that is not unaffected, by id.
    flagged: Vec<(usize, Verdict)>,
    unaffected_https: u64,
    unaffected_http: u64,
    /// Simulated agents (a rehearsal's leftovers) that are offline or of unknown capability:
    /// not real machines, so they block nothing.
    simulated_ignored: u64,
}

fn assess(fleet: &Fleet, range: VersionRange, now: i64) -> Assessment {
    let mut assessment = Assessment {
        flagged: Vec::new(),
        unaffected_https: 0,
        unaffected_http: 0,
        simulated_ignored: 0,
    };
    for (index, agent) in fleet.agents.iter().enumerate() {
        let facts = facts(fleet, agent, now);
        let group = fleet.group_facts(agent.group);
        match model::judge(&facts, group, range) {
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

pub async fn route(
    shared: &App,
    caller: &Caller,
    method: &Method,
    segments: &[&str],
    query: &str,
    body: &Bytes,
) -> Option<ApiResult> {
    let result = match (segments, method) {
        (["tls", "readiness"], &Method::GET) => readiness::readiness(shared, query).await,
        (["tls", "hellos"], &Method::GET) => readiness::hellos(shared).await,
        (["tls", "plan"], &Method::POST) => plan::plan(shared, body).await,
        (["tls", "harden"], &Method::GET) => match read_state(shared.data.root()) {
            Ok(state) => Ok(json_response(StatusCode::OK, &json!({"state": state}))),
            Err(e) => Err(e),
        },
        (["tls", "harden", "stage"], &Method::POST) => steps::stage(shared, caller, body).await,
        (["tls", "harden", "apply"], &Method::POST) => steps::apply(shared, caller, body).await,
        (["tls", "rollback"], &Method::POST) => steps::rollback(shared, caller, body).await,
        (["tls", ..], _) => Err(ApiError::client(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "GET /tls/readiness, GET /tls/hellos, POST /tls/plan, GET /tls/harden, POST /tls/harden/stage, POST \
             /tls/harden/apply, POST /tls/rollback",
        )),
        _ => return None,
    };
    Some(result)
}
