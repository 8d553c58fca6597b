//! Changes of the data dir's files that the store must follow: a rotation's start, switch or
//! abort changes files (a CA, a key, the CAs agents are told to trust) and then gives every
//! agent a new serial and writes the audit entry. Both halves happen, even across a crash:
//! the files go in as one [`ward_fs::Commit`] whose journal carries the [`FollowUp`], and a
//! server that starts with a journal left behind finishes the files, then the follow-up
//! ([`recover_files`] before the store opens, [`finish_follow_up`] after).
//!
//! A crash after the follow-up was applied but before the journal went applies it twice at
//! the next start: one more serial bump (harmless: the agents fetch the same settings) and a
//! second audit entry marked `"recovered": true`. Nothing acknowledged is lost.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use ward_store::{AuditEntry, Change, Mutation, Store};

use crate::api::ApiError;
use crate::auth::Caller;
use crate::datadir::DataDir;

/// What the store must record once a commit's files are in place.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FollowUp {
    pub actor: String,
    pub action: String,
    pub target: String,
    pub after: Value,
    /// Every agent gets a new serial (their settings carry other CAs or another key).
    pub bump_everyone: bool,
}

impl FollowUp {
    pub fn new(caller: &Caller, action: &str, target: &str, after: Value) -> FollowUp {
        FollowUp {
            actor: caller.name.clone(),
            action: action.into(),
            target: target.into(),
            after,
            bump_everyone: false,
        }
    }

    pub fn bumping_everyone(mut self) -> FollowUp {
        self.bump_everyone = true;
        self
    }

    /// Records it: the audit entry and the bumps in one transaction; how many agents got a
    /// new serial.
    pub fn apply(&self, store: &dyn Store) -> Result<u64, ApiError> {
        let bump_groups = if self.bump_everyone {
            store.groups()?.iter().map(|g| g.id).collect()
        } else {
            vec![]
        };
        let applied = store.apply(&Change {
            tree_version: None,
            mutation: Mutation::Nothing,
            bump_groups,
            bump_agents: vec![],
            audit: AuditEntry {
                id: 0,
                at_ms: ward_proto::now_ms(),
                actor: self.actor.clone(),
                action: self.action.clone(),
                target: self.target.clone(),
                before: None,
                after: Some(self.after.clone()),
            },
        })?;
        Ok(applied.bumped_agents)
    }
}

/// A commit whose files are in place and whose follow-up is still to be applied (its journal
/// stays until then, so a crash in between is finished by the next start).
#[must_use = "the follow-up is applied by follow_up()"]
pub struct Committed {
    follow_up: FollowUp,
    pending: ward_fs::Pending,
    data: DataDir,
}

/// Puts `files` in place as one step, keeping `follow_up` in the journal; the caller updates
/// what it holds in memory, then calls [`Committed::follow_up`].
pub fn put_files(
    data: &DataDir,
    files: ward_fs::Commit,
    follow_up: FollowUp,
) -> Result<Committed, ApiError> {
    let then = serde_json::to_value(&follow_up).map_err(|e| ApiError::internal(e.to_string()))?;
    let pending = files
        .then(then)
        .run(&data.journal())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    ward_fs::fault::point("commit:files-in-place");
    Ok(Committed {
        follow_up,
        pending,
        data: data.clone(),
    })
}

impl Committed {
    /// On a site, publishes the files first (see [`crate::site`]): before any agent gets a
    /// serial whose settings carry them, every server can learn them. Then applies the
    /// follow-up (audit, bumps) and lets the journal go; how many agents got a new serial.
    /// A publication the site refused (another server changed its files meanwhile) is said
    /// after the follow-up is recorded: this server then takes the site's files.
    pub fn follow_up(self, store: &dyn Store) -> Result<u64, ApiError> {
        let published = crate::site::publish_change(&self.data, store);
        let bumped = self.follow_up.apply(store)?;
        ward_fs::fault::point("commit:followed-up");
        let journal = self.data.journal();
        self.pending
            .done()
            .map_err(|e| ApiError::internal(format!("{}: {e}", journal.display())))?;
        match published {
            Ok(()) => Ok(bumped),
            Err(ward_store::StoreError::Stale(why)) => Err(ApiError::conflict(
                "site_changed",
                format!(
                    "{why}: this server takes the site's files in a moment and this change \
                     does not hold for the site; run the command again"
                ),
            )),
            Err(error) => Err(ApiError::from(error)),
        }
    }
}

/// At start, before anything reads the data dir: finishes a commit a crash interrupted (its
/// files), then removes what crashes left behind (temporary and staged files). Returns the
/// follow-up still to apply, with its journal, for [`finish_follow_up`] once the store is open.
pub fn recover_files(data: &DataDir) -> Result<Option<(FollowUp, ward_fs::Pending)>, String> {
    let journal = data.journal();
    let recovered = ward_fs::recover(&journal).map_err(|e| e.to_string())?;
    let mut follow_up = None;
    if let Some(recovered) = recovered {
        tracing::warn!(
            change = recovered.label,
            "finished a change of the data dir that a crash interrupted"
        );
        match recovered.then {
            None => {}
            Some(then) => {
                let mut then: FollowUp = serde_json::from_value(then).map_err(|e| {
                    format!("{}: the follow-up cannot be read: {e}", journal.display())
                })?;
                if let Value::Object(after) = &mut then.after {
                    after.insert("recovered".into(), Value::Bool(true));
                }
                follow_up = Some((then, recovered.pending));
            }
        }
    }
    let mut removed = ward_fs::clean_leftovers(&data.state_dirs()).map_err(|e| e.to_string())?;
    // A CA switch's certificates, staged for its plan: the switch either finished (the journal
    // above) or never began.
    let switch = data.ca_switch_dir();
    if switch.exists() {
        std::fs::remove_dir_all(&switch).map_err(|e| format!("{}: {e}", switch.display()))?;
        removed.push(switch);
    }
    for path in removed {
        tracing::info!(file = %path.display(), "removed a file a crash left half-made");
    }
    Ok(follow_up)
}

/// Applies the follow-up [`recover_files`] returned, then lets its journal go.
pub fn finish_follow_up(
    store: &dyn Store,
    (follow_up, pending): (FollowUp, ward_fs::Pending),
) -> Result<(), String> {
    follow_up.apply(store).map_err(|e| e.message)?;
    tracing::warn!(
        action = follow_up.action,
        "recorded the audit entry and serial bumps of the interrupted change"
    );
    pending.done().map_err(|e| e.to_string())
}
