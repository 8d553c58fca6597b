//! Server lists: list, create, read, delete, and copy a list as the plain-HTTP list of a
//! legacy group (`serverlist::http_copy`).

use ward_api::fleet::{
    CopyList, Deleted, NewServerList, Protocol, ServerList as ListAnswer, ServerListEdit,
};
use ward_fleet::serverlist;
use ward_fleet::{ServerList, Tree};
use ward_store::{Change, Mutation, Store};

use super::{read, render, write};
use crate::api::ApiError;
use crate::auth::Caller;
use crate::ops::{audit, tree_of};
use crate::state::App;

/// The groups that set `list` themselves, by path.
fn used_by(tree: &Tree, list: &str) -> Vec<String> {
    let mut paths: Vec<String> = tree
        .groups()
        .filter(|g| g.own.server_list.as_deref() == Some(list))
        .filter_map(|g| tree.path(g.id))
        .collect();
    paths.sort();
    paths
}

fn create_list(
    store: &dyn Store,
    caller: &Caller,
    list: ServerList,
) -> Result<ListAnswer, ApiError> {
    let tree = tree_of(store)?;
    store.apply(&Change {
        tree_version: None,
        mutation: Mutation::CreateServerList(list.clone()),
        bump_groups: vec![],
        bump_agents: vec![],
        audit: audit(
            caller,
            "serverlist.create",
            list.name.clone(),
            None,
            Some(render::audited(&render::list(&list, vec![]))),
        ),
    })?;
    Ok(render::list(&list, used_by(&tree, &list.name)))
}

/// Every server list and who uses it.
pub async fn list(app: &App) -> Result<Vec<ListAnswer>, ApiError> {
    read(app, |ctx| {
        let tree = tree_of(ctx.store())?;
        Ok(ctx
            .store()
            .server_lists()?
            .iter()
            .map(|l| render::list(l, used_by(&tree, &l.name)))
            .collect())
    })
    .await
}

/// A request's server entries (`1:https://mgr1:443`), or the first it cannot read.
fn entries(specs: &[String]) -> Result<Vec<(u32, ward_fleet::serverlist::ServerEntry)>, ApiError> {
    specs
        .iter()
        .map(|spec| serverlist::parse_spec(spec))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::bad_request(format!("servers: {e}")))
}

/// `POST /serverlists`.
pub async fn create(
    app: &App,
    caller: &Caller,
    request: NewServerList,
) -> Result<ListAnswer, ApiError> {
    let caller = caller.clone();
    write(app, move |ctx| {
        let entries = entries(&request.servers)?;
        let list = serverlist::build(&request.name, entries)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        create_list(ctx.store(), &caller, list)
    })
    .await
}

fn find_list(store: &dyn Store, name: &str) -> Result<ServerList, ApiError> {
    store
        .server_lists()?
        .into_iter()
        .find(|l| l.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no server list '{name}'")))
}

/// `GET /serverlists/{name}`.
pub async fn get(app: &App, name: String) -> Result<ListAnswer, ApiError> {
    read(app, move |ctx| {
        let tree = tree_of(ctx.store())?;
        let list = find_list(ctx.store(), &name)?;
        Ok(render::list(&list, used_by(&tree, &name)))
    })
    .await
}

/// `DELETE /serverlists/{name}`: refused while a group uses it.
pub async fn delete(app: &App, caller: &Caller, name: String) -> Result<Deleted, ApiError> {
    let caller = caller.clone();
    write(app, move |ctx| {
        let store = ctx.store();
        let list = find_list(store, &name)?;
        store.apply(&Change {
            tree_version: None,
            mutation: Mutation::DeleteServerList(name.clone()),
            bump_groups: vec![],
            bump_agents: vec![],
            audit: audit(
                &caller,
                "serverlist.delete",
                name.clone(),
                Some(render::audited(&render::list(&list, vec![]))),
                None,
            ),
        })?;
        Ok(Deleted { deleted: name })
    })
    .await
}

/// `PUT /serverlists/{name}`: the list's servers replaced, guarded: 409 `would_cut_off` when
/// agents of the groups that use it would lose their last path, unless accepted. Those
/// agents get a new serial.
pub async fn update(
    app: &App,
    caller: &Caller,
    name: String,
    request: ServerListEdit,
) -> Result<ListAnswer, ApiError> {
    let caller = caller.clone();
    write(app, move |ctx| {
        let store = ctx.store();
        let current = find_list(store, &name)?;
        let entries = entries(&request.servers)?;
        let edited = serverlist::build(&name, entries)
            .map_err(|e| ApiError::bad_request(format!("servers: {e}")))?;
        let tree = tree_of(store)?;
        let lists: Vec<ServerList> = store
            .server_lists()?
            .into_iter()
            .map(|list| {
                if list.name == name {
                    edited.clone()
                } else {
                    list
                }
            })
            .collect();
        let cut = ctx.guard(
            crate::impact::FleetEdit {
                tree: None,
                moves: &Default::default(),
                lists: Some(lists),
            },
            &format!("changing server list '{name}'"),
            request.accept_cut_off,
        )?;
        // Every group whose agents use the list, set there or inherited.
        let bump_groups: Vec<_> = tree
            .effective_all()
            .into_iter()
            .filter(|(_, effective)| effective.server_list == name)
            .map(|(group, _)| group)
            .collect();
        let mut after = render::audited(&render::list(&edited, vec![]));
        if !cut.is_empty() {
            after["cut_off_accepted"] = render::audited(&cut);
        }
        store.apply(&Change {
            tree_version: Some(tree.version),
            mutation: Mutation::UpdateServerList(edited.clone()),
            bump_groups,
            bump_agents: vec![],
            audit: audit(
                &caller,
                "serverlist.update",
                name.clone(),
                Some(render::audited(&render::list(&current, vec![]))),
                Some(after),
            ),
        })?;
        Ok(render::list(&edited, used_by(&tree, &name)))
    })
    .await
}

/// `POST /serverlists/{name}/copy`: every server on one protocol and port (HTTP on the
/// clients-http port 8014 unless said: the seed's legacy list).
pub async fn copy(
    app: &App,
    caller: &Caller,
    name: String,
    request: CopyList,
) -> Result<ListAnswer, ApiError> {
    let caller = caller.clone();
    write(app, move |ctx| {
        let list = find_list(ctx.store(), &name)?;
        let protocol = match request.protocol.unwrap_or(Protocol::Http) {
            Protocol::Http => ward_fleet::Protocol::Http,
            Protocol::Https => ward_fleet::Protocol::Https,
        };
        let port = match request.port {
            None => 8014,
            Some(0) => return Err(ApiError::bad_request("port: a number from 1 to 65535")),
            Some(port) => port,
        };
        let copy = serverlist::http_copy(&list, &request.name, protocol, port)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        create_list(ctx.store(), &caller, copy)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operations::assert_refused;

    #[test]
    fn bad_server_list_bodies_name_their_field() {
        assert_refused::<NewServerList>(&[
            (r#"{"name":"L"}"#, "missing field `servers`"),
            (
                r#"{"name":"L","servers":"1:https://x:1"}"#,
                "servers: invalid type: string",
            ),
            (
                r#"{"name":"L","servers":[1]}"#,
                "servers[0]: invalid type: integer",
            ),
            (r#"{"servers":[]}"#, "missing field `name`"),
            (
                r#"{"name":"L","servers":[],"port":1}"#,
                "unknown field `port`",
            ),
        ]);
        assert_refused::<CopyList>(&[
            (
                r#"{"name":"H","port":70000}"#,
                "port: invalid value: integer `70000`",
            ),
            (r#"{"name":"H","port":-1}"#, "port: invalid value"),
            (
                r#"{"name":"H","port":"8014"}"#,
                "port: invalid type: string",
            ),
            (
                r#"{"name":"H","port":80.5}"#,
                "port: invalid type: floating point",
            ),
            (r#"{"name":"H","protocol":1}"#, "protocol: invalid type"),
            (r#"{"port":8014}"#, "missing field `name`"),
        ]);
    }
}
