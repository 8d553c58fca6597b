//! The admin API under `/api/v1/` on the console listener, a thin front end: it routes by
//! ward-api's table (404 for a path it does not name, 405 with `Allow` for a method it does
//! not list), lets in who may call (`authorize`: login, authentication, auditors read only),
//! reads the typed request (the body, the path parameters, the query), calls the fleet
//! operation, and writes its typed answer or refusal. No fleet logic lives here.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use ward_api::fleet::LoginRequest;
use ward_api::routes::Body;
use ward_api::{Access, Matched, Operation, Unrouted};

use crate::api::{
    error_response, percent_decode, read_body, typed, typed_response, ApiError, HttpResponse,
};
use crate::auth::{self, Caller, Role};
use crate::operations::{
    accounts, agents, agreement, audit, ca, groups, harden, login, server, serverlists, tokens,
};
use crate::state::App;

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// The caller behind a request's bearer token, if any.
async fn authenticate(shared: &App, headers: &HeaderMap) -> Option<Caller> {
    let presented = bearer(headers)?;
    let local = {
        let expected = shared.admin_token.read().unwrap_or_else(|p| p.into_inner());
        presented.len() == expected.len()
            && openssl::memcmp::eq(presented.as_bytes(), expected.as_bytes())
    };
    if local {
        return Some(Caller {
            name: auth::LOCAL_ADMIN.into(),
            role: Role::Admin,
            session: None,
        });
    }
    login::session_caller(shared, presented).await
}

fn unauthorized() -> HttpResponse {
    let mut response = error_response(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "this API needs 'Authorization: Bearer TOKEN': log in with POST /api/v1/login, or on the \
         server host use the admin.token file of the data dir",
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// One request to `/api/v1/...`.
pub async fn serve(
    shared: &App,
    peer: SocketAddr,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Incoming,
) -> HttpResponse {
    let mut segments: Vec<String> = path
        .trim_start_matches("/api/v1")
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    // One word for one thing: the seed's "clients" are ward's agents. `/clients` stays as an
    // alias of `/agents` for scripts written against the first release.
    if segments.first().map(String::as_str) == Some("clients") {
        segments[0] = "agents".into();
    }
    let matched = match ward_api::route(method.as_str(), &segments) {
        Ok(matched) => matched,
        Err(unrouted) => {
            // Only the public paths answer strangers; for every other path a caller without
            // a credential learns nothing but 401.
            let public = ward_api::ROUTES.iter().any(|route| {
                route.access == Access::Public
                    && route.path.trim_start_matches('/') == segments.join("/")
            });
            if !public && authenticate(shared, headers).await.is_none() {
                return unauthorized();
            }
            return match unrouted {
                Unrouted::NotFound => {
                    error_response(StatusCode::NOT_FOUND, "not_found", "no such resource")
                }
                Unrouted::MethodNotAllowed(allow) => method_not_allowed(&allow),
            };
        }
    };
    let route = matched.route;
    let started = Instant::now();
    let response = routed(shared, peer, headers, body, query, matched).await;
    shared
        .telemetry
        .metrics
        .ops
        .admin_request(route.method, route.path, started.elapsed());
    response
}

/// A request the table routed: let in who may call, read it, dispatch, answer.
async fn routed(
    shared: &App,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: Incoming,
    query: Option<&str>,
    matched: Matched<'_>,
) -> HttpResponse {
    let route = matched.route;
    let caller = match route.access {
        Access::Public => None,
        Access::Read | Access::Write => {
            let Some(caller) = authenticate(shared, headers).await else {
                return unauthorized();
            };
            if route.access == Access::Write && caller.role != Role::Admin {
                return error_response(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    &format!("{} is an auditor: read-only", caller.name),
                );
            }
            Some(caller)
        }
    };
    let body = match read_body(
        &shared.config.limits,
        shared.config.limits.max_body_bytes,
        body,
    )
    .await
    {
        Ok(body) => body,
        Err(response) => return response,
    };
    let request = Request {
        matched,
        query: query.unwrap_or(""),
        body: &body,
    };
    match caller {
        None => public(shared, peer, &request).await,
        Some(caller) => dispatch(shared, &caller, &request)
            .await
            .unwrap_or_else(|error| error.response()),
    }
}

fn method_not_allowed(allow: &str) -> HttpResponse {
    let mut response = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("this resource allows {allow}"),
    );
    if let Ok(value) = HeaderValue::from_str(allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

/// A routed request: its route, path parameters, query and body.
struct Request<'a> {
    matched: Matched<'a>,
    query: &'a str,
    body: &'a Bytes,
}

impl Request<'_> {
    fn param(&self, name: &str) -> String {
        self.matched.param(name).to_string()
    }

    /// The body as the route's request type: required where the route says (400 without
    /// one), all defaults where it may be left out.
    fn body<T: DeserializeOwned + Default>(&self) -> Result<T, ApiError> {
        let empty = self.body.iter().all(u8::is_ascii_whitespace);
        match self.matched.route.body {
            Body::Required(_) if empty => Err(ApiError::bad_request(
                "this request needs a JSON body (see /api/v1/openapi.json)",
            )),
            Body::Optional(_) | Body::None if empty => Ok(T::default()),
            _ => typed(self.body),
        }
    }

    /// A body without defaults (every such route requires one).
    fn required<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request(
                "this request needs a JSON body (see /api/v1/openapi.json)",
            ));
        }
        typed(self.body)
    }

    /// The query as the route's query type; unknown parameters are refused.
    fn query<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        let parameters =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(self.query.as_bytes()));
        serde_path_to_error::deserialize(parameters).map_err(|e| {
            let path = e.path().to_string();
            let error = e.into_inner();
            if path == "." {
                ApiError::bad_request(format!("query: {error}"))
            } else {
                ApiError::bad_request(format!("{path}: {error}"))
            }
        })
    }
}

/// An operation's answer: its success status, or its refusal.
fn answer<T: Serialize>(
    status: u16,
    result: Result<T, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    result.map(|value| typed_response(status, &value))
}

/// The routes anyone may call: the document and login.
async fn public(shared: &App, peer: SocketAddr, request: &Request<'_>) -> HttpResponse {
    match request.matched.route.operation {
        Operation::OpenApi => typed_response(StatusCode::OK, &ward_api::openapi::document()),
        Operation::Login => {
            let result = match request.required::<LoginRequest>() {
                Ok(login_request) => login(shared, peer, login_request).await,
                Err(error) => Err(error),
            };
            result.unwrap_or_else(|error| error.response())
        }
        other => ApiError::internal(format!("{other:?} is not a public route")).response(),
    }
}

/// Every authenticated route, to its operation.
async fn dispatch(
    shared: &App,
    caller: &Caller,
    request: &Request<'_>,
) -> Result<HttpResponse, ApiError> {
    let ok = request.matched.route.ok;
    match request.matched.route.operation {
        Operation::OpenApi | Operation::Login => Err(ApiError::internal("a public route")),
        Operation::Logout => answer(ok, accounts::logout(shared, caller).await),
        Operation::ServerStatus => answer(ok, Ok(server::status(shared))),
        Operation::Reload => answer(ok, server::reload(shared, caller, request.body()?).await),
        Operation::RenewCertificates => {
            answer(ok, server::renew(shared, caller, request.body()?).await)
        }
        Operation::CaStatus => answer(ok, ca::status(shared).await),
        Operation::CaRotate => answer(ok, ca::rotate(shared, caller).await),
        Operation::CaSwitch => answer(ok, ca::switch(shared, caller, request.body()?).await),
        Operation::CaAbort => answer(ok, ca::abort(shared, caller, request.body()?).await),
        Operation::KeyStatus => answer(ok, agreement::status(shared).await),
        Operation::KeyRotate => answer(ok, agreement::rotate(shared, caller).await),
        Operation::KeySwitch => {
            answer(ok, agreement::switch(shared, caller, request.body()?).await)
        }
        Operation::KeyAbort => answer(ok, agreement::abort(shared, caller, request.body()?).await),
        Operation::Servers => answer(ok, server::servers(shared).await),
        Operation::Groups => answer(ok, groups::list(shared).await),
        Operation::GroupCreate => answer(
            ok,
            groups::create(shared, caller, request.required()?).await,
        ),
        Operation::Group => answer(ok, groups::get(shared, request.param("id")).await),
        Operation::GroupUpdate => answer(
            ok,
            groups::update(shared, caller, request.param("id"), request.required()?).await,
        ),
        Operation::GroupDelete => answer(
            ok,
            groups::delete(shared, caller, request.param("id")).await,
        ),
        Operation::GroupMove => answer(
            ok,
            groups::move_group(shared, caller, request.param("id"), request.required()?).await,
        ),
        Operation::GroupExport => answer(
            ok,
            groups::export_settings(shared, caller, request.param("id"), request.body()?).await,
        ),
        Operation::ServerLists => answer(ok, serverlists::list(shared).await),
        Operation::ServerListCreate => answer(
            ok,
            serverlists::create(shared, caller, request.required()?).await,
        ),
        Operation::ServerList => answer(ok, serverlists::get(shared, request.param("name")).await),
        Operation::ServerListDelete => answer(
            ok,
            serverlists::delete(shared, caller, request.param("name")).await,
        ),
        Operation::ServerListUpdate => answer(
            ok,
            serverlists::update(shared, caller, request.param("name"), request.required()?).await,
        ),
        Operation::ServerListCopy => answer(
            ok,
            serverlists::copy(shared, caller, request.param("name"), request.required()?).await,
        ),
        Operation::Agents => answer(ok, agents::list(shared, request.query()?).await),
        Operation::Agent => answer(ok, agents::get(shared, request.param("id")).await),
        Operation::AgentsMove => answer(
            ok,
            agents::move_agents(shared, caller, request.required()?).await,
        ),
        Operation::AgentsDelete => answer(
            ok,
            agents::delete(shared, caller, request.required()?).await,
        ),
        Operation::Tokens => answer(ok, tokens::list(shared).await),
        Operation::TokenCreate => answer(
            ok,
            tokens::create(shared, caller, request.required()?).await,
        ),
        Operation::TokenRevoke => answer(
            ok,
            tokens::revoke(shared, caller, request.param("id")).await,
        ),
        Operation::Accounts => answer(ok, accounts::list(shared).await),
        Operation::AccountCreate => answer(
            ok,
            accounts::create(shared, caller, request.required()?).await,
        ),
        Operation::AccountDelete => answer(
            ok,
            accounts::delete(shared, caller, request.param("name")).await,
        ),
        Operation::AccountPassword => answer(
            ok,
            accounts::set_password(shared, caller, request.param("name"), request.required()?)
                .await,
        ),
        Operation::AccountDisable => answer(
            ok,
            accounts::set_disabled(shared, caller, request.param("name"), true).await,
        ),
        Operation::AccountEnable => answer(
            ok,
            accounts::set_disabled(shared, caller, request.param("name"), false).await,
        ),
        Operation::AccountRevoke => answer(
            ok,
            accounts::revoke_sessions(shared, caller, request.param("name")).await,
        ),
        Operation::Audit => answer(ok, audit::list(shared, request.query()?).await),
        Operation::Readiness => answer(ok, harden::readiness(shared, request.query()?).await),
        Operation::Hellos => answer(ok, harden::hellos(shared).await),
        Operation::Plan => answer(ok, harden::plan(shared, request.required()?).await),
        Operation::HardenStatus => answer(ok, harden::status(shared).await),
        Operation::HardenStage => {
            answer(ok, harden::stage(shared, caller, request.required()?).await)
        }
        Operation::HardenApply => {
            answer(ok, harden::apply(shared, caller, request.required()?).await)
        }
        Operation::HardenCleanup => {
            answer(ok, harden::cleanup(shared, caller, request.body()?).await)
        }
        Operation::Rollback => answer(ok, harden::rollback(shared, caller, request.body()?).await),
        Operation::Verify => answer(ok, harden::verify(shared).await),
    }
}

/// `POST /login`: a session for an account whose password matches, limited per account and
/// address (`operations::login`); past the limit a 429 with `Retry-After`.
async fn login(
    shared: &App,
    peer: SocketAddr,
    request: LoginRequest,
) -> Result<HttpResponse, ApiError> {
    match login::login(shared, peer.ip(), request).await {
        Ok(answer) => Ok(typed_response(StatusCode::OK, &answer)),
        Err(login::LoginRefused::Refused(error)) => Err(error),
        Err(login::LoginRefused::Wait(wait)) => {
            let mut response = error_response(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_failures",
                "too many failed logins for this account from this address (or from this \
                 address); wait as Retry-After says, each further failure doubles the wait",
            );
            let seconds = wait.as_secs().max(1).to_string();
            if let Ok(value) = HeaderValue::from_str(&seconds) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            Ok(response)
        }
    }
}

#[cfg(test)]
mod tests;
