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
    /// Take a consistent snapshot of a data dir, even of a running server: the database
    /// (SQLite's VACUUM INTO, one read transaction), ward.toml, the conf files, certificates,
    /// keys and the admin token, each with its mode, in one tar file (mode 0600)
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
    /// Bring a backup back into a new data dir (refused if the dir exists and is not empty)
    Restore {
        /// The backup file
        #[arg(long = "from", value_name = "FILE")]
        from: std::path::PathBuf,
        /// The new data dir
        #[arg(long, value_name = "DIR")]
        data: std::path::PathBuf,
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
        Some(ServerAction::Init { data, addresses }) => {
            let data = DataDir::new(data.data);
            initialise(&data, &addresses.overrides())?;
            Ok(ExitCode::SUCCESS)
        }
        Some(ServerAction::Configtest { data, json }) => configtest(&DataDir::new(data.data), json),
        Some(ServerAction::RenewCert { data, json }) => renew_cert(&DataDir::new(data.data), json),
        Some(ServerAction::Backup { data, out, json }) => {
            super::backup::backup(&DataDir::new(data.data), &out, json)
        }
        Some(ServerAction::Restore { from, data, json }) => {
            super::backup::restore(&from, &data, json)
        }
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

fn rotate(what: Rotated, step: RotateStep) -> CmdResult {
    let base = match what {
        Rotated::Ca => "/api/v1/server/ca",
        Rotated::AgreementKey => "/api/v1/server/agreement-key",
    };
    let (data, json, method, path, body) = match step {
        RotateStep::Start { data, json } => (data, json, "POST", format!("{base}/rotate"), None),
        RotateStep::Status { data, json } => (data, json, "GET", base.to_string(), None),
        RotateStep::Switch { guarded } => (
            guarded.data,
            guarded.json,
            "POST",
            format!("{base}/switch"),
            Some(json!({"dry_run": guarded.dry_run, "accept_cut_off": guarded.accept_cut_off})),
        ),
        RotateStep::Abort { guarded } => (
            guarded.data,
            guarded.json,
            "POST",
            format!("{base}/abort"),
            Some(json!({"dry_run": guarded.dry_run, "accept_cut_off": guarded.accept_cut_off})),
        ),
    };
    let data = DataDir::new(data.data);
    let client = AdminClient::local(&data)?;
    let reply = client.request(method, &path, body.as_ref())?;
    let body = &reply.body;
    let status = match (&body["ca"], &body["key"]) {
        (ca, _) if ca.is_object() => ca,
        (_, key) if key.is_object() => key,
        _ => body,
    };
    if json {
        println!("{body:#}");
    } else if reply.status == 200 {
        let describe = |which: &str, it: &serde_json::Value| {
            if it.is_object() {
                println!(
                    "{which:<9} CA {} ({}, {} days left)",
                    it["fingerprint"].as_str().unwrap_or("?"),
                    it["subject"].as_str().unwrap_or("?"),
                    it["days_left"]
                );
            } else if let Some(sha256) = it.as_str() {
                println!("{which:<9} key {sha256}");
            }
        };
        if body["dry_run"] == true || body["switched"] == true {
            print_reload_plan(&body["plan"]);
        }
        describe("current", &status["current"]);
        describe("next", &status["next"]);
        describe("previous", &status["previous"]);
        if status["under_way"] == true {
            println!(
                "{} of {} agent(s) have acknowledged the new {}",
                status["acknowledged"],
                status["agents"],
                if what == Rotated::Ca { "CA" } else { "key" }
            );
            for agent in status["not_acknowledged"].as_array().into_iter().flatten() {
                println!(
                    "  {} ({}, last check-in {}): {}",
                    agent["id"].as_str().unwrap_or("?"),
                    agent["group"].as_str().unwrap_or("?"),
                    agent["last_checkin"].as_str().unwrap_or("never"),
                    agent["why"].as_str().unwrap_or("")
                );
            }
        }
        if let Some(sha256) = status["withdrawn"].as_str() {
            println!(
                "withdrawn key {sha256}: still accepted, {} agent(s) sign under it; `ward \
                 server rotate-key abort` removes it once none do",
                status["signing_under_withdrawn"]
            );
        }
        if body["dry_run"] == true {
            println!("dry run: nothing changed");
        } else if body["aborted"] == true {
            println!("aborted: the rotation is given up");
        } else if body["aborted"] == false {
            println!("the next key is withdrawn: agents are handed the current key again");
        } else if body["switched"] == true && what == Rotated::Ca {
            println!("switched: the listeners serve certificates of the new CA, and the agents' settings carry only it");
        } else if body["switched"] == true {
            println!("switched: check-ins are accepted under the new key only");
        }
    } else {
        print_reload_plan(&body["plan"]);
        println!(
            "refused ({}): {}",
            reply.status,
            body["error"]["message"]
                .as_str()
                .unwrap_or("no reason given")
        );
    }
    let waiting = status["waiting"].as_u64().unwrap_or(0) > 0;
    Ok(match reply.status {
        200 if body["dry_run"] == true && body["plan"]["lost"].as_u64().unwrap_or(0) > 0 => {
            ExitCode::from(2)
        }
        200 if method == "GET" && waiting => ExitCode::from(2),
        200 => ExitCode::SUCCESS,
        409 => ExitCode::from(2),
        _ => ExitCode::from(1),
    })
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
    // No server runs while this process holds the data dir: renew here. Otherwise the server
    // renews (under its lock, never half-way through a rotation) and reloads, guarded.
    let reply = match data.lock() {
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
            let renewed: Vec<serde_json::Value> = written
                .iter()
                .map(|(file, days)| json!({"file": file.display().to_string(), "days_left": days}))
                .collect();
            (0u16, json!({"renewed": renewed}))
        }
        Err(_) => {
            let client = AdminClient::local(data)?;
            let reply = client.request(
                "POST",
                "/api/v1/server/certificates/renew",
                Some(&json!({})),
            )?;
            (reply.status, reply.body)
        }
    };
    let (status, body) = reply;
    if as_json {
        println!("{body:#}");
    } else {
        for renewed in body["renewed"].as_array().into_iter().flatten() {
            println!(
                "renewed {} (valid for {} days)",
                renewed["file"].as_str().unwrap_or("?"),
                renewed["days_left"]
            );
        }
        match status {
            0 => println!("no server runs on this data dir: the next start uses them"),
            200 => println!("reloaded: new connections get the renewed certificates"),
            status => println!(
                "not reloaded ({status}): {}",
                body["error"]["message"].as_str().unwrap_or("-")
            ),
        }
    }
    Ok(match status {
        0 | 200 => ExitCode::SUCCESS,
        409 => ExitCode::from(2),
        _ => ExitCode::from(1),
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
    super::harden::print_cut_off_lines(plan);
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
