//! ward-console: the web console on the console listener, server-rendered HTML.
//!
//! A front end like the admin API, on the same fleet operations (`ward_server::operations`):
//! it logs in through `operations::login`, reads and changes the fleet only through the
//! operations, and renders their typed answers (ward-api) and refusals. It never writes to the
//! store itself: there is one write path. Pages read without JavaScript; the one script only
//! shows times in the browser's zone, ticks every box of a table and
//! follows the harden wizard's live parts (without it, those pages refresh themselves).
//!
//! - [`session`]: the session cookie, CSRF tokens, where a login may go next (pure);
//! - [`respond`]: pages with their security headers (a strict CSP), redirects, assets, forms;
//! - [`assets`]: the embedded stylesheet and script;
//! - [`layout`]: the page shell and shared pieces; [`chart`]: inline SVG charts (pure);
//! - `pages`: one module per section (login, dashboard, agents, groups, server lists, TLS
//!   plan, the harden wizard, rotations, audit, accounts).
//!
//! Every request but the login page and the assets needs a live session (else the browser is
//! sent to `/login`); every POST needs the session's CSRF token (else 403, nothing changed);
//! every POST but logout needs the admin role (auditors get 403, and are never shown a write
//! control).

pub mod assets;
pub mod chart;
pub mod layout;
mod pages;
pub mod respond;
pub mod session;

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use maud::html;
use ward_server::api::HttpResponse;
use ward_server::auth::Role;
use ward_server::operations::login;
use ward_server::state::{Answer, App, WebConsole};

use crate::layout::View;

/// The console: handed to `ward_server::run_with` by the `ward` binary.
#[derive(Debug, Default)]
pub struct Console;

impl WebConsole for Console {
    fn serve<'a>(
        &'a self,
        app: &'a App,
        peer: SocketAddr,
        request: Request<Incoming>,
    ) -> Answer<'a> {
        Box::pin(route(app, peer, request))
    }
}

/// A logged-in request: who, and the token its session cookie holds.
struct Signed {
    token: String,
    view: View,
}

async fn signed_in(app: &App, request: &hyper::http::request::Parts) -> Option<Signed> {
    let token = session::cookie(&request.headers, session::SESSION_COOKIE)?;
    let caller = login::session_caller(app, &token).await?;
    Some(Signed {
        view: View {
            caller,
            csrf: session::csrf_token(&token),
            path: request.uri.path().to_string(),
        },
        token,
    })
}

async fn route(app: &App, peer: SocketAddr, request: Request<Incoming>) -> HttpResponse {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let method = parts.method.clone();
    if method == Method::GET {
        if let Some(response) = assets::serve(&path, &parts.headers) {
            return response;
        }
    }
    // Browsers ask for an icon on their own: answered here, never sent through the login.
    if path == "/favicon.ico" {
        return not_found(None);
    }
    if path == "/login" {
        return match method {
            Method::GET => pages::login::form(&parts, None),
            Method::POST => pages::login::submit(app, peer, &parts, body).await,
            _ => not_allowed("GET, POST"),
        };
    }
    let Some(signed) = signed_in(app, &parts).await else {
        // No live session: to the login page, and back here after it (a GET only).
        let back = if method == Method::GET {
            parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into())
        } else {
            "/".into()
        };
        let location = format!("/login?next={}", respond::encode(session::safe_next(&back)));
        return respond::redirect(&location, &[]);
    };
    let view = signed.view;
    if method == Method::POST {
        let form = match respond::form(app, body).await {
            Ok(form) => form,
            Err(response) => return response,
        };
        if !session::csrf_matches(&signed.token, form.get("csrf")) {
            tracing::warn!(%peer, user = view.caller.name, path, "console form without its CSRF token");
            return forbidden(
                Some(&view),
                "This form did not carry this session's CSRF token, so nothing was changed. \
                 Reload the page and send it again.",
            );
        }
        if path == "/logout" {
            return pages::login::logout(app, &view).await;
        }
        if view.caller.role != Role::Admin {
            return forbidden(
                Some(&view),
                "Auditors read; only admins change. Nothing was changed.",
            );
        }
        return match path.as_str() {
            "/agents/move" => pages::agents::move_agents(app, &view, &form).await,
            "/groups" => pages::groups::create(app, &view, &form).await,
            "/tls/harden/stage" => pages::harden::stage(app, &view, &form).await,
            "/tls/harden/apply" => pages::harden::apply(app, &view).await,
            "/tls/rollback" => pages::harden::rollback(app, &view, &form).await,
            "/tls/rotations" => pages::rotations::step(app, &view, &form).await,
            "/serverlists" => pages::serverlists::change(app, &view, &form).await,
            "/accounts" => pages::accounts::change(app, &view, &form).await,
            other => match group_path(other) {
                Some((id, false)) => pages::groups::update(app, &view, id, &form).await,
                Some((id, true)) => pages::groups::move_to(app, &view, id, &form).await,
                None => not_found(Some(&view)),
            },
        };
    }
    if method != Method::GET && method != Method::HEAD {
        return not_allowed("GET, POST");
    }
    let query = respond::query(parts.uri.query());
    match path.as_str() {
        "/" => pages::dashboard::page(app, &view).await,
        "/agents" => pages::agents::list(app, &view, &query).await,
        "/agents.csv" => pages::agents::csv(app, &query).await,
        "/groups" => pages::groups::list(app, &view, None).await,
        "/audit" => pages::audit::list(app, &view, &query).await,
        "/tls" => pages::tls::page(app, &view, &query).await,
        "/tls/harden" => pages::harden::page(app, &view, &query).await,
        "/tls/harden/progress" => pages::harden::progress(app, &view).await,
        "/tls/rotations" => pages::rotations::page(app, &view, None).await,
        "/serverlists" => pages::serverlists::page(app, &view, None).await,
        "/accounts" => pages::accounts::page(app, &view, None).await,
        "/logout" => respond::redirect("/", &[]),
        other => match (other.strip_prefix("/agents/"), group_path(other)) {
            (Some(id), _) if !id.is_empty() && !id.contains('/') => {
                pages::agents::show(app, &view, id).await
            }
            (_, Some((id, false))) => pages::groups::edit(app, &view, id, None).await,
            _ => not_found(Some(&view)),
        },
    }
}

/// A group's page (`/groups/{id}`, the id a number) or its move (`/groups/{id}/move`): the id,
/// and whether it is the move.
fn group_path(path: &str) -> Option<(&str, bool)> {
    let rest = path.strip_prefix("/groups/")?;
    let (id, moving) = match rest.strip_suffix("/move") {
        Some(id) => (id, true),
        None => (rest, false),
    };
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then_some((id, moving))
}

fn forbidden(view: Option<&View>, message: &str) -> HttpResponse {
    respond::page(
        StatusCode::FORBIDDEN,
        layout::shell(
            view,
            "Not allowed",
            html! { p.error role="alert" { (message) } },
        ),
    )
}

fn not_found(view: Option<&View>) -> HttpResponse {
    respond::page(
        StatusCode::NOT_FOUND,
        layout::shell(
            view,
            "Not found",
            html! { p { "There is no such page. " a href="/" { "Back to the dashboard" } } },
        ),
    )
}

fn not_allowed(allow: &'static str) -> HttpResponse {
    let mut response = respond::page(
        StatusCode::METHOD_NOT_ALLOWED,
        layout::shell(
            None,
            "Method not allowed",
            html! { p { "Allowed: " (allow) } },
        ),
    );
    response.headers_mut().insert(
        hyper::header::ALLOW,
        hyper::header::HeaderValue::from_static(allow),
    );
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_group_is_named_by_its_number() {
        let cases = [
            ("/groups/2", Some(("2", false))),
            ("/groups/17/move", Some(("17", true))),
            ("/groups", None),
            ("/groups/", None),
            ("/groups/My%20Company", None),
            ("/groups/2/delete", None),
            ("/groups//move", None),
        ];
        for (path, expected) in cases {
            assert_eq!(super::group_path(path), expected, "{path}");
        }
    }
}
