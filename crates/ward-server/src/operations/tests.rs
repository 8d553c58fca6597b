//! The operations as a second front end would call them: typed requests straight in, typed
//! answers or refusals out, on an `App` over a fresh data dir, with no listener and no HTTP.
//! One table: each step, and what it must answer (or the refusal's status, code and words).

use ward_api::fleet::{GroupPatch, MoveGroup, NewAccount, NewGroup, NewServerList, NewToken, Role};

use super::*;
use crate::auth::{Caller, Role as CallerRole};
use crate::state::test_app;

enum Step {
    Group(&'static str, &'static str),
    Move(&'static str, &'static str),
    Interval(&'static str, &'static str),
    UseList(&'static str, &'static str),
    DeleteGroup(&'static str),
    List(&'static str, &'static [&'static str]),
    DeleteList(&'static str),
    Token(&'static str, &'static str),
    Account(&'static str, Role),
}

/// The id of the group at `path`, as the API names it.
fn id_of(app: &App, path: &str) -> String {
    let tree = crate::ops::tree_of(&*app.store).unwrap();
    match tree.find(path) {
        Ok(Some(id)) => id.to_string(),
        _ => "999999".into(), // no such group: the operation says so
    }
}

async fn run(app: &App, caller: &Caller, step: &Step) -> Result<(), ApiError> {
    match *step {
        Step::Group(name, parent) => {
            let request = NewGroup {
                name: name.into(),
                parent: Some(parent.into()),
            };
            groups::create(app, caller, request).await.map(drop)
        }
        Step::Move(path, parent) => {
            let request = MoveGroup {
                parent: parent.into(),
                accept_cut_off: false,
            };
            groups::move_group(app, caller, id_of(app, path), request)
                .await
                .map(drop)
        }
        Step::Interval(path, interval) => {
            let patch = GroupPatch {
                interval: Some(interval.into()),
                ..GroupPatch::default()
            };
            groups::update(app, caller, id_of(app, path), patch)
                .await
                .map(drop)
        }
        Step::UseList(path, list) => {
            let patch = GroupPatch {
                server_list: Some(list.into()),
                ..GroupPatch::default()
            };
            groups::update(app, caller, id_of(app, path), patch)
                .await
                .map(drop)
        }
        Step::DeleteGroup(path) => groups::delete(app, caller, id_of(app, path))
            .await
            .map(drop),
        Step::List(name, servers) => {
            let request = NewServerList {
                name: name.into(),
                servers: servers.iter().map(|s| s.to_string()).collect(),
            };
            serverlists::create(app, caller, request).await.map(drop)
        }
        Step::DeleteList(name) => serverlists::delete(app, caller, name.into())
            .await
            .map(drop),
        Step::Token(group, expires) => {
            let request = NewToken {
                group: group.into(),
                expires: Some(expires.into()),
                uses: Some(3),
                allow_http: None,
                accept_cut_off: None,
            };
            tokens::create(app, caller, request).await.map(drop)
        }
        Step::Account(name, role) => {
            let request = NewAccount {
                name: name.into(),
                password: "a long enough password".into(),
                role,
            };
            accounts::create(app, caller, request).await.map(drop)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_answer_typed_outcomes_without_a_listener() {
    use Step::*;
    let (_dir, app) = test_app();
    let caller = Caller {
        name: "table".into(),
        role: CallerRole::Admin,
        session: None,
    };
    let root = "My Company";
    // (step, None for success or Some((status, code, words the message holds)))
    type Refused = Option<(u16, &'static str, &'static str)>;
    let table: Vec<(Step, Refused)> = vec![
        (Group("A", root), None),
        (Group("B", root), None),
        (Group("A", root), Some((409, "conflict", "A"))),
        (
            Group("C", "My Company/Nowhere"),
            Some((409, "unknown_reference", "parent: no group")),
        ),
        (Group("..", root), Some((400, "bad_request", "name"))),
        (Move("My Company/A", "My Company/B"), None),
        // B under its own child: a cycle, refused above the store, nothing changed.
        (
            Move("My Company/B", "My Company/B/A"),
            Some((409, "conflict", "")),
        ),
        (Interval("My Company/B", "90s"), None),
        (
            Interval("My Company/B", "500ms"),
            Some((400, "bad_request", "interval")),
        ),
        (List("Legacy", &["1:http://mgr1:8014"]), None),
        (
            List("Legacy", &["1:http://mgr1:8014"]),
            Some((409, "conflict", "Legacy")),
        ),
        (
            List("Twice", &["1:https://mgr1:443", "2:https://mgr1:443"]),
            Some((400, "bad_request", "listed twice")),
        ),
        (UseList("My Company/B", "Legacy"), None),
        (
            UseList("My Company/B", "Missing"),
            Some((
                409,
                "unknown_reference",
                "server_list: no server list 'Missing'",
            )),
        ),
        (DeleteList("Legacy"), Some((409, "in_use", "Legacy"))),
        // B has a child: the store refuses, and nothing is deleted.
        (DeleteGroup("My Company/B"), Some((409, "in_use", ""))),
        (DeleteGroup("My Company/B/A"), None),
        (DeleteGroup("My Company/B"), None),
        (DeleteList("Legacy"), None),
        (DeleteGroup(root), Some((409, "in_use", "root"))),
        (Token(root, "7d"), None),
        (
            Token(root, "30s"),
            Some((400, "bad_request", "shorter than a minute")),
        ),
        (
            Token("My Company/B", "7d"),
            Some((409, "unknown_reference", "group: no group")),
        ),
        (Account("alice", Role::Auditor), None),
        (
            Account("alice", Role::Admin),
            Some((409, "conflict", "alice")),
        ),
        (
            Account("Local-Admin", Role::Admin),
            Some((400, "bad_request", "names the local admin token")),
        ),
        (
            Account("agent:x", Role::Admin),
            Some((400, "bad_request", "cannot contain ':'")),
        ),
    ];
    for (index, (step, expected)) in table.iter().enumerate() {
        let audit_before = app.store.audit(0, 10_000).unwrap().len();
        let outcome = run(&app, &caller, step).await;
        let audit_after = app.store.audit(0, 10_000).unwrap().len();
        match (expected, outcome) {
            (None, Ok(())) => assert_eq!(audit_after, audit_before + 1, "step {index}: audited"),
            (Some((status, code, words)), Err(error)) => {
                assert_eq!(error.status.as_u16(), *status, "step {index}: {error:?}");
                assert_eq!(error.code, *code, "step {index}: {error:?}");
                assert!(
                    error.message.contains(words),
                    "step {index}: {:?} lacks {words:?}",
                    error.message
                );
                assert_eq!(
                    audit_after, audit_before,
                    "step {index}: a refusal changes nothing"
                );
            }
            (expected, outcome) => panic!("step {index}: expected {expected:?}, got {outcome:?}"),
        }
    }
    // What the table left: root alone, with its own list.
    let tree = crate::ops::tree_of(&*app.store).unwrap();
    assert_eq!(tree.groups().count(), 1);
}
