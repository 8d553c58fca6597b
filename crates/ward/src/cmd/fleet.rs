//! `ward login`, `ward group ...`, `ward serverlist ...`, `ward client ...`, `ward account`,
//! `ward audit`: clients of the admin API. On the server host `--data DIR` uses the local
//! admin token; elsewhere, what `ward login` saved.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde::de::IntoDeserializer;
use serde::{Deserialize, Serialize};
use ward_api::fleet::{
    AccountChanged, AccountInfo, Agent, AgentsQuery, AuditEntry, AuditQuery, CopyList,
    CreatedAccount, DeleteAgents, Deleted, DeletedAgents, ExportRequest, ExportedSettings, Group,
    GroupPatch, LoggedOut, MoveAgents, MoveGroup, MovedAgents, NewAccount, NewGroup, NewPassword,
    NewServerList, NewToken, RevokedToken, ServerList, ServerListEdit, Token,
};

use super::CodedResult;
use crate::client::{segment, AdminClient};

/// Which server to talk to.
#[derive(Args, Clone)]
pub struct Target {
    /// The server's data dir, on the server host (uses its local admin token) [default:
    /// ward-data, or the saved login when there is none]
    #[arg(long, value_name = "DIR", env = "WARD_DATA", global = true)]
    data: Option<PathBuf>,
    /// Print JSON for scripts
    #[arg(long, global = true)]
    pub json: bool,
}

impl Target {
    pub fn client(&self) -> Result<AdminClient, String> {
        match &self.data {
            Some(dir) => AdminClient::local(&ward_server::DataDir::new(dir)),
            None => {
                let default = ward_server::DataDir::new("ward-data");
                if default.is_initialised() {
                    AdminClient::local(&default)
                } else {
                    AdminClient::saved()
                }
            }
        }
    }
}

/// Prints an answer: as JSON with `--json`, else as `human` writes it.
fn print<T: Serialize>(target: &Target, value: &T, human: impl FnOnce(&T)) -> CodedResult {
    if target.json {
        println!("{}", pretty(value));
    } else {
        human(value);
    }
    Ok(ExitCode::SUCCESS)
}

/// A typed answer as indented JSON.
pub fn pretty<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// `-` for nothing.
fn or_dash(text: Option<&str>) -> &str {
    text.unwrap_or("-")
}

/// A word of the command line as the API's type (`pull`, `admin`, `interval`...), or why not.
pub fn word<T: for<'de> Deserialize<'de>>(what: &str, text: &str) -> Result<T, String> {
    T::deserialize(text.into_deserializer())
        .map_err(|e: serde::de::value::Error| format!("--{what}: {e}"))
}

// ---- login -------------------------------------------------------------------------------

#[derive(Args)]
pub struct LoginArgs {
    /// The console URL, e.g. https://mgr1:8445
    #[arg(long)]
    server: String,
    #[arg(long)]
    user: String,
    /// The CA that signed the server's certificate (the server's certs/ca.pem); without it,
    /// the system's trust store decides
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

pub fn login(args: LoginArgs) -> CodedResult {
    let ca_pem = match &args.ca {
        Some(path) => std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?,
        None => Vec::new(),
    };
    eprint!("password for {}: ", args.user);
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .map_err(|e| format!("reading the password: {e}"))?;
    let reply = AdminClient::login(
        &args.server,
        ca_pem,
        &args.user,
        password.trim_end_matches(['\n', '\r']),
    )?;
    /// What `ward login --json` says (never the token).
    #[derive(Serialize)]
    struct LoggedIn<'a> {
        user: &'a str,
        role: ward_api::fleet::Role,
        expires: &'a str,
    }
    let shown = LoggedIn {
        user: &reply.user,
        role: reply.role,
        expires: &reply.expires,
    };
    if args.json {
        println!("{}", pretty(&shown));
    } else {
        println!(
            "logged in to {} as {} ({}) until {}",
            args.server,
            shown.user,
            pretty(&shown.role).trim_matches('"'),
            shown.expires
        );
    }
    Ok(ExitCode::SUCCESS)
}

// ---- groups ------------------------------------------------------------------------------

#[derive(Subcommand)]
pub enum GroupCommand {
    /// Create a group (under the root unless --parent)
    Create {
        name: String,
        /// The parent group's path, e.g. 'My Company/Servers'
        #[arg(long)]
        parent: Option<String>,
    },
    /// List every group with its path and parent
    List,
    /// A group's own and effective settings
    Show { path: String },
    /// Set, or go back to inheriting, a group's settings
    Set {
        path: String,
        #[arg(long)]
        server_list: Option<String>,
        /// Check-in interval, e.g. 5m
        #[arg(long)]
        interval: Option<String>,
        /// Randomisation window, e.g. 1m
        #[arg(long)]
        randomize: Option<String>,
        /// pull or push
        #[arg(long)]
        mode: Option<String>,
        /// A JSON file with the policy document
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Inherit this field from the parent again (server_list, interval, randomize, mode,
        /// policy); may be repeated
        #[arg(long, value_name = "FIELD")]
        inherit: Vec<String>,
        /// A new name
        #[arg(long)]
        rename: Option<String>,
        /// Change it even if agents would lose their last path (audited, with whom)
        #[arg(long)]
        accept_cut_off: bool,
    },
    /// Move a group under another parent
    Move {
        path: String,
        #[arg(long)]
        parent: String,
        /// Move it even if agents would lose their last path (audited, with whom)
        #[arg(long)]
        accept_cut_off: bool,
    },
    /// Delete an empty group
    Delete { path: String },
    /// Write the group's communication-settings package (server list, server key and CA, a
    /// new enrollment token) for `ward agent import-settings`
    ExportSettings {
        path: String,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// How many agents the package may bring back (its token's uses)
        #[arg(long, default_value_t = 25)]
        uses: u64,
        /// How long the package works (its token's lifetime), at most 30d
        #[arg(long, default_value = "24h")]
        expires: String,
    },
    /// Enrollment tokens of a group
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create an enrollment token for a group; the token is printed once
    Create {
        path: String,
        /// Expiry, e.g. 30d, or `never` [default: 7d]
        #[arg(long)]
        expires: Option<String>,
        /// How many enrollments it allows, 0 for any number [default: 1000]
        #[arg(long)]
        uses: Option<u64>,
        /// Allow enrollment over the plain-HTTP listener (legacy agents)
        #[arg(long)]
        allow_http: bool,
        /// Enroll even an agent whose own TLS stack cannot use the group's servers (it goes
        /// back to the server it enrolled through, shown as reverted); refused otherwise
        #[arg(long)]
        accept_cut_off: bool,
    },
    /// List tokens (never the tokens themselves)
    List,
    /// Revoke a token by id
    Revoke { id: i64 },
}

/// The group id behind a path.
fn group_id(client: &AdminClient, path: &str) -> Result<i64, String> {
    let groups: Vec<Group> = client.get("/api/v1/groups")?;
    groups
        .iter()
        .find(|g| g.path.as_deref() == Some(path))
        .map(|g| g.id)
        .ok_or_else(|| format!("no group '{path}'"))
}

/// A value as one line (a policy document compact).
fn shown<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        Ok(other) => other.to_string(),
        Err(_) => "-".into(),
    }
}

fn print_group(group: &Group) {
    println!("{}", or_dash(group.path.as_deref()));
    let own = &group.own;
    // A setting: its name, own value, effective value, and the group it is inherited from.
    type Row<'a> = (&'a str, Option<String>, Option<String>, Option<&'a str>);
    let rows: [Row; 5] = match &group.effective {
        Some(e) => [
            (
                "server_list",
                own.server_list.clone(),
                Some(e.server_list.clone()),
                e.inherited_from.server_list.as_deref(),
            ),
            (
                "interval",
                own.interval.clone(),
                Some(e.interval.clone()),
                e.inherited_from.interval.as_deref(),
            ),
            (
                "randomize",
                own.randomize.clone(),
                Some(e.randomize.clone()),
                e.inherited_from.randomize.as_deref(),
            ),
            (
                "mode",
                own.mode.map(|m| shown(&m)),
                Some(shown(&e.mode)),
                e.inherited_from.mode.as_deref(),
            ),
            (
                "policy",
                own.policy.as_ref().map(shown),
                Some(shown(&e.policy)),
                e.inherited_from.policy.as_deref(),
            ),
        ],
        None => [
            ("server_list", own.server_list.clone(), None, None),
            ("interval", own.interval.clone(), None, None),
            ("randomize", own.randomize.clone(), None, None),
            ("mode", own.mode.map(|m| shown(&m)), None, None),
            ("policy", own.policy.as_ref().map(shown), None, None),
        ],
    };
    for (field, own_value, effective_value, from) in rows {
        println!(
            "  {field:<12} own: {:<24} effective: {}  (from {})",
            own_value.unwrap_or_else(|| "(inherit)".into()),
            effective_value.unwrap_or_else(|| "-".into()),
            or_dash(from)
        );
    }
}

pub fn group(target: &Target, command: GroupCommand) -> CodedResult {
    let client = target.client()?;
    match command {
        GroupCommand::Create { name, parent } => {
            let created: Group = client.post("/api/v1/groups", &NewGroup { name, parent })?;
            print(target, &created, |g| {
                println!("created {}", or_dash(g.path.as_deref()))
            })
        }
        GroupCommand::List => {
            let groups: Vec<Group> = client.get("/api/v1/groups")?;
            print(target, &groups, |list| {
                for g in list {
                    let e = g.effective.as_ref();
                    println!(
                        "{:<40} list {:<24} {:>5} {}",
                        or_dash(g.path.as_deref()),
                        or_dash(e.map(|e| e.server_list.as_str())),
                        or_dash(e.map(|e| e.interval.as_str())),
                        e.map_or("-".into(), |e| shown(&e.mode))
                    );
                }
            })
        }
        GroupCommand::Show { path } => {
            let id = group_id(&client, &path)?;
            let group: Group = client.get(&format!("/api/v1/groups/{id}"))?;
            print(target, &group, print_group)
        }
        GroupCommand::Set {
            path,
            server_list,
            interval,
            randomize,
            mode,
            policy,
            inherit,
            rename,
            accept_cut_off,
        } => {
            let id = group_id(&client, &path)?;
            let policy = match policy {
                Some(file) => {
                    let text = std::fs::read_to_string(&file)
                        .map_err(|e| format!("{}: {e}", file.display()))?;
                    match serde_json::from_str(&text)
                        .map_err(|e| format!("{}: not JSON: {e}", file.display()))?
                    {
                        serde_json::Value::Object(map) => Some(map),
                        _ => {
                            return Err(format!(
                                "{}: a policy document is a JSON object",
                                file.display()
                            )
                            .into())
                        }
                    }
                }
                None => None,
            };
            let patch = GroupPatch {
                name: rename,
                server_list,
                interval,
                randomize,
                mode: mode.map(|m| word("mode", &m)).transpose()?,
                policy,
                inherit: if inherit.is_empty() {
                    None
                } else {
                    Some(
                        inherit
                            .iter()
                            .map(|field| word("inherit", field))
                            .collect::<Result<_, _>>()?,
                    )
                },
                accept_cut_off,
            };
            let group: Group =
                client.send("PATCH", &format!("/api/v1/groups/{id}"), Some(&patch))?;
            print(target, &group, print_group)
        }
        GroupCommand::Move {
            path,
            parent,
            accept_cut_off,
        } => {
            let id = group_id(&client, &path)?;
            let group: Group = client.post(
                &format!("/api/v1/groups/{id}/move"),
                &MoveGroup {
                    parent,
                    accept_cut_off,
                },
            )?;
            print(target, &group, |g| {
                println!("moved to {}", or_dash(g.path.as_deref()))
            })
        }
        GroupCommand::Delete { path } => {
            let id = group_id(&client, &path)?;
            let deleted: Deleted =
                client.send::<(), _>("DELETE", &format!("/api/v1/groups/{id}"), None)?;
            print(target, &deleted, |_| println!("deleted {path}"))
        }
        GroupCommand::Token(command) => token(target, &client, command),
        GroupCommand::ExportSettings {
            path,
            out,
            uses,
            expires,
        } => {
            let id = group_id(&client, &path)?;
            // The file first (0600, it will hold a token): if it cannot be written, no token
            // is minted.
            ward_fs::write(&out, b"", 0o600).map_err(|e| format!("{}: {e}", out.display()))?;
            let exported: ExportedSettings = client.post(
                &format!("/api/v1/groups/{id}/export"),
                &ExportRequest {
                    uses: Some(uses as i64),
                    expires: Some(expires),
                },
            )?;
            let written = serde_json::to_string_pretty(&exported.package)
                .map_err(std::io::Error::other)
                .and_then(|text| ward_fs::write(&out, format!("{text}\n").as_bytes(), 0o600));
            if let Err(e) = written {
                // A package that was not kept must not leave a live token behind.
                if let Some(token_id) = exported.token_id {
                    let _: Result<RevokedToken, _> = client.send::<(), _>(
                        "POST",
                        &format!("/api/v1/tokens/{token_id}/revoke"),
                        None,
                    );
                }
                return Err(format!("{}: {e} (its token was revoked)", out.display()).into());
            }
            /// What `export-settings --json` says.
            #[derive(Serialize)]
            struct Exported {
                group: String,
                file: String,
            }
            let exported = Exported {
                group: path,
                file: out.display().to_string(),
            };
            print(target, &exported, |_| {
                println!(
                    "wrote {} (mode 0600; it holds an enrollment token)",
                    out.display()
                )
            })
        }
    }
}

fn token(target: &Target, client: &AdminClient, command: TokenCommand) -> CodedResult {
    match command {
        TokenCommand::Create {
            path,
            expires,
            uses,
            allow_http,
            accept_cut_off,
        } => {
            let token: Token = client.post(
                "/api/v1/tokens",
                &NewToken {
                    group: path,
                    expires,
                    uses: uses.map(|u| u as i64),
                    allow_http: Some(allow_http),
                    accept_cut_off: accept_cut_off.then_some(true),
                },
            )?;
            print(target, &token, |t| {
                println!("{}", or_dash(t.token.as_deref()));
                eprintln!(
                    "enrollment token {} for {} (shown once; expires {})",
                    t.id,
                    or_dash(t.group.as_deref()),
                    or_dash(t.expires.as_deref())
                );
                for warning in &t.warnings {
                    eprintln!("ward: warning: {warning}");
                }
            })
        }
        TokenCommand::List => {
            let tokens: Vec<Token> = client.get("/api/v1/tokens")?;
            print(target, &tokens, |list| {
                for t in list {
                    println!(
                        "{:>4} {:<40} expires {:<22} uses left {:<6} {}",
                        t.id,
                        or_dash(t.group.as_deref()),
                        or_dash(t.expires.as_deref()),
                        t.uses_left.map_or("any".into(), |u| u.to_string()),
                        if t.revoked { "revoked" } else { "" }
                    );
                }
            })
        }
        TokenCommand::Revoke { id } => {
            let revoked: RevokedToken =
                client.send::<(), _>("POST", &format!("/api/v1/tokens/{id}/revoke"), None)?;
            print(target, &revoked, |_| println!("revoked token {id}"))
        }
    }
}

// ---- server lists ------------------------------------------------------------------------

#[derive(Subcommand)]
pub enum ServerListCommand {
    /// Create a list: --server 'PRIORITY:PROTO://ADDRESS:PORT', repeated
    Create {
        name: String,
        #[arg(long = "server", value_name = "SPEC", required = true)]
        servers: Vec<String>,
    },
    /// Every list, by name, with its servers by priority and the groups that use it
    List,
    /// One list, with its servers by priority and the groups that use it
    Show { name: String },
    /// Replace a list's servers: --server 'PRIORITY:PROTO://ADDRESS:PORT', repeated. Refused
    /// (nothing changed) when agents of the groups using it would lose their last path
    Set {
        name: String,
        #[arg(long = "server", value_name = "SPEC", required = true)]
        servers: Vec<String>,
        /// Change it even though agents would lose their last path (audited)
        #[arg(long)]
        accept_cut_off: bool,
    },
    /// Delete a list no group uses
    Delete { name: String },
    /// Copy a list with every server on one protocol and port (the seed's HTTP 8014 list)
    Copy {
        name: String,
        new_name: String,
        #[arg(long, default_value = "http")]
        protocol: String,
        #[arg(long, default_value_t = 8014)]
        port: u16,
    },
}

fn print_list(list: &ServerList) {
    println!("{}", list.name);
    for server in &list.servers {
        println!("  priority {} {}", server.priority, server.url);
    }
    if !list.used_by.is_empty() {
        println!("  used by: {}", list.used_by.join(", "));
    }
}

pub fn server_list(target: &Target, command: ServerListCommand) -> CodedResult {
    let client = target.client()?;
    match command {
        ServerListCommand::Create { name, servers } => {
            let list: ServerList =
                client.post("/api/v1/serverlists", &NewServerList { name, servers })?;
            print(target, &list, print_list)
        }
        ServerListCommand::Set {
            name,
            servers,
            accept_cut_off,
        } => {
            let list: ServerList = client.send(
                "PUT",
                &format!("/api/v1/serverlists/{}", segment(&name)),
                Some(&ServerListEdit {
                    servers,
                    accept_cut_off,
                }),
            )?;
            print(target, &list, print_list)
        }
        ServerListCommand::List => {
            let lists: Vec<ServerList> = client.get("/api/v1/serverlists")?;
            print(target, &lists, |lists| lists.iter().for_each(print_list))
        }
        ServerListCommand::Show { name } => {
            let list: ServerList =
                client.get(&format!("/api/v1/serverlists/{}", segment(&name)))?;
            print(target, &list, print_list)
        }
        ServerListCommand::Delete { name } => {
            let deleted: Deleted = client.send::<(), _>(
                "DELETE",
                &format!("/api/v1/serverlists/{}", segment(&name)),
                None,
            )?;
            print(target, &deleted, |_| println!("deleted {name}"))
        }
        ServerListCommand::Copy {
            name,
            new_name,
            protocol,
            port,
        } => {
            let list: ServerList = client.post(
                &format!("/api/v1/serverlists/{}/copy", segment(&name)),
                &CopyList {
                    name: new_name,
                    protocol: Some(word("protocol", &protocol)?),
                    port: Some(port),
                },
            )?;
            print(target, &list, print_list)
        }
    }
}

// ---- agents ------------------------------------------------------------------------------

#[derive(Subcommand)]
pub enum AgentsCommand {
    /// List agents, with whether each is online, pending, and how it talks to the server
    List {
        /// Only this group and its subgroups
        #[arg(long)]
        group: Option<String>,
        /// Only agents that have not acknowledged their settings serial
        #[arg(long)]
        pending: bool,
        /// Only agents whose best TLS version is at most this (e.g. TLSv1.1)
        #[arg(long)]
        tls_max: Option<String>,
        /// Only agents online now (a held push check-in, or a pull check-in within the
        /// interval, its randomisation and a grace)
        #[arg(long, conflicts_with = "offline")]
        online: bool,
        /// Only agents offline now (the same rule)
        #[arg(long)]
        offline: bool,
        /// Only agents not seen for this long (e.g. 1h)
        #[arg(long, value_name = "DURATION")]
        silent_for: Option<String>,
        /// Only agents whose id or host name contains this (ASCII case ignored)
        #[arg(long, value_name = "TEXT")]
        search: Option<String>,
        /// The order (ties by id)
        #[arg(long, default_value = "id", value_parser = ["id", "hostname", "group", "online", "channel", "tls_version", "highest", "last_seen", "pending"])]
        sort: String,
        /// Reverse the order
        #[arg(long)]
        descending: bool,
        /// Skip this many agents of the order first (with --limit: one page)
        #[arg(long, value_name = "N")]
        offset: Option<u64>,
        /// At most this many agents
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
    },
    /// Retire agents: the server forgets them and refuses their check-ins from then on (an
    /// agent that comes back must enroll again)
    Delete {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// One agent, with its effective settings
    Show { id: String },
    /// Move agents to a group; refused (nothing moved) when the group's server list would leave
    /// an agent no path to a server, unless --accept-cut-off
    Move {
        #[arg(required = true)]
        ids: Vec<String>,
        #[arg(long)]
        group: String,
        /// Move them even so (audited with the agents it cuts off)
        #[arg(long)]
        accept_cut_off: bool,
    },
}

/// The TLS column: the version negotiated over HTTPS; over plain HTTP, the highest the agent
/// can speak (marked `max`), which is what a hardening plan needs to know.
fn tls_shown(agent: &Agent) -> String {
    if let Some(version) = &agent.tls_version {
        return version.clone();
    }
    match agent.tls_versions.iter().max_by_key(|v| version_rank(v)) {
        Some(best) => format!("max {best}"),
        None => "-".into(),
    }
}

fn version_rank(name: &str) -> u8 {
    ward_tls::TlsVersion::parse_loose(name).map_or(0, |v| v as u8 + 1)
}

/// `PATH?QUERY` with a typed query (nothing after `?` when it is empty).
pub fn with_query<Q: Serialize>(path: &str, query: &Q) -> Result<String, String> {
    let query = serde_urlencoded::to_string(query).map_err(|e| e.to_string())?;
    Ok(if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    })
}

pub fn agents(target: &Target, command: AgentsCommand) -> CodedResult {
    let client = target.client()?;
    match command {
        AgentsCommand::List {
            group,
            pending,
            tls_max,
            online,
            offline,
            silent_for,
            search,
            sort,
            descending,
            offset,
            limit,
        } => {
            let query = AgentsQuery {
                group,
                pending: pending.then_some(true),
                online: match (online, offline) {
                    (true, _) => Some(true),
                    (_, true) => Some(false),
                    _ => None,
                },
                tls_max: tls_max
                    .map(|max| {
                        ward_tls::TlsVersion::parse_loose(&max)
                            .ok_or_else(|| format!("--tls-max: '{max}' is not a TLS version"))
                            .and_then(|v| word("tls-max", v.name()))
                    })
                    .transpose()?,
                silent_for,
                search,
                stack: None,
                sort: Some(word("sort", &sort)?),
                descending: descending.then_some(true),
                offset: offset.map(|o| o as usize),
                limit: limit.map(|l| l as usize),
            };
            let agents: Vec<Agent> = client.get(&with_query("/api/v1/agents", &query)?)?;
            print(target, &agents, |list| {
                println!(
                    "{:<32} {:<20} {:<28} {:<7} {:<7} {:<7} {:<8} {:<20} SERIAL",
                    "ID", "NAME", "GROUP", "STATUS", "PENDING", "CHANNEL", "TLS", "LAST SEEN"
                );
                for a in list {
                    println!(
                        "{:<32} {:<20} {:<28} {:<7} {:<7} {:<7} {:<8} {:<20} {}/{}",
                        a.id,
                        a.hostname,
                        or_dash(a.group.as_deref()),
                        if a.reverted.is_some() {
                            "reverted"
                        } else if a.online {
                            "online"
                        } else {
                            "offline"
                        },
                        if a.pending { "yes" } else { "no" },
                        or_dash(a.channel.as_deref()),
                        tls_shown(a),
                        or_dash(a.last_seen.as_deref()),
                        a.acked_serial,
                        a.serial
                    );
                }
                for a in list {
                    if let Some(reverted) = &a.reverted {
                        println!(
                            "{} went back to the last settings that worked, refusing serial {}: \
                             {}",
                            a.id, reverted.serial, reverted.reason
                        );
                    }
                }
            })
        }
        AgentsCommand::Delete { ids } => {
            let deleted: DeletedAgents =
                client.post("/api/v1/agents/delete", &DeleteAgents { ids })?;
            print(target, &deleted, |d| {
                println!(
                    "retired {} agent(s); their check-ins are refused from now on",
                    d.deleted.len()
                )
            })
        }
        AgentsCommand::Show { id } => {
            let shown: Agent = client.get(&format!("/api/v1/agents/{}", segment(&id)))?;
            print(target, &shown, |a| println!("{}", pretty(a)))
        }
        AgentsCommand::Move {
            ids,
            group,
            accept_cut_off,
        } => {
            let moved: MovedAgents = client.post(
                "/api/v1/agents/move",
                &MoveAgents {
                    ids,
                    group,
                    accept_cut_off,
                },
            )?;
            print(target, &moved, |m| {
                println!(
                    "moved {} agent(s) to {}",
                    m.moved.len(),
                    or_dash(m.group.as_deref())
                )
            })
        }
    }
}

// ---- accounts and audit ------------------------------------------------------------------

#[derive(Subcommand)]
pub enum AccountCommand {
    /// Create an account; the password is read from standard input
    Create {
        name: String,
        /// admin or auditor
        #[arg(long)]
        role: String,
    },
    /// List accounts and their roles
    List,
    /// Delete an account; its sessions end at once
    Delete { name: String },
    /// Set an account's password (read from standard input); its sessions end at once
    Passwd { name: String },
    /// Disable an account: kept, refused at login, its sessions end at once
    Disable { name: String },
    /// Enable a disabled account
    Enable { name: String },
    /// End every session of an account (wherever it logged in)
    Revoke { name: String },
}

fn read_password() -> Result<String, String> {
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .map_err(|e| format!("reading the password: {e}"))?;
    Ok(password.trim_end_matches(['\n', '\r']).to_string())
}

fn account_path(name: &str, action: &str) -> String {
    format!("/api/v1/accounts/{}{action}", segment(name))
}

pub fn account(target: &Target, command: AccountCommand) -> CodedResult {
    let client = target.client()?;
    match command {
        AccountCommand::Create { name, role } => {
            let role = word("role", &role)?;
            let password = read_password()?;
            let created: CreatedAccount = client.post(
                "/api/v1/accounts",
                &NewAccount {
                    name,
                    password,
                    role,
                },
            )?;
            print(target, &created, |a| {
                println!("created {} ({})", a.name, shown(&a.role))
            })
        }
        AccountCommand::List => {
            let accounts: Vec<AccountInfo> = client.get("/api/v1/accounts")?;
            print(target, &accounts, |list| {
                println!("{:<32} ROLE", "NAME");
                for a in list {
                    let disabled = if a.disabled { " (disabled)" } else { "" };
                    println!("{:<32} {}{disabled}", a.name, shown(&a.role));
                }
            })
        }
        AccountCommand::Delete { name } => {
            let deleted: Deleted =
                client.send::<(), _>("DELETE", &account_path(&name, ""), None)?;
            print(target, &deleted, |_| {
                println!("deleted {name}; its sessions ended")
            })
        }
        AccountCommand::Passwd { name } => {
            let password = read_password()?;
            let changed: AccountChanged =
                client.post(&account_path(&name, "/password"), &NewPassword { password })?;
            print(target, &changed, |_| {
                println!("password of {name} changed; its sessions ended")
            })
        }
        AccountCommand::Disable { name } => {
            let done: AccountChanged =
                client.send::<(), _>("POST", &account_path(&name, "/disable"), None)?;
            print(target, &done, |_| {
                println!("disabled {name}; its sessions ended")
            })
        }
        AccountCommand::Enable { name } => {
            let done: AccountChanged =
                client.send::<(), _>("POST", &account_path(&name, "/enable"), None)?;
            print(target, &done, |_| println!("enabled {name}"))
        }
        AccountCommand::Revoke { name } => {
            let done: AccountChanged =
                client.send::<(), _>("POST", &account_path(&name, "/revoke"), None)?;
            print(target, &done, |_| println!("every session of {name} ended"))
        }
    }
}

/// `ward logout`: ends the saved session on the server, then forgets it here.
pub fn logout(json: bool) -> CodedResult {
    let client = AdminClient::saved()?;
    let ended = client.send::<(), LoggedOut>("DELETE", "/api/v1/session", None);
    AdminClient::forget_saved()?;
    match ended {
        Ok(value) if json => println!("{}", pretty(&value)),
        Ok(_) => println!("logged out: the session is ended and forgotten"),
        // Expired or revoked already: forgotten here all the same.
        Err(error) => println!("the session was already over ({error}); forgotten"),
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct AuditArgs {
    /// How far back (e.g. 24h); everything when absent
    #[arg(long)]
    since: Option<String>,
    #[arg(long, default_value_t = 1000)]
    limit: u64,
}

pub fn audit(target: &Target, args: AuditArgs) -> CodedResult {
    let client = target.client()?;
    let query = AuditQuery {
        since: args.since,
        limit: Some(args.limit as usize),
    };
    let entries: Vec<AuditEntry> = client.get(&with_query("/api/v1/audit", &query)?)?;
    print(target, &entries, |list| {
        for e in list {
            println!("{} {:<14} {:<18} {}", e.at, e.actor, e.action, e.target);
        }
    })
}
