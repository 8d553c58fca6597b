//! ward-store: persistence behind one trait.
//!
//! Everything above this crate talks to a [`Store`] opened by [`open`] from a [`Database`]
//! setting; only this crate writes SQL, and nothing above it names an engine. SQLite (one file
//! in the data dir, WAL) is the embedded default; PostgreSQL (`postgres`), for several servers
//! sharing one database, is a second implementation of the same trait and a second kind of
//! setting. One conformance suite (`conformance`, over `&dyn Store`) runs against both. Each engine classifies its own errors into [`StoreError`]; the domain's
//! rules (version ranks, when a token may enroll, the clock) are stated above the engines,
//! once, and a write states the version of what it was checked against.

mod agent_query;
mod blocking;
mod codec;
#[cfg(test)]
mod conformance;
pub mod fleet;
mod migrate;
mod postgres;
mod sqlite;

use std::fmt;

pub use fleet::{rank, FleetTree, Revert, TokenUse};
pub use fleet::{
    Account, AgentFilter, AgentOrder, AgentRecord, AgentTally, AgentTls, Applied, AuditEntry,
    Change, Checkin, Mutation, Presence, Session, TokenRecord, Touch,
};

/// Where the database is: what ward.toml's `database` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Database {
    /// An SQLite file.
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL database: a `postgres://` URL or a libpq key=value string (several hosts
    /// with `target_session_attrs=read-write` for a primary that can fail over).
    Postgres(String),
}

impl Database {
    /// The setting as ward.toml writes it, resolved against the data dir: a path (relative to
    /// `root` unless absolute). A URL of an engine this build does not have is refused.
    pub fn from_setting(setting: &str, root: &std::path::Path) -> Result<Database, StoreError> {
        if setting.starts_with("postgres://") || setting.starts_with("postgresql://") {
            return Ok(Database::Postgres(setting.to_string()));
        }
        if let Some((scheme, _)) = setting.split_once("://") {
            return Err(StoreError::Invalid(format!(
                "database: '{scheme}://' is not an engine this ward has (a path names an \
                 SQLite file, a postgres:// URL a PostgreSQL database)"
            )));
        }
        Ok(Database::Sqlite(root.join(setting)))
    }

    /// Whether the setting carries a password (`postgres://user:secret@host/...`).
    pub fn has_password(&self) -> bool {
        match self {
            Database::Sqlite(_) => false,
            Database::Postgres(url) => url
                .split_once("://")
                .and_then(|(_, rest)| rest.split_once('@'))
                .is_some_and(|(user_info, _)| user_info.contains(':')),
        }
    }

    /// A file of the database to check the mode of, or to back up whole.
    pub fn file(&self) -> Option<&std::path::Path> {
        match self {
            Database::Sqlite(path) => Some(path),
            Database::Postgres(_) => None,
        }
    }
}

/// The refusal of a write of the site's files checked against generation `expected`.
fn site_changed(expected: i64, current: i64) -> StoreError {
    StoreError::Stale(format!(
        "the site's files changed since they were read (generation {expected}, now {current}): \
         another server of the site changed its keys meanwhile"
    ))
}

/// What an engine cannot do yet, as a refusal.
fn not_for_postgres(what: &str) -> StoreError {
    StoreError::Invalid(format!(
        "{what} is not available for a PostgreSQL database yet (use pg_dump / pg_restore)"
    ))
}

/// Opens (creating it if needed) the database and brings it to this ward's schema.
pub fn open(database: &Database) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    match database {
        Database::Sqlite(path) => Ok(std::sync::Arc::new(sqlite::SqliteStore::open(path)?)),
        Database::Postgres(url) => Ok(std::sync::Arc::new(postgres::PgStore::open(url)?)),
    }
}

/// Opens an existing database to read, without migrating it (commands that look while a
/// server runs); a database of another schema is refused.
pub fn open_read_only(database: &Database) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    match database {
        Database::Sqlite(path) => Ok(std::sync::Arc::new(sqlite::SqliteStore::open_read_only(
            path,
        )?)),
        // Never creating a site where there is none (nor migrating: the PostgreSQL schema
        // has one version so far).
        Database::Postgres(url) => Ok(std::sync::Arc::new(postgres::PgStore::open_existing(url)?)),
    }
}

/// A consistent copy of the database into the file `out` (which must not exist), even while a
/// server writes to it: what a backup holds.
pub fn snapshot(database: &Database, out: &std::path::Path) -> Result<(), StoreError> {
    match database {
        Database::Sqlite(path) => sqlite::SqliteStore::snapshot(path, out),
        Database::Postgres(url) => postgres::dump::dump(url, out),
    }
}

/// Checks that `file` is a snapshot of a site's database ([`snapshot`] on PostgreSQL: a
/// `pg_dump` of a ward site), without restoring it.
pub fn check_site_snapshot(file: &std::path::Path) -> Result<(), StoreError> {
    postgres::dump::check(file)
}

/// Restores a site's database from a [`snapshot`] into the PostgreSQL database `database`,
/// which must be empty (a site or other tables there are refused, and left as they are), in
/// one transaction.
pub fn restore_site_snapshot(
    database: &Database,
    file: &std::path::Path,
) -> Result<(), StoreError> {
    match database {
        Database::Postgres(url) => postgres::dump::restore(url, file),
        Database::Sqlite(path) => Err(StoreError::Invalid(format!(
            "a site's database is restored into PostgreSQL, not into {}",
            path.display()
        ))),
    }
}

/// Checks a database without changing it (a restore's): intact, and of a schema this ward
/// reads. Its schema version.
pub fn verify(database: &Database) -> Result<i64, StoreError> {
    match database {
        Database::Sqlite(path) => sqlite::SqliteStore::verify(path),
        Database::Postgres(_) => Err(not_for_postgres("verifying a restored database")),
    }
}

/// The schema version this build writes.
pub fn schema_version() -> i64 {
    migrate::latest()
}

use ward_fleet::{Group, ServerList};

/// Successful handshakes, counted per minute and per distinct
/// (listener, peer address, version, cipher, key-exchange group, resumed).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HandshakeKey {
    /// Unix time in minutes.
    pub minute: i64,
    pub listener: String,
    /// The peer's IP address, without port.
    pub peer: String,
    pub version: String,
    pub cipher: String,
    /// The key-exchange group (`X25519MLKEM768`, `x25519`, ...); empty for RSA key exchange.
    pub group: String,
    pub resumed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakeCount {
    pub key: HandshakeKey,
    pub count: u64,
}

/// One failed handshake: who, what it offered, and why it failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakeFailure {
    /// Unix time in milliseconds.
    pub at_ms: i64,
    pub listener: String,
    /// `ip:port` of the peer.
    pub peer: String,
    /// The highest version in the ClientHello (`TLSv1`, `SSLv3`, ...), when one was read.
    pub offered_max: Option<String>,
    /// The versions the ClientHello offered, lowest first.
    pub offered_versions: Vec<String>,
    pub server_name: Option<String>,
    /// A short class for metrics: `protocol_version`, `timeout`, `not_tls`, ...
    pub kind: String,
    /// The sentence for the operator.
    pub reason: String,
}

/// What the server's telemetry writer hands to the store in one transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TelemetryBatch {
    pub handshakes: Vec<HandshakeCount>,
    pub failures: Vec<HandshakeFailure>,
    /// Failures that the rate limit kept out of `failures`, per minute.
    pub dropped_failures: Vec<(i64, u64)>,
    /// ClientHellos seen, each distinct one once.
    pub hellos: Vec<HelloSeen>,
    /// The last ClientHello of each peer address on each listener.
    pub hello_peers: Vec<HelloPeer>,
}

impl TelemetryBatch {
    pub fn is_empty(&self) -> bool {
        self.handshakes.is_empty()
            && self.failures.is_empty()
            && self.dropped_failures.is_empty()
            && self.hellos.is_empty()
            && self.hello_peers.is_empty()
    }
}

/// The most distinct ClientHellos kept: a real fleet has a few dozen stacks; past the bound a
/// new hello is counted against its peer but its bytes are not kept (a plan says so).
pub const MAX_DISTINCT_HELLOS: i64 = 10_000;

/// How long an accepted check-in's nonce is kept: the agent protocol's replay window (twice
/// the largest clock skew it accepts).
pub const NONCE_WINDOW_MS: i64 = 2 * 5 * 60 * 1000;

/// A client stack's ClientHello: the first one seen as it was sent (records included), and
/// how often that stack connected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelloSeen {
    /// The stack's fingerprint (`ward_tls::hello::ClientHello::fingerprint`), hex.
    pub digest: String,
    pub bytes: Vec<u8>,
    pub at_ms: i64,
    pub count: u64,
}

/// A kept ClientHello: its stack's fingerprint, the bytes, how often and when last seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredHello {
    pub digest: String,
    pub bytes: Vec<u8>,
    pub count: u64,
    pub last_ms: i64,
}

/// The last ClientHello a peer address sent on a listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelloPeer {
    pub listener: String,
    /// The IP address, without port.
    pub peer: String,
    pub digest: String,
    pub at_ms: i64,
}

/// What `ward tls handshakes` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HandshakeReport {
    /// Counts summed over the minutes in range, one row per distinct key minus the minute.
    pub handshakes: Vec<HandshakeCount>,
    /// Failures in range, newest first, at most the requested number.
    pub failures: Vec<HandshakeFailure>,
    /// Every failure in range, summed per peer address (without port): the address, how
    /// many, and the newest failure's reason and offered version.
    pub refusals_by_peer: Vec<PeerRefusals>,
    /// Failures in range that were not recorded one by one (rate limit).
    pub dropped_failures: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerRefusals {
    pub peer: String,
    pub count: u64,
    pub last_reason: String,
    pub last_offered_max: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The database was written by a newer ward.
    TooNew { found: i64, supported: i64 },
    /// The engine failed (I/O, corruption, lock held too long).
    Database(String),
    /// The change names something that does not exist.
    NotFound(String),
    /// The change would make two things with one name.
    Conflict(String),
    /// The change would remove something still in use.
    InUse(String),
    /// A value the schema does not accept.
    Invalid(String),
    /// A database older than this ward, opened read-only: the server upgrades it on start.
    TooOld { found: i64, supported: i64 },
    /// The database stayed locked by another writer past the busy timeout: retry later.
    Busy(String),
    /// The change was checked against a state that changed since (another writer): read
    /// again, check again.
    Stale(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::TooNew { found, supported } => write!(
                f,
                "the database has schema version {found}, but this ward knows versions up to \
                 {supported}: it was written by a newer ward; run that version, or restore a \
                 backup"
            ),
            StoreError::Database(message) => write!(f, "database: {message}"),
            StoreError::Busy(message) => write!(f, "database busy: {message}"),
            StoreError::Stale(message) => write!(f, "changed meanwhile: {message}"),
            StoreError::NotFound(message)
            | StoreError::Conflict(message)
            | StoreError::InUse(message)
            | StoreError::Invalid(message) => f.write_str(message),
            StoreError::TooOld { found, supported } => write!(
                f,
                "the database has schema version {found}, this ward writes {supported}: start \
                 `ward server` once to upgrade it"
            ),
        }
    }
}

impl std::error::Error for StoreError {}

/// A ward server on the database: what it serves, and when it last said it is alive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerRecord {
    /// Unique per server: its host name and console port (`mgr1:8445`).
    pub name: String,
    pub listeners: Vec<ListenerRecord>,
    /// The ward version it runs.
    pub version: String,
    pub started_ms: i64,
    /// Its last heartbeat (unix ms).
    pub heartbeat_ms: i64,
}

/// One listener of a server.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListenerRecord {
    /// `console`, `clients` or `clients-http`.
    pub role: String,
    pub address: String,
    /// The TLS versions it accepts (`TLSv1.2-TLSv1.3`), or `plain HTTP`.
    pub tls: String,
}

/// The files the servers of a site share, as the database keeps them: the site's CA, the
/// agents' agreement keys, the session ticket keys and the CAs agents are told to trust, by
/// their path inside a data dir (`certs/ca.pem`, `keys/agreement.key`, ...). The database is
/// as secret as these keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteFiles {
    /// Bumped by every change of the files; 0 before the first.
    pub generation: i64,
    pub files: std::collections::BTreeMap<String, Vec<u8>>,
}

/// A change another server committed on the same database, as its notification says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeNote {
    /// The groups and agents whose serial it bumped.
    Bumped {
        groups: Vec<i64>,
        agents: Vec<String>,
    },
    /// Anything may have changed: the listening connection was down for a while (a
    /// notification sent meanwhile is lost), or a change bumped too many to name.
    Unknown,
    /// The site's files changed (see [`Store::put_site_files`]): now at `generation`.
    Site { generation: i64 },
}

/// ward's persistence. Implementations are safe to share between threads.
pub trait Store: Send + Sync {
    /// Hands `note` every change another server commits on this database that bumps serials,
    /// from a thread of the store's own, until the store is dropped; after any gap in
    /// listening, [`ChangeNote::Unknown`] first, so no change is missed for good. `false`:
    /// nothing to watch (an SQLite file has one server) or it could not start.
    fn watch(&self, note: std::sync::Arc<dyn Fn(ChangeNote) + Send + Sync>) -> bool {
        let _ = note;
        false
    }

    /// Adds one batch of telemetry, atomically.
    fn record_telemetry(&self, batch: &TelemetryBatch) -> Result<(), StoreError>;

    /// Every distinct ClientHello kept, the most seen first.
    fn client_hellos(&self) -> Result<Vec<StoredHello>, StoreError>;

    /// The last ClientHello of each peer address seen since `since_ms`.
    fn hello_peers(&self, since_ms: i64) -> Result<Vec<HelloPeer>, StoreError>;

    /// Telemetry from `since_ms` (unix milliseconds) on; at most `max_failures` failures.
    fn handshake_report(
        &self,
        since_ms: i64,
        max_failures: usize,
    ) -> Result<HandshakeReport, StoreError>;

    /// Failed handshakes from `since_ms` on, newest first, at most `limit` (without the
    /// report's sums).
    fn recent_failures(
        &self,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<HandshakeFailure>, StoreError>;

    /// Deletes telemetry older than `before_ms`, and enrollment tokens that expired before
    /// `tokens_expired_before_ms`; returns how many rows went.
    fn prune_telemetry(
        &self,
        before_ms: i64,
        tokens_expired_before_ms: i64,
    ) -> Result<u64, StoreError>;

    /// Creates the root group and the default server list when there are no groups yet;
    /// returns whether it did.
    fn initialise_fleet(&self, root: &Group, default_list: &ServerList)
        -> Result<bool, StoreError>;

    fn groups(&self) -> Result<Vec<Group>, StoreError>;

    /// The groups and server lists with their version, in one read: what a change that
    /// depends on them is checked against (`Change::tree_version`).
    fn tree(&self) -> Result<FleetTree, StoreError>;

    fn server_lists(&self) -> Result<Vec<ServerList>, StoreError>;

    /// The agents `filter` keeps, in its order, from its offset, at most its limit.
    fn agents(&self, filter: &AgentFilter) -> Result<Vec<AgentRecord>, StoreError>;

    /// How many agents `filter` keeps in all (its order, offset and limit aside).
    fn count_agents(&self, filter: &AgentFilter) -> Result<u64, StoreError>;

    /// The fleet in figures per channel and negotiated version (in no particular order), with
    /// who is online by `presence`: one scan where the agents are stored.
    fn agent_tally(&self, presence: &Presence) -> Result<Vec<AgentTally>, StoreError>;

    fn agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError>;

    /// Every agent's TLS facts, in no particular order.
    fn agents_tls(&self) -> Result<Vec<AgentTls>, StoreError>;

    /// The host names of the agents `ids` (unknown ids are left out).
    fn hostnames(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, String>, StoreError>;

    /// Adds agents (enrollment; also the simulator and benchmarks), in one transaction.
    fn insert_agents(&self, agents: &[AgentRecord]) -> Result<(), StoreError>;

    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;

    /// Audit entries from `since_ms` on, oldest first, at most `limit`.
    fn audit(&self, since_ms: i64, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;

    fn account(&self, name: &str) -> Result<Option<Account>, StoreError>;

    /// Every account, by name.
    fn accounts(&self) -> Result<Vec<Account>, StoreError>;

    /// Creates a login session, only if its account is enabled and its credential version is
    /// still `checked_against` (the version of the password the login verified): `Conflict`
    /// otherwise, and nothing is created.
    fn create_session(&self, session: &Session, checked_against: i64) -> Result<(), StoreError>;

    fn session(&self, token_sha256: &str) -> Result<Option<Session>, StoreError>;

    /// An agent's X25519 public key (hex), to derive its key.
    fn agent_public_key(&self, id: &str) -> Result<Option<String>, StoreError>;

    /// Records a check-in; returns the agent's current record (`None` for an unknown agent).
    fn record_checkin(&self, checkin: &Checkin) -> Result<Option<AgentRecord>, StoreError> {
        Ok(self
            .record_checkins(std::slice::from_ref(checkin))?
            .pop()
            .flatten())
    }

    /// The enrollment token whose lookup (`ward_proto::enroll::token_lookup`) is `lookup`,
    /// through an index: an unauthenticated enrollment reads one row, not all of them.
    fn token_by_lookup(&self, lookup: &str) -> Result<Option<TokenRecord>, StoreError>;

    /// The nonces of check-ins accepted since `since_ms`, (agent, nonce, at_ms): the replay
    /// window a restarted server starts from.
    fn recent_nonces(&self, since_ms: i64) -> Result<Vec<(String, String, i64)>, StoreError>;

    /// Records several check-ins in one transaction (one sync to disk for all), each with its
    /// request's nonce; returns each agent's current record, in order.
    fn record_checkins(&self, checkins: &[Checkin])
        -> Result<Vec<Option<AgentRecord>>, StoreError>;

    /// Records check-ins that changed nothing but when they came, in one transaction: each
    /// agent's last check-in time (never moved back: a later full check-in may already be
    /// recorded) and each nonce. Says for each whether it applied: `false` when the agent is
    /// gone or its row no longer names `server` (another check-in since wrote other facts).
    fn touch_checkins(&self, touches: &[Touch]) -> Result<Vec<bool>, StoreError>;

    /// Applies an admin change with its serial bumps and audit entry, in one transaction that
    /// is durable when this returns.
    fn apply(&self, change: &Change) -> Result<Applied, StoreError>;

    /// Records `server` (by its name: a second call is its heartbeat, with what it serves
    /// now).
    fn register_server(&self, server: &ServerRecord) -> Result<(), StoreError>;

    /// Every server that registered on this database, by name.
    fn servers(&self) -> Result<Vec<ServerRecord>, StoreError>;

    /// Whether other servers may share this database (a site): they then share the files of
    /// [`SiteFiles`] through it. An SQLite file has one server.
    fn is_shared(&self) -> bool {
        false
    }

    /// What the server should warn of about the database (a replication that can lose
    /// acknowledged changes in a failover); read at start.
    fn warnings(&self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    /// The site's shared files; `None` before any server put them.
    fn site_files(&self) -> Result<Option<SiteFiles>, StoreError>;

    /// The generation of the site's files (0 before any): one small read, to learn whether
    /// they changed.
    fn site_generation(&self) -> Result<i64, StoreError>;

    /// Replaces the site's files, only if their generation is still `expected` (0: no files
    /// yet); returns the new generation. `Stale` when another server changed them since, and
    /// nothing changes. Other servers hear of it ([`ChangeNote::Site`]).
    fn put_site_files(
        &self,
        expected: i64,
        files: &std::collections::BTreeMap<String, Vec<u8>>,
    ) -> Result<i64, StoreError>;
}
