//! The subcommands. Each returns the process exit code, or an error that `main` prints.

pub mod agent;
pub mod bench;
pub mod fleet;
pub mod harden;
pub mod server;
pub mod simulate;
pub mod tls;

/// A failure a command reports to the operator: already worded for them.
pub type CmdResult = Result<std::process::ExitCode, String>;
