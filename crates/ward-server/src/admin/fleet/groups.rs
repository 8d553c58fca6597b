//! Groups: list, create, read, update the group's own settings, delete, move under another
//! parent, and export a group's communication settings for `ward agent import-settings`.

use bytes::Bytes;
use hyper::Method;
use serde_json::{json, Map, Value};
use ward_fleet::group::Field;
use ward_fleet::{name, serial, Group, Mode, OwnSettings};
use ward_proto::duration::parse as parse_duration;
use ward_proto::messages::{SettingsPackage, SETTINGS_PACKAGE_FORMAT};
use ward_proto::now_ms;
use ward_store::{Change, Mutation, Store, TokenRecord};

use super::{created, group_id, method_not_allowed, ok};
use crate::admin::wire;
use crate::api::{typed, ApiError, ApiResult};
use crate::auth::{self, Caller};
use crate::ops::{audit, create_group, find_group, tree_error, tree_of};

/// `POST /groups`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewGroup {
    name: String,
    /// The parent's path; the root group when absent.
    parent: Option<String>,
}

/// `PATCH /groups/{id}`: the group's own settings. An absent field and a null one both leave
/// the setting as it is (as before the typed bodies); `inherit` lists the settings to clear.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupPatch {
    name: Option<String>,
    server_list: Option<String>,
    interval: Option<String>,
    randomize: Option<String>,
    mode: Option<String>,
    policy: Option<Map<String, Value>>,
    inherit: Option<Vec<String>>,
    /// Change it even if agents would lose their last path (audited, with whom).
    #[serde(default)]
    accept_cut_off: bool,
}

/// `POST /groups/{id}/move`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveGroup {
    parent: String,
    /// Move it even if agents would lose their last path (audited, with whom).
    #[serde(default)]
    accept_cut_off: bool,
}

pub(super) fn groups(
    store: &dyn Store,
    caller: &Caller,
    method: &Method,
    body: &Bytes,
) -> ApiResult {
    let tree = tree_of(store)?;
    match *method {
        Method::GET => {
            let effective = tree.effective_all();
            let mut list: Vec<&Group> = tree.groups().collect();
            list.sort_by_key(|g| tree.path(g.id));
            ok(Value::Array(
                list.iter()
                    .map(|g| wire::group_json(&tree, g, effective.get(&g.id)))
                    .collect(),
            ))
        }
        Method::POST => {
            let request: NewGroup = typed(body)?;
            name::check_name(&request.name)
                .map_err(|e| ApiError::bad_request(format!("name: {e}")))?;
            let parent = match request.parent {
                Some(path) => find_group(&tree, &path)?,
                None => tree.root(),
            };
            let group = Group {
                id: 0,
                parent: Some(parent),
                name: request.name,
                own: OwnSettings::default(),
            };
            let id = create_group(
                store,
                &tree,
                caller,
                group,
                "group.create",
                json!({"parent": tree.path(parent)}),
            )?;
            let tree = tree_of(store)?;
            let group = tree
                .get(id)
                .ok_or_else(|| ApiError::not_found("the new group vanished"))?;
            created(wire::group_json(&tree, group, tree.effective(id).as_ref()))
        }
        _ => method_not_allowed("GET, POST"),
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
            return Err(ApiError::not_found(format!("no server list '{list}'")));
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
        group.own.mode =
            Some(Mode::parse(&mode).ok_or_else(|| {
                ApiError::bad_request(format!("mode: '{mode}' is not pull or push"))
            })?);
    }
    if let Some(policy) = patch.policy {
        let policy = Value::Object(policy);
        // Never accept what the agents could not read.
        ward_proto::policy::check(&policy)
            .map_err(|e| ApiError::bad_request(format!("policy: {e}")))?;
        group.own.policy = Some(policy);
    }
    for name in patch.inherit.unwrap_or_default() {
        let field = Field::parse(&name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "inherit: '{name}' is not one of server_list, interval, randomize, mode, policy"
            ))
        })?;
        if group.parent.is_none() {
            return Err(ApiError::bad_request(format!(
                "inherit: the root group has nothing to inherit {} from",
                field.name()
            )));
        }
        group.own.clear(field);
    }
    Ok(())
}

/// The guard of a group edit: 409 `would_cut_off` when the tree `after` would leave agents
/// that have a path now with none, unless accepted; the agents cut off (accepted) otherwise.
fn guard_tree(
    store: &dyn Store,
    clients: &crate::listener_tls::ListenerTls,
    after: &ward_fleet::Tree,
    what: &str,
    accept_cut_off: bool,
) -> Result<Vec<String>, ApiError> {
    let cut = crate::impact::fleet_guard(
        store,
        &clients.context,
        clients.policy.protocol.range,
        crate::impact::FleetEdit {
            tree: Some(after.clone()),
            moves: &Default::default(),
        },
    )?;
    if !cut.is_empty() && !accept_cut_off {
        return Err(crate::impact::refuse_fleet_edit(what, &cut));
    }
    Ok(cut.into_iter().map(|(id, _)| id).collect())
}

pub(super) fn group(
    store: &dyn Store,
    caller: &Caller,
    method: &Method,
    id: &str,
    body: &Bytes,
    clients: &crate::listener_tls::ListenerTls,
) -> ApiResult {
    let tree = tree_of(store)?;
    let id = group_id(&tree, id)?;
    let current = tree
        .get(id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("no such group"))?;
    let path = tree.path(id).unwrap_or_default();
    match *method {
        Method::GET => ok(wire::group_json(
            &tree,
            &current,
            tree.effective(id).as_ref(),
        )),
        Method::PATCH => {
            let patch: GroupPatch = typed(body)?;
            let accept_cut_off = patch.accept_cut_off;
            let mut changed = current.clone();
            patch_settings(store, &mut changed, patch)?;
            let after = tree.with_group(changed.clone()).map_err(tree_error)?;
            let cut = guard_tree(
                store,
                clients,
                &after,
                &format!("changing {path}"),
                accept_cut_off,
            )?;
            let bump_groups = serial::affected_groups(&tree, &after, &[]);
            let before_json = wire::group_json(&tree, &current, None);
            let mut after_json = wire::group_json(&after, &changed, None);
            if !cut.is_empty() {
                after_json["own"]["cut_off_accepted"] = json!(cut);
            }
            store.apply(&Change {
                mutation: Mutation::UpdateGroup(changed),
                bump_groups,
                bump_agents: vec![],
                audit: audit(
                    caller,
                    "group.update",
                    path,
                    Some(before_json["own"].clone()),
                    Some(after_json["own"].clone()),
                ),
            })?;
            let tree = tree_of(store)?;
            let group = tree
                .get(id)
                .ok_or_else(|| ApiError::not_found("the group vanished"))?;
            ok(wire::group_json(&tree, group, tree.effective(id).as_ref()))
        }
        Method::DELETE => {
            if id == tree.root() {
                return Err(ApiError::conflict(
                    "in_use",
                    "the root group cannot be deleted",
                ));
            }
            store.apply(&Change {
                mutation: Mutation::DeleteGroup(id),
                bump_groups: vec![],
                bump_agents: vec![],
                audit: audit(
                    caller,
                    "group.delete",
                    path.clone(),
                    Some(wire::group_json(&tree, &current, None)),
                    None,
                ),
            })?;
            ok(json!({"deleted": path}))
        }
        _ => method_not_allowed("GET, PATCH, DELETE"),
    }
}

pub(super) fn move_group(
    store: &dyn Store,
    caller: &Caller,
    id: &str,
    body: &Bytes,
    clients: &crate::listener_tls::ListenerTls,
) -> ApiResult {
    let tree = tree_of(store)?;
    let id = group_id(&tree, id)?;
    let request: MoveGroup = typed(body)?;
    let parent = find_group(&tree, &request.parent)?;
    let after = tree.moved(id, parent).map_err(tree_error)?;
    let before_path = tree.path(id).unwrap_or_default();
    let cut = guard_tree(
        store,
        clients,
        &after,
        &format!("moving {before_path} under {}", request.parent),
        request.accept_cut_off,
    )?;
    let bump_groups = serial::affected_groups(&tree, &after, &[]);
    store.apply(&Change {
        mutation: Mutation::MoveGroup { id, parent },
        bump_groups,
        bump_agents: vec![],
        audit: audit(
            caller,
            "group.move",
            before_path.clone(),
            Some(json!({"path": before_path})),
            Some(json!({"path": after.path(id), "cut_off_accepted": cut})),
        ),
    })?;
    let group = after
        .get(id)
        .ok_or_else(|| ApiError::not_found("the group vanished"))?;
    ok(wire::group_json(
        &after,
        group,
        after.effective(id).as_ref(),
    ))
}

/// `POST /groups/{id}/export`: how far the package's token reaches.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportRequest {
    /// How many agents the package may bring back (default 25).
    uses: Option<i64>,
    /// How long it works (default `24h`).
    expires: Option<String>,
}

/// The seed's communication-settings package for a group: its server list, the server's
/// agreement key and CA, and a new enrollment token bound to this package (this group only,
/// 25 agents and 24 hours unless the request says, may enroll over HTTP), so orphaned agents
/// can be brought back with `ward agent import-settings`. The answer carries the token's id,
/// so a caller that cannot keep the package revokes it.
pub(super) fn export_settings(
    store: &dyn Store,
    caller: &Caller,
    id: &str,
    identity: &(String, String),
    body: &Bytes,
) -> ApiResult {
    let request: ExportRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ExportRequest::default()
    } else {
        typed(body)?
    };
    let uses = request.uses.unwrap_or(25);
    if !(1..=100_000).contains(&uses) {
        return Err(ApiError::bad_request("uses: a number from 1 to 100000"));
    }
    let lifetime = ward_proto::duration::parse(request.expires.as_deref().unwrap_or("24h"))
        .map_err(|e| ApiError::bad_request(format!("expires: {e}")))?;
    let lifetime_ms = i64::try_from(lifetime.as_millis())
        .ok()
        .filter(|ms| (1..=30 * 86_400_000).contains(ms))
        .ok_or_else(|| ApiError::bad_request("expires: at most 30d"))?;
    let tree = tree_of(store)?;
    let id = group_id(&tree, id)?;
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
    };
    let path = tree.path(id).unwrap_or_default();
    let applied = store.apply(&Change {
        mutation: Mutation::CreateToken(record),
        bump_groups: vec![],
        bump_agents: vec![],
        audit: audit(
            caller,
            "group.export_settings",
            path.clone(),
            None,
            Some(json!({"token_expires_ms": lifetime_ms, "token_uses": uses})),
        ),
    })?;
    let package = SettingsPackage {
        format: SETTINGS_PACKAGE_FORMAT.into(),
        group: path,
        server_public: identity.0.clone(),
        ca_pem: identity.1.clone(),
        token,
        settings: crate::ops::settings_for(&tree, id, &effective, &lists, 0),
    };
    let mut value =
        serde_json::to_value(&package).map_err(|e| ApiError::internal(e.to_string()))?;
    // Not part of the package format: the CLI takes it out before it writes the file.
    value["token_id"] = json!(applied.new_id);
    ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::fleet::assert_refused;

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
        let store = ward_store::SqliteStore::open(&dir.path().join("ward.db")).unwrap();
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
            let result = patch_settings(&store, &mut group, patch);
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
        assert_eq!(patch.inherit, Some(vec!["mode".to_string()]));
    }
}
