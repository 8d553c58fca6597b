//! Rotating the server's agreement key (the X25519 key every agent's MAC key is derived from)
//! without orphaning an agent: `GET /api/v1/server/agreement-key` (where a rotation stands,
//! and who signs under the new key), `POST /api/v1/server/agreement-key/rotate` (a next key,
//! handed to every agent inside its signed settings; check-ins under either key are accepted),
//! `POST /api/v1/server/agreement-key/switch` (only the next key from then on) and
//! `POST /api/v1/server/agreement-key/abort` (back to the current key alone).
//!
//! An agent acknowledges the next key by signing a check-in under it: the server records,
//! per check-in, which key verified it, so an agent too old to read the settings' key, one
//! that is offline and one that never checked in since all count as not moved, and the
//! switch names them. Unlike the CA, the key is needed on every channel: an HTTP entry does
//! not save an agent still on the old key.
//!
//! An abort cannot simply drop the next key: agents that adopted it sign under it. So the
//! next key is *withdrawn* (`keys/agreement-withdrawn.key`): still accepted, no longer handed
//! out, and the settings hand every agent the current key again (agents adopt whichever key
//! their settings carry). Once no agent signs under it, `abort` (again) removes it; while some
//! do, that is refused like every other cut-off (409 `would_cut_off`, unless
//! `accept_cut_off`). `rotate` during a withdrawal takes the withdrawn key up again.
//!
//! Files (see [`crate::datadir`]): `keys/agreement-next.key` from `rotate` to `switch`,
//! `keys/agreement-previous.key` the key before the last switch (no longer accepted). Each
//! step's files, bumps and audit entry are one commit ([`crate::commit`]).

use std::sync::Arc;

use serde_json::json;
use ward_api::server::{GuardedRequest, KeyStatus, SwitchAnswer};
use ward_api::tls::{AgentLine, GuardPlan};
use ward_store::{AgentTls, Store};

use super::ca::{init_error, LISTED};
use crate::api::{blocking, ApiError};
use crate::auth::Caller;
use crate::channel::{Agreement, ServerKey};
use crate::commit::{self, FollowUp};
use crate::datadir::DataDir;
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
fn status_of(store: &dyn Store, agreement: &Agreement) -> Result<KeyStatus, ApiError> {
    let mut status = KeyStatus {
        current: agreement.current.sha256.to_string(),
        next: agreement.next.as_ref().map(|next| next.sha256.to_string()),
        under_way: agreement.next.is_some(),
        withdrawn: agreement
            .withdrawn
            .as_ref()
            .map(|key| key.sha256.to_string()),
        signing_under_withdrawn: None,
        acknowledgement: None,
        agents_bumped: None,
        resent: None,
        aborted: None,
        plan: None,
    };
    if let Some(withdrawn) = &agreement.withdrawn {
        let agents = store.agents_tls()?;
        let (still, _) = super::ca::waiting(&agents, |agent| {
            agent.agreement_key.as_deref() != Some(&*withdrawn.sha256)
        });
        status.signing_under_withdrawn = Some(still.len());
    }
    if let Some(next) = &agreement.next {
        status.acknowledgement = Some(super::ca::acknowledgement(
            store,
            |agent| agent.agreement_key.as_deref() == Some(&*next.sha256),
            why,
        )?);
    }
    Ok(status)
}

/// `GET /server/agreement-key`.
pub async fn status(shared: &App) -> Result<KeyStatus, ApiError> {
    let (store, agreement) = (shared.store.clone(), shared.agreement());
    blocking(move || status_of(&*store, &agreement)).await
}

fn set(shared: &App, agreement: Agreement) {
    *shared.agreement.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(agreement);
    // The settings carry the next key, or no longer do.
    shared.fleet_changed();
}

/// `POST /api/v1/server/agreement-key/rotate`: a next key (`keys/agreement-next.key`), in
/// every agent's settings from now on. Run again during a rotation, it makes no new key: it
/// hands the one under way to every agent again (`"resent": true`). During an abort's
/// withdrawal it takes the withdrawn key up again as the next one.
pub async fn rotate(shared: &App, caller: &Caller) -> Result<KeyStatus, ApiError> {
    let _one_change_at_a_time = shared.fleet_lock.lock().await;
    let current = shared.agreement();
    let resent = current.next.is_some();
    let (data, caller) = (shared.data.clone(), caller.clone());
    let prepared = blocking(move || {
        let mut files = ward_fs::Commit::new("rotate-key-start");
        let next = if let Some(next) = &current.next {
            // The same key, written again: every start is the same commit.
            let text = read(&data.agreement_next_key())?;
            files = files.write(data.agreement_next_key(), text, 0o600);
            next.clone()
        } else if let Some(withdrawn) = &current.withdrawn {
            let text = read(&data.agreement_withdrawn_key())?;
            files = files
                .write(data.agreement_next_key(), text, 0o600)
                .remove(data.agreement_withdrawn_key());
            withdrawn.clone()
        } else {
            let (pair, text) = crate::datadir::make_agreement_key().map_err(init_error)?;
            files = files.write(data.agreement_next_key(), text, 0o600);
            ServerKey::new(pair).map_err(|e| ApiError::internal(format!("OpenSSL: {e}")))?
        };
        let action = if resent {
            "server.agreement_key.resend"
        } else {
            "server.agreement_key.rotate"
        };
        let follow_up = FollowUp::new(
            &caller,
            action,
            "agreement_key",
            json!({"next": next.sha256.as_ref()}),
        )
        .bumping_everyone();
        let committed = commit::put_files(&data, files, follow_up)?;
        let agreement = Agreement {
            current: current.current.clone(),
            next: Some(next),
            withdrawn: None,
        };
        Ok((committed, agreement))
    })
    .await;
    let (committed, agreement) = prepared?;
    // Before the bumps: settings of the new serials carry the next key.
    set(shared, agreement.clone());
    let store = shared.store.clone();
    let result = blocking(move || {
        let bumped = committed.follow_up(&*store)?;
        let mut status = status_of(&*store, &agreement)?;
        status.agents_bumped = Some(bumped);
        status.resent = Some(resent);
        Ok(status)
    })
    .await;
    shared.fleet_changed();
    result
}

/// A key file of the data dir that must be there.
fn read(path: &std::path::Path) -> Result<Vec<u8>, ApiError> {
    std::fs::read(path).map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))
}

/// The lines of agents a key step would leave without a key that verifies them, and why.
fn lines(
    store: &dyn Store,
    agents: &[&AgentTls],
    reason: impl Fn(&AgentTls) -> String,
) -> Result<Vec<AgentLine>, ApiError> {
    let tree = crate::ops::tree_of(store)?;
    let ids: Vec<String> = agents.iter().take(LISTED).map(|a| a.id.clone()).collect();
    let hostnames = store.hostnames(&ids)?;
    Ok(agents
        .iter()
        .take(LISTED)
        .map(|agent| AgentLine {
            id: agent.id.clone(),
            hostname: hostnames.get(&agent.id).cloned(),
            group: tree.path(agent.group),
            last_checkin: agent.last_checkin_ms.map(crate::api::time),
            reason: Some(reason(agent)),
            ..AgentLine::default()
        })
        .collect())
}

/// The switch's plan: every agent still on the current key would be refused from then on.
fn switch_plan(store: &dyn Store, next: &str) -> Result<(usize, GuardPlan), ApiError> {
    let agents = store.agents_tls()?;
    let (waiting, simulated) = not_moved(&agents, next);
    let cut_off = lines(store, &waiting, |agent| {
        format!(
            "{}; after the switch its check-ins would be refused on every channel",
            why(agent)
        )
    })?;
    Ok((
        waiting.len(),
        GuardPlan {
            lost: waiting.len(),
            message: format!(
                "{} agent(s) do not sign under the next agreement key yet",
                waiting.len()
            ),
            cut_off,
            simulated_ignored: Some(simulated),
            ..GuardPlan::default()
        },
    ))
}

/// `POST /api/v1/server/agreement-key/switch`: the next key becomes the only one; 409
/// `would_cut_off` with each agent that does not sign under it yet (nothing changes) unless
/// `accept_cut_off`.
pub async fn switch(
    shared: &App,
    caller: &Caller,
    request: GuardedRequest,
) -> Result<SwitchAnswer, ApiError> {
    let _one_change_at_a_time = shared.fleet_lock.lock().await;
    let agreement = shared.agreement();
    let Some(next) = agreement.next.clone() else {
        return Err(no_rotation());
    };
    let (store, sha256) = (shared.store.clone(), next.sha256.clone());
    let (lost, plan) = blocking(move || switch_plan(&*store, &sha256)).await?;
    super::server::refuse_if_cut_off(
        &request,
        "the switch to the next agreement key",
        "wait until they check in (`ward server rotate-key status`)",
        lost,
        &plan,
    )?;
    if request.dry_run {
        return Ok(SwitchAnswer {
            switched: false,
            dry_run: Some(true),
            plan,
            ca: None,
            key: None,
            removes_key: None,
        });
    }
    let follow_up = FollowUp::new(
        caller,
        "server.agreement_key.switch",
        "agreement_key",
        json!({"current": next.sha256.as_ref(), "cut_off_accepted": plan.cut_off_ids()}),
    );
    let data = shared.data.clone();
    let committed = blocking(move || move_into_place(&data, follow_up)).await?;
    set(
        shared,
        Agreement {
            current: next.clone(),
            next: None,
            withdrawn: None,
        },
    );
    let (store, agreement) = (shared.store.clone(), shared.agreement());
    let status = blocking(move || {
        committed.follow_up(&*store)?;
        status_of(&*store, &agreement)
    })
    .await?;
    Ok(SwitchAnswer {
        switched: true,
        dry_run: None,
        plan,
        ca: None,
        key: Some(status),
        removes_key: None,
    })
}

/// The switch on disk, one commit: the current key kept as `agreement-previous.key`, the next
/// one in its place; then (the caller) the audit entry.
fn move_into_place(data: &DataDir, follow_up: FollowUp) -> Result<commit::Committed, ApiError> {
    let files = ward_fs::Commit::new("rotate-key-switch")
        .write(
            data.agreement_previous_key(),
            read(&data.agreement_key())?,
            0o600,
        )
        .write(
            data.agreement_key(),
            read(&data.agreement_next_key())?,
            0o600,
        )
        .remove(data.agreement_next_key());
    commit::put_files(data, files, follow_up)
}

/// The agents that sign under `withdrawn` (simulated ones apart): dropping it would cut them
/// off on every channel.
fn withdrawal_plan(store: &dyn Store, withdrawn: &str) -> Result<(usize, GuardPlan), ApiError> {
    let agents = store.agents_tls()?;
    let (still, simulated) = super::ca::waiting(&agents, |agent| {
        agent.agreement_key.as_deref() != Some(withdrawn)
    });
    let cut_off = lines(store, &still, |_| {
        "its last check-in was signed under the withdrawn key: it has not picked up the \
         settings that hand it the current key again; once the withdrawn key goes, its \
         check-ins would be refused on every channel"
            .to_string()
    })?;
    Ok((
        still.len(),
        GuardPlan {
            lost: still.len(),
            message: format!(
                "{} agent(s) still sign under the withdrawn key",
                still.len()
            ),
            cut_off,
            simulated_ignored: Some(simulated),
            ..GuardPlan::default()
        },
    ))
}

/// `POST /api/v1/server/agreement-key/abort`: gives up a rotation. A next key becomes
/// withdrawn (accepted, not handed out; every agent's settings carry the current key again);
/// a withdrawn key no agent signs under any more is removed at once. While agents still sign
/// under it, removing it is refused (409 `would_cut_off`, each agent named) unless
/// `accept_cut_off`; run `abort` again once they have checked in.
pub async fn abort(
    shared: &App,
    caller: &Caller,
    request: GuardedRequest,
) -> Result<KeyStatus, ApiError> {
    let _one_change_at_a_time = shared.fleet_lock.lock().await;
    let before = shared.agreement();
    let Some(withdrawn) = before.next.clone().or_else(|| before.withdrawn.clone()) else {
        return Err(no_rotation());
    };
    let (store, sha256) = (shared.store.clone(), withdrawn.sha256.clone());
    let (lost, plan) = blocking(move || withdrawal_plan(&*store, &sha256)).await?;
    // Withdrawing the next key cuts nobody off (it stays accepted); removing it would cut
    // off whoever still signs under it.
    let removing = before.next.is_none() || lost == 0;
    if request.dry_run {
        let mut status = status_of(&*shared.store, &before)?;
        status.aborted = Some(removing);
        status.plan = Some(plan);
        return Ok(status);
    }
    if removing {
        super::server::refuse_if_cut_off(
            &request,
            "removing the withdrawn agreement key",
            "wait until they check in (`ward server rotate-key status`)",
            lost,
            &plan,
        )?;
    }
    let data = shared.data.clone();
    let accepted = plan.cut_off_ids();
    let follow_up = FollowUp::new(
        caller,
        if removing {
            "server.agreement_key.abort"
        } else {
            "server.agreement_key.withdraw"
        },
        "agreement_key",
        json!({"withdrawn": withdrawn.sha256.as_ref(), "cut_off_accepted": accepted}),
    )
    .bumping_everyone();
    let committed = blocking(move || {
        let mut files = ward_fs::Commit::new("rotate-key-abort").remove(data.agreement_next_key());
        files = if removing {
            files.remove(data.agreement_withdrawn_key())
        } else {
            files.write(
                data.agreement_withdrawn_key(),
                read(&data.agreement_next_key())?,
                0o600,
            )
        };
        commit::put_files(&data, files, follow_up)
    })
    .await?;
    let after = Agreement {
        current: before.current.clone(),
        next: None,
        withdrawn: (!removing).then_some(withdrawn),
    };
    set(shared, after.clone());
    let store = shared.store.clone();
    let result = blocking(move || {
        let bumped = committed.follow_up(&*store)?;
        let mut status = status_of(&*store, &after)?;
        status.aborted = Some(removing);
        status.agents_bumped = Some(bumped);
        status.plan = Some(plan);
        Ok(status)
    })
    .await;
    shared.fleet_changed();
    result
}

fn no_rotation() -> ApiError {
    ApiError::conflict(
        "no_rotation",
        "no agreement key rotation is under way: `ward server rotate-key start` makes the \
         next key and hands it to the agents first",
    )
}
