use super::*;

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
