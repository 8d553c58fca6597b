use super::*;

fn key(minute: i64, peer: &str, version: &str) -> HandshakeKey {
    HandshakeKey {
        minute,
        listener: "clients".into(),
        peer: peer.into(),
        version: version.into(),
        cipher: "TLS_AES_256_GCM_SHA384".into(),
        group: "X25519MLKEM768".into(),
        resumed: false,
    }
}

fn failure(at_ms: i64, peer: &str) -> HandshakeFailure {
    HandshakeFailure {
        at_ms,
        listener: "clients".into(),
        peer: peer.into(),
        offered_max: Some("TLSv1".into()),
        offered_versions: vec!["TLSv1".into()],
        server_name: None,
        kind: "protocol_version".into(),
        reason: "client offers only TLSv1, listener accepts TLSv1.2-TLSv1.3".into(),
    }
}

#[test]
fn telemetry_round_trip_and_summing() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("ward.db")).unwrap();
    let batch = TelemetryBatch {
        handshakes: vec![
            HandshakeCount {
                key: key(100, "127.0.0.1", "TLSv1.3"),
                count: 3,
            },
            HandshakeCount {
                key: key(101, "127.0.0.1", "TLSv1.3"),
                count: 2,
            },
            HandshakeCount {
                key: key(90, "127.0.0.2", "TLSv1.2"),
                count: 7,
            },
        ],
        failures: vec![
            failure(100 * 60_000 + 5, "127.0.0.9:5000"),
            failure(50, "127.0.0.9:1"),
        ],
        dropped_failures: vec![(100, 4), (10, 1)],
        ..TelemetryBatch::default()
    };
    store.record_telemetry(&batch).unwrap();
    // The same minute again adds up.
    store
        .record_telemetry(&TelemetryBatch {
            handshakes: vec![HandshakeCount {
                key: key(100, "127.0.0.1", "TLSv1.3"),
                count: 1,
            }],
            ..TelemetryBatch::default()
        })
        .unwrap();
    let report = store.handshake_report(95 * 60_000, 100).unwrap();
    assert_eq!(report.handshakes.len(), 1);
    assert_eq!(report.handshakes[0].count, 6);
    assert_eq!(
        report.failures,
        vec![failure(100 * 60_000 + 5, "127.0.0.9:5000")]
    );
    assert_eq!(report.dropped_failures, 4);
    let everything = store.handshake_report(0, 1).unwrap();
    assert_eq!(everything.handshakes.len(), 2);
    assert_eq!(everything.failures.len(), 1, "bounded by max_failures");
}

#[test]
fn reopening_keeps_data_and_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ward.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        store
            .record_telemetry(&TelemetryBatch {
                failures: vec![failure(1, "p")],
                ..TelemetryBatch::default()
            })
            .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.handshake_report(0, 10).unwrap().failures.len(), 1);
}

#[test]
fn database_from_a_newer_ward_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ward.db");
    drop(SqliteStore::open(&path).unwrap());
    let connection = Connection::open(&path).unwrap();
    connection
        .pragma_update(None, "user_version", crate::schema_version() + 1)
        .unwrap();
    drop(connection);
    let error = SqliteStore::open(&path).err().expect("refused");
    assert!(
        error.to_string().contains("written by a newer ward"),
        "{error}"
    );
}

#[test]
fn database_from_an_older_ward_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ward.db");
    // An empty database is version 0, the oldest there is.
    drop(Connection::open(&path).unwrap());
    drop(SqliteStore::open(&path).unwrap());
    let connection = Connection::open(&path).unwrap();
    let version: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, crate::schema_version());
}

#[test]
fn client_hellos_are_kept_once_each_counted_and_the_last_per_peer_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("ward.db")).unwrap();
    let hello = |digest: &str, at_ms: i64| crate::HelloSeen {
        digest: digest.into(),
        bytes: digest.as_bytes().to_vec(),
        at_ms,
        count: 2,
    };
    let peer = |digest: &str, at_ms: i64| crate::HelloPeer {
        listener: "clients".into(),
        peer: "127.0.0.1".into(),
        digest: digest.into(),
        at_ms,
    };
    store
        .record_telemetry(&TelemetryBatch {
            hellos: vec![hello("aa", 10), hello("bb", 11)],
            hello_peers: vec![peer("aa", 10)],
            ..TelemetryBatch::default()
        })
        .unwrap();
    store
        .record_telemetry(&TelemetryBatch {
            hellos: vec![hello("aa", 20)],
            hello_peers: vec![peer("bb", 20)],
            ..TelemetryBatch::default()
        })
        .unwrap();
    // An older sighting does not replace a newer one.
    store
        .record_telemetry(&TelemetryBatch {
            hello_peers: vec![peer("aa", 15)],
            ..TelemetryBatch::default()
        })
        .unwrap();
    let hellos = store.client_hellos().unwrap();
    let summary: Vec<(String, Vec<u8>, u64, i64)> = hellos
        .into_iter()
        .map(|h| (h.digest, h.bytes, h.count, h.last_ms))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("aa".to_string(), b"aa".to_vec(), 4, 20),
            ("bb".to_string(), b"bb".to_vec(), 2, 11)
        ]
    );
    assert_eq!(store.hello_peers(0).unwrap(), vec![peer("bb", 20)]);
    assert_eq!(store.hello_peers(21).unwrap(), vec![]);
}
