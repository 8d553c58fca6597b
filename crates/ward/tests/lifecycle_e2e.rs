//! The agent's lifecycle as an admin drives it (the seed's `smc -stop` / `smc -start`), with
//! real processes: one agent per state dir, stop that returns once the process is gone (even
//! from a held push check-in), enrollment that keeps what it was told, import-settings on a
//! running agent, and the server's client list telling who is online.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::*;

/// The pid of every `ward agent run` process on `state`.
fn agent_processes(state: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let runs = args.windows(2).any(|w| w[0] == "agent" && w[1] == "run");
        let here = args.iter().any(|a| Path::new(a) == state);
        // A zombie (exited, not yet reaped) has an empty cmdline: not running.
        if runs && here {
            pids.push(pid);
        }
    }
    pids
}

/// Stops whatever agent still runs on the dir when the test ends, even on panic.
struct Background<'a>(&'a Path);

impl Drop for Background<'_> {
    fn drop(&mut self) {
        let _ = ward(&["agent", "stop", "--state", &self.0.display().to_string()]);
        for pid in agent_processes(self.0) {
            send_signal(pid, 9);
        }
    }
}

fn agent_cmd(verb: &str, state: &Path, extra: &[&str]) -> std::process::Output {
    let state = state.display().to_string();
    let mut args = vec!["agent", verb, "--state", &state];
    args.extend(extra);
    ward(&args)
}

fn status(state: &Path) -> Option<Value> {
    let output = agent_cmd("status", state, &["--json"]);
    output
        .status
        .success()
        .then(|| serde_json::from_slice(&output.stdout).unwrap())
}

/// `My Company/Push`, a group of push agents.
fn push_group(server: &Server) {
    cli(server, &["group", "create", "Push"]);
    cli(
        server,
        &["group", "set", "My Company/Push", "--mode", "push"],
    );
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn push_agents_stopped_and_started_in_a_loop_leave_exactly_one_process() {
    let server = fast_server();
    push_group(&server);
    let url = format!("https://127.0.0.1:{}", server.clients);
    let dir = enroll(
        &server,
        &url,
        &group_token(&server, "My Company/Push", false),
        None,
    );
    let state = dir.path();
    let _cleanup = Background(state);
    for round in 0..20 {
        let started = agent_cmd("start", state, &[]);
        assert!(
            started.status.success(),
            "round {round}: {}",
            stderr(&started)
        );
        let pids = agent_processes(state);
        assert_eq!(pids.len(), 1, "round {round}: {pids:?}");
        // A second start while one runs is refused and starts nothing.
        let again = agent_cmd("start", state, &[]);
        assert!(!again.status.success(), "round {round}: a second start");
        assert!(
            stderr(&again).contains("already runs"),
            "{}",
            stderr(&again)
        );
        assert_eq!(agent_processes(state), pids, "round {round}");
        let shown = status(state).expect("status answers");
        assert_eq!(shown["pid"], pids[0], "round {round}");
        if round % 5 == 0 {
            // Now and then, stop from inside a held push check-in.
            eventually(Duration::from_secs(10), || {
                status(state).filter(|s| s["held"] == true)
            })
            .unwrap_or_else(|| panic!("round {round}: the push check-in was never held"));
        }
        let stopped = agent_cmd("stop", state, &[]);
        assert!(
            stopped.status.success(),
            "round {round}: {}",
            stderr(&stopped)
        );
        // `stop` returned: the process is gone, and so is its socket.
        assert_eq!(agent_processes(state), Vec::<i32>::new(), "round {round}");
        assert!(!state.join("agent.sock").exists(), "round {round}");
        assert!(status(state).is_none(), "round {round}");
    }
    // The agent still works after all that.
    let started = agent_cmd("start", state, &[]);
    assert!(started.status.success(), "{}", stderr(&started));
    eventually(Duration::from_secs(10), || {
        status(state).filter(|s| s["last_error"].is_null() && !s["last_checkin"].is_null())
    })
    .expect("the agent checks in after the loop");
}

#[test]
fn enrollment_keeps_the_cap_and_the_name_and_refuses_to_overwrite_an_identity() {
    let server = fast_server();
    let url = format!("https://127.0.0.1:{}", server.clients);
    let tok = group_token(&server, "My Company", false);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("agent");
    let state_str = state.display().to_string();
    let ca = server.path("certs/ca.pem");
    let ca = ca.to_str().unwrap();
    let enroll_args = |extra: &[&str]| {
        let mut args = vec![
            "agent", "enroll", "--server", &url, "--token", &tok, "--ca", ca, "--state",
            &state_str, "--json",
        ];
        args.extend(extra);
        ward(&args)
    };
    let first = enroll_args(&["--tls-max", "TLSv1", "--name", "xp-lab-01"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let first: Value = serde_json::from_slice(&first.stdout).unwrap();
    let id = first["id"].as_str().unwrap().to_string();

    // Enrolling against the console port says what is wrong.
    let console = format!("https://127.0.0.1:{}", server.console);
    let other = dir.path().join("other");
    let wrong = ward(&[
        "agent",
        "enroll",
        "--server",
        &console,
        "--token",
        &tok,
        "--ca",
        ca,
        "--state",
        other.to_str().unwrap(),
    ]);
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("console port"),
        "{}",
        stderr(&wrong)
    );
    assert!(!other.join("agent.json").exists());

    // A second enrollment into the same dir would replace the identity: refused.
    let before = std::fs::read(state.join("agent.json")).unwrap();
    let again = enroll_args(&[]);
    assert!(!again.status.success());
    // --json: the refusal is JSON on stdout, with the agent's class of error.
    let refusal: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(refusal["error"]["code"], "usage", "{refusal}");
    let message = refusal["error"]["message"].as_str().unwrap();
    assert!(message.contains(&id), "{message}");
    assert!(message.contains("--force"), "{message}");
    assert_eq!(std::fs::read(state.join("agent.json")).unwrap(), before);

    // Started without --tls-max, the agent keeps the cap it was enrolled with.
    let _cleanup = Background(&state);
    let started = agent_cmd("start", &state, &[]);
    assert!(started.status.success(), "{}", stderr(&started));
    let shown = eventually(Duration::from_secs(10), || {
        status(&state).filter(|s| !s["last_checkin"].is_null())
    })
    .expect("a check-in");
    assert_eq!(shown["tls_version"], "TLSv1", "{shown}");
    assert_eq!(shown["tls_max"], "TLSv1", "{shown}");
    let clients = cli(&server, &["agents", "list"]);
    let listed = clients
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(listed["hostname"], "xp-lab-01", "{listed}");
    assert_eq!(listed["tls_versions"], serde_json::json!(["TLSv1"]));

    // --force while it runs is refused; stopped, --force replaces it and says what.
    assert!(!enroll_args(&["--force"]).status.success());
    assert!(agent_cmd("stop", &state, &[]).status.success());
    let forced = enroll_args(&["--force"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    let forced: Value = serde_json::from_slice(&forced.stdout).unwrap();
    assert_eq!(forced["replaced"], id.as_str());
    assert_ne!(forced["id"], id.as_str());
}

#[test]
fn the_client_list_tells_who_is_online_and_retired_agents_are_refused() {
    let server = fast_server();
    push_group(&server);
    let url = format!("https://127.0.0.1:{}", server.clients);
    let pull_dir = enroll(
        &server,
        &url,
        &group_token(&server, "My Company", false),
        None,
    );
    let push_dir = enroll(
        &server,
        &url,
        &group_token(&server, "My Company/Push", false),
        None,
    );
    let (pull, push) = (pull_dir.path(), push_dir.path());
    let _cleanup = (Background(pull), Background(push));
    for state in [pull, push] {
        let started = agent_cmd("start", state, &[]);
        assert!(started.status.success(), "{}", stderr(&started));
    }
    let id = |state: &Path| {
        let value: Value =
            serde_json::from_slice(&std::fs::read(state.join("agent.json")).unwrap()).unwrap();
        value["agent"].as_str().unwrap().to_string()
    };
    let (pull_id, push_id) = (id(pull), id(push));
    let online = |wanted: bool| -> Vec<String> {
        let flag = if wanted { "--online" } else { "--offline" };
        let mut ids: Vec<String> = cli(&server, &["agents", "list", flag])
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    let mut both = vec![pull_id.clone(), push_id.clone()];
    both.sort();
    eventually(Duration::from_secs(10), || {
        (online(true) == both).then_some(())
    })
    .expect("both running agents are listed online");
    let listed = cli(&server, &["agents", "list"]);
    for client in listed.as_array().unwrap() {
        assert_eq!(client["online"], true, "{client}");
        assert!(!client["last_seen"].is_null(), "{client}");
    }

    // Stopped: offline within two intervals (1 s each), by the same rule in both filters.
    for state in [pull, push] {
        assert!(agent_cmd("stop", state, &[]).status.success());
    }
    // (The rule's window is 2 s for a 1 s pull interval, 1 s for push; the bound below only
    // keeps a broken rule from hanging the test.)
    eventually(Duration::from_secs(10), || {
        (online(false) == both).then_some(())
    })
    .expect("both stopped agents are listed offline");
    assert_eq!(online(true), Vec::<String>::new());

    // Retired: forgotten, and refused when it comes back.
    let retired = cli(&server, &["agents", "delete", &pull_id]);
    assert_eq!(retired["deleted"], serde_json::json!([pull_id]));
    assert!(agent_cmd("start", pull, &[]).status.success());
    eventually(Duration::from_secs(10), || {
        status(pull).filter(|s| {
            s["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("unknown_agent"))
        })
    })
    .expect("the retired agent is refused");
    // Its log says so with a timestamp, naming the server once.
    let log = std::fs::read_to_string(pull.join("agent.log")).unwrap();
    let refusal = log
        .lines()
        .find(|l| l.contains("unknown_agent"))
        .unwrap_or_else(|| panic!("no refusal in the log:\n{log}"));
    let (stamp, rest) = refusal.split_once(' ').unwrap();
    assert!(
        stamp.len() == 20 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
        "{refusal}"
    );
    assert_eq!(rest.matches("https://").count(), 1, "{refusal}");
    let left: Vec<String> = cli(&server, &["agents", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, vec![push_id]);
}

#[test]
fn import_settings_on_a_running_agent_takes_effect_at_once() {
    let server = fast_server();
    // A long interval: only the import's reload can bring the new settings quickly.
    cli(&server, &["group", "set", "My Company", "--interval", "1h"]);
    let url = format!("https://127.0.0.1:{}", server.clients);
    let dir = enroll(
        &server,
        &url,
        &group_token(&server, "My Company", false),
        None,
    );
    let state = dir.path();
    let _cleanup = Background(state);
    assert!(agent_cmd("start", state, &[]).status.success());
    eventually(Duration::from_secs(10), || {
        status(state).filter(|s| !s["last_checkin"].is_null())
    })
    .expect("a first check-in");
    legacy_http_group(&server);
    let package = dir.path().join("package.json");
    cli(
        &server,
        &[
            "group",
            "export-settings",
            "My Company/Legacy",
            "--out",
            package.to_str().unwrap(),
        ],
    );
    let imported = agent_cmd("import-settings", state, &[package.to_str().unwrap()]);
    assert!(imported.status.success(), "{}", stderr(&imported));
    assert!(
        String::from_utf8_lossy(&imported.stdout).contains("now follows them"),
        "{}",
        String::from_utf8_lossy(&imported.stdout)
    );
    eventually(Duration::from_secs(10), || {
        status(state).filter(|s| s["channel"] == "http" && s["last_error"].is_null())
    })
    .expect("the running agent uses the imported HTTP list at once");
    assert_eq!(agent_processes(state).len(), 1);
}

/// A server whose clients listener serves TLS 1.2 and later (the seed's step 5 done), and a
/// TLS 1.0 agent running in `My Company/Legacy` on the plain-HTTP list: the server, the agent's
/// state dir and its id.
fn tls1_agent_on_the_http_list() -> (Server, tempfile::TempDir, String) {
    let server = fast_server();
    legacy_http_group(&server);
    server.set_protocol(
        "conf/ssl/sslforclients.conf",
        "all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1",
    );
    assert!(run_cli(&server, &["server", "reload"]).status.success());
    let token = group_token(&server, "My Company/Legacy", true);
    let http = format!("http://127.0.0.1:{}", server.clients_http);
    let dir = enroll(&server, &http, &token, Some("TLSv1"));
    assert!(agent_cmd("start", dir.path(), &[]).status.success());
    let value: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("agent.json")).unwrap()).unwrap();
    let id = value["agent"].as_str().unwrap().to_string();
    (server, dir, id)
}

#[test]
fn moving_a_tls1_agent_into_an_https_only_group_is_refused_unless_accepted() {
    let (server, dir, id) = tls1_agent_on_the_http_list();
    let _cleanup = Background(dir.path());
    let audit_before = cli(&server, &["audit"]).as_array().unwrap().len();
    // Into the root group, whose list is HTTPS only: it would be orphaned.
    let refused = run_cli(
        &server,
        &["agents", "move", &id, "--group", "My Company", "--json"],
    );
    assert_eq!(refused.status.code(), Some(1));
    let answer: Value = serde_json::from_slice(&refused.stdout).unwrap();
    assert_eq!(answer["error"]["code"], "would_cut_off", "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains(&id));
    let shown = cli(&server, &["agents", "show", &id]);
    assert_eq!(shown["group"], "My Company/Legacy", "nothing moved");
    assert_eq!(
        cli(&server, &["audit"]).as_array().unwrap().len(),
        audit_before,
        "a refused move is not applied"
    );
    // Accepted explicitly: it moves, and the audit entry names whom it cut off.
    let moved = cli(
        &server,
        &[
            "agents",
            "move",
            &id,
            "--group",
            "My Company",
            "--accept-cut-off",
        ],
    );
    assert_eq!(moved["group"], "My Company");
    let audit = cli(&server, &["audit"]);
    let entry = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "agent.move")
        .unwrap()
        .clone();
    assert_eq!(entry["after"]["accept_cut_off"], true, "{entry}");
    assert_eq!(
        entry["after"]["cut_off"],
        serde_json::json!([id]),
        "{entry}"
    );
}

#[test]
fn replacing_a_lists_servers_is_guarded_like_a_move() {
    let (server, dir, id) = tls1_agent_on_the_http_list();
    let _cleanup = Background(dir.path());
    let https = format!("1:https://127.0.0.1:{}", server.clients);
    // The TLS 1.0 agent's only list, made HTTPS only: it would be orphaned, so nothing changes.
    let refused = run_cli(
        &server,
        &[
            "serverlist",
            "set",
            "Default-http",
            "--server",
            &https,
            "--json",
        ],
    );
    assert_eq!(refused.status.code(), Some(1));
    let answer: Value = serde_json::from_slice(&refused.stdout).unwrap();
    assert_eq!(answer["error"]["code"], "would_cut_off", "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains(&id));
    let shown = cli(&server, &["serverlist", "show", "Default-http"]);
    assert_eq!(shown["servers"].as_array().unwrap().len(), 1, "{shown}");
    assert_eq!(shown["servers"][0]["protocol"], "http", "{shown}");
    // An HTTPS server added in front of the HTTP one leaves it a path: allowed, and its
    // agents get a new serial.
    let before = cli(&server, &["agents", "show", &id])["serial"]
        .as_i64()
        .unwrap();
    let second = format!("2:http://127.0.0.1:{}", server.clients_http);
    let set = cli(
        &server,
        &[
            "serverlist",
            "set",
            "Default-http",
            "--server",
            &https,
            "--server",
            &second,
        ],
    );
    assert_eq!(set["servers"].as_array().unwrap().len(), 2, "{set}");
    let after = cli(&server, &["agents", "show", &id])["serial"]
        .as_i64()
        .unwrap();
    assert!(after > before, "{before} -> {after}");
    // Accepted explicitly, the HTTPS-only list is saved, and the audit says whom it cut off.
    cli(
        &server,
        &[
            "serverlist",
            "set",
            "Default-http",
            "--server",
            &https,
            "--accept-cut-off",
        ],
    );
    let entry = audit_entry(&server, |e| {
        e["action"] == "serverlist.update" && !e["after"]["cut_off_accepted"].is_null()
    });
    assert_eq!(
        entry["after"]["cut_off_accepted"],
        serde_json::json!([id]),
        "{entry}"
    );
}
