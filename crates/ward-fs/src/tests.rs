use std::os::unix::fs::PermissionsExt;

use super::*;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_write_has_its_mode_and_leaves_nothing_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("server.key");
    write(&key, b"secret", 0o600).unwrap();
    assert_eq!(fs::read(&key).unwrap(), b"secret");
    assert_eq!(mode(&key), 0o600);
    // Replacing a 0644 file with a key makes it 0600; the inode changes (a rename).
    let cert = dir.path().join("server.pem");
    write(&cert, b"one", 0o644).unwrap();
    assert_eq!(mode(&cert), 0o644);
    write(&cert, b"two", 0o600).unwrap();
    assert_eq!(
        (fs::read(&cert).unwrap(), mode(&cert)),
        (b"two".to_vec(), 0o600)
    );
    assert_eq!(names(dir.path()), ["server.key", "server.pem"]);
}

#[test]
fn replace_keeps_the_mode_an_admin_gave() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("ssl.conf");
    replace(&conf, b"new file", 0o644).unwrap();
    assert_eq!(mode(&conf), 0o644);
    fs::set_permissions(&conf, fs::Permissions::from_mode(0o640)).unwrap();
    replace(&conf, b"edited", 0o644).unwrap();
    assert_eq!(
        (fs::read(&conf).unwrap(), mode(&conf)),
        (b"edited".to_vec(), 0o640)
    );
}

#[test]
fn a_temporary_file_is_created_exclusively_never_through_a_planted_link() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("elsewhere");
    fs::write(&target, b"untouched").unwrap();
    let planted = dir.path().join(".a.key.tmp-1-0");
    std::os::unix::fs::symlink(&target, &planted).unwrap();
    let error = create_exclusive(&planted, 0o600).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(fs::read(&target).unwrap(), b"untouched");
}

#[test]
fn a_commit_puts_every_file_in_place_and_removes_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let journal = root.join("commit.json");
    write(&root.join("old.pem"), b"old", 0o644).unwrap();
    write(&root.join("a.key"), b"a0", 0o600).unwrap();
    let pending = Commit::new("test")
        .write(root.join("a.key"), b"a1".to_vec(), 0o600)
        .write(root.join("sub/b.pem"), b"b1".to_vec(), 0o644)
        .remove(root.join("old.pem"))
        .run(&journal)
        .unwrap();
    pending.done().unwrap();
    assert_eq!(fs::read(root.join("a.key")).unwrap(), b"a1");
    assert_eq!(fs::read(root.join("sub/b.pem")).unwrap(), b"b1");
    assert_eq!(mode(&root.join("sub/b.pem")), 0o644);
    assert!(!root.join("old.pem").exists());
    assert!(!journal.exists());
    assert_eq!(names(root), ["a.key", "sub"]);
    assert!(recover(&journal).unwrap().is_none());
}

#[test]
fn a_commit_with_then_keeps_its_journal_until_done_and_recovery_hands_then_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let journal = root.join("commit.json");
    let pending = Commit::new("test")
        .write(root.join("x"), b"x".to_vec(), 0o600)
        .then(serde_json::json!({"audit": "switched"}))
        .run(&journal)
        .unwrap();
    assert!(journal.exists());
    // A second commit waits for the first.
    let refused = Commit::new("other")
        .write(root.join("y"), b"y".to_vec(), 0o600)
        .run(&journal);
    assert_eq!(refused.unwrap_err().kind(), io::ErrorKind::AlreadyExists);
    assert!(!root.join("y").exists() && !root.join(".y.staged").exists());
    // A crash here: the next start recovers, and gets `then` again.
    drop(pending);
    let recovered = recover(&journal).unwrap().expect("a journal");
    assert_eq!(recovered.label, "test");
    assert_eq!(
        recovered.then,
        Some(serde_json::json!({"audit": "switched"}))
    );
    assert!(journal.exists());
    recovered.pending.done().unwrap();
    assert!(!journal.exists());
}

/// Every prefix of a commit, as a crash would leave it, then recovery and cleaning: each
/// file is wholly old or wholly new, all of them the same one.
#[test]
fn every_crash_point_of_a_commit_recovers_to_all_old_or_all_new() {
    for stop in 0..=4 {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let journal = root.join("commit.json");
        write(&root.join("cert.pem"), b"old cert", 0o644).unwrap();
        write(&root.join("cert.key"), b"old key", 0o600).unwrap();
        write(&root.join("next.pem"), b"next", 0o644).unwrap();
        let renames = vec![
            (staged_path(&root.join("cert.pem")), root.join("cert.pem")),
            (staged_path(&root.join("cert.key")), root.join("cert.key")),
        ];
        // The steps of `run`, cut after `stop` of them.
        write(&renames[0].0, b"new cert", 0o644).unwrap();
        write(&renames[1].0, b"new key", 0o600).unwrap();
        if stop >= 1 {
            let record = Journal {
                label: "t".into(),
                renames: renames.clone(),
                removes: vec![root.join("next.pem")],
                then: None,
            };
            write(&journal, &serde_json::to_vec(&record).unwrap(), 0o600).unwrap();
        }
        if stop >= 2 {
            fs::rename(&renames[0].0, &renames[0].1).unwrap();
        }
        if stop >= 3 {
            fs::rename(&renames[1].0, &renames[1].1).unwrap();
        }
        if stop >= 4 {
            fs::remove_file(root.join("next.pem")).unwrap();
        }
        recover(&journal).unwrap();
        clean_leftovers(&[root.to_path_buf()]).unwrap();
        let files = (
            fs::read(root.join("cert.pem")).unwrap(),
            fs::read(root.join("cert.key")).unwrap(),
            root.join("next.pem").exists(),
        );
        let expected = if stop == 0 {
            (b"old cert".to_vec(), b"old key".to_vec(), true)
        } else {
            (b"new cert".to_vec(), b"new key".to_vec(), false)
        };
        assert_eq!(files, expected, "crash after step {stop}");
        assert_eq!(
            names(root).iter().filter(|n| n.starts_with('.')).count(),
            0,
            "nothing left over after step {stop}"
        );
    }
}

#[test]
fn leftovers_of_dead_writers_go_and_a_live_writers_stay() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // pid 1 is alive (init); a pid far beyond pid_max is not.
    for name in [
        ".a.key.tmp-1-0",
        ".a.key.tmp-2147483000-3",
        ".b.pem.staged",
        ".keep",
        "c",
    ] {
        fs::write(root.join(name), b"").unwrap();
    }
    let mut removed: Vec<String> = clean_leftovers(&[root.to_path_buf(), root.join("missing")])
        .unwrap()
        .iter()
        .map(|p| file_name(p))
        .collect();
    removed.sort();
    assert_eq!(removed, [".a.key.tmp-2147483000-3", ".b.pem.staged"]);
    assert_eq!(names(root), [".a.key.tmp-1-0", ".keep", "c"]);
}

#[test]
fn an_unreadable_journal_is_an_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("commit.json");
    fs::write(&journal, b"{not json").unwrap();
    let error = recover(&journal).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("commit.json: not a ward journal"),
        "{error}"
    );
}
