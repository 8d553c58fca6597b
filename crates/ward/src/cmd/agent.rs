//! `ward agent ...`: the managed client (the seed's `smc`): enroll, run in the foreground, or
//! start, stop and query a background agent through its control socket.

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use ward_agent::{RunConfig, Status, Stopper, Trust};
use ward_tls::TlsVersion;

use super::CmdResult;

#[derive(Subcommand)]
pub enum AgentCommand {
    /// Enroll with a server using a group's token; writes the settings file in --state
    Enroll(EnrollArgs),
    /// Run the agent in the foreground
    Run(RunArgs),
    /// Run the agent in the background (like `smc -start`)
    Start(RunArgs),
    /// Stop the background agent (like `smc -stop`)
    Stop(StateArg),
    /// Show the running agent's server, channel, TLS version, serial and check-ins
    Status(StatusArgs),
    /// Replace the agent's communication settings from a package made by
    /// `ward group export-settings` (recovers an orphaned agent); keeps its identity when the
    /// server still knows it
    ImportSettings(ImportArgs),
}

#[derive(Args)]
pub struct ImportArgs {
    /// The package file
    file: PathBuf,
    #[command(flatten)]
    state: StateArg,
    /// The highest TLS version to offer
    #[arg(long, value_name = "VERSION")]
    tls_max: Option<String>,
}

#[derive(Args, Clone)]
pub struct StateArg {
    /// The agent's state directory (settings file, policy, control socket, log)
    #[arg(long, value_name = "DIR")]
    state: PathBuf,
}

/// Where an agent enrolls, with which token, and how it knows the server.
#[derive(Args)]
pub struct EnrollTarget {
    /// The server's clients URL, e.g. https://mgr1:443 or http://mgr1:8014
    #[arg(long)]
    pub server: String,
    /// The enrollment token (`ward group token create`)
    #[arg(long)]
    pub token: String,
    /// The CA of the server's certificates (its certs/ca.pem)
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// The SHA-256 of the server's agreement key (agreement_key_sha256 of GET
    /// /agent/v1/hello); required when enrolling over plain HTTP
    #[arg(long, value_name = "SHA256")]
    pub pin: Option<String>,
}

#[derive(Args)]
pub struct EnrollArgs {
    #[command(flatten)]
    target: EnrollTarget,
    #[command(flatten)]
    state: StateArg,
    /// The highest TLS version to offer (TLSv1 reproduces a Windows XP client)
    #[arg(long, value_name = "VERSION")]
    tls_max: Option<String>,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

#[derive(Args, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    state: StateArg,
    /// The highest TLS version to offer (TLSv1, TLSv1.1, TLSv1.2, TLSv1.3)
    #[arg(long, value_name = "VERSION")]
    tls_max: Option<String>,
    /// A shell command run after each change of settings (WARD_SERIAL, WARD_POLICY set)
    #[arg(long, value_name = "CMD")]
    on_change: Option<String>,
    /// After this long on a lower-priority server, try the higher priorities again
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    return_after: String,
}

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    state: StateArg,
    /// Print JSON: {"id", "server", "channel", "tls_version", "serial", "last_checkin", "next_checkin"}
    #[arg(long)]
    json: bool,
}

fn tls_max(text: &Option<String>) -> Result<Option<TlsVersion>, String> {
    text.as_deref()
        .map(|t| {
            TlsVersion::parse_loose(t).ok_or_else(|| {
                format!("--tls-max {t}: expected TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3")
            })
        })
        .transpose()
}

pub fn run(command: AgentCommand) -> CmdResult {
    match command {
        AgentCommand::Enroll(args) => enroll(args),
        AgentCommand::Run(args) => run_foreground(args),
        AgentCommand::Start(args) => start(args),
        AgentCommand::Stop(args) => stop(args),
        AgentCommand::Status(args) => status(args),
        AgentCommand::ImportSettings(args) => import(args),
    }
}

fn enroll(args: EnrollArgs) -> CmdResult {
    if args.target.ca.is_none() && args.target.pin.is_none() {
        return Err("give the server's CA (--ca FILE) or its key pin (--pin SHA256)".into());
    }
    let ca_pem = match &args.target.ca {
        Some(path) => std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?,
        None => Vec::new(),
    };
    let trust = Trust {
        ca_pem,
        pin: args.target.pin.clone(),
    };
    let state = ward_agent::enroll(
        &args.target.server,
        &args.target.token,
        trust,
        &args.state.state,
        tls_max(&args.tls_max)?,
    )?;
    if args.json {
        println!(
            "{:#}",
            serde_json::json!({"id": state.agent, "group": state.settings.raw["group"], "serial": state.settings.serial()})
        );
    } else {
        println!(
            "enrolled as {} in {}",
            state.agent,
            state.settings.raw["group"].as_str().unwrap_or("?")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn run_foreground(args: RunArgs) -> CmdResult {
    let return_after = ward_server::config::parse_duration(&args.return_after)
        .map_err(|e| format!("--return-after: {e}"))?;
    let config = RunConfig {
        dir: args.state.state.clone(),
        tls_max: tls_max(&args.tls_max)?,
        on_change: args.on_change.clone(),
        return_after,
    };
    let stopper = Arc::new(Stopper::default());
    let status = Arc::new(Mutex::new(Status::default()));
    let control = ward_agent::serve_control(&config.dir, stopper.clone(), status.clone())?;
    // A stop is prompt even during a held push check-in: after a short grace the process
    // ends; the settings file is only ever replaced atomically, so nothing is left torn.
    let watchdog = stopper.clone();
    std::thread::spawn(move || {
        while !watchdog.is_stopped() {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_secs(3));
        let _ = std::fs::remove_file(ward_agent::socket_path(&args.state.state));
        std::process::exit(0);
    });
    let result = ward_agent::run(&config, &stopper, &status);
    stopper.stop();
    let _ = control.join();
    result.map(|_| ExitCode::SUCCESS)
}

fn start(args: RunArgs) -> CmdResult {
    use std::os::unix::process::CommandExt;
    let dir = &args.state.state;
    if ward_agent::control(dir, "status").is_ok() {
        return Err(format!("an agent already runs on {}", dir.display()));
    }
    let log_path = dir.join("agent.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = Command::new(exe);
    command
        .args(["agent", "run", "--state"])
        .arg(dir)
        .args(["--return-after", &args.return_after]);
    if let Some(max) = &args.tls_max {
        command.args(["--tls-max", max]);
    }
    if let Some(on_change) = &args.on_change {
        command.args(["--on-change", on_change]);
    }
    let log_err = log.try_clone().map_err(|e| e.to_string())?;
    command
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start the agent: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if ward_agent::control(dir, "status").is_ok() {
            println!(
                "agent started (pid {}); log: {}",
                child.id(),
                log_path.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        if let Ok(Some(exit)) = child.try_wait() {
            return Err(format!(
                "the agent exited at once ({exit}); see {}",
                log_path.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "the agent did not answer within 10 s; see {}",
        log_path.display()
    ))
}

fn stop(args: StateArg) -> CmdResult {
    ward_agent::control(&args.state, "stop")?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while ward_agent::socket_path(&args.state).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("agent stopped");
    Ok(ExitCode::SUCCESS)
}

fn status(args: StatusArgs) -> CmdResult {
    let value = ward_agent::control(&args.state.state, "status")?;
    if args.json {
        println!("{value:#}");
    } else {
        let text = |k: &str| value[k].as_str().unwrap_or("-").to_string();
        println!("agent {}", text("id"));
        println!(
            "  server       {} ({}, {})",
            text("server"),
            text("channel"),
            text("tls_version")
        );
        println!("  mode         {}", text("mode"));
        println!("  serial       {}", value["serial"]);
        println!("  last checkin {}", text("last_checkin"));
        println!("  next checkin {}", text("next_checkin"));
        if let Some(error) = value["last_error"].as_str() {
            println!("  last error   {error}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn import(args: ImportArgs) -> CmdResult {
    let text =
        std::fs::read_to_string(&args.file).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let package: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let (state, kept) =
        ward_agent::import_settings(&package, &args.state.state, tls_max(&args.tls_max)?)?;
    if kept {
        println!("settings imported; agent {} kept its identity", state.agent);
    } else {
        println!("settings imported; enrolled as {}", state.agent);
    }
    Ok(ExitCode::SUCCESS)
}
