//! The fleet model through the admin API and the CLI, against the real server process and its
//! real SQLite file: every command, authentication and roles, bad input, and a crash.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

/// Runs `ward ARGS --data DIR --json` and returns the parsed output, or the stderr on failure.
fn run(server: &Server, args: &[&str]) -> Result<Value, String> {
    let mut all: Vec<&str> = args.to_vec();
    let data = server.data_str();
    all.extend(["--data", &data, "--json"]);
    let output = ward(&all);
    if output.status.success() {
        Ok(serde_json::from_slice(&output.stdout).unwrap_or(Value::Null))
    } else {
        // With --json a failure is {"error": {"code", "message"}} on stdout.
        let answer: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        Err(answer["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&output.stderr).into_owned()))
    }
}

fn ok(server: &Server, args: &[&str]) -> Value {
    run(server, args).unwrap_or_else(|e| panic!("ward {args:?}: {e}"))
}

fn started() -> Server {
    let mut server = Server::init();
    server.start();
    server
}

/// An HTTPS request to the console with an optional bearer token.
fn api(server: &Server, method: &str, path: &str, token: Option<&str>, body: &str) -> HttpReply {
    let stream = tls_connect(server.console, &server.ca_pem(), None).unwrap();
    let mut connection = HttpConnection::new(stream);
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(bearer) = &bearer {
        headers.push(("Authorization", bearer));
    }
    connection
        .request(method, path, &headers, body)
        .expect("an answer")
}

fn insert_agents(server: &Server, agents: &[(&str, &str, &[&str])]) {
    use ward_store::AgentRecord;
    let store = ward_store::open(&ward_store::Database::Sqlite(server.path("ward.db"))).unwrap();
    let root = store
        .groups()
        .unwrap()
        .into_iter()
        .find(|g| g.parent.is_none())
        .unwrap()
        .id;
    let records: Vec<AgentRecord> = agents
        .iter()
        .map(|(id, host, versions)| AgentRecord {
            id: id.to_string(),
            hostname: host.to_string(),
            os_name: "Windows".into(),
            os_version: "XP".into(),
            agent_version: "0.1.0".into(),
            tls_versions: versions.iter().map(|v| v.to_string()).collect(),
            group: root,
            last_checkin_ms: None,
            channel: None,
            server: None,
            tls_version: None,
            tls_group: None,
            hello: None,
            serial: 1,
            acked_serial: 1,
            enrolled_ms: 0,
            simulated: false,
            reverted: None,
            reported_hello: None,
            peer: None,
        })
        .collect();
    store.insert_agents(&records).unwrap();
}

#[test]
fn every_command_works() {
    let server = started();
    // Groups.
    let created = ok(&server, &["group", "create", "Legacy XP"]);
    assert_eq!(created["path"], "My Company/Legacy XP");
    ok(
        &server,
        &[
            "group",
            "create",
            "Kiosks",
            "--parent",
            "My Company/Legacy XP",
        ],
    );
    let list = ok(&server, &["group", "list"]);
    let paths: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        vec![
            "My Company",
            "My Company/Legacy XP",
            "My Company/Legacy XP/Kiosks"
        ]
    );
    assert_eq!(list[0]["parent"], Value::Null);
    assert_eq!(list[2]["parent"], "My Company/Legacy XP");
    // Server lists, including the seed's HTTP copy.
    ok(
        &server,
        &[
            "serverlist",
            "create",
            "Main",
            "--server",
            "1:https://mgr1:443",
            "--server",
            "1:https://mgr2:443",
            "--server",
            "2:http://mgr1:8014",
        ],
    );
    let copy = ok(
        &server,
        &[
            "serverlist",
            "copy",
            "Main",
            "Main HTTP",
            "--protocol",
            "http",
            "--port",
            "8014",
        ],
    );
    assert_eq!(copy["servers"][0]["url"], "http://mgr1:8014");
    assert_eq!(copy["servers"].as_array().unwrap().len(), 2);
    let shown = ok(&server, &["serverlist", "show", "Main HTTP"]);
    assert_eq!(shown["name"], "Main HTTP");
    // Settings and inheritance.
    let policy = server.dir.path().join("policy.json");
    std::fs::write(&policy, r#"{"antivirus": "legacy"}"#).unwrap();
    ok(
        &server,
        &[
            "group",
            "set",
            "My Company/Legacy XP",
            "--server-list",
            "Main HTTP",
            "--interval",
            "10m",
            "--mode",
            "push",
            "--policy",
            policy.to_str().unwrap(),
        ],
    );
    let kiosks = ok(&server, &["group", "show", "My Company/Legacy XP/Kiosks"]);
    assert_eq!(kiosks["effective"]["server_list"], "Main HTTP");
    assert_eq!(kiosks["effective"]["interval"], "10m");
    assert_eq!(kiosks["effective"]["mode"], "push");
    assert_eq!(
        kiosks["effective"]["policy"],
        json!({"antivirus": "legacy"})
    );
    assert_eq!(
        kiosks["effective"]["inherited_from"]["mode"],
        "My Company/Legacy XP"
    );
    let back = ok(
        &server,
        &["group", "set", "My Company/Legacy XP", "--inherit", "mode"],
    );
    assert_eq!(back["own"]["mode"], Value::Null);
    assert_eq!(back["effective"]["mode"], "pull");
    // A list in use cannot be deleted.
    let refused = run(&server, &["serverlist", "delete", "Main HTTP"]).unwrap_err();
    assert!(refused.contains("is assigned to 1 group(s)"), "{refused}");
    // Move and delete.
    let moved = ok(
        &server,
        &[
            "group",
            "move",
            "My Company/Legacy XP/Kiosks",
            "--parent",
            "My Company",
        ],
    );
    assert_eq!(moved["path"], "My Company/Kiosks");
    ok(&server, &["group", "delete", "My Company/Kiosks"]);
    // Tokens.
    let token = ok(
        &server,
        &[
            "group",
            "token",
            "create",
            "My Company/Legacy XP",
            "--expires",
            "7d",
            "--uses",
            "5",
        ],
    );
    assert_eq!(token["token"].as_str().unwrap().len(), 64);
    assert_eq!(token["uses_left"], 5);
    let tokens = ok(&server, &["group", "token", "list"]);
    assert!(
        tokens[0].get("token").is_none(),
        "a token is shown once only"
    );
    let id = token["id"].as_i64().unwrap().to_string();
    ok(&server, &["group", "token", "revoke", &id]);
    assert_eq!(ok(&server, &["group", "token", "list"])[0]["revoked"], true);
    // Clients: list with filters, show, move (which makes them pending).
    insert_agents(
        &server,
        &[
            ("agent-xp", "xp-01", &["TLSv1"]),
            ("agent-w10", "w10-01", &["TLSv1.2", "TLSv1.3"]),
        ],
    );
    let clients = ok(&server, &["client", "list"]);
    let first = &clients[0];
    for key in [
        "id",
        "hostname",
        "group",
        "last_checkin",
        "channel",
        "tls_version",
        "serial",
        "acked_serial",
    ] {
        assert!(
            first.get(key).is_some(),
            "client list --json has {key}: {first}"
        );
    }
    assert_eq!(first["group"], "My Company");
    let legacy = ok(&server, &["client", "list", "--tls-max", "TLSv1.1"]);
    assert_eq!(legacy.as_array().unwrap().len(), 1);
    assert_eq!(legacy[0]["hostname"], "xp-01");
    assert!(ok(&server, &["client", "list", "--pending"])
        .as_array()
        .unwrap()
        .is_empty());
    ok(
        &server,
        &[
            "client",
            "move",
            "agent-xp",
            "--group",
            "My Company/Legacy XP",
        ],
    );
    let pending = ok(&server, &["client", "list", "--pending"]);
    assert_eq!(pending.as_array().unwrap().len(), 1);
    assert_eq!(pending[0]["group"], "My Company/Legacy XP");
    assert!(pending[0]["serial"].as_i64() > pending[0]["acked_serial"].as_i64());
    let shown = ok(&server, &["client", "show", "agent-xp"]);
    assert_eq!(shown["settings"]["server_list"], "Main HTTP");
    assert_eq!(
        ok(
            &server,
            &["client", "list", "--group", "My Company/Legacy XP"]
        )
        .as_array()
        .unwrap()
        .len(),
        1
    );
    assert_eq!(
        ok(&server, &["client", "list", "--silent-for", "1h"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Search, order and pages are done by the server (where the agents are stored).
    let ids = |args: &[&str]| -> Vec<String> {
        let mut command = vec!["client", "list"];
        command.extend_from_slice(args);
        ok(&server, &command)
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&["--search", "W10"]), ["agent-w10"]);
    assert_eq!(ids(&["--sort", "hostname"]), ["agent-w10", "agent-xp"]);
    assert_eq!(
        ids(&["--sort", "group", "--descending"]),
        ["agent-xp", "agent-w10"]
    );
    assert_eq!(ids(&["--offset", "1", "--limit", "1"]), ["agent-xp"]);
    assert!(ids(&["--online"]).is_empty());
    assert_eq!(ids(&["--offline", "--sort", "online"]).len(), 2);
    // A change to the group's settings reaches its agents' serials.
    let before = pending[0]["serial"].as_i64().unwrap();
    ok(
        &server,
        &["group", "set", "My Company/Legacy XP", "--interval", "15m"],
    );
    let after = ok(&server, &["client", "show", "agent-xp"])["serial"]
        .as_i64()
        .unwrap();
    assert!(after > before, "serial bumped: {before} -> {after}");
    // Everything above is in the audit log, with who and what.
    let audit = ok(&server, &["audit"]);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "group.create",
        "serverlist.create",
        "group.update",
        "group.move",
        "group.delete",
        "token.create",
        "token.revoke",
        "agent.move",
    ] {
        assert!(actions.contains(&action), "{action} audited: {actions:?}");
    }
    assert!(audit
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor"] == "local-admin"));
}

#[test]
fn authentication_and_roles() {
    let server = started();
    let token = server.token();
    let groups = |t: Option<&str>| api(&server, "GET", "/api/v1/groups", t, "");
    let login = |password: &str| {
        let body = json!({"user": "audrey", "password": password}).to_string();
        api(&server, "POST", "/api/v1/login", None, &body)
    };
    assert_eq!(groups(None).status, 401);
    assert_eq!(groups(Some("nope")).status, 401);
    assert_eq!(groups(Some(&token)).status, 200);
    // HEAD reads like GET, without a body.
    let mut stream = tls_connect(server.console, &server.ca_pem(), None).unwrap();
    let request = format!(
        "HEAD /api/v1/groups HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut stream, &mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.ends_with("\r\n\r\n"),
        "no body after the headers: {answer:?}"
    );
    // The OpenAPI document needs no token.
    let openapi = api(&server, "GET", "/api/v1/openapi.json", None, "");
    assert_eq!(openapi.status, 200);
    assert_eq!(openapi.json()["openapi"], "3.1.0");
    // An auditor may read, not write.
    let created = api(
        &server,
        "POST",
        "/api/v1/accounts",
        Some(&token),
        r#"{"name":"audrey","password":"a long enough password","role":"auditor"}"#,
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let accepted = login("a long enough password");
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    let session = accepted.json()["token"].as_str().unwrap().to_string();
    assert_eq!(groups(Some(&session)).status, 200);
    let write = api(
        &server,
        "POST",
        "/api/v1/groups",
        Some(&session),
        r#"{"name":"X"}"#,
    );
    assert_eq!(write.status, 403);
    assert_eq!(write.json()["error"]["code"], "forbidden");
    let unauthenticated = api(&server, "POST", "/api/v1/groups", None, r#"{"name":"X"}"#);
    assert_eq!(unauthenticated.status, 401);
    assert_eq!(
        groups(Some(&token)).json().as_array().unwrap().len(),
        1,
        "nothing was created"
    );
    // Failed logins are throttled per account and address: five wrong passwords from here...
    for _ in 0..5 {
        assert_eq!(login("wrong").status, 401);
    }
    let limited = login("a long enough password");
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert!(limited
        .headers
        .iter()
        .any(|(name, _)| name == "retry-after"));
    // ... do not stop the right password from another address (127.0.0.2, through a relay):
    // a stranger cannot lock the account's owner out.
    let elsewhere = ward_testkit::peers::Relay::new(
        std::net::Ipv4Addr::new(127, 0, 0, 2),
        socket(server.console),
    );
    let stream = tls_connect(elsewhere.address.port(), &server.ca_pem(), None).unwrap();
    let body = json!({"user": "audrey", "password": "a long enough password"}).to_string();
    let from_elsewhere = HttpConnection::new(stream)
        .request(
            "POST",
            "/api/v1/login",
            &[("Content-Type", "application/json")],
            &body,
        )
        .unwrap();
    assert_eq!(from_elsewhere.status, 200, "{}", from_elsewhere.body);
}

#[test]
fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let server = started();
    let token = server.token();
    let t = Some(token.as_str());
    assert_eq!(
        api(&server, "POST", "/api/v1/groups", t, r#"{"name":"A"}"#).status,
        201
    );
    // An agents query the server cannot run as asked is refused, naming the parameter.
    for (query, word) in [
        ("stack=not-a-fingerprint", "stack"),
        ("search=a%01b", "search"),
        ("offset=99999999", "offset"),
        ("sort=nonsense", "sort"),
    ] {
        let reply = api(&server, "GET", &format!("/api/v1/agents?{query}"), t, "");
        assert_eq!(reply.status, 400, "{query}: {}", reply.body);
        assert!(reply.body.contains(word), "{query}: {}", reply.body);
    }
    assert_eq!(
        api(
            &server,
            "POST",
            "/api/v1/groups",
            t,
            r#"{"name":"B","parent":"My Company/A"}"#
        )
        .status,
        201
    );
    let snapshot = || {
        (
            api(&server, "GET", "/api/v1/groups", t, "").body,
            api(&server, "GET", "/api/v1/serverlists", t, "").body,
            api(&server, "GET", "/api/v1/tokens", t, "").body,
        )
    };
    let before = snapshot();
    let a = 2; // ids: root 1, A 2, B 3
    let cases: Vec<(&str, String, &str, u16, &str)> = vec![
        (
            "POST",
            "/api/v1/groups".into(),
            r#"{"name":"C","parent":"My Company/Nope"}"#,
            409,
            "no group 'My Company/Nope'",
        ),
        (
            "POST",
            "/api/v1/groups".into(),
            r#"{"name":"A"}"#,
            409,
            "already exists",
        ),
        (
            "POST",
            "/api/v1/groups".into(),
            r#"{"name":"a/b"}"#,
            400,
            "cannot contain '/'",
        ),
        (
            "POST",
            "/api/v1/groups".into(),
            r#"{"name":5}"#,
            400,
            "name: invalid type: integer `5`, expected a string",
        ),
        (
            "POST",
            "/api/v1/groups".into(),
            r#"{"name":"C","colour":"red"}"#,
            400,
            "unknown field `colour`",
        ),
        (
            "POST",
            "/api/v1/groups".into(),
            r#"[1,2]"#,
            400,
            "must be a JSON object",
        ),
        (
            "POST",
            "/api/v1/groups".into(),
            r#"{"name":"#,
            400,
            "not valid JSON",
        ),
        (
            "POST",
            format!("/api/v1/groups/{a}/move"),
            r#"{"parent":"My Company/A/B"}"#,
            409,
            "its own ancestor",
        ),
        (
            "PATCH",
            format!("/api/v1/groups/{a}"),
            r#"{"interval":"soon"}"#,
            400,
            "interval:",
        ),
        (
            "PATCH",
            format!("/api/v1/groups/{a}"),
            r#"{"mode":"sometimes"}"#,
            400,
            "mode: unknown variant `sometimes`",
        ),
        (
            "PATCH",
            format!("/api/v1/groups/{a}"),
            r#"{"server_list":"Nope"}"#,
            409,
            "no server list 'Nope'",
        ),
        (
            "PATCH",
            format!("/api/v1/groups/{a}"),
            r#"{"policy":[1]}"#,
            400,
            "policy: invalid type: sequence, expected a map",
        ),
        (
            "PATCH",
            format!("/api/v1/groups/{a}"),
            r#"{"inherit":["colour"]}"#,
            400,
            "inherit[0]: unknown variant `colour`",
        ),
        (
            "PATCH",
            "/api/v1/groups/999".into(),
            r#"{"mode":"push"}"#,
            404,
            "no group 999",
        ),
        (
            "DELETE",
            format!("/api/v1/groups/{a}"),
            "",
            409,
            "has subgroups",
        ),
        (
            "DELETE",
            "/api/v1/groups/1".into(),
            "",
            409,
            "root group cannot be deleted",
        ),
        (
            "POST",
            "/api/v1/serverlists".into(),
            r#"{"name":"L","servers":["1:ftp://x:1"]}"#,
            400,
            "the protocol is http or https",
        ),
        (
            "POST",
            "/api/v1/serverlists".into(),
            r#"{"name":"L","servers":["https://x:1"]}"#,
            400,
            "the priority is a number",
        ),
        (
            "POST",
            "/api/v1/serverlists".into(),
            r#"{"name":"L","servers":[]}"#,
            400,
            "at least one server",
        ),
        (
            "POST",
            "/api/v1/serverlists".into(),
            r#"{"name":"L","servers":"1:https://x:1"}"#,
            400,
            "servers: invalid type: string",
        ),
        (
            "POST",
            "/api/v1/serverlists".into(),
            r#"{"name":"Default","servers":["1:https://x:1"]}"#,
            409,
            "already exists",
        ),
        (
            "DELETE",
            "/api/v1/serverlists/Default".into(),
            "",
            409,
            "is assigned to 1 group(s)",
        ),
        (
            "POST",
            "/api/v1/tokens".into(),
            r#"{"group":"My Company","uses":-1}"#,
            400,
            "uses: a number from 1 to 1000000000, or 0 for any number",
        ),
        (
            "POST",
            "/api/v1/tokens".into(),
            r#"{"group":"My Company","expires":"7 weeks"}"#,
            400,
            "expires:",
        ),
        (
            "POST",
            "/api/v1/tokens/99/revoke".into(),
            "",
            404,
            "no token 99",
        ),
        (
            "POST",
            "/api/v1/clients/move".into(),
            r#"{"ids":["ghost"],"group":"My Company"}"#,
            409,
            "no agent 'ghost'",
        ),
        (
            "GET",
            "/api/v1/clients?tls_max=TLSv9".into(),
            "",
            400,
            "tls_max: unknown variant `TLSv9`",
        ),
        (
            "GET",
            "/api/v1/clients?colour=red".into(),
            "",
            400,
            "colour: unknown field `colour`",
        ),
        (
            "POST",
            "/api/v1/accounts".into(),
            r#"{"name":"x","password":"short","role":"admin"}"#,
            400,
            "at least 12 characters",
        ),
        (
            "POST",
            "/api/v1/accounts".into(),
            r#"{"name":"x","password":"long enough password","role":"root"}"#,
            400,
            "role: unknown variant `root`",
        ),
        ("PUT", "/api/v1/groups".into(), "", 405, "allows"),
        ("GET", "/api/v1/nothing".into(), "", 404, "no such resource"),
    ];
    for (method, path, body, status, message) in &cases {
        let reply = api(&server, method, path, t, body);
        assert_eq!(
            reply.status, *status,
            "{method} {path} {body:.80}: {}",
            reply.body
        );
        let error = reply.json();
        let text = error["error"]["message"].as_str().unwrap_or_default();
        assert!(
            text.contains(message),
            "{method} {path}: {text:?} lacks {message:?}"
        );
        assert!(error["error"]["code"].is_string());
    }
    // A body announced larger than the limit is refused before it is sent.
    let stream = tls_connect(server.console, &server.ca_pem(), None).unwrap();
    let mut connection = HttpConnection::new(stream);
    let request = format!(
        "POST /api/v1/groups HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 2000000\r\n\r\n"
    );
    std::io::Write::write_all(connection.stream(), request.as_bytes()).unwrap();
    let reply = connection.read_reply().unwrap();
    assert_eq!(reply.status, 413);
    assert!(reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("exceeds"));
    assert_eq!(snapshot(), before, "refused requests changed nothing");
}

#[test]
fn a_kill_9_loses_no_acknowledged_change() {
    let mut server = started();
    let token = server.token();
    let console = server.console;
    let ca = server.ca_pem();
    // A stream of changes from another thread; each answered 201 is noted.
    let writer = std::thread::spawn(move || {
        let mut acknowledged = Vec::new();
        for index in 0..400 {
            let Ok(stream) = tls_connect(console, &ca, None) else {
                break;
            };
            let mut connection = HttpConnection::new(stream);
            let name = format!("g{index}");
            let body = format!(r#"{{"name":"{name}"}}"#);
            let bearer = format!("Bearer {token}");
            let reply = connection.request(
                "POST",
                "/api/v1/groups",
                &[("Authorization", &bearer)],
                &body,
            );
            match reply {
                Some(reply) if reply.status == 201 => acknowledged.push(name),
                _ => break,
            }
        }
        acknowledged
    });
    // Kill the server in the middle of the stream.
    let enough = eventually(Duration::from_secs(30), || {
        let groups = api(&server, "GET", "/api/v1/groups", Some(&server.token()), "");
        (groups.json().as_array().map_or(0, Vec::len) > 20).then_some(())
    });
    assert!(enough.is_some(), "changes were being made");
    send_signal(server.pid(), 9);
    let acknowledged = writer.join().unwrap();
    assert!(!acknowledged.is_empty());
    let _ = server.child.take().map(|mut c| c.wait());
    server.start();
    let groups = api(&server, "GET", "/api/v1/groups", Some(&server.token()), "").json();
    let paths: Vec<String> = groups
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_string())
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|name| !paths.contains(name))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged changes lost: {lost:?}",
        lost.len()
    );
    // And the audit log has one entry per acknowledged change.
    let audit = api(
        &server,
        "GET",
        "/api/v1/audit?limit=10000",
        Some(&server.token()),
        "",
    )
    .json();
    let created = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "group.create")
        .count();
    assert!(created >= acknowledged.len());
}

#[test]
fn login_from_elsewhere_then_use_the_saved_session() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let server = started();
    ok(&server, &["group", "create", "Remote"]);
    let mut create = Command::new(ward_bin())
        .args([
            "account",
            "create",
            "remy",
            "--role",
            "admin",
            "--data",
            &server.data_str(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    create
        .stdin
        .take()
        .unwrap()
        .write_all(b"a long enough password\n")
        .unwrap();
    assert!(create.wait().unwrap().success());
    // A fresh home and working directory: no data dir to find, only the saved login.
    let home = tempfile::tempdir().unwrap();
    let ward_elsewhere = |args: &[&str], input: &[u8]| {
        let mut child = Command::new(ward_bin())
            .args(args)
            .current_dir(home.path())
            .env("XDG_CONFIG_HOME", home.path())
            .env_remove("WARD_DATA")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    };
    let before = ward_elsewhere(&["group", "list", "--json"], b"");
    assert!(!before.status.success());
    assert!(String::from_utf8_lossy(&before.stdout).contains("not logged in"));
    let url = format!("https://localhost:{}", server.console);
    let ca = server.path("certs/ca.pem");
    let login_with = |password: &[u8]| {
        let ca = ca.to_str().unwrap();
        let args = ["login", "--server", &url, "--user", "remy", "--ca", ca];
        ward_elsewhere(&args, password)
    };
    let wrong = login_with(b"nope\n");
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("invalid user or password"));
    let login = login_with(b"a long enough password\n");
    assert!(login.status.success(), "{login:?}");
    let saved = home.path().join("ward/login.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let listed = ward_elsewhere(&["group", "list", "--json"], b"");
    assert!(listed.status.success(), "{listed:?}");
    let groups: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert!(groups
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["path"] == "My Company/Remote"));
    // Changes made with the session are audited under the account's name.
    let created = ward_elsewhere(&["group", "create", "By Remy", "--json"], b"");
    assert!(created.status.success(), "{created:?}");
    let audit = ok(&server, &["audit"]);
    assert!(audit
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["actor"] == "remy" && e["action"] == "group.create"));
    // `ward logout` ends the session on the server and forgets it here.
    let token = serde_json::from_slice::<Value>(&std::fs::read(&saved).unwrap()).unwrap()["token"]
        .as_str()
        .map(str::to_string);
    let logout = ward_elsewhere(&["logout"], b"");
    assert!(logout.status.success(), "{logout:?}");
    assert!(!saved.exists());
    if let Some(token) = token {
        assert_eq!(
            api(&server, "GET", "/api/v1/groups", Some(&token), "").status,
            401
        );
    }
}

#[test]
fn disable_revoke_and_logout_end_live_sessions_at_once() {
    let server = started();
    let local = server.token();
    let create = api(
        &server,
        "POST",
        "/api/v1/accounts",
        Some(&local),
        r#"{"name": "alice", "password": "a long enough password", "role": "admin"}"#,
    );
    assert_eq!(create.status, 201, "{}", create.body);
    let login = || {
        api(
            &server,
            "POST",
            "/api/v1/login",
            None,
            r#"{"user": "alice", "password": "a long enough password"}"#,
        )
    };
    let session = || {
        let reply = login();
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()["token"].as_str().unwrap().to_string()
    };
    let works = |token: &str| api(&server, "GET", "/api/v1/groups", Some(token), "").status;
    // Revoke-all: two live sessions end at once.
    let (first, second) = (session(), session());
    assert_eq!((works(&first), works(&second)), (200, 200));
    ok(&server, &["account", "revoke", "alice"]);
    assert_eq!((works(&first), works(&second)), (401, 401));
    // Disable: the live session ends, and login is refused (to who knows the password).
    let third = session();
    ok(&server, &["account", "disable", "alice"]);
    assert_eq!(works(&third), 401);
    let refused = login();
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.json()["error"]["code"], "account_disabled");
    let listed = ok(&server, &["account", "list"]);
    assert_eq!(listed[0]["disabled"], true, "{listed}");
    ok(&server, &["account", "enable", "alice"]);
    // Logout: the session that asks ends; others stay.
    let (fourth, fifth) = (session(), session());
    let out = api(&server, "DELETE", "/api/v1/session", Some(&fourth), "");
    assert_eq!(out.status, 200, "{}", out.body);
    assert_eq!((works(&fourth), works(&fifth)), (401, 200));
    // The local admin token has no session to end (404), and works throughout.
    assert_eq!(
        api(&server, "DELETE", "/api/v1/session", Some(&local), "").status,
        404
    );
    assert_eq!(works(&local), 200);
}

#[test]
fn with_json_errors_are_json_on_stdout_with_their_code() {
    let server = started();
    // (arguments, expected code): the admin API's code, the agent's class, or `error`.
    let state = server.dir.path().join("no-agent");
    let state = state.to_str().unwrap();
    let data = server.data_str();
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "client",
                "move",
                "ghost",
                "--group",
                "My Company",
                "--data",
                &data,
            ],
            "unknown_reference",
        ),
        (&["group", "create", "a/b", "--data", &data], "bad_request"),
        (&["agent", "status", "--state", state], "usage"),
        (&["tls", "explain", "TLSv9"], "invalid_protocol"),
        (
            &["server", "reload", "--data", "/nonexistent/ward-data"],
            "error",
        ),
    ];
    for (args, code) in cases {
        let mut all = args.to_vec();
        all.push("--json");
        let output = ward(&all);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let answer: Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON on stdout ({e}): {output:?}"));
        assert_eq!(answer["error"]["code"], *code, "{args:?}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{args:?}: {answer}"
        );
    }
    // Without --json the same failure is a sentence on stderr.
    let output = ward(&["agent", "status", "--state", state]);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).starts_with("ward: error: no agent runs"));
}

#[test]
fn tokens_do_not_outlive_their_use() {
    let server = started();
    // A new token is bounded unless the admin says otherwise: a week and 1,000 enrollments.
    let bounded = ok(&server, &["group", "token", "create", "My Company"]);
    assert_eq!(bounded["uses_left"], 1000, "{bounded}");
    assert!(bounded["expires"].is_string(), "{bounded}");
    let open = ok(
        &server,
        &[
            "group",
            "token",
            "create",
            "My Company",
            "--uses",
            "0",
            "--expires",
            "never",
        ],
    );
    assert!(
        open["uses_left"].is_null() && open["expires"].is_null(),
        "{open}"
    );
    let tokens = || ok(&server, &["group", "token", "list"]);
    let before = tokens().as_array().unwrap().len();
    // An export that cannot write its file mints no token.
    let nowhere = server.dir.path().join("no/such/dir/package.json");
    let failed = run(
        &server,
        &[
            "group",
            "export-settings",
            "My Company",
            "--out",
            nowhere.to_str().unwrap(),
        ],
    );
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(
        tokens().as_array().unwrap().len(),
        before,
        "a token was minted"
    );
    // One that can: its token is for this package, 25 agents and a day.
    let out = server.dir.path().join("package.json");
    ok(
        &server,
        &[
            "group",
            "export-settings",
            "My Company",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let package: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert!(package.get("token_id").is_none(), "{package}");
    let list = tokens();
    let minted = list.as_array().unwrap().last().unwrap();
    assert_eq!(minted["uses_left"], 25, "{minted}");
    assert_eq!(minted["allow_http"], true);
    assert!(minted["expires"].is_string());
}
