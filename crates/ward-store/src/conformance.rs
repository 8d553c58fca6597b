//! One conformance suite for every engine. Each case takes a fresh database of one engine (a
//! [`Subject`]) and asserts, through `&dyn Store` only, what the trait promises: round trips,
//! the refusals (not found, conflict, in use, stale), serial bumps, audit in the same
//! transaction, concurrent writers (a second handle on the same database), durability across
//! a reopen. The modules at the bottom run every case on each engine: SQLite on a temporary
//! file, PostgreSQL on a private cluster of its own (`ward_testkit::pg`), so a case can never pass on
//! one engine by knowing it.

mod concurrency;
mod fleet;
mod telemetry;

use std::any::Any;
use std::sync::Arc;

use crate::{Database, Store};

/// A fresh database of one engine for one case.
pub(crate) struct Subject {
    pub store: Arc<dyn Store>,
    reopen: Box<dyn Fn() -> Arc<dyn Store>>,
    /// What the database lives in (a temporary directory, a cluster), kept until the case ends.
    _keep: Box<dyn Any>,
}

impl Subject {
    /// A second handle on the same database: another server on it, or this one restarted.
    pub fn reopen(&self) -> Arc<dyn Store> {
        (self.reopen)()
    }
}

fn sqlite() -> Subject {
    let dir = tempfile::tempdir().unwrap();
    let database = Database::Sqlite(dir.path().join("ward.db"));
    let store = crate::open(&database).unwrap();
    Subject {
        store,
        reopen: Box::new(move || crate::open(&database).unwrap()),
        _keep: Box::new(dir),
    }
}

fn postgres() -> Subject {
    let cluster = ward_testkit::pg::Cluster::start();
    let database = Database::Postgres(cluster.url());
    let store = crate::open(&database).unwrap();
    Subject {
        store,
        reopen: Box::new(move || crate::open(&database).unwrap()),
        _keep: Box::new(cluster),
    }
}

/// Every case, as one `#[test]` each, on `$engine`.
macro_rules! every_case {
    ($engine:ident: $($module:ident::$case:ident),* $(,)?) => {
        mod $engine {
            $(
                #[test]
                fn $case() {
                    super::$module::$case(&super::$engine());
                }
            )*
        }
    };
}

macro_rules! on_every_engine {
    ($($module:ident::$case:ident),* $(,)?) => {
        every_case!(sqlite: $($module::$case),*);
        every_case!(postgres: $($module::$case),*);
    };
}

on_every_engine!(
    telemetry::telemetry_round_trip_and_summing,
    telemetry::reopening_keeps_data_and_schema,
    telemetry::client_hellos_are_kept_once_each_counted_and_the_last_per_peer_wins,
    telemetry::recent_failures_and_host_names_are_read_as_asked,
    telemetry::servers_register_by_name_and_their_heartbeats_move,
    telemetry::site_files_are_replaced_whole_and_only_from_the_generation_read,
    fleet::groups_round_trip_and_names_are_unique_among_siblings,
    fleet::a_list_in_use_cannot_be_deleted,
    fleet::serial_bumps_make_agents_pending_and_filters_find_them,
    fleet::agents_are_searched_sorted_and_paged_where_they_are_stored,
    fleet::moving_an_unknown_agent_changes_nothing,
    fleet::audit_keeps_before_and_after,
    fleet::retired_agents_are_gone_and_a_bad_id_retires_nobody,
    fleet::accounts_are_listed_repassworded_and_deleted_with_their_sessions,
    fleet::a_login_checked_against_a_stale_credential_creates_no_session,
    fleet::checkin_nonces_are_kept_with_the_checkin_and_pruned_past_the_window,
    fleet::a_touch_moves_last_seen_forward_only_and_keeps_its_nonce,
    fleet::a_token_is_found_by_its_lookup_and_purged_a_day_after_it_expires,
    fleet::the_cas_an_agent_trusts_are_replaced_at_each_checkin_and_shared_when_equal,
    fleet::a_token_use_is_taken_only_while_its_rule_holds,
    fleet::a_change_checked_against_a_stale_tree_is_refused,
    concurrency::writers_racing_for_one_name_make_it_once,
    concurrency::writes_checked_against_one_tree_version_go_through_once,
    concurrency::check_ins_and_serial_bumps_interleave_without_loss,
);
