//! Targeted wake-ups for held push check-ins. Every change the store applies says which
//! groups and agents get a new serial; [`Publishing`] wraps the store and broadcasts that, and
//! a held check-in re-reads its record only when a change concerns it. 10,000 held agents no
//! longer cost 10,000 database reads for an unrelated change.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::broadcast;
use ward_fleet::{Group, GroupId, ServerList};
use ward_store::{
    Account, AgentFilter, AgentRecord, AgentTls, Applied, AuditEntry, Change, Checkin, FleetTree,
    HandshakeFailure, HandshakeReport, Session, Store, StoreError, TelemetryBatch, TokenRecord,
};

/// The agents one applied change gave a new serial: those in `groups`, and `agents`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Wake {
    pub groups: HashSet<GroupId>,
    pub agents: HashSet<String>,
}

impl Wake {
    /// Whether the agent `id`, last seen in `group`, may have a new serial.
    pub fn concerns(&self, id: &str, group: GroupId) -> bool {
        self.groups.contains(&group) || self.agents.contains(id)
    }
}

/// How many changes a held check-in may fall behind before it re-reads its record anyway.
const BACKLOG: usize = 1024;

pub fn channel() -> broadcast::Sender<Arc<Wake>> {
    broadcast::channel(BACKLOG).0
}

/// A store that broadcasts the serial bumps of every change it applies, once committed.
pub struct Publishing {
    inner: Arc<dyn Store>,
    wakes: broadcast::Sender<Arc<Wake>>,
}

impl Publishing {
    pub fn new(inner: Arc<dyn Store>, wakes: broadcast::Sender<Arc<Wake>>) -> Publishing {
        Publishing { inner, wakes }
    }
}

impl Store for Publishing {
    fn apply(&self, change: &Change) -> Result<Applied, StoreError> {
        let applied = self.inner.apply(change)?;
        if !change.bump_groups.is_empty() || !change.bump_agents.is_empty() {
            // No receiver (nobody held) is not an error.
            let _ = self.wakes.send(Arc::new(Wake {
                groups: change.bump_groups.iter().copied().collect(),
                agents: change.bump_agents.iter().cloned().collect(),
            }));
        }
        Ok(applied)
    }

    fn record_telemetry(&self, batch: &TelemetryBatch) -> Result<(), StoreError> {
        self.inner.record_telemetry(batch)
    }

    fn handshake_report(
        &self,
        since_ms: i64,
        max_failures: usize,
    ) -> Result<HandshakeReport, StoreError> {
        self.inner.handshake_report(since_ms, max_failures)
    }

    fn recent_failures(
        &self,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<HandshakeFailure>, StoreError> {
        self.inner.recent_failures(since_ms, limit)
    }

    fn prune_telemetry(
        &self,
        before_ms: i64,
        tokens_expired_before_ms: i64,
    ) -> Result<u64, StoreError> {
        self.inner
            .prune_telemetry(before_ms, tokens_expired_before_ms)
    }

    fn initialise_fleet(
        &self,
        root: &Group,
        default_list: &ServerList,
    ) -> Result<bool, StoreError> {
        self.inner.initialise_fleet(root, default_list)
    }

    fn groups(&self) -> Result<Vec<Group>, StoreError> {
        self.inner.groups()
    }

    fn tree(&self) -> Result<FleetTree, StoreError> {
        self.inner.tree()
    }

    fn server_lists(&self) -> Result<Vec<ServerList>, StoreError> {
        self.inner.server_lists()
    }

    fn agents(&self, filter: &AgentFilter) -> Result<Vec<AgentRecord>, StoreError> {
        self.inner.agents(filter)
    }

    fn agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        self.inner.agent(id)
    }

    fn agents_tls(&self) -> Result<Vec<AgentTls>, StoreError> {
        self.inner.agents_tls()
    }

    fn hostnames(&self, ids: &[String]) -> Result<HashMap<String, String>, StoreError> {
        self.inner.hostnames(ids)
    }

    fn insert_agents(&self, agents: &[AgentRecord]) -> Result<(), StoreError> {
        self.inner.insert_agents(agents)
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.inner.tokens()
    }

    fn audit(&self, since_ms: i64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.audit(since_ms, limit)
    }

    fn account(&self, name: &str) -> Result<Option<Account>, StoreError> {
        self.inner.account(name)
    }

    fn client_hellos(&self) -> Result<Vec<ward_store::StoredHello>, StoreError> {
        self.inner.client_hellos()
    }

    fn hello_peers(&self, since_ms: i64) -> Result<Vec<ward_store::HelloPeer>, StoreError> {
        self.inner.hello_peers(since_ms)
    }

    fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.inner.accounts()
    }

    fn create_session(&self, session: &Session, checked_against: i64) -> Result<(), StoreError> {
        self.inner.create_session(session, checked_against)
    }

    fn session(&self, token_sha256: &str) -> Result<Option<Session>, StoreError> {
        self.inner.session(token_sha256)
    }

    fn agent_public_key(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.inner.agent_public_key(id)
    }

    fn record_checkins(
        &self,
        checkins: &[Checkin],
    ) -> Result<Vec<Option<AgentRecord>>, StoreError> {
        self.inner.record_checkins(checkins)
    }

    fn token_by_lookup(&self, lookup: &str) -> Result<Option<ward_store::TokenRecord>, StoreError> {
        self.inner.token_by_lookup(lookup)
    }

    fn recent_nonces(&self, since_ms: i64) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.inner.recent_nonces(since_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_concerns_the_agents_of_its_groups_and_its_agents() {
        let wake = Wake {
            groups: [2, 5].into_iter().collect(),
            agents: ["a1".to_string()].into_iter().collect(),
        };
        for (id, group, concerned) in [
            ("a1", 9, true),
            ("a2", 5, true),
            ("a2", 2, true),
            ("a2", 3, false),
            ("a3", 1, false),
        ] {
            assert_eq!(wake.concerns(id, group), concerned, "{id} in {group}");
        }
    }
}
