//! Logging in and out. The form is guarded by a double-submit token (a random value in a
//! `__Host-` cookie and in the form), the password checked by `operations::login` (argon2,
//! the admin API's login limiter), the session kept in a `Secure; HttpOnly; SameSite=Strict`
//! cookie. The local admin token is not a login.

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::http::request::Parts;
use hyper::StatusCode;
use maud::html;
use ward_api::fleet::LoginRequest;
use ward_server::api::HttpResponse;
use ward_server::auth::SESSION_LIFETIME;
use ward_server::operations::{accounts, login};
use ward_server::state::App;

use crate::layout::{self, View};
use crate::{respond, session};

/// The login page, with a fresh double-submit token.
pub fn form(request: &Parts, error: Option<(StatusCode, String)>) -> HttpResponse {
    let query = respond::query(request.uri.query());
    let next = session::safe_next(query.get("next").unwrap_or("/")).to_string();
    page(request, &next, None, error)
}

/// The login page. The double-submit token is the one the browser already holds, if any: a
/// second tab or a background request that loads the page must not void the first form.
fn page(
    request: &Parts,
    next: &str,
    user: Option<&str>,
    error: Option<(StatusCode, String)>,
) -> HttpResponse {
    let token = session::cookie(&request.headers, session::LOGIN_COOKIE)
        .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(session::random_token);
    let status = error.as_ref().map_or(StatusCode::OK, |(status, _)| *status);
    let body = html! {
        div.login {
            p.muted { "Log in with a ward account (an admin makes one with "
                code { "ward account create NAME --role admin|auditor" } ")." }
            @if let Some((_, message)) = &error {
                p.error #login-error role="alert" { (message) }
            }
            form.stacked method="post" action="/login" {
                input type="hidden" name="login_csrf" value=(token);
                input type="hidden" name="next" value=(next);
                label for="user" { "Account"
                    input #user type="text" name="user" autocomplete="username" required
                        autofocus value=(user.unwrap_or(""));
                }
                label for="password" { "Password"
                    input #password type="password" name="password"
                        autocomplete="current-password" required;
                }
                button type="submit" #login { "Log in" }
            }
        }
    };
    let mut response = respond::page(status, layout::shell(None, "Log in to ward", body));
    if let Ok(value) =
        HeaderValue::from_str(&session::set_cookie(session::LOGIN_COOKIE, &token, 3600))
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// `POST /login`.
pub async fn submit(app: &App, peer: SocketAddr, request: &Parts, body: Incoming) -> HttpResponse {
    let form = match respond::form(app, body).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    let next = session::safe_next(form.get("next").unwrap_or("/")).to_string();
    let user = form.get("user").unwrap_or("").to_string();
    let cookie = session::cookie(&request.headers, session::LOGIN_COOKIE);
    if !session::login_token_matches(cookie.as_deref(), form.get("login_csrf")) {
        tracing::warn!(%peer, "console login form without its token");
        return page(
            request,
            &next,
            Some(&user),
            Some((
                StatusCode::FORBIDDEN,
                "This login form had expired or was not sent from this console's page: \
                 nothing was checked. Log in again."
                    .into(),
            )),
        );
    }
    let credentials = LoginRequest {
        user: user.clone(),
        password: form.get("password").unwrap_or("").to_string(),
    };
    match login::login(app, peer.ip(), credentials).await {
        Ok(answer) => respond::redirect(
            &next,
            &[
                session::set_cookie(
                    session::SESSION_COOKIE,
                    &answer.token,
                    SESSION_LIFETIME.as_secs(),
                ),
                session::set_cookie(session::LOGIN_COOKIE, "", 0),
            ],
        ),
        Err(login::LoginRefused::Wait(wait)) => {
            let seconds = wait.as_secs().max(1);
            let mut response = page(
                request,
                &next,
                Some(&user),
                Some((
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "Too many failed logins for this account from this address: try again \
                         in {seconds} s (each further failure doubles the wait)."
                    ),
                )),
            );
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Err(login::LoginRefused::Refused(error)) => page(
            request,
            &next,
            Some(&user),
            Some((error.status, error.message)),
        ),
    }
}

/// `POST /logout`: the session ends in the store (on every server of a site), the cookie goes.
pub async fn logout(app: &App, view: &View) -> HttpResponse {
    if let Err(error) = accounts::logout(app, &view.caller).await {
        error.log();
    }
    respond::redirect(
        "/login",
        &[session::set_cookie(session::SESSION_COOKIE, "", 0)],
    )
}
