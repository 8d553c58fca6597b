//! The few OpenSSL calls the `openssl` crate does not wrap, declared for every OpenSSL from 3.0
//! on (the vendored 3.5 and a system 3.0 alike). Each has a safe wrapper here; nothing else in
//! ward calls them.

use std::ffi::{c_char, c_int, c_void, CStr};

use foreign_types::{ForeignType, ForeignTypeRef};
use openssl::ssl::{SslContextRef, SslRef, SslSession, SslSessionRef};

use openssl_sys::{OPENSSL_sk_num, OPENSSL_sk_value, SSL_CIPHER_get_name, SSL_ctrl, OPENSSL_STACK};

extern "C" {
    fn CRYPTO_set_mem_functions(
        malloc: unsafe extern "C" fn(usize, *const c_char, c_int) -> *mut std::ffi::c_void,
        realloc: unsafe extern "C" fn(
            *mut std::ffi::c_void,
            usize,
            *const c_char,
            c_int,
        ) -> *mut std::ffi::c_void,
        free: unsafe extern "C" fn(*mut std::ffi::c_void, *const c_char, c_int),
    ) -> c_int;
    fn SSL_get_pending_cipher(ssl: *const openssl_sys::SSL) -> *const openssl_sys::SSL_CIPHER;
    fn SSL_group_to_name(ssl: *mut openssl_sys::SSL, id: c_int) -> *const c_char;
    fn SSL_CTX_get_ciphers(ctx: *const openssl_sys::SSL_CTX) -> *mut OPENSSL_STACK;
    fn EVP_PKEY_set_type(pkey: *mut openssl_sys::EVP_PKEY, kind: c_int) -> c_int;
    fn ERR_set_mark() -> c_int;
    fn ERR_pop_to_mark() -> c_int;
}

/// An allocator for OpenSSL, as `CRYPTO_set_mem_functions(3)` takes it.
pub struct Allocator {
    pub malloc: unsafe extern "C" fn(usize, *const c_char, c_int) -> *mut std::ffi::c_void,
    pub realloc: unsafe extern "C" fn(
        *mut std::ffi::c_void,
        usize,
        *const c_char,
        c_int,
    ) -> *mut std::ffi::c_void,
    pub free: unsafe extern "C" fn(*mut std::ffi::c_void, *const c_char, c_int),
}

/// Makes OpenSSL allocate with `allocator` (ward's own, not glibc's: a TLS handshake makes
/// and frees dozens of buffers, and glibc's per-thread arenas kept them as fragmented memory,
/// tens of KiB per held connection). Only before OpenSSL's first allocation: `false` after.
///
/// # Safety
/// The three functions must be a matching malloc, realloc and free that are safe to call
/// from any thread.
pub unsafe fn set_allocator(allocator: Allocator) -> bool {
    CRYPTO_set_mem_functions(allocator.malloc, allocator.realloc, allocator.free) == 1
}

/// The bytes OpenSSL holds now, as the installed allocator counts them (see
/// [`count_allocated`]); `None` when no counting allocator is installed.
pub fn allocated_bytes() -> Option<u64> {
    use std::sync::atomic::Ordering;
    let counters = counters().lock().unwrap_or_else(|p| p.into_inner());
    if counters.is_empty() {
        return None;
    }
    let total: i64 = counters.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    Some(total.max(0) as u64)
}

/// Called by an installed allocator on each allocation (`delta` > 0) and free (`delta` < 0),
/// so [`allocated_bytes`] tells what OpenSSL holds (`ward_tls_library_bytes` on /metrics).
///
/// OpenSSL allocates hundreds of times per handshake, so the count is kept per thread (a
/// plain load and store, no locked instruction and no cache line shared between threads; one
/// shared atomic cost 3% of a check-in's CPU) and summed when read. A block freed on another
/// thread than the one that allocated it moves the two threads' counts in opposite
/// directions; the sum stays exact.
pub fn count_allocated(delta: isize) {
    use std::sync::atomic::{AtomicI64, Ordering};
    thread_local! {
        static MINE: std::cell::OnceCell<std::sync::Arc<AtomicI64>> = const { std::cell::OnceCell::new() };
    }
    // While a thread ends, after its counter is gone, its last frees go uncounted.
    let _ = MINE.try_with(|mine| {
        let counter = mine.get_or_init(|| {
            let counter = std::sync::Arc::new(AtomicI64::new(0));
            counters()
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(counter.clone());
            counter
        });
        // Only this thread writes its counter: no read-modify-write needed.
        counter.store(
            counter.load(Ordering::Relaxed) + delta as i64,
            Ordering::Relaxed,
        );
    });
}

/// Every thread's counter (kept after the thread ends: its blocks may outlive it).
fn counters() -> &'static std::sync::Mutex<Vec<std::sync::Arc<std::sync::atomic::AtomicI64>>> {
    static COUNTERS: std::sync::Mutex<Vec<std::sync::Arc<std::sync::atomic::AtomicI64>>> =
        std::sync::Mutex::new(Vec::new());
    &COUNTERS
}

/// The length of a session ticket key: 16 bytes of name, 32 of HMAC key, 32 of AES key.
pub const TICKET_KEY_LEN: usize = 80;

/// The session ticket keys of every listener of this process: the current one encrypts new
/// tickets; the previous one still decrypts (and its tickets are renewed), so a rotation
/// costs no agent a full handshake.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TicketKeys {
    pub current: [u8; TICKET_KEY_LEN],
    pub previous: Option<[u8; TICKET_KEY_LEN]>,
}

static TICKET_KEYS: std::sync::RwLock<Option<TicketKeys>> = std::sync::RwLock::new(None);

/// Installs the keys every context set up by [`use_ticket_keys`] uses from now on.
pub fn set_ticket_keys(keys: TicketKeys) {
    *TICKET_KEYS.write().unwrap_or_else(|p| p.into_inner()) = Some(keys);
}

fn ticket_keys() -> Option<TicketKeys> {
    *TICKET_KEYS.read().unwrap_or_else(|p| p.into_inner())
}

extern "C" {
    fn OSSL_PARAM_construct_utf8_string(
        key: *const c_char,
        buf: *mut c_char,
        bsize: usize,
    ) -> openssl_sys::OSSL_PARAM;
    fn SSL_CTX_set_tlsext_ticket_key_evp_cb(
        ctx: *mut openssl_sys::SSL_CTX,
        cb: Option<TicketCallback>,
    ) -> c_int;
}

type TicketCallback = unsafe extern "C" fn(
    ssl: *mut openssl_sys::SSL,
    key_name: *mut u8,
    iv: *mut u8,
    cipher: *mut openssl_sys::EVP_CIPHER_CTX,
    mac: *mut openssl_sys::EVP_MAC_CTX,
    enc: c_int,
) -> c_int;

/// When a TLS 1.3 resumption is given a new ticket.
///
/// A TLS 1.3 client should use a ticket once (RFC 8446, appendix C.4: a ticket used again lets
/// an observer link the connections), and browsers do: without a new ticket each time, every
/// other connection of theirs would be a full handshake. A ward agent keeps its session and
/// uses it again until it is given another one: its source address and its heartbeat link its
/// connections anyway, and each ticket costs the server a session encoded, encrypted and sent
/// (about 6% of a resumed check-in's CPU) and the agent one decoded and stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// Every resumption: a listener browsers use (the console).
    EveryResumption,
    /// Once the ticket has lived half its lifetime, or was made under the previous key: the
    /// agents' listeners. An agent is never left without a ticket that resumes.
    WhenHalfSpent,
}

extern "C" {
    fn SSL_CTX_set_session_ticket_cb(
        ctx: *mut openssl_sys::SSL_CTX,
        generate: Option<unsafe extern "C" fn(*mut openssl_sys::SSL, *mut c_void) -> c_int>,
        decrypted: Option<DecryptedCallback>,
        arg: *mut c_void,
    ) -> c_int;
}

type DecryptedCallback = unsafe extern "C" fn(
    ssl: *mut openssl_sys::SSL,
    session: *mut openssl_sys::SSL_SESSION,
    key_name: *const u8,
    key_name_len: usize,
    status: c_int,
    arg: *mut c_void,
) -> c_int;

/// Makes a context encrypt and accept session tickets with the process's [`TicketKeys`], and
/// renew a TLS 1.3 one as `renewal` says.
pub fn use_ticket_keys(context: &SslContextRef, renewal: Renewal) -> bool {
    let arg = match renewal {
        Renewal::EveryResumption => std::ptr::null_mut(),
        // Any pointer that is not null: the callback only tells the two apart.
        Renewal::WhenHalfSpent => std::ptr::NonNull::<c_void>::dangling().as_ptr(),
    };
    // SAFETY: installs callbacks with the signatures OpenSSL 3 expects; the context is alive;
    // `arg` is never dereferenced.
    unsafe {
        SSL_CTX_set_tlsext_ticket_key_evp_cb(context.as_ptr(), Some(ticket_callback)) == 1
            && SSL_CTX_set_session_ticket_cb(context.as_ptr(), None, Some(ticket_decrypted), arg)
                == 1
    }
}

// OpenSSL's SSL_TICKET_STATUS and SSL_TICKET_RETURN (ssl.h).
const TICKET_NONE: c_int = 2;
const TICKET_EMPTY: c_int = 3;
const TICKET_NO_DECRYPT: c_int = 4;
const TICKET_SUCCESS: c_int = 5;
const TICKET_SUCCESS_RENEW: c_int = 6;
const TICKET_RETURN_ABORT: c_int = 0;
const TICKET_RETURN_IGNORE: c_int = 1;
const TICKET_RETURN_IGNORE_RENEW: c_int = 2;
const TICKET_RETURN_USE: c_int = 3;
const TICKET_RETURN_USE_RENEW: c_int = 4;

/// What OpenSSL does with a ticket it decrypted (`status`, from [`ticket_callback`]'s answer):
/// what it would do with no callback, except that a TLS 1.3 ticket of the current key is
/// renewed only as `renewal` says, by its age and lifetime in seconds.
fn ticket_answer(status: c_int, tls13: bool, renewal: Renewal, age: i64, lifetime: i64) -> c_int {
    match status {
        TICKET_SUCCESS_RENEW => TICKET_RETURN_USE_RENEW,
        TICKET_SUCCESS if !tls13 => TICKET_RETURN_USE,
        TICKET_SUCCESS => match renewal {
            Renewal::EveryResumption => TICKET_RETURN_USE_RENEW,
            Renewal::WhenHalfSpent if age.saturating_mul(2) >= lifetime => TICKET_RETURN_USE_RENEW,
            Renewal::WhenHalfSpent => TICKET_RETURN_USE,
        },
        // No ticket, or one of a key not known: a full handshake and a new ticket.
        TICKET_EMPTY | TICKET_NO_DECRYPT => TICKET_RETURN_IGNORE_RENEW,
        TICKET_NONE => TICKET_RETURN_IGNORE,
        // TICKET_FATAL_ERR_MALLOC, TICKET_FATAL_ERR_OTHER, or a status not documented.
        _ => TICKET_RETURN_ABORT,
    }
}

/// OpenSSL's decrypted-ticket callback (`SSL_CTX_set_session_ticket_cb(3)`).
unsafe extern "C" fn ticket_decrypted(
    ssl: *mut openssl_sys::SSL,
    session: *mut openssl_sys::SSL_SESSION,
    _key_name: *const u8,
    _key_name_len: usize,
    status: c_int,
    arg: *mut c_void,
) -> c_int {
    let renewal = if arg.is_null() {
        Renewal::EveryResumption
    } else {
        Renewal::WhenHalfSpent
    };
    let tls13 = !ssl.is_null() && openssl_sys::SSL_version(ssl) == openssl_sys::TLS1_3_VERSION;
    let (age, lifetime) = if session.is_null() {
        (0, 0)
    } else {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        (
            now - openssl_sys::SSL_SESSION_get_time(session) as i64,
            openssl_sys::SSL_SESSION_get_timeout(session) as i64,
        )
    };
    ticket_answer(status, tls13, renewal, age, lifetime)
}

/// OpenSSL's ticket key callback (see `SSL_CTX_set_tlsext_ticket_key_evp_cb(3)`): 1 to use
/// the current key, 2 to accept a ticket and renew it (one of the previous key), 0 for a key
/// it does not know (a full handshake), -1 on failure. Whether a TLS 1.3 ticket of the
/// current key is renewed is [`ticket_decrypted`]'s to say.
unsafe extern "C" fn ticket_callback(
    _ssl: *mut openssl_sys::SSL,
    key_name: *mut u8,
    iv: *mut u8,
    cipher: *mut openssl_sys::EVP_CIPHER_CTX,
    mac: *mut openssl_sys::EVP_MAC_CTX,
    enc: c_int,
) -> c_int {
    // No keys installed: no ticket is issued, and a presented one means a full handshake.
    let Some(keys) = ticket_keys() else {
        return 0;
    };
    let (key, answer) = if enc == 1 {
        std::ptr::copy_nonoverlapping(keys.current.as_ptr(), key_name, 16);
        if openssl_sys::RAND_bytes(iv, 16) != 1 {
            return -1;
        }
        (keys.current, 1)
    } else {
        let name = std::slice::from_raw_parts(key_name, 16);
        if name == &keys.current[..16] {
            (keys.current, 1)
        } else if let Some(previous) = keys.previous.filter(|p| name == &p[..16]) {
            (previous, 2)
        } else {
            return 0;
        }
    };
    let mut hmac = [0u8; 32];
    hmac.copy_from_slice(&key[16..48]);
    let aes = &key[48..80];
    let init = if enc == 1 {
        openssl_sys::EVP_EncryptInit_ex(
            cipher,
            openssl_sys::EVP_aes_256_cbc(),
            std::ptr::null_mut(),
            aes.as_ptr(),
            iv,
        )
    } else {
        openssl_sys::EVP_DecryptInit_ex(
            cipher,
            openssl_sys::EVP_aes_256_cbc(),
            std::ptr::null_mut(),
            aes.as_ptr(),
            iv,
        )
    };
    if init != 1 {
        return -1;
    }
    let mut digest = *b"SHA256\0";
    let params = [
        openssl_sys::OSSL_PARAM_construct_octet_string(
            c"key".as_ptr(),
            hmac.as_mut_ptr() as *mut std::ffi::c_void,
            hmac.len(),
        ),
        OSSL_PARAM_construct_utf8_string(c"digest".as_ptr(), digest.as_mut_ptr() as *mut c_char, 0),
        openssl_sys::OSSL_PARAM_construct_end(),
    ];
    if openssl_sys::EVP_MAC_CTX_set_params(mac, params.as_ptr()) != 1 {
        return -1;
    }
    answer
}

extern "C" {
    fn SSL_SESSION_dup(session: *const openssl_sys::SSL_SESSION) -> *mut openssl_sys::SSL_SESSION;
}

/// A copy of `session` for one connection to offer.
///
/// After a TLS 1.3 handshake, OpenSSL's client marks the session the connection used as not
/// resumable (it removes it from the client cache: "we encourage applications to only use
/// TLSv1.3 tickets once"), and the mark is on the object, shared by every handle to it. A
/// client that keeps its session until the server gives it another ([`Renewal::WhenHalfSpent`])
/// offers a copy each time, so the one it keeps stays resumable.
pub fn session_to_offer(session: &SslSessionRef) -> Option<SslSession> {
    // SAFETY: the session is alive; SSL_SESSION_dup returns a new object we own, or null.
    unsafe {
        let copy = SSL_SESSION_dup(session.as_ptr());
        (!copy.is_null()).then(|| SslSession::from_ptr(copy))
    }
}

extern "C" {
    fn SSL_has_pending(ssl: *const openssl_sys::SSL) -> c_int;
}

/// Whether OpenSSL holds bytes of `ssl`'s peer not yet read by the application: a record
/// decrypted and not read, or (with read-ahead) bytes read from the socket and not yet
/// processed. A socket that looks quiet is quiet only if this is `false` too.
pub fn has_pending(ssl: &SslRef) -> bool {
    // SAFETY: the SSL is alive; SSL_has_pending only reads it.
    unsafe { SSL_has_pending(ssl.as_ptr()) == 1 }
}

/// The suite the server chose: the current one, or below TLS 1.3 the one pending until the
/// handshake finishes (`None` before the server's hello).
pub fn chosen_cipher(ssl: &SslRef) -> Option<&openssl::ssl::SslCipherRef> {
    ssl.current_cipher().or_else(|| {
        // SAFETY: the cipher is a static OpenSSL object; the borrow ties it to the SSL.
        unsafe {
            let cipher = SSL_get_pending_cipher(ssl.as_ptr());
            (!cipher.is_null()).then(|| {
                openssl::ssl::SslCipherRef::from_ptr(cipher as *mut openssl_sys::SSL_CIPHER)
            })
        }
    })
}

/// `SSL_CTRL_GET_NEGOTIATED_GROUP` (OpenSSL 3.0 and later).
const SSL_CTRL_GET_NEGOTIATED_GROUP: c_int = 134;
const SSL_CTRL_GET_PEER_TMP_KEY: c_int = 109;

/// Frees the key share the peer sent, which OpenSSL keeps until `SSL_free` though a finished
/// TLS 1.3 handshake never reads it again (it is not part of the session, and TLS 1.3 has no
/// renegotiation). For X25519MLKEM768 that is the client's ML-KEM-768 encapsulation key with
/// its expanded matrix: about 7 KiB of a held connection's 29 KiB in OpenSSL, which has no call
/// to free it. Returns whether there was a key to free.
///
/// How: `SSL_get_peer_tmp_key` lends a reference to the key (`s3.peer_tmp`), and
/// `EVP_PKEY_set_type(key, EVP_PKEY_NONE)` frees its key data before it fails to find a method
/// for "no type". The shell stays with OpenSSL's reference, empty, and `SSL_free` frees it as
/// before. The failure's error is popped, so the thread's error queue is as it was.
///
/// Only once a TLS 1.3 handshake has finished (checked; otherwise nothing is touched): below
/// TLS 1.3 the key is not the peer's share, and mid-handshake the server still needs it.
pub fn release_peer_key_share(ssl: &SslRef) -> bool {
    if !ssl.is_init_finished() || ssl.version_str() != "TLSv1.3" {
        return false;
    }
    let mut key: *mut openssl_sys::EVP_PKEY = std::ptr::null_mut();
    // SAFETY: `ssl` is live for the borrow. The ctrl stores an up-referenced key or nothing;
    // the key is emptied (its data freed, the shell kept) and our reference dropped. Nothing
    // of OpenSSL's reads `s3.peer_tmp` after a TLS 1.3 handshake but `SSL_get_peer_tmp_key`
    // and `SSL_free`, and both take an empty key.
    unsafe {
        let found = SSL_ctrl(
            ssl.as_ptr(),
            SSL_CTRL_GET_PEER_TMP_KEY,
            0,
            &mut key as *mut _ as *mut std::ffi::c_void,
        );
        if found != 1 || key.is_null() {
            return false;
        }
        ERR_set_mark();
        EVP_PKEY_set_type(key, 0 /* EVP_PKEY_NONE */);
        ERR_pop_to_mark();
        openssl_sys::EVP_PKEY_free(key);
    }
    true
}

/// The key-exchange group a finished handshake used (`X25519MLKEM768`, `x25519`,
/// `secp256r1`, ...), or `None` for RSA key exchange (or no handshake yet). The name is
/// copied out of OpenSSL at once and interned: the distinct names are few.
pub fn negotiated_group(ssl: &SslRef) -> Option<&'static str> {
    // Below TLS 1.3 only an (EC)DHE suite has a group; OpenSSL may report a stale one
    // otherwise.
    let tls13 = ssl.version_str() == "TLSv1.3";
    let ephemeral = ssl.current_cipher().is_some_and(|c| {
        ["ECDHE", "DHE", "EDH"]
            .iter()
            .any(|k| c.name().starts_with(k))
    });
    if !tls13 && !ephemeral {
        return None;
    }
    let ssl = ssl.as_ptr();
    // SAFETY: `ssl` is a live SSL for the duration of the borrow; both calls only read it,
    // and the name is copied before the borrow ends.
    let name = unsafe {
        let id = SSL_ctrl(ssl, SSL_CTRL_GET_NEGOTIATED_GROUP, 0, std::ptr::null_mut());
        if id <= 0 {
            return None;
        }
        let name = SSL_group_to_name(ssl, id as c_int);
        if name.is_null() {
            return None;
        }
        CStr::from_ptr(name).to_string_lossy().into_owned()
    };
    Some(intern(&name))
}

/// A `'static` copy of a group name; past a few dozen distinct names, `other`.
fn intern(name: &str) -> &'static str {
    use std::collections::BTreeSet;
    use std::sync::{Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<BTreeSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(known) = names.get(name) {
        return known;
    }
    if names.len() >= 64 {
        return "other";
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.insert(leaked);
    leaked
}

/// The TLS <= 1.2 and 1.3 cipher suites a context enables, by OpenSSL name, in its order.
pub fn enabled_ciphers(context: &SslContextRef) -> Vec<String> {
    // SAFETY: the stack belongs to the context, which the borrow keeps alive; it is only read.
    unsafe {
        let stack = SSL_CTX_get_ciphers(context.as_ptr());
        if stack.is_null() {
            return Vec::new();
        }
        (0..OPENSSL_sk_num(stack))
            .filter_map(|index| {
                let cipher = OPENSSL_sk_value(stack, index) as *const openssl_sys::SSL_CIPHER;
                let name = SSL_CIPHER_get_name(cipher);
                (!name.is_null()).then(|| CStr::from_ptr(name).to_string_lossy().into_owned())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_is_renewed_when_the_listener_and_its_age_say() {
        use Renewal::{EveryResumption as Every, WhenHalfSpent as Half};
        const USE: c_int = TICKET_RETURN_USE;
        const RENEW: c_int = TICKET_RETURN_USE_RENEW;
        #[rustfmt::skip]
        let table: &[(c_int, bool, Renewal, i64, i64, c_int)] = &[
            // status              tls13  renewal age   lifetime  answer
            // TLS 1.2 tickets of the current key are used again, on every listener.
            (TICKET_SUCCESS,       false, Every, 0,    7200, USE),
            (TICKET_SUCCESS,       false, Half,  7000, 7200, USE),
            // TLS 1.3 on the console: a new ticket every time.
            (TICKET_SUCCESS,       true,  Every, 0,    7200, RENEW),
            // TLS 1.3 for agents: kept until half its lifetime is spent.
            (TICKET_SUCCESS,       true,  Half,  0,    7200, USE),
            (TICKET_SUCCESS,       true,  Half,  3599, 7200, USE),
            (TICKET_SUCCESS,       true,  Half,  3600, 7200, RENEW),
            (TICKET_SUCCESS,       true,  Half,  7200, 7200, RENEW),
            // A clock that went back makes a ticket look young: used (its lifetime still ends it).
            (TICKET_SUCCESS,       true,  Half,  -50,  7200, USE),
            // No lifetime known: renewed.
            (TICKET_SUCCESS,       true,  Half,  0,    0,    RENEW),
            // The previous key's tickets are always renewed.
            (TICKET_SUCCESS_RENEW, true,  Half,  0,    7200, RENEW),
            (TICKET_SUCCESS_RENEW, false, Half,  0,    7200, RENEW),
            (TICKET_SUCCESS_RENEW, true,  Every, 0,    7200, RENEW),
            // What OpenSSL does with no callback.
            (TICKET_EMPTY,         true,  Half,  0,    0,    TICKET_RETURN_IGNORE_RENEW),
            (TICKET_NO_DECRYPT,    false, Half,  0,    0,    TICKET_RETURN_IGNORE_RENEW),
            (TICKET_NONE,          true,  Every, 0,    0,    TICKET_RETURN_IGNORE),
            (0,                    true,  Half,  0,    7200, TICKET_RETURN_ABORT),
            (1,                    true,  Half,  0,    7200, TICKET_RETURN_ABORT),
            (99,                   true,  Half,  0,    7200, TICKET_RETURN_ABORT),
        ];
        for &(status, tls13, renewal, age, lifetime, answer) in table {
            assert_eq!(
                ticket_answer(status, tls13, renewal, age, lifetime),
                answer,
                "status {status}, tls13 {tls13}, {renewal:?}, age {age} of {lifetime}"
            );
        }
    }
}
