//! The fleet's records as the store keeps them: agents, enrollment tokens, the audit log,
//! admin accounts and sessions, and the changes an admin makes. Groups and server lists are
//! ward-fleet's own types.

use serde_json::Value;
use ward_fleet::{Group, GroupId, ServerList};

/// An enrolled agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentRecord {
    pub id: String,
    pub hostname: String,
    pub os_name: String,
    pub os_version: String,
    pub agent_version: String,
    /// The TLS versions the agent says it can speak (`TLSv1`, ..., `TLSv1.3`).
    pub tls_versions: Vec<String>,
    pub group: GroupId,
    /// Unix milliseconds of the last check-in; `None` before the first.
    pub last_checkin_ms: Option<i64>,
    /// `https` or `http`, for the last check-in.
    pub channel: Option<String>,
    /// The server URL used last.
    pub server: Option<String>,
    /// The TLS version negotiated last (`None` over plain HTTP).
    pub tls_version: Option<String>,
    /// The key-exchange group negotiated last (`X25519MLKEM768`, `x25519`, ...).
    pub tls_group: Option<String>,
    /// The SHA-256 (hex) of the ClientHello of its last HTTPS check-in.
    pub hello: Option<String>,
    /// The settings serial the agent should have.
    pub serial: i64,
    /// The settings serial the agent acknowledged.
    pub acked_serial: i64,
    pub enrolled_ms: i64,
    /// Enrolled by `ward simulate` (a rehearsal), not a real machine.
    pub simulated: bool,
    /// The last revert it reported: the serial it left for the last settings that worked.
    pub reverted: Option<Revert>,
    /// The fingerprint (hex) of the ClientHello its stack reports of itself.
    pub reported_hello: Option<String>,
    /// The IP address its last check-in came from (set by check-ins, not by an insert).
    pub peer: Option<String>,
}

/// An agent went back to the last settings that worked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revert {
    /// The settings serial it left.
    pub serial: i64,
    /// Per server it tried, what failed, in its words.
    pub reason: String,
    /// When it first said so (Unix milliseconds).
    pub at_ms: i64,
}

impl AgentRecord {
    /// Whether it refuses its current serial: it reverted from exactly that one, so the
    /// server does not hand it again (a new serial is handed as usual).
    pub fn refuses_serial(&self) -> bool {
        self.reverted
            .as_ref()
            .is_some_and(|r| r.serial == self.serial)
    }

    /// An agent is pending while it has not acknowledged its current serial.
    pub fn pending(&self) -> bool {
        self.acked_serial < self.serial
    }
}

/// Which agents `agents()` returns (and `count_agents()` counts), in which order. Every
/// condition given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentFilter {
    /// Only agents in these groups.
    pub groups: Option<Vec<GroupId>>,
    pub pending: bool,
    /// Only agents whose highest reported TLS version is at most this one (by name order
    /// `TLSv1` < `TLSv1.1` < `TLSv1.2` < `TLSv1.3`), or that reported none.
    pub tls_max: Option<String>,
    /// Only agents whose last check-in is before this unix millisecond (or never).
    pub offline_before_ms: Option<i64>,
    /// Only agents whose id or host name contains this, ignoring ASCII case.
    pub search: Option<String>,
    /// Only agents whose last ClientHello has this fingerprint (`AgentRecord::hello`).
    pub hello: Option<String>,
    /// Only agents online (`true`) or offline (`false`) by `presence` (without one, nobody
    /// is online).
    pub online: Option<bool>,
    /// The presence rule, for `online` and [`AgentOrder::Online`].
    pub presence: Option<Presence>,
    pub order: AgentOrder,
    /// Every key reversed, the id too.
    pub descending: bool,
    /// Agents skipped, in the order, before the first returned.
    pub offset: usize,
    pub limit: Option<usize>,
}

/// The order of `agents()`: by one key, then by id. A missing value (an agent that never
/// checked in, say) comes first. Text compares as the database does (byte order in SQLite;
/// the database's collation in PostgreSQL, which ward's clusters create without a locale).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AgentOrder {
    #[default]
    Id,
    /// The host name, in lower case (ASCII).
    Hostname,
    /// The group's path (`parent/child`).
    Group,
    /// Offline first.
    Online,
    /// The channel of the last check-in.
    Channel,
    /// The TLS version of the last check-in, by name (`SSLv3` < `TLSv1` < ... < `TLSv1.3`).
    TlsVersion,
    /// The highest version the agent reported it speaks.
    Highest,
    LastCheckin,
    /// Acknowledged first.
    Pending,
}

/// Agents of one channel and negotiated version, in figures (`Store::agent_tally`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentTally {
    /// `https`, `http`, or `None`: never checked in.
    pub channel: Option<String>,
    /// The TLS version of the last check-in (`None` over plain HTTP, or never).
    pub tls_version: Option<String>,
    pub agents: u64,
    /// Online by the presence rule asked with.
    pub online: u64,
    /// Not yet acknowledged their settings.
    pub pending: u64,
    /// Whose last check-in's key exchange was post-quantum (ML-KEM).
    pub post_quantum: u64,
    /// That went back from their current serial (it cut them off).
    pub reverted: u64,
}

/// Who is online, as the caller's presence rule (`ward_fleet::presence`) puts it for the
/// store: an agent whose check-in is held now, or whose last check-in is at or after its
/// group's threshold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Presence {
    /// The agents whose check-in is held now.
    pub held: Vec<String>,
    /// The threshold (unix milliseconds) of every group `since` does not name: the one most
    /// groups share, so a fleet with one interval is asked one comparison.
    pub default_since: i64,
    /// Other thresholds, each with the groups it is for.
    pub since: Vec<(i64, Vec<GroupId>)>,
}

impl Default for Presence {
    /// Nobody online: nobody held, and a threshold no check-in reaches.
    fn default() -> Presence {
        Presence {
            held: Vec::new(),
            default_since: i64::MAX,
            since: Vec::new(),
        }
    }
}

/// A per-group enrollment token. The token itself is never stored, only its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: i64,
    pub group: GroupId,
    pub token_sha256: String,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub uses_left: Option<i64>,
    pub revoked: bool,
    /// Whether this token may enroll over the plain-HTTP listener.
    pub allow_http: bool,
    /// Its enrollments go through even when the agent's own ClientHello shows that no
    /// server of its group's list would take it (the agent then goes back to the server it
    /// enrolled through).
    pub accept_cut_off: bool,
}

/// Why a token enrolls nobody (more) at `now_ms`: revoked, expired or used up. The one
/// statement of the rule; the store only checks that the token is still as it was read.
impl TokenRecord {
    pub fn refusal(&self, now_ms: i64) -> Option<&'static str> {
        if self.revoked {
            Some("the enrollment token is revoked")
        } else if self.expires_ms.is_some_and(|at| at <= now_ms) {
            Some("the enrollment token has expired")
        } else if self.uses_left.is_some_and(|left| left <= 0) {
            Some("the enrollment token is used up")
        } else {
            None
        }
    }

    /// One use of it, as read.
    pub fn one_use(&self) -> TokenUse {
        TokenUse {
            id: self.id,
            uses_left: self.uses_left,
        }
    }
}

/// One use of an enrollment token: its id, and its uses left as they were read when the rule
/// was checked. The store takes the use only while the rule still holds (not revoked; still
/// unlimited, or still some left: uses other enrollments took meanwhile do not matter), in
/// the transaction of what it allows: `Stale` otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenUse {
    pub id: i64,
    pub uses_left: Option<i64>,
}

/// The groups and server lists, and the version they were read at (one read).
#[derive(Clone, Debug, PartialEq)]
pub struct FleetTree {
    pub groups: Vec<ward_fleet::Group>,
    pub lists: Vec<ward_fleet::ServerList>,
    pub version: i64,
}

/// TLS versions as ranks, the one definition the store and its readers share: `TLSv1` = 1
/// ... `TLSv1.3` = 4; 0 for a name that is no version.
pub mod rank {
    pub const NAMES: [&str; 4] = ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"];

    pub fn of(name: &str) -> u8 {
        NAMES
            .iter()
            .position(|n| *n == name)
            .map_or(0, |index| index as u8 + 1)
    }

    /// The name of a rank (1 ... 4).
    pub fn name(rank: u8) -> Option<&'static str> {
        NAMES.get(usize::from(rank).checked_sub(1)?).copied()
    }

    /// A list of names as a set of rank bits: bit 0 `TLSv1` ... bit 3 `TLSv1.3`.
    pub fn bits<'a>(names: impl IntoIterator<Item = &'a str>) -> u8 {
        names
            .into_iter()
            .map(of)
            .filter(|rank| *rank > 0)
            .fold(0, |bits, rank| bits | 1 << (rank - 1))
    }
}

/// What an agent reports at each check-in, and what the server saw of the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkin {
    pub agent: String,
    pub at_ms: i64,
    pub acked_serial: i64,
    pub hostname: String,
    pub os_name: String,
    pub os_version: String,
    pub agent_version: String,
    pub tls_versions: Vec<String>,
    /// `https` or `http`.
    pub channel: String,
    /// The server URL the agent used.
    pub server: String,
    /// The TLS version negotiated (`None` over plain HTTP).
    pub tls_version: Option<String>,
    /// The key-exchange group negotiated (`None` over plain HTTP or with RSA key exchange).
    pub tls_group: Option<String>,
    /// The SHA-256 (hex) of the ClientHello of the connection (`None` over plain HTTP).
    pub hello: Option<String>,
    /// The IP address (without port) the check-in came from.
    pub peer: Option<String>,
    /// The request's nonce, kept (with `at_ms`) in the same transaction as the check-in, so a
    /// captured request cannot be replayed after a restart within the replay window.
    pub nonce: Option<String>,
    /// The CAs the agent says it trusts: SHA-256 fingerprints, sorted, comma-separated;
    /// `None` from an agent older than CA rotation. Replaced at every check-in.
    pub trusted_cas: Option<String>,
    /// The SHA-256 (hex) of the server agreement key the check-in was signed under (kept
    /// when `None`).
    pub agreement_key: Option<String>,
    /// The agent reports it reverted from this serial, for this reason (recorded, and
    /// audited, the first time it says so).
    pub reverted: Option<(i64, String)>,
    /// The ClientHello its stack reports of itself: the fingerprint (hex) and the bytes.
    pub reported_hello: Option<(String, Vec<u8>)>,
}

/// A check-in that changed nothing but when it came: what the server keeps of it
/// ([`crate::Store::touch_checkins`]), written in batches a moment after it was answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Touch {
    pub agent: String,
    pub at_ms: i64,
    /// The request's nonce, kept for the replay window as a full check-in's is.
    pub nonce: Option<String>,
    /// The server URL the agent used, as its last full check-in recorded it: the touch applies
    /// only while the row still says so (another server's check-in of the agent since then
    /// wrote other facts, which a touch must not cover up).
    pub server: String,
}

/// What TLS readiness and hardening plans read of every agent: one lean row each, with one
/// allocation (the id), so a million agents are read in well under a second.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentTls {
    pub id: String,
    pub group: GroupId,
    /// The TLS versions the agent reported it can speak, as a set of ranks: bit 0 `TLSv1`,
    /// bit 1 `TLSv1.1`, bit 2 `TLSv1.2`, bit 3 `TLSv1.3`.
    pub versions: u8,
    /// The version negotiated at its last check-in as a rank (1 `TLSv1` ... 4 `TLSv1.3`);
    /// `None` over plain HTTP, or never.
    pub negotiated: Option<u8>,
    /// Whether the last check-in came over HTTPS (`Some(false)`: plain HTTP; `None`: never).
    pub https: Option<bool>,
    /// The IP address of the last check-in.
    pub peer: Option<std::net::IpAddr>,
    pub last_checkin_ms: Option<i64>,
    pub enrolled_ms: i64,
    pub serial: i64,
    pub acked_serial: i64,
    pub simulated: bool,
    /// Its last HTTPS check-in used a post-quantum group (X25519MLKEM768).
    pub post_quantum: bool,
    /// The fingerprint of the ClientHello of its last HTTPS check-in (shared, one allocation
    /// per distinct stack).
    pub hello: Option<std::sync::Arc<str>>,
    /// The CAs it reported trusting at its last check-in (fingerprints, sorted,
    /// comma-separated; shared, one allocation per distinct set); `None` when it never said.
    pub trusted_cas: Option<std::sync::Arc<str>>,
    /// The SHA-256 (hex) of the server agreement key its last check-in was signed under
    /// (shared); `None` before its first check-in since that was recorded.
    pub agreement_key: Option<std::sync::Arc<str>>,
    /// The fingerprint of the ClientHello its stack reports of itself (shared).
    pub reported_hello: Option<std::sync::Arc<str>>,
    /// The serial it reverted from, when that is its current serial (it refuses it).
    pub refused_serial: Option<i64>,
}

impl AgentTls {
    /// Whether it reported trusting the CA with this SHA-256 fingerprint.
    pub fn trusts_ca(&self, fingerprint: &str) -> bool {
        self.trusted_cas
            .as_deref()
            .is_some_and(|prints| prints.split(',').any(|p| p == fingerprint))
    }
}

/// One admin change: who, when, what, and the state before and after.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    pub id: i64,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    /// An argon2id PHC string.
    pub password_hash: String,
    /// `admin` or `auditor`.
    pub role: String,
    /// Kept, but refused at login, and without sessions.
    pub disabled: bool,
    /// Goes up with every change that ends the account's sessions (a new password, disabled,
    /// every session ended): a login creates its session only if it is still the version its
    /// password was checked against. Assigned by the store (a new account starts at 0).
    pub credential_version: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub token_sha256: String,
    pub account: String,
    pub expires_ms: i64,
}

/// What an admin change does to the records.
#[derive(Clone, Debug, PartialEq)]
pub enum Mutation {
    /// A new group; its `id` is assigned by the store.
    CreateGroup(Group),
    /// A group's name or own settings.
    UpdateGroup(Group),
    MoveGroup {
        id: GroupId,
        parent: GroupId,
    },
    /// Refused while the group has children or agents.
    DeleteGroup(GroupId),
    CreateServerList(ServerList),
    /// Refused while a group uses the list.
    DeleteServerList(String),
    /// The list of that name with new entries (`NotFound` when there is none).
    UpdateServerList(ServerList),
    /// A new token; its `id` is assigned by the store.
    CreateToken(TokenRecord),
    RevokeToken(i64),
    MoveAgents {
        agents: Vec<String>,
        group: GroupId,
    },
    CreateAccount(Account),
    /// Removes an account and ends its sessions.
    DeleteAccount(String),
    /// A new password for an account; its sessions end.
    SetPassword {
        account: String,
        password_hash: String,
    },
    /// Disables (its sessions end) or enables an account.
    SetDisabled {
        account: String,
        disabled: bool,
    },
    /// Ends every session of an account.
    EndSessions(String),
    /// Ends one session (a logout), by its token's SHA-256.
    EndSession(String),
    /// Retires agents: their records and keys are removed, so they are refused from then on
    /// (a retired agent that comes back must enroll again).
    DeleteAgents(Vec<String>),
    /// Changes no record: an audited action such as a reload.
    Nothing,
    /// A new agent enrolled with a token (whose use count goes down by one).
    Enroll {
        agent: Box<AgentRecord>,
        public_key: String,
        token: TokenUse,
    },
    /// A known agent re-registered with a token: it moves into `group`, and the token's use
    /// count goes down by one.
    Reregister {
        agent: String,
        group: GroupId,
        token: TokenUse,
    },
}

/// A mutation, the serial bumps it causes, and its audit entry: applied in one transaction,
/// durable before `apply` returns.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub mutation: Mutation,
    /// The version of the groups and server lists this change was checked against
    /// ([`crate::Store::tree`]): the store refuses it (`Stale`) when they changed since, so a
    /// check made on a stale read never commits. `None` for changes that do not depend on
    /// them (the store's own constraints guard those).
    pub tree_version: Option<i64>,
    /// Agents in these groups get a new serial.
    pub bump_groups: Vec<GroupId>,
    /// These agents get a new serial.
    pub bump_agents: Vec<String>,
    /// Written with the change; `id` is assigned by the store.
    pub audit: AuditEntry,
}

/// What `apply` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The id given to a new group or token.
    pub new_id: Option<i64>,
    /// The serial given to bumped agents, if any were.
    pub serial: Option<i64>,
    /// How many agents got it.
    pub bumped_agents: u64,
}
