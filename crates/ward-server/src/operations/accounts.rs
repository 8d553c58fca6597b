//! Accounts: list, create (admin or auditor, argon2id password), delete, a new password,
//! disable, enable, end every session; and a logout. Deleting an account, a new password,
//! disabling it and ending its sessions all end its sessions (and bump its credential
//! version, so a login racing them makes no session).

use ward_api::fleet::{
    AccountChanged, AccountInfo, CreatedAccount, Deleted, LoggedOut, NewAccount, NewPassword,
};
use ward_fleet::name;
use ward_store::{Account, Change, Mutation};

use super::{read, render, write};
use crate::api::ApiError;
use crate::auth::{self, Caller, Role};
use crate::ops::audit;
use crate::state::App;

/// Every account, by name.
pub async fn list(app: &App) -> Result<Vec<AccountInfo>, ApiError> {
    read(app, |ctx| {
        Ok(ctx
            .store()
            .accounts()?
            .iter()
            .map(|a| AccountInfo {
                name: a.name.clone(),
                role: render::stored_role(&a.role),
                disabled: a.disabled,
            })
            .collect())
    })
    .await
}

/// `DELETE /accounts/{name}`.
pub async fn delete(app: &App, caller: &Caller, name: String) -> Result<Deleted, ApiError> {
    let caller = caller.clone();
    write(app, move |ctx| {
        ctx.store().apply(&Change {
            tree_version: None,
            mutation: Mutation::DeleteAccount(name.clone()),
            bump_groups: vec![],
            bump_agents: vec![],
            audit: audit(&caller, "account.delete", name.clone(), None, None),
        })?;
        Ok(Deleted { deleted: name })
    })
    .await
}

/// `POST /accounts/{name}/password`: a new password; the account's sessions end.
pub async fn set_password(
    app: &App,
    caller: &Caller,
    name: String,
    request: NewPassword,
) -> Result<AccountChanged, ApiError> {
    if request.password.chars().count() < 12 {
        return Err(ApiError::bad_request(
            "the password must have at least 12 characters",
        ));
    }
    let caller = caller.clone();
    // argon2 before the lock: it takes its time and touches nothing.
    let password_hash = crate::api::blocking(move || {
        auth::hash_password(&request.password).map_err(ApiError::internal)
    })
    .await?;
    write(app, move |ctx| {
        ctx.store().apply(&Change {
            tree_version: None,
            mutation: Mutation::SetPassword {
                account: name.clone(),
                password_hash,
            },
            bump_groups: vec![],
            bump_agents: vec![],
            audit: audit(&caller, "account.password", name.clone(), None, None),
        })?;
        Ok(AccountChanged {
            account: name,
            sessions_ended: true,
            disabled: None,
        })
    })
    .await
}

/// `POST /accounts/{name}/disable` (its sessions end at once) and `/enable`.
pub async fn set_disabled(
    app: &App,
    caller: &Caller,
    name: String,
    disabled: bool,
) -> Result<AccountChanged, ApiError> {
    let caller = caller.clone();
    write(app, move |ctx| {
        ctx.store().apply(&Change {
            tree_version: None,
            mutation: Mutation::SetDisabled {
                account: name.clone(),
                disabled,
            },
            bump_groups: vec![],
            bump_agents: vec![],
            audit: audit(
                &caller,
                if disabled {
                    "account.disable"
                } else {
                    "account.enable"
                },
                name.clone(),
                None,
                None,
            ),
        })?;
        Ok(AccountChanged {
            account: name,
            sessions_ended: disabled,
            disabled: Some(disabled),
        })
    })
    .await
}

/// `POST /accounts/{name}/revoke`: every session of the account ends.
pub async fn revoke_sessions(
    app: &App,
    caller: &Caller,
    name: String,
) -> Result<AccountChanged, ApiError> {
    let caller = caller.clone();
    write(app, move |ctx| {
        ctx.store().apply(&Change {
            tree_version: None,
            mutation: Mutation::EndSessions(name.clone()),
            bump_groups: vec![],
            bump_agents: vec![],
            audit: audit(&caller, "account.revoke", name.clone(), None, None),
        })?;
        Ok(AccountChanged {
            account: name,
            sessions_ended: true,
            disabled: None,
        })
    })
    .await
}

/// `DELETE /session`: ends the caller's own session (a logout). The local admin token is no
/// session: 404.
pub async fn logout(app: &App, caller: &Caller) -> Result<LoggedOut, ApiError> {
    let Some(session) = caller.session.clone() else {
        return Err(ApiError::not_found(
            "the local admin token is not a session: nothing to log out of",
        ));
    };
    let caller = caller.clone();
    write(app, move |ctx| {
        ctx.store().apply(&Change {
            tree_version: None,
            mutation: Mutation::EndSession(session),
            bump_groups: vec![],
            bump_agents: vec![],
            audit: audit(&caller, "session.logout", caller.name.clone(), None, None),
        })?;
        Ok(LoggedOut {
            logged_out: caller.name,
        })
    })
    .await
}

/// `POST /accounts`: a new account (names the audit log uses for other actors are refused).
pub async fn create(
    app: &App,
    caller: &Caller,
    request: NewAccount,
) -> Result<CreatedAccount, ApiError> {
    let NewAccount {
        name: account_name,
        password,
        role,
    } = request;
    name::check_name(&account_name).map_err(|e| ApiError::bad_request(format!("name: {e}")))?;
    if let Some(reason) = auth::reserved_actor(&account_name) {
        return Err(ApiError::bad_request(format!("name: {reason}")));
    }
    if password.chars().count() < 12 {
        return Err(ApiError::bad_request("password: at least 12 characters"));
    }
    let role = match role {
        ward_api::fleet::Role::Admin => Role::Admin,
        ward_api::fleet::Role::Auditor => Role::Auditor,
    };
    let password_hash =
        crate::api::blocking(move || auth::hash_password(&password).map_err(ApiError::bad_request))
            .await?;
    let caller = caller.clone();
    write(app, move |ctx| {
        ctx.store().apply(&Change {
            tree_version: None,
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
                &caller,
                "account.create",
                account_name.clone(),
                None,
                Some(serde_json::json!({"role": role.name()})),
            ),
        })?;
        Ok(CreatedAccount {
            name: account_name,
            role: render::role(role),
        })
    })
    .await
}
