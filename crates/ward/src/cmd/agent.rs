//! `ward agent ...`: the managed client (the seed's `smc`): enroll, run in the foreground, or
//! start, stop and query a background agent through its control socket.

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use ward_agent::control::{alive, RunLock};
use ward_agent::{EnrollOptions, RunConfig, Status, Stopper, Trust};
use ward_tls::TlsVersion;

use super::CodedResult;

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

impl AgentCommand {
    /// Whether this runs the agent (in the foreground or as a daemon).
    pub fn serves(&self) -> bool {
        matches!(self, AgentCommand::Run(_) | AgentCommand::Start(_))
    }
}

#[derive(Args)]
pub struct ImportArgs {
    /// The package file
    file: PathBuf,
    #[command(flatten)]
    state: StateArg,
    /// The highest TLS version to offer [default: what the state dir keeps]
    #[arg(long, value_name = "VERSION")]
    tls_max: Option<String>,
    /// Offer TLS as this real client stack does [default: what the state dir keeps]
    #[arg(long, value_name = "NAME")]
    client_profile: Option<String>,
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
    /// The highest TLS version to offer (TLSv1 reproduces a Windows XP client); kept in the
    /// settings file, so `run` and `start` keep the cap
    #[arg(long, value_name = "VERSION")]
    tls_max: Option<String>,
    /// Offer TLS exactly as a real client stack does: xp-ie8, win2003-aes, win7-default,
    /// java6, openssl-0.9.8 or modern (see `ward tls profiles`); kept in the settings file
    #[arg(long, value_name = "NAME", conflicts_with = "tls_max")]
    client_profile: Option<String>,
    /// The name shown in the server's client list [default: the host name]
    #[arg(long)]
    name: Option<String>,
    /// Replace the identity already enrolled in --state (the server then knows a new agent)
    #[arg(long)]
    force: bool,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

#[derive(Args, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    state: StateArg,
    /// The highest TLS version to offer (TLSv1, TLSv1.1, TLSv1.2, TLSv1.3) [default: the cap
    /// given at enrollment, kept in the settings file]
    #[arg(long, value_name = "VERSION")]
    tls_max: Option<String>,
    /// Offer TLS as this real client stack does [default: the profile given at enrollment]
    #[arg(long, value_name = "NAME", conflicts_with = "tls_max")]
    client_profile: Option<String>,
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

/// The offer given on the command line: a client profile, or a version cap, or neither.
fn offer(
    tls_max_text: &Option<String>,
    profile: &Option<String>,
) -> Result<ward_agent::Offer, String> {
    let profile = profile
        .as_deref()
        .map(|name| {
            ward_tls::profile::client_profile(name).ok_or_else(|| {
                format!(
                    "--client-profile {name}: no such profile (one of {})",
                    ward_tls::profile::profile_names()
                )
            })
        })
        .transpose()?;
    Ok(ward_agent::Offer {
        profile,
        tls_max: tls_max(tls_max_text)?,
    })
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

pub fn run(command: AgentCommand) -> CodedResult {
    match command {
        AgentCommand::Enroll(args) => enroll(args),
        AgentCommand::Run(args) => run_foreground(args),
        AgentCommand::Start(args) => start(args),
        AgentCommand::Stop(args) => stop(args),
        AgentCommand::Status(args) => status(args),
        AgentCommand::ImportSettings(args) => import(args),
    }
}

fn enroll(args: EnrollArgs) -> CodedResult {
    if args.target.ca.is_none() && args.target.pin.is_none() {
        return Err("give the server's CA (--ca FILE) or its key pin (--pin SHA256)".into());
    }
    let ca_pem = match &args.target.ca {
        Some(path) => std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?,
        None => Vec::new(),
    };
    if args.force {
        if let Some(pid) = RunLock::holder(&args.state.state) {
            return Err(format!(
                "an agent runs on {} (pid {pid}): stop it before enrolling again",
                args.state.state.display()
            )
            .into());
        }
    }
    let replaced = ward_agent::state::AgentState::load(&args.state.state).ok();
    let state = ward_agent::enroll(
        &args.state.state,
        EnrollOptions {
            url: &args.target.server,
            token: &args.target.token,
            trust: Trust {
                ca_pem,
                pin: args.target.pin.clone(),
            },
            offer: offer(&args.tls_max, &args.client_profile)?,
            name: args.name.clone(),
            force: args.force,
        },
    )?;
    if args.json {
        println!(
            "{:#}",
            serde_json::json!({
                "id": state.agent,
                "group": state.settings.group,
                "serial": state.settings.serial,
                "tls_max": state.tls_max,
                "client_profile": state.client_profile,
                "replaced": replaced.as_ref().map(|r| r.agent.clone()),
            })
        );
    } else {
        if let Some(old) = &replaced {
            println!(
                "replaced agent {} (the server still lists it: ward agents delete)",
                old.agent
            );
        }
        println!("enrolled as {} in {}", state.agent, state.settings.group);
    }
    Ok(ExitCode::SUCCESS)
}

fn run_foreground(args: RunArgs) -> CodedResult {
    let return_after = ward_proto::duration::parse(&args.return_after)
        .map_err(|e| format!("--return-after: {e}"))?;
    let config = RunConfig {
        dir: args.state.state.clone(),
        offer: offer(&args.tls_max, &args.client_profile)?,
        on_change: args.on_change.clone(),
        return_after,
    };
    // One agent per state dir: held until this process ends.
    let lock = RunLock::acquire(&config.dir)?;
    let stopper = Arc::new(Stopper::default());
    let status = Arc::new(Mutex::new(Status::default()));
    let control = ward_agent::control::serve_control(&lock, stopper.clone(), status.clone())?;
    // A stop interrupts the exchange under way (a held push check-in included); should the
    // loop still be busy (an --on-change command), the process ends after a short grace. The
    // settings file is only ever replaced atomically, so nothing is left torn.
    let watchdog = stopper.clone();
    let socket = ward_agent::socket_path(&config.dir);
    std::thread::spawn(move || {
        while !watchdog.is_stopped() {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_secs(3));
        let _ = std::fs::remove_file(socket);
        std::process::exit(0);
    });
    ward_agent::log(format_args!("started (pid {})", std::process::id()));
    let result = ward_agent::run(&config, &stopper, &status);
    stopper.stop();
    let _ = control.join();
    ward_agent::log(format_args!("stopped"));
    drop(lock);
    result.map(|_| ExitCode::SUCCESS).map_err(Into::into)
}

fn start(args: RunArgs) -> CodedResult {
    use std::os::unix::process::CommandExt;
    let dir = &args.state.state;
    if let Some(pid) = RunLock::holder(dir) {
        return Err(format!(
            "an agent already runs on {} (pid {pid}); `ward agent stop --state {}` first",
            dir.display(),
            dir.display()
        )
        .into());
    }
    if !ward_agent::state::AgentState::exists(dir) {
        return Err(format!(
            "{}: no agent enrolled here (ward agent enroll)",
            dir.display()
        )
        .into());
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
    if let Some(profile) = &args.client_profile {
        command.args(["--client-profile", profile]);
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
        if let Ok(Some(exit)) = child.try_wait() {
            return Err(format!(
                "the agent exited at once ({exit}); see {}",
                log_path.display()
            )
            .into());
        }
        let answer = ward_agent::control(dir, "status").ok();
        if answer.is_some_and(|a| a["pid"] == child.id()) {
            println!(
                "agent started (pid {}); log: {}",
                child.id(),
                log_path.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!(
        "the agent did not answer within 10 s; see {}",
        log_path.display()
    )
    .into())
}

/// Stops the agent and returns once its process has exited.
fn stop(args: StateArg) -> CodedResult {
    let answer = ward_agent::control(&args.state, "stop")?;
    let pid = answer["pid"].as_i64().unwrap_or(0) as i32;
    let deadline = Instant::now() + Duration::from_secs(15);
    while (alive(pid) || RunLock::holder(&args.state).is_some()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if alive(pid) {
        return Err(format!("the agent (pid {pid}) did not exit within 15 s").into());
    }
    println!("agent stopped (pid {pid})");
    Ok(ExitCode::SUCCESS)
}

fn status(args: StatusArgs) -> CodedResult {
    let value = ward_agent::control(&args.state.state, "status")?;
    if args.json {
        println!("{value:#}");
    } else {
        let text = |k: &str| value[k].as_str().unwrap_or("-").to_string();
        println!("agent {} (pid {})", text("id"), value["pid"]);
        println!(
            "  server       {} ({}, {})",
            text("server"),
            text("channel"),
            text("tls_version")
        );
        println!("  mode         {}", text("mode"));
        if let Some(profile) = value["client_profile"].as_str() {
            println!("  TLS offer    as {profile}");
        } else if let Some(max) = value["tls_max"].as_str() {
            println!("  TLS cap      {max}");
        }
        println!(
            "  serial       {}{}",
            value["serial"],
            if value["on_probation"] == true {
                " (on probation: not yet confirmed by a check-in with its servers)"
            } else {
                ""
            }
        );
        if let Some(reverted) = value["reverted"].as_str() {
            println!("  reverted     back on the last settings that worked, refusing {reverted}");
        }
        println!("  last checkin {}", text("last_checkin"));
        if value["held"] == true {
            println!("  next checkin now: the server holds a push check-in open");
        } else {
            println!("  next checkin {}", text("next_checkin"));
        }
        if let Some(error) = value["last_error"].as_str() {
            println!("  last error   {error}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn import(args: ImportArgs) -> CodedResult {
    let text =
        std::fs::read_to_string(&args.file).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let package =
        ward_agent::read_package(&text).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let (state, kept) = ward_agent::import_settings(
        &package,
        &args.state.state,
        offer(&args.tls_max, &args.client_profile)?,
    )?;
    if kept {
        println!("settings imported; agent {} kept its identity", state.agent);
    } else {
        println!("settings imported; enrolled as {}", state.agent);
    }
    // A running agent takes them at once.
    if let Ok(answer) = ward_agent::control(&args.state.state, "reload") {
        println!("the running agent (pid {}) now follows them", answer["pid"]);
    }
    Ok(ExitCode::SUCCESS)
}
