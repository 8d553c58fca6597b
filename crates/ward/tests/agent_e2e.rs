//! Real agent processes against the real server: enrollment, pull and push check-ins, moves
//! between groups and server lists, TLS caps, the plain-HTTP channel, and attacks on it.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use support::*;

/// A server list made of `specs` (`PRIORITY:URL`), and a group under the root that uses it.
fn group_on_list(server: &Server, group: &str, list: &str, specs: &[String]) {
    let mut args = vec!["serverlist", "create", list];
    for spec in specs {
        args.extend(["--server", spec.as_str()]);
    }
    cli(server, &args);
    cli(server, &["group", "create", group]);
    let path = format!("My Company/{group}");
    cli(server, &["group", "set", &path, "--server-list", list]);
}

#[test]
fn pull_and_push_agents_follow_moves_to_another_server_list() {
    let server = fast_server();
    let https = format!("https://localhost:{}", server.clients);
    let http = format!("http://127.0.0.1:{}", server.clients_http);
    let tok = group_token(&server, "My Company", false);
    let pull = run_agent(enroll(&server, &https, &tok, None), None);
    let push = run_agent(enroll(&server, &https, &tok, None), None);
    let status = pull.until(Duration::from_secs(10), |s| s["channel"] == "https");
    assert_eq!(status["tls_version"], "TLSv1.3");
    assert_eq!(status["id"], Value::String(pull.id()));
    // The agents resume their TLS sessions instead of full handshakes each time.
    let resumed = eventually(Duration::from_secs(10), || {
        let metrics = https_get(server.console, &server.ca_pem(), "/metrics", None).body;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("ward_tls_resumed_total{listener=\"clients\"} "))
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|n| *n > 0)
    });
    assert!(resumed.is_some(), "the agents never resumed a TLS session");
    // The server sees both, over HTTPS.
    let clients = cli(&server, &["client", "list"]);
    assert_eq!(clients.as_array().unwrap().len(), 2);
    assert!(clients
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["channel"] == "https" && c["tls_version"] == "TLSv1.3"));

    // The seed's legacy path: an HTTP list on the clients-http port, in its own groups.
    group_on_list(
        &server,
        "Legacy pull",
        "Legacy HTTP",
        &[format!("1:{http}")],
    );
    cli(&server, &["group", "create", "Legacy push"]);
    // A long interval: only push can deliver the next change quickly.
    cli(
        &server,
        &[
            "group",
            "set",
            "My Company/Legacy push",
            "--server-list",
            "Legacy HTTP",
            "--mode",
            "push",
        ],
    );
    cli(
        &server,
        &[
            "client",
            "move",
            &push.id(),
            "--group",
            "My Company/Legacy push",
        ],
    );
    push.until(Duration::from_secs(10), |s| {
        s["channel"] == "http" && s["mode"] == "push"
    });
    cli(
        &server,
        &[
            "group",
            "set",
            "My Company/Legacy push",
            "--interval",
            "10m",
        ],
    );
    // A pull agent picks its move up within an interval and then uses the new list.
    cli(
        &server,
        &[
            "client",
            "move",
            &pull.id(),
            "--group",
            "My Company/Legacy pull",
        ],
    );
    let moved = pull.until(Duration::from_secs(10), |s| s["channel"] == "http");
    assert!(
        moved["tls_version"].is_null(),
        "plain HTTP has no TLS version"
    );
    // A policy change reaches the push agent at once (its interval is ten minutes).
    let policy = server.dir.path().join("policy.json");
    std::fs::write(&policy, r#"{"antivirus": "strict"}"#).unwrap();
    let before = push.status().unwrap()["serial"].as_i64().unwrap();
    cli(
        &server,
        &[
            "group",
            "set",
            "My Company/Legacy push",
            "--policy",
            policy.to_str().unwrap(),
        ],
    );
    push.until(Duration::from_secs(5), |s| {
        s["serial"].as_i64().unwrap() > before
    });
    let written: Value =
        serde_json::from_slice(&std::fs::read(push.dir.path().join("policy.json")).unwrap())
            .unwrap();
    assert_eq!(written["antivirus"], "strict");
    // Both acknowledged: nobody pending.
    let settled = eventually(Duration::from_secs(10), || {
        let pending = cli(&server, &["client", "list", "--pending"]);
        pending.as_array().unwrap().is_empty().then_some(())
    });
    assert!(
        settled.is_some(),
        "pending: {}",
        cli(&server, &["client", "list", "--pending"])
    );
}

#[test]
fn a_tls1_capped_agent_and_the_listeners() {
    let server = fast_server();
    let https = format!("https://localhost:{}", server.clients);
    let http = format!("http://127.0.0.1:{}", server.clients_http);
    let tok = group_token(&server, "My Company", false);
    // The seed's legacy group: its server list is plain HTTP, its token allows HTTP enrollment.
    group_on_list(&server, "Legacy", "Legacy HTTP", &[format!("1:{http}")]);
    let legacy_token = group_token(&server, "My Company/Legacy", true);
    // Plain-HTTP enrollment needs a token that allows it.
    let refused_dir = server.dir.path().join("refused");
    let unpinned = ward(&[
        "agent",
        "enroll",
        "--server",
        &http,
        "--token",
        &tok,
        "--ca",
        server.path("certs/ca.pem").to_str().unwrap(),
        "--state",
        refused_dir.to_str().unwrap(),
    ]);
    assert!(!unpinned.status.success());
    assert!(
        String::from_utf8_lossy(&unpinned.stderr).contains("needs --pin"),
        "{unpinned:?}"
    );
    let server_pin = pin(&server);
    let refused = ward(&[
        "agent",
        "enroll",
        "--server",
        &http,
        "--token",
        &tok,
        "--pin",
        &server_pin,
        "--state",
        refused_dir.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr)
        .contains("does not allow enrollment over plain HTTP"));
    // Over the default policy (all -SSLv2 -SSLv3) the XP-like agent speaks TLSv1.
    let xp = run_agent(enroll(&server, &https, &tok, Some("TLSv1")), Some("TLSv1"));
    let status = xp.until(Duration::from_secs(10), |s| s["tls_version"] == "TLSv1");
    assert_eq!(status["channel"], "https");
    let client = cli(&server, &["client", "show", &xp.id()]);
    assert_eq!(client["tls_versions"], serde_json::json!(["TLSv1"]));
    // Enrolled over plain HTTP into the legacy group, it checks in over HTTP.
    let xp_http = run_agent(
        enroll(&server, &http, &legacy_token, Some("TLSv1")),
        Some("TLSv1"),
    );
    xp_http.until(Duration::from_secs(10), |s| s["channel"] == "http");
    // After the seed's edit, the TLSv1 agent on HTTPS can no longer check in, and the server
    // records what it offered.
    for file in ["conf/ssl/ssl.conf", "conf/ssl/sslforclients.conf"] {
        server.set_protocol(file, "all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1");
    }
    // The reload would take its last path: refused unless accepted.
    let refused = ward(&["server", "reload", "--data", &server.data_str()]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stdout).contains(&xp.id()));
    assert!(ward(&[
        "server",
        "reload",
        "--data",
        &server.data_str(),
        "--accept-cut-off"
    ])
    .status
    .success());
    xp.until(Duration::from_secs(15), |s| {
        s["last_error"].as_str().is_some_and(|e| e.contains("TLS"))
    });
    let refused = eventually(Duration::from_secs(10), || {
        let report = cli(&server, &["tls", "handshakes"]);
        report["refused"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["listener"] == "clients" && r["offered_max"] == "TLSv1")
            .cloned()
    })
    .expect("the refusal is in the telemetry");
    assert_eq!(
        refused["reason"],
        "client offers only TLSv1, listener accepts TLSv1.2-TLSv1.3"
    );
    // The HTTP one keeps checking in.
    let last = xp_http.status().unwrap()["last_checkin"].clone();
    xp_http.until(Duration::from_secs(10), |s| {
        s["last_checkin"] != last && s["last_error"].is_null()
    });

    // The orphaned one is brought back the seed's way: the legacy group's communication
    // settings, exported by the admin and dropped on the agent. It keeps its identity.
    let orphan_id = xp.id();
    let (imported, back) = recover(&server, "My Company/Legacy", xp, "TLSv1");
    assert!(
        String::from_utf8_lossy(&imported.stdout).contains("kept its identity"),
        "{imported:?}"
    );
    let status = back.until(Duration::from_secs(10), |s| {
        s["channel"] == "http" && s["last_error"].is_null()
    });
    assert_eq!(status["id"], Value::String(orphan_id.clone()));
    assert_eq!(
        cli(&server, &["client", "show", &orphan_id])["group"],
        "My Company/Legacy"
    );
}

/// A TCP relay between the agent and the clients-http listener that records every byte and
/// can rewrite what the server sends.
struct Proxy {
    port: u16,
    seen: Arc<Mutex<Vec<u8>>>,
    mode: Arc<Mutex<ProxyMode>>,
}

#[derive(Clone, PartialEq)]
enum ProxyMode {
    Pass,
    /// Flip one byte of the response body.
    Tamper,
    /// Answer with the first response ever relayed, whatever was asked.
    Replay,
}

fn proxy(target: u16) -> Proxy {
    proxy_on(0, target)
}

/// A relay listening on `port` (0 for any free one).
fn proxy_on(port: u16, target: u16) -> Proxy {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mode = Arc::new(Mutex::new(ProxyMode::Pass));
    let first: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    let (seen_in, mode_in) = (seen.clone(), mode.clone());
    std::thread::spawn(move || {
        for client in listener.incoming().take(10_000) {
            let Ok(mut client) = client else { continue };
            let (seen, mode, first) = (seen_in.clone(), mode_in.clone(), first.clone());
            std::thread::spawn(move || {
                client
                    .set_read_timeout(Some(Duration::from_secs(70)))
                    .unwrap();
                let Some(request) = read_request(&mut client) else {
                    return;
                };
                seen.lock().unwrap().extend_from_slice(&request);
                let mut upstream = TcpStream::connect(("127.0.0.1", target)).unwrap();
                upstream.write_all(&request).unwrap();
                let mut response = Vec::new();
                let _ = upstream.read_to_end(&mut response);
                seen.lock().unwrap().extend_from_slice(&response);
                let mut first = first.lock().unwrap();
                if first.is_none() && response.windows(8).any(|w| w == b"settings") {
                    *first = Some(response.clone());
                }
                let out = match mode.lock().unwrap().clone() {
                    ProxyMode::Pass => response,
                    ProxyMode::Tamper => {
                        let mut tampered = response;
                        if let Some(at) = tampered.windows(8).position(|w| w == b"\"serial\"") {
                            tampered[at + 1] ^= 0x20; // "Serial"
                        }
                        tampered
                    }
                    ProxyMode::Replay => first.clone().unwrap_or(response),
                };
                let _ = client.write_all(&out);
            });
        }
    });
    Proxy { port, seen, mode }
}

/// One whole HTTP request: the headers, then as many body bytes as Content-Length says (the
/// agent may send them in separate segments).
fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut request = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if request.len() >= end + 4 + length {
                return Some(request);
            }
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        request.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn the_http_channel_leaks_nothing_and_resists_tampering_and_replay() {
    let server = fast_server();
    let relay = proxy(server.clients_http);
    let via_proxy = format!("http://127.0.0.1:{}", relay.port);
    group_on_list(&server, "Watched", "Via proxy", &[format!("1:{via_proxy}")]);
    let tok = group_token(&server, "My Company/Watched", true);
    let agent = run_agent(enroll(&server, &via_proxy, &tok, Some("TLSv1")), None);
    agent.until(Duration::from_secs(10), |s| {
        s["channel"] == "http" && s["serial"].as_i64() > Some(0)
    });

    // Nothing that crossed the wire lets a third party check in as the agent: not the
    // token, not the agent's private key.
    let state: Value =
        serde_json::from_slice(&std::fs::read(agent.dir.path().join("agent.json")).unwrap())
            .unwrap();
    let private_key = state["private_key"].as_str().unwrap().to_string();
    let captured = String::from_utf8_lossy(&relay.seen.lock().unwrap()).into_owned();
    assert!(
        captured.contains("/agent/v1/checkin"),
        "the capture has the traffic"
    );
    assert!(
        !captured.contains(&tok),
        "the enrollment token crossed the wire"
    );
    assert!(
        !captured.contains(&private_key),
        "the private key crossed the wire"
    );

    // A tampered response is refused by the agent.
    *relay.mode.lock().unwrap() = ProxyMode::Tamper;
    let before = agent.status().unwrap()["serial"].as_i64().unwrap();
    cli(
        &server,
        &[
            "group",
            "set",
            "My Company/Watched",
            "--randomize",
            "0s",
            "--interval",
            "2s",
        ],
    );
    agent.until(Duration::from_secs(10), |s| {
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("answer refused"))
    });
    assert_eq!(
        agent.status().unwrap()["serial"].as_i64().unwrap(),
        before,
        "nothing applied"
    );
    // A replayed old response is refused too.
    *relay.mode.lock().unwrap() = ProxyMode::Replay;
    agent.until(Duration::from_secs(10), |s| {
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("answer refused"))
    });
    // Back to honest relaying: the change arrives.
    *relay.mode.lock().unwrap() = ProxyMode::Pass;
    agent.until(Duration::from_secs(10), |s| {
        s["serial"].as_i64().unwrap() > before && s["last_error"].is_null()
    });
}

#[test]
fn forged_replayed_and_foreign_requests_are_refused_and_change_nothing() {
    let server = fast_server();
    let https = format!("https://localhost:{}", server.clients);
    let tok = group_token(&server, "My Company", true);
    let dir = enroll(&server, &https, &tok, None);
    let state: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("agent.json")).unwrap()).unwrap();
    let agent = state["agent"].as_str().unwrap().to_string();
    let unhex = |t: &str| {
        (0..t.len() / 2)
            .map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16).unwrap())
            .collect::<Vec<u8>>()
    };
    let pair =
        ward_proto::KeyPair::from_private_bytes(&unhex(state["private_key"].as_str().unwrap()))
            .unwrap();
    let server_public = unhex(state["server_public"].as_str().unwrap());
    let key = ward_proto::agree(
        &pair,
        &server_public,
        &pair.public_bytes().unwrap(),
        &server_public,
    )
    .unwrap();
    let send = |agent_id: &str, body: &str, auth: &ward_proto::RequestAuth, mac: &str| {
        let mut connection = http_connect(server.clients_http);
        let time = auth.time_ms.to_string();
        connection
            .request(
                "POST",
                "/agent/v1/checkin",
                &[
                    ("X-Ward-Agent", agent_id),
                    ("X-Ward-Time", &time),
                    ("X-Ward-Nonce", &auth.nonce),
                    ("X-Ward-Mac", mac),
                ],
                body,
            )
            .unwrap()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let body = r#"{"acked_serial": 1, "hostname": "forged", "os_name": "linux", "os_version": "6", "agent_version": "0.1.0", "tls_versions": ["TLSv1.3"], "server": "x"}"#;
    let auth = ward_proto::RequestAuth::new(&agent, now);
    let request = ward_proto::Request {
        method: "POST",
        path: "/agent/v1/checkin",
        auth: &auth,
        body: body.as_bytes(),
    };
    let mac = ward_proto::sign_request(&key, &request);
    // Genuine once.
    let reply = send(&agent, body, &auth, &mac);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let mac_header = reply
        .headers
        .iter()
        .find(|(n, _)| n == "x-ward-mac")
        .unwrap()
        .1
        .clone();
    assert!(ward_proto::verify_response(
        &key,
        &auth.nonce,
        200,
        reply.body.as_bytes(),
        &mac_header
    )
    .is_ok());
    let after_genuine = cli(&server, &["client", "show", &agent]);
    let cases: Vec<(&str, String, String, ward_proto::RequestAuth, String)> = vec![
        (
            "replayed",
            agent.clone(),
            body.to_string(),
            auth.clone(),
            mac.clone(),
        ),
        (
            "bad MAC",
            agent.clone(),
            body.to_string(),
            ward_proto::RequestAuth::new(&agent, now),
            "00".repeat(32),
        ),
        (
            "altered body",
            agent.clone(),
            body.replace("forged", "altered"),
            ward_proto::RequestAuth {
                nonce: "ab".repeat(16),
                ..auth.clone()
            },
            mac.clone(),
        ),
        (
            "another agent's id",
            "ffffffffffffffffffffffffffffffff".into(),
            body.to_string(),
            ward_proto::RequestAuth::new("x", now),
            mac.clone(),
        ),
    ];
    for (what, id, body, auth, mac) in cases {
        let reply = send(&id, &body, &auth, &mac);
        assert_eq!(reply.status, 401, "{what}: {}", reply.body);
        let message = reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(!message.is_empty(), "{what}: a reason");
    }
    // Agent B's key cannot sign for agent A's id.
    let other_dir = enroll(&server, &https, &tok, None);
    let other: Value =
        serde_json::from_slice(&std::fs::read(other_dir.path().join("agent.json")).unwrap())
            .unwrap();
    let other_pair =
        ward_proto::KeyPair::from_private_bytes(&unhex(other["private_key"].as_str().unwrap()))
            .unwrap();
    let other_public = other_pair.public_bytes().unwrap();
    let other_key =
        ward_proto::agree(&other_pair, &server_public, &other_public, &server_public).unwrap();
    let posing = ward_proto::RequestAuth::new(&agent, now);
    let request = ward_proto::Request {
        method: "POST",
        path: "/agent/v1/checkin",
        auth: &posing,
        body: body.as_bytes(),
    };
    let reply = send(
        &agent,
        body,
        &posing,
        &ward_proto::sign_request(&other_key, &request),
    );
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert!(reply.body.contains("does not match"), "{}", reply.body);
    assert_eq!(
        cli(&server, &["client", "show", &agent]),
        after_genuine,
        "refused requests changed nothing"
    );
    // Unsigned requests get a clear reason.
    let reply = http_connect(server.clients_http)
        .request("POST", "/agent/v1/checkin", &[], "{}")
        .unwrap();
    assert_eq!(reply.status, 401);
    assert!(reply.body.contains("X-Ward-Mac"));
}

#[test]
fn kill_9_never_leaves_a_torn_settings_file_and_stop_is_clean() {
    let server = fast_server();
    let https = format!("https://localhost:{}", server.clients);
    let tok = group_token(&server, "My Company", false);
    let dir = enroll(&server, &https, &tok, None);
    let state_dir = dir.path().to_path_buf();
    // Settings keep changing while the agent is killed at varied moments.
    for round in 0..6 {
        let log = std::fs::File::create(state_dir.join("agent.log")).unwrap();
        let mut child = Command::new(ward_bin())
            .args(["agent", "run", "--state"])
            .arg(&state_dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        cli(
            &server,
            &[
                "group",
                "set",
                "My Company",
                "--randomize",
                &format!("{round}ms"),
            ],
        );
        std::thread::sleep(Duration::from_millis(150 * round + 50));
        child.kill().unwrap();
        child.wait().unwrap();
        let text = std::fs::read_to_string(state_dir.join("agent.json")).unwrap();
        let parsed: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("round {round}: torn file: {e}\n{text}"));
        assert!(parsed["agent"].is_string());
        let _ = std::fs::remove_file(state_dir.join("agent.sock"));
    }
    // start, status, stop: the service commands; --on-change runs after each change.
    let marker = state_dir.join("changed-serial");
    let on_change = format!("echo $WARD_SERIAL > {}", marker.display());
    let start = ward(&[
        "agent",
        "start",
        "--state",
        state_dir.to_str().unwrap(),
        "--on-change",
        &on_change,
    ]);
    assert!(start.status.success(), "{start:?}");
    let status = eventually(Duration::from_secs(10), || {
        let out = ward(&[
            "agent",
            "status",
            "--state",
            state_dir.to_str().unwrap(),
            "--json",
        ]);
        let value: Value = serde_json::from_slice(&out.stdout).ok()?;
        (!value["last_checkin"].is_null()).then_some(value)
    })
    .expect("the started agent checks in");
    for key in [
        "id",
        "server",
        "channel",
        "tls_version",
        "serial",
        "last_checkin",
        "next_checkin",
    ] {
        assert!(status.get(key).is_some(), "status --json has {key}");
    }
    cli(
        &server,
        &["group", "set", "My Company", "--randomize", "999ms"],
    );
    let ran = eventually(Duration::from_secs(10), || {
        let written = std::fs::read_to_string(&marker).ok()?;
        written.trim().parse::<i64>().ok()
    });
    assert!(
        ran.is_some_and(|serial| serial > 1),
        "--on-change ran with WARD_SERIAL"
    );
    let stop = ward(&["agent", "stop", "--state", state_dir.to_str().unwrap()]);
    assert!(stop.status.success(), "{stop:?}");
    assert!(
        !ward_agent_socket(&state_dir).exists(),
        "the control socket is gone"
    );
    let text = std::fs::read_to_string(state_dir.join("agent.json")).unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_ok());
    let after = ward(&["agent", "status", "--state", state_dir.to_str().unwrap()]);
    assert!(!after.status.success());
    assert!(String::from_utf8_lossy(&after.stderr).contains("no agent runs"));
}

fn ward_agent_socket(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("agent.sock")
}

#[test]
fn failover_to_priority_2_and_back_to_priority_1() {
    let server = fast_server();
    let http = format!("http://127.0.0.1:{}", server.clients_http);
    let down = free_port();
    let first = format!("http://127.0.0.1:{down}");
    group_on_list(
        &server,
        "Failover",
        "Two levels",
        &[format!("1:{first}"), format!("2:{http}")],
    );
    let tok = group_token(&server, "My Company/Failover", true);
    let agent = run_agent(enroll(&server, &http, &tok, None), None);
    // Priority 1 is down: the agent uses priority 2.
    agent.until(Duration::from_secs(15), |s| {
        s["server"] == Value::String(http.clone())
    });
    // Priority 1 comes back; after --return-after (2 s here) the agent returns to it.
    let _relay = proxy_on(down, server.clients_http);
    agent.until(Duration::from_secs(20), |s| {
        s["server"] == Value::String(first.clone()) && s["last_error"].is_null()
    });
}

#[test]
fn a_captured_checkin_replayed_after_kill_9_and_a_restart_is_refused() {
    use ward_agent::requests::{checkin_request, host_report};
    let mut server = fast_server();
    let http = format!("http://127.0.0.1:{}", server.clients_http);
    let token = group_token(&server, "My Company", true);
    // An enrolled agent's key, as its state file holds it: what a check-in is signed with.
    let dir = enroll(&server, &http, &token, None);
    let state = ward_agent::state::AgentState::load(dir.path()).unwrap();
    let pair =
        ward_proto::KeyPair::from_private_bytes(&ward_proto::unhex(&state.private_key).unwrap())
            .unwrap();
    let key =
        ward_proto::AgentKey::for_agent(&pair, &ward_proto::unhex(&state.server_public).unwrap())
            .unwrap();
    let host = host_report(
        &ward_agent::HostFacts::local(None),
        ward_agent::Offer::capped(None),
    );
    let request = checkin_request(
        &state.agent,
        &key,
        &ward_proto::messages::CheckinRequest {
            acked_serial: state.acked_serial,
            host,
            server: http.clone(),
            wait_ms: 0,
            trusted_cas: Vec::new(),
            reverted: None,
            hello: None,
        },
    );
    let headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    let send = |server: &Server| {
        http_connect(server.clients_http)
            .request("POST", "/agent/v1/checkin", &headers, &request.body)
            .expect("an answer")
    };
    // On the plain channel anyone can capture it. The first delivery is accepted...
    assert_eq!(send(&server).status, 200);
    // ... then the server is killed, with no chance to save anything, and restarted.
    send_signal(server.pid(), 9);
    let _ = server.child.take().map(|mut child| child.wait());
    server.start();
    // The same bytes again, well within the replay window: refused.
    let replayed = send(&server);
    assert_eq!(replayed.status, 401, "{}", replayed.body);
    assert!(replayed.body.contains("replay"), "{}", replayed.body);
}
