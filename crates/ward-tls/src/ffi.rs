//! The few OpenSSL calls the `openssl` crate does not wrap, declared for every OpenSSL from 3.0
//! on (the vendored 3.5 and a system 3.0 alike). Each has a safe wrapper here; nothing else in
//! ward calls them.

use std::ffi::{c_char, c_int, CStr};

use foreign_types::ForeignTypeRef;
use openssl::ssl::{SslContextRef, SslRef};

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

/// Makes a context encrypt and accept session tickets with the process's [`TicketKeys`].
pub fn use_ticket_keys(context: &SslContextRef) -> bool {
    // SAFETY: installs a callback with the signature OpenSSL 3 expects; the context is alive.
    unsafe { SSL_CTX_set_tlsext_ticket_key_evp_cb(context.as_ptr(), Some(ticket_callback)) == 1 }
}

/// OpenSSL's ticket key callback (see `SSL_CTX_set_tlsext_ticket_key_evp_cb(3)`): 1 to use
/// the current key, 2 to accept a ticket and renew it (one of the previous key, or any under
/// TLS 1.3), 0 for a key it does not know (a full handshake), -1 on failure.
unsafe extern "C" fn ticket_callback(
    ssl: *mut openssl_sys::SSL,
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
        // TLS 1.3 tickets are for one use (RFC 8446, appendix C.4): a resumption that is not
        // given a new one leaves the agent nothing to resume with next time, and every other
        // check-in would be a full handshake. OpenSSL sends one only when told to renew.
        let tls13 = !ssl.is_null() && openssl_sys::SSL_version(ssl) == openssl_sys::TLS1_3_VERSION;
        if name == &keys.current[..16] {
            (keys.current, if tls13 { 2 } else { 1 })
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
