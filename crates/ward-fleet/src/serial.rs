//! Settings serials: any change that alters what an agent should do gives that agent a new
//! serial. Here, pure: which groups' agents are affected by a change, found by comparing the
//! effective settings before and after (so a change that a child overrides anyway affects
//! nobody below it), plus the groups that use a server list whose contents changed.

use std::collections::HashSet;

use crate::group::{GroupId, Tree};

/// Groups whose agents need a new serial when the tree goes from `before` to `after` and the
/// server lists named in `changed_lists` changed contents. Sorted.
pub fn affected_groups(before: &Tree, after: &Tree, changed_lists: &[&str]) -> Vec<GroupId> {
    let before_all = before.effective_all();
    let after_all = after.effective_all();
    let changed_lists: HashSet<&str> = changed_lists.iter().copied().collect();
    let mut affected: Vec<GroupId> = after_all
        .iter()
        .filter(|(id, effective)| {
            !before_all
                .get(id)
                .is_some_and(|before| before.same_settings(effective))
                || changed_lists.contains(effective.server_list.as_str())
        })
        .map(|(id, _)| *id)
        .collect();
    affected.sort_unstable();
    affected
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::{Group, Mode, OwnSettings};

    fn tree(servers_mode: Option<Mode>, web_mode: Option<Mode>) -> Tree {
        let root = Group {
            id: 1,
            ..crate::group::default_root("Root", "Default")
        };
        let child = |id, parent, name: &str, own| Group {
            id,
            parent: Some(parent),
            name: name.into(),
            own,
        };
        Tree::new([
            root,
            child(
                2,
                1,
                "Servers",
                OwnSettings {
                    mode: servers_mode,
                    ..Default::default()
                },
            ),
            child(
                3,
                2,
                "Web",
                OwnSettings {
                    mode: web_mode,
                    ..Default::default()
                },
            ),
            child(
                4,
                1,
                "Legacy",
                OwnSettings {
                    server_list: Some("HTTP".into()),
                    ..Default::default()
                },
            ),
        ])
        .unwrap()
    }

    #[test]
    fn serial_bump_table() {
        let base = tree(None, None);
        let cases: Vec<(&str, Tree, Vec<&str>, Vec<GroupId>)> = vec![
            ("nothing changes", tree(None, None), vec![], vec![]),
            (
                "a parent's setting reaches its subtree",
                tree(Some(Mode::Push), None),
                vec![],
                vec![2, 3],
            ),
            (
                "setting the inherited value changes nothing",
                tree(Some(Mode::Pull), None),
                vec![],
                vec![],
            ),
            (
                "a child that overrides is not affected",
                tree(Some(Mode::Push), Some(Mode::Pull)),
                vec![],
                vec![2],
            ),
            (
                "a server list's contents",
                tree(None, None),
                vec!["HTTP"],
                vec![4],
            ),
            (
                "the default list reaches every group using it",
                tree(None, None),
                vec!["Default"],
                vec![1, 2, 3],
            ),
            (
                "an unused list affects nobody",
                tree(None, None),
                vec!["Unused"],
                vec![],
            ),
        ];
        for (what, after, lists, expected) in cases {
            assert_eq!(affected_groups(&base, &after, &lists), expected, "{what}");
        }
    }

    #[test]
    fn a_move_affects_the_moved_subtree() {
        let base = tree(Some(Mode::Push), None);
        let after = base.moved(2, 4).unwrap();
        assert_eq!(affected_groups(&base, &after, &[]), vec![2, 3]);
    }
}
