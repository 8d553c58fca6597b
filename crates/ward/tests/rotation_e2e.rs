//! The server's certificates and keys over time, with real agents as separate processes: one
//! of each kind (pull and push, over HTTPS and over plain HTTP) keeps checking in through a
//! certificate renewal (`ward server renew-cert`), a CA rotation (`ward server rotate-ca
//! start`, `status`, `switch`) and an agreement key rotation (`ward server rotate-key ...`);
//! each switch refuses, naming it, while an agent has not acknowledged the new CA or key.

mod support;

use std::time::Duration;

use support::*;

fn fingerprint(pem: &[u8]) -> String {
    ward_tls::pki::certificate_fingerprints(pem)
        .into_iter()
        .next()
        .unwrap()
}

/// The fingerprints of the CAs an agent's settings file says it trusts now.
fn agent_trusts(agent: &Agent) -> Vec<String> {
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(agent.dir.path().join("agent.json")).unwrap())
            .unwrap();
    let pem = match state["settings"]["trust_pem"].as_str() {
        Some(pem) if !pem.is_empty() => pem.to_string(),
        _ => state["ca_pem"].as_str().unwrap().to_string(),
    };
    ward_tls::pki::certificate_fingerprints(pem.as_bytes())
}

/// Stops a running agent; its state dir, to run it again later.
fn stop(mut agent: Agent) -> tempfile::TempDir {
    std::mem::replace(&mut agent.dir, tempfile::tempdir().unwrap())
}

/// `ward server rotate-ca status --json` (which exits 2 while agents have not acknowledged).
fn rotation_status(server: &Server) -> serde_json::Value {
    status_of(server, "rotate-ca")
}

/// `ward server ROTATE status --json`.
fn status_of(server: &Server, rotate: &str) -> serde_json::Value {
    let output = run_cli(server, &["server", rotate, "status", "--json"]);
    assert!(matches!(output.status.code(), Some(0 | 2)), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Whether a client that trusts only `ca_pem` completes a verified handshake with the
/// clients listener.
fn clients_listener_trusted_by(server: &Server, ca_pem: &[u8]) -> bool {
    tls_connect(server.clients, ca_pem, None).is_ok()
}

#[test]
fn renew_cert_keeps_every_kind_of_agent_checking_in() {
    let (server, fleet) = fleet_of_each_kind();
    let before = std::fs::read(server.path("certs/server.pem")).unwrap();
    let renewed = run_cli(&server, &["server", "renew-cert"]);
    assert!(renewed.status.success(), "{renewed:?}");
    assert!(String::from_utf8_lossy(&renewed.stdout).contains("reloaded"));
    assert_ne!(
        std::fs::read(server.path("certs/server.pem")).unwrap(),
        before
    );
    fleet.all_check_in_again(&server, 1);
}

#[test]
fn rotate_ca_waits_for_every_agent_then_switches_without_orphans() {
    let (mut server, mut fleet) = fleet_of_each_kind();
    let old_ca = server.ca_pem();
    // An HTTPS agent that is stopped when the rotation starts: it cannot acknowledge.
    let sleeper = https_agent(&server);
    let sleeper_id = sleeper.id();
    let sleeper_dir = stop(sleeper);

    // Nothing to switch before a rotation starts.
    let early = run_cli(&server, &["server", "rotate-ca", "switch"]);
    assert_eq!(early.status.code(), Some(2), "{early:?}");
    assert!(String::from_utf8_lossy(&early.stdout).contains("no CA rotation is under way"));

    let started = cli(&server, &["server", "rotate-ca", "start"]);
    let next = started["next"]["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(started["current"]["fingerprint"], fingerprint(&old_ca));
    assert_ne!(next, fingerprint(&old_ca));
    assert!(started["agents_bumped"].as_u64().unwrap() >= 5, "{started}");
    assert_eq!(started["resent"], false);
    // Again: no new CA, the same one handed out again.
    let again = cli(&server, &["server", "rotate-ca", "start"]);
    assert_eq!(again["resent"], true, "{again}");
    assert_eq!(again["next"]["fingerprint"], next.as_str());

    // Every running agent, whatever its kind, comes to trust both CAs and says so (each CA
    // is two roots, ECDSA and RSA: four certificates).
    for (kind, agent) in &fleet.agents {
        eventually(Duration::from_secs(30), || {
            let trusts = agent_trusts(agent);
            (trusts.len() == 4 && trusts.contains(&next)).then_some(())
        })
        .unwrap_or_else(|| panic!("the {kind} agent never trusted the new CA"));
    }
    let status = eventually(Duration::from_secs(30), || {
        let status = rotation_status(&server);
        (status["acknowledged"] == 4).then_some(status)
    })
    .expect("the four running agents acknowledge the new CA");
    assert_eq!(status["waiting"], 1, "{status}");
    assert_eq!(status["not_acknowledged"][0]["id"], sleeper_id, "{status}");
    let waiting = run_cli(&server, &["server", "rotate-ca", "status"]);
    assert_eq!(waiting.status.code(), Some(2), "{waiting:?}");

    // The switch would cut the sleeper off (it checks the certificate, has no HTTP entry and
    // trusts only the old CA): refused, and nothing changed.
    for args in [
        &["server", "rotate-ca", "switch"][..],
        &["server", "rotate-ca", "switch", "--dry-run"][..],
    ] {
        let refused = run_cli(&server, args);
        assert_eq!(refused.status.code(), Some(2), "{args:?}: {refused:?}");
        let text = String::from_utf8_lossy(&refused.stdout);
        assert!(text.contains(&sleeper_id), "{text}");
        assert!(text.contains("would not trust"), "{text}");
    }
    assert_eq!(server.ca_pem(), old_ca);
    assert!(!server.path("certs/switch").exists());
    assert!(clients_listener_trusted_by(&server, &old_ca));

    // The sleeper comes back (the old certificate still serves), picks up the new CA, and
    // the switch goes through.
    let sleeper = run_agent(sleeper_dir, None);
    eventually(Duration::from_secs(30), || {
        (rotation_status(&server)["waiting"] == 0).then_some(())
    })
    .expect("the sleeper acknowledges the new CA");
    let done = run_cli(&server, &["server", "rotate-ca", "status"]);
    assert!(done.status.success(), "{done:?}");
    fleet.agents.push(("https sleeper", sleeper));

    let switched = cli(&server, &["server", "rotate-ca", "switch"]);
    assert_eq!(switched["switched"], true, "{switched}");
    assert_eq!(switched["plan"]["lost"], 0, "{switched}");
    let new_ca = server.ca_pem();
    assert_eq!(fingerprint(&new_ca), next);
    assert_eq!(
        fingerprint(&std::fs::read(server.path("certs/ca-previous.pem")).unwrap()),
        fingerprint(&old_ca)
    );
    assert!(!server.path("certs/ca-next.pem").exists());
    assert!(clients_listener_trusted_by(&server, &new_ca));
    assert!(!clients_listener_trusted_by(&server, &old_ca));

    // Every agent keeps checking in, and its settings come to carry only the new CA.
    fleet.all_check_in_again(&server, 1);
    for (kind, agent) in &fleet.agents {
        eventually(Duration::from_secs(30), || {
            let trusts = agent_trusts(agent);
            (trusts.len() == 2 && trusts[0] == next).then_some(())
        })
        .unwrap_or_else(|| panic!("the {kind} agent still trusts the old CA"));
    }
    let audit = audit_entry(&server, |e| e["action"] == "server.ca.switch");
    assert_eq!(audit["after"]["current"], next.as_str());

    // A restart serves the new certificates; the agents go on.
    server.terminate(Duration::from_secs(10));
    server.start();
    fleet.all_check_in_again(&server, 2);
}

/// The server's agreement key as `/agent/v1/hello` publishes it (SHA-256, hex).
fn published_key(server: &Server) -> String {
    let hello = https_get(server.clients, &server.ca_pem(), "/agent/v1/hello", None).json();
    hello["agreement_key_sha256"].as_str().unwrap().to_string()
}

/// The SHA-256 of the server key an agent's settings file says it derives its key with.
fn agent_server_key(agent: &Agent) -> String {
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(agent.dir.path().join("agent.json")).unwrap())
            .unwrap();
    let public = ward_proto::unhex(state["server_public"].as_str().unwrap()).unwrap();
    ward_proto::hex(&openssl::sha::sha256(&public))
}

#[test]
fn rotate_key_waits_for_every_agent_then_switches_without_orphans() {
    let (mut server, mut fleet) = fleet_of_each_kind();
    let old_key = published_key(&server);
    // An agent on the plain-HTTP channel, stopped when the rotation starts: an HTTP entry
    // does not save it, the key signs every channel.
    let sleeper = {
        let url = format!("http://127.0.0.1:{}", server.clients_http);
        let token = group_token(&server, "My Company/Legacy", true);
        run_agent(enroll(&server, &url, &token, None), None)
    };
    let sleeper_id = sleeper.id();
    let sleeper_dir = stop(sleeper);
    // A copy of an agent's settings from before the rotation: it signs under the old key.
    let stale = tempfile::tempdir().unwrap();
    std::fs::copy(
        fleet.agents[0].1.dir.path().join("agent.json"),
        stale.path().join("agent.json"),
    )
    .unwrap();

    let started = cli(&server, &["server", "rotate-key", "start"]);
    let next = started["next"].as_str().unwrap().to_string();
    assert_eq!(started["current"], old_key.as_str());
    assert_ne!(next, old_key);
    let again = cli(&server, &["server", "rotate-key", "start"]);
    assert_eq!(again["resent"], true, "{again}");
    assert_eq!(again["next"], next.as_str());

    // Every running agent moves to the next key; the server accepts both meanwhile, and
    // still publishes the current one for enrollment.
    for (kind, agent) in &fleet.agents {
        eventually(Duration::from_secs(30), || {
            (agent_server_key(agent) == next).then_some(())
        })
        .unwrap_or_else(|| panic!("the {kind} agent never took the next key"));
    }
    let status = eventually(Duration::from_secs(30), || {
        let status = status_of(&server, "rotate-key");
        (status["acknowledged"] == 4).then_some(status)
    })
    .expect("the four running agents sign under the next key");
    assert_eq!(status["waiting"], 1, "{status}");
    assert_eq!(status["not_acknowledged"][0]["id"], sleeper_id, "{status}");
    assert_eq!(published_key(&server), old_key);
    fleet.all_check_in_again(&server, 1);

    for args in [
        &["server", "rotate-key", "switch"][..],
        &["server", "rotate-key", "switch", "--dry-run"][..],
    ] {
        let refused = run_cli(&server, args);
        assert_eq!(refused.status.code(), Some(2), "{args:?}: {refused:?}");
        let text = String::from_utf8_lossy(&refused.stdout);
        assert!(text.contains(&sleeper_id), "{text}");
        assert!(text.contains("on every channel"), "{text}");
    }
    assert_eq!(published_key(&server), old_key);

    // The sleeper comes back under the old key (still accepted), takes the next one, and the
    // switch goes through.
    let sleeper = run_agent(sleeper_dir, None);
    eventually(Duration::from_secs(30), || {
        (status_of(&server, "rotate-key")["waiting"] == 0).then_some(())
    })
    .expect("the sleeper signs under the next key");
    fleet.agents.push(("http sleeper", sleeper));
    let switched = cli(&server, &["server", "rotate-key", "switch"]);
    assert_eq!(switched["switched"], true, "{switched}");
    assert_eq!(switched["plan"]["lost"], 0, "{switched}");
    assert_eq!(published_key(&server), next);
    assert!(server.path("keys/agreement-previous.key").exists());
    assert!(!server.path("keys/agreement-next.key").exists());
    fleet.all_check_in_again(&server, 2);
    let audit = audit_entry(&server, |e| e["action"] == "server.agreement_key.switch");
    assert_eq!(audit["after"]["current"], next.as_str());

    // A check-in signed under the old key is refused now.
    let stale = start_agent(stale, None);
    stale.until(Duration::from_secs(15), |s| {
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("401") || e.contains("signature"))
    });

    // A restart keeps the new key; the agents go on.
    server.terminate(Duration::from_secs(10));
    server.start();
    assert_eq!(published_key(&server), next);
    fleet.all_check_in_again(&server, 3);
}

#[test]
fn rotate_ca_refuses_when_the_clients_listener_serves_an_admins_own_certificate() {
    let server = fast_server();
    // The admin's own CA and certificates on the clients listener, reloaded.
    let theirs = ward_tls::pki::new_ca("an admin's own CA").unwrap();
    let ips = [std::net::IpAddr::from([127, 0, 0, 1])];
    for (key_type, name) in [
        (ward_tls::pki::KeyType::EcdsaP256, "server"),
        (ward_tls::pki::KeyType::Rsa2048, "server-rsa"),
    ] {
        let issued =
            ward_tls::pki::new_server_cert_of(key_type, &theirs, &["localhost"], &ips).unwrap();
        let (cert, key) = (format!("certs/{name}.pem"), format!("certs/{name}.key"));
        let (their_cert, their_key) = (format!("theirs/{name}.pem"), format!("theirs/{name}.key"));
        std::fs::create_dir_all(server.path("theirs")).unwrap();
        std::fs::write(server.path(&their_cert), issued.cert_pem().unwrap()).unwrap();
        std::fs::write(server.path(&their_key), issued.key_pem().unwrap()).unwrap();
        let conf = "conf/ssl/sslforclients.conf";
        server.replace_in(conf, &format!("File {cert}"), &format!("File {their_cert}"));
        server.replace_in(conf, &format!("File {key}"), &format!("File {their_key}"));
    }
    let reloaded = run_cli(&server, &["server", "reload"]);
    assert!(reloaded.status.success(), "{reloaded:?}");
    assert!(clients_listener_trusted_by(
        &server,
        &theirs.cert_pem().unwrap()
    ));

    let refused = run_cli(&server, &["server", "rotate-ca", "start"]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let text = String::from_utf8_lossy(&refused.stdout);
    assert!(text.contains("did not issue"), "{text}");
    assert!(!server.path("certs/ca-next.pem").exists());
    assert!(!server.path("certs/agent-trust.pem").exists());
}
