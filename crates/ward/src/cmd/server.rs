//! `ward server ...`: run, initialise, check and reload the management server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use ward_server::{DataDir, Overrides};
use ward_tls::Severity;

use super::CmdResult;
use crate::client::AdminClient;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServerArgs {
    #[command(subcommand)]
    action: Option<ServerAction>,
    #[command(flatten)]
    run: RunArgs,
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
}

#[derive(Args, Clone)]
pub struct AddressArgs {
    /// Console listener address (admin API, TLS from conf/ssl/ssl.conf) [ward.toml: 0.0.0.0:8445]
    #[arg(long, value_name = "ADDR:PORT")]
    console_addr: Option<SocketAddr>,
    /// Clients listener address (HTTPS agent API, conf/ssl/sslforclients.conf) [ward.toml: 0.0.0.0:443]
    #[arg(long, value_name = "ADDR:PORT")]
    clients_addr: Option<SocketAddr>,
    /// Clients-http listener address (plain-HTTP agent API for legacy agents) [ward.toml: 0.0.0.0:8014]
    #[arg(long, value_name = "ADDR:PORT")]
    clients_http_addr: Option<SocketAddr>,
}

impl AddressArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            console: self.console_addr,
            clients: self.clients_addr,
            clients_http: self.clients_http_addr,
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
    },
    /// Check ward.toml and both TLS conf files; print every error and warning with file:line
    Configtest {
        #[command(flatten)]
        data: DataArg,
        /// Print JSON: {"ok": bool, "findings": [{"severity", "message"}]}
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
        data: DataArg,
        /// Print JSON: the server's answer
        #[arg(long)]
        json: bool,
        /// Show the plan of the reload (agents and other peers cut off) and change nothing
        #[arg(long)]
        dry_run: bool,
        /// Reload even if agents would lose their last path (audited, with whom)
        #[arg(long)]
        accept_cut_off: bool,
    },
}

pub fn run(args: ServerArgs) -> CmdResult {
    match args.action {
        None => serve(args.run),
        Some(ServerAction::Init { data, addresses }) => {
            let data = DataDir::new(data.data);
            initialise(&data, &addresses.overrides())?;
            Ok(ExitCode::SUCCESS)
        }
        Some(ServerAction::Configtest { data, json }) => configtest(&DataDir::new(data.data), json),
        Some(ServerAction::RenewCert { data, json }) => renew_cert(&DataDir::new(data.data), json),
        Some(ServerAction::Reload {
            data,
            json,
            dry_run,
            accept_cut_off,
        }) => reload(&DataDir::new(data.data), json, dry_run, accept_cut_off),
    }
}

fn initialise(data: &DataDir, overrides: &Overrides) -> Result<(), String> {
    let addresses = ward_server::server::init_addresses(overrides);
    match ward_server::datadir::initialise(data, addresses).map_err(|e| e.to_string())? {
        Some(report) => eprint!("{}", report.message(data)),
        None => eprintln!("ward: {} is already initialised", data.root().display()),
    }
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn serve(args: RunArgs) -> CmdResult {
    let data = DataDir::new(args.data.data);
    let overrides = args.addresses.overrides();
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
        .block_on(ward_server::run(data, overrides))
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
    let plan = if ok && ward_server::datadir::running_console(data).is_some() {
        AdminClient::local(data)
            .and_then(|client| {
                client.request(
                    "POST",
                    "/api/v1/server/reload",
                    Some(&json!({"dry_run": true})),
                )
            })
            .ok()
            .map(|reply| reply.body["plan"].clone())
            .filter(|plan| !plan.is_null())
    } else {
        None
    };
    if as_json {
        let findings = ward_server::listener_tls::findings_json(&findings);
        println!(
            "{:#}",
            json!({"ok": ok, "findings": findings, "reload_plan": plan})
        );
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

fn renew_cert(data: &DataDir, as_json: bool) -> CmdResult {
    if !data.is_initialised() {
        return Err(format!("{} is not initialised", data.root().display()));
    }
    let written =
        ward_server::datadir::renew_server_certificates(data).map_err(|e| e.to_string())?;
    let running = ward_server::datadir::running_console(data).is_some();
    let reply = if running {
        let client = AdminClient::local(data)?;
        Some(client.request("POST", "/api/v1/server/reload", Some(&json!({})))?)
    } else {
        None
    };
    if as_json {
        println!(
            "{:#}",
            json!({
                "renewed": written.iter().map(|(path, days)| json!({"file": path.display().to_string(), "days_left": days})).collect::<Vec<_>>(),
                "reload": reply.as_ref().map(|r| json!({"status": r.status, "answer": r.body})),
            })
        );
    } else {
        for (path, days) in &written {
            println!("renewed {} (valid for {days} days)", path.display());
        }
        match &reply {
            Some(reply) if reply.status == 200 => {
                println!("reloaded: new connections get the renewed certificates")
            }
            Some(reply) => println!(
                "not reloaded ({}): {}",
                reply.status,
                reply.body["error"]["message"].as_str().unwrap_or("-")
            ),
            None => println!("no server runs on this data dir: the next start uses them"),
        }
    }
    Ok(match &reply {
        Some(reply) if reply.status != 200 => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}

fn reload(data: &DataDir, as_json: bool, dry_run: bool, accept_cut_off: bool) -> CmdResult {
    let client = AdminClient::local(data)?;
    let body = serde_json::json!({"dry_run": dry_run, "accept_cut_off": accept_cut_off});
    let reply = client.request("POST", "/api/v1/server/reload", Some(&body))?;
    if as_json {
        println!("{:#}", reply.body);
    } else {
        for finding in reply.body["findings"].as_array().into_iter().flatten() {
            println!(
                "{}: {}",
                finding["severity"].as_str().unwrap_or(""),
                finding["message"].as_str().unwrap_or("")
            );
        }
        print_reload_plan(&reply.body["plan"]);
        match reply.status {
            200 if dry_run => println!("dry run: nothing changed"),
            200 => println!("reloaded: new connections get the new settings"),
            _ => println!(
                "reload refused ({}): {}",
                reply.status,
                reply.body["error"]["message"]
                    .as_str()
                    .unwrap_or("no reason given")
            ),
        }
    }
    Ok(match reply.status {
        200 if dry_run && reply.body["plan"]["lost"].as_u64().unwrap_or(0) > 0 => ExitCode::from(2),
        200 => ExitCode::SUCCESS,
        409 => ExitCode::from(2),
        _ => ExitCode::from(1),
    })
}

/// The reload's plan: the agents that would lose their last path, and the other peers the new
/// listeners would refuse.
fn print_reload_plan(plan: &serde_json::Value) {
    if plan.is_null() {
        return;
    }
    if let Some(failed) = plan["plan_failed"].as_str() {
        println!("plan failed: {failed}");
        return;
    }
    let lost = plan["lost"].as_u64().unwrap_or(0);
    println!(
        "plan: {lost} agent(s) would lose their last path; {} other peer(s) seen in the last day \
         would be refused",
        plan["peers_cut_off"].as_u64().unwrap_or(0)
    );
    for line in plan["cut_off"].as_array().into_iter().flatten().take(50) {
        println!(
            "  {} {} in {}: {}",
            line["id"].as_str().unwrap_or("-"),
            line["hostname"].as_str().unwrap_or("-"),
            line["group"].as_str().unwrap_or("-"),
            line["reason"].as_str().unwrap_or("-")
        );
    }
    for peer in plan["peers"].as_array().into_iter().flatten() {
        if peer["verdict"] == "cut_off" {
            println!(
                "  peer {} {}: {}",
                peer["listener"].as_str().unwrap_or("-"),
                peer["address"].as_str().unwrap_or("-"),
                peer["reason"].as_str().unwrap_or("-")
            );
        }
    }
}
