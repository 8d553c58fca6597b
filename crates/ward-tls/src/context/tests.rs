use super::*;
use crate::conf::listener_conf;
use crate::ffi::{set_ticket_keys, use_ticket_keys, Renewal, TicketKeys, TICKET_KEY_LEN};
use crate::pki;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

/// The ticket keys are the process's: a test that sets them holds this while it runs, or a
/// test running alongside could change them under it.
fn ticket_keys_held() -> MutexGuard<'static, ()> {
    static HELD: Mutex<()> = Mutex::new(());
    HELD.lock().unwrap_or_else(|p| p.into_inner())
}

struct Fixture {
    dir: tempfile::TempDir,
    ca_pem: Vec<u8>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::new_ca("ward test CA").unwrap();
    let server = pki::new_server_cert(&ca, &["localhost"], &[Ipv4Addr::LOCALHOST.into()]).unwrap();
    std::fs::write(dir.path().join("server.pem"), server.cert_pem().unwrap()).unwrap();
    std::fs::write(dir.path().join("server.key"), server.key_pem().unwrap()).unwrap();
    Fixture {
        ca_pem: ca.cert_pem().unwrap(),
        dir,
    }
}

fn policy(words: &str) -> TlsPolicy {
    let text = format!(
        "SSLProtocol {words}\nSSLCertificateFile server.pem\nSSLCertificateKeyFile server.key\n"
    );
    listener_conf("test.conf", &text).policy.unwrap()
}

/// A loopback listener with `context` for `connections` handshakes, each closed cleanly.
fn serve(
    context: SslContext,
    connections: usize,
) -> (std::net::SocketAddr, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        for _ in 0..connections {
            let (stream, _) = listener.accept().unwrap();
            let ssl = openssl::ssl::Ssl::new(&context).unwrap();
            if let Ok(mut tls) = ssl.accept(stream) {
                let _ = tls.shutdown();
            }
        }
    });
    (address, server)
}

/// One connection to `address` resuming `session`, read to the server's close (TLS 1.3
/// tickets come after the handshake) and closed cleanly (OpenSSL spoils the session of a
/// connection dropped without close_notify): (reused, the session it leaves).
fn connect_resuming(
    connector: &openssl::ssl::SslConnector,
    address: std::net::SocketAddr,
    session: Option<&openssl::ssl::SslSession>,
) -> (bool, openssl::ssl::SslSession) {
    use std::io::Read;
    let mut config = connector.configure().unwrap();
    if let Some(session) = session {
        // A copy, as agents offer: the session kept stays resumable.
        let copy = crate::ffi::session_to_offer(session).unwrap();
        unsafe { config.set_session(&copy).unwrap() };
    }
    let mut tls = config
        .connect("localhost", TcpStream::connect(address).unwrap())
        .unwrap();
    let _ = tls.read(&mut [0u8; 16]);
    let _ = tls.shutdown();
    (
        tls.ssl().session_reused(),
        tls.ssl().session().unwrap().to_owned(),
    )
}

/// A client that trusts the fixture's CA.
fn ca_connector(fixture: &Fixture) -> openssl::ssl::SslConnector {
    build_connector(&ClientTls {
        min: None,
        max: None,
        verification: ServerVerification::Ca(fixture.ca_pem.clone()),
        cipher_list: None,
    })
    .unwrap()
}

/// Serves one handshake with `policy` and returns the version a client capped at `max`
/// negotiated, or `None` when the handshake failed.
fn negotiate(fixture: &Fixture, policy: &TlsPolicy, client: ClientTls) -> Option<String> {
    let context = build_acceptor(policy, fixture.dir.path()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let ssl = openssl::ssl::Ssl::new(&context).unwrap();
        ssl.accept(stream).map(|_| ()).is_ok()
    });
    let connector = build_connector(&client).unwrap();
    let stream = TcpStream::connect(address).unwrap();
    let result = connector
        .connect("localhost", stream)
        .ok()
        .map(|tls| tls.ssl().version_str().to_string());
    let _ = server.join();
    result
}

#[test]
fn acceptor_serves_exactly_the_policy_range() {
    let fixture = fixture();
    let cases = [
        // (SSLProtocol, client max, negotiated)
        ("all -SSLv2 -SSLv3", TlsVersion::Tls1_0, Some("TLSv1")),
        ("all -SSLv2 -SSLv3", TlsVersion::Tls1_1, Some("TLSv1.1")),
        ("all -SSLv2 -SSLv3", TlsVersion::Tls1_3, Some("TLSv1.3")),
        (
            "all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1",
            TlsVersion::Tls1_0,
            None,
        ),
        (
            "all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1",
            TlsVersion::Tls1_1,
            None,
        ),
        (
            "all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1",
            TlsVersion::Tls1_2,
            Some("TLSv1.2"),
        ),
        ("TLSv1.2", TlsVersion::Tls1_3, Some("TLSv1.2")),
        ("all -TLSv1.1", TlsVersion::Tls1_0, None),
        ("TLSv1", TlsVersion::Tls1_3, Some("TLSv1")),
    ];
    for (words, max, expected) in cases {
        let client = ClientTls {
            min: None,
            max: Some(max),
            verification: ServerVerification::Ca(fixture.ca_pem.clone()),
            cipher_list: None,
        };
        let negotiated = negotiate(&fixture, &policy(words), client);
        assert_eq!(
            negotiated.as_deref(),
            expected,
            "SSLProtocol {words}, client max {max}"
        );
    }
}

#[test]
fn explicit_seclevel_is_respected() {
    // With @SECLEVEL=1 named by the operator, OpenSSL 3 refuses TLSv1 even though it is in
    // the range: ward does not override an explicit choice.
    let fixture = fixture();
    let text = "SSLProtocol all\nSSLCipherSuite DEFAULT:@SECLEVEL=1\n\
                SSLCertificateFile server.pem\nSSLCertificateKeyFile server.key\n";
    let policy = listener_conf("t", text).policy.unwrap();
    assert_eq!(policy.forced_security_level(), None);
    let client = ClientTls {
        min: None,
        max: Some(TlsVersion::Tls1_0),
        verification: ServerVerification::None,
        cipher_list: None,
    };
    assert_eq!(negotiate(&fixture, &policy, client), None);
}

#[test]
fn verification_against_another_ca_fails() {
    let fixture = fixture();
    let other = pki::new_ca("someone else").unwrap();
    let client = ClientTls {
        min: None,
        max: None,
        verification: ServerVerification::Ca(other.cert_pem().unwrap()),
        cipher_list: None,
    };
    assert_eq!(negotiate(&fixture, &policy("all"), client), None);
}

#[test]
fn setup_errors_name_the_directive() {
    let fixture = fixture();
    let text = "SSLProtocol all\nSSLCipherSuite NOSUCHCIPHER\n\
                SSLCertificateFile server.pem\nSSLCertificateKeyFile server.key\n";
    let policy = listener_conf("x.conf", text).policy.unwrap();
    let error = check_policy(&policy).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("x.conf:2: SSLCipherSuite: OpenSSL rejects the cipher list 'NOSUCHCIPHER:!aNULL:!eNULL:!EXP'"),
        "{error}"
    );
    // A missing file is said in an admin's words, with its path, not as an OpenSSL stack.
    let text = "SSLCertificateFile missing.pem\n";
    let policy = listener_conf("y.conf", text).policy.unwrap();
    let error = build_acceptor(&policy, fixture.dir.path()).unwrap_err();
    assert!(
        error.to_string().ends_with("missing.pem': no such file"),
        "{error}"
    );
    let text = "SSLCipherSuite TLSv1.3 NOPE\n";
    let policy = listener_conf("z.conf", text).policy.unwrap();
    let error = check_policy(&policy).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("z.conf:1: SSLCipherSuite: OpenSSL rejects the TLSv1.3"),
        "{error}"
    );
}

#[test]
fn resumption_follows_the_session_directives() {
    let fixture = fixture();
    // Two connections from one client session: the second resumes only when the listener
    // allows it.
    let resumed = |extra: &str| {
        let text = format!(
            "SSLProtocol TLSv1.2\n{extra}\nSSLCertificateFile server.pem\nSSLCertificateKeyFile server.key\n"
        );
        let policy = listener_conf("t", &text).policy.unwrap();
        let context = build_acceptor(&policy, fixture.dir.path()).unwrap();
        let (address, server) = serve(context, 2);
        let connector = ca_connector(&fixture);
        let mut session: Option<openssl::ssl::SslSession> = None;
        let mut reused = false;
        for _ in 0..2 {
            let mut config = connector.configure().unwrap();
            if let Some(session) = &session {
                unsafe { config.set_session(session).unwrap() };
            }
            let mut tls = config
                .connect("localhost", TcpStream::connect(address).unwrap())
                .unwrap();
            reused = tls.ssl().session_reused();
            session = tls.ssl().session().map(|s| s.to_owned());
            let _ = tls.shutdown();
        }
        server.join().unwrap();
        reused
    };
    assert!(resumed(""));
    assert!(
        resumed("SSLSessionTickets off"),
        "session cache alone resumes"
    );
    assert!(!resumed("SSLSessionTickets off\nSSLSessionCache none"));
}

#[test]
fn rotated_ticket_keys_still_accept_the_previous_key_and_no_older() {
    let _keys = ticket_keys_held();
    let fixture = fixture();
    // Tickets only: no server-side session cache to resume from.
    let text = "SSLProtocol TLSv1.2\nSSLSessionCache none\nSSLCertificateFile server.pem\n\
                SSLCertificateKeyFile server.key\n";
    let policy = listener_conf("t", text).policy.unwrap();
    let context = build_acceptor(&policy, fixture.dir.path()).unwrap();
    assert!(use_ticket_keys(&context, Renewal::WhenHalfSpent));
    let key = |byte: u8| [byte; TICKET_KEY_LEN];
    set_ticket_keys(TicketKeys {
        current: key(1),
        previous: None,
    });
    let (address, server) = serve(context, 5);
    let connector = ca_connector(&fixture);
    let connect =
        |session: Option<&openssl::ssl::SslSession>| connect_resuming(&connector, address, session);
    let (reused, first) = connect(None);
    assert!(!reused);
    // Rotated: the previous key still decrypts, and the ticket is renewed under the new one.
    set_ticket_keys(TicketKeys {
        current: key(2),
        previous: Some(key(1)),
    });
    let (reused, renewed) = connect(Some(&first));
    assert!(reused, "a ticket of the previous key resumes");
    // Rotated again: the first key is gone, its ticket means a full handshake.
    set_ticket_keys(TicketKeys {
        current: key(3),
        previous: Some(key(2)),
    });
    let (reused, _) = connect(Some(&first));
    assert!(
        !reused,
        "a ticket of a key two rotations old does not resume"
    );
    let (reused, _) = connect(Some(&renewed));
    assert!(reused, "the renewed ticket resumes");
    // Unknown keys altogether: a full handshake, never a failure.
    set_ticket_keys(TicketKeys {
        current: key(4),
        previous: None,
    });
    let (reused, _) = connect(Some(&renewed));
    assert!(!reused);
    server.join().unwrap();
}

/// A client that counts the sessions (tickets) the server gives it.
fn counting_connector(fixture: &Fixture) -> (openssl::ssl::SslConnector, Arc<AtomicUsize>) {
    let given = Arc::new(AtomicUsize::new(0));
    let mut builder = connector_builder(&ClientTls {
        min: None,
        max: None,
        verification: ServerVerification::Ca(fixture.ca_pem.clone()),
        cipher_list: None,
    })
    .unwrap();
    let count = given.clone();
    builder.set_new_session_callback(move |_, _| {
        count.fetch_add(1, Ordering::SeqCst);
    });
    (builder.build(), given)
}

/// A TLS 1.3 listener with tickets only, lifetime `lifetime` seconds, its tickets renewed as
/// `renewal` says, for `connections` handshakes.
fn tls13_ticket_listener(
    fixture: &Fixture,
    renewal: Renewal,
    lifetime: i64,
    connections: usize,
) -> (std::net::SocketAddr, thread::JoinHandle<()>) {
    let text = "SSLProtocol TLSv1.3\nSSLSessionCache none\nSSLCertificateFile server.pem\n\
                SSLCertificateKeyFile server.key\n";
    let policy = listener_conf("t", text).policy.unwrap();
    let context = build_acceptor(&policy, fixture.dir.path()).unwrap();
    extern "C" {
        fn SSL_CTX_set_timeout(
            ctx: *mut openssl_sys::SSL_CTX,
            seconds: std::ffi::c_long,
        ) -> std::ffi::c_long;
    }
    // SAFETY: the context is alive and not yet shared.
    unsafe { SSL_CTX_set_timeout(foreign_types::ForeignType::as_ptr(&context), lifetime as _) };
    assert!(use_ticket_keys(&context, renewal));
    set_ticket_keys(TicketKeys {
        current: [7; TICKET_KEY_LEN],
        previous: None,
    });
    serve(context, connections)
}

/// The console's listener: a browser uses a TLS 1.3 ticket once, so each resumption leaves a
/// new one that resumes again.
#[test]
fn a_resumed_tls13_connection_leaves_a_ticket_that_resumes_again() {
    let _keys = ticket_keys_held();
    let fixture = fixture();
    let (address, server) = tls13_ticket_listener(&fixture, Renewal::EveryResumption, 7200, 6);
    let (connector, given) = counting_connector(&fixture);
    let connect =
        |session: Option<&openssl::ssl::SslSession>| connect_resuming(&connector, address, session);
    let (reused, mut session) = connect(None);
    assert!(!reused);
    // A browser connects again and again, each time with the ticket the last one left: every
    // one resumes (a server that issues no ticket on resumption makes every other one full).
    for round in 0..5 {
        let (reused, next) = connect(Some(&session));
        assert!(reused, "connection {round} after the first resumes");
        session = next;
    }
    assert_eq!(given.load(Ordering::SeqCst), 6, "one ticket per connection");
    server.join().unwrap();
}

/// The agents' listeners: an agent keeps its session until it is given another, so a young
/// ticket is used again without a new one; once half its lifetime is spent, it is renewed.
#[test]
fn an_agent_keeps_its_tls13_ticket_until_half_its_lifetime_is_spent() {
    let _keys = ticket_keys_held();
    let fixture = fixture();
    let (address, server) = tls13_ticket_listener(&fixture, Renewal::WhenHalfSpent, 4, 5);
    let (connector, given) = counting_connector(&fixture);
    let connect =
        |session: Option<&openssl::ssl::SslSession>| connect_resuming(&connector, address, session);
    let (reused, first) = connect(None);
    assert!(!reused);
    assert_eq!(
        given.load(Ordering::SeqCst),
        1,
        "a full handshake gives a ticket"
    );
    // Within the first second of a 4-second lifetime: used again, no new ticket.
    for round in 0..2 {
        let (reused, _) = connect(Some(&first));
        assert!(reused, "connection {round} with the first ticket resumes");
    }
    assert_eq!(
        given.load(Ordering::SeqCst),
        1,
        "a young ticket is not renewed"
    );
    // Half the lifetime spent: it still resumes, and a new ticket comes with it.
    thread::sleep(std::time::Duration::from_millis(2100));
    let (reused, _) = connect(Some(&first));
    assert!(reused, "a ticket half spent resumes");
    assert_eq!(
        given.load(Ordering::SeqCst),
        2,
        "a ticket half spent is renewed"
    );
    // Past its lifetime: a full handshake, and a new ticket.
    thread::sleep(std::time::Duration::from_millis(2100));
    let (reused, _) = connect(Some(&first));
    assert!(!reused, "a ticket past its lifetime does not resume");
    assert_eq!(given.load(Ordering::SeqCst), 3);
    server.join().unwrap();
}

/// A session resumes on a listener rebuilt from the same settings (a reload that changed
/// nothing), and not on one whose settings changed: then the client does a full handshake and
/// sees what the listener serves now.
#[test]
fn sessions_resume_only_under_the_settings_that_made_them() {
    let _keys = ticket_keys_held();
    let fixture = fixture();
    let text =
        "SSLProtocol TLSv1.3\nSSLCertificateFile server.pem\nSSLCertificateKeyFile server.key\n";
    let acceptor = |text: &str| {
        let policy = listener_conf("t", text).policy.unwrap();
        let context = build_acceptor(&policy, fixture.dir.path()).unwrap();
        assert!(use_ticket_keys(&context, Renewal::WhenHalfSpent));
        context
    };
    set_ticket_keys(TicketKeys {
        current: [9; TICKET_KEY_LEN],
        previous: None,
    });
    let connector = ca_connector(&fixture);
    let connect = |context: SslContext, session: Option<&openssl::ssl::SslSession>| {
        let (address, server) = serve(context, 1);
        let resumed = connect_resuming(&connector, address, session);
        server.join().unwrap();
        resumed
    };
    let (_, first) = connect(acceptor(text), None);
    let (reused, second) = connect(acceptor(text), Some(&first));
    assert!(reused, "the same settings, rebuilt: resumed");
    let changed = format!("{text}SSLHonorCipherOrder on\n");
    let (reused, _) = connect(acceptor(&changed), Some(&second));
    assert!(!reused, "changed settings: a full handshake");
}
