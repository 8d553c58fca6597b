use super::*;
use serde_json::json;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn root() -> Group {
    Group {
        id: 1,
        parent: None,
        name: "My Company".into(),
        own: OwnSettings {
            server_list: Some("Default".into()),
            interval: Some(secs(300)),
            randomize: Some(secs(60)),
            mode: Some(Mode::Pull),
            policy: Some(json!({"av": "on"})),
        },
    }
}

fn group(id: GroupId, parent: GroupId, name: &str, own: OwnSettings) -> Group {
    Group {
        id,
        parent: Some(parent),
        name: name.into(),
        own,
    }
}

/// My Company (1)
/// ├── Servers (2): push
/// │   └── Web (4): interval 60s
/// └── Legacy XP (3): server list "HTTP 8014", policy {"av": "legacy"}
///     └── Kiosks (5): inherits everything
fn tree() -> Tree {
    Tree::new([
        root(),
        group(
            2,
            1,
            "Servers",
            OwnSettings {
                mode: Some(Mode::Push),
                ..Default::default()
            },
        ),
        group(
            3,
            1,
            "Legacy XP",
            OwnSettings {
                server_list: Some("HTTP 8014".into()),
                policy: Some(json!({"av": "legacy"})),
                ..Default::default()
            },
        ),
        group(
            4,
            2,
            "Web",
            OwnSettings {
                interval: Some(secs(60)),
                ..Default::default()
            },
        ),
        group(5, 3, "Kiosks", OwnSettings::default()),
    ])
    .unwrap()
}

/// One line per group: `path: list interval randomize mode policy`.
fn render(tree: &Tree, id: GroupId) -> String {
    let e = tree.effective(id).unwrap();
    format!(
        "{}: {} {}s {}s {} {}",
        tree.path(id).unwrap(),
        e.server_list,
        e.interval.as_secs(),
        e.randomize.as_secs(),
        e.mode.name(),
        e.policy
    )
}

#[test]
fn effective_settings_table() {
    let tree = tree();
    let cases = [
        (1, r#"My Company: Default 300s 60s pull {"av":"on"}"#),
        (
            2,
            r#"My Company/Servers: Default 300s 60s push {"av":"on"}"#,
        ),
        (
            3,
            r#"My Company/Legacy XP: HTTP 8014 300s 60s pull {"av":"legacy"}"#,
        ),
        (
            4,
            r#"My Company/Servers/Web: Default 60s 60s push {"av":"on"}"#,
        ),
        (
            5,
            r#"My Company/Legacy XP/Kiosks: HTTP 8014 300s 60s pull {"av":"legacy"}"#,
        ),
    ];
    for (id, expected) in cases {
        assert_eq!(render(&tree, id), expected);
    }
    // The one-pass computation agrees with the walk up, for every group.
    let all = tree.effective_all();
    assert_eq!(all.len(), 5);
    for id in 1..=5 {
        assert_eq!(all[&id], tree.effective(id).unwrap(), "group {id}");
    }
}

#[test]
fn sources_name_the_group_that_set_each_field() {
    let tree = tree();
    let web = tree.effective(4).unwrap();
    assert_eq!(web.source(Field::Interval), 4);
    assert_eq!(web.source(Field::Mode), 2);
    assert_eq!(web.source(Field::ServerList), 1);
    let kiosks = tree.effective(5).unwrap();
    assert_eq!(kiosks.source(Field::ServerList), 3);
    assert_eq!(kiosks.source(Field::Policy), 3);
}

#[test]
fn changing_a_parent_changes_every_descendant() {
    let tree = tree();
    let mut servers = tree.get(2).unwrap().clone();
    servers.own.server_list = Some("Datacenter".into());
    let after = tree.with_group(servers).unwrap();
    assert_eq!(after.effective(2).unwrap().server_list, "Datacenter");
    assert_eq!(after.effective(4).unwrap().server_list, "Datacenter");
    assert_eq!(
        after.effective(3).unwrap().server_list,
        "HTTP 8014",
        "siblings untouched"
    );
}

#[test]
fn moving_a_group_changes_what_it_inherits() {
    let tree = tree();
    let after = tree.moved(4, 3).unwrap();
    assert_eq!(
        render(&after, 4),
        r#"My Company/Legacy XP/Web: HTTP 8014 60s 60s pull {"av":"legacy"}"#
    );
}

#[test]
fn refused_moves() {
    let tree = tree();
    let cases = [
        (2, 4, TreeError::Cycle(2)), // under its own child
        (2, 2, TreeError::Cycle(2)), // under itself
        (1, 2, TreeError::Cycle(1)), // the root never moves
    ];
    for (id, parent, expected) in cases {
        assert_eq!(
            tree.moved(id, parent).unwrap_err(),
            expected,
            "move {id} under {parent}"
        );
    }
    // A move that would put two groups of one name under one parent.
    let with_twin = Tree::new(tree.groups().cloned().chain([group(
        6,
        2,
        "Kiosks",
        OwnSettings::default(),
    )]))
    .unwrap();
    assert_eq!(
        with_twin.moved(6, 3).unwrap_err(),
        TreeError::DuplicateName {
            parent: 3,
            name: "Kiosks".into()
        }
    );
}

#[test]
fn invalid_trees() {
    let mut inheriting_root = root();
    inheriting_root.own.mode = None;
    let cases: Vec<(Vec<Group>, TreeError)> = vec![
        (vec![], TreeError::NoRoot),
        (
            vec![root(), Group { id: 2, ..root() }],
            TreeError::SeveralRoots(vec![1, 2]),
        ),
        (vec![inheriting_root], TreeError::RootInherits(Field::Mode)),
        (
            vec![root(), group(2, 9, "Orphan", OwnSettings::default())],
            TreeError::UnknownParent {
                group: 2,
                parent: 9,
            },
        ),
        (
            vec![
                root(),
                group(2, 3, "A", OwnSettings::default()),
                group(3, 2, "B", OwnSettings::default()),
            ],
            TreeError::Cycle(2),
        ),
        (
            vec![
                root(),
                group(2, 1, "A", OwnSettings::default()),
                group(3, 1, "A", OwnSettings::default()),
            ],
            TreeError::DuplicateName {
                parent: 1,
                name: "A".into(),
            },
        ),
        (
            vec![root(), group(2, 1, "a/b", OwnSettings::default())],
            TreeError::BadName {
                group: 2,
                error: NameError::Slash,
            },
        ),
    ];
    for (groups, expected) in cases {
        assert_eq!(Tree::new(groups).unwrap_err(), expected);
    }
}

#[test]
fn paths_find_groups() {
    let tree = tree();
    assert_eq!(tree.find("My Company").unwrap(), Some(1));
    assert_eq!(tree.find("My Company/Legacy XP/Kiosks").unwrap(), Some(5));
    assert_eq!(tree.find("My Company/Nope").unwrap(), None);
    assert_eq!(tree.find("Other/Legacy XP").unwrap(), None);
    assert!(tree.find("My Company//Web").is_err());
    assert_eq!(tree.descendants(2), vec![2, 4]);
    assert_eq!(tree.descendants(1).len(), 5);
}

#[test]
fn fields_parse_both_spellings() {
    assert_eq!(Field::parse("server_list"), Some(Field::ServerList));
    assert_eq!(Field::parse("server-list"), Some(Field::ServerList));
    assert_eq!(Field::parse("colour"), None);
}
