//! The site's files between data dirs and one real PostgreSQL database: the first data dir
//! puts its own, another takes them (and gets its certificates from the site's CA), a change
//! made by one is taken by the other, a change a crash kept from the database is put at the
//! next look, a change checked against an old generation is refused, and a data dir on
//! SQLite has no site.

use std::sync::Arc;

use ward_store::{Database, Store, StoreError};
use ward_testkit::pg::Cluster;

use super::*;

fn data_dir(root: &tempfile::TempDir, name: &str) -> DataDir {
    let data = DataDir::new(root.path().join(name));
    let loopback = |port| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    crate::datadir::initialise(&data, [loopback(18445), loopback(18443), loopback(18014)])
        .expect("initialise");
    data
}

fn read(data: &DataDir, name: &str) -> Vec<u8> {
    std::fs::read(data.root().join(name)).unwrap_or_default()
}

#[test]
fn data_dirs_on_one_database_share_the_sites_files_and_keep_their_own_certificates() {
    let cluster = Cluster::start();
    let store: Arc<dyn Store> = ward_store::open(&Database::Postgres(cluster.uri())).unwrap();
    let root = tempfile::tempdir().unwrap();
    let (one, two) = (data_dir(&root, "one"), data_dir(&root, "two"));
    assert_ne!(read(&one, "certs/ca.pem"), read(&two, "certs/ca.pem"));

    // The first puts its files; the second takes them, and its certificates are re-issued by
    // the site's CA (its own CA issued them).
    assert_eq!(
        sync_files(&one, &*store).unwrap(),
        Synced::Put { generation: 1 }
    );
    let own_cert = read(&two, "certs/server.pem");
    match sync_files(&two, &*store).unwrap() {
        Synced::Took {
            generation: 1,
            taken,
        } => {
            assert!(
                taken.certificates && taken.agreement && taken.tickets && taken.admin_token,
                "{taken:?}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(local_files(&one).unwrap(), local_files(&two).unwrap());
    // One admin token for the site: the CLI on either host can drive both servers.
    assert_eq!(
        one.read_admin_token().unwrap(),
        two.read_admin_token().unwrap()
    );
    assert_ne!(read(&two, "certs/server.pem"), own_cert);
    assert!(issued_by(
        &read(&two, "certs/server.pem"),
        &read(&one, "certs/ca.pem")
    ));
    assert!(issued_by(
        &read(&two, "certs/server-rsa.pem"),
        &read(&one, "certs/ca.pem")
    ));
    assert_eq!(sync_files(&one, &*store).unwrap(), Synced::Same);
    assert_eq!(sync_files(&two, &*store).unwrap(), Synced::Same);

    // A change made on the first (a rotation's next key) is published, then taken by the
    // second: only what changed is said.
    std::fs::write(one.agreement_next_key(), read(&one, "keys/agreement.key")).unwrap();
    publish_change(&one, &*store).unwrap();
    assert_eq!(local_generation(&one).unwrap(), 2);
    assert_eq!(
        sync_files(&two, &*store).unwrap(),
        Synced::Took {
            generation: 2,
            taken: Taken {
                agreement: true,
                ..Taken::default()
            }
        }
    );
    assert!(two.agreement_next_key().exists());

    // A change whose publication did not happen (a crash, the database away) is put at the
    // next look; the other takes its removal.
    std::fs::remove_file(one.agreement_next_key()).unwrap();
    assert_eq!(
        sync_files(&one, &*store).unwrap(),
        Synced::Put { generation: 3 }
    );
    assert!(matches!(
        sync_files(&two, &*store).unwrap(),
        Synced::Took { generation: 3, .. }
    ));
    assert!(!two.agreement_next_key().exists());

    // A change checked against an old generation is refused, and the site keeps its files;
    // the server that made it takes the site's at its next look.
    std::fs::write(two.ticket_key(), [7u8; 80]).unwrap();
    std::fs::write(one.ticket_key(), [9u8; 80]).unwrap();
    publish_change(&one, &*store).unwrap();
    assert!(matches!(
        publish_change(&two, &*store),
        Err(StoreError::Stale(_))
    ));
    assert!(matches!(
        sync_files(&two, &*store).unwrap(),
        Synced::Took { generation: 4, taken } if taken.tickets
    ));
    assert_eq!(read(&two, "keys/tickets.key"), vec![9u8; 80]);

    // A site made before the admin token was one of its files: the site's set lacks it.
    // A server that takes that set keeps its own token, and puts it at its next look; the
    // other takes it (and says so, so a running server accepts the new token at once).
    let mut older = store.site_files().unwrap().unwrap().files;
    older.remove("admin.token");
    let generation = store.put_site_files(4, &older).unwrap();
    std::fs::write(two.admin_token(), "a token of its own\n").unwrap();
    let token = one.read_admin_token().unwrap();
    assert_eq!(
        sync_files(&one, &*store).unwrap(),
        Synced::Took {
            generation,
            taken: Taken::default()
        }
    );
    assert_eq!(one.read_admin_token().unwrap(), token);
    assert_eq!(
        sync_files(&one, &*store).unwrap(),
        Synced::Put {
            generation: generation + 1
        }
    );
    assert_eq!(
        sync_files(&two, &*store).unwrap(),
        Synced::Took {
            generation: generation + 1,
            taken: Taken {
                admin_token: true,
                ..Taken::default()
            }
        }
    );
    assert_eq!(
        one.read_admin_token().unwrap(),
        two.read_admin_token().unwrap()
    );
}

#[test]
fn a_data_dir_on_sqlite_has_no_site() {
    let root = tempfile::tempdir().unwrap();
    let data = data_dir(&root, "alone");
    let store = ward_store::open(&Database::Sqlite(data.root().join("ward.db"))).unwrap();
    assert_eq!(sync_files(&data, &*store).unwrap(), Synced::Alone);
    publish_change(&data, &*store).unwrap();
    assert_eq!(store.site_generation().unwrap(), 0);
    assert!(!data.root().join("site.json").exists());
}
