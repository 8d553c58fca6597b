//! The SQLite engine: one file, WAL journal, `synchronous = FULL` so that a committed
//! transaction survives a crash or power loss. One connection behind a mutex serves the
//! process; a busy database is waited for (busy timeout), never reported as a failure at once.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags};

use ward_fleet::{Group, ServerList};

use crate::codec::{join_versions, split_versions};
use crate::{
    migrate, Account, AgentFilter, AgentRecord, AgentTls, Applied, AuditEntry, Change, FleetTree,
    HandshakeCount, HandshakeFailure, HandshakeKey, HandshakeReport, HelloPeer, Session, Store,
    StoreError, StoredHello, TelemetryBatch, TokenRecord,
};

mod fleet;

/// SQLite's errors, classified here, in the engine: a lock held past the busy timeout is
/// `Busy` (retry later), anything else a database failure. (Constraint failures are mapped
/// where the statement knows what they mean: `NotFound`, `Conflict`, `InUse`.)
impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        use rusqlite::ErrorCode;
        match error.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StoreError::Busy(error.to_string())
            }
            _ => StoreError::Database(error.to_string()),
        }
    }
}

/// Failed handshakes from `since_ms` on, newest first, at most `limit`.
fn failures(
    connection: &Connection,
    since_ms: i64,
    limit: usize,
) -> rusqlite::Result<Vec<HandshakeFailure>> {
    let mut statement = connection.prepare_cached(
        "SELECT at_ms, listener, peer, offered_max, offered_versions, server_name, kind, reason
         FROM tls_failures WHERE at_ms >= ?1 ORDER BY at_ms DESC, id DESC LIMIT ?2",
    )?;
    let rows = statement.query_map(
        params![since_ms, limit.min(i64::MAX as usize) as i64],
        |row| {
            let versions: String = row.get(4)?;
            Ok(HandshakeFailure {
                at_ms: row.get(0)?,
                listener: row.get(1)?,
                peer: row.get(2)?,
                offered_max: row.get(3)?,
                offered_versions: split_versions(&versions),
                server_name: row.get(5)?,
                kind: row.get(6)?,
                reason: row.get(7)?,
            })
        },
    )?;
    rows.collect()
}

pub(crate) struct SqliteStore {
    connection: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates it to the latest schema.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let mut connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::Database(format!("{}: {e}", path.display())))?;
        connection.busy_timeout(Duration::from_secs(10))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        // A page cache of up to 64 MiB (SQLite's default is 2 MiB), taken only as pages are
        // read: a change that bumps every agent of a million-agent fleet rewrites its rows and
        // the pending index in about 6 s instead of 16 s (measured with sqlite3 on the bench
        // database of `scripts/bench-fleet`).
        connection.pragma_update(None, "cache_size", -65_536)?;
        migrate::migrate(&mut connection)?;
        let transaction = connection.transaction()?;
        fleet::fill_token_lookups(&transaction)?;
        transaction.commit()?;
        Ok(SqliteStore {
            connection: Mutex::new(connection),
        })
    }

    /// A consistent copy of the database at `path`, even while a server writes to it: SQLite's
    /// `VACUUM INTO` reads one snapshot (a read transaction, which WAL mode lets run beside
    /// the writer) into a new file at `out`, which must not exist.
    pub fn snapshot(path: &Path, out: &Path) -> Result<(), StoreError> {
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::Database(format!("{}: {e}", path.display())))?;
        connection.busy_timeout(Duration::from_secs(10))?;
        let target = out
            .to_str()
            .ok_or_else(|| StoreError::Database(format!("{}: not UTF-8", out.display())))?;
        connection.execute("VACUUM INTO ?1", params![target])?;
        Ok(())
    }

    /// Opens an existing database for reading only, without migrating it: for commands that
    /// look while a server runs. A database of another schema version is refused.
    pub fn open_read_only(path: &Path) -> Result<SqliteStore, StoreError> {
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::Database(format!("{}: {e}", path.display())))?;
        connection.busy_timeout(Duration::from_secs(10))?;
        let found: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        let supported = migrate::latest();
        if found > supported {
            return Err(StoreError::TooNew { found, supported });
        }
        if found < supported {
            return Err(StoreError::TooOld { found, supported });
        }
        Ok(SqliteStore {
            connection: Mutex::new(connection),
        })
    }

    /// Checks a database file without changing it (a restore's): SQLite's own integrity check
    /// passes and its schema is one this ward reads (a newer one is refused, an older one is
    /// upgraded at the next start). Returns its schema version.
    pub fn verify(path: &Path) -> Result<i64, StoreError> {
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::Database(format!("{}: {e}", path.display())))?;
        let found: i64 = connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|e| StoreError::Database(format!("{}: {e}", path.display())))?;
        let supported = migrate::latest();
        if found > supported {
            return Err(StoreError::TooNew { found, supported });
        }
        if found < 1 {
            return Err(StoreError::Database(format!(
                "{}: not a ward database (no schema)",
                path.display()
            )));
        }
        let mut statement = connection.prepare("PRAGMA integrity_check")?;
        let problems: Vec<String> = statement
            .query_map([], |row| row.get::<_, String>(0))?
            .collect::<Result<_, _>>()?;
        if problems != ["ok"] {
            return Err(StoreError::Database(format!(
                "{}: the integrity check failed: {}",
                path.display(),
                problems.join("; ")
            )));
        }
        Ok(found)
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, rusqlite::Error>,
    ) -> Result<T, StoreError> {
        let mut connection = self
            .connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(f(&mut connection)?)
    }
}

impl Store for SqliteStore {
    fn record_telemetry(&self, batch: &TelemetryBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.with(|connection| {
            let transaction = connection.transaction()?;
            {
                let mut upsert = transaction.prepare_cached(
                    "INSERT INTO tls_handshakes
                        (minute, listener, peer, version, cipher, grp, resumed, count)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (minute, listener, peer, version, cipher, grp, resumed)
                     DO UPDATE SET count = count + excluded.count",
                )?;
                for HandshakeCount { key, count } in &batch.handshakes {
                    upsert.execute(params![
                        key.minute,
                        key.listener,
                        key.peer,
                        key.version,
                        key.cipher,
                        key.group,
                        key.resumed,
                        *count as i64
                    ])?;
                }
                let mut insert = transaction.prepare_cached(
                    "INSERT INTO tls_failures
                        (at_ms, listener, peer, offered_max, offered_versions, server_name, kind, reason)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                for failure in &batch.failures {
                    insert.execute(params![
                        failure.at_ms,
                        failure.listener,
                        failure.peer,
                        failure.offered_max,
                        join_versions(&failure.offered_versions),
                        failure.server_name,
                        failure.kind,
                        failure.reason
                    ])?;
                }
                // Distinct hellos: counted when known; kept, up to the bound, when new.
                let mut seen = transaction.prepare_cached(
                    "UPDATE client_hellos SET last_ms = MAX(last_ms, ?2), count = count + ?3
                     WHERE digest = ?1",
                )?;
                let mut keep = transaction.prepare_cached(
                    "INSERT INTO client_hellos (digest, bytes, first_ms, last_ms, count)
                     SELECT ?1, ?2, ?3, ?3, ?4
                     WHERE (SELECT COUNT(*) FROM client_hellos) < ?5",
                )?;
                for hello in &batch.hellos {
                    let updated =
                        seen.execute(params![hello.digest, hello.at_ms, hello.count as i64])?;
                    if updated == 0 {
                        keep.execute(params![
                            hello.digest,
                            hello.bytes,
                            hello.at_ms,
                            hello.count as i64,
                            crate::MAX_DISTINCT_HELLOS
                        ])?;
                    }
                }
                let mut peers = transaction.prepare_cached(
                    "INSERT INTO hello_peers (listener, peer, digest, last_ms) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (listener, peer) DO UPDATE SET digest = excluded.digest,
                        last_ms = excluded.last_ms WHERE excluded.last_ms >= last_ms",
                )?;
                for peer in &batch.hello_peers {
                    peers.execute(params![peer.listener, peer.peer, peer.digest, peer.at_ms])?;
                }
                let mut dropped = transaction.prepare_cached(
                    "INSERT INTO tls_failures_dropped (minute, count) VALUES (?1, ?2)
                     ON CONFLICT (minute) DO UPDATE SET count = count + excluded.count",
                )?;
                for (minute, count) in &batch.dropped_failures {
                    dropped.execute(params![minute, *count as i64])?;
                }
            }
            transaction.commit()
        })
    }

    fn client_hellos(&self) -> Result<Vec<StoredHello>, StoreError> {
        self.with(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT digest, bytes, count, last_ms FROM client_hellos ORDER BY count DESC",
            )?;
            let rows = statement.query_map([], |row| {
                Ok(StoredHello {
                    digest: row.get(0)?,
                    bytes: row.get(1)?,
                    count: row.get::<_, i64>(2)? as u64,
                    last_ms: row.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    fn hello_peers(&self, since_ms: i64) -> Result<Vec<HelloPeer>, StoreError> {
        self.with(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT listener, peer, digest, last_ms FROM hello_peers WHERE last_ms >= ?1
                 ORDER BY listener, peer",
            )?;
            let rows = statement.query_map(params![since_ms], |row| {
                Ok(HelloPeer {
                    listener: row.get(0)?,
                    peer: row.get(1)?,
                    digest: row.get(2)?,
                    at_ms: row.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    fn handshake_report(
        &self,
        since_ms: i64,
        max_failures: usize,
    ) -> Result<HandshakeReport, StoreError> {
        let since_minute = since_ms.div_euclid(60_000);
        self.with(|connection| {
            let mut report = HandshakeReport::default();
            let mut statement = connection.prepare_cached(
                "SELECT listener, peer, version, cipher, grp, resumed, SUM(count)
                 FROM tls_handshakes WHERE minute >= ?1
                 GROUP BY listener, peer, version, cipher, grp, resumed
                 ORDER BY listener, peer, version, cipher, grp, resumed",
            )?;
            let rows = statement.query_map(params![since_minute], |row| {
                Ok(HandshakeCount {
                    key: HandshakeKey {
                        minute: since_minute,
                        listener: row.get(0)?,
                        peer: row.get(1)?,
                        version: row.get(2)?,
                        cipher: row.get(3)?,
                        group: row.get(4)?,
                        resumed: row.get(5)?,
                    },
                    count: row.get::<_, i64>(6)? as u64,
                })
            })?;
            report.handshakes = rows.collect::<Result<_, _>>()?;

            report.failures = failures(connection, since_ms, max_failures)?;
            // Every failure in range, by address, newest first so the first seen is the last.
            let mut statement = connection.prepare_cached(
                "SELECT peer, reason, offered_max FROM tls_failures WHERE at_ms >= ?1
                 ORDER BY at_ms DESC, id DESC",
            )?;
            let mut rows = statement.query(params![since_ms])?;
            let mut by_peer: Vec<crate::PeerRefusals> = Vec::new();
            let mut index: std::collections::HashMap<String, usize> = Default::default();
            while let Some(row) = rows.next()? {
                let peer: String = row.get(0)?;
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
                            last_reason: row.get(1)?,
                            last_offered_max: row.get(2)?,
                        });
                    }
                }
            }
            report.refusals_by_peer = by_peer;
            report.dropped_failures = connection.query_row(
                "SELECT COALESCE(SUM(count), 0) FROM tls_failures_dropped WHERE minute >= ?1",
                params![since_minute],
                |row| row.get::<_, i64>(0),
            )? as u64;
            Ok(report)
        })
    }

    fn recent_failures(
        &self,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<HandshakeFailure>, StoreError> {
        self.with(|connection| failures(connection, since_ms, limit))
    }

    fn prune_telemetry(
        &self,
        before_ms: i64,
        tokens_expired_before_ms: i64,
    ) -> Result<u64, StoreError> {
        self.write(|t| {
            let minute = before_ms.div_euclid(60_000);
            let mut removed = t.execute(
                "DELETE FROM tls_handshakes WHERE minute < ?1",
                params![minute],
            )?;
            removed += t.execute(
                "DELETE FROM tls_failures WHERE at_ms < ?1",
                params![before_ms],
            )?;
            // Enrollment tokens a day past their expiry: they enroll nobody any more.
            removed += t.execute(
                "DELETE FROM tokens WHERE expires_ms IS NOT NULL AND expires_ms < ?1",
                params![tokens_expired_before_ms],
            )?;
            removed += t.execute(
                "DELETE FROM tls_failures_dropped WHERE minute < ?1",
                params![minute],
            )?;
            Ok(removed as u64)
        })
    }

    fn initialise_fleet(
        &self,
        root: &Group,
        default_list: &ServerList,
    ) -> Result<bool, StoreError> {
        self.write(|t| fleet::initialise(t, root, default_list))
    }

    fn groups(&self) -> Result<Vec<Group>, StoreError> {
        self.with(|c| fleet::groups(c))
    }

    fn server_lists(&self) -> Result<Vec<ServerList>, StoreError> {
        self.with(|c| fleet::server_lists(c))
    }

    fn tree(&self) -> Result<FleetTree, StoreError> {
        self.with(|c| {
            // One read transaction: the groups, the lists and the version belong together.
            let transaction = c.transaction()?;
            let tree = FleetTree {
                groups: fleet::groups(&transaction)?,
                lists: fleet::server_lists(&transaction)?,
                version: fleet::tree_version(&transaction)?,
            };
            transaction.commit()?;
            Ok(tree)
        })
    }

    fn agents(&self, filter: &AgentFilter) -> Result<Vec<AgentRecord>, StoreError> {
        self.with(|c| fleet::agents(c, filter))
    }

    fn count_agents(&self, filter: &AgentFilter) -> Result<u64, StoreError> {
        self.with(|c| fleet::count_agents(c, filter))
    }

    fn agent_tally(
        &self,
        presence: &crate::Presence,
    ) -> Result<Vec<crate::AgentTally>, StoreError> {
        self.with(|c| fleet::agent_tally(c, presence))
    }

    fn agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        self.with(|c| fleet::agent(c, id))
    }

    fn agents_tls(&self) -> Result<Vec<AgentTls>, StoreError> {
        self.with(|c| fleet::agents_tls(c))
    }

    fn hostnames(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        self.with(|c| fleet::hostnames(c, ids))
    }

    fn insert_agents(&self, agents: &[AgentRecord]) -> Result<(), StoreError> {
        self.write(|t| fleet::insert_agents(t, agents).map_err(StoreError::from))
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.with(|c| fleet::tokens(c))
    }

    fn audit(&self, since_ms: i64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.with(|c| fleet::audit(c, since_ms, limit))
    }

    fn account(&self, name: &str) -> Result<Option<Account>, StoreError> {
        self.with(|c| fleet::account(c, name))
    }

    fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.with(|c| fleet::accounts(c))
    }

    fn create_session(&self, session: &Session, checked_against: i64) -> Result<(), StoreError> {
        if self.with(|c| fleet::create_session(c, session, checked_against))? {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!(
                "account '{}' changed (password, disabled or sessions ended) while logging in",
                session.account
            )))
        }
    }

    fn session(&self, token_sha256: &str) -> Result<Option<Session>, StoreError> {
        self.with(|c| fleet::session(c, token_sha256))
    }

    fn agent_public_key(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.with(|c| fleet::agent_public_key(c, id))
    }

    fn record_checkins(
        &self,
        checkins: &[crate::Checkin],
    ) -> Result<Vec<Option<AgentRecord>>, StoreError> {
        self.write(|t| {
            let recorded = checkins
                .iter()
                .map(|checkin| fleet::record_checkin(t, checkin))
                .collect::<Result<Vec<_>, _>>()?;
            // Nonces older than the replay window protect nothing.
            if let Some(newest) = checkins.iter().map(|c| c.at_ms).max() {
                fleet::prune_nonces(t, newest - crate::NONCE_WINDOW_MS)?;
            }
            Ok(recorded)
        })
    }

    fn touch_checkins(&self, touches: &[crate::Touch]) -> Result<Vec<bool>, StoreError> {
        self.write(|t| {
            let applied = touches
                .iter()
                .map(|touch| fleet::touch_checkin(t, touch))
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(newest) = touches.iter().map(|c| c.at_ms).max() {
                fleet::prune_nonces(t, newest - crate::NONCE_WINDOW_MS)?;
            }
            Ok(applied)
        })
    }

    fn token_by_lookup(&self, lookup: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.with(|c| fleet::token_by_lookup(c, lookup))
    }

    fn recent_nonces(&self, since_ms: i64) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.with(|c| fleet::recent_nonces(c, since_ms))
    }

    fn apply(&self, change: &Change) -> Result<Applied, StoreError> {
        self.write(|t| fleet::apply(t, change))
    }

    fn register_server(&self, server: &crate::ServerRecord) -> Result<(), StoreError> {
        self.write(|t| {
            t.execute(
                "INSERT INTO servers (name, listeners, version, started_ms, heartbeat_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (name) DO UPDATE SET \
                 listeners = excluded.listeners, version = excluded.version, \
                 started_ms = excluded.started_ms, heartbeat_ms = excluded.heartbeat_ms",
                params![
                    server.name,
                    crate::codec::listeners_json(&server.listeners),
                    server.version,
                    server.started_ms,
                    server.heartbeat_ms
                ],
            )?;
            Ok(())
        })
    }

    fn servers(&self) -> Result<Vec<crate::ServerRecord>, StoreError> {
        self.with(|c| {
            let mut statement = c.prepare_cached(
                "SELECT name, listeners, version, started_ms, heartbeat_ms FROM servers \
                 ORDER BY name",
            )?;
            let rows = statement.query_map([], |row| {
                let listeners: String = row.get(1)?;
                Ok(crate::ServerRecord {
                    name: row.get(0)?,
                    listeners: crate::codec::listeners_from_json(&listeners).map_err(|what| {
                        rusqlite::Error::FromSqlConversionFailure(
                            1,
                            rusqlite::types::Type::Text,
                            format!("stored {what} do not decode").into(),
                        )
                    })?,
                    version: row.get(2)?,
                    started_ms: row.get(3)?,
                    heartbeat_ms: row.get(4)?,
                })
            })?;
            rows.collect()
        })
    }

    fn site_files(&self) -> Result<Option<crate::SiteFiles>, StoreError> {
        self.with(|c| {
            let transaction = c.transaction()?;
            let generation = site_generation(&transaction)?;
            if generation == 0 {
                return Ok(None);
            }
            let mut statement =
                transaction.prepare_cached("SELECT name, bytes FROM site_files ORDER BY name")?;
            let files = statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(Some(crate::SiteFiles { generation, files }))
        })
    }

    fn site_generation(&self) -> Result<i64, StoreError> {
        self.with(|c| site_generation(c))
    }

    fn put_site_files(
        &self,
        expected: i64,
        files: &std::collections::BTreeMap<String, Vec<u8>>,
    ) -> Result<i64, StoreError> {
        self.write(|t| {
            let current = site_generation(t)?;
            if current != expected {
                return Err(crate::site_changed(expected, current));
            }
            t.execute("DELETE FROM site_files", [])?;
            for (name, bytes) in files {
                t.execute(
                    "INSERT INTO site_files (name, bytes) VALUES (?1, ?2)",
                    params![name, bytes],
                )?;
            }
            t.execute(
                "UPDATE counters SET value = ?1 WHERE name = 'site'",
                params![current + 1],
            )?;
            Ok(current + 1)
        })
    }
}

/// The generation of the site's files.
fn site_generation(connection: &Connection) -> rusqlite::Result<i64> {
    connection.query_row(
        "SELECT value FROM counters WHERE name = 'site'",
        [],
        |row| row.get(0),
    )
}

impl SqliteStore {
    /// A write transaction, committed when `f` succeeds. `IMMEDIATE` takes the write lock at
    /// the start, so a busy database is waited for (busy timeout) instead of failing later.
    fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut connection = self
            .connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let value = f(&transaction)?;
        transaction.commit()?;
        Ok(value)
    }
}

#[cfg(test)]
mod tests;
