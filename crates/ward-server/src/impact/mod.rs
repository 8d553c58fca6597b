//! Who a proposed change would cut off, exactly: the fleet as plans read it, each agent's
//! kept ClientHello replayed through the proposed clients listener, the certificate checked as
//! the agents check it, and every agent judged by [`ward_plan::reach`]. Not an API: harden's
//! plan and steps, the reload guard and rollback all ask [`exact`].
//!
//! Blocking (OpenSSL and the store): call it inside `api::blocking`.
//!
//! Split by job: [`fleet`] reads the fleet and replays hellos, [`judge`] judges it (pure,
//! table-tested), [`render`] turns verdicts into ward-api's answers; this module builds the
//! proposed contexts and answers the guards (a typed refusal the front ends render).

pub(crate) mod fleet;
pub(crate) mod judge;
pub(crate) mod render;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use openssl::ssl::SslContext;
use openssl::x509::X509;
use ward_api::tls::{GuardPlan, PeerLine};
use ward_fleet::GroupId;
use ward_plan::reach::{self, Clients};
use ward_store::{AgentTls, Store, StoredHello};
use ward_tls::{TlsPolicy, VersionRange};

use crate::api::ApiError;
use crate::config::Role;
use crate::state::{App, Check, Checked};

pub(crate) use fleet::{facts, held, Fleet};
pub(crate) use judge::{assess, Assessment};

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
            untrusted: self.untrusted.for_agent(agent, self.fleet.served(agent)),
        }
    }
}

/// The hosts whose certificate check would fail, and why, by what the agent trusts and which
/// certificate it is served: the `default` for agents that trust ward's current CA (or never
/// said what they trust), and one per set of CAs agents reported that names a CA of this data
/// dir (during a CA rotation, agents that already trust the new CA as well as the old); each
/// judged for the RSA certificate, the EC one, and either (an agent whose replay is unknown
/// may be served either, so both must pass).
/// A set of CAs agents reported (`None`: the default), and the OpenSSL id of the key type
/// of the certificate they are served.
type ServedKey = (Option<std::sync::Arc<str>>, i32);

#[derive(Clone, Debug, Default)]
pub(crate) struct Untrusted {
    pub default: BTreeMap<String, String>,
    pub by_set: HashMap<std::sync::Arc<str>, BTreeMap<String, String>>,
    /// The same, for agents served a certificate of a known key type: (set, the key type's
    /// OpenSSL id) -> map; `None` for the default set.
    pub by_served: HashMap<ServedKey, BTreeMap<String, String>>,
}

impl Untrusted {
    pub fn for_agent(
        &self,
        agent: &AgentTls,
        served: Option<openssl::pkey::Id>,
    ) -> &BTreeMap<String, String> {
        let set = agent
            .trusted_cas
            .as_ref()
            .filter(|set| self.by_set.contains_key(*set));
        if let Some(map) = served.and_then(|key| self.by_served.get(&(set.cloned(), key.as_raw())))
        {
            return map;
        }
        set.and_then(|set| self.by_set.get(set))
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
/// judged by its replayed hello ([`judge_peers`]), from one read of the kept hellos.
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
) -> Result<(Impact, Vec<PeerLine>), ApiError> {
    let fleet = Fleet::read(store, intervals, held)?;
    let hellos = store.client_hellos()?;
    let impact = judge_planned(fleet, &hellos, root, running, planned, &HashMap::new(), now)?;
    let peers = judge_peers(store, &hellos, &impact.contexts, peers_since_ms)?;
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
        |fleet: &Fleet| match clients {
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
                report: Some(GuardPlan {
                    plan_failed: Some(error.message),
                    ..GuardPlan::default()
                }),
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
) -> Result<(usize, GuardPlan), ApiError> {
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
    let peers = judge_peers(store, &hellos, &after.contexts, now - 86_400_000)?;
    let (lost, mut plan) = render::guard_plan(&before, &after, peers, now);
    render::fill_hostnames(store, &mut [&mut plan.cut_off])?;
    Ok((lost, plan))
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
    let served_kinds = [openssl::pkey::Id::RSA, openssl::pkey::Id::EC];
    let mut untrusted = Untrusted {
        default: certificates
            .untrusted(&ca_pem, hosts.iter().copied(), None)
            .map_err(ApiError::internal)?,
        by_set: HashMap::new(),
        by_served: HashMap::new(),
    };
    for key in served_kinds {
        let map = certificates
            .untrusted(&ca_pem, hosts.iter().copied(), Some(key))
            .map_err(ApiError::internal)?;
        untrusted.by_served.insert((None, key.as_raw()), map);
    }
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
            .untrusted(&bundle, hosts.iter().copied(), None)
            .map_err(ApiError::internal)?;
        untrusted.by_set.insert(set.clone(), map);
        for key in served_kinds {
            let map = certificates
                .untrusted(&bundle, hosts.iter().copied(), Some(key))
                .map_err(ApiError::internal)?;
            untrusted
                .by_served
                .insert((Some(set.clone()), key.as_raw()), map);
        }
    }
    Ok(untrusted)
}

/// Every peer seen on a planned listener since `since_ms`, judged by replaying its last
/// ClientHello through the proposed context: `unaffected`, `cut_off`, or `unknown` (its hello
/// was not kept).
fn judge_peers(
    store: &dyn Store,
    hellos: &[StoredHello],
    proposed: &[(Role, SslContext)],
    since_ms: i64,
) -> Result<Vec<PeerLine>, ApiError> {
    let peers = store.hello_peers(since_ms)?;
    // A peer first seen after the caller read the hellos (a telemetry batch committed in
    // between: each batch writes a peer and its hello together) has its hello in a second
    // read.
    let read: std::collections::HashSet<&str> = hellos.iter().map(|h| h.digest.as_str()).collect();
    let later = if peers.iter().any(|p| !read.contains(p.digest.as_str())) {
        store.client_hellos()?
    } else {
        Vec::new()
    };
    let hellos: HashMap<&str, &[u8]> = hellos
        .iter()
        .chain(&later)
        .map(|h| (h.digest.as_str(), h.bytes.as_slice()))
        .collect();
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
                        render::served_words(*version, cipher, *group, *certificate),
                    ),
                    ward_tls::replay::Verdict::Refused { reason } => {
                        ("cut_off", render::refused_words(bytes, reason))
                    }
                }
            }
        };
        let ja4 = hellos
            .get(peer.digest.as_str())
            .and_then(|bytes| ward_tls::hello::parse_client_hello(bytes).ok())
            .map(|hello| hello.ja4());
        out.push(PeerLine {
            listener: peer.listener.clone(),
            address: peer.peer.clone(),
            fingerprint: peer.digest.clone(),
            ja4,
            last_seen: crate::api::time(peer.at_ms),
            verdict: verdict.to_string(),
            reason,
        });
    }
    Ok(out)
}

/// A fleet edit, as the guard judges it.
pub(crate) struct FleetEdit<'a> {
    /// The tree after the edit, when the edit changes a group's settings or place.
    pub tree: Option<ward_fleet::Tree>,
    /// Agents the edit moves: agent -> group.
    pub moves: &'a HashMap<String, GroupId>,
    /// The server lists after the edit, when the edit changes a list's servers.
    pub lists: Option<Vec<ward_fleet::ServerList>>,
}

/// The guard of a fleet edit (moving agents, a group's server list, moving a group, a list's
/// servers): the
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
    if let Some(lists) = edit.lists {
        fleet.with_lists(lists);
    }
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
            render::replay_words(&fleet, agent, &facts, &mut why);
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
