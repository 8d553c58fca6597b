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

use hyper::StatusCode;
use serde_json::{json, Value};
use ward_store::{AuditEntry, Change, Mutation};
use ward_tls::pki;

use crate::api::{blocking, json_response, ApiError, HttpResponse};
use crate::auth::Caller;
use crate::config::Role;
use crate::datadir::{write_file, DataDir};
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
    let ca = std::fs::read(data.ca_cert())
        .ok()
        .and_then(|pem| openssl::x509::X509::from_pem(&pem).ok())
        .and_then(|ca| ca.public_key().ok());
    if ca.is_some_and(|key| leaf.verify(&key).unwrap_or(false)) {
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

    /// The CAs every agent's settings carry from now on.
    fn tell(&self, pem: &[u8]) -> Result<(), ApiError> {
        write_file(&self.data.agent_trust(), pem, 0o644).map_err(init_error)?;
        *self.trust.write().unwrap_or_else(|p| p.into_inner()) =
            String::from_utf8_lossy(pem).into();
        Ok(())
    }
}

/// A CA file described: fingerprint, subject, expiry. `None` when the file is absent.
fn describe(path: &Path) -> Option<Value> {
    let pem = std::fs::read(path).ok()?;
    let cert = openssl::x509::X509::from_pem(&pem).ok()?;
    let subject = cert
        .subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .map(|e| String::from_utf8_lossy(e.data().as_slice()).into_owned());
    Some(json!({
        "file": path.display().to_string(),
        "fingerprint": pki::certificate_fingerprints(&pem).into_iter().next(),
        "subject": subject,
        "not_after": cert.not_after().to_string(),
        "days_left": pki::seconds_left(&cert).ok().map(|s| s / 86_400),
    }))
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

/// Where a rotation stands: the CAs, and which agents report trusting the next one.
fn status_json(ctx: &Ctx) -> Result<Value, ApiError> {
    let data = &ctx.data;
    let mut answer = json!({
        "current": describe(&data.ca_cert()),
        "next": describe(&data.ca_next_cert()),
        "previous": describe(&data.ca_previous_cert()),
        "under_way": data.ca_next_cert().exists(),
        "agents_told": ctx.told(),
    });
    if !data.ca_next_cert().exists() {
        return Ok(answer);
    }
    let next = fingerprint(&data.ca_next_cert())?;
    acknowledgement(
        &*ctx.store,
        &mut answer,
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
    )?;
    Ok(answer)
}

/// Fills a rotation's status in `answer`: how many agents have acknowledged (`acked`), how
/// many have not, and those listed by id with `why` (simulated agents, a rehearsal's
/// leftovers, are counted apart: they block nothing).
pub(super) fn acknowledgement(
    store: &dyn ward_store::Store,
    answer: &mut Value,
    acked: impl Fn(&ward_store::AgentTls) -> bool,
    why: impl Fn(&ward_store::AgentTls) -> &'static str,
) -> Result<(), ApiError> {
    let agents = store.agents_tls()?;
    let (waiting, simulated) = waiting(&agents, acked);
    let tree = crate::ops::tree_of(store)?;
    answer["agents"] = json!(agents.len());
    answer["acknowledged"] = json!(agents.len() - waiting.len() - simulated);
    answer["waiting"] = json!(waiting.len());
    answer["simulated_ignored"] = json!(simulated);
    answer["not_acknowledged"] = waiting
        .iter()
        .take(LISTED)
        .map(|agent| {
            json!({
                "id": agent.id,
                "group": tree.path(agent.group),
                "last_checkin": agent.last_checkin_ms.map(crate::api::time),
                "channel": agent.https.map(|https| if https { "https" } else { "http" }),
                "why": why(agent),
            })
        })
        .collect();
    Ok(())
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

/// `GET /api/v1/server/ca`.
pub async fn status(shared: &App) -> HttpResponse {
    let ctx = Ctx::of(shared);
    match blocking(move || status_json(&ctx)).await {
        Ok(answer) => json_response(StatusCode::OK, &answer),
        Err(error) => error.response(),
    }
}

/// Every agent gets a new serial (their settings now carry other CAs), with `audit`.
pub(super) fn bump_everyone(
    store: &dyn ward_store::Store,
    audit: AuditEntry,
) -> Result<u64, ApiError> {
    let groups = store.groups()?.iter().map(|g| g.id).collect();
    let applied = store.apply(&Change {
        mutation: Mutation::Nothing,
        bump_groups: groups,
        bump_agents: vec![],
        audit,
    })?;
    Ok(applied.bumped_agents)
}

/// An audit entry of a rotation step.
pub(super) fn entry(caller: &Caller, action: &str, target: &str, after: Value) -> AuditEntry {
    AuditEntry {
        id: 0,
        at_ms: ward_proto::now_ms(),
        actor: caller.name.clone(),
        action: action.into(),
        target: target.into(),
        before: None,
        after: Some(after),
    }
}

pub(super) fn init_error(error: crate::datadir::InitError) -> ApiError {
    ApiError::internal(error.0)
}

/// `POST /api/v1/server/ca/rotate`: a new CA (`certs/ca-next.*`), and every agent's settings
/// carry both CAs from now on. Refused (409 `not_ward_certificate`) when the clients listener
/// serves a certificate ward's CA did not issue: agents would be told to trust CAs that do not
/// verify it. Run again during a rotation, it makes no new CA: it hands the one under way to
/// every agent again (`"resent": true`), which also finishes a start a crash interrupted.
pub async fn rotate(shared: &App, caller: &Caller) -> HttpResponse {
    let _one_change_at_a_time = shared.fleet_lock.lock().await;
    let ctx = Ctx::of(shared);
    let caller = caller.clone();
    let leaf = Running::clients(shared).leaf;
    let result = blocking(move || {
        let data = &ctx.data;
        let resent = data.ca_next_cert().exists();
        let mut after = json!({});
        if !resent {
            issued_by_ward(data, leaf.as_ref())?;
            let openssl =
                |e: openssl::error::ErrorStack| ApiError::internal(format!("OpenSSL: {e}"));
            let name = format!(
                "ward private CA {}",
                ward_tls::utc::format_rfc3339(std::time::SystemTime::now())
            );
            let ca = pki::new_ca(&name).map_err(openssl)?;
            // The key first: a crash between the two leaves no certificate without its key.
            write_file(&data.ca_next_key(), &ca.key_pem().map_err(openssl)?, 0o600)
                .map_err(init_error)?;
            write_file(
                &data.ca_next_cert(),
                &ca.cert_pem().map_err(openssl)?,
                0o644,
            )
            .map_err(init_error)?;
            after["subject"] = json!(name);
        }
        ctx.tell(&[read(&data.ca_cert())?, read(&data.ca_next_cert())?].concat())?;
        after["next"] = json!(fingerprint(&data.ca_next_cert())?);
        let action = if resent {
            "server.ca.resend"
        } else {
            "server.ca.rotate"
        };
        let bumped = bump_everyone(&*ctx.store, entry(&caller, action, "ca", after))?;
        let mut answer = status_json(&ctx)?;
        answer["agents_bumped"] = json!(bumped);
        answer["resent"] = json!(resent);
        Ok(answer)
    })
    .await;
    match result {
        Ok(answer) => {
            shared.fleet_changed();
            json_response(StatusCode::OK, &answer)
        }
        Err(error) => error.response(),
    }
}

/// The staged certificates of a switch, under `certs/switch/`: (ward's file, the staged one)
/// for the ECDSA and RSA certificates and keys.
fn staged(data: &DataDir) -> [(PathBuf, PathBuf); 4] {
    let dir = data.root().join("certs/switch");
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
            located.value = staged.display().to_string();
        }
    }
    policy
}

/// `POST /api/v1/server/ca/switch`: the listeners' certificates re-issued from the new CA,
/// planned first: 409 `would_cut_off` with each agent that does not trust the new CA and would
/// lose its last path (nothing changes) unless `accept_cut_off`. Then the files move into
/// place, the listeners reload, and the settings carry only the new CA.
pub async fn switch(shared: &App, caller: &Caller, body: &bytes::Bytes) -> HttpResponse {
    let request = match super::status::GuardedRequest::read(body) {
        Ok(request) => request,
        Err(error) => return error.response(),
    };
    let _one_change_at_a_time = shared.fleet_lock.lock().await;
    let planning = Planning {
        ctx: Ctx::of(shared),
        config: shared.config.clone(),
        running: [Role::Console, Role::Clients].map(|role| shared.tls.current(role).policy.clone()),
        clients: Running::clients(shared),
        serving: Serving::of(shared),
        held: impact::held(shared),
    };
    let planned = blocking(move || plan_switch(planning, request.dry_run)).await;
    let (lost, plan) = match planned {
        Ok(planned) => planned,
        Err(error) => return error.response(),
    };
    if let Some(answer) = request.answer_before(
        "the switch to the new CA",
        "wait until they check in (`ward server rotate-ca status`), give them an HTTP entry",
        lost,
        &plan,
    ) {
        if !request.dry_run {
            let _ = std::fs::remove_dir_all(shared.data.root().join("certs/switch"));
        }
        return answer;
    }
    let data = shared.data.clone();
    if let Err(error) = blocking(move || move_into_place(&data)).await {
        return error.response();
    }
    // Only the certificates differ from what serves now (checked by the plan).
    match crate::state::reload_checked(shared, None).await {
        Reloaded::Swapped(..) => {}
        Reloaded::Kept(..) | Reloaded::Invalid(_) => {
            return ApiError::internal(
                "the new CA's certificates are in place but were not loaded: run `ward server \
                 reload`, whose answer says why",
            )
            .response()
        }
    }
    let accepted = impact::cut_off_ids(&plan);
    let ctx = Ctx::of(shared);
    let caller = caller.clone();
    let result = blocking(move || {
        ctx.tell(&read(&ctx.data.ca_cert())?)?;
        let current = fingerprint(&ctx.data.ca_cert())?;
        bump_everyone(
            &*ctx.store,
            entry(
                &caller,
                "server.ca.switch",
                "ca",
                json!({"current": current, "cut_off_accepted": accepted}),
            ),
        )?;
        status_json(&ctx)
    })
    .await;
    match result {
        Ok(status) => {
            shared.fleet_changed();
            json_response(
                StatusCode::OK,
                &json!({"switched": true, "plan": plan, "ca": status}),
            )
        }
        Err(error) => error.response(),
    }
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

fn plan_switch(planning: Planning, dry_run: bool) -> Result<(usize, Value), ApiError> {
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
        return Err(ApiError::conflict(
            "no_rotation",
            "no CA rotation is under way: `ward server rotate-ca start` makes the new CA and \
             hands it to the agents first",
        ));
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
    crate::datadir::issue_server_certificates(
        data,
        (&data.ca_next_cert(), &data.ca_next_key()),
        [(ecdsa_cert, ecdsa_key), (rsa_cert, rsa_key)],
    )
    .map_err(init_error)?;
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
        let _ = std::fs::remove_dir_all(data.root().join("certs/switch"));
    }
    guarded
}

/// The switch on disk: the old CA kept as `ca-previous.*`, the staged certificates renamed
/// over ward's, the next CA renamed to `ca.*`. Each step is a rename or an atomic write, so a
/// crash leaves whole files; ward's admin client trusts every CA of the data dir, so the
/// console stays reachable at every step, and running the switch again finishes it.
fn move_into_place(data: &DataDir) -> Result<(), ApiError> {
    let io =
        |path: &Path, e: std::io::Error| ApiError::internal(format!("{}: {e}", path.display()));
    write_file(&data.ca_previous_key(), &read(&data.ca_key())?, 0o600).map_err(init_error)?;
    write_file(&data.ca_previous_cert(), &read(&data.ca_cert())?, 0o644).map_err(init_error)?;
    for (ward, staged) in staged(data) {
        std::fs::rename(&staged, &ward).map_err(|e| io(&staged, e))?;
    }
    std::fs::rename(data.ca_next_key(), data.ca_key()).map_err(|e| io(&data.ca_next_key(), e))?;
    std::fs::rename(data.ca_next_cert(), data.ca_cert())
        .map_err(|e| io(&data.ca_next_cert(), e))?;
    let _ = std::fs::remove_dir(data.root().join("certs/switch"));
    Ok(())
}
