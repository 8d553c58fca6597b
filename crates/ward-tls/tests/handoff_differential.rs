//! `handoff` and `record` against real OpenSSL clients: a server handshakes and talks through
//! OpenSSL, hands its records over mid-connection, frees its SSL object, and goes on with
//! `record::Records` alone, while the client (OpenSSL, as the agents are) notices nothing:
//! data both ways across record boundaries, a key update the client asks for, close_notify
//! both ways. Every TLS 1.2 and 1.3 AEAD suite, full and resumed handshakes, 0-2 tickets.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use foreign_types::ForeignTypeRef;

use openssl::ssl::{
    ErrorCode, Ssl, SslAcceptor, SslConnector, SslContext, SslContextBuilder, SslMethod,
    SslSession, SslStream, SslVerifyMode, SslVersion,
};
use ward_tls::handoff::{self, Refusal};
use ward_tls::record::{self, Received, Records};

extern "C" {
    fn SSL_key_update(ssl: *mut openssl_sys::SSL, kind: std::ffi::c_int) -> std::ffi::c_int;
}

#[derive(Clone, Copy, Debug)]
struct Case {
    version: SslVersion,
    /// A TLS 1.2 cipher list or TLS 1.3 ciphersuite.
    suite: &'static str,
    tickets: usize,
}

const BIG: usize = 40_000;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn server_context(case: Case) -> SslContext {
    let ca = ward_tls::pki::new_ca("handoff test").unwrap();
    let leaf = ward_tls::pki::new_server_cert(&ca, &["localhost"], &[]).unwrap();
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
    builder.set_certificate(&leaf.cert).unwrap();
    builder.set_private_key(&leaf.key).unwrap();
    offer(&mut builder, case);
    builder.set_num_tickets(case.tickets).unwrap();
    handoff::enable(&mut builder);
    builder.build().into_context()
}

fn connector(case: Case) -> SslConnector {
    let mut connector = SslConnector::builder(SslMethod::tls_client()).unwrap();
    connector.set_verify(SslVerifyMode::NONE);
    offer(&mut connector, case);
    connector.build()
}

/// The case's one version and suite, on either side.
fn offer(builder: &mut SslContextBuilder, case: Case) {
    builder.set_min_proto_version(Some(case.version)).unwrap();
    builder.set_max_proto_version(Some(case.version)).unwrap();
    if case.version == SslVersion::TLS1_3 {
        builder.set_ciphersuites(case.suite).unwrap();
    } else {
        builder.set_cipher_list(case.suite).unwrap();
    }
}

/// The client: OpenSSL from start to end. Returns its session and whether it resumed.
fn client(
    case: Case,
    socket: UnixStream,
    session: Option<SslSession>,
) -> (SslSession, bool, Vec<u8>) {
    let mut config = connector(case).configure().unwrap().verify_hostname(false);
    config.set_verify(SslVerifyMode::NONE);
    let mut ssl = config.into_ssl("localhost").unwrap();
    if let Some(session) = &session {
        // SAFETY: the session comes from a connection of the same connector settings.
        unsafe { ssl.set_session(session).unwrap() };
    }
    let mut stream = SslStream::new(ssl, socket).unwrap();
    stream.connect().unwrap();
    let resumed = stream.ssl().session_reused();

    // Through OpenSSL on both sides.
    stream.write_all(b"hello-1").unwrap();
    let mut answer = [0u8; 8];
    stream.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"answer-1");
    let session = stream.ssl().session().unwrap().to_owned();

    // The server has handed over by now.
    stream.write_all(&pattern(BIG, 1)).unwrap();
    let mut big = vec![0u8; BIG];
    stream.read_exact(&mut big).unwrap();
    assert_eq!(
        big,
        pattern(BIG, 2),
        "{case:?}: the server's sealed records"
    );

    if case.version == SslVersion::TLS1_3 {
        // SAFETY: a live, established TLS 1.3 connection; 1 = SSL_KEY_UPDATE_REQUESTED.
        assert_eq!(unsafe { SSL_key_update(stream.ssl().as_ptr(), 1) }, 1);
        stream.write_all(b"after-update").unwrap();
        let mut updated = [0u8; 7];
        stream.read_exact(&mut updated).unwrap();
        assert_eq!(&updated, b"updated");
        stream.write_all(b"new-keys").unwrap();
    }

    stream.write_all(b"last").unwrap();
    // The server's close_notify, then ours.
    let mut rest = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        match stream.ssl_read(&mut buf) {
            Ok(0) => break,
            Ok(n) => rest.extend_from_slice(&buf[..n]),
            Err(e) if e.code() == ErrorCode::ZERO_RETURN => break,
            Err(e) => panic!("{case:?}: client read: {e}"),
        }
    }
    stream.shutdown().unwrap();
    (session, resumed, rest)
}

/// The server's side after the hand-over: its records and socket, and bytes read ahead.
struct HandedOver {
    records: Records,
    socket: UnixStream,
    raw: Vec<u8>,
}

/// Reads and opens records until `want` bytes of application data came, or the peer closed
/// (then what came so far). Answers key updates.
fn read_data(server: &mut HandedOver, want: usize) -> (Vec<u8>, bool) {
    let HandedOver {
        records,
        socket,
        raw,
    } = server;
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(len) = record::record_len(records.version(), raw).unwrap() {
            if raw.len() < len {
                break;
            }
            let mut replies = Vec::new();
            let received = records.receive(&mut raw[..len], &mut replies).unwrap();
            socket.write_all(&replies).unwrap();
            match received {
                Received::Data(range) => data.extend_from_slice(&raw[range]),
                Received::Closed => return (data, true),
                Received::Nothing => {}
            }
            raw.drain(..len);
            if data.len() >= want {
                return (data, false);
            }
        }
        let n = socket.read(&mut chunk).unwrap();
        assert!(n > 0, "the client closed without close_notify");
        raw.extend_from_slice(&chunk[..n]);
    }
}

fn send(server: &mut HandedOver, data: &[u8]) {
    let mut wire = Vec::new();
    server.records.seal_data(data, &mut wire).unwrap();
    server.socket.write_all(&wire).unwrap();
}

/// One connection: OpenSSL for the handshake and the first exchange, then the hand-over.
/// Returns the client's session and whether it resumed.
fn run(case: Case, context: &SslContext, session: Option<SslSession>) -> (SslSession, bool) {
    let (server_end, client_end) = UnixStream::pair().unwrap();
    let client = std::thread::spawn(move || client(case, client_end, session));

    let mut ssl = Ssl::new(context).unwrap();
    handoff::watch(&mut ssl);
    let mut server = SslStream::new(ssl, server_end).unwrap();
    server.accept().unwrap();
    let mut hello = [0u8; 7];
    server.read_exact(&mut hello).unwrap();
    assert_eq!(&hello, b"hello-1");
    server.write_all(b"answer-1").unwrap();

    let records = handoff::take(server.ssl()).unwrap_or_else(|r| panic!("{case:?}: {r:?}"));
    // What OpenSSL counted: the client's Finished (TLS 1.2 only) and hello; the server's
    // Finished (TLS 1.2) or tickets (TLS 1.3), and answer.
    let expected = if case.version == SslVersion::TLS1_3 {
        (1, case.tickets as u64 + 1)
    } else {
        (2, 2)
    };
    let resumed_here = server.ssl().session_reused();
    if !(case.version == SslVersion::TLS1_3 && resumed_here) {
        assert_eq!(records.seqs(), expected, "{case:?}");
    }
    let socket = server.get_ref().try_clone().unwrap();
    // The SSL object goes, without a word on the wire.
    drop(server);
    let mut server = HandedOver {
        records,
        socket,
        raw: Vec::new(),
    };

    let (big, closed) = read_data(&mut server, BIG);
    assert!(!closed);
    assert_eq!(
        big,
        pattern(BIG, 1),
        "{case:?}: the client's records opened"
    );
    send(&mut server, &pattern(BIG, 2));

    if case.version == SslVersion::TLS1_3 {
        let (after, _) = read_data(&mut server, 12);
        assert_eq!(after, b"after-update");
        send(&mut server, b"updated");
        let (new_keys, _) = read_data(&mut server, 8);
        assert_eq!(new_keys, b"new-keys");
    }
    let (last, _) = read_data(&mut server, 4);
    assert_eq!(last, b"last");
    let mut wire = Vec::new();
    server.records.seal_close_notify(&mut wire).unwrap();
    server.socket.write_all(&wire).unwrap();
    let (nothing, closed) = read_data(&mut server, usize::MAX);
    assert!(
        closed && nothing.is_empty(),
        "{case:?}: the client's close_notify"
    );

    let (session, resumed, rest) = client.join().unwrap();
    assert!(rest.is_empty());
    assert_eq!(resumed, resumed_here);
    (session, resumed)
}

#[test]
fn openssl_clients_notice_nothing_when_the_server_hands_its_records_over() {
    let cases = [
        (SslVersion::TLS1_3, "TLS_AES_128_GCM_SHA256"),
        (SslVersion::TLS1_3, "TLS_AES_256_GCM_SHA384"),
        (SslVersion::TLS1_3, "TLS_CHACHA20_POLY1305_SHA256"),
        (SslVersion::TLS1_2, "ECDHE-ECDSA-AES128-GCM-SHA256"),
        (SslVersion::TLS1_2, "ECDHE-ECDSA-AES256-GCM-SHA384"),
        (SslVersion::TLS1_2, "ECDHE-ECDSA-CHACHA20-POLY1305"),
    ];
    for (version, suite) in cases {
        for tickets in [0, 1, 2] {
            let case = Case {
                version,
                suite,
                tickets,
            };
            let context = server_context(case);
            let (session, resumed) = run(case, &context, None);
            assert!(!resumed);
            // Resumed from that session's ticket, when there was one.
            let (_, resumed) = run(case, &context, Some(session));
            let expect_resumed = tickets > 0 || version == SslVersion::TLS1_2;
            assert_eq!(resumed, expect_resumed, "{case:?}");
        }
    }
}

/// A handshake through OpenSSL on both sides, with `watch` or not; the client writes
/// `first` and then waits for the server to close.
fn established(
    case: Case,
    watched: bool,
    first: &'static [u8],
) -> (SslStream<UnixStream>, std::thread::JoinHandle<()>) {
    let context = server_context(case);
    let (server_end, client_end) = UnixStream::pair().unwrap();
    let client = std::thread::spawn(move || {
        let mut config = connector(case).configure().unwrap().verify_hostname(false);
        config.set_verify(SslVerifyMode::NONE);
        let mut stream = config.connect("localhost", client_end).unwrap();
        // The server may already have gone (the cases that do not read).
        let _ = stream.write_all(first);
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    });
    let mut ssl = Ssl::new(&context).unwrap();
    if watched {
        handoff::watch(&mut ssl);
    }
    let mut server = SslStream::new(ssl, server_end).unwrap();
    server.accept().unwrap();
    (server, client)
}

#[test]
fn the_hand_over_is_refused_whenever_it_could_not_be_exact() {
    let tls13 = Case {
        version: SslVersion::TLS1_3,
        suite: "TLS_AES_128_GCM_SHA256",
        tickets: 1,
    };
    // Not watched from the start.
    let (server, client) = established(tls13, false, b"x");
    assert_eq!(
        handoff::take(server.ssl()).unwrap_err(),
        Refusal::NotWatched
    );
    drop(server);
    client.join().unwrap();

    // OpenSSL holds part of a record it has read.
    let (mut server, client) = established(tls13, true, b"two bytes");
    let mut one = [0u8; 1];
    server.read_exact(&mut one).unwrap();
    assert_eq!(handoff::take(server.ssl()).unwrap_err(), Refusal::Pending);
    let mut rest = [0u8; 8];
    server.read_exact(&mut rest).unwrap();
    assert!(handoff::take(server.ssl()).is_ok(), "once drained");
    drop(server);
    client.join().unwrap();

    // A suite this record layer does not have: TLS 1.2 with CBC.
    let cbc = Case {
        version: SslVersion::TLS1_2,
        suite: "ECDHE-ECDSA-AES128-SHA256",
        tickets: 1,
    };
    let (server, client) = established(cbc, true, b"x");
    assert_eq!(handoff::take(server.ssl()).unwrap_err(), Refusal::Suite);
    drop(server);
    client.join().unwrap();

    // The server asked OpenSSL for a key update: it is pending, then it went by.
    let (mut server, client) = established(tls13, true, b"x");
    // SAFETY: a live, established TLS 1.3 connection; 0 = SSL_KEY_UPDATE_NOT_REQUESTED.
    assert_eq!(unsafe { SSL_key_update(server.ssl().as_ptr(), 0) }, 1);
    // (OpenSSL runs its post-handshake state machine until the update is out.)
    let refused = handoff::take(server.ssl()).unwrap_err();
    assert!(
        matches!(refused, Refusal::Pending | Refusal::NotEstablished),
        "{refused:?}"
    );
    server.write_all(b"y").unwrap();
    assert_eq!(
        handoff::take(server.ssl()).unwrap_err(),
        Refusal::PostHandshake
    );
    drop(server);
    client.join().unwrap();
}
