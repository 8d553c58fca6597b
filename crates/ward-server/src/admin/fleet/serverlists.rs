//! Server lists: list, create, read, delete, and copy a list as the plain-HTTP list of a
//! legacy group (`serverlist::http_copy`).

use bytes::Bytes;
use hyper::Method;
use serde_json::{json, Value};
use ward_fleet::serverlist::{self, Protocol};
use ward_fleet::{ServerList, Tree};
use ward_store::{Change, Mutation, Store};

use super::{created, method_not_allowed, ok};
use crate::admin::wire;
use crate::api::{typed, ApiError, ApiResult};
use crate::auth::Caller;
use crate::ops::{audit, tree_of};

/// `POST /serverlists`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewServerList {
    name: String,
    /// `PRIORITY:PROTO://ADDRESS:PORT` specs, e.g. `1:https://mgr1:443`.
    servers: Vec<String>,
}

/// `POST /serverlists/{name}/copy`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CopyList {
    name: String,
    /// `http` (the default) or `https`.
    protocol: Option<String>,
    /// 8014 (clients-http) when absent.
    port: Option<u16>,
}

fn used_by(tree: &Tree, list: &str) -> Vec<String> {
    let mut paths: Vec<String> = tree
        .groups()
        .filter(|g| g.own.server_list.as_deref() == Some(list))
        .filter_map(|g| tree.path(g.id))
        .collect();
    paths.sort();
    paths
}

fn create_list(store: &dyn Store, caller: &Caller, list: ServerList) -> ApiResult {
    let tree = tree_of(store)?;
    let value = wire::list_json(&list, vec![]);
    store.apply(&Change {
        mutation: Mutation::CreateServerList(list.clone()),
        bump_groups: vec![],
        bump_agents: vec![],
        audit: audit(
            caller,
            "serverlist.create",
            list.name.clone(),
            None,
            Some(value.clone()),
        ),
    })?;
    created(wire::list_json(&list, used_by(&tree, &list.name)))
}

pub(super) fn server_lists(
    store: &dyn Store,
    caller: &Caller,
    method: &Method,
    body: &Bytes,
) -> ApiResult {
    match *method {
        Method::GET => {
            let tree = tree_of(store)?;
            let lists = store.server_lists()?;
            ok(Value::Array(
                lists
                    .iter()
                    .map(|l| wire::list_json(l, used_by(&tree, &l.name)))
                    .collect(),
            ))
        }
        Method::POST => {
            let request: NewServerList = typed(body)?;
            let entries = request
                .servers
                .iter()
                .map(|spec| serverlist::parse_spec(spec))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            let list = serverlist::build(&request.name, entries)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            create_list(store, caller, list)
        }
        _ => method_not_allowed("GET, POST"),
    }
}

fn find_list(store: &dyn Store, name: &str) -> Result<ServerList, ApiError> {
    store
        .server_lists()?
        .into_iter()
        .find(|l| l.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no server list '{name}'")))
}

pub(super) fn server_list(
    store: &dyn Store,
    caller: &Caller,
    method: &Method,
    name: &str,
) -> ApiResult {
    let tree = tree_of(store)?;
    let list = find_list(store, name)?;
    match *method {
        Method::GET => ok(wire::list_json(&list, used_by(&tree, name))),
        Method::DELETE => {
            store.apply(&Change {
                mutation: Mutation::DeleteServerList(name.to_string()),
                bump_groups: vec![],
                bump_agents: vec![],
                audit: audit(
                    caller,
                    "serverlist.delete",
                    name.to_string(),
                    Some(wire::list_json(&list, vec![])),
                    None,
                ),
            })?;
            ok(json!({"deleted": name}))
        }
        _ => method_not_allowed("GET, DELETE"),
    }
}

pub(super) fn copy_list(store: &dyn Store, caller: &Caller, name: &str, body: &Bytes) -> ApiResult {
    let list = find_list(store, name)?;
    let request: CopyList = typed(body)?;
    let protocol = match request.protocol {
        Some(p) => Protocol::parse(&p).ok_or_else(|| {
            ApiError::bad_request(format!("protocol: '{p}' is not http or https"))
        })?,
        None => Protocol::Http,
    };
    let port = match request.port {
        None => 8014,
        Some(0) => return Err(ApiError::bad_request("port: a number from 1 to 65535")),
        Some(port) => port,
    };
    let copy = serverlist::http_copy(&list, &request.name, protocol, port)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    create_list(store, caller, copy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::fleet::assert_refused;

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
