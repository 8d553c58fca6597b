//! ward-fleet: the management side of the seed, as pure logic.
//!
//! - [`name`]: group names and paths (`My Company/Legacy XP`).
//! - [`group`]: the group tree, each group's own settings, and the effective settings that
//!   inheritance gives every group.
//! - [`serverlist`]: server lists with priority levels, their `1:https://mgr1:443` spelling,
//!   and the seed's "copy this list as plain HTTP on port 8014".
//! - [`serial`]: which groups' agents must get a new settings serial after a change.
//! - [`presence`]: whether an agent is online (one rule for every listing and filter).
//!
//! No I/O, no clock, no database: the store persists these values and the server calls these
//! functions. Everything here is tested with tables.

pub mod group;
pub mod name;
pub mod presence;
pub mod serial;
pub mod serverlist;

pub use group::{Effective, Group, GroupId, Mode, OwnSettings, Tree, TreeError};
pub use serverlist::{Protocol, ServerEntry, ServerList};
