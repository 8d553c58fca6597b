//! The fleet as plans read it: the tree, the lists, every agent's TLS facts (one lean pass
//! over the store), what each group gives its agents, and each agent stack's kept ClientHello
//! replayed through a proposed clients listener. Reading and replaying; judging is
//! [`super::judge`]'s.

use std::collections::{HashMap, HashSet};

use ward_fleet::{GroupId, ServerList, Tree};
use ward_plan::reach::{AgentFacts, Capability, GroupFacts};
use ward_store::{AgentTls, Store, StoredHello};
use ward_tls::{ProtocolSet, TlsVersion};

use crate::api::ApiError;
use crate::ops::tree_of;
use crate::state::App;

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
    /// Per agent stack served by the replay: the key type of the certificate it gets.
    pub served_key: HashMap<std::sync::Arc<str>, openssl::pkey::Id>,
    /// The offline threshold, in check-in intervals.
    pub intervals: u32,
    /// Judge every agent as if it had acknowledged its settings (a fleet edit asks whether
    /// the new settings give a path, not whether the agent has them yet).
    pub acknowledged: bool,
}

/// Per group: index into `lists` of its effective list, and the offline threshold.
pub(crate) fn index(
    tree: &Tree,
    lists: &[ServerList],
    intervals: u32,
) -> HashMap<GroupId, (Option<usize>, i64)> {
    tree.effective_all()
        .into_iter()
        .map(|(id, effective)| {
            let list = lists.iter().position(|l| l.name == effective.server_list);
            let cycle = (effective.interval + effective.randomize).as_millis() as i64;
            // A check-in that changed nothing is recorded up to the lag late.
            let lag = ward_fleet::presence::RECORDING_LAG.as_millis() as i64;
            (
                id,
                (
                    list,
                    cycle.saturating_mul(intervals as i64).saturating_add(lag),
                ),
            )
        })
        .collect()
}

impl Fleet {
    pub fn read(
        store: &dyn Store,
        intervals: u32,
        held: HashSet<String>,
    ) -> Result<Fleet, ApiError> {
        let tree = tree_of(store)?.into_tree();
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
            served_key: HashMap::new(),
            intervals,
            acknowledged: false,
        })
    }

    /// The fleet as it would be with `lists` (a list's servers changed).
    pub fn with_lists(&mut self, lists: Vec<ServerList>) {
        self.groups = index(&self.tree, &lists, self.intervals);
        self.lists = lists;
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
            .filter_map(|a| replay_key(a).map(|h| (&**h, h)))
            .collect();
        if wanted.is_empty() {
            return;
        }
        let mut replayed = HashMap::new();
        let mut refusals = HashMap::new();
        let mut served_key = HashMap::new();
        for hello in hellos {
            if let Some(key) = wanted.get(hello.digest.as_str()) {
                let verdict = ward_tls::replay::replay(proposed, &hello.bytes);
                match &verdict {
                    ward_tls::replay::Verdict::Refused { reason } => {
                        refusals.insert(
                            std::sync::Arc::clone(key),
                            super::render::refused_words(&hello.bytes, reason),
                        );
                    }
                    ward_tls::replay::Verdict::Served { certificate, .. } => {
                        let id = match *certificate {
                            Some("RSA") => Some(openssl::pkey::Id::RSA),
                            Some("EC") => Some(openssl::pkey::Id::EC),
                            _ => None,
                        };
                        if let Some(id) = id {
                            served_key.insert(std::sync::Arc::clone(key), id);
                        }
                    }
                }
                replayed.insert(std::sync::Arc::clone(key), verdict.served());
            }
        }
        self.replayed = replayed;
        self.refusals = refusals;
        self.served_key = served_key;
    }

    /// The key type of the certificate `agent`'s replayed hello is served, when known.
    pub fn served(&self, agent: &AgentTls) -> Option<openssl::pkey::Id> {
        replay_key(agent).and_then(|hello| self.served_key.get(hello).copied())
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
        replayed: replay_key(agent).and_then(|hello| fleet.replayed.get(hello).copied()),
        reverted: agent.refused_serial.is_some(),
    }
}

/// The ClientHello an agent is judged by: the one it sent over TLS, else the one its stack
/// reports of itself (an agent seen only over plain HTTP). Observed always wins.
pub(crate) fn replay_key(agent: &AgentTls) -> Option<&std::sync::Arc<str>> {
    agent.hello.as_ref().or(agent.reported_hello.as_ref())
}

/// The store's rank bits ([`ward_store::rank::bits`]) as a set.
pub(crate) fn version_set(bits: u8) -> ProtocolSet {
    (1..=4)
        .filter(|rank| bits & (1 << (rank - 1)) != 0)
        .filter_map(rank_version)
        .collect()
}

/// The store's rank ([`ward_store::rank::of`]) as a version, by its name.
pub(crate) fn rank_version(rank: u8) -> Option<TlsVersion> {
    let name = ward_store::rank::name(rank)?;
    TlsVersion::ALL.into_iter().find(|v| v.name() == name)
}

/// The agents whose push check-in is held right now.
pub(crate) fn held(shared: &App) -> HashSet<String> {
    shared.held.snapshot()
}

#[cfg(test)]
mod rank_tests {
    use super::*;

    /// The store ranks and ward-tls names versions alike: each rank maps to the version of
    /// that name and back, and a rank set to the set of those versions.
    #[test]
    fn store_ranks_are_the_versions_of_their_names() {
        for version in TlsVersion::ALL {
            let rank = ward_store::rank::of(version.name());
            assert_eq!(rank_version(rank), Some(version));
            let bits = ward_store::rank::bits([version.name()]);
            assert_eq!(version_set(bits), ProtocolSet::from_iter([version]));
        }
        assert_eq!(rank_version(0), None);
        assert_eq!(rank_version(5), None);
        let all = ward_store::rank::bits(TlsVersion::ALL.map(|v| v.name()));
        assert_eq!(version_set(all), ProtocolSet::from_iter(TlsVersion::ALL));
    }
}
