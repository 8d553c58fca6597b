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

/// Reloads the TLS settings, audited; 422 with the findings when the new files are refused.
pub async fn reload(shared: &App, caller: &crate::auth::Caller) -> crate::api::HttpResponse {
    use hyper::StatusCode;
    let result = crate::state::reload(shared).await;
    let (status, body, outcome) = match &result {
        Ok(findings) => (
            StatusCode::OK,
            json!({"reloaded": true, "findings": crate::listener_tls::findings_json(findings)}),
            "ok",
        ),
        Err(findings) => (
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
    let store = shared.store.clone();
    let entry = ward_store::AuditEntry {
        id: 0,
        at_ms: ward_proto::now_ms(),
        actor: caller.name.clone(),
        action: "server.reload".into(),
        target: "tls".into(),
        before: None,
        after: Some(json!({"outcome": outcome})),
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
    crate::api::json_response(status, &body)
}
