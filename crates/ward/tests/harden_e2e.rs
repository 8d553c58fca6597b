//! The seed's scenario with real processes: a server at `SSLProtocol all -SSLv2 -SSLv3`, real
//! agent processes (pull and push, some capped at TLSv1), `ward tls plan` and `ward tls
//! harden`; the control case (the same edit by hand orphans the capped agents); rollback.

mod support;

use std::collections::BTreeSet;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use support::*;
use ward_tls::TlsVersion;

const SEED_HARDENED: &str = "all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1";
const CONF_FILES: [&str; 2] = ["conf/ssl/ssl.conf", "conf/ssl/sslforclients.conf"];

/// `ward tls harden --protocol WORDS --yes --watch WATCH`.
fn harden(server: &Server, words: &str, watch: &str) -> Output {
    run_cli(
        server,
        &[
            "tls",
            "harden",
            "--protocol",
            words,
            "--yes",
            "--watch",
            watch,
        ],
    )
}

/// A server whose root checks in every second, with a pull group and a push group, and
/// `per_group` agents in each of which half are Windows XP clients (the `xp-ie8` profile:
/// TLS 1.0, RSA key exchange with 3DES, no SNI).
fn fleet(per_group: usize) -> (Server, Vec<Agent>) {
    let server = fast_server();
    // The seed's starting point for its XP clients: TLS 1.0 and 3DES named (ward serves no
    // 3DES otherwise).
    name_seed_3des(&server);
    assert!(run_cli(&server, &["server", "reload"]).status.success());
    let url = format!("https://127.0.0.1:{}", server.clients);
    let mut agents = Vec::new();
    for (group, mode) in [("Pull", "pull"), ("Push", "push")] {
        cli(&server, &["group", "create", group]);
        let path = format!("My Company/{group}");
        cli(&server, &["group", "set", &path, "--mode", mode]);
        let token = group_token(&server, &path, false);
        for index in 0..per_group {
            let capped = index % 2 == 1;
            let offer: &[&str] = if capped {
                &["--client-profile", "xp-ie8"]
            } else {
                &[]
            };
            let mut agent = run_agent(enroll_with(&server, &url, &token, offer), None);
            agent.capped = capped;
            agents.push(agent);
        }
    }
    (server, agents)
}

fn capped_ids(agents: &[Agent]) -> BTreeSet<String> {
    agents.iter().filter(|a| a.capped).map(Agent::id).collect()
}

fn ids(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect()
}

fn conf_bytes(server: &Server) -> Vec<Vec<u8>> {
    CONF_FILES
        .iter()
        .map(|f| std::fs::read(server.path(f)).unwrap())
        .collect()
}

fn seed_scenario(words: &str, expect_modern: &[&str]) {
    let (server, agents) = fleet(4);
    assert_eq!(agents.len(), 8);
    let capped = capped_ids(&agents);
    assert_eq!(capped.len(), 4);
    let before = conf_bytes(&server);

    // The plan names exactly the capped agents, and gates with exit code 2.
    let plan = run_cli(&server, &["tls", "plan", "--protocol", words, "--json"]);
    assert_eq!(plan.status.code(), Some(2), "{plan:?}");
    let plan: Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(ids(&plan["cut_off"]), capped, "{plan:#}");
    // Each verdict is exact: the agent's real ClientHello replayed through the proposed
    // listener, not what it reports.
    for agent in plan["cut_off"].as_array().unwrap() {
        assert_eq!(agent["evidence"], "replayed", "{agent}");
        assert!(
            agent["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("replayed"),
            "{agent}"
        );
    }
    assert_eq!(plan["counts"]["at_risk"], 0, "{plan:#}");
    assert_eq!(plan["counts"]["unaffected"], 4);
    assert_eq!(plan["listeners"]["clients"]["changes"], true);

    // Harden finishes.
    let first = harden(&server, words, "3s");
    assert!(
        first.status.success(),
        "harden failed:\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&first.stderr),
        server.log_text()
    );
    let progress = String::from_utf8_lossy(&first.stderr);
    for step in ["step 1/4", "step 2/4", "step 3/4", "step 4/4"] {
        assert!(progress.contains(step), "{progress}");
    }

    // The capped agents were moved into a legacy subgroup of their own group, and use HTTP;
    // the others stay where they were, over TLS 1.2 or 1.3 (what the server saw of each
    // agent's latest check-in: a push agent's own status may still describe the held
    // check-in that the reload ended).
    for agent in &agents {
        let channel = if agent.capped { "http" } else { "https" };
        // Its first check-in after the reload: on its channel and, over TLS, at a version
        // the hardened listener serves (a pull agent's record may still show the check-in
        // before the reload for up to an interval).
        let client = eventually(Duration::from_secs(20), || {
            let client = cli(&server, &["client", "show", &agent.id()]);
            let version = client["tls_version"].as_str().unwrap_or("");
            (client["channel"] == channel && (agent.capped || expect_modern.contains(&version)))
                .then_some(client)
        })
        .unwrap_or_else(|| {
            panic!(
                "agent {} (capped: {}) is not on {channel}: {:?}\nharden: {progress}\n\
                 server log:\n{}",
                agent.id(),
                agent.capped,
                agent.status(),
                server.log_text()
            )
        });
        if agent.capped {
            assert!(
                client["group"].as_str().unwrap().ends_with("/Legacy TLS"),
                "{client}"
            );
        } else {
            assert!(
                expect_modern.contains(&client["tls_version"].as_str().unwrap()),
                "{client}"
            );
            assert!(!client["group"].as_str().unwrap().contains("Legacy"));
        }
    }
    // Every agent keeps checking in: a policy change reaches all of them (push agents at
    // once, pull agents within their interval) and each acknowledges it.
    set_root_policy(&server, r#"{"hardened": true}"#);
    let acknowledged = eventually(Duration::from_secs(20), || {
        let clients = cli(&server, &["client", "list"]);
        let all = clients.as_array().unwrap();
        (all.len() == agents.len() && all.iter().all(|c| c["pending"] == false)).then_some(())
    });
    assert!(
        acknowledged.is_some(),
        "not every agent acknowledged the change after harden: {:#}",
        cli(&server, &["client", "list"])
    );
    for agent in &agents {
        agent.until(Duration::from_secs(20), |s| s["last_error"].is_null());
    }
    // Legacy groups inherit the mode: the push agents are still push agents.
    let legacy = cli(&server, &["group", "show", "My Company/Push/Legacy TLS"]);
    assert_eq!(legacy["effective"]["mode"], "push", "{legacy}");
    assert_eq!(legacy["effective"]["server_list"], "Default-http");

    // TLS 1.0 is refused on both HTTPS listeners.
    for port in [server.console, server.clients] {
        assert_eq!(s_client(port, TlsVersion::Tls1_0), None, "port {port}");
    }

    // Nobody would be cut off now, and a second harden is harmless.
    let again = run_cli(&server, &["tls", "plan", "--protocol", words]);
    assert_eq!(again.status.code(), Some(0), "{again:?}");
    let hardened = conf_bytes(&server);
    let twice = harden(&server, words, "1s");
    assert!(twice.status.success(), "{twice:?}");
    assert_eq!(
        conf_bytes(&server),
        hardened,
        "a second harden edited the files"
    );

    // Rollback: the files are byte for byte what they were, and TLS 1.0 is back.
    let rollback = run_cli(&server, &["tls", "rollback", "--move-back", "--yes"]);
    assert!(rollback.status.success(), "{rollback:?}");
    assert_eq!(conf_bytes(&server), before);
    assert!(s_client(server.clients, TlsVersion::Tls1_0).is_some());
    for agent in agents.iter().filter(|a| a.capped) {
        let back = eventually(Duration::from_secs(20), || {
            agent.status().filter(|s| s["channel"] == "https")
        });
        assert!(
            back.is_some(),
            "agent {} did not return to HTTPS: {:?}\nclients: {:#}\nserver log:\n{}",
            agent.id(),
            agent.status(),
            cli(&server, &["client", "list"]),
            server.log_text()
        );
    }
}

#[test]
fn harden_to_the_seeds_line_keeps_every_agent() {
    seed_scenario(SEED_HARDENED, &["TLSv1.2", "TLSv1.3"]);
}

#[test]
fn harden_to_tls12_only_keeps_every_agent() {
    seed_scenario("TLSv1.2", &["TLSv1.2"]);
}

#[test]
fn the_same_edit_by_hand_is_refused_at_reload_and_orphans_the_capped_agents_only_when_accepted() {
    let (server, agents) = fleet(2);
    for file in CONF_FILES {
        server.set_protocol(file, SEED_HARDENED);
    }
    let capped = capped_ids(&agents);
    // The reload replays every agent's real ClientHello through the edited listeners first:
    // it refuses, names the capped agents, and the old settings keep serving.
    let dry = run_cli(&server, &["server", "reload", "--dry-run", "--json"]);
    assert_eq!(dry.status.code(), Some(2), "{dry:?}");
    let refused = run_cli(&server, &["server", "reload"]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let said = String::from_utf8_lossy(&refused.stdout);
    assert!(
        said.contains("would lose their last working path"),
        "{said}"
    );
    for id in &capped {
        assert!(said.contains(id.as_str()), "{id} not named: {said}");
    }
    // configtest, with the server running, shows the same plan.
    let checked = run_cli(&server, &["server", "configtest"]);
    let said = String::from_utf8_lossy(&checked.stdout);
    assert!(said.contains("Syntax OK"), "{checked:?}");
    for id in &capped {
        assert!(
            said.contains(id.as_str()),
            "configtest does not name {id}: {said}"
        );
    }
    let report: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(report["plan"]["lost"], capped.len(), "{report}");
    for line in report["plan"]["cut_off"].as_array().unwrap() {
        assert_eq!(line["evidence"], "replayed", "{line}");
    }
    let status = https_get(
        server.console,
        &server.ca_pem(),
        "/api/v1/server",
        Some(&server.token()),
    )
    .json();
    assert_eq!(
        status["listeners"]["clients"]["tls"]["enabled"][0], "TLSv1",
        "the old settings keep serving: {status}"
    );
    // Accepted, the cut-off happens, and the audit says whom it cut off.
    let accepted = run_cli(&server, &["server", "reload", "--accept-cut-off"]);
    assert!(accepted.status.success(), "{accepted:?}");
    let entry = audit_entry(&server, |e| {
        e["action"] == "server.reload" && e["after"]["outcome"] == "ok, cut off accepted"
    });
    let mut named: Vec<String> = entry["after"]["cut_off_accepted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_string())
        .collect();
    named.sort();
    assert_eq!(named, capped.iter().cloned().collect::<Vec<_>>());
    for agent in agents.iter().filter(|a| a.capped) {
        agent.until(Duration::from_secs(20), |s| {
            s["last_error"].as_str().is_some_and(|e| e.contains("TLS"))
        });
    }
    // Readiness shows them as lost, with the ClientHello they offered.
    let lost = eventually(Duration::from_secs(20), || {
        let readiness = cli(&server, &["tls", "readiness", "--offline-intervals", "2"]);
        let lost = readiness["lost"].clone();
        (ids(&lost) == capped).then_some(lost)
    })
    .expect("readiness never listed exactly the capped agents as lost");
    for agent in lost.as_array().unwrap() {
        assert_eq!(agent["highest"], "TLSv1");
        assert_eq!(agent["refused"]["offered_max"], "TLSv1", "{agent}");
        assert_eq!(agent["refused"]["listener"], "clients");
    }
    // The others keep working over HTTPS.
    for agent in agents.iter().filter(|a| !a.capped) {
        agent.until(Duration::from_secs(20), |s| {
            s["channel"] == "https" && s["last_error"].is_null()
        });
    }
    // The seed's recovery: an HTTP server list in a legacy group, its settings exported and
    // imported on the agent, which keeps its identity.
    legacy_http_group(&server);
    let orphan = agents.into_iter().find(|a| a.capped).unwrap();
    let orphan_id = orphan.id();
    let (_, back) = recover(&server, "My Company/Legacy", orphan, "TLSv1");
    let status = back.until(Duration::from_secs(20), |s| {
        s["channel"] == "http" && s["last_error"].is_null()
    });
    assert_eq!(status["id"], Value::String(orphan_id));
}

#[test]
fn rollback_restores_the_files_byte_for_byte() {
    let mut server = Server::init();
    server.start();
    let before = conf_bytes(&server);
    // Nothing to roll back yet.
    let early = run_cli(&server, &["tls", "rollback", "--yes"]);
    assert!(!early.status.success());
    assert!(String::from_utf8_lossy(&early.stderr).contains("nothing to roll back"));
    // A dry run changes nothing.
    let dry = run_cli(
        &server,
        &["tls", "harden", "--protocol", "TLSv1.2", "--dry-run"],
    );
    assert!(dry.status.success(), "{dry:?}");
    assert_eq!(conf_bytes(&server), before);
    // A bad value is refused in Apache's words, and changes nothing.
    let bad = run_cli(
        &server,
        &["tls", "harden", "--protocol", "all -TLSv1.0", "--yes"],
    );
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("Illegal protocol 'TLSv1.0'"),
        "{bad:?}"
    );
    assert_eq!(conf_bytes(&server), before);

    let harden = run_cli(
        &server,
        &[
            "tls",
            "harden",
            "--protocol",
            "-all +TLSv1.3",
            "--yes",
            "--watch",
            "0s",
            "--json",
        ],
    );
    assert!(harden.status.success(), "{harden:?}");
    let summary: Value = serde_json::from_slice(&harden.stdout).unwrap();
    assert_eq!(
        summary["applied"].as_array().unwrap().len(),
        2,
        "{summary:#}"
    );
    assert!(summary["scan"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["ok"] == true));
    assert_eq!(s_client(server.clients, TlsVersion::Tls1_2), None);
    let edited = conf_bytes(&server);
    assert_ne!(edited, before);
    let text = String::from_utf8(edited[1].clone()).unwrap();
    assert!(text.contains("#:Overridden_by_ward_harden"), "{text}");
    assert!(text.contains("SSLProtocol -all +TLSv1.3"), "{text}");

    let rollback = run_cli(&server, &["tls", "rollback", "--yes"]);
    assert!(rollback.status.success(), "{rollback:?}");
    assert_eq!(conf_bytes(&server), before);
    assert!(s_client(server.clients, TlsVersion::Tls1_2).is_some());
    let audit = cli(&server, &["audit"]);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"tls.harden.apply"), "{actions:?}");
    assert!(actions.contains(&"tls.rollback"), "{actions:?}");
}

#[test]
fn an_interrupted_harden_is_resumed() {
    let server = fast_server();
    let url = format!("https://127.0.0.1:{}", server.clients);
    let token = group_token(&server, "My Company", false);
    let modern = run_agent(enroll(&server, &url, &token, None), None);
    let mut capped = run_agent(enroll(&server, &url, &token, Some("TLSv1")), Some("TLSv1"));
    let capped_id = capped.id();
    // The capped agent stops (a machine switched off mid-procedure): it is moved, but cannot
    // acknowledge, so the wait times out and TLS is left alone.
    let dir = std::mem::replace(&mut capped.dir, tempfile::tempdir().unwrap());
    drop(capped);
    let before = conf_bytes(&server);
    let words = SEED_HARDENED;
    let timed_out = run_cli(
        &server,
        &[
            "tls",
            "harden",
            "--protocol",
            words,
            "--yes",
            "--timeout",
            "3s",
            "--offline-intervals",
            "1000",
        ],
    );
    assert!(!timed_out.status.success());
    let stderr = String::from_utf8_lossy(&timed_out.stderr);
    assert!(stderr.contains("timed out"), "{stderr}");
    assert!(stderr.contains(&capped_id), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");
    assert_eq!(conf_bytes(&server), before, "TLS was touched");
    assert!(s_client(server.clients, TlsVersion::Tls1_0).is_some());
    let state = cli(&server, &["tls", "readiness"]);
    assert_eq!(state["agents"], 2);

    // It comes back; the harden is resumed with its recorded words and finishes.
    let back = run_agent(dir, Some("TLSv1"));
    let resumed = run_cli(
        &server,
        &[
            "tls",
            "harden",
            "--resume",
            "--yes",
            "--watch",
            "2s",
            "--offline-intervals",
            "1000",
        ],
    );
    assert!(resumed.status.success(), "{resumed:?}");
    assert_ne!(conf_bytes(&server), before);
    assert_eq!(s_client(server.clients, TlsVersion::Tls1_0), None);
    back.until(Duration::from_secs(20), |s| {
        s["channel"] == "http" && s["last_error"].is_null()
    });
    modern.until(Duration::from_secs(20), |s| {
        s["channel"] == "https" && s["last_error"].is_null()
    });
    // Nothing is left to resume once it finished... but the state stays for rollback.
    let rollback = run_cli(&server, &["tls", "rollback", "--move-back", "--yes"]);
    assert!(rollback.status.success(), "{rollback:?}");
    assert_eq!(conf_bytes(&server), before);
}

#[test]
fn the_seeds_reverse_procedure_is_a_harden_too() {
    let mut server = Server::init();
    server.start();
    let hardened = harden(&server, "TLSv1.2", "0s");
    assert!(hardened.status.success(), "{hardened:?}");
    assert_eq!(s_client(server.clients, TlsVersion::Tls1_0), None);
    // TLS 1.0 back for old clients: nobody is cut off by a wider range, and it applies.
    let plan = run_cli(&server, &["tls", "plan", "--protocol", "all -SSLv2 -SSLv3"]);
    assert_eq!(plan.status.code(), Some(0), "{plan:?}");
    let reverse = harden(&server, "all -SSLv2 -SSLv3", "0s");
    assert!(reverse.status.success(), "{reverse:?}");
    for port in [server.console, server.clients] {
        assert_eq!(
            s_client(port, TlsVersion::Tls1_0).as_deref(),
            Some("TLSv1"),
            "port {port}"
        );
    }
    for file in CONF_FILES {
        let path = server.path(file);
        let explained = ward(&["tls", "explain", "--file", path.to_str().unwrap(), "--json"]);
        let explained: Value = serde_json::from_slice(&explained.stdout).unwrap();
        assert_eq!(
            explained["enabled"],
            serde_json::json!(["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]),
            "{explained:#}"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.matches("#:Overridden_by_ward_harden").count(),
            2,
            "{text}"
        );
    }
}

#[test]
fn legacy_group_puts_every_capped_agent_in_one_group() {
    let (server, agents) = fleet(2);
    // A legacy group whose parent does not exist is refused, and nothing changes.
    let before = conf_bytes(&server);
    let into = |group: &str| {
        let args = [
            "tls",
            "harden",
            "--protocol",
            "TLSv1.2",
            "--yes",
            "--watch",
            "2s",
        ];
        let mut args = args.to_vec();
        args.extend(["--legacy-group", group]);
        run_cli(&server, &args)
    };
    let refused = into("My Company/Nowhere/XP");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("no group 'My Company/Nowhere'"),
        "{refused:?}"
    );
    assert_eq!(conf_bytes(&server), before);
    let lists = cli(&server, &["serverlist", "list"]);
    assert_eq!(
        lists.as_array().unwrap().len(),
        1,
        "a list was made: {lists:#}"
    );
    let run = into("My Company/Windows XP");
    assert!(run.status.success(), "{run:?}");
    let group = cli(&server, &["group", "show", "My Company/Windows XP"]);
    assert_eq!(group["effective"]["server_list"], "Default-http", "{group}");
    for agent in &agents {
        let client = cli(&server, &["client", "show", &agent.id()]);
        if agent.capped {
            assert_eq!(client["group"], "My Company/Windows XP", "{client}");
            agent.until(Duration::from_secs(20), |s| {
                s["channel"] == "http" && s["last_error"].is_null()
            });
        } else {
            assert!(
                !client["group"].as_str().unwrap().contains("XP"),
                "{client}"
            );
        }
    }
}

/// The state an apply leaves when the server dies after its first edit: copies on record,
/// a file already edited, no reload.
fn crash_mid_apply(server: &Server, words: &str) -> Vec<Vec<u8>> {
    let before = conf_bytes(server);
    let harden_dir = server.path("harden");
    std::fs::create_dir_all(&harden_dir).unwrap();
    let mut applying = Vec::new();
    for (file, bytes) in CONF_FILES.iter().zip(&before) {
        let saved = harden_dir.join(format!("{}.1.orig", file.rsplit('/').next().unwrap()));
        std::fs::write(&saved, bytes).unwrap();
        applying.push(serde_json::json!({"file": server.path(file), "saved": saved}));
    }
    server.set_protocol(CONF_FILES[0], words);
    let state = serde_json::json!({
        "protocol": words, "listener": "all", "legacy_group": null, "legacy_name": "Legacy TLS",
        "step": "staged", "started_ms": 1, "updated_ms": 1, "applied_ms": null,
        "moved": [], "originals": [], "applying": applying,
    });
    std::fs::write(harden_dir.join("state.json"), state.to_string()).unwrap();
    before
}

#[test]
fn a_crash_mid_apply_is_rolled_back_or_resumed() {
    let mut server = Server::init();
    server.start();
    // Rolled back: the copies taken before the first edit come back, byte for byte.
    let before = crash_mid_apply(&server, "TLSv1.2");
    assert_ne!(conf_bytes(&server), before);
    let rollback = run_cli(&server, &["tls", "rollback", "--yes"]);
    assert!(rollback.status.success(), "{rollback:?}");
    assert_eq!(conf_bytes(&server), before);

    // Resumed: the apply finishes, and the copies stay the way back.
    let before = crash_mid_apply(&server, "TLSv1.2");
    let resumed = run_cli(
        &server,
        &["tls", "harden", "--resume", "--yes", "--watch", "0s"],
    );
    assert!(resumed.status.success(), "{resumed:?}");
    assert_eq!(s_client(server.clients, TlsVersion::Tls1_1), None);
    let rollback = run_cli(&server, &["tls", "rollback", "--yes"]);
    assert!(rollback.status.success(), "{rollback:?}");
    assert_eq!(conf_bytes(&server), before);
}

/// `curl` POSTs `body` to harden apply with the admin token; (status, JSON answer).
fn curl_apply(server: &Server, body: &str) -> (u16, Value) {
    curl_post(server, "tls/harden/apply", body)
}

/// `curl` POSTs `body` to `/api/v1/PATH` with the admin token; (status, JSON answer).
fn curl_post(server: &Server, path: &str, body: &str) -> (u16, Value) {
    let ca = server.path("certs/ca.pem");
    let output = std::process::Command::new(ward_testkit::tool("curl", "curl"))
        .args(["--silent", "--show-error", "--cacert"])
        .arg(&ca)
        .args(["-H", &format!("Authorization: Bearer {}", server.token())])
        .args(["-H", "Content-Type: application/json", "--data", body])
        .args(["--write-out", "\n%{http_code}"])
        .arg(format!(
            "https://127.0.0.1:{}/api/v1/{path}",
            server.console
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (json, status) = text.rsplit_once('\n').unwrap();
    (status.parse().unwrap(), serde_json::from_str(json).unwrap())
}

#[test]
fn apply_called_directly_refuses_to_cut_agents_off() {
    let (server, agents) = fleet(2);
    let capped = capped_ids(&agents);
    for agent in &agents {
        agent.until(Duration::from_secs(20), |s| s["serial"].as_i64() > Some(0));
    }
    let files = conf_bytes(&server);
    let body = format!(r#"{{"protocol": "{SEED_HARDENED}", "listener": "all"}}"#);
    let (status, answer) = curl_apply(&server, &body);
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["code"], "would_cut_off", "{answer}");
    assert_eq!(ids(&answer["agents"]), capped, "{answer}");
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("accept_cut_off"));
    assert_eq!(
        conf_bytes(&server),
        files,
        "the conf files are byte-identical"
    );
    // The capped agents still check in over HTTPS.
    for agent in agents.iter().filter(|a| a.capped) {
        agent.until(Duration::from_secs(10), |s| {
            s["channel"] == "https" && s["last_error"].is_null()
        });
    }

    // Explicitly accepted: it goes through, and the audit log says so, with whom.
    let body =
        format!(r#"{{"protocol": "{SEED_HARDENED}", "listener": "all", "accept_cut_off": true}}"#);
    let (status, answer) = curl_apply(&server, &body);
    assert_eq!(status, 200, "{answer}");
    assert_ne!(conf_bytes(&server), files);
    let audit = cli(&server, &["audit", "--since", "1h"]);
    let entry = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "tls.harden.apply")
        .expect("the apply is audited")
        .clone();
    assert_eq!(entry["after"]["accept_cut_off"], true, "{entry}");
    assert_eq!(ids(&entry["after"]["accepted_agents"]), capped, "{entry}");
}

#[test]
fn an_apply_to_other_files_never_uses_an_interrupted_applys_copies() {
    let mut server = Server::init();
    server.start();
    // An apply to both files stopped part-way (ssl.conf already edited).
    crash_mid_apply(&server, SEED_HARDENED);
    let files = conf_bytes(&server);
    let body = format!(r#"{{"protocol": "{SEED_HARDENED}", "listener": "clients"}}"#);
    let (status, answer) = curl_apply(&server, &body);
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["code"], "apply_interrupted", "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--resume"),
        "{answer}"
    );
    assert_eq!(conf_bytes(&server), files, "nothing was touched");
}

#[test]
fn rollback_after_the_seeds_reverse_procedure_is_refused_with_the_tlsv1_agents_named() {
    let (server, agents) = fleet(2);
    let capped = capped_ids(&agents);
    let homes: Vec<(String, String)> = capped
        .iter()
        .map(|id| {
            let shown = cli(&server, &["agents", "show", id]);
            (id.clone(), shown["group"].as_str().unwrap().to_string())
        })
        .collect();
    let hardened = harden(&server, SEED_HARDENED, "1s");
    assert!(hardened.status.success(), "{hardened:?}");
    // The seed's reverse procedure: TLS 1.0 back on (a harden of its own, so its originals
    // are the TLS 1.2-only files), and the TLSv1 agents moved back to their HTTPS groups.
    let reverse = harden(&server, "all -SSLv2 -SSLv3", "3s");
    assert!(reverse.status.success(), "{reverse:?}");
    for (id, home) in &homes {
        cli(&server, &["agents", "move", id, "--group", home]);
    }
    for agent in agents.iter().filter(|a| a.capped) {
        agent.until(Duration::from_secs(20), |s| {
            s["channel"] == "https" && s["tls_version"] == "TLSv1" && s["last_error"].is_null()
        });
    }
    let before = conf_bytes(&server);

    // Rollback would restore the TLS 1.2-only files: the plan names the TLSv1 agents.
    let dry = run_cli(&server, &["tls", "rollback", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(2), "{dry:?}");
    let said = String::from_utf8_lossy(&dry.stdout);
    for id in &capped {
        assert!(said.contains(id.as_str()), "{id} not named: {said}");
    }
    // Refused, nothing changed, whoever calls.
    let refused = run_cli(&server, &["tls", "rollback", "--yes"]);
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("rollback refused"),
        "{refused:?}"
    );
    let (status, answer) = curl_post(&server, "tls/rollback", "{}");
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["code"], "would_cut_off");
    assert_eq!(answer["plan"]["lost"], capped.len());
    assert_eq!(conf_bytes(&server), before);
    assert_eq!(
        s_client(server.clients, TlsVersion::Tls1_0).as_deref(),
        Some("TLSv1")
    );
    // Accepted, it goes through, and the audit names whom it cut off.
    let accepted = run_cli(&server, &["tls", "rollback", "--yes", "--accept-cut-off"]);
    assert!(accepted.status.success(), "{accepted:?}");
    assert_ne!(conf_bytes(&server), before);
    let entry = audit_entry(&server, |e| e["action"] == "tls.rollback");
    assert_eq!(
        entry["after"]["cut_off_accepted"].as_array().unwrap().len(),
        capped.len(),
        "{entry}"
    );
}

/// Every group's path and every server list's name, sorted: the fleet's shape.
fn shape(server: &Server) -> (Vec<String>, Vec<String>) {
    let mut groups: Vec<String> = cli(server, &["group", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["path"].as_str().unwrap().to_string())
        .collect();
    let mut lists: Vec<String> = cli(server, &["serverlist", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap().to_string())
        .collect();
    groups.sort();
    lists.sort();
    (groups, lists)
}

#[test]
fn harden_with_a_broken_conf_file_stops_before_staging_and_changes_nothing() {
    let (server, agents) = fleet(2);
    // A hand edit left ssl.conf broken: a reload would fail, so would harden's apply.
    let file = server.path("conf/ssl/ssl.conf");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("{text}SSLProtocol +TLSv9\n")).unwrap();
    let before = conf_bytes(&server);
    let shape_before = shape(&server);
    let groups_before: Vec<Value> = agents
        .iter()
        .map(|a| cli(&server, &["agents", "show", &a.id()])["group"].clone())
        .collect();
    let hardened = harden(&server, SEED_HARDENED, "1s");
    assert!(!hardened.status.success(), "{hardened:?}");
    let said = String::from_utf8_lossy(&hardened.stderr);
    assert!(
        said.contains("conf files have errors") && said.contains("ssl.conf:"),
        "{said}"
    );
    assert!(!said.contains("step 2/4"), "it went on to wait: {said}");
    assert_eq!(conf_bytes(&server), before);
    assert_eq!(
        shape(&server),
        shape_before,
        "staging created groups or lists"
    );
    let groups_after: Vec<Value> = agents
        .iter()
        .map(|a| cli(&server, &["agents", "show", &a.id()])["group"].clone())
        .collect();
    assert_eq!(groups_after, groups_before, "agents were moved");
}

#[test]
fn resume_reports_only_real_acknowledgements_and_move_back_counts_exactly() {
    let (server, agents) = fleet(2);
    let capped = capped_ids(&agents);
    // An XP machine enrolled but never started: moved by staging, it never acknowledges.
    let url = format!("https://127.0.0.1:{}", server.clients);
    let token = group_token(&server, "My Company/Pull", false);
    let never = enroll_with(&server, &url, &token, &["--client-profile", "xp-ie8"]);
    let never_state: Value =
        serde_json::from_slice(&std::fs::read(never.path().join("agent.json")).unwrap()).unwrap();
    let never_id = never_state["agent"].as_str().unwrap().to_string();
    let stopped = run_cli(
        &server,
        &[
            "tls",
            "harden",
            "--protocol",
            SEED_HARDENED,
            "--yes",
            "--timeout",
            "3s",
            "--watch",
            "1s",
        ],
    );
    assert!(!stopped.status.success(), "{stopped:?}");
    assert!(
        String::from_utf8_lossy(&stopped.stderr).contains(&never_id),
        "the wait names the agent it waits for: {stopped:?}"
    );
    // Resumed, accepting the risk (by now it is offline): it is not called acknowledged.
    // (The running ones have acknowledged their move by then, however loaded the machine.)
    std::thread::sleep(Duration::from_secs(4));
    for id in &capped {
        eventually(Duration::from_secs(30), || {
            let shown = cli(&server, &["agents", "show", id]);
            (shown["acked_serial"] == shown["serial"]).then_some(())
        })
        .unwrap_or_else(|| panic!("{id} never acknowledged its move"));
    }
    let resumed = run_cli(
        &server,
        &[
            "tls",
            "harden",
            "--resume",
            "--accept-risk",
            "--yes",
            "--watch",
            "2s",
        ],
    );
    let said = String::from_utf8_lossy(&resumed.stderr);
    assert!(
        said.contains(&format!(
            "{} moved agent(s) acknowledged; 1 did not (accepted at risk): {never_id}",
            capped.len()
        )),
        "{resumed:?}"
    );
    // No HTTP copy of an HTTP copy, no legacy group inside a legacy group.
    let (groups, lists) = shape(&server);
    assert!(
        !lists.iter().any(|l| l.ends_with("-http-http")),
        "{lists:?}"
    );
    assert!(
        !groups.iter().any(|g| g.contains("Legacy TLS/Legacy TLS")),
        "{groups:?}"
    );
    // An admin moves one moved agent elsewhere by hand (a group of its own on the HTTP list):
    // move-back leaves it there, and says exactly how many it moved.
    let by_hand = capped.iter().next().unwrap().clone();
    cli(&server, &["group", "create", "Elsewhere"]);
    cli(
        &server,
        &[
            "group",
            "set",
            "My Company/Elsewhere",
            "--server-list",
            "Default-http",
        ],
    );
    cli(
        &server,
        &[
            "agents",
            "move",
            &by_hand,
            "--group",
            "My Company/Elsewhere",
        ],
    );
    let expected_back = capped.len(); // the other capped one, and the one that never ran
    let rollback = run_cli(&server, &["tls", "rollback", "--move-back", "--yes"]);
    assert!(rollback.status.success(), "{rollback:?}");
    let said = String::from_utf8_lossy(&rollback.stdout);
    assert!(
        said.contains(&format!("moving {expected_back} agent(s) back")),
        "{said}"
    );
    assert!(said.contains("left 1 agent(s) where they are"), "{said}");
    let shown = cli(&server, &["agents", "show", &by_hand]);
    assert_eq!(shown["group"], "My Company/Elsewhere");
    // Cleanup: the legacy groups harden made, now empty, go; the HTTP list a group of the
    // admin's uses stays; backups are kept to the newest one of each file.
    let cleaned = run_cli(
        &server,
        &["tls", "harden", "--cleanup", "--keep-backups", "1"],
    );
    assert!(cleaned.status.success(), "{cleaned:?}");
    let (groups, lists) = shape(&server);
    assert!(
        !groups.iter().any(|g| g.ends_with("/Legacy TLS")),
        "the empty legacy groups go: {groups:?}"
    );
    assert!(groups.contains(&"My Company/Elsewhere".to_string()));
    assert!(lists.contains(&"Default-http".to_string()), "{lists:?}");
    for file in CONF_FILES {
        let path = server.path(file);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let backups = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .filter(|e| {
                let n = e
                    .as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .into_owned();
                n.starts_with(&format!("{name}.")) && n.ends_with(".bak")
            })
            .count();
        assert!(backups <= 1, "{file}: {backups} backups");
    }
}
