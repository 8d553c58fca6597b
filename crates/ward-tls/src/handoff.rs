//! Handing an established server connection's records over from OpenSSL to
//! [`crate::record`], so the connection can free its SSL object (about 22 KiB) and keep ~100
//! bytes of keys. This is kTLS's hand-over, to user space.
//!
//! OpenSSL has no call that gives out a TLS 1.3 traffic secret or a record sequence number,
//! so both are watched while the handshake runs:
//! - the secrets through the key-log callback (`SSL_CTX_set_keylog_callback`, the
//!   SSLKEYLOGFILE lines), kept only for connections that [`watch`] marked;
//! - the sequence numbers through the message callback (`SSL_set_msg_callback`): OpenSSL
//!   reports every record header it reads or writes and every handshake message, so the
//!   records since each side's Finished are counted. The Finished is the last record under
//!   the handshake keys in TLS 1.3 and the first under the new keys in TLS 1.2.
//!
//! [`take`] refuses (and OpenSSL keeps the connection) whenever the hand-over could not be
//! exact: anything buffered inside OpenSSL, a key update or post-handshake message seen, a
//! negotiated maximum fragment length, a suite that is not an AEAD this record layer has.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use foreign_types::ForeignTypeRef;
use openssl::ex_data::Index;
use openssl::ssl::{Ssl, SslContextBuilder, SslRef, SslVersion};

use crate::record::{cleanse, Handover, Hash, Records, Suite, Version};

extern "C" {
    fn SSL_set_msg_callback(
        ssl: *mut openssl_sys::SSL,
        callback: Option<
            unsafe extern "C" fn(
                c_int,
                c_int,
                c_int,
                *const c_void,
                usize,
                *mut openssl_sys::SSL,
                *mut c_void,
            ),
        >,
    );
    fn SSL_has_pending(ssl: *const openssl_sys::SSL) -> c_int;
    fn SSL_get_key_update_type(ssl: *const openssl_sys::SSL) -> c_int;
    fn SSL_SESSION_get_max_fragment_length(session: *const openssl_sys::SSL_SESSION) -> u8;
}

/// `SSL3_RT_HEADER`: the message callback's pseudo content type for a record header.
const RT_HEADER: c_int = 0x100;
const RT_HANDSHAKE: c_int = 22;
/// `SSL_get_key_update_type` when no key update is pending.
const SSL_KEY_UPDATE_NONE: c_int = -1;
const MT_FINISHED: u8 = 20;
const MT_KEY_UPDATE: u8 = 24;
const MT_NEW_SESSION_TICKET: u8 = 4;

/// What is watched on one connection (in its SSL's ex_data).
#[derive(Default)]
struct Watch {
    /// Records read (the client's) and written since that side's Finished message.
    read_since_finished: AtomicU64,
    write_since_finished: AtomicU64,
    read_finished: AtomicBool,
    write_finished: AtomicBool,
    /// A post-handshake message (other than the server's tickets) went either way: the keys
    /// may have changed under OpenSSL.
    post_handshake: AtomicBool,
    secrets: Mutex<Secrets>,
}

/// The TLS 1.3 application traffic secrets, from the key log.
#[derive(Default)]
struct Secrets {
    client: Secret,
    server: Secret,
}

struct Secret {
    bytes: [u8; 48],
    len: usize,
}

impl Default for Secret {
    fn default() -> Secret {
        Secret {
            bytes: [0; 48],
            len: 0,
        }
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        cleanse(&mut self.bytes);
    }
}

fn index() -> Index<Ssl, Watch> {
    static INDEX: OnceLock<Index<Ssl, Watch>> = OnceLock::new();
    *INDEX.get_or_init(|| Ssl::new_ex_index().expect("an SSL ex_data index"))
}

/// Makes a context's connections log their secrets to [`watch`]ed connections (only those).
pub fn enable(builder: &mut SslContextBuilder) {
    let index = index();
    builder.set_keylog_callback(move |ssl, line| {
        if let Some(watch) = ssl.ex_data(index) {
            watch.key_log(line);
        }
    });
}

/// Marks a connection, before its handshake, so that [`take`] can hand it over later. Its
/// context must have been [`enable`]d.
pub fn watch(ssl: &mut SslRef) {
    ssl.set_ex_data(index(), Watch::default());
    // SAFETY: `ssl` is live; the callback only reads the ex_data of the SSL it is called for.
    unsafe { SSL_set_msg_callback(ssl.as_ptr(), Some(on_message)) }
}

impl Watch {
    fn key_log(&self, line: &str) {
        let mut fields = line.split(' ');
        let (Some(label), Some(_random), Some(hex)) = (fields.next(), fields.next(), fields.next())
        else {
            return;
        };
        let mut secrets = self.secrets.lock().unwrap_or_else(|p| p.into_inner());
        let secret = match label {
            "CLIENT_TRAFFIC_SECRET_0" => &mut secrets.client,
            "SERVER_TRAFFIC_SECRET_0" => &mut secrets.server,
            _ => return,
        };
        secret.len = 0;
        if hex.len() % 2 != 0 || hex.len() / 2 > secret.bytes.len() {
            return;
        }
        for (slot, pair) in secret.bytes.iter_mut().zip(hex.as_bytes().chunks(2)) {
            let digit = |c: u8| (c as char).to_digit(16);
            match (digit(pair[0]), digit(pair[1])) {
                (Some(high), Some(low)) => *slot = (high * 16 + low) as u8,
                _ => return,
            }
        }
        secret.len = hex.len() / 2;
    }
}

/// OpenSSL's message callback: counts record headers and notes Finished and post-handshake
/// messages, per direction.
unsafe extern "C" fn on_message(
    write_p: c_int,
    _version: c_int,
    content_type: c_int,
    buf: *const c_void,
    len: usize,
    ssl: *mut openssl_sys::SSL,
    _arg: *mut c_void,
) {
    // SAFETY: OpenSSL calls this with the live SSL the callback was set on.
    let ssl = unsafe { SslRef::from_ptr(ssl) };
    let Some(watch) = ssl.ex_data(index()) else {
        return;
    };
    let write = write_p == 1;
    match content_type {
        RT_HEADER => {
            let count = if write {
                &watch.write_since_finished
            } else {
                &watch.read_since_finished
            };
            count.fetch_add(1, Ordering::Relaxed);
        }
        RT_HANDSHAKE if len > 0 && !buf.is_null() => {
            // SAFETY: OpenSSL passes `len` readable bytes at `buf`.
            let message_type = unsafe { *(buf as *const u8) };
            let (finished, count) = if write {
                (&watch.write_finished, &watch.write_since_finished)
            } else {
                (&watch.read_finished, &watch.read_since_finished)
            };
            match message_type {
                MT_FINISHED => {
                    finished.store(true, Ordering::Relaxed);
                    count.store(0, Ordering::Relaxed);
                }
                // The server's own tickets come after its Finished and change no key.
                MT_NEW_SESSION_TICKET if write => {}
                MT_KEY_UPDATE => watch.post_handshake.store(true, Ordering::Relaxed),
                _ if finished.load(Ordering::Relaxed) => {
                    watch.post_handshake.store(true, Ordering::Relaxed)
                }
                _ => {}
            }
        }
        _ => {}
    }
}

/// Why a connection stays with OpenSSL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// [`watch`] was not called before the handshake, or the context was not [`enable`]d.
    NotWatched,
    /// The handshake has not finished, or a shutdown has begun.
    NotEstablished,
    /// Below TLS 1.2.
    Version,
    /// A suite this record layer does not have (CBC, CCM).
    Suite,
    /// A maximum fragment length was negotiated.
    MaxFragmentLength,
    /// OpenSSL holds bytes it has read and not returned, or a key update to send.
    Pending,
    /// A key update or other post-handshake message went by.
    PostHandshake,
    /// A secret the key log should have given is missing.
    Secrets,
}

impl Refusal {
    /// Whether the same connection would be refused again later: its suite, version or
    /// history does not change. Only bytes pending inside OpenSSL, or a handshake not yet
    /// finished, can pass.
    pub fn is_final(self) -> bool {
        !matches!(self, Refusal::Pending | Refusal::NotEstablished)
    }

    pub fn reason(self) -> &'static str {
        match self {
            Refusal::NotWatched => "not watched from the start",
            Refusal::NotEstablished => "not established",
            Refusal::Version => "below TLS 1.2",
            Refusal::Suite => "not an AEAD suite",
            Refusal::MaxFragmentLength => "a maximum fragment length was negotiated",
            Refusal::Pending => "OpenSSL holds pending data",
            Refusal::PostHandshake => "a post-handshake message went by",
            Refusal::Secrets => "the traffic secrets were not logged",
        }
    }
}

/// The connection's record layer, to go on without OpenSSL: the caller then frees the SSL
/// (without a shutdown) and protects every further record with what this returns. Only
/// between records: nothing may be left inside OpenSSL (checked).
pub fn take(ssl: &SslRef) -> Result<Records, Refusal> {
    let watch = ssl.ex_data(index()).ok_or(Refusal::NotWatched)?;
    // SAFETY: `ssl` is live for the borrow; these calls only read it.
    let (pending, key_update, shutdown) = unsafe {
        (
            SSL_has_pending(ssl.as_ptr()) != 0 || openssl_sys::SSL_pending(ssl.as_ptr()) != 0,
            SSL_get_key_update_type(ssl.as_ptr()) != SSL_KEY_UPDATE_NONE,
            openssl_sys::SSL_get_shutdown(ssl.as_ptr()) != 0,
        )
    };
    let read_finished = watch.read_finished.load(Ordering::Relaxed);
    let write_finished = watch.write_finished.load(Ordering::Relaxed);
    if !ssl.is_init_finished() || shutdown || !read_finished || !write_finished {
        return Err(Refusal::NotEstablished);
    }
    let version = match ssl.version2() {
        Some(SslVersion::TLS1_3) => Version::Tls13,
        Some(SslVersion::TLS1_2) => Version::Tls12,
        _ => return Err(Refusal::Version),
    };
    let cipher = ssl.current_cipher().ok_or(Refusal::Suite)?;
    let suite = cipher
        .cipher_nid()
        .and_then(Suite::from_cipher_nid)
        .ok_or(Refusal::Suite)?;
    let hash = cipher
        .handshake_digest()
        .and_then(Hash::from_digest)
        .ok_or(Refusal::Suite)?;
    let session = ssl.session().ok_or(Refusal::NotEstablished)?;
    // SAFETY: the session is live for the borrow; the call only reads it.
    if unsafe { SSL_SESSION_get_max_fragment_length(session.as_ptr()) } != 0 {
        return Err(Refusal::MaxFragmentLength);
    }
    if pending || key_update {
        return Err(Refusal::Pending);
    }
    if watch.post_handshake.load(Ordering::Relaxed) {
        return Err(Refusal::PostHandshake);
    }
    let read = watch.read_since_finished.load(Ordering::Relaxed);
    let write = watch.write_since_finished.load(Ordering::Relaxed);
    // TLS 1.2's Finished is the first record under the new keys; TLS 1.3's is the last under
    // the handshake keys.
    let (read_seq, write_seq) = match version {
        Version::Tls12 => (read + 1, write + 1),
        Version::Tls13 => (read, write),
    };
    let secrets = watch.secrets.lock().unwrap_or_else(|p| p.into_inner());
    let mut master = [0u8; 48];
    let mut client_random = [0u8; 32];
    let mut server_random = [0u8; 32];
    let mut handover = Handover {
        version,
        suite,
        hash,
        client_secret: &secrets.client.bytes[..secrets.client.len],
        server_secret: &secrets.server.bytes[..secrets.server.len],
        master_secret: &[],
        client_random: &[],
        server_random: &[],
        read_seq,
        write_seq,
    };
    let records = match version {
        Version::Tls13 => {
            if secrets.client.len != hash.output_len() || secrets.server.len != hash.output_len() {
                return Err(Refusal::Secrets);
            }
            Records::server(&handover)
        }
        Version::Tls12 => {
            let master_len = session.master_key(&mut master);
            let client_len = ssl.client_random(&mut client_random);
            let server_len = ssl.server_random(&mut server_random);
            if master_len != 48 || client_len != 32 || server_len != 32 {
                return Err(Refusal::Secrets);
            }
            handover.master_secret = &master;
            handover.client_random = &client_random;
            handover.server_random = &server_random;
            let records = Records::server(&handover);
            cleanse(&mut master);
            records
        }
    };
    records.map_err(|_| Refusal::Secrets)
}
