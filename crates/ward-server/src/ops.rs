//! Fleet operations shared by the admin API, harden and the agent API: the group tree as
//! stored, finding groups, audit entries, creating groups, and the settings an agent in a group
//! is sent (typed as ward-proto's `Settings`). Every write is one `Change` handed to the store
//! with its serial bumps and audit entry; callers then call `App::fleet_changed`.

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::Value;
use ward_fleet::group::Effective;
use ward_fleet::serverlist::{self, Protocol};
use ward_fleet::{Group, GroupId, ServerList, Tree};
use ward_proto::messages::{self, Scheme, ServerListSettings, Settings};
use ward_store::{AuditEntry, Change, Mutation, Store};

use crate::api::ApiError;
use crate::auth::Caller;

/// The group tree as stored, and the version it was read at: a write checked against it
/// states that version (`Change::tree_version`), so the store refuses it as stale when
/// another server changed the groups or server lists in between.
pub struct TreeRead {
    tree: Tree,
    pub version: i64,
}

impl TreeRead {
    pub fn into_tree(self) -> Tree {
        self.tree
    }
}

impl std::ops::Deref for TreeRead {
    type Target = Tree;

    fn deref(&self) -> &Tree {
        &self.tree
    }
}

pub fn tree_of(store: &dyn Store) -> Result<TreeRead, ApiError> {
    let read = store.tree()?;
    let tree = Tree::new(read.groups)
        .map_err(|e| ApiError::internal(format!("the stored group tree is inconsistent: {e}")))?;
    Ok(TreeRead {
        tree,
        version: read.version,
    })
}

/// The group a request body names (a parent, a destination): one that does not exist is the
/// request's conflict with the tree as it is (409 `unknown_reference`); 404 is for the
/// resource the path names.
pub fn referenced_group(tree: &Tree, field: &str, path: &str) -> Result<GroupId, ApiError> {
    match tree.find(path) {
        Ok(Some(id)) => Ok(id),
        Ok(None) => Err(ApiError::unknown_reference(format!(
            "{field}: no group '{path}'"
        ))),
        Err(e) => Err(ApiError::bad_request(format!(
            "{field}: group path '{path}': {e}"
        ))),
    }
}

pub fn find_group(tree: &Tree, path: &str) -> Result<GroupId, ApiError> {
    match tree.find(path) {
        Ok(Some(id)) => Ok(id),
        Ok(None) => Err(ApiError::not_found(format!("no group '{path}'"))),
        Err(e) => Err(ApiError::bad_request(format!("group path '{path}': {e}"))),
    }
}

pub fn audit(
    caller: &Caller,
    action: &str,
    target: String,
    before: Option<Value>,
    after: Option<Value>,
) -> AuditEntry {
    AuditEntry {
        id: 0,
        at_ms: ward_proto::now_ms(),
        actor: caller.name.clone(),
        action: action.into(),
        target,
        before,
        after,
    }
}

/// Adds `group` (its id is assigned) after checking it against `tree`, audited as `action`
/// with `after`; returns the new id.
pub fn create_group(
    store: &dyn Store,
    tree: &TreeRead,
    caller: &Caller,
    group: Group,
    action: &str,
    after: Value,
) -> Result<GroupId, ApiError> {
    let parent = group.parent.unwrap_or(tree.root());
    tree.with_group(Group {
        id: i64::MAX,
        ..group.clone()
    })
    .map_err(tree_error)?;
    let path = format!("{}/{}", tree.path(parent).unwrap_or_default(), group.name);
    let applied = store.apply(&Change {
        tree_version: Some(tree.version),
        mutation: Mutation::CreateGroup(group),
        bump_groups: vec![],
        bump_agents: vec![],
        audit: audit(caller, action, path, None, Some(after)),
    })?;
    applied
        .new_id
        .ok_or_else(|| ApiError::internal("the store gave the new group no id"))
}

pub fn tree_error(error: ward_fleet::TreeError) -> ApiError {
    use ward_fleet::TreeError::*;
    let status = match error {
        // Well-formed, but not possible in the tree as it is.
        DuplicateName { .. } | Cycle(_) | TooDeep(_) | RootInherits(_) => StatusCode::CONFLICT,
        _ => StatusCode::BAD_REQUEST,
    };
    if status == StatusCode::CONFLICT {
        ApiError::conflict("conflict", error.to_string())
    } else {
        ApiError::bad_request(error.to_string())
    }
}

/// The settings an agent in `group` follows, as the agent API sends them.
pub fn settings_for(
    tree: &Tree,
    group: GroupId,
    effective: &Effective,
    lists: &[ServerList],
    serial: i64,
) -> Settings {
    let list = lists.iter().find(|l| l.name == effective.server_list);
    let servers = list
        .map(|l| {
            l.levels
                .iter()
                .enumerate()
                .flat_map(|(index, level)| {
                    level.iter().map(move |e| messages::ServerEntry {
                        priority: index as u32 + 1,
                        url: e.url(),
                        address: e.address.clone(),
                        protocol: match e.protocol {
                            Protocol::Http => Scheme::Http,
                            Protocol::Https => Scheme::Https,
                        },
                        port: e.port,
                        verify_certificate: e.verify_certificate,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Settings {
        serial,
        group: tree.path(group).unwrap_or_default(),
        server_list: ServerListSettings {
            name: effective.server_list.clone(),
            servers,
        },
        interval: effective.interval,
        randomize: effective.randomize,
        mode: match effective.mode {
            ward_fleet::Mode::Pull => messages::Mode::Pull,
            ward_fleet::Mode::Push => messages::Mode::Push,
        },
        policy: effective.policy.clone(),
        trust_pem: String::new(),
        server_key: String::new(),
    }
}

/// What every agent's settings carry besides its group's, from rotations (`App::handed`).
#[derive(Clone, Debug, Default)]
pub struct Handed {
    /// The CAs agents trust: ward's CA, or the current and the next during a CA rotation.
    pub trust_pem: Arc<str>,
    /// The server's next agreement key, hex (empty but during a key rotation).
    pub server_key: String,
}

/// The settings of `group` at `serial`, read from the store, with what rotations hand every
/// agent.
pub fn group_settings(
    store: &dyn Store,
    group: GroupId,
    serial: i64,
    handed: &Handed,
) -> Result<Settings, ApiError> {
    let tree = tree_of(store)?;
    let lists = store.server_lists()?;
    let effective = tree
        .effective(group)
        .ok_or_else(|| ApiError::not_found("the group vanished"))?;
    let mut settings = settings_for(&tree, group, &effective, &lists, serial);
    settings.trust_pem = handed.trust_pem.to_string();
    settings.server_key = handed.server_key.clone();
    Ok(settings)
}

/// Creates the root group and the default server list on a new database.
pub fn initialise(
    store: &Arc<dyn Store>,
    clients_url_host: &str,
    clients_port: u16,
) -> Result<bool, String> {
    let spec = format!("1:https://{clients_url_host}:{clients_port}");
    let entry = serverlist::parse_spec(&spec).map_err(|e| e.to_string())?;
    let list = serverlist::build("Default", vec![entry]).map_err(|e| e.to_string())?;
    let root = ward_fleet::group::default_root("My Company", "Default");
    store
        .initialise_fleet(&root, &list)
        .map_err(|e| e.to_string())
}
