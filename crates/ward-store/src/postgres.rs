//! The PostgreSQL engine, for several servers sharing one database: the same trait, the same
//! schema (the SQLite schema at its latest version, in PostgreSQL's types) and the same
//! refusals as the SQLite engine, method by method.
//!
//! Where SQLite has one writer by construction, this engine has many (threads of a server,
//! and other servers): every write that checks a precondition (`apply`, `create_session`,
//! `initialise_fleet`) first takes one transaction-scoped advisory lock, so it is checked
//! against the current tree and committed with its serial bumps and audit entry as if it were
//! the only writer. The other writes (check-ins, telemetry, agent inserts, pruning) are single
//! transactions whose statements are safe side by side (upserts, row counts, `RETURNING`).
//! A transaction that PostgreSQL aborts as a deadlock victim or a serialization failure is
//! run again a few times, then reported `Busy`; so is a lost connection (503: the caller
//! retries), never a panic.
//!
//! Connections are plain TCP or Unix sockets without TLS ([`postgres::NoTls`]): the database
//! is expected on the same host or a trusted network (the tests use loopback). A URL that
//! requires TLS (`sslmode=require`) is refused at connect.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{BorrowToSql, ToSql};
use postgres::{Client, Config, GenericClient, IsolationLevel, NoTls, Row, Statement, Transaction};

use ward_fleet::{Group, ServerList};

use crate::codec::{join_versions, split_versions};
use crate::{
    migrate, Account, AgentFilter, AgentRecord, AgentTls, Applied, AuditEntry, Change, FleetTree,
    HandshakeCount, HandshakeFailure, HandshakeKey, HandshakeReport, HelloPeer, Session, Store,
    StoreError, StoredHello, TelemetryBatch, TokenRecord,
};

pub(crate) mod dump;
mod fleet;
mod notes;
#[cfg(test)]
mod tests;

/// The most connections one store opens; a call that finds them all in use waits for one.
/// Enough for the server's writers and its blocking pool's readers, few enough that a
/// handful of servers stay well under PostgreSQL's default `max_connections` (100).
const MAX_CONNECTIONS: usize = 16;

/// How long a call waits for a connection when all are in use before it is `Busy`.
const WAIT_FOR_CONNECTION: Duration = Duration::from_secs(30);

/// How long connecting may take when the URL does not say (`connect_timeout`): an
/// unreachable host is `Busy` after this, not after the system's TCP timeout of minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The postgres crate's keepalive idle time when the URL sets none (libpq's and the
/// system's: two hours), replaced by [`KEEPALIVES_IDLE`].
const DEFAULT_KEEPALIVES_IDLE: Duration = Duration::from_secs(2 * 60 * 60);

/// Keepalive probes on an idle connection (one waiting for a long statement is idle too):
/// the first after this, then every [`KEEPALIVES_INTERVAL`], and the connection is dead after
/// [`KEEPALIVES_RETRIES`] unanswered.
const KEEPALIVES_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVES_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVES_RETRIES: u32 = 3;

/// How long sent data may go unacknowledged before the connection is dead (Linux).
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a statement waits for a lock (a row another transaction holds, or the write
/// lock) before it gives up as `Busy`: the SQLite engine's busy timeout, the same 10 s.
const LOCK_TIMEOUT: &str = "10s";

/// How often a transaction that PostgreSQL aborted (deadlock, serialization failure) runs.
const ATTEMPTS: u32 = 5;

/// The advisory lock (per database) that creating the schema takes: two servers opening one
/// empty database create it once. The bytes spell "ward" and a kind.
const SCHEMA_LOCK: i64 = 0x7761_7264_0000_0001;

/// The advisory lock every write that checks a precondition takes at its start: the one
/// writer of SQLite, for these writes, across every server on the database.
const WRITE_LOCK: i64 = 0x7761_7264_0000_0002;

/// The schema at [`migrate::latest`], in PostgreSQL's types. The SQLite schema is built by
/// migrations; a PostgreSQL database starts here, so this is that schema as the migrations
/// leave it: INTEGER as BIGINT (ids as identity columns), BLOB as BYTEA, flags as BOOLEAN.
/// Every TEXT column compares bytewise (`COLLATE "C"`), as SQLite's BINARY does whatever the
/// database's default collation: listings ordered by name or id come out in the same order
/// from both engines, and their indexes serve that order.
const SCHEMA: &str = r#"
    CREATE TABLE tls_handshakes (
        minute BIGINT NOT NULL,
        listener TEXT COLLATE "C" NOT NULL,
        peer TEXT COLLATE "C" NOT NULL,
        version TEXT COLLATE "C" NOT NULL,
        cipher TEXT COLLATE "C" NOT NULL,
        grp TEXT COLLATE "C" NOT NULL,
        resumed BOOLEAN NOT NULL,
        count BIGINT NOT NULL,
        PRIMARY KEY (minute, listener, peer, version, cipher, grp, resumed)
    );
    CREATE TABLE tls_failures (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        at_ms BIGINT NOT NULL,
        listener TEXT COLLATE "C" NOT NULL,
        peer TEXT COLLATE "C" NOT NULL,
        offered_max TEXT COLLATE "C",
        offered_versions TEXT COLLATE "C" NOT NULL,
        server_name TEXT COLLATE "C",
        kind TEXT COLLATE "C" NOT NULL,
        reason TEXT COLLATE "C" NOT NULL
    );
    CREATE INDEX tls_failures_at ON tls_failures (at_ms);
    CREATE TABLE tls_failures_dropped (
        minute BIGINT PRIMARY KEY,
        count BIGINT NOT NULL
    );
    CREATE TABLE server_lists (
        name TEXT COLLATE "C" PRIMARY KEY,
        entries TEXT COLLATE "C" NOT NULL
    );
    CREATE TABLE groups (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        parent BIGINT REFERENCES groups (id),
        name TEXT COLLATE "C" NOT NULL,
        server_list TEXT COLLATE "C" REFERENCES server_lists (name),
        interval_ms BIGINT,
        randomize_ms BIGINT,
        mode TEXT COLLATE "C",
        policy TEXT COLLATE "C"
    );
    CREATE UNIQUE INDEX groups_sibling_names ON groups (COALESCE(parent, 0), name);
    CREATE TABLE agents (
        id TEXT COLLATE "C" PRIMARY KEY,
        hostname TEXT COLLATE "C" NOT NULL,
        os_name TEXT COLLATE "C" NOT NULL,
        os_version TEXT COLLATE "C" NOT NULL,
        agent_version TEXT COLLATE "C" NOT NULL,
        tls_versions TEXT COLLATE "C" NOT NULL,
        tls_rank BIGINT NOT NULL,
        group_id BIGINT NOT NULL REFERENCES groups (id),
        last_checkin_ms BIGINT,
        channel TEXT COLLATE "C",
        server TEXT COLLATE "C",
        tls_version TEXT COLLATE "C",
        serial BIGINT NOT NULL,
        acked_serial BIGINT NOT NULL,
        enrolled_ms BIGINT NOT NULL,
        public_key TEXT COLLATE "C" NOT NULL DEFAULT '',
        peer TEXT COLLATE "C",
        simulated BOOLEAN NOT NULL DEFAULT FALSE,
        tls_group TEXT COLLATE "C",
        hello TEXT COLLATE "C",
        trusted_cas TEXT COLLATE "C",
        agreement_key TEXT COLLATE "C",
        reverted_serial BIGINT,
        revert_reason TEXT COLLATE "C",
        reverted_ms BIGINT,
        reported_hello TEXT COLLATE "C"
    );
    CREATE INDEX agents_group ON agents (group_id);
    CREATE INDEX agents_pending ON agents (id) WHERE acked_serial < serial;
    CREATE UNIQUE INDEX agents_public_key ON agents (public_key) WHERE public_key <> '';
    CREATE TABLE tokens (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        group_id BIGINT NOT NULL REFERENCES groups (id),
        token_sha256 TEXT COLLATE "C" NOT NULL UNIQUE,
        created_ms BIGINT NOT NULL,
        expires_ms BIGINT,
        uses_left BIGINT,
        revoked BOOLEAN NOT NULL DEFAULT FALSE,
        allow_http BOOLEAN NOT NULL DEFAULT FALSE,
        lookup TEXT COLLATE "C",
        accept_cut_off BOOLEAN NOT NULL DEFAULT FALSE
    );
    CREATE INDEX tokens_lookup ON tokens (lookup);
    CREATE TABLE audit (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        at_ms BIGINT NOT NULL,
        actor TEXT COLLATE "C" NOT NULL,
        action TEXT COLLATE "C" NOT NULL,
        target TEXT COLLATE "C" NOT NULL,
        before TEXT COLLATE "C",
        after TEXT COLLATE "C"
    );
    CREATE INDEX audit_at ON audit (at_ms);
    CREATE TABLE accounts (
        name TEXT COLLATE "C" PRIMARY KEY,
        password_hash TEXT COLLATE "C" NOT NULL,
        role TEXT COLLATE "C" NOT NULL CHECK (role IN ('admin', 'auditor')),
        disabled BOOLEAN NOT NULL DEFAULT FALSE,
        credential_version BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE sessions (
        token_sha256 TEXT COLLATE "C" PRIMARY KEY,
        account TEXT COLLATE "C" NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
        expires_ms BIGINT NOT NULL
    );
    CREATE TABLE counters (
        name TEXT COLLATE "C" PRIMARY KEY,
        value BIGINT NOT NULL
    );
    INSERT INTO counters (name, value) VALUES ('serial', 1), ('tree', 0), ('site', 0);
    CREATE TABLE site_files (
        name TEXT COLLATE "C" PRIMARY KEY,
        bytes BYTEA NOT NULL
    );
    CREATE TABLE servers (
        name TEXT COLLATE "C" PRIMARY KEY,
        listeners TEXT COLLATE "C" NOT NULL,
        version TEXT COLLATE "C" NOT NULL,
        started_ms BIGINT NOT NULL,
        heartbeat_ms BIGINT NOT NULL
    );
    CREATE TABLE client_hellos (
        digest TEXT COLLATE "C" PRIMARY KEY,
        bytes BYTEA NOT NULL,
        first_ms BIGINT NOT NULL,
        last_ms BIGINT NOT NULL,
        count BIGINT NOT NULL
    );
    CREATE TABLE hello_peers (
        listener TEXT COLLATE "C" NOT NULL,
        peer TEXT COLLATE "C" NOT NULL,
        digest TEXT COLLATE "C" NOT NULL,
        last_ms BIGINT NOT NULL,
        PRIMARY KEY (listener, peer)
    );
    CREATE TABLE seen_nonces (
        agent TEXT COLLATE "C" NOT NULL,
        nonce TEXT COLLATE "C" NOT NULL,
        at_ms BIGINT NOT NULL,
        PRIMARY KEY (agent, nonce)
    );
    CREATE INDEX seen_nonces_at ON seen_nonces (at_ms);
    CREATE TABLE ward_schema (version BIGINT NOT NULL);
"#;

/// What went wrong in one attempt: PostgreSQL's own error, classified only when the attempt
/// is over (run again, `Busy`, or a refusal), or a refusal already in the domain's words.
pub(crate) enum Fail {
    Pg(postgres::Error),
    Store(StoreError),
}

impl From<postgres::Error> for Fail {
    fn from(error: postgres::Error) -> Fail {
        Fail::Pg(error)
    }
}

impl From<StoreError> for Fail {
    fn from(error: StoreError) -> Fail {
        Fail::Store(error)
    }
}

/// PostgreSQL's words for an error: the server's message (and its detail) for an error it
/// reported, the client library's description and its cause otherwise (its `Display` leaves
/// the cause out: "error connecting to server", but not why).
fn describe(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_string(),
        },
        None => match std::error::Error::source(error) {
            Some(cause) => format!("{error}: {cause}"),
            None => error.to_string(),
        },
    }
}

/// Whether the error means the connection is gone (or was never made): the client library
/// saw it close or fail on I/O, or the server said so (class 08, or it is shutting down).
fn unreachable(error: &postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    if let Some(code) = error.code() {
        return code.code().starts_with("08")
            || [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
            ]
            .contains(code);
    }
    std::error::Error::source(error).is_some_and(|cause| cause.is::<std::io::Error>())
}

/// Whether PostgreSQL aborted the transaction so that running it again may succeed.
fn retryable(error: &postgres::Error) -> bool {
    error.code().is_some_and(|code| {
        *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED
    })
}

/// PostgreSQL's errors, classified here, in the engine (as `From<rusqlite::Error>` does for
/// SQLite): what a retry later may cure is `Busy` (a lost connection, a lock or statement
/// timeout, a standby that takes no writes, a transaction aborted too often); a constraint a
/// statement broke without a call site naming what it means is a refusal of its kind; the
/// rest is a database failure. (Call sites that know what a constraint means map it first:
/// `fleet::constraint`.)
fn classify(error: &postgres::Error) -> StoreError {
    let text = describe(error);
    if unreachable(error) {
        return StoreError::Busy(format!("database unreachable: {text}"));
    }
    let Some(code) = error.code() else {
        return StoreError::Database(text);
    };
    if retryable(error) {
        StoreError::Busy(format!("{text} (given up after {ATTEMPTS} attempts)"))
    } else if [
        SqlState::QUERY_CANCELED,
        SqlState::LOCK_NOT_AVAILABLE,
        SqlState::TOO_MANY_CONNECTIONS,
        SqlState::READ_ONLY_SQL_TRANSACTION,
    ]
    .contains(code)
    {
        StoreError::Busy(text)
    } else if *code == SqlState::UNIQUE_VIOLATION {
        StoreError::Conflict(text)
    } else if *code == SqlState::FOREIGN_KEY_VIOLATION {
        StoreError::NotFound(text)
    } else if code.code().starts_with("23") || code.code().starts_with("22") {
        StoreError::Invalid(text)
    } else {
        StoreError::Database(text)
    }
}

impl Fail {
    fn into_store_error(self) -> StoreError {
        match self {
            Fail::Pg(error) => classify(&error),
            Fail::Store(error) => error,
        }
    }
}

/// Text as PostgreSQL can keep it. Its TEXT holds no NUL character (SQLite's does): one in
/// what an agent or a TLS client sent is kept as U+FFFD, so that it does not fail the whole
/// batch it came in (one agent's check-in would otherwise fail every check-in committed with
/// it, each time it checks in). Admin input is not cleaned: a NUL there is refused
/// (`Invalid`).
fn text(value: &str) -> Cow<'_, str> {
    if value.contains('\0') {
        Cow::Owned(value.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(value)
    }
}

/// [`text`], of an optional value.
fn opt_text(value: &Option<String>) -> Option<Cow<'_, str>> {
    value.as_deref().map(text)
}

/// One pooled connection and the statements prepared on it: a statement is parsed once per
/// connection, so a hot call (a check-in, a token lookup) costs one round trip per statement,
/// not two.
struct Conn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

/// A connection (or a transaction on one) with its prepared statements, as the statements
/// below use it. Statements written in the source are prepared once per connection; SQL built
/// at run time (filters) is not cached.
pub(crate) struct Db<'a, C> {
    client: &'a mut C,
    statements: &'a mut HashMap<&'static str, Statement>,
}

impl<C: GenericClient> Db<'_, C> {
    fn prepared(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    pub(crate) fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        let statement = self.prepared(sql)?;
        self.client.execute(&statement, params)
    }

    pub(crate) fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        let statement = self.prepared(sql)?;
        self.client.query(&statement, params)
    }

    pub(crate) fn query_one(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, postgres::Error> {
        let statement = self.prepared(sql)?;
        self.client.query_one(&statement, params)
    }

    pub(crate) fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, postgres::Error> {
        let statement = self.prepared(sql)?;
        self.client.query_opt(&statement, params)
    }

    /// Rows of SQL built at run time, one at a time (a million agents are not held as rows
    /// and as records at once).
    pub(crate) fn for_each_row<P, I>(
        &mut self,
        sql: &str,
        params: I,
        mut each: impl FnMut(&Row) -> Result<(), Fail>,
    ) -> Result<(), Fail>
    where
        P: BorrowToSql,
        I: IntoIterator<Item = P>,
        I::IntoIter: ExactSizeIterator,
    {
        let mut rows = self.client.query_raw(sql, params)?;
        while let Some(row) = rows.next()? {
            each(&row)?;
        }
        Ok(())
    }
}

/// The idle connections and how many are open (idle or lent).
struct Idle {
    connections: Vec<Conn>,
    open: usize,
}

/// A small pool of connections: the trait is synchronous and called from many threads at
/// once, and a PostgreSQL connection serves one statement at a time.
struct Pool {
    config: Config,
    idle: Mutex<Idle>,
    /// Signalled when a connection goes back to the pool or one is closed.
    freed: Condvar,
}

/// A connection lent by the pool, back in it when dropped (unless it broke).
struct Lease<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
    /// It was idle in the pool (so it may have died there unnoticed), not opened for this.
    reused: bool,
    /// It failed as a connection: closed, not given back.
    broken: bool,
}

impl Lease<'_> {
    /// The connection; present from lending until drop.
    fn conn(&mut self) -> Result<&mut Conn, StoreError> {
        self.conn.as_mut().ok_or_else(|| {
            StoreError::Database("a pooled connection was used after its return".into())
        })
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if self.broken || conn.client.is_closed() {
            self.pool.closed(1);
            drop(conn);
        } else {
            self.pool.lock().connections.push(conn);
            self.pool.freed.notify_one();
        }
    }
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, Idle> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `count` connections were closed: their places are free.
    fn closed(&self, count: usize) {
        let mut idle = self.lock();
        idle.open = idle.open.saturating_sub(count);
        drop(idle);
        self.freed.notify_all();
    }

    /// A connection: an idle one, a new one while fewer than [`MAX_CONNECTIONS`] are open,
    /// or the next one given back (`Busy` past [`WAIT_FOR_CONNECTION`]).
    fn lease(&self) -> Result<Lease<'_>, StoreError> {
        let deadline = Instant::now() + WAIT_FOR_CONNECTION;
        let mut idle = self.lock();
        loop {
            if let Some(conn) = idle.connections.pop() {
                if conn.client.is_closed() {
                    idle.open = idle.open.saturating_sub(1);
                    drop(idle);
                    drop(conn);
                    idle = self.lock();
                    continue;
                }
                return Ok(Lease {
                    pool: self,
                    conn: Some(conn),
                    reused: true,
                    broken: false,
                });
            }
            if idle.open < MAX_CONNECTIONS {
                idle.open += 1;
                drop(idle);
                return match self.connect() {
                    Ok(conn) => Ok(Lease {
                        pool: self,
                        conn: Some(conn),
                        reused: false,
                        broken: false,
                    }),
                    Err(error) => {
                        self.closed(1);
                        Err(error)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StoreError::Busy(format!(
                    "all {MAX_CONNECTIONS} database connections stayed in use for {} s",
                    WAIT_FOR_CONNECTION.as_secs()
                )));
            }
            idle = self
                .freed
                .wait_timeout(idle, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// Closes every idle connection: one was found dead (the server restarted, or a standby
    /// took over), so those idle beside it most likely are too.
    fn forget_idle(&self) {
        let dead = std::mem::take(&mut self.lock().connections);
        self.closed(dead.len());
        drop(dead);
    }

    fn connect(&self) -> Result<Conn, StoreError> {
        let mut client = self.config.connect(NoTls).map_err(|error| {
            // A wrong password or database name is no passing outage: said as it is.
            let lasting = error.code().is_some_and(|code| {
                code.code().starts_with("28") || *code == SqlState::INVALID_CATALOG_NAME
            });
            if lasting {
                StoreError::Database(format!(
                    "cannot connect to PostgreSQL: {}",
                    describe(&error)
                ))
            } else {
                StoreError::Busy(format!("database unreachable: {}", describe(&error)))
            }
        })?;
        // `synchronous_commit = on` whatever the database's default: a commit returns once it
        // is durable on the primary and on every synchronous standby the admin configured,
        // so a failover to one loses nothing ward acknowledged.
        client
            .batch_execute(&format!(
                "SET lock_timeout = '{LOCK_TIMEOUT}'; SET synchronous_commit = on"
            ))
            .map_err(|error| classify(&error))?;
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }
}

/// How a transaction runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A write; `serialized` takes the write lock first (it checks a precondition).
    Write { serialized: bool },
    /// Reads that belong together: one snapshot (`REPEATABLE READ`, read-only).
    Snapshot,
}

/// The PostgreSQL store: a pool of connections to one database.
pub struct PgStore {
    pool: Pool,
    /// This store among the others on the database (random): the origin its change
    /// notifications carry, so its own are not reported back to it.
    origin: String,
    /// Stops the notification listener, if [`Store::watch`] started one.
    stop_listening: Arc<AtomicBool>,
}

impl PgStore {
    /// Connects to the database at `url` (a `postgres://` URL or a libpq `key=value` string)
    /// and checks its schema: creates it in an empty database, accepts it at this ward's
    /// version, refuses a newer one (`TooNew`), an older one (there is no PostgreSQL migration
    /// yet: PostgreSQL starts at the latest version) and a database that holds other tables
    /// (it is someone else's: nothing is changed).
    pub fn open(url: &str) -> Result<PgStore, StoreError> {
        crate::blocking::off_runtime(|| PgStore::open_here(url, true))
    }

    /// [`PgStore::open`] for a database that must hold a ward site already: an empty one is
    /// refused and left empty (commands that only look).
    pub fn open_existing(url: &str) -> Result<PgStore, StoreError> {
        crate::blocking::off_runtime(|| PgStore::open_here(url, false))
    }

    /// What the database at `url` holds in its current schema, without changing it: nothing,
    /// a ward site, or someone else's tables (a restore goes only into an empty one).
    pub fn probe(url: &str) -> Result<Probe, StoreError> {
        crate::blocking::off_runtime(|| {
            let mut client = parse_config(url)?.connect(NoTls).map_err(|e| {
                StoreError::Database(format!("cannot connect to PostgreSQL: {}", describe(&e)))
            })?;
            let (schema, site, tables) = look(&mut client).map_err(Fail::into_store_error)?;
            Ok(match (site, tables) {
                (true, _) => Probe::Site,
                (false, 0) => Probe::Empty,
                (false, tables) => Probe::Foreign { schema, tables },
            })
        })
    }

    fn open_here(url: &str, create: bool) -> Result<PgStore, StoreError> {
        let mut config = parse_config(url)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("ward");
        }
        // A database host that vanished (a failover, a cut network) is noticed within about a
        // minute, not after TCP's own timeouts of a quarter of an hour or more, during which
        // every call on its connections would hang: unless the URL says otherwise.
        if config.get_keepalives_idle() == DEFAULT_KEEPALIVES_IDLE {
            config.keepalives_idle(KEEPALIVES_IDLE);
        }
        if config.get_keepalives_interval().is_none() {
            config.keepalives_interval(KEEPALIVES_INTERVAL);
        }
        if config.get_keepalives_retries().is_none() {
            config.keepalives_retries(KEEPALIVES_RETRIES);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        let store = PgStore {
            pool: Pool {
                config,
                idle: Mutex::new(Idle {
                    connections: Vec::new(),
                    open: 0,
                }),
                freed: Condvar::new(),
            },
            origin: random_origin(),
            stop_listening: Arc::new(AtomicBool::new(false)),
        };
        {
            let mut lease = store.pool.lease()?;
            let conn = lease.conn()?;
            let result = prepare_schema(&mut conn.client, create);
            if let Err(Fail::Pg(error)) = &result {
                lease.broken = unreachable(error);
            }
            result.map_err(Fail::into_store_error)?;
        }
        Ok(store)
    }

    /// Runs `body` on a pooled connection outside a transaction (each statement on its own):
    /// reads. A pooled connection found dead is replaced once.
    fn read<T: Send>(
        &self,
        body: impl FnMut(&mut Db<'_, Client>) -> Result<T, Fail> + Send,
    ) -> Result<T, StoreError> {
        crate::blocking::off_runtime(|| self.read_here(body))
    }

    fn read_here<T>(
        &self,
        mut body: impl FnMut(&mut Db<'_, Client>) -> Result<T, Fail>,
    ) -> Result<T, StoreError> {
        let mut reconnected = false;
        loop {
            let mut lease = self.pool.lease()?;
            let conn = lease.conn()?;
            let result = body(&mut Db {
                client: &mut conn.client,
                statements: &mut conn.statements,
            });
            match result {
                Ok(value) => return Ok(value),
                Err(Fail::Store(error)) => return Err(error),
                Err(Fail::Pg(error)) => {
                    if self.again(&mut lease, &error, false, &mut reconnected, None) {
                        continue;
                    }
                    return Err(classify(&error));
                }
            }
        }
    }

    /// Runs `body` in one transaction, committed when it succeeds. A transaction PostgreSQL
    /// aborted to let another through (deadlock, serialization failure) runs again, up to
    /// [`ATTEMPTS`] times; one whose pooled connection was dead before it began, once more
    /// on a new connection. A commit whose connection was lost is not run again (it may have
    /// committed): `Busy`.
    fn transact<T: Send>(
        &self,
        mode: Mode,
        body: impl FnMut(&mut Db<'_, Transaction<'_>>) -> Result<T, Fail> + Send,
    ) -> Result<T, StoreError> {
        crate::blocking::off_runtime(|| self.transact_here(mode, body))
    }

    fn transact_here<T>(
        &self,
        mode: Mode,
        mut body: impl FnMut(&mut Db<'_, Transaction<'_>>) -> Result<T, Fail>,
    ) -> Result<T, StoreError> {
        let mut attempt = 0;
        let mut reconnected = false;
        loop {
            attempt += 1;
            let mut lease = self.pool.lease()?;
            let conn = lease.conn()?;
            let mut committing = false;
            let result = (|| -> Result<T, Fail> {
                let mut transaction = match mode {
                    Mode::Write { .. } => conn.client.transaction()?,
                    Mode::Snapshot => conn
                        .client
                        .build_transaction()
                        .isolation_level(IsolationLevel::RepeatableRead)
                        .read_only(true)
                        .start()?,
                };
                let mut db = Db {
                    client: &mut transaction,
                    statements: &mut conn.statements,
                };
                if mode == (Mode::Write { serialized: true }) {
                    db.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
                }
                let value = body(&mut db)?;
                committing = true;
                transaction.commit()?;
                Ok(value)
            })();
            match result {
                Ok(value) => return Ok(value),
                Err(Fail::Store(error)) => return Err(error),
                Err(Fail::Pg(error)) => {
                    if self.again(
                        &mut lease,
                        &error,
                        committing,
                        &mut reconnected,
                        Some(attempt),
                    ) {
                        continue;
                    }
                    return Err(classify(&error));
                }
            }
        }
    }

    /// Whether to run a failed attempt again: marks a dead connection broken (it is closed,
    /// not pooled), replaces a dead pooled one once (unless it died committing), and backs
    /// off a little before a transaction PostgreSQL aborted runs again.
    fn again(
        &self,
        lease: &mut Lease<'_>,
        error: &postgres::Error,
        committing: bool,
        reconnected: &mut bool,
        attempt: Option<u32>,
    ) -> bool {
        if unreachable(error) {
            lease.broken = true;
            if lease.reused && !committing && !*reconnected {
                *reconnected = true;
                self.pool.forget_idle();
                return true;
            }
            return false;
        }
        match attempt {
            Some(attempt) if retryable(error) && attempt < ATTEMPTS => {
                std::thread::sleep(Duration::from_millis(10 * u64::from(attempt)));
                true
            }
            _ => false,
        }
    }

    fn write<T: Send>(
        &self,
        body: impl FnMut(&mut Db<'_, Transaction<'_>>) -> Result<T, Fail> + Send,
    ) -> Result<T, StoreError> {
        self.transact(Mode::Write { serialized: false }, body)
    }

    /// A write that checks a precondition: under the write lock.
    fn serialized<T: Send>(
        &self,
        body: impl FnMut(&mut Db<'_, Transaction<'_>>) -> Result<T, Fail> + Send,
    ) -> Result<T, StoreError> {
        self.transact(Mode::Write { serialized: true }, body)
    }
}

impl Drop for PgStore {
    /// Closes the idle connections on a thread of its own: a `postgres::Client` runs its own
    /// small runtime to close, which panics inside an async context (a server's last
    /// reference to the store may go there).
    fn drop(&mut self) {
        self.stop_listening.store(true, Ordering::Relaxed);
        let idle = std::mem::take(&mut self.pool.lock().connections);
        if !idle.is_empty() {
            let _ = std::thread::spawn(move || drop(idle)).join();
        }
    }
}

/// A connection string as the postgres crate reads it, or why not.
fn parse_config(url: &str) -> Result<Config, StoreError> {
    url.parse().map_err(|error| {
        StoreError::Invalid(format!(
            "database: not a PostgreSQL connection string: {}",
            describe(&error)
        ))
    })
}

/// What a database holds ([`PgStore::probe`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// No table in its current schema.
    Empty,
    /// A ward site.
    Site,
    /// Tables, none of them ward's.
    Foreign { schema: String, tables: i64 },
}

/// The state of the schema in the database's current schema (the first of `search_path`
/// that exists): whether `ward_schema` is there, and how many other tables are.
fn look(client: &mut impl GenericClient) -> Result<(String, bool, i64), Fail> {
    let row = client.query_one(
        "SELECT current_schema()::TEXT,
            EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = current_schema() AND c.relname = 'ward_schema'
                    AND c.relkind IN ('r', 'p')),
            (SELECT COUNT(*) FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'f'))",
        &[],
    )?;
    let schema: Option<String> = row.try_get(0)?;
    let Some(schema) = schema else {
        return Err(StoreError::Database(
            "no schema to keep ward's tables in: none of search_path exists".into(),
        )
        .into());
    };
    Ok((schema, row.try_get(1)?, row.try_get(2)?))
}

/// The refusal of a database that holds tables but no ward site.
fn foreign(schema: &str, tables: i64) -> Fail {
    StoreError::Database(format!(
        "the database holds tables but no ward site: {tables} table(s) in schema '{schema}' \
         and no ward_schema table; point `database` at an empty database (or another schema \
         in search_path), or at one a ward server created; nothing was changed"
    ))
    .into()
}

/// Creates the schema in an empty database (once, however many servers open it at once),
/// then checks its version.
fn prepare_schema(client: &mut Client, create: bool) -> Result<(), Fail> {
    let (schema, ward, tables) = look(client)?;
    if !ward {
        if tables > 0 {
            return Err(foreign(&schema, tables));
        }
        if !create {
            return Err(StoreError::Database(format!(
                "the database holds no ward site yet (schema '{schema}' is empty): start \
                 `ward server` on it once to create one"
            ))
            .into());
        }
        let mut transaction = client.transaction()?;
        transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
        // Another server may have created it while this one waited for the lock.
        let (schema, ward, tables) = look(&mut transaction)?;
        if !ward {
            if tables > 0 {
                return Err(foreign(&schema, tables));
            }
            transaction.batch_execute(SCHEMA)?;
            transaction.execute(
                "INSERT INTO ward_schema (version) VALUES ($1)",
                &[&migrate::latest()],
            )?;
        }
        transaction.commit()?;
    }
    let versions = client.query("SELECT version FROM ward_schema", &[])?;
    let found: i64 = match versions.as_slice() {
        [row] => row.try_get(0)?,
        rows => {
            return Err(StoreError::Database(format!(
                "ward_schema holds {} rows, not one: not a database this ward wrote",
                rows.len()
            ))
            .into())
        }
    };
    let supported = migrate::latest();
    if found > supported {
        return Err(StoreError::TooNew { found, supported }.into());
    }
    let found = if found < supported && found >= FIRST_VERSION && create {
        upgrade(client)?
    } else {
        found
    };
    if found < FIRST_VERSION {
        return Err(StoreError::Database(format!(
            "the database has schema version {found}, older than any PostgreSQL database ward \
             made ({FIRST_VERSION}): not a database this ward wrote"
        ))
        .into());
    }
    if found < supported {
        // Only a server upgrades a database (as for SQLite): a command that only looks does
        // not change it.
        return Err(StoreError::TooOld { found, supported }.into());
    }
    Ok(())
}

/// The schema version the first PostgreSQL database was created at: every later version
/// has a step in [`UPGRADES`].
const FIRST_VERSION: i64 = 17;

/// The steps from each version after [`FIRST_VERSION`] to the next: step `i` brings version
/// `FIRST_VERSION + i` to the one after. [`SCHEMA`] is the latest version whole, so a new
/// step is also written into it. Never edit one that has shipped.
const UPGRADES: &[&str] = &[
    // 18: the files a site's servers share, and their generation.
    "CREATE TABLE site_files (
        name TEXT COLLATE \"C\" PRIMARY KEY,
        bytes BYTEA NOT NULL
    );
    INSERT INTO counters (name, value) VALUES ('site', 0);",
];

/// Brings an older ward database up to the latest version, one step per transaction, under
/// the schema lock (so two servers starting at once upgrade it once); the version it is now.
fn upgrade(client: &mut Client) -> Result<i64, Fail> {
    loop {
        let mut transaction = client.transaction()?;
        transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
        let found: i64 = transaction
            .query_one("SELECT version FROM ward_schema", &[])?
            .try_get(0)?;
        let Some(step) = usize::try_from(found - FIRST_VERSION)
            .ok()
            .and_then(|i| UPGRADES.get(i))
        else {
            return Ok(found);
        };
        transaction.batch_execute(step)?;
        transaction.execute("UPDATE ward_schema SET version = $1", &[&(found + 1)])?;
        transaction.commit()?;
    }
}

/// Failed handshakes from `since_ms` on, newest first, at most `limit`.
fn failures(
    db: &mut Db<'_, impl GenericClient>,
    since_ms: i64,
    limit: usize,
) -> Result<Vec<HandshakeFailure>, Fail> {
    let limit = limit.min(i64::MAX as usize) as i64;
    let rows = db.query(
        "SELECT at_ms, listener, peer, offered_max, offered_versions, server_name, kind, reason
         FROM tls_failures WHERE at_ms >= $1 ORDER BY at_ms DESC, id DESC LIMIT $2",
        &[&since_ms, &limit],
    )?;
    rows.iter()
        .map(|row| {
            let versions: String = row.try_get(4)?;
            Ok(HandshakeFailure {
                at_ms: row.try_get(0)?,
                listener: row.try_get(1)?,
                peer: row.try_get(2)?,
                offered_max: row.try_get(3)?,
                offered_versions: split_versions(&versions),
                server_name: row.try_get(5)?,
                kind: row.try_get(6)?,
                reason: row.try_get(7)?,
            })
        })
        .collect()
}

impl Store for PgStore {
    fn record_telemetry(&self, batch: &TelemetryBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        // Rows are locked in one order by every writer (see `record_checkins`): each kind by
        // its key, hellos by fingerprint.
        let mut handshakes: Vec<&HandshakeCount> = batch.handshakes.iter().collect();
        handshakes.sort_by(|a, b| a.key.cmp(&b.key));
        let mut hellos: Vec<&crate::HelloSeen> = batch.hellos.iter().collect();
        hellos.sort_by(|a, b| a.digest.cmp(&b.digest));
        let mut peers: Vec<&HelloPeer> = batch.hello_peers.iter().collect();
        peers.sort_by(|a, b| (&a.listener, &a.peer).cmp(&(&b.listener, &b.peer)));
        let mut dropped = batch.dropped_failures.clone();
        dropped.sort_unstable();
        self.write(|db| {
            for HandshakeCount { key, count } in &handshakes {
                db.execute(
                    "INSERT INTO tls_handshakes
                        (minute, listener, peer, version, cipher, grp, resumed, count)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (minute, listener, peer, version, cipher, grp, resumed)
                     DO UPDATE SET count = tls_handshakes.count + excluded.count",
                    &[
                        &key.minute,
                        &text(&key.listener),
                        &text(&key.peer),
                        &text(&key.version),
                        &text(&key.cipher),
                        &text(&key.group),
                        &key.resumed,
                        &(*count as i64),
                    ],
                )?;
            }
            for failure in &batch.failures {
                db.execute(
                    "INSERT INTO tls_failures
                        (at_ms, listener, peer, offered_max, offered_versions, server_name, kind, reason)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[
                        &failure.at_ms,
                        &text(&failure.listener),
                        &text(&failure.peer),
                        &opt_text(&failure.offered_max),
                        &text(&join_versions(&failure.offered_versions)),
                        &opt_text(&failure.server_name),
                        &text(&failure.kind),
                        &text(&failure.reason),
                    ],
                )?;
            }
            // Distinct hellos: counted when known; kept, up to the bound, when new.
            for hello in &hellos {
                let seen = (hello.at_ms, hello.at_ms);
                let count = hello.count as i64;
                fleet::count_hello(db, &text(&hello.digest), &hello.bytes, seen, count)?;
            }
            for peer in &peers {
                db.execute(
                    "INSERT INTO hello_peers (listener, peer, digest, last_ms) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (listener, peer) DO UPDATE SET digest = excluded.digest,
                        last_ms = excluded.last_ms WHERE excluded.last_ms >= hello_peers.last_ms",
                    &[
                        &text(&peer.listener),
                        &text(&peer.peer),
                        &text(&peer.digest),
                        &peer.at_ms,
                    ],
                )?;
            }
            for (minute, count) in &dropped {
                db.execute(
                    "INSERT INTO tls_failures_dropped (minute, count) VALUES ($1, $2)
                     ON CONFLICT (minute) DO UPDATE
                        SET count = tls_failures_dropped.count + excluded.count",
                    &[minute, &(*count as i64)],
                )?;
            }
            Ok(())
        })
    }

    fn client_hellos(&self) -> Result<Vec<StoredHello>, StoreError> {
        self.read(|db| {
            // The digest breaks ties (SQLite leaves their order to the scan).
            let rows = db.query(
                "SELECT digest, bytes, count, last_ms FROM client_hellos
                 ORDER BY count DESC, digest",
                &[],
            )?;
            rows.iter()
                .map(|row| {
                    Ok(StoredHello {
                        digest: row.try_get(0)?,
                        bytes: row.try_get(1)?,
                        count: row.try_get::<_, i64>(2)? as u64,
                        last_ms: row.try_get(3)?,
                    })
                })
                .collect()
        })
    }

    fn hello_peers(&self, since_ms: i64) -> Result<Vec<HelloPeer>, StoreError> {
        self.read(|db| {
            let rows = db.query(
                "SELECT listener, peer, digest, last_ms FROM hello_peers WHERE last_ms >= $1
                 ORDER BY listener, peer",
                &[&since_ms],
            )?;
            rows.iter()
                .map(|row| {
                    Ok(HelloPeer {
                        listener: row.try_get(0)?,
                        peer: row.try_get(1)?,
                        digest: row.try_get(2)?,
                        at_ms: row.try_get(3)?,
                    })
                })
                .collect()
        })
    }

    fn handshake_report(
        &self,
        since_ms: i64,
        max_failures: usize,
    ) -> Result<HandshakeReport, StoreError> {
        let since_minute = since_ms.div_euclid(60_000);
        // One snapshot: the sums, the failures and the drops describe the same moment.
        self.transact(Mode::Snapshot, |db| {
            let mut report = HandshakeReport::default();
            let rows = db.query(
                "SELECT listener, peer, version, cipher, grp, resumed, SUM(count)::BIGINT
                 FROM tls_handshakes WHERE minute >= $1
                 GROUP BY listener, peer, version, cipher, grp, resumed
                 ORDER BY listener, peer, version, cipher, grp, resumed",
                &[&since_minute],
            )?;
            report.handshakes = rows
                .iter()
                .map(|row| {
                    Ok(HandshakeCount {
                        key: HandshakeKey {
                            minute: since_minute,
                            listener: row.try_get(0)?,
                            peer: row.try_get(1)?,
                            version: row.try_get(2)?,
                            cipher: row.try_get(3)?,
                            group: row.try_get(4)?,
                            resumed: row.try_get(5)?,
                        },
                        count: row.try_get::<_, i64>(6)? as u64,
                    })
                })
                .collect::<Result<_, Fail>>()?;

            report.failures = failures(db, since_ms, max_failures)?;
            // Every failure in range, by address, newest first so the first seen is the last.
            let rows = db.query(
                "SELECT peer, reason, offered_max FROM tls_failures WHERE at_ms >= $1
                 ORDER BY at_ms DESC, id DESC",
                &[&since_ms],
            )?;
            let mut by_peer: Vec<crate::PeerRefusals> = Vec::new();
            let mut index: HashMap<String, usize> = HashMap::new();
            for row in &rows {
                let peer: String = row.try_get(0)?;
                let address = peer
                    .parse::<std::net::SocketAddr>()
                    .map(|a| a.ip().to_string())
                    .unwrap_or(peer);
                match index.get(&address) {
                    Some(&at) => by_peer[at].count += 1,
                    None => {
                        index.insert(address.clone(), by_peer.len());
                        by_peer.push(crate::PeerRefusals {
                            peer: address,
                            count: 1,
                            last_reason: row.try_get(1)?,
                            last_offered_max: row.try_get(2)?,
                        });
                    }
                }
            }
            report.refusals_by_peer = by_peer;
            report.dropped_failures = db
                .query_one(
                    "SELECT COALESCE(SUM(count), 0)::BIGINT FROM tls_failures_dropped
                     WHERE minute >= $1",
                    &[&since_minute],
                )?
                .try_get::<_, i64>(0)? as u64;
            Ok(report)
        })
    }

    fn recent_failures(
        &self,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<HandshakeFailure>, StoreError> {
        self.read(|db| failures(db, since_ms, limit))
    }

    fn prune_telemetry(
        &self,
        before_ms: i64,
        tokens_expired_before_ms: i64,
    ) -> Result<u64, StoreError> {
        self.write(|db| {
            let minute = before_ms.div_euclid(60_000);
            let mut removed =
                db.execute("DELETE FROM tls_handshakes WHERE minute < $1", &[&minute])?;
            removed += db.execute("DELETE FROM tls_failures WHERE at_ms < $1", &[&before_ms])?;
            // Enrollment tokens a day past their expiry: they enroll nobody any more.
            removed += db.execute(
                "DELETE FROM tokens WHERE expires_ms IS NOT NULL AND expires_ms < $1",
                &[&tokens_expired_before_ms],
            )?;
            removed += db.execute(
                "DELETE FROM tls_failures_dropped WHERE minute < $1",
                &[&minute],
            )?;
            Ok(removed)
        })
    }

    fn initialise_fleet(
        &self,
        root: &Group,
        default_list: &ServerList,
    ) -> Result<bool, StoreError> {
        self.serialized(|db| fleet::initialise(db, root, default_list))
    }

    fn groups(&self) -> Result<Vec<Group>, StoreError> {
        self.read(fleet::groups)
    }

    fn tree(&self) -> Result<FleetTree, StoreError> {
        // One snapshot: the groups, the lists and the version belong together.
        self.transact(Mode::Snapshot, |db| {
            Ok(FleetTree {
                groups: fleet::groups(db)?,
                lists: fleet::server_lists(db)?,
                version: fleet::tree_version(db)?,
            })
        })
    }

    fn server_lists(&self) -> Result<Vec<ServerList>, StoreError> {
        self.read(fleet::server_lists)
    }

    fn agents(&self, filter: &AgentFilter) -> Result<Vec<AgentRecord>, StoreError> {
        self.read(|db| fleet::agents(db, filter))
    }

    fn count_agents(&self, filter: &AgentFilter) -> Result<u64, StoreError> {
        self.read(|db| fleet::count_agents(db, filter))
    }

    fn agent_tally(
        &self,
        presence: &crate::Presence,
    ) -> Result<Vec<crate::AgentTally>, StoreError> {
        self.read(|db| fleet::agent_tally(db, presence))
    }

    fn agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        self.read(|db| fleet::agent(db, id))
    }

    fn agents_tls(&self) -> Result<Vec<AgentTls>, StoreError> {
        self.read(fleet::agents_tls)
    }

    fn hostnames(&self, ids: &[String]) -> Result<HashMap<String, String>, StoreError> {
        self.read(|db| fleet::hostnames(db, ids))
    }

    fn insert_agents(&self, agents: &[AgentRecord]) -> Result<(), StoreError> {
        self.write(|db| fleet::insert_agents(db, agents))
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.read(fleet::tokens)
    }

    fn audit(&self, since_ms: i64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(|db| fleet::audit(db, since_ms, limit))
    }

    fn account(&self, name: &str) -> Result<Option<Account>, StoreError> {
        self.read(|db| fleet::account(db, name))
    }

    fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.read(fleet::accounts)
    }

    fn create_session(&self, session: &Session, checked_against: i64) -> Result<(), StoreError> {
        // Under the write lock: no credential change commits between the check and the insert.
        if self.serialized(|db| fleet::create_session(db, session, checked_against))? {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!(
                "account '{}' changed (password, disabled or sessions ended) while logging in",
                session.account
            )))
        }
    }

    fn session(&self, token_sha256: &str) -> Result<Option<Session>, StoreError> {
        self.read(|db| fleet::session(db, token_sha256))
    }

    fn agent_public_key(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.read(|db| fleet::agent_public_key(db, id))
    }

    fn token_by_lookup(&self, lookup: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.read(|db| fleet::token_by_lookup(db, lookup))
    }

    fn recent_nonces(&self, since_ms: i64) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.read(|db| fleet::recent_nonces(db, since_ms))
    }

    fn record_checkins(
        &self,
        checkins: &[crate::Checkin],
    ) -> Result<Vec<Option<AgentRecord>>, StoreError> {
        // Rows are locked in one order by every writer: agents by id (so do bumps), then
        // hellos by fingerprint (so does telemetry). Two servers' batches, or a batch and a
        // bump, then wait for each other instead of deadlocking (which PostgreSQL detects
        // only after a second, and breaks by aborting one). Each agent's check-ins keep
        // their order, and each answer is its agent's record right after its check-in, as
        // in arrival order.
        let mut order: Vec<usize> = (0..checkins.len()).collect();
        order.sort_by(|&a, &b| checkins[a].agent.cmp(&checkins[b].agent));
        self.write(|db| {
            let mut recorded = vec![None; checkins.len()];
            let mut hellos = fleet::Hellos::default();
            for &index in &order {
                recorded[index] = fleet::record_checkin(db, &checkins[index], &mut hellos)?;
            }
            hellos.count(db)?;
            // Nonces older than the replay window protect nothing.
            if let Some(newest) = checkins.iter().map(|c| c.at_ms).max() {
                fleet::prune_nonces(db, newest - crate::NONCE_WINDOW_MS)?;
            }
            Ok(recorded)
        })
    }

    fn touch_checkins(&self, touches: &[crate::Touch]) -> Result<Vec<bool>, StoreError> {
        // Agents locked by id, as every writer does (see `record_checkins`).
        let mut order: Vec<usize> = (0..touches.len()).collect();
        order.sort_by(|&a, &b| touches[a].agent.cmp(&touches[b].agent));
        self.write(|db| {
            let mut applied = vec![false; touches.len()];
            for &index in &order {
                applied[index] = fleet::touch_checkin(db, &touches[index])?;
            }
            if let Some(newest) = touches.iter().map(|c| c.at_ms).max() {
                fleet::prune_nonces(db, newest - crate::NONCE_WINDOW_MS)?;
            }
            Ok(applied)
        })
    }

    fn apply(&self, change: &Change) -> Result<Applied, StoreError> {
        let note = notes::payload(&self.origin, change);
        self.serialized(|db| {
            let applied = fleet::apply(db, change)?;
            // Sent at commit, and only if the change commits: the other servers wake their
            // held check-ins for it.
            if let Some(note) = &note {
                db.execute("SELECT pg_notify($1, $2)", &[&notes::CHANNEL, note])?;
            }
            Ok(applied)
        })
    }

    fn register_server(&self, server: &crate::ServerRecord) -> Result<(), StoreError> {
        let listeners = crate::codec::listeners_json(&server.listeners);
        self.write(|db| {
            db.execute(
                "INSERT INTO servers (name, listeners, version, started_ms, heartbeat_ms) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO UPDATE SET \
                 listeners = excluded.listeners, version = excluded.version, \
                 started_ms = excluded.started_ms, heartbeat_ms = excluded.heartbeat_ms",
                &[
                    &server.name,
                    &listeners,
                    &server.version,
                    &server.started_ms,
                    &server.heartbeat_ms,
                ],
            )?;
            Ok(())
        })
    }

    fn servers(&self) -> Result<Vec<crate::ServerRecord>, StoreError> {
        self.read(|db| {
            let rows = db.query(
                "SELECT name, listeners, version, started_ms, heartbeat_ms FROM servers \
                 ORDER BY name",
                &[],
            )?;
            rows.iter()
                .map(|row| {
                    let listeners: String = row.try_get(1)?;
                    Ok(crate::ServerRecord {
                        name: row.try_get(0)?,
                        listeners: crate::codec::listeners_from_json(&listeners).map_err(
                            |what| {
                                Fail::Store(StoreError::Database(format!(
                                    "stored {what} do not decode"
                                )))
                            },
                        )?,
                        version: row.try_get(2)?,
                        started_ms: row.try_get(3)?,
                        heartbeat_ms: row.try_get(4)?,
                    })
                })
                .collect()
        })
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn warnings(&self) -> Result<Vec<String>, StoreError> {
        self.read(|db| {
            let row = db.query_one(
                "SELECT current_setting('synchronous_standby_names'), \
                 (SELECT count(*) FROM pg_stat_replication), \
                 (SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum'))",
                &[],
            )?;
            let (names, replicas, synchronous): (String, i64, i64) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            Ok(durability(&names, replicas, synchronous)
                .into_iter()
                .collect())
        })
    }

    fn site_files(&self) -> Result<Option<crate::SiteFiles>, StoreError> {
        self.write(|db| {
            let generation: i64 = db
                .query_one(
                    "SELECT value FROM counters WHERE name = 'site' FOR SHARE",
                    &[],
                )?
                .try_get(0)?;
            if generation == 0 {
                return Ok(None);
            }
            let files = db
                .query("SELECT name, bytes FROM site_files ORDER BY name", &[])?
                .iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                .collect::<Result<_, Fail>>()?;
            Ok(Some(crate::SiteFiles { generation, files }))
        })
    }

    fn site_generation(&self) -> Result<i64, StoreError> {
        self.read(|db| {
            Ok(db
                .query_one("SELECT value FROM counters WHERE name = 'site'", &[])?
                .try_get(0)?)
        })
    }

    fn put_site_files(
        &self,
        expected: i64,
        files: &std::collections::BTreeMap<String, Vec<u8>>,
    ) -> Result<i64, StoreError> {
        self.serialized(|db| {
            let current: i64 = db
                .query_one(
                    "SELECT value FROM counters WHERE name = 'site' FOR UPDATE",
                    &[],
                )?
                .try_get(0)?;
            if current != expected {
                return Err(crate::site_changed(expected, current).into());
            }
            db.execute("DELETE FROM site_files", &[])?;
            for (name, bytes) in files {
                db.execute(
                    "INSERT INTO site_files (name, bytes) VALUES ($1, $2)",
                    &[name, bytes],
                )?;
            }
            let generation = current + 1;
            db.execute(
                "UPDATE counters SET value = $1 WHERE name = 'site'",
                &[&generation],
            )?;
            let note = notes::site_payload(&self.origin, generation);
            db.execute("SELECT pg_notify($1, $2)", &[&notes::CHANNEL, &note])?;
            Ok(generation)
        })
    }

    fn watch(&self, note: Arc<dyn Fn(crate::ChangeNote) + Send + Sync>) -> bool {
        notes::listen(
            self.pool.config.clone(),
            self.origin.clone(),
            self.stop_listening.clone(),
            note,
        )
        .is_ok()
    }
}

/// What the replication of the database can lose of what ward acknowledged, from the
/// primary's `synchronous_standby_names` and its streaming replicas (how many, how many of
/// them synchronous): `None` when a failover to a replica loses nothing, or there is none.
fn durability(standby_names: &str, replicas: i64, synchronous: i64) -> Option<String> {
    if replicas == 0 {
        return None;
    }
    if standby_names.trim().is_empty() || synchronous == 0 {
        return Some(format!(
            "the database streams to {replicas} replica(s), none of them synchronous: a \
             failover to one can lose changes ward acknowledged; name it in the primary's \
             synchronous_standby_names"
        ));
    }
    None
}

/// A random name for one store among those on a database.
fn random_origin() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}
