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
