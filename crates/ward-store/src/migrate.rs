//! Versioned schema migrations. `PRAGMA user_version` holds the version; each migration runs
//! in its own transaction with the version bump, so a crash leaves a whole version or none.

use rusqlite::Connection;

use crate::StoreError;

/// The migrations, in order. Migration `i` brings the schema from version `i` to `i + 1`.
/// Never edit one that has shipped: add a new one.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: TLS telemetry.
    "CREATE TABLE tls_handshakes (
        minute INTEGER NOT NULL,
        listener TEXT NOT NULL,
        peer TEXT NOT NULL,
        version TEXT NOT NULL,
        cipher TEXT NOT NULL,
        resumed INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (minute, listener, peer, version, cipher, resumed)
    ) WITHOUT ROWID;
    CREATE TABLE tls_failures (
        id INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        listener TEXT NOT NULL,
        peer TEXT NOT NULL,
        offered_max TEXT,
        offered_versions TEXT NOT NULL,
        server_name TEXT,
        kind TEXT NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE INDEX tls_failures_at ON tls_failures (at_ms);
    CREATE TABLE tls_failures_dropped (
        minute INTEGER PRIMARY KEY,
        count INTEGER NOT NULL
    );",
];

pub(crate) fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

/// Brings the database up to the latest version, or refuses one from a newer ward.
pub(crate) fn migrate(connection: &mut Connection) -> Result<i64, StoreError> {
    let found: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if found > latest() {
        return Err(StoreError::TooNew {
            found,
            supported: latest(),
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let transaction = connection.transaction()?;
        transaction.execute_batch(sql)?;
        transaction.pragma_update(None, "user_version", index as i64 + 1)?;
        transaction.commit()?;
    }
    Ok(latest())
}
