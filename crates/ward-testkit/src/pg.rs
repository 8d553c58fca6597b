//! A private PostgreSQL cluster for one test (ward-store's conformance suite, ward's site
//! tests): made from a template cluster (`initdb` once per machine and PostgreSQL version,
//! then copied, which takes a fraction of initdb's time), started on a free loopback port
//! with its socket in its own directory, stopped and started again when a test wants the
//! database to go away and come back, and removed when dropped. As root, the server runs as
//! the `postgres` user (`setpriv`), since PostgreSQL refuses to run as root.
//!
//! These clusters do not sync to disk (`fsync`, `full_page_writes` off): a test kills the
//! server process, never the machine, and what a commit wrote to the WAL survives that.
//! Commits stay synchronous, so a transaction acknowledged before a kill is there after it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

pub struct Cluster {
    dir: PathBuf,
    port: u16,
    /// `None` while stopped.
    server: Option<Child>,
}

/// The directory of PostgreSQL's programs (`initdb`, `postgres`): `pg_config --bindir`, or
/// the newest under /usr/lib/postgresql (Debian's layout, where they are not on PATH).
fn bindir() -> PathBuf {
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.retain(|dir| dir.join("initdb").exists());
    versions.sort();
    versions.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL is not installed (no initdb): the test command, scripts/test, installs \
             it (apt-get install postgresql)"
        )
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `program` run as the user PostgreSQL runs as: `postgres` when we are root, else ourselves.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("setpriv");
        command
            .args([
                "--reuid=postgres",
                "--regid=postgres",
                "--clear-groups",
                "--",
            ])
            .arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn chown_to_postgres(path: &Path) {
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .expect("chown");
        assert!(status.success(), "chown -R postgres {}", path.display());
    }
}

/// The template cluster for this PostgreSQL: made once (under a lock, into a temporary name
/// renamed into place, so a concurrent test never sees half of it).
fn template(bin: &Path) -> PathBuf {
    let version = bin
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let root = std::env::temp_dir().join(format!("ward-pg-template-{version}"));
    let ready = root.join("PG_VERSION");
    if ready.exists() {
        return root;
    }
    let lock_path = std::env::temp_dir().join(format!("ward-pg-template-{version}.lock"));
    let lock = std::fs::File::create(&lock_path).expect("template lock");
    flock(&lock);
    if !ready.exists() {
        let staging =
            std::env::temp_dir().join(format!("ward-pg-template-{version}.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).unwrap();
        chown_to_postgres(&staging);
        let output = as_postgres(&bin.join("initdb"))
            .args(["-D"])
            .arg(&staging)
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .output()
            .expect("initdb");
        assert!(
            output.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let _ = std::fs::remove_dir_all(&root);
        std::fs::rename(&staging, &root).unwrap();
    }
    root
}

fn flock(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor we own; the lock ends when the file is closed.
    let result = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(result, 0, "flock");
}

impl Cluster {
    /// A running cluster of its own, ready for connections.
    pub fn start() -> Cluster {
        let bin = bindir();
        let template = template(&bin);
        let dir = tempfile::Builder::new()
            .prefix("ward-pg-")
            .tempdir()
            .unwrap()
            .keep();
        let status = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", template.display()))
            .arg(&dir)
            .status()
            .expect("cp");
        assert!(status.success(), "copying the template cluster");
        chown_to_postgres(&dir);
        Cluster::serve(&bin, dir)
    }

    /// Starts the cluster in `dir` on a free port, ready for connections.
    fn serve(bin: &Path, dir: PathBuf) -> Cluster {
        // A port taken between our check and the server's bind: try another.
        for _ in 0..5 {
            let port = free_port();
            let mut server = spawn(bin, &dir, port);
            if wait_ready(&mut server, &url(port)) {
                return Cluster {
                    dir,
                    port,
                    server: Some(server),
                };
            }
            let _ = server.kill();
            let _ = server.wait();
        }
        panic!(
            "PostgreSQL did not start in {}: {}",
            dir.display(),
            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
        );
    }

    /// Stops the server at once (an immediate shutdown, as a crash of the database host
    /// looks to its clients); its data stays for [`Cluster::restart`].
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            // SAFETY: kill on our own child's pid, which we have not waited for yet.
            unsafe {
                libc::kill(server.id() as i32, libc::SIGQUIT);
            }
            let _ = server.wait();
        }
    }

    /// Starts the stopped server again on the same data and port.
    pub fn restart(&mut self) {
        assert!(self.server.is_none(), "the cluster is running");
        let mut server = spawn(&bindir(), &self.dir, self.port);
        assert!(
            wait_ready(&mut server, &self.url()),
            "PostgreSQL did not start again: {}",
            std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
        );
        self.server = Some(server);
    }

    /// A streaming replica of this cluster, made with `pg_basebackup -R` (it follows this
    /// one) and started on a port of its own, once it streams. With `synchronous`, this
    /// cluster then waits for the replica at every commit (`synchronous_standby_names`), so a
    /// commit it acknowledged is on the replica too; the replica itself has no such setting,
    /// so once promoted it commits alone.
    pub fn replica(&self, synchronous: bool) -> Cluster {
        let bin = bindir();
        let dir = tempfile::Builder::new()
            .prefix("ward-pg-replica-")
            .tempdir()
            .unwrap()
            .keep();
        chown_to_postgres(&dir);
        let output = as_postgres(&bin.join("pg_basebackup"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-X", "stream", "-R", "--no-sync", "-D"])
            .arg(&dir)
            .output()
            .expect("pg_basebackup");
        assert!(
            output.status.success(),
            "pg_basebackup: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let _ = std::fs::remove_file(dir.join("server.log"));
        // PostgreSQL refuses a data directory others can read (a temporary directory's mode).
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chmod 700");
        let replica = Cluster::serve(&bin, dir);
        let mut client = self.client();
        let streaming = |client: &mut postgres::Client, state: &str| {
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                let rows = client
                    .query(
                        "SELECT sync_state FROM pg_stat_replication WHERE state = 'streaming'",
                        &[],
                    )
                    .expect("pg_stat_replication");
                if rows.iter().any(|row| row.get::<_, String>(0) == state) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            panic!("the replica never streamed ({state})");
        };
        streaming(&mut client, "async");
        if synchronous {
            // Two statements: ALTER SYSTEM cannot run in the one transaction a batch is.
            client
                .batch_execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
                .expect("synchronous_standby_names");
            client
                .batch_execute("SELECT pg_reload_conf()")
                .expect("pg_reload_conf");
            streaming(&mut client, "sync");
        }
        replica
    }

    /// Promotes this replica to a primary (and waits until it is one).
    pub fn promote(&self) {
        let promoted: bool = self
            .client()
            .query_one("SELECT pg_promote(true, 30)", &[])
            .expect("pg_promote")
            .get(0);
        assert!(promoted, "the replica was not promoted");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its database's connection string (libpq's key=value form).
    pub fn url(&self) -> String {
        url(self.port)
    }

    /// Its database as a `postgres://` URL, the form ward.toml and `--database` take.
    pub fn uri(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A client of its database, to look at what a server wrote or to set up a case.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).expect("connect")
    }
}

fn url(port: u16) -> String {
    format!("host=127.0.0.1 port={port} user=postgres dbname=postgres")
}

/// Whether `server` accepts connections within 30 s (false: it exited, e.g. its port was
/// taken).
fn wait_ready(server: &mut Child, url: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = server.try_wait() {
            return false;
        }
        if postgres::Client::connect(url, postgres::NoTls).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The cluster's server on `dir` and `port`, its log appended to `dir/server.log`.
fn spawn(bin: &Path, dir: &Path, port: u16) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .unwrap();
    as_postgres(&bin.join("postgres"))
        .arg("-D")
        .arg(dir)
        .args(["-p", &port.to_string(), "-k"])
        .arg(dir)
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "shared_buffers=16MB",
            "-c",
            "max_connections=60",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start postgres")
}
