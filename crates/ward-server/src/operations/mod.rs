//! The fleet operations: one function for each thing an admin can do, below every front end
//! (the admin API, the console, harden's own steps). A typed request (ward-api) in, a typed
//! answer or a typed refusal ([`ApiError`], with the plan when a guard refused) out; no HTTP.
//!
//! Each write runs through [`write`]: under the server's fleet lock, off the async threads,
//! checked against the state it reads in the same closure (the tree, the guard), one store
//! `Change` with its serial bumps and audit entry, and then the settings caches invalidated
//! (`App::fleet_changed`): never at a call site. Reads run through [`read`].
//!
//! Children: [`groups`], [`serverlists`], [`agents`], [`tokens`], [`accounts`], [`audit`]
//! (the fleet), [`login`] (a session, and who a session is), [`server`] (status, reload, renewal), [`ca`] and [`agreement`] (rotations),
//! [`harden`] (readiness, the exact plan, stage, apply, rollback, cleanup), and [`render`]
//! (domain and store types to ward-api's answers). The children use this module and the
//! crate's shared modules, never each other (but harden, which stages with the fleet's).

pub mod accounts;
pub mod agents;
pub mod agreement;
pub mod audit;
pub mod ca;
pub mod groups;
pub mod harden;
pub mod login;
pub mod render;
pub mod server;
pub mod serverlists;
pub mod tokens;

use std::collections::HashSet;
use std::sync::Arc;

use ward_fleet::{GroupId, Tree};
use ward_store::Store;

use crate::api::{blocking, ApiError};
use crate::config::Role;
use crate::listener_tls::ListenerTls;
use crate::state::App;

/// What an operation's blocking part may read of the app, taken before it leaves the async
/// threads.
#[derive(Clone)]
pub struct Ctx {
    pub store: Arc<dyn Store>,
    /// The clients listener serving now: fleet edits are judged against it (every agent's
    /// kept ClientHello replayed through it).
    pub clients: Arc<ListenerTls>,
    /// Push agents whose check-in is held now: online, whatever their last check-in says.
    pub held: Arc<HashSet<String>>,
}

impl Ctx {
    pub fn of(app: &App) -> Ctx {
        Ctx {
            store: app.store.clone(),
            clients: app.tls.current(Role::Clients),
            held: Arc::new(app.held.snapshot()),
        }
    }

    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// The guard of a fleet edit, judged against the clients listener serving now: 409
    /// `would_cut_off` naming `what` when agents that have a path would have none, unless
    /// `accept_cut_off`; otherwise the ids of the agents it cuts off (accepted, for the audit).
    /// Blocking.
    pub(crate) fn guard(
        &self,
        edit: crate::impact::FleetEdit<'_>,
        what: &str,
        accept_cut_off: bool,
    ) -> Result<Vec<String>, ApiError> {
        let cut = crate::impact::fleet_guard(
            self.store(),
            &self.clients.context,
            self.clients.policy.protocol.range,
            edit,
        )?;
        if !cut.is_empty() && !accept_cut_off {
            return Err(crate::impact::refuse_fleet_edit(what, &cut));
        }
        Ok(cut.into_iter().map(|(id, _)| id).collect())
    }
}

/// A read, off the async threads.
pub async fn read<T: Send + 'static>(
    app: &App,
    f: impl FnOnce(&Ctx) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let ctx = Ctx::of(app);
    blocking(move || f(&ctx)).await
}

/// A write: under the fleet lock (one admin write at a time, checked against the state it
/// changes), off the async threads; a success invalidates the settings caches.
pub async fn write<T: Send + 'static>(
    app: &App,
    f: impl FnOnce(&Ctx) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let _one_change_at_a_time = app.fleet_lock.lock().await;
    let ctx = Ctx::of(app);
    let result = blocking(move || f(&ctx)).await;
    if result.is_ok() {
        app.fleet_changed();
    }
    result
}

/// The group `id` names (a path parameter): 404 when there is none.
fn group_id(tree: &Tree, id: &str) -> Result<GroupId, ApiError> {
    id.parse::<GroupId>()
        .ok()
        .filter(|id| tree.get(*id).is_some())
        .ok_or_else(|| ApiError::not_found(format!("no group {id}")))
}

/// The largest `limit` a listing takes.
const MAX_LIMIT: usize = 10_000_000;

/// For the children's table tests: `typed::<T>` refuses each body with a 400 `bad_request`
/// whose message contains the expected words (the field's name, at least).
#[cfg(test)]
fn assert_refused<T: serde::de::DeserializeOwned + std::fmt::Debug>(cases: &[(&str, &str)]) {
    for (body, expected) in cases {
        match crate::api::typed::<T>(&bytes::Bytes::copy_from_slice(body.as_bytes())) {
            Ok(parsed) => panic!("{body}: accepted as {parsed:?}"),
            Err(error) => {
                assert_eq!(error.status, hyper::StatusCode::BAD_REQUEST, "{body}");
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

#[cfg(test)]
mod tests;
