//! The fleet tables in SQLite: reads, bulk agent inserts, and admin changes applied with their
//! serial bumps and audit entry in one transaction.

use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row, Transaction};
use serde_json::Value;
use ward_fleet::{Group, Mode, OwnSettings, ServerList};

use crate::agent_query::{self, Dialect, Param};
use crate::codec::{
    entries_json, from_millis, intern, join_versions, list_from_json, millis, split_versions,
    tls_rank, version_bits,
};
use crate::fleet::*;
use crate::StoreError;

/// A stored value that does not decode: corruption, reported rather than guessed around.
fn corrupt(column: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        column,
        rusqlite::types::Type::Text,
        format!("stored {what} does not decode").into(),
    )
}

fn group_from_row(row: &Row<'_>) -> rusqlite::Result<Group> {
    let mode: Option<String> = row.get(6)?;
    let policy: Option<String> = row.get(7)?;
    let policy = match policy {
        Some(text) => Some(serde_json::from_str(&text).map_err(|_| corrupt(7, "policy"))?),
        None => None,
    };
    let mode = match mode {
        Some(text) => Some(Mode::parse(&text).ok_or_else(|| corrupt(6, "mode"))?),
        None => None,
    };
    Ok(Group {
        id: row.get(0)?,
        parent: row.get(1)?,
        name: row.get(2)?,
        own: OwnSettings {
            server_list: row.get(3)?,
            interval: from_millis(row.get(4)?),
            randomize: from_millis(row.get(5)?),
            mode,
            policy,
        },
    })
}

pub(crate) fn groups(connection: &Connection) -> rusqlite::Result<Vec<Group>> {
    let mut statement = connection.prepare_cached(
        "SELECT id, parent, name, server_list, interval_ms, randomize_ms, mode, policy FROM groups ORDER BY id",
    )?;
    let rows = statement.query_map([], group_from_row)?;
    rows.collect()
}

pub(crate) fn server_lists(connection: &Connection) -> rusqlite::Result<Vec<ServerList>> {
    let mut statement =
        connection.prepare_cached("SELECT name, entries FROM server_lists ORDER BY name")?;
    let rows = statement.query_map([], |row| {
        let entries: String = row.get(1)?;
        list_from_json(row.get(0)?, &entries).map_err(|what| corrupt(1, what))
    })?;
    rows.collect()
}

const AGENT_COLUMNS: &str =
    "id, hostname, os_name, os_version, agent_version, tls_versions, group_id, \
     last_checkin_ms, channel, server, tls_version, serial, acked_serial, enrolled_ms, simulated, \
     tls_group, hello, reverted_serial, revert_reason, reverted_ms, reported_hello, peer";

fn agent_from_row(row: &Row<'_>) -> rusqlite::Result<AgentRecord> {
    let versions: String = row.get(5)?;
    Ok(AgentRecord {
        id: row.get(0)?,
        hostname: row.get(1)?,
        os_name: row.get(2)?,
        os_version: row.get(3)?,
        agent_version: row.get(4)?,
        tls_versions: split_versions(&versions),
        group: row.get(6)?,
        last_checkin_ms: row.get(7)?,
        channel: row.get(8)?,
        server: row.get(9)?,
        tls_version: row.get(10)?,
        serial: row.get(11)?,
        acked_serial: row.get(12)?,
        enrolled_ms: row.get(13)?,
        simulated: row.get(14)?,
        tls_group: row.get(15)?,
        hello: row.get(16)?,
        reverted: match (row.get(17)?, row.get(18)?, row.get(19)?) {
            (Some(serial), Some(reason), Some(at_ms)) => Some(crate::Revert {
                serial,
                reason,
                at_ms,
            }),
            _ => None,
        },
        reported_hello: row.get(20)?,
        peer: row.get(21)?,
    })
}

/// SQLite's numbered placeholders (`?N`); a list is bound as one JSON array.
struct Sqlite;

impl Dialect for Sqlite {
    fn placeholder(&self, n: usize) -> String {
        format!("?{n}")
    }
    fn in_list(&self, column: &str, placeholder: &str) -> String {
        format!("{column} IN (SELECT value FROM json_each({placeholder}))")
    }
}

fn bound(params: Vec<Param>) -> Vec<rusqlite::types::Value> {
    use rusqlite::types::Value as V;
    params
        .into_iter()
        .map(|param| match param {
            Param::Int(n) => V::Integer(n),
            Param::Text(text) => V::Text(text),
            Param::Ints(list) => V::Text(serde_json::json!(list).to_string()),
            Param::Texts(list) => V::Text(serde_json::json!(list).to_string()),
        })
        .collect()
}

pub(crate) fn agents(
    connection: &Connection,
    filter: &AgentFilter,
) -> rusqlite::Result<Vec<AgentRecord>> {
    let Some(sql) = agent_query::select(filter, AGENT_COLUMNS, &Sqlite) else {
        return Ok(Vec::new());
    };
    let mut statement = connection.prepare(&sql.text)?;
    let rows = statement.query_map(params_from_iter(bound(sql.params)), agent_from_row)?;
    rows.collect()
}

pub(crate) fn count_agents(connection: &Connection, filter: &AgentFilter) -> rusqlite::Result<u64> {
    let Some(sql) = agent_query::count(filter, &Sqlite) else {
        return Ok(0);
    };
    let mut statement = connection.prepare(&sql.text)?;
    statement.query_row(params_from_iter(bound(sql.params)), |row| {
        row.get::<_, i64>(0).map(|n| n.max(0) as u64)
    })
}

pub(crate) fn agent_tally(
    connection: &Connection,
    presence: &Presence,
) -> rusqlite::Result<Vec<AgentTally>> {
    let sql = agent_query::tally(presence, &Sqlite);
    let mut statement = connection.prepare(&sql.text)?;
    let count = |row: &Row<'_>, index: usize| row.get::<_, i64>(index).map(|n| n.max(0) as u64);
    let rows = statement.query_map(params_from_iter(bound(sql.params)), |row| {
        Ok(AgentTally {
            channel: row.get(0)?,
            tls_version: row.get(1)?,
            agents: count(row, 2)?,
            online: count(row, 3)?,
            pending: count(row, 4)?,
            post_quantum: count(row, 5)?,
            reverted: count(row, 6)?,
        })
    })?;
    rows.collect()
}

/// The version of the groups and server lists.
pub(crate) fn tree_version(connection: &Connection) -> rusqlite::Result<i64> {
    connection.query_row(
        "SELECT value FROM counters WHERE name = 'tree'",
        [],
        |row| row.get(0),
    )
}

pub(crate) fn agents_tls(connection: &Connection) -> rusqlite::Result<Vec<AgentTls>> {
    // A table scan in storage order (no ORDER BY: the id index would turn it into a million
    // random lookups); text columns are read in place, not copied.
    let mut statement = connection.prepare(
        "SELECT id, group_id, tls_versions, tls_version, channel, peer, last_checkin_ms, \
         enrolled_ms, serial, acked_serial, simulated, \
         COALESCE(tls_group LIKE '%MLKEM%', 0), hello, trusted_cas, agreement_key, \
         reported_hello, CASE WHEN reverted_serial = serial THEN reverted_serial END FROM agents",
    )?;
    let mut rows = statement.query([])?;
    let mut agents = Vec::new();
    // A real fleet has a few dozen stacks: one shared string each, not one per agent.
    let mut stacks: std::collections::HashMap<String, std::sync::Arc<str>> =
        std::collections::HashMap::new();
    while let Some(row) = rows.next()? {
        let text = |index: usize| -> rusqlite::Result<Option<&str>> {
            Ok(row.get_ref(index)?.as_str_or_null()?)
        };
        agents.push(AgentTls {
            id: row.get(0)?,
            group: row.get(1)?,
            versions: version_bits(text(2)?.unwrap_or("")),
            negotiated: text(3)?.map(tls_rank).filter(|r| *r > 0).map(|r| r as u8),
            https: text(4)?.map(|channel| channel == "https"),
            peer: text(5)?.and_then(|peer| peer.parse().ok()),
            last_checkin_ms: row.get(6)?,
            enrolled_ms: row.get(7)?,
            serial: row.get(8)?,
            acked_serial: row.get(9)?,
            simulated: row.get(10)?,
            post_quantum: row.get(11)?,
            hello: text(12)?.map(|digest| intern(&mut stacks, digest)),
            trusted_cas: text(13)?.map(|prints| intern(&mut stacks, prints)),
            agreement_key: text(14)?.map(|key| intern(&mut stacks, key)),
            reported_hello: text(15)?.map(|digest| intern(&mut stacks, digest)),
            refused_serial: row.get(16)?,
        });
    }
    Ok(agents)
}

pub(crate) fn hostnames(
    connection: &Connection,
    ids: &[String],
) -> rusqlite::Result<std::collections::HashMap<String, String>> {
    let mut names = std::collections::HashMap::new();
    for chunk in ids.chunks(500) {
        let sql = format!(
            "SELECT id, hostname FROM agents WHERE id IN ({})",
            vec!["?"; chunk.len()].join(",")
        );
        let mut statement = connection.prepare_cached(&sql)?;
        let rows = statement.query_map(params_from_iter(chunk), |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?;
        for row in rows {
            let (id, name) = row?;
            names.insert(id, name);
        }
    }
    Ok(names)
}

pub(crate) fn agent(connection: &Connection, id: &str) -> rusqlite::Result<Option<AgentRecord>> {
    connection
        .prepare_cached(&format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = ?1"))?
        .query_row(params![id], agent_from_row)
        .optional()
}

pub(crate) fn insert_agents(
    transaction: &Transaction<'_>,
    agents: &[AgentRecord],
) -> rusqlite::Result<()> {
    let mut insert = transaction.prepare_cached(
        "INSERT INTO agents (id, hostname, os_name, os_version, agent_version, tls_versions, tls_rank, \
         group_id, last_checkin_ms, channel, server, tls_version, serial, acked_serial, enrolled_ms, \
         simulated, reported_hello) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    )?;
    for agent in agents {
        let rank = agent
            .tls_versions
            .iter()
            .map(|v| tls_rank(v))
            .max()
            .unwrap_or(0);
        insert.execute(params![
            agent.id,
            agent.hostname,
            agent.os_name,
            agent.os_version,
            agent.agent_version,
            join_versions(&agent.tls_versions),
            rank,
            agent.group,
            agent.last_checkin_ms,
            agent.channel,
            agent.server,
            agent.tls_version,
            agent.serial,
            agent.acked_serial,
            agent.enrolled_ms,
            agent.simulated,
            agent.reported_hello
        ])?;
    }
    Ok(())
}

/// The columns [`token_row`] reads, in its order.
const TOKEN_COLUMNS: &str = "id, group_id, token_sha256, created_ms, expires_ms, uses_left, \
     revoked, allow_http, accept_cut_off";

fn token_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        id: row.get(0)?,
        group: row.get(1)?,
        token_sha256: row.get(2)?,
        created_ms: row.get(3)?,
        expires_ms: row.get(4)?,
        uses_left: row.get(5)?,
        revoked: row.get(6)?,
        allow_http: row.get(7)?,
        accept_cut_off: row.get(8)?,
    })
}

pub(crate) fn tokens(connection: &Connection) -> rusqlite::Result<Vec<TokenRecord>> {
    let mut statement =
        connection.prepare_cached(&format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY id"))?;
    let rows = statement.query_map([], token_row)?;
    rows.collect()
}

/// The token an enrolling agent names by its lookup, through the index.
pub(crate) fn token_by_lookup(
    connection: &Connection,
    lookup: &str,
) -> rusqlite::Result<Option<TokenRecord>> {
    connection
        .prepare_cached(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE lookup = ?1"
        ))?
        .query_row(params![lookup], token_row)
        .optional()
}

/// Fills in the lookup of tokens made before schema 12.
pub(crate) fn fill_token_lookups(transaction: &Transaction<'_>) -> Result<(), StoreError> {
    let missing: Vec<(i64, String)> = transaction
        .prepare("SELECT id, token_sha256 FROM tokens WHERE lookup IS NULL")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (id, sha) in missing {
        transaction.execute(
            "UPDATE tokens SET lookup = ?1 WHERE id = ?2",
            params![ward_proto::enroll::token_lookup(&sha), id],
        )?;
    }
    Ok(())
}

pub(crate) fn audit(
    connection: &Connection,
    since_ms: i64,
    limit: usize,
) -> rusqlite::Result<Vec<AuditEntry>> {
    let mut statement = connection.prepare_cached(
        "SELECT id, at_ms, actor, action, target, before, after FROM audit WHERE at_ms >= ?1 ORDER BY id LIMIT ?2",
    )?;
    let limit = limit.min(i64::MAX as usize) as i64;
    let rows = statement.query_map(params![since_ms, limit], |row| {
        let parse = |text: Option<String>| text.and_then(|t| serde_json::from_str(&t).ok());
        Ok(AuditEntry {
            id: row.get(0)?,
            at_ms: row.get(1)?,
            actor: row.get(2)?,
            action: row.get(3)?,
            target: row.get(4)?,
            before: parse(row.get(5)?),
            after: parse(row.get(6)?),
        })
    })?;
    rows.collect()
}

pub(crate) fn accounts(connection: &Connection) -> rusqlite::Result<Vec<Account>> {
    let mut statement = connection
        .prepare("SELECT name, password_hash, role, disabled, credential_version FROM accounts ORDER BY name")?;
    let rows = statement.query_map([], account_row)?;
    rows.collect()
}

fn account_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        name: row.get(0)?,
        password_hash: row.get(1)?,
        role: row.get(2)?,
        disabled: row.get(3)?,
        credential_version: row.get(4)?,
    })
}

pub(crate) fn account(connection: &Connection, name: &str) -> rusqlite::Result<Option<Account>> {
    connection
        .query_row(
            "SELECT name, password_hash, role, disabled, credential_version FROM accounts WHERE name = ?1",
            params![name],
            account_row,
        )
        .optional()
}

pub(crate) fn session(
    connection: &Connection,
    token_sha256: &str,
) -> rusqlite::Result<Option<Session>> {
    connection
        .query_row(
            "SELECT token_sha256, account, expires_ms FROM sessions WHERE token_sha256 = ?1",
            params![token_sha256],
            |row| {
                Ok(Session {
                    token_sha256: row.get(0)?,
                    account: row.get(1)?,
                    expires_ms: row.get(2)?,
                })
            },
        )
        .optional()
}

fn write_group(
    transaction: &Transaction<'_>,
    group: &Group,
    insert: bool,
) -> rusqlite::Result<i64> {
    let own = &group.own;
    let values = params![
        group.parent,
        group.name,
        own.server_list,
        millis(own.interval),
        millis(own.randomize),
        own.mode.map(Mode::name),
        own.policy.as_ref().map(Value::to_string),
        group.id
    ];
    if insert {
        transaction.execute(
            "INSERT INTO groups (parent, name, server_list, interval_ms, randomize_ms, mode, policy) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            &values[..7],
        )?;
        Ok(transaction.last_insert_rowid())
    } else {
        transaction.execute(
            "UPDATE groups SET parent = ?1, name = ?2, server_list = ?3, interval_ms = ?4, \
             randomize_ms = ?5, mode = ?6, policy = ?7 WHERE id = ?8",
            values,
        )?;
        Ok(group.id)
    }
}

/// Maps SQLite's constraint failures to what the caller did wrong.
fn constraint(error: rusqlite::Error, what: &str) -> StoreError {
    match &error {
        rusqlite::Error::SqliteFailure(e, message)
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            let message = message.clone().unwrap_or_default();
            if message.contains("UNIQUE") || message.contains("PRIMARY KEY") {
                StoreError::Conflict(format!("{what} already exists"))
            } else if message.contains("FOREIGN KEY") {
                StoreError::NotFound(format!("{what} refers to something that does not exist"))
            } else {
                StoreError::Invalid(format!("{what} is not valid: {message}"))
            }
        }
        _ => StoreError::from(error),
    }
}

fn count(
    transaction: &Transaction<'_>,
    sql: &str,
    value: &dyn rusqlite::ToSql,
) -> rusqlite::Result<i64> {
    transaction.query_row(sql, [value], |row| row.get(0))
}

fn mutate(transaction: &Transaction<'_>, mutation: &Mutation) -> Result<Option<i64>, StoreError> {
    match mutation {
        Mutation::CreateGroup(group) => write_group(transaction, group, true)
            .map(Some)
            .map_err(|e| constraint(e, &format!("group '{}'", group.name))),
        Mutation::UpdateGroup(group) => {
            let exists = count(
                transaction,
                "SELECT COUNT(*) FROM groups WHERE id = ?1",
                &group.id,
            )?;
            if exists == 0 {
                return Err(StoreError::NotFound(format!("no group {}", group.id)));
            }
            let changed = write_group(transaction, group, false)
                .map_err(|e| constraint(e, &format!("group '{}'", group.name)))?;
            Ok(Some(changed))
        }
        Mutation::MoveGroup { id, parent } => {
            let rows = transaction
                .execute(
                    "UPDATE groups SET parent = ?1 WHERE id = ?2",
                    params![parent, id],
                )
                .map_err(|e| constraint(e, "a group of that name under the new parent"))?;
            if rows == 0 {
                return Err(StoreError::NotFound(format!("no group {id}")));
            }
            Ok(None)
        }
        Mutation::DeleteGroup(id) => {
            if count(
                transaction,
                "SELECT COUNT(*) FROM groups WHERE parent = ?1",
                id,
            )? > 0
            {
                return Err(StoreError::InUse(
                    "the group has subgroups; delete or move them first".into(),
                ));
            }
            if count(
                transaction,
                "SELECT COUNT(*) FROM agents WHERE group_id = ?1",
                id,
            )? > 0
            {
                return Err(StoreError::InUse(
                    "the group has agents; move them first".into(),
                ));
            }
            transaction.execute("DELETE FROM tokens WHERE group_id = ?1", params![id])?;
            if transaction.execute("DELETE FROM groups WHERE id = ?1", params![id])? == 0 {
                return Err(StoreError::NotFound(format!("no group {id}")));
            }
            Ok(None)
        }
        Mutation::CreateServerList(list) => {
            transaction
                .execute(
                    "INSERT INTO server_lists (name, entries) VALUES (?1, ?2)",
                    params![list.name, entries_json(list)],
                )
                .map_err(|e| constraint(e, &format!("server list '{}'", list.name)))?;
            Ok(None)
        }
        Mutation::UpdateServerList(list) => {
            let updated = transaction.execute(
                "UPDATE server_lists SET entries = ?1 WHERE name = ?2",
                params![entries_json(list), list.name],
            )?;
            if updated == 0 {
                return Err(StoreError::NotFound(format!(
                    "no server list '{}'",
                    list.name
                )));
            }
            Ok(None)
        }
        Mutation::DeleteServerList(name) => {
            let users = count(
                transaction,
                "SELECT COUNT(*) FROM groups WHERE server_list = ?1",
                name,
            )?;
            if users > 0 {
                return Err(StoreError::InUse(format!(
                    "server list '{name}' is assigned to {users} group(s); assign another list first"
                )));
            }
            if transaction.execute("DELETE FROM server_lists WHERE name = ?1", params![name])? == 0
            {
                return Err(StoreError::NotFound(format!("no server list '{name}'")));
            }
            Ok(None)
        }
        Mutation::CreateToken(token) => {
            transaction
                .execute(
                    "INSERT INTO tokens (group_id, token_sha256, created_ms, expires_ms, uses_left, \
                     revoked, allow_http, lookup, accept_cut_off) \
                     VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7, ?8)",
                    params![
                        token.group,
                        token.token_sha256,
                        token.created_ms,
                        token.expires_ms,
                        token.uses_left,
                        token.allow_http,
                        ward_proto::enroll::token_lookup(&token.token_sha256),
                        token.accept_cut_off
                    ],
                )
                .map_err(|e| constraint(e, "the token"))?;
            Ok(Some(transaction.last_insert_rowid()))
        }
        Mutation::RevokeToken(id) => {
            if transaction.execute("UPDATE tokens SET revoked = 1 WHERE id = ?1", params![id])? == 0
            {
                return Err(StoreError::NotFound(format!("no token {id}")));
            }
            Ok(None)
        }
        Mutation::MoveAgents { agents, group } => {
            let mut update =
                transaction.prepare_cached("UPDATE agents SET group_id = ?1 WHERE id = ?2")?;
            for agent in agents {
                let rows = update
                    .execute(params![group, agent])
                    .map_err(|e| constraint(e, "the target group"))?;
                if rows == 0 {
                    return Err(StoreError::NotFound(format!("no agent '{agent}'")));
                }
            }
            Ok(None)
        }
        Mutation::Nothing => Ok(None),
        Mutation::Reregister {
            agent,
            group,
            token,
        } => {
            use_token(transaction, token)?;
            let moved = transaction.execute(
                "UPDATE agents SET group_id = ?1 WHERE id = ?2",
                params![group, agent],
            )?;
            if moved == 0 {
                return Err(StoreError::NotFound(format!("no agent '{agent}'")));
            }
            Ok(None)
        }
        Mutation::Enroll {
            agent,
            public_key,
            token,
        } => {
            // The token's use: refused when it changed meanwhile.
            use_token(transaction, token)?;
            insert_agents(transaction, std::slice::from_ref(&**agent))
                .map_err(|e| constraint(e, &format!("agent '{}'", agent.id)))?;
            transaction
                .execute(
                    "UPDATE agents SET public_key = ?1 WHERE id = ?2",
                    params![public_key, agent.id],
                )
                .map_err(|e| constraint(e, "an agent with this key"))?;
            Ok(None)
        }
        Mutation::DeleteAccount(name) => {
            transaction.execute("DELETE FROM sessions WHERE account = ?1", params![name])?;
            if transaction.execute("DELETE FROM accounts WHERE name = ?1", params![name])? == 0 {
                return Err(StoreError::NotFound(format!("no account '{name}'")));
            }
            Ok(None)
        }
        Mutation::SetPassword {
            account,
            password_hash,
        } => {
            if transaction.execute(
                "UPDATE accounts SET password_hash = ?1, credential_version = credential_version + 1 \
                 WHERE name = ?2",
                params![password_hash, account],
            )? == 0
            {
                return Err(StoreError::NotFound(format!("no account '{account}'")));
            }
            transaction.execute("DELETE FROM sessions WHERE account = ?1", params![account])?;
            Ok(None)
        }
        Mutation::SetDisabled { account, disabled } => {
            if transaction.execute(
                "UPDATE accounts SET disabled = ?1, credential_version = credential_version + 1 \
                 WHERE name = ?2",
                params![disabled, account],
            )? == 0
            {
                return Err(StoreError::NotFound(format!("no account '{account}'")));
            }
            if *disabled {
                transaction.execute("DELETE FROM sessions WHERE account = ?1", params![account])?;
            }
            Ok(None)
        }
        Mutation::EndSessions(account) => {
            if transaction.execute(
                "UPDATE accounts SET credential_version = credential_version + 1 WHERE name = ?1",
                params![account],
            )? == 0
            {
                return Err(StoreError::NotFound(format!("no account '{account}'")));
            }
            transaction.execute("DELETE FROM sessions WHERE account = ?1", params![account])?;
            Ok(None)
        }
        Mutation::EndSession(token_sha256) => {
            transaction.execute(
                "DELETE FROM sessions WHERE token_sha256 = ?1",
                params![token_sha256],
            )?;
            Ok(None)
        }
        Mutation::DeleteAgents(agents) => {
            let mut delete = transaction.prepare_cached("DELETE FROM agents WHERE id = ?1")?;
            for agent in agents {
                if delete.execute(params![agent])? == 0 {
                    return Err(StoreError::NotFound(format!("no agent '{agent}'")));
                }
            }
            Ok(None)
        }
        Mutation::CreateAccount(account) => {
            transaction
                .execute(
                    "INSERT INTO accounts (name, password_hash, role) VALUES (?1, ?2, ?3)",
                    params![account.name, account.password_hash, account.role],
                )
                .map_err(|e| constraint(e, &format!("account '{}'", account.name)))?;
            Ok(None)
        }
    }
}

/// Takes one use of an enrollment token, in the same transaction as what it allows, if the
/// token is still as the rule was checked against (`TokenRecord::refusal`, above the store):
/// not revoked, its uses left as read. Otherwise `Stale`: read it again.
fn use_token(transaction: &Transaction<'_>, token: &TokenUse) -> Result<(), StoreError> {
    // The rule checked above the store still holds: not revoked, and uses left (unlimited
    // as read, or still above zero whatever other enrollments took meanwhile).
    let used = transaction.execute(
        "UPDATE tokens SET uses_left = uses_left - 1 WHERE id = ?1 AND revoked = 0 \
         AND ((?2 IS NULL AND uses_left IS NULL) OR (?2 IS NOT NULL AND uses_left > 0))",
        params![token.id, token.uses_left],
    )?;
    if used == 0 {
        return Err(StoreError::Stale(
            "the enrollment token changed while it was used (revoked, or used by another \
             enrollment)"
                .into(),
        ));
    }
    Ok(())
}

/// Applies a change; the caller commits.
pub(crate) fn apply(transaction: &Transaction<'_>, change: &Change) -> Result<Applied, StoreError> {
    // The precondition first, under the write lock: the groups and lists as they were read.
    if let Some(expected) = change.tree_version {
        let current = tree_version(transaction)?;
        if current != expected {
            return Err(StoreError::Stale(format!(
                "the groups or server lists changed since they were read (version {expected}, \
                 now {current}): read them again"
            )));
        }
    }
    let new_id = mutate(transaction, &change.mutation)?;
    if matches!(
        change.mutation,
        Mutation::CreateGroup(_)
            | Mutation::UpdateGroup(_)
            | Mutation::MoveGroup { .. }
            | Mutation::DeleteGroup(_)
            | Mutation::CreateServerList(_)
            | Mutation::UpdateServerList(_)
            | Mutation::DeleteServerList(_)
    ) {
        transaction.execute(
            "UPDATE counters SET value = value + 1 WHERE name = 'tree'",
            [],
        )?;
    }
    let mut applied = Applied {
        new_id: match change.mutation {
            Mutation::CreateGroup(_) | Mutation::CreateToken(_) => new_id,
            _ => None,
        },
        ..Applied::default()
    };
    if !change.bump_groups.is_empty() || !change.bump_agents.is_empty() {
        let serial: i64 = transaction.query_row(
            "UPDATE counters SET value = value + 1 WHERE name = 'serial' RETURNING value",
            [],
            |row| row.get(0),
        )?;
        let mut bumped = 0;
        if !change.bump_groups.is_empty() {
            let sql = format!(
                "UPDATE agents SET serial = ?1 WHERE group_id IN ({})",
                vec!["?"; change.bump_groups.len()].join(",")
            );
            let mut values = vec![serial];
            values.extend(&change.bump_groups);
            bumped += transaction.execute(&sql, params_from_iter(values))? as u64;
        }
        let mut update = transaction
            .prepare_cached("UPDATE agents SET serial = ?1 WHERE id = ?2 AND serial <> ?1")?;
        for agent in &change.bump_agents {
            bumped += update.execute(params![serial, agent])? as u64;
        }
        applied.serial = Some(serial);
        applied.bumped_agents = bumped;
    }
    let audit = &change.audit;
    transaction.execute(
        "INSERT INTO audit (at_ms, actor, action, target, before, after) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            audit.at_ms,
            audit.actor,
            audit.action,
            audit.target,
            audit.before.as_ref().map(Value::to_string),
            audit.after.as_ref().map(Value::to_string)
        ],
    )?;
    Ok(applied)
}

/// Creates the root and the default list if there are no groups.
pub(crate) fn initialise(
    transaction: &Transaction<'_>,
    root: &Group,
    list: &ServerList,
) -> Result<bool, StoreError> {
    let groups: i64 = transaction.query_row("SELECT COUNT(*) FROM groups", [], |row| row.get(0))?;
    if groups > 0 {
        return Ok(false);
    }
    mutate(transaction, &Mutation::CreateServerList(list.clone()))?;
    write_group(transaction, root, true)?;
    Ok(true)
}

/// Inserts the session only if its account is enabled and still at `checked_against` (one
/// statement, so no credential change can slip in between); `false` when it is not.
pub(crate) fn create_session(
    connection: &Connection,
    session: &Session,
    checked_against: i64,
) -> rusqlite::Result<bool> {
    let inserted = connection.execute(
        "INSERT INTO sessions (token_sha256, account, expires_ms) \
         SELECT ?1, name, ?3 FROM accounts \
         WHERE name = ?2 AND credential_version = ?4 AND disabled = 0",
        params![
            session.token_sha256,
            session.account,
            session.expires_ms,
            checked_against
        ],
    )?;
    Ok(inserted == 1)
}

pub(crate) fn agent_public_key(
    connection: &Connection,
    id: &str,
) -> rusqlite::Result<Option<String>> {
    connection
        .query_row(
            "SELECT public_key FROM agents WHERE id = ?1",
            params![id],
            |row| row.get(0),
        )
        .optional()
}

pub(crate) fn record_checkin(
    transaction: &Transaction<'_>,
    checkin: &Checkin,
) -> Result<Option<AgentRecord>, StoreError> {
    let rank = checkin
        .tls_versions
        .iter()
        .map(|v| tls_rank(v))
        .max()
        .unwrap_or(0);
    transaction.prepare_cached(
        "UPDATE agents SET last_checkin_ms = ?2, acked_serial = MIN(?3, serial), hostname = ?4, \
         os_name = ?5, os_version = ?6, agent_version = ?7, tls_versions = ?8, tls_rank = ?9, \
         channel = ?10, server = ?11, tls_version = ?12, peer = ?13, tls_group = ?14, \
         hello = COALESCE(?15, hello), trusted_cas = ?16, \
         agreement_key = COALESCE(?17, agreement_key) WHERE id = ?1",
    )?
    .execute(params![
            checkin.agent,
            checkin.at_ms,
            checkin.acked_serial,
            checkin.hostname,
            checkin.os_name,
            checkin.os_version,
            checkin.agent_version,
            join_versions(&checkin.tls_versions),
            rank,
            checkin.channel,
            checkin.server,
            checkin.tls_version,
            checkin.peer,
            checkin.tls_group,
            checkin.hello,
            checkin.trusted_cas,
            checkin.agreement_key
        ])?;
    if let Some(nonce) = &checkin.nonce {
        keep_nonce(transaction, &checkin.agent, nonce, checkin.at_ms)?;
    }
    if let Some((serial, reason)) = &checkin.reverted {
        // Recorded, and audited, the first time the agent says so; repeated at each check-in
        // until it is handed other settings.
        let new = transaction
            .prepare_cached(
                "UPDATE agents SET reverted_serial = ?2, revert_reason = ?3, reverted_ms = ?4 \
                 WHERE id = ?1 AND reverted_serial IS NOT ?2",
            )?
            .execute(params![checkin.agent, serial, reason, checkin.at_ms])?;
        if new == 1 {
            let after = serde_json::json!({"serial": serial, "reason": reason});
            transaction
                .prepare_cached(
                    "INSERT INTO audit (at_ms, actor, action, target, before, after) \
                     VALUES (?1, ?2, 'agent.revert', ?3, NULL, ?4)",
                )?
                .execute(params![
                    checkin.at_ms,
                    format!("agent:{}", checkin.agent),
                    checkin.agent,
                    after.to_string()
                ])?;
        }
    }
    if let Some((digest, bytes)) = &checkin.reported_hello {
        keep_hello(transaction, digest, bytes, checkin.at_ms)?;
        transaction
            .prepare_cached("UPDATE agents SET reported_hello = ?2 WHERE id = ?1")?
            .execute(params![checkin.agent, digest])?;
    }
    Ok(agent(transaction, &checkin.agent)?)
}

/// Records a check-in that changed nothing but when it came; whether the agent's row still
/// names its server.
pub(crate) fn touch_checkin(
    transaction: &Transaction<'_>,
    touch: &crate::Touch,
) -> Result<bool, StoreError> {
    let applied = transaction
        .prepare_cached(
            "UPDATE agents SET last_checkin_ms = MAX(COALESCE(last_checkin_ms, ?2), ?2) \
             WHERE id = ?1 AND server = ?3",
        )?
        .execute(params![touch.agent, touch.at_ms, touch.server])?;
    if let Some(nonce) = &touch.nonce {
        keep_nonce(transaction, &touch.agent, nonce, touch.at_ms)?;
    }
    Ok(applied == 1)
}

/// Keeps a check-in's nonce for the replay window (once: a held check-in records again).
fn keep_nonce(
    transaction: &Transaction<'_>,
    agent: &str,
    nonce: &str,
    at_ms: i64,
) -> rusqlite::Result<()> {
    transaction
        .prepare_cached(
            "INSERT OR IGNORE INTO seen_nonces (agent, nonce, at_ms) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![agent, nonce, at_ms])?;
    Ok(())
}

/// Keeps a ClientHello's bytes under its fingerprint (counted once more when known), up to
/// the bound of distinct hellos.
pub(crate) fn keep_hello(
    transaction: &Transaction<'_>,
    digest: &str,
    bytes: &[u8],
    at_ms: i64,
) -> rusqlite::Result<()> {
    let updated = transaction
        .prepare_cached(
            "UPDATE client_hellos SET last_ms = MAX(last_ms, ?2), count = count + 1 \
             WHERE digest = ?1",
        )?
        .execute(params![digest, at_ms])?;
    if updated == 0 {
        transaction
            .prepare_cached(
                "INSERT INTO client_hellos (digest, bytes, first_ms, last_ms, count) \
                 SELECT ?1, ?2, ?3, ?3, 1 WHERE (SELECT COUNT(*) FROM client_hellos) < ?4",
            )?
            .execute(params![digest, bytes, at_ms, crate::MAX_DISTINCT_HELLOS])?;
    }
    Ok(())
}

/// Forgets nonces seen before `before_ms` (past the replay window).
pub(crate) fn prune_nonces(
    transaction: &Transaction<'_>,
    before_ms: i64,
) -> Result<(), StoreError> {
    transaction
        .prepare_cached("DELETE FROM seen_nonces WHERE at_ms < ?1")?
        .execute(params![before_ms])?;
    Ok(())
}

/// The nonces of check-ins accepted since `since_ms`: (agent, nonce, at_ms).
pub(crate) fn recent_nonces(
    connection: &rusqlite::Connection,
    since_ms: i64,
) -> rusqlite::Result<Vec<(String, String, i64)>> {
    let mut statement = connection
        .prepare_cached("SELECT agent, nonce, at_ms FROM seen_nonces WHERE at_ms >= ?1")?;
    let rows = statement.query_map(params![since_ms], |row| {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
    })?;
    rows.collect()
}
