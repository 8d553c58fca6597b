//! Rotating ward's CA without orphaning an agent: `GET /api/v1/server/ca` (where a rotation
//! stands, and who has acknowledged the new CA), `POST /api/v1/server/ca/rotate` (a new CA,
//! handed to every agent inside its signed settings, so agents trust both) and
//! `POST /api/v1/server/ca/switch` (the listeners' certificates re-issued from the new CA,
//! through the same guard as every other change).
//!
//! An agent acknowledges the new CA by reporting its fingerprint at a check-in
//! (`CheckinRequest::trusted_cas`): evidence from the agent itself, so an agent too old to
//! read the settings' CAs, one that is offline and one that never checked in since all count
//! as not trusting it, and the switch names them.
//!
//! Files (see [`crate::datadir`]): `certs/ca-next.*` from `rotate` to `switch`;
//! `certs/agent-trust.pem`, the CAs the settings carry (both during a rotation, the new one
//! after); `certs/ca-previous.*`, the CA before the last switch.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::json;
use ward_api::server::{
    Acknowledgement, CaDescription, CaStatus, GuardedRequest, SwitchAnswer, Unacknowledged,
};
use ward_api::tls::GuardPlan;
use ward_tls::pki;

use crate::api::{blocking, ApiError};
use crate::auth::Caller;
use crate::commit::{self, FollowUp};
use crate::config::Role;
use crate::datadir::DataDir;
use crate::impact::{self, Running, Serving};
use crate::state::{App, Reloaded};

/// At most this many agents are listed by name in an answer; the counts are always whole.
pub(super) const LISTED: usize = 1000;

/// Refuses a rotation when the clients listener's certificate is not one ward's CA issued
/// (an admin's own): the CAs the settings would hand the agents could not verify it.
fn issued_by_ward(data: &DataDir, leaf: Option<&openssl::x509::X509>) -> Result<(), ApiError> {
    let Some(leaf) = leaf else {
        return Ok(());
    };
    // Either root of ward's CA (ECDSA, or RSA for the RSA certificate).
    let roots = std::fs::read(data.ca_cert()).unwrap_or_default();
    if crate::site::signed_by_any(leaf, &roots) {
        return Ok(());
    }
    Err(ApiError::config(
        "not_ward_certificate",
        format!(
            "the clients listener serves a certificate that ward's CA ({}) did not issue: a CA \
             rotation would tell agents to trust CAs that cannot verify it; rotate that \
             certificate's own CA instead, or put ward's certificates back first",
            data.ca_cert().display()
        ),
    ))
}

/// What the blocking parts need of the app.
#[derive(Clone)]
struct Ctx {
    data: DataDir,
    store: std::sync::Arc<dyn ward_store::Store>,
    trust: std::sync::Arc<std::sync::RwLock<std::sync::Arc<str>>>,
}

impl Ctx {
    fn of(app: &App) -> Ctx {
        Ctx {
            data: app.data.clone(),
            store: app.store.clone(),
            trust: app.agent_trust.clone(),
        }
    }

    fn told(&self) -> bool {
        !self
            .trust
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// The CAs every agent's settings carry from now on (`certs/agent-trust.pem` holds them
    /// already: this is the copy in memory).
    fn tell(&self, pem: &[u8]) {
        *self.trust.write().unwrap_or_else(|p| p.into_inner()) =
            String::from_utf8_lossy(pem).into();
    }
}

/// A CA file described: fingerprint, subject, expiry. `None` when the file is absent.
fn describe(path: &Path) -> Option<CaDescription> {
    let pem = std::fs::read(path).ok()?;
    let cert = openssl::x509::X509::from_pem(&pem).ok()?;
    let subject = cert
        .subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .map(|e| String::from_utf8_lossy(e.data().as_slice()).into_owned());
    Some(CaDescription {
        file: path.display().to_string(),
        fingerprint: pki::certificate_fingerprints(&pem).into_iter().next(),
        subject,
        not_after: cert.not_after().to_string(),
        days_left: pki::seconds_left(&cert).ok().map(|s| s / 86_400),
    })
}

/// A file of the data dir that must be there.
fn read(path: &Path) -> Result<Vec<u8>, ApiError> {
    std::fs::read(path).map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))
}

fn fingerprint(path: &Path) -> Result<String, ApiError> {
    pki::certificate_fingerprints(&read(path)?)
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal(format!("{}: no certificate in it", path.display())))
}

fn openssl_error(e: openssl::error::ErrorStack) -> ApiError {
    ApiError::internal(format!("OpenSSL: {e}"))
}

/// Where a rotation stands: the CAs, and which agents report trusting the next one.
fn status_of(ctx: &Ctx) -> Result<CaStatus, ApiError> {
    let data = &ctx.data;
    let mut status = CaStatus {
        current: describe(&data.ca_cert()),
        next: describe(&data.ca_next_cert()),
        previous: describe(&data.ca_previous_cert()),
        under_way: data.ca_next_cert().exists(),
        agents_told: ctx.told(),
        acknowledgement: None,
        agents_bumped: None,
        resent: None,
        aborted: None,
        dry_run: None,
        lost: None,
    };
    if !status.under_way {
        return Ok(status);
    }
    let next = fingerprint(&data.ca_next_cert())?;
    status.acknowledgement = Some(acknowledgement(
        &*ctx.store,
        |agent| agent.trusts_ca(&next),
        |agent| {
            if agent.trusted_cas.is_none() {
                "it has not said which CAs it trusts since the rotation began (offline, or an \
                 agent older than CA rotation)"
            } else {
                "its last check-in did not list the new CA (it has not picked up its new \
                 settings yet)"
            }
        },
    )?);
    Ok(status)
}

/// A rotation's acknowledgement: how many agents have acknowledged, how many have not, and
/// those listed by id with `why` (simulated agents, a rehearsal's leftovers, are counted
/// apart: they block nothing).
pub(super) fn acknowledgement(
    store: &dyn ward_store::Store,
    acked: impl Fn(&ward_store::AgentTls) -> bool,
    why: impl Fn(&ward_store::AgentTls) -> &'static str,
) -> Result<Acknowledgement, ApiError> {
    let agents = store.agents_tls()?;
    let (waiting, simulated) = waiting(&agents, acked);
    let tree = crate::ops::tree_of(store)?;
    Ok(Acknowledgement {
        agents: agents.len(),
        acknowledged: agents.len() - waiting.len() - simulated,
        waiting: waiting.len(),
        simulated_ignored: simulated,
        not_acknowledged: waiting
            .iter()
            .take(LISTED)
            .map(|agent| Unacknowledged {
                id: agent.id.clone(),
                group: tree.path(agent.group),
                last_checkin: agent.last_checkin_ms.map(crate::api::time),
                channel: agent
                    .https
                    .map(|https| if https { "https" } else { "http" }.to_string()),
                why: why(agent).to_string(),
            })
            .collect(),
    })
}

/// The agents that have not acknowledged (simulated ones apart), by id, and how many
/// simulated ones were set aside.
pub(super) fn waiting(
    agents: &[ward_store::AgentTls],
    acked: impl Fn(&ward_store::AgentTls) -> bool,
) -> (Vec<&ward_store::AgentTls>, usize) {
    let mut simulated = 0;
    let mut waiting: Vec<&ward_store::AgentTls> = agents
        .iter()
        .filter(|agent| !acked(agent))
        .filter(|agent| {
            simulated += usize::from(agent.simulated);
            !agent.simulated
        })
        .collect();
    waiting.sort_by(|a, b| a.id.cmp(&b.id));
    (waiting, simulated)
}

/// `GET /server/ca`.
pub async fn status(shared: &App) -> Result<CaStatus, ApiError> {
    let ctx = Ctx::of(shared);
    blocking(move || status_of(&ctx)).await
}

pub(super) fn init_error(error: crate::datadir::InitError) -> ApiError {
    ApiError::internal(error.0)
}

/// `POST /api/v1/server/ca/rotate`: a new CA (`certs/ca-next.*`), and every agent's settings
/// carry both CAs from now on. Refused (409 `not_ward_certificate`) when the clients listener
/// serves a certificate ward's CA did not issue: agents would be told to trust CAs that do not
/// verify it. Run again during a rotation, it makes no new CA: it hands the one under way to
/// every agent again (`"resent": true`). The new CA, its key and the CAs agents are told to
/// trust are one commit with the serial bumps and the audit entry (see [`crate::commit`]).
pub async fn rotate(shared: &App, caller: &Caller) -> Result<CaStatus, ApiError> {
    let _one_change_at_a_time = shared.fleet_lock.lock().await;
    let ctx = Ctx::of(shared);
    let caller = caller.clone();
    let leaf = Running::clients(shared).leaf;
    let result = blocking(move || {
        let data = &ctx.data;
        let resent = data.ca_next_cert().exists();
        let mut after = json!({});
        let mut files = ward_fs::Commit::new("rotate-ca-start");
        let next_pem = if resent {
            read(&data.ca_next_cert())?
        } else {
            issued_by_ward(data, leaf.as_ref())?;
            let name = format!(
                "ward private CA {}",
                ward_tls::utc::format_rfc3339(std::time::SystemTime::now())
            );
            let ca = pki::CaBundle::new(&name).map_err(openssl_error)?;
            let pem = ca.cert_pem().map_err(openssl_error)?;
            files = files
                .write(
                    data.ca_next_key(),
                    ca.key_pem().map_err(openssl_error)?,
                    0o600,
                )
                .write(data.ca_next_cert(), pem.clone(), 0o644);
            after["subject"] = json!(name);
            pem
        };
        let trust = [read(&data.ca_cert())?, next_pem.clone()].concat();
        files = files.write(data.agent_trust(), trust.clone(), 0o644);
        after["next"] = json!(pki::certificate_fingerprints(&next_pem).into_iter().next());
        let action = if resent {
            "server.ca.resend"
        } else {
            "server.ca.rotate"
        };
        let follow_up = FollowUp::new(&caller, action, "ca", after).bumping_everyone();
        let committed = commit::put_files(data, files, follow_up)?;
        // Before the bumps: settings of the new serials carry both CAs.
        ctx.tell(&trust);
        let bumped = committed.follow_up(&*ctx.store)?;
        let mut status = status_of(&ctx)?;
        status.agents_bumped = Some(bumped);
        status.resent = Some(resent);
        Ok(status)
    })
    .await;
    shared.fleet_changed();
    result
}

/// `POST /api/v1/server/ca/abort`: gives up a rotation under way. Nothing the listeners serve
/// changes (they serve certificates of the current CA until a switch), so no agent can lose
/// its path: the next CA goes, and every agent's settings carry the current CA only. With
/// `dry_run`, only says so.
pub async fn abort(
    shared: &App,
    caller: &Caller,
    request: GuardedRequest,
) -> Result<CaStatus, ApiError> {
    let _one_change_at_a_time = shared.fleet_lock.lock().await;
    let ctx = Ctx::of(shared);
    let caller = caller.clone();
    let result = blocking(move || {
        let data = &ctx.data;
        if !data.ca_next_cert().exists() && !data.ca_next_key().exists() {
            return Err(no_rotation());
        }
        let next = data
            .ca_next_cert()
            .exists()
            .then(|| fingerprint(&data.ca_next_cert()))
            .transpose()?;
        if request.dry_run {
            let mut status = status_of(&ctx)?;
            status.dry_run = Some(true);
            status.lost = Some(0);
            return Ok(status);
        }
        let current = read(&data.ca_cert())?;
        let mut files = ward_fs::Commit::new("rotate-ca-abort")
            .remove(data.ca_next_cert())
            .remove(data.ca_next_key())
            .write(data.agent_trust(), current.clone(), 0o644);
        for (_, staged) in staged(data) {
            files = files.remove(staged);
        }
        files = files.remove(data.ca_switch_dir());
        let follow_up = FollowUp::new(&caller, "server.ca.abort", "ca", json!({"next": next}))
            .bumping_everyone();
        let committed = commit::put_files(data, files, follow_up)?;
        ctx.tell(&current);
        let bumped = committed.follow_up(&*ctx.store)?;
        let mut status = status_of(&ctx)?;
        status.aborted = Some(true);
        status.agents_bumped = Some(bumped);
        Ok(status)
    })
    .await;
    shared.fleet_changed();
    result
}

fn no_rotation() -> ApiError {
    ApiError::conflict(
        "no_rotation",
        "no CA rotation is under way: `ward server rotate-ca start` makes the new CA and \
         hands it to the agents first",
    )
}

/// The staged certificates of a switch, under `certs/switch/`: (ward's file, the staged one)
/// for the ECDSA and RSA certificates and keys.
fn staged(data: &DataDir) -> [(PathBuf, PathBuf); 4] {
    let dir = data.ca_switch_dir();
    [
        (data.server_cert(), dir.join("server.pem")),
        (data.server_key(), dir.join("server.key")),
        (data.server_rsa_cert(), dir.join("server-rsa.pem")),
        (data.server_rsa_key(), dir.join("server-rsa.key")),
    ]
}

/// `policy` with ward's certificate files replaced by their staged twins.
fn with_staged(
    policy: &ward_tls::TlsPolicy,
    root: &Path,
    files: &[(PathBuf, PathBuf)],
) -> ward_tls::TlsPolicy {
    let mut policy = policy.clone();
    for located in policy
        .certificate_files
        .iter_mut()
        .chain(policy.certificate_key_files.iter_mut())
    {
        let resolved = ward_tls::context::resolve(root, &located.value);
        if let Some((_, staged)) = files.iter().find(|(ward, _)| *ward == resolved) {
            // Relative to the data dir, as the conf file's own paths are (a data dir given
            // as a relative path must not be joined to itself).
            located.value = staged
                .strip_prefix(root)
                .unwrap_or(staged)
                .display()
                .to_string();
        }
    }
    policy
}

/// `POST /api/v1/server/ca/switch`: the listeners' certificates re-issued from the new CA,
/// planned first: 409 `would_cut_off` with each agent that does not trust the new CA and would
/// lose its last path (nothing changes) unless `accept_cut_off`. Then the files move into
/// place, the listeners reload, and the settings carry only the new CA.
pub async fn switch(
    shared: &App,
    caller: &Caller,
    request: GuardedRequest,
) -> Result<SwitchAnswer, ApiError> {
    let _one_change_at_a_time = shared.fleet_lock.lock().await;
    let planning = Planning {
        ctx: Ctx::of(shared),
        config: shared.config.clone(),
        running: [Role::Console, Role::Clients].map(|role| shared.tls.current(role).policy.clone()),
        clients: Running::clients(shared),
        serving: Serving::of(shared),
        held: impact::held(shared),
    };
    let (lost, plan) = blocking(move || plan_switch(planning, request.dry_run)).await?;
    let refused = super::server::refuse_if_cut_off(
        &request,
        "the switch to the new CA",
        "wait until they check in (`ward server rotate-ca status`), give them an HTTP entry",
        lost,
        &plan,
    );
    if refused.is_err() {
        let _ = std::fs::remove_dir_all(shared.data.ca_switch_dir());
    }
    refused?;
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
    let next = fingerprint(&shared.data.ca_next_cert())?;
    let follow_up = FollowUp::new(
        caller,
        "server.ca.switch",
        "ca",
        json!({"current": next, "cut_off_accepted": plan.cut_off_ids()}),
    )
    .bumping_everyone();
    let data = shared.data.clone();
    let committed = blocking(move || move_into_place(&data, follow_up)).await?;
    // Only the certificates differ from what serves now (checked by the plan).
    let reloaded = matches!(
        crate::state::reload_checked(shared, None).await,
        Reloaded::Swapped(..)
    );
    let ctx = Ctx::of(shared);
    let result = blocking(move || {
        ctx.tell(&read(&ctx.data.ca_cert())?);
        committed.follow_up(&*ctx.store)?;
        status_of(&ctx)
    })
    .await;
    shared.fleet_changed();
    if !reloaded {
        return Err(ApiError::internal(
            "the new CA's certificates are in place but were not loaded: run `ward server \
             reload`, whose answer says why",
        ));
    }
    Ok(SwitchAnswer {
        switched: true,
        dry_run: None,
        plan,
        ca: Some(result?),
        key: None,
        removes_key: None,
    })
}

/// Stages certificates from the next CA and plans the listeners serving them: (how many
/// agents would lose their last path, the plan). Refuses when no rotation is under way, and
/// when the conf files hold changes not yet loaded (the switch changes certificates only).
/// A dry run leaves nothing staged.
/// What planning a switch reads of the app, taken before it goes off the async threads.
struct Planning {
    ctx: Ctx,
    config: crate::config::Config,
    /// The console's and the clients listener's policies serving now.
    running: [ward_tls::TlsPolicy; 2],
    clients: Running,
    serving: Serving,
    held: std::collections::HashSet<String>,
}

fn plan_switch(planning: Planning, dry_run: bool) -> Result<(usize, GuardPlan), ApiError> {
    let Planning {
        ctx,
        config,
        running,
        clients,
        serving,
        held,
    } = planning;
    let data = &ctx.data;
    if !data.ca_next_cert().exists() {
        return Err(no_rotation());
    }
    let (loaded, _) = crate::listener_tls::load_all(data, &config);
    let unchanged = loaded.is_some_and(|(console, clients)| {
        console.policy == running[0] && clients.policy == running[1]
    });
    if !unchanged {
        return Err(ApiError::config(
            "reload_first",
            "the conf files differ from what the listeners serve: reload them first (`ward \
             server reload`), so the switch changes the certificates only",
        ));
    }
    let files = staged(data);
    let [(_, ecdsa_cert), (_, ecdsa_key), (_, rsa_cert), (_, rsa_key)] = files.clone();
    let issued = crate::datadir::issue_server_certificates(
        data,
        (&data.ca_next_cert(), &data.ca_next_key()),
    )
    .map_err(init_error)?;
    for (pair, (cert, key)) in issued
        .into_iter()
        .zip([(ecdsa_cert, ecdsa_key), (rsa_cert, rsa_key)])
    {
        crate::datadir::write_file(&key, &pair.key_pem, 0o600).map_err(init_error)?;
        crate::datadir::write_file(&cert, &pair.cert_pem, 0o644).map_err(init_error)?;
    }
    let planned = [
        (Role::Console, with_staged(&running[0], data.root(), &files)),
        (Role::Clients, with_staged(&running[1], data.root(), &files)),
    ];
    let guarded = impact::guard(
        &*ctx.store,
        data.root(),
        &clients,
        serving,
        &planned,
        &HashMap::new(),
        held,
        ward_proto::now_ms(),
    );
    if dry_run || guarded.is_err() {
        let _ = std::fs::remove_dir_all(data.ca_switch_dir());
    }
    guarded
}

/// The switch on disk, as one commit (see [`crate::commit`]): the old CA kept as
/// `ca-previous.*`, the staged certificates in place of ward's, the next CA as `ca.*`, the
/// agents told to trust it alone; then (the caller) the audit entry and the bumps. A crash
/// leaves all of it before or all of it after, and the next start finishes the follow-up.
fn move_into_place(data: &DataDir, follow_up: FollowUp) -> Result<commit::Committed, ApiError> {
    let next_cert = read(&data.ca_next_cert())?;
    let mut files = ward_fs::Commit::new("rotate-ca-switch")
        .write(data.ca_previous_key(), read(&data.ca_key())?, 0o600)
        .write(data.ca_previous_cert(), read(&data.ca_cert())?, 0o644);
    for (ward, staged) in staged(data) {
        let mode = if ward.extension().is_some_and(|e| e == "key") {
            0o600
        } else {
            0o644
        };
        files = files.write(ward, read(&staged)?, mode).remove(staged);
    }
    files = files
        .write(data.ca_key(), read(&data.ca_next_key())?, 0o600)
        .write(data.ca_cert(), next_cert.clone(), 0o644)
        .write(data.agent_trust(), next_cert, 0o644)
        .remove(data.ca_next_key())
        .remove(data.ca_next_cert())
        .remove(data.ca_switch_dir());
    commit::put_files(data, files, follow_up)
}
