//! What a careful operator and an attacker found on the reliability work, each against the
//! real server process: logins that race a new password, policy documents the agents cannot
//! read, audit actors an account could pass for, restores that take what they should not, and
//! the small things (tokens expired at birth, millisecond intervals, `.` names, a CLI that
//! panics on a closed pipe, a stale pid file).

mod support;

use std::io::Read;
use std::os::fd::FromRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

/// `ward ARGS --data DIR --json`: the exit code and the JSON printed (an error too).
fn run_json(server: &Server, args: &[&str]) -> (i32, Value) {
    let mut all = args.to_vec();
    all.push("--json");
    let output = run_cli(server, &all);
    (
        output.status.code().unwrap_or(-1),
        serde_json::from_slice(&output.stdout).unwrap_or(Value::Null),
    )
}

/// A login through `curl` from `source` (a loopback address of its own, so the login limiter
/// counts each apart): the session token, if one was given.
fn login_from(server: &Server, source: &str, user: &str, password: &str) -> Option<String> {
    let body = json!({"user": user, "password": password}).to_string();
    let output = Command::new(ward_testkit::tool("curl", "curl"))
        .args(["-s", "--interface", source, "--cacert"])
        .arg(server.path("certs/ca.pem"))
        .args(["-H", "Content-Type: application/json", "-d", &body])
        .arg(format!("https://localhost:{}/api/v1/login", server.console))
        .output()
        .unwrap();
    let answer: Value = serde_json::from_slice(&output.stdout).ok()?;
    answer["token"].as_str().map(str::to_string)
}

/// The status a session token gets from the API.
fn status_with(server: &Server, token: &str) -> u16 {
    https_get(
        server.console,
        &server.ca_pem(),
        "/api/v1/server",
        Some(token),
    )
    .status
}

/// Finding 4: logins with the old password racing `account passwd` must not keep a session.
/// Each round a fresh account and fresh source addresses (the limiter counts failures per
/// address), eight logins with the old password at once while an admin sets a new one.
#[test]
fn logins_racing_a_new_password_keep_no_session_under_the_old_one() {
    let mut server = Server::init();
    server.start();
    let admin = server.token();
    let mut won = 0;
    let mut refused_after = 0;
    for round in 0..10 {
        let user = format!("racer{round}");
        let old = format!("the old password {round}");
        let created = api_call(
            &server,
            "POST",
            "/api/v1/accounts",
            &admin,
            &json!({"name": user, "password": old, "role": "admin"}).to_string(),
        );
        assert_eq!(created.0, 201, "{created:?}");
        let tokens: Vec<Option<String>> = std::thread::scope(|scope| {
            let logins: Vec<_> = (1..=8)
                .map(|n| {
                    let (server, user, old) = (&server, &user, &old);
                    scope.spawn(move || {
                        login_from(server, &format!("127.0.{}.{n}", round + 10), user, old)
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(20 * (round % 4)));
            let passwd = api_call(
                &server,
                "POST",
                &format!("/api/v1/accounts/{user}/password"),
                &admin,
                &json!({"password": format!("the new password {round}")}).to_string(),
            );
            assert_eq!(passwd.0, 200, "{passwd:?}");
            logins.into_iter().map(|l| l.join().unwrap()).collect()
        });
        for token in tokens.into_iter().flatten() {
            won += 1;
            let status = status_with(&server, &token);
            assert_eq!(
                status, 401,
                "round {round}: a session won with the old password still works after passwd"
            );
            refused_after += 1;
        }
    }
    // Whatever the interleaving, every session the old password won is over.
    assert_eq!(won, refused_after);
}

/// An admin API call with a bearer token: (status, body).
fn api_call(server: &Server, method: &str, path: &str, token: &str, body: &str) -> (u16, Value) {
    let stream = tls_connect(server.console, &server.ca_pem(), None).unwrap();
    let mut connection = HttpConnection::new(stream);
    let bearer = format!("Bearer {token}");
    let reply = connection
        .request(
            method,
            path,
            &[
                ("Content-Type", "application/json"),
                ("Authorization", &bearer),
            ],
            body,
        )
        .expect("an answer");
    (reply.status, reply.json())
}

/// `{"a": {"a": ... {} }}`, `depth` deep.
fn nested(depth: usize) -> String {
    let mut text = "{}".to_string();
    for _ in 1..depth {
        text = format!(r#"{{"a":{text}}}"#);
    }
    text
}

/// Finding 6: the server accepts only the policy documents its agents can read, one limit for
/// both; a document at the limit reaches a real agent and `ward audit` shows its entry.
#[test]
fn a_policy_document_is_taken_only_when_agents_can_read_it() {
    let server = fast_server();
    let agent = https_agent(&server);
    let limit = ward_proto::policy::MAX_DEPTH;
    let file = server.dir.path().join("policy.json");
    std::fs::write(&file, nested(limit + 1)).unwrap();
    let (code, refused) = run_json(
        &server,
        &[
            "group",
            "set",
            "My Company",
            "--policy",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nests at most 32 levels"),
        "{refused}"
    );
    std::fs::write(&file, nested(limit)).unwrap();
    let (code, set) = run_json(
        &server,
        &[
            "group",
            "set",
            "My Company",
            "--policy",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{set}");
    let expected: Value = serde_json::from_str(&nested(limit)).unwrap();
    eventually(Duration::from_secs(20), || {
        let policy: Value =
            serde_json::from_slice(&std::fs::read(agent.dir.path().join("policy.json")).ok()?)
                .ok()?;
        (policy == expected).then_some(())
    })
    .expect("the agent reads a document at the limit");
    agent.until(Duration::from_secs(10), |s| s["last_error"].is_null());
    let (code, audit) = run_json(&server, &["audit"]);
    assert_eq!(code, 0);
    let entry = audit
        .as_array()
        .expect("every entry rendered")
        .iter()
        .find(|e| e["action"] == "group.update" && e["after"]["policy"] == expected);
    assert!(entry.is_some(), "the change is in the audit log: {audit}");
    let text = run_cli(&server, &["audit"]);
    assert!(text.status.success());
    assert!(String::from_utf8_lossy(&text.stdout).contains("group.update"));
}

/// Finding 7: names the audit log uses for other actors are no account names.
#[test]
fn account_names_that_pass_for_other_actors_are_refused() {
    let mut server = Server::init();
    server.start();
    for name in ["local-admin", "LOCAL-ADMIN", "agent:0123abcd", "system:x"] {
        let (status, body) = api_call(
            &server,
            "POST",
            "/api/v1/accounts",
            &server.token(),
            &json!({"name": name, "password": "a long enough password", "role": "admin"})
                .to_string(),
        );
        assert_eq!(status, 400, "{name}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("name: "),
            "{name}: {body}"
        );
    }
    let (status, accounts) = api_call(&server, "GET", "/api/v1/accounts", &server.token(), "");
    assert_eq!((status, accounts), (200, json!([])));
}

/// An entry of a tar file: path, mode, bytes.
type Entry = (String, u32, Vec<u8>);

/// The entries of a tar file.
fn entries(archive: &Path) -> Vec<Entry> {
    let mut archive = tar::Archive::new(std::fs::File::open(archive).unwrap());
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            let mode = entry.header().mode().unwrap();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            (path, mode, bytes)
        })
        .collect()
}

/// A tar file of regular files, plus `link` as a symlink entry (name, target) when given.
fn pack(out: &Path, files: &[Entry], link: Option<(&str, &str)>) {
    let mut builder = tar::Builder::new(std::fs::File::create(out).unwrap());
    for (path, mode, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(*mode);
        header.set_cksum();
        builder
            .append_data(&mut header, path, bytes.as_slice())
            .unwrap();
    }
    if let Some((name, target)) = link {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        builder.append_link(&mut header, name, target).unwrap();
    }
    builder.finish().unwrap();
}

/// Finding 8: a restore checks everything before it puts anything in place, and a refused one
/// leaves nothing behind.
#[test]
fn a_restore_takes_only_a_whole_valid_data_dir() {
    let server = Server::init();
    let work = tempfile::tempdir().unwrap();
    let good = work.path().join("good.backup");
    let output = run_cli(
        &server,
        &["server", "backup", "--out", good.to_str().unwrap()],
    );
    assert!(output.status.success(), "{output:?}");
    let real = entries(&good);
    let without =
        |name: &str| -> Vec<Entry> { real.iter().filter(|(p, _, _)| p != name).cloned().collect() };
    let with = |extra: Entry| -> Vec<Entry> {
        let mut files: Vec<_> = real
            .iter()
            .filter(|(p, _, _)| *p != extra.0)
            .cloned()
            .collect();
        files.push(extra);
        files
    };
    let ca = real
        .iter()
        .find(|(p, _, _)| p == "certs/ca.pem")
        .map(|(_, _, bytes)| bytes.clone())
        .unwrap();
    let mut many = real.clone();
    for n in 0..1001 {
        many.push((format!("certs/extra{n}.pem"), 0o644, ca.clone()));
    }
    let mut corrupt_db = real.clone();
    for (path, _, bytes) in &mut corrupt_db {
        if path == "ward.db" {
            let middle = bytes.len() / 2;
            bytes[middle..middle + 4096].fill(0xAB);
        }
    }
    /// What the case is, the archive's files, a symlink entry, what the refusal says.
    type Case<'a> = (&'a str, Vec<Entry>, Option<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        ("no database", without("ward.db"), None, "found none"),
        (
            "no CA key",
            without("certs/ca.key"),
            None,
            "no certs/ca.key in it",
        ),
        (
            "a symlink",
            real.clone(),
            Some(("certs/evil.pem", "/etc/passwd")),
            "entry certs/evil.pem: a Symlink entry",
        ),
        ("too many entries", many, None, "more than 1000 entries"),
        (
            "a 2 MiB certificate",
            with(("certs/big.pem".into(), 0o644, vec![b'A'; 2 << 20])),
            None,
            "entry certs/big.pem: 2097152 bytes",
        ),
        (
            "a 2-byte admin token",
            with(("admin.token".into(), 0o600, b"x\n".to_vec())),
            None,
            "entry admin.token: an admin token is 64 hex digits",
        ),
        (
            "a key that is no key",
            with(("keys/agreement.key".into(), 0o600, b"nothing\n".to_vec())),
            None,
            "entry keys/agreement.key: not an X25519 key",
        ),
        (
            "a stranger's file",
            with(("etc/passwd".into(), 0o644, b"root:x:0:0\n".to_vec())),
            None,
            "entry etc/passwd: no data dir holds such a file",
        ),
        ("a corrupt database", corrupt_db, None, "entry ward.db:"),
    ];
    for (what, files, link, expected) in cases {
        let archive = work.path().join("case.backup");
        pack(&archive, &files, link);
        let target = work.path().join("restored");
        let output = ward(&[
            "server",
            "restore",
            "--from",
            archive.to_str().unwrap(),
            "--data",
            target.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{what}: {stderr}");
        assert!(stderr.contains(expected), "{what}: {stderr}");
        assert!(stderr.contains("nothing was restored"), "{what}: {stderr}");
        assert!(!target.exists(), "{what}: nothing is left behind");
        let left: Vec<String> = std::fs::read_dir(work.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{what}: {left:?}");
    }
    // The real backup restores, secrets private, and the restored dir passes configtest.
    let target = work.path().join("restored");
    let output = ward(&[
        "server",
        "restore",
        "--from",
        good.to_str().unwrap(),
        "--data",
        target.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{output:?}");
    use std::os::unix::fs::PermissionsExt;
    for secret in [
        "ward.db",
        "admin.token",
        "certs/ca.key",
        "keys/agreement.key",
    ] {
        let mode = std::fs::metadata(target.join(secret))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{secret}: {mode:o}");
    }
    let configtest = ward(&["server", "configtest", "--data", target.to_str().unwrap()]);
    assert!(configtest.status.success(), "{configtest:?}");
}

/// Finding 9, the smaller ones.
#[test]
fn tokens_intervals_and_names_that_make_no_sense_are_refused() {
    let mut server = Server::init();
    server.start();
    let refused: &[(&[&str], &str)] = &[
        (
            &["group", "token", "create", "My Company", "--expires", "0s"],
            "expires: 0s is shorter than a minute",
        ),
        (
            &["group", "set", "My Company", "--interval", "1ms"],
            "interval: 1ms is shorter than 1s",
        ),
        (&["group", "create", "."], "'.' and '..' are not names"),
        (&["group", "create", ".."], "'.' and '..' are not names"),
        (
            &["serverlist", "copy", "Default", ".."],
            "'.' and '..' are not names",
        ),
    ];
    for (args, expected) in refused {
        let (code, answer) = run_json(&server, args);
        assert_eq!(code, 1, "{args:?}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{args:?}: {message}");
    }
    let groups = cli(&server, &["group", "list"]);
    assert_eq!(
        groups.as_array().map(Vec::len),
        Some(1),
        "nothing was made: {groups}"
    );
    // The document says what the server takes: `uses` 0 means any number.
    let document = https_get(
        server.console,
        &server.ca_pem(),
        "/api/v1/openapi.json",
        None,
    )
    .json();
    let schema = &document["paths"]["/tokens"]["post"]["requestBody"]["content"]
        ["application/json"]["schema"];
    let name = schema["$ref"].as_str().unwrap().rsplit('/').next().unwrap();
    let uses = &document["components"]["schemas"][name]["properties"]["uses"];
    assert_eq!(uses["minimum"], 0, "{uses}");
}

/// Finding 9: a command whose reader has gone ends quietly (as Unix tools do), never with a
/// panic and a backtrace.
#[test]
fn a_command_whose_output_pipe_is_closed_ends_quietly() {
    let mut fds = [0; 2];
    // SAFETY: a new pipe; both ends are owned below.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: each descriptor was just made by pipe() and is owned once.
    let (reader, writer) = unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    };
    drop(reader);
    let output = Command::new(ward_bin())
        .args(["tls", "explain", "all -SSLv2 -SSLv3"])
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.signal(), Some(libc::SIGPIPE), "{output:?}");
}

/// Finding 9: with a pid file a crash left behind, `renew-cert` renews the certificates for
/// the next start and says so, instead of failing to reach a server that is not there.
#[test]
fn renew_cert_with_a_stale_pid_file_renews_for_the_next_start() {
    let mut server = Server::init();
    server.start();
    let pid_file = server.path("ward.pid");
    let running = std::fs::read_to_string(&pid_file).unwrap();
    server.terminate(Duration::from_secs(10));
    std::fs::write(&pid_file, running).unwrap(); // as a kill -9 leaves it
    let before = std::fs::read(server.path("certs/server.pem")).unwrap();
    let output = run_cli(&server, &["server", "renew-cert"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.contains("no server runs on this data dir"),
        "{stdout}"
    );
    assert_ne!(
        std::fs::read(server.path("certs/server.pem")).unwrap(),
        before
    );
    server.start();
}
