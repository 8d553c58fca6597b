//! Who a proposed change would cut off, exactly: the fleet as plans read it, each agent's
//! kept ClientHello replayed through the proposed clients listener, the certificate checked as
//! the agents check it, and every agent judged by [`ward_plan::reach`]. Not an API: harden's
//! plan and steps, the reload guard and rollback all ask [`exact`].
//!
//! Blocking (OpenSSL and the store): call it inside `api::blocking`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use openssl::ssl::SslContext;
use openssl::x509::X509;
use serde_json::{json, Value};
use ward_fleet::{GroupId, ServerList, Tree};
use ward_plan::reach::{self, AgentFacts, Capability, Clients, GroupFacts, Risk, Verdict, Via};
use ward_store::{AgentTls, Store, StoredHello};
use ward_tls::{ProtocolSet, TlsPolicy, TlsVersion, VersionRange};

use crate::api::ApiError;
use crate::config::Role;
use crate::ops::tree_of;
use crate::state::{App, Check, Checked};

/// Default: an agent silent for more than this many check-in intervals counts as offline.
pub const OFFLINE_INTERVALS: u32 = 3;

/// What a proposed change does to the fleet.
pub(crate) struct Impact {
    pub fleet: Fleet,
    pub assessment: Assessment,
    /// The versions the clients listener would serve.
    pub range: VersionRange,
    /// Server list hosts whose verifying agents would refuse the proposed clients
    /// certificate, and why (only hosts the running certificate names: this server's).
    pub untrusted: Untrusted,
    /// The proposed listeners' contexts, for replaying the other peers' hellos.
    pub contexts: Vec<(Role, SslContext)>,
}

impl Impact {
    /// The clients listener as `agent` would meet it (the CAs it trusts decide the hosts
    /// whose certificate it refuses).
    pub fn clients_for(&self, agent: &AgentTls) -> Clients<'_> {
        Clients {
            range: self.range,
            untrusted: self.untrusted.for_agent(agent),
        }
    }
}

/// The hosts whose certificate check would fail, and why, by what the agent trusts: the
/// `default` for agents that trust ward's current CA (or never said what they trust), and
/// one map per set of CAs agents reported that names a CA of this data dir (during a CA
/// rotation, agents that already trust the new CA as well as the old).
#[derive(Clone, Debug, Default)]
pub(crate) struct Untrusted {
    pub default: BTreeMap<String, String>,
    pub by_set: HashMap<std::sync::Arc<str>, BTreeMap<String, String>>,
}

impl Untrusted {
    pub fn for_agent(&self, agent: &AgentTls) -> &BTreeMap<String, String> {
        agent
            .trusted_cas
            .as_ref()
            .and_then(|set| self.by_set.get(set))
            .unwrap_or(&self.default)
    }
}

/// The running clients listener, as much of it as a plan compares against.
pub(crate) struct Running {
    pub policy: TlsPolicy,
    /// Its certificate (the leaf): the host names it has are this server's.
    pub leaf: Option<X509>,
}

impl Running {
    pub fn clients(app: &App) -> Running {
        let current = app.tls.current(Role::Clients);
        Running {
            policy: current.policy.clone(),
            leaf: current.context.certificate().map(|c| c.to_owned()),
        }
    }
}

/// The exact plan of `planned` (the listeners a change touches, with the policy each would
/// run): every agent judged against the proposed clients listener. 422 `proposal_invalid`
/// when a proposed listener cannot be built (a missing certificate, a key that does not
/// match), as the server itself would refuse it.
pub(crate) fn exact(
    store: &dyn Store,
    root: &Path,
    running: &Running,
    planned: &[(Role, TlsPolicy)],
    intervals: u32,
    held: HashSet<String>,
    now: i64,
) -> Result<Impact, ApiError> {
    exact_moved(
        store,
        root,
        running,
        planned,
        &HashMap::new(),
        intervals,
        held,
        now,
    )
}

/// [`exact`], with some agents in other groups than today (`moves`: agent -> group), as a
/// rollback that moves them back would leave them.
#[allow(clippy::too_many_arguments)]
pub(crate) fn exact_moved(
    store: &dyn Store,
    root: &Path,
    running: &Running,
    planned: &[(Role, TlsPolicy)],
    moves: &HashMap<String, GroupId>,
    intervals: u32,
    held: HashSet<String>,
    now: i64,
) -> Result<Impact, ApiError> {
    let fleet = Fleet::read(store, intervals, held)?;
    let hellos = store.client_hellos()?;
    judge_planned(fleet, &hellos, root, running, planned, moves, now)
}

/// [`exact`], and every other peer seen on a planned listener since `peers_since_ms`
/// judged by its replayed hello ([`peers_json`]), from one read of the kept hellos.
#[allow(clippy::too_many_arguments)]
pub(crate) fn exact_with_peers(
    store: &dyn Store,
    root: &Path,
    running: &Running,
    planned: &[(Role, TlsPolicy)],
    intervals: u32,
    held: HashSet<String>,
    now: i64,
    peers_since_ms: i64,
) -> Result<(Impact, Vec<Value>), ApiError> {
    let fleet = Fleet::read(store, intervals, held)?;
    let hellos = store.client_hellos()?;
    let impact = judge_planned(fleet, &hellos, root, running, planned, &HashMap::new(), now)?;
    let peers = peers_json(store, &hellos, &impact.contexts, peers_since_ms)?;
    Ok((impact, peers))
}

/// The contexts the server would build for `planned`; 422 `proposal_invalid` when it could
/// not.
fn build_contexts(
    planned: &[(Role, TlsPolicy)],
    root: &Path,
) -> Result<Vec<(Role, SslContext)>, ApiError> {
    planned
        .iter()
        .map(|(role, policy)| {
            let context = ward_tls::context::build_acceptor(policy, root).map_err(|e| {
                ApiError::client(
                    hyper::StatusCode::UNPROCESSABLE_ENTITY,
                    "proposal_invalid",
                    format!("the proposed {role} listener cannot be built: {e}"),
                )
            })?;
            Ok((*role, context))
        })
        .collect()
}

/// `fleet` (already read, with the kept `hellos`) judged against the listeners `planned`
/// would build, some agents moved (`moves`).
fn judge_planned(
    fleet: Fleet,
    hellos: &[StoredHello],
    root: &Path,
    running: &Running,
    planned: &[(Role, TlsPolicy)],
    moves: &HashMap<String, GroupId>,
    now: i64,
) -> Result<Impact, ApiError> {
    let contexts = build_contexts(planned, root)?;
    let clients = planned
        .iter()
        .find(|(role, _)| *role == Role::Clients)
        .map(|(_, policy)| policy);
    let range = clients.unwrap_or(&running.policy).protocol.range;
    judge_fleet(
        fleet,
        hellos,
        contexts,
        range,
        moves,
        now,
        |fleet| match clients {
            Some(policy) => untrusted_hosts(root, running, policy, fleet),
            None => Ok(Untrusted::default()),
        },
    )
}

/// The fleet judged against listeners already built (`contexts`; the clients one, when
/// given, replays every agent's hello), serving `range`, with `untrusted` (from the server
/// lists) the hosts whose certificate check would fail.
fn judge_fleet(
    mut fleet: Fleet,
    hellos: &[StoredHello],
    contexts: Vec<(Role, SslContext)>,
    range: VersionRange,
    moves: &HashMap<String, GroupId>,
    now: i64,
    untrusted: impl FnOnce(&Fleet) -> Result<Untrusted, ApiError>,
) -> Result<Impact, ApiError> {
    if !moves.is_empty() {
        for agent in &mut fleet.agents {
            if let Some(group) = moves.get(&agent.id) {
                agent.group = *group;
            }
        }
    }
    if let Some((_, context)) = contexts.iter().find(|(role, _)| *role == Role::Clients) {
        fleet.replay(hellos, context);
    }
    let untrusted = untrusted(&fleet)?;
    let assessment = assess(&fleet, range, &untrusted, now);
    Ok(Impact {
        fleet,
        assessment,
        range,
        untrusted,
        contexts,
    })
}

/// The reload guard: a check that plans the new listeners against the running ones, and
/// keeps the old settings when agents that have a working path now would lose it (unless
/// `accept_cut_off`), and always on a dry run. Agents already without a path are not the
/// reload's doing and do not block it. Its report: `lost` (how many), `cut_off` (who, why),
/// `untrusted_certificate`, `peers` (every other client seen, judged), `counts`.
pub(crate) fn reload_check(app: &App, accept_cut_off: bool, dry_run: bool) -> Check {
    let store = app.store.clone();
    let root = app.data.root().to_path_buf();
    let running = Running::clients(app);
    let serving = Serving::of(app);
    let held = held(app);
    Box::new(move |console, clients| {
        let planned = [
            (Role::Console, console.policy.clone()),
            (Role::Clients, clients.policy.clone()),
        ];
        let now = ward_proto::now_ms();
        let guarded = guard(
            &*store,
            &root,
            &running,
            serving,
            &planned,
            &HashMap::new(),
            held,
            now,
        );
        match guarded {
            Ok((lost, report)) => Checked {
                swap: !dry_run && (lost == 0 || accept_cut_off),
                report: Some(report),
            },
            // Not knowing who it would cut off, it cuts nobody off unless told to.
            Err(error) => Checked {
                swap: !dry_run && accept_cut_off,
                report: Some(json!({"plan_failed": error.message})),
            },
        }
    })
}

/// The listeners serving now (their built contexts), for a guard's "before".
pub(crate) struct Serving(Vec<(Role, SslContext)>);

impl Serving {
    pub fn of(app: &App) -> Serving {
        Serving(
            [Role::Console, Role::Clients]
                .into_iter()
                .map(|role| (role, app.tls.current(role).context.clone()))
                .collect(),
        )
    }
}

/// A guard's question: which agents that have a working path now (under the `serving`
/// listeners, in their groups) would lose it under `planned` (and `moves`)? Agents already
/// without a path are not the change's doing. Returns how many, and the report: `lost`,
/// `cut_off` (who, why, with host names), `untrusted_certificate`, `peers` (every other client
/// seen in the last day, judged), `counts`, `message`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn guard(
    store: &dyn Store,
    root: &Path,
    running: &Running,
    serving: Serving,
    planned: &[(Role, TlsPolicy)],
    moves: &HashMap<String, GroupId>,
    held: HashSet<String>,
    now: i64,
) -> Result<(usize, Value), ApiError> {
    // The fleet and the kept hellos are read once, and judged twice: as it is, and after.
    let fleet = Fleet::read(store, OFFLINE_INTERVALS, held)?;
    let hellos = store.client_hellos()?;
    let range = running.policy.protocol.range;
    let before = judge_fleet(
        fleet.clone(),
        &hellos,
        serving.0,
        range,
        &HashMap::new(),
        now,
        |_| Ok(Untrusted::default()),
    )?;
    let after = judge_planned(fleet, &hellos, root, running, planned, moves, now)?;
    let peers = peers_json(store, &hellos, &after.contexts, now - 86_400_000)?;
    let (lost, mut report) = lost_json(&before, &after, peers, now);
    fill_hostnames(store, &mut report, &["cut_off"])?;
    Ok((lost, report))
}

/// The ids of the agents a guard's report lists as cut off: what an audit entry names when
/// an admin accepted the cut-off.
pub(crate) fn cut_off_ids(report: &Value) -> Vec<Value> {
    report["cut_off"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|line| line["id"].clone())
        .collect()
}

/// The agents `after` flags that `before` did not (they lose their last path), listed with
/// their reasons: (how many, the report).
fn lost_json(before: &Impact, after: &Impact, peers: Vec<Value>, now: i64) -> (usize, Value) {
    let flagged_before: HashSet<&str> = before
        .assessment
        .flagged
        .iter()
        .map(|(index, _)| before.fleet.agents[*index].id.as_str())
        .collect();
    let lost: Vec<&(usize, Verdict)> = after
        .assessment
        .flagged
        .iter()
        .filter(|(index, _)| !flagged_before.contains(after.fleet.agents[*index].id.as_str()))
        .collect();
    let distrusting = lost
        .iter()
        .filter(|(index, _)| {
            let agent = &after.fleet.agents[*index];
            let group = after.fleet.group_facts(agent.group);
            after.clients_for(agent).distrust(group.list).is_some()
        })
        .count();
    let lines: Vec<Value> = lost
        .iter()
        .take(1000)
        .map(|(index, verdict)| {
            let mut line = agent_line(after, *index, verdict, now);
            line["verdict"] = json!(verdict.name());
            line
        })
        .collect();
    let mut message = format!(
        "{} agent(s) would lose their last working path to the server",
        lost.len()
    );
    if distrusting > 0 {
        message.push_str(&format!(
            "; {distrusting} agents do not trust this certificate ({})",
            after
                .untrusted
                .default
                .iter()
                .map(|(host, why)| format!("{host}: {why}"))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    let cut_peers = peers.iter().filter(|p| p["verdict"] == "cut_off").count();
    (
        lost.len(),
        json!({
            "lost": lost.len(),
            "untrusting": distrusting,
            "message": message,
            "cut_off": lines,
            "untrusted_certificate": after.untrusted.default,
            "counts": impact_json(after, 0, now)["counts"],
            "peers": peers,
            "peers_cut_off": cut_peers,
        }),
    )
}

/// One agent's line with its reason, as plans list it.
fn agent_line(impact: &Impact, index: usize, verdict: &Verdict, now: i64) -> Value {
    let fleet = &impact.fleet;
    let agent = &fleet.agents[index];
    let facts = facts(fleet, agent, now);
    let group = fleet.group_facts(agent.group);
    let mut line = agent_json(fleet, agent, &facts);
    let mut reason = reach::explain(&facts, group, impact.clients_for(agent), verdict);
    // The replay's own words: what the stack offers, and why OpenSSL refuses it.
    if let Some(refusal) = agent.hello.as_ref().and_then(|h| fleet.refusals.get(h)) {
        reason.push_str(": ");
        reason.push_str(refusal);
    }
    line["reason"] = json!(reason);
    line
}

/// The hosts of HTTPS entries with certificate checks that the running certificate names
/// (this server) and the proposed certificates would fail for, with why: for agents that
/// trust ward's current CA, and for each set of CAs agents reported that names a CA this data
/// dir knows (the current one, a rotation's next, the previous), verified against those.
fn untrusted_hosts(
    root: &Path,
    running: &Running,
    proposed: &TlsPolicy,
    fleet: &Fleet,
) -> Result<Untrusted, ApiError> {
    let Some(leaf) = &running.leaf else {
        return Ok(Untrusted::default());
    };
    let hosts: std::collections::BTreeSet<&str> = fleet
        .lists
        .iter()
        .flat_map(|l| l.levels.iter().flatten())
        .filter(|e| {
            e.protocol == ward_fleet::serverlist::Protocol::Https
                && e.verify_certificate
                && ward_plan::trust::names_host(leaf, &e.address)
        })
        .map(|e| e.address.as_str())
        .collect();
    if hosts.is_empty() {
        return Ok(Untrusted::default());
    }
    let data = crate::datadir::DataDir::new(root);
    let ca = data.ca_cert();
    let ca_pem =
        std::fs::read(&ca).map_err(|e| ApiError::internal(format!("{}: {e}", ca.display())))?;
    let certificates = ward_plan::trust::Certificates::load(proposed, root).map_err(|e| {
        ApiError::client(
            hyper::StatusCode::UNPROCESSABLE_ENTITY,
            "proposal_invalid",
            e,
        )
    })?;
    let mut untrusted = Untrusted {
        default: certificates
            .untrusted(&ca_pem, hosts.iter().copied())
            .map_err(ApiError::internal)?,
        by_set: HashMap::new(),
    };
    // The CAs this data dir knows, by fingerprint: what a reported set can be verified with.
    let known: Vec<(String, Vec<u8>)> =
        [data.ca_cert(), data.ca_next_cert(), data.ca_previous_cert()]
            .iter()
            .filter_map(|path| std::fs::read(path).ok())
            .filter_map(|pem| {
                let print = ward_tls::pki::certificate_fingerprints(&pem)
                    .into_iter()
                    .next()?;
                Some((print, pem))
            })
            .collect();
    let sets: HashSet<&std::sync::Arc<str>> = fleet
        .agents
        .iter()
        .filter_map(|a| a.trusted_cas.as_ref())
        .collect();
    for set in sets {
        let bundle: Vec<u8> = known
            .iter()
            .filter(|(print, _)| set.split(',').any(|p| p == print))
            .flat_map(|(_, pem)| pem.iter().copied())
            .collect();
        if bundle.is_empty() {
            continue; // none of ward's CAs: judged as the default
        }
        let map = certificates
            .untrusted(&bundle, hosts.iter().copied())
            .map_err(ApiError::internal)?;
        untrusted.by_set.insert(set.clone(), map);
    }
    Ok(untrusted)
}

/// The fleet as the plan reads it: the tree, the lists, every agent's TLS facts, and what
/// each group gives its agents.
#[derive(Clone)]
pub(crate) struct Fleet {
    pub tree: Tree,
    pub lists: Vec<ServerList>,
    pub agents: Vec<AgentTls>,
    /// Per group: index into `lists` of its effective list, and the offline threshold.
    pub groups: HashMap<GroupId, (Option<usize>, i64)>,
    /// Push agents connected right now.
    pub held: HashSet<String>,
    /// Per agent stack (ClientHello fingerprint): whether its real hello, replayed through
    /// the proposed clients listener, is served. Empty when nothing is replayed.
    pub replayed: HashMap<std::sync::Arc<str>, bool>,
    /// Per agent stack refused by the replay: what it offers and OpenSSL's reason.
    pub refusals: HashMap<std::sync::Arc<str>, String>,
    /// The offline threshold, in check-in intervals.
    pub intervals: u32,
    /// Judge every agent as if it had acknowledged its settings (a fleet edit asks whether
    /// the new settings give a path, not whether the agent has them yet).
    pub acknowledged: bool,
}

/// Per group: index into `lists` of its effective list, and the offline threshold.
fn index(
    tree: &Tree,
    lists: &[ServerList],
    intervals: u32,
) -> HashMap<GroupId, (Option<usize>, i64)> {
    tree.effective_all()
        .into_iter()
        .map(|(id, effective)| {
            let list = lists.iter().position(|l| l.name == effective.server_list);
            let cycle = (effective.interval + effective.randomize).as_millis() as i64;
            (id, (list, cycle.saturating_mul(intervals as i64)))
        })
        .collect()
}

impl Fleet {
    pub fn read(
        store: &dyn Store,
        intervals: u32,
        held: HashSet<String>,
    ) -> Result<Fleet, ApiError> {
        let tree = tree_of(store)?;
        let lists = store.server_lists()?;
        let agents = store.agents_tls()?;
        let groups = index(&tree, &lists, intervals);
        Ok(Fleet {
            tree,
            lists,
            agents,
            groups,
            held,
            replayed: HashMap::new(),
            refusals: HashMap::new(),
            intervals,
            acknowledged: false,
        })
    }

    /// The fleet as it would be with `tree` (a group's settings or place changed).
    pub fn with_tree(&mut self, tree: Tree) {
        self.groups = index(&tree, &self.lists, self.intervals);
        self.tree = tree;
    }

    /// Replays every agent stack's kept ClientHello through `proposed` (the clients listener
    /// as the proposal would build it): the exact evidence of [`reach::AgentFacts::replayed`].
    pub fn replay(&mut self, hellos: &[StoredHello], proposed: &openssl::ssl::SslContextRef) {
        // Each stack once, keyed by the agents' own shared string (one pass over the agents).
        let wanted: HashMap<&str, &std::sync::Arc<str>> = self
            .agents
            .iter()
            .filter_map(|a| a.hello.as_ref().map(|h| (&**h, h)))
            .collect();
        if wanted.is_empty() {
            return;
        }
        let mut replayed = HashMap::new();
        let mut refusals = HashMap::new();
        for hello in hellos {
            if let Some(key) = wanted.get(hello.digest.as_str()) {
                let verdict = ward_tls::replay::replay(proposed, &hello.bytes);
                if let ward_tls::replay::Verdict::Refused { reason } = &verdict {
                    refusals.insert(
                        std::sync::Arc::clone(key),
                        refused_words(&hello.bytes, reason),
                    );
                }
                replayed.insert(std::sync::Arc::clone(key), verdict.served());
            }
        }
        self.replayed = replayed;
        self.refusals = refusals;
    }

    pub fn group_facts(&self, group: GroupId) -> GroupFacts<'_> {
        let (list, offline_after_ms) = self.groups.get(&group).copied().unwrap_or((None, 0));
        GroupFacts {
            list: list.map(|i| &self.lists[i]),
            offline_after_ms,
        }
    }
}

pub(crate) fn facts(fleet: &Fleet, agent: &AgentTls, now: i64) -> AgentFacts {
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
        pending: !fleet.acknowledged && agent.acked_serial < agent.serial,
        silent_ms,
        replayed: agent
            .hello
            .as_ref()
            .and_then(|hello| fleet.replayed.get(hello).copied()),
    }
}

/// The store's rank bits (bit 0 `TLSv1` ... bit 3 `TLSv1.3`) as a set.
pub(crate) fn version_set(bits: u8) -> ProtocolSet {
    TlsVersion::ALL
        .into_iter()
        .enumerate()
        .filter(|(index, _)| bits & (1 << index) != 0)
        .map(|(_, version)| version)
        .collect()
}

/// The store's rank (1 `TLSv1` ... 4 `TLSv1.3`) as a version.
pub(crate) fn rank_version(rank: u8) -> Option<TlsVersion> {
    TlsVersion::ALL
        .get(usize::from(rank).checked_sub(1)?)
        .copied()
}

/// Fills in `"hostname"` of every agent line in `arrays` of `value`, in one store read.
pub(crate) fn fill_hostnames(
    store: &dyn Store,
    value: &mut Value,
    arrays: &[&str],
) -> Result<(), ApiError> {
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
pub(crate) fn held(shared: &App) -> HashSet<String> {
    shared.held.snapshot()
}

/// One agent's line in a plan or readiness answer.
pub(crate) fn agent_json(fleet: &Fleet, agent: &AgentTls, facts: &AgentFacts) -> Value {
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
            untrusted: untrusted.for_agent(agent),
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

/// Every peer seen on a planned listener since `since_ms`, judged by replaying its last
/// ClientHello through the proposed context: `{listener, address, fingerprint, verdict,
/// reason}`, with `verdict` `unaffected` or `cut_off`.
fn peers_json(
    store: &dyn Store,
    hellos: &[StoredHello],
    proposed: &[(Role, SslContext)],
    since_ms: i64,
) -> Result<Vec<Value>, ApiError> {
    let hellos: HashMap<&str, &[u8]> = hellos
        .iter()
        .map(|h| (h.digest.as_str(), h.bytes.as_slice()))
        .collect();
    let peers = store.hello_peers(since_ms)?;
    let mut verdicts: HashMap<(Role, &str), ward_tls::replay::Verdict> = HashMap::new();
    let mut out = Vec::new();
    for peer in &peers {
        let Some((role, context)) = proposed.iter().find(|(r, _)| r.name() == peer.listener) else {
            continue;
        };
        let (verdict, reason) = match hellos.get(peer.digest.as_str()) {
            None => (
                "unknown",
                "its ClientHello was not kept (more distinct stacks than the bound)".to_string(),
            ),
            Some(bytes) => {
                let verdict = verdicts
                    .entry((*role, peer.digest.as_str()))
                    .or_insert_with(|| ward_tls::replay::replay(context, bytes));
                match verdict {
                    ward_tls::replay::Verdict::Served {
                        version,
                        cipher,
                        group,
                        certificate,
                    } => (
                        "unaffected",
                        served_words(*version, cipher, *group, *certificate),
                    ),
                    ward_tls::replay::Verdict::Refused { reason } => {
                        ("cut_off", refused_words(bytes, reason))
                    }
                }
            }
        };
        let ja4 = hellos
            .get(peer.digest.as_str())
            .and_then(|bytes| ward_tls::hello::parse_client_hello(bytes).ok())
            .map(|hello| hello.ja4());
        out.push(json!({
            "listener": peer.listener,
            "address": peer.peer,
            "fingerprint": peer.digest,
            "ja4": ja4,
            "last_seen": crate::api::time(peer.at_ms),
            "verdict": verdict,
            "reason": reason,
        }));
    }
    Ok(out)
}

/// The agents' part of a plan's answer: `agents`, `counts`, `cut_off` and `at_risk` (at most
/// `limit` lines each, every line with its reason), `untrusted_certificate` (host -> why) and
/// `ok`. Harden's plan, the reload guard and rollback all answer in this shape.
pub(crate) fn impact_json(impact: &Impact, limit: usize, now: i64) -> Value {
    let fleet = &impact.fleet;
    let assessment = &impact.assessment;
    let mut cut_off = Vec::new();
    let mut at_risk = Vec::new();
    let mut risks: HashMap<&str, u64> = HashMap::new();
    let (mut cut_count, mut risk_count) = (0u64, 0u64);
    // Only the agents listed get their line and sentence written.
    let line = |index: usize, verdict: &Verdict| agent_line(impact, index, verdict, now);
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
        "untrusted_certificate": impact.untrusted.default,
        "ok": cut_count == 0 && risk_count == 0,
    })
}

/// A fleet edit, as the guard judges it.
pub(crate) struct FleetEdit<'a> {
    /// The tree after the edit, when the edit changes a group's settings or place.
    pub tree: Option<Tree>,
    /// Agents the edit moves: agent -> group.
    pub moves: &'a HashMap<String, GroupId>,
}

/// The guard of a fleet edit (moving agents, a group's server list, moving a group): the
/// agents that have a working path now and would have none after `edit`, with why. Each agent
/// is judged exactly where ward can (its kept ClientHello replayed through the clients
/// listener serving now, `clients`), as if it had acknowledged the new settings, and offline
/// agents count (they come back to the new settings). Blocking.
pub(crate) fn fleet_guard(
    store: &dyn Store,
    clients: &SslContext,
    range: VersionRange,
    edit: FleetEdit<'_>,
) -> Result<Vec<(String, String)>, ApiError> {
    let now = ward_proto::now_ms();
    let mut fleet = Fleet::read(store, u32::MAX, HashSet::new())?;
    fleet.acknowledged = true;
    fleet.replay(&store.client_hellos()?, clients);
    let trusted = Untrusted::default();
    let listener = Clients {
        range,
        untrusted: &trusted.default,
    };
    let before: HashSet<String> = assess(&fleet, range, &trusted, now)
        .flagged
        .iter()
        .map(|(index, _)| fleet.agents[*index].id.clone())
        .collect();
    if let Some(tree) = edit.tree {
        fleet.with_tree(tree);
    }
    for agent in &mut fleet.agents {
        if let Some(group) = edit.moves.get(&agent.id) {
            agent.group = *group;
        }
    }
    let after = assess(&fleet, range, &trusted, now);
    Ok(after
        .flagged
        .iter()
        .filter(|(index, _)| !before.contains(&fleet.agents[*index].id))
        .map(|(index, verdict)| {
            let agent = &fleet.agents[*index];
            let facts = facts(&fleet, agent, now);
            let group = fleet.group_facts(agent.group);
            let mut why = reach::explain(&facts, group, listener, verdict);
            if let Some(refusal) = agent.hello.as_ref().and_then(|h| fleet.refusals.get(h)) {
                why.push_str(": ");
                why.push_str(refusal);
            }
            (agent.id.clone(), why)
        })
        .collect())
}

/// The 409 of a fleet edit the guard refused: who, why, and how to go on.
pub(crate) fn refuse_fleet_edit(what: &str, cut: &[(String, String)]) -> ApiError {
    let listed: Vec<String> = cut
        .iter()
        .take(5)
        .map(|(id, why)| format!("{id} ({why})"))
        .collect();
    ApiError::conflict(
        "would_cut_off",
        format!(
            "{what} would leave {} agent(s) with no path to a server: {}{}; nothing changed. \
             Give them an HTTP entry (ward serverlist copy ... --port 8014), or send \
             \"accept_cut_off\": true to go on",
            cut.len(),
            listed.join(", "),
            if cut.len() > listed.len() {
                ", ..."
            } else {
                ""
            }
        ),
    )
}

/// "would be served TLSv1.2 with ECDHE-RSA-AES128-GCM-SHA256 (X25519, the RSA certificate)".
fn served_words(
    version: ward_tls::TlsVersion,
    cipher: &str,
    group: Option<&str>,
    certificate: Option<&str>,
) -> String {
    let mut how = Vec::new();
    how.push(group.unwrap_or("RSA key exchange").to_string());
    if let Some(key) = certificate {
        how.push(format!("the {key} certificate"));
    }
    format!(
        "would be served {version} with {cipher} ({})",
        how.join(", ")
    )
}

/// "offers only TLSv1, with RSA key exchange 4, 3DES 1; the proposed listener refuses it: no
/// shared cipher".
fn refused_words(hello: &[u8], reason: &str) -> String {
    match ward_tls::hello::parse_client_hello(hello) {
        Ok(parsed) => format!(
            "{}; the proposed listener refuses it: {reason}",
            ward_tls::hello::describe_offer(&parsed)
        ),
        Err(_) => format!("the proposed listener refuses it: {reason}"),
    }
}
