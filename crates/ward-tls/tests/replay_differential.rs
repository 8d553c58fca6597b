//! The exact plan's engine against the real thing: real ClientHellos (ward's OpenSSL with each
//! client profile, the host's `openssl s_client`, `curl` and Python, which run Debian's
//! OpenSSL 3.0, `gnutls-cli` (GnuTLS) and a Java client (JSSE)) are replayed in memory through a listener context, and the verdict must equal
//! what the same context answers over a real socket: served or refused, and for the clients
//! that can finish a handshake here, the version and the suite too. Every proposed change
//! below mixes protocol, cipher, certificate and group settings. 100% agreement: there is no
//! list of exceptions.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use openssl::ssl::{Ssl, SslContext};
use ward_tls::conf::listener_conf;
use ward_tls::context::{build_acceptor, connector_builder, ClientTls, ServerVerification};
use ward_tls::pki::{self, KeyType};
use ward_tls::profile::CLIENT_PROFILES;
use ward_tls::replay::{replay, Verdict};

/// A data dir with an ECDSA and an RSA certificate.
fn certificates() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::new_ca("ward test CA").unwrap();
    let ip = [Ipv4Addr::LOCALHOST.into()];
    for (key_type, name) in [
        (KeyType::EcdsaP256, "server"),
        (KeyType::Rsa2048, "server-rsa"),
    ] {
        let issued = pki::new_server_cert_of(key_type, &ca, &["localhost"], &ip).unwrap();
        std::fs::write(
            dir.path().join(format!("{name}.pem")),
            issued.cert_pem().unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join(format!("{name}.key")),
            issued.key_pem().unwrap(),
        )
        .unwrap();
    }
    dir
}

const BOTH_CERTS: &str = "SSLCertificateFile server.pem\nSSLCertificateKeyFile server.key\n\
                          SSLCertificateFile server-rsa.pem\nSSLCertificateKeyFile server-rsa.key\n";
const ECDSA_ONLY: &str = "SSLCertificateFile server.pem\nSSLCertificateKeyFile server.key\n";

/// The proposed changes: (name, conf lines).
fn proposals() -> Vec<(&'static str, String)> {
    vec![
        ("the default", format!("SSLProtocol all -SSLv2 -SSLv3\n{BOTH_CERTS}")),
        ("TLS 1.2 and later", format!("SSLProtocol all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1\n{BOTH_CERTS}")),
        ("TLS 1.3 only", format!("SSLProtocol TLSv1.3\n{BOTH_CERTS}")),
        (
            "3DES named for XP",
            format!("SSLProtocol all -SSLv2 -SSLv3\nSSLCipherSuite HIGH:DES-CBC3-SHA:!aNULL:!MD5\n{BOTH_CERTS}"),
        ),
        (
            "3DES named, ECDSA certificate only",
            format!("SSLProtocol all -SSLv2 -SSLv3\nSSLCipherSuite HIGH:DES-CBC3-SHA:!aNULL:!MD5\n{ECDSA_ONLY}"),
        ),
        (
            "ECDHE-ECDSA AES-GCM only, TLS 1.2",
            format!("SSLProtocol TLSv1.2\nSSLCipherSuite ECDHE-ECDSA-AES128-GCM-SHA256\n{BOTH_CERTS}"),
        ),
        (
            "X25519 only",
            format!("SSLProtocol all -SSLv2 -SSLv3\nSSLOpenSSLConfCmd Groups X25519\n{BOTH_CERTS}"),
        ),
    ]
}

/// The client profiles' offers, built on ward's OpenSSL: (name, its ClientTls, groups, SNI).
struct OwnClient {
    name: &'static str,
    tls: ClientTls,
    groups: Option<&'static str>,
    sni: bool,
}

fn own_clients() -> Vec<OwnClient> {
    CLIENT_PROFILES
        .iter()
        .map(|p| OwnClient {
            name: p.name,
            tls: p.client_tls(ServerVerification::None),
            groups: p.groups,
            sni: p.sni,
        })
        .chain([OwnClient {
            name: "ward agent --tls-max TLSv1.2",
            tls: ClientTls {
                min: None,
                max: Some(ward_tls::TlsVersion::Tls1_2),
                verification: ServerVerification::None,
                cipher_list: None,
            },
            groups: None,
            sni: true,
        }])
        .collect()
}

fn connector(client: &OwnClient) -> openssl::ssl::SslConnector {
    let mut builder = connector_builder(&client.tls).unwrap();
    if let Some(groups) = client.groups {
        builder.set_groups_list(groups).unwrap();
    }
    builder.build()
}

fn own_hello(client: &OwnClient) -> Vec<u8> {
    let mut config = connector(client).configure().unwrap();
    config.set_use_server_name_indication(client.sni);
    config.set_verify_hostname(false);
    ward_tls::replay::client_hello(config, "localhost")
        .unwrap_or_else(|e| panic!("{}: expected to wait for the server: {e}", client.name))
}

fn outside_hellos() -> Vec<(String, Vec<u8>)> {
    let outside = ward_testkit::peers::outside_clients();
    outside
        .clients
        .iter()
        .map(|(name, connect)| {
            (
                name.clone(),
                ward_testkit::peers::captured_hello(name, connect),
            )
        })
        .collect()
}

/// A real listener with `context` for one connection, on a loopback port.
fn serve_once(context: &SslContext) -> (SocketAddr, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let context = context.clone();
    let server = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let _ = Ssl::new(&context).unwrap().accept(stream);
    });
    (address, server)
}

/// What `context` answers a real socket that sends `hello`: served (a ServerHello record
/// first) or refused (an alert, or nothing).
fn socket_answer(context: &SslContext, hello: &[u8]) -> bool {
    let (address, server) = serve_once(context);
    let mut client = TcpStream::connect(address).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.write_all(hello).unwrap();
    let mut head = [0u8; 6];
    let served = client.read_exact(&mut head).is_ok() && head[0] == 22 && head[5] == 2;
    drop(client);
    server.join().unwrap();
    served
}

/// A real handshake of one of ward's own clients: (version, suite), or `None` if refused.
fn real_handshake(context: &SslContext, client: &OwnClient) -> Option<(String, String)> {
    let (address, server) = serve_once(context);
    let mut config = connector(client).configure().unwrap();
    config.set_use_server_name_indication(client.sni);
    config.set_verify_hostname(false);
    let stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let result = config.connect("localhost", stream).ok().map(|tls| {
        (
            tls.ssl().version_str().to_string(),
            tls.ssl().current_cipher().unwrap().name().to_string(),
        )
    });
    server.join().unwrap();
    result
}

#[test]
fn the_replayed_verdict_is_what_the_listener_answers() {
    let dir = certificates();
    let own = own_clients();
    let own_hellos: Vec<Vec<u8>> = own.iter().map(own_hello).collect();
    let outside = outside_hellos();
    let mut compared = 0;
    let mut served_somewhere = 0;
    let mut refused_somewhere = 0;
    for (proposal, text) in proposals() {
        let policy = listener_conf("proposed.conf", &text)
            .policy
            .unwrap_or_else(|| panic!("{proposal}: the conf does not parse"));
        let context = build_acceptor(&policy, dir.path()).unwrap();
        for (client, hello) in own.iter().zip(&own_hellos) {
            let verdict = replay(&context, hello);
            let real = real_handshake(&context, client);
            match (&verdict, &real) {
                (
                    Verdict::Served {
                        version, cipher, ..
                    },
                    Some((real_version, real_cipher)),
                ) => {
                    assert_eq!(version.name(), real_version, "{proposal} / {}", client.name);
                    assert_eq!(cipher, real_cipher, "{proposal} / {}", client.name);
                    served_somewhere += 1;
                }
                (Verdict::Refused { .. }, None) => refused_somewhere += 1,
                _ => panic!(
                    "{proposal} / {}: the replay says {verdict:?}, the listener {real:?}",
                    client.name
                ),
            }
            assert_eq!(
                verdict.served(),
                socket_answer(&context, hello),
                "{proposal} / {}: the same bytes over a socket",
                client.name
            );
            compared += 1;
        }
        for (client, hello) in &outside {
            let verdict = replay(&context, hello);
            assert_eq!(
                verdict.served(),
                socket_answer(&context, hello),
                "{proposal} / {client}: the replay says {verdict:?}"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, proposals().len() * (own.len() + outside.len()));
    // The table really discriminates: both outcomes occur.
    assert!(
        served_somewhere > 10 && refused_somewhere > 10,
        "{served_somewhere} / {refused_somewhere}"
    );
}

#[test]
fn the_replay_names_the_certificate_and_the_group() {
    let dir = certificates();
    let xp = own_clients()
        .into_iter()
        .find(|c| c.name == "xp-ie8")
        .unwrap();
    let modern = own_clients()
        .into_iter()
        .find(|c| c.name == "modern")
        .unwrap();
    let text = format!(
        "SSLProtocol all -SSLv2 -SSLv3\nSSLCipherSuite HIGH:DES-CBC3-SHA:!aNULL:!MD5\n{BOTH_CERTS}"
    );
    let context = build_acceptor(&listener_conf("p", &text).policy.unwrap(), dir.path()).unwrap();
    match replay(&context, &own_hello(&xp)) {
        Verdict::Served {
            cipher,
            certificate,
            group,
            version,
        } => {
            assert_eq!(cipher, "DES-CBC3-SHA");
            assert_eq!(certificate, Some("RSA"));
            assert_eq!(group, None);
            assert_eq!(version, ward_tls::TlsVersion::Tls1_0);
        }
        other => panic!("{other:?}"),
    }
    match replay(&context, &own_hello(&modern)) {
        Verdict::Served {
            group, certificate, ..
        } => {
            assert_eq!(group, Some("X25519MLKEM768"));
            assert_eq!(certificate, Some("EC"));
        }
        other => panic!("{other:?}"),
    }
    let ecdsa_only = build_acceptor(
        &listener_conf("p", &format!("SSLProtocol all -SSLv2 -SSLv3\n{ECDSA_ONLY}"))
            .policy
            .unwrap(),
        dir.path(),
    )
    .unwrap();
    match replay(&ecdsa_only, &own_hello(&xp)) {
        Verdict::Refused { reason } => assert!(reason.contains("no shared cipher"), "{reason}"),
        other => panic!("{other:?}"),
    }
}
