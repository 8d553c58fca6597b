//! `ward.toml`: the server's own settings (listener addresses, database, intervals, limits).
//! TLS settings are not here: they live in the Apache-style conf files, as in the seed.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// The three listeners of the seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Port 8445, `ssl.conf`: the admin API and the web console. Never the agent API.
    Console,
    /// Port 443, `sslforclients.conf`: the HTTPS agent API.
    Clients,
    /// Port 8014: the plain-HTTP agent API for legacy agents.
    ClientsHttp,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Console, Role::Clients, Role::ClientsHttp];

    pub fn name(self) -> &'static str {
        match self {
            Role::Console => "console",
            Role::Clients => "clients",
            Role::ClientsHttp => "clients-http",
        }
    }

    /// The command-line flag that overrides this listener's address.
    pub fn flag(self) -> &'static str {
        match self {
            Role::Console => "--console-addr",
            Role::Clients => "--clients-addr",
            Role::ClientsHttp => "--clients-http-addr",
        }
    }

    /// The `[listeners]` key in ward.toml.
    pub fn toml_key(self) -> &'static str {
        match self {
            Role::Console => "console",
            Role::Clients => "clients",
            Role::ClientsHttp => "clients_http",
        }
    }

    pub fn is_tls(self) -> bool {
        self != Role::ClientsHttp
    }

    /// Whether the agent API is served here. Never on the console.
    pub fn serves_agent_api(self) -> bool {
        self != Role::Console
    }

    /// Whether the admin API is served here. Only on the console.
    pub fn serves_admin_api(self) -> bool {
        self == Role::Console
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub console: SocketAddr,
    pub clients: SocketAddr,
    pub clients_http: SocketAddr,
    pub database: String,
    pub agent_interval: Duration,
    pub agent_randomize: Duration,
    pub limits: Limits,
    /// Failed handshakes recorded one by one per second at most; the rest are only counted.
    pub failures_per_second: u32,
    /// Telemetry older than this is deleted.
    pub telemetry_retention: Duration,
    /// Renew the server certificates by themselves 30 days before they expire.
    pub auto_renew_certificates: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Concurrent connections per listener; beyond it a connection gets a 503. The server
    /// lowers it to fit its open-file limit (see [`connection_caps`]).
    pub max_connections: usize,
    /// Concurrent connections from one address (IPv6: one /64) per listener.
    pub max_connections_per_address: usize,
    pub handshake_timeout: Duration,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_body_bytes: usize,
    /// Largest body of an enrollment and of a check-in: read before the agent is
    /// authenticated, so small (a real check-in is about 200 bytes).
    pub enroll_body_bytes: usize,
    pub checkin_body_bytes: usize,
    /// How long SIGTERM waits for in-flight requests.
    pub shutdown_grace: Duration,
}

impl Config {
    pub fn address(&self, role: Role) -> SocketAddr {
        match role {
            Role::Console => self.console,
            Role::Clients => self.clients,
            Role::ClientsHttp => self.clients_http,
        }
    }

    pub fn set_address(&mut self, role: Role, address: SocketAddr) {
        match role {
            Role::Console => self.console = address,
            Role::Clients => self.clients = address,
            Role::ClientsHttp => self.clients_http = address,
        }
    }
}

/// The file `ward server init` writes, with the seed's ports.
pub fn default_toml(addresses: [SocketAddr; 3]) -> String {
    format!(
        r#"# ward server settings. TLS settings are in conf/ssl/ssl.conf (console) and
# conf/ssl/sslforclients.conf (clients), in Apache's syntax.
# Check with `ward server configtest`, apply listener TLS changes with `ward server reload`.
# Changing an address here needs a restart; --console-addr, --clients-addr and
# --clients-http-addr override these for one run.

[listeners]
# HTTPS admin API and web console (the seed's port 8445, TLS from conf/ssl/ssl.conf).
console = "{}"
# HTTPS agent API (the seed's port 443, TLS from conf/ssl/sslforclients.conf).
clients = "{}"
# Plain-HTTP agent API for legacy agents that cannot speak a modern TLS (the seed's port 8014).
clients_http = "{}"

[database]
# SQLite file, relative to the data directory.
path = "ward.db"

[agents]
# Default check-in interval and randomisation window for the root group.
interval = "5m"
randomize = "1m"

[limits]
# Concurrent connections per listener; beyond it new connections get 503 Service Unavailable.
# Every held push agent keeps one. ward raises its open-file limit to the hard limit at start
# and lowers these to fit it, always keeping room for the console (a tenth); the two agent
# listeners share the rest (see the start-up log line "open files").
max_connections = 100000
# Concurrent connections from one address (an IPv6 /64) per listener that have not yet
# carried a verified check-in; once one has, it counts against its agent (one held push
# check-in each), so thousands of agents behind one NAT address are not refused.
max_connections_per_address = 1000
# A client must finish its TLS handshake, and send each request's headers, within these.
handshake_timeout = "10s"
header_timeout = "10s"
# A keep-alive connection with no traffic for this long is closed.
idle_timeout = "60s"
# Largest admin API request body, in bytes (read once the caller is authenticated).
max_body_bytes = 1048576
# Largest enrollment and check-in bodies, in bytes: read before the agent's MAC is checked,
# so kept small (a real check-in is about 200 bytes, an enrollment about 600).
enroll_body_bytes = 16384
checkin_body_bytes = 16384
# On SIGTERM, in-flight requests get this long to finish.
shutdown_grace = "10s"

[telemetry]
# Failed TLS handshakes recorded individually per second at most; the rest are counted.
failures_per_second = 50
# Telemetry older than this is deleted (checked every hour).
retention = "30d"

[certificates]
# Re-issue the server certificates from ward's CA, and reload, when one has fewer than 30
# days left (checked every 6 hours); `ward server renew-cert` does it by hand.
auto_renew = true
"#,
        addresses[0], addresses[1], addresses[2]
    )
}

pub const DEFAULT_ADDRESSES: [&str; 3] = ["0.0.0.0:8445", "0.0.0.0:443", "0.0.0.0:8014"];

/// The seed's listener addresses, in `Role::ALL` order.
pub fn default_addresses() -> [SocketAddr; 3] {
    DEFAULT_ADDRESSES.map(|a| a.parse().expect("valid default address"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listeners: Listeners,
    #[serde(default)]
    database: Database,
    #[serde(default)]
    agents: Agents,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default)]
    telemetry: Telemetry,
    #[serde(default)]
    certificates: Certificates,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Certificates {
    auto_renew: bool,
}

impl Default for Certificates {
    fn default() -> Certificates {
        Certificates { auto_renew: true }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Listeners {
    console: String,
    clients: String,
    clients_http: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Database {
    path: String,
}

impl Default for Database {
    fn default() -> Database {
        Database {
            path: "ward.db".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Agents {
    interval: String,
    randomize: String,
}

impl Default for Agents {
    fn default() -> Agents {
        Agents {
            interval: "5m".into(),
            randomize: "1m".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct LimitsFile {
    max_connections: usize,
    max_connections_per_address: usize,
    handshake_timeout: String,
    header_timeout: String,
    idle_timeout: String,
    max_body_bytes: usize,
    enroll_body_bytes: usize,
    checkin_body_bytes: usize,
    shutdown_grace: String,
}

impl Default for LimitsFile {
    fn default() -> LimitsFile {
        LimitsFile {
            max_connections: 100_000,
            max_connections_per_address: 1000,
            handshake_timeout: "10s".into(),
            header_timeout: "10s".into(),
            idle_timeout: "60s".into(),
            max_body_bytes: 1 << 20,
            enroll_body_bytes: 16 << 10,
            checkin_body_bytes: 16 << 10,
            shutdown_grace: "10s".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Telemetry {
    failures_per_second: u32,
    retention: String,
}

impl Default for Telemetry {
    fn default() -> Telemetry {
        Telemetry {
            failures_per_second: 50,
            retention: "30d".into(),
        }
    }
}

/// A ward.toml problem, named `file:line: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Reads and checks ward.toml.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        line: None,
        message: e.to_string(),
    })?;
    parse(&path.display().to_string(), &text)
}

/// Parses ward.toml's text; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
    let error_at = |offset: Option<usize>, message: String| ConfigError {
        file: file.to_string(),
        line: offset.map(|o| text[..o.min(text.len())].matches('\n').count() + 1),
        message,
    };
    let parsed: File = toml::from_str(text).map_err(|e| {
        error_at(
            e.span().map(|s| s.start),
            e.message().trim_end_matches('\n').to_string(),
        )
    })?;
    // Values are checked after parsing; point at the line that holds the key.
    let line_of = |key: &str| {
        text.lines()
            .position(|l| {
                let l = l.trim_start();
                l.starts_with(key) && l[key.len()..].trim_start().starts_with('=')
            })
            .map(|i| i + 1)
    };
    let invalid = |key: &str, message: String| ConfigError {
        file: file.to_string(),
        line: line_of(key),
        message: format!("{key}: {message}"),
    };
    let address = |key: &str, value: &str| {
        value.parse::<SocketAddr>().map_err(|_| {
            invalid(
                key,
                format!("'{value}' is not an address:port (e.g. 0.0.0.0:8445 or [::]:443)"),
            )
        })
    };
    let duration =
        |key: &str, value: &str| parse_duration(value).map_err(|message| invalid(key, message));
    let positive = |key: &str, value: &str| {
        let duration = duration(key, value)?;
        if duration.is_zero() {
            return Err(invalid(key, "must be more than 0s".into()));
        }
        Ok(duration)
    };
    let limits = &parsed.limits;
    if limits.max_connections == 0 {
        return Err(invalid("max_connections", "must be at least 1".into()));
    }
    // An engine this build does not have is refused here, with the line, not at open.
    ward_store::Database::from_setting(&parsed.database.path, std::path::Path::new(".")).map_err(
        |e| {
            invalid(
                "path",
                e.to_string().trim_start_matches("database: ").into(),
            )
        },
    )?;
    Ok(Config {
        console: address("console", &parsed.listeners.console)?,
        clients: address("clients", &parsed.listeners.clients)?,
        clients_http: address("clients_http", &parsed.listeners.clients_http)?,
        database: parsed.database.path,
        agent_interval: positive("interval", &parsed.agents.interval)?,
        agent_randomize: duration("randomize", &parsed.agents.randomize)?,
        limits: Limits {
            max_connections: limits.max_connections,
            max_connections_per_address: limits.max_connections_per_address.max(1),
            handshake_timeout: positive("handshake_timeout", &limits.handshake_timeout)?,
            header_timeout: positive("header_timeout", &limits.header_timeout)?,
            idle_timeout: positive("idle_timeout", &limits.idle_timeout)?,
            max_body_bytes: limits.max_body_bytes,
            enroll_body_bytes: limits.enroll_body_bytes,
            checkin_body_bytes: limits.checkin_body_bytes,
            shutdown_grace: duration("shutdown_grace", &limits.shutdown_grace)?,
        },
        failures_per_second: parsed.telemetry.failures_per_second,
        telemetry_retention: positive("retention", &parsed.telemetry.retention)?,
        auto_renew_certificates: parsed.certificates.auto_renew,
    })
}

/// How many connections each listener may hold, sized to the process's open-file limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionCaps {
    pub console: usize,
    /// The two agent listeners (clients, clients-http) together: one pool, so a fleet that
    /// is all on HTTPS (or all on plain HTTP) can use all of it.
    pub agents: usize,
    /// One agent listener at most (`max_connections`, within `agents`).
    pub agent_listener: usize,
    /// Over-cap connections answered with a 503 at once, per listener (beyond: closed).
    pub refusals: usize,
}

impl ConnectionCaps {
    /// The cap of one listener (an agent listener's connections also count in `agents`).
    pub fn of(&self, role: Role) -> usize {
        match role {
            Role::Console => self.console,
            Role::Clients | Role::ClientsHttp => self.agent_listener,
        }
    }
}

/// Files the server keeps for itself whatever the load: the database and its journal, logs,
/// conf and certificate reads, the agents' and admins' sockets' bookkeeping.
pub const FILES_RESERVED: usize = 64;

/// The connection caps for `open_files` (the soft limit once raised): each listener gets at
/// most `max_connections`, the agent listeners share what the console leaves, and together
/// they never take the last descriptors, so the console (which gets its share first: a
/// tenth, at least 16) always answers however the agent listeners are flooded.
pub fn connection_caps(open_files: usize, max_connections: usize) -> ConnectionCaps {
    let budget = open_files.saturating_sub(FILES_RESERVED);
    let refusals = (budget / 32).clamp(1, 256);
    let budget = budget.saturating_sub(3 * refusals);
    let console = max_connections
        .min((budget / 10).max(16))
        .min(budget)
        .max(1);
    let agents = budget
        .saturating_sub(console)
        .min(2 * max_connections)
        .max(1);
    ConnectionCaps {
        console,
        agents,
        agent_listener: max_connections.min(agents).max(1),
        refusals,
    }
}

/// Durations in ward.toml, the admin API and the agent protocol: one codec, ward-proto's.
pub use ward_proto::duration::{format as format_duration, parse as parse_duration};

#[cfg(test)]
mod tests;
