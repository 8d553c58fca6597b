//! The fleet routes of the admin API: the dispatcher ([`route`]) and the helpers its handlers
//! share. The handlers live in one child module per resource: [`groups`], [`serverlists`],
//! [`agents`], [`tokens`], [`accounts`] and [`audit`]; the children use this module's
//! helpers and the crate's shared modules, never each other.
//!
//! Every write takes the server's fleet lock, reads the tree, checks the change with
//! ward-fleet, computes the serial bumps, and hands one `Change` to the store, so the check
//! and the write see the same state. Request bodies are serde structs read with
//! [`crate::api::typed`]: unknown fields are refused and every refusal names its field.

mod accounts;
mod agents;
mod audit;
mod groups;
mod serverlists;
mod tokens;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::Value;
use ward_fleet::{GroupId, Tree};
use ward_store::Store;

use crate::api::{blocking, json_response, ApiError, ApiResult};
use crate::auth::Caller;
use crate::state::App;

pub struct Request<'a> {
    pub shared: &'a App,
    pub caller: &'a Caller,
    pub method: &'a Method,
    pub segments: &'a [&'a str],
    pub query: &'a str,
    pub body: &'a Bytes,
}

fn ok(value: Value) -> ApiResult {
    Ok(json_response(StatusCode::OK, &value))
}

fn created(value: Value) -> ApiResult {
    Ok(json_response(StatusCode::CREATED, &value))
}

fn method_not_allowed(allowed: &str) -> ApiResult {
    Err(ApiError::client(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("this resource allows {allowed}"),
    ))
}

fn group_id(tree: &Tree, segment: &str) -> Result<GroupId, ApiError> {
    segment
        .parse::<GroupId>()
        .ok()
        .filter(|id| tree.get(*id).is_some())
        .ok_or_else(|| ApiError::not_found(format!("no group {segment}")))
}

/// The largest `limit` a listing takes.
const MAX_LIMIT: usize = 10_000_000;

fn limit(value: &str) -> Result<usize, ApiError> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| ApiError::bad_request(format!("limit: a number from 1 to {MAX_LIMIT}")))
}

pub async fn route(request: Request<'_>) -> Option<ApiResult> {
    let Request {
        shared,
        caller,
        method,
        segments,
        query,
        body,
    } = request;
    let store = shared.store.clone();
    let caller = caller.clone();
    let body = body.clone();
    let query = query.to_string();
    let retiring = *method == Method::POST && segments == ["agents", "delete"];
    // The clients listener serving now: fleet edits are judged against it (every agent's
    // kept ClientHello replayed through it).
    let clients = shared.tls.current(crate::config::Role::Clients);
    let segments: Vec<String> = segments.iter().map(|s| s.to_string()).collect();
    let body_owned = body.clone();
    let method = method.clone();
    // Only a settings export needs the server's identity (and reads the CA file).
    let identity = (segments.last().map(String::as_str) == Some("export")).then(|| {
        (
            ward_proto::hex(&shared.agreement().current.public),
            // The CAs agents are told to trust, from a CA rotation on; else ward's CA.
            Some(shared.agent_trust())
                .filter(|trust| !trust.is_empty())
                .map(|trust| trust.to_string())
                .unwrap_or_else(|| {
                    std::fs::read_to_string(shared.data.ca_cert()).unwrap_or_default()
                }),
        )
    });
    // Push agents whose check-in is held now: online, whatever their last check-in says.
    let held = if segments.first().map(String::as_str) == Some("agents") {
        shared.held.snapshot()
    } else {
        Default::default()
    };
    let _write_guard = if method == Method::GET || method == Method::HEAD {
        None
    } else {
        Some(shared.fleet_lock.lock().await)
    };
    let result = blocking(move || {
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let store: &dyn Store = &*store;
        match segments.as_slice() {
            ["groups"] => Ok(Some(groups::groups(store, &caller, &method, &body)?)),
            ["groups", id] => Ok(Some(groups::group(
                store, &caller, &method, id, &body, &clients,
            )?)),
            ["groups", id, "move"] if method == Method::POST => Ok(Some(groups::move_group(
                store, &caller, id, &body, &clients,
            )?)),
            ["groups", id, "export"] if method == Method::POST => {
                let identity = identity.as_ref().expect("read for export routes");
                Ok(Some(groups::export_settings(
                    store, &caller, id, identity, &body,
                )?))
            }
            ["serverlists"] => Ok(Some(serverlists::server_lists(
                store, &caller, &method, &body,
            )?)),
            ["serverlists", name] => Ok(Some(serverlists::server_list(
                store, &caller, &method, name,
            )?)),
            ["serverlists", name, "copy"] if method == Method::POST => {
                Ok(Some(serverlists::copy_list(store, &caller, name, &body)?))
            }
            ["agents"] if method == Method::GET => Ok(Some(agents::agents(store, &query, &held)?)),
            ["agents", "delete"] if method == Method::POST => {
                Ok(Some(agents::delete_agents(store, &caller, &body)?))
            }
            ["agents", "move"] if method == Method::POST => {
                Ok(Some(agents::move_agents(store, &caller, &body, &clients)?))
            }
            ["agents", id] if method == Method::GET => Ok(Some(agents::agent(store, id, &held)?)),
            ["accounts"] if method == Method::GET => Ok(Some(accounts::list_accounts(store)?)),
            ["accounts", name] if method == Method::DELETE => {
                Ok(Some(accounts::delete_account(store, &caller, name)?))
            }
            ["accounts", name, "password"] if method == Method::POST => {
                Ok(Some(accounts::set_password(store, &caller, name, &body)?))
            }
            ["accounts", name, "disable"] if method == Method::POST => {
                Ok(Some(accounts::set_disabled(store, &caller, name, true)?))
            }
            ["accounts", name, "enable"] if method == Method::POST => {
                Ok(Some(accounts::set_disabled(store, &caller, name, false)?))
            }
            ["accounts", name, "revoke"] if method == Method::POST => {
                Ok(Some(accounts::revoke_sessions(store, &caller, name)?))
            }
            ["session"] if method == Method::DELETE => Ok(Some(accounts::logout(store, &caller)?)),
            ["tokens"] => Ok(Some(tokens::tokens(store, &caller, &method, &body)?)),
            ["tokens", id, "revoke"] if method == Method::POST => {
                Ok(Some(tokens::revoke_token(store, &caller, id)?))
            }
            ["audit"] if method == Method::GET => Ok(Some(audit::audit_log(store, &query)?)),
            ["accounts"] if method == Method::POST => {
                Ok(Some(accounts::create_account(store, &caller, &body)?))
            }
            ["agents" | "audit" | "accounts", ..] | ["groups" | "serverlists" | "tokens", _, _] => {
                Ok(Some(method_not_allowed(
                    "the methods listed in /api/v1/openapi.json",
                )?))
            }
            _ => Ok(None),
        }
    })
    .await;
    // Retired agents' keys are forgotten (their check-ins are refused by the store anyway).
    if let (true, Ok(Some(response))) = (retiring, &result) {
        if response.status().is_success() {
            if let Ok(request) = crate::api::typed::<agents::DeleteAgents>(&body_owned) {
                shared.agent_keys.remove(&request.ids);
            }
        }
    }
    match result {
        Ok(Some(response)) => Some(Ok(response)),
        Ok(None) => None,
        Err(error) => Some(Err(error)),
    }
}

/// For the children's table tests: `typed::<T>` refuses each body with a 400 `bad_request`
/// whose message contains the expected words (the field's name, at least).
#[cfg(test)]
fn assert_refused<T: serde::de::DeserializeOwned + std::fmt::Debug>(cases: &[(&str, &str)]) {
    for (body, expected) in cases {
        match crate::api::typed::<T>(&Bytes::copy_from_slice(body.as_bytes())) {
            Ok(parsed) => panic!("{body}: accepted as {parsed:?}"),
            Err(error) => {
                assert_eq!(error.status, StatusCode::BAD_REQUEST, "{body}");
                assert_eq!(error.code, "bad_request", "{body}");
                assert!(
                    error.message.contains(expected),
                    "{body}: {:?} lacks {expected:?}",
                    error.message
                );
            }
        }
    }
}
