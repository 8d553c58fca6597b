//! `ward simulate`: many agents in one process, each with its own identity, speaking the real
//! agent protocol (ward-agent's signed requests) over real TLS (OpenSSL, legacy agents capped
//! at TLSv1, sessions resumed). For admins it rehearses a change on a copy of their fleet; for
//! us it measures the server. Bounded in agents and in time.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use openssl::ex_data::Index;
use openssl::ssl::{Ssl, SslConnector, SslSession};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;
use ward_agent::core::{Action, Core, CoreConfig, Event};
use ward_agent::requests::{checkin_request, enroll_request, host_report, verify_signed};
use ward_agent::transport::{parse_response, request_head, split_url, Exchange, MAX_RESPONSE};
use ward_agent::{random_fraction, AgentError, HostFacts};
use ward_proto::messages::{
    self, CheckinResponse, EnrollResponse, Hello, Mode, Scheme, ServerEntry, ServerListSettings,
    Settings, CHECKIN_PATH, ENROLL_PATH, HELLO_PATH,
};
use ward_proto::{hex, now_ms, unhex, AgentKey, KeyPair};
use ward_tls::context::{connector_builder, ClientTls, ServerVerification};
use ward_tls::TlsVersion;

use super::CmdResult;

#[derive(Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    target: super::agent::EnrollTarget,
    /// How many agents
    #[arg(long, default_value_t = 100)]
    agents: usize,
    /// The share of agents capped at TLSv1 (Windows XP clients), 0 to 1
    #[arg(long, default_value_t = 0.0)]
    legacy_share: f64,
    /// pull or push [default: what each agent's settings say]
    #[arg(long, value_parser = ["pull", "push"])]
    mode: Option<String>,
    /// Check-in interval of pull agents, and the longest hold of push ones [default: what
    /// each agent's settings say]
    #[arg(long, value_name = "DURATION")]
    interval: Option<String>,
    /// Push agents make their first check-in spread over this long (0s: all at once, as
    /// after a server restart)
    #[arg(long, default_value = "0s", value_name = "DURATION")]
    ramp: String,
    /// How long to run the check-ins, after enrollment
    #[arg(long, default_value = "1m", value_name = "DURATION")]
    duration: String,
    /// At most this many enrollments at once
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Spread connections over this many source addresses 127.0.0.1, 127.0.0.2, ... (a
    /// loopback server only) when one address's ephemeral ports are not enough [default: 1
    /// per 20,000 agents]
    #[arg(long, value_name = "N")]
    source_addresses: Option<u8>,
    /// Keep the agents' identities in this file and reuse them on the next run (no second
    /// enrollment)
    #[arg(long, value_name = "FILE")]
    identities: Option<PathBuf>,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

/// One simulated agent's identity.
struct Identity {
    id: String,
    key: AgentKey,
    private_hex: String,
    legacy: bool,
    /// The settings it enrolled with (none for identities reused from a file).
    settings: Option<Settings>,
}

/// What every agent task shares.
struct Shared {
    modern: SslConnector,
    legacy: SslConnector,
    unverified_modern: SslConnector,
    unverified_legacy: SslConnector,
    sources: Vec<IpAddr>,
    addresses: Mutex<HashMap<String, SocketAddr>>,
    stats: Stats,
}

#[derive(Default)]
struct Stats {
    checkins: AtomicU64,
    polls: AtomicU64,
    resumed: AtomicU64,
    full_handshakes: AtomicU64,
    held_now: AtomicUsize,
    held_peak: AtomicUsize,
    settings_received: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
    versions: Mutex<BTreeMap<String, u64>>,
    failures: Mutex<BTreeMap<String, u64>>,
    /// Unix ms at which each agent got new settings during the run (push fan-out).
    settings_at_ms: Mutex<Vec<i64>>,
}

impl Stats {
    fn fail(&self, reason: &str) {
        *self
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(reason.to_string())
            .or_default() += 1;
    }
}

fn session_index() -> Index<Ssl, Arc<Mutex<Option<SslSession>>>> {
    static INDEX: OnceLock<Index<Ssl, Arc<Mutex<Option<SslSession>>>>> = OnceLock::new();
    *INDEX.get_or_init(|| Ssl::new_ex_index().expect("an OpenSSL ex_data index"))
}

fn connector(ca_pem: &[u8], verify: bool, legacy: bool) -> Result<SslConnector, String> {
    let verification = match (verify, ca_pem.is_empty()) {
        (false, _) => ServerVerification::None,
        (true, true) => ServerVerification::System,
        (true, false) => ServerVerification::Ca(ca_pem.to_vec()),
    };
    let mut builder = connector_builder(&ClientTls {
        min: None,
        max: legacy.then_some(TlsVersion::Tls1_0),
        verification,
        cipher_list: None,
    })
    .map_err(|e| e.to_string())?;
    // Each connection carries its agent's session slot; OpenSSL hands new sessions (a TLS 1.3
    // ticket arrives after the handshake) to it.
    builder.set_new_session_callback(|ssl, session| {
        if let Some(slot) = ssl.ex_data(session_index()) {
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(session);
        }
    });
    Ok(builder.build())
}

/// Why an exchange failed, as a short class for the report.
struct Failure {
    class: &'static str,
    detail: String,
}

impl Failure {
    fn agent_error(self, url: &str) -> AgentError {
        AgentError::transport(url, format!("{}: {}", self.class, self.detail))
    }
}

impl Shared {
    async fn address(&self, host: &str, port: u16) -> Result<SocketAddr, Failure> {
        let key = format!("{host}:{port}");
        if let Some(address) = self
            .addresses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(*address);
        }
        let address = tokio::net::lookup_host((host, port))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| Failure {
                class: "resolve",
                detail: format!("{host}: no address"),
            })?;
        self.addresses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, address);
        Ok(address)
    }

    /// One `Connection: close` exchange, resuming `session` over HTTPS.
    #[allow(clippy::too_many_arguments)]
    async fn exchange(
        &self,
        agent: usize,
        legacy: bool,
        url: &str,
        verify: bool,
        session: &Arc<Mutex<Option<SslSession>>>,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
        timeout: Duration,
    ) -> Result<Exchange, Failure> {
        let failure = |class: &'static str| {
            move |e: std::io::Error| Failure {
                class,
                detail: e.to_string(),
            }
        };
        let (scheme, host, port) = split_url(url).map_err(|detail| Failure {
            class: "url",
            detail,
        })?;
        let address = self.address(&host, port).await?;
        let socket = if address.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(failure("socket"))?;
        if address.ip().is_loopback() && address.is_ipv4() && self.sources.len() > 1 {
            let source = self.sources[agent % self.sources.len()];
            socket
                .bind(SocketAddr::new(source, 0))
                .map_err(failure("bind"))?;
        }
        let tcp = tokio::time::timeout(Duration::from_secs(10), socket.connect(address))
            .await
            .map_err(|_| Failure {
                class: "connect_timeout",
                detail: format!("{url}: no answer in 10s"),
            })?
            .map_err(failure("connect"))?;
        let _ = tcp.set_nodelay(true);
        let head = request_head(method, path, &host, headers, body.len());
        let work = async {
            let mut raw = Vec::new();
            let (channel, version) = if scheme == "https" {
                let connector = match (verify, legacy) {
                    (true, false) => &self.modern,
                    (true, true) => &self.legacy,
                    (false, false) => &self.unverified_modern,
                    (false, true) => &self.unverified_legacy,
                };
                let mut config = connector.configure().map_err(|e| Failure {
                    class: "tls",
                    detail: e.to_string(),
                })?;
                if let Some(previous) = session.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                    // The session comes from this same connector's context.
                    unsafe { config.set_session(previous) }.map_err(|e| Failure {
                        class: "tls",
                        detail: e.to_string(),
                    })?;
                }
                let mut ssl = config.into_ssl(&host).map_err(|e| Failure {
                    class: "tls",
                    detail: e.to_string(),
                })?;
                ssl.set_ex_data(session_index(), session.clone());
                let mut stream = tokio_openssl::SslStream::new(ssl, tcp).map_err(|e| Failure {
                    class: "tls",
                    detail: e.to_string(),
                })?;
                std::pin::Pin::new(&mut stream)
                    .connect()
                    .await
                    .map_err(|e| Failure {
                        class: "tls_handshake",
                        detail: e.to_string(),
                    })?;
                let version = stream.ssl().version_str().to_string();
                if stream.ssl().session_reused() {
                    self.stats.resumed.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.stats.full_handshakes.fetch_add(1, Ordering::Relaxed);
                }
                stream
                    .write_all(head.as_bytes())
                    .await
                    .map_err(failure("write"))?;
                stream.write_all(body).await.map_err(failure("write"))?;
                read_to_end(&mut stream, &mut raw)
                    .await
                    .map_err(failure("read"))?;
                let _ = stream.shutdown().await;
                ("https", Some(version))
            } else {
                let mut tcp = tcp;
                tcp.write_all(head.as_bytes())
                    .await
                    .map_err(failure("write"))?;
                tcp.write_all(body).await.map_err(failure("write"))?;
                read_to_end(&mut tcp, &mut raw)
                    .await
                    .map_err(failure("read"))?;
                ("http", None)
            };
            let mut exchange = parse_response(&raw).ok_or(Failure {
                class: "malformed_response",
                detail: format!("{url}: not an HTTP response"),
            })?;
            exchange.channel = channel;
            exchange.tls_version = version;
            Ok(exchange)
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| Failure {
                class: "timeout",
                detail: format!("{url}: no answer in {timeout:?}"),
            })?
    }
}

/// Reads to the end, at most 4 MiB; a peer that closes without close_notify still sent a
/// whole response.
async fn read_to_end<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    match stream.take(MAX_RESPONSE).read_to_end(out).await {
        Ok(_) => Ok(()),
        Err(_) if !out.is_empty() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Raises the soft limit on open files to the hard one: every agent may hold a connection.
fn raise_fd_limit() -> u64 {
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        limit.rlim_cur
    }
}

pub fn run(args: SimulateArgs) -> CmdResult {
    let duration =
        ward_proto::duration::parse(&args.duration).map_err(|e| format!("--duration: {e}"))?;
    let interval = args
        .interval
        .as_deref()
        .map(ward_proto::duration::parse)
        .transpose()
        .map_err(|e| format!("--interval: {e}"))?;
    if interval.is_some_and(|i| i.is_zero()) {
        return Err("--interval: must be more than 0s".into());
    }
    if !(0.0..=1.0).contains(&args.legacy_share) {
        return Err("--legacy-share: a share from 0 to 1".into());
    }
    if args.agents == 0 || args.agents > 1_000_000 {
        return Err("--agents: from 1 to 1,000,000".into());
    }
    let files = raise_fd_limit();
    if (args.agents as u64) + 64 > files {
        eprintln!(
            "warning: {} agents but only {files} open files allowed (ulimit -n): push agents each hold one",
            args.agents
        );
    }
    let ca_pem = match &args.target.ca {
        Some(path) => std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?,
        None => Vec::new(),
    };
    let sources = args
        .source_addresses
        .unwrap_or((args.agents / 20_000 + 1).min(250) as u8)
        .max(1);
    let shared = Arc::new(Shared {
        modern: connector(&ca_pem, true, false)?,
        legacy: connector(&ca_pem, true, true)?,
        unverified_modern: connector(&ca_pem, false, false)?,
        unverified_legacy: connector(&ca_pem, false, true)?,
        sources: (1..=sources)
            .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
            .collect(),
        addresses: Mutex::default(),
        stats: Stats::default(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(simulate(args, shared, interval, duration, ca_pem))
}

struct Plan {
    mode: Option<String>,
    interval: Option<Duration>,
    /// Push agents make their first check-in within this long of the start.
    ramp: Duration,
    deadline: Instant,
}

async fn simulate(
    args: SimulateArgs,
    shared: Arc<Shared>,
    interval: Option<Duration>,
    duration: Duration,
    ca_pem: Vec<u8>,
) -> CmdResult {
    let verify = args.target.pin.is_none() || !ca_pem.is_empty();
    let ramp = ward_proto::duration::parse(&args.ramp).map_err(|e| format!("--ramp: {e}"))?;
    let none = Arc::new(Mutex::new(None));
    let hello = shared
        .exchange(
            0,
            false,
            &args.target.server,
            verify,
            &none,
            "GET",
            HELLO_PATH,
            &[],
            b"",
            Duration::from_secs(30),
        )
        .await
        .map_err(|f| format!("{}: {}", args.target.server, f.detail))?;
    let hello: Hello = messages::decode("hello", &hello.body).map_err(|e| e.to_string())?;
    let server_public = unhex(&hello.agreement_key).map_err(|e| format!("hello: {e}"))?;
    if let Some(pin) = &args.target.pin {
        let actual = hex(&openssl::sha::sha256(&server_public));
        if !actual.eq_ignore_ascii_case(pin) {
            return Err(format!(
                "the server's key {actual} does not match the pin {pin}"
            ));
        }
    } else if args.target.server.starts_with("http://") {
        return Err(
            "an http:// server needs --pin: plain HTTP cannot prove which server answers".into(),
        );
    }

    // Identities: reused from --identities, the rest enrolled now.
    let mut identities = load_identities(&args, &server_public)?;
    let legacy_count = (args.agents as f64 * args.legacy_share).round() as usize;
    let missing = args.agents.saturating_sub(identities.len());
    let enroll_started = Instant::now();
    let mut enroll_failures = 0usize;
    if missing > 0 {
        let bar = ProgressBar::new(missing as u64);
        bar.set_style(
            ProgressStyle::with_template("enrolling [{bar:30}] {pos}/{len} {per_sec} {msg}")
                .expect("template")
                .progress_chars("=> "),
        );
        let permits = Arc::new(Semaphore::new(args.concurrency.max(1)));
        let mut tasks = Vec::new();
        for index in identities.len()..args.agents {
            let legacy = index < legacy_count;
            let (shared, permits, server_public, token, url, bar) = (
                shared.clone(),
                permits.clone(),
                server_public.clone(),
                args.target.token.clone(),
                args.target.server.clone(),
                bar.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let _permit = permits.acquire_owned().await.ok()?;
                let result =
                    enroll(&shared, index, legacy, &url, verify, &server_public, &token).await;
                bar.inc(1);
                match result {
                    Ok(identity) => Some(identity),
                    Err(failure) => {
                        shared.stats.fail(&format!("enroll: {}", failure.class));
                        bar.set_message(failure.detail);
                        None
                    }
                }
            }));
        }
        for task in tasks {
            match task.await.ok().flatten() {
                Some(identity) => identities.push(identity),
                None => enroll_failures += 1,
            }
        }
        bar.finish_and_clear();
        save_identities(&args, &server_public, &identities)?;
    }
    let enroll_seconds = enroll_started.elapsed().as_secs_f64();
    if identities.is_empty() {
        return Err(format!(
            "no agent could enroll: {:?}",
            shared
                .stats
                .failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
        ));
    }

    // The run: every agent checks in until the deadline.
    let legacy_agents = identities.iter().filter(|i| i.legacy).count();
    let plan = Arc::new(Plan {
        mode: args.mode.clone(),
        interval,
        ramp,
        deadline: Instant::now() + duration,
    });
    let started = Instant::now();
    let bar = ProgressBar::new(duration.as_secs().max(1));
    bar.set_style(
        ProgressStyle::with_template("running [{bar:30}] {pos}/{len}s {msg}")
            .expect("template")
            .progress_chars("=> "),
    );
    let mut tasks = Vec::new();
    for (index, identity) in identities.into_iter().enumerate() {
        let (shared, plan, url) = (shared.clone(), plan.clone(), args.target.server.clone());
        tasks.push(tokio::spawn(async move {
            agent_loop(&shared, &plan, index, identity, url, verify).await
        }));
    }
    let ticker = {
        let (shared, bar) = (shared.clone(), bar.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                bar.inc(1);
                bar.set_message(format!(
                    "{} check-ins, {} held",
                    shared.stats.checkins.load(Ordering::Relaxed)
                        + shared.stats.polls.load(Ordering::Relaxed),
                    shared.stats.held_now.load(Ordering::Relaxed)
                ));
            }
        })
    };
    let mut lost = Vec::new();
    let agents = tasks.len();
    for task in tasks {
        if let Ok(Some(id)) = task.await {
            lost.push(id);
        }
    }
    ticker.abort();
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let report = report(
        &shared.stats,
        agents,
        legacy_agents,
        enroll_failures,
        enroll_seconds,
        elapsed,
        &lost,
    );
    if args.json {
        println!("{report:#}");
    } else {
        print_report(&report);
    }
    Ok(if lost.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn host_of(index: usize, legacy: bool) -> HostFacts {
    HostFacts {
        hostname: format!("sim-{index:07}"),
        os_name: if legacy {
            "windows-xp".into()
        } else {
            "linux".into()
        },
        os_version: "simulated".into(),
        name: None,
    }
}

async fn enroll(
    shared: &Shared,
    index: usize,
    legacy: bool,
    url: &str,
    verify: bool,
    server_public: &[u8],
    token: &str,
) -> Result<Identity, Failure> {
    let refused = |error: AgentError| Failure {
        class: error.class(),
        detail: error.to_string(),
    };
    let pair = KeyPair::generate().map_err(|e| refused(AgentError::state(e)))?;
    let cap = legacy.then_some(TlsVersion::Tls1_0);
    let request = enroll_request(
        server_public,
        &pair,
        token,
        cap,
        None,
        &host_of(index, legacy),
    )
    .map_err(refused)?;
    let headers = [("Content-Type", "application/json".to_string())];
    let session = Arc::new(Mutex::new(None));
    let exchange = shared
        .exchange(
            index,
            legacy,
            url,
            verify,
            &session,
            "POST",
            ENROLL_PATH,
            &headers,
            request.body.as_bytes(),
            Duration::from_secs(60),
        )
        .await?;
    let answer: EnrollResponse = verify_signed(
        &request.key,
        &request.nonce,
        url,
        &exchange,
        Duration::from_secs(60),
    )
    .map_err(refused)?;
    let private_hex = hex(&pair
        .private_bytes()
        .map_err(|e| refused(AgentError::state(e)))?);
    Ok(Identity {
        id: answer.agent,
        key: request.key,
        private_hex,
        legacy,
        settings: Some(answer.settings),
    })
}

/// Settings for an identity reused from a file: the enrollment URL only, serial 0, so the
/// first check-in brings the real ones.
fn bootstrap_settings(url: &str) -> Settings {
    let (scheme, host, port) = split_url(url).unwrap_or(("https", String::new(), 443));
    Settings {
        serial: 0,
        group: String::new(),
        server_list: ServerListSettings {
            name: String::new(),
            servers: vec![ServerEntry {
                priority: 1,
                url: url.to_string(),
                address: host,
                protocol: if scheme == "http" {
                    Scheme::Http
                } else {
                    Scheme::Https
                },
                port,
                verify_certificate: true,
            }],
        },
        interval: Duration::from_secs(60),
        randomize: Duration::ZERO,
        mode: Mode::Pull,
        policy: Value::Null,
    }
}

/// One agent until the deadline, driven by the agent's own state machine (server order,
/// failover, back-off, Retry-After, push holds). Returns its id when its last attempt failed
/// (lost contact).
async fn agent_loop(
    shared: &Shared,
    plan: &Plan,
    index: usize,
    identity: Identity,
    enrolled_url: String,
    verify: bool,
) -> Option<String> {
    let session = Arc::new(Mutex::new(None));
    let cap = identity.legacy.then_some(TlsVersion::Tls1_0);
    let host = host_report(&host_of(index, identity.legacy), cap);
    let settings = identity
        .settings
        .clone()
        .unwrap_or_else(|| bootstrap_settings(&enrolled_url));
    let acked = if identity.settings.is_some() {
        settings.serial
    } else {
        0
    };
    let mode = plan
        .mode
        .as_deref()
        .map(|m| if m == "push" { Mode::Push } else { Mode::Pull });
    let mut core = Core::new(
        settings,
        acked,
        CoreConfig {
            mode,
            interval: plan.interval,
            max_hold: plan
                .interval
                .unwrap_or(Duration::from_secs(50))
                .min(Duration::from_secs(50)),
            ..CoreConfig::default()
        },
        Box::new(random_fraction),
    );
    let mut checked_in = false;
    let mut failed_last = false;
    // Pull agents start at a random point of their first interval, as a fleet does; push
    // agents within the ramp (all at once without one: the herd after a server restart).
    let window = if core.push() {
        plan.ramp
    } else {
        plan.interval.unwrap_or(core.settings().interval)
    };
    let first = window
        .mul_f64(random_fraction())
        .min(plan.deadline.saturating_duration_since(Instant::now()));
    tokio::time::sleep(first).await;
    while Instant::now() < plan.deadline {
        let (server, acked_serial, wait) = match core.next(Instant::now()) {
            Action::Sleep(pause) => {
                let until = Instant::now() + pause;
                if until >= plan.deadline {
                    break;
                }
                tokio::time::sleep_until(until.into()).await;
                continue;
            }
            Action::Checkin {
                server,
                acked_serial,
                wait,
            } => (server, acked_serial, wait),
        };
        let wait = wait.min(plan.deadline.saturating_duration_since(Instant::now()));
        let request = checkin_request(
            &identity.id,
            &identity.key,
            acked_serial,
            &host,
            &server.url,
            wait,
        );
        let held = !wait.is_zero();
        if held {
            let now = shared.stats.held_now.fetch_add(1, Ordering::Relaxed) + 1;
            shared.stats.held_peak.fetch_max(now, Ordering::Relaxed);
        }
        let started = Instant::now();
        let result = shared
            .exchange(
                index,
                identity.legacy,
                &server.url,
                server.verify_certificate && verify,
                &session,
                "POST",
                CHECKIN_PATH,
                &request.headers,
                request.body.as_bytes(),
                wait + Duration::from_secs(30),
            )
            .await
            .map_err(|failure| failure.agent_error(&server.url))
            .and_then(|exchange| {
                let answer: CheckinResponse = verify_signed(
                    &identity.key,
                    &request.nonce,
                    &server.url,
                    &exchange,
                    Duration::from_secs(60),
                )?;
                Ok((exchange, answer))
            });
        if held {
            shared.stats.held_now.fetch_sub(1, Ordering::Relaxed);
        }
        let (exchange, answer) = match result {
            Ok((exchange, answer)) => (Some(exchange), Ok(answer)),
            Err(error) => (None, Err(error)),
        };
        match core.complete(Instant::now(), answer) {
            Event::CheckedIn { changed, .. } => {
                failed_last = false;
                if held {
                    shared.stats.polls.fetch_add(1, Ordering::Relaxed);
                } else {
                    shared.stats.checkins.fetch_add(1, Ordering::Relaxed);
                    shared
                        .stats
                        .latencies_us
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(started.elapsed().as_micros() as u64);
                }
                let version = exchange
                    .and_then(|e| e.tls_version)
                    .unwrap_or_else(|| "plain HTTP".into());
                *shared
                    .stats
                    .versions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(version)
                    .or_default() += 1;
                // A change while running (the first answer only confirms enrollment).
                if changed && checked_in {
                    shared
                        .stats
                        .settings_received
                        .fetch_add(1, Ordering::Relaxed);
                    shared
                        .stats
                        .settings_at_ms
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(now_ms());
                }
                checked_in = true;
            }
            Event::Failed { error, pause } => {
                shared.stats.fail(match &error {
                    AgentError::Transport { detail, .. } => {
                        detail.split(':').next().unwrap_or("transport")
                    }
                    other => other.class(),
                });
                failed_last = pause.is_some();
            }
        }
    }
    failed_last.then_some(identity.id)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64 / 1000.0
}

fn report(
    stats: &Stats,
    agents: usize,
    legacy: usize,
    enroll_failures: usize,
    enroll_seconds: f64,
    elapsed: f64,
    lost: &[String],
) -> Value {
    let mut latencies = stats
        .latencies_us
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    latencies.sort_unstable();
    let checkins = stats.checkins.load(Ordering::Relaxed);
    let polls = stats.polls.load(Ordering::Relaxed);
    let resumed = stats.resumed.load(Ordering::Relaxed);
    let full = stats.full_handshakes.load(Ordering::Relaxed);
    let mut fanout = stats
        .settings_at_ms
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    fanout.sort_unstable();
    json!({
        "agents": agents,
        "legacy_agents": legacy,
        "enrollment": {"failed": enroll_failures, "seconds": enroll_seconds},
        "seconds": elapsed,
        "checkins": checkins,
        "checkins_per_second": checkins as f64 / elapsed.max(0.001),
        "held_polls_returned": polls,
        "held_peak": stats.held_peak.load(Ordering::Relaxed),
        "latency_ms": {
            "p50": percentile(&latencies, 50.0),
            "p90": percentile(&latencies, 90.0),
            "p99": percentile(&latencies, 99.0),
            "max": percentile(&latencies, 100.0),
        },
        "tls": {
            "versions": *stats.versions.lock().unwrap_or_else(|p| p.into_inner()),
            "resumed": resumed,
            "full_handshakes": full,
            "resumed_share": if resumed + full == 0 { 0.0 } else { resumed as f64 / (resumed + full) as f64 },
        },
        "settings_changes": {
            "received": stats.settings_received.load(Ordering::Relaxed),
            "first_to_last_ms": fanout.last().zip(fanout.first()).map(|(l, f)| l - f),
        },
        "failures": *stats.failures.lock().unwrap_or_else(|p| p.into_inner()),
        "lost": {"count": lost.len(), "agents": lost.iter().take(50).collect::<Vec<_>>()},
    })
}

fn print_report(report: &Value) {
    println!(
        "{} agents ({} capped at TLSv1), ran {:.1}s",
        report["agents"],
        report["legacy_agents"],
        report["seconds"].as_f64().unwrap_or(0.0)
    );
    println!(
        "check-ins: {} ({:.1}/s); held polls returned: {}, held at once at most: {}",
        report["checkins"],
        report["checkins_per_second"].as_f64().unwrap_or(0.0),
        report["held_polls_returned"],
        report["held_peak"]
    );
    let l = &report["latency_ms"];
    println!(
        "latency ms: p50 {} p90 {} p99 {} max {}",
        l["p50"], l["p90"], l["p99"], l["max"]
    );
    println!(
        "TLS: {} ; resumed {} of {} handshakes",
        report["tls"]["versions"],
        report["tls"]["resumed"],
        report["tls"]["resumed"].as_u64().unwrap_or(0)
            + report["tls"]["full_handshakes"].as_u64().unwrap_or(0)
    );
    if report["settings_changes"]["received"].as_u64().unwrap_or(0) > 0 {
        println!(
            "settings changes received: {} (first to last {} ms)",
            report["settings_changes"]["received"], report["settings_changes"]["first_to_last_ms"]
        );
    }
    if report["failures"]
        .as_object()
        .is_some_and(|f| !f.is_empty())
    {
        println!("failures: {}", report["failures"]);
    }
    println!(
        "lost contact: {} {}",
        report["lost"]["count"], report["lost"]["agents"]
    );
}

fn load_identities(args: &SimulateArgs, server_public: &[u8]) -> Result<Vec<Identity>, String> {
    let Some(path) = &args.identities else {
        return Ok(Vec::new());
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let value: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if value["server_public"] != hex(server_public) {
        return Err(format!(
            "{}: made for another server; remove it to enroll anew",
            path.display()
        ));
    }
    let mut identities = Vec::new();
    for entry in value["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .take(args.agents)
    {
        let private =
            unhex(entry["private_key"].as_str().unwrap_or_default()).map_err(|e| e.to_string())?;
        let pair = KeyPair::from_private_bytes(&private).map_err(|e| e.to_string())?;
        let key = AgentKey::for_agent(&pair, server_public).map_err(|e| e.to_string())?;
        identities.push(Identity {
            id: entry["id"].as_str().unwrap_or_default().to_string(),
            key,
            private_hex: hex(&private),
            legacy: entry["legacy"].as_bool().unwrap_or(false),
            settings: None,
        });
    }
    Ok(identities)
}

fn save_identities(
    args: &SimulateArgs,
    server_public: &[u8],
    identities: &[Identity],
) -> Result<(), String> {
    let Some(path) = &args.identities else {
        return Ok(());
    };
    let agents: Vec<Value> = identities
        .iter()
        .map(|i| json!({"id": i.id, "private_key": i.private_hex, "legacy": i.legacy}))
        .collect();
    let text = json!({"server_public": hex(server_public), "agents": agents}).to_string();
    ward_tls::edit::write_atomic(path, text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", path.display()))
}
