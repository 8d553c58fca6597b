//! `GET /api/v1/server` and `POST /api/v1/server/reload`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::config::Role;
use crate::state::App;

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn server_status(shared: &App) -> Value {
    let listener = |role: Role| {
        let mut value = json!({"address": shared.config.address(role).to_string(), "tls": null});
        if role.is_tls() {
            let tls = shared.tls.current(role);
            let policy = &tls.policy;
            value["tls"] = json!({
                "file": tls.file.display().to_string(),
                "enabled": policy.protocol.range.versions().map(|v| v.name()).collect::<Vec<_>>(),
                "security_level": policy.forced_security_level(),
            });
        }
        value
    };
    let (reloads_ok, reloads_failed) = shared.telemetry.metrics.reloads();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "started": unix_seconds(shared.started),
        "uptime_seconds": shared.started.elapsed().unwrap_or(Duration::ZERO).as_secs(),
        "data_dir": shared.data.root().display().to_string(),
        "listeners": {
            "console": listener(Role::Console),
            "clients": listener(Role::Clients),
            "clients-http": listener(Role::ClientsHttp),
        },
        "reloads": {"ok": reloads_ok, "failed": reloads_failed},
    })
}

/// What a guarded change may say (`POST /api/v1/server/reload`, `/server/ca/switch`,
/// `/server/agreement-key/switch`); an empty body says neither.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct GuardedRequest {
    /// Go on even when agents would lose their last path (audited, with whom).
    #[serde(default)]
    pub accept_cut_off: bool,
    /// Plan the change and keep everything as it is.
    #[serde(default)]
    pub dry_run: bool,
}

impl GuardedRequest {
    pub(super) fn read(body: &bytes::Bytes) -> Result<GuardedRequest, crate::api::ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            Ok(GuardedRequest::default())
        } else {
            crate::api::typed(body)
        }
    }

    /// What a guarded switch answers before it changes anything: its `plan` on a dry run,
    /// 409 `would_cut_off` when `lost` agents would lose their last path and that is not
    /// accepted (`what` was refused; `remedy` says what to do first); `None`: go on.
    pub(super) fn answer_before(
        &self,
        what: &str,
        remedy: &str,
        lost: usize,
        plan: &Value,
    ) -> Option<crate::api::HttpResponse> {
        use hyper::StatusCode;
        if self.dry_run {
            return Some(crate::api::json_response(
                StatusCode::OK,
                &json!({"switched": false, "dry_run": true, "plan": plan}),
            ));
        }
        if lost == 0 || self.accept_cut_off {
            return None;
        }
        Some(crate::api::json_response(
            StatusCode::CONFLICT,
            &json!({
                "error": {
                    "code": "would_cut_off",
                    "message": format!(
                        "{what} was refused, nothing changed: {}; {remedy}, or switch with \
                         accept_cut_off to go on",
                        plan["message"].as_str().unwrap_or("agents would be cut off")
                    ),
                },
                "plan": plan,
            }),
        ))
    }
}

/// Reloads the TLS settings, audited, guarded by the exact plan: 422 with the findings when
/// the new files are refused, 409 `would_cut_off` with the agents when the new settings would
/// take the last working path from agents that have one (nothing changes), unless
/// `accept_cut_off`. The answer carries the plan (`plan`), peers included.
pub async fn reload(
    shared: &App,
    caller: &crate::auth::Caller,
    body: &bytes::Bytes,
) -> crate::api::HttpResponse {
    let request = match GuardedRequest::read(body) {
        Ok(request) => request,
        Err(error) => return error.response(),
    };
    let (status, body) = guarded_reload(shared, caller, &request).await;
    crate::api::json_response(status, &body)
}

/// `POST /api/v1/server/certificates/renew`: the server certificates (ECDSA and RSA)
/// re-issued from ward's CA with the names they have, as one commit of the four files, then
/// a reload guarded like `POST /server/reload` (`accept_cut_off`), whose answer this is, with
/// `renewed`: each certificate and its days left. Under the fleet lock, so a renewal never
/// meets a rotation half-way.
pub async fn renew(
    shared: &App,
    caller: &crate::auth::Caller,
    body: &bytes::Bytes,
) -> crate::api::HttpResponse {
    /// A renewal says only whether it may cut agents off (it has no dry run: `ward server
    /// reload --dry-run` plans the files as they are).
    #[derive(serde::Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct RenewRequest {
        #[serde(default)]
        accept_cut_off: bool,
    }
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        RenewRequest::default()
    } else {
        match crate::api::typed::<RenewRequest>(body) {
            Ok(request) => request,
            Err(error) => return error.response(),
        }
    };
    let request = GuardedRequest {
        accept_cut_off: request.accept_cut_off,
        dry_run: false,
    };
    let renewed = {
        let _one_change_at_a_time = shared.fleet_lock.lock().await;
        let (data, store, caller) = (shared.data.clone(), shared.store.clone(), caller.clone());
        crate::api::blocking(move || {
            let written = crate::datadir::renew_server_certificates(&data)
                .map_err(|e| crate::api::ApiError::internal(e.0))?;
            let renewed: Vec<Value> = written
                .iter()
                .map(|(file, days)| json!({"file": file.display().to_string(), "days_left": days}))
                .collect();
            crate::commit::FollowUp::new(
                &caller,
                "server.certificates.renew",
                "tls",
                json!({"renewed": renewed}),
            )
            .apply(&*store)?;
            Ok(renewed)
        })
        .await
    };
    let renewed = match renewed {
        Ok(renewed) => renewed,
        Err(error) => return error.response(),
    };
    let (status, mut body) = guarded_reload(shared, caller, &request).await;
    body["renewed"] = json!(renewed);
    crate::api::json_response(status, &body)
}

/// A reload through the exact plan's guard, audited: the status and answer of
/// `POST /api/v1/server/reload`.
async fn guarded_reload(
    shared: &App,
    caller: &crate::auth::Caller,
    request: &GuardedRequest,
) -> (hyper::StatusCode, Value) {
    use hyper::StatusCode;
    let check = crate::impact::reload_check(shared, request.accept_cut_off, request.dry_run);
    let result = crate::state::reload_checked(shared, Some(check)).await;
    use crate::state::Reloaded;
    let (status, body, outcome) = match &result {
        Reloaded::Swapped(findings, plan) => (
            StatusCode::OK,
            json!({"reloaded": true, "findings": crate::listener_tls::findings_json(findings), "plan": plan}),
            if plan
                .as_ref()
                .is_some_and(|p| p["lost"].as_u64().unwrap_or(0) > 0)
            {
                "ok, cut off accepted"
            } else {
                "ok"
            },
        ),
        Reloaded::Kept(findings, plan) if request.dry_run => (
            StatusCode::OK,
            json!({"reloaded": false, "dry_run": true, "findings": crate::listener_tls::findings_json(findings), "plan": plan}),
            "dry run",
        ),
        Reloaded::Kept(findings, plan) => (
            StatusCode::CONFLICT,
            json!({
                "error": {
                    "code": "would_cut_off",
                    "message": format!(
                        "reload refused, the old settings keep serving: {}; fix the files, or \
                         reload with accept_cut_off to go on",
                        plan.as_ref()
                            .and_then(|p| p["message"].as_str().or(p["plan_failed"].as_str()))
                            .unwrap_or("the plan failed")
                    ),
                },
                "findings": crate::listener_tls::findings_json(findings),
                "plan": plan,
            }),
            "refused: would cut off",
        ),
        Reloaded::Invalid(findings) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({
                "error": {
                    "code": "config_invalid",
                    "message": "the new settings have errors; the old ones keep serving",
                },
                "findings": crate::listener_tls::findings_json(findings),
            }),
            "refused",
        ),
    };
    if request.dry_run {
        return (status, body);
    }
    let accepted: Vec<Value> = match &result {
        Reloaded::Swapped(_, Some(plan)) => crate::impact::cut_off_ids(plan),
        _ => Vec::new(),
    };
    let store = shared.store.clone();
    let entry = ward_store::AuditEntry {
        id: 0,
        at_ms: ward_proto::now_ms(),
        actor: caller.name.clone(),
        action: "server.reload".into(),
        target: "tls".into(),
        before: None,
        after: Some(json!({"outcome": outcome, "cut_off_accepted": accepted})),
    };
    let audited = crate::api::blocking(move || {
        store.apply(&ward_store::Change {
            mutation: ward_store::Mutation::Nothing,
            bump_groups: vec![],
            bump_agents: vec![],
            audit: entry,
        })?;
        Ok(())
    })
    .await;
    if let Err(error) = audited {
        tracing::error!(?error, "reload not audited");
    }
    (status, body)
}
