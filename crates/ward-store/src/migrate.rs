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
    // 2: the fleet model.
    "CREATE TABLE groups (
        id INTEGER PRIMARY KEY,
        parent INTEGER REFERENCES groups (id),
        name TEXT NOT NULL,
        server_list TEXT REFERENCES server_lists (name),
        interval_ms INTEGER,
        randomize_ms INTEGER,
        mode TEXT,
        policy TEXT
    );
    CREATE UNIQUE INDEX groups_sibling_names ON groups (COALESCE(parent, 0), name);
    CREATE TABLE server_lists (
        name TEXT PRIMARY KEY,
        entries TEXT NOT NULL
    );
    CREATE TABLE agents (
        id TEXT PRIMARY KEY,
        hostname TEXT NOT NULL,
        os_name TEXT NOT NULL,
        os_version TEXT NOT NULL,
        agent_version TEXT NOT NULL,
        tls_versions TEXT NOT NULL,
        tls_rank INTEGER NOT NULL,
        group_id INTEGER NOT NULL REFERENCES groups (id),
        last_checkin_ms INTEGER,
        channel TEXT,
        server TEXT,
        tls_version TEXT,
        serial INTEGER NOT NULL,
        acked_serial INTEGER NOT NULL,
        enrolled_ms INTEGER NOT NULL
    );
    CREATE INDEX agents_group ON agents (group_id);
    CREATE INDEX agents_pending ON agents (id) WHERE acked_serial < serial;
    CREATE TABLE tokens (
        id INTEGER PRIMARY KEY,
        group_id INTEGER NOT NULL REFERENCES groups (id),
        token_sha256 TEXT NOT NULL UNIQUE,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER,
        uses_left INTEGER,
        revoked INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        before TEXT,
        after TEXT
    );
    CREATE INDEX audit_at ON audit (at_ms);
    CREATE TABLE accounts (
        name TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('admin', 'auditor'))
    );
    CREATE TABLE sessions (
        token_sha256 TEXT PRIMARY KEY,
        account TEXT NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
        expires_ms INTEGER NOT NULL
    );
    CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    INSERT INTO counters (name, value) VALUES ('serial', 1);",
    // 3: agent keys, and tokens that allow enrollment over plain HTTP.
    "ALTER TABLE agents ADD COLUMN public_key TEXT NOT NULL DEFAULT '';
    ALTER TABLE tokens ADD COLUMN allow_http INTEGER NOT NULL DEFAULT 0;",
    // 4: one agent per key, so a replayed enrollment cannot make a second one.
    "CREATE UNIQUE INDEX agents_public_key ON agents (public_key) WHERE public_key <> '';",
    // 5: the address an agent last checked in from, to match refused handshakes to agents.
    "ALTER TABLE agents ADD COLUMN peer TEXT;",
    // 6: agents that `ward simulate` enrolled: a rehearsal's leftovers never block a harden.
    "ALTER TABLE agents ADD COLUMN simulated INTEGER NOT NULL DEFAULT 0;",
    // 7: the key-exchange group of each handshake (X25519MLKEM768, x25519, ...), in the key.
    "CREATE TABLE tls_handshakes_7 (
        minute INTEGER NOT NULL,
        listener TEXT NOT NULL,
        peer TEXT NOT NULL,
        version TEXT NOT NULL,
        cipher TEXT NOT NULL,
        grp TEXT NOT NULL,
        resumed INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (minute, listener, peer, version, cipher, grp, resumed)
    ) WITHOUT ROWID;
    INSERT INTO tls_handshakes_7
        SELECT minute, listener, peer, version, cipher, '', resumed, count FROM tls_handshakes;
    DROP TABLE tls_handshakes;
    ALTER TABLE tls_handshakes_7 RENAME TO tls_handshakes;",
    // 8: the key-exchange group of each agent's last HTTPS check-in (how much of the fleet a
    // post-quantum group protects).
    "ALTER TABLE agents ADD COLUMN tls_group TEXT;",
    // 9: the raw ClientHellos clients really sent, one per stack fingerprint (bounded), the
    // last one per peer address and listener, and per agent: what an exact plan replays.
    "CREATE TABLE client_hellos (
        digest TEXT PRIMARY KEY,
        bytes BLOB NOT NULL,
        first_ms INTEGER NOT NULL,
        last_ms INTEGER NOT NULL,
        count INTEGER NOT NULL
    );
    CREATE TABLE hello_peers (
        listener TEXT NOT NULL,
        peer TEXT NOT NULL,
        digest TEXT NOT NULL,
        last_ms INTEGER NOT NULL,
        PRIMARY KEY (listener, peer)
    ) WITHOUT ROWID;
    ALTER TABLE agents ADD COLUMN hello TEXT;",
    // 10: the nonces of accepted check-ins, for replay protection across restarts.
    "CREATE TABLE seen_nonces (
        agent TEXT NOT NULL,
        nonce TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        PRIMARY KEY (agent, nonce)
    ) WITHOUT ROWID;
    CREATE INDEX seen_nonces_at ON seen_nonces (at_ms);",
    // 11: accounts can be disabled (kept, but no login and no session).
    "ALTER TABLE accounts ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;",
    // 12: enrollment finds its token by an index (the lookup an agent sends), not by hashing
    // every row; `SqliteStore::open` fills it in for tokens made before.
    "ALTER TABLE tokens ADD COLUMN lookup TEXT;
    CREATE INDEX tokens_lookup ON tokens (lookup);",
    // 13: the CAs each agent reports it trusts (SHA-256 fingerprints), for CA rotation, and
    // the server agreement key its last check-in was signed under, for key rotation.
    "ALTER TABLE agents ADD COLUMN trusted_cas TEXT;
    ALTER TABLE agents ADD COLUMN agreement_key TEXT;",
    // 14: each account's credential version, bumped by every change that ends its sessions,
    // so a login racing a new password cannot create a session under the old one.
    "ALTER TABLE accounts ADD COLUMN credential_version INTEGER NOT NULL DEFAULT 0;",
    // 15: the version of the groups and server lists, which every change of them bumps: a
    // change checked against an older version is refused (another writer came first).
    "INSERT INTO counters (name, value) VALUES ('tree', 0);",
    // 16: an agent's revert (the serial it left for the last settings that worked, why, and
    // when it said so), the ClientHello its stack reports of itself (a digest of
    // client_hellos), which plans replay for agents never seen over TLS, and tokens whose
    // enrollments go through even when the agent's stack cannot use its group's servers.
    "ALTER TABLE agents ADD COLUMN reverted_serial INTEGER;
    ALTER TABLE agents ADD COLUMN revert_reason TEXT;
    ALTER TABLE agents ADD COLUMN reverted_ms INTEGER;
    ALTER TABLE agents ADD COLUMN reported_hello TEXT;
    ALTER TABLE tokens ADD COLUMN accept_cut_off INTEGER NOT NULL DEFAULT 0;",
    // 17: the servers on the database, their listeners (JSON) and heartbeats: `ward server
    // list` says which are alive.
    "CREATE TABLE servers (
        name TEXT PRIMARY KEY,
        listeners TEXT NOT NULL,
        version TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        heartbeat_ms INTEGER NOT NULL
    );",
    // 18: the files a site's servers share (its CA, agreement and ticket keys), and their
    // generation.
    "CREATE TABLE site_files (
        name TEXT PRIMARY KEY,
        bytes BLOB NOT NULL
    );
    INSERT INTO counters (name, value) VALUES ('site', 0);",
];

pub(crate) fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

/// Brings the database up to the latest version, or refuses one from a newer ward.
pub(crate) fn migrate(connection: &mut Connection) -> Result<i64, StoreError> {
    let found: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if found < 0 {
        return Err(StoreError::Database(format!(
            "schema version {found} is not valid"
        )));
    }
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
