//! `GET /api/v1/tls/readiness`: the fleet by TLS capability, per listener and group, and the
//! agents that stopped checking in, with the ClientHello refused from their address.

use super::*;

/// Which listener an agent reached the server through last.
fn listener_of(https: Option<bool>) -> &'static str {
    match https {
        Some(true) => "clients",
        Some(false) => "clients-http",
        None => "never_checked_in",
    }
}

pub(super) async fn readiness(shared: &App, query: &str) -> ApiResult {
    let mut limit = DEFAULT_LIMIT;
    let mut intervals = OFFLINE_INTERVALS;
    let mut silent_since: Option<i64> = None;
    for (key, value) in query_pairs(query) {
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("{key}: a number")))
        };
        match key.as_str() {
            "limit" => limit = number()?.min(10_000_000) as usize,
            "offline_intervals" => {
                intervals = number()?.clamp(1, 1000) as u32;
            }
            "silent_since" => silent_since = Some(number()?.min(i64::MAX as u64) as i64),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter '{other}' (expected limit, offline_intervals, silent_since)"
                )))
            }
        }
    }
    let held = held(shared);
    let store = shared.store.clone();
    let value = blocking(move || {
        let now = now_ms();
        let fleet = Fleet::read(&*store, intervals, held)?;
        // Refused handshakes of the last day, newest first: the lost agents' ClientHellos.
        // Clients that left after the server's hello were not refused.
        let mut failures = store.recent_failures(now - 86_400_000, 10_000)?;
        failures.retain(|f| f.kind != "abandoned");
        let mut value = readiness_json(&fleet, &failures, intervals, limit, silent_since, now);
        value["stacks"] = stacks_json(&fleet, &store.client_hellos()?, limit);
        fill_hostnames(&*store, &mut value, &["lost", "silent_since"])?;
        Ok(value)
    })
    .await?;
    Ok(json_response(StatusCode::OK, &value))
}

fn readiness_json(
    fleet: &Fleet,
    failures: &[ward_store::HandshakeFailure],
    intervals: u32,
    limit: usize,
    silent_since: Option<i64>,
    now: i64,
) -> Value {
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
    let mut by_listener: HashMap<&str, HashMap<&str, (usize, Vec<&str>)>> = HashMap::new();
    let mut by_group: HashMap<GroupId, HashMap<&str, u64>> = HashMap::new();
    let mut knowledge: HashMap<&str, u64> = HashMap::new();
    let mut lost = Vec::new();
    let mut silent = Vec::new();
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
            .entry(listener_of(agent.https))
            .or_default()
            .entry(highest)
            .or_default();
        bucket.0 += 1;
        if bucket.1.len() < limit {
            bucket.1.push(&agent.id);
        }
        *by_group
            .entry(agent.group)
            .or_default()
            .entry(highest)
            .or_default() += 1;
        *knowledge
            .entry(facts.capability.knowledge.name())
            .or_default() += 1;
        let last = agent.last_checkin_ms.unwrap_or(agent.enrolled_ms);
        let refusal = agent
            .peer
            .and_then(|peer| refused.get(&peer.to_canonical()))
            .filter(|f| f.at_ms > last);
        let offline_after = fleet.group_facts(agent.group).offline_after_ms;
        let with_refusal = |mut line: Value| {
            if let Some(failure) = refusal {
                line["refused"] = json!({
                    "at": crate::api::time(failure.at_ms),
                    "listener": failure.listener,
                    "peer": failure.peer,
                    "offered_max": failure.offered_max,
                    "offered_versions": failure.offered_versions,
                    "reason": failure.reason,
                });
            }
            line
        };
        if facts.silent_ms > offline_after {
            lost_count += 1;
            if lost.len() < limit {
                let mut line = with_refusal(agent_json(fleet, agent, &facts));
                line["silent_for"] = json!(model::human(facts.silent_ms));
                lost.push(line);
            }
        }
        if let Some(since) = silent_since {
            // Heard from before `since` but not after, while not offline at `since`. A held
            // push check-in counts as heard: reloads end held TLS check-ins, so one held now
            // runs under the current settings.
            let held = fleet.held.contains(&agent.id);
            if !held && last < since && since - last <= offline_after && silent.len() < limit {
                silent.push(with_refusal(agent_json(fleet, agent, &facts)));
            }
        }
    }
    let listeners: Map<String, Value> = by_listener
        .into_iter()
        .map(|(listener, buckets)| {
            let buckets: Map<String, Value> = buckets
                .into_iter()
                .map(|(version, (count, ids))| {
                    (version.to_string(), json!({"count": count, "agents": ids}))
                })
                .collect();
            (listener.to_string(), Value::Object(buckets))
        })
        .collect();
    let mut groups: Vec<(String, Value)> = by_group
        .into_iter()
        .map(|(id, counts)| {
            (
                fleet.tree.path(id).unwrap_or_else(|| id.to_string()),
                json!(counts),
            )
        })
        .collect();
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    let mut value = json!({
        "agents": fleet.agents.len(),
        "knowledge": knowledge,
        "listeners": listeners,
        "groups": groups.into_iter().collect::<Map<String, Value>>(),
        "offline_intervals": intervals,
        "lost_count": lost_count,
        "lost": lost,
        "post_quantum": {
            "agents": post_quantum,
            "over_https": over_https,
            "share": if over_https == 0 { 0.0 } else { post_quantum as f64 / over_https as f64 },
        },
    });
    if silent_since.is_some() {
        value["silent_since"] = json!(silent);
    }
    value
}

/// The fleet by TLS stack (the fingerprint of each agent's last ClientHello), most agents
/// first: how many agents and which, the versions and the classes of suites the stack
/// offers, whether it sends SNI, and whether it offers a post-quantum group. Agents ward never
/// saw over TLS are one bucket with no fingerprint.
fn stacks_json(fleet: &Fleet, hellos: &[ward_store::StoredHello], limit: usize) -> Value {
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
    Value::Array(
        stacks
            .into_iter()
            .map(|(digest, mut ids)| {
                ids.sort_unstable();
                let parsed = digest
                    .and_then(|d| bytes.get(d))
                    .and_then(|b| ward_tls::hello::parse_client_hello(b).ok());
                let mut line = json!({
                    "fingerprint": digest,
                    "agents": ids.len(),
                    "ids": ids.iter().take(limit).collect::<Vec<_>>(),
                });
                match &parsed {
                    Some(hello) => {
                        line["offered_versions"] = json!(hello
                            .offered_versions()
                            .iter()
                            .map(|v| v.name())
                            .collect::<Vec<_>>());
                        line["suite_classes"] =
                            json!(ward_tls::hello::suite_classes(&hello.cipher_suites));
                        line["ja4"] = json!(hello.ja4());
                        line["sni"] = json!(hello.server_name.is_some());
                        // X25519MLKEM768 (0x11EC) and the other hybrid groups.
                        line["post_quantum"] =
                            json!(hello.groups.iter().any(|g| matches!(g, 0x11EB..=0x11ED)));
                    }
                    None if digest.is_none() => {
                        line["note"] =
                            json!("never seen over TLS: judged by the versions it reports");
                    }
                    None => {
                        line["note"] = json!(
                            "its ClientHello was not kept (more distinct stacks than the bound)"
                        );
                    }
                }
                line
            })
            .collect(),
    )
}

/// `GET /api/v1/tls/hellos`: every distinct ClientHello kept (what exact plans replay), most
/// seen first, with what each offers, and the peers whose last hello it is.
pub(super) async fn hellos(shared: &App) -> ApiResult {
    let store = shared.store.clone();
    let value = blocking(move || {
        let hellos = store.client_hellos()?;
        let peers = store.hello_peers(0)?;
        let list: Vec<Value> = hellos
            .iter()
            .map(|stored| {
                let (digest, bytes, count, last_ms) =
                    (&stored.digest, &stored.bytes, stored.count, stored.last_ms);
                let parsed = ward_tls::hello::parse_client_hello(bytes).ok();
                let users: Vec<Value> = peers
                    .iter()
                    .filter(|p| &p.digest == digest)
                    .take(50)
                    .map(|p| json!({"listener": p.listener, "peer": p.peer}))
                    .collect();
                json!({
                    "digest": digest,
                    "count": count,
                    "last_seen": crate::api::time(last_ms),
                    "bytes": bytes.len(),
                    "offered_versions": parsed.as_ref().map(|h| h
                        .offered_versions()
                        .into_iter()
                        .map(|v| v.name())
                        .collect::<Vec<_>>()),
                    "cipher_suites": parsed.as_ref().map(|h| h.cipher_suites.len()),
                    "server_name": parsed.as_ref().and_then(|h| h.server_name.clone()),
                    "ja4": parsed.as_ref().map(|h| h.ja4()),
                    "peers": users,
                })
            })
            .collect();
        Ok(json!({"hellos": list, "bound": ward_store::MAX_DISTINCT_HELLOS}))
    })
    .await?;
    Ok(json_response(StatusCode::OK, &value))
}
