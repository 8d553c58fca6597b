//! The server's life: start (bind the three listeners), accept, reload, shut down.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpSocket};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Semaphore;
use tracing::{error, info, warn};
use ward_tls::Severity;

use crate::config::{self, Role};
use crate::conn;
use crate::datadir::DataDir;
use crate::listener_tls::Finding;
use crate::state::{App, OpenError, Reloaded};

/// Why the server did not start, or stopped.
#[derive(Debug)]
pub enum ServerError {
    Config(String),
    /// One of the conf files has errors; every finding is listed.
    Tls(Vec<Finding>),
    Bind {
        role: Role,
        address: SocketAddr,
        error: io::Error,
    },
    Other(String),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Config(message) | ServerError::Other(message) => f.write_str(message),
            ServerError::Tls(findings) => {
                f.write_str("the TLS settings have errors:")?;
                for finding in findings.iter().filter(|f| f.severity == Severity::Error) {
                    write!(f, "\n  {}", finding.text)?;
                }
                Ok(())
            }
            ServerError::Bind {
                role,
                address,
                error,
            } => {
                let fix = match error.kind() {
                    io::ErrorKind::PermissionDenied => format!(
                        "ports below 1024 need root or CAP_NET_BIND_SERVICE; choose another port with \
                         {} or in [listeners] {} of ward.toml (e.g. {}:{})",
                        role.flag(),
                        role.toml_key(),
                        address.ip(),
                        match role {
                            Role::Clients => 8443,
                            _ => address.port().max(1024),
                        }
                    ),
                    io::ErrorKind::AddrInUse => format!(
                        "another process listens there (see `ss -ltnp 'sport = :{}'`); stop it, or \
                         choose another address with {}",
                        address.port(),
                        role.flag()
                    ),
                    io::ErrorKind::AddrNotAvailable => format!(
                        "this host has no such address; use one of its addresses or 0.0.0.0 with {}",
                        role.flag()
                    ),
                    _ => format!("check the address, or choose another with {}", role.flag()),
                };
                write!(
                    f,
                    "cannot listen on {address} for the {role} listener: {error}: {fix}"
                )
            }
        }
    }
}

impl std::error::Error for ServerError {}

impl From<OpenError> for ServerError {
    fn from(error: OpenError) -> ServerError {
        match error {
            OpenError::Tls(findings) => ServerError::Tls(findings),
            OpenError::Other(message) => ServerError::Other(message),
        }
    }
}

/// Command-line overrides of ward.toml's listener addresses and database.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub console: Option<SocketAddr>,
    pub clients: Option<SocketAddr>,
    pub clients_http: Option<SocketAddr>,
    /// `--database` / `WARD_DATABASE`: a `postgres://` URL (or an SQLite path) in place of
    /// ward.toml's `[database] path`. The place for a URL with a password: an environment
    /// file only the service reads, not ward.toml, which others may read.
    pub database: Option<String>,
}

impl Overrides {
    pub fn get(&self, role: Role) -> Option<SocketAddr> {
        match role {
            Role::Console => self.console,
            Role::Clients => self.clients,
            Role::ClientsHttp => self.clients_http,
        }
    }
}

/// The addresses to write into a new ward.toml: the overrides, else the seed's ports.
pub fn init_addresses(overrides: &Overrides) -> [SocketAddr; 3] {
    let mut addresses = config::default_addresses();
    for (index, role) in Role::ALL.into_iter().enumerate() {
        if let Some(address) = overrides.get(role) {
            addresses[index] = address;
        }
    }
    addresses
}

/// Checks that every address can be listened on, without keeping it: a first start that
/// would fail (a port in use) says so before it initialises the data dir.
pub fn check_addresses(addresses: &[SocketAddr; 3]) -> Result<(), ServerError> {
    for (role, address) in Role::ALL.into_iter().zip(addresses) {
        std::net::TcpListener::bind(address).map_err(|error| ServerError::Bind {
            role,
            address: *address,
            error,
        })?;
    }
    Ok(())
}

/// A socket bound to `address`, not listening yet: nothing connects before the pid file says
/// who serves.
fn bind(role: Role, address: SocketAddr) -> Result<TcpSocket, ServerError> {
    let bind_error = |error| ServerError::Bind {
        role,
        address,
        error,
    };
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(bind_error)?;
    socket.set_reuseaddr(true).map_err(bind_error)?;
    socket.bind(address).map_err(bind_error)?;
    Ok(socket)
}

/// Starts the server on an initialised data dir and runs until SIGTERM or SIGINT, without a web
/// console (its pages answer 404).
pub async fn run(data: DataDir, overrides: Overrides) -> Result<(), ServerError> {
    run_with(data, overrides, None).await
}

/// [`run`], with `web` serving the console listener's pages.
pub async fn run_with(
    data: DataDir,
    overrides: Overrides,
    web: Option<Arc<dyn crate::state::WebConsole>>,
) -> Result<(), ServerError> {
    // Signal handlers first: a SIGTERM that arrives once the ports are open must find them.
    let mut hangup = signal(SignalKind::hangup()).map_err(|e| ServerError::Other(e.to_string()))?;
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|e| ServerError::Other(e.to_string()))?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|e| ServerError::Other(e.to_string()))?;
    // One server per data dir, before anything is opened or written.
    let _lock = data.lock().map_err(ServerError::Other)?;
    let mut config =
        config::load(&data.config()).map_err(|e| ServerError::Config(e.to_string()))?;
    for role in Role::ALL {
        if let Some(address) = overrides.get(role) {
            config.set_address(role, address);
        }
    }
    // A database password in ward.toml is a secret in a file others may read: refused
    // unless the file is private (better: `WARD_DATABASE` in a private environment file).
    let database = data.database(&config).map_err(ServerError::Config)?;
    if database.has_password() && crate::datadir::readable_by_others(&data.config()) {
        return Err(ServerError::Config(format!(
            "{}: [database] path holds a password, and others can read the file: give the \
             URL in WARD_DATABASE (an environment file only the service reads) or \
             `chmod 600` it",
            data.config().display()
        )));
    }
    if let Some(setting) = &overrides.database {
        config.database = setting.clone();
    }
    // Secrets others can read, or a directory others can write: refused, as ssh refuses a
    // private key others can read.
    let database = data.database(&config).map_err(ServerError::Config)?;
    let unsafe_modes = crate::datadir::unsafe_modes(&data, &database);
    if !unsafe_modes.is_empty() {
        return Err(ServerError::Config(unsafe_modes.join("\n")));
    }
    // A change of several files a crash interrupted is finished before anything reads them;
    // what crashes left half-made goes.
    let follow_up = crate::commit::recover_files(&data).map_err(ServerError::Other)?;
    let (app, findings) = App::open(data, config)?;
    if let Some(web) = web {
        let _ = app.web.set(web);
    }
    match app.store.warnings() {
        Ok(warnings) => {
            for warning in warnings {
                warn!("database: {warning}");
            }
        }
        Err(error) => warn!(%error, "database: its replication could not be read"),
    }
    if let Some(follow_up) = follow_up {
        crate::commit::finish_follow_up(&*app.store, follow_up).map_err(ServerError::Other)?;
    }
    for finding in &findings {
        match finding.severity {
            Severity::Error => error!("{}", finding.text),
            Severity::Warning => warn!("{}", finding.text),
            Severity::Note => info!("{}", finding.text),
        }
    }
    let config = app.config.clone();
    let data = app.data.clone();

    // Bind all three before serving any, so a start either fully works or says why not.
    let mut sockets = Vec::new();
    for role in Role::ALL {
        sockets.push((role, bind(role, config.address(role))?));
    }
    let pid_file = data.pid_file();
    let console = sockets[0]
        .1
        .local_addr()
        .map_err(|e| ServerError::Other(e.to_string()))?;
    // The pid, then the console address in use (flags may differ from ward.toml), before
    // anyone can connect: whoever reaches a listener finds the pid file.
    ward_fs::write(
        &pid_file,
        format!("{}\n{console}\n", std::process::id()).as_bytes(),
        0o644,
    )
    .map_err(|e| ServerError::Other(format!("{}: {e}", pid_file.display())))?;
    let mut listeners = Vec::new();
    for (role, socket) in sockets {
        let address = config.address(role);
        let listener = socket.listen(4096).map_err(|error| ServerError::Bind {
            role,
            address,
            error,
        })?;
        listeners.push((role, listener));
    }

    let shared = Arc::new(app);
    // Descriptors: the soft limit up to the hard one, and the caps sized to fit it.
    let (before, open_files) = raise_open_files();
    let caps = config::connection_caps(open_files, shared.config.limits.max_connections);
    info!(
        raised_from = before,
        console = caps.console,
        agents = caps.agents,
        agent_listener = caps.agent_listener,
        per_address = shared.config.limits.max_connections_per_address,
        "open files: {open_files}; connection caps sized to fit, with room kept for the console"
    );

    let mut accept_tasks = Vec::new();
    // The agent listeners' shared pool.
    let agents = Arc::new(Semaphore::new(caps.agents));
    for (role, listener) in listeners {
        let address = listener
            .local_addr()
            .map_err(|e| ServerError::Other(e.to_string()))?;
        info!(listener = role.name(), %address, "listening");
        let pool = (role != Role::Console).then(|| agents.clone());
        accept_tasks.push(tokio::spawn(accept_loop(
            shared.clone(),
            role,
            listener,
            caps,
            pool,
        )));
    }

    // Every listener accepts from here: a service manager waiting on `Type=notify` may go on.
    crate::notify::tell(&format!(
        "READY=1\nMAINPID={}\nSTATUS=serving: console {}, clients {}, clients-http {}",
        std::process::id(),
        shared.config.address(Role::Console),
        shared.config.address(Role::Clients),
        shared.config.address(Role::ClientsHttp),
    ));
    tokio::spawn(rotate_ticket_keys(shared.clone()));
    tokio::spawn(heartbeat(shared.clone()));
    tokio::spawn(crate::site_follow::follow(
        shared.clone(),
        crate::operations::server::HEARTBEAT,
    ));
    if shared.config.auto_renew_certificates {
        tokio::spawn(renew_certificates(shared.clone()));
    }

    loop {
        tokio::select! {
            _ = hangup.recv() => {
                info!("SIGHUP: reloading");
                crate::notify::tell("RELOADING=1");
                sighup(&shared).await;
                crate::notify::tell("READY=1");
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }

    info!("shutting down: no new connections, finishing in-flight requests");
    crate::notify::tell("STOPPING=1");
    let _ = shared.shutdown.send(true);
    for task in accept_tasks {
        let _ = task.await;
    }
    let grace = shared.config.limits.shutdown_grace;
    let deadline = Instant::now() + grace;
    while shared.telemetry.metrics.open_connections() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = shared.telemetry.metrics.open_connections();
    if left > 0 {
        warn!(
            connections = left,
            ?grace,
            "closing connections still open after the grace period"
        );
    }
    // The last second's check-in times, then the telemetry.
    let app = shared.clone();
    let _ = tokio::task::spawn_blocking(move || app.checkins.flush()).await;
    let telemetry = shared.telemetry.clone();
    let _ = tokio::task::spawn_blocking(move || telemetry.flush_and_stop()).await;
    let _ = std::fs::remove_file(shared.data.pid_file());
    info!("stopped");
    Ok(())
}

/// How long a session ticket key encrypts new tickets before a new one takes over; the
/// previous key still decrypts for as long again, so no agent's ticket is lost to a rotation.
const TICKET_KEY_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Every 6 hours (and at start): when ward's own server certificate or its RSA twin (issued
/// by ward's CA) has fewer than 30 days left, re-issue both from ward's CA and reload,
/// guarded like any reload (a renewal from the same CA cuts nobody off). Certificates an
/// admin put in place from another CA are theirs, and never replaced.
async fn renew_certificates(app: Arc<App>) {
    loop {
        let data = app.data.clone();
        // Only certificates ward's CA issued: one an admin put there from another CA is theirs.
        let ca_key = std::fs::read(data.ca_cert())
            .ok()
            .and_then(|pem| openssl::x509::X509::from_pem(&pem).ok())
            .and_then(|ca| ca.public_key().ok());
        let due = [data.server_cert(), data.server_rsa_cert()]
            .iter()
            .any(|path| {
                std::fs::read(path)
                    .ok()
                    .and_then(|pem| openssl::x509::X509::from_pem(&pem).ok())
                    .filter(|cert| {
                        ca_key
                            .as_ref()
                            .is_some_and(|key| cert.verify(key).unwrap_or(false))
                    })
                    .and_then(|cert| ward_tls::pki::seconds_left(&cert).ok())
                    .is_some_and(|left| left < crate::listener_tls::RENEW_BEFORE_SECONDS)
            });
        if due {
            let renewed = {
                // Never half-way through a rotation.
                let _one_change_at_a_time = app.fleet_lock.lock().await;
                tokio::task::spawn_blocking(move || {
                    crate::datadir::renew_server_certificates(&data)
                })
                .await
            };
            match renewed {
                Ok(Ok(written)) => {
                    info!(?written, "renewed the server certificates from ward's CA");
                    let check = crate::impact::reload_check(&app, false, false);
                    match crate::state::reload_checked(&app, Some(check)).await {
                        Reloaded::Swapped(..) => info!("reloaded with the renewed certificates"),
                        _ => error!(
                            "the renewed certificates were not loaded: `ward server reload` says why"
                        ),
                    }
                }
                Ok(Err(error)) => error!(%error, "server certificates not renewed"),
                Err(error) => error!(%error, "certificate renewal failed"),
            }
        }
        let mut shutdown = app.shutdown.subscribe();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(6 * 3600)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// SIGHUP: a reload guarded like the admin API's, with nobody to accept a cut-off: new
/// settings that would take the last path from agents are not swapped in, and the log says
/// who and why (`ward server reload --accept-cut-off` goes on).
async fn sighup(app: &App) {
    let check = crate::impact::reload_check(app, false, false);
    match crate::state::reload_checked(app, Some(check)).await {
        Reloaded::Kept(_, plan) => {
            let plan = plan.unwrap_or_default();
            let who: Vec<String> = plan
                .cut_off
                .iter()
                .take(20)
                .map(|line| format!("{} ({})", line.id, line.reason.as_deref().unwrap_or("")))
                .collect();
            let why = plan.plan_failed.as_deref().unwrap_or(&plan.message);
            error!(
                "SIGHUP reload refused, the old settings keep serving: {why}: {}; run `ward server reload --accept-cut-off` to go on",
                who.join(", ")
            );
        }
        Reloaded::Swapped(..) | Reloaded::Invalid(_) => {}
    }
}

/// Records this server and what it serves in the database's servers table, at start and
/// every [`crate::operations::server::HEARTBEAT`], so `ward server list` on any server of the
/// database says which are alive. A failed heartbeat (the database away) is logged at most
/// once a minute and tried again at the next.
async fn heartbeat(app: Arc<App>) {
    let mut shutdown = app.shutdown.subscribe();
    let mut tick = tokio::time::interval(crate::operations::server::HEARTBEAT);
    let mut failures = Throttled::new(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let record = crate::operations::server::heartbeat_record(&app);
        let store = app.store.clone();
        let beat = tokio::task::spawn_blocking(move || store.register_server(&record)).await;
        if let Ok(Err(error)) = beat {
            if let Some(suppressed) = failures.ready(Instant::now()) {
                warn!(%error, suppressed, "heartbeat not recorded");
            }
        }
    }
}

/// Rotates the ticket keys when the current one is older than [`TICKET_KEY_LIFETIME`]: at
/// start (a server that was down for a while) and every ten minutes.
async fn rotate_ticket_keys(app: Arc<App>) {
    let mut shutdown = app.shutdown.subscribe();
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let due = app
            .data
            .ticket_key_age()
            .is_some_and(|age| age >= TICKET_KEY_LIFETIME);
        if !due {
            continue;
        }
        // Not while a change of the site's files runs (the fleet lock), nor while a reload
        // reads the file: it would install the keys it read last.
        let _no_change = app.fleet_lock.lock().await;
        let _one_at_a_time = app.reload_lock.lock().await;
        let (data, store) = (app.data.clone(), app.store.clone());
        let rotated = tokio::task::spawn_blocking(move || {
            let old = data.load_ticket_keys()?;
            let keys = data.rotate_ticket_keys(Some(old))?;
            // The site's servers share the keys. Another server that rotated them at the same
            // time wins: this one takes its keys at its next look at the site.
            let published = crate::site::publish_change(&data, &*store);
            Ok::<_, crate::datadir::InitError>((keys, published))
        })
        .await;
        match rotated {
            Ok(Ok((keys, published))) => {
                ward_tls::ffi::set_ticket_keys(keys);
                info!("rotated the session ticket key (the previous one still resumes)");
                if let Err(error) = published {
                    warn!(%error, "the rotated session ticket key is not the site's (yet)");
                }
            }
            Ok(Err(error)) => error!(%error, "session ticket key not rotated"),
            Err(error) => error!(%error, "session ticket key rotation failed"),
        }
    }
}

/// Accepts on one listener: within the listener's cap, the agent listeners' shared `pool`
/// and the per-address cap a connection is served; beyond, it gets a 503 (as many at once as
/// `caps.refusals`, and as many a second as the refusal budget), or is closed.
async fn accept_loop(
    shared: Arc<App>,
    role: Role,
    listener: TcpListener,
    caps: config::ConnectionCaps,
    pool: Option<Arc<Semaphore>>,
) {
    let cap = caps.of(role);
    let slots = Arc::new(Semaphore::new(cap));
    let refusals = Arc::new(Semaphore::new(caps.refusals));
    let per_address = Arc::new(PerAddress::new(
        shared.config.limits.max_connections_per_address,
    ));
    let mut shutdown = shared.shutdown.subscribe();
    let mut accept_errors = Throttled::new(Duration::from_secs(10));
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and the like: wait a little rather than spin, and say so once
                    // per interval, not every time.
                    if let Some(suppressed) = accept_errors.ready(Instant::now()) {
                        warn!(listener = role.name(), %error, suppressed, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let from = per_address.enter(peer.ip());
        let permit = match from {
            Some(_) => slots
                .clone()
                .try_acquire_owned()
                .ok()
                .and_then(|slot| match &pool {
                    Some(pool) => pool
                        .clone()
                        .try_acquire_owned()
                        .ok()
                        .map(|shared| conn::Slots::new(slot, Some(shared))),
                    None => Some(conn::Slots::new(slot, None)),
                }),
            None => None,
        };
        match (permit, from) {
            (Some(permit), Some(from)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let claim = crate::api::AddressClaim::new(from);
                    conn::serve(shared, role, tcp, peer, permit, claim).await;
                });
            }
            (_, from) => {
                let by_address = from.is_none();
                drop(from);
                shared.telemetry.metrics.ops.refused(
                    role,
                    if by_address {
                        crate::metrics::Cap::Address
                    } else {
                        crate::metrics::Cap::Listener
                    },
                );
                let limit = if by_address {
                    format!(
                        "{} connections from one address not yet proven to be agents",
                        shared.config.limits.max_connections_per_address
                    )
                } else {
                    match &pool {
                        Some(_) => format!(
                            "{cap} connections (the two agent listeners {} together)",
                            caps.agents
                        ),
                        None => format!("{cap} connections"),
                    }
                };
                // Kept with the address (rate-limited like every failure): readiness and
                // plans name the agents behind an address a cap refused.
                shared.telemetry.failure(crate::telemetry::FailureReport {
                    role,
                    peer: peer.to_string(),
                    offered_max: None,
                    offered_versions: Vec::new(),
                    server_name: None,
                    kind: crate::failure::FailureKind::Capped,
                    reason: format!(
                        "refused before the handshake: the listener is at its limit of {limit}"
                    ),
                });
                // Answered within the refusal budget (a handshake each), else closed at once:
                // under overload the refusals cannot eat the capacity the served need.
                match refusals.clone().try_acquire_owned() {
                    Ok(permit) if shared.refusal_budget.take() => {
                        tokio::spawn(conn::refuse(shared.clone(), role, tcp, permit, limit));
                    }
                    _ => {
                        shared.telemetry.metrics.connection_refused(role);
                        shared.telemetry.metrics.ops.unanswered(role);
                        drop(tcp);
                    }
                }
            }
        }
    }
}

/// The soft open-file limit raised to the hard one: (the soft limit before, after).
fn raise_open_files() -> (usize, usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return (1024, 1024);
        }
        let before = limit.rlim_cur;
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
        let size = |n: libc::rlim_t| usize::try_from(n).unwrap_or(usize::MAX).min(1 << 24);
        (size(before), size(limit.rlim_cur))
    }
}

/// Connections per source address (IPv6 by /64), capped.
struct PerAddress {
    cap: usize,
    counts: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// One connection counted against its address while it lives.
struct FromAddress {
    table: Arc<PerAddress>,
    address: std::net::IpAddr,
}

impl Drop for FromAddress {
    fn drop(&mut self) {
        let mut counts = self.table.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.address);
            }
        }
    }
}

impl PerAddress {
    fn new(cap: usize) -> PerAddress {
        PerAddress {
            cap,
            counts: Default::default(),
        }
    }

    fn key(address: std::net::IpAddr) -> std::net::IpAddr {
        match address.to_canonical() {
            std::net::IpAddr::V6(v6) => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                std::net::IpAddr::V6(octets.into())
            }
            v4 => v4,
        }
    }

    /// Counts a connection from `address`; `None` when that address is at its cap.
    fn enter(self: &Arc<Self>, address: std::net::IpAddr) -> Option<FromAddress> {
        let address = PerAddress::key(address);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(address).or_default();
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(FromAddress {
            table: self.clone(),
            address,
        })
    }
}

/// A log line at most once per `every`, with how many were held back.
struct Throttled {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    fn new(every: Duration) -> Throttled {
        Throttled {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(held back since the last line)` when a line may be written now.
    fn ready(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}
