//! The group tree and inheritance.
//!
//! Every group may set, or inherit from its parent: the server list, the check-in interval,
//! the randomisation window, the mode (pull or push) and the policy document. The root sets
//! all of them. A group's *effective* settings come from walking up the tree: each field from
//! the nearest group that sets it. The policy document is inherited whole (a group that sets
//! one replaces its parent's).

/// The shortest check-in interval a group may set: one check-in a second per agent is already
/// more than any heartbeat needs (shorter ones only load the server; the tests' fastest
/// fleets use it).
pub const MIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The longest check-in interval or randomisation: far beyond any heartbeat, and far below
/// what milliseconds in an i64 hold.
pub const MAX_INTERVAL: std::time::Duration = std::time::Duration::from_secs(365 * 86_400);

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use serde_json::Value;

use crate::name::{self, NameError, PathError};

pub type GroupId = i64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The agent checks in every interval.
    Pull,
    /// The agent holds a connection; the server delivers changes at once.
    Push,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Pull => "pull",
            Mode::Push => "push",
        }
    }

    pub fn parse(text: &str) -> Option<Mode> {
        match text {
            "pull" => Some(Mode::Pull),
            "push" => Some(Mode::Push),
            _ => None,
        }
    }
}

/// What a group sets itself; `None` inherits.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OwnSettings {
    pub server_list: Option<String>,
    pub interval: Option<Duration>,
    pub randomize: Option<Duration>,
    pub mode: Option<Mode>,
    pub policy: Option<Value>,
}

/// The inheritable fields, for `--inherit FIELD` and for saying where a value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    ServerList,
    Interval,
    Randomize,
    Mode,
    Policy,
}

impl Field {
    pub const ALL: [Field; 5] = [
        Field::ServerList,
        Field::Interval,
        Field::Randomize,
        Field::Mode,
        Field::Policy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Field::ServerList => "server_list",
            Field::Interval => "interval",
            Field::Randomize => "randomize",
            Field::Mode => "mode",
            Field::Policy => "policy",
        }
    }

    pub fn parse(text: &str) -> Option<Field> {
        Field::ALL
            .into_iter()
            .find(|f| f.name() == text || f.name().replace('_', "-") == text)
    }
}

impl OwnSettings {
    pub fn is_set(&self, field: Field) -> bool {
        match field {
            Field::ServerList => self.server_list.is_some(),
            Field::Interval => self.interval.is_some(),
            Field::Randomize => self.randomize.is_some(),
            Field::Mode => self.mode.is_some(),
            Field::Policy => self.policy.is_some(),
        }
    }

    /// Goes back to inheriting `field`.
    pub fn clear(&mut self, field: Field) {
        match field {
            Field::ServerList => self.server_list = None,
            Field::Interval => self.interval = None,
            Field::Randomize => self.randomize = None,
            Field::Mode => self.mode = None,
            Field::Policy => self.policy = None,
        }
    }
}

/// A new root group: it sets every field, with ward's defaults (a 5-minute interval, a
/// 1-minute randomisation window, pull mode, an empty policy) and the given server list.
pub fn default_root(name: &str, server_list: &str) -> Group {
    Group {
        id: 0,
        parent: None,
        name: name.to_string(),
        own: OwnSettings {
            server_list: Some(server_list.to_string()),
            interval: Some(Duration::from_secs(300)),
            randomize: Some(Duration::from_secs(60)),
            mode: Some(Mode::Pull),
            policy: Some(Value::Object(Default::default())),
        },
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub id: GroupId,
    /// `None` for the root only.
    pub parent: Option<GroupId>,
    pub name: String,
    pub own: OwnSettings,
}

/// A group's settings after inheritance, and which group each came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Effective {
    pub server_list: String,
    pub interval: Duration,
    pub randomize: Duration,
    pub mode: Mode,
    pub policy: Value,
    /// For each field, the group that set it.
    pub sources: [GroupId; 5],
}

impl Effective {
    pub fn source(&self, field: Field) -> GroupId {
        self.sources[field as usize]
    }

    /// The same settings for an agent, wherever they were inherited from.
    pub fn same_settings(&self, other: &Effective) -> bool {
        self.server_list == other.server_list
            && self.interval == other.interval
            && self.randomize == other.randomize
            && self.mode == other.mode
            && self.policy == other.policy
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TreeError {
    NoRoot,
    SeveralRoots(Vec<GroupId>),
    /// The root must set every field, so that inheritance always ends somewhere.
    RootInherits(Field),
    UnknownParent {
        group: GroupId,
        parent: GroupId,
    },
    Cycle(GroupId),
    DuplicateName {
        parent: GroupId,
        name: String,
    },
    BadName {
        group: GroupId,
        error: NameError,
    },
    TooDeep(GroupId),
}

impl fmt::Display for TreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TreeError::NoRoot => f.write_str("the group tree has no root"),
            TreeError::SeveralRoots(ids) => write!(f, "the group tree has several roots: {ids:?}"),
            TreeError::RootInherits(field) => {
                write!(
                    f,
                    "the root group must set {}: it has nothing to inherit from",
                    field.name()
                )
            }
            TreeError::UnknownParent { group, parent } => {
                write!(
                    f,
                    "group {group} names parent {parent}, which does not exist"
                )
            }
            TreeError::Cycle(id) => write!(f, "group {id} would be its own ancestor"),
            TreeError::DuplicateName { name, .. } => {
                write!(f, "a group named '{name}' already exists under that parent")
            }
            TreeError::BadName { error, .. } => write!(f, "{error}"),
            TreeError::TooDeep(_) => write!(f, "groups nest at most {} deep", name::MAX_DEPTH),
        }
    }
}

impl std::error::Error for TreeError {}

/// A checked group tree: one root that sets every field, parents that exist, no cycles,
/// unique names among siblings.
#[derive(Clone, Debug)]
pub struct Tree {
    groups: HashMap<GroupId, Group>,
    children: HashMap<GroupId, Vec<GroupId>>,
    root: GroupId,
}

impl Tree {
    pub fn new(groups: impl IntoIterator<Item = Group>) -> Result<Tree, TreeError> {
        let groups: HashMap<GroupId, Group> = groups.into_iter().map(|g| (g.id, g)).collect();
        let roots: Vec<GroupId> = groups
            .values()
            .filter(|g| g.parent.is_none())
            .map(|g| g.id)
            .collect();
        let root = match roots.as_slice() {
            [] => return Err(TreeError::NoRoot),
            [root] => *root,
            _ => {
                let mut ids = roots;
                ids.sort_unstable();
                return Err(TreeError::SeveralRoots(ids));
            }
        };
        if let Some(field) = Field::ALL
            .into_iter()
            .find(|f| !groups[&root].own.is_set(*f))
        {
            return Err(TreeError::RootInherits(field));
        }
        let mut children: HashMap<GroupId, Vec<GroupId>> = HashMap::new();
        let mut names: HashSet<(GroupId, &str)> = HashSet::new();
        for group in groups.values() {
            name::check_name(&group.name).map_err(|error| TreeError::BadName {
                group: group.id,
                error,
            })?;
            if let Some(parent) = group.parent {
                if !groups.contains_key(&parent) {
                    return Err(TreeError::UnknownParent {
                        group: group.id,
                        parent,
                    });
                }
                if !names.insert((parent, group.name.as_str())) {
                    return Err(TreeError::DuplicateName {
                        parent,
                        name: group.name.clone(),
                    });
                }
                children.entry(parent).or_default().push(group.id);
            }
        }
        for list in children.values_mut() {
            list.sort_unstable();
        }
        let tree = Tree {
            groups,
            children,
            root,
        };
        // Every group must reach the root; one that does not sits on a cycle.
        let reachable = tree.descendants(root).len();
        if reachable != tree.groups.len() {
            let reached: HashSet<GroupId> = tree.descendants(root).into_iter().collect();
            let mut stray: Vec<GroupId> = tree
                .groups
                .keys()
                .filter(|id| !reached.contains(id))
                .copied()
                .collect();
            stray.sort_unstable();
            return Err(TreeError::Cycle(stray[0]));
        }
        if let Some(deep) = tree
            .groups
            .keys()
            .find(|id| tree.depth(**id) > name::MAX_DEPTH)
        {
            return Err(TreeError::TooDeep(*deep));
        }
        Ok(tree)
    }

    pub fn root(&self) -> GroupId {
        self.root
    }

    pub fn get(&self, id: GroupId) -> Option<&Group> {
        self.groups.get(&id)
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    pub fn children(&self, id: GroupId) -> &[GroupId] {
        self.children
            .get(&id)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    fn depth(&self, id: GroupId) -> usize {
        let mut depth = 1;
        let mut current = self.groups[&id].parent;
        while let Some(parent) = current {
            depth += 1;
            current = self.groups[&parent].parent;
        }
        depth
    }

    /// The group and everything below it, parents before children.
    pub fn descendants(&self, id: GroupId) -> Vec<GroupId> {
        let mut out = Vec::new();
        if !self.groups.contains_key(&id) {
            return out;
        }
        let mut stack = vec![id];
        while let Some(next) = stack.pop() {
            out.push(next);
            stack.extend(self.children(next).iter().rev());
        }
        out
    }

    /// `My Company/Legacy XP`.
    pub fn path(&self, id: GroupId) -> Option<String> {
        let mut names = Vec::new();
        let mut current = Some(id);
        while let Some(group) = current.and_then(|id| self.groups.get(&id)) {
            names.push(group.name.as_str());
            current = group.parent;
        }
        if names.is_empty() {
            return None;
        }
        names.reverse();
        Some(names.join("/"))
    }

    /// The group a path names, starting at the root's name.
    pub fn find(&self, path: &str) -> Result<Option<GroupId>, PathError> {
        let names = name::split_path(path)?;
        let (first, rest) = names
            .split_first()
            .expect("split_path returns at least one name");
        if *first != self.groups[&self.root].name {
            return Ok(None);
        }
        let mut current = self.root;
        for name in rest {
            match self
                .children(current)
                .iter()
                .find(|c| self.groups[*c].name == *name)
            {
                Some(child) => current = *child,
                None => return Ok(None),
            }
        }
        Ok(Some(current))
    }

    /// Effective settings of one group, by walking up to the root.
    pub fn effective(&self, id: GroupId) -> Option<Effective> {
        let mut chain = Vec::new();
        let mut current = Some(id);
        while let Some(group) = current.and_then(|id| self.groups.get(&id)) {
            chain.push(group);
            current = group.parent;
        }
        let root = chain.pop()?;
        let mut effective = root_effective(root);
        for group in chain.into_iter().rev() {
            effective = inherit(&effective, group);
        }
        Some(effective)
    }

    /// Effective settings of every group, in one pass from the root down.
    pub fn effective_all(&self) -> HashMap<GroupId, Effective> {
        let mut out = HashMap::with_capacity(self.groups.len());
        let root = &self.groups[&self.root];
        out.insert(root.id, root_effective(root));
        for id in self.descendants(self.root).into_iter().skip(1) {
            let group = &self.groups[&id];
            let parent = &out[&group.parent.expect("only the root has no parent")];
            let effective = inherit(parent, group);
            out.insert(id, effective);
        }
        out
    }

    /// Checks that `id` may move under `new_parent`, and returns the tree after the move.
    pub fn moved(&self, id: GroupId, new_parent: GroupId) -> Result<Tree, TreeError> {
        if id == self.root {
            return Err(TreeError::Cycle(id));
        }
        if self.descendants(id).contains(&new_parent) {
            return Err(TreeError::Cycle(id));
        }
        let mut groups: Vec<Group> = self.groups.values().cloned().collect();
        for group in &mut groups {
            if group.id == id {
                group.parent = Some(new_parent);
            }
        }
        Tree::new(groups)
    }

    /// The tree with one group replaced (its settings or name changed), checked.
    pub fn with_group(&self, changed: Group) -> Result<Tree, TreeError> {
        let mut groups: Vec<Group> = self
            .groups
            .values()
            .filter(|g| g.id != changed.id)
            .cloned()
            .collect();
        groups.push(changed);
        Tree::new(groups)
    }
}

fn root_effective(root: &Group) -> Effective {
    let own = &root.own;
    Effective {
        server_list: own.server_list.clone().expect("checked by Tree::new"),
        interval: own.interval.expect("checked by Tree::new"),
        randomize: own.randomize.expect("checked by Tree::new"),
        mode: own.mode.expect("checked by Tree::new"),
        policy: own.policy.clone().expect("checked by Tree::new"),
        sources: [root.id; 5],
    }
}

fn inherit(parent: &Effective, group: &Group) -> Effective {
    let own = &group.own;
    let mut sources = parent.sources;
    for field in Field::ALL {
        if own.is_set(field) {
            sources[field as usize] = group.id;
        }
    }
    Effective {
        server_list: own
            .server_list
            .clone()
            .unwrap_or_else(|| parent.server_list.clone()),
        interval: own.interval.unwrap_or(parent.interval),
        randomize: own.randomize.unwrap_or(parent.randomize),
        mode: own.mode.unwrap_or(parent.mode),
        policy: own.policy.clone().unwrap_or_else(|| parent.policy.clone()),
        sources,
    }
}

#[cfg(test)]
mod tests;
