//! `ward simulate` against a real server: simulated agents enroll with their own identities,
//! check in over real TLS (legacy ones capped at TLSv1), and a harden rehearsed on them keeps
//! every one in contact.

mod support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::*;

fn simulate(server: &Server, token: &str, extra: &[&str]) -> Command {
    let url = format!("https://127.0.0.1:{}", server.clients);
    let ca = server.path("certs/ca.pem");
    let mut command = Command::new(ward_bin());
    command
        .args(["simulate", "--server", &url, "--token", token, "--ca"])
        .arg(&ca)
        .args(["--json"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn report(output: std::process::Output) -> Value {
    assert!(
        output.status.success(),
        "simulate: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn started_server() -> (Server, String) {
    let mut server = Server::init();
    server.start();
    let token = group_token(&server, "My Company", false);
    (server, token)
}

#[test]
fn simulated_agents_enroll_and_check_in_over_real_tls() {
    let (server, token) = started_server();
    let ids = server.dir.path().join("ids.json");
    let args = [
        "--agents",
        "20",
        "--legacy-share",
        "0.25",
        "--interval",
        "1s",
        "--duration",
        "3s",
        "--identities",
        ids.to_str().unwrap(),
    ];
    let first = report(simulate(&server, &token, &args).output().unwrap());
    assert_eq!(first["agents"], 20);
    assert_eq!(first["legacy_agents"], 5);
    assert_eq!(first["lost"]["count"], 0, "{first:#}");
    assert!(first["checkins"].as_u64().unwrap() >= 20, "{first:#}");
    let versions = &first["tls"]["versions"];
    assert!(versions["TLSv1"].as_u64().unwrap() > 0, "{first:#}");
    assert!(versions["TLSv1.3"].as_u64().unwrap() > 0, "{first:#}");
    assert!(first["tls"]["resumed"].as_u64().unwrap() > 0, "{first:#}");
    // Each has its own identity on the server, with what it can speak.
    let clients = cli(&server, &["client", "list"]);
    let mut by_versions: BTreeMap<String, usize> = BTreeMap::new();
    for client in clients.as_array().unwrap() {
        *by_versions
            .entry(client["tls_versions"].to_string())
            .or_default() += 1;
    }
    assert_eq!(by_versions.get(r#"["TLSv1"]"#), Some(&5), "{by_versions:?}");
    assert_eq!(clients.as_array().unwrap().len(), 20);

    // A second run reuses the identities: nobody enrolls again.
    let second = report(simulate(&server, &token, &args).output().unwrap());
    assert_eq!(second["lost"]["count"], 0, "{second:#}");
    assert_eq!(
        cli(&server, &["client", "list"]).as_array().unwrap().len(),
        20
    );
}

#[test]
fn a_harden_rehearsed_on_simulated_agents_keeps_them_all() {
    let (server, token) = started_server();
    let args = [
        "--agents",
        "30",
        "--legacy-share",
        "0.2",
        "--interval",
        "1s",
        "--duration",
        "15s",
    ];
    let running = simulate(&server, &token, &args).spawn().unwrap();
    // Wait until all 30 have enrolled and checked in.
    let enrolled = eventually(Duration::from_secs(20), || {
        let clients = cli(&server, &["client", "list"]);
        let all = clients.as_array().unwrap();
        (all.len() == 30 && all.iter().all(|c| !c["last_checkin"].is_null())).then_some(())
    });
    assert!(
        enrolled.is_some(),
        "the simulated agents did not all enroll"
    );
    let plan = run_cli(
        &server,
        &[
            "tls",
            "plan",
            "--protocol",
            "all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1",
            "--json",
        ],
    );
    let plan_json: Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(plan_json["counts"]["cut_off"], 6, "{plan_json:#}");
    let harden = run_cli(
        &server,
        &[
            "tls",
            "harden",
            "--protocol",
            "all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1",
            "--yes",
            "--watch",
            "3s",
        ],
    );
    assert!(harden.status.success(), "{harden:?}");
    let result = report(running.wait_with_output().unwrap());
    // Every simulated agent kept in contact; the legacy ones went over plain HTTP.
    assert_eq!(result["lost"]["count"], 0, "{result:#}");
    assert!(
        result["tls"]["versions"]["plain HTTP"].as_u64().unwrap() > 0,
        "{result:#}"
    );
}

#[test]
fn simulated_push_agents_hold_their_check_ins_and_get_a_change_at_once() {
    let (server, token) = started_server();
    let args = [
        "--agents",
        "10",
        "--mode",
        "push",
        "--interval",
        "30s",
        "--duration",
        "6s",
    ];
    let running = simulate(&server, &token, &args).spawn().unwrap();
    // Every agent enrolled and holds a check-in; then a policy change.
    let connected = eventually(Duration::from_secs(20), || {
        let clients = cli(&server, &["client", "list"]);
        let all = clients.as_array().unwrap();
        (all.len() == 10 && all.iter().all(|c| c["pending"] == false)).then_some(())
    });
    assert!(
        connected.is_some(),
        "the simulated agents did not all check in"
    );
    std::thread::sleep(Duration::from_millis(500));
    set_root_policy(&server, r#"{"rehearsal": true}"#);
    let result = report(running.wait_with_output().unwrap());
    assert_eq!(result["held_peak"], 10, "{result:#}");
    assert_eq!(result["settings_changes"]["received"], 10, "{result:#}");
    assert_eq!(result["lost"]["count"], 0, "{result:#}");
}

#[test]
fn simulated_agents_spread_over_loopback_source_addresses() {
    let (server, token) = started_server();
    let args = [
        "--agents",
        "6",
        "--interval",
        "1s",
        "--duration",
        "2s",
        "--source-addresses",
        "3",
    ];
    let result = report(simulate(&server, &token, &args).output().unwrap());
    assert_eq!(result["lost"]["count"], 0, "{result:#}");
    // The clients listener saw handshakes from 127.0.0.1, 127.0.0.2 and 127.0.0.3.
    let peers = eventually(Duration::from_secs(10), || {
        let report = cli(&server, &["tls", "handshakes"]);
        let peers: std::collections::BTreeSet<String> = report["negotiated"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["listener"] == "clients")
            .filter_map(|h| h["peer"].as_str().map(str::to_string))
            .collect();
        (peers.len() >= 3).then_some(peers)
    })
    .expect("handshakes from three source addresses");
    for address in ["127.0.0.1", "127.0.0.2", "127.0.0.3"] {
        assert!(peers.contains(address), "{peers:?}");
    }
}

#[test]
fn a_rehearsals_leftover_agents_never_block_a_harden() {
    let server = fast_server();
    let token = group_token(&server, "My Company", false);
    let args = [
        "--agents",
        "4",
        "--legacy-share",
        "0.5",
        "--interval",
        "1s",
        "--duration",
        "2s",
    ];
    let ran = report(simulate(&server, &token, &args).output().unwrap());
    assert_eq!(ran["agents"], 4);
    let listed = cli(&server, &["agents", "list"]);
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["simulated"] == true));
    // The simulation is over: its TLSv1 agents are offline and would be cut off. A real
    // machine in that state stops a harden; a simulated one is only counted.
    let plan = eventually(Duration::from_secs(20), || {
        let output = run_cli(
            &server,
            &[
                "tls",
                "plan",
                "--protocol",
                "all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1",
                "--offline-intervals",
                "1",
                "--json",
            ],
        );
        let plan: Value = serde_json::from_slice(&output.stdout).ok()?;
        (plan["counts"]["simulated_ignored"] == 2).then_some((output.status.code(), plan))
    })
    .expect("the offline simulated agents are counted as ignored");
    let (code, plan) = plan;
    assert_eq!(plan["counts"]["cut_off"], 0, "{plan}");
    assert_eq!(plan["counts"]["at_risk"], 0, "{plan}");
    assert_eq!(code, Some(0), "nobody is affected: {plan}");
}

#[test]
fn simulated_agents_offer_the_key_exchange_groups_they_are_told() {
    let (server, token) = started_server();
    let args = ["--agents", "3", "--interval", "1s", "--duration", "2s"];
    // ward's own offer: the post-quantum hybrid, which the server prefers too.
    let default = report(simulate(&server, &token, &args).output().unwrap());
    let groups = default["tls"]["groups"].as_object().unwrap();
    assert_eq!(
        groups.keys().collect::<Vec<_>>(),
        ["X25519MLKEM768"],
        "{default:#}"
    );
    // Told X25519 only (a reference without ML-KEM), they get it.
    let mut told = args.to_vec();
    told.extend(["--groups", "X25519"]);
    let x25519 = report(simulate(&server, &token, &told).output().unwrap());
    assert_eq!(x25519["lost"]["count"], 0, "{x25519:#}");
    let groups = x25519["tls"]["groups"].as_object().unwrap();
    assert_eq!(groups.keys().collect::<Vec<_>>(), ["x25519"], "{x25519:#}");
    // A list OpenSSL does not know is refused before anything runs.
    let mut bad = args.to_vec();
    bad.extend(["--groups", "X25519:nosuchgroup"]);
    let output = simulate(&server, &token, &bad).output().unwrap();
    assert!(!output.status.success());
    let refusal: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        refusal["error"]["message"],
        "--groups: X25519:nosuchgroup: not groups this OpenSSL knows"
    );
}
