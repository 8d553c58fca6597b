//! The server itself: its status, a reload of the TLS conf files guarded by the exact plan,
//! and the renewal of its certificates.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ward_api::server::{
    Finding as FindingAnswer, GuardedRequest, ListenerStatus, ListenerTls, Listeners, ReloadAnswer,
    Reloads, RenewRequest, Renewed, ServerStatus,
};
use ward_api::tls::GuardPlan;

use crate::api::{blocking, ApiError, Detail};
use crate::auth::Caller;
use crate::commit::FollowUp;
use crate::config::Role;
use crate::listener_tls::Finding;
use crate::state::{App, Reloaded};

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `GET /server`.
pub fn status(app: &App) -> ServerStatus {
    let listener = |role: Role| ListenerStatus {
        address: app.config.address(role).to_string(),
        tls: role.is_tls().then(|| {
            let tls = app.tls.current(role);
            ListenerTls {
                file: tls.file.display().to_string(),
                enabled: tls
                    .policy
                    .protocol
                    .range
                    .versions()
                    .map(|v| v.name().to_string())
                    .collect(),
                security_level: tls.policy.forced_security_level(),
            }
        }),
    };
    let (ok, failed) = app.telemetry.metrics.reloads();
    ServerStatus {
        version: env!("CARGO_PKG_VERSION").into(),
        started: unix_seconds(app.started),
        uptime_seconds: app.started.elapsed().unwrap_or(Duration::ZERO).as_secs(),
        data_dir: app.data.root().display().to_string(),
        listeners: Listeners {
            console: listener(Role::Console),
            clients: listener(Role::Clients),
            clients_http: listener(Role::ClientsHttp),
        },
        reloads: Reloads { ok, failed },
    }
}

/// How often a server says it is alive (`servers` table); three periods without a word and
/// it is listed as not alive.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// This server's name among the servers on its database: its host name and console port.
pub fn server_name(app: &App) -> String {
    // The name the server's certificate is made for first (as `App::open` picks it).
    let host = crate::datadir::host_names()
        .pop()
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", app.config.address(Role::Console).port())
}

/// What this server serves now, as its heartbeat records it.
pub fn heartbeat_record(app: &App) -> ward_store::ServerRecord {
    let listeners = Role::ALL
        .iter()
        .map(|&role| ward_store::ListenerRecord {
            role: role.name().to_string(),
            address: app.config.address(role).to_string(),
            tls: if role.is_tls() {
                let range = app.tls.current(role).policy.protocol.range;
                let names: Vec<&str> = range.versions().map(|v| v.name()).collect();
                match (names.first(), names.last()) {
                    (Some(low), Some(high)) if low == high => low.to_string(),
                    (Some(low), Some(high)) => format!("{low}-{high}"),
                    _ => "none".to_string(),
                }
            } else {
                "plain HTTP".to_string()
            },
        })
        .collect();
    ward_store::ServerRecord {
        name: server_name(app),
        listeners,
        version: env!("CARGO_PKG_VERSION").into(),
        started_ms: app
            .started
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
        heartbeat_ms: ward_proto::now_ms(),
    }
}

/// Whether a server whose last heartbeat was at `heartbeat_ms` is alive at `now_ms`: it said
/// so within three heartbeat periods (a clock a little ahead counts as alive).
fn alive(now_ms: i64, heartbeat_ms: i64) -> bool {
    now_ms - heartbeat_ms <= 3 * HEARTBEAT.as_millis() as i64
}

/// The handshakes refused in the last `within`, counted by why (the failure's kind:
/// `protocol_version`, `not_tls`, `timeout`, ...): what the dashboard charts.
pub async fn refused_by_kind(
    app: &App,
    within: Duration,
) -> Result<std::collections::BTreeMap<String, u64>, ApiError> {
    let since = ward_proto::now_ms() - within.as_millis().min(i64::MAX as u128) as i64;
    super::read(app, move |ctx| {
        let mut kinds = std::collections::BTreeMap::new();
        for failure in ctx.store().recent_failures(since, 100_000)? {
            *kinds.entry(failure.kind).or_default() += 1;
        }
        Ok(kinds)
    })
    .await
}

/// `GET /servers`.
pub async fn servers(app: &App) -> Result<ward_api::server::Servers, ApiError> {
    let this = server_name(app);
    let records = super::read(app, |ctx| Ok(ctx.store().servers()?)).await?;
    let now = ward_proto::now_ms();
    let time = |ms: i64| {
        ward_tls::utc::format_rfc3339(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
    };
    Ok(ward_api::server::Servers {
        servers: records
            .into_iter()
            .map(|record| ward_api::server::SiteServer {
                this: record.name == this,
                alive: alive(now, record.heartbeat_ms),
                version: record.version,
                started: time(record.started_ms),
                last_heartbeat: time(record.heartbeat_ms),
                listeners: record
                    .listeners
                    .into_iter()
                    .map(|l| ward_api::server::SiteListener {
                        role: l.role,
                        address: l.address,
                        tls: l.tls,
                    })
                    .collect(),
                name: record.name,
            })
            .collect(),
    })
}

/// The findings of a configtest or reload, as answered.
pub fn findings(findings: &[Finding]) -> Vec<FindingAnswer> {
    findings
        .iter()
        .map(|f| FindingAnswer {
            severity: f.severity.to_string(),
            message: f.text.clone(),
        })
        .collect()
}

/// 409 `would_cut_off` of a guarded step (`what` was refused, nothing changed; `remedy` says
/// what to do first), when `lost` agents would lose their last path and that is not accepted.
pub fn refuse_if_cut_off(
    request: &GuardedRequest,
    what: &str,
    remedy: &str,
    lost: usize,
    plan: &GuardPlan,
) -> Result<(), ApiError> {
    if lost == 0 || request.accept_cut_off || request.dry_run {
        return Ok(());
    }
    let message = if plan.message.is_empty() {
        "agents would be cut off"
    } else {
        plan.message.as_str()
    };
    Err(ApiError::would_cut_off(
        format!(
            "{what} was refused, nothing changed: {message}; {remedy}, or switch with \
             accept_cut_off to go on"
        ),
        plan.clone(),
    ))
}

/// `POST /server/reload`: the TLS conf files re-read, audited, guarded by the exact plan: 422
/// with the findings when the new files are refused, 409 `would_cut_off` with the agents when
/// the new settings would take the last working path from agents that have one (nothing
/// changes), unless `accept_cut_off`. The answer carries the plan, peers included.
pub async fn reload(
    app: &App,
    caller: &Caller,
    request: GuardedRequest,
) -> Result<ReloadAnswer, ApiError> {
    let check = crate::impact::reload_check(app, request.accept_cut_off, request.dry_run);
    let result = crate::state::reload_checked(app, Some(check)).await;
    let (answer, outcome) = match result {
        Reloaded::Swapped(found, plan) => {
            let outcome = if plan.as_ref().is_some_and(|p| p.lost > 0) {
                "ok, cut off accepted"
            } else {
                "ok"
            };
            (
                Ok(ReloadAnswer {
                    reloaded: true,
                    dry_run: None,
                    findings: findings(&found),
                    plan,
                    renewed: None,
                }),
                outcome,
            )
        }
        Reloaded::Kept(found, plan) if request.dry_run => (
            Ok(ReloadAnswer {
                reloaded: false,
                dry_run: Some(true),
                findings: findings(&found),
                plan,
                renewed: None,
            }),
            "dry run",
        ),
        Reloaded::Kept(found, plan) => {
            let why = plan
                .as_ref()
                .map(|p| p.plan_failed.clone().unwrap_or_else(|| p.message.clone()))
                .unwrap_or_else(|| "the plan failed".into());
            (
                Err(ApiError::conflict(
                    "would_cut_off",
                    format!(
                        "reload refused, the old settings keep serving: {why}; fix the files, \
                         or reload with accept_cut_off to go on"
                    ),
                )
                .with(Detail {
                    plan,
                    findings: Some(findings(&found)),
                    ..Detail::default()
                })),
                "refused: would cut off",
            )
        }
        Reloaded::Invalid(found) => (
            Err(ApiError::client(
                hyper::StatusCode::UNPROCESSABLE_ENTITY,
                "config_invalid",
                "the new settings have errors; the old ones keep serving",
            )
            .with(Detail {
                findings: Some(findings(&found)),
                ..Detail::default()
            })),
            "refused",
        ),
    };
    if request.dry_run {
        return answer;
    }
    let accepted: Vec<String> = match &answer {
        Ok(ReloadAnswer {
            plan: Some(plan), ..
        }) => plan.cut_off_ids(),
        _ => Vec::new(),
    };
    let follow_up = FollowUp::new(
        caller,
        "server.reload",
        "tls",
        serde_json::json!({"outcome": outcome, "cut_off_accepted": accepted}),
    );
    let store = app.store.clone();
    if let Err(error) = blocking(move || follow_up.apply(&*store).map(drop)).await {
        tracing::error!(?error, "reload not audited");
    }
    answer
}

/// `POST /server/certificates/renew`: the server certificates (ECDSA and RSA) re-issued from
/// ward's CA with the names they have, as one commit of the four files, then a reload
/// guarded like [`reload`], whose answer this is, with `renewed`: each certificate and its
/// days left. Under the fleet lock, so a renewal never meets a rotation half-way.
pub async fn renew(
    app: &App,
    caller: &Caller,
    request: RenewRequest,
) -> Result<ReloadAnswer, ApiError> {
    let renewed = {
        let _one_change_at_a_time = app.fleet_lock.lock().await;
        let (data, store, caller) = (app.data.clone(), app.store.clone(), caller.clone());
        blocking(move || {
            let written = crate::datadir::renew_server_certificates(&data)
                .map_err(|e| ApiError::internal(e.0))?;
            let renewed: Vec<Renewed> = written
                .iter()
                .map(|(file, days)| Renewed {
                    file: file.display().to_string(),
                    days_left: *days,
                })
                .collect();
            FollowUp::new(
                &caller,
                "server.certificates.renew",
                "tls",
                super::render::audited(&renewed),
            )
            .apply(&*store)?;
            Ok(renewed)
        })
        .await?
    };
    let guarded = GuardedRequest {
        accept_cut_off: request.accept_cut_off,
        dry_run: false,
    };
    let mut answer = reload(app, caller, guarded).await?;
    answer.renewed = Some(renewed);
    Ok(answer)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_server_is_alive_within_three_heartbeats() {
        // (milliseconds since its last heartbeat, alive)
        let table = [
            (0, true),
            (10_000, true),
            (30_000, true),
            (30_001, false),
            (-5_000, true),
        ];
        for (since, expected) in table {
            assert_eq!(
                super::alive(1_000_000 + since, 1_000_000),
                expected,
                "{since} ms"
            );
        }
    }
}
