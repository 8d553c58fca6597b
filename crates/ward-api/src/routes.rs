//! The route table: every operation of `/api/v1` once, with its method, path, who may call it,
//! and the types of its request and answer. The server routes by it (so it serves nothing the
//! table does not name, and answers 405 with `Allow` from it), and the OpenAPI document is
//! made from it, so a route cannot be missing from the document.

use schemars::{JsonSchema, Schema, SchemaGenerator};

use crate::{fleet, server, tls};

/// Every operation of the admin API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    OpenApi,
    Login,
    Logout,
    ServerStatus,
    Reload,
    RenewCertificates,
    CaStatus,
    CaRotate,
    CaSwitch,
    CaAbort,
    KeyStatus,
    KeyRotate,
    KeySwitch,
    KeyAbort,
    Servers,
    Groups,
    GroupCreate,
    Group,
    GroupUpdate,
    GroupDelete,
    GroupMove,
    GroupExport,
    ServerLists,
    ServerListCreate,
    ServerList,
    ServerListDelete,
    ServerListCopy,
    ServerListUpdate,
    Agents,
    Agent,
    AgentsMove,
    AgentsDelete,
    Tokens,
    TokenCreate,
    TokenRevoke,
    Accounts,
    AccountCreate,
    AccountDelete,
    AccountPassword,
    AccountDisable,
    AccountEnable,
    AccountRevoke,
    Audit,
    Readiness,
    Hellos,
    Plan,
    HardenStatus,
    HardenStage,
    HardenApply,
    HardenCleanup,
    Rollback,
    Verify,
}

/// Who may call an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone (the document, login).
    Public,
    /// Any caller: an auditor too (reads, a plan, a logout).
    Read,
    /// Admins only.
    Write,
}

/// A request body.
#[derive(Clone, Copy)]
pub enum Body {
    None,
    /// May be left out (every field has a default).
    Optional(SchemaFn),
    Required(SchemaFn),
}

pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// One route.
#[derive(Clone, Copy)]
pub struct Route {
    pub operation: Operation,
    pub method: &'static str,
    /// Relative to `/api/v1`, with `{name}` for each path parameter.
    pub path: &'static str,
    pub summary: &'static str,
    pub access: Access,
    /// The path parameters' schemas, by name.
    pub params: &'static [(&'static str, SchemaFn)],
    /// A struct whose fields are the query parameters.
    pub query: Option<SchemaFn>,
    pub body: Body,
    /// The success status and its answer.
    pub ok: u16,
    pub answer: SchemaFn,
}

fn of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

fn integer(_: &mut SchemaGenerator) -> Schema {
    schemars::json_schema!({"type": "integer", "format": "int64", "minimum": 0})
}

fn agent_id(_: &mut SchemaGenerator) -> Schema {
    schemars::json_schema!({"type": "string", "minLength": 1})
}

const GROUP_ID: &[(&str, SchemaFn)] = &[("id", integer)];
const LIST_NAME: &[(&str, SchemaFn)] = &[("name", crate::schema::name)];
const ACCOUNT: &[(&str, SchemaFn)] = &[("name", crate::schema::name)];
const TOKEN_ID: &[(&str, SchemaFn)] = &[("id", integer)];
const AGENT_ID: &[(&str, SchemaFn)] = &[("id", agent_id)];

macro_rules! route {
    ($operation:ident, $method:literal, $path:literal, $access:ident, $summary:literal,
     params: $params:expr, query: $query:expr, body: $body:expr, $ok:literal => $answer:ty) => {
        Route {
            operation: Operation::$operation,
            method: $method,
            path: $path,
            summary: $summary,
            access: Access::$access,
            params: $params,
            query: $query,
            body: $body,
            ok: $ok,
            answer: of::<$answer>,
        }
    };
}

use Body::{None as NoBody, Optional, Required};

/// Every route, in the document's order.
pub static ROUTES: &[Route] = &[
    route!(OpenApi, "GET", "/openapi.json", Public, "this document",
        params: &[], query: None, body: NoBody, 200 => serde_json::Value),
    route!(Login, "POST", "/login", Public,
        "log in with an account: a bearer token and when it ends (limited per account and address)",
        params: &[], query: None, body: Required(of::<fleet::LoginRequest>), 200 => fleet::LoginAnswer),
    route!(Logout, "DELETE", "/session", Read, "log out: end the caller's own session",
        params: &[], query: None, body: NoBody, 200 => fleet::LoggedOut),
    route!(ServerStatus, "GET", "/server", Read, "server status: listeners, TLS, reloads",
        params: &[], query: None, body: NoBody, 200 => server::ServerStatus),
    route!(Reload, "POST", "/server/reload", Write,
        "re-read the TLS conf files, guarded by the exact plan: 409 would_cut_off (nothing changes) when agents would lose their last path, unless accept_cut_off; dry_run plans only",
        params: &[], query: None, body: Optional(of::<server::GuardedRequest>), 200 => server::ReloadAnswer),
    route!(RenewCertificates, "POST", "/server/certificates/renew", Write,
        "re-issue the server certificates from ward's CA (the names they have) and reload, guarded like /server/reload",
        params: &[], query: None, body: Optional(of::<server::RenewRequest>), 200 => server::ReloadAnswer),
    route!(CaStatus, "GET", "/server/ca", Read,
        "CA rotation status: the CAs (current, next, previous) and the agents that have not acknowledged the next one",
        params: &[], query: None, body: NoBody, 200 => server::CaStatus),
    route!(CaRotate, "POST", "/server/ca/rotate", Write,
        "start a CA rotation: a new CA, handed to every agent in its signed settings (during one: handed out again, resent); 409 not_ward_certificate when the clients listener serves another CA's certificate",
        params: &[], query: None, body: NoBody, 200 => server::CaStatus),
    route!(CaSwitch, "POST", "/server/ca/switch", Write,
        "finish a CA rotation: the listeners' certificates re-issued from the new CA, guarded: 409 would_cut_off while agents that do not trust it would lose their last path, unless accept_cut_off; dry_run plans only",
        params: &[], query: None, body: Optional(of::<server::GuardedRequest>), 200 => server::SwitchAnswer),
    route!(CaAbort, "POST", "/server/ca/abort", Write,
        "give up a CA rotation: the next CA goes, every agent's settings carry the current one only (nothing served changes: nobody can be cut off)",
        params: &[], query: None, body: Optional(of::<server::GuardedRequest>), 200 => server::CaStatus),
    route!(KeyStatus, "GET", "/server/agreement-key", Read,
        "agreement key rotation status: the keys (SHA-256) and the agents that do not sign under the next one yet",
        params: &[], query: None, body: NoBody, 200 => server::KeyStatus),
    route!(KeyRotate, "POST", "/server/agreement-key/rotate", Write,
        "start an agreement key rotation: a next key, handed to every agent in its signed settings; check-ins under either key are accepted",
        params: &[], query: None, body: NoBody, 200 => server::KeyStatus),
    route!(KeySwitch, "POST", "/server/agreement-key/switch", Write,
        "finish an agreement key rotation: only the next key from then on; 409 would_cut_off while agents still sign under the current one, unless accept_cut_off; dry_run plans only",
        params: &[], query: None, body: Optional(of::<server::GuardedRequest>), 200 => server::SwitchAnswer),
    route!(KeyAbort, "POST", "/server/agreement-key/abort", Write,
        "give up an agreement key rotation: the next key is withdrawn (accepted, not handed out) and removed once no agent signs under it: 409 would_cut_off while some do, unless accept_cut_off",
        params: &[], query: None, body: Optional(of::<server::GuardedRequest>), 200 => server::KeyStatus),
    route!(Servers, "GET", "/servers", Read,
        "the ward servers on this server's database, their listeners and TLS ranges, and whether each is alive (its heartbeat)",
        params: &[], query: None, body: NoBody, 200 => server::Servers),
    route!(Groups, "GET", "/groups", Read, "every group, with own and effective settings",
        params: &[], query: None, body: NoBody, 200 => Vec<fleet::Group>),
    route!(GroupCreate, "POST", "/groups", Write, "create a group (under the root unless parent)",
        params: &[], query: None, body: Required(of::<fleet::NewGroup>), 201 => fleet::Group),
    route!(Group, "GET", "/groups/{id}", Read, "a group, with own and effective settings",
        params: GROUP_ID, query: None, body: NoBody, 200 => fleet::Group),
    route!(GroupUpdate, "PATCH", "/groups/{id}", Write,
        "set or inherit a group's settings, or rename it (409 would_cut_off when its agents would lose their last path, unless accept_cut_off)",
        params: GROUP_ID, query: None, body: Required(of::<fleet::GroupPatch>), 200 => fleet::Group),
    route!(GroupDelete, "DELETE", "/groups/{id}", Write, "delete an empty group",
        params: GROUP_ID, query: None, body: NoBody, 200 => fleet::Deleted),
    route!(GroupMove, "POST", "/groups/{id}/move", Write,
        "move a group under another parent (guarded like a settings change)",
        params: GROUP_ID, query: None, body: Required(of::<fleet::MoveGroup>), 200 => fleet::Group),
    route!(GroupExport, "POST", "/groups/{id}/export", Write,
        "the group's communication-settings package, with a new token bound to it (ward agent import-settings brings orphaned agents back)",
        params: GROUP_ID, query: None, body: Optional(of::<fleet::ExportRequest>), 200 => fleet::ExportedSettings),
    route!(ServerLists, "GET", "/serverlists", Read, "every server list and who uses it",
        params: &[], query: None, body: NoBody, 200 => Vec<fleet::ServerList>),
    route!(ServerListCreate, "POST", "/serverlists", Write, "create a server list",
        params: &[], query: None, body: Required(of::<fleet::NewServerList>), 201 => fleet::ServerList),
    route!(ServerList, "GET", "/serverlists/{name}", Read, "a server list",
        params: LIST_NAME, query: None, body: NoBody, 200 => fleet::ServerList),
    route!(ServerListDelete, "DELETE", "/serverlists/{name}", Write, "delete a server list no group uses",
        params: LIST_NAME, query: None, body: NoBody, 200 => fleet::Deleted),
    route!(ServerListUpdate, "PUT", "/serverlists/{name}", Write,
        "replace a server list's servers (409 would_cut_off when the agents of the groups using it would lose their last path, unless accept_cut_off)",
        params: LIST_NAME, query: None, body: Required(of::<fleet::ServerListEdit>), 200 => fleet::ServerList),
    route!(ServerListCopy, "POST", "/serverlists/{name}/copy", Write,
        "copy a list with every server on one protocol and port (the seed's HTTP 8014 list)",
        params: LIST_NAME, query: None, body: Required(of::<fleet::CopyList>), 201 => fleet::ServerList),
    route!(Agents, "GET", "/agents", Read, "agents, filtered (also at /clients)",
        params: &[], query: Some(of::<fleet::AgentsQuery>), body: NoBody, 200 => Vec<fleet::Agent>),
    route!(Agent, "GET", "/agents/{id}", Read, "an agent and its group's settings",
        params: AGENT_ID, query: None, body: NoBody, 200 => fleet::Agent),
    route!(AgentsMove, "POST", "/agents/move", Write,
        "move agents to a group (409 would_cut_off when its server list leaves one no path, unless accept_cut_off)",
        params: &[], query: None, body: Required(of::<fleet::MoveAgents>), 200 => fleet::MovedAgents),
    route!(AgentsDelete, "POST", "/agents/delete", Write,
        "retire agents: forgotten, their check-ins refused from then on",
        params: &[], query: None, body: Required(of::<fleet::DeleteAgents>), 200 => fleet::DeletedAgents),
    route!(Tokens, "GET", "/tokens", Read, "enrollment tokens (without their secrets)",
        params: &[], query: None, body: NoBody, 200 => Vec<fleet::Token>),
    route!(TokenCreate, "POST", "/tokens", Write, "an enrollment token for a group, shown once",
        params: &[], query: None, body: Required(of::<fleet::NewToken>), 201 => fleet::Token),
    route!(TokenRevoke, "POST", "/tokens/{id}/revoke", Write, "revoke an enrollment token",
        params: TOKEN_ID, query: None, body: NoBody, 200 => fleet::RevokedToken),
    route!(Accounts, "GET", "/accounts", Read, "ward accounts",
        params: &[], query: None, body: NoBody, 200 => Vec<fleet::AccountInfo>),
    route!(AccountCreate, "POST", "/accounts", Write, "create an account",
        params: &[], query: None, body: Required(of::<fleet::NewAccount>), 201 => fleet::CreatedAccount),
    route!(AccountDelete, "DELETE", "/accounts/{name}", Write, "delete an account and end its sessions",
        params: ACCOUNT, query: None, body: NoBody, 200 => fleet::Deleted),
    route!(AccountPassword, "POST", "/accounts/{name}/password", Write,
        "a new password for an account: its sessions end",
        params: ACCOUNT, query: None, body: Required(of::<fleet::NewPassword>), 200 => fleet::AccountChanged),
    route!(AccountDisable, "POST", "/accounts/{name}/disable", Write,
        "disable an account: no login, its sessions end",
        params: ACCOUNT, query: None, body: NoBody, 200 => fleet::AccountChanged),
    route!(AccountEnable, "POST", "/accounts/{name}/enable", Write, "enable an account again",
        params: ACCOUNT, query: None, body: NoBody, 200 => fleet::AccountChanged),
    route!(AccountRevoke, "POST", "/accounts/{name}/revoke", Write, "end every session of an account",
        params: ACCOUNT, query: None, body: NoBody, 200 => fleet::AccountChanged),
    route!(Audit, "GET", "/audit", Read, "the audit log, oldest first",
        params: &[], query: Some(of::<fleet::AuditQuery>), body: NoBody, 200 => Vec<fleet::AuditEntry>),
    route!(Readiness, "GET", "/tls/readiness", Read,
        "the fleet by TLS capability, per listener and group, and the agents that stopped checking in",
        params: &[], query: Some(of::<tls::ReadinessQuery>), body: NoBody, 200 => tls::Readiness),
    route!(Hellos, "GET", "/tls/hellos", Read, "the distinct ClientHellos kept (what exact plans replay)",
        params: &[], query: None, body: NoBody, 200 => tls::Hellos),
    route!(Plan, "POST", "/tls/plan", Read,
        "who a proposed TLS change would cut off or put at risk, and why: every agent's and peer's real ClientHello replayed through the proposed listener",
        params: &[], query: None, body: Required(of::<tls::PlanRequest>), 200 => tls::Plan),
    route!(HardenStatus, "GET", "/tls/harden", Read,
        "the state of the last harden, for --resume and rollback",
        params: &[], query: None, body: NoBody, 200 => tls::HardenStatus),
    route!(HardenStage, "POST", "/tls/harden/stage", Write,
        "stage: an HTTP server list and a legacy group for every agent the change would cut off, and move them",
        params: &[], query: None, body: Required(of::<tls::StageRequest>), 200 => tls::Staged),
    route!(HardenApply, "POST", "/tls/harden/apply", Write,
        "apply: edit the conf files and reload, re-planned under the fleet lock (409 would_cut_off unless accept_cut_off, accept_risk)",
        params: &[], query: None, body: Required(of::<tls::ApplyRequest>), 200 => tls::Applied),
    route!(HardenCleanup, "POST", "/tls/harden/cleanup", Write,
        "remove what harden made that serves nobody: empty legacy groups, unused HTTP lists, old backups",
        params: &[], query: None, body: Optional(of::<tls::CleanupRequest>), 200 => tls::CleanedUp),
    route!(Rollback, "POST", "/tls/rollback", Write,
        "both conf files as before the last harden, reloaded, planned first (409 would_cut_off unless accept_cut_off)",
        params: &[], query: None, body: Optional(of::<tls::RollbackRequest>), 200 => tls::RolledBack),
    route!(Verify, "GET", "/tls/verify", Read,
        "this server's HTTPS listeners scanned from the server itself: the versions each accepts against those its file enables",
        params: &[], query: None, body: NoBody, 200 => tls::Verified),
];

/// A request the table routes: the route and its path parameters (decoded), by name.
#[derive(Clone, Copy)]
pub struct Matched<'a> {
    pub route: &'static Route,
    segments: &'a [String],
}

impl Matched<'_> {
    /// The path parameter `name`.
    pub fn param(&self, name: &str) -> &str {
        let template = self.route.path.trim_start_matches('/').split('/');
        template
            .zip(self.segments)
            .find(|(part, _)| part.trim_matches(['{', '}']) == name && part.starts_with('{'))
            .map(|(_, value)| value.as_str())
            .unwrap_or_default()
    }
}

/// Why the table routes nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unrouted {
    NotFound,
    /// The path exists with other methods: the `Allow` header's value.
    MethodNotAllowed(String),
}

fn matches(template: &str, segments: &[String]) -> bool {
    let parts: Vec<&str> = template.trim_start_matches('/').split('/').collect();
    parts.len() == segments.len()
        && parts
            .iter()
            .zip(segments)
            .all(|(part, segment)| part.starts_with('{') || *part == segment)
}

/// Routes `method` on the path `segments` (relative to `/api/v1`, decoded; `clients` is an
/// alias of `agents`). HEAD is answered as GET.
pub fn route<'a>(method: &str, segments: &'a [String]) -> Result<Matched<'a>, Unrouted> {
    let method = if method == "HEAD" { "GET" } else { method };
    let candidates: Vec<&'static Route> = ROUTES
        .iter()
        .filter(|route| matches(route.path, segments))
        .collect();
    if candidates.is_empty() {
        return Err(Unrouted::NotFound);
    }
    // A literal segment wins over a parameter (`/agents/move` over `/agents/{id}`).
    let literal = |route: &&Route| route.path.matches('{').count();
    let mut same_method: Vec<&'static Route> = candidates
        .iter()
        .copied()
        .filter(|route| route.method == method)
        .collect();
    same_method.sort_by_key(literal);
    if let Some(route) = same_method.first() {
        let fewest = literal(route);
        // A more specific template of another method shadows this one's parameter.
        let shadowed = candidates
            .iter()
            .any(|other| literal(other) < fewest && other.method != method);
        if !shadowed {
            return Ok(Matched { route, segments });
        }
    }
    let fewest = candidates.iter().map(literal).min().unwrap_or(0);
    let mut allow: Vec<&str> = candidates
        .iter()
        .filter(|route| literal(route) == fewest)
        .map(|route| route.method)
        .collect();
    if allow.contains(&"GET") {
        allow.push("HEAD");
    }
    allow.dedup();
    Err(Unrouted::MethodNotAllowed(allow.join(", ")))
}
