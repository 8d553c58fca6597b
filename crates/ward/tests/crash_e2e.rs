//! Crash safety at every step that writes state: for each named fault point (`ward_fs::fault`,
//! compiled into test builds only) in the renewal, the CA and agreement key rotations (start,
//! switch, abort), harden's apply, init, restore and the agent's settings file, the process is
//! killed there with SIGKILL; then the server must start again, every key, certificate and
//! conf file must be whole (the old bytes, or a new file of its kind that parses), nothing
//! half-made may be left, real agents (one of each kind) must keep checking in, and the step
//! must be possible to finish.

mod support;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;
use ward_server::datadir::{FileKind, REQUIRED_FILES};

/// The directories whose files must be whole at every instant.
const STATE_DIRS: [&str; 3] = ["certs", "keys", "conf/ssl"];

/// The files of [`STATE_DIRS`], by path relative to the data dir.
fn snapshot(data: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for dir in STATE_DIRS {
        for entry in std::fs::read_dir(data.join(dir)).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                let relative = format!("{dir}/{}", entry.file_name().to_string_lossy());
                files.insert(relative, std::fs::read(entry.path()).unwrap());
            }
        }
    }
    files
}

/// After a crash and a start: every file is the one it was or a whole file of its kind, no
/// temporary or staged file is left, no journal is pending.
fn check_whole(data: &Path, before: &BTreeMap<String, Vec<u8>>, point: &str) {
    assert!(
        !data.join("commit.json").exists(),
        "{point}: a journal is still pending after the start"
    );
    assert!(
        !data.join("certs/switch").exists(),
        "{point}: staged certificates left"
    );
    for (path, bytes) in snapshot(data) {
        let name = Path::new(&path).file_name().unwrap().to_string_lossy();
        assert!(!name.starts_with('.'), "{point}: {path} was left half-made");
        if before.get(&path) == Some(&bytes) {
            continue;
        }
        // A conf file's backup (`NAME.STAMP.bak`) is a conf file too.
        let kind = if path.ends_with(".bak") {
            Some(FileKind::TlsConf)
        } else {
            FileKind::of(Path::new(&path))
        }
        .unwrap_or_else(|| panic!("{point}: {path} is no file of a data dir"));
        if let Err(why) = kind.check(&bytes) {
            panic!("{point}: {path} is neither the old file nor a whole new one: {why}");
        }
    }
    for required in REQUIRED_FILES {
        assert!(data.join(required).is_file(), "{point}: {required} is gone");
    }
}

/// A fleet of each kind of agent, and the policy round that proves they still check in.
struct Crashes {
    server: Server,
    fleet: Fleet,
    round: u32,
    points: usize,
}

impl Crashes {
    fn new() -> Crashes {
        let (server, fleet) = fleet_of_each_kind();
        Crashes {
            server,
            fleet,
            round: 0,
            points: 0,
        }
    }

    /// Restarts the server with `point` armed, runs `ward STEP`, which must kill the server at
    /// that point, then starts it again and checks the files and the agents.
    fn at(&mut self, point: &str, step: &[&str]) {
        let data = self.server.data();
        let before = snapshot(&data);
        self.server.terminate(Duration::from_secs(10));
        self.server
            .start_with_env(&[], &[("WARD_FAULT_POINT", point)]);
        let output = run_cli(&self.server, step);
        let status = self
            .server
            .wait_exit(Duration::from_secs(60))
            .unwrap_or_else(|| {
                panic!(
                    "{point}: `ward {step:?}` never reached it ({}): {}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                )
            });
        assert_eq!(status.signal(), Some(9), "{point}: {status:?}");
        self.server.start();
        check_whole(&data, &before, point);
        self.round += 1;
        self.fleet.all_check_in_again(&self.server, self.round);
        self.points += 1;
    }

    /// `ward ARGS --json`, which must exit 0.
    fn ok(&self, args: &[&str]) -> serde_json::Value {
        cli(&self.server, args)
    }

    /// Waits until every agent has acknowledged the rotation under way (`status` exits 0).
    fn acknowledged(&self, which: &str) {
        eventually(Duration::from_secs(60), || {
            let output = run_cli(&self.server, &["server", which, "status"]);
            output.status.success().then_some(())
        })
        .unwrap_or_else(|| panic!("{which}: the agents never acknowledged"));
    }

    fn under_way(&self, which: &str) -> bool {
        self.ok(&["server", which, "status"])["under_way"] == true
    }
}

const COMMIT_STEPS: [&str; 4] = ["staged", "journaled", "renamed", "applied"];

fn commit_points(label: &str) -> Vec<String> {
    COMMIT_STEPS
        .iter()
        .map(|step| format!("{label}:{step}"))
        .collect()
}

#[test]
fn a_crash_at_any_step_of_a_renewal_leaves_a_server_that_starts() {
    let mut crashes = Crashes::new();
    for point in commit_points("renew-cert") {
        crashes.at(&point, &["server", "renew-cert"]);
    }
    let renewed = crashes.ok(&["server", "renew-cert"]);
    assert_eq!(
        renewed["renewed"].as_array().map(Vec::len),
        Some(2),
        "{renewed}"
    );
    assert_eq!(crashes.points, 4);
}

#[test]
fn a_crash_at_any_step_of_a_ca_rotation_leaves_a_server_that_starts_and_agents_that_check_in() {
    let mut crashes = Crashes::new();
    let start = ["server", "rotate-ca", "start"];
    let mut points = commit_points("rotate-ca-start");
    points.extend(["commit:files-in-place".into(), "commit:followed-up".into()]);
    for point in &points {
        crashes.at(point, &start);
        // Started again (a new CA, or the one under way handed out again): never wedged.
        crashes.ok(&start);
    }
    for point in commit_points("rotate-ca-abort") {
        if !crashes.under_way("rotate-ca") {
            crashes.ok(&start);
        }
        crashes.at(&point, &["server", "rotate-ca", "abort"]);
    }
    for point in commit_points("rotate-ca-switch") {
        if !crashes.under_way("rotate-ca") {
            crashes.ok(&start);
        }
        crashes.acknowledged("rotate-ca");
        crashes.at(&point, &["server", "rotate-ca", "switch"]);
    }
    // Whatever the last crash left, the rotation can be finished, and the listener serves a
    // certificate of the CA the agents are told to trust.
    if crashes.under_way("rotate-ca") {
        crashes.acknowledged("rotate-ca");
        crashes.ok(&["server", "rotate-ca", "switch"]);
    }
    crashes.round += 1;
    crashes
        .fleet
        .all_check_in_again(&crashes.server, crashes.round);
    // Killed after its journal (three of the four points), a switch is finished by the next
    // start, its audit entry with it.
    let audit = cli(&crashes.server, &["audit"]);
    let recovered = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "server.ca.switch" && e["after"]["recovered"] == true)
        .count();
    assert_eq!(
        recovered, 3,
        "every switch a start finished is audited: {audit}"
    );
    assert_eq!(crashes.points, 14);
}

#[test]
fn a_crash_at_any_step_of_a_key_rotation_leaves_a_server_that_starts_and_agents_that_check_in() {
    let mut crashes = Crashes::new();
    let start = ["server", "rotate-key", "start"];
    for point in commit_points("rotate-key-start") {
        crashes.at(&point, &start);
        crashes.ok(&start);
    }
    for point in commit_points("rotate-key-abort") {
        if !crashes.under_way("rotate-key") {
            crashes.ok(&start);
        }
        crashes.acknowledged("rotate-key");
        crashes.at(&point, &["server", "rotate-key", "abort"]);
        // The abort is finished: agents go back to the current key, then it is removed.
        eventually(Duration::from_secs(60), || {
            let answer = run_cli(
                &crashes.server,
                &["server", "rotate-key", "abort", "--json"],
            );
            let body: serde_json::Value =
                serde_json::from_slice(&answer.stdout).unwrap_or_default();
            (body["aborted"] == true || body["error"]["code"] == "no_rotation").then_some(())
        })
        .unwrap_or_else(|| panic!("{point}: the abort never finished"));
    }
    for point in commit_points("rotate-key-switch") {
        if !crashes.under_way("rotate-key") {
            crashes.ok(&start);
        }
        crashes.acknowledged("rotate-key");
        crashes.at(&point, &["server", "rotate-key", "switch"]);
    }
    if crashes.under_way("rotate-key") {
        crashes.acknowledged("rotate-key");
        crashes.ok(&["server", "rotate-key", "switch"]);
    }
    crashes.round += 1;
    crashes
        .fleet
        .all_check_in_again(&crashes.server, crashes.round);
    assert_eq!(crashes.points, 12);
}

/// The agent itself, killed while it saves settings that carry a new agreement key: it starts
/// again from the file as it was (or as it was meant to be) and keeps checking in.
#[test]
fn an_agent_killed_while_it_saves_its_settings_starts_again_and_checks_in() {
    let server = fast_server();
    let url = format!("https://127.0.0.1:{}", server.clients);
    let token = group_token(&server, "My Company", false);
    let dir = enroll(&server, &url, &token, None);
    let state = dir.path().to_path_buf();
    let mut child = Command::new(ward_bin())
        .args(["agent", "run", "--state"])
        .arg(&state)
        .env("WARD_FAULT_POINT", "write:agent.json")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // New settings (a key rotation's) make it save: it dies there.
    cli(&server, &["server", "rotate-key", "start"]);
    let status = eventually(Duration::from_secs(30), || child.try_wait().unwrap())
        .expect("the agent reached the point");
    assert_eq!(status.signal(), Some(9));
    let names: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with(".agent.json.tmp-")),
        "killed between its temporary file and the rename: {names:?}"
    );
    let agent = start_agent(dir, None);
    agent.until(Duration::from_secs(30), |s| {
        !s["last_checkin"].is_null() && s["last_error"].is_null()
    });
    // It adopted the key (its settings carried it), so the switch finds nobody behind.
    eventually(Duration::from_secs(30), || {
        run_cli(&server, &["server", "rotate-key", "status"])
            .status
            .success()
            .then_some(())
    })
    .expect("the restarted agent signs under the next key");
    cli(&server, &["server", "rotate-key", "switch"]);
    agent.until(Duration::from_secs(30), |s| s["last_error"].is_null());
    let names: Vec<String> = std::fs::read_dir(agent.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.contains(".tmp-")),
        "the restarted agent cleaned what the crash left: {names:?}"
    );
}

/// Harden's apply edits both conf files and its state: killed at each write, the server
/// starts on whole files, the agents keep checking in, and `--resume` finishes the harden.
#[test]
fn a_crash_while_harden_writes_is_finished_by_resume() {
    let mut crashes = Crashes::new();
    let words = "all -SSLv2 -SSLv3 -TLSv1";
    for point in [
        "write:state.json",
        "write:ssl.conf",
        "write:sslforclients.conf",
    ] {
        crashes.at(point, &["tls", "harden", "--protocol", words, "--yes"]);
        let mut resumed = run_cli(&crashes.server, &["tls", "harden", "--resume", "--yes"]);
        if String::from_utf8_lossy(&resumed.stderr).contains("no interrupted harden") {
            // Killed before harden recorded anything: it is simply run again.
            resumed = run_cli(
                &crashes.server,
                &["tls", "harden", "--protocol", words, "--yes"],
            );
        }
        assert!(
            resumed.status.success(),
            "{point}: {}{}",
            String::from_utf8_lossy(&resumed.stdout),
            String::from_utf8_lossy(&resumed.stderr)
        );
        for file in ["ssl.conf", "sslforclients.conf"] {
            let text =
                std::fs::read_to_string(crashes.server.path(&format!("conf/ssl/{file}"))).unwrap();
            assert!(
                text.lines()
                    .any(|l| l.trim() == format!("SSLProtocol {words}")),
                "{point}: {file} hardened:\n{text}"
            );
        }
        let rolled_back = run_cli(&crashes.server, &["tls", "rollback", "--yes"]);
        assert!(rolled_back.status.success(), "{point}: {rolled_back:?}");
    }
}

/// A `ward` command run with `point` armed, which must be killed there.
fn killed_at(point: &str, args: &[&str]) {
    let output = Command::new(ward_bin())
        .args(args)
        .env("WARD_FAULT_POINT", point)
        .output()
        .unwrap();
    assert_eq!(
        output.status.signal(),
        Some(9),
        "{point}: `ward {args:?}` was not killed there: {output:?}"
    );
}

#[test]
fn a_crash_during_init_or_restore_is_finished_by_running_it_again() {
    for point in ["write:server.key", "write:agreement.key", "write:ward.toml"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let data = data.to_str().unwrap();
        let init = [
            "server",
            "init",
            "--data",
            data,
            "--console-addr",
            "127.0.0.1:1",
            "--clients-addr",
            "127.0.0.1:2",
            "--clients-http-addr",
            "127.0.0.1:3",
        ];
        killed_at(point, &init);
        assert!(
            !Path::new(data).join("ward.toml").exists(),
            "{point}: a half-made data dir does not pass for initialised"
        );
        let again = ward(&init);
        assert!(again.status.success(), "{point}: {again:?}");
        check_whole(Path::new(data), &BTreeMap::new(), point);
        let configtest = ward(&["server", "configtest", "--data", data]);
        assert!(configtest.status.success(), "{point}: {configtest:?}");
    }

    let server = Server::init();
    let work = tempfile::tempdir().unwrap();
    let backup = work.path().join("ward.backup");
    let output = run_cli(
        &server,
        &["server", "backup", "--out", backup.to_str().unwrap()],
    );
    assert!(output.status.success(), "{output:?}");
    let target = work.path().join("restored");
    killed_at(
        "restore:before-rename",
        &[
            "server",
            "restore",
            "--from",
            backup.to_str().unwrap(),
            "--data",
            target.to_str().unwrap(),
        ],
    );
    assert!(!target.exists(), "nothing is restored until all of it is");
    let again = ward(&[
        "server",
        "restore",
        "--from",
        backup.to_str().unwrap(),
        "--data",
        target.to_str().unwrap(),
    ]);
    assert!(again.status.success(), "{again:?}");
    let left: Vec<String> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left.iter().filter(|n| n.starts_with('.')).count(),
        0,
        "the crashed restore's staging is gone: {left:?}"
    );
    let configtest = ward(&["server", "configtest", "--data", target.to_str().unwrap()]);
    assert!(configtest.status.success(), "{configtest:?}");
}

/// Every fault point in the code is one a test above kills the process at (or a commit's,
/// whose four steps are named by its label).
#[test]
fn every_fault_point_is_tested() {
    let tested = include_str!("crash_e2e.rs");
    let mut sources = Vec::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "tests" || name == "target" || name == "tests.rs" {
                continue;
            }
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                sources.push(std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut named = Vec::new();
    for source in &sources {
        for (marker, is_label) in [("fault::point(\"", false), ("Commit::new(\"", true)] {
            for piece in source.split(marker).skip(1) {
                let name = piece.split('"').next().unwrap().to_string();
                named.push((name, is_label));
            }
        }
    }
    assert!(named.len() >= 10, "{named:?}");
    for (name, is_label) in named {
        let needle = if is_label {
            format!("commit_points(\"{name}\")")
        } else {
            format!("\"{name}\"")
        };
        assert!(
            tested.contains(&needle),
            "the fault point {name} is not tested here"
        );
    }
}

/// No live file under `certs/`, `keys/` or `conf/` is ever opened for writing: `strace` of a
/// server through a renewal, both rotations (start, switch, abort) sees only exclusive
/// creations of temporary and staged files.
#[test]
fn no_live_file_is_opened_for_writing() {
    let strace = ward_testkit::tool("strace", "strace");
    let mut server = Server::init();
    let trace = server.dir.path().join("openat.trace");
    let log = std::fs::File::create(&server.log).unwrap();
    let mut child = Command::new(strace)
        .args([
            "-f",
            "-e",
            "trace=openat,open,creat,truncate,ftruncate",
            "-o",
        ])
        .arg(&trace)
        .arg(ward_bin())
        .args(["server", "--data", &server.data_str()])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", server.console))
            .ok()
            .map(drop)
    })
    .expect("the traced server answers");
    for step in [
        &["server", "renew-cert"][..],
        &["server", "rotate-ca", "start"],
        &["server", "rotate-ca", "switch"],
        &["server", "rotate-ca", "start"],
        &["server", "rotate-ca", "abort"],
        &["server", "rotate-key", "start"],
        &["server", "rotate-key", "switch"],
        &["server", "rotate-key", "start"],
        &["server", "rotate-key", "abort"],
    ] {
        let output = run_cli(&server, step);
        assert!(output.status.success(), "{step:?}: {output:?}");
    }
    // The server under strace stops; strace ends with it.
    let pid: i32 = std::fs::read_to_string(server.path("ward.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    send_signal(pid, 15);
    let _ = child.wait();
    let text = std::fs::read_to_string(&trace).unwrap();
    let state: Vec<&str> = text
        .lines()
        .filter(|l| {
            ["/certs/", "/keys/", "/conf/"]
                .iter()
                .any(|d| l.contains(d))
        })
        .collect();
    let writes: Vec<&&str> = state
        .iter()
        .filter(|l| {
            ["O_WRONLY", "O_RDWR", "O_TRUNC", "truncate("]
                .iter()
                .any(|w| l.contains(w))
        })
        .collect();
    assert!(writes.len() >= 20, "the steps wrote files: {writes:#?}");
    for line in writes {
        let exclusive = line.contains("O_CREAT|O_EXCL") && !line.contains("O_TRUNC");
        let fresh = line.contains("/.") && (line.contains(".tmp-") || line.contains(".staged"));
        assert!(exclusive && fresh, "a live file opened for writing: {line}");
    }
    server.child = None;
}

/// A server of a site killed at every step of taking the site's files (another server's CA
/// rotation): it starts again with every file whole, holds the site's files, and serves; the
/// site goes on (the switch through the other server takes it along).
#[test]
fn a_crash_while_a_server_takes_the_sites_files_leaves_a_server_that_starts() {
    let cluster = ward_testkit::pg::Cluster::start();
    let url = cluster.uri();
    let mut first = Server::init_with(&["--database", &url]);
    let mut second = Server::init_with(&["--database", &url]);
    first.start();
    let data = second.data();
    // Each round makes the site's files change once: a rotation started, then aborted.
    let steps: [&[&str]; 2] = [
        &["server", "rotate-ca", "start"],
        &["server", "rotate-ca", "abort"],
    ];
    for (round, point) in commit_points("site-take").iter().enumerate() {
        let before = snapshot(&data);
        second.start_with_env(&[], &[("WARD_FAULT_POINT", point)]);
        let output = run_cli(&first, steps[round % 2]);
        assert!(output.status.success(), "{output:?}");
        let status = second
            .wait_exit(Duration::from_secs(60))
            .unwrap_or_else(|| {
                panic!(
                    "{point}: the second server never reached it: {}",
                    second.log_text()
                )
            });
        assert_eq!(status.signal(), Some(9), "{point}: {status:?}");
        second.start();
        check_whole(&data, &before, point);
        for shared in ["certs/ca.pem", "certs/ca.key", "keys/agreement.key"] {
            assert_eq!(
                std::fs::read(data.join(shared)).unwrap(),
                std::fs::read(first.path(shared)).unwrap(),
                "{point}: {shared} is the site's"
            );
        }
        assert_eq!(
            data.join("certs/ca-next.pem").exists(),
            first.path("certs/ca-next.pem").exists(),
            "{point}: the rotation under way is the site's"
        );
        let health = https_get(second.clients, &first.ca_pem(), "/healthz", None);
        assert_eq!(health.status, 200, "{point}");
        second.terminate(Duration::from_secs(10));
    }
}
