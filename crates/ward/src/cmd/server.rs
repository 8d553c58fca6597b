//! `ward server ...`: run, initialise, check and reload the management server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use ward_api::server::{
    Acknowledgement, CaDescription, CaStatus, GuardedRequest, KeyStatus, ReloadAnswer,
    RenewRequest, SwitchAnswer,
};
use ward_api::tls::GuardPlan;
use ward_server::{DataDir, Overrides};
use ward_tls::Severity;

use super::fleet::pretty;
use super::CmdResult;
use crate::client::{AdminClient, ApiFailure};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServerArgs {
    #[command(subcommand)]
    action: Option<ServerAction>,
    #[command(flatten)]
    run: RunArgs,
}

impl ServerArgs {
    /// Whether this runs the server (not one of its tools).
    pub fn serves(&self) -> bool {
        self.action.is_none()
    }
}

/// Where the server keeps everything; shared by every `ward server` command.
#[derive(Args, Clone)]
pub struct DataArg {
    /// The data directory (created and initialised on first start)
    #[arg(
        long,
        value_name = "DIR",
        env = "WARD_DATA",
        default_value = "ward-data"
    )]
    pub data: PathBuf,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    data: DataArg,
    #[command(flatten)]
    addresses: AddressArgs,
    /// Log format on stderr
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(flatten)]
    database: DatabaseArg,
}

#[derive(Args, Clone)]
pub struct DatabaseArg {
    /// The database, in place of ward.toml's [database] path: a postgres:// URL (a site of
    /// several servers; `init` creates the site on an empty database or joins the one it
    /// finds). Give a URL with a password in WARD_DATABASE, from a file only the service reads
    #[arg(
        long,
        value_name = "URL",
        env = "WARD_DATABASE",
        hide_env_values = true
    )]
    database: Option<String>,
}

#[derive(Args, Clone)]
pub struct AddressArgs {
    /// Console listener address (admin API, TLS from conf/ssl/ssl.conf) [ward.toml: 0.0.0.0:8445]
    #[arg(long, value_name = "ADDR:PORT", env = "WARD_CONSOLE_ADDR")]
    console_addr: Option<SocketAddr>,
    /// Clients listener address (HTTPS agent API, conf/ssl/sslforclients.conf) [ward.toml: 0.0.0.0:443]
    #[arg(long, value_name = "ADDR:PORT", env = "WARD_CLIENTS_ADDR")]
    clients_addr: Option<SocketAddr>,
    /// Clients-http listener address (plain-HTTP agent API for legacy agents) [ward.toml: 0.0.0.0:8014]
    #[arg(long, value_name = "ADDR:PORT", env = "WARD_CLIENTS_HTTP_ADDR")]
    clients_http_addr: Option<SocketAddr>,
}

impl AddressArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            console: self.console_addr,
            clients: self.clients_addr,
            clients_http: self.clients_http_addr,
            database: None,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum ServerAction {
    /// Initialise the data directory (ward.toml, conf files, CA and certificates, keys,
    /// database, admin token) and exit; does nothing if it is already initialised
    Init {
        #[command(flatten)]
        data: DataArg,
        #[command(flatten)]
        addresses: AddressArgs,
        #[command(flatten)]
        database: DatabaseArg,
    },
    /// Check ward.toml and both TLS conf files; print every error and warning with file:line
    Configtest {
        #[command(flatten)]
        data: DataArg,
        /// Print JSON: {"ok": bool, "findings": [{"severity", "message"}]}
        #[arg(long)]
        json: bool,
    },
    /// Take a consistent snapshot of a data dir, even of a running server: the database
    /// (SQLite's VACUUM INTO, one read transaction; a site's PostgreSQL database by `pg_dump`),
    /// ward.toml, the conf files, certificates, keys and the admin token, each with its mode,
    /// in one tar file (mode 0600)
    Backup {
        #[command(flatten)]
        data: DataArg,
        /// The backup file to write (it must not exist)
        #[arg(long, value_name = "FILE")]
        out: std::path::PathBuf,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// The ward servers on this server's database: their listeners and TLS ranges, and
    /// whether each is alive (its heartbeat, every 10 s). Asks the running server
    List {
        #[command(flatten)]
        data: DataArg,
        /// Print JSON: the server's answer
        #[arg(long)]
        json: bool,
    },
    /// Bring a backup back into a new data dir (refused if the dir exists and is not empty);
    /// a site server's backup also brings the site's database back, into an empty database
    /// (`pg_restore`, one transaction)
    Restore {
        /// The backup file
        #[arg(long = "from", value_name = "FILE")]
        from: std::path::PathBuf,
        /// The new data dir
        #[arg(long, value_name = "DIR")]
        data: std::path::PathBuf,
        /// A site server's backup: restore the data dir alone, not the site's database (which
        /// must otherwise be empty: the data dir takes the site's files when it starts)
        #[arg(long)]
        files_only: bool,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Re-issue the server certificates (ECDSA and RSA) from ward's CA, with the names they
    /// have, and reload a running server (guarded like any reload). The server does it by
    /// itself 30 days before expiry unless [certificates] auto_renew = false
    RenewCert {
        #[command(flatten)]
        data: DataArg,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Make the running server re-read its TLS conf files, without a restart (as SIGHUP)
    ///
    /// Guarded by the exact plan: the agents' real ClientHellos are replayed through the new
    /// listeners and the new certificate is checked as the agents check it. When agents that
    /// have a working path now would lose it, the old settings keep serving and the command
    /// names them and exits 2, unless --accept-cut-off.
    Reload {
        #[command(flatten)]
        guarded: Guarded,
    },
    /// Rotate ward's CA without orphaning an agent, in three steps on a running server:
    /// `start` makes a new CA and hands it to every agent inside its signed settings (agents
    /// then trust both); `status` shows who has acknowledged it; `switch` re-issues the
    /// listeners' certificates from the new CA, only when every agent that checks the
    /// certificate trusts it (the same guard as a reload: --dry-run, --accept-cut-off)
    RotateCa {
        #[command(subcommand)]
        step: RotateStep,
    },
    /// Rotate the server's agreement key (the X25519 key every agent's MAC key is derived
    /// from) without orphaning an agent: `start` makes the next key and hands it to every
    /// agent inside its signed settings (check-ins under either key are accepted); `status`
    /// shows who signs under it; `switch` makes it the only key, only when every agent does
    /// (--dry-run, --accept-cut-off)
    RotateKey {
        #[command(subcommand)]
        step: RotateStep,
    },
}

#[derive(Subcommand)]
pub enum RotateStep {
    /// Make the new CA (certs/ca-next.pem) or key (keys/agreement-next.key) and give every
    /// agent new settings that carry it
    Start {
        #[command(flatten)]
        data: DataArg,
        /// Print JSON: the server's answer
        #[arg(long)]
        json: bool,
    },
    /// The CAs or keys, and the agents that have not acknowledged the new one yet (exit 2
    /// while some have not)
    Status {
        #[command(flatten)]
        data: DataArg,
        /// Print JSON: the server's answer
        #[arg(long)]
        json: bool,
    },
    /// Make the new CA or key the only one (for a CA: the listeners' certificates re-issued
    /// from it and reloaded). Refused (exit 2), nothing changed, while agents that have not
    /// acknowledged it would lose their last path
    Switch {
        #[command(flatten)]
        guarded: Guarded,
    },
    /// Give up the rotation under way. For a CA: the new CA goes and every agent's settings
    /// carry the current one only (the listeners never served the new one, so nobody can be
    /// cut off). For a key: the next key is withdrawn (still accepted, no longer handed out;
    /// agents that adopted it are handed the current key again), and removed once no agent
    /// signs under it; run it again to remove it, refused (exit 2) while agents would be cut
    /// off
    Abort {
        #[command(flatten)]
        guarded: Guarded,
    },
}

/// The arguments of a change the server guards (a reload, a CA switch).
#[derive(Args)]
pub struct Guarded {
    #[command(flatten)]
    data: DataArg,
    /// Print JSON: the server's answer
    #[arg(long)]
    json: bool,
    /// Show the plan (the agents and other peers it would cut off) and change nothing
    #[arg(long)]
    dry_run: bool,
    /// Go on even if agents would lose their last path (audited, with whom)
    #[arg(long)]
    accept_cut_off: bool,
}

pub fn run(args: ServerArgs) -> CmdResult {
    match args.action {
        None => serve(args.run),
        Some(ServerAction::Init {
            data,
            addresses,
            database,
        }) => {
            let data = DataDir::new(data.data);
            let overrides = Overrides {
                database: database.database,
                ..addresses.overrides()
            };
            initialise(&data, &overrides)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(ServerAction::Configtest { data, json }) => configtest(&DataDir::new(data.data), json),
        Some(ServerAction::RenewCert { data, json }) => renew_cert(&DataDir::new(data.data), json),
        Some(ServerAction::Backup { data, out, json }) => {
            super::backup::backup(&DataDir::new(data.data), &out, json)
        }
        Some(ServerAction::Restore {
            from,
            data,
            files_only,
            json,
        }) => super::backup::restore(&from, &data, json, files_only),
        Some(ServerAction::List { data, json }) => list(&DataDir::new(data.data), json),
        Some(ServerAction::Reload { guarded }) => reload(
            &DataDir::new(guarded.data.data),
            guarded.json,
            guarded.dry_run,
            guarded.accept_cut_off,
        ),
        Some(ServerAction::RotateCa { step }) => rotate(Rotated::Ca, step),
        Some(ServerAction::RotateKey { step }) => rotate(Rotated::AgreementKey, step),
    }
}

/// What `rotate-ca` and `rotate-key` rotate.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rotated {
    Ca,
    AgreementKey,
}

/// What a rotation step answered.
#[derive(Serialize)]
#[serde(untagged)]
enum Rotation {
    Ca(CaStatus),
    Key(KeyStatus),
    Switch(Box<SwitchAnswer>),
}

/// A guarded call's outcome: the answer or the API's refusal; only a server that could not be
/// reached is the command's error.
fn outcome<T>(result: Result<T, ApiFailure>) -> Result<Result<T, ApiFailure>, String> {
    match result {
        Err(failure) if failure.status == 0 => Err(failure.message),
        other => Ok(other),
    }
}

/// A refusal as the command shows it (its plan too), and its exit code: 2 for a guard's
/// refusal (409), 1 otherwise.
fn refused(failure: &ApiFailure, as_json: bool) -> ExitCode {
    if as_json {
        match &failure.refusal {
            Some(refusal) => println!("{}", pretty(refusal)),
            None => println!(
                "{}",
                pretty(&ward_api::ErrorDetail {
                    code: failure.code.clone(),
                    message: failure.message.clone(),
                })
            ),
        }
    } else {
        if let Some(refusal) = &failure.refusal {
            for finding in refusal.findings.iter().flatten() {
                println!("{}: {}", finding.severity, finding.message);
            }
        }
        if let Some(plan) = failure.plan() {
            print_reload_plan(plan);
        }
        println!("refused ({}): {}", failure.status, failure.message);
    }
    if failure.status == 409 {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}

fn describe_ca(which: &str, ca: Option<&CaDescription>) {
    if let Some(ca) = ca {
        println!(
            "{which:<9} CA {} ({}, {} days left)",
            ca.fingerprint.as_deref().unwrap_or("?"),
            ca.subject.as_deref().unwrap_or("?"),
            ca.days_left.map_or("?".into(), |d| d.to_string())
        );
    }
}

fn describe_acknowledgement(ack: Option<&Acknowledgement>, what: &str) {
    let Some(ack) = ack else {
        return;
    };
    println!(
        "{} of {} agent(s) have acknowledged the new {what}",
        ack.acknowledged, ack.agents
    );
    for agent in &ack.not_acknowledged {
        println!(
            "  {} ({}, last check-in {}): {}",
            agent.id,
            agent.group.as_deref().unwrap_or("?"),
            agent.last_checkin.as_deref().unwrap_or("never"),
            agent.why
        );
    }
}

fn describe_rotation(answer: &Rotation) {
    match answer {
        Rotation::Ca(ca) => {
            describe_ca("current", ca.current.as_ref());
            describe_ca("next", ca.next.as_ref());
            describe_ca("previous", ca.previous.as_ref());
            describe_acknowledgement(ca.acknowledgement.as_ref(), "CA");
            if ca.dry_run == Some(true) {
                println!("dry run: nothing changed");
            } else if ca.aborted == Some(true) {
                println!("aborted: the rotation is given up");
            }
        }
        Rotation::Key(key) => {
            if let Some(plan) = &key.plan {
                if plan.lost > 0 {
                    print_reload_plan(plan);
                }
            }
            println!("{:<9} key {}", "current", key.current);
            if let Some(next) = &key.next {
                println!("{:<9} key {next}", "next");
            }
            describe_acknowledgement(key.acknowledgement.as_ref(), "key");
            if let Some(sha256) = &key.withdrawn {
                println!(
                    "withdrawn key {sha256}: still accepted, {} agent(s) sign under it; `ward \
                     server rotate-key abort` removes it once none do",
                    key.signing_under_withdrawn.unwrap_or(0)
                );
            }
            match key.aborted {
                Some(true) => println!("aborted: the rotation is given up"),
                Some(false) => {
                    println!("the next key is withdrawn: agents are handed the current key again")
                }
                None => {}
            }
        }
        Rotation::Switch(switch) => {
            print_reload_plan(&switch.plan);
            if let Some(ca) = &switch.ca {
                describe_rotation(&Rotation::Ca(ca.clone()));
            }
            if let Some(key) = &switch.key {
                describe_rotation(&Rotation::Key(key.clone()));
            }
            if switch.dry_run == Some(true) {
                println!("dry run: nothing changed");
            } else if switch.ca.is_some() {
                println!("switched: the listeners serve certificates of the new CA, and the agents' settings carry only it");
            } else {
                println!("switched: check-ins are accepted under the new key only");
            }
        }
    }
}

fn rotate(what: Rotated, step: RotateStep) -> CmdResult {
    let base = match what {
        Rotated::Ca => "/api/v1/server/ca",
        Rotated::AgreementKey => "/api/v1/server/agreement-key",
    };
    let guard = |guarded: &Guarded| GuardedRequest {
        dry_run: guarded.dry_run,
        accept_cut_off: guarded.accept_cut_off,
    };
    let (data, json) = match &step {
        RotateStep::Start { data, json } | RotateStep::Status { data, json } => {
            (data.clone(), *json)
        }
        RotateStep::Switch { guarded } | RotateStep::Abort { guarded } => {
            (guarded.data.clone(), guarded.json)
        }
    };
    let client = AdminClient::local(&DataDir::new(data.data))?;
    let status_of = |path: &str,
                     body: Option<GuardedRequest>|
     -> Result<Result<Rotation, ApiFailure>, String> {
        let method = if path == base { "GET" } else { "POST" };
        outcome(match what {
            Rotated::Ca => client.send(method, path, body.as_ref()).map(Rotation::Ca),
            Rotated::AgreementKey => client.send(method, path, body.as_ref()).map(Rotation::Key),
        })
    };
    let answer = match &step {
        RotateStep::Start { .. } => status_of(&format!("{base}/rotate"), None)?,
        RotateStep::Status { .. } => status_of(base, None)?,
        RotateStep::Abort { guarded } => status_of(&format!("{base}/abort"), Some(guard(guarded)))?,
        RotateStep::Switch { guarded } => outcome(
            client
                .post(&format!("{base}/switch"), &guard(guarded))
                .map(|switch| Rotation::Switch(Box::new(switch))),
        )?,
    };
    let answer = match answer {
        Ok(answer) => answer,
        Err(failure) => return Ok(refused(&failure, json)),
    };
    if json {
        println!("{}", pretty(&answer));
    } else {
        describe_rotation(&answer);
    }
    let waiting = match &answer {
        Rotation::Ca(ca) => ca.acknowledgement.as_ref(),
        Rotation::Key(key) => key.acknowledgement.as_ref(),
        Rotation::Switch(_) => None,
    }
    .is_some_and(|ack| ack.waiting > 0);
    let lost_in_dry_run = match &answer {
        Rotation::Switch(switch) => switch.dry_run == Some(true) && switch.plan.lost > 0,
        Rotation::Key(key) => {
            key.plan.as_ref().is_some_and(|p| p.lost > 0) && key.aborted != Some(true)
        }
        Rotation::Ca(_) => false,
    };
    Ok(match step {
        RotateStep::Status { .. } if waiting => ExitCode::from(2),
        _ if lost_in_dry_run => ExitCode::from(2),
        _ => ExitCode::SUCCESS,
    })
}

fn initialise(data: &DataDir, overrides: &Overrides) -> Result<(), String> {
    let addresses = ward_server::server::init_addresses(overrides);
    match ward_server::site::initialise(data, addresses, overrides.database.as_deref())
        .map_err(|e| e.to_string())?
    {
        Some(report) => eprint!("{}", report.message(data)),
        None => eprintln!("ward: {} is already initialised", data.root().display()),
    }
    Ok(())
}

/// Logs to stderr: text (without its own timestamps under journald, which stamps each line
/// itself: `JOURNAL_STREAM` is set), or JSON, one object per line.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(!journald && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match (format, journald) {
        (LogFormat::Text, false) => builder.init(),
        (LogFormat::Text, true) => builder.without_time().init(),
        (LogFormat::Json, _) => builder.json().init(),
    }
}

fn serve(args: RunArgs) -> CmdResult {
    let data = DataDir::new(args.data.data);
    let overrides = Overrides {
        database: args.database.database,
        ..args.addresses.overrides()
    };
    if !data.is_initialised() {
        // A start that cannot listen changes nothing: check the ports before the first init.
        let addresses = ward_server::server::init_addresses(&overrides);
        ward_server::server::check_addresses(&addresses).map_err(|e| e.to_string())?;
        initialise(&data, &overrides)?;
    }
    init_logging(args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ward-server")
        // Store work is serialised by the database anyway; more blocking threads would only
        // hold memory (each keeps allocator caches) when 10,000 held check-ins wake at once.
        .max_blocking_threads(64)
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime
        .block_on(ward_server::run_with(
            data,
            overrides,
            Some(std::sync::Arc::new(ward_console::Console)),
        ))
        .map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

fn configtest(data: &DataDir, as_json: bool) -> CmdResult {
    if !data.is_initialised() {
        return Err(format!(
            "{} is not initialised: run `ward server init --data {}`",
            data.root().display(),
            data.root().display()
        ));
    }
    let findings = ward_server::configtest(data);
    let ok = findings.iter().all(|f| f.severity != Severity::Error);
    // With a server running on these files, the plan of the reload they would make: who it
    // would cut off (agents and other peers), by the server's own replay.
    let plan: Option<GuardPlan> = if ok && ward_server::datadir::running_console(data).is_some() {
        AdminClient::local(data)
            .ok()
            .and_then(|client| {
                client
                    .post::<_, ReloadAnswer>(
                        "/api/v1/server/reload",
                        &GuardedRequest {
                            dry_run: true,
                            accept_cut_off: false,
                        },
                    )
                    .ok()
            })
            .and_then(|answer| answer.plan)
    } else {
        None
    };
    if as_json {
        /// What `configtest --json` says.
        #[derive(Serialize)]
        struct Configtest {
            ok: bool,
            findings: Vec<ward_api::server::Finding>,
            reload_plan: Option<GuardPlan>,
        }
        let answer = Configtest {
            ok,
            findings: ward_server::operations::server::findings(&findings),
            reload_plan: plan,
        };
        println!("{}", pretty(&answer));
    } else {
        for finding in &findings {
            println!("{}: {}", finding.severity, finding.text);
        }
        if let Some(plan) = &plan {
            println!("the running server, reloading these files:");
            print_reload_plan(plan);
        }
        println!("{}", if ok { "Syntax OK" } else { "configtest failed" });
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn list(data: &DataDir, as_json: bool) -> CmdResult {
    let client = AdminClient::local(data)?;
    let answer: ward_api::server::Servers = client
        .get("/api/v1/servers")
        .map_err(|failure| failure.to_string())?;
    if as_json {
        println!("{}", super::fleet::pretty(&answer));
        return Ok(ExitCode::SUCCESS);
    }
    for server in &answer.servers {
        println!(
            "{}{}  {}  ward {}  last heartbeat {}",
            server.name,
            if server.this { " (this one)" } else { "" },
            if server.alive { "alive" } else { "NOT ALIVE" },
            server.version,
            server.last_heartbeat
        );
        for listener in &server.listeners {
            println!(
                "  {:<13} {:<22} {}",
                listener.role, listener.address, listener.tls
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn renew_cert(data: &DataDir, as_json: bool) -> CmdResult {
    if !data.is_initialised() {
        return Err(format!("{} is not initialised", data.root().display()));
    }
    // No server runs while this process holds the data dir: renew here. Otherwise the server
    // renews (under its lock, never half-way through a rotation) and reloads, guarded.
    let answer = match data.lock() {
        Ok(_held_until_renewed) => {
            if data.journal().exists() {
                return Err(format!(
                    "{}: a change of the data dir was interrupted; start the server once to \
                     finish it, then renew",
                    data.journal().display()
                ));
            }
            let written =
                ward_server::datadir::renew_server_certificates(data).map_err(|e| e.to_string())?;
            ReloadAnswer {
                reloaded: false,
                dry_run: None,
                findings: Vec::new(),
                plan: None,
                renewed: Some(
                    written
                        .iter()
                        .map(|(file, days)| ward_api::server::Renewed {
                            file: file.display().to_string(),
                            days_left: *days,
                        })
                        .collect(),
                ),
            }
        }
        Err(_) => {
            let client = AdminClient::local(data)?;
            match outcome(client.post(
                "/api/v1/server/certificates/renew",
                &RenewRequest::default(),
            ))? {
                Ok(answer) => answer,
                Err(failure) => return Ok(refused(&failure, as_json)),
            }
        }
    };
    if as_json {
        println!("{}", pretty(&answer));
    } else {
        for renewed in answer.renewed.iter().flatten() {
            println!(
                "renewed {} (valid for {} days)",
                renewed.file, renewed.days_left
            );
        }
        if answer.reloaded {
            println!("reloaded: new connections get the renewed certificates");
        } else {
            println!("no server runs on this data dir: the next start uses them");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn reload(data: &DataDir, as_json: bool, dry_run: bool, accept_cut_off: bool) -> CmdResult {
    let client = AdminClient::local(data)?;
    let request = GuardedRequest {
        dry_run,
        accept_cut_off,
    };
    let answer: ReloadAnswer = match outcome(client.post("/api/v1/server/reload", &request))? {
        Ok(answer) => answer,
        Err(failure) => return Ok(refused(&failure, as_json)),
    };
    if as_json {
        println!("{}", pretty(&answer));
    } else {
        for finding in &answer.findings {
            println!("{}: {}", finding.severity, finding.message);
        }
        if let Some(plan) = &answer.plan {
            print_reload_plan(plan);
        }
        if dry_run {
            println!("dry run: nothing changed");
        } else {
            println!("reloaded: new connections get the new settings");
        }
    }
    let lost = answer.plan.as_ref().is_some_and(|p| p.lost > 0);
    Ok(if dry_run && lost {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// The reload's plan: the agents that would lose their last path, and the other peers the new
/// listeners would refuse.
fn print_reload_plan(plan: &GuardPlan) {
    if let Some(failed) = &plan.plan_failed {
        println!("plan failed: {failed}");
        return;
    }
    println!(
        "plan: {} agent(s) would lose their last path; {} other peer(s) seen in the last day \
         would be refused",
        plan.lost,
        plan.peers_cut_off.unwrap_or(0)
    );
    super::harden::print_cut_off_lines(plan);
    for peer in plan.peers.iter().flatten() {
        if peer.verdict == "cut_off" {
            println!("  peer {} {}: {}", peer.listener, peer.address, peer.reason);
        }
    }
}
