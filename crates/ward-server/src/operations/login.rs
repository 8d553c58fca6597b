//! Logging in and who a session is: one implementation for every front end (the admin API's
//! `POST /api/v1/login` and bearer sessions, the web console's form and cookie), so both have
//! the same login limiter, the same argon2 check and the same session rules.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use ward_api::fleet::{LoginAnswer, LoginRequest};
use ward_proto::now_ms;
use ward_store::Session;

use super::render;
use crate::api::{blocking, ApiError};
use crate::auth::{self, Caller, Role};
use crate::state::App;

/// Why a login made no session.
#[derive(Debug)]
pub enum LoginRefused {
    /// Too many failures for this account from this address, or from this address: try again
    /// after the wait (each further failure doubles it).
    Wait(Duration),
    /// A wrong name or password (401 `invalid_login`), a disabled account (403), a name too
    /// long (400), or the store.
    Refused(ApiError),
}

impl From<ApiError> for LoginRefused {
    fn from(error: ApiError) -> LoginRefused {
        LoginRefused::Refused(error)
    }
}

/// A session for an account whose password matches, limited per account and address.
pub async fn login(
    app: &App,
    address: IpAddr,
    request: LoginRequest,
) -> Result<LoginAnswer, LoginRefused> {
    let LoginRequest { user, password } = request;
    if user.chars().count() > auth::MAX_USER_CHARS {
        return Err(ApiError::bad_request("'user' is too long").into());
    }
    let begun = app
        .login_limiter
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .begin(&user, address, Instant::now());
    if let Err(wait) = begun {
        return Err(LoginRefused::Wait(wait));
    }
    // Few password checks at once: each takes argon2's memory and a blocking thread.
    let permit = app.argon2_permits.acquire().await;
    let store = app.store.clone();
    let account_name = user.clone();
    let verified = blocking(move || {
        let account = store.account(&account_name)?;
        Ok(checked_login(account, &password, auth::verify_password))
    })
    .await;
    drop(permit);
    let finish = |failed: bool| {
        app.login_limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .finish(&user, address, Instant::now(), failed);
    };
    let verified = match verified {
        Ok(verified) => verified,
        Err(error) => {
            finish(false);
            return Err(error.into());
        }
    };
    finish(verified.is_none());
    let Some(account) = verified else {
        tracing::warn!(user, %address, "failed login");
        return Err(invalid_login().into());
    };
    if account.disabled {
        // Said only to who knows the password: the account exists, and is disabled.
        return Err(ApiError::client(
            StatusCode::FORBIDDEN,
            "account_disabled",
            format!(
                "account '{}' is disabled; an admin can enable it",
                account.name
            ),
        )
        .into());
    }
    let (token, hash) = auth::new_token();
    let expires_ms = now_ms() + auth::SESSION_LIFETIME.as_millis() as i64;
    let store = app.store.clone();
    let session = Session {
        token_sha256: hash,
        account: account.name.clone(),
        expires_ms,
    };
    // Only if no password change, disable or revoke came in since the password was checked.
    let checked_against = account.credential_version;
    match blocking(move || Ok(store.create_session(&session, checked_against))).await? {
        Ok(()) => {}
        Err(ward_store::StoreError::Conflict(_)) => {
            tracing::warn!(user, %address, "login raced a credential change: no session");
            return Err(invalid_login().into());
        }
        Err(error) => return Err(ApiError::from(error).into()),
    }
    Ok(LoginAnswer {
        token,
        user: account.name.clone(),
        role: render::stored_role(&account.role),
        expires: render::time(expires_ms),
    })
}

fn invalid_login() -> ApiError {
    ApiError::client(
        StatusCode::UNAUTHORIZED,
        "invalid_login",
        "invalid user or password",
    )
}

/// The caller behind a session token (from `POST /login`), if it is a live session of an
/// enabled account: every request asks the store, so `account disable|passwd|revoke` ends the
/// session at once, on every server of a site.
pub async fn session_caller(app: &App, token: &str) -> Option<Caller> {
    let hash = auth::sha256_hex(token);
    let store = app.store.clone();
    let found = blocking(move || {
        let Some(session) = store.session(&hash)? else {
            return Ok(None);
        };
        if session.expires_ms <= now_ms() {
            return Ok(None);
        }
        // A disabled account's sessions are ended when it is disabled; checked here too.
        Ok(store
            .account(&session.account)?
            .filter(|account| !account.disabled)
            .map(|account| (account, session)))
    })
    .await
    .ok()??;
    let (account, session) = found;
    Some(Caller {
        role: Role::parse(&account.role)?,
        name: account.name,
        session: Some(session.token_sha256),
    })
}

/// The account `password` opens, if any. An unknown account costs one password check too,
/// against [`DUMMY_HASH`], exactly as a known one does: timing does not tell which names exist.
fn checked_login(
    account: Option<ward_store::Account>,
    password: &str,
    verify: impl Fn(&str, &str) -> bool,
) -> Option<ward_store::Account> {
    let hash = account
        .as_ref()
        .map_or(DUMMY_HASH, |a| a.password_hash.as_str());
    let matches = verify(password, hash);
    account.filter(|_| matches)
}

/// An argon2id hash of a random password, verified against when the account does not exist.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0Bi4EuvQbUc9L+MwYXv4D4HxU8LCbxJSP6c9o9NqkPc";

#[cfg(test)]
mod tests;
