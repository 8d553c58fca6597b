//! Groups: list, create, read, update the group's own settings, delete, move under another
//! parent, and export a group's communication settings for `ward agent import-settings`.
//! Every change of a group's settings or place is guarded: refused (409 `would_cut_off`)
//! when agents that have a path now would have none, unless accepted.

use serde_json::Value;
use ward_api::fleet::{
    Deleted, ExportRequest, ExportedSettings, Group as GroupAnswer, GroupPatch, MoveGroup,
    NewGroup, Setting,
};
use ward_fleet::group::Field;
use ward_fleet::{name, serial, Group, Mode, OwnSettings};
use ward_proto::duration::parse as parse_duration;
use ward_proto::messages::{SettingsPackage, SETTINGS_PACKAGE_FORMAT};
use ward_proto::now_ms;
use ward_store::{Change, Mutation, Store, TokenRecord};

use super::render;
use super::{group_id, read, write, Ctx};
use crate::api::ApiError;
use crate::auth::{self, Caller};
use crate::ops::{audit, create_group, referenced_group, tree_error, tree_of};
use crate::state::App;

/// Every group, by path, with own and effective settings.
pub async fn list(app: &App) -> Result<Vec<GroupAnswer>, ApiError> {
    read(app, |ctx| {
        let tree = tree_of(ctx.store())?;
        let effective = tree.effective_all();
        let mut groups: Vec<&Group> = tree.groups().collect();
        groups.sort_by_key(|g| tree.path(g.id));
        Ok(groups
            .iter()
            .map(|g| render::group(&tree, g, effective.get(&g.id)))
            .collect())
    })
    .await
}

/// The group as it is now, with its effective settings.
fn answer(store: &dyn Store, id: ward_fleet::GroupId) -> Result<GroupAnswer, ApiError> {
    let tree = tree_of(store)?;
    let group = tree
        .get(id)
        .ok_or_else(|| ApiError::not_found("the group vanished"))?;
    Ok(render::group(&tree, group, tree.effective(id).as_ref()))
}

/// `POST /groups`: a new group under the root, or under `parent`.
pub async fn create(
    app: &App,
    caller: &Caller,
    request: NewGroup,
) -> Result<GroupAnswer, ApiError> {
    let caller = caller.clone();
    write(app, move |ctx| {
        let store = ctx.store();
        let tree = tree_of(store)?;
        name::check_name(&request.name).map_err(|e| ApiError::bad_request(format!("name: {e}")))?;
        let parent = match request.parent {
            Some(path) => referenced_group(&tree, "parent", &path)?,
            None => tree.root(),
        };
        let group = Group {
            id: 0,
            parent: Some(parent),
            name: request.name,
            own: OwnSettings::default(),
        };
        let after = serde_json::json!({"parent": tree.path(parent)});
        let id = create_group(store, &tree, &caller, group, "group.create", after)?;
        answer(store, id)
    })
    .await
}

/// `GET /groups/{id}`.
pub async fn get(app: &App, id: String) -> Result<GroupAnswer, ApiError> {
    read(app, move |ctx| {
        let tree = tree_of(ctx.store())?;
        let id = group_id(&tree, &id)?;
        answer(ctx.store(), id)
    })
    .await
}

fn field(setting: Setting) -> Field {
    match setting {
        Setting::ServerList => Field::ServerList,
        Setting::Interval => Field::Interval,
        Setting::Randomize => Field::Randomize,
        Setting::Mode => Field::Mode,
        Setting::Policy => Field::Policy,
    }
}

/// Applies a PATCH body's `own` changes to `group`.
fn patch_settings(store: &dyn Store, group: &mut Group, patch: GroupPatch) -> Result<(), ApiError> {
    if let Some(new_name) = patch.name {
        if group.parent.is_none() && new_name.is_empty() {
            return Err(ApiError::bad_request("name: a name cannot be empty"));
        }
        name::check_name(&new_name).map_err(|e| ApiError::bad_request(format!("name: {e}")))?;
        group.name = new_name;
    }
    if let Some(list) = patch.server_list {
        if !store.server_lists()?.iter().any(|l| l.name == list) {
            return Err(ApiError::unknown_reference(format!(
                "server_list: no server list '{list}'"
            )));
        }
        group.own.server_list = Some(list);
    }
    use ward_fleet::group::{MAX_INTERVAL, MIN_INTERVAL};
    for (key, text, slot) in [
        ("interval", patch.interval, &mut group.own.interval),
        ("randomize", patch.randomize, &mut group.own.randomize),
    ] {
        if let Some(text) = text {
            let duration =
                parse_duration(&text).map_err(|e| ApiError::bad_request(format!("{key}: {e}")))?;
            if key == "interval" && duration < MIN_INTERVAL {
                return Err(ApiError::bad_request(format!(
                    "interval: {text} is shorter than {}, the shortest check-in interval ward \
                     takes",
                    ward_proto::duration::format(MIN_INTERVAL)
                )));
            }
            if duration > MAX_INTERVAL {
                return Err(ApiError::bad_request(format!(
                    "{key}: {text} is more than a year (365d), the most ward takes: the store, \
                     the presence rule and the agents count in milliseconds"
                )));
            }
            *slot = Some(duration);
        }
    }
    if let Some(mode) = patch.mode {
        group.own.mode = Some(match mode {
            ward_api::fleet::Mode::Pull => Mode::Pull,
            ward_api::fleet::Mode::Push => Mode::Push,
        });
    }
    if let Some(policy) = patch.policy {
        let policy = Value::Object(policy);
        // Never accept what the agents could not read.
        ward_proto::policy::check(&policy)
            .map_err(|e| ApiError::bad_request(format!("policy: {e}")))?;
        group.own.policy = Some(policy);
    }
    for setting in patch.inherit.unwrap_or_default() {
        let field = field(setting);
        if group.parent.is_none() {
            return Err(ApiError::conflict(
                "conflict",
                format!(
                    "inherit: the root group has nothing to inherit {} from",
                    field.name()
                ),
            ));
        }
        group.own.clear(field);
    }
    Ok(())
}

/// The guard of a group edit: 409 `would_cut_off` when the tree `after` would leave agents
/// that have a path now with none, unless accepted; the agents cut off (accepted) otherwise.
fn guard_tree(
    ctx: &Ctx,
    after: &ward_fleet::Tree,
    what: &str,
    accept_cut_off: bool,
) -> Result<Vec<String>, ApiError> {
    ctx.guard(
        crate::impact::FleetEdit {
            tree: Some(after.clone()),
            moves: &Default::default(),
            lists: None,
        },
        what,
        accept_cut_off,
    )
}

/// `PATCH /groups/{id}`: a new name, settings set or inherited again; guarded.
pub async fn update(
    app: &App,
    caller: &Caller,
    id: String,
    patch: GroupPatch,
) -> Result<GroupAnswer, ApiError> {
    let caller = caller.clone();
    write(app, move |ctx| {
        let store = ctx.store();
        let tree = tree_of(store)?;
        let id = group_id(&tree, &id)?;
        let current = tree
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found("no such group"))?;
        let path = tree.path(id).unwrap_or_default();
        let accept_cut_off = patch.accept_cut_off;
        let mut changed = current.clone();
        patch_settings(store, &mut changed, patch)?;
        let after = tree.with_group(changed.clone()).map_err(tree_error)?;
        let cut = guard_tree(ctx, &after, &format!("changing {path}"), accept_cut_off)?;
        let bump_groups = serial::affected_groups(&tree, &after, &[]);
        let mut after_own = render::audited(&render::own(&changed));
        if !cut.is_empty() {
            after_own["cut_off_accepted"] = render::audited(&cut);
        }
        store.apply(&Change {
            tree_version: Some(tree.version),
            mutation: Mutation::UpdateGroup(changed),
            bump_groups,
            bump_agents: vec![],
            audit: audit(
                &caller,
                "group.update",
                path,
                Some(render::audited(&render::own(&current))),
                Some(after_own),
            ),
        })?;
        answer(store, id)
    })
    .await
}

/// `DELETE /groups/{id}`: an empty group (the store refuses one with children or agents).
pub async fn delete(app: &App, caller: &Caller, id: String) -> Result<Deleted, ApiError> {
    let caller = caller.clone();
    write(app, move |ctx| {
        let store = ctx.store();
        let tree = tree_of(store)?;
        let id = group_id(&tree, &id)?;
        let current = tree
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found("no such group"))?;
        let path = tree.path(id).unwrap_or_default();
        if id == tree.root() {
            return Err(ApiError::conflict(
                "in_use",
                "the root group cannot be deleted",
            ));
        }
        store.apply(&Change {
            tree_version: Some(tree.version),
            mutation: Mutation::DeleteGroup(id),
            bump_groups: vec![],
            bump_agents: vec![],
            audit: audit(
                &caller,
                "group.delete",
                path.clone(),
                Some(render::audited(&render::group(&tree, &current, None))),
                None,
            ),
        })?;
        Ok(Deleted { deleted: path })
    })
    .await
}

/// `POST /groups/{id}/move`: under another parent; guarded.
pub async fn move_group(
    app: &App,
    caller: &Caller,
    id: String,
    request: MoveGroup,
) -> Result<GroupAnswer, ApiError> {
    let caller = caller.clone();
    write(app, move |ctx| {
        let store = ctx.store();
        let tree = tree_of(store)?;
        let id = group_id(&tree, &id)?;
        let parent = referenced_group(&tree, "parent", &request.parent)?;
        let after = tree.moved(id, parent).map_err(tree_error)?;
        let before_path = tree.path(id).unwrap_or_default();
        let cut = guard_tree(
            ctx,
            &after,
            &format!("moving {before_path} under {}", request.parent),
            request.accept_cut_off,
        )?;
        let bump_groups = serial::affected_groups(&tree, &after, &[]);
        store.apply(&Change {
            tree_version: Some(tree.version),
            mutation: Mutation::MoveGroup { id, parent },
            bump_groups,
            bump_agents: vec![],
            audit: audit(
                &caller,
                "group.move",
                before_path.clone(),
                Some(serde_json::json!({"path": before_path})),
                Some(serde_json::json!({"path": after.path(id), "cut_off_accepted": cut})),
            ),
        })?;
        answer(store, id)
    })
    .await
}

/// The server's identity as a settings package carries it: its agreement key (hex) and the
/// CAs agents are told to trust (from a CA rotation on; else ward's CA).
fn identity(app: &App) -> (String, String) {
    (
        ward_proto::hex(&app.agreement().current.public),
        Some(app.agent_trust())
            .filter(|trust| !trust.is_empty())
            .map(|trust| trust.to_string())
            .unwrap_or_else(|| std::fs::read_to_string(app.data.ca_cert()).unwrap_or_default()),
    )
}

/// `POST /groups/{id}/export`: the seed's communication-settings package for a group: its
/// server list, the server's agreement key and CA, and a new enrollment token bound to this
/// package (this group only, 25 agents and 24 hours unless the request says, may enroll over
/// HTTP), so orphaned agents can be brought back with `ward agent import-settings`. The answer
/// carries the token's id, so a caller that cannot keep the package revokes it.
pub async fn export_settings(
    app: &App,
    caller: &Caller,
    id: String,
    request: ExportRequest,
) -> Result<ExportedSettings, ApiError> {
    let caller = caller.clone();
    let (server_public, ca_pem) = identity(app);
    write(app, move |ctx| {
        let store = ctx.store();
        let uses = request.uses.unwrap_or(25);
        if !(1..=100_000).contains(&uses) {
            return Err(ApiError::bad_request("uses: a number from 1 to 100000"));
        }
        let lifetime = parse_duration(request.expires.as_deref().unwrap_or("24h"))
            .map_err(|e| ApiError::bad_request(format!("expires: {e}")))?;
        let lifetime_ms = i64::try_from(lifetime.as_millis())
            .ok()
            .filter(|ms| (1..=30 * 86_400_000).contains(ms))
            .ok_or_else(|| ApiError::bad_request("expires: at most 30d"))?;
        let tree = tree_of(store)?;
        let id = group_id(&tree, &id)?;
        let effective = tree
            .effective(id)
            .ok_or_else(|| ApiError::not_found("no such group"))?;
        let lists = store.server_lists()?;
        let (token, hash) = auth::new_token();
        let record = TokenRecord {
            id: 0,
            group: id,
            token_sha256: hash,
            created_ms: now_ms(),
            expires_ms: Some(now_ms() + lifetime_ms),
            uses_left: Some(uses),
            revoked: false,
            allow_http: true,
            accept_cut_off: false,
        };
        let path = tree.path(id).unwrap_or_default();
        let applied = store.apply(&Change {
            tree_version: None,
            mutation: Mutation::CreateToken(record),
            bump_groups: vec![],
            bump_agents: vec![],
            audit: audit(
                &caller,
                "group.export_settings",
                path.clone(),
                None,
                Some(serde_json::json!({"token_expires_ms": lifetime_ms, "token_uses": uses})),
            ),
        })?;
        Ok(ExportedSettings {
            package: SettingsPackage {
                format: SETTINGS_PACKAGE_FORMAT.into(),
                group: path,
                server_public,
                ca_pem,
                token,
                settings: crate::ops::settings_for(&tree, id, &effective, &lists, 0),
            },
            token_id: applied.new_id,
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use serde_json::json;

    use super::*;
    use crate::api::typed;
    use crate::operations::assert_refused;

    #[test]
    fn bad_new_group_bodies_name_their_field() {
        assert_refused::<NewGroup>(&[
            (
                r#"{"name":5}"#,
                "name: invalid type: integer `5`, expected a string",
            ),
            (r#"{"name":null}"#, "name: invalid type: null"),
            (
                r#"{"name":"C","parent":["A"]}"#,
                "parent: invalid type: sequence",
            ),
            (r#"{"parent":"My Company"}"#, "missing field `name`"),
            ("", "missing field `name`"),
            (r#"{"name":"C","colour":"red"}"#, "unknown field `colour`"),
            ("[1,2]", "the request body must be a JSON object"),
            (r#"{"name":"#, "the request body is not valid JSON"),
        ]);
    }

    #[test]
    fn bad_group_patches_name_their_field() {
        assert_refused::<GroupPatch>(&[
            (r#"{"name":7}"#, "name: invalid type"),
            (r#"{"server_list":false}"#, "server_list: invalid type"),
            (r#"{"interval":60}"#, "interval: invalid type: integer"),
            (r#"{"randomize":{}}"#, "randomize: invalid type: map"),
            (r#"{"mode":true}"#, "mode: invalid type: boolean"),
            (
                r#"{"policy":[1]}"#,
                "policy: invalid type: sequence, expected a map",
            ),
            (r#"{"policy":"strict"}"#, "policy: invalid type: string"),
            (r#"{"inherit":"mode"}"#, "inherit: invalid type: string"),
            (r#"{"inherit":[1]}"#, "inherit[0]: invalid type: integer"),
            (r#"{"colour":"red"}"#, "unknown field `colour`"),
        ]);
        assert_refused::<MoveGroup>(&[
            ("{}", "missing field `parent`"),
            (r#"{"parent":1}"#, "parent: invalid type"),
            (r#"{"parent":"A","name":"B"}"#, "unknown field `name`"),
        ]);
    }

    /// What a group may set is what its agents can take: a policy document within
    /// ward-proto's limits (at the limit accepted, one level more refused), an interval of at
    /// least a second.
    #[test]
    fn settings_are_refused_beyond_what_agents_take() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            ward_store::open(&ward_store::Database::Sqlite(dir.path().join("ward.db"))).unwrap();
        let nested = |depth: usize| {
            let mut text = "{}".to_string();
            for _ in 1..depth {
                text = format!(r#"{{"a":{text}}}"#);
            }
            format!(r#"{{"policy":{text}}}"#)
        };
        let limit = ward_proto::policy::MAX_DEPTH;
        let cases: Vec<(String, Option<&str>)> = vec![
            (nested(limit), None),
            (
                nested(limit + 1),
                Some("policy: a policy document nests at most 32 levels"),
            ),
            (
                nested(126),
                Some("policy: a policy document nests at most 32 levels"),
            ),
            (
                format!(r#"{{"policy":{{"a":"{}"}}}}"#, "x".repeat(70_000)),
                Some("policy: a policy document has at most 65536 bytes"),
            ),
            (r#"{"interval":"1s"}"#.into(), None),
            (
                r#"{"interval":"999ms"}"#.into(),
                Some("interval: 999ms is shorter than 1s"),
            ),
            (
                r#"{"interval":"1ms"}"#.into(),
                Some("interval: 1ms is shorter"),
            ),
            (r#"{"randomize":"0s"}"#.into(), None),
        ];
        for (body, refused) in cases {
            let mut group = Group {
                id: 1,
                parent: None,
                name: "My Company".into(),
                own: Default::default(),
            };
            let patch: GroupPatch = typed(&Bytes::from(body.clone())).unwrap();
            let result = patch_settings(&*store, &mut group, patch);
            match (refused, result) {
                (None, Ok(())) => {}
                (Some(expected), Err(error)) => assert!(
                    error.message.starts_with(expected),
                    "{}: {}",
                    &body[..body.len().min(60)],
                    error.message
                ),
                (expected, result) => panic!(
                    "{}: expected {expected:?}, got {result:?}",
                    &body[..body.len().min(60)]
                ),
            }
        }
    }

    #[test]
    fn a_null_setting_in_a_patch_is_left_as_it_is() {
        let patch: GroupPatch = typed(&Bytes::from_static(
            br#"{"name":null,"server_list":null,"interval":null,"randomize":null,"mode":null,"policy":null,"inherit":null}"#,
        ))
        .unwrap();
        assert!(
            patch.name.is_none()
                && patch.server_list.is_none()
                && patch.interval.is_none()
                && patch.randomize.is_none()
                && patch.mode.is_none()
                && patch.policy.is_none()
                && patch.inherit.is_none(),
            "{patch:?}"
        );
        let patch: GroupPatch = typed(&Bytes::from_static(
            br#"{"policy":{"a":1},"inherit":["mode"]}"#,
        ))
        .unwrap();
        assert_eq!(patch.policy.map(Value::Object), Some(json!({"a": 1})));
        assert_eq!(patch.inherit, Some(vec![ward_api::fleet::Setting::Mode]));
    }
}
