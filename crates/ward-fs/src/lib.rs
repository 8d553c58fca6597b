//! ward-fs: the one way ward writes state to disk, so that a crash at any instant leaves every
//! file either as it was or as it was meant to be, never empty or torn.
//!
//! - [`write`] and [`replace`] put one whole file in place: a temporary file beside it, created
//!   exclusively with its final mode (a secret is never readable by others, not even for an
//!   instant), written, fsynced, renamed over the live file, and the directory fsynced. The
//!   live file is never truncated or opened for writing.
//! - [`Commit`] puts several files in place as one step (a certificate and its key, a CA
//!   switch): every new file is staged and fsynced first, then a journal names them, then they
//!   are renamed. A crash before the journal leaves the old files (the staged ones are
//!   leftovers); a crash after it is finished by [`recover`] at the next start. The journal
//!   can carry what must follow the files (`then`: an audit entry, serial bumps), which the
//!   caller does and then marks [`Pending::done`].
//! - [`clean_leftovers`] removes the temporary and staged files a crash left behind.
//! - [`fault::point`] names the instants a crash test kills the process at (compiled in only
//!   with the `fault-points` feature, which only test builds turn on).

pub mod fault;

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Writes `bytes` to `path` with exactly `mode`, replacing whatever is there atomically.
pub fn write(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_with(path, bytes, mode)
}

/// Like [`write`], but the file keeps the mode it has; `new_mode` when it does not exist yet
/// (an admin's conf file keeps the permissions the admin gave it).
pub fn replace(path: &Path, bytes: &[u8], new_mode: u32) -> io::Result<()> {
    let mode = fs::metadata(path)
        .map(|meta| meta.permissions().mode() & 0o7777)
        .unwrap_or(new_mode);
    write_with(path, bytes, mode)
}

fn write_with(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = parent(path);
    let temp = temp_path(path)?;
    let result = (|| {
        let mut file = create_exclusive(&temp, mode)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fault::point(&format!("write:{}", file_name(path)));
        fs::rename(&temp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// The directory `path` is in (`.` for a bare file name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `.NAME.tmp-PID-N` beside `path`: hidden, unique in this process, and naming the process
/// that writes it (so [`clean_leftovers`] leaves a live writer's file alone).
fn temp_path(path: &Path) -> io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    if path.file_name().is_none() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "path has no file name",
        ));
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    Ok(parent(path).join(format!(
        ".{}{TEMP_MARK}{}-{n}",
        file_name(path),
        std::process::id()
    )))
}

const TEMP_MARK: &str = ".tmp-";
const STAGED_MARK: &str = ".staged";

/// Creates a new file (never an existing one: no link or earlier file is followed) with
/// exactly `mode`, whatever the umask.
fn create_exclusive(path: &Path, mode: u32) -> io::Result<fs::File> {
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode & 0o600)
        .open(path)?;
    // The umask may have taken bits away; a key is written only once the mode is final.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(file)
}

/// Makes a rename or a removal in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Several files replaced (and some removed) as one step; see the crate's documentation.
#[derive(Debug)]
pub struct Commit {
    label: &'static str,
    writes: Vec<(PathBuf, Vec<u8>, u32)>,
    removes: Vec<PathBuf>,
    then: Option<serde_json::Value>,
}

/// What a journal records: each staged file and where it goes, the files to remove, and what
/// must follow.
#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    label: String,
    renames: Vec<(PathBuf, PathBuf)>,
    removes: Vec<PathBuf>,
    then: Option<serde_json::Value>,
}

/// A commit whose files are in place and whose `then` is still to be done: the journal stays
/// until [`Pending::done`], so a crash before makes [`recover`] hand `then` over again.
#[must_use = "the journal stays until done() is called"]
#[derive(Debug)]
pub struct Pending {
    journal: Option<PathBuf>,
}

impl Pending {
    /// `then` is done: the journal goes.
    pub fn done(self) -> io::Result<()> {
        match self.journal {
            Some(journal) => remove_journal(&journal),
            None => Ok(()),
        }
    }
}

fn remove_journal(journal: &Path) -> io::Result<()> {
    match fs::remove_file(journal) {
        Ok(()) => sync_dir(parent(journal)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

impl Commit {
    /// A commit; `label` names it in errors and in its fault points (`LABEL:staged`,
    /// `LABEL:journaled`, `LABEL:renamed`, `LABEL:applied`).
    pub fn new(label: &'static str) -> Commit {
        Commit {
            label,
            writes: Vec::new(),
            removes: Vec::new(),
            then: None,
        }
    }

    /// `path` will hold `bytes`, with exactly `mode`.
    pub fn write(mut self, path: impl Into<PathBuf>, bytes: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.writes.push((path.into(), bytes.into(), mode));
        self
    }

    /// `path` (a file, or an empty directory) will be gone; absent already is fine.
    pub fn remove(mut self, path: impl Into<PathBuf>) -> Self {
        self.removes.push(path.into());
        self
    }

    /// What the caller does once the files are in place; kept in the journal until
    /// [`Pending::done`], so that [`recover`] hands it over after a crash.
    pub fn then(mut self, then: serde_json::Value) -> Self {
        self.then = Some(then);
        self
    }

    /// Stages every file, writes the journal at `journal`, renames the files into place and
    /// removes the others. Refused while another journal is there (a commit under way, or one
    /// a crash left: [`recover`] finishes it).
    pub fn run(self, journal: &Path) -> io::Result<Pending> {
        if journal.exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{}: another change of the data dir is under way, or one was interrupted \
                     (the server finishes it when it starts)",
                    journal.display()
                ),
            ));
        }
        let label = self.label;
        let mut renames = Vec::new();
        let result = (|| {
            for (path, bytes, mode) in &self.writes {
                let staged = staged_path(path);
                match fs::remove_file(&staged) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                if let Some(dir) = path.parent() {
                    fs::create_dir_all(dir)?;
                }
                let mut file = create_exclusive(&staged, *mode)?;
                file.write_all(bytes)?;
                file.sync_all()?;
                renames.push((staged, path.clone()));
            }
            for dir in directories(renames.iter().map(|(staged, _)| staged.as_path())) {
                sync_dir(&dir)?;
            }
            fault::point(&format!("{label}:staged"));
            let record = Journal {
                label: label.to_string(),
                renames: renames.clone(),
                removes: self.removes.clone(),
                then: self.then.clone(),
            };
            let text = serde_json::to_vec_pretty(&record).map_err(io::Error::other)?;
            write(journal, &text, 0o600)
        })();
        if let Err(error) = result {
            for (staged, _) in &renames {
                let _ = fs::remove_file(staged);
            }
            return Err(io::Error::new(
                error.kind(),
                format!("{label}: nothing changed: {error}"),
            ));
        }
        fault::point(&format!("{label}:journaled"));
        apply(label, &renames, &self.removes)?;
        fault::point(&format!("{label}:applied"));
        if self.then.is_none() {
            remove_journal(journal)?;
            return Ok(Pending { journal: None });
        }
        Ok(Pending {
            journal: Some(journal.to_path_buf()),
        })
    }
}

/// `.NAME.staged` beside `path`.
fn staged_path(path: &Path) -> PathBuf {
    parent(path).join(format!(".{}{STAGED_MARK}", file_name(path)))
}

/// The distinct directories of `paths`.
fn directories<'a>(paths: impl Iterator<Item = &'a Path>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = paths.map(|path| parent(path).to_path_buf()).collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// The journal's renames and removals; each step is skipped when it is done already, so a
/// recovery can run it again after a crash at any point.
fn apply(label: &str, renames: &[(PathBuf, PathBuf)], removes: &[PathBuf]) -> io::Result<()> {
    let context = |path: &Path, e: io::Error| {
        io::Error::new(e.kind(), format!("{label}: {}: {e}", path.display()))
    };
    for (index, (staged, path)) in renames.iter().enumerate() {
        match fs::rename(staged, path) {
            Ok(()) => {}
            // Renamed before a crash: the journal is being finished.
            Err(e) if e.kind() == io::ErrorKind::NotFound && !staged.exists() => {}
            Err(e) => return Err(context(staged, e)),
        }
        if index == 0 {
            fault::point(&format!("{label}:renamed"));
        }
    }
    for path in removes {
        let removed = match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => fs::remove_dir(path),
            Ok(_) => fs::remove_file(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        removed.map_err(|e| context(path, e))?;
    }
    let touched = renames
        .iter()
        .map(|(_, path)| path.as_path())
        .chain(removes.iter().map(PathBuf::as_path));
    for dir in directories(touched) {
        if dir.exists() {
            sync_dir(&dir).map_err(|e| context(&dir, e))?;
        }
    }
    Ok(())
}

/// What [`recover`] found: the label of the commit it finished, and what must follow it.
#[derive(Debug)]
pub struct Recovered {
    pub label: String,
    /// What the interrupted commit said must follow its files (`None`: nothing).
    pub then: Option<serde_json::Value>,
    /// Mark `then` done (the journal goes).
    pub pending: Pending,
}

/// Finishes a commit a crash interrupted after its journal was written: the staged files go
/// into place, the removals are made. `None` when there is no journal. A journal that cannot
/// be read is an error naming it (it is never written torn, so this means someone edited it).
pub fn recover(journal: &Path) -> io::Result<Option<Recovered>> {
    let text = match fs::read(journal) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let record: Journal = serde_json::from_slice(&text).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: not a ward journal: {e}", journal.display()),
        )
    })?;
    apply(&record.label, &record.renames, &record.removes)?;
    let pending = if record.then.is_none() {
        remove_journal(journal)?;
        Pending { journal: None }
    } else {
        Pending {
            journal: Some(journal.to_path_buf()),
        }
    };
    Ok(Some(Recovered {
        label: record.label,
        then: record.then,
        pending,
    }))
}

/// Removes the temporary files (`.NAME.tmp-PID-N` of a process that is gone) and the staged
/// files (`.NAME.staged`) a crash left in `dirs`. Call it only when no journal is pending
/// (after [`recover`]): a journal's staged files are still needed. Returns what it removed.
pub fn clean_leftovers(dirs: &[PathBuf]) -> io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for dir in dirs {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') || !entry.file_type()?.is_file() {
                continue;
            }
            let leftover = name.ends_with(STAGED_MARK)
                || name
                    .rsplit_once(TEMP_MARK)
                    .and_then(|(_, tail)| tail.split('-').next()?.parse::<i32>().ok())
                    .is_some_and(|pid| !alive(pid));
            if leftover {
                fs::remove_file(entry.path())?;
                removed.push(entry.path());
            }
        }
        if removed.iter().any(|path| parent(path) == dir.as_path()) {
            sync_dir(dir)?;
        }
    }
    Ok(removed)
}

/// Whether process `pid` exists (this one counts as gone: its own files are never in flight
/// while it cleans).
fn alive(pid: i32) -> bool {
    if pid <= 0 || pid as u32 == std::process::id() {
        return false;
    }
    // SAFETY: kill with signal 0 only checks that the process exists.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests;
