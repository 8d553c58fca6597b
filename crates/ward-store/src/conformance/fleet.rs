use serde_json::json;
use ward_fleet::{serverlist, Group, Mode, OwnSettings};

use super::Subject;
use crate::{
    AgentFilter, AgentOrder, AgentRecord, AgentTally, AuditEntry, Change, Mutation, Presence,
    Store, StoreError,
};

/// The subject's store with a fleet: the root group and the default list, made once.
pub(super) fn fleet(subject: &Subject) -> &dyn Store {
    let store = &*subject.store;
    let root = ward_fleet::group::default_root("My Company", "Default");
    let list = serverlist::build(
        "Default",
        vec![serverlist::parse_spec("1:https://mgr1:443").unwrap()],
    )
    .unwrap();
    assert!(store.initialise_fleet(&root, &list).unwrap());
    assert!(!store.initialise_fleet(&root, &list).unwrap(), "only once");
    store
}

fn audit(action: &str) -> AuditEntry {
    AuditEntry {
        id: 0,
        at_ms: 1000,
        actor: "test".into(),
        action: action.into(),
        target: "x".into(),
        before: None,
        after: Some(json!({"a": 1})),
    }
}

pub(super) fn change(mutation: Mutation) -> Change {
    Change {
        tree_version: None,
        mutation,
        bump_groups: vec![],
        bump_agents: vec![],
        audit: audit("test"),
    }
}

pub(super) fn agent(id: &str, group: i64, versions: &[&str]) -> AgentRecord {
    AgentRecord {
        id: id.into(),
        hostname: format!("host-{id}"),
        os_name: "Windows".into(),
        os_version: "XP".into(),
        agent_version: "0.1.0".into(),
        tls_versions: versions.iter().map(|v| v.to_string()).collect(),
        group,
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
    }
}

pub(super) fn root_id(store: &dyn Store) -> i64 {
    store
        .groups()
        .unwrap()
        .iter()
        .find(|g| g.parent.is_none())
        .unwrap()
        .id
}

pub(super) fn groups_round_trip_and_names_are_unique_among_siblings(subject: &Subject) {
    let store = fleet(subject);
    let root = root_id(store);
    let legacy = Group {
        id: 0,
        parent: Some(root),
        name: "Legacy XP".into(),
        own: OwnSettings {
            mode: Some(Mode::Push),
            policy: Some(json!({"x": [1, 2]})),
            ..Default::default()
        },
    };
    let applied = store
        .apply(&change(Mutation::CreateGroup(legacy.clone())))
        .unwrap();
    let id = applied.new_id.unwrap();
    let stored = store
        .groups()
        .unwrap()
        .into_iter()
        .find(|g| g.id == id)
        .unwrap();
    assert_eq!(
        stored,
        Group {
            id,
            ..legacy.clone()
        }
    );
    let error = store
        .apply(&change(Mutation::CreateGroup(legacy)))
        .unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error}");
    assert_eq!(
        store.groups().unwrap().len(),
        2,
        "nothing added by the refused change"
    );
    // Two roots named alike would also clash.
    let second_root = Group {
        id: 0,
        parent: None,
        name: "My Company".into(),
        own: OwnSettings::default(),
    };
    assert!(matches!(
        store.apply(&change(Mutation::CreateGroup(second_root))),
        Err(StoreError::Conflict(_))
    ));
}

pub(super) fn a_list_in_use_cannot_be_deleted(subject: &Subject) {
    let store = fleet(subject);
    let error = store
        .apply(&change(Mutation::DeleteServerList("Default".into())))
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "server list 'Default' is assigned to 1 group(s); assign another list first"
    );
    assert_eq!(store.server_lists().unwrap().len(), 1);
    let other = serverlist::build(
        "Other",
        vec![serverlist::parse_spec("2:http://mgr1:8014").unwrap()],
    )
    .unwrap();
    store
        .apply(&change(Mutation::CreateServerList(other.clone())))
        .unwrap();
    assert_eq!(store.server_lists().unwrap()[1], other);
    // Its entries replaced, the tree's version moves; a list that is not there is not made.
    let version = store.tree().unwrap().version;
    let edited = serverlist::build(
        "Other",
        vec![
            serverlist::parse_spec("1:https://mgr2:443").unwrap(),
            serverlist::parse_spec("2:http://mgr2:8014").unwrap(),
        ],
    )
    .unwrap();
    store
        .apply(&change(Mutation::UpdateServerList(edited.clone())))
        .unwrap();
    assert_eq!(store.server_lists().unwrap()[1], edited);
    assert!(store.tree().unwrap().version > version);
    let ghost = serverlist::build(
        "Ghost",
        vec![serverlist::parse_spec("1:https://mgr3:443").unwrap()],
    )
    .unwrap();
    assert!(matches!(
        store.apply(&change(Mutation::UpdateServerList(ghost))),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.server_lists().unwrap().len(), 2);
    store
        .apply(&change(Mutation::DeleteServerList("Other".into())))
        .unwrap();
    assert!(matches!(
        store.apply(&change(Mutation::DeleteServerList("Other".into()))),
        Err(StoreError::NotFound(_))
    ));
}

pub(super) fn serial_bumps_make_agents_pending_and_filters_find_them(subject: &Subject) {
    let store = fleet(subject);
    let root = root_id(store);
    store
        .insert_agents(&[
            agent("a1", root, &["TLSv1"]),
            agent("a2", root, &["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]),
            agent("a3", root, &[]),
        ])
        .unwrap();
    assert!(store
        .agents(&AgentFilter {
            pending: true,
            ..Default::default()
        })
        .unwrap()
        .is_empty());
    let applied = store
        .apply(&Change {
            bump_agents: vec!["a1".into()],
            ..change(Mutation::RevokeToken(-1))
        })
        .unwrap_err();
    assert!(
        matches!(applied, StoreError::NotFound(_)),
        "a failing mutation bumps nobody"
    );
    let created = store
        .apply(&Change {
            bump_groups: vec![root],
            ..change(Mutation::CreateServerList(
                serverlist::build("L", vec![serverlist::parse_spec("1:https://x:1").unwrap()])
                    .unwrap(),
            ))
        })
        .unwrap();
    assert_eq!(created.bumped_agents, 3);
    let serial = created.serial.unwrap();
    let pending = store
        .agents(&AgentFilter {
            pending: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        pending.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        vec!["a1", "a2", "a3"]
    );
    assert!(pending.iter().all(|a| a.serial == serial && a.pending()));
    let legacy = store
        .agents(&AgentFilter {
            tls_max: Some("TLSv1.1".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        legacy.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        vec!["a1", "a3"]
    );
    let never_seen = store
        .agents(&AgentFilter {
            offline_before_ms: Some(0),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(never_seen.len(), 3);
    let limited = store
        .agents(&AgentFilter {
            limit: Some(1),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(limited.len(), 1);
}

pub(super) fn agents_are_searched_sorted_and_paged_where_they_are_stored(subject: &Subject) {
    let store = fleet(subject);
    let root = root_id(store);
    let child = store
        .apply(&change(Mutation::CreateGroup(Group {
            id: 0,
            parent: Some(root),
            name: "Branch".into(),
            own: OwnSettings::default(),
        })))
        .unwrap()
        .new_id
        .unwrap();
    // Each agent as enrolled, then (but one) as its last check-in left it.
    let agents = [
        (
            "a1",
            root,
            "Web-01",
            vec!["TLSv1.2"],
            Some((5000, "https", "TLSv1.2", "h1")),
        ),
        (
            "a2",
            child,
            "db-02",
            vec!["TLSv1.2", "TLSv1.3"],
            Some((9000, "http", "TLSv1.3", "h2")),
        ),
        ("a3", root, "web-03", vec![], None),
        (
            "b_4",
            child,
            "50%-off",
            vec!["TLSv1"],
            Some((1000, "https", "TLSv1", "h1")),
        ),
    ];
    for (id, group, hostname, versions, seen) in &agents {
        let mut record = agent(id, *group, versions);
        record.hostname = hostname.to_string();
        // a1 is pending: it has not acknowledged serial 2.
        record.serial = if *id == "a1" { 2 } else { 1 };
        store.insert_agents(&[record]).unwrap();
        if let Some((at_ms, channel, version, hello)) = seen {
            store
                .record_checkin(&crate::Checkin {
                    acked_serial: 1,
                    hostname: hostname.to_string(),
                    tls_versions: versions.iter().map(|v| v.to_string()).collect(),
                    channel: channel.to_string(),
                    tls_version: Some(version.to_string()),
                    hello: Some(hello.to_string()),
                    tls_group: (*id == "a1").then(|| "X25519MLKEM768".to_string()),
                    peer: Some("192.0.2.7".into()),
                    ..checkin_of(id, *at_ms)
                })
                .unwrap();
        }
    }
    // The address of the last check-in is read back (none before the first).
    assert_eq!(
        store.agent("a1").unwrap().unwrap().peer.as_deref(),
        Some("192.0.2.7")
    );
    assert_eq!(store.agent("a3").unwrap().unwrap().peer, None);
    let presence = Presence {
        held: vec!["a3".into()],
        default_since: 4000,
        since: vec![(9500, vec![child])],
    };
    let check = |filter: AgentFilter, expected: &[&str], total: u64| {
        let ids: Vec<String> = store
            .agents(&filter)
            .unwrap()
            .into_iter()
            .map(|a| a.id)
            .collect();
        assert_eq!(ids, expected, "{filter:?}");
        assert_eq!(store.count_agents(&filter).unwrap(), total, "{filter:?}");
    };
    let search = |text: &str| AgentFilter {
        search: Some(text.into()),
        ..AgentFilter::default()
    };
    let order = |order: AgentOrder, descending: bool| AgentFilter {
        order,
        descending,
        presence: Some(presence.clone()),
        ..AgentFilter::default()
    };
    // Search: a part of the id or the host name, any ASCII case, wildcards taken literally.
    check(search("WEB"), &["a1", "a3"], 2);
    check(search("_"), &["b_4"], 1);
    check(search("%"), &["b_4"], 1);
    check(search("nobody"), &[], 0);
    check(
        AgentFilter {
            groups: Some(vec![child]),
            ..search("0")
        },
        &["a2", "b_4"],
        2,
    );
    check(
        AgentFilter {
            hello: Some("h1".into()),
            ..AgentFilter::default()
        },
        &["a1", "b_4"],
        2,
    );
    // Each order, ties by id, a missing value first; descending reverses every key.
    check(order(AgentOrder::Id, false), &["a1", "a2", "a3", "b_4"], 4);
    check(order(AgentOrder::Id, true), &["b_4", "a3", "a2", "a1"], 4);
    check(
        order(AgentOrder::Hostname, false),
        &["b_4", "a2", "a1", "a3"],
        4,
    );
    check(
        order(AgentOrder::Group, false),
        &["a1", "a3", "a2", "b_4"],
        4,
    );
    check(
        order(AgentOrder::Group, true),
        &["b_4", "a2", "a3", "a1"],
        4,
    );
    check(
        order(AgentOrder::LastCheckin, false),
        &["a3", "b_4", "a1", "a2"],
        4,
    );
    check(
        order(AgentOrder::LastCheckin, true),
        &["a2", "a1", "b_4", "a3"],
        4,
    );
    check(
        order(AgentOrder::Channel, false),
        &["a3", "a2", "a1", "b_4"],
        4,
    );
    check(
        order(AgentOrder::TlsVersion, false),
        &["a3", "b_4", "a1", "a2"],
        4,
    );
    check(
        order(AgentOrder::Highest, false),
        &["a3", "b_4", "a1", "a2"],
        4,
    );
    check(
        order(AgentOrder::Pending, false),
        &["a2", "a3", "b_4", "a1"],
        4,
    );
    // Online by the caller's rule: held now, or checked in since its group's threshold.
    check(
        order(AgentOrder::Online, false),
        &["a2", "b_4", "a1", "a3"],
        4,
    );
    check(
        AgentFilter {
            online: Some(true),
            ..order(AgentOrder::Id, false)
        },
        &["a1", "a3"],
        2,
    );
    check(
        AgentFilter {
            online: Some(false),
            ..order(AgentOrder::Id, false)
        },
        &["a2", "b_4"],
        2,
    );
    // One threshold for every group.
    check(
        AgentFilter {
            online: Some(true),
            presence: Some(Presence {
                held: Vec::new(),
                default_since: 4000,
                since: Vec::new(),
            }),
            ..AgentFilter::default()
        },
        &["a1", "a2"],
        2,
    );
    let no_rule = |online: bool| AgentFilter {
        online: Some(online),
        ..AgentFilter::default()
    };
    check(no_rule(true), &[], 0);
    check(no_rule(false), &["a1", "a2", "a3", "b_4"], 4);
    // The same fleet in figures, per channel and negotiated version.
    let mut tally = store.agent_tally(&presence).unwrap();
    tally.sort_by(|a, b| (&a.channel, &a.tls_version).cmp(&(&b.channel, &b.tls_version)));
    let row = |channel: Option<&str>, version: Option<&str>, agents, online, pending| AgentTally {
        channel: channel.map(str::to_string),
        tls_version: version.map(str::to_string),
        agents,
        online,
        pending,
        // a1 (the only one over TLSv1.2) negotiated ML-KEM.
        post_quantum: u64::from(version == Some("TLSv1.2")),
        reverted: 0,
    };
    assert_eq!(
        tally,
        vec![
            row(None, None, 1, 1, 0),
            row(Some("http"), Some("TLSv1.3"), 1, 0, 0),
            row(Some("https"), Some("TLSv1"), 1, 0, 0),
            row(Some("https"), Some("TLSv1.2"), 1, 1, 1),
        ]
    );
    // A page: the count is of everything the filter keeps.
    let page = |offset: usize, limit: Option<usize>| AgentFilter {
        offset,
        limit,
        ..AgentFilter::default()
    };
    check(page(1, Some(2)), &["a2", "a3"], 4);
    check(page(3, None), &["b_4"], 4);
    check(page(10, Some(2)), &[], 4);
    check(
        AgentFilter {
            groups: Some(Vec::new()),
            ..AgentFilter::default()
        },
        &[],
        0,
    );
}

pub(super) fn moving_an_unknown_agent_changes_nothing(subject: &Subject) {
    let store = fleet(subject);
    let root = root_id(store);
    let child = store
        .apply(&change(Mutation::CreateGroup(Group {
            id: 0,
            parent: Some(root),
            name: "Legacy".into(),
            own: OwnSettings::default(),
        })))
        .unwrap()
        .new_id
        .unwrap();
    store.insert_agents(&[agent("a1", root, &[])]).unwrap();
    let error = store
        .apply(&change(Mutation::MoveAgents {
            agents: vec!["a1".into(), "ghost".into()],
            group: child,
        }))
        .unwrap_err();
    assert_eq!(error.to_string(), "no agent 'ghost'");
    assert_eq!(
        store.agent("a1").unwrap().unwrap().group,
        root,
        "rolled back"
    );
    let audit_before = store.audit(0, 100).unwrap().len();
    store
        .apply(&Change {
            bump_agents: vec!["a1".into()],
            ..change(Mutation::MoveAgents {
                agents: vec!["a1".into()],
                group: child,
            })
        })
        .unwrap();
    let moved = store.agent("a1").unwrap().unwrap();
    assert_eq!(moved.group, child);
    assert!(moved.pending());
    assert_eq!(
        store.audit(0, 100).unwrap().len(),
        audit_before + 1,
        "audited with the change"
    );
    // A group with agents cannot be deleted.
    assert!(matches!(
        store.apply(&change(Mutation::DeleteGroup(child))),
        Err(StoreError::InUse(_))
    ));
}

pub(super) fn audit_keeps_before_and_after(subject: &Subject) {
    let store = fleet(subject);
    store
        .apply(&Change {
            audit: audit("group.create"),
            ..change(Mutation::RevokeToken(0))
        })
        .unwrap_err();
    assert!(
        store.audit(0, 10).unwrap().is_empty(),
        "a refused change is not audited"
    );
    let root = root_id(store);
    store
        .apply(&Change {
            audit: audit("group.create"),
            ..change(Mutation::CreateGroup(Group {
                id: 0,
                parent: Some(root),
                name: "G".into(),
                own: OwnSettings::default(),
            }))
        })
        .unwrap();
    let entries = store.audit(0, 10).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].action, "group.create");
    assert_eq!(entries[0].after, Some(json!({"a": 1})));
    assert_eq!(
        store.audit(2000, 10).unwrap().len(),
        0,
        "since filters by time"
    );
}

pub(super) fn retired_agents_are_gone_and_a_bad_id_retires_nobody(subject: &Subject) {
    let store = fleet(subject);
    let root = root_id(store);
    store
        .insert_agents(&[agent("a1", root, &[]), agent("a2", root, &[])])
        .unwrap();
    let error = store
        .apply(&change(Mutation::DeleteAgents(vec![
            "a1".into(),
            "ghost".into(),
        ])))
        .unwrap_err();
    assert!(matches!(error, StoreError::NotFound(_)), "{error}");
    assert!(store.agent("a1").unwrap().is_some(), "rolled back");
    store
        .apply(&change(Mutation::DeleteAgents(vec!["a1".into()])))
        .unwrap();
    assert!(store.agent("a1").unwrap().is_none());
    assert!(store.agent_public_key("a1").unwrap().is_none());
    assert!(store.agent("a2").unwrap().is_some());
}

pub(super) fn accounts_are_listed_repassworded_and_deleted_with_their_sessions(subject: &Subject) {
    let store = fleet(subject);
    for name in ["bob", "alice"] {
        store
            .apply(&change(Mutation::CreateAccount(crate::Account {
                name: name.into(),
                password_hash: "h1".into(),
                role: "admin".into(),
                disabled: false,
                credential_version: 0,
            })))
            .unwrap();
        store
            .create_session(
                &crate::Session {
                    token_sha256: format!("s-{name}"),
                    account: name.into(),
                    expires_ms: i64::MAX,
                },
                0,
            )
            .unwrap();
    }
    let names: Vec<String> = store
        .accounts()
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    store
        .apply(&change(Mutation::SetPassword {
            account: "alice".into(),
            password_hash: "h2".into(),
        }))
        .unwrap();
    assert_eq!(store.account("alice").unwrap().unwrap().password_hash, "h2");
    assert!(store.session("s-alice").unwrap().is_none(), "sessions end");
    assert!(store.session("s-bob").unwrap().is_some());
    // Disabled: kept, its sessions end; enabled again; every session of an account, or one.
    let session = |token: &str, account: &str| crate::Session {
        token_sha256: token.into(),
        account: account.into(),
        expires_ms: i64::MAX,
    };
    let version = |store: &dyn Store| store.account("alice").unwrap().unwrap().credential_version;
    store
        .create_session(&session("s-alice-2", "alice"), version(store))
        .unwrap();
    store
        .apply(&change(Mutation::SetDisabled {
            account: "alice".into(),
            disabled: true,
        }))
        .unwrap();
    assert!(store.account("alice").unwrap().unwrap().disabled);
    assert!(store.session("s-alice-2").unwrap().is_none());
    store
        .apply(&change(Mutation::SetDisabled {
            account: "alice".into(),
            disabled: false,
        }))
        .unwrap();
    assert!(!store.account("alice").unwrap().unwrap().disabled);
    store
        .create_session(&session("s-alice-3", "alice"), version(store))
        .unwrap();
    store
        .create_session(&session("s-alice-4", "alice"), version(store))
        .unwrap();
    store
        .apply(&change(Mutation::EndSession("s-alice-3".into())))
        .unwrap();
    assert!(store.session("s-alice-3").unwrap().is_none());
    assert!(store.session("s-alice-4").unwrap().is_some());
    store
        .apply(&change(Mutation::EndSessions("alice".into())))
        .unwrap();
    assert!(store.session("s-alice-4").unwrap().is_none());
    assert!(store.session("s-bob").unwrap().is_some());
    assert!(store
        .apply(&change(Mutation::EndSessions("nobody".into())))
        .is_err());
    store
        .apply(&change(Mutation::DeleteAccount("bob".into())))
        .unwrap();
    assert!(store.account("bob").unwrap().is_none());
    assert!(store.session("s-bob").unwrap().is_none());
    assert!(matches!(
        store.apply(&change(Mutation::DeleteAccount("bob".into()))),
        Err(StoreError::NotFound(_))
    ));
}

/// Every change that ends an account's sessions also ends any session a login checked
/// against the account as it was before: a stale login creates nothing.
pub(super) fn a_login_checked_against_a_stale_credential_creates_no_session(subject: &Subject) {
    let store = fleet(subject);
    store
        .apply(&change(Mutation::CreateAccount(crate::Account {
            name: "alice".into(),
            password_hash: "h1".into(),
            role: "admin".into(),
            disabled: false,
            credential_version: 7, // assigned by the store, not the caller
        })))
        .unwrap();
    let session = |token: &str| crate::Session {
        token_sha256: token.into(),
        account: "alice".into(),
        expires_ms: i64::MAX,
    };
    let changes: [(&str, Mutation); 3] = [
        (
            "new password",
            Mutation::SetPassword {
                account: "alice".into(),
                password_hash: "h2".into(),
            },
        ),
        (
            "disabled and enabled again",
            Mutation::SetDisabled {
                account: "alice".into(),
                disabled: true,
            },
        ),
        ("sessions ended", Mutation::EndSessions("alice".into())),
    ];
    for (what, mutation) in changes {
        let checked = store.account("alice").unwrap().unwrap().credential_version;
        store.apply(&change(mutation)).unwrap();
        store
            .apply(&change(Mutation::SetDisabled {
                account: "alice".into(),
                disabled: false,
            }))
            .unwrap();
        let stale = store.create_session(&session(&format!("stale {what}")), checked);
        assert!(
            matches!(stale, Err(StoreError::Conflict(_))),
            "{what}: {stale:?}"
        );
        assert!(
            store.session(&format!("stale {what}")).unwrap().is_none(),
            "{what}"
        );
        let now = store.account("alice").unwrap().unwrap().credential_version;
        assert!(now > checked, "{what}");
        store
            .create_session(&session(&format!("fresh {what}")), now)
            .unwrap();
    }
    // A disabled account gets no session, even at its current version.
    store
        .apply(&change(Mutation::SetDisabled {
            account: "alice".into(),
            disabled: true,
        }))
        .unwrap();
    let now = store.account("alice").unwrap().unwrap().credential_version;
    assert!(store.create_session(&session("disabled"), now).is_err());
    assert!(store.create_session(&session("nobody's"), 0).is_err());
}

/// A plain-HTTP check-in of agent `id` at `at_ms`, without a nonce or CAs.
pub(super) fn checkin_of(id: &str, at_ms: i64) -> crate::Checkin {
    crate::Checkin {
        agent: id.into(),
        at_ms,
        acked_serial: 0,
        hostname: "h".into(),
        os_name: "Linux".into(),
        os_version: "6".into(),
        agent_version: "0.1.0".into(),
        tls_versions: vec!["TLSv1.2".into()],
        channel: "http".into(),
        server: "http://mgr1:8014".into(),
        tls_version: None,
        tls_group: None,
        hello: None,
        peer: None,
        nonce: None,
        trusted_cas: None,
        agreement_key: None,
        reverted: None,
        reported_hello: None,
    }
}

pub(super) fn checkin_nonces_are_kept_with_the_checkin_and_pruned_past_the_window(
    subject: &Subject,
) {
    let store = fleet(subject);
    store
        .insert_agents(&[agent("a1", 1, &["TLSv1.2"])])
        .unwrap();
    let checkin = |nonce: &str, at_ms: i64| crate::Checkin {
        nonce: Some(nonce.into()),
        ..checkin_of("a1", at_ms)
    };
    let t0 = 1_800_000_000_000;
    store
        .record_checkins(&[checkin("n1", t0), checkin("n2", t0 + 1)])
        .unwrap();
    // Recorded again (a held check-in re-records): no duplicate.
    store.record_checkin(&checkin("n2", t0 + 2)).unwrap();
    let mut seen = store.recent_nonces(t0 - 1).unwrap();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("a1".to_string(), "n1".to_string(), t0),
            ("a1".to_string(), "n2".to_string(), t0 + 1)
        ]
    );
    // Reopened (as after a crash), they are still there; past the window they are pruned.
    let store = subject.reopen();
    assert_eq!(store.recent_nonces(t0 - 1).unwrap().len(), 2);
    store
        .record_checkin(&checkin("n3", t0 + crate::NONCE_WINDOW_MS + 10))
        .unwrap();
    let left: Vec<String> = store
        .recent_nonces(0)
        .unwrap()
        .into_iter()
        .map(|(_, nonce, _)| nonce)
        .collect();
    assert_eq!(left, ["n3"]);
}

pub(super) fn a_touch_moves_last_seen_forward_only_and_keeps_its_nonce(subject: &Subject) {
    let store = fleet(subject);
    store
        .insert_agents(&[agent("a1", 1, &["TLSv1.2"]), agent("a2", 1, &["TLSv1.2"])])
        .unwrap();
    let t0 = 1_800_000_000_000;
    let full = store
        .record_checkin(&checkin_of("a1", t0))
        .unwrap()
        .unwrap();
    store.record_checkin(&checkin_of("a2", t0)).unwrap();
    let touch = |id: &str, at_ms: i64, nonce: &str, server: &str| crate::Touch {
        agent: id.into(),
        at_ms,
        nonce: Some(nonce.into()),
        server: server.into(),
    };
    let server = full.server.clone().unwrap();
    let applied = store
        .touch_checkins(&[
            touch("a1", t0 + 1_000, "t1", &server),
            // Late: a later check-in is already recorded; last-seen does not move back.
            touch("a2", t0 - 5_000, "t2", &server),
            // Another server's check-in wrote other facts since: not covered up.
            touch("a2", t0 + 2_000, "t3", "https://mgr2:443"),
            touch("gone", t0 + 1_000, "t4", &server),
        ])
        .unwrap();
    assert_eq!(applied, [true, true, false, false]);
    let a1 = store.agent("a1").unwrap().unwrap();
    assert_eq!(a1.last_checkin_ms, Some(t0 + 1_000));
    // Nothing else about it changed.
    assert_eq!(
        crate::AgentRecord {
            last_checkin_ms: full.last_checkin_ms,
            ..a1
        },
        full
    );
    assert_eq!(
        store.agent("a2").unwrap().unwrap().last_checkin_ms,
        Some(t0)
    );
    // The nonces are kept for the replay window, as a full check-in's are, across a reopen.
    let store = subject.reopen();
    let mut seen: Vec<String> = store
        .recent_nonces(t0 - 10_000)
        .unwrap()
        .into_iter()
        .map(|(_, nonce, _)| nonce)
        .collect();
    seen.sort();
    assert_eq!(seen, ["t1", "t2", "t3", "t4"]);
}

pub(super) fn a_token_is_found_by_its_lookup_and_purged_a_day_after_it_expires(subject: &Subject) {
    let store = fleet(subject);
    let now = ward_proto::now_ms();
    let token = |sha: &str, expires_ms: Option<i64>| crate::TokenRecord {
        id: 0,
        group: 1,
        token_sha256: sha.into(),
        created_ms: now,
        expires_ms,
        uses_left: Some(5),
        revoked: false,
        allow_http: false,
        accept_cut_off: false,
    };
    for (sha, expires) in [
        ("sha-live", Some(now + 86_400_000)),
        ("sha-forever", None),
        ("sha-old", Some(now - 2 * 86_400_000)),
    ] {
        store
            .apply(&change(Mutation::CreateToken(token(sha, expires))))
            .unwrap();
    }
    let lookup = ward_proto::enroll::token_lookup("sha-live");
    let found = store.token_by_lookup(&lookup).unwrap().unwrap();
    assert_eq!(found.token_sha256, "sha-live");
    assert!(store.token_by_lookup("not-a-lookup").unwrap().is_none());
    store.prune_telemetry(0, now - 86_400_000).unwrap();
    let left: Vec<String> = store
        .tokens()
        .unwrap()
        .into_iter()
        .map(|t| t.token_sha256)
        .collect();
    assert_eq!(left, ["sha-live", "sha-forever"]);
}

pub(super) fn the_cas_an_agent_trusts_are_replaced_at_each_checkin_and_shared_when_equal(
    subject: &Subject,
) {
    let store = fleet(subject);
    store
        .insert_agents(&[agent("a1", 1, &["TLSv1.2"]), agent("a2", 1, &["TLSv1.2"])])
        .unwrap();
    let (old, new) = ("a".repeat(64), "b".repeat(64));
    let checkin = |id: &str, at_ms: i64, trusted: Option<String>| crate::Checkin {
        trusted_cas: trusted,
        ..checkin_of(id, at_ms)
    };
    let both = format!("{old},{new}");
    let t0 = 1_800_000_000_000;
    store
        .record_checkins(&[
            checkin("a1", t0, Some(both.clone())),
            checkin("a2", t0, Some(both.clone())),
        ])
        .unwrap();
    let read = |store: &dyn Store| {
        let mut agents = store.agents_tls().unwrap();
        agents.sort_by(|a, b| a.id.cmp(&b.id));
        agents
    };
    let agents = read(store);
    assert!(agents
        .iter()
        .all(|a| a.trusts_ca(&old) && a.trusts_ca(&new)));
    assert!(!agents[0].trusts_ca(&"c".repeat(64)));
    assert!(std::sync::Arc::ptr_eq(
        agents[0].trusted_cas.as_ref().unwrap(),
        agents[1].trusted_cas.as_ref().unwrap()
    ));
    // An agent that stops saying (an older build put back) trusts what it was enrolled with.
    store.record_checkin(&checkin("a1", t0 + 1, None)).unwrap();
    let agents = read(store);
    assert_eq!(agents[0].trusted_cas, None);
    assert!(!agents[0].trusts_ca(&old));
    assert!(agents[1].trusts_ca(&new));
    // The agreement key a check-in was signed under is kept until another is recorded.
    assert_eq!(agents[0].agreement_key, None);
    let signed = |key: &str| crate::Checkin {
        agreement_key: Some(key.into()),
        ..checkin("a1", t0 + 2, None)
    };
    store.record_checkin(&signed(&old)).unwrap();
    store.record_checkin(&checkin("a1", t0 + 3, None)).unwrap();
    assert_eq!(read(store)[0].agreement_key.as_deref(), Some(old.as_str()));
    store.record_checkin(&signed(&new)).unwrap();
    assert_eq!(read(store)[0].agreement_key.as_deref(), Some(new.as_str()));
}

/// A token's use is taken only while the rule it was checked by holds: a second enrollment
/// that read the last use left gets `Stale` (it re-reads and checks the rule again), so a
/// one-use token enrolls one agent however the enrollments interleave, while enrollments that
/// read the same uses of a token with more left all get one (a fleet enrolling at once); a
/// revoked token takes no use; nothing of a refused enrollment is written.
pub(super) fn a_token_use_is_taken_only_while_its_rule_holds(subject: &Subject) {
    let store = fleet(subject);
    let root = root_id(store);
    let applied = store
        .apply(&change(Mutation::CreateToken(crate::TokenRecord {
            id: 0,
            group: root,
            token_sha256: "sha-one".into(),
            created_ms: 0,
            expires_ms: None,
            uses_left: Some(1),
            revoked: false,
            allow_http: false,
            accept_cut_off: false,
        })))
        .unwrap();
    let id = applied.new_id.unwrap();
    let read = store
        .token_by_lookup(&ward_proto::enroll::token_lookup("sha-one"))
        .unwrap()
        .unwrap();
    assert_eq!(read.refusal(0), None);
    let enroll = |agent_id: &str, token: crate::TokenUse| {
        store.apply(&change(Mutation::Enroll {
            agent: Box::new(agent(agent_id, root, &["TLSv1.2"])),
            public_key: format!("key-{agent_id}"),
            token,
        }))
    };
    // Both read uses_left = 1; the first takes it.
    enroll("first", read.one_use()).unwrap();
    let error = enroll("second", read.one_use()).unwrap_err();
    assert!(matches!(error, StoreError::Stale(_)), "{error:?}");
    assert!(store.agent("second").unwrap().is_none(), "nothing written");
    let again = store
        .tokens()
        .unwrap()
        .into_iter()
        .find(|t| t.id == id)
        .unwrap();
    assert_eq!(again.uses_left, Some(0));
    assert_eq!(again.refusal(0), Some("the enrollment token is used up"));
    // Two uses left, read by three enrollments at once: two get one, the third is stale.
    let two = store
        .apply(&change(Mutation::CreateToken(crate::TokenRecord {
            token_sha256: "sha-two".into(),
            uses_left: Some(2),
            ..again.clone()
        })))
        .unwrap()
        .new_id
        .unwrap();
    let read_two = crate::TokenUse {
        id: two,
        uses_left: Some(2),
    };
    enroll("two-a", read_two).unwrap();
    enroll("two-b", read_two).unwrap();
    let error = enroll("two-c", read_two).unwrap_err();
    assert!(matches!(error, StoreError::Stale(_)), "{error:?}");
    assert!(store.agent("two-c").unwrap().is_none(), "nothing written");
    // Revoked after it was read: the read use is stale too.
    let unlimited = store
        .apply(&change(Mutation::CreateToken(crate::TokenRecord {
            token_sha256: "sha-many".into(),
            uses_left: None,
            ..again.clone()
        })))
        .unwrap()
        .new_id
        .unwrap();
    let many = crate::TokenUse {
        id: unlimited,
        uses_left: None,
    };
    enroll("third", many).unwrap();
    store
        .apply(&change(Mutation::RevokeToken(unlimited)))
        .unwrap();
    let error = enroll("fourth", many).unwrap_err();
    assert!(matches!(error, StoreError::Stale(_)), "{error:?}");
}

/// Two servers on one database: each checks a move against the tree it read; the second
/// move, checked against a tree the first changed, is refused as stale and writes nothing, so
/// the stored tree never gets a cycle two checks each passed.
pub(super) fn a_change_checked_against_a_stale_tree_is_refused(subject: &Subject) {
    let one = fleet(subject);
    // A second handle on the same database: another server, or the same one restarted.
    let two = subject.reopen();
    let two = &*two;
    let root = root_id(one);
    let group = |name: &str| Group {
        id: 0,
        parent: Some(root),
        name: name.into(),
        own: OwnSettings::default(),
    };
    let a = one
        .apply(&change(Mutation::CreateGroup(group("A"))))
        .unwrap()
        .new_id
        .unwrap();
    let b = one
        .apply(&change(Mutation::CreateGroup(group("B"))))
        .unwrap()
        .new_id
        .unwrap();
    let seen_by_one = one.tree().unwrap();
    let seen_by_two = two.tree().unwrap();
    assert_eq!(seen_by_one.version, seen_by_two.version);
    assert_eq!(seen_by_one.groups, seen_by_two.groups);
    // One moves A under B; two, from the same read, moves B under A.
    one.apply(&Change {
        tree_version: Some(seen_by_one.version),
        ..change(Mutation::MoveGroup { id: a, parent: b })
    })
    .unwrap();
    let audit_before = two.audit(0, 100).unwrap().len();
    let error = two
        .apply(&Change {
            tree_version: Some(seen_by_two.version),
            ..change(Mutation::MoveGroup { id: b, parent: a })
        })
        .unwrap_err();
    assert!(matches!(error, StoreError::Stale(_)), "{error:?}");
    assert_eq!(two.audit(0, 100).unwrap().len(), audit_before);
    let now = two.tree().unwrap();
    assert!(now.version > seen_by_two.version);
    let parent_of = |id| now.groups.iter().find(|g| g.id == id).unwrap().parent;
    assert_eq!(parent_of(a), Some(b));
    assert_eq!(parent_of(b), Some(root));
    ward_fleet::Tree::new(now.groups.clone()).expect("still a tree");
    // Read again, the change is judged against the new tree (and would be refused above the
    // store as a cycle); a change that states no version is not checked.
    one.apply(&change(Mutation::CreateGroup(group("C"))))
        .unwrap();
    // Changes to agents or tokens leave the tree's version alone.
    let before = one.tree().unwrap().version;
    one.insert_agents(&[agent("x", root, &[])]).unwrap();
    one.apply(&change(Mutation::MoveAgents {
        agents: vec!["x".into()],
        group: a,
    }))
    .unwrap();
    assert_eq!(one.tree().unwrap().version, before);
}
