//! What only the PostgreSQL engine does: refusing a database it must not touch, and the
//! change notifications between the servers of one database. (Everything the trait promises
//! is the conformance suite's, on both engines.)

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ward_testkit::pg::Cluster;

use crate::{AuditEntry, Change, ChangeNote, Mutation, Store, StoreError};

use super::PgStore;

fn change(groups: Vec<i64>, agents: Vec<String>) -> Change {
    Change {
        tree_version: None,
        mutation: Mutation::Nothing,
        bump_groups: groups,
        bump_agents: agents,
        audit: AuditEntry {
            id: 0,
            at_ms: 1,
            actor: "test".into(),
            action: "test".into(),
            target: "x".into(),
            before: None,
            after: None,
        },
    }
}

#[test]
fn a_reader_never_creates_a_site_in_an_empty_database() {
    let cluster = Cluster::start();
    let error = crate::open_read_only(&crate::Database::Postgres(cluster.url()))
        .err()
        .expect("refused");
    assert!(
        error.to_string().contains("holds no ward site yet"),
        "{error}"
    );
    let tables: i64 = cluster
        .client()
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 0, "nothing created");
    // Once a server made it, a reader opens it.
    drop(PgStore::open(&cluster.url()).unwrap());
    crate::open_read_only(&crate::Database::Postgres(cluster.url())).unwrap();
}

#[test]
fn a_database_of_a_newer_ward_is_refused_and_left_as_it_is() {
    let cluster = Cluster::start();
    drop(PgStore::open(&cluster.url()).unwrap());
    let newer = crate::migrate::latest() + 1;
    cluster
        .client()
        .execute("UPDATE ward_schema SET version = $1", &[&newer])
        .unwrap();
    let error = PgStore::open(&cluster.url()).err().expect("refused");
    assert!(
        matches!(error, StoreError::TooNew { found, .. } if found == newer),
        "{error:?}"
    );
    let version: i64 = cluster
        .client()
        .query_one("SELECT version FROM ward_schema", &[])
        .unwrap()
        .get(0);
    assert_eq!(version, newer);
}

/// What one store's watcher heard, and a wait for it.
#[derive(Clone, Default)]
struct Heard(Arc<Mutex<Vec<ChangeNote>>>);

impl Heard {
    fn watch(&self, store: &PgStore) {
        let heard = self.0.clone();
        assert!(store.watch(Arc::new(move |note| heard.lock().unwrap().push(note))));
    }

    /// The notes heard within `bound` once `done` holds of them.
    fn until(&self, bound: Duration, done: impl Fn(&[ChangeNote]) -> bool) -> Vec<ChangeNote> {
        let deadline = Instant::now() + bound;
        loop {
            let heard = self.0.lock().unwrap().clone();
            if done(&heard) || Instant::now() > deadline {
                return heard;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn a_change_one_server_commits_is_heard_by_the_others_and_a_gap_is_said() {
    let cluster = Cluster::start();
    let (one, two) = (
        PgStore::open(&cluster.url()).unwrap(),
        PgStore::open(&cluster.url()).unwrap(),
    );
    let (heard_by_one, heard_by_two) = (Heard::default(), Heard::default());
    heard_by_one.watch(&one);
    heard_by_two.watch(&two);
    // Listening takes a moment to start: a change with nobody to bump first, then one that
    // is heard.
    std::thread::sleep(Duration::from_millis(500));
    two.apply(&change(vec![7], vec!["a1".into()])).unwrap();
    let bumped = ChangeNote::Bumped {
        groups: vec![7],
        agents: vec!["a1".into()],
    };
    let heard = heard_by_one.until(Duration::from_secs(5), |h| !h.is_empty());
    assert_eq!(heard, vec![bumped.clone()]);
    // Its own change is not reported back to the server that made it, and a change that
    // bumps nobody is not sent at all.
    two.apply(&change(vec![], vec![])).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(heard_by_two.0.lock().unwrap().is_empty());
    assert_eq!(heard_by_one.0.lock().unwrap().len(), 1);
    // A change that rolls back is not heard: its notification goes with it.
    let refused = Change {
        ..change(vec![9], vec![])
    };
    let refused = Change {
        mutation: Mutation::RevokeToken(-1),
        ..refused
    };
    assert!(two.apply(&refused).is_err());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(heard_by_one.0.lock().unwrap().len(), 1);

    // The first server's listening connection is cut: once it listens again it says that it
    // may have missed something, then hears the next change as before.
    cluster
        .client()
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap();
    let heard = heard_by_one.until(Duration::from_secs(10), |h| h.len() >= 2);
    assert_eq!(heard.get(1), Some(&ChangeNote::Unknown), "{heard:?}");
    two.apply(&change(vec![8], vec![])).unwrap();
    let heard = heard_by_one.until(Duration::from_secs(5), |h| h.len() >= 3);
    assert_eq!(
        heard.get(2),
        Some(&ChangeNote::Bumped {
            groups: vec![8],
            agents: vec![]
        }),
        "{heard:?}"
    );
}

#[test]
fn a_change_of_the_site_files_is_heard_by_the_other_servers() {
    let cluster = Cluster::start();
    let (one, two) = (
        PgStore::open(&cluster.url()).unwrap(),
        PgStore::open(&cluster.url()).unwrap(),
    );
    let heard = Heard::default();
    heard.watch(&one);
    std::thread::sleep(Duration::from_millis(500));
    let files = [("certs/ca.pem".to_string(), b"pem".to_vec())].into();
    assert_eq!(two.put_site_files(0, &files).unwrap(), 1);
    let notes = heard.until(Duration::from_secs(5), |h| !h.is_empty());
    assert_eq!(notes, vec![ChangeNote::Site { generation: 1 }]);
}

/// A database made at the first PostgreSQL schema (17) is upgraded step by step by a server
/// that opens it, keeping its rows; a command that only looks refuses it as too old and
/// leaves it so.
#[test]
fn a_database_of_an_older_ward_is_upgraded_by_a_server_and_only_by_one() {
    let cluster = Cluster::start();
    let store = PgStore::open(&cluster.url()).unwrap();
    store.apply(&change(vec![], vec![])).unwrap();
    drop(store);
    // Back to version 17 as it was made: without what later versions added.
    cluster
        .client()
        .batch_execute(
            "DROP TABLE site_files; DELETE FROM counters WHERE name = 'site';
             UPDATE ward_schema SET version = 17;",
        )
        .unwrap();
    let error = crate::open_read_only(&crate::Database::Postgres(cluster.url()))
        .err()
        .expect("a reader does not upgrade");
    assert!(
        matches!(error, StoreError::TooOld { found: 17, .. }),
        "{error:?}"
    );
    // Two servers at once: one upgrades, the other finds it done.
    let url = cluster.url();
    let racing: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PgStore::open(&url).map(drop))
        })
        .collect();
    for one in racing {
        one.join().unwrap().unwrap();
    }
    let store = PgStore::open(&cluster.url()).unwrap();
    assert_eq!(store.site_generation().unwrap(), 0);
    assert_eq!(store.audit(0, 10).unwrap().len(), 1, "rows kept");
    let version: i64 = cluster
        .client()
        .query_one("SELECT version FROM ward_schema", &[])
        .unwrap()
        .get(0);
    assert_eq!(version, crate::migrate::latest());
}

/// What a failover can lose, by the primary's replication: nothing without replicas, or
/// with a synchronous one; acknowledged changes with asynchronous replicas only.
#[test]
fn a_replication_that_can_lose_acknowledged_changes_is_said() {
    let table: [(&str, i64, i64, bool); 5] = [
        ("", 0, 0, false),
        ("", 1, 0, true),
        ("*", 1, 1, false),
        ("standby2", 2, 0, true),
        ("ANY 1 (a, b)", 2, 2, false),
    ];
    for (names, replicas, synchronous, warned) in table {
        assert_eq!(
            super::durability(names, replicas, synchronous).is_some(),
            warned,
            "{names:?} {replicas} {synchronous}"
        );
    }
}

/// A real synchronous replica: nothing to say; the same replica asynchronous: said.
#[test]
fn the_replication_of_a_real_primary_is_read() {
    let primary = Cluster::start();
    let store = PgStore::open(&primary.url()).unwrap();
    assert!(store.warnings().unwrap().is_empty());
    let _replica = primary.replica(true);
    assert!(store.warnings().unwrap().is_empty(), "synchronous");
    let mut client = primary.client();
    client
        .batch_execute("ALTER SYSTEM SET synchronous_standby_names = ''")
        .unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    // The primary takes the setting, and the replica's state follows, a moment later.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut said = store.warnings().unwrap();
    while said.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        said = store.warnings().unwrap();
    }
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].contains("none of them synchronous"), "{said:?}");
}
