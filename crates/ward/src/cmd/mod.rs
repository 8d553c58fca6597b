//! The subcommands. Each returns the process exit code, or an error that `main` prints.

pub mod agent;
pub mod backup;
pub mod bench;
pub mod fleet;
pub mod harden;
pub mod server;
pub mod simulate;
pub mod tls;

/// A failure a command reports to the operator: a stable code for scripts and a sentence
/// already worded for them.
#[derive(Debug)]
pub struct CmdError {
    pub code: String,
    pub message: String,
}

/// What most commands return: a failure already worded for the operator (its code is
/// `error`).
pub type CmdResult = Result<std::process::ExitCode, String>;

/// What commands return whose failures carry a code from the admin API or the agent.
pub type CodedResult = Result<std::process::ExitCode, CmdError>;

impl From<String> for CmdError {
    fn from(message: String) -> CmdError {
        CmdError {
            code: "error".into(),
            message,
        }
    }
}

impl From<&str> for CmdError {
    fn from(message: &str) -> CmdError {
        CmdError::from(message.to_string())
    }
}

/// The admin API's refusal keeps its code (`would_cut_off`, `not_found`, ...).
impl From<crate::client::ApiFailure> for CmdError {
    fn from(failure: crate::client::ApiFailure) -> CmdError {
        CmdError {
            code: failure.code.clone(),
            message: failure.to_string(),
        }
    }
}

/// The agent's failure keeps its class (`transport`, `refused`, `usage`, ...).
impl From<ward_agent::AgentError> for CmdError {
    fn from(error: ward_agent::AgentError) -> CmdError {
        CmdError {
            code: error.class().into(),
            message: error.to_string(),
        }
    }
}

/// This process's CPU time so far (user and system), in seconds.
pub(crate) fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct passed.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return 0.0;
        }
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// The database a command on `data` uses: `WARD_DATABASE` when it is set (as `ward server`
/// takes it: a backup or a look at the fleet must read the database the server writes, not
/// the unused file ward.toml names), else ward.toml's `[database] path`.
pub(crate) fn database(
    data: &ward_server::DataDir,
    config: &ward_server::config::Config,
) -> Result<ward_store::Database, String> {
    match std::env::var("WARD_DATABASE") {
        Ok(setting) if !setting.is_empty() => {
            ward_store::Database::from_setting(&setting, data.root())
                .map_err(|e| format!("WARD_DATABASE: {e}"))
        }
        _ => data.database(config),
    }
}
