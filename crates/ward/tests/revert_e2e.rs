//! Commit confirmed, on the agent, end to end with real agent processes and a real server:
//! settings that cut an agent off (a server list whose only entry is a port where nothing
//! listens) are undone by the agent itself within its bound, it keeps checking in with the
//! last settings that worked, and the server shows it as reverted with the reason (agents,
//! readiness, plan, /metrics, the audit log). What is not a broken path does not revert: a
//! CA or key rotation the agent acknowledged, a refusal from the server.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// A loopback port where nothing listens (bound, its number taken, closed).
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A group under the root whose only server list entry is `url`, in `mode`, checking in
/// every second.
fn dead_end_group(server: &Server, name: &str, url: &str, mode: &str) {
    cli(
        server,
        &[
            "serverlist",
            "create",
            "Nowhere",
            "--server",
            &format!("1:{url}"),
        ],
    );
    cli(server, &["group", "create", name]);
    cli(
        server,
        &[
            "group",
            "set",
            &format!("My Company/{name}"),
            "--server-list",
            "Nowhere",
            "--mode",
            mode,
            "--interval",
            "1s",
            "--randomize",
            "0s",
        ],
    );
}

fn agent_answer(server: &Server, id: &str) -> Value {
    cli(server, &["client", "show", id])
}

/// What every view of the server says of a reverted agent.
fn assert_reverted_everywhere(server: &Server, id: &str, serial: i64, port: u16) {
    let shown = agent_answer(server, id);
    assert_eq!(shown["reverted"]["serial"], serial, "{shown}");
    let reason = shown["reverted"]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!(":{port}")) && reason.contains("refused"),
        "{reason}"
    );
    let listed = run_cli(server, &["client", "list"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(text.contains("reverted"), "{text}");
    assert!(
        text.contains(&format!("refusing serial {serial}")),
        "{text}"
    );
    let readiness = cli(server, &["tls", "readiness"]);
    let reverted = readiness["reverted"].as_array().expect("reverted agents");
    assert!(
        reverted
            .iter()
            .any(|a| a["id"] == id && a["reason"].as_str().unwrap().contains(&format!(":{port}"))),
        "{readiness}"
    );
    // A plan that puts anyone at risk exits non-zero: read its JSON all the same.
    let out = run_cli(
        server,
        &["tls", "plan", "--protocol", "TLSv1.2 +TLSv1.3", "--json"],
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let at_risk = plan["at_risk"].as_array().unwrap();
    assert!(
        at_risk
            .iter()
            .any(|a| a["id"] == id && a["risk"] == "reverted"),
        "{plan}"
    );
    let metrics = https_get(server.console, &server.ca_pem(), "/metrics", None).body;
    assert!(metrics.contains("ward_agent_reverts_total 1"), "{metrics}");
    let entry = audit_entry(server, |e| e["action"] == "agent.revert");
    assert_eq!(entry["target"], id);
    assert_eq!(entry["after"]["serial"], serial);
}

fn reverts(mode: &str, bound: Duration) {
    let server = fast_server();
    let agent = https_agent(&server);
    let id = agent.id();
    let port = dead_port();
    let dead = format!("https://127.0.0.1:{port}");
    dead_end_group(&server, "Dead End", &dead, mode);
    let moved = cli(
        &server,
        &["client", "move", &id, "--group", "My Company/Dead End"],
    );
    let serial = moved["serial"].as_i64().expect("the new serial");
    // It takes the new settings (on probation), then cannot reach their only server.
    agent.until(Duration::from_secs(15), |s| s["serial"] == serial);
    let taken = Instant::now();
    let status = agent.until(bound + Duration::from_secs(15), |s| {
        !s["reverted"].is_null()
    });
    let took = taken.elapsed();
    eprintln!("{mode}: reverted {took:.1?} after it took the settings (bound {bound:?})");
    assert!(
        took <= bound + Duration::from_secs(5),
        "{mode}: reverted after {took:?}"
    );
    assert!(
        status["reverted"]
            .as_str()
            .unwrap()
            .starts_with(&format!("serial {serial}: {dead}")),
        "{status}"
    );
    // Back on the last settings that worked: it checks in with them, again and again.
    let before = agent.until(Duration::from_secs(15), |s| {
        s["serial"] != serial && s["last_error"].is_null() && s["server"] != dead
    });
    let first = before["last_checkin"].as_str().unwrap().to_string();
    agent.until(Duration::from_secs(15), |s| {
        s["last_checkin"]
            .as_str()
            .is_some_and(|t| t > first.as_str())
    });
    assert_reverted_everywhere(&server, &id, serial, port);
    // The server does not hand that serial again: the agent stays on what works.
    std::thread::sleep(Duration::from_secs(3));
    let now = agent.status().unwrap();
    assert_ne!(now["serial"], serial, "{now}");
    assert!(now["last_error"].is_null(), "{now}");
    // A new change (back to the root) gives a new serial: taken, confirmed, the revert over.
    let back = cli(&server, &["client", "move", &id, "--group", "My Company"]);
    let fixed = back["serial"].as_i64().unwrap();
    agent.until(Duration::from_secs(15), |s| {
        s["serial"] == fixed && s["reverted"].is_null() && s["on_probation"] == false
    });
    let shown = agent_answer(&server, &id);
    assert!(shown["reverted"].is_null(), "{shown}");
}

/// (1) A push agent moved to a group whose only server is a port where nothing listens goes
/// back within its bound (20 s and three rounds), and the server says so everywhere.
#[test]
fn a_push_agent_cut_off_by_its_settings_reverts_and_is_shown_as_reverted() {
    reverts("push", Duration::from_secs(20));
}

/// (2) The same for a pull agent (three intervals of 1 s, and three rounds).
#[test]
fn a_pull_agent_cut_off_by_its_settings_reverts_and_is_shown_as_reverted() {
    reverts("pull", Duration::from_secs(5));
}

/// (4) A CA rotation and an agreement key rotation, each started and switched: the agent
/// acknowledges every step (its settings change paths, CAs and key), and never reverts.
#[test]
fn rotations_the_agent_acknowledged_do_not_make_it_revert() {
    let server = fast_server();
    let agent = https_agent(&server);
    let confirmed = |what: &str| {
        let status = agent.until(Duration::from_secs(30), |s| {
            s["on_probation"] == false && s["last_error"].is_null()
        });
        assert!(status["reverted"].is_null(), "{what}: {status}");
        status
    };
    for (rotation, switch) in [("rotate-ca", "switch"), ("rotate-key", "switch")] {
        let before = confirmed("before").clone();
        cli(&server, &["server", rotation, "start"]);
        agent.until(Duration::from_secs(30), |s| s["serial"] != before["serial"]);
        confirmed(rotation);
        // Every agent acknowledged: the switch goes through, unguarded by any refusal.
        let started = Instant::now();
        loop {
            let out = run_cli(&server, &["server", rotation, switch]);
            if out.status.success() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{rotation} {switch}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        // A CA switch hands new settings (the new CA alone); a key switch needs none. Either
        // way, a few check-ins later the agent is confirmed on what it has.
        std::thread::sleep(Duration::from_secs(3));
        confirmed(switch);
    }
    // A while later, still checking in, never reverted.
    std::thread::sleep(Duration::from_secs(3));
    let status = confirmed("after");
    let shown = agent_answer(&server, &agent.id());
    assert!(shown["reverted"].is_null(), "{shown}");
    assert!(
        !https_get(server.console, &server.ca_pem(), "/metrics", None)
            .body
            .contains("ward_agent_reverts_total 1")
    );
    assert!(status["last_checkin"].is_string());
}

/// (5) A refusal is an answer, not a broken path: an agent whose new settings are on
/// probation and which the server then retires is refused at each check-in (signed away),
/// and does not revert however long that lasts.
#[test]
fn a_retired_agent_on_probation_does_not_revert() {
    let server = fast_server();
    legacy_http_group(&server);
    let agent = https_agent(&server);
    let id = agent.id();
    cli(
        &server,
        &[
            "group",
            "set",
            "My Company/Legacy",
            "--interval",
            "3s",
            "--randomize",
            "0s",
        ],
    );
    let moved = cli(
        &server,
        &["client", "move", &id, "--group", "My Company/Legacy"],
    );
    let serial = moved["serial"].as_i64().unwrap();
    // Taken (on probation: its servers changed), and before its next check-in, retired.
    agent.until(Duration::from_secs(15), |s| {
        s["serial"] == serial && s["on_probation"] == true
    });
    cli(&server, &["client", "delete", &id]);
    // Past the window (three intervals of 3 s) and several refused rounds.
    let status = agent.until(Duration::from_secs(30), |s| {
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("unknown agent"))
    });
    std::thread::sleep(Duration::from_secs(12));
    let status_later = agent.status().unwrap();
    assert!(
        status_later["reverted"].is_null(),
        "{status} then {status_later}"
    );
    assert_eq!(status_later["serial"], serial, "{status_later}");
    let log = std::fs::read_to_string(agent.dir.path().join("agent.log")).unwrap();
    assert!(!log.contains("reverted to settings"), "{log}");
}

/// Harden's wait step stops as soon as a moved agent reverts, with the reason, instead of
/// waiting out its timeout; TLS is not touched.
#[test]
fn harden_stops_waiting_when_a_moved_agent_reverts() {
    let server = fast_server();
    let url = format!("https://127.0.0.1:{}", server.clients);
    let token = group_token(&server, "My Company", false);
    let capped = run_agent(enroll(&server, &url, &token, Some("TLSv1")), Some("TLSv1"));
    // The legacy group harden is told to use reaches "the server over HTTP" on a port where
    // nothing listens (a branch firewall the server cannot see).
    let port = dead_port();
    dead_end_group(
        &server,
        "Dead Legacy",
        &format!("http://127.0.0.1:{port}"),
        "pull",
    );
    let before = std::fs::read(server.path("conf/ssl/sslforclients.conf")).unwrap();
    let started = Instant::now();
    let out = run_cli(
        &server,
        &[
            "tls",
            "harden",
            "--protocol",
            "TLSv1.2 +TLSv1.3",
            "--legacy-group",
            "My Company/Dead Legacy",
            "--yes",
            "--timeout",
            "5m",
        ],
    );
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(took < Duration::from_secs(60), "waited {took:?}: {stderr}");
    assert!(
        stderr.contains("reverted to the last settings that worked"),
        "{stderr}"
    );
    assert!(stderr.contains(&capped.id()), "{stderr}");
    assert!(
        stderr.contains(&format!("http://127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(stderr.contains("TLS was not touched"), "{stderr}");
    assert_eq!(
        std::fs::read(server.path("conf/ssl/sslforclients.conf")).unwrap(),
        before
    );
    // And it still checks in, with the settings that work.
    capped.until(Duration::from_secs(15), |s| {
        !s["reverted"].is_null() && s["last_error"].is_null()
    });
}

/// `ward agent enroll` with an XP stack (the `xp-ie8` profile) over plain HTTP: its output.
fn enroll_xp(server: &Server, token: &str) -> (std::process::Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}", server.clients_http);
    let state = dir.path().display().to_string();
    let output = ward(&[
        "agent",
        "enroll",
        "--server",
        &url,
        "--token",
        token,
        "--pin",
        &pin(server),
        "--state",
        &state,
        "--client-profile",
        "xp-ie8",
    ]);
    (output, dir)
}

fn token_for(server: &Server, group: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec!["group", "token", "create", group, "--allow-http"];
    args.extend(extra);
    let out = run_cli(server, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// (3) The seed's XP client enrolled over HTTP into a group whose list has only the HTTPS
/// entry (no 3DES on the clients listener): the token warns, the enrollment is refused with
/// the reason; with the cut-off accepted, it enrolls, cannot check in over HTTPS, and goes
/// back to the HTTP server it enrolled through, saying so.
#[test]
fn an_xp_agent_that_could_use_no_server_of_its_group_is_refused_or_reverts() {
    let server = fast_server();
    let (token, warning) = token_for(&server, "My Company", &[]);
    assert!(warning.contains("warning"), "{warning}");
    assert!(warning.contains("has no HTTP entry"), "{warning}");
    let (refused, _) = enroll_xp(&server, &token);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("can use no server of its group's list 'Default'"),
        "{stderr}"
    );
    assert!(stderr.contains("offers only TLSv1"), "{stderr}");
    assert!(stderr.contains("--accept-cut-off"), "{stderr}");
    // Nothing was enrolled.
    assert_eq!(cli(&server, &["client", "list"]), serde_json::json!([]));

    let (accepted, _) = token_for(&server, "My Company", &["--accept-cut-off"]);
    let (enrolled, dir) = enroll_xp(&server, &accepted);
    assert!(
        enrolled.status.success(),
        "{}",
        String::from_utf8_lossy(&enrolled.stderr)
    );
    let agent = run_agent_after_failures(dir);
    let status = agent.until(Duration::from_secs(30), |s| {
        !s["reverted"].is_null() && s["last_error"].is_null() && s["channel"] == "http"
    });
    let https = format!("https://127.0.0.1:{}", server.clients);
    assert!(
        status["reverted"]
            .as_str()
            .unwrap()
            .contains(&format!("{https}: TLS")),
        "{status}"
    );
    let shown = agent_answer(&server, &agent.id());
    assert!(
        shown["reverted"]["reason"]
            .as_str()
            .unwrap()
            .contains(&https),
        "{shown}"
    );
    assert_eq!(shown["channel"], "http");
}

/// Starts `ward agent run` on a state dir whose first check-ins are expected to fail.
fn run_agent_after_failures(dir: tempfile::TempDir) -> Agent {
    start_agent(dir, None)
}

/// The plan judges an agent seen only over plain HTTP by the ClientHello its stack reports
/// of itself: the XP stack is served by the clients listener only once 3DES is named, and a
/// real handshake of that agent after the change confirms it.
#[test]
fn an_http_only_xp_agent_is_judged_by_its_own_hello_and_the_handshake_agrees() {
    let server = fast_server();
    legacy_http_group(&server);
    let (token, _) = token_for(&server, "My Company/Legacy", &[]);
    let (enrolled, dir) = enroll_xp(&server, &token);
    assert!(enrolled.status.success());
    let agent = run_agent(dir, None);
    let id = agent.id();
    let shown = agent_answer(&server, &id);
    assert!(shown["hello"].is_null(), "never seen over TLS: {shown}");
    assert!(shown["reported_hello"].is_string(), "{shown}");
    // Into the root group (HTTPS only): its own hello is refused (no 3DES), so the guard
    // refuses the move, saying it judged the agent by the hello its stack reports.
    let refused = run_cli(
        &server,
        &["client", "move", &id, "--group", "My Company", "--json"],
    );
    assert!(!refused.status.success());
    let answer: Value = serde_json::from_slice(&refused.stdout).unwrap();
    let text = answer.to_string();
    assert!(text.contains("would_cut_off"), "{text}");
    assert!(text.contains("reports of itself"), "{text}");
    assert!(text.contains("offers only TLSv1"), "{text}");
    // The seed's note: 3DES named on the clients listener, reloaded. Now the same hello is
    // served, the move goes through, and the agent's real handshake agrees.
    name_seed_3des(&server);
    cli(&server, &["server", "reload"]);
    cli(&server, &["client", "move", &id, "--group", "My Company"]);
    let status = agent.until(Duration::from_secs(30), |s| {
        s["channel"] == "https" && s["last_error"].is_null() && s["on_probation"] == false
    });
    assert_eq!(status["tls_version"], "TLSv1", "{status}");
    assert!(status["reverted"].is_null(), "{status}");
    // Seen over TLS now: the observed hello is the stack the agent reported (a differing
    // one would be listed beside it as `reported_hello`).
    let shown = agent_answer(&server, &id);
    assert!(shown["hello"].is_string(), "{shown}");
    assert!(shown["reported_hello"].is_null(), "{shown}");
}
