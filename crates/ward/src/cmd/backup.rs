//! `ward server backup` and `ward server restore`: one tar file with a consistent snapshot of
//! the database and every file of the data dir, and its way back, verified before anything is
//! put in place.
//!
//! On a site (PostgreSQL), the snapshot is `site.dump`, made by `pg_dump` while the servers
//! run; a restore puts it into an empty database in one transaction (a database that holds
//! the site already is refused unless only the data dir is restored, `--files-only`).

use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use serde_json::json;
use ward_server::datadir::{FileKind, REQUIRED_FILES, SITE_DUMP};
use ward_server::DataDir;

use super::CmdResult;

/// The most entries a backup has: a data dir holds a few dozen files.
const MAX_ENTRIES: usize = 1000;

/// The files of a data dir a backup holds besides the database, relative to it: the
/// configuration, the conf files, the CA, the certificates, the keys and the admin token.
/// (Telemetry lives in the database; the pid file, the lock and the harden copies do not
/// travel.)
fn backed_up_files(data: &DataDir) -> Vec<std::path::PathBuf> {
    let root = data.root();
    let mut files = vec![root.join("ward.toml"), data.admin_token()];
    for dir in ["conf/ssl", "certs", "keys"] {
        if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
            let mut found: Vec<_> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && !p.to_string_lossy().ends_with(".bak"))
                .collect();
            found.sort();
            files.extend(found);
        }
    }
    files
}

pub fn backup(data: &DataDir, out: &std::path::Path, as_json: bool) -> CmdResult {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    if !data.is_initialised() {
        return Err(format!("{} is not initialised", data.root().display()));
    }
    let config = ward_server::config::load(&data.config()).map_err(|e| e.to_string())?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| format!("{}: {e}", out.display()))?;
    let result = (|| -> Result<(usize, bool), String> {
        // The database first: one consistent snapshot, whatever the server writes meanwhile.
        let mut name = out.as_os_str().to_owned();
        name.push(".db-snapshot");
        let snapshot = std::path::PathBuf::from(name);
        let _ = std::fs::remove_file(&snapshot);
        struct Remove(std::path::PathBuf);
        impl Drop for Remove {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
        let _cleanup = Remove(snapshot.clone());
        // Private from the first byte: VACUUM INTO fills an empty file.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&snapshot)
            .map_err(|e| format!("{}: {e}", snapshot.display()))?;
        let database = super::database(data, &config)?;
        ward_store::snapshot(&database, &snapshot)
            .map_err(|e| format!("snapshot of the database: {e}"))?;
        let mut archive = tar::Builder::new(std::io::BufWriter::new(file));
        let mut add = |path: &std::path::Path, name: &std::path::Path, mode: u32| {
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(mode & 0o777);
            header.set_mtime(0);
            header.set_cksum();
            archive
                .append_data(&mut header, name, bytes.as_slice())
                .map_err(|e| format!("{}: {e}", out.display()))
        };
        match database.file() {
            Some(file) => {
                let mode = std::fs::metadata(file).map_or(0o600, |m| m.mode());
                add(&snapshot, std::path::Path::new(&config.database), mode)?;
            }
            // A site's database: its pg_dump, which a restore puts into an empty database.
            None => add(&snapshot, std::path::Path::new(SITE_DUMP), 0o600)?,
        }
        let files = backed_up_files(data);
        for path in &files {
            let mode = std::fs::metadata(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .mode();
            let name = path.strip_prefix(data.root()).expect("inside the data dir");
            add(path, name, mode)?;
        }
        let inner = archive
            .into_inner()
            .map_err(|e| format!("{}: {e}", out.display()))?;
        let file = inner
            .into_inner()
            .map_err(|e| format!("{}: {e}", out.display()))?;
        file.sync_all()
            .map_err(|e| format!("{}: {e}", out.display()))?;
        Ok((files.len() + 1, database.file().is_none()))
    })();
    match result {
        Ok((count, site)) => {
            if as_json {
                println!(
                    "{:#}",
                    json!({"backup": out.display().to_string(), "files": count, "site": site})
                );
            } else {
                println!(
                    "backed up {} ({count} files, the database as one snapshot{}) to {} (mode \
                     0600: it holds the keys)",
                    data.root().display(),
                    if site {
                        ", the site's PostgreSQL database by pg_dump"
                    } else {
                        ""
                    },
                    out.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            // A half-written backup is no backup.
            let _ = std::fs::remove_file(out);
            Err(error)
        }
    }
}

/// Restores a backup into `dir` (absent or empty): everything is written into a new directory
/// beside it and checked there (only regular files and directories, each of a name a data dir
/// holds, within its size; every file of the form it should have; the database passes
/// SQLite's integrity check and has a schema this ward reads; every file a data dir needs is
/// there), then that directory is renamed to `dir`. Anything else is refused naming the
/// entry, and leaves nothing behind.
pub fn restore(from: &Path, dir: &Path, as_json: bool, files_only: bool) -> CmdResult {
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(format!(
            "{}: not empty; restore into a new directory (nothing was changed)",
            dir.display()
        ));
    }
    let name = dir
        .file_name()
        .ok_or_else(|| format!("{}: not a directory name", dir.display()))?;
    let parent = match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let prefix = format!(".{}.restore-", name.to_string_lossy());
    remove_dead_stagings(&parent, &prefix);
    let staging = parent.join(format!("{prefix}{}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(|e| format!("{}: {e}", staging.display()))?;
    let mut restored_into = None;
    let result = unpack(from, &staging).and_then(|count| {
        // A site's database: into its (empty) database first, in one transaction; the data
        // dir keeps no copy of it.
        let dump = staging.join(SITE_DUMP);
        if dump.exists() {
            if !files_only {
                let data = DataDir::new(&staging);
                let config =
                    ward_server::config::load(&data.config()).map_err(|e| e.to_string())?;
                let database = super::database(&data, &config)?;
                ward_store::restore_site_snapshot(&database, &dump).map_err(|e| {
                    format!("the site's database: {e}; or --files-only restores the data dir alone")
                })?;
                restored_into = Some(match std::env::var("WARD_DATABASE") {
                    Ok(set) if !set.is_empty() => "the database WARD_DATABASE names".to_string(),
                    _ => config.database.clone(),
                });
            }
            std::fs::remove_file(&dump).map_err(|e| format!("{}: {e}", dump.display()))?;
        }
        ward_fs::fault::point("restore:before-rename");
        // An empty target directory gives way to the verified one.
        if dir.exists() {
            std::fs::remove_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::rename(&staging, dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        ward_fs::sync_dir(&parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        Ok(count)
    });
    let count = match result {
        Ok(count) => count,
        Err(error) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(format!(
                "{}: {error} (nothing was restored)",
                from.display()
            ));
        }
    };
    if as_json {
        println!(
            "{:#}",
            json!({
                "restored": dir.display().to_string(),
                "files": count,
                "database": restored_into,
            })
        );
    } else {
        if let Some(database) = &restored_into {
            println!("restored the site's database into {database}");
        }
        println!(
            "restored {count} files into {}; start it with `ward server --data {}`",
            dir.display(),
            dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes what restores that crashed left in `parent` (`PREFIX<pid>` of a process that is
/// gone): a restore is renamed into place whole or not at all, so these are never needed.
fn remove_dead_stagings(parent: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(prefix)
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 only asks whether the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The databases an archive held, for a refusal.
fn names(databases: &[PathBuf]) -> String {
    if databases.is_empty() {
        return "none".to_string();
    }
    databases
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Unpacks and checks the archive at `from` into `staging`; how many files it held.
fn unpack(from: &Path, staging: &Path) -> Result<usize, String> {
    let file = std::fs::File::open(from).map_err(|e| e.to_string())?;
    let mut archive = tar::Archive::new(file);
    let mut count = 0;
    let mut entries_seen = 0;
    let mut databases = Vec::new();
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        entries_seen += 1;
        if entries_seen > MAX_ENTRIES {
            return Err(format!(
                "more than {MAX_ENTRIES} entries: not a backup of a data dir"
            ));
        }
        let name = entry.path().map_err(|e| e.to_string())?.into_owned();
        let refused = |why: &str| format!("entry {}: {why}", name.display());
        if name.is_absolute()
            || name
                .components()
                .any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(refused("not a plain relative path"));
        }
        let kind_of_entry = entry.header().entry_type();
        if kind_of_entry.is_dir() {
            continue; // directories are made for the files they hold
        }
        if !kind_of_entry.is_file() {
            return Err(refused(&format!(
                "a {kind_of_entry:?} entry; a backup holds regular files only"
            )));
        }
        let kind = FileKind::of(&name).ok_or_else(|| refused("no data dir holds such a file"))?;
        let size = entry.header().size().map_err(|e| refused(&e.to_string()))?;
        if size > kind.max_bytes() {
            return Err(refused(&format!(
                "{size} bytes, more than such a file ever has ({})",
                kind.max_bytes()
            )));
        }
        let target = staging.join(&name);
        if target.exists() {
            return Err(refused("twice in the archive"));
        }
        if let Some(parent) = target.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let archived_mode = entry.header().mode().unwrap_or(0o600) & 0o777;
        let mode = if kind.secret() {
            archived_mode & 0o600
        } else {
            archived_mode & 0o755
        };
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode | 0o600)
            .open(&target)
            .map_err(|e| format!("{}: {e}", target.display()))?;
        // Bounded by the header's size, and again while copying.
        let copied = std::io::copy(&mut (&mut entry).take(kind.max_bytes() + 1), &mut out)
            .map_err(|e| format!("{}: {e}", target.display()))?;
        if copied > kind.max_bytes() {
            return Err(refused("larger than its header says"));
        }
        out.sync_all()
            .map_err(|e| format!("{}: {e}", target.display()))?;
        drop(out);
        std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .map_err(|e| format!("{}: {e}", target.display()))?;
        if matches!(kind, FileKind::Database | FileKind::SiteDump) {
            databases.push(name.clone());
        } else {
            let bytes = std::fs::read(&target).map_err(|e| format!("{}: {e}", target.display()))?;
            kind.check(&bytes).map_err(|why| refused(&why))?;
        }
        count += 1;
    }
    for required in REQUIRED_FILES {
        if !staging.join(required).is_file() {
            return Err(format!(
                "no {required} in it: not a complete backup of a data dir"
            ));
        }
    }
    let data = DataDir::new(staging);
    let config =
        ward_server::config::load(&data.config()).map_err(|e| format!("ward.toml: {e}"))?;
    // As the server would run it: WARD_DATABASE, else ward.toml's.
    let on_site = super::database(&data, &config)?.file().is_none();
    if on_site {
        // A site's server: its database is the site's snapshot.
        if databases.as_slice() != [PathBuf::from(SITE_DUMP)] {
            return Err(format!(
                "ward.toml names a PostgreSQL database, so the backup's one database must be \
                 {SITE_DUMP}, found {}",
                names(&databases)
            ));
        }
        ward_store::check_site_snapshot(&staging.join(SITE_DUMP))
            .map_err(|e| format!("entry {SITE_DUMP}: {e}"))?;
        return Ok(count);
    }
    let database = Path::new(&config.database);
    if databases.as_slice() != [database.to_path_buf()] {
        return Err(format!(
            "the database ward.toml names ({}) must be its one database, found {}",
            database.display(),
            names(&databases)
        ));
    }
    ward_store::verify(&super::database(&data, &config)?)
        .map_err(|e| format!("entry {}: {e}", database.display()))?;
    Ok(count)
}
