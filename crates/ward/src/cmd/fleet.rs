//! `ward login`, `ward group ...`, `ward serverlist ...`, `ward client ...`, `ward account`,
//! `ward audit`: clients of the admin API. On the server host `--data DIR` uses the local
//! admin token; elsewhere, what `ward login` saved.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

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

fn print(target: &Target, value: &Value, human: impl FnOnce(&Value)) -> CodedResult {
    if target.json {
        println!("{value:#}");
    } else {
        human(value);
    }
    Ok(ExitCode::SUCCESS)
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or("-")
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
    if args.json {
        println!(
            "{:#}",
            json!({"user": reply["user"], "role": reply["role"], "expires": reply["expires"]})
        );
    } else {
        println!(
            "logged in to {} as {} ({}) until {}",
            args.server,
            text(&reply, "user"),
            text(&reply, "role"),
            text(&reply, "expires")
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
    },
    /// List tokens (never the tokens themselves)
    List,
    /// Revoke a token by id
    Revoke { id: i64 },
}

/// The group id behind a path.
fn group_id(client: &AdminClient, path: &str) -> Result<i64, String> {
    let groups = client.call("GET", "/api/v1/groups", None)?;
    groups
        .as_array()
        .into_iter()
        .flatten()
        .find(|g| g["path"] == path)
        .and_then(|g| g["id"].as_i64())
        .ok_or_else(|| format!("no group '{path}'"))
}

fn print_group(group: &Value) {
    println!("{}", text(group, "path"));
    let own = &group["own"];
    let effective = &group["effective"];
    for field in ["server_list", "interval", "randomize", "mode", "policy"] {
        let own_value = match &own[field] {
            Value::Null => "(inherit)".to_string(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let effective_value = match &effective[field] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        println!(
            "  {field:<12} own: {own_value:<24} effective: {effective_value}  (from {})",
            text(&effective["inherited_from"], field)
        );
    }
}

pub fn group(target: &Target, command: GroupCommand) -> CodedResult {
    let client = target.client()?;
    match command {
        GroupCommand::Create { name, parent } => {
            let created = client.call(
                "POST",
                "/api/v1/groups",
                Some(&json!({"name": name, "parent": parent})),
            )?;
            print(target, &created, |g| {
                println!("created {}", text(g, "path"))
            })
        }
        GroupCommand::List => {
            let groups = client.call("GET", "/api/v1/groups", None)?;
            let list: Vec<Value> = groups
                .as_array()
                .into_iter()
                .flatten()
                .map(|g| json!({"path": g["path"], "name": g["name"], "parent": g["parent"], "id": g["id"], "effective": g["effective"]}))
                .collect();
            print(target, &Value::Array(list), |list| {
                for g in list.as_array().into_iter().flatten() {
                    let e = &g["effective"];
                    println!(
                        "{:<40} list {:<24} {:>5} {}",
                        text(g, "path"),
                        text(e, "server_list"),
                        text(e, "interval"),
                        text(e, "mode")
                    );
                }
            })
        }
        GroupCommand::Show { path } => {
            let id = group_id(&client, &path)?;
            let group = client.call("GET", &format!("/api/v1/groups/{id}"), None)?;
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
            let mut body = json!({});
            if accept_cut_off {
                body["accept_cut_off"] = json!(true);
            }
            if let Some(v) = server_list {
                body["server_list"] = json!(v);
            }
            if let Some(v) = interval {
                body["interval"] = json!(v);
            }
            if let Some(v) = randomize {
                body["randomize"] = json!(v);
            }
            if let Some(v) = mode {
                body["mode"] = json!(v);
            }
            if let Some(file) = policy {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| format!("{}: {e}", file.display()))?;
                body["policy"] = serde_json::from_str(&text)
                    .map_err(|e| format!("{}: not JSON: {e}", file.display()))?;
            }
            if !inherit.is_empty() {
                body["inherit"] = json!(inherit);
            }
            if let Some(v) = rename {
                body["name"] = json!(v);
            }
            let group = client.call("PATCH", &format!("/api/v1/groups/{id}"), Some(&body))?;
            print(target, &group, print_group)
        }
        GroupCommand::Move {
            path,
            parent,
            accept_cut_off,
        } => {
            let id = group_id(&client, &path)?;
            let group = client.call(
                "POST",
                &format!("/api/v1/groups/{id}/move"),
                Some(&json!({"parent": parent, "accept_cut_off": accept_cut_off})),
            )?;
            print(target, &group, |g| println!("moved to {}", text(g, "path")))
        }
        GroupCommand::Delete { path } => {
            let id = group_id(&client, &path)?;
            let deleted = client.call("DELETE", &format!("/api/v1/groups/{id}"), None)?;
            print(target, &deleted, |_| println!("deleted {path}"))
        }
        GroupCommand::Token(command) => token(target, &client, command),
        GroupCommand::ExportSettings {
            path,
            out,
            uses,
            expires,
        } => {
            use std::os::unix::fs::PermissionsExt;
            let id = group_id(&client, &path)?;
            // The file first (0600, it will hold a token): if it cannot be written, no token
            // is minted.
            std::fs::write(&out, b"").map_err(|e| format!("{}: {e}", out.display()))?;
            std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| format!("{}: {e}", out.display()))?;
            let mut package = client.call(
                "POST",
                &format!("/api/v1/groups/{id}/export"),
                Some(&serde_json::json!({"uses": uses, "expires": expires})),
            )?;
            let token_id = package
                .as_object_mut()
                .and_then(|p| p.remove("token_id"))
                .and_then(|id| id.as_i64());
            if let Err(e) = std::fs::write(&out, format!("{package:#}\n")) {
                // A package that was not kept must not leave a live token behind.
                if let Some(token_id) = token_id {
                    let _ = client.call("POST", &format!("/api/v1/tokens/{token_id}/revoke"), None);
                }
                return Err(format!("{}: {e} (its token was revoked)", out.display()).into());
            }
            print(
                target,
                &serde_json::json!({"group": path, "file": out.display().to_string()}),
                |_| {
                    println!(
                        "wrote {} (mode 0600; it holds an enrollment token)",
                        out.display()
                    )
                },
            )
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
        } => {
            let body =
                json!({"group": path, "expires": expires, "uses": uses, "allow_http": allow_http});
            let token = client.call("POST", "/api/v1/tokens", Some(&body))?;
            print(target, &token, |t| {
                println!("{}", text(t, "token"));
                eprintln!(
                    "enrollment token {} for {} (shown once; expires {})",
                    t["id"],
                    text(t, "group"),
                    text(t, "expires")
                );
            })
        }
        TokenCommand::List => {
            let tokens = client.call("GET", "/api/v1/tokens", None)?;
            print(target, &tokens, |list| {
                for t in list.as_array().into_iter().flatten() {
                    println!(
                        "{:>4} {:<40} expires {:<22} uses left {:<6} {}",
                        t["id"],
                        text(t, "group"),
                        text(t, "expires"),
                        t["uses_left"],
                        if t["revoked"] == true { "revoked" } else { "" }
                    );
                }
            })
        }
        TokenCommand::Revoke { id } => {
            let revoked = client.call("POST", &format!("/api/v1/tokens/{id}/revoke"), None)?;
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
    List,
    Show {
        name: String,
    },
    /// Delete a list no group uses
    Delete {
        name: String,
    },
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

fn print_list(list: &Value) {
    println!("{}", text(list, "name"));
    for server in list["servers"].as_array().into_iter().flatten() {
        println!("  priority {} {}", server["priority"], text(server, "url"));
    }
    let used: Vec<&str> = list["used_by"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !used.is_empty() {
        println!("  used by: {}", used.join(", "));
    }
}

pub fn server_list(target: &Target, command: ServerListCommand) -> CodedResult {
    let client = target.client()?;
    match command {
        ServerListCommand::Create { name, servers } => {
            let list = client.call(
                "POST",
                "/api/v1/serverlists",
                Some(&json!({"name": name, "servers": servers})),
            )?;
            print(target, &list, print_list)
        }
        ServerListCommand::List => {
            let lists = client.call("GET", "/api/v1/serverlists", None)?;
            print(target, &lists, |lists| {
                lists.as_array().into_iter().flatten().for_each(print_list)
            })
        }
        ServerListCommand::Show { name } => {
            let list = client.call(
                "GET",
                &format!("/api/v1/serverlists/{}", segment(&name)),
                None,
            )?;
            print(target, &list, print_list)
        }
        ServerListCommand::Delete { name } => {
            let deleted = client.call(
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
            let list = client.call(
                "POST",
                &format!("/api/v1/serverlists/{}/copy", segment(&name)),
                Some(&json!({"name": new_name, "protocol": protocol, "port": port})),
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
        #[arg(long)]
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
fn tls_shown(client: &Value) -> String {
    if let Some(version) = client["tls_version"].as_str() {
        return version.to_string();
    }
    match client["tls_versions"].as_array().and_then(|v| {
        v.iter()
            .filter_map(Value::as_str)
            .max_by_key(|v| version_rank(v))
    }) {
        Some(best) => format!("max {best}"),
        None => "-".into(),
    }
}

fn version_rank(name: &str) -> u8 {
    ward_tls::TlsVersion::parse_loose(name).map_or(0, |v| v as u8 + 1)
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", segment(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
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
            limit,
        } => {
            let presence = match (online, offline) {
                (true, _) => Some("true".to_string()),
                (_, true) => Some("false".to_string()),
                _ => None,
            };
            let path = format!(
                "/api/v1/agents{}",
                query(&[
                    ("group", group),
                    ("pending", pending.then(|| "true".to_string())),
                    ("online", presence),
                    ("tls_max", tls_max),
                    ("silent_for", silent_for),
                    ("limit", limit.map(|l| l.to_string())),
                ])
            );
            let clients = client.call("GET", &path, None)?;
            print(target, &clients, |list| {
                println!(
                    "{:<32} {:<20} {:<28} {:<7} {:<7} {:<7} {:<8} {:<20} SERIAL",
                    "ID", "NAME", "GROUP", "STATUS", "PENDING", "CHANNEL", "TLS", "LAST SEEN"
                );
                for c in list.as_array().into_iter().flatten() {
                    println!(
                        "{:<32} {:<20} {:<28} {:<7} {:<7} {:<7} {:<8} {:<20} {}/{}",
                        text(c, "id"),
                        text(c, "hostname"),
                        text(c, "group"),
                        if c["online"] == true {
                            "online"
                        } else {
                            "offline"
                        },
                        if c["pending"] == true { "yes" } else { "no" },
                        text(c, "channel"),
                        tls_shown(c),
                        text(c, "last_seen"),
                        c["acked_serial"],
                        c["serial"]
                    );
                }
            })
        }
        AgentsCommand::Delete { ids } => {
            let deleted =
                client.call("POST", "/api/v1/agents/delete", Some(&json!({"ids": ids})))?;
            print(target, &deleted, |d| {
                println!(
                    "retired {} agent(s); their check-ins are refused from now on",
                    d["deleted"].as_array().map_or(0, Vec::len)
                )
            })
        }
        AgentsCommand::Show { id } => {
            let shown = client.call("GET", &format!("/api/v1/agents/{}", segment(&id)), None)?;
            print(target, &shown, |c| println!("{c:#}"))
        }
        AgentsCommand::Move {
            ids,
            group,
            accept_cut_off,
        } => {
            let moved = client.call(
                "POST",
                "/api/v1/agents/move",
                Some(&json!({"ids": ids, "group": group, "accept_cut_off": accept_cut_off})),
            )?;
            print(target, &moved, |m| {
                println!("moved {} agent(s) to {}", ids.len(), text(m, "group"))
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

pub fn account(target: &Target, command: AccountCommand) -> CodedResult {
    let client = target.client()?;
    match command {
        AccountCommand::Create { name, role } => {
            let password = read_password()?;
            let created = client.call(
                "POST",
                "/api/v1/accounts",
                Some(&json!({"name": name, "password": password, "role": role})),
            )?;
            print(target, &created, |a| {
                println!("created {} ({})", text(a, "name"), text(a, "role"))
            })
        }
        AccountCommand::List => {
            let accounts = client.call("GET", "/api/v1/accounts", None)?;
            print(target, &accounts, |list| {
                println!("{:<32} ROLE", "NAME");
                for a in list.as_array().into_iter().flatten() {
                    println!("{:<32} {}", text(a, "name"), text(a, "role"));
                }
            })
        }
        AccountCommand::Delete { name } => {
            let deleted = client.call(
                "DELETE",
                &format!("/api/v1/accounts/{}", segment(&name)),
                None,
            )?;
            print(target, &deleted, |_| {
                println!("deleted {name}; its sessions ended")
            })
        }
        AccountCommand::Passwd { name } => {
            let password = read_password()?;
            let changed = client.call(
                "POST",
                &format!("/api/v1/accounts/{}/password", segment(&name)),
                Some(&json!({"password": password})),
            )?;
            print(target, &changed, |_| {
                println!("password of {name} changed; its sessions ended")
            })
        }
        AccountCommand::Disable { name } => {
            let done = client.call(
                "POST",
                &format!("/api/v1/accounts/{}/disable", segment(&name)),
                None,
            )?;
            print(target, &done, |_| {
                println!("disabled {name}; its sessions ended")
            })
        }
        AccountCommand::Enable { name } => {
            let done = client.call(
                "POST",
                &format!("/api/v1/accounts/{}/enable", segment(&name)),
                None,
            )?;
            print(target, &done, |_| println!("enabled {name}"))
        }
        AccountCommand::Revoke { name } => {
            let done = client.call(
                "POST",
                &format!("/api/v1/accounts/{}/revoke", segment(&name)),
                None,
            )?;
            print(target, &done, |_| println!("every session of {name} ended"))
        }
    }
}

/// `ward logout`: ends the saved session on the server, then forgets it here.
pub fn logout(json: bool) -> CodedResult {
    let client = AdminClient::saved()?;
    let ended = client.call("DELETE", "/api/v1/session", None);
    AdminClient::forget_saved()?;
    match ended {
        Ok(value) if json => println!("{value:#}"),
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
    let path = format!(
        "/api/v1/audit{}",
        query(&[
            ("since", args.since),
            ("limit", Some(args.limit.to_string()))
        ])
    );
    let entries = client.call("GET", &path, None)?;
    print(target, &entries, |list| {
        for e in list.as_array().into_iter().flatten() {
            println!(
                "{} {:<14} {:<18} {}",
                text(e, "at"),
                text(e, "actor"),
                text(e, "action"),
                text(e, "target")
            );
        }
    })
}
