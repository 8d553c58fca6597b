//! A site: several ward servers on one shared database (see [`ward_store::Store::is_shared`])
//! share the files an agent's trust in its servers rests on: the site's CA, the agents'
//! agreement keys, the session ticket keys and the CAs agents are told to trust
//! ([`SITE_FILES`]). Then an agent enrolled through one server checks in to any other (its
//! server list's failover), and a rotation made through one server holds for all of them.
//! They share the local admin token too, so the CLI on any server's host can drive every
//! server of the site (a harden applies on each through its admin API).
//!
//! Each server keeps these as files in its data dir, exactly as a single server does (so
//! everything that reads them is unchanged), plus `site.json`: the generation of the site's
//! files it holds. The database holds the site's ([`ward_store::SiteFiles`]). Each server's
//! own certificates (`certs/server*`) are its own, issued by the site's CA.
//!
//! - **Publish**: a change of these files on one server (a rotation's commit, a ticket key
//!   rotation) becomes the site's next generation before the change's serial bumps are
//!   written, so no agent is handed a settings serial before every server can learn what it
//!   carries. Refused (`site_changed`) when another server changed them since this one last
//!   took them; this one then takes the site's.
//! - **Take** ([`sync_files`]): the site's files written into the data dir as one
//!   [`ward_fs::Commit`] with `site.json`; then this server's certificates are re-issued by
//!   the site's CA when another CA issued them (another server switched the site's CA).
//! - **When**: at init (a server joining a site takes its files; the first one puts its own),
//!   at every start before anything reads the files, when another server says it changed them
//!   (`ChangeNote::Site`), before settings of a serial this server has not answered yet are
//!   computed, and at every heartbeat (a notification missed while the database was away).
//!
//! The database is as secret as these keys: whoever reads it can impersonate the servers to
//! the agents, and call any server's admin API.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use ward_store::{SiteFiles, Store, StoreError};

use crate::datadir::DataDir;

/// The files of a data dir that belong to the site, by their path inside it.
pub const SITE_FILES: [&str; 13] = [
    "admin.token",
    "certs/ca.pem",
    "certs/ca.key",
    "certs/ca-next.pem",
    "certs/ca-next.key",
    "certs/ca-previous.pem",
    "certs/ca-previous.key",
    "certs/agent-trust.pem",
    "keys/agreement.key",
    "keys/agreement-next.key",
    "keys/agreement-withdrawn.key",
    "keys/agreement-previous.key",
    "keys/tickets.key",
];

/// What changed in the data dir when it took the site's files: what a running server must load
/// again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Taken {
    /// The site's CAs.
    pub certificates: bool,
    /// This server's own certificates, re-issued by the site's CA: its listeners must load
    /// them.
    pub own_certificates: bool,
    /// The agents' agreement keys.
    pub agreement: bool,
    /// The CAs agents are told to trust.
    pub trust: bool,
    /// The session ticket keys.
    pub tickets: bool,
    /// The local admin token.
    pub admin_token: bool,
}

impl Taken {
    pub fn any(&self) -> bool {
        self.certificates
            || self.own_certificates
            || self.agreement
            || self.trust
            || self.tickets
            || self.admin_token
    }
}

/// What [`sync_files`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Synced {
    /// The database is not shared: nothing to do.
    Alone,
    /// The data dir holds the site's files already.
    Same,
    /// This server's files became the site's (the first server of a site, or a change this
    /// server made that was not published yet).
    Put { generation: i64 },
    /// The data dir took the site's files.
    Took { generation: i64, taken: Taken },
}

/// This data dir's site files, by name (those that exist).
pub fn local_files(data: &DataDir) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let mut files = BTreeMap::new();
    for name in SITE_FILES {
        let path = data.root().join(name);
        match std::fs::read(&path) {
            Ok(bytes) => {
                files.insert(name.to_string(), bytes);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
    Ok(files)
}

/// `site.json`: the generation of the site's files this data dir holds.
fn generation_file(data: &DataDir) -> std::path::PathBuf {
    data.root().join("site.json")
}

/// What `site.json` holds: the generation of the site's files this data dir holds, and a
/// digest of them as they were when it took or put them (a change made since shows).
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Held {
    generation: i64,
    #[serde(default)]
    digest: String,
}

fn read_held(data: &DataDir) -> Result<Held, String> {
    let path = generation_file(data);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Held::default()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// The generation of the site's files this data dir holds (0: none yet, or not on a site).
pub fn local_generation(data: &DataDir) -> Result<i64, String> {
    read_held(data).map(|held| held.generation)
}

/// A digest of a set of site files (SHA-256 over each name, length and content, by name).
fn digest(files: &BTreeMap<String, Vec<u8>>) -> String {
    let mut all = Vec::new();
    for (name, bytes) in files {
        all.extend_from_slice(&(name.len() as u64).to_be_bytes());
        all.extend_from_slice(name.as_bytes());
        all.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        all.extend_from_slice(bytes);
    }
    ward_proto::hex(&openssl::sha::sha256(&all))
}

fn held_bytes(generation: i64, files: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let held = Held {
        generation,
        digest: digest(files),
    };
    let mut bytes = serde_json::to_vec(&held).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

fn write_held(
    data: &DataDir,
    generation: i64,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<(), String> {
    let path = generation_file(data);
    ward_fs::write(&path, &held_bytes(generation, files), 0o644)
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn store_error(error: StoreError) -> String {
    error.to_string()
}

/// Puts this data dir's files as the site's next generation after `expected`; records the
/// new generation in `site.json`. `Stale` when the site moved past `expected`.
pub fn publish(data: &DataDir, store: &dyn Store, expected: i64) -> Result<i64, StoreError> {
    let files = local_files(data).map_err(StoreError::Database)?;
    let generation = store.put_site_files(expected, &files)?;
    write_held(data, generation, &files).map_err(StoreError::Database)?;
    Ok(generation)
}

/// After a change of site files this server made (a rotation's commit): publishes them when
/// the database is shared. The caller holds what serialises changes of the files.
pub fn publish_change(data: &DataDir, store: &dyn Store) -> Result<(), StoreError> {
    if !store.is_shared() {
        return Ok(());
    }
    let expected = local_generation(data).map_err(StoreError::Database)?;
    publish(data, store, expected).map(drop)
}

/// Brings the data dir and the site into line (blocking; the caller holds what serialises
/// changes of the files): takes the site's files when the site is at a newer generation than
/// the data dir, puts the data dir's when the site has none yet or the data dir changed them
/// since (a change whose publication a crash or an unreachable database prevented), and
/// re-issues this server's certificates when the site's CA did not issue them.
pub fn sync_files(data: &DataDir, store: &dyn Store) -> Result<Synced, String> {
    if !store.is_shared() {
        return Ok(Synced::Alone);
    }
    let held = read_held(data)?;
    let files = local_files(data)?;
    let unchanged = held.digest == digest(&files);
    if held.generation > 0
        && unchanged
        && store.site_generation().map_err(store_error)? == held.generation
    {
        // The common case, one small read: nothing changed here or anywhere.
        return reissue_if_needed(data, Synced::Same);
    }
    let Some(site) = store.site_files().map_err(store_error)? else {
        let generation = publish(data, store, 0).map_err(store_error)?;
        return Ok(Synced::Put { generation });
    };
    if site.files == files {
        if site.generation != held.generation || !unchanged {
            write_held(data, site.generation, &files)?;
        }
        return reissue_if_needed(data, Synced::Same);
    }
    if site.generation <= held.generation && !unchanged {
        // Changed here since this data dir last took or put the site's files, and nowhere
        // else: a change whose publication a crash or the database's absence prevented.
        let generation = publish(data, store, site.generation).map_err(store_error)?;
        return Ok(Synced::Put { generation });
    }
    let taken = take(data, &site, &files)?;
    reissue_if_needed(
        data,
        Synced::Took {
            generation: site.generation,
            taken,
        },
    )
}

/// Writes the site's files (and removes the site files it does not hold) as one commit with
/// `site.json`.
fn take(
    data: &DataDir,
    site: &SiteFiles,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<Taken, String> {
    let mut commit = ward_fs::Commit::new("site-take");
    let mut taken = Taken::default();
    for name in SITE_FILES {
        let (now, then) = (files.get(name), site.files.get(name));
        if now == then || (then.is_none() && name == "admin.token") {
            // A site from before its servers shared the admin token: this server keeps its
            // own (and puts it at its next look).
            continue;
        }
        if name.starts_with("certs/ca") {
            taken.certificates = true;
        } else if name == "certs/agent-trust.pem" {
            taken.trust = true;
        } else if name.starts_with("keys/agreement") {
            taken.agreement = true;
        } else if name == "keys/tickets.key" {
            taken.tickets = true;
        } else if name == "admin.token" {
            taken.admin_token = true;
        }
        let path = data.root().join(name);
        commit = match then {
            Some(bytes) => {
                let mode = if name.ends_with(".pem") { 0o644 } else { 0o600 };
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                }
                commit.write(path, bytes.clone(), mode)
            }
            None => commit.remove(path),
        };
    }
    commit = commit.write(
        generation_file(data),
        held_bytes(site.generation, &site.files),
        0o644,
    );
    commit
        .run(&data.journal())
        .map_err(|e| e.to_string())?
        .done()
        .map_err(|e| format!("{}: {e}", data.journal().display()))?;
    Ok(taken)
}

/// Whether `cert` (PEM) was issued by one of the CAs in `cas` (PEM).
fn issued_by(cert: &[u8], cas: &[u8]) -> bool {
    openssl::x509::X509::from_pem(cert).is_ok_and(|leaf| signed_by_any(&leaf, cas))
}

/// Whether `leaf` is signed by one of the CAs in `cas` (PEM: ward's CA file holds an ECDSA
/// and an RSA root).
pub(crate) fn signed_by_any(leaf: &openssl::x509::X509, cas: &[u8]) -> bool {
    let roots = openssl::x509::X509::stack_from_pem(cas).unwrap_or_default();
    roots.iter().any(|root| {
        root.public_key()
            .is_ok_and(|key| leaf.verify(&key).unwrap_or(false))
    })
}

/// Re-issues this server's certificates from the site's CA when it did not issue them (the
/// site switched to another CA through another server, or this server just joined).
fn reissue_if_needed(data: &DataDir, mut synced: Synced) -> Result<Synced, String> {
    let read = |path: &Path| std::fs::read(path).unwrap_or_default();
    let cas = read(&data.ca_cert());
    let current = [data.server_cert(), data.server_rsa_cert()]
        .iter()
        .all(|cert| issued_by(&read(cert), &cas));
    if current {
        return Ok(synced);
    }
    crate::datadir::renew_server_certificates(data).map_err(|e| e.to_string())?;
    tracing::info!(
        ca = %data.ca_cert().display(),
        "this server's certificates re-issued by the site's CA"
    );
    match &mut synced {
        Synced::Took { taken, .. } => taken.own_certificates = true,
        _ => {
            synced = Synced::Took {
                generation: local_generation(data)?,
                taken: Taken {
                    own_certificates: true,
                    ..Taken::default()
                },
            }
        }
    }
    Ok(synced)
}

/// `ward server init` (and a first start) with `database`: on a shared database the data dir
/// joins the site it finds there, or creates it (see [`crate::datadir::initialise_with`]);
/// without one (or with an SQLite file), a single server's data dir. A database that cannot
/// be opened (a wrong URL, a newer ward's, one that holds other tables) is refused before
/// anything is written.
pub fn initialise(
    data: &DataDir,
    addresses: [std::net::SocketAddr; 3],
    database: Option<&str>,
) -> Result<Option<crate::datadir::InitReport>, crate::datadir::InitError> {
    use crate::datadir::{InitError, SiteInit};
    let Some(setting) = database else {
        return crate::datadir::initialise(data, addresses);
    };
    if data.is_initialised() {
        return Ok(None);
    }
    let error = |e: StoreError| InitError(e.to_string());
    let database = ward_store::Database::from_setting(setting, data.root()).map_err(error)?;
    if database.file().is_some() {
        // An SQLite file: no site (the setting applies when the server runs).
        return crate::datadir::initialise(data, addresses);
    }
    let store = ward_store::open(&database).map_err(error)?;
    let mut join = |data: &DataDir| {
        sync_files(data, &*store).map(|synced| matches!(synced, Synced::Took { .. }))
    };
    crate::datadir::initialise_with(
        data,
        addresses,
        Some(SiteInit {
            database,
            join: &mut join,
        }),
    )
}

/// What a running server knows of its site's generation: the newest one it heard of, and the
/// one its data dir and memory hold.
pub struct SiteWatch {
    heard: AtomicI64,
    loaded: tokio::sync::watch::Sender<i64>,
    poke: tokio::sync::Notify,
}

impl SiteWatch {
    pub fn new(loaded: i64) -> SiteWatch {
        SiteWatch {
            heard: AtomicI64::new(loaded),
            loaded: tokio::sync::watch::channel(loaded).0,
            poke: tokio::sync::Notify::new(),
        }
    }

    /// Another server changed the site's files (its notification): they are taken at once.
    pub fn heard(&self, generation: i64) {
        self.heard.fetch_max(generation, Ordering::SeqCst);
        self.poke.notify_one();
    }

    /// Waits (at most `bound`) until what this server holds is as new as what it heard of:
    /// settings computed meanwhile would carry the site's old CAs or keys.
    pub async fn current(&self, bound: Duration) {
        let heard = self.heard.load(Ordering::SeqCst);
        if *self.loaded.borrow() >= heard {
            return;
        }
        let mut loaded = self.loaded.subscribe();
        let _ = tokio::time::timeout(bound, loaded.wait_for(|l| *l >= heard)).await;
    }

    /// Returns when another server said it changed the site's files (since the last call).
    pub async fn poked(&self) {
        self.poke.notified().await
    }

    /// This server holds the site's files of `generation` (in its data dir and memory).
    pub fn holds(&self, generation: i64) {
        self.heard.fetch_max(generation, Ordering::SeqCst);
        self.loaded.send_if_modified(|loaded| {
            let newer = generation > *loaded;
            *loaded = (*loaded).max(generation);
            newer
        });
    }
}

#[cfg(test)]
mod tests;
