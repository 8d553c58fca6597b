//! Where a synchronous PostgreSQL call may run. The `postgres` crate drives each call on a
//! tokio runtime of its own, and tokio forbids starting one on a thread that is inside
//! another (a server's async task, or the thread in its `block_on`): it panics. SQLite has no
//! such rule, so callers above this crate may use a store anywhere; [`off_runtime`] keeps it so.

/// Runs `f` where it may block on a runtime of its own: in place on a thread no runtime has
/// entered (a plain thread, tokio's blocking pool); through `block_in_place` on a thread of a
/// multi-threaded runtime (it leaves the runtime for the call); on a scoped thread of its own
/// inside a current-thread runtime (which has no `block_in_place`).
pub(crate) fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Err(_) => f(),
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        Ok(_) => std::thread::scope(|scope| match scope.spawn(f).join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
    }
}
