//! Fair sharing that does not punish NAT: connections that have not yet carried a verified
//! request count against their address (capped), a connection that carried a verified
//! check-in counts against its agent (one held push check-in each). So thousands of push
//! agents behind one address are all held, while an idle flood from one address is still
//! capped and the console keeps answering; readiness names the address a cap refused.

mod support;

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::*;

const AGENTS: usize = 3000;

#[test]
fn thousands_of_push_agents_behind_one_address_are_held_while_an_idle_flood_is_capped() {
    let mut server = Server::init();
    server.start();
    let token = run_cli(
        &server,
        &["group", "token", "create", "My Company", "--uses", "0"],
    );
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
    let url = format!("https://127.0.0.1:{}", server.clients);
    let ca = server.path("certs/ca.pem");
    // Every simulated agent from 127.0.0.1, as behind one NAT address (the simulator needs a
    // descriptor per agent).
    let simulate = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 8192 && exec '{}' simulate --server '{url}' --token '{token}' --ca '{}' \
             --agents {AGENTS} --mode push --interval 30s --duration 30s \
             --source-addresses 1 --json",
            ward_bin(),
            ca.display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // All enrolled and held: more than the per-address cap (1000) from one address.
    let held = eventually(Duration::from_secs(120), || {
        let metrics = https_get(server.console, &server.ca_pem(), "/metrics", None).body;
        let held = metric(&metrics, "ward_push_held_agents")?;
        (held >= AGENTS as f64).then_some(held)
    });
    assert!(held.is_some(), "{}", server.log_text());
    // Now 1,100 idle connections from the same address, none of which ever proves itself:
    // only 1,000 are let in.
    let flood: Vec<TcpStream> = (0..1100)
        .filter_map(|_| TcpStream::connect(socket(server.clients)).ok())
        .collect();
    assert!(flood.len() > 1000, "{} connections opened", flood.len());
    let refused = eventually(Duration::from_secs(10), || {
        let metrics = https_get(server.console, &server.ca_pem(), "/metrics", None).body;
        let refused = metric(
            &metrics,
            "ward_connections_refused_total{listener=\"clients\"}",
        )?;
        (refused >= 90.0).then_some(refused)
    });
    assert!(refused.is_some(), "the idle flood was not capped");
    // The console answers, and the held agents stay held.
    let health = https_get(server.console, &server.ca_pem(), "/healthz", None);
    assert_eq!(health.status, 200);
    let metrics = https_get(server.console, &server.ca_pem(), "/metrics", None).body;
    assert!(
        metric(&metrics, "ward_push_held_agents").unwrap() >= AGENTS as f64,
        "{metrics}"
    );
    drop(flood);
    let output = simulate.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["held_peak"], AGENTS, "{report:#}");
    assert_eq!(report["lost"]["count"], 0, "{report:#}");
    // Readiness names the address a cap refused, and the agents last seen from it.
    let readiness = cli(&server, &["tls", "readiness"]);
    let capped = readiness["capped"].as_array().expect("capped addresses");
    assert!(
        capped.iter().any(|line| {
            let line = line.as_str().unwrap();
            line.contains("from 127.0.0.1") && line.contains(&format!("{AGENTS} agent(s)"))
        }),
        "{capped:?}"
    );
}

/// The value of the first sample named `name` (with its labels) in a metrics text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(name) && line[name.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}
