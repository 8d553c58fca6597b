//! The few OpenSSL calls the `openssl` crate does not wrap, declared for every OpenSSL from 3.0
//! on (the vendored 3.5 and a system 3.0 alike). Each has a safe wrapper here; nothing else in
//! ward calls them.

use std::ffi::{c_char, c_int, CStr};

use foreign_types::ForeignTypeRef;
use openssl::ssl::{SslContextRef, SslRef};

use openssl_sys::{OPENSSL_sk_num, OPENSSL_sk_value, SSL_CIPHER_get_name, SSL_ctrl, OPENSSL_STACK};

extern "C" {
    fn SSL_group_to_name(ssl: *mut openssl_sys::SSL, id: c_int) -> *const c_char;
    fn SSL_CTX_get_ciphers(ctx: *const openssl_sys::SSL_CTX) -> *mut OPENSSL_STACK;
}

/// `SSL_CTRL_SET_TLSEXT_TICKET_KEYS`.
const SSL_CTRL_SET_TLSEXT_TICKET_KEYS: c_int = 59;

/// The length of a session ticket key: 16 bytes of name, 32 of HMAC key, 32 of AES key.
pub const TICKET_KEY_LEN: usize = 80;

/// Makes a context encrypt and accept session tickets with `key` instead of a random key of
/// its own, so tickets survive a restart (and can be shared by the servers of a site).
pub fn set_ticket_key(context: &SslContextRef, key: &[u8; TICKET_KEY_LEN]) -> bool {
    // SAFETY: OpenSSL copies the 80 bytes; the context is alive for the borrow.
    unsafe {
        openssl_sys::SSL_CTX_ctrl(
            context.as_ptr(),
            SSL_CTRL_SET_TLSEXT_TICKET_KEYS,
            TICKET_KEY_LEN as std::ffi::c_long,
            key.as_ptr() as *mut std::ffi::c_void,
        ) == 1
    }
}

/// `SSL_CTRL_GET_NEGOTIATED_GROUP` (OpenSSL 3.0 and later).
const SSL_CTRL_GET_NEGOTIATED_GROUP: c_int = 134;

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
