use super::*;

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(|b| b.is_ascii_hexdigit())
        .map(|b| (b as char).to_digit(16).unwrap() as u8)
        .collect();
    digits.chunks(2).map(|p| p[0] * 16 + p[1]).collect()
}

/// RFC 8448 §3 (a simple 1-RTT handshake, TLS_AES_128_GCM_SHA256): the application traffic
/// secrets and the two application data records, 50 bytes 00..31 each way.
const CLIENT_AP_SECRET: &str = "9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5";
const SERVER_AP_SECRET: &str = "a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643";
const CLIENT_RECORD: &str = "17030300 43a23f70 54b62c94 d0affafe 8228ba55 cbefacea 42f914aa
    66bcab3f 2b9819a8 a5b46b39 5bd54a9a 20441e2b 62974e1f 5a6292a2 977014bd 1e3deae6 3aeebb21
    694915e4";
const SERVER_RECORD: &str = "17030300 432e937e 11ef4ac7 40e538ad 36005fc4 a46932fc 3225d05f
    82aa1b36 e30efaf9 7d90e6df fc602dcb 501a59a8 fcc49c4b f2e5f0a2 1c0047c2 abf33254 0dd032e1
    67c2955d";

#[test]
fn tls13_keys_and_records_match_rfc_8448() {
    let payload: Vec<u8> = (0u8..50).collect();
    // The server's first record under its application key was the ticket: this is record 1.
    let mut server =
        Protection::tls13(Suite::Aes128Gcm, Hash::Sha256, &hex(SERVER_AP_SECRET), 1).unwrap();
    assert_eq!(
        server.key[..16],
        hex("9f02283b6c9c07efc26bb9f2ac92e356")[..]
    );
    assert_eq!(server.iv[..], hex("cf782b88dd83549aadf1e984")[..]);
    let mut sealed = Vec::new();
    server
        .seal(content::APPLICATION_DATA, &payload, &mut sealed)
        .unwrap();
    assert_eq!(sealed, hex(SERVER_RECORD));
    assert_eq!(server.seq(), 2);

    let mut client_read =
        Protection::tls13(Suite::Aes128Gcm, Hash::Sha256, &hex(CLIENT_AP_SECRET), 0).unwrap();
    let mut record = hex(CLIENT_RECORD);
    let (content_type, range) = client_read.open(&mut record).unwrap();
    assert_eq!(content_type, content::APPLICATION_DATA);
    assert_eq!(record[range], payload[..]);
    assert_eq!(client_read.seq(), 1);
}

fn handover_for<'a>(
    version: Version,
    suite: Suite,
    hash: Hash,
    secrets: &'a [u8; 48],
    randoms: &'a [u8; 64],
) -> Handover<'a> {
    Handover {
        version,
        suite,
        hash,
        client_secret: &secrets[..hash.output_len()],
        server_secret: &secrets[48 - hash.output_len()..],
        master_secret: secrets,
        client_random: &randoms[..32],
        server_random: &randoms[32..],
        read_seq: 3,
        write_seq: 7,
    }
}

const SHAPES: [(Version, Suite, Hash); 6] = [
    (Version::Tls13, Suite::Aes128Gcm, Hash::Sha256),
    (Version::Tls13, Suite::Aes256Gcm, Hash::Sha384),
    (Version::Tls13, Suite::ChaCha20Poly1305, Hash::Sha256),
    (Version::Tls12, Suite::Aes128Gcm, Hash::Sha256),
    (Version::Tls12, Suite::Aes256Gcm, Hash::Sha384),
    (Version::Tls12, Suite::ChaCha20Poly1305, Hash::Sha256),
];

/// Seals `data` on one side and opens every record on the other; returns what came out.
fn carry(from: &mut Records, to: &mut Records, data: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    from.seal_data(data, &mut wire).unwrap();
    let mut out = Vec::new();
    let mut rest = &mut wire[..];
    while !rest.is_empty() {
        let len = record_len(to.version(), rest).unwrap().unwrap();
        let (record, tail) = rest.split_at_mut(len);
        let mut replies = Vec::new();
        match to.receive(record, &mut replies).unwrap() {
            Received::Data(range) => out.extend_from_slice(&record[range]),
            other => panic!("expected data, got {other:?}"),
        }
        assert!(replies.is_empty());
        rest = tail;
    }
    out
}

#[test]
fn records_round_trip_for_every_version_and_suite_and_size() {
    let secrets: [u8; 48] = std::array::from_fn(|i| (i as u8).wrapping_mul(7).wrapping_add(1));
    let randoms: [u8; 64] = std::array::from_fn(|i| i as u8 ^ 0x5a);
    for (version, suite, hash) in SHAPES {
        let handover = handover_for(version, suite, hash, &secrets, &randoms);
        let mut server = Records::server(&handover).unwrap();
        let mut client = Records::client(&handover).unwrap();
        assert_eq!(server.seqs(), (3, 7));
        assert_eq!(client.seqs(), (7, 3));
        for size in [0usize, 1, 100, MAX_PLAINTEXT, MAX_PLAINTEXT + 1, 40_000] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            assert_eq!(
                carry(&mut server, &mut client, &data),
                data,
                "{version:?} {suite:?} server to client, {size} bytes"
            );
            assert_eq!(
                carry(&mut client, &mut server, &data),
                data,
                "{version:?} {suite:?} client to server, {size} bytes"
            );
        }
    }
}

#[test]
fn a_tampered_replayed_or_misframed_record_is_refused() {
    let secrets = [9u8; 48];
    let randoms = [3u8; 64];
    for (version, suite, hash) in SHAPES {
        let handover = handover_for(version, suite, hash, &secrets, &randoms);
        let label = format!("{version:?} {suite:?}");
        let mut client = Records::client(&handover).unwrap();
        let mut wire = Vec::new();
        client.seal_data(b"check-in", &mut wire).unwrap();

        // Each byte after the header flipped: authentication fails.
        for at in HEADER_LEN..wire.len() {
            let mut server = Records::server(&handover).unwrap();
            let mut bad = wire.clone();
            bad[at] ^= 0x01;
            let result = server.receive(&mut bad, &mut Vec::new());
            assert_eq!(result, Err(RecordError::BadRecordMac), "{label} byte {at}");
        }
        // The type byte is authenticated too (TLS 1.2's is in the additional data; TLS 1.3
        // takes only application_data outside).
        let mut server = Records::server(&handover).unwrap();
        let mut bad = wire.clone();
        bad[0] = content::HANDSHAKE;
        assert!(
            server.receive(&mut bad, &mut Vec::new()).is_err(),
            "{label}"
        );

        // Once opened, the same record again is out of sequence.
        let mut server = Records::server(&handover).unwrap();
        let mut first = wire.clone();
        assert!(matches!(
            server.receive(&mut first, &mut Vec::new()),
            Ok(Received::Data(_))
        ));
        let mut again = wire.clone();
        assert_eq!(
            server.receive(&mut again, &mut Vec::new()),
            Err(RecordError::BadRecordMac),
            "{label} replay"
        );

        // A header beyond the limit is refused before the body arrives.
        let huge = [content::APPLICATION_DATA, 3, 3, 0xff, 0xff];
        assert!(matches!(
            record_len(version, &huge),
            Err(RecordError::Overflow(_))
        ));
        let old = [content::APPLICATION_DATA, 3, 1, 0, 20];
        assert_eq!(
            record_len(version, &old),
            Err(RecordError::Unexpected("record version"))
        );
        assert_eq!(record_len(version, &huge[..4]), Ok(None));
    }
}

#[test]
fn close_notify_ends_the_stream_and_fatal_alerts_are_errors() {
    let secrets = [1u8; 48];
    let randoms = [2u8; 64];
    for (version, suite, hash) in SHAPES {
        let handover = handover_for(version, suite, hash, &secrets, &randoms);
        let mut server = Records::server(&handover).unwrap();
        let mut client = Records::client(&handover).unwrap();
        let mut wire = Vec::new();
        client.seal_close_notify(&mut wire).unwrap();
        assert_eq!(
            server.receive(&mut wire, &mut Vec::new()),
            Ok(Received::Closed)
        );

        let mut wire = Vec::new();
        client
            .write
            .seal(content::ALERT, &[2, 40], &mut wire)
            .unwrap();
        assert_eq!(
            server.receive(&mut wire, &mut Vec::new()),
            Err(RecordError::Alert(40))
        );
    }
}

#[test]
fn a_key_update_the_client_requests_is_answered_and_both_sides_move_on() {
    let secrets = [4u8; 48];
    let randoms = [5u8; 64];
    for (version, suite, hash) in SHAPES.into_iter().filter(|(v, _, _)| *v == Version::Tls13) {
        let handover = handover_for(version, suite, hash, &secrets, &randoms);
        let mut server = Records::server(&handover).unwrap();
        let mut client = Records::client(&handover).unwrap();
        let mut wire = Vec::new();
        client.request_key_update(&mut wire).unwrap();
        let mut replies = Vec::new();
        assert_eq!(
            server.receive(&mut wire, &mut replies),
            Ok(Received::Nothing)
        );
        assert_eq!(server.seqs(), (0, 0), "both of the server's keys are new");
        // The server's answer, under its old key, moves the client's read key.
        assert_eq!(
            client.receive(&mut replies, &mut Vec::new()),
            Ok(Received::Nothing)
        );
        assert_eq!(carry(&mut server, &mut client, b"after"), b"after");
        assert_eq!(carry(&mut client, &mut server, b"update"), b"update");
    }
    // Below TLS 1.3 there is no key update, and a handshake record is a renegotiation.
    let handover = handover_for(
        Version::Tls12,
        Suite::Aes128Gcm,
        Hash::Sha256,
        &secrets,
        &randoms,
    );
    let mut client = Records::client(&handover).unwrap();
    assert!(client.request_key_update(&mut Vec::new()).is_err());
    let mut server = Records::server(&handover).unwrap();
    let mut wire = Vec::new();
    client
        .write
        .seal(content::HANDSHAKE, &[1, 0, 0, 0], &mut wire)
        .unwrap();
    assert_eq!(
        server.receive(&mut wire, &mut Vec::new()),
        Err(RecordError::Unexpected("renegotiation"))
    );
}
