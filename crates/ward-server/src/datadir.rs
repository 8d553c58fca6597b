//! The data directory: where everything of one server lives, and its first initialisation.
//!
//! ```text
//! DIR/ward.toml                     listener addresses, database, intervals, limits
//! DIR/conf/ssl/ssl.conf             console listener TLS (Apache syntax)
//! DIR/conf/ssl/sslforclients.conf   clients listener TLS (Apache syntax)
//! DIR/certs/ca.pem, ca.key          the private CA (key 0600)
//! DIR/certs/ca-next.pem, .key       a CA rotation's new CA, until the switch (key 0600)
//! DIR/certs/ca-previous.pem, .key   the CA before the last switch (key 0600)
//! DIR/certs/agent-trust.pem         the CAs agents are told to trust (from a rotation on)
//! DIR/certs/server.pem, server.key  the listeners' ECDSA certificate, signed by the CA (key 0600)
//! DIR/certs/server-rsa.pem, .key    the RSA one, for clients that cannot use ECDSA (key 0600)
//! DIR/keys/agreement.key           the server's X25519 key for agent key agreement (0600)
//! DIR/keys/agreement-next.key      a key rotation's next key, until the switch (0600)
//! DIR/keys/agreement-withdrawn.key an aborted rotation's next key, accepted until unused (0600)
//! DIR/keys/agreement-previous.key  the key before the last switch (0600)
//! DIR/admin.token                   the local admin credential (0600)
//! DIR/ward.db                       the SQLite database
//! DIR/ward.pid                      the running server's pid
//! DIR/commit.json                   a multi-file change under way (ward-fs's journal): the
//!                                   next start finishes it
//! ```
//!
//! Every file here is written through ward-fs: whole, with its final mode, never truncated in
//! place; a change of several files (a renewal, a rotation's switch) is one [`ward_fs::Commit`].

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ward_store::Database;
use ward_tls::{defaults, pki};

use crate::config;

#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config(&self) -> PathBuf {
        self.root.join("ward.toml")
    }

    pub fn ssl_conf(&self) -> PathBuf {
        self.root.join("conf/ssl/ssl.conf")
    }

    pub fn clients_conf(&self) -> PathBuf {
        self.root.join("conf/ssl/sslforclients.conf")
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("certs/ca.pem")
    }

    pub fn ca_key(&self) -> PathBuf {
        self.root.join("certs/ca.key")
    }

    /// A CA rotation's new CA, from `rotate-ca start` until the switch.
    pub fn ca_next_cert(&self) -> PathBuf {
        self.root.join("certs/ca-next.pem")
    }

    pub fn ca_next_key(&self) -> PathBuf {
        self.root.join("certs/ca-next.key")
    }

    /// The CA before the last switch: kept, so the CAs agents still report are known.
    pub fn ca_previous_cert(&self) -> PathBuf {
        self.root.join("certs/ca-previous.pem")
    }

    pub fn ca_previous_key(&self) -> PathBuf {
        self.root.join("certs/ca-previous.key")
    }

    /// Certificates from a CA rotation's next CA, staged while its switch is planned.
    pub fn ca_switch_dir(&self) -> PathBuf {
        self.root.join("certs/switch")
    }

    /// The CAs every agent's settings tell it to trust (PEM), from the first CA rotation on;
    /// absent before one, when agents keep the CA they were enrolled with.
    pub fn agent_trust(&self) -> PathBuf {
        self.root.join("certs/agent-trust.pem")
    }

    /// The PEM of every CA of this data dir: the current one, a rotation's next and the
    /// previous one. What ward's own admin client trusts for the console, so it keeps
    /// working through every step of a rotation.
    pub fn known_cas_pem(&self) -> Vec<u8> {
        [self.ca_cert(), self.ca_next_cert(), self.ca_previous_cert()]
            .iter()
            .filter_map(|path| fs::read(path).ok())
            .collect::<Vec<_>>()
            .concat()
    }

    pub fn server_cert(&self) -> PathBuf {
        self.root.join("certs/server.pem")
    }

    pub fn server_key(&self) -> PathBuf {
        self.root.join("certs/server.key")
    }

    /// The RSA server certificate, for clients that cannot use ECDSA (RSA key exchange).
    pub fn server_rsa_cert(&self) -> PathBuf {
        self.root.join("certs/server-rsa.pem")
    }

    pub fn server_rsa_key(&self) -> PathBuf {
        self.root.join("certs/server-rsa.key")
    }

    /// The session ticket keys of both HTTPS listeners (0600): the current key (80 random
    /// bytes), then the previous one after a rotation. Kept across restarts, so agents resume
    /// their sessions instead of a full handshake each; a site can share the file.
    pub fn ticket_key(&self) -> PathBuf {
        self.root.join("keys/tickets.key")
    }

    /// Reads the ticket keys, making a first key on first use (`ward server` at start).
    pub fn load_ticket_keys(&self) -> Result<ward_tls::ffi::TicketKeys, InitError> {
        match self.read_ticket_keys()? {
            Some(keys) => Ok(keys),
            None => self.rotate_ticket_keys(None),
        }
    }

    /// Reads the ticket keys without writing anything (configtest, reload); `None` when there
    /// are none yet.
    pub fn read_ticket_keys(&self) -> Result<Option<ward_tls::ffi::TicketKeys>, InitError> {
        const LEN: usize = ward_tls::ffi::TICKET_KEY_LEN;
        let path = self.ticket_key();
        match fs::read(&path) {
            Ok(bytes) if bytes.len() == LEN || bytes.len() == 2 * LEN => {
                let mut current = [0u8; LEN];
                current.copy_from_slice(&bytes[..LEN]);
                let previous = (bytes.len() == 2 * LEN).then(|| {
                    let mut previous = [0u8; LEN];
                    previous.copy_from_slice(&bytes[LEN..]);
                    previous
                });
                Ok(Some(ward_tls::ffi::TicketKeys { current, previous }))
            }
            Ok(bytes) => Err(InitError(format!(
                "{}: {} bytes, expected {LEN} or {}: remove it to make a new one",
                path.display(),
                bytes.len(),
                2 * LEN
            ))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(InitError(format!("{}: {e}", path.display()))),
        }
    }

    /// A new current ticket key; `old`'s current one becomes the previous (still accepted).
    /// Written atomically, 0600.
    pub fn rotate_ticket_keys(
        &self,
        old: Option<ward_tls::ffi::TicketKeys>,
    ) -> Result<ward_tls::ffi::TicketKeys, InitError> {
        let path = self.ticket_key();
        let mut current = [0u8; ward_tls::ffi::TICKET_KEY_LEN];
        openssl::rand::rand_bytes(&mut current).map_err(|e| InitError(format!("OpenSSL: {e}")))?;
        let keys = ward_tls::ffi::TicketKeys {
            current,
            previous: old.map(|old| old.current),
        };
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_error(dir))?;
        }
        let mut bytes = keys.current.to_vec();
        if let Some(previous) = keys.previous {
            bytes.extend_from_slice(&previous);
        }
        // Replaced whole: a crash leaves the old keys or the new ones.
        write_file(&path, &bytes, 0o600)?;
        Ok(keys)
    }

    /// How old the current ticket key is (from its file's modification time).
    pub fn ticket_key_age(&self) -> Option<std::time::Duration> {
        fs::metadata(self.ticket_key())
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
    }

    /// The server's X25519 key for agent key agreement (hex of the raw private key).
    pub fn agreement_key(&self) -> PathBuf {
        self.root.join("keys/agreement.key")
    }

    /// A key rotation's next agreement key, from `rotate-key start` until the switch.
    pub fn agreement_next_key(&self) -> PathBuf {
        self.root.join("keys/agreement-next.key")
    }

    /// The next key of an aborted key rotation: still accepted, no longer handed out, until no
    /// agent signs under it (`rotate-key abort` again removes it).
    pub fn agreement_withdrawn_key(&self) -> PathBuf {
        self.root.join("keys/agreement-withdrawn.key")
    }

    /// The agreement key before the last switch (kept, no longer accepted).
    pub fn agreement_previous_key(&self) -> PathBuf {
        self.root.join("keys/agreement-previous.key")
    }

    /// Reads the agreement key, creating it on first use (data dirs made before it existed).
    pub fn load_agreement_key(&self) -> Result<ward_proto::KeyPair, InitError> {
        let path = self.agreement_key();
        if let Some(pair) = read_agreement_key(&path)? {
            return Ok(pair);
        }
        new_agreement_key(&path)
    }
}

/// An X25519 key file (hex of the raw private key); `None` when there is none.
pub fn read_agreement_key(path: &Path) -> Result<Option<ward_proto::KeyPair>, InitError> {
    let Ok(text) = fs::read_to_string(path) else {
        return Ok(None);
    };
    let bytes = ward_proto::unhex(text.trim())
        .map_err(|e| InitError(format!("{}: not an X25519 key: {e}", path.display())))?;
    ward_proto::KeyPair::from_private_bytes(&bytes)
        .map(Some)
        .map_err(|e| InitError(format!("{}: not an X25519 key: {e}", path.display())))
}

/// A new X25519 key, written to `path` (0600).
pub fn new_agreement_key(path: &Path) -> Result<ward_proto::KeyPair, InitError> {
    let (pair, text) = make_agreement_key()?;
    write_file(path, &text, 0o600)?;
    Ok(pair)
}

/// A new X25519 key and the text of its file (hex of the raw private key), not written.
pub fn make_agreement_key() -> Result<(ward_proto::KeyPair, Vec<u8>), InitError> {
    let pair = ward_proto::KeyPair::generate().map_err(|e| InitError(format!("OpenSSL: {e}")))?;
    let hex = ward_proto::hex(
        &pair
            .private_bytes()
            .map_err(|e| InitError(format!("OpenSSL: {e}")))?,
    );
    Ok((pair, format!("{hex}\n").into_bytes()))
}

impl DataDir {
    pub fn admin_token(&self) -> PathBuf {
        self.root.join("admin.token")
    }

    /// The journal of a multi-file change under way ([`ward_fs::Commit`]).
    pub fn journal(&self) -> PathBuf {
        self.root.join("commit.json")
    }

    /// The directories ward writes state in: where a crash can leave a temporary or staged
    /// file behind.
    pub fn state_dirs(&self) -> Vec<PathBuf> {
        ["", "certs", "certs/switch", "keys", "conf/ssl", "harden"]
            .iter()
            .map(|dir| self.root.join(dir))
            .collect()
    }

    pub fn pid_file(&self) -> PathBuf {
        self.root.join("ward.pid")
    }

    /// Takes the data dir for this process: one server per data dir. The kernel drops the
    /// lock when the process ends, however it ends.
    pub fn lock(&self) -> Result<DataLock, String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.root.join("ward.lock");
        let mut file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if file.try_lock().is_err() {
            let pid = fs::read_to_string(&path).unwrap_or_default();
            return Err(format!(
                "another ward server (pid {}) runs on {}: stop it first, or give another --data",
                pid.trim(),
                self.root.display()
            ));
        }
        file.set_len(0)
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(DataLock { _file: file })
    }

    /// The database ward.toml names (a path is relative to the data dir unless absolute).
    pub fn database(&self, config: &config::Config) -> Result<Database, String> {
        Database::from_setting(&config.database, &self.root).map_err(|e| e.to_string())
    }

    /// ward.toml is written last by [`initialise`], so its presence means a complete init.
    pub fn is_initialised(&self) -> bool {
        self.config().exists()
    }

    /// Reads the local admin credential.
    pub fn read_admin_token(&self) -> io::Result<String> {
        Ok(fs::read_to_string(self.admin_token())?.trim().to_string())
    }
}

/// What [`initialise`] wrote, for the one-time message.
#[derive(Debug)]
pub struct InitReport {
    pub root: PathBuf,
    pub addresses: [SocketAddr; 3],
    pub host_names: Vec<String>,
    /// On a shared database: the site it created or joined.
    pub site: Option<SiteReport>,
}

/// The site a data dir was initialised on.
#[derive(Debug)]
pub struct SiteReport {
    /// The database, its password left out.
    pub database: String,
    /// It joined a site another server created (else it created one).
    pub joined: bool,
    /// The database setting is in ward.toml (else it has a password, and every start needs
    /// it in `WARD_DATABASE`).
    pub in_toml: bool,
}

/// The setting a database was given as.
fn database_setting(database: &Database) -> Option<String> {
    match database {
        Database::Postgres(url) => Some(url.clone()),
        Database::Sqlite(_) => None,
    }
}

/// A URL with its password left out.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((user_info, host)) if user_info.contains(':') => {
                let user = user_info.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}:***@{host}")
            }
            _ => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    let mut quoted = String::from('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

impl InitReport {
    /// The message printed once, after the first initialisation.
    pub fn message(&self, data: &DataDir) -> String {
        let [console, clients, clients_http] = self.addresses;
        format!(
            "ward: initialised {root}\n\
             \x20 settings        {toml}\n\
             \x20 console TLS     {ssl} (listener {console})\n\
             \x20 clients TLS     {clients_conf} (listener {clients}; plain HTTP on {clients_http})\n\
             \x20 CA certificate  {ca}  (give this to agents and browsers)\n\
             \x20 server cert     {cert} for {names}\n\
             \x20 database        {db}\n\
             \x20 admin token     {token} (mode 0600)\n\
             Log in on this host: ward commands take --data {root} and use the admin token.\n\
             Remotely: curl --cacert {ca} -H \"Authorization: Bearer $(cat {token})\" https://HOST:{port}/api/v1/server\n",
            root = data.root().display(),
            toml = data.config().display(),
            ssl = data.ssl_conf().display(),
            clients_conf = data.clients_conf().display(),
            ca = data.ca_cert().display(),
            cert = data.server_cert().display(),
            names = self.host_names.join(", "),
            db = match &self.site {
                None => data.root().join("ward.db").display().to_string(),
                Some(site) => format!(
                    "{} ({} a site: its CA, agreement and ticket keys are shared through the \
                     database, as secret as they are){}",
                    site.database,
                    if site.joined { "joined" } else { "created" },
                    if site.in_toml {
                        ""
                    } else {
                        "; the URL holds a password: start with it in WARD_DATABASE"
                    }
                ),
            },
            token = data.admin_token().display(),
            port = console.port(),
        )
    }
}

#[derive(Debug)]
pub struct InitError(pub String);

impl std::fmt::Display for InitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InitError {}

fn io_error(path: &Path) -> impl Fn(io::Error) -> InitError + '_ {
    move |e| InitError(format!("{}: {e}", path.display()))
}

/// Writes one whole file of the data dir with exactly `mode` (ward-fs: never truncated in
/// place, so a crash leaves the old file or the new one); a missing directory is made 0700.
pub(crate) fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), InitError> {
    if let Some(parent) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(io_error(parent))?;
    }
    ward_fs::write(path, bytes, mode).map_err(io_error(path))
}

/// Refuses a data dir that other users could write to: it holds keys and the admin token.
pub fn check_private(root: &Path) -> Result<(), InitError> {
    let mode = fs::metadata(root)
        .map_err(io_error(root))?
        .permissions()
        .mode();
    if mode & 0o022 != 0 {
        return Err(InitError(format!(
            "{}: the data directory is writable by other users (mode {:o}); run `chmod go-w {}`",
            root.display(),
            mode & 0o777,
            root.display()
        )));
    }
    Ok(())
}

/// What others may do with the data dir's secrets, as `ward server` and configtest check it
/// (as ssh does for a private key): the directory writable by others, or a key, the admin
/// token, or the database readable or writable by others, each with the path and the fix.
/// `database` is the database ward.toml names; its file, when it has one, is a secret.
pub fn unsafe_modes(data: &DataDir, database: &Database) -> Vec<String> {
    let mut problems = Vec::new();
    if let Ok(meta) = fs::metadata(data.root()) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o022 != 0 {
            problems.push(format!(
                "{}: the data directory is writable by other users (mode {mode:o}); run `chmod \
                 go-w {}`",
                data.root().display(),
                data.root().display()
            ));
        }
    }
    let mut secrets = vec![
        data.admin_token(),
        data.ca_key(),
        data.ca_next_key(),
        data.ca_previous_key(),
        data.server_key(),
        data.server_rsa_key(),
        data.agreement_key(),
        data.agreement_next_key(),
        data.agreement_withdrawn_key(),
        data.agreement_previous_key(),
        data.ticket_key(),
    ];
    if let Some(file) = database.file() {
        secrets.push(file.to_path_buf());
        for suffix in ["-wal", "-shm"] {
            let mut name = file.as_os_str().to_owned();
            name.push(suffix);
            secrets.push(PathBuf::from(name));
        }
    }
    for path in secrets {
        let Ok(meta) = fs::metadata(&path) else {
            continue; // not made yet (an older data dir): nothing to leak
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            problems.push(format!(
                "{}: readable or writable by other users (mode {mode:o}), and it holds a secret; \
                 run `chmod 600 {}`",
                path.display(),
                path.display()
            ));
        }
    }
    problems
}

/// Whether users other than the owner may read or write `path` (a missing file: no).
pub fn readable_by_others(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.permissions().mode() & 0o077 != 0)
}

/// Re-issues the server's ECDSA and RSA certificates from ward's CA, for the names the
/// current ECDSA certificate has (else the host's names and loopback), valid as long as new
/// ones are. The four files change as one [`ward_fs::Commit`] (`renew-cert`): a crash leaves
/// the old pairs or the new ones, never a certificate without its key. Returns each
/// certificate written and its days left.
pub fn renew_server_certificates(data: &DataDir) -> Result<Vec<(PathBuf, i64)>, InitError> {
    let issued = issue_server_certificates(data, (&data.ca_cert(), &data.ca_key()))?;
    let files = [
        (data.server_cert(), data.server_key()),
        (data.server_rsa_cert(), data.server_rsa_key()),
    ];
    let mut commit = ward_fs::Commit::new("renew-cert");
    let mut written = Vec::new();
    for (pair, (cert, key)) in issued.into_iter().zip(files) {
        commit = commit
            .write(&key, pair.key_pem, 0o600)
            .write(&cert, pair.cert_pem, 0o644);
        written.push((cert, pair.days_left));
    }
    commit
        .run(&data.journal())
        .map_err(|e| InitError(e.to_string()))?
        .done()
        .map_err(io_error(&data.journal()))?;
    Ok(written)
}

/// A server certificate and its key, issued and not yet written.
pub struct IssuedPair {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub days_left: i64,
}

/// Issues an ECDSA and an RSA server certificate (in that order) from the CA at `ca`
/// (certificate, key), for the names the current ECDSA certificate has (else the host's names
/// and loopback). Writes nothing.
pub fn issue_server_certificates(
    data: &DataDir,
    ca: (&Path, &Path),
) -> Result<[IssuedPair; 2], InitError> {
    let openssl = |e: openssl::error::ErrorStack| InitError(format!("OpenSSL: {e}"));
    let read = |path: &Path| fs::read(path).map_err(io_error(path));
    let ca = pki::CaBundle::from_pem(&read(ca.0)?, &read(ca.1)?)
        .map_err(|e| InitError(format!("{}: {e}", ca.0.display())))?;
    // The names the current certificate serves, so a renewal changes nothing else.
    let (mut names, mut ips) = (Vec::new(), Vec::new());
    let current = fs::read(data.server_cert())
        .ok()
        .and_then(|pem| openssl::x509::X509::from_pem(&pem).ok());
    if let Some(alt) = current.as_ref().and_then(|c| c.subject_alt_names()) {
        for name in alt.iter() {
            if let Some(dns) = name.dnsname() {
                names.push(dns.to_string());
            } else if let Some(ip) = name.ipaddress() {
                match ip.len() {
                    4 => ips.push(IpAddr::from(<[u8; 4]>::try_from(ip).expect("4 bytes"))),
                    16 => ips.push(IpAddr::from(<[u8; 16]>::try_from(ip).expect("16 bytes"))),
                    _ => {}
                }
            }
        }
    }
    if names.is_empty() && ips.is_empty() {
        names = host_names();
        ips = vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()];
    }
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let issue = |key_type| -> Result<IssuedPair, InitError> {
        let issued = pki::new_server_cert_of(key_type, ca.signer(key_type), &name_refs, &ips)
            .map_err(openssl)?;
        Ok(IssuedPair {
            cert_pem: issued.cert_pem().map_err(openssl)?,
            key_pem: issued.key_pem().map_err(openssl)?,
            days_left: pki::seconds_left(&issued.cert).map_err(openssl)? / 86_400,
        })
    };
    Ok([
        issue(pki::KeyType::EcdsaP256)?,
        issue(pki::KeyType::Rsa2048)?,
    ])
}

/// `localhost`, then the host's own name when it has one.
pub fn host_names() -> Vec<String> {
    let mut names = vec!["localhost".to_string()];
    if let Ok(name) = fs::read_to_string("/proc/sys/kernel/hostname") {
        let name = name.trim();
        if !name.is_empty() && name != "localhost" {
            names.push(name.to_string());
        }
    }
    names
}

/// Initialises `data` unless it already is. `addresses` are written into ward.toml. Safe to
/// run again after a crash half-way: ward.toml comes last, so a partial init is redone.
pub fn initialise(
    data: &DataDir,
    addresses: [SocketAddr; 3],
) -> Result<Option<InitReport>, InitError> {
    initialise_with(data, addresses, None)
}

/// A data dir initialised on a shared database (see `crate::site::initialise`).
pub struct SiteInit<'a> {
    /// The database; its URL goes into ward.toml unless it holds a password.
    pub database: Database,
    /// Takes the site's files, or puts this data dir's when there is no site yet, once the
    /// data dir has its own; whether it joined a site that existed.
    pub join: &'a mut dyn FnMut(&DataDir) -> Result<bool, String>,
}

/// [`initialise`], on a site's shared database when `site` says so: the data dir's own CA and
/// keys are made as for a single server, then `site.join` replaces them with the site's (and
/// its certificates with ones from the site's CA), all before ward.toml is written.
pub fn initialise_with(
    data: &DataDir,
    addresses: [SocketAddr; 3],
    mut site: Option<SiteInit<'_>>,
) -> Result<Option<InitReport>, InitError> {
    if data.is_initialised() {
        return Ok(None);
    }
    let store_error = |e: ward_store::StoreError| InitError(e.to_string());
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data.root())
        .map_err(io_error(data.root()))?;
    check_private(data.root())?;
    // One initialisation at a time: a second `init` or start waits, then finds it done.
    let lock_path = data.root().join(".init.lock");
    let lock = fs::File::create(&lock_path).map_err(io_error(&lock_path))?;
    lock.lock().map_err(io_error(&lock_path))?;
    if data.is_initialised() {
        return Ok(None);
    }
    // An init a crash cut short is done again from the start; what it left half-made goes.
    ward_fs::clean_leftovers(&data.state_dirs()).map_err(|e| InitError(e.to_string()))?;
    let openssl = |e: openssl::error::ErrorStack| InitError(format!("OpenSSL: {e}"));

    // Two roots: ECDSA for the ECDSA certificate, RSA for the RSA one.
    let ca = pki::CaBundle::new("ward private CA").map_err(openssl)?;
    let names = host_names();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let ips: [IpAddr; 2] = [Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()];
    let server = pki::new_server_cert(&ca.ecdsa, &name_refs, &ips).map_err(openssl)?;
    let server_rsa = pki::new_server_cert_of(
        pki::KeyType::Rsa2048,
        ca.signer(pki::KeyType::Rsa2048),
        &name_refs,
        &ips,
    )
    .map_err(openssl)?;
    let mut token = [0u8; 32];
    openssl::rand::rand_bytes(&mut token).map_err(openssl)?;
    let token = ward_proto::hex(&token);

    write_file(&data.ca_cert(), &ca.cert_pem().map_err(openssl)?, 0o644)?;
    write_file(&data.ca_key(), &ca.key_pem().map_err(openssl)?, 0o600)?;
    write_file(
        &data.server_cert(),
        &server.cert_pem().map_err(openssl)?,
        0o644,
    )?;
    write_file(
        &data.server_key(),
        &server.key_pem().map_err(openssl)?,
        0o600,
    )?;
    write_file(
        &data.server_rsa_cert(),
        &server_rsa.cert_pem().map_err(openssl)?,
        0o644,
    )?;
    write_file(
        &data.server_rsa_key(),
        &server_rsa.key_pem().map_err(openssl)?,
        0o600,
    )?;
    write_file(&data.admin_token(), format!("{token}\n").as_bytes(), 0o600)?;
    data.load_agreement_key()?;
    data.load_ticket_keys()?;
    write_file(&data.ssl_conf(), defaults::SSL_CONF.as_bytes(), 0o644)?;
    write_file(
        &data.clients_conf(),
        defaults::SSL_FOR_CLIENTS_CONF.as_bytes(),
        0o644,
    )?;
    let mut toml = config::default_toml(addresses);
    let joined = match &mut site {
        Some(site) => {
            let joined = (site.join)(data).map_err(InitError)?;
            if let (false, Some(setting)) = (
                site.database.has_password(),
                database_setting(&site.database),
            ) {
                toml = toml.replace(
                    "path = \"ward.db\"",
                    &format!("path = {}", toml_string(&setting)),
                );
            }
            joined
        }
        None => false,
    };
    if site
        .as_ref()
        .is_none_or(|site| site.database.has_password())
    {
        let database = data.root().join("ward.db");
        // The database holds token hashes and password hashes: private, like the keys.
        write_file(&database, b"", 0o600)?;
        ward_store::open(&Database::Sqlite(database)).map_err(store_error)?;
    }
    write_file(&data.config(), toml.as_bytes(), 0o644)?;
    Ok(Some(InitReport {
        root: data.root().to_path_buf(),
        addresses,
        host_names: names,
        site: site.map(|site| SiteReport {
            database: database_setting(&site.database)
                .map(|url| redact(&url))
                .unwrap_or_default(),
            joined,
            in_toml: !site.database.has_password(),
        }),
    }))
}

/// Held by the one server running on a data dir (see [`DataDir::lock`]).
pub struct DataLock {
    _file: fs::File,
}

/// The console address of the server running on `data`, from its pid file.
pub fn running_console(data: &DataDir) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(data.pid_file()).ok()?;
    text.lines().nth(1)?.trim().parse().ok()
}

/// What a file of a data dir holds, by its place: what a restore accepts, and how it checks
/// it before the data dir is put in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Config,
    AdminToken,
    Database,
    /// `site.dump`: a backup's snapshot of a site's PostgreSQL database (`pg_dump`), which a
    /// restore puts into an empty database; no data dir keeps it.
    SiteDump,
    /// `conf/ssl/*.conf`.
    TlsConf,
    /// `certs/*.pem`: certificates (the CAs agents are told to trust too).
    Certificate,
    /// `certs/*.key`.
    PrivateKey,
    /// `keys/agreement*.key`.
    AgreementKey,
    /// `keys/tickets.key`.
    TicketKeys,
}

impl FileKind {
    /// The kind of the file at `relative` (inside a data dir), `None` for a name no data dir
    /// holds. `database` is the database's name as ward.toml gives it by default.
    pub fn of(relative: &Path) -> Option<FileKind> {
        let parts: Vec<&str> = relative.iter().filter_map(|p| p.to_str()).collect();
        let kind = match parts.as_slice() {
            ["ward.toml"] => FileKind::Config,
            ["admin.token"] => FileKind::AdminToken,
            [SITE_DUMP] => FileKind::SiteDump,
            [name] if name.ends_with(".db") => FileKind::Database,
            ["conf", "ssl", name] if name.ends_with(".conf") => FileKind::TlsConf,
            ["certs", name] if name.ends_with(".pem") => FileKind::Certificate,
            ["certs", name] if name.ends_with(".key") => FileKind::PrivateKey,
            ["keys", "tickets.key"] => FileKind::TicketKeys,
            ["keys", name] if name.starts_with("agreement") && name.ends_with(".key") => {
                FileKind::AgreementKey
            }
            _ => return None,
        };
        let plain = parts
            .iter()
            .all(|part| !part.is_empty() && !part.starts_with('.') && part.len() <= 64);
        plain.then_some(kind)
    }

    /// The largest such file a restore takes.
    pub fn max_bytes(self) -> u64 {
        match self {
            FileKind::Database | FileKind::SiteDump => 1 << 40,
            _ => 1 << 20,
        }
    }

    /// Whether it holds a secret (written 0600 whatever the archive says).
    pub fn secret(self) -> bool {
        matches!(
            self,
            FileKind::AdminToken
                | FileKind::Database
                | FileKind::SiteDump
                | FileKind::PrivateKey
                | FileKind::AgreementKey
                | FileKind::TicketKeys
        )
    }

    /// Checks that `bytes` have the form this kind of file has (the database is checked by
    /// the store, from its file).
    pub fn check(self, bytes: &[u8]) -> Result<(), String> {
        let text = || std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string());
        match self {
            FileKind::Config => {
                let text = text()?;
                toml::from_str::<toml::Table>(text)
                    .map(drop)
                    .map_err(|e| format!("not TOML: {e}"))
            }
            FileKind::AdminToken => {
                let token = text()?.trim();
                let hex = token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit());
                if hex {
                    Ok(())
                } else {
                    Err(format!(
                        "an admin token is 64 hex digits, this one {} characters",
                        token.len()
                    ))
                }
            }
            FileKind::Database | FileKind::SiteDump => Ok(()),
            FileKind::TlsConf => text().map(drop),
            FileKind::Certificate => openssl::x509::X509::stack_from_pem(bytes)
                .map_err(|e| format!("not a PEM certificate: {e}"))
                .and_then(|certs| {
                    if certs.is_empty() {
                        Err("no certificate in it".to_string())
                    } else {
                        Ok(())
                    }
                }),
            FileKind::PrivateKey => openssl::pkey::PKey::private_key_from_pem(bytes)
                .map(drop)
                .map_err(|e| format!("not a PEM private key: {e}")),
            FileKind::AgreementKey => ward_proto::unhex(text()?.trim())
                .map_err(|e| e.to_string())
                .and_then(|raw| {
                    ward_proto::KeyPair::from_private_bytes(&raw)
                        .map(drop)
                        .map_err(|e| e.to_string())
                })
                .map_err(|e| format!("not an X25519 key: {e}")),
            FileKind::TicketKeys => {
                const LEN: usize = ward_tls::ffi::TICKET_KEY_LEN;
                if bytes.len() == LEN || bytes.len() == 2 * LEN {
                    Ok(())
                } else {
                    Err(format!(
                        "{} bytes, ticket keys are {LEN} or {}",
                        bytes.len(),
                        2 * LEN
                    ))
                }
            }
        }
    }
}

/// The name of a backup's snapshot of a site's database ([`FileKind::SiteDump`]).
pub const SITE_DUMP: &str = "site.dump";

/// The files every data dir holds (besides its database), relative to it.
pub const REQUIRED_FILES: &[&str] = &[
    "ward.toml",
    "admin.token",
    "conf/ssl/ssl.conf",
    "conf/ssl/sslforclients.conf",
    "certs/ca.pem",
    "certs/ca.key",
    "certs/server.pem",
    "certs/server.key",
    "keys/agreement.key",
];
