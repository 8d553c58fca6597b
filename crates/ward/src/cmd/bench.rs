//! `ward bench ...`: benchmarks that report figures (they are not tests).
//!
//! `ward bench fleet` fills a stopped server's database with a large fleet (groups through
//! the same one-transaction changes the API makes, agents as enrollment will insert them) and
//! times the pure effective-settings computation over the whole tree. `ward bench handshakes`
//! loads a TLS server with handshakes and requests made by ward's own OpenSSL.

mod handshakes;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::json;
use ward_fleet::{Group, OwnSettings, Tree};
use ward_store::{AgentRecord, AuditEntry, Change, Mutation};

use super::server::DataArg;
use super::CmdResult;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Fill a (stopped) server's database with groups and agents, then time the effective
    /// settings of every group
    Fleet(FleetArgs),
    /// Load a TLS server with connections, handshakes and requests (ward's OpenSSL, so
    /// X25519MLKEM768 too), and report requests/s
    Handshakes(handshakes::HandshakesArgs),
}

#[derive(Args)]
pub struct FleetArgs {
    #[command(flatten)]
    data: DataArg,
    /// Agents to add
    #[arg(long, default_value_t = 1_000_000)]
    agents: u64,
    /// Groups to add (a tree ten wide)
    #[arg(long, default_value_t = 1000)]
    groups: u64,
    /// How many of the agents are left pending (their serial not acknowledged)
    #[arg(long, default_value_t = 10_000)]
    pending: u64,
    /// Distinct real ClientHellos (TLS stacks) the agents are spread over, for exact plans
    /// to replay (0: agents judged by their reported versions only)
    #[arg(long, default_value_t = 100)]
    hellos: usize,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

pub fn run(command: BenchCommand) -> CmdResult {
    match command {
        BenchCommand::Fleet(args) => fleet(args),
        BenchCommand::Handshakes(args) => handshakes::run(args),
    }
}

fn fleet(args: FleetArgs) -> CmdResult {
    let data = ward_server::DataDir::new(&args.data.data);
    if data.pid_file().exists() {
        return Err(format!(
            "{} has a running server (ward.pid): stop it first",
            data.root().display()
        ));
    }
    let config = ward_server::config::load(&data.config()).map_err(|e| e.to_string())?;
    let store = ward_store::open(&super::database(&data, &config)?).map_err(|e| e.to_string())?;
    let groups = store.groups().map_err(|e| e.to_string())?;
    if groups.is_empty() {
        return Err(
            "the database has no group tree yet: start `ward server` once, then stop it".into(),
        );
    }
    let root = groups
        .iter()
        .find(|g| g.parent.is_none())
        .map(|g| g.id)
        .unwrap_or(1);

    let started = Instant::now();
    let mut ids = vec![root];
    for index in 0..args.groups {
        // Group n hangs under group n/10: ten children each, a tree about four deep.
        let parent = ids[index as usize / 10];
        let applied = store
            .apply(&Change {
                tree_version: None,
                mutation: Mutation::CreateGroup(Group {
                    id: 0,
                    parent: Some(parent),
                    name: format!("bench-{index}"),
                    own: OwnSettings {
                        interval: (index % 7 == 0).then(|| Duration::from_secs(60 + index % 600)),
                        ..OwnSettings::default()
                    },
                }),
                bump_groups: vec![],
                bump_agents: vec![],
                audit: AuditEntry {
                    id: 0,
                    at_ms: 0,
                    actor: "bench".into(),
                    action: "group.create".into(),
                    target: format!("bench-{index}"),
                    before: None,
                    after: None,
                },
            })
            .map_err(|e| e.to_string())?;
        ids.push(applied.new_id.unwrap_or(root));
    }
    let groups_time = started.elapsed();

    // Real ClientHellos of `hellos` distinct stacks, kept as the server keeps them.
    let stacks = distinct_hellos(args.hellos)?;
    if !stacks.is_empty() {
        let batch = ward_store::TelemetryBatch {
            hellos: stacks
                .iter()
                .map(|(digest, bytes, _)| ward_store::HelloSeen {
                    digest: digest.clone(),
                    bytes: bytes.clone(),
                    at_ms: 1_795_000_000_000,
                    count: 1,
                })
                .collect(),
            ..Default::default()
        };
        store.record_telemetry(&batch).map_err(|e| e.to_string())?;
    }

    let started = Instant::now();
    let batch = 50_000;
    let mut inserted = 0;
    while inserted < args.agents {
        let count = batch.min(args.agents - inserted);
        let agents: Vec<AgentRecord> = (inserted..inserted + count)
            .map(|n| AgentRecord {
                id: format!("bench-{n:08}"),
                hostname: format!("host-{n}"),
                os_name: "Windows".into(),
                os_version: if n % 10 == 0 {
                    "XP".into()
                } else {
                    "10".into()
                },
                agent_version: "0.1.0".into(),
                tls_versions: match stacks.get(n as usize % stacks.len().max(1)) {
                    Some((_, _, versions)) => versions.clone(),
                    None if n % 10 == 0 => vec!["TLSv1".into()],
                    None => vec!["TLSv1.2".into(), "TLSv1.3".into()],
                },
                group: ids[(n % ids.len() as u64) as usize],
                last_checkin_ms: Some(1_795_000_000_000 + n as i64),
                channel: Some("https".into()),
                server: Some("https://mgr1:443".into()),
                tls_version: Some("TLSv1.3".into()),
                tls_group: Some("X25519MLKEM768".into()),
                hello: stacks
                    .get(n as usize % stacks.len().max(1))
                    .map(|(digest, _, _)| digest.clone()),
                serial: if n < args.pending { 2 } else { 1 },
                acked_serial: 1,
                enrolled_ms: 1_795_000_000_000,
                simulated: false,
                reverted: None,
                reported_hello: None,
                peer: None,
            })
            .collect();
        store.insert_agents(&agents).map_err(|e| e.to_string())?;
        inserted += count;
        eprint!("\ragents: {inserted}/{}", args.agents);
    }
    eprintln!();
    let agents_time = started.elapsed();

    // The pure computation: the checked tree and every group's effective settings.
    let started = Instant::now();
    let tree = Tree::new(store.groups().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let loaded = started.elapsed();
    let started = Instant::now();
    let effective = tree.effective_all();
    let computed = started.elapsed();

    let report = json!({
        "groups": tree.len(),
        "agents_added": args.agents,
        "pending": args.pending.min(args.agents),
        "groups_insert_seconds": groups_time.as_secs_f64(),
        "agents_insert_seconds": agents_time.as_secs_f64(),
        "tree_load_ms": loaded.as_secs_f64() * 1000.0,
        "effective_all_ms": computed.as_secs_f64() * 1000.0,
        "effective_groups": effective.len(),
        "distinct_hellos": stacks.len(),
    });
    if args.json {
        println!("{report:#}");
    } else {
        println!(
            "{} groups, {} agents added ({} pending) in {:.1}s + {:.1}s; tree load {:.1} ms, \
             effective settings of every group {:.2} ms",
            tree.len(),
            args.agents,
            args.pending.min(args.agents),
            groups_time.as_secs_f64(),
            agents_time.as_secs_f64(),
            loaded.as_secs_f64() * 1000.0,
            computed.as_secs_f64() * 1000.0
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A bench stack: its fingerprint (hex), its ClientHello's bytes, the versions it offers.
type Stack = (String, Vec<u8>, Vec<String>);

/// `count` distinct real ClientHellos from ward's own OpenSSL: the client profiles' stacks
/// first, then stacks that differ in their highest version, suites, groups and SNI.
fn distinct_hellos(count: usize) -> Result<Vec<Stack>, String> {
    use ward_tls::context::{connector_builder, ClientTls, ServerVerification};
    use ward_tls::TlsVersion;
    let suites = [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "ECDHE-RSA-AES128-SHA",
        "ECDHE-RSA-AES256-SHA",
        "AES128-GCM-SHA256",
        "AES256-GCM-SHA384",
        "AES128-SHA",
        "AES256-SHA",
        "DES-CBC3-SHA",
    ];
    let mut configs: Vec<(ClientTls, Option<&str>, bool)> = ward_tls::profile::CLIENT_PROFILES
        .iter()
        .map(|p| (p.client_tls(ServerVerification::None), p.groups, p.sni))
        .collect();
    for sni in [true, false] {
        for max in [TlsVersion::Tls1_0, TlsVersion::Tls1_2, TlsVersion::Tls1_3] {
            for groups in [None, Some("X25519"), Some("P-256:P-384")] {
                for take in 1..=suites.len() {
                    configs.push((
                        ClientTls {
                            min: None,
                            max: Some(max),
                            verification: ServerVerification::None,
                            cipher_list: Some(format!("{}:@SECLEVEL=0", suites[..take].join(":"))),
                        },
                        groups,
                        sni,
                    ));
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (tls, groups, sni) in configs {
        if out.len() >= count {
            break;
        }
        let mut builder = connector_builder(&tls).map_err(|e| e.to_string())?;
        if let Some(groups) = groups {
            builder.set_groups_list(groups).map_err(|e| e.to_string())?;
        }
        let mut config = builder.build().configure().map_err(|e| e.to_string())?;
        config.set_use_server_name_indication(sni);
        config.set_verify_hostname(false);
        // A TLS 1.0 client with only TLS 1.2 suites offers nothing: not a stack.
        let Ok(bytes) = ward_tls::replay::client_hello(config, "mgr1") else {
            continue;
        };
        let hello = ward_tls::hello::parse_client_hello(&bytes).map_err(|e| e.to_string())?;
        let digest = ward_proto::hex(&hello.fingerprint());
        if seen.insert(digest.clone()) {
            let versions = hello
                .offered_versions()
                .iter()
                .map(|v| v.name().to_string())
                .collect();
            out.push((digest, bytes, versions));
        }
    }
    if out.len() < count {
        return Err(format!(
            "only {} distinct ClientHellos could be made",
            out.len()
        ));
    }
    Ok(out)
}
