//! The fleet tables in PostgreSQL: reads, bulk agent inserts, and admin changes applied with
//! their serial bumps and audit entry in one transaction. Statement for statement the SQLite
//! engine's (`sqlite/fleet.rs`), with the same refusals; where SQLite relies on being the only
//! writer, the statement here is safe beside others (an upsert, a row count, `RETURNING`),
//! and the callers in `postgres.rs` hold the write lock for the changes that check something
//! first.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{GenericClient, Row};
use serde_json::{json, Value};
use ward_fleet::{Group, Mode, OwnSettings, ServerList};

use super::{opt_text, text, Db, Fail};
use crate::agent_query::{self, Dialect, Param};
use crate::codec::{
    entries_json, from_millis, intern, join_versions, list_from_json, millis, split_versions,
    tls_rank, version_bits,
};
use crate::fleet::*;
use crate::StoreError;

/// The highest version of a list, as stored beside it for the `tls_max` filter.
fn highest_rank(versions: &[String]) -> i64 {
    versions.iter().map(|v| tls_rank(v)).max().unwrap_or(0)
}

/// A stored value that does not decode: corruption, reported rather than guessed around.
fn corrupt(what: &str) -> Fail {
    Fail::Store(StoreError::Database(format!(
        "stored {what} does not decode"
    )))
}

/// Maps PostgreSQL's constraint failures to what the caller did wrong, in the SQLite
/// engine's words: a unique key is `Conflict`, a missing referenced row `NotFound`, any other
/// constraint `Invalid`.
fn constraint(error: postgres::Error, what: &str) -> Fail {
    let Some(code) = error.code() else {
        return Fail::Pg(error);
    };
    if *code == SqlState::UNIQUE_VIOLATION {
        StoreError::Conflict(format!("{what} already exists")).into()
    } else if *code == SqlState::FOREIGN_KEY_VIOLATION {
        StoreError::NotFound(format!("{what} refers to something that does not exist")).into()
    } else if code.code().starts_with("23") {
        let message = error
            .as_db_error()
            .map(|db| db.message().to_string())
            .unwrap_or_default();
        StoreError::Invalid(format!("{what} is not valid: {message}")).into()
    } else {
        Fail::Pg(error)
    }
}

/// A row deleted while something still refers to it, which the counts before the delete
/// did not see (another server added it meanwhile): `InUse`, as the counts would have said.
fn still_used(error: postgres::Error, message: &str) -> Fail {
    if error.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
        StoreError::InUse(message.to_string()).into()
    } else {
        Fail::Pg(error)
    }
}

fn group_from_row(row: &Row) -> Result<Group, Fail> {
    let mode: Option<String> = row.try_get(6)?;
    let policy: Option<String> = row.try_get(7)?;
    let policy = match policy {
        Some(text) => Some(serde_json::from_str(&text).map_err(|_| corrupt("policy"))?),
        None => None,
    };
    let mode = match mode {
        Some(text) => Some(Mode::parse(&text).ok_or_else(|| corrupt("mode"))?),
        None => None,
    };
    Ok(Group {
        id: row.try_get(0)?,
        parent: row.try_get(1)?,
        name: row.try_get(2)?,
        own: OwnSettings {
            server_list: row.try_get(3)?,
            interval: from_millis(row.try_get(4)?),
            randomize: from_millis(row.try_get(5)?),
            mode,
            policy,
        },
    })
}

pub(super) fn groups(db: &mut Db<'_, impl GenericClient>) -> Result<Vec<Group>, Fail> {
    let rows = db.query(
        "SELECT id, parent, name, server_list, interval_ms, randomize_ms, mode, policy
         FROM groups ORDER BY id",
        &[],
    )?;
    rows.iter().map(group_from_row).collect()
}

pub(super) fn server_lists(db: &mut Db<'_, impl GenericClient>) -> Result<Vec<ServerList>, Fail> {
    let rows = db.query("SELECT name, entries FROM server_lists ORDER BY name", &[])?;
    rows.iter()
        .map(|row| {
            let entries: String = row.try_get(1)?;
            list_from_json(row.try_get(0)?, &entries).map_err(corrupt)
        })
        .collect()
}

/// The columns [`agent_from_row`] reads, in its order (a macro, to build statements that are
/// `'static` and so prepared once per connection).
macro_rules! agent_columns {
    () => {
        "id, hostname, os_name, os_version, agent_version, tls_versions, group_id, \
         last_checkin_ms, channel, server, tls_version, serial, acked_serial, enrolled_ms, \
         simulated, tls_group, hello, reverted_serial, revert_reason, reverted_ms, reported_hello, \
         peer"
    };
}

fn agent_from_row(row: &Row) -> Result<AgentRecord, Fail> {
    let versions: String = row.try_get(5)?;
    let reverted = match (row.try_get(17)?, row.try_get(18)?, row.try_get(19)?) {
        (Some(serial), Some(reason), Some(at_ms)) => Some(crate::Revert {
            serial,
            reason,
            at_ms,
        }),
        _ => None,
    };
    Ok(AgentRecord {
        id: row.try_get(0)?,
        hostname: row.try_get(1)?,
        os_name: row.try_get(2)?,
        os_version: row.try_get(3)?,
        agent_version: row.try_get(4)?,
        tls_versions: split_versions(&versions),
        group: row.try_get(6)?,
        last_checkin_ms: row.try_get(7)?,
        channel: row.try_get(8)?,
        server: row.try_get(9)?,
        tls_version: row.try_get(10)?,
        serial: row.try_get(11)?,
        acked_serial: row.try_get(12)?,
        enrolled_ms: row.try_get(13)?,
        simulated: row.try_get(14)?,
        tls_group: row.try_get(15)?,
        hello: row.try_get(16)?,
        reverted,
        reported_hello: row.try_get(20)?,
        peer: row.try_get(21)?,
    })
}

/// PostgreSQL's numbered placeholders; a list is bound as an array.
struct Postgres;

impl Dialect for Postgres {
    fn placeholder(&self, n: usize) -> String {
        format!("${n}")
    }
    fn in_list(&self, column: &str, placeholder: &str) -> String {
        format!("{column} = ANY({placeholder})")
    }
}

fn bound(params: Vec<Param>) -> Vec<Box<dyn ToSql + Sync>> {
    params
        .into_iter()
        .map(|param| -> Box<dyn ToSql + Sync> {
            match param {
                Param::Int(n) => Box::new(n),
                Param::Text(text) => Box::new(text),
                Param::Ints(list) => Box::new(list),
                Param::Texts(list) => Box::new(list),
            }
        })
        .collect()
}

pub(super) fn agents(
    db: &mut Db<'_, impl GenericClient>,
    filter: &AgentFilter,
) -> Result<Vec<AgentRecord>, Fail> {
    let Some(sql) = agent_query::select(filter, agent_columns!(), &Postgres) else {
        return Ok(Vec::new());
    };
    let values = bound(sql.params);
    let mut agents = Vec::new();
    db.for_each_row(&sql.text, values.iter().map(|v| &**v), |row| {
        agents.push(agent_from_row(row)?);
        Ok(())
    })?;
    Ok(agents)
}

pub(super) fn count_agents(
    db: &mut Db<'_, impl GenericClient>,
    filter: &AgentFilter,
) -> Result<u64, Fail> {
    let Some(sql) = agent_query::count(filter, &Postgres) else {
        return Ok(0);
    };
    let values = bound(sql.params);
    let mut count = 0;
    db.for_each_row(&sql.text, values.iter().map(|v| &**v), |row| {
        count = row.try_get::<_, i64>(0)?.max(0) as u64;
        Ok(())
    })?;
    Ok(count)
}

pub(super) fn agent_tally(
    db: &mut Db<'_, impl GenericClient>,
    presence: &Presence,
) -> Result<Vec<AgentTally>, Fail> {
    let sql = agent_query::tally(presence, &Postgres);
    let values = bound(sql.params);
    let mut tallies = Vec::new();
    db.for_each_row(&sql.text, values.iter().map(|v| &**v), |row| {
        let count =
            |index: usize| -> Result<u64, Fail> { Ok(row.try_get::<_, i64>(index)?.max(0) as u64) };
        tallies.push(AgentTally {
            channel: row.try_get(0)?,
            tls_version: row.try_get(1)?,
            agents: count(2)?,
            online: count(3)?,
            pending: count(4)?,
            post_quantum: count(5)?,
            reverted: count(6)?,
        });
        Ok(())
    })?;
    Ok(tallies)
}

/// The version of the groups and server lists.
pub(super) fn tree_version(db: &mut Db<'_, impl GenericClient>) -> Result<i64, Fail> {
    Ok(db
        .query_one("SELECT value FROM counters WHERE name = 'tree'", &[])?
        .try_get(0)?)
}

pub(super) fn agents_tls(db: &mut Db<'_, impl GenericClient>) -> Result<Vec<AgentTls>, Fail> {
    // A sequential scan (no ORDER BY), streamed: text columns are read in place, not copied.
    let mut agents = Vec::new();
    // A real fleet has a few dozen stacks: one shared string each, not one per agent.
    let mut stacks: HashMap<String, Arc<str>> = HashMap::new();
    db.for_each_row(
        "SELECT id, group_id, tls_versions, tls_version, channel, peer, last_checkin_ms, \
         enrolled_ms, serial, acked_serial, simulated, \
         COALESCE(tls_group LIKE '%MLKEM%', FALSE), hello, trusted_cas, agreement_key, \
         reported_hello, CASE WHEN reverted_serial = serial THEN reverted_serial END FROM agents",
        std::iter::empty::<&(dyn ToSql + Sync)>(),
        |row| {
            let text = |index: usize| row.try_get::<_, Option<&str>>(index);
            agents.push(AgentTls {
                id: row.try_get(0)?,
                group: row.try_get(1)?,
                versions: version_bits(text(2)?.unwrap_or("")),
                negotiated: text(3)?.map(tls_rank).filter(|r| *r > 0).map(|r| r as u8),
                https: text(4)?.map(|channel| channel == "https"),
                peer: text(5)?.and_then(|peer| peer.parse().ok()),
                last_checkin_ms: row.try_get(6)?,
                enrolled_ms: row.try_get(7)?,
                serial: row.try_get(8)?,
                acked_serial: row.try_get(9)?,
                simulated: row.try_get(10)?,
                post_quantum: row.try_get(11)?,
                hello: text(12)?.map(|digest| intern(&mut stacks, digest)),
                trusted_cas: text(13)?.map(|prints| intern(&mut stacks, prints)),
                agreement_key: text(14)?.map(|key| intern(&mut stacks, key)),
                reported_hello: text(15)?.map(|digest| intern(&mut stacks, digest)),
                refused_serial: row.try_get(16)?,
            });
            Ok(())
        },
    )?;
    Ok(agents)
}

pub(super) fn hostnames(
    db: &mut Db<'_, impl GenericClient>,
    ids: &[String],
) -> Result<HashMap<String, String>, Fail> {
    let mut names = HashMap::new();
    // Bounded arrays: one statement per 10,000 ids, not one huge message.
    for chunk in ids.chunks(10_000) {
        let rows = db.query(
            "SELECT id, hostname FROM agents WHERE id = ANY($1)",
            &[&chunk],
        )?;
        for row in &rows {
            names.insert(row.try_get(0)?, row.try_get(1)?);
        }
    }
    Ok(names)
}

pub(super) fn agent(
    db: &mut Db<'_, impl GenericClient>,
    id: &str,
) -> Result<Option<AgentRecord>, Fail> {
    db.query_opt(
        concat!("SELECT ", agent_columns!(), " FROM agents WHERE id = $1"),
        &[&id],
    )?
    .as_ref()
    .map(agent_from_row)
    .transpose()
}

/// Inserts agents, a thousand per statement (arrays unnested into rows): a simulated fleet of
/// a million is a thousand round trips, not a million.
pub(super) fn insert_agents(
    db: &mut Db<'_, impl GenericClient>,
    agents: &[AgentRecord],
) -> Result<(), Fail> {
    for chunk in agents.chunks(1000) {
        // What the agents said of themselves is cleaned of NUL ([`text`]); ids are the
        // server's own.
        let texts = |f: &dyn Fn(&AgentRecord) -> &str| -> Vec<Cow<'_, str>> {
            chunk.iter().map(|a| text(f(a))).collect()
        };
        let column = |f: &dyn Fn(&AgentRecord) -> &Option<String>| -> Vec<Option<Cow<'_, str>>> {
            chunk.iter().map(|a| opt_text(f(a))).collect()
        };
        let ids: Vec<&str> = chunk.iter().map(|a| a.id.as_str()).collect();
        let hostnames = texts(&|a| &a.hostname);
        let os_names = texts(&|a| &a.os_name);
        let os_versions = texts(&|a| &a.os_version);
        let agent_versions = texts(&|a| &a.agent_version);
        let versions: Vec<String> = chunk
            .iter()
            .map(|a| text(&join_versions(&a.tls_versions)).into_owned())
            .collect();
        let ranks: Vec<i64> = chunk
            .iter()
            .map(|a| highest_rank(&a.tls_versions))
            .collect();
        let groups: Vec<i64> = chunk.iter().map(|a| a.group).collect();
        let checkins: Vec<Option<i64>> = chunk.iter().map(|a| a.last_checkin_ms).collect();
        let channels = column(&|a| &a.channel);
        let servers = column(&|a| &a.server);
        let tls_versions = column(&|a| &a.tls_version);
        let serials: Vec<i64> = chunk.iter().map(|a| a.serial).collect();
        let acked: Vec<i64> = chunk.iter().map(|a| a.acked_serial).collect();
        let enrolled: Vec<i64> = chunk.iter().map(|a| a.enrolled_ms).collect();
        let simulated: Vec<bool> = chunk.iter().map(|a| a.simulated).collect();
        let reported = column(&|a| &a.reported_hello);
        db.execute(
            "INSERT INTO agents (id, hostname, os_name, os_version, agent_version, tls_versions, \
             tls_rank, group_id, last_checkin_ms, channel, server, tls_version, serial, \
             acked_serial, enrolled_ms, simulated, reported_hello) \
             SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], \
             $6::TEXT[], $7::BIGINT[], $8::BIGINT[], $9::BIGINT[], $10::TEXT[], $11::TEXT[], \
             $12::TEXT[], $13::BIGINT[], $14::BIGINT[], $15::BIGINT[], $16::BOOLEAN[], \
             $17::TEXT[])",
            &[
                &ids,
                &hostnames,
                &os_names,
                &os_versions,
                &agent_versions,
                &versions,
                &ranks,
                &groups,
                &checkins,
                &channels,
                &servers,
                &tls_versions,
                &serials,
                &acked,
                &enrolled,
                &simulated,
                &reported,
            ],
        )?;
    }
    Ok(())
}

/// The columns [`token_row`] reads, in its order.
macro_rules! token_columns {
    () => {
        "id, group_id, token_sha256, created_ms, expires_ms, uses_left, revoked, allow_http, \
         accept_cut_off"
    };
}

fn token_row(row: &Row) -> Result<TokenRecord, Fail> {
    Ok(TokenRecord {
        id: row.try_get(0)?,
        group: row.try_get(1)?,
        token_sha256: row.try_get(2)?,
        created_ms: row.try_get(3)?,
        expires_ms: row.try_get(4)?,
        uses_left: row.try_get(5)?,
        revoked: row.try_get(6)?,
        allow_http: row.try_get(7)?,
        accept_cut_off: row.try_get(8)?,
    })
}

pub(super) fn tokens(db: &mut Db<'_, impl GenericClient>) -> Result<Vec<TokenRecord>, Fail> {
    let rows = db.query(
        concat!("SELECT ", token_columns!(), " FROM tokens ORDER BY id"),
        &[],
    )?;
    rows.iter().map(token_row).collect()
}

/// The token an enrolling agent names by its lookup, through the index.
pub(super) fn token_by_lookup(
    db: &mut Db<'_, impl GenericClient>,
    lookup: &str,
) -> Result<Option<TokenRecord>, Fail> {
    db.query_opt(
        concat!(
            "SELECT ",
            token_columns!(),
            " FROM tokens WHERE lookup = $1"
        ),
        &[&lookup],
    )?
    .as_ref()
    .map(token_row)
    .transpose()
}

pub(super) fn audit(
    db: &mut Db<'_, impl GenericClient>,
    since_ms: i64,
    limit: usize,
) -> Result<Vec<AuditEntry>, Fail> {
    let limit = limit.min(i64::MAX as usize) as i64;
    let rows = db.query(
        "SELECT id, at_ms, actor, action, target, before, after FROM audit WHERE at_ms >= $1
         ORDER BY id LIMIT $2",
        &[&since_ms, &limit],
    )?;
    let parse = |text: Option<String>| text.and_then(|t| serde_json::from_str(&t).ok());
    rows.iter()
        .map(|row| {
            Ok(AuditEntry {
                id: row.try_get(0)?,
                at_ms: row.try_get(1)?,
                actor: row.try_get(2)?,
                action: row.try_get(3)?,
                target: row.try_get(4)?,
                before: parse(row.try_get(5)?),
                after: parse(row.try_get(6)?),
            })
        })
        .collect()
}

fn account_row(row: &Row) -> Result<Account, Fail> {
    Ok(Account {
        name: row.try_get(0)?,
        password_hash: row.try_get(1)?,
        role: row.try_get(2)?,
        disabled: row.try_get(3)?,
        credential_version: row.try_get(4)?,
    })
}

pub(super) fn accounts(db: &mut Db<'_, impl GenericClient>) -> Result<Vec<Account>, Fail> {
    let rows = db.query(
        "SELECT name, password_hash, role, disabled, credential_version FROM accounts
         ORDER BY name",
        &[],
    )?;
    rows.iter().map(account_row).collect()
}

pub(super) fn account(
    db: &mut Db<'_, impl GenericClient>,
    name: &str,
) -> Result<Option<Account>, Fail> {
    db.query_opt(
        "SELECT name, password_hash, role, disabled, credential_version FROM accounts
         WHERE name = $1",
        &[&name],
    )?
    .as_ref()
    .map(account_row)
    .transpose()
}

pub(super) fn session(
    db: &mut Db<'_, impl GenericClient>,
    token_sha256: &str,
) -> Result<Option<Session>, Fail> {
    let row = db.query_opt(
        "SELECT token_sha256, account, expires_ms FROM sessions WHERE token_sha256 = $1",
        &[&token_sha256],
    )?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(Session {
        token_sha256: row.try_get(0)?,
        account: row.try_get(1)?,
        expires_ms: row.try_get(2)?,
    }))
}

/// Inserts a group (its id assigned by the database) or updates one; returns its id.
fn write_group(
    db: &mut Db<'_, impl GenericClient>,
    group: &Group,
    insert: bool,
) -> Result<i64, postgres::Error> {
    let own = &group.own;
    let interval = millis(own.interval);
    let randomize = millis(own.randomize);
    let mode = own.mode.map(Mode::name);
    let policy = own.policy.as_ref().map(Value::to_string);
    if insert {
        db.query_one(
            "INSERT INTO groups (parent, name, server_list, interval_ms, randomize_ms, mode, \
             policy) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            &[
                &group.parent,
                &group.name,
                &own.server_list,
                &interval,
                &randomize,
                &mode,
                &policy,
            ],
        )?
        .try_get(0)
    } else {
        db.execute(
            "UPDATE groups SET parent = $1, name = $2, server_list = $3, interval_ms = $4, \
             randomize_ms = $5, mode = $6, policy = $7 WHERE id = $8",
            &[
                &group.parent,
                &group.name,
                &own.server_list,
                &interval,
                &randomize,
                &mode,
                &policy,
                &group.id,
            ],
        )?;
        Ok(group.id)
    }
}

fn count(
    db: &mut Db<'_, impl GenericClient>,
    sql: &'static str,
    value: &(dyn ToSql + Sync),
) -> Result<i64, Fail> {
    Ok(db.query_one(sql, &[value])?.try_get(0)?)
}

fn mutate(db: &mut Db<'_, impl GenericClient>, mutation: &Mutation) -> Result<Option<i64>, Fail> {
    match mutation {
        Mutation::CreateGroup(group) => write_group(db, group, true)
            .map(Some)
            .map_err(|e| constraint(e, &format!("group '{}'", group.name))),
        Mutation::UpdateGroup(group) => {
            let exists = count(db, "SELECT COUNT(*) FROM groups WHERE id = $1", &group.id)?;
            if exists == 0 {
                return Err(StoreError::NotFound(format!("no group {}", group.id)).into());
            }
            let changed = write_group(db, group, false)
                .map_err(|e| constraint(e, &format!("group '{}'", group.name)))?;
            Ok(Some(changed))
        }
        Mutation::MoveGroup { id, parent } => {
            let rows = db
                .execute("UPDATE groups SET parent = $1 WHERE id = $2", &[parent, id])
                .map_err(|e| constraint(e, "a group of that name under the new parent"))?;
            if rows == 0 {
                return Err(StoreError::NotFound(format!("no group {id}")).into());
            }
            Ok(None)
        }
        Mutation::DeleteGroup(id) => {
            if count(db, "SELECT COUNT(*) FROM groups WHERE parent = $1", id)? > 0 {
                return Err(StoreError::InUse(
                    "the group has subgroups; delete or move them first".into(),
                )
                .into());
            }
            if count(db, "SELECT COUNT(*) FROM agents WHERE group_id = $1", id)? > 0 {
                return Err(
                    StoreError::InUse("the group has agents; move them first".into()).into(),
                );
            }
            db.execute("DELETE FROM tokens WHERE group_id = $1", &[id])?;
            // Agents are inserted without the write lock: one may have come since the count.
            let deleted = db
                .execute("DELETE FROM groups WHERE id = $1", &[id])
                .map_err(|e| still_used(e, "the group has agents; move them first"))?;
            if deleted == 0 {
                return Err(StoreError::NotFound(format!("no group {id}")).into());
            }
            Ok(None)
        }
        Mutation::CreateServerList(list) => {
            db.execute(
                "INSERT INTO server_lists (name, entries) VALUES ($1, $2)",
                &[&list.name, &entries_json(list)],
            )
            .map_err(|e| constraint(e, &format!("server list '{}'", list.name)))?;
            Ok(None)
        }
        Mutation::UpdateServerList(list) => {
            let updated = db.execute(
                "UPDATE server_lists SET entries = $1 WHERE name = $2",
                &[&entries_json(list), &list.name],
            )?;
            if updated == 0 {
                return Err(StoreError::NotFound(format!("no server list '{}'", list.name)).into());
            }
            Ok(None)
        }
        Mutation::DeleteServerList(name) => {
            let users = count(
                db,
                "SELECT COUNT(*) FROM groups WHERE server_list = $1",
                name,
            )?;
            if users > 0 {
                return Err(StoreError::InUse(format!(
                    "server list '{name}' is assigned to {users} group(s); assign another list first"
                ))
                .into());
            }
            let deleted = db
                .execute("DELETE FROM server_lists WHERE name = $1", &[name])
                .map_err(|e| {
                    still_used(
                        e,
                        &format!(
                            "server list '{name}' is assigned to a group; assign another list \
                             first"
                        ),
                    )
                })?;
            if deleted == 0 {
                return Err(StoreError::NotFound(format!("no server list '{name}'")).into());
            }
            Ok(None)
        }
        Mutation::CreateToken(token) => {
            let lookup = ward_proto::enroll::token_lookup(&token.token_sha256);
            let id: i64 = db
                .query_one(
                    "INSERT INTO tokens (group_id, token_sha256, created_ms, expires_ms, \
                     uses_left, revoked, allow_http, lookup, accept_cut_off) \
                     VALUES ($1, $2, $3, $4, $5, FALSE, $6, $7, $8) RETURNING id",
                    &[
                        &token.group,
                        &token.token_sha256,
                        &token.created_ms,
                        &token.expires_ms,
                        &token.uses_left,
                        &token.allow_http,
                        &lookup,
                        &token.accept_cut_off,
                    ],
                )
                .map_err(|e| constraint(e, "the token"))?
                .try_get(0)?;
            Ok(Some(id))
        }
        Mutation::RevokeToken(id) => {
            if db.execute("UPDATE tokens SET revoked = TRUE WHERE id = $1", &[id])? == 0 {
                return Err(StoreError::NotFound(format!("no token {id}")).into());
            }
            Ok(None)
        }
        Mutation::MoveAgents { agents, group } => {
            // One by one, as the SQLite engine: the first unknown agent is the one named.
            for agent in agents {
                let rows = db
                    .execute(
                        "UPDATE agents SET group_id = $1 WHERE id = $2",
                        &[group, agent],
                    )
                    .map_err(|e| constraint(e, "the target group"))?;
                if rows == 0 {
                    return Err(StoreError::NotFound(format!("no agent '{agent}'")).into());
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
            use_token(db, token)?;
            let moved = db.execute(
                "UPDATE agents SET group_id = $1 WHERE id = $2",
                &[group, agent],
            )?;
            if moved == 0 {
                return Err(StoreError::NotFound(format!("no agent '{agent}'")).into());
            }
            Ok(None)
        }
        Mutation::Enroll {
            agent,
            public_key,
            token,
        } => {
            // The token's use: refused when it changed meanwhile.
            use_token(db, token)?;
            insert_agents(db, std::slice::from_ref(&**agent)).map_err(|e| match e {
                Fail::Pg(e) => constraint(e, &format!("agent '{}'", agent.id)),
                other => other,
            })?;
            db.execute(
                "UPDATE agents SET public_key = $1 WHERE id = $2",
                &[public_key, &agent.id],
            )
            .map_err(|e| constraint(e, "an agent with this key"))?;
            Ok(None)
        }
        Mutation::DeleteAccount(name) => {
            db.execute("DELETE FROM sessions WHERE account = $1", &[name])?;
            if db.execute("DELETE FROM accounts WHERE name = $1", &[name])? == 0 {
                return Err(StoreError::NotFound(format!("no account '{name}'")).into());
            }
            Ok(None)
        }
        Mutation::SetPassword {
            account,
            password_hash,
        } => {
            if db.execute(
                "UPDATE accounts SET password_hash = $1, \
                 credential_version = credential_version + 1 WHERE name = $2",
                &[password_hash, account],
            )? == 0
            {
                return Err(StoreError::NotFound(format!("no account '{account}'")).into());
            }
            db.execute("DELETE FROM sessions WHERE account = $1", &[account])?;
            Ok(None)
        }
        Mutation::SetDisabled { account, disabled } => {
            if db.execute(
                "UPDATE accounts SET disabled = $1, credential_version = credential_version + 1 \
                 WHERE name = $2",
                &[disabled, account],
            )? == 0
            {
                return Err(StoreError::NotFound(format!("no account '{account}'")).into());
            }
            if *disabled {
                db.execute("DELETE FROM sessions WHERE account = $1", &[account])?;
            }
            Ok(None)
        }
        Mutation::EndSessions(account) => {
            if db.execute(
                "UPDATE accounts SET credential_version = credential_version + 1 WHERE name = $1",
                &[account],
            )? == 0
            {
                return Err(StoreError::NotFound(format!("no account '{account}'")).into());
            }
            db.execute("DELETE FROM sessions WHERE account = $1", &[account])?;
            Ok(None)
        }
        Mutation::EndSession(token_sha256) => {
            db.execute(
                "DELETE FROM sessions WHERE token_sha256 = $1",
                &[token_sha256],
            )?;
            Ok(None)
        }
        Mutation::DeleteAgents(agents) => {
            // One by one, as the SQLite engine: the first unknown agent is the one named.
            for agent in agents {
                if db.execute("DELETE FROM agents WHERE id = $1", &[agent])? == 0 {
                    return Err(StoreError::NotFound(format!("no agent '{agent}'")).into());
                }
            }
            Ok(None)
        }
        Mutation::CreateAccount(account) => {
            db.execute(
                "INSERT INTO accounts (name, password_hash, role) VALUES ($1, $2, $3)",
                &[&account.name, &account.password_hash, &account.role],
            )
            .map_err(|e| constraint(e, &format!("account '{}'", account.name)))?;
            Ok(None)
        }
    }
}

/// Takes one use of an enrollment token, in the same transaction as what it allows, if the
/// rule checked above the store (`TokenRecord::refusal`) still holds: not revoked, and uses
/// left (unlimited as read, or still above zero: other enrollments taking uses meanwhile do
/// not make this one stale). Otherwise `Stale`: read it again.
fn use_token(db: &mut Db<'_, impl GenericClient>, token: &TokenUse) -> Result<(), Fail> {
    let used = db.execute(
        "UPDATE tokens SET uses_left = uses_left - 1 WHERE id = $1 AND NOT revoked \
         AND (($2::BIGINT IS NULL AND uses_left IS NULL) \
              OR ($2::BIGINT IS NOT NULL AND uses_left > 0))",
        &[&token.id, &token.uses_left],
    )?;
    if used == 0 {
        return Err(StoreError::Stale(
            "the enrollment token changed while it was used (revoked, or used by another \
             enrollment)"
                .into(),
        )
        .into());
    }
    Ok(())
}

/// Applies a change; the caller holds the write lock and commits.
pub(super) fn apply(db: &mut Db<'_, impl GenericClient>, change: &Change) -> Result<Applied, Fail> {
    // The precondition first, under the write lock: the groups and lists as they were read.
    if let Some(expected) = change.tree_version {
        let current = tree_version(db)?;
        if current != expected {
            return Err(StoreError::Stale(format!(
                "the groups or server lists changed since they were read (version {expected}, \
                 now {current}): read them again"
            ))
            .into());
        }
    }
    let new_id = mutate(db, &change.mutation)?;
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
        db.execute(
            "UPDATE counters SET value = value + 1 WHERE name = 'tree'",
            &[],
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
        let serial: i64 = db
            .query_one(
                "UPDATE counters SET value = value + 1 WHERE name = 'serial' RETURNING value",
                &[],
            )?
            .try_get(0)?;
        let mut bumped = 0;
        // The rows are locked in id order, the order a batch of check-ins takes them in:
        // a bump beside check-ins waits for them or they for it, never both (a deadlock).
        if !change.bump_groups.is_empty() {
            bumped += db.execute(
                "UPDATE agents SET serial = $1 WHERE id IN \
                 (SELECT id FROM agents WHERE group_id = ANY($2) ORDER BY id FOR UPDATE)",
                &[&serial, &change.bump_groups],
            )?;
        }
        if !change.bump_agents.is_empty() {
            // Counted once each, and not again when a group's bump got it already (as the
            // SQLite engine's statement per agent counts them).
            bumped += db.execute(
                "UPDATE agents SET serial = $1 WHERE id IN \
                 (SELECT id FROM agents WHERE id = ANY($2) ORDER BY id FOR UPDATE) \
                 AND serial <> $1",
                &[&serial, &change.bump_agents],
            )?;
        }
        applied.serial = Some(serial);
        applied.bumped_agents = bumped;
    }
    let audit = &change.audit;
    db.execute(
        "INSERT INTO audit (at_ms, actor, action, target, before, after) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &audit.at_ms,
            &audit.actor,
            &audit.action,
            &audit.target,
            &audit.before.as_ref().map(Value::to_string),
            &audit.after.as_ref().map(Value::to_string),
        ],
    )?;
    Ok(applied)
}

/// Creates the root and the default list if there are no groups; the caller holds the write
/// lock, so two servers starting on one new database make one root.
pub(super) fn initialise(
    db: &mut Db<'_, impl GenericClient>,
    root: &Group,
    list: &ServerList,
) -> Result<bool, Fail> {
    let groups: i64 = db
        .query_one("SELECT COUNT(*) FROM groups", &[])?
        .try_get(0)?;
    if groups > 0 {
        return Ok(false);
    }
    mutate(db, &Mutation::CreateServerList(list.clone()))?;
    write_group(db, root, true)?;
    Ok(true)
}

/// Inserts the session only if its account is enabled and still at `checked_against` (one
/// statement, under the write lock, so no credential change can slip in between); `false`
/// when it is not.
pub(super) fn create_session(
    db: &mut Db<'_, impl GenericClient>,
    session: &Session,
    checked_against: i64,
) -> Result<bool, Fail> {
    let inserted = db.execute(
        "INSERT INTO sessions (token_sha256, account, expires_ms) \
         SELECT $1::TEXT, name, $3::BIGINT FROM accounts \
         WHERE name = $2 AND credential_version = $4 AND NOT disabled",
        &[
            &session.token_sha256,
            &session.account,
            &session.expires_ms,
            &checked_against,
        ],
    )?;
    Ok(inserted == 1)
}

pub(super) fn agent_public_key(
    db: &mut Db<'_, impl GenericClient>,
    id: &str,
) -> Result<Option<String>, Fail> {
    let row = db.query_opt("SELECT public_key FROM agents WHERE id = $1", &[&id])?;
    Ok(row.map(|row| row.try_get(0)).transpose()?)
}

/// Records one check-in; the hello its stack reported is counted with the batch's
/// (`hellos`).
pub(super) fn record_checkin<'a>(
    db: &mut Db<'_, impl GenericClient>,
    checkin: &'a Checkin,
    hellos: &mut Hellos<'a>,
) -> Result<Option<AgentRecord>, Fail> {
    // The agent as updated comes back with the update (one round trip, not two); a revert or
    // a reported hello changes it again below, and it is read again then.
    let updated = db.query_opt(
        concat!(
            "UPDATE agents SET last_checkin_ms = $2, acked_serial = LEAST($3::BIGINT, serial), \
             hostname = $4, os_name = $5, os_version = $6, agent_version = $7, \
             tls_versions = $8, tls_rank = $9, channel = $10, server = $11, tls_version = $12, \
             peer = $13, tls_group = $14, hello = COALESCE($15, hello), trusted_cas = $16, \
             agreement_key = COALESCE($17, agreement_key) WHERE id = $1 RETURNING ",
            agent_columns!()
        ),
        // What the agent said is cleaned of NUL ([`text`]); its id is the server's own.
        &[
            &checkin.agent,
            &checkin.at_ms,
            &checkin.acked_serial,
            &text(&checkin.hostname),
            &text(&checkin.os_name),
            &text(&checkin.os_version),
            &text(&checkin.agent_version),
            &text(&join_versions(&checkin.tls_versions)),
            &highest_rank(&checkin.tls_versions),
            &text(&checkin.channel),
            &text(&checkin.server),
            &opt_text(&checkin.tls_version),
            &opt_text(&checkin.peer),
            &opt_text(&checkin.tls_group),
            &opt_text(&checkin.hello),
            &opt_text(&checkin.trusted_cas),
            &opt_text(&checkin.agreement_key),
        ],
    )?;
    if let Some(nonce) = &checkin.nonce {
        keep_nonce(db, &checkin.agent, nonce, checkin.at_ms)?;
    }
    if let Some((serial, reason)) = &checkin.reverted {
        // Recorded, and audited, the first time the agent says so; repeated at each check-in
        // until it is handed other settings.
        let new = db.execute(
            "UPDATE agents SET reverted_serial = $2, revert_reason = $3, reverted_ms = $4 \
             WHERE id = $1 AND reverted_serial IS DISTINCT FROM $2::BIGINT",
            &[&checkin.agent, serial, &text(reason), &checkin.at_ms],
        )?;
        if new == 1 {
            let after = json!({"serial": serial, "reason": reason});
            db.execute(
                "INSERT INTO audit (at_ms, actor, action, target, before, after) \
                 VALUES ($1, $2, 'agent.revert', $3, NULL, $4)",
                &[
                    &checkin.at_ms,
                    &format!("agent:{}", checkin.agent),
                    &checkin.agent,
                    &after.to_string(),
                ],
            )?;
        }
    }
    if let Some((digest, bytes)) = &checkin.reported_hello {
        let digest = text(digest);
        db.execute(
            "UPDATE agents SET reported_hello = $2 WHERE id = $1",
            &[&checkin.agent, &digest],
        )?;
        hellos.saw(digest, bytes, checkin.at_ms);
    }
    if checkin.reverted.is_some() || checkin.reported_hello.is_some() {
        return agent(db, &checkin.agent);
    }
    updated.as_ref().map(agent_from_row).transpose()
}

/// The ClientHellos a batch of check-ins reported, per fingerprint, counted at the end of
/// its transaction in fingerprint order (see `PgStore::record_checkins`): as the SQLite
/// engine counts them one check-in at a time, the first one's bytes and time kept.
#[derive(Default)]
pub(super) struct Hellos<'a> {
    by_digest: BTreeMap<Cow<'a, str>, Sighting<'a>>,
}

struct Sighting<'a> {
    bytes: &'a [u8],
    first_ms: i64,
    last_ms: i64,
    count: i64,
}

impl<'a> Hellos<'a> {
    fn saw(&mut self, digest: Cow<'a, str>, bytes: &'a [u8], at_ms: i64) {
        let seen = self.by_digest.entry(digest).or_insert(Sighting {
            bytes,
            first_ms: at_ms,
            last_ms: at_ms,
            count: 0,
        });
        seen.last_ms = seen.last_ms.max(at_ms);
        seen.count += 1;
    }

    /// Counts them, in fingerprint order.
    pub(super) fn count(self, db: &mut Db<'_, impl GenericClient>) -> Result<(), Fail> {
        for (digest, seen) in &self.by_digest {
            count_hello(
                db,
                digest,
                seen.bytes,
                (seen.first_ms, seen.last_ms),
                seen.count,
            )?;
        }
        Ok(())
    }
}

/// Keeps a ClientHello's bytes under its fingerprint (first and last seen at `seen`), or
/// counts it `count` times more when known, up to the bound of distinct hellos. Another
/// writer may keep the same hello at the same moment: the insert then counts it on that row
/// instead (no unique violation).
pub(super) fn count_hello(
    db: &mut Db<'_, impl GenericClient>,
    digest: &str,
    bytes: &[u8],
    (first_ms, last_ms): (i64, i64),
    count: i64,
) -> Result<(), Fail> {
    let updated = db.execute(
        "UPDATE client_hellos SET last_ms = GREATEST(last_ms, $2), count = count + $3 \
         WHERE digest = $1",
        &[&digest, &last_ms, &count],
    )?;
    if updated == 0 {
        db.execute(
            "INSERT INTO client_hellos (digest, bytes, first_ms, last_ms, count) \
             SELECT $1::TEXT, $2::BYTEA, $3::BIGINT, $4::BIGINT, $5::BIGINT \
             WHERE (SELECT COUNT(*) FROM client_hellos) < $6 \
             ON CONFLICT (digest) DO UPDATE SET \
                last_ms = GREATEST(client_hellos.last_ms, excluded.last_ms), \
                count = client_hellos.count + excluded.count",
            &[
                &digest,
                &bytes,
                &first_ms,
                &last_ms,
                &count,
                &crate::MAX_DISTINCT_HELLOS,
            ],
        )?;
    }
    Ok(())
}

/// Forgets nonces seen before `before_ms` (past the replay window).
pub(super) fn prune_nonces(
    db: &mut Db<'_, impl GenericClient>,
    before_ms: i64,
) -> Result<(), Fail> {
    db.execute("DELETE FROM seen_nonces WHERE at_ms < $1", &[&before_ms])?;
    Ok(())
}

/// Records a check-in that changed nothing but when it came; whether the agent's row still
/// names its server.
pub(super) fn touch_checkin(
    db: &mut Db<'_, impl GenericClient>,
    touch: &crate::Touch,
) -> Result<bool, Fail> {
    let applied = db.execute(
        "UPDATE agents SET last_checkin_ms = GREATEST(last_checkin_ms, $2) \
         WHERE id = $1 AND server = $3",
        &[&touch.agent, &touch.at_ms, &text(&touch.server)],
    )?;
    if let Some(nonce) = &touch.nonce {
        keep_nonce(db, &touch.agent, nonce, touch.at_ms)?;
    }
    Ok(applied == 1)
}

/// Keeps a check-in's nonce for the replay window (once: a held check-in records again).
fn keep_nonce(
    db: &mut Db<'_, impl GenericClient>,
    agent: &str,
    nonce: &str,
    at_ms: i64,
) -> Result<(), Fail> {
    db.execute(
        "INSERT INTO seen_nonces (agent, nonce, at_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (agent, nonce) DO NOTHING",
        &[&agent, &text(nonce), &at_ms],
    )?;
    Ok(())
}

/// The nonces of check-ins accepted since `since_ms`: (agent, nonce, at_ms).
pub(super) fn recent_nonces(
    db: &mut Db<'_, impl GenericClient>,
    since_ms: i64,
) -> Result<Vec<(String, String, i64)>, Fail> {
    let rows = db.query(
        "SELECT agent, nonce, at_ms FROM seen_nonces WHERE at_ms >= $1",
        &[&since_ms],
    )?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
        .collect()
}
