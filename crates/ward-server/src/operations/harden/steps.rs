//! The steps of `ward tls harden` that change the server: stage (HTTP server lists, legacy
//! groups, moves), apply (edit, configtest, reload) and rollback.

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;
use ward_api::tls::{
    AgentLine, Applied, ApplyRequest, ChangedFile, CleanedUp, CleanupRequest, RollbackRequest,
    RolledBack, StageRequest, Staged, StagedMove,
};

use super::*;

// ---- stage ---------------------------------------------------------------------------------

/// Before harden stages anything (and an apply's dry run): both listeners' files load as they
/// are (a reload now would succeed), and every file harden will edit takes the edit.
/// Otherwise 422 with every finding, and nothing changes: no agent moved only to wait for an
/// apply that cannot come. Answers the files the edit would change.
async fn preflight(shared: &App, proposal: &Proposal) -> Result<Vec<PathBuf>, ApiError> {
    let data = shared.data.clone();
    let config = shared.config.clone();
    let files: Vec<PathBuf> = proposal
        .roles
        .iter()
        .map(|role| shared.tls.current(*role).file.clone())
        .collect();
    // A whole conf file is not harden's to write (apply refuses it): no edit to try.
    let edits = proposal.edits().unwrap_or_default();
    blocking(move || {
        let (loaded, findings) = crate::listener_tls::load_all(&data, &config);
        if loaded.is_none() {
            let errors: Vec<String> = findings
                .iter()
                .filter(|f| f.severity == ward_tls::Severity::Error)
                .map(|f| f.text.clone())
                .collect();
            return Err(ApiError::client(
                hyper::StatusCode::UNPROCESSABLE_ENTITY,
                "config_invalid",
                format!(
                    "the conf files have errors, so harden would stop at apply; fix them first \
                     (nothing was changed): {}",
                    errors.join("; ")
                ),
            ));
        }
        let mut changing = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| internal(format!("{}: {e}", file.display())))?;
            let name = file.display().to_string();
            let edited =
                edit::apply_edits(&name, &text, &edits, "#:preflight#").map_err(|error| {
                    ApiError::client(
                        hyper::StatusCode::UNPROCESSABLE_ENTITY,
                        "edit_refused",
                        format!("{name}: {error} (nothing was changed)"),
                    )
                })?;
            if edited.is_some() {
                changing.push(file);
            }
        }
        Ok(changing)
    })
    .await
}

/// The clients-http ports an HTTP copy of a server list uses: this server's, and on a site
/// each entry's own server's (as the servers table records their listeners).
struct HttpPorts {
    site: Vec<serverlist::SiteServer>,
    own: u16,
}

impl HttpPorts {
    fn read(store: &dyn Store, own: u16) -> Result<HttpPorts, ApiError> {
        let site = store.servers()?.iter().filter_map(site_server).collect();
        Ok(HttpPorts { site, own })
    }

    fn of(&self, entry: &serverlist::ServerEntry) -> u16 {
        serverlist::site_http_port(entry, &self.site, self.own)
    }
}

/// A server of the site as an HTTP copy sees it (`None` when its record lacks a listener).
fn site_server(record: &ward_store::ServerRecord) -> Option<serverlist::SiteServer> {
    let address = |role: Role| {
        record
            .listeners
            .iter()
            .find(|l| l.role == role.name())
            .and_then(|l| l.address.parse::<std::net::SocketAddr>().ok())
    };
    let (clients, http) = (address(Role::Clients)?, address(Role::ClientsHttp)?);
    let mut hosts = Vec::new();
    if let Some((host, _)) = record.name.rsplit_once(':') {
        hosts.push(host.trim_matches(['[', ']']).to_string());
    }
    if !clients.ip().is_unspecified() {
        hosts.push(clients.ip().to_string());
    }
    Some(serverlist::SiteServer {
        hosts,
        clients_port: clients.port(),
        http_port: http.port(),
    })
}

/// Makes sure the HTTP variant of `list` exists: the same servers, each on its clients-http
/// port.
fn ensure_http_list(
    store: &dyn Store,
    caller: &Caller,
    lists: &mut Vec<ServerList>,
    list: &str,
    ports: &HttpPorts,
    report: &mut Vec<String>,
) -> Result<String, ApiError> {
    // A list that already reaches clients-http is its own HTTP variant: no copy of a copy.
    if has_http(lists, list) {
        return Ok(list.to_string());
    }
    let name = model::http_list_name(list);
    let source = lists
        .iter()
        .find(|l| l.name == list)
        .ok_or_else(|| ApiError::not_found(format!("no server list '{list}'")))?;
    let copy = serverlist::http_copy_with(source, &name, Protocol::Http, |e| ports.of(e))
        .map_err(|e| ApiError::bad_request(format!("{name}: {e}")))?;
    let urls: Vec<String> = copy
        .levels
        .iter()
        .flatten()
        .map(serverlist::ServerEntry::url)
        .collect();
    match lists.iter().find(|l| l.name == name) {
        Some(existing)
            if existing
                .levels
                .iter()
                .flatten()
                .any(|e| e.protocol == Protocol::Http) =>
        {
            return Ok(name)
        }
        Some(_) => {
            return Err(conflict(
                "conflict",
                format!("server list '{name}' exists but has no HTTP entry; rename or delete it"),
            ))
        }
        None => {}
    }
    store.apply(&Change {
        tree_version: None,
        mutation: Mutation::CreateServerList(copy.clone()),
        bump_groups: vec![],
        bump_agents: vec![],
        audit: audit(
            caller,
            "harden.stage.serverlist",
            name.clone(),
            None,
            Some(json!({"copy_of": list, "port": ports.own, "servers": urls})),
        ),
    })?;
    report.push(format!(
        "created server list '{name}' (HTTP copy of '{list}': {})",
        urls.join(", ")
    ));
    lists.push(copy);
    Ok(name)
}

fn has_http(lists: &[ServerList], name: &str) -> bool {
    lists.iter().find(|l| l.name == name).is_some_and(|l| {
        l.levels
            .iter()
            .flatten()
            .any(|e| e.protocol == Protocol::Http)
    })
}

/// Makes sure a group named `name` under `parent` exists and reaches the server over HTTP
/// through `http_list`; returns its id.
fn ensure_legacy_group(
    store: &dyn Store,
    caller: &Caller,
    parent: GroupId,
    name: &str,
    http_list: &str,
    lists: &[ServerList],
    report: &mut Vec<String>,
) -> Result<GroupId, ApiError> {
    let tree = tree_of(store)?;
    // A legacy group is its own legacy group: never one inside another.
    let parent_is_legacy = tree.get(parent).is_some_and(|g| g.name == name);
    let parent_path = tree.path(parent).unwrap_or_default();
    let existing = if parent_is_legacy {
        Some(parent)
    } else {
        tree.children(parent)
            .iter()
            .copied()
            .find(|id| tree.get(*id).is_some_and(|g| g.name == name))
    };
    if let Some(id) = existing {
        let effective = tree
            .effective(id)
            .ok_or_else(|| internal("group vanished"))?;
        if has_http(lists, &effective.server_list) {
            return Ok(id);
        }
        let mut group = tree
            .get(id)
            .cloned()
            .ok_or_else(|| internal("group vanished"))?;
        let before = group.own.server_list.clone();
        group.own.server_list = Some(http_list.to_string());
        let after = tree
            .with_group(group.clone())
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        store.apply(&Change {
            tree_version: None,
            mutation: Mutation::UpdateGroup(group),
            bump_groups: ward_fleet::serial::affected_groups(&tree, &after, &[]),
            bump_agents: vec![],
            audit: audit(
                caller,
                "harden.stage.group",
                tree.path(id).unwrap_or_default(),
                Some(json!({"server_list": before})),
                Some(json!({"server_list": http_list})),
            ),
        })?;
        report.push(format!(
            "set server list '{http_list}' on group '{}'",
            tree.path(id).unwrap_or_default()
        ));
        return Ok(id);
    }
    let group = Group {
        id: 0,
        parent: Some(parent),
        name: name.to_string(),
        own: OwnSettings {
            server_list: Some(http_list.to_string()),
            ..OwnSettings::default()
        },
    };
    let id = create_group(
        store,
        &tree,
        caller,
        group,
        "harden.stage.group",
        json!({"parent": parent_path, "server_list": http_list}),
    )?;
    report.push(format!(
        "created group '{parent_path}/{name}' with server list '{http_list}', inheriting \
         everything else"
    ));
    Ok(id)
}

/// The one group of `--legacy-group PATH`: found, or created under its parent (which must
/// exist), and reaching the server over HTTP.
fn ensure_group_at(
    store: &dyn Store,
    caller: &Caller,
    path: &str,
    lists: &mut Vec<ServerList>,
    ports: &HttpPorts,
    report: &mut Vec<String>,
) -> Result<GroupId, ApiError> {
    let tree = tree_of(store)?;
    // Where it goes is checked before anything is written.
    let (parent, name) = match tree.find(path) {
        Ok(Some(id)) if id == tree.root() => {
            return Err(ApiError::bad_request(
                "legacy_group: the root group cannot be the legacy group",
            ))
        }
        Ok(Some(id)) => {
            let group = tree.get(id).ok_or_else(|| internal("group vanished"))?;
            (group.parent.unwrap_or(tree.root()), group.name.clone())
        }
        _ => {
            let trimmed = path.trim_end_matches('/');
            let (parent, name) = match trimmed.rsplit_once('/') {
                Some((parent_path, name)) => {
                    (referenced_group(&tree, "legacy_group", parent_path)?, name)
                }
                // A bare name: a group under the root.
                None => (tree.root(), trimmed),
            };
            ward_fleet::name::check_name(name)
                .map_err(|e| ApiError::bad_request(format!("legacy_group: {e}")))?;
            (parent, name.to_string())
        }
    };
    let root_list = tree
        .effective(tree.root())
        .ok_or_else(|| internal("no root group"))?
        .server_list;
    let http_list = ensure_http_list(store, caller, lists, &root_list, ports, report)?;
    ensure_legacy_group(store, caller, parent, &name, &http_list, lists, report)
}

fn new_run(
    previous: Option<HardenState>,
    proposal: &Proposal,
    legacy: &Option<String>,
    name: &str,
) -> HardenState {
    let now = now_ms();
    let suites = proposal.suites();
    let certificate = proposal.certificate_pair();
    let same = previous.as_ref().is_some_and(|p| {
        p.step == Step::Staged
            && p.protocol == proposal.words
            && (p.cipher_suite.clone(), p.cipher_suite_tls13.clone()) == suites
            && p.certificate == certificate
            && p.listener == proposal.listener
            && &p.legacy_group == legacy
            && p.legacy_name == name
    });
    match previous {
        Some(state) if same => state,
        previous => HardenState {
            protocol: proposal.words.clone(),
            cipher_suite: suites.0,
            cipher_suite_tls13: suites.1,
            certificate,
            listener: proposal.listener.clone(),
            legacy_group: legacy.clone(),
            legacy_name: name.to_string(),
            step: Step::Staged,
            started_ms: now,
            updated_ms: now,
            applied_ms: None,
            // Agents moved by earlier runs stay on record until a rollback moves them back,
            // and the files until a harden changes them again.
            moved: previous
                .as_ref()
                .map(|p| p.moved.clone())
                .unwrap_or_default(),
            originals: previous
                .as_ref()
                .map(|p| p.originals.clone())
                .unwrap_or_default(),
            applying: previous.map(|p| p.applying).unwrap_or_default(),
        },
    }
}

/// `POST /tls/harden/stage`: for every agent the change would cut off (or that is offline),
/// an HTTP server list and a legacy group, and the agent moved into it.
pub async fn stage(
    shared: &App,
    caller: &Caller,
    request: StageRequest,
) -> Result<Staged, ApiError> {
    // Staging moves whoever the exact plan of any TLS change names.
    let proposal = Proposal::from_request(request.change())?;
    let intervals = offline_intervals(request.offline_intervals)?;
    let legacy_group = request.legacy_group;
    if let Some(path) = &legacy_group {
        ward_fleet::name::split_path(path)
            .map_err(|e| ApiError::bad_request(format!("legacy_group: '{path}': {e}")))?;
    }
    let legacy_name = request.legacy_name.unwrap_or_else(|| LEGACY_NAME.into());
    ward_fleet::name::check_name(&legacy_name)
        .map_err(|e| ApiError::bad_request(format!("legacy_name: {e}")))?;
    preflight(shared, &proposal).await?;
    let planned = proposal.planned(shared)?;
    let running = crate::impact::Running::clients(shared);
    let port = shared.config.address(Role::ClientsHttp).port();
    let root = shared.data.root().to_path_buf();
    let held = held(shared);
    let store = shared.store.clone();
    let caller = caller.clone();
    let _guard = shared.fleet_lock.lock().await;
    let staged = blocking(move || {
        let store: &dyn Store = &*store;
        let now = now_ms();
        let crate::impact::Impact {
            fleet, assessment, ..
        } = crate::impact::exact(store, &root, &running, &planned, intervals, held, now)?;
        let mut state = new_run(read_state(&root)?, &proposal, &legacy_group, &legacy_name);
        // Everyone who would lose contact moves, offline ones too: they find the HTTP list
        // if they come back before the change. An agent whose group already reaches
        // clients-http (moved by an earlier run, say) only has to acknowledge: moving it
        // again cannot help.
        let mut targets: HashMap<GroupId, Vec<String>> = HashMap::new();
        for (index, verdict) in &assessment.flagged {
            if matches!(verdict, Verdict::CutOff | Verdict::AtRisk(Risk::Offline)) {
                let agent = &fleet.agents[*index];
                let group = fleet.group_facts(agent.group);
                let reaches_http = group.list.is_some_and(|l| has_http(&fleet.lists, &l.name));
                if !reaches_http {
                    targets
                        .entry(agent.group)
                        .or_default()
                        .push(agent.id.clone());
                }
            }
        }
        let mut lists = fleet.lists.clone();
        let mut report = Vec::new();
        let mut moved = Vec::new();
        let ports = HttpPorts::read(store, port)?;
        let mut sources: Vec<GroupId> = targets.keys().copied().collect();
        sources.sort_unstable();
        let single = match (&legacy_group, sources.is_empty()) {
            (Some(path), false) => Some(ensure_group_at(
                store,
                &caller,
                path,
                &mut lists,
                &ports,
                &mut report,
            )?),
            _ => None,
        };
        for source in sources {
            let agents = &targets[&source];
            let destination = match single {
                Some(id) => id,
                None => {
                    let list = fleet
                        .tree
                        .effective(source)
                        .ok_or_else(|| internal("group vanished"))?
                        .server_list;
                    let http =
                        ensure_http_list(store, &caller, &mut lists, &list, &ports, &mut report)?;
                    ensure_legacy_group(
                        store,
                        &caller,
                        source,
                        &legacy_name,
                        &http,
                        &lists,
                        &mut report,
                    )?
                }
            };
            let tree = tree_of(store)?;
            let applied = store.apply(&Change {
                tree_version: None,
                mutation: Mutation::MoveAgents {
                    agents: agents.clone(),
                    group: destination,
                },
                bump_groups: vec![],
                bump_agents: agents.clone(),
                audit: audit(
                    &caller,
                    "harden.stage.move",
                    agents.join(","),
                    Some(json!({"group": tree.path(source)})),
                    Some(json!({"group": tree.path(destination), "protocol": proposal.words})),
                ),
            })?;
            report.push(format!(
                "moved {} agent(s) from '{}' to '{}' (serial {})",
                agents.len(),
                tree.path(source).unwrap_or_default(),
                tree.path(destination).unwrap_or_default(),
                applied.serial.unwrap_or_default()
            ));
            for agent in agents {
                moved.push(StagedMove {
                    agent: agent.clone(),
                    from: tree.path(source),
                    to: tree.path(destination),
                });
                state.moved.push(Moved {
                    agent: agent.clone(),
                    from: source,
                    to: destination,
                });
            }
        }
        state.updated_ms = now_ms();
        write_state(&root, &state)?;
        Ok(Staged {
            steps: report,
            moved,
            state,
        })
    })
    .await?;
    // A new fleet version for the settings cache (the store woke the moved push agents).
    shared.fleet_changed();
    Ok(staged)
}

// ---- apply and rollback ------------------------------------------------------------------

/// Drops the copies of an apply that did not happen (unless an interrupted apply's, which may
/// still be the only way back).
fn forget_copies(root: &Path, state: &mut HardenState, interrupted: bool) -> Result<(), ApiError> {
    if interrupted {
        return Ok(());
    }
    for copy in state.applying.drain(..) {
        let _ = std::fs::remove_file(&copy.saved);
    }
    write_state(root, state)
}

fn saved_copy(root: &Path, file: &Path, stamp: i64) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "conf".into());
    root.join("harden").join(format!("{name}.{stamp}.orig"))
}

/// The agents the proposed range would take the last path from, re-planned under the fleet
/// lock: (id, why) of those that would be cut off or only have unacknowledged settings, and
/// of those at a risk the admin may accept (capability unknown, offline).
async fn would_lose(
    shared: &App,
    proposal: &Proposal,
    intervals: u32,
) -> Result<(Vec<(String, &'static str)>, Vec<(String, &'static str)>), ApiError> {
    let planned = proposal.planned(shared)?;
    let running = crate::impact::Running::clients(shared);
    let root = shared.data.root().to_path_buf();
    let held = held(shared);
    let store = shared.store.clone();
    blocking(move || {
        let crate::impact::Impact {
            fleet, assessment, ..
        } = crate::impact::exact(
            &*store,
            &root,
            &running,
            &planned,
            intervals,
            held,
            now_ms(),
        )?;
        let (mut cut, mut risky) = (Vec::new(), Vec::new());
        for (index, verdict) in &assessment.flagged {
            let id = fleet.agents[*index].id.clone();
            match verdict {
                Verdict::CutOff => cut.push((id, "cut_off")),
                Verdict::AtRisk(Risk::Pending) => cut.push((id, Risk::Pending.name())),
                Verdict::AtRisk(risk) => risky.push((id, risk.name())),
                Verdict::Unaffected { .. } => {}
            }
        }
        Ok((cut, risky))
    })
    .await
}

/// The refusal of an apply that would cut agents off: 409, with who and why.
fn refuse_cut_off(refused: &[(String, &'static str)], cut: usize) -> ApiError {
    let listed: Vec<AgentLine> = refused
        .iter()
        .take(100)
        .map(|(id, why)| AgentLine {
            id: id.clone(),
            reason: Some(why.to_string()),
            ..AgentLine::default()
        })
        .collect();
    let message = format!(
        "{} agent(s) would lose their last path to a server: {}; nothing was changed. Stage \
         them first (ward tls harden moves them to an HTTP server list and waits for them), or \
         send {} to accept it",
        refused.len(),
        refused
            .iter()
            .take(5)
            .map(|(id, why)| format!("{id} ({why})"))
            .collect::<Vec<_>>()
            .join(", "),
        if cut > 0 {
            "\"accept_cut_off\": true"
        } else {
            "\"accept_risk\": true"
        }
    );
    ApiError::conflict("would_cut_off", message).with(crate::api::Detail {
        count: Some(refused.len()),
        agents: Some(listed),
        ..crate::api::Detail::default()
    })
}

/// `POST /tls/harden/apply`: the conf files edited and reloaded, re-planned under the fleet
/// lock first: 409 `would_cut_off` (nothing changed) while agents would lose their last path,
/// unless accepted.
pub async fn apply(
    shared: &App,
    caller: &Caller,
    request: ApplyRequest,
) -> Result<Applied, ApiError> {
    let proposal = Proposal::from_request(request.change())?;
    let edits = proposal.edits()?;
    let accept_cut_off = request.accept_cut_off.unwrap_or(false);
    let accept_risk = request.accept_risk.unwrap_or(false);
    let intervals = offline_intervals(request.offline_intervals)?;
    let dry_run = request.dry_run.unwrap_or(false);
    let would_edit = if dry_run {
        preflight(shared, &proposal).await?
    } else {
        Vec::new()
    };
    let _guard = shared.fleet_lock.lock().await;
    // The server keeps its own promise, whoever calls: nobody loses their last path unless
    // the caller says so explicitly (and that is audited).
    let (cut, risky) = would_lose(shared, &proposal, intervals).await?;
    let mut refused = Vec::new();
    if !accept_cut_off {
        refused.extend(cut.iter().cloned());
    }
    if !accept_risk {
        refused.extend(risky.iter().cloned());
    }
    if !refused.is_empty() {
        let cut_count = if accept_cut_off { 0 } else { cut.len() };
        return Err(refuse_cut_off(&refused, cut_count));
    }
    let root = shared.data.root().to_path_buf();
    if dry_run {
        // Every check an apply makes passed; nothing was changed.
        let ranges = proposal
            .planned(shared)?
            .iter()
            .map(|(role, policy)| (role.name().to_string(), policy.protocol.range.to_string()))
            .collect();
        return Ok(Applied {
            dry_run: Some(true),
            changed: would_edit
                .iter()
                .map(|file| ChangedFile {
                    file: file.display().to_string(),
                    backup: String::new(),
                })
                .collect(),
            ranges,
            findings: Vec::new(),
            state: read_state(&root)?.unwrap_or_default(),
        });
    }
    let accepted: Vec<Value> = cut
        .iter()
        .chain(risky.iter())
        .take(1000)
        .map(|(id, why)| json!({"id": id, "reason": why}))
        .collect();
    let files: Vec<(Role, PathBuf)> = proposal
        .roles
        .iter()
        .map(|role| (*role, shared.tls.current(*role).file.clone()))
        .collect();
    let before: BTreeMap<String, String> = files
        .iter()
        .map(|(role, _)| {
            let range = shared.tls.current(*role).policy.protocol.range;
            (role.name().to_string(), range.to_string())
        })
        .collect();
    // Copies of every file first, on record before the first edit; then the edits. A failure
    // part-way puts them all back.
    let mut state =
        read_state(&root)?.unwrap_or_else(|| new_run(None, &proposal, &None, LEGACY_NAME));
    // An apply that stopped part-way already took the copies (the files may be edited now).
    let interrupted = !state.applying.is_empty();
    if interrupted {
        // Its copies are the way back for exactly its files: another apply must not put back
        // (or record as the originals) copies of other files.
        let mut copied: Vec<&Path> = state.applying.iter().map(|c| c.file.as_path()).collect();
        let mut wanted: Vec<&Path> = files.iter().map(|(_, f)| f.as_path()).collect();
        copied.sort();
        wanted.sort();
        if copied != wanted {
            return Err(conflict(
                "apply_interrupted",
                format!(
                    "an apply of {} stopped part-way and its copies are on record: finish it \
                     with `ward tls harden --resume`, or undo it with `ward tls rollback`, \
                     before applying to {}",
                    copied
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(" and "),
                    wanted
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            ));
        }
    }
    if !interrupted {
        let stamp = now_ms();
        let copy_root = root.clone();
        let paths: Vec<PathBuf> = files.iter().map(|(_, file)| file.clone()).collect();
        state.applying = blocking(move || {
            let mut copies = Vec::new();
            for file in paths {
                let saved = saved_copy(&copy_root, &file, stamp);
                std::fs::create_dir_all(saved.parent().expect("harden dir"))
                    .map_err(|e| internal(format!("{}: {e}", saved.display())))?;
                let bytes = std::fs::read(&file)
                    .map_err(|e| internal(format!("{}: {e}", file.display())))?;
                ward_fs::write(&saved, &bytes, 0o600)
                    .map_err(|e| internal(format!("{}: {e}", saved.display())))?;
                copies.push(Original { file, saved });
            }
            Ok(copies)
        })
        .await?;
        write_state(&root, &state)?;
    }
    let copies = state.applying.clone();
    let put_back = |copies: &[Original]| {
        for copy in copies {
            let _ = edit::restore_backup(&copy.file, &copy.saved);
        }
    };
    let edited = blocking(move || {
        let mut changed = Vec::new();
        for (_, file) in &files {
            match edit::edit_file_settings(file, &edits, "ward_harden", SystemTime::now()) {
                Ok(EditOutcome::Unchanged) => {}
                Ok(EditOutcome::Changed { backup }) => changed.push((file.clone(), backup)),
                Err(error) => {
                    return Err(ApiError {
                        detail: None,
                        status: hyper::StatusCode::UNPROCESSABLE_ENTITY,
                        source: crate::api::Source::Config,
                        code: "edit_refused",
                        message: error.to_string(),
                    })
                }
            }
        }
        Ok(changed)
    })
    .await;
    let changed = match edited {
        Ok(changed) => changed,
        Err(error) => {
            if !interrupted {
                put_back(&copies);
            }
            forget_copies(&root, &mut state, interrupted)?;
            return Err(error);
        }
    };
    let findings = match crate::state::reload(shared).await {
        Ok(findings) => findings,
        Err(findings) => {
            // Put the files back as they were, and the old settings keep serving.
            put_back(&copies);
            let _ = crate::state::reload(shared).await;
            forget_copies(&root, &mut state, false)?;
            return Err(ApiError {
                status: hyper::StatusCode::UNPROCESSABLE_ENTITY,
                source: crate::api::Source::Config,
                detail: None,
                code: "reload_refused",
                message: format!(
                    "the edited files were refused, so they were put back: {}",
                    findings
                        .iter()
                        .filter(|f| f.severity == ward_tls::Severity::Error)
                        .map(|f| f.text.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            });
        }
    };
    let after: BTreeMap<String, String> = proposal
        .roles
        .iter()
        .map(|role| {
            let range = shared.tls.current(*role).policy.protocol.range;
            (role.name().to_string(), range.to_string())
        })
        .collect();
    if changed.is_empty() && !interrupted {
        // Nothing changed: the copies are not needed, and a rollback still goes back to
        // before the harden that did change the files.
        for copy in &copies {
            let _ = std::fs::remove_file(&copy.saved);
        }
    } else {
        for old in &state.originals {
            let _ = std::fs::remove_file(&old.saved);
        }
        state.originals = copies;
    }
    state.applying.clear();
    state.protocol = proposal.words.clone();
    (state.cipher_suite, state.cipher_suite_tls13) = proposal.suites();
    state.certificate = proposal.certificate_pair();
    state.listener = proposal.listener.clone();
    state.step = Step::Applied;
    state.applied_ms = Some(now_ms());
    state.updated_ms = now_ms();
    write_state(&root, &state)?;
    let store = shared.store.clone();
    let entry = audit(
        caller,
        "tls.harden.apply",
        proposal.listener.clone(),
        Some(json!(before)),
        Some(json!({
            "protocol": proposal.words,
            "change": proposal.change.summary(),
            "ranges": after.clone(),
            "changed": changed.iter().map(|(f, _)| f.display().to_string()).collect::<Vec<_>>(),
            "accept_cut_off": accept_cut_off,
            "accept_risk": accept_risk,
            "accepted_agents": accepted,
        })),
    );
    blocking(move || {
        store.apply(&Change {
            tree_version: None,
            mutation: Mutation::Nothing,
            bump_groups: vec![],
            bump_agents: vec![],
            audit: entry,
        })?;
        Ok(())
    })
    .await?;
    Ok(Applied {
        dry_run: None,
        changed: changed
            .iter()
            .map(|(file, backup)| ChangedFile {
                file: file.display().to_string(),
                backup: backup.display().to_string(),
            })
            .collect(),
        ranges: after,
        findings: crate::operations::server::findings(&findings),
        state,
    })
}

/// `POST /tls/rollback`: both conf files as before the last harden that changed them,
/// reloaded, planned first: 409 `would_cut_off` (nothing changed) unless accepted.
pub async fn rollback(
    shared: &App,
    caller: &Caller,
    request: RollbackRequest,
) -> Result<RolledBack, ApiError> {
    let RollbackRequest {
        move_back,
        dry_run,
        accept_cut_off,
    } = request;
    let _guard = shared.fleet_lock.lock().await;
    let root = shared.data.root().to_path_buf();
    let mut state = read_state(&root)?
        .map(|mut s| {
            // An apply that stopped part-way: its copies are the way back.
            if !s.applying.is_empty() {
                s.originals = std::mem::take(&mut s.applying);
            }
            s
        })
        .filter(|s| !s.originals.is_empty())
        .ok_or_else(|| {
            conflict(
                "nothing_to_roll_back",
                "no harden has changed the conf files: nothing to roll back",
            )
        })?;
    // The plan of the rollback before anything changes: the restored files (and the moves
    // back), replayed against every agent that has a path now.
    let planned: Vec<(Role, ward_tls::TlsPolicy)> = {
        let mut planned = Vec::new();
        for original in &state.originals {
            let role = [Role::Console, Role::Clients]
                .into_iter()
                .find(|role| shared.tls.current(*role).file == original.file)
                .ok_or_else(|| {
                    internal(format!(
                        "{} is no longer a listener's conf file",
                        original.file.display()
                    ))
                })?;
            let text = std::fs::read_to_string(&original.saved)
                .map_err(|e| internal(format!("{}: {e}", original.saved.display())))?;
            let restored =
                ward_tls::conf::listener_conf(&original.file.display().to_string(), &text);
            let broken = restored.has_errors();
            let policy = restored.policy.filter(|_| !broken).ok_or_else(|| {
                ApiError::client(
                    hyper::StatusCode::UNPROCESSABLE_ENTITY,
                    "rollback_invalid",
                    format!(
                        "the saved copy of {} has errors, so it is not restored",
                        original.file.display()
                    ),
                )
            })?;
            planned.push((role, policy));
        }
        planned
    };
    let running = crate::impact::Running::clients(shared);
    let serving = crate::impact::Serving::of(shared);
    let held = held(shared);
    let store = shared.store.clone();
    let plan_root = root.clone();
    let to_move = if move_back {
        state.moved.clone()
    } else {
        Vec::new()
    };
    let (lost, plan) = blocking(move || {
        // The agents a move-back would move: those still where harden put them.
        let mut moves = HashMap::new();
        for m in &to_move {
            if store.agent(&m.agent)?.map(|a| a.group) == Some(m.to) {
                moves.insert(m.agent.clone(), m.from);
            }
        }
        crate::impact::guard(
            &*store,
            &plan_root,
            &running,
            serving,
            &planned,
            &moves,
            held,
            now_ms(),
        )
    })
    .await?;
    if dry_run {
        return Ok(RolledBack {
            dry_run: Some(true),
            moves_back: Some(if move_back { state.moved.len() } else { 0 }),
            restores: Some(state.originals.clone()),
            plan: Some(plan),
            steps: None,
            state: None,
        });
    }
    if lost > 0 && !accept_cut_off {
        let message = format!(
            "rollback refused, nothing changed: {}; roll back with accept_cut_off to go on",
            plan.message
        );
        return Err(ApiError::would_cut_off(message, plan));
    }
    let accepted = plan.cut_off_ids();
    let originals = state.originals.clone();
    blocking(move || {
        for original in &originals {
            edit::restore_backup(&original.file, &original.saved).map_err(|e| {
                internal(format!(
                    "{} from {}: {e}",
                    original.file.display(),
                    original.saved.display()
                ))
            })?;
        }
        Ok(())
    })
    .await?;
    let reloaded = crate::state::reload(shared).await;
    let mut steps = vec![format!(
        "restored {}",
        state
            .originals
            .iter()
            .map(|o| o.file.display().to_string())
            .collect::<Vec<_>>()
            .join(" and ")
    )];
    if let Err(findings) = &reloaded {
        return Err(ApiError {
            detail: None,
            status: hyper::StatusCode::UNPROCESSABLE_ENTITY,
            source: crate::api::Source::Config,
            code: "reload_refused",
            message: format!(
                "the files were restored but the reload was refused (the old settings keep \
                 serving): {}",
                findings
                    .iter()
                    .map(|f| f.text.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        });
    }
    steps.push("reloaded".into());
    let store = shared.store.clone();
    let caller = caller.clone();
    let moved = std::mem::take(&mut state.moved);
    let (steps, kept) = blocking(move || {
        let mut steps = steps;
        let mut kept = Vec::new();
        if move_back {
            let tree = tree_of(&*store)?;
            let mut back: HashMap<GroupId, Vec<String>> = HashMap::new();
            let mut elsewhere = 0usize;
            for m in &moved {
                // Only agents still where harden put them: one the admin moved since (or
                // retired) stays where it is.
                let here = store.agent(&m.agent)?.map(|a| a.group);
                if here != Some(m.to) {
                    elsewhere += 1;
                } else if tree.get(m.from).is_some() {
                    back.entry(m.from).or_default().push(m.agent.clone());
                } else {
                    kept.push(m.clone());
                }
            }
            if elsewhere > 0 {
                steps.push(format!(
                    "left {elsewhere} agent(s) where they are: no longer in the group harden \
                     moved them to"
                ));
            }
            let mut back: Vec<(GroupId, Vec<String>)> = back.into_iter().collect();
            back.sort_by_key(|(group, _)| *group);
            let total: usize = back.iter().map(|(_, agents)| agents.len()).sum();
            steps.push(format!(
                "moving {total} agent(s) back to the groups they came from"
            ));
            for (group, agents) in back {
                store.apply(&Change {
                    tree_version: None,
                    mutation: Mutation::MoveAgents {
                        agents: agents.clone(),
                        group,
                    },
                    bump_groups: vec![],
                    bump_agents: agents.clone(),
                    audit: audit(
                        &caller,
                        "tls.rollback.move",
                        agents.join(","),
                        None,
                        Some(json!({"group": tree.path(group)})),
                    ),
                })?;
                steps.push(format!(
                    "moved {} agent(s) back to '{}'",
                    agents.len(),
                    tree.path(group).unwrap_or_default()
                ));
            }
        } else {
            kept = moved;
        }
        store.apply(&Change {
            tree_version: None,
            mutation: Mutation::Nothing,
            bump_groups: vec![],
            bump_agents: vec![],
            audit: audit(
                &caller,
                "tls.rollback",
                "conf".into(),
                None,
                Some(json!({"move_back": move_back, "cut_off_accepted": accepted})),
            ),
        })?;
        Ok((steps, kept))
    })
    .await?;
    state.moved = kept;
    state.step = Step::RolledBack;
    state.updated_ms = now_ms();
    write_state(&root, &state)?;
    shared.fleet_version.send_modify(|v| *v += 1);
    Ok(RolledBack {
        dry_run: None,
        plan: None,
        restores: None,
        moves_back: None,
        steps: Some(steps),
        state: Some(state),
    })
}

// ---- cleanup -------------------------------------------------------------------------------

/// `POST /tls/harden/cleanup`: removes what harden made and no longer serves anyone:
/// legacy groups it created that hold no agent and no group, HTTP server list copies it
/// created that no group uses, conf file backups beyond the newest `keep_backups` (3 unless
/// told), and saved copies in the harden dir that no rollback refers to. `dry_run` lists them.
pub async fn cleanup(
    shared: &App,
    caller: &Caller,
    request: CleanupRequest,
) -> Result<CleanedUp, ApiError> {
    let dry_run = request.dry_run;
    let keep = match request.keep_backups {
        None => 3,
        Some(n) if n <= 1000 => n as usize,
        Some(_) => {
            return Err(ApiError::bad_request(
                "keep_backups: a number from 0 to 1000",
            ))
        }
    };
    let _guard = shared.fleet_lock.lock().await;
    let root = shared.data.root().to_path_buf();
    let conf_files: Vec<PathBuf> = [Role::Console, Role::Clients]
        .into_iter()
        .map(|role| shared.tls.current(role).file.clone())
        .collect();
    let store = shared.store.clone();
    let caller = caller.clone();
    let steps = blocking(move || {
        let store: &dyn Store = &*store;
        let mut steps = Vec::new();
        let made: Vec<ward_store::AuditEntry> = store.audit(0, 10_000_000)?;
        let made_lists: HashSet<&str> = made
            .iter()
            .filter(|e| e.action == "harden.stage.serverlist")
            .map(|e| e.target.as_str())
            .collect();
        let made_groups: HashSet<&str> = made
            .iter()
            .filter(|e| e.action == "harden.stage.group")
            .map(|e| e.target.as_str())
            .collect();
        let tree = tree_of(store)?;
        let agents = store.agents_tls()?;
        let populated: HashSet<GroupId> = agents.iter().map(|a| a.group).collect();
        // Deepest first, so a legacy group inside another empty one goes first.
        let mut empty: Vec<(String, GroupId)> = tree
            .groups()
            .filter_map(|g| tree.path(g.id).map(|path| (path, g.id)))
            .filter(|(path, id)| {
                made_groups.contains(path.as_str())
                    && !populated.contains(id)
                    && tree.children(*id).is_empty()
            })
            .collect();
        empty.sort_by_key(|(path, _)| std::cmp::Reverse(path.matches('/').count()));
        let mut removed_groups = HashSet::new();
        for (path, id) in &empty {
            if !dry_run {
                store.apply(&Change {
                    tree_version: None,
                    mutation: Mutation::DeleteGroup(*id),
                    bump_groups: vec![],
                    bump_agents: vec![],
                    audit: audit(&caller, "harden.cleanup.group", path.clone(), None, None),
                })?;
            }
            removed_groups.insert(*id);
            steps.push(format!("removed empty legacy group '{path}'"));
        }
        let used: HashSet<String> = tree
            .groups()
            .filter(|g| !removed_groups.contains(&g.id))
            .filter_map(|g| g.own.server_list.clone())
            .collect();
        for list in store.server_lists()? {
            if made_lists.contains(list.name.as_str()) && !used.contains(&list.name) {
                if !dry_run {
                    store.apply(&Change {
                        tree_version: None,
                        mutation: Mutation::DeleteServerList(list.name.clone()),
                        bump_groups: vec![],
                        bump_agents: vec![],
                        audit: audit(
                            &caller,
                            "harden.cleanup.serverlist",
                            list.name.clone(),
                            None,
                            None,
                        ),
                    })?;
                }
                steps.push(format!("removed unused server list '{}'", list.name));
            }
        }
        // Backups beside each conf file (`<file>.<UTC stamp>.bak`, oldest first by name).
        for file in &conf_files {
            let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else {
                continue;
            };
            let prefix = format!("{}.", name.to_string_lossy());
            let mut backups: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| internal(format!("{}: {e}", dir.display())))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|path| {
                    path.file_name().is_some_and(|n| {
                        let n = n.to_string_lossy();
                        n.starts_with(&prefix) && n.ends_with(".bak")
                    })
                })
                .collect();
            backups.sort();
            let old = backups.len().saturating_sub(keep);
            for backup in &backups[..old] {
                if !dry_run {
                    std::fs::remove_file(backup)
                        .map_err(|e| internal(format!("{}: {e}", backup.display())))?;
                }
                steps.push(format!("removed old backup {}", backup.display()));
            }
        }
        // Saved copies no rollback refers to.
        let state = read_state(&root)?;
        let referenced: HashSet<PathBuf> = state
            .iter()
            .flat_map(|s| s.originals.iter().chain(s.applying.iter()))
            .map(|o| o.saved.clone())
            .collect();
        let harden_dir = root.join("harden");
        if let Ok(entries) = std::fs::read_dir(&harden_dir) {
            for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
                let is_copy = path.extension().is_some_and(|e| e == "orig");
                if is_copy && !referenced.contains(&path) {
                    if !dry_run {
                        std::fs::remove_file(&path)
                            .map_err(|e| internal(format!("{}: {e}", path.display())))?;
                    }
                    steps.push(format!("removed unused saved copy {}", path.display()));
                }
            }
        }
        Ok(steps)
    })
    .await?;
    if !dry_run && !steps.is_empty() {
        shared.fleet_changed();
    }
    Ok(CleanedUp { dry_run, steps })
}
