use super::Subject;
use crate::*;

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

pub(super) fn telemetry_round_trip_and_summing(subject: &Subject) {
    let store = &*subject.store;
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

pub(super) fn reopening_keeps_data_and_schema(subject: &Subject) {
    {
        let store = &*subject.store;
        store
            .record_telemetry(&TelemetryBatch {
                failures: vec![failure(1, "p")],
                ..TelemetryBatch::default()
            })
            .unwrap();
    }
    let store = subject.reopen();
    assert_eq!(store.handshake_report(0, 10).unwrap().failures.len(), 1);
}

pub(super) fn client_hellos_are_kept_once_each_counted_and_the_last_per_peer_wins(
    subject: &Subject,
) {
    let store = &*subject.store;
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

/// Recent failures come newest first, from a time on, at most as many as asked; host names
/// are found by agent id, unknown ids left out.
pub(super) fn recent_failures_and_host_names_are_read_as_asked(subject: &Subject) {
    let store = &*subject.store;
    store
        .record_telemetry(&TelemetryBatch {
            failures: (0..5)
                .map(|n| failure(1_000 + n, &format!("10.0.0.{n}:4000")))
                .collect(),
            ..TelemetryBatch::default()
        })
        .unwrap();
    let recent = store.recent_failures(1_002, 2).unwrap();
    assert_eq!(
        recent.iter().map(|f| f.at_ms).collect::<Vec<_>>(),
        vec![1_004, 1_003]
    );
    assert_eq!(recent[0], failure(1_004, "10.0.0.4:4000"));
    assert!(store.recent_failures(2_000, 10).unwrap().is_empty());

    let root = ward_fleet::group::default_root("My Company", "Default");
    let list = ward_fleet::serverlist::build(
        "Default",
        vec![ward_fleet::serverlist::parse_spec("1:https://mgr1:443").unwrap()],
    )
    .unwrap();
    store.initialise_fleet(&root, &list).unwrap();
    let root = store.groups().unwrap()[0].id;
    store
        .insert_agents(&[
            super::fleet::agent("h1", root, &[]),
            super::fleet::agent("h2", root, &[]),
        ])
        .unwrap();
    let names = store
        .hostnames(&["h1".into(), "h2".into(), "nobody".into()])
        .unwrap();
    assert_eq!(names.len(), 2);
    assert_eq!(names["h1"], "host-h1");
    assert_eq!(names["h2"], "host-h2");
    assert!(store.hostnames(&[]).unwrap().is_empty());
}

/// Servers register by name: a second registration is a heartbeat with what the server
/// serves now; the list comes by name.
pub(super) fn servers_register_by_name_and_their_heartbeats_move(subject: &Subject) {
    let store = &*subject.store;
    assert!(store.servers().unwrap().is_empty());
    let listener = |role: &str, address: &str, tls: &str| ListenerRecord {
        role: role.into(),
        address: address.into(),
        tls: tls.into(),
    };
    let server = |name: &str, heartbeat_ms: i64| ServerRecord {
        name: name.into(),
        listeners: vec![
            listener("console", "10.0.0.1:8445", "TLSv1.2-TLSv1.3"),
            listener("clients-http", "10.0.0.1:8014", "plain HTTP"),
        ],
        version: "0.1.0".into(),
        started_ms: 1_000,
        heartbeat_ms,
    };
    store.register_server(&server("mgr2:8445", 2_000)).unwrap();
    store.register_server(&server("mgr1:8445", 2_000)).unwrap();
    let mut later = server("mgr2:8445", 9_000);
    later.listeners.truncate(1);
    subject.reopen().register_server(&later).unwrap();
    let servers = store.servers().unwrap();
    assert_eq!(servers, vec![server("mgr1:8445", 2_000), later]);
}

/// The site's files: none at first (generation 0), then replaced whole, each time only by a
/// writer that read the generation they are at; a second handle (another server) sees them.
pub(super) fn site_files_are_replaced_whole_and_only_from_the_generation_read(subject: &Subject) {
    let store = &*subject.store;
    assert_eq!(store.site_generation().unwrap(), 0);
    assert_eq!(store.site_files().unwrap(), None);
    let files = |pairs: &[(&str, &[u8])]| -> std::collections::BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(name, bytes)| (name.to_string(), bytes.to_vec()))
            .collect()
    };
    let first = files(&[
        ("certs/ca.pem", b"ca one"),
        ("keys/tickets.key", &[0, 1, 255]),
    ]);
    assert_eq!(store.put_site_files(0, &first).unwrap(), 1);
    // A writer that read generation 0 too comes late: refused, nothing changes.
    let late = files(&[("certs/ca.pem", b"other")]);
    assert!(matches!(
        store.put_site_files(0, &late),
        Err(StoreError::Stale(_))
    ));
    let other = subject.reopen();
    let seen = other.site_files().unwrap().expect("files");
    assert_eq!(seen.generation, 1);
    assert_eq!(seen.files, first);
    // The next generation replaces them whole: a file left out goes.
    let second = files(&[("certs/ca.pem", b"ca two"), ("keys/agreement.key", b"k")]);
    assert_eq!(other.put_site_files(1, &second).unwrap(), 2);
    assert_eq!(store.site_generation().unwrap(), 2);
    assert_eq!(store.site_files().unwrap().expect("files").files, second);
}
