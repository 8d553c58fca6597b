//! One agent per state dir, and its local control socket (`ward agent status|stop|reload`).
//!
//! A running agent holds an exclusive lock on `DIR/agent.lock` for its whole life. Only the
//! holder binds `DIR/agent.sock` and removes it on exit, so a second agent on the same dir is
//! refused, and an exiting agent never removes another process's socket. The kernel drops the
//! lock when the process dies, even by `kill -9`.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::error::AgentError;
use crate::run::{Status, Stopper};

pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join("agent.sock")
}

fn lock_path(dir: &Path) -> PathBuf {
    dir.join("agent.lock")
}

/// The proof that this process is the one agent of its state dir.
pub struct RunLock {
    _file: File,
    dir: PathBuf,
}

impl RunLock {
    /// Takes the state dir's lock, or says which agent holds it.
    pub fn acquire(dir: &Path) -> Result<RunLock, AgentError> {
        let path = lock_path(dir);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| AgentError::state(format!("{}: {e}", path.display())))?;
        if file.try_lock().is_err() {
            let pid = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(AgentError::Usage(format!(
                "an agent already runs on {} (pid {}): `ward agent stop --state {}` first",
                dir.display(),
                pid.trim(),
                dir.display()
            )));
        }
        file.set_len(0)
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .map_err(|e| AgentError::state(format!("{}: {e}", path.display())))?;
        // The one agent of this dir: what a crash of an earlier one left half-made goes.
        ward_fs::clean_leftovers(&[dir.to_path_buf()])
            .map_err(|e| AgentError::state(format!("{}: {e}", dir.display())))?;
        Ok(RunLock {
            _file: file,
            dir: dir.to_path_buf(),
        })
    }

    /// The pid of the agent running on `dir`, if one does.
    pub fn holder(dir: &Path) -> Option<i32> {
        let path = lock_path(dir);
        let file = File::open(&path).ok()?;
        if file.try_lock_shared().is_ok() {
            let _ = file.unlock();
            return None;
        }
        std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .or(Some(0))
    }
}

/// Serves `status`, `stop` and `reload` on the state dir's socket until the agent stops.
/// Only the lock holder can call it.
pub fn serve_control(
    lock: &RunLock,
    stopper: Arc<Stopper>,
    status: Arc<Mutex<Status>>,
) -> Result<std::thread::JoinHandle<()>, AgentError> {
    let path = socket_path(&lock.dir);
    // Ours to replace: a socket left by an agent that died (the lock says none runs).
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .map_err(|e| AgentError::state(format!("{}: {e}", path.display())))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| AgentError::state(e.to_string()))?;
    Ok(std::thread::spawn(move || {
        while !stopper.is_stopped() {
            match listener.accept() {
                Ok((stream, _)) => answer(&stream, &stopper, &status),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let _ = std::fs::remove_file(&path);
    }))
}

fn answer(stream: &UnixStream, stopper: &Stopper, status: &Mutex<Status>) {
    // A silent or endless client cannot wedge the socket: short, bounded reads.
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut reader = BufReader::new(std::io::Read::take(stream, 256));
    let mut line = String::new();
    let _ = reader.read_line(&mut line);
    let mut stream = stream;
    let pid = std::process::id();
    let reply = match line.trim() {
        "status" => status.lock().unwrap_or_else(|p| p.into_inner()).to_json(),
        "stop" => {
            stopper.stop();
            serde_json::json!({"stopping": true, "pid": pid})
        }
        "reload" => {
            stopper.reload();
            serde_json::json!({"reloading": true, "pid": pid})
        }
        other => serde_json::json!({"error": format!("unknown command '{other}'")}),
    };
    let _ = writeln!(stream, "{reply}");
}

/// Sends one command to a running agent's socket and returns its answer.
pub fn control(dir: &Path, command: &str) -> Result<Value, AgentError> {
    let path = socket_path(dir);
    let mut stream = UnixStream::connect(&path).map_err(|_| {
        AgentError::Usage(format!(
            "no agent runs on {} (ward agent start)",
            dir.display()
        ))
    })?;
    let io = |e: std::io::Error| AgentError::state(format!("{}: {e}", path.display()));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    writeln!(stream, "{command}").map_err(io)?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).map_err(io)?;
    serde_json::from_str(&line).map_err(|e| AgentError::state(format!("agent answer: {e}")))
}

/// Whether process `pid` is alive.
pub fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 checks for existence and permission, and sends nothing.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}
