//! `GET /api/v1/tls/readiness`: the fleet by TLS capability, per listener and group, and the
//! agents that stopped checking in, with the ClientHello refused from their address.

use std::collections::BTreeMap;

use ward_api::tls::{
    AgentLine, Bucket, HelloLine, HelloPeer, Hellos, PostQuantum, Readiness, ReadinessQuery,
    RefusedHandshake, Stack,
};

use super::*;

/// Which listener an agent reached the server through last.
fn listener_of(https: Option<bool>) -> &'static str {
    match https {
        Some(true) => "clients",
        Some(false) => "clients-http",
        None => "never_checked_in",
    }
}

/// The latest `silent_since` taken: the year 2100, in Unix milliseconds.
const SILENT_SINCE_MAX: u64 = 4_102_444_800_000;

/// `GET /tls/readiness`.
pub async fn readiness(shared: &App, query: ReadinessQuery) -> Result<Readiness, ApiError> {
    let limit = limit(query.limit)?;
    let intervals = offline_intervals(query.offline_intervals)?;
    let silent_since = match query.silent_since {
        Some(ms) if ms > SILENT_SINCE_MAX => {
            return Err(ApiError::bad_request(
                "silent_since: Unix milliseconds before the year 2100",
            ))
        }
        given => given.map(|ms| ms as i64),
    };
    let held = held(shared);
    let store = shared.store.clone();
    blocking(move || {
        let now = now_ms();
        let fleet = Fleet::read(&*store, intervals, held)?;
        // Refused handshakes of the last day, newest first: the lost agents' ClientHellos.
        // Clients that left after the server's hello were not refused.
        let mut failures = store.recent_failures(now - 86_400_000, 10_000)?;
        failures.retain(|f| f.kind != "abandoned");
        let mut answer = readiness_of(&fleet, &failures, intervals, limit, silent_since, now);
        answer.capped = crate::impact::render::cap_refusals(&fleet, &failures);
        answer.stacks = stacks(&fleet, &store.client_hellos()?, limit);
        let mut silent = answer.silent_since.take().unwrap_or_default();
        fill_hostnames(
            &*store,
            &mut [&mut answer.lost, &mut silent, &mut answer.reverted],
        )?;
        answer.silent_since = silent_since.map(|_| silent);
        Ok(answer)
    })
    .await
}

fn readiness_of(
    fleet: &Fleet,
    failures: &[ward_store::HandshakeFailure],
    intervals: u32,
    limit: usize,
    silent_since: Option<i64>,
    now: i64,
) -> Readiness {
    // The newest refusal per peer address.
    let mut refused: HashMap<IpAddr, &ward_store::HandshakeFailure> = HashMap::new();
    // Agents speak TLS to the clients listener only: refusals on the console (an admin's
    // browser, a scanner) are not theirs.
    for failure in failures
        .iter()
        .filter(|f| f.listener == Role::Clients.name())
    {
        if let Ok(address) = failure.peer.parse::<std::net::SocketAddr>() {
            refused
                .entry(address.ip().to_canonical())
                .or_insert(failure);
        }
    }
    // Per listener and highest version: how many, and the first `limit` ids.
    let mut by_listener: BTreeMap<String, BTreeMap<String, Bucket>> = BTreeMap::new();
    let mut by_group: HashMap<GroupId, BTreeMap<String, u64>> = HashMap::new();
    let mut knowledge: BTreeMap<String, u64> = BTreeMap::new();
    let mut lost = Vec::new();
    let mut silent = Vec::new();
    let mut reverted = Vec::new();
    let mut lost_count = 0u64;
    // Of the agents whose last check-in was over HTTPS, how many a post-quantum group protects.
    let (mut over_https, mut post_quantum) = (0u64, 0u64);
    for agent in &fleet.agents {
        if agent.https == Some(true) {
            over_https += 1;
            post_quantum += u64::from(agent.post_quantum);
        }
        let facts = facts(fleet, agent, now);
        let highest = facts
            .capability
            .highest()
            .map(|v| v.name())
            .unwrap_or("unknown");
        let bucket = by_listener
            .entry(listener_of(agent.https).to_string())
            .or_default()
            .entry(highest.to_string())
            .or_insert_with(|| Bucket {
                count: 0,
                agents: Vec::new(),
            });
        bucket.count += 1;
        if bucket.agents.len() < limit {
            bucket.agents.push(agent.id.clone());
        }
        *by_group
            .entry(agent.group)
            .or_default()
            .entry(highest.to_string())
            .or_default() += 1;
        *knowledge
            .entry(facts.capability.knowledge.name().to_string())
            .or_default() += 1;
        let last = agent.last_checkin_ms.unwrap_or(agent.enrolled_ms);
        let refusal = agent
            .peer
            .and_then(|peer| refused.get(&peer.to_canonical()))
            .filter(|f| f.at_ms > last);
        let offline_after = fleet.group_facts(agent.group).offline_after_ms;
        let with_refusal = |mut line: AgentLine| {
            line.refused = refusal.map(|failure| RefusedHandshake {
                at: crate::api::time(failure.at_ms),
                listener: failure.listener.clone(),
                peer: failure.peer.clone(),
                offered_max: failure.offered_max.clone(),
                offered_versions: failure.offered_versions.clone(),
                reason: failure.reason.clone(),
            });
            line
        };
        if facts.silent_ms > offline_after {
            lost_count += 1;
            if lost.len() < limit {
                let mut line = with_refusal(agent_line(fleet, agent, &facts));
                line.silent_for = Some(model::human(facts.silent_ms));
                lost.push(line);
            }
        }
        if agent.refused_serial.is_some() && reverted.len() < limit {
            let mut line = agent_line(fleet, agent, &facts);
            line.risk = Some(ward_api::tls::Risk::Reverted);
            line.reason = Some("it went back to the last settings that worked".into());
            reverted.push(line);
        }
        if let Some(since) = silent_since {
            // Heard from before `since` but not after, while not offline at `since`. A held
            // push check-in counts as heard: reloads end held TLS check-ins, so one held now
            // runs under the current settings.
            let held = fleet.held.contains(&agent.id);
            if !held && last < since && since - last <= offline_after && silent.len() < limit {
                silent.push(with_refusal(agent_line(fleet, agent, &facts)));
            }
        }
    }
    let groups: BTreeMap<String, BTreeMap<String, u64>> = by_group
        .into_iter()
        .map(|(id, counts)| {
            (
                fleet.tree.path(id).unwrap_or_else(|| id.to_string()),
                counts,
            )
        })
        .collect();
    Readiness {
        agents: fleet.agents.len(),
        knowledge,
        listeners: by_listener,
        groups,
        offline_intervals: intervals,
        lost_count,
        lost,
        post_quantum: PostQuantum {
            agents: post_quantum,
            over_https,
            share: if over_https == 0 {
                0.0
            } else {
                post_quantum as f64 / over_https as f64
            },
        },
        silent_since: silent_since.map(|_| silent),
        stacks: Vec::new(),
        reverted,
        capped: Vec::new(),
    }
}

/// The fleet by TLS stack (the fingerprint of each agent's last ClientHello), most agents
/// first: how many agents and which, the versions and the classes of suites the stack
/// offers, whether it sends SNI, and whether it offers a post-quantum group. Agents ward never
/// saw over TLS are one bucket with no fingerprint.
fn stacks(fleet: &Fleet, hellos: &[ward_store::StoredHello], limit: usize) -> Vec<Stack> {
    let mut by_stack: HashMap<Option<&str>, Vec<&str>> = HashMap::new();
    for agent in &fleet.agents {
        by_stack
            .entry(agent.hello.as_deref())
            .or_default()
            .push(agent.id.as_str());
    }
    let mut stacks: Vec<(Option<&str>, Vec<&str>)> = by_stack.into_iter().collect();
    stacks.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    let bytes: HashMap<&str, &[u8]> = hellos
        .iter()
        .map(|h| (h.digest.as_str(), h.bytes.as_slice()))
        .collect();
    stacks
        .into_iter()
        .map(|(digest, mut ids)| {
            ids.sort_unstable();
            let parsed = digest
                .and_then(|d| bytes.get(d))
                .and_then(|b| ward_tls::hello::parse_client_hello(b).ok());
            let mut stack = Stack {
                fingerprint: digest.map(str::to_string),
                agents: ids.len(),
                ids: ids.iter().take(limit).map(|id| id.to_string()).collect(),
                offered_versions: None,
                suite_classes: None,
                ja4: None,
                sni: None,
                post_quantum: None,
                note: None,
            };
            match &parsed {
                Some(hello) => {
                    stack.offered_versions = Some(
                        hello
                            .offered_versions()
                            .iter()
                            .map(|v| v.name().to_string())
                            .collect(),
                    );
                    stack.suite_classes = Some(
                        ward_tls::hello::suite_classes(&hello.cipher_suites)
                            .into_iter()
                            .map(|(class, count)| (class.to_string(), count))
                            .collect(),
                    );
                    stack.ja4 = Some(hello.ja4());
                    stack.sni = Some(hello.server_name.is_some());
                    // X25519MLKEM768 (0x11EC) and the other hybrid groups.
                    stack.post_quantum =
                        Some(hello.groups.iter().any(|g| matches!(g, 0x11EB..=0x11ED)));
                }
                None if digest.is_none() => {
                    stack.note =
                        Some("never seen over TLS: judged by the versions it reports".into());
                }
                None => {
                    stack.note = Some(
                        "its ClientHello was not kept (more distinct stacks than the bound)".into(),
                    );
                }
            }
            stack
        })
        .collect()
}

/// `GET /tls/hellos`: every distinct ClientHello kept (what exact plans replay), most seen
/// first, with what each offers, and the peers whose last hello it is.
pub async fn hellos(shared: &App) -> Result<Hellos, ApiError> {
    let store = shared.store.clone();
    blocking(move || {
        let hellos = store.client_hellos()?;
        let peers = store.hello_peers(0)?;
        let list = hellos
            .iter()
            .map(|stored| {
                let parsed = ward_tls::hello::parse_client_hello(&stored.bytes).ok();
                HelloLine {
                    digest: stored.digest.clone(),
                    count: stored.count,
                    last_seen: crate::api::time(stored.last_ms),
                    bytes: stored.bytes.len(),
                    offered_versions: parsed.as_ref().map(|h| {
                        h.offered_versions()
                            .into_iter()
                            .map(|v| v.name().to_string())
                            .collect()
                    }),
                    cipher_suites: parsed.as_ref().map(|h| h.cipher_suites.len()),
                    server_name: parsed.as_ref().and_then(|h| h.server_name.clone()),
                    ja4: parsed.as_ref().map(|h| h.ja4()),
                    peers: peers
                        .iter()
                        .filter(|p| p.digest == stored.digest)
                        .take(50)
                        .map(|p| HelloPeer {
                            listener: p.listener.clone(),
                            peer: p.peer.clone(),
                        })
                        .collect(),
                }
            })
            .collect();
        Ok(Hellos {
            hellos: list,
            bound: ward_store::MAX_DISTINCT_HELLOS,
        })
    })
    .await
}
