//! Named crash points. In a build with the `fault-points` feature (test builds only),
//! [`point`] kills the process with SIGKILL when the environment variable `WARD_FAULT_POINT`
//! names it, so a test can crash ward at exactly that instant and check what the next start
//! finds. In every other build it is an empty function.
//!
//! The names: `write:FILE` just before a whole-file write renames its temporary file over
//! `FILE`; `LABEL:staged`, `LABEL:journaled`, `LABEL:renamed` and `LABEL:applied` inside a
//! [`crate::Commit`]; and the names the callers give their own steps.

/// The environment variable that names the point to crash at.
pub const VARIABLE: &str = "WARD_FAULT_POINT";

/// Crashes here when this is the named point (in a build with fault points).
#[cfg(feature = "fault-points")]
pub fn point(name: &str) {
    if std::env::var(VARIABLE).is_ok_and(|wanted| wanted == name) {
        eprintln!("ward: fault point {name}: killing this process");
        // SAFETY: sends SIGKILL to this very process; nothing runs after it.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// Crashes here when this is the named point (in a build with fault points).
#[cfg(not(feature = "fault-points"))]
#[inline(always)]
pub fn point(_name: &str) {}

/// Whether this build has fault points.
pub const ENABLED: bool = cfg!(feature = "fault-points");
