//! The running server follows its site (see [`crate::site`]): it takes a change of the site's
//! files another server made as soon as it hears of it, and at every heartbeat (a notification
//! missed while the database was away), then loads what it holds of them in memory again.

use std::sync::Arc;
use std::time::Duration;

use crate::state::App;

/// Keeps the running server in line with its site: at every notification of a change of the
/// site's files and every `period` (a notification missed while the database was away).
pub async fn follow(app: Arc<App>, period: Duration) {
    if !app.store.is_shared() {
        return;
    }
    let mut shutdown = app.shutdown.subscribe();
    let mut tick = tokio::time::interval(period);
    // A failure (the database away) is logged at most once a minute.
    let mut logged: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = app.site.poked() => {}
            _ = shutdown.changed() => return,
        }
        if let Err(error) = refresh(&app).await {
            if logged.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                logged = Some(std::time::Instant::now());
                tracing::warn!(%error, "the site's files not checked (tried again shortly)");
            }
        }
    }
}

/// Brings the running server into line with its site: the files ([`sync_files`]), then what
/// it holds of them in memory (the agreement keys, the CAs agents are told to trust, the
/// ticket keys, and the listeners' certificates through a reload).
pub async fn refresh(app: &App) -> Result<crate::site::Synced, String> {
    // No change of the files of this server's own runs meanwhile (they hold the fleet lock),
    // nor a reload or a ticket key rotation (the reload lock).
    let _changes = app.fleet_lock.lock().await;
    let synced = {
        let _files = app.reload_lock.lock().await;
        let (data, store) = (app.data.clone(), app.store.clone());
        let synced = tokio::task::spawn_blocking(move || crate::site::sync_files(&data, &*store))
            .await
            .map_err(|e| e.to_string())??;
        if let crate::site::Synced::Took { taken, .. } = synced {
            load(app, taken)?;
        }
        synced
    };
    if let crate::site::Synced::Took { generation, taken } = synced {
        if taken.own_certificates {
            // Guarded as a SIGHUP is: the conf files may also hold edits not loaded yet.
            let check = crate::impact::reload_check(app, false, false);
            match crate::state::reload_checked(app, Some(check)).await {
                crate::state::Reloaded::Swapped(..) => {}
                crate::state::Reloaded::Kept(_, plan) => tracing::error!(
                    why = plan.map(|p| p.message).unwrap_or_default(),
                    "this server's certificates from the site's CA are in place, but loading \
                     them was refused: run `ward server reload`, whose answer says why"
                ),
                crate::state::Reloaded::Invalid(findings) => tracing::error!(
                    findings = ?findings.iter().map(|f| f.text.clone()).collect::<Vec<_>>(),
                    "this server's certificates from the site's CA are in place, but the \
                     listeners could not load them"
                ),
            }
        }
        app.fleet_changed();
        tracing::info!(
            generation,
            certificates = taken.certificates,
            own_certificates = taken.own_certificates,
            agreement = taken.agreement,
            trust = taken.trust,
            tickets = taken.tickets,
            admin_token = taken.admin_token,
            "took the site's files"
        );
    }
    let generation = match synced {
        crate::site::Synced::Took { generation, .. } | crate::site::Synced::Put { generation } => {
            generation
        }
        crate::site::Synced::Same | crate::site::Synced::Alone => {
            crate::site::local_generation(&app.data)?
        }
    };
    app.site.holds(generation);
    Ok(synced)
}

/// Loads again what the server holds in memory of the files `taken` changed.
fn load(app: &App, taken: crate::site::Taken) -> Result<(), String> {
    if taken.agreement {
        let agreement = crate::state::load_agreement(&app.data)?;
        *app.agreement.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(agreement);
    }
    if taken.trust || taken.certificates {
        let trust = crate::state::load_agent_trust(&app.data)?;
        *app.agent_trust.write().unwrap_or_else(|p| p.into_inner()) = trust.into();
    }
    if taken.tickets {
        let keys = app.data.load_ticket_keys().map_err(|e| e.to_string())?;
        ward_tls::ffi::set_ticket_keys(keys);
    }
    if taken.admin_token {
        let token = app
            .data
            .read_admin_token()
            .map_err(|e| format!("{}: {e}", app.data.admin_token().display()))?;
        *app.admin_token.write().unwrap_or_else(|p| p.into_inner()) = token;
    }
    Ok(())
}
