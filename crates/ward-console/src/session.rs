//! The console's login session and its CSRF tokens, pure: cookies read and written, the token
//! each form carries derived from the session, and where a login may send the browser next.
//!
//! - The session cookie holds the token `operations::login` made (the store keeps only its
//!   SHA-256), `__Host-` prefixed, `Secure; HttpOnly; SameSite=Strict; Path=/`.
//! - A form's CSRF token is `HMAC-SHA256(session token, "ward-console-csrf-v1")`: only a page
//!   the session was shown can carry it (the cookie is `HttpOnly`, and another origin cannot
//!   read the page), and it ends with the session.
//! - The login form, before there is a session, uses a double-submit token: a random value in
//!   a `__Host-` cookie and the same value in the form.

use hyper::header::{self, HeaderMap};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;

/// The session cookie.
pub const SESSION_COOKIE: &str = "__Host-ward-session";
/// The login form's double-submit cookie.
pub const LOGIN_COOKIE: &str = "__Host-ward-login";

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

/// A `Set-Cookie` value for a console cookie: `max_age` seconds, 0 to remove it.
pub fn set_cookie(name: &str, value: &str, max_age: u64) -> String {
    format!("{name}={value}; Path=/; Max-Age={max_age}; Secure; HttpOnly; SameSite=Strict")
}

/// The CSRF token of every form a session is shown.
pub fn csrf_token(session_token: &str) -> String {
    let key = PKey::hmac(session_token.as_bytes()).expect("an HMAC key from any bytes");
    let mut signer = Signer::new(MessageDigest::sha256(), &key).expect("HMAC-SHA256");
    signer.update(b"ward-console-csrf-v1").expect("HMAC update");
    ward_proto::hex(&signer.sign_to_vec().expect("HMAC sign"))
}

/// Whether `presented` is the session's CSRF token (constant time).
pub fn csrf_matches(session_token: &str, presented: Option<&str>) -> bool {
    let expected = csrf_token(session_token);
    presented.is_some_and(|presented| {
        presented.len() == expected.len()
            && openssl::memcmp::eq(presented.as_bytes(), expected.as_bytes())
    })
}

/// Whether a double-submitted login token matches its cookie (constant time; an empty one
/// never does).
pub fn login_token_matches(cookie: Option<&str>, presented: Option<&str>) -> bool {
    match (cookie, presented) {
        (Some(cookie), Some(presented)) => {
            !cookie.is_empty()
                && cookie.len() == presented.len()
                && openssl::memcmp::eq(cookie.as_bytes(), presented.as_bytes())
        }
        _ => false,
    }
}

/// A fresh random token (32 bytes, hex).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    openssl::rand::rand_bytes(&mut bytes).expect("OpenSSL's random bytes");
    ward_proto::hex(&bytes)
}

/// Where a login sends the browser: a path of this console only (never another host, never
/// `//host`, never the admin API), else the dashboard.
pub fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.starts_with("/api/")
        && !next.starts_with("/login")
        && next.len() <= 2048
        && next.chars().all(|c| c.is_ascii_graphic());
    if local {
        next
    } else {
        "/"
    }
}

#[cfg(test)]
mod tests;
