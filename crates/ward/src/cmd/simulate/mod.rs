//! `ward simulate`: many agents in one process, each with its own identity, speaking the real
//! agent protocol (ward-agent's signed requests) over real TLS (OpenSSL, legacy agents capped
//! at TLSv1, sessions resumed). For admins it rehearses a change on a copy of their fleet; for
//! us it measures the server. Bounded in agents and in time.
//!
//! This module holds the command and its course: the server's hello, the enrollment of the
//! agents missing from `--identities`, the run, the progress bars and the report. One agent is
//! in [`agent`], the connections in [`transport`], the figures in [`report`], the identities
//! file in [`identities`].

mod agent;
mod identities;
mod report;
mod transport;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::Semaphore;
use ward_proto::messages::{self, Hello, HELLO_PATH};
use ward_proto::{hex, unhex};

use self::agent::{agent_loop, enroll, Plan};
use self::identities::Identity;
use self::report::Report;
use self::transport::{raise_fd_limit, SessionSlot, Shared};
use super::CmdResult;

#[derive(Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    target: crate::cmd::agent::EnrollTarget,
    /// How many agents
    #[arg(long, default_value_t = 100)]
    agents: usize,
    /// The share of legacy agents (Windows XP clients), 0 to 1
    #[arg(long, default_value_t = 0.0)]
    legacy_share: f64,
    /// What legacy agents offer: a real stack's profile (xp-ie8, win2003-aes, win7-default,
    /// java6, openssl-0.9.8) [default: ward's own offer capped at TLSv1]
    #[arg(long, value_name = "NAME")]
    legacy_profile: Option<String>,
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
    /// The key-exchange groups the agents offer, most preferred first (OpenSSL's names, e.g.
    /// X25519 to measure against a reference without post-quantum key exchange) [default:
    /// ward's own, X25519MLKEM768 first]
    #[arg(long, value_name = "LIST")]
    groups: Option<String>,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
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
    let legacy_offer = match &args.legacy_profile {
        Some(name) => ward_agent::Offer {
            profile: Some(ward_tls::profile::client_profile(name).ok_or_else(|| {
                format!(
                    "--legacy-profile {name}: no such profile (one of {})",
                    ward_tls::profile::profile_names()
                )
            })?),
            tls_max: None,
        },
        None => ward_agent::Offer::capped(Some(ward_tls::TlsVersion::Tls1_0)),
    };
    let shared = Arc::new(
        Shared::new(&ca_pem, sources, legacy_offer, args.groups.as_deref())
            .map_err(|e| format!("--groups: {e}"))?,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(simulate(args, shared, interval, duration, ca_pem))
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
    let server_public = server_key(&args, &shared, verify).await?;

    // Identities: reused from --identities, the rest enrolled now.
    let mut identities = identities::load(args.identities.as_deref(), &server_public, args.agents)?;
    let enroll_started = Instant::now();
    let enroll_failures =
        enroll_missing(&args, &shared, verify, &server_public, &mut identities).await?;
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
    let agents = identities.len();
    let plan = Arc::new(Plan {
        mode: args.mode.clone(),
        interval,
        ramp,
        deadline: Instant::now() + duration,
    });
    let started = Instant::now();
    let cpu_before = super::cpu_seconds();
    let (identities, lost) = run_agents(&args, &shared, plan, duration, verify, identities).await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = report::Cpu::measured(super::cpu_seconds() - cpu_before, elapsed, cores());
    // Their sessions too: the next run resumes them, as agents that ran all along do.
    identities::save(args.identities.as_deref(), &server_public, &identities)?;
    let report = Report::new(
        &shared.stats,
        report::Run {
            agents,
            legacy_agents,
            enroll_failures,
            enroll_seconds,
            elapsed,
            lost: &lost,
            cpu,
        },
    );
    if args.json {
        println!("{:#}", report.json());
    } else {
        println!("{}", report.text());
    }
    Ok(if lost.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// The server's agreement key from its hello, checked against `--pin` when there is one (and
/// there must be over plain HTTP).
async fn server_key(args: &SimulateArgs, shared: &Shared, verify: bool) -> Result<Vec<u8>, String> {
    let hello = shared
        .exchange(
            0,
            false,
            &args.target.server,
            verify,
            &SessionSlot::default(),
            &mut None,
            false,
            "GET",
            HELLO_PATH,
            &[],
            b"",
            Duration::from_secs(30),
        )
        .await
        .map(|(exchange, _)| exchange)
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
    Ok(server_public)
}

/// Enrolls the agents `identities` lacks (at most `--concurrency` at once, the first
/// `--legacy-share` of them capped at TLSv1), adds them and saves the lot to `--identities`.
/// Returns how many could not enroll.
async fn enroll_missing(
    args: &SimulateArgs,
    shared: &Arc<Shared>,
    verify: bool,
    server_public: &[u8],
    identities: &mut Vec<Identity>,
) -> Result<usize, String> {
    let legacy_count = (args.agents as f64 * args.legacy_share).round() as usize;
    let missing = args.agents.saturating_sub(identities.len());
    let mut enroll_failures = 0usize;
    if missing == 0 {
        return Ok(enroll_failures);
    }
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
            server_public.to_vec(),
            args.target.token.clone(),
            args.target.server.clone(),
            bar.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await.ok()?;
            let result = enroll(&shared, index, legacy, &url, verify, &server_public, &token).await;
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
    identities::save(args.identities.as_deref(), server_public, identities)?;
    Ok(enroll_failures)
}

/// The cores this process may run on (its CPU affinity, as `taskset` sets it).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs every agent until the plan's deadline, with a progress bar over `duration`. Returns
/// the identities (with their last sessions) and the ids of the agents whose last attempt
/// failed (lost contact).
async fn run_agents(
    args: &SimulateArgs,
    shared: &Arc<Shared>,
    plan: Arc<Plan>,
    duration: Duration,
    verify: bool,
    identities: Vec<Identity>,
) -> (Vec<Identity>, Vec<String>) {
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
    let mut kept = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Ok((identity, failed_last)) = task.await {
            if failed_last {
                lost.push(identity.id.clone());
            }
            kept.push(identity);
        }
    }
    ticker.abort();
    bar.finish_and_clear();
    (kept, lost)
}
