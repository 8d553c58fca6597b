//! Accounts: list, create (admin or auditor, argon2id password), delete, and a new password.
//! Deleting an account or changing its password ends its sessions.

use bytes::Bytes;
use serde_json::{json, Value};
use ward_fleet::name;
use ward_store::{Account, Change, Mutation, Store};

use super::{created, ok};
use crate::api::{typed, ApiError, ApiResult};
use crate::auth::{self, Caller, Role};
use crate::ops::audit;

/// `POST /accounts`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    name: String,
    password: String,
    /// `admin` or `auditor`.
    role: String,
}

pub(super) fn list_accounts(store: &dyn Store) -> ApiResult {
    let accounts = store.accounts()?;
    ok(Value::Array(
        accounts
            .iter()
            .map(|a| json!({"name": a.name, "role": a.role, "disabled": a.disabled}))
            .collect(),
    ))
}

pub(super) fn delete_account(store: &dyn Store, caller: &Caller, name: &str) -> ApiResult {
    store.apply(&Change {
        mutation: Mutation::DeleteAccount(name.to_string()),
        bump_groups: vec![],
        bump_agents: vec![],
        audit: audit(caller, "account.delete", name.to_string(), None, None),
    })?;
    ok(json!({"deleted": name}))
}

/// `POST /accounts/{name}/password`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
}

/// A new password; the account's sessions end.
pub(super) fn set_password(
    store: &dyn Store,
    caller: &Caller,
    name: &str,
    body: &Bytes,
) -> ApiResult {
    let request: NewPassword = typed(body)?;
    if request.password.chars().count() < 12 {
        return Err(ApiError::bad_request(
            "the password must have at least 12 characters",
        ));
    }
    let password_hash = auth::hash_password(&request.password).map_err(ApiError::internal)?;
    store.apply(&Change {
        mutation: Mutation::SetPassword {
            account: name.to_string(),
            password_hash,
        },
        bump_groups: vec![],
        bump_agents: vec![],
        audit: audit(caller, "account.password", name.to_string(), None, None),
    })?;
    ok(json!({"account": name, "sessions_ended": true}))
}

/// Disables (its sessions end at once) or enables an account.
pub(super) fn set_disabled(
    store: &dyn Store,
    caller: &Caller,
    name: &str,
    disabled: bool,
) -> ApiResult {
    store.apply(&Change {
        mutation: Mutation::SetDisabled {
            account: name.to_string(),
            disabled,
        },
        bump_groups: vec![],
        bump_agents: vec![],
        audit: audit(
            caller,
            if disabled {
                "account.disable"
            } else {
                "account.enable"
            },
            name.to_string(),
            None,
            None,
        ),
    })?;
    ok(json!({"account": name, "disabled": disabled, "sessions_ended": disabled}))
}

/// Ends every session of an account (a revoke-all).
pub(super) fn revoke_sessions(store: &dyn Store, caller: &Caller, name: &str) -> ApiResult {
    store.apply(&Change {
        mutation: Mutation::EndSessions(name.to_string()),
        bump_groups: vec![],
        bump_agents: vec![],
        audit: audit(caller, "account.revoke", name.to_string(), None, None),
    })?;
    ok(json!({"account": name, "sessions_ended": true}))
}

/// `DELETE /session`: ends the caller's own session (a logout).
pub(super) fn logout(store: &dyn Store, caller: &Caller) -> ApiResult {
    let Some(session) = &caller.session else {
        return Err(ApiError::bad_request(
            "the local admin token is not a session: nothing to log out of",
        ));
    };
    store.apply(&Change {
        mutation: Mutation::EndSession(session.clone()),
        bump_groups: vec![],
        bump_agents: vec![],
        audit: audit(caller, "session.logout", caller.name.clone(), None, None),
    })?;
    ok(json!({"logged_out": caller.name}))
}

pub(super) fn create_account(store: &dyn Store, caller: &Caller, body: &Bytes) -> ApiResult {
    let NewAccount {
        name: account_name,
        password,
        role,
    } = typed(body)?;
    name::check_name(&account_name).map_err(|e| ApiError::bad_request(format!("name: {e}")))?;
    if let Some(reason) = auth::reserved_actor(&account_name) {
        return Err(ApiError::bad_request(format!("name: {reason}")));
    }
    if password.chars().count() < 12 {
        return Err(ApiError::bad_request("password: at least 12 characters"));
    }
    let role = Role::parse(&role)
        .ok_or_else(|| ApiError::bad_request(format!("role: '{role}' is not admin or auditor")))?;
    let password_hash = auth::hash_password(&password).map_err(ApiError::bad_request)?;
    store.apply(&Change {
        mutation: Mutation::CreateAccount(Account {
            name: account_name.clone(),
            password_hash,
            role: role.name().into(),
            disabled: false,
            credential_version: 0,
        }),
        bump_groups: vec![],
        bump_agents: vec![],
        audit: audit(
            caller,
            "account.create",
            account_name.clone(),
            None,
            Some(json!({"role": role.name()})),
        ),
    })?;
    created(json!({"name": account_name, "role": role.name()}))
}
