//! [`TlsConn`] against a real OpenSSL client over loopback TCP: requests and answers through
//! OpenSSL, the hand-over between two of them, then the same connection through
//! [`RecordStream`]: bytes read ahead carried over, large answers, a key update the client
//! asks for, close_notify both ways.

use std::io::{Read, Write};

use openssl::ssl::{
    ErrorCode, Ssl, SslAcceptor, SslConnector, SslMethod, SslVerifyMode, SslVersion,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

extern "C" {
    fn SSL_key_update(ssl: *mut openssl_sys::SSL, kind: std::ffi::c_int) -> std::ffi::c_int;
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

async fn read_exactly(stream: &mut TlsConn, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    stream.read_exact(&mut out).await.unwrap();
    out
}

/// At most `version`, and (TLS 1.2) only `ciphers` when given: on either side.
fn offer(
    builder: &mut openssl::ssl::SslContextBuilder,
    version: SslVersion,
    ciphers: Option<&str>,
) {
    builder.set_max_proto_version(Some(version)).unwrap();
    if let Some(ciphers) = ciphers {
        builder.set_cipher_list(ciphers).unwrap();
    }
}

/// A server and a client of one version and (TLS 1.2) cipher list: the server's half on a
/// loopback listener, the client's half (a blocking OpenSSL client, as the agents are) in its
/// own thread, running `client` once connected.
struct Pair {
    listener: TcpListener,
    context: openssl::ssl::SslContext,
}

impl Pair {
    async fn new(version: SslVersion, ciphers: Option<&str>) -> Pair {
        let ca = ward_tls::pki::new_ca("records test").unwrap();
        let leaf = ward_tls::pki::new_server_cert(&ca, &["localhost"], &[]).unwrap();
        let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
        builder.set_certificate(&leaf.cert).unwrap();
        builder.set_private_key(&leaf.key).unwrap();
        offer(&mut builder, version, ciphers);
        ward_tls::handoff::enable(&mut builder);
        Pair {
            listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            context: builder.build().into_context(),
        }
    }

    /// Connects the client (which then runs `client`) and returns the server's connection,
    /// handshaken through OpenSSL and watched for a hand-over.
    async fn connect<F>(
        &self,
        version: SslVersion,
        ciphers: Option<&'static str>,
        client: F,
    ) -> (TlsConn, std::thread::JoinHandle<()>)
    where
        F: FnOnce(openssl::ssl::SslStream<std::net::TcpStream>) + Send + 'static,
    {
        let address = self.listener.local_addr().unwrap();
        let thread = std::thread::spawn(move || {
            let mut connector = SslConnector::builder(SslMethod::tls_client()).unwrap();
            connector.set_verify(SslVerifyMode::NONE);
            offer(&mut connector, version, ciphers);
            let tcp = std::net::TcpStream::connect(address).unwrap();
            let stream = connector
                .build()
                .configure()
                .unwrap()
                .verify_hostname(false)
                .connect("localhost", tcp)
                .unwrap();
            client(stream);
        });
        let (tcp, _) = self.listener.accept().await.unwrap();
        let mut ssl = Ssl::new(&self.context).unwrap();
        ward_tls::handoff::watch(&mut ssl);
        let mut openssl = SslStream::new(ssl, Buffered::new(Vec::new(), tcp)).unwrap();
        Pin::new(&mut openssl).accept().await.unwrap();
        (TlsConn::new(openssl), thread)
    }
}

#[tokio::test]
async fn a_handed_over_connection_goes_on_as_before_for_an_openssl_client() {
    for version in [SslVersion::TLS1_3, SslVersion::TLS1_2] {
        let pair = Pair::new(version, None).await;
        let (mut stream, client) = pair
            .connect(version, None, move |mut stream| {
                stream.write_all(b"first").unwrap();
                let mut answer = [0u8; 6];
                stream.read_exact(&mut answer).unwrap();
                assert_eq!(&answer, b"answer");
                // Two requests at once: the second arrives with the first, read ahead.
                stream.write_all(b"second").unwrap();
                stream.write_all(&pattern(50_000, 7)).unwrap();
                let mut big = vec![0u8; 70_000];
                stream.read_exact(&mut big).unwrap();
                assert_eq!(big, pattern(70_000, 9));
                if version == SslVersion::TLS1_3 {
                    use foreign_types::ForeignTypeRef;
                    // SAFETY: a live, established TLS 1.3 connection; 1 = REQUESTED.
                    assert_eq!(unsafe { SSL_key_update(stream.ssl().as_ptr(), 1) }, 1);
                }
                stream.write_all(b"third").unwrap();
                let mut last = [0u8; 4];
                stream.read_exact(&mut last).unwrap();
                assert_eq!(&last, b"last");
                let mut buf = [0u8; 8];
                match stream.ssl_read(&mut buf) {
                    Err(e) if e.code() == ErrorCode::ZERO_RETURN => {}
                    other => panic!("expected the server's close_notify, got {other:?}"),
                }
                stream.shutdown().unwrap();
            })
            .await;
        assert_eq!(read_exactly(&mut stream, 5).await, b"first");
        stream.write_all(b"answer").await.unwrap();
        stream.flush().await.unwrap();

        // Wait until both later requests are on the socket, so some of them is read ahead.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(read_exactly(&mut stream, 6).await, b"second");
        assert_eq!(
            HandOver::hand_over(&mut stream),
            Some(Ok(())),
            "{version:?}"
        );
        assert!(matches!(stream, TlsConn::HandedOver(_)));
        assert_eq!(HandOver::hand_over(&mut stream), None, "once");

        assert_eq!(read_exactly(&mut stream, 50_000).await, pattern(50_000, 7));
        stream.write_all(&pattern(70_000, 9)).await.unwrap();
        stream.flush().await.unwrap();
        assert_eq!(read_exactly(&mut stream, 5).await, b"third");
        stream.write_all(b"last").await.unwrap();
        stream.shutdown().await.unwrap();
        let mut rest = Vec::new();
        assert_eq!(stream.read_to_end(&mut rest).await.unwrap(), 0);
        client.join().unwrap();
        if let TlsConn::HandedOver(handed) = &stream {
            assert!(handed.incoming.capacity() == 0 && handed.outgoing.capacity() == 0);
        }
    }
}

#[tokio::test]
async fn a_connection_refused_for_good_is_not_tried_again_and_works_on() {
    // TLS 1.2 with a CBC suite: the hand-over does not take it, and never will.
    let cbc = Some("ECDHE-ECDSA-AES128-SHA256");
    let pair = Pair::new(SslVersion::TLS1_2, cbc).await;
    let (mut stream, client) = pair
        .connect(SslVersion::TLS1_2, cbc, |mut stream| {
            for round in 0u8..3 {
                stream.write_all(&[round; 4]).unwrap();
                let mut answer = [0u8; 4];
                stream.read_exact(&mut answer).unwrap();
                assert_eq!(answer, [round + 10; 4]);
            }
        })
        .await;
    for round in 0u8..3 {
        assert_eq!(read_exactly(&mut stream, 4).await, [round; 4]);
        let tried = HandOver::hand_over(&mut stream);
        if round == 0 {
            assert_eq!(tried, Some(Err(Refusal::Suite)));
        } else {
            assert_eq!(tried, None, "round {round}: not tried again");
        }
        stream.write_all(&[round + 10; 4]).await.unwrap();
        stream.flush().await.unwrap();
    }
    client.join().unwrap();
    assert!(matches!(stream, TlsConn::OpenSsl { settled: true, .. }));
}
