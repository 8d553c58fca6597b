//! `ward tls ...`: explain an SSLProtocol value or a conf file, edit a conf file, scan a
//! listener.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use ward_tls::conf::{self, ListenerConf, TlsPolicy};
use ward_tls::edit::{self, EditOutcome};
use ward_tls::protocol::{self, ProtocolDecision};
use ward_tls::scan::{self, Outcome, ScanConfig, ScanReport};
use ward_tls::{context, Diagnostic, Severity};

use super::server::DataArg;
use super::CmdResult;

#[derive(Subcommand)]
pub enum TlsCommand {
    /// Show what Apache httpd 2.4 would enable for an SSLProtocol value, or for a conf file
    ///
    /// Values often begin with a dash; both `ward tls explain '-all +TLSv1.2'` and
    /// `ward tls explain -- -all +TLSv1.2` work.
    Explain(ExplainArgs),
    /// Change SSLProtocol in a conf file in place, commenting out the old line under a dated
    /// marker and keeping a backup beside the file
    Edit(EditArgs),
    /// Put a conf file back as a backup made by `ward tls edit` has it
    Restore(RestoreArgs),
    /// Probe a TLS endpoint with one handshake per protocol version (SSLv3 to TLSv1.3)
    Scan(ScanArgs),
    /// Summarise what the server's listeners saw: versions negotiated and refused, by peer
    Handshakes(HandshakesArgs),
    /// The fleet by TLS capability: per listener and per group, how sure ward is, and the
    /// agents that stopped checking in with the ClientHello they offered
    Readiness(super::harden::ReadinessArgs),
    /// Who a proposed SSLProtocol value would cut off or put at risk (exit 2 when anyone)
    ///
    /// WORDS may begin with a dash: --protocol '-all +TLSv1.2'.
    Plan(super::harden::PlanArgs),
    /// Carry out the seed's procedure: stage legacy agents on HTTP, wait for them, edit the
    /// conf files and reload, then verify by scanning and watching the fleet
    ///
    /// Running it twice is harmless; an interrupted run is finished by --resume or undone by
    /// `ward tls rollback`.
    Harden(super::harden::HardenArgs),
    /// Put the conf files back as they were before the last harden, and reload
    Rollback(super::harden::RollbackArgs),
    /// The compliance presets (Mozilla, NIST SP 800-52r2, PCI DSS 4.0): what each sets and
    /// where it comes from; plan one with `ward tls plan --preset NAME`
    Preset {
        #[command(subcommand)]
        action: PresetAction,
    },
    /// The client profiles an agent or a simulated fleet can imitate (`--client-profile`,
    /// `--legacy-profile`): what each real stack offers
    Profiles {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum PresetAction {
    /// Every preset, a line each
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// One preset: its SSLProtocol and suites, its source, and what to know
    Show {
        name: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct HandshakesArgs {
    #[command(flatten)]
    data: DataArg,
    /// How far back to look (e.g. 15m, 1h, 7d)
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    since: String,
    /// At most this many refused handshakes are listed one by one
    #[arg(long, default_value_t = 1000)]
    limit: usize,
    /// Print JSON: {"since", "negotiated": [...], "refused": [...], "peers": [...]}
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ExplainArgs {
    /// Explain the listener policy a conf file decides (ssl.conf, sslforclients.conf)
    #[arg(long, short, value_name = "FILE", conflicts_with = "words")]
    file: Option<PathBuf>,
    /// Print JSON: {"enabled": [...], "warnings": [...], "error": null or {"code", "message"}, ...}
    #[arg(long)]
    json: bool,
    /// The SSLProtocol value, e.g. 'all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1'
    #[arg(
        value_name = "WORDS",
        allow_hyphen_values = true,
        num_args = 1..,
        required_unless_present = "file"
    )]
    words: Vec<String>,
}

#[derive(Args)]
pub struct EditArgs {
    /// The conf file to edit
    file: PathBuf,
    /// The new SSLProtocol value (may begin with a dash: --protocol '-all +TLSv1.2')
    #[arg(long, value_name = "WORDS", allow_hyphen_values = true)]
    protocol: String,
    /// Print JSON: {"file": ..., "changed": bool, "backup": path or null}
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// The conf file to restore
    file: PathBuf,
    /// The backup to restore from (printed by `ward tls edit`)
    #[arg(long, value_name = "BACKUP")]
    backup: PathBuf,
}

#[derive(Args)]
pub struct ScanArgs {
    /// HOST:PORT, e.g. 127.0.0.1:443 or [::1]:8445
    target: String,
    /// Seconds allowed for each probe
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    timeout: f64,
    /// Server name to send as SNI (default: the host, unless it is an address)
    #[arg(long, value_name = "NAME")]
    sni: Option<String>,
    /// Print JSON: {"target": ..., "protocols": {"TLSv1.2": {"accepted": true, "cipher": ...}}}
    #[arg(long)]
    json: bool,
}

pub fn run(command: TlsCommand) -> CmdResult {
    match command {
        TlsCommand::Explain(args) => explain(args),
        TlsCommand::Edit(args) => edit_file(args),
        TlsCommand::Restore(args) => restore(args),
        TlsCommand::Scan(args) => scan(args),
        TlsCommand::Handshakes(args) => handshakes(args),
        TlsCommand::Readiness(args) => super::harden::readiness(args),
        TlsCommand::Plan(args) => super::harden::plan(args),
        TlsCommand::Harden(args) => super::harden::harden(args),
        TlsCommand::Rollback(args) => super::harden::rollback(args),
        TlsCommand::Profiles { json } => profiles(json),
        TlsCommand::Preset { action } => preset(action),
    }
}

fn preset_json(preset: &ward_plan::preset::Preset) -> Value {
    json!({
        "name": preset.name, "title": preset.title, "protocol": preset.protocol,
        "cipher_suite": preset.cipher_suite, "cipher_suite_tls13": preset.cipher_suite_tls13,
        "source": preset.source, "note": preset.note,
    })
}

fn preset(action: PresetAction) -> CmdResult {
    use ward_plan::preset::{find, names, PRESETS};
    match action {
        PresetAction::List { json } if json => {
            println!(
                "{:#}",
                Value::Array(PRESETS.iter().map(preset_json).collect())
            );
        }
        PresetAction::List { .. } => {
            for preset in PRESETS {
                println!("{:<22} {}", preset.name, preset.title);
            }
        }
        PresetAction::Show { name, json } => {
            let preset = find(&name)
                .ok_or_else(|| format!("preset '{name}' is not one ward knows ({})", names()))?;
            if json {
                println!("{:#}", preset_json(preset));
            } else {
                println!("{}: {}", preset.name, preset.title);
                println!("  SSLProtocol {}", preset.protocol);
                match preset.cipher_suite {
                    Some(list) => println!("  SSLCipherSuite {list}"),
                    None => println!("  SSLCipherSuite (the listener's, unchanged)"),
                }
                match preset.cipher_suite_tls13 {
                    Some(list) => println!("  SSLCipherSuite TLSv1.3 {list}"),
                    None => println!("  SSLCipherSuite TLSv1.3 (the listener's, unchanged)"),
                }
                println!("source: {}", preset.source);
                println!("note: {}", preset.note);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn profiles(as_json: bool) -> CmdResult {
    let profiles = ward_tls::profile::CLIENT_PROFILES;
    if as_json {
        let list: Vec<Value> = profiles
            .iter()
            .map(|p| {
                json!({
                    "name": p.name, "about": p.about, "versions": p.versions().map(|v| v.name()).collect::<Vec<_>>(),
                    "ciphers": p.ciphers, "groups": p.groups, "sni": p.sni,
                })
            })
            .collect();
        println!("{:#}", Value::Array(list));
    } else {
        for p in profiles {
            println!("{:<14} {}", p.name, p.about);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn explain(args: ExplainArgs) -> CmdResult {
    // The words take everything after them, dashes included, so `--json` written last arrives
    // as a word. It can never be an SSLProtocol word, so it is taken as the flag.
    let json = args.json || args.words.iter().any(|w| w == "--json");
    let words: Vec<&str> = args
        .words
        .iter()
        .map(String::as_str)
        .filter(|w| *w != "--json")
        .collect();
    match &args.file {
        Some(path) => explain_file(path, json),
        None => explain_words(&words.join(" "), json),
    }
}

fn versions_json(decision: &ProtocolDecision) -> Value {
    json!(decision
        .range
        .versions()
        .map(|v| v.name())
        .collect::<Vec<_>>())
}

fn explain_words(value: &str, as_json: bool) -> CmdResult {
    let words = protocol::split_words(value);
    let decision = protocol::parse_ssl_protocol(&words);
    let policy = decision.as_ref().ok().map(|decision| TlsPolicy {
        protocol: decision.clone(),
        protocol_location: Some(conf::Location {
            file: "command line".into(),
            line: 1,
        }),
        ..TlsPolicy::apache_default()
    });
    let notes = policy
        .as_ref()
        .map(TlsPolicy::explanation)
        .unwrap_or_default();
    if as_json {
        let output = match &decision {
            Ok(decision) => json!({
                "value": value,
                "enabled": versions_json(decision),
                "warnings": decision.warnings,
                "error": null,
                "notes": notes,
                "security_level": policy.as_ref().and_then(TlsPolicy::forced_security_level),
            }),
            Err(error) => json!({
                "value": value,
                "enabled": [],
                "warnings": [],
                "error": {"code": "invalid_protocol", "message": error.to_string()},
                "notes": [],
                "security_level": null,
            }),
        };
        println!("{output:#}");
    } else {
        println!("SSLProtocol {value}");
        match &decision {
            Ok(decision) => {
                print_decision(decision);
                for warning in &decision.warnings {
                    println!("warning: {warning}");
                }
                for note in &notes {
                    println!("note: {note}");
                }
            }
            Err(error) => println!("error: {error}"),
        }
    }
    Ok(exit_code(decision.is_err()))
}

fn print_decision(decision: &ProtocolDecision) {
    let enabled: Vec<&str> = decision.range.versions().map(|v| v.name()).collect();
    println!("enabled: {}", enabled.join(", "));
    println!(
        "OpenSSL: min {}, max {}",
        decision.range.min, decision.range.max
    );
}

fn exit_code(failed: bool) -> ExitCode {
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn read_conf(path: &Path) -> Result<ListenerConf, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut listener = conf::listener_conf(&path.display().to_string(), &text);
    // OpenSSL's own verdict on the cipher lists, so configtest and explain agree.
    if let Some(policy) = &listener.policy {
        let checked = context::check_policy(policy);
        if let Ok(warnings) = &checked {
            listener.diagnostics.extend(warnings.iter().cloned());
        }
        if let Err(error) = checked {
            if let Some(location) = error.location.clone() {
                listener.diagnostics.push(Diagnostic {
                    severity: Severity::Error,
                    location,
                    message: error.message,
                });
                listener.policy = None;
            } else {
                return Err(error.to_string());
            }
        }
    }
    Ok(listener)
}

fn diagnostic_json(diagnostic: &Diagnostic) -> Value {
    json!({
        "severity": diagnostic.severity.to_string(),
        "file": &*diagnostic.location.file,
        "line": diagnostic.location.line,
        "message": diagnostic.message,
    })
}

/// The directory a conf file's relative paths start from (Apache's `ServerRoot`): the data
/// dir for a file in its `conf/ssl/`, else the file's own directory.
fn server_root(conf: &Path) -> PathBuf {
    let dir = conf.parent().unwrap_or(Path::new("."));
    match (dir.file_name(), dir.parent()) {
        (Some(ssl), Some(conf_dir))
            if ssl == "ssl" && conf_dir.file_name().is_some_and(|n| n == "conf") =>
        {
            conf_dir.parent().unwrap_or(Path::new(".")).to_path_buf()
        }
        _ => dir.to_path_buf(),
    }
}

fn explain_file(path: &Path, as_json: bool) -> CmdResult {
    let listener = read_conf(path)?;
    // Certificates over time: how long each certificate the file names has left.
    let expiry = listener
        .policy
        .as_ref()
        .map(|policy| ward_server::listener_tls::certificate_expiry(policy, &server_root(path)))
        .unwrap_or_default();
    let of_severity = |severity: Severity| -> Vec<String> {
        listener
            .diagnostics
            .iter()
            .filter(|d| d.severity == severity)
            .map(ToString::to_string)
            .collect()
    };
    let errors = of_severity(Severity::Error);
    if as_json {
        let policy = listener.policy.as_ref();
        let output = json!({
            "file": path.display().to_string(),
            "enabled": policy.map_or(json!([]), |p| versions_json(&p.protocol)),
            "warnings": of_severity(Severity::Warning),
            "error": errors.first().map(|e| json!({"code": "invalid_conf", "message": e})),
            "errors": errors,
            "notes": policy.map(TlsPolicy::explanation).unwrap_or_default(),
            "security_level": policy.and_then(TlsPolicy::forced_security_level),
            "protocol_source": policy.and_then(|p| p.protocol_location.as_ref()).map(ToString::to_string),
            "cipher_list": policy.and_then(|p| p.cipher_list.as_ref()).map(|c| &c.value),
            "tls13_ciphersuites": policy.and_then(|p| p.tls13_ciphersuites.as_ref()).map(|c| &c.value),
            "honor_cipher_order": policy.map(|p| p.honor_cipher_order),
            "diagnostics": listener.diagnostics.iter().map(diagnostic_json).collect::<Vec<_>>(),
            "certificates": expiry.iter().map(|(file, seconds)| json!({
                "file": file,
                "seconds_left": seconds,
                "days_left": seconds / 86_400,
                "expired": *seconds <= 0,
            })).collect::<Vec<_>>(),
        });
        println!("{output:#}");
    } else {
        println!("{}", path.display());
        for diagnostic in &listener.diagnostics {
            println!("{}: {}", diagnostic.severity, diagnostic);
        }
        if let Some(policy) = &listener.policy {
            match &policy.protocol_location {
                Some(location) => println!("SSLProtocol from {location}"),
                None => println!("SSLProtocol not set"),
            }
            print_decision(&policy.protocol);
            if let Some(list) = &policy.cipher_list {
                println!("cipher list (TLSv1.2 and below): {}", list.value);
            }
            if let Some(list) = &policy.tls13_ciphersuites {
                println!("TLSv1.3 ciphersuites: {}", list.value);
            }
            println!(
                "server cipher order: {}",
                if policy.honor_cipher_order {
                    "on"
                } else {
                    "off"
                }
            );
            for note in policy.explanation() {
                println!("note: {note}");
            }
        }
        for (file, seconds) in &expiry {
            if *seconds <= 0 {
                println!("certificate {file}: expired");
            } else {
                println!("certificate {file}: expires in {} day(s)", seconds / 86_400);
            }
        }
    }
    Ok(exit_code(!errors.is_empty()))
}

fn edit_file(args: EditArgs) -> CmdResult {
    let outcome = edit::edit_file(
        &args.file,
        &args.protocol,
        "ward_tls_edit",
        SystemTime::now(),
    )
    .map_err(|e| format!("{}: {e}", args.file.display()))?;
    let backup = match &outcome {
        EditOutcome::Changed { backup } => Some(backup.display().to_string()),
        EditOutcome::Unchanged => None,
    };
    if args.json {
        let output = json!({
            "file": args.file.display().to_string(),
            "changed": backup.is_some(),
            "backup": backup,
        });
        println!("{output:#}");
    } else {
        match &backup {
            Some(backup) => println!(
                "{}: SSLProtocol {}\nbackup: {backup}\nundo with: ward tls restore {} --backup {backup}",
                args.file.display(),
                args.protocol,
                args.file.display()
            ),
            None => println!(
                "{}: SSLProtocol already {}; nothing changed",
                args.file.display(),
                args.protocol
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn restore(args: RestoreArgs) -> CmdResult {
    edit::restore_backup(&args.file, &args.backup).map_err(|e| {
        format!(
            "cannot restore {} from {}: {e}",
            args.file.display(),
            args.backup.display()
        )
    })?;
    println!(
        "{}: restored from {}",
        args.file.display(),
        args.backup.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn scan(args: ScanArgs) -> CmdResult {
    if !(args.timeout > 0.0 && args.timeout <= 600.0) {
        return Err(format!(
            "--timeout {}: expected seconds between 0 and 600",
            args.timeout
        ));
    }
    let config = ScanConfig {
        timeout: Duration::from_secs_f64(args.timeout),
        server_name: args.sni,
    };
    let report = scan::scan(&args.target, &config).map_err(|e| e.to_string())?;
    if args.json {
        println!("{:#}", scan_json(&report));
    } else {
        print_scan(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn scan_json(report: &ScanReport) -> Value {
    let mut protocols = serde_json::Map::new();
    for (probe, outcome) in &report.results {
        let entry = match outcome {
            Outcome::Accepted { cipher } => json!({"accepted": true, "cipher": cipher}),
            Outcome::Refused { reason } => json!({"accepted": false, "reason": reason}),
        };
        protocols.insert(probe.name().to_string(), entry);
    }
    let groups: serde_json::Map<String, Value> = report
        .groups
        .iter()
        .map(|(group, accepted)| (group.to_string(), json!(*accepted)))
        .collect();
    json!({
        "target": report.target,
        "address": report.address.to_string(),
        "protocols": protocols,
        "groups": groups,
    })
}

fn print_scan(report: &ScanReport) {
    println!("{} ({})", report.target, report.address);
    println!("{:<9} {:<9} cipher or reason", "protocol", "result");
    for (probe, outcome) in &report.results {
        match outcome {
            Outcome::Accepted { cipher } => {
                println!("{:<9} {:<9} {cipher}", probe.name(), "accepted")
            }
            Outcome::Refused { reason } => {
                println!("{:<9} {:<9} {reason}", probe.name(), "refused")
            }
        }
    }
    if !report.groups.is_empty() {
        let accepted: Vec<String> = report
            .groups
            .iter()
            .filter(|(_, accepted)| *accepted)
            .map(|(group, _)| {
                if is_post_quantum(group) {
                    format!("{group} (post-quantum)")
                } else {
                    group.to_string()
                }
            })
            .collect();
        println!("TLSv1.3 groups accepted: {}", accepted.join(", "));
    }
}

/// Whether a key-exchange group is post-quantum (a hybrid with ML-KEM, or ML-KEM alone).
fn is_post_quantum(group: &str) -> bool {
    group.to_ascii_uppercase().contains("MLKEM")
}

fn handshakes(args: HandshakesArgs) -> CmdResult {
    let since =
        ward_server::config::parse_duration(&args.since).map_err(|e| format!("--since: {e}"))?;
    let data = ward_server::DataDir::new(&args.data.data);
    let config = ward_server::config::load(&data.config()).map_err(|e| e.to_string())?;
    // Read-only: a report never migrates or writes the database of a running server.
    let store =
        ward_store::open_read_only(&super::database(&data, &config)?).map_err(|e| e.to_string())?;
    let since_time = SystemTime::now() - since;
    let since_ms = since_time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let report = ward_store::Store::handshake_report(&*store, since_ms, args.limit)
        .map_err(|e| e.to_string())?;
    let peers = peer_summary(&report);
    let time = |ms: i64| {
        ward_tls::utc::format_rfc3339(
            SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64),
        )
    };
    if args.json {
        let negotiated: Vec<Value> = report
            .handshakes
            .iter()
            .map(|h| {
                json!({
                    "listener": h.key.listener, "peer": h.key.peer, "version": h.key.version,
                    "cipher": h.key.cipher, "group": (!h.key.group.is_empty()).then_some(&h.key.group),
                    "post_quantum": is_post_quantum(&h.key.group),
                    "resumed": h.key.resumed, "count": h.count,
                })
            })
            .collect();
        let refused: Vec<Value> = report
            .failures
            .iter()
            .map(|f| {
                json!({
                    "at": time(f.at_ms), "listener": f.listener, "peer": f.peer,
                    "offered_max": f.offered_max, "offered_versions": f.offered_versions,
                    "server_name": f.server_name, "kind": f.kind, "reason": f.reason,
                })
            })
            .collect();
        let output = json!({
            "since": ward_tls::utc::format_rfc3339(since_time),
            "negotiated": negotiated,
            "refused": refused,
            "refused_not_recorded": report.dropped_failures,
            "peers": peers.iter().map(|p| json!({
                "peer": p.peer, "negotiated": p.negotiated, "refused": p.refused,
                "offered_max": p.offered_max, "last_reason": p.last_reason,
            })).collect::<Vec<_>>(),
        });
        println!("{output:#}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "TLS handshakes since {} ({})",
        ward_tls::utc::format_utc(since_time),
        args.since
    );
    if report.handshakes.is_empty() && report.failures.is_empty() {
        println!("none recorded");
        return Ok(ExitCode::SUCCESS);
    }
    println!("\nby peer:");
    println!(
        "  {:<40} {:<28} {:>7}  last refusal",
        "peer", "negotiated", "refused"
    );
    for peer in &peers {
        let negotiated: Vec<String> = peer
            .negotiated
            .iter()
            .map(|(v, n)| format!("{v}\u{d7}{n}"))
            .collect();
        println!(
            "  {:<40} {:<28} {:>7}  {}",
            peer.peer,
            negotiated.join(" "),
            peer.refused,
            peer.last_reason.as_deref().unwrap_or("")
        );
    }
    println!("\nnegotiated:");
    for h in &report.handshakes {
        println!(
            "  {:<13} {:<40} {:<8} {:<30} {:<15} {}{}",
            h.key.listener,
            h.key.peer,
            h.key.version,
            h.key.cipher,
            if h.key.group.is_empty() {
                "-"
            } else {
                &h.key.group
            },
            h.count,
            if h.key.resumed { " resumed" } else { "" }
        );
    }
    if !report.failures.is_empty() {
        println!("\nrefused:");
        for f in &report.failures {
            println!(
                "  {} {:<13} {:<46} {}",
                time(f.at_ms),
                f.listener,
                f.peer,
                f.reason
            );
        }
    }
    if report.dropped_failures > 0 {
        println!(
            "\n{} more refusals were counted but not recorded one by one (rate limit)",
            report.dropped_failures
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What one peer address did in the window.
struct PeerSummary {
    peer: String,
    negotiated: std::collections::BTreeMap<String, u64>,
    refused: u64,
    offered_max: Option<String>,
    last_reason: Option<String>,
}

fn peer_summary(report: &ward_store::HandshakeReport) -> Vec<PeerSummary> {
    fn entry<'a>(
        peers: &'a mut std::collections::BTreeMap<String, PeerSummary>,
        peer: &str,
    ) -> &'a mut PeerSummary {
        peers
            .entry(peer.to_string())
            .or_insert_with(|| PeerSummary {
                peer: peer.to_string(),
                negotiated: Default::default(),
                refused: 0,
                offered_max: None,
                last_reason: None,
            })
    }
    let mut peers = std::collections::BTreeMap::new();
    for h in &report.handshakes {
        *entry(&mut peers, &h.key.peer)
            .negotiated
            .entry(h.key.version.clone())
            .or_default() += h.count;
    }
    for refusals in &report.refusals_by_peer {
        let summary = entry(&mut peers, &refusals.peer);
        summary.refused = refusals.count;
        summary.offered_max = refusals.last_offered_max.clone();
        summary.last_reason = Some(refusals.last_reason.clone());
    }
    peers.into_values().collect()
}
