//! Rotating the server's agreement key (the X25519 key every agent's MAC key is derived from)
//! without orphaning an agent: `GET /api/v1/server/agreement-key` (where a rotation stands,
//! and who signs under the new key), `POST /api/v1/server/agreement-key/rotate` (a next key,
//! handed to every agent inside its signed settings; check-ins under either key are accepted)
//! and `POST /api/v1/server/agreement-key/switch` (only the next key from then on).
//!
//! An agent acknowledges the next key by signing a check-in under it: the server records,
//! per check-in, which key verified it, so an agent too old to read the settings' key, one
//! that is offline and one that never checked in since all count as not moved, and the
//! switch names them. Unlike the CA, the key is needed on every channel: an HTTP entry does
//! not save an agent still on the old key.
//!
//! Files (see [`crate::datadir`]): `keys/agreement-next.key` from `rotate` to `switch`,
//! `keys/agreement-previous.key` the key before the last switch (no longer accepted).

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::{json, Value};
use ward_store::{AgentTls, Store};

use super::ca::{bump_everyone, entry, init_error, LISTED};
use crate::api::{blocking, json_response, ApiError, HttpResponse};
use crate::auth::Caller;
use crate::channel::{Agreement, ServerKey};
use crate::datadir::{write_file, DataDir};
use crate::state::App;

/// The agents that do not sign under `next` yet (simulated ones apart), and how many
/// simulated ones were set aside.
fn not_moved<'a>(agents: &'a [AgentTls], next: &str) -> (Vec<&'a AgentTls>, usize) {
    super::ca::waiting(agents, |agent| agent.agreement_key.as_deref() == Some(next))
}

fn why(agent: &AgentTls) -> &'static str {
    match agent.agreement_key {
        None => {
            "no check-in of it was recorded since keys were recorded (offline, or not yet \
             checked in)"
        }
        Some(_) => {
            "its last check-in was signed under the current key: it has not picked up its new \
             settings yet, or it is an agent older than key rotation"
        }
    }
}

/// Where a rotation stands, and (during one) the agents that do not sign under the next key.
fn status_json(store: &dyn Store, agreement: &Agreement) -> Result<Value, ApiError> {
    let mut answer = json!({
        "current": agreement.current.sha256.as_ref(),
        "next": agreement.next.as_ref().map(|next| next.sha256.as_ref()),
        "under_way": agreement.next.is_some(),
    });
    let Some(next) = &agreement.next else {
        return Ok(answer);
    };
    super::ca::acknowledgement(
        store,
        &mut answer,
        |agent| agent.agreement_key.as_deref() == Some(&*next.sha256),
        why,
    )?;
    Ok(answer)
}

/// `GET /api/v1/server/agreement-key`.
pub async fn status(shared: &App) -> HttpResponse {
    let (store, agreement) = (shared.store.clone(), shared.agreement());
    match blocking(move || status_json(&*store, &agreement)).await {
        Ok(answer) => json_response(StatusCode::OK, &answer),
        Err(error) => error.response(),
    }
}

fn set(shared: &App, agreement: Agreement) {
    *shared.agreement.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(agreement);
    // The settings carry the next key, or no longer do.
    shared.fleet_changed();
}

/// `POST /api/v1/server/agreement-key/rotate`: a next key (`keys/agreement-next.key`), in
/// every agent's settings from now on. Run again during a rotation, it makes no new key: it
/// hands the one under way to every agent again (`"resent": true`), which also finishes a
/// start a crash interrupted.
pub async fn rotate(shared: &App, caller: &Caller) -> HttpResponse {
    let _one_change_at_a_time = shared.fleet_lock.lock().await;
    let current = shared.agreement();
    let resent = current.next.is_some();
    if !resent {
        let data = shared.data.clone();
        let made = blocking(move || {
            let pair = crate::datadir::new_agreement_key(&data.agreement_next_key())
                .map_err(init_error)?;
            ServerKey::new(pair).map_err(|e| ApiError::internal(format!("OpenSSL: {e}")))
        })
        .await;
        match made {
            Ok(next) => set(
                shared,
                Agreement {
                    current: current.current.clone(),
                    next: Some(next),
                },
            ),
            Err(error) => return error.response(),
        }
    }
    let agreement = shared.agreement();
    let next = agreement
        .next
        .as_ref()
        .map(|next| next.sha256.clone())
        .expect("a next key: there was one, or one was just made");
    let action = if resent {
        "server.agreement_key.resend"
    } else {
        "server.agreement_key.rotate"
    };
    let (store, caller) = (shared.store.clone(), caller.clone());
    let result = blocking(move || {
        let after = json!({"next": next.as_ref()});
        let bumped = bump_everyone(&*store, entry(&caller, action, "agreement_key", after))?;
        let mut answer = status_json(&*store, &agreement)?;
        answer["agents_bumped"] = json!(bumped);
        answer["resent"] = json!(resent);
        Ok(answer)
    })
    .await;
    shared.fleet_changed();
    match result {
        Ok(answer) => json_response(StatusCode::OK, &answer),
        Err(error) => error.response(),
    }
}

/// The switch's plan: every agent still on the current key would be refused from then on.
fn plan_json(store: &dyn Store, next: &str) -> Result<(usize, Value), ApiError> {
    let agents = store.agents_tls()?;
    let (waiting, simulated) = not_moved(&agents, next);
    let tree = crate::ops::tree_of(store)?;
    let ids: Vec<String> = waiting.iter().take(LISTED).map(|a| a.id.clone()).collect();
    let hostnames = store.hostnames(&ids)?;
    let lines: Vec<Value> = waiting
        .iter()
        .take(LISTED)
        .map(|agent| {
            json!({
                "id": agent.id,
                "hostname": hostnames.get(&agent.id),
                "group": tree.path(agent.group),
                "last_checkin": agent.last_checkin_ms.map(crate::api::time),
                "reason": format!(
                    "{}; after the switch its check-ins would be refused on every channel",
                    why(agent)
                ),
            })
        })
        .collect();
    Ok((
        waiting.len(),
        json!({
            "lost": waiting.len(),
            "message": format!(
                "{} agent(s) do not sign under the next agreement key yet",
                waiting.len()
            ),
            "cut_off": lines,
            "simulated_ignored": simulated,
        }),
    ))
}

/// `POST /api/v1/server/agreement-key/switch`: the next key becomes the only one; 409
/// `would_cut_off` with each agent that does not sign under it yet (nothing changes) unless
/// `accept_cut_off`.
pub async fn switch(shared: &App, caller: &Caller, body: &bytes::Bytes) -> HttpResponse {
    let request = match super::status::GuardedRequest::read(body) {
        Ok(request) => request,
        Err(error) => return error.response(),
    };
    let _one_change_at_a_time = shared.fleet_lock.lock().await;
    let agreement = shared.agreement();
    let Some(next) = agreement.next.clone() else {
        return ApiError::conflict(
            "no_rotation",
            "no agreement key rotation is under way: `ward server rotate-key start` makes the \
             next key and hands it to the agents first",
        )
        .response();
    };
    let (store, sha256) = (shared.store.clone(), next.sha256.clone());
    let (lost, plan) = match blocking(move || plan_json(&*store, &sha256)).await {
        Ok(planned) => planned,
        Err(error) => return error.response(),
    };
    if let Some(answer) = request.answer_before(
        "the switch to the next agreement key",
        "wait until they check in (`ward server rotate-key status`)",
        lost,
        &plan,
    ) {
        return answer;
    }
    let data = shared.data.clone();
    if let Err(error) = blocking(move || move_into_place(&data)).await {
        return error.response();
    }
    set(
        shared,
        Agreement {
            current: next.clone(),
            next: None,
        },
    );
    let accepted = crate::impact::cut_off_ids(&plan);
    let (store, caller, agreement) = (shared.store.clone(), caller.clone(), shared.agreement());
    let result = blocking(move || {
        store.apply(&ward_store::Change {
            mutation: ward_store::Mutation::Nothing,
            bump_groups: vec![],
            bump_agents: vec![],
            audit: entry(
                &caller,
                "server.agreement_key.switch",
                "agreement_key",
                json!({"current": next.sha256.as_ref(), "cut_off_accepted": accepted}),
            ),
        })?;
        status_json(&*store, &agreement)
    })
    .await;
    match result {
        Ok(status) => json_response(
            StatusCode::OK,
            &json!({"switched": true, "plan": plan, "key": status}),
        ),
        Err(error) => error.response(),
    }
}

/// The switch on disk: the current key kept as `agreement-previous.key`, the next one renamed
/// over it (a rename: a crash leaves the old key or the new one, and a restart before the
/// rename still has the next key, so the switch can be run again).
fn move_into_place(data: &DataDir) -> Result<(), ApiError> {
    let io = |path: &std::path::Path, e: std::io::Error| {
        ApiError::internal(format!("{}: {e}", path.display()))
    };
    let current = std::fs::read(data.agreement_key()).map_err(|e| io(&data.agreement_key(), e))?;
    write_file(&data.agreement_previous_key(), &current, 0o600).map_err(init_error)?;
    std::fs::rename(data.agreement_next_key(), data.agreement_key())
        .map_err(|e| io(&data.agreement_next_key(), e))
}
