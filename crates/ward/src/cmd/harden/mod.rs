//! `ward tls readiness | plan | harden | rollback`: the seed's procedure as one command, a
//! client of the server's hardening engine (`/api/v1/tls/`). Progress goes to stderr; with
//! `--json` the result goes to stdout as one JSON document.
//!
//! This module asks the server and talks to the operator; what harden decides from the
//! server's answers is in [`decide`], pure and table-tested.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use ward_api::fleet::Group;
use ward_api::server::ServerStatus;
use ward_api::tls::{
    Applied, ApplyRequest, CleanedUp, CleanupRequest, Counts, GuardPlan, HardenStatus,
    ListenerChoice, PlanRequest, Readiness, ReadinessQuery, RollbackRequest, RolledBack, Stack,
    StageRequest, Staged,
};
use ward_tls::scan::{self, ScanConfig};

use super::fleet::{pretty, with_query, word, Target};
use super::CmdResult;
use crate::client::AdminClient;
use ward_api::harden::{self as decide, AgentLine, Plan};

/// Exit code when someone would be cut off or is at risk, so scripts can gate on it.
const EXIT_AFFECTED: u8 = 2;

#[derive(Args)]
pub struct ReadinessArgs {
    #[command(flatten)]
    target: Target,
    /// Agents listed per version and per lost list
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// An agent silent for more than this many check-in intervals counts as lost
    #[arg(long, default_value_t = 3, value_name = "N")]
    offline_intervals: u32,
}

#[derive(Args, Clone)]
pub struct ProposalArgs {
    /// The proposed SSLProtocol value (may begin with a dash: --protocol '-all +TLSv1.2')
    #[arg(long, value_name = "WORDS", allow_hyphen_values = true)]
    protocol: Option<String>,
    /// The proposed SSLCipherSuite for TLS 1.2 and below (an OpenSSL cipher list)
    #[arg(long, value_name = "LIST", allow_hyphen_values = true)]
    cipher_suite: Option<String>,
    /// The proposed TLS 1.3 suites (SSLCipherSuite TLSv1.3 LIST)
    #[arg(long = "cipher-suite-tls13", value_name = "LIST")]
    cipher_suite_tls13: Option<String>,
    /// A proposed certificate file (PEM, the leaf first), replacing the listener's
    #[arg(long, value_name = "FILE", requires = "key")]
    certificate: Option<std::path::PathBuf>,
    /// The key file of --certificate
    #[arg(long, value_name = "FILE", requires = "certificate")]
    key: Option<std::path::PathBuf>,
    /// A compliance preset: its SSLProtocol and suites (`ward tls preset list`)
    #[arg(long, value_name = "NAME", conflicts_with_all = ["protocol", "cipher_suite", "cipher_suite_tls13"])]
    preset: Option<String>,
    /// A whole proposed conf file for the listener(s), instead of single directives
    #[arg(long, value_name = "FILE", conflicts_with_all = ["protocol", "cipher_suite", "cipher_suite_tls13", "certificate", "preset"])]
    conf: Option<std::path::PathBuf>,
    /// Which listener's file the value is for
    #[arg(long, default_value = "all", value_parser = ["clients", "console", "all"])]
    listener: String,
    /// An agent silent for more than this many check-in intervals would not be moved in time
    #[arg(long, default_value_t = 3, value_name = "N")]
    offline_intervals: u32,
}

#[derive(Args)]
pub struct PlanArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    proposal: ProposalArgs,
    /// Agents listed per category
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

#[derive(Args)]
pub struct HardenArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    proposal: ProposalArgs,
    /// Move every agent that would be cut off into this one group (created under its parent
    /// when missing) instead of a legacy subgroup under each agent's group
    #[arg(long, value_name = "PATH")]
    legacy_group: Option<String>,
    /// The name of the legacy subgroups
    #[arg(long, default_value = "Legacy TLS", value_name = "NAME")]
    legacy_name: String,
    /// How long to wait for moved agents to acknowledge their new settings
    #[arg(long, default_value = "2h", value_name = "DURATION")]
    timeout: String,
    /// How long to watch the fleet check in after the change [default: the longest check-in
    /// interval in the tree]
    #[arg(long, value_name = "DURATION")]
    watch: Option<String>,
    /// Print the steps without doing them
    #[arg(long)]
    dry_run: bool,
    /// Do not ask for confirmation
    #[arg(long, short)]
    yes: bool,
    /// Go on with agents at risk (capability unknown, offline): they may lose contact
    #[arg(long)]
    accept_risk: bool,
    /// Finish the harden that was interrupted, with its recorded settings
    #[arg(long, conflicts_with_all = ["protocol", "cipher_suite", "cipher_suite_tls13", "preset", "certificate", "conf"])]
    resume: bool,
    /// Remove what earlier hardens made and nothing uses any more: empty legacy groups,
    /// unused HTTP server list copies, conf backups beyond the newest --keep-backups, saved
    /// copies no rollback needs (with --dry-run: list them)
    #[arg(long, conflicts_with_all = ["protocol", "cipher_suite", "cipher_suite_tls13", "preset", "certificate", "conf", "resume"])]
    cleanup: bool,
    /// With --cleanup: how many backups of each conf file to keep
    #[arg(long, default_value_t = 3, value_name = "N", requires = "cleanup")]
    keep_backups: usize,
    #[command(flatten)]
    site: SiteArgs,
}

/// On a site (several servers on one database), which servers a harden or rollback leaves out.
#[derive(Args, Clone)]
pub struct SiteArgs {
    /// On a site: leave out this server (its name as `ward server list` shows it): its
    /// listeners stay as they are. Repeat for more. A server of the site that is down stops
    /// harden and rollback before anything changes, unless it is left out
    #[arg(long, value_name = "NAME")]
    exclude: Vec<String>,
}

#[derive(Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    target: Target,
    /// Also move the agents harden moved back to the groups they came from (those still in
    /// the group harden moved them to)
    #[arg(long)]
    move_back: bool,
    /// Show the rollback's plan (who the restored files would cut off) and change nothing
    #[arg(long)]
    dry_run: bool,
    /// Do not ask for confirmation
    #[arg(long, short)]
    yes: bool,
    /// Roll back even if agents would lose their last path (audited, with whom)
    #[arg(long)]
    accept_cut_off: bool,
    #[command(flatten)]
    site: SiteArgs,
}

/// A server a harden or rollback acts on: its name on the site and its admin API.
struct Member<'a> {
    name: &'a str,
    client: &'a AdminClient,
}

/// The servers a harden or rollback acts on: the one this command talks to, then the site's
/// other live servers, each reached through its admin API (with the same credential: a
/// site's servers share the local admin token, and sessions live in the site's database).
struct Site {
    this: String,
    others: Vec<(String, AdminClient)>,
    excluded: Vec<String>,
}

impl Site {
    /// The site of the server `client` talks to. A server of the site that is down or cannot
    /// be reached stops it, before anything changes, unless `args` leaves it out. A server
    /// alone on its database is a site of one.
    fn of(client: &AdminClient, args: &SiteArgs) -> Result<Site, String> {
        let listed = client
            .get::<ward_api::server::Servers>("/api/v1/servers")?
            .servers;
        let this = listed
            .iter()
            .find(|s| s.this)
            .map_or_else(|| "this server".to_string(), |s| s.name.clone());
        let mut others = Vec::new();
        for member in decide::members(&listed, &args.exclude)? {
            let peer = client.peer(member.address.clone(), member.host.clone());
            peer.get::<ServerStatus>("/api/v1/server").map_err(|e| {
                format!(
                    "server {name} at {address} cannot be reached ({e}): nothing was changed. \
                     Bring it back, or leave it out with --exclude {name} (its listeners then \
                     stay as they are)",
                    name = member.name,
                    address = member.address
                )
            })?;
            others.push((member.name, peer));
        }
        Ok(Site {
            this,
            others,
            excluded: args.exclude.clone(),
        })
    }

    /// Every server it acts on, this one first.
    fn all<'a>(&'a self, this: &'a AdminClient) -> Vec<Member<'a>> {
        let mut all = vec![Member {
            name: &self.this,
            client: this,
        }];
        all.extend(
            self.others
                .iter()
                .map(|(name, client)| Member { name, client }),
        );
        all
    }

    fn names(&self) -> String {
        std::iter::once(self.this.as_str())
            .chain(self.others.iter().map(|(name, _)| name.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Says which servers it acts on (when there are several) and which it leaves out.
    fn announce(&self, what: &str) {
        if !self.others.is_empty() {
            eprintln!(
                "site: {what} on {} servers: {}",
                self.others.len() + 1,
                self.names()
            );
        }
        if !self.excluded.is_empty() {
            eprintln!(
                "site: left out (their listeners stay as they are): {}",
                self.excluded.join(", ")
            );
        }
    }
}

/// One listed agent, as the plan shows it.
fn agent_line(agent: &AgentLine) -> String {
    format!(
        "{} {} in {}{}: {}",
        agent.id,
        agent.hostname.as_deref().unwrap_or("-"),
        agent.group.as_deref().unwrap_or("-"),
        agent
            .risk
            .map(|r| format!(" [{}]", pretty(&r).trim_matches('"')))
            .unwrap_or_default(),
        agent.reason.as_deref().unwrap_or("-"),
    )
}

fn print_agent_lines(title: &str, lines: &[String], total: u64) {
    if lines.is_empty() {
        return;
    }
    println!("{title} ({total}):");
    for line in lines {
        println!("  {line}");
    }
    if total as usize > lines.len() {
        println!(
            "  ... and {} more (--limit, --json)",
            total as usize - lines.len()
        );
    }
}

fn print_plan(plan: &Plan) {
    if !plan.change.is_empty() {
        println!("change: {}", plan.change);
    }
    for (host, why) in &plan.impact.untrusted_certificate {
        println!("certificate: agents connecting to '{host}' would not trust it: {why}");
    }
    for warning in &plan.warnings {
        println!("warning: {warning}");
    }
    for name in ["clients", "console"] {
        let Some(listener) = plan.listeners.get(name) else {
            continue;
        };
        let change = if listener.changes {
            "changes"
        } else {
            "unchanged"
        };
        println!(
            "{name:<8} {}: {} -> {} ({change})",
            listener.file,
            listener.current.join(", "),
            listener.planned.join(", "),
        );
    }
    let counts: &Counts = &plan.impact.counts;
    println!(
        "agents: {} — {} cut off, {} at risk, {} unaffected ({} over HTTPS, {} over HTTP)",
        plan.impact.agents,
        counts.cut_off,
        counts.at_risk,
        counts.unaffected,
        counts.unaffected_over_https,
        counts.unaffected_over_http,
    );
    if counts.simulated_ignored > 0 {
        println!(
            "  ({} simulated agent(s) offline or of unknown capability: not real machines, they \
             block nothing)",
            counts.simulated_ignored
        );
    }
    let cut_off: Vec<String> = plan.impact.cut_off.iter().map(agent_line).collect();
    print_agent_lines("would be cut off", &cut_off, counts.cut_off);
    let at_risk: Vec<String> = plan.impact.at_risk.iter().map(agent_line).collect();
    print_agent_lines("at risk", &at_risk, counts.at_risk);
    let cut_peers: Vec<_> = plan
        .peers
        .iter()
        .filter(|p| p.verdict == "cut_off")
        .collect();
    if !plan.peers.is_empty() {
        println!(
            "peers seen on the planned listeners (their real ClientHello replayed): {}, {} would \
             be cut off",
            plan.peers.len(),
            cut_peers.len()
        );
        for peer in cut_peers.iter().take(LISTED) {
            println!("  {} {}: {}", peer.listener, peer.address, peer.reason);
        }
    }
}

impl ProposalArgs {
    /// The proposal as a plan request. Paths become absolute (the server reads them from its
    /// own working directory); a conf file is sent as its text.
    fn request(&self) -> Result<PlanRequest, String> {
        let absolute = |path: &std::path::Path| {
            std::path::absolute(path)
                .map(|p| p.display().to_string())
                .map_err(|e| format!("{}: {e}", path.display()))
        };
        let (conf, conf_name) = match &self.conf {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("--conf {}: {e}", path.display()))?;
                (Some(text), Some(path.display().to_string()))
            }
            None => (None, None),
        };
        let request = PlanRequest {
            protocol: self.protocol.clone(),
            cipher_suite: self.cipher_suite.clone(),
            cipher_suite_tls13: self.cipher_suite_tls13.clone(),
            certificate: self.certificate.as_deref().map(absolute).transpose()?,
            key: self.key.as_deref().map(absolute).transpose()?,
            preset: self.preset.clone(),
            conf,
            conf_name,
            listener: Some(self.listener()?),
            offline_intervals: Some(self.offline_intervals),
            limit: None,
        };
        let change = request.change();
        if change.protocol.is_none()
            && change.cipher_suite.is_none()
            && change.cipher_suite_tls13.is_none()
            && change.certificate.is_none()
            && change.preset.is_none()
            && change.conf.is_none()
        {
            return Err(
                "nothing proposed: give --protocol WORDS, --cipher-suite LIST, --cipher-suite-tls13 \
                 LIST, --certificate FILE --key FILE, --preset NAME or --conf FILE"
                    .into(),
            );
        }
        Ok(request)
    }

    fn listener(&self) -> Result<ListenerChoice, String> {
        word("listener", &self.listener)
    }
}

/// Asks the server for the plan of `proposal`.
fn request_plan(
    client: &AdminClient,
    proposal: &ProposalArgs,
    limit: usize,
) -> Result<Plan, String> {
    let request = PlanRequest {
        limit: Some(limit as u64),
        ..proposal.request()?
    };
    Ok(client.post("/api/v1/tls/plan", &request)?)
}

pub fn readiness(args: ReadinessArgs) -> CmdResult {
    let client = args.target.client()?;
    let query = ReadinessQuery {
        limit: Some(args.limit as u64),
        offline_intervals: Some(args.offline_intervals),
        silent_since: None,
    };
    let readiness: Readiness = client.get(&with_query("/api/v1/tls/readiness", &query)?)?;
    if args.target.json {
        println!("{}", pretty(&readiness));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "agents: {} ({})",
        readiness.agents,
        ["reported", "observed", "unknown"]
            .iter()
            .map(|k| format!("{} {k}", readiness.knowledge.get(*k).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let versions = ["TLSv1.3", "TLSv1.2", "TLSv1.1", "TLSv1", "unknown"];
    for (listener, buckets) in &readiness.listeners {
        println!("{listener}:");
        for version in versions {
            if let Some(bucket) = buckets.get(version) {
                println!(
                    "  {version:<8} {:>8}  {}",
                    bucket.count,
                    bucket.agents.join(", ")
                );
            }
        }
    }
    let pq = &readiness.post_quantum;
    if pq.over_https > 0 {
        println!(
            "post-quantum key exchange (X25519MLKEM768): {} of {} agents on HTTPS ({:.0}%)",
            pq.agents,
            pq.over_https,
            pq.share * 100.0
        );
    }
    if !readiness.stacks.is_empty() {
        println!("by TLS stack (the fingerprint of each agent's last ClientHello):");
        for stack in &readiness.stacks {
            println!("  {}", stack_line(stack));
        }
    }
    println!("by group (highest version each agent can speak):");
    for (group, counts) in &readiness.groups {
        let parts: Vec<String> = versions
            .iter()
            .filter_map(|v| counts.get(*v).map(|n| format!("{v} {n}")))
            .collect();
        println!("  {group}: {}", parts.join(", "));
    }
    if !readiness.lost.is_empty() {
        println!(
            "lost (silent for more than {} intervals): {}",
            readiness.offline_intervals, readiness.lost_count
        );
        for agent in &readiness.lost {
            println!("  {}", lost_line(agent));
        }
    }
    for line in &readiness.capped {
        println!("refused by a connection cap (last day): {line}");
    }
    if !readiness.reverted.is_empty() {
        println!(
            "reverted (went back to the last settings that worked; their group's cut them off): {}",
            readiness.reverted.len()
        );
        for agent in &readiness.reverted {
            println!(
                "  {} {}: {}",
                agent.id,
                agent.hostname.as_deref().unwrap_or("-"),
                agent.reason.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One TLS stack of the fleet: how many agents, its fingerprint, what it offers, who.
fn stack_line(stack: &Stack) -> String {
    // JA4 when the hello was kept, else ward's own fingerprint, shortened.
    let fingerprint = stack
        .ja4
        .clone()
        .or_else(|| {
            stack
                .fingerprint
                .as_ref()
                .map(|f| f[..f.len().min(12)].to_string())
        })
        .unwrap_or_else(|| "(none)".into());
    let offers = match &stack.offered_versions {
        Some(versions) => {
            let classes: Vec<String> = stack
                .suite_classes
                .iter()
                .flatten()
                .map(|(class, n)| format!("{class} {n}"))
                .collect();
            format!(
                "offers {}; suites: {}{}",
                versions.join(", "),
                classes.join(", "),
                if stack.post_quantum == Some(true) {
                    "; post-quantum"
                } else {
                    ""
                }
            )
        }
        None => stack.note.clone().unwrap_or_default(),
    };
    format!(
        "{:>6} agent(s) {fingerprint}: {offers}: {}",
        stack.agents,
        stack.ids.join(", ")
    )
}

/// An agent that stopped checking in, with the ClientHello it last offered when one was
/// refused from its address.
fn lost_line(agent: &AgentLine) -> String {
    let mut line = format!(
        "{} {} in {}: last check-in {}{}",
        agent.id,
        agent.hostname.as_deref().unwrap_or("-"),
        agent.group.as_deref().unwrap_or("-"),
        agent.last_checkin.as_deref().unwrap_or("never"),
        agent
            .silent_for
            .as_ref()
            .map(|s| format!(" ({s} ago)"))
            .unwrap_or_default(),
    );
    if let Some(refused) = &agent.refused {
        line.push_str(&format!(
            "; refused at {} on {}: offered {} ({}): {}",
            refused.at,
            refused.listener,
            refused.offered_max.as_deref().unwrap_or("nothing readable"),
            refused.offered_versions.join(", "),
            refused.reason,
        ));
    }
    line
}

pub fn plan(args: PlanArgs) -> CmdResult {
    let client = args.target.client()?;
    let plan = request_plan(&client, &args.proposal, args.limit)?;
    if args.target.json {
        println!("{}", pretty(&plan));
    } else {
        print_plan(&plan);
    }
    Ok(if plan.impact.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_AFFECTED)
    })
}

fn duration(flag: &str, text: &str) -> Result<Duration, String> {
    ward_server::config::parse_duration(text).map_err(|e| format!("{flag} {text}: {e}"))
}

fn step(number: u32, title: &str) {
    eprintln!("step {number}/4: {title}");
}

fn spinner(message: String) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("  {spinner} {elapsed_precise} {wide_msg}").expect("template"),
    );
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn confirm(question: &str) -> Result<bool, String> {
    if !std::io::stdin().is_terminal() {
        return Err(format!(
            "{question}: no terminal to ask; pass --yes to go on"
        ));
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| e.to_string())?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Agents listed by harden's plans (the counts cover everyone).
const LISTED: usize = 50;

fn longest_interval(client: &AdminClient) -> Result<Duration, String> {
    let groups: Vec<Group> = client.get("/api/v1/groups")?;
    let mut longest = Duration::ZERO;
    for effective in groups.iter().filter_map(|g| g.effective.as_ref()) {
        let interval = ward_server::config::parse_duration(&effective.interval).ok();
        let randomize = ward_server::config::parse_duration(&effective.randomize).ok();
        longest = longest.max(interval.unwrap_or_default() + randomize.unwrap_or_default());
    }
    Ok(longest)
}

/// What verify found on one listener.
#[derive(Clone, Serialize)]
struct Scanned {
    listener: &'static str,
    address: String,
    accepted: Vec<String>,
    planned: Vec<String>,
    ok: bool,
}

/// Scans both HTTPS listeners and compares what they accept with the plan.
fn verify_listeners(client: &AdminClient, plan: &Plan) -> Result<Vec<Scanned>, String> {
    let status: ServerStatus = client.get("/api/v1/server")?;
    let mut results = Vec::new();
    let mut mismatches = Vec::new();
    for (name, served) in [
        ("console", &status.listeners.console),
        ("clients", &status.listeners.clients),
    ] {
        let Some(listener) = plan.listeners.get(name) else {
            continue;
        };
        let address = decide::reachable(&served.address, &client.server_host())?;
        let expected = &listener.planned;
        let config = ScanConfig {
            timeout: Duration::from_secs(5),
            server_name: Some(client.server_name().to_string()),
        };
        let report = scan::scan(&address, &config)
            .map_err(|e| format!("scanning {name} at {address}: {e}"))?;
        let accepted: Vec<String> = report.accepted().map(|p| p.name().to_string()).collect();
        let ok = decide::as_planned(&accepted, expected);
        eprintln!(
            "  {name:<8} {address}: accepts {} — {}",
            if accepted.is_empty() {
                "nothing".into()
            } else {
                accepted.join(", ")
            },
            if ok {
                "as planned".to_string()
            } else {
                format!("PLANNED {}", expected.join(", "))
            }
        );
        if !ok {
            mismatches.push(name);
        }
        results.push(Scanned {
            listener: name,
            address,
            accepted,
            planned: expected.clone(),
            ok,
        });
    }
    decide::verified(&mismatches)?;
    Ok(results)
}

fn cleanup(client: &AdminClient, args: &HardenArgs) -> CmdResult {
    let cleaned: CleanedUp = client.post(
        "/api/v1/tls/harden/cleanup",
        &CleanupRequest {
            keep_backups: Some(args.keep_backups as u64),
            dry_run: args.dry_run,
        },
    )?;
    if args.target.json {
        println!("{}", pretty(&cleaned));
        return Ok(ExitCode::SUCCESS);
    }
    if cleaned.steps.is_empty() {
        println!("nothing to clean up");
    }
    for line in &cleaned.steps {
        if args.dry_run {
            println!("would remove {}", line.trim_start_matches("removed "));
        } else {
            println!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `ward tls harden --json` prints when it is done.
#[derive(Default, Serialize)]
struct Summary {
    protocol: String,
    listener: String,
    change: String,
    /// The plan's counts at the start.
    plan: Option<Counts>,
    staged: Vec<String>,
    acknowledged: usize,
    unacknowledged: Vec<String>,
    waited_seconds: f64,
    /// What apply changed on the server this command talks to.
    applied: Vec<ward_api::tls::ChangedFile>,
    /// What verify found on the server this command talks to.
    scan: Vec<Scanned>,
    /// Every server harden changed (this one first): a site's servers each keep their own
    /// conf files.
    servers: Vec<ServerSummary>,
    /// The site's servers left out (`--exclude`), whose listeners stay as they are.
    excluded: Vec<String>,
    silent_after_change: Vec<AgentLine>,
    finished: String,
}

/// What harden did on one server.
#[derive(Serialize)]
struct ServerSummary {
    name: String,
    applied: Vec<ward_api::tls::ChangedFile>,
    ranges: ward_api::server::Ranges,
    scan: Vec<Scanned>,
}

/// Asks every server whether it would apply `request` now (its files load and take the
/// edit, and its own plan lets the change through), before any is changed.
fn check_all(site: &Site, this: &AdminClient, request: &ApplyRequest) -> Result<(), String> {
    let check = ApplyRequest {
        dry_run: Some(true),
        ..request.clone()
    };
    for member in site.all(this) {
        member
            .client
            .post::<_, Applied>("/api/v1/tls/harden/apply", &check)
            .map_err(|e| {
                format!(
                    "server {} would not apply it: {e}. No server's listeners were changed",
                    member.name
                )
            })?;
    }
    Ok(())
}

/// After an apply failed part-way: rolls back the servers it changed (newest first), so the
/// site's listeners are as they were. Says what it did.
fn undo(done: &[(Member<'_>, Applied)]) -> String {
    let mut said = Vec::new();
    for (member, applied) in done.iter().rev() {
        if applied.changed.is_empty() {
            continue;
        }
        let request = RollbackRequest {
            move_back: false,
            dry_run: false,
            accept_cut_off: false,
        };
        match member
            .client
            .post::<_, RolledBack>("/api/v1/tls/rollback", &request)
        {
            Ok(_) => said.push(format!("rolled back on {}", member.name)),
            Err(e) => said.push(format!(
                "could not roll back on {} ({e}): run `ward tls rollback` there",
                member.name
            )),
        }
    }
    if said.is_empty() {
        "No server's files had been changed".into()
    } else {
        format!(
            "{}. The moved agents stay in their legacy groups (`ward tls rollback --move-back` \
             moves them back)",
            said.join("; ")
        )
    }
}

pub fn harden(args: HardenArgs) -> CmdResult {
    let client = args.target.client()?;
    if args.cleanup {
        return cleanup(&client, &args);
    }
    let timeout = duration("--timeout", &args.timeout)?;
    let mut proposal = args.proposal.clone();
    let mut legacy_group = args.legacy_group.clone();
    let mut legacy_name = args.legacy_name.clone();
    if args.resume {
        let status: HardenStatus = client.get("/api/v1/tls/harden")?;
        let state = match status.state {
            Some(state) if state.step != ward_api::tls::Step::RolledBack => state,
            _ => return Err("--resume: no interrupted harden to finish (see `ward tls harden --protocol WORDS`)".into()),
        };
        proposal.protocol = Some(state.protocol.clone()).filter(|w| !w.is_empty());
        proposal.cipher_suite = state.cipher_suite.clone();
        proposal.cipher_suite_tls13 = state.cipher_suite_tls13.clone();
        proposal.preset = None;
        if let Some((certificate, key)) = &state.certificate {
            proposal.certificate = Some(certificate.into());
            proposal.key = Some(key.into());
        }
        proposal.listener = state.listener.clone();
        legacy_group = state.legacy_group.clone();
        legacy_name = state.legacy_name.clone();
        eprintln!(
            "resuming the harden to '{}' on {} (last step: {})",
            proposal.protocol.as_deref().unwrap_or_default(),
            proposal.listener,
            pretty(&state.step).trim_matches('"')
        );
    }
    if proposal.conf.is_some() {
        return Err(
            "harden edits SSLProtocol, SSLCipherSuite and the certificate (--protocol, \
                    --cipher-suite, --cipher-suite-tls13, --preset, --certificate --key); for a \
                    whole conf file, plan it with `ward tls plan --conf`, put it in place and run \
                    `ward server reload`, which the same plan guards"
                .into(),
        );
    }
    // Everything below sends the proposal as given: protocol, suites or preset.
    let request = proposal.request()?;
    let words = proposal.protocol.clone().unwrap_or_default();
    let mut summary = Summary {
        protocol: words.clone(),
        listener: proposal.listener.clone(),
        ..Summary::default()
    };

    let plan = request_plan(&client, &proposal, LISTED)?;
    let change = if plan.change.is_empty() {
        format!("SSLProtocol {words}")
    } else {
        plan.change.clone()
    };
    summary.change = change.clone();
    if !args.target.json {
        print_plan(&plan);
    }
    summary.plan = Some(plan.impact.counts.clone());
    // A site's servers each keep their own conf files: harden changes every one of them.
    let site = Site::of(&client, &args.site)?;
    site.announce("harden applies");
    summary.excluded = site.excluded.clone();
    decide::may_start(&plan, args.accept_risk)?;
    let to_move = plan.impact.counts.cut_off;
    let legacy = legacy_group
        .clone()
        .map(|p| format!("group '{p}'"))
        .unwrap_or_else(|| format!("a '{legacy_name}' subgroup of each agent's group"));
    let steps = [
        format!("stage: copy server lists to HTTP variants on the clients-http port and move {to_move} agent(s) into {legacy}"),
        format!("wait: up to {} for every moved agent to acknowledge its new settings", args.timeout),
        format!(
            "apply: set {change} in the {} listener file(s){}, configtest, reload",
            proposal.listener,
            if site.others.is_empty() {
                String::new()
            } else {
                format!(" of each of {} servers, once every one would", site.others.len() + 1)
            }
        ),
        "verify: scan the HTTPS listeners of each server, then watch the fleet check in"
            .to_string(),
    ];
    let apply_request = ApplyRequest {
        accept_risk: Some(args.accept_risk),
        ..ApplyRequest::of_directives(&request.change(), request.offline_intervals)
    };
    // Every server's files load and take the edit, before anything moves (its plan is asked
    // again before apply, once the agents are staged).
    check_all(
        &site,
        &client,
        &ApplyRequest {
            accept_cut_off: Some(true),
            accept_risk: Some(true),
            ..apply_request.clone()
        },
    )?;
    if args.dry_run {
        for (i, text) in steps.iter().enumerate() {
            println!("{}. {text}", i + 1);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes && !confirm(&format!("harden: {}", steps.join("; ")))? {
        return Err("stopped: nothing was changed".into());
    }

    // 1. Stage.
    step(1, "stage");
    let stage_request = StageRequest {
        legacy_group: legacy_group.clone(),
        legacy_name: Some(legacy_name.clone()),
        ..StageRequest::of_directives(&request.change(), request.offline_intervals)
    };
    let staged: Staged = client.post("/api/v1/tls/harden/stage", &stage_request)?;
    for line in &staged.steps {
        eprintln!("  {line}");
    }
    if staged.steps.is_empty() {
        eprintln!("  nothing to stage: no agent would be cut off");
    }
    summary.staged = staged.steps.clone();

    // 2. Wait.
    step(2, "wait for moved agents to acknowledge their new settings");
    let started = Instant::now();
    let expected = longest_interval(&client)?;
    let mut total = staged.moved.len() as u64;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "  [{bar:30}] {pos}/{len} acknowledged, {elapsed_precise} {wide_msg}",
        )
        .expect("template")
        .progress_chars("=> "),
    );
    loop {
        let asked = Instant::now();
        let plan = request_plan(&client, &proposal, LISTED)?;
        let pause = decide::poll_pause(asked.elapsed());
        if decide::restage(&plan) {
            let _: Staged = client.post("/api/v1/tls/harden/stage", &stage_request)?;
        }
        if let Some(stop) = decide::reverted(&plan) {
            // An agent the moves cut off went back to its old settings: no wait brings it.
            bar.abandon();
            return Err(format!(
                "wait: {stop}. TLS was not touched. Fix its path (or move it elsewhere) and run \
                 `ward tls harden --resume`, or `ward tls rollback --move-back` to undo the moves"
            ));
        }
        let awaited = decide::waiting_for(&plan, args.accept_risk);
        let waiting = awaited.count;
        total = total.max(waiting);
        bar.set_length(total);
        bar.set_position(total - waiting);
        if waiting == 0 {
            bar.finish_and_clear();
            // Say what the server knows, not what the count implies: an agent accepted at
            // risk (offline, say) has not acknowledged anything.
            let acks: HardenStatus = client.get("/api/v1/tls/harden")?;
            if acks.unacknowledged.is_empty() {
                eprintln!(
                    "  all {} moved agent(s) acknowledged, after {:.1?}",
                    acks.acknowledged.len(),
                    started.elapsed()
                );
            } else {
                eprintln!(
                    "  {} moved agent(s) acknowledged; {} did not (accepted at risk): {}",
                    acks.acknowledged.len(),
                    acks.unacknowledged.len(),
                    acks.unacknowledged.join(", ")
                );
            }
            summary.acknowledged = acks.acknowledged.len();
            summary.unacknowledged = acks.unacknowledged;
            break;
        }
        bar.set_message(format!(
            "waiting for {} (expected within {}s)",
            awaited.some(5),
            expected.as_secs().max(1)
        ));
        if started.elapsed() >= timeout {
            bar.abandon();
            return Err(format!(
                "wait: timed out after {}: {waiting} agent(s) did not acknowledge their new \
                 settings: {}. TLS was not touched. Run `ward tls harden --resume` to keep \
                 waiting, or `ward tls rollback --move-back` to undo the moves",
                args.timeout,
                awaited.some(usize::MAX)
            ));
        }
        std::thread::sleep(pause);
    }
    summary.waited_seconds = started.elapsed().as_secs_f64();

    // 3. Apply: every server says it would, then each applies; one that fails has the ones
    // before it rolled back, so the site is never left half hardened.
    step(3, "apply");
    check_all(&site, &client, &apply_request)?;
    let mut done: Vec<(Member<'_>, Applied)> = Vec::new();
    for member in site.all(&client) {
        let applied: Applied = match member
            .client
            .post("/api/v1/tls/harden/apply", &apply_request)
        {
            Ok(applied) => applied,
            Err(e) => {
                return Err(format!(
                    "apply: server {} failed: {e}. {}",
                    member.name,
                    undo(&done)
                ))
            }
        };
        let prefix = if site.others.is_empty() {
            String::new()
        } else {
            format!("{}: ", member.name)
        };
        for file in &applied.changed {
            eprintln!("  {prefix}edited {} (backup {})", file.file, file.backup);
        }
        if applied.changed.is_empty() {
            eprintln!("  {prefix}the files already say {change}: nothing to edit");
        }
        eprintln!(
            "  {prefix}configtest passed, reloaded: {}",
            applied
                .ranges
                .iter()
                .map(|(listener, range)| format!("{listener} {range}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        done.push((member, applied));
    }
    let applied = done[0].1.clone();
    summary.applied = applied.changed.clone();
    let applied_ms = applied.state.applied_ms.unwrap_or(0);

    // 4. Verify: each server's listeners scanned.
    step(4, "verify");
    for (member, applied) in &done {
        if !site.others.is_empty() {
            eprintln!("  {}:", member.name);
        }
        let scan = verify_listeners(member.client, &plan)
            .map_err(|e| format!("server {}: {e}", member.name))?;
        summary.servers.push(ServerSummary {
            name: member.name.to_string(),
            applied: applied.changed.clone(),
            ranges: applied.ranges.clone(),
            scan,
        });
    }
    summary.scan = summary.servers[0].scan.clone();
    let watch = match &args.watch {
        Some(text) => duration("--watch", text)?,
        None => expected.min(timeout),
    };
    let bar = spinner(format!(
        "watching the fleet check in for {}s",
        watch.as_secs().max(1)
    ));
    let watch_start = Instant::now();
    let query = ReadinessQuery {
        limit: Some(1000),
        offline_intervals: Some(proposal.offline_intervals),
        silent_since: Some(applied_ms.max(0) as u64),
    };
    let silent = loop {
        let asked = Instant::now();
        // Check-ins are recorded in the shared database, but each server knows only the push
        // check-ins it holds (a held one counts as heard): silent means silent on every one.
        let mut silent: Option<Vec<AgentLine>> = None;
        for member in site.all(&client) {
            let readiness: Readiness = member
                .client
                .get(&with_query("/api/v1/tls/readiness", &query)?)?;
            let here = readiness.silent_since.unwrap_or_default();
            silent = Some(match silent {
                None => here,
                Some(so_far) => decide::silent_on_both(so_far, &here),
            });
        }
        let silent = silent.unwrap_or_default();
        bar.set_message(format!(
            "{} agent(s) not heard from since the change; watching for {}s",
            silent.len(),
            watch.saturating_sub(watch_start.elapsed()).as_secs()
        ));
        if silent.is_empty() || watch_start.elapsed() >= watch {
            break silent;
        }
        std::thread::sleep(decide::poll_pause(asked.elapsed()));
    };
    bar.finish_and_clear();
    summary.finished = ward_tls::utc::format_rfc3339(SystemTime::now());
    let quiet = silent.is_empty();
    if !quiet {
        eprintln!(
            "{} agent(s) have not checked in since the change:",
            silent.len()
        );
        for agent in &silent {
            eprintln!("  {}", lost_line(agent));
        }
    }
    summary.silent_after_change = silent;
    if args.target.json {
        println!("{}", pretty(&summary));
    }
    if quiet {
        eprintln!("done: every agent that was online has checked in since the change");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("`ward tls rollback` puts the files back; `ward tls readiness` shows the fleet");
        Ok(ExitCode::from(EXIT_AFFECTED))
    }
}

/// What `ward tls rollback --json` prints: each server's answer (its plan with `--dry-run`).
#[derive(Serialize)]
struct RollbackSummary<'a> {
    servers: Vec<ServerRollback<'a>>,
    /// Servers of the site with nothing to roll back (no harden changed their files).
    unchanged: Vec<&'a str>,
    /// The site's servers left out (`--exclude`).
    excluded: &'a [String],
}

#[derive(Serialize)]
struct ServerRollback<'a> {
    name: &'a str,
    #[serde(flatten)]
    answer: RolledBack,
}

pub fn rollback(args: RollbackArgs) -> CmdResult {
    let client = args.target.client()?;
    let site = Site::of(&client, &args.site)?;
    site.announce("rollback restores the files");
    // The site's other servers first, this one last: its moves back (which only this one
    // recorded) happen once every listener is as it was.
    let mut order = site.all(&client);
    order.rotate_left(1);
    let last = order.len() - 1;
    // The plan first, on every server: what its restored files (and the moves back) would do
    // to every agent that has a path now. Nothing changes unless every server may.
    let mut planned: Vec<(Member<'_>, bool, RolledBack)> = Vec::new();
    let mut unchanged = Vec::new();
    for (index, member) in order.into_iter().enumerate() {
        let move_back = args.move_back && index == last;
        let request = RollbackRequest {
            move_back,
            dry_run: true,
            accept_cut_off: false,
        };
        match member
            .client
            .post::<_, RolledBack>("/api/v1/tls/rollback", &request)
        {
            Ok(dry) => planned.push((member, move_back, dry)),
            Err(e) if e.code == "nothing_to_roll_back" && !site.others.is_empty() => {
                unchanged.push(member.name)
            }
            Err(e) if site.others.is_empty() => return Err(e.into()),
            Err(e) => {
                return Err(format!(
                    "server {}: {e}; nothing was rolled back",
                    member.name
                ))
            }
        }
    }
    if planned.is_empty() {
        return Err(
            "no harden has changed the conf files of any server of the site: nothing \
                    to roll back"
                .into(),
        );
    }
    let several = planned.len() > 1 || !site.others.is_empty();
    let mut summaries = Vec::new();
    let mut lost = Vec::new();
    for (member, move_back, dry) in &planned {
        let plan = dry.plan.clone().unwrap_or_default();
        let restores: Vec<String> = dry
            .restores
            .iter()
            .flatten()
            .map(|o| o.file.display().to_string())
            .collect();
        let mut summary = format!(
            "restore {} as they were before the last harden and reload",
            restores.join(" and ")
        );
        if *move_back {
            summary.push_str(&format!(
                ", and move back up to {} agent(s) harden moved",
                dry.moves_back.unwrap_or(0)
            ));
        }
        if several {
            summary = format!("{}: {summary}", member.name);
        }
        if !args.target.json {
            if args.dry_run {
                println!("rollback would {summary}");
            }
            if several {
                print!("{}: ", member.name);
            }
            print_cut_off(&plan);
        }
        if plan.lost > 0 {
            lost.push(format!("{}: {}", member.name, plan.message));
        }
        summaries.push(summary);
    }
    if args.dry_run {
        if args.target.json {
            let servers = planned
                .into_iter()
                .map(|(member, _, dry)| ServerRollback {
                    name: member.name,
                    answer: dry,
                })
                .collect();
            let summary = RollbackSummary {
                servers,
                unchanged,
                excluded: &site.excluded,
            };
            println!("{}", pretty(&summary));
        }
        return Ok(ExitCode::from(if lost.is_empty() {
            0
        } else {
            EXIT_AFFECTED
        }));
    }
    if !lost.is_empty() && !args.accept_cut_off {
        return Err(format!(
            "rollback refused, nothing changed: {}; --accept-cut-off rolls back anyway",
            lost.join("; ")
        ));
    }
    if !args.yes && !confirm(&format!("rollback: {}", summaries.join("; ")))? {
        return Err("stopped: nothing was changed".into());
    }
    let mut servers = Vec::new();
    for (member, move_back, _) in &planned {
        let request = RollbackRequest {
            move_back: *move_back,
            dry_run: false,
            accept_cut_off: args.accept_cut_off,
        };
        let done: RolledBack = member
            .client
            .post("/api/v1/tls/rollback", &request)
            .map_err(|e| {
                let before: Vec<&str> = servers.iter().map(|s: &ServerRollback| s.name).collect();
                format!(
                    "rollback on server {} failed: {e}{}",
                    member.name,
                    if before.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; rolled back already: {} (run `ward tls rollback` again: each \
                             server's own is done once)",
                            before.join(", ")
                        )
                    }
                )
            })?;
        if !args.target.json {
            let prefix = if several {
                format!("{}: ", member.name)
            } else {
                String::new()
            };
            for line in done.steps.iter().flatten() {
                println!("{prefix}{line}");
            }
            let kept = done.state.as_ref().map_or(0, |state| state.moved.len());
            if kept > 0 {
                println!(
                    "{prefix}{kept} moved agent(s) stay in their legacy groups (--move-back \
                     moves them back)"
                );
            }
        }
        servers.push(ServerRollback {
            name: member.name,
            answer: done,
        });
    }
    if args.target.json {
        let summary = RollbackSummary {
            servers,
            unchanged,
            excluded: &site.excluded,
        };
        println!("{}", pretty(&summary));
    }
    Ok(ExitCode::SUCCESS)
}

/// The agents a guarded change would take the last path from, with why.
fn print_cut_off(plan: &GuardPlan) {
    if plan.lost == 0 {
        println!("plan: nobody loses their path");
        return;
    }
    println!("plan: {}", plan.message);
    print_cut_off_lines(plan);
}

/// The first agents of a guard's answer (`cut_off`): who, where, and why.
pub(crate) fn print_cut_off_lines(plan: &GuardPlan) {
    for line in plan.cut_off.iter().take(LISTED) {
        println!(
            "  {} {} in {}: {}",
            line.id,
            line.hostname.as_deref().unwrap_or("-"),
            line.group.as_deref().unwrap_or("-"),
            line.reason.as_deref().unwrap_or("-")
        );
    }
}
