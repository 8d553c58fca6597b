//! Targeted wake-ups for held push check-ins. Every change the store applies says which
//! groups and agents get a new serial; [`Publishing`] wraps the store and broadcasts that, and
//! a held check-in re-reads its record only when a change concerns it. 10,000 held agents no
//! longer cost 10,000 database reads for an unrelated change, and a change that concerns them
//! all costs one: the first check-in it wakes reads the records of every agent it concerns,
//! and the others take theirs from that read ([`Wake::record`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::broadcast;
use ward_fleet::{Group, GroupId, ServerList};
use ward_store::{
    Account, AgentFilter, AgentRecord, AgentTls, Applied, AuditEntry, Change, Checkin, FleetTree,
    HandshakeFailure, HandshakeReport, Session, Store, StoreError, TelemetryBatch, TokenRecord,
};

/// The agents one applied change gave a new serial: those in `groups`, and `agents`.
#[derive(Debug)]
pub struct Wake {
    pub groups: HashSet<GroupId>,
    pub agents: HashSet<String>,
    /// When the change was committed (and this sent).
    pub at: std::time::Instant,
    /// It may concern anyone.
    everyone: bool,
    /// The records of the agents it concerns, as read once after the change (`None` when
    /// that read failed); dropped [`RECORDS_KEPT`] after the read, as the channel keeps the
    /// last [`BACKLOG`] wakes.
    records: std::sync::Mutex<Option<Arc<Records>>>,
}

type Records = tokio::sync::OnceCell<Option<HashMap<String, AgentRecord>>>;

/// How long a wake keeps the records it read: the check-ins it woke take theirs within
/// moments; one later reads its own.
const RECORDS_KEPT: std::time::Duration = std::time::Duration::from_secs(30);

impl Wake {
    pub fn new(groups: HashSet<GroupId>, agents: HashSet<String>) -> Wake {
        Wake {
            groups,
            agents,
            at: std::time::Instant::now(),
            everyone: false,
            records: std::sync::Mutex::new(Some(Default::default())),
        }
    }

    /// A change that may concern anyone (another server's, when a notification may have been
    /// missed): every held check-in reads its own record again.
    pub fn everyone() -> Wake {
        Wake {
            groups: HashSet::new(),
            agents: HashSet::new(),
            at: std::time::Instant::now(),
            everyone: true,
            records: std::sync::Mutex::new(None),
        }
    }

    /// What another server's change says (`ward_store::Store::watch`), as a wake.
    /// The wake a change another server made calls for (`None` for a change of the site's
    /// files, which [`crate::site`] follows, and which wakes nobody by itself).
    pub fn of_note(note: ward_store::ChangeNote) -> Option<Wake> {
        match note {
            ward_store::ChangeNote::Bumped { groups, agents } => Some(Wake::new(
                groups.into_iter().collect(),
                agents.into_iter().collect(),
            )),
            ward_store::ChangeNote::Unknown => Some(Wake::everyone()),
            ward_store::ChangeNote::Site { .. } => None,
        }
    }

    /// Whether the agent `id`, last seen in `group`, may have a new serial.
    pub fn concerns(&self, id: &str, group: GroupId) -> bool {
        self.everyone || self.groups.contains(&group) || self.agents.contains(id)
    }

    /// The record of agent `id` after this change, from one read of every agent the change
    /// concerns, made by the first check-in that asks (the rest wait for it): 15,000 held
    /// check-ins woken by one group change cost one query, not 15,000. `Some(None)` for an
    /// agent that is gone; `None` when that read failed or its records were dropped (the
    /// caller reads the record alone).
    pub async fn record(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
        id: &str,
    ) -> Option<Option<AgentRecord>> {
        let cell = self
            .records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let cell = cell?;
        let records = cell
            .get_or_init(|| {
                let (store, groups, agents) = (
                    store.clone(),
                    self.groups.iter().copied().collect::<Vec<_>>(),
                    self.agents.iter().cloned().collect::<Vec<_>>(),
                );
                let wake = Arc::downgrade(self);
                async move {
                    let records = tokio::task::spawn_blocking(move || {
                        read_concerned(&*store, groups, agents)
                    })
                    .await
                    .ok()
                    .and_then(Result::ok);
                    // Dropped a while later: the channel keeps the last wakes, not their reads.
                    tokio::spawn(async move {
                        tokio::time::sleep(RECORDS_KEPT).await;
                        if let Some(wake) = wake.upgrade() {
                            *wake.records.lock().unwrap_or_else(|p| p.into_inner()) = None;
                        }
                    });
                    records
                }
            })
            .await;
        records.as_ref().map(|records| records.get(id).cloned())
    }
}

/// The records of the agents in `groups` and of `agents`, by id.
fn read_concerned(
    store: &dyn Store,
    groups: Vec<GroupId>,
    agents: Vec<String>,
) -> Result<HashMap<String, AgentRecord>, StoreError> {
    let mut records = HashMap::new();
    if !groups.is_empty() {
        let filter = AgentFilter {
            groups: Some(groups),
            ..AgentFilter::default()
        };
        for record in store.agents(&filter)? {
            records.insert(record.id.clone(), record);
        }
    }
    for id in agents {
        if let std::collections::hash_map::Entry::Vacant(entry) = records.entry(id) {
            if let Some(record) = store.agent(entry.key())? {
                entry.insert(record);
            }
        }
    }
    Ok(records)
}

/// How many changes a held check-in may fall behind before it re-reads its record anyway.
const BACKLOG: usize = 1024;

pub fn channel() -> broadcast::Sender<Arc<Wake>> {
    broadcast::channel(BACKLOG).0
}

/// Counts the changes to the fleet that may change an agent's standing: each one ends every
/// touch ([`crate::checkins`]) until the agent's next written check-in. Bumped by every change this server applies
/// and by every note of another server's.
#[derive(Debug, Default)]
pub struct FleetChanges(AtomicU64);

impl FleetChanges {
    pub fn bump(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn now(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// A store that broadcasts the serial bumps of every change it applies, once committed.
/// Every write of agents but a check-in's counts in `changes`: it ends the check-ins answered
/// without a write ([`crate::checkins`]).
pub struct Publishing {
    inner: Arc<dyn Store>,
    wakes: broadcast::Sender<Arc<Wake>>,
    changes: Arc<FleetChanges>,
}

impl Publishing {
    pub fn new(
        inner: Arc<dyn Store>,
        wakes: broadcast::Sender<Arc<Wake>>,
        changes: Arc<FleetChanges>,
    ) -> Publishing {
        Publishing {
            inner,
            wakes,
            changes,
        }
    }
}

impl Store for Publishing {
    fn apply(&self, change: &Change) -> Result<Applied, StoreError> {
        let applied = self.inner.apply(change);
        // Counted even when it failed (it may have committed before the error reached here).
        self.changes.bump();
        let applied = applied?;
        if !change.bump_groups.is_empty() || !change.bump_agents.is_empty() {
            // No receiver (nobody held) is not an error.
            let _ = self.wakes.send(Arc::new(Wake::new(
                change.bump_groups.iter().copied().collect(),
                change.bump_agents.iter().cloned().collect(),
            )));
        }
        Ok(applied)
    }

    fn record_telemetry(&self, batch: &TelemetryBatch) -> Result<(), StoreError> {
        self.inner.record_telemetry(batch)
    }

    fn register_server(&self, server: &ward_store::ServerRecord) -> Result<(), StoreError> {
        self.inner.register_server(server)
    }

    fn servers(&self) -> Result<Vec<ward_store::ServerRecord>, StoreError> {
        self.inner.servers()
    }

    fn is_shared(&self) -> bool {
        self.inner.is_shared()
    }

    fn warnings(&self) -> Result<Vec<String>, StoreError> {
        self.inner.warnings()
    }

    fn site_files(&self) -> Result<Option<ward_store::SiteFiles>, StoreError> {
        self.inner.site_files()
    }

    fn site_generation(&self) -> Result<i64, StoreError> {
        self.inner.site_generation()
    }

    fn put_site_files(
        &self,
        expected: i64,
        files: &std::collections::BTreeMap<String, Vec<u8>>,
    ) -> Result<i64, StoreError> {
        self.inner.put_site_files(expected, files)
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
        let initialised = self.inner.initialise_fleet(root, default_list);
        self.changes.bump();
        initialised
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

    fn count_agents(&self, filter: &AgentFilter) -> Result<u64, StoreError> {
        self.inner.count_agents(filter)
    }

    fn agent_tally(
        &self,
        presence: &ward_store::Presence,
    ) -> Result<Vec<ward_store::AgentTally>, StoreError> {
        self.inner.agent_tally(presence)
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
        let inserted = self.inner.insert_agents(agents);
        self.changes.bump();
        inserted
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

    fn touch_checkins(&self, touches: &[ward_store::Touch]) -> Result<Vec<bool>, StoreError> {
        self.inner.touch_checkins(touches)
    }

    fn token_by_lookup(&self, lookup: &str) -> Result<Option<ward_store::TokenRecord>, StoreError> {
        self.inner.token_by_lookup(lookup)
    }

    fn recent_nonces(&self, since_ms: i64) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.inner.recent_nonces(since_ms)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn a_wake_concerns_the_agents_of_its_groups_and_its_agents() {
        let wake = Wake::new(
            [2, 5].into_iter().collect(),
            ["a1".to_string()].into_iter().collect(),
        );
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

    /// A new SQLite store in `dir` with the default fleet: the store and its root group.
    pub(crate) fn fleet_store(dir: &tempfile::TempDir) -> (Arc<dyn Store>, GroupId) {
        let store =
            ward_store::open(&ward_store::Database::Sqlite(dir.path().join("ward.db"))).unwrap();
        let root = ward_fleet::group::default_root("My Company", "Default");
        let list = ward_fleet::serverlist::build(
            "Default",
            vec![ward_fleet::serverlist::parse_spec("1:https://mgr1:443").unwrap()],
        )
        .unwrap();
        store.initialise_fleet(&root, &list).unwrap();
        let group = store.groups().unwrap()[0].id;
        (store, group)
    }

    /// An enrolled agent `id` in `group`, at serial 7, never seen.
    pub(crate) fn agent(id: &str, group: GroupId) -> AgentRecord {
        AgentRecord {
            id: id.into(),
            hostname: format!("host-{id}"),
            os_name: "linux".into(),
            os_version: "6".into(),
            agent_version: "0.1.0".into(),
            tls_versions: vec!["TLSv1.3".into()],
            group,
            last_checkin_ms: None,
            channel: None,
            server: None,
            tls_version: None,
            tls_group: None,
            hello: None,
            serial: 7,
            acked_serial: 1,
            enrolled_ms: 0,
            simulated: false,
            reverted: None,
            reported_hello: None,
            peer: None,
        }
    }

    /// 200 held check-ins woken at once take their records from one shared read: the
    /// records of the wake's groups and agents, none of another's, and a gone agent is none.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_check_ins_one_change_wakes_share_one_read() {
        let dir = tempfile::tempdir().unwrap();
        let (store, group) = fleet_store(&dir);
        let child = ward_fleet::Group {
            id: 0,
            parent: Some(group),
            name: "Branch".into(),
            own: Default::default(),
        };
        let other_group = store
            .apply(&ward_store::Change {
                tree_version: None,
                mutation: ward_store::Mutation::CreateGroup(child),
                bump_groups: vec![],
                bump_agents: vec![],
                audit: ward_store::AuditEntry {
                    id: 0,
                    at_ms: 1,
                    actor: "test".into(),
                    action: "group.create".into(),
                    target: "Branch".into(),
                    before: None,
                    after: None,
                },
            })
            .unwrap()
            .new_id
            .unwrap();
        let mut agents: Vec<AgentRecord> =
            (0..200).map(|i| agent(&format!("g{i}"), group)).collect();
        // One agent named by the change, in a group the change does not bump.
        agents.push(agent("named", other_group));
        agents.push(agent("other", other_group));
        store.insert_agents(&agents).unwrap();
        let wake = Arc::new(Wake::new(
            [group].into_iter().collect(),
            ["named".to_string(), "gone".to_string()]
                .into_iter()
                .collect(),
        ));
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let (wake, store) = (wake.clone(), store.clone());
                tokio::spawn(async move { wake.record(&store, &format!("g{i}")).await })
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            let record = task.await.unwrap().expect("from the shared read").unwrap();
            assert_eq!(record.id, format!("g{i}"));
            assert_eq!(record.serial, 7);
        }
        let read = wake.records.lock().unwrap().clone().unwrap();
        let records = read
            .get()
            .expect("read once")
            .as_ref()
            .expect("the read worked");
        assert_eq!(records.len(), 201, "the group's 200 and the named one");
        assert!(!records.contains_key("other"));
        assert_eq!(
            wake.record(&store, "named").await.unwrap().unwrap().id,
            "named"
        );
        assert_eq!(wake.record(&store, "gone").await, Some(None));
        // Its records dropped (as a while after the read): the caller reads alone.
        *wake.records.lock().unwrap() = None;
        assert_eq!(wake.record(&store, "g1").await, None);
    }
}
