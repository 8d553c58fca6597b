//! `ffi::release_peer_key_share` against real OpenSSL handshakes: what it frees, measured by
//! an allocator that counts OpenSSL's bytes, and that the connection works on as before.
//!
//! Its own test binary with one test: OpenSSL takes an allocator only before its first
//! allocation, so the counting allocator is installed before anything else touches OpenSSL.

use std::ffi::{c_char, c_int, c_void};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicIsize, Ordering};

use openssl::ssl::{
    SslAcceptor, SslConnector, SslMethod, SslMode, SslStream, SslVerifyMode, SslVersion,
};

static HELD: AtomicIsize = AtomicIsize::new(0);

extern "C" {
    fn malloc(size: usize) -> *mut c_void;
    fn realloc(pointer: *mut c_void, size: usize) -> *mut c_void;
    fn free(pointer: *mut c_void);
    fn malloc_usable_size(pointer: *mut c_void) -> usize;
}

unsafe fn usable(pointer: *mut c_void) -> isize {
    if pointer.is_null() {
        0
    } else {
        malloc_usable_size(pointer) as isize
    }
}

unsafe extern "C" fn counting_malloc(size: usize, _: *const c_char, _: c_int) -> *mut c_void {
    let pointer = malloc(size);
    HELD.fetch_add(usable(pointer), Ordering::SeqCst);
    pointer
}

unsafe extern "C" fn counting_realloc(
    pointer: *mut c_void,
    size: usize,
    _: *const c_char,
    _: c_int,
) -> *mut c_void {
    let before = usable(pointer);
    let moved = realloc(pointer, size);
    if !moved.is_null() || size == 0 {
        HELD.fetch_add(usable(moved) - before, Ordering::SeqCst);
    }
    moved
}

unsafe extern "C" fn counting_free(pointer: *mut c_void, _: *const c_char, _: c_int) {
    HELD.fetch_sub(usable(pointer), Ordering::SeqCst);
    free(pointer)
}

struct Handshaken {
    server: SslStream<UnixStream>,
    client: std::thread::JoinHandle<Vec<u8>>,
}

/// A handshake over a socket pair between a server and a client that both offer only
/// `groups` at `version`. The client then waits to read one message and answers it.
fn handshake(groups: &str, version: SslVersion) -> Handshaken {
    let ca = ward_tls::pki::new_ca("peer key share test").unwrap();
    let leaf = ward_tls::pki::new_server_cert(&ca, &["localhost"], &[]).unwrap();
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
    acceptor.set_certificate(&leaf.cert).unwrap();
    acceptor.set_private_key(&leaf.key).unwrap();
    acceptor.set_groups_list(groups).unwrap();
    acceptor.set_min_proto_version(Some(version)).unwrap();
    acceptor.set_max_proto_version(Some(version)).unwrap();
    // No tickets: the client would read them (and allocate) while the server measures.
    acceptor.set_num_tickets(0).unwrap();
    acceptor.set_mode(SslMode::RELEASE_BUFFERS);
    let acceptor = acceptor.build();
    let mut connector = SslConnector::builder(SslMethod::tls_client()).unwrap();
    connector.set_verify(SslVerifyMode::NONE);
    connector.set_groups_list(groups).unwrap();
    connector.set_min_proto_version(Some(version)).unwrap();
    connector.set_max_proto_version(Some(version)).unwrap();
    let connector = connector.build();

    let (server_end, client_end) = UnixStream::pair().unwrap();
    let (done, handshaken) = std::sync::mpsc::channel();
    let client = std::thread::spawn(move || {
        let mut stream = connector
            .configure()
            .unwrap()
            .verify_hostname(false)
            .connect("localhost", client_end)
            .unwrap();
        done.send(()).unwrap();
        let mut asked = [0u8; 4];
        stream.read_exact(&mut asked).unwrap();
        stream.write_all(b"pong").unwrap();
        let mut rest = Vec::new();
        // Until the server's close_notify.
        let _ = stream.read_to_end(&mut rest);
        asked.to_vec()
    });
    let server = acceptor.accept(server_end).unwrap();
    handshaken.recv().unwrap();
    Handshaken { server, client }
}

/// The connection carries data both ways after the release, and closes cleanly.
fn talk_and_close(mut handshaken: Handshaken) {
    handshaken.server.write_all(b"ping").unwrap();
    let mut answer = [0u8; 4];
    handshaken.server.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"pong");
    handshaken.server.shutdown().unwrap();
    drop(handshaken.server);
    assert_eq!(handshaken.client.join().unwrap(), b"ping");
}

#[test]
fn releasing_the_peers_key_share_frees_its_ml_kem_key_and_the_connection_works_on() {
    // SAFETY: before any OpenSSL allocation in this process (the only test of this binary);
    // libc's malloc, realloc and free match and are thread-safe.
    let installed = unsafe {
        ward_tls::ffi::set_allocator(ward_tls::ffi::Allocator {
            malloc: counting_malloc,
            realloc: counting_realloc,
            free: counting_free,
        })
    };
    assert!(installed, "OpenSSL allocated before the test");

    // TLS 1.3 with X25519MLKEM768, the agents' default: the client's ML-KEM-768 key.
    let handshaken = handshake("X25519MLKEM768", SslVersion::TLS1_3);
    let before = HELD.load(Ordering::SeqCst);
    assert!(ward_tls::ffi::release_peer_key_share(
        handshaken.server.ssl()
    ));
    let freed = before - HELD.load(Ordering::SeqCst);
    assert!(
        freed >= 5 * 1024,
        "releasing the ML-KEM key share freed {freed} bytes, expected at least 5 KiB"
    );
    assert!(
        openssl::error::ErrorStack::get().errors().is_empty(),
        "the error queue is left as it was"
    );
    // Twice is harmless: the key is empty and stays.
    ward_tls::ffi::release_peer_key_share(handshaken.server.ssl());
    assert_eq!(openssl::error::ErrorStack::get().errors().len(), 0);
    talk_and_close(handshaken);

    // X25519 alone: little to free, and the connection is as fine.
    let handshaken = handshake("X25519", SslVersion::TLS1_3);
    assert!(ward_tls::ffi::release_peer_key_share(
        handshaken.server.ssl()
    ));
    talk_and_close(handshaken);

    // Below TLS 1.3 the server keeps no share of the client's: nothing is touched.
    // (TLS 1.2 needs P-256 offered too: the curve of the server certificate.)
    let handshaken = handshake("X25519:P-256", SslVersion::TLS1_2);
    let before = HELD.load(Ordering::SeqCst);
    assert!(!ward_tls::ffi::release_peer_key_share(
        handshaken.server.ssl()
    ));
    assert_eq!(HELD.load(Ordering::SeqCst), before);
    talk_and_close(handshaken);
}
