//! Several writers on one database at once: threads on two handles of it, as two servers of a
//! site are. Each write that states a precondition is judged against what the others wrote,
//! and what a refused write would have written is nowhere.

use std::sync::atomic::{AtomicUsize, Ordering};

use ward_fleet::{serverlist, Group, OwnSettings};

use super::fleet::{agent, change, checkin_of, fleet, root_id};
use super::Subject;
use crate::{AgentFilter, Change, Mutation, StoreError};

const THREADS: usize = 4;
const ROUNDS: usize = 12;

fn group(parent: i64, name: String) -> Group {
    Group {
        id: 0,
        parent: Some(parent),
        name,
        own: OwnSettings::default(),
    }
}

/// Every thread creates the same names: each name is made once, by whichever thread came
/// first, and each refused creation leaves no group and no audit entry.
pub(super) fn writers_racing_for_one_name_make_it_once(subject: &Subject) {
    let store = fleet(subject);
    let root = root_id(store);
    let second = subject.reopen();
    let handles = [subject.store.clone(), second];
    let audit_before = store.audit(0, 100_000).unwrap().len();
    let made = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let store = handles[thread % 2].clone();
            let made = &made;
            scope.spawn(move || {
                for round in 0..ROUNDS {
                    match store.apply(&change(Mutation::CreateGroup(group(
                        root,
                        format!("g-{round}"),
                    )))) {
                        Ok(_) => {
                            made.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(StoreError::Conflict(_)) => {}
                        Err(error) => panic!("thread {thread}, round {round}: {error:?}"),
                    }
                }
            });
        }
    });
    assert_eq!(made.load(Ordering::Relaxed), ROUNDS);
    let mut names: Vec<String> = store
        .groups()
        .unwrap()
        .into_iter()
        .filter(|g| g.parent == Some(root))
        .map(|g| g.name)
        .collect();
    names.sort();
    let mut expected: Vec<String> = (0..ROUNDS).map(|r| format!("g-{r}")).collect();
    expected.sort();
    assert_eq!(names, expected);
    assert_eq!(
        store.audit(0, 100_000).unwrap().len(),
        audit_before + ROUNDS,
        "one audit entry per change made, none for a refused one"
    );
}

/// Every thread reads the tree and writes against the version it read: of the writes made
/// against one version, exactly one goes through; the others are refused as stale and write
/// nothing. The tree's version counts exactly the writes that went through.
pub(super) fn writes_checked_against_one_tree_version_go_through_once(subject: &Subject) {
    let store = fleet(subject);
    let root = root_id(store);
    let second = subject.reopen();
    let handles = [subject.store.clone(), second];
    let version_before = store.tree().unwrap().version;
    let audit_before = store.audit(0, 100_000).unwrap().len();
    let made = AtomicUsize::new(0);
    let stale = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let store = handles[thread % 2].clone();
            let (made, stale) = (&made, &stale);
            scope.spawn(move || {
                for round in 0..ROUNDS {
                    let read = store.tree().unwrap();
                    match store.apply(&Change {
                        tree_version: Some(read.version),
                        ..change(Mutation::CreateGroup(group(
                            root,
                            format!("t{thread}-{round}"),
                        )))
                    }) {
                        Ok(_) => {
                            made.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(StoreError::Stale(_)) => {
                            stale.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(error) => panic!("thread {thread}, round {round}: {error:?}"),
                    }
                }
            });
        }
    });
    let (made, stale) = (made.into_inner(), stale.into_inner());
    assert_eq!(made + stale, THREADS * ROUNDS);
    assert!(
        made >= ROUNDS,
        "at least one write per round of reads: {made}"
    );
    let now = store.tree().unwrap();
    assert_eq!(now.version, version_before + made as i64, "{made} made");
    assert_eq!(
        now.groups.iter().filter(|g| g.parent == Some(root)).count(),
        made
    );
    assert_eq!(store.audit(0, 100_000).unwrap().len(), audit_before + made);
}

/// Check-ins recorded on one handle while the other bumps the agents' serial: every bump
/// reaches every agent, no check-in is lost, and an agent is pending exactly when its
/// acknowledged serial is behind.
pub(super) fn check_ins_and_serial_bumps_interleave_without_loss(subject: &Subject) {
    let store = fleet(subject);
    let root = root_id(store);
    let agents: Vec<String> = (0..40).map(|n| format!("c{n:02}")).collect();
    store
        .insert_agents(
            &agents
                .iter()
                .map(|id| agent(id, root, &["TLSv1.2"]))
                .collect::<Vec<_>>(),
        )
        .unwrap();
    let second = subject.reopen();
    let serials = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        let writer = &second;
        let serials = &serials;
        scope.spawn(move || {
            for round in 0..ROUNDS {
                let applied = writer
                    .apply(&Change {
                        bump_groups: vec![root],
                        ..change(Mutation::CreateServerList(
                            serverlist::build(
                                &format!("L{round}"),
                                vec![serverlist::parse_spec("1:https://x:1").unwrap()],
                            )
                            .unwrap(),
                        ))
                    })
                    .unwrap();
                assert_eq!(applied.bumped_agents, 40, "round {round}");
                serials.lock().unwrap().push(applied.serial.unwrap());
            }
        });
        let checkins = &subject.store;
        let agents = &agents;
        scope.spawn(move || {
            for round in 0..ROUNDS {
                let batch: Vec<crate::Checkin> = agents
                    .iter()
                    .map(|id| checkin_of(id, 1_800_000_000_000 + round as i64))
                    .collect();
                let records = checkins.record_checkins(&batch).unwrap();
                assert!(records.iter().all(Option::is_some), "round {round}");
            }
        });
    });
    let serials = serials.into_inner().unwrap();
    assert!(serials.windows(2).all(|w| w[0] < w[1]), "{serials:?}");
    let last = *serials.last().unwrap();
    let all = store.agents(&AgentFilter::default()).unwrap();
    assert_eq!(all.len(), 40);
    for record in &all {
        assert_eq!(record.serial, last, "{}", record.id);
        assert_eq!(
            record.last_checkin_ms,
            Some(1_800_000_000_000 + ROUNDS as i64 - 1),
            "{}",
            record.id
        );
        assert!(record.pending(), "{} acknowledged nothing", record.id);
    }
}
